//! What an operator reads: each consumer's counts per type and its blocked objects.

use super::consumer::ConsumerConfig;
use super::position::position_sql;
use super::sequencer::sequence_all;
use super::state::{DeadEvents, DeliveryState};
use crate::error::Result;
use crate::sql::{Sql, stmt};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::{Deserialize, Serialize};

/// Counts of one consumer's events of one type.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TypeStatus {
    /// The `distributed_type`.
    pub distributed_type: String,
    /// Matching events not handled yet and not failing (including those leased right now).
    pub pending: u64,
    /// Events that failed and wait for a retry.
    pub errored: u64,
    /// Events that failed for good (kept; see [`Queue::retry_dead`](super::Queue::retry_dead)).
    pub dead: u64,
    /// Events handled and still in `distributes`.
    pub processed: u64,
    /// When the oldest pending event was captured.
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// One consumer's state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConsumerStatus {
    /// The consumer's name.
    pub consumer: String,
    /// Every event up to this `seq` is handled or dead.
    pub position: i64,
    /// Per type, for the types with events.
    pub types: Vec<TypeStatus>,
    /// Objects whose events wait behind a dead event (only with [`DeadEvents::Hold`]).
    pub blocked_objects: Vec<BlockedObject>,
}

/// An object held back by a dead event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BlockedObject {
    /// The `distributed_type`.
    pub distributed_type: String,
    /// The `distributed_id`.
    pub distributed_id: String,
    /// The dead event holding it back.
    pub dead_event_id: i64,
    /// The dead event's last error.
    pub last_error: Option<String>,
}

/// The state of every consumer, per type.
pub(crate) async fn status(db: &DatabaseConnection) -> Result<Vec<ConsumerStatus>> {
    let b = db.get_database_backend();
    sequence_all(db).await?;
    let consumers = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT name, {} AS position, claimed_to, config FROM distribute_consumers c ORDER BY name",
                position_sql("c")
            ),
            vec![],
        ))
        .await?;
    let mut out = Vec::new();
    for row in consumers {
        let consumer: String = row.try_get("", "name")?;
        let position: i64 = row.try_get("", "position")?;
        let claimed_to: i64 = row.try_get("", "claimed_to")?;
        let config = ConsumerConfig::from_json(&row.try_get::<String>("", "config")?);
        let (leased, waiting) = (DeliveryState::Leased, DeliveryState::Waiting);
        // An event without a delivery row is pending above what the consumer has claimed and
        // inside a batch being handled; handled (or outside the filter) anywhere else.
        let open = |q: &mut Sql| {
            q.push("(d.state IS NULL AND (e.seq > ")
                .bind(claimed_to)
                .push(" OR EXISTS (SELECT 1 FROM distribute_batches bt WHERE bt.consumer = ")
                .bind(consumer.as_str())
                .push(" AND e.seq > bt.lo AND e.seq <= bt.hi)))");
        };
        let mut q = Sql::new("SELECT e.distributed_type AS t, COUNT(CASE WHEN ");
        open(&mut q);
        q.push(" OR d.state IN (")
            .bind_list([leased, waiting])
            .push(") THEN 1 END) AS pending, COUNT(CASE WHEN d.state = ")
            .bind(DeliveryState::Retry)
            .push(" THEN 1 END) AS errored, COUNT(CASE WHEN d.state = ")
            .bind(DeliveryState::Dead)
            .push(" THEN 1 END) AS dead, COUNT(CASE WHEN d.state = ")
            .bind(DeliveryState::Done)
            .push(" OR (d.state IS NULL AND NOT ");
        open(&mut q);
        q.push(") THEN 1 END) AS processed, MIN(CASE WHEN ");
        open(&mut q);
        q.push(" OR d.state IN (")
            .bind_list([leased, waiting])
            .push(
                ") THEN e.created_at END) AS oldest FROM distributes e \
                 LEFT JOIN distribute_deliveries d ON d.event_id = e.id AND d.consumer = ",
            )
            .bind(consumer.as_str())
            .push(" WHERE e.seq IS NOT NULL");
        config.push_filter(&mut q);
        q.push(" GROUP BY e.distributed_type ORDER BY e.distributed_type");
        let rows = db.query_all_raw(q.build(b)).await?;
        let mut types = Vec::new();
        for r in rows {
            let count = |name: &str| r.try_get::<i64>("", name).map(|n| n.max(0) as u64);
            types.push(TypeStatus {
                distributed_type: r.try_get("", "t")?,
                pending: count("pending")?,
                errored: count("errored")?,
                dead: count("dead")?,
                processed: count("processed")?,
                oldest_pending: r.try_get("", "oldest")?,
            });
        }
        let blocked_objects = if config.dead_events == DeadEvents::Hold {
            blocked(db, &consumer).await?
        } else {
            Vec::new()
        };
        out.push(ConsumerStatus {
            consumer,
            position,
            types,
            blocked_objects,
        });
    }
    Ok(out)
}

/// The objects of `consumer` held back by a dead event, each with its first dead event.
async fn blocked(db: &DatabaseConnection, consumer: &str) -> Result<Vec<BlockedObject>> {
    let mut q = Sql::new(
        "SELECT d.distributed_type, d.distributed_id, d.event_id, d.last_error FROM distribute_deliveries d \
         WHERE d.consumer = ",
    );
    q.bind(consumer)
        .push(" AND d.state = ")
        .bind(DeliveryState::Dead)
        .push(
            " AND NOT EXISTS (SELECT 1 FROM distribute_deliveries p \
             WHERE p.consumer = d.consumer AND p.distributed_type = d.distributed_type \
             AND p.distributed_id = d.distributed_id AND p.state = d.state AND p.seq < d.seq) \
             ORDER BY d.seq",
        );
    let rows = db.query_all_raw(q.build(db.get_database_backend())).await?;
    rows.iter()
        .map(|r| {
            Ok(BlockedObject {
                distributed_type: r.try_get("", "distributed_type")?,
                distributed_id: r.try_get("", "distributed_id")?,
                dead_event_id: r.try_get("", "event_id")?,
                last_error: r.try_get("", "last_error")?,
            })
        })
        .collect()
}
