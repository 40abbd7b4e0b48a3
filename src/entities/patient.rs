//! Sensitive data: `redact` masks two columns, `except` keeps one out, and update events carry
//! the old values of the changed columns (`previous = true`).

use sea_orm::entity::prelude::*;

/// A patient.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "patients")]
pub struct Model {
    /// Key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The distributed id.
    #[sea_orm(unique)]
    pub uuid: Uuid,
    /// Distributed as is.
    pub name: String,
    /// Redacted: the key stays in events, the value is masked.
    pub email: String,
    /// Redacted, nullable.
    pub diagnosis: Option<String>,
    /// Distributed as is.
    pub visits: i32,
    /// Distributed as is.
    pub born_on: Option<Date>,
    /// Never distributed (`except`).
    pub password: Option<String>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

acts_as_distributed::acts_as_distributed!(
    except = [Column::Password],
    redact = [Column::Email, Column::Diagnosis],
    previous = true,
);
