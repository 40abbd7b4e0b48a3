//! A post: `BelongsTo` author, `HasMany` tags through the `post_tag` junction.

use sea_orm::entity::prelude::*;

/// A post.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blog_posts")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The author, set by SeaORM's nested save.
    pub author_id: i32,
    /// Distributed.
    pub title: String,
    /// The author.
    #[sea_orm(belongs_to, from = "author_id", to = "id")]
    pub author: BelongsTo<super::author::Entity>,
    /// Tags, through `post_tag`.
    #[sea_orm(has_many, via = "post_tag")]
    pub tags: HasMany<super::tag::Entity>,
}

acts_as_distributed::acts_as_distributed!();
