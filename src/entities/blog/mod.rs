//! A blog in SeaORM 2's dense `#[sea_orm::model]` format: authors with one profile and many posts,
//! posts with many tags through the `post_tag` junction. Nested saves through `ActiveModelEx` run
//! each row's hooks, so each row gets its event.

pub mod author;
pub mod post;
pub mod post_tag;
pub mod profile;
pub mod tag;
