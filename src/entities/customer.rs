//! A parent for replication tests: purchases refer to a customer by its uuid.

use sea_orm::entity::prelude::*;

/// A customer.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "customers")]
pub struct Model {
    /// Key (each database's own).
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The id shared between databases.
    #[sea_orm(unique)]
    pub uuid: Uuid,
    /// Name.
    pub name: String,
    /// Credit.
    #[sea_orm(column_type = "Decimal(Some((12, 2)))")]
    pub credit: Decimal,
    /// Note.
    pub note: Option<String>,
}

/// A customer has purchases.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Purchases of this customer.
    #[sea_orm(has_many = "super::purchase::Entity")]
    Purchase,
}

impl Related<super::purchase::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Purchase.def()
    }
}

acts_as_distributed::acts_as_distributed!();
