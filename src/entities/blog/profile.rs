//! An author's profile: `BelongsTo` author, unique per author.

use sea_orm::entity::prelude::*;

/// A profile.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blog_profiles")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The author, set by SeaORM's nested save.
    #[sea_orm(unique)]
    pub author_id: i32,
    /// Distributed.
    pub bio: String,
    /// The author.
    #[sea_orm(belongs_to, from = "author_id", to = "id")]
    pub author: BelongsTo<super::author::Entity>,
}

acts_as_distributed::acts_as_distributed!();
