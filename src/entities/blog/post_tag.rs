//! The junction of posts and tags. Its key is the two foreign keys, so its events have an empty
//! `changes` and the key as `distributed_id` (`[post_id,tag_id]`).

use sea_orm::entity::prelude::*;

/// A link between a post and a tag.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blog_post_tags")]
pub struct Model {
    /// Key part.
    #[sea_orm(primary_key, auto_increment = false)]
    pub post_id: i32,
    /// Key part.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tag_id: i32,
    /// The post.
    #[sea_orm(belongs_to, from = "post_id", to = "id")]
    pub post: BelongsTo<super::post::Entity>,
    /// The tag.
    #[sea_orm(belongs_to, from = "tag_id", to = "id")]
    pub tag: BelongsTo<super::tag::Entity>,
}

acts_as_distributed::acts_as_distributed!();
