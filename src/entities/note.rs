//! An entity with a string primary key and no uuid column: `distributed_id` is the key.

use sea_orm::entity::prelude::*;

/// A note.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "notes")]
pub struct Model {
    /// Key, also the distributed id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub code: String,
    /// Text.
    pub body: String,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

acts_as_distributed::acts_as_distributed!();
