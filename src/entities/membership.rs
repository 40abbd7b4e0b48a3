//! A composite primary key, `only`, and a `type_name`.

use sea_orm::entity::prelude::*;

/// A user in a group.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "memberships")]
pub struct Model {
    /// Key part.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i32,
    /// Key part.
    #[sea_orm(primary_key, auto_increment = false)]
    pub group_id: i32,
    /// Distributed.
    pub role: String,
    /// Not in `only`.
    pub note: Option<String>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

acts_as_distributed::acts_as_distributed!(type_name = "GroupMember", only = [Column::Role]);
