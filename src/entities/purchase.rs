//! A child for replication tests: holds its customer's uuid, with a foreign key.

use sea_orm::entity::prelude::*;

/// A purchase.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "purchases")]
pub struct Model {
    /// Key (each database's own).
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The id shared between databases.
    #[sea_orm(unique)]
    pub uuid: Uuid,
    /// The customer's uuid (a foreign key to `customers.uuid`).
    pub customer_uuid: Uuid,
    /// What was bought.
    pub item: String,
    /// How many.
    pub quantity: i32,
}

/// A purchase belongs to a customer.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The customer, by uuid.
    #[sea_orm(
        belongs_to = "super::customer::Entity",
        from = "Column::CustomerUuid",
        to = "super::customer::Column::Uuid"
    )]
    Customer,
}

impl Related<super::customer::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Customer.def()
    }
}

acts_as_distributed::acts_as_distributed!();
