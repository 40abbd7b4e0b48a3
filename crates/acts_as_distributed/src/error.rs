//! The crate's error type.

use crate::values::ValueError;
use sea_orm::DbErr;

/// Everything that can go wrong in acts_as_distributed outside SeaORM's hooks.
///
/// Inside the hooks, errors become [`DbErr::Custom`] with a message that says what to do, since
/// SeaORM's hook signatures return [`DbErr`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database returned an error.
    #[error(transparent)]
    Db(#[from] DbErr),
    /// A `changes` entry could not be turned back into the column's value.
    #[error("event {type_name} column `{column}`: {source}")]
    Value {
        /// The `distributed_type` of the event.
        type_name: String,
        /// The column whose value did not fit.
        column: String,
        /// What did not fit.
        #[source]
        source: ValueError,
    },
    /// A `changes` entry names a column the entity does not have.
    #[error("event {type_name} names column `{column}`, which the entity does not have")]
    UnknownColumn {
        /// The `distributed_type` of the event.
        type_name: String,
        /// The column name found in `changes`.
        column: String,
    },
    /// A setting is missing or out of range; the message says which and what to do.
    #[error("bad configuration: {0}")]
    Config(String),
    /// A worker task ended abnormally (it panicked or was cancelled).
    #[error("worker task failed: {0}")]
    Worker(String),
    /// `changes` is not a JSON object.
    #[error("event {type_name}: `changes` must be a JSON object, found {found}")]
    NotAnObject {
        /// The `distributed_type` of the event.
        type_name: String,
        /// The kind of JSON found instead.
        found: &'static str,
    },
    /// A manual event was refused before anything was written: `problem` says what is wrong with
    /// `field` and what to give instead.
    #[error("manual event refused, nothing written: `{field}` {problem}")]
    InvalidEvent {
        /// The field at fault: `distributed_type`, `distributed_id` or `client_id`.
        field: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A snapshot could not write a row into the replica (the row's page is rolled back; run the
    /// snapshot again once the cause is fixed).
    #[error("snapshot of {type_name}: {message}")]
    Snapshot {
        /// The `distributed_type` being copied.
        type_name: String,
        /// What the replica said.
        message: String,
    },
}

impl Error {
    /// Whether this is a database error.
    pub fn is_db(&self) -> bool {
        matches!(self, Error::Db(_))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
