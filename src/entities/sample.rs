//! One column of every value kind, for round trips.

use sea_orm::entity::prelude::*;

/// Every kind of value.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "samples")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// bool
    pub flag: Option<bool>,
    /// i16
    pub small: Option<i16>,
    /// i32
    pub int: Option<i32>,
    /// i64
    pub big: Option<i64>,
    /// f32
    pub single: Option<f32>,
    /// f64
    pub double: Option<f64>,
    /// decimal
    #[sea_orm(column_type = "Decimal(Some((20, 4)))")]
    pub amount: Option<Decimal>,
    /// text
    #[sea_orm(column_type = "Text")]
    pub text: Option<String>,
    /// date
    pub day: Option<Date>,
    /// time
    pub clock: Option<Time>,
    /// datetime without offset
    pub local: Option<DateTime>,
    /// datetime with offset
    pub zoned: Option<DateTimeWithTimeZone>,
    /// datetime in UTC
    pub utc: Option<DateTimeUtc>,
    /// uuid
    pub token: Option<Uuid>,
    /// JSON
    pub doc: Option<Json>,
    /// bytes
    #[sea_orm(column_type = "Blob")]
    pub bytes: Option<Vec<u8>>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

acts_as_distributed::acts_as_distributed!();
