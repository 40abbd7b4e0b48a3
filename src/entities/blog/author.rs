//! An author: `HasOne` profile, `HasMany` posts. Its uuid is filled by its own `new()`, which
//! SeaORM's builders call too.

use sea_orm::entity::prelude::*;

/// An author.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blog_authors")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The distributed id.
    #[sea_orm(unique)]
    pub uuid: Uuid,
    /// Distributed.
    pub name: String,
    /// One profile.
    #[sea_orm(has_one)]
    pub profile: HasOne<super::profile::Entity>,
    /// Many posts.
    #[sea_orm(has_many)]
    pub posts: HasMany<super::post::Entity>,
}

acts_as_distributed::acts_as_distributed!(hooks = true);

impl acts_as_distributed::DistributedBehavior for ActiveModel {
    fn new() -> Self {
        Self {
            uuid: sea_orm::Set(Uuid::new_v4()),
            ..<Self as sea_orm::ActiveModelTrait>::default()
        }
    }
}
