//! The crate's error type, and the one rule that recognises a missing migration.

use crate::values::ValueError;
use crate::worker::HandlerError;
use sea_orm::DbErr;

/// Everything that can go wrong in acts_as_distributed outside SeaORM's hooks. Each condition a
/// caller may act on is a variant of its own.
///
/// Inside the hooks, errors become [`DbErr::Custom`] with a message that says what to do, since
/// SeaORM's hook signatures return [`DbErr`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database returned an error.
    #[error(transparent)]
    Db(DbErr),
    /// A table or column of acts_as_distributed is missing: run the migrations.
    #[error(
        "{what} is missing: run the migrations of acts_as_distributed_migration \
         (`acts_as_distributed_migration::Migrator::up(&db, None)`, or add \
         `acts_as_distributed_migration::migrations()` to your own Migrator){}",
        migration.map(|m| format!("; `{m}` adds it")).unwrap_or_default()
    )]
    MissingMigration {
        /// What is missing, such as "the table `distribute_consumers`".
        what: String,
        /// The migration that adds it, where one alone does.
        migration: Option<&'static str>,
        /// The database's own message.
        detail: String,
    },
    /// No consumer of this name is registered.
    #[error(
        "consumer `{consumer}` is not registered: start a worker for it, or register it with Queue::register_consumer"
    )]
    UnknownConsumer {
        /// The name asked for.
        consumer: String,
    },
    /// A setting is missing or out of range; the message says which and what to do.
    #[error("bad configuration: {0}")]
    Config(String),
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
    /// A handler failed (retryable or permanent, as it said).
    #[error("handler failed: {0}")]
    Handler(HandlerError),
    /// A snapshot could not write a row into the replica (the row's page is rolled back; run the
    /// snapshot again once the cause is fixed).
    #[error("snapshot of {type_name}: {message}")]
    Snapshot {
        /// The `distributed_type` being copied.
        type_name: String,
        /// What the replica said.
        message: String,
    },
    /// A worker task ended abnormally (it panicked or was cancelled).
    #[error("worker task failed: {0}")]
    Worker(String),
}

impl Error {
    /// Whether this is a database error.
    pub fn is_db(&self) -> bool {
        matches!(self, Error::Db(_))
    }
}

/// A database error, or [`Error::MissingMigration`] when it says one of our tables or columns
/// does not exist.
impl From<DbErr> for Error {
    fn from(e: DbErr) -> Self {
        missing_migration(&e).unwrap_or(Error::Db(e))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The tables of acts_as_distributed, longest name first so that `distributes` does not match
/// inside `distribute_consumers`.
const TABLES: [&str; 5] = [
    "distribute_deliveries",
    "distribute_batches",
    "distribute_consumers",
    "distribute_sequencer",
    "distributes",
];

/// [`Error::MissingMigration`] when `e` is a database's "no such table / column" about one of our
/// tables (SQLite, PostgreSQL and MySQL each word it their own way).
pub(crate) fn missing_migration(e: &DbErr) -> Option<Error> {
    let text = e.to_string();
    let lower = text.to_lowercase();
    let missing_column = lower.contains("no such column")
        || lower.contains("has no column")
        || lower.contains("unknown column")
        || (lower.contains("column") && lower.contains("does not exist"));
    let missing_table = lower.contains("no such table")
        || lower.contains("doesn't exist")
        || (lower.contains("relation") && lower.contains("does not exist"));
    let (what, migration) = if missing_column && lower.contains("previous") {
        (
            "the column `distributes.previous`".to_owned(),
            Some("m20261128_000003_add_previous"),
        )
    } else if missing_column && lower.contains("claimed_to") {
        (
            "the column `distribute_consumers.claimed_to`".to_owned(),
            Some("m20261201_000004_batch_leases"),
        )
    } else if missing_column && lower.contains("seq") {
        (
            "the column `distributes.seq`".to_owned(),
            Some("m20261128_000002_create_queue"),
        )
    } else if missing_table {
        let table = TABLES.iter().find(|t| lower.contains(*t))?;
        let migration = match *table {
            "distributes" => "m20261128_000001_create_distributes",
            "distribute_batches" => "m20261201_000004_batch_leases",
            _ => "m20261128_000002_create_queue",
        };
        (format!("the table `{table}`"), Some(migration))
    } else {
        return None;
    };
    Some(Error::MissingMigration {
        what,
        migration,
        detail: text,
    })
}

/// For paths that must return [`DbErr`] (SeaORM's hooks, the transaction helper): the same error
/// with the missing-migration message in place of the database's words.
pub(crate) fn hint_missing_migration(e: DbErr) -> DbErr {
    match missing_migration(&e) {
        Some(missing) => DbErr::Custom(format!("acts_as_distributed: {missing}")),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(message: &str) -> Option<String> {
        match missing_migration(&DbErr::Custom(message.into())) {
            Some(Error::MissingMigration { what, .. }) => Some(what),
            _ => None,
        }
    }

    #[test]
    fn recognises_each_backends_missing_table_and_column() {
        let consumers = Some("the table `distribute_consumers`".to_owned());
        assert_eq!(what("no such table: distribute_consumers"), consumers);
        assert_eq!(
            what(
                "error returned from database: relation \"distribute_consumers\" does not exist at line 1392"
            ),
            consumers
        );
        assert_eq!(
            what("Table 'test.distribute_consumers' doesn't exist"),
            consumers
        );
        assert_eq!(
            what("no such table: distributes"),
            Some("the table `distributes`".into())
        );
        assert_eq!(
            what("column \"previous\" of relation \"distributes\" does not exist"),
            Some("the column `distributes.previous`".into())
        );
        assert_eq!(
            what("Unknown column 'previous' in 'field list'"),
            what("table distributes has no column named previous")
        );
        assert_eq!(what("no such table: users"), None);
        assert_eq!(what("UNIQUE constraint failed"), None);
    }

    #[test]
    fn the_message_says_what_to_run_without_the_database_position() {
        let e = Error::from(DbErr::Custom(
            "relation \"distribute_consumers\" does not exist at line 1392".into(),
        ));
        let text = e.to_string();
        assert!(
            text.starts_with("the table `distribute_consumers` is missing: run the migrations"),
            "{text}"
        );
        assert!(!text.contains("line 1392"), "{text}");
    }
}
