//! Support for the doc tests of `README.md` and the guides in `docs/`: their examples run on
//! fresh SQLite databases that have the `distributes` table and the tables of [`crate::entities`].
//!
//! Only the hidden lines (`# ...`) of an example use this module; what a reader sees uses only
//! what an application has.

pub use crate::entities::{customer, purchase, user};
use crate::{Backend, TestDb};
use sea_orm::DatabaseConnection;

/// What an example returns: `?` works on every error it meets.
pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// Runs `example` on a fresh, migrated SQLite database; panics with its error.
pub fn run(example: impl AsyncFnOnce(DatabaseConnection) -> Result) {
    runtime().block_on(async {
        let db = TestDb::new(&Backend::Sqlite).await;
        if let Err(e) = example(db.db.clone()).await {
            panic!("the example failed: {e}");
        }
    });
}

/// Runs `example` with two fresh, migrated SQLite databases (a source and a replica, say).
pub fn run2(example: impl AsyncFnOnce(DatabaseConnection, DatabaseConnection) -> Result) {
    runtime().block_on(async {
        let a = TestDb::new(&Backend::Sqlite).await;
        let b = TestDb::new(&Backend::Sqlite).await;
        if let Err(e) = example(a.db.clone(), b.db.clone()).await {
            panic!("the example failed: {e}");
        }
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
