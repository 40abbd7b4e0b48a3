//! The queue: consumers read `distributes` in order, each with a position and delivery rows for
//! the events it holds, fails or must wait for. `docs/queue.md` explains each statement.
//!
//! - [`consumer`]: a consumer's filter and policies, registration;
//! - [`sequencer`]: numbering events in the order they become visible;
//! - [`claim`]: leasing a batch to a worker;
//! - [`lease`]: renewing, acknowledging, failing and releasing what a worker holds;
//! - [`position`]: moving a consumer's position, and the idle probe;
//! - [`state`]: delivery states and the hold rule for dead events;
//! - [`status`], [`dead`], [`prune`], [`handover`]: operators' reads, retry by command,
//!   retention, and the snapshot hand-over.
//!
//! All times in the queue tables are milliseconds since the Unix epoch (UTC), from the workers'
//! clocks.

pub(crate) mod batch;
pub(crate) mod claim;
pub(crate) mod consumer;
pub(crate) mod dead;
pub(crate) mod handover;
pub(crate) mod lease;
pub(crate) mod position;
pub(crate) mod prune;
pub(crate) mod sequencer;
pub(crate) mod state;
pub(crate) mod status;

pub use consumer::StartFrom;
pub use state::DeadEvents;
pub use status::{BlockedObject, ConsumerStatus, TypeStatus};

use crate::error::Result;
use sea_orm::DatabaseConnection;
use std::time::Duration;

/// Inspect and act on the queue: status, retry of dead events, pruning.
///
/// ```no_run
/// # async fn demo(db: sea_orm::DatabaseConnection) -> Result<(), acts_as_distributed::Error> {
/// use acts_as_distributed::Queue;
/// use std::time::Duration;
///
/// let queue = Queue::new(db);
/// for consumer in queue.status().await? {
///     println!("{}: {:?}", consumer.consumer, consumer.types);
/// }
/// queue.retry_dead("replica", None).await?;
/// queue.prune(Duration::from_secs(7 * 24 * 3600), 1_000).await?;
/// # Ok(()) }
/// ```
///
/// Every method returns [`Error::MissingMigration`](crate::Error::MissingMigration) when the
/// queue tables do not exist yet.
#[derive(Debug, Clone)]
pub struct Queue {
    db: DatabaseConnection,
}

impl Queue {
    /// The queue in `db`'s `distributes` table.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Numbers the events that became visible, so that consumers can see them (workers do this
    /// on their own). Returns how many.
    pub async fn sequence(&self) -> Result<u64> {
        sequencer::sequence_all(&self.db).await
    }

    /// Registers a consumer ahead of its workers, starting where `start` says. Does nothing for a
    /// consumer that exists.
    pub async fn register_consumer(&self, consumer: &str, start: StartFrom) -> Result<()> {
        consumer::register(&self.db, consumer, None, start)
            .await
            .map(|_| ())
    }

    /// Removes a retired consumer: its position and delivery rows go, so it no longer holds back
    /// pruning, and its name can be registered again (with another filter, say). Stop its
    /// workers first: a worker still running registers it again. Returns whether it existed.
    pub async fn remove_consumer(&self, consumer: &str) -> Result<bool> {
        consumer::remove(&self.db, consumer).await
    }

    /// The state of every consumer, per type.
    pub async fn status(&self) -> Result<Vec<ConsumerStatus>> {
        status::status(&self.db).await
    }

    /// Brings dead events of `consumer` back (one event, or all when `event_id` is `None`): they
    /// are delivered again at once, with a fresh count of attempts. Returns how many.
    pub async fn retry_dead(&self, consumer: &str, event_id: Option<i64>) -> Result<u64> {
        dead::retry_dead(&self.db, consumer, event_id).await
    }

    /// Deletes events every consumer has passed (handled, or outside its filter) that were
    /// captured more than `retention` ago, `batch_size` rows per statement, and returns how many.
    /// Events some consumer still holds as failed or dead stay. With no consumer registered,
    /// nothing is pruned.
    pub async fn prune(&self, retention: Duration, batch_size: u64) -> Result<u64> {
        prune::prune(&self.db, retention, batch_size).await
    }
}
