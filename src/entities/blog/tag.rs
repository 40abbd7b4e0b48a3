//! A tag: `HasMany` posts through the `post_tag` junction.

use sea_orm::entity::prelude::*;

/// A tag.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blog_tags")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Distributed.
    #[sea_orm(unique)]
    pub name: String,
    /// Posts, through `post_tag`.
    #[sea_orm(has_many, via = "post_tag")]
    pub posts: HasMany<super::post::Entity>,
}

acts_as_distributed::acts_as_distributed!();
