//! A consumer's position: every event up to it is handled, dead, or outside its filter. Moving
//! it forward (`advance`), and the idle worker's one-statement check for new work (`probe`).

use super::consumer::{ConsumerConfig, push_claimable};
use super::sequencer::last_seq;
use super::state::DeliveryState;
use crate::error::{Error, Result};
use crate::sql::{Sql, scalar, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

/// Moves the consumer's position over every event that is handled, dead, or outside its filter,
/// and deletes the `done` deliveries below it. Returns the new position.
pub(crate) async fn advance(db: &DatabaseConnection, consumer: &str) -> Result<i64> {
    let b = db.get_database_backend();
    // Read the horizon first: events sequenced later get a higher seq and cannot be passed over.
    let horizon = last_seq(db).await?;
    let row = db
        .query_one_raw(stmt(
            b,
            "SELECT position, config FROM distribute_consumers WHERE name = ?",
            vec![consumer.into()],
        ))
        .await?
        .ok_or_else(|| Error::UnknownConsumer {
            consumer: consumer.to_owned(),
        })?;
    let position: i64 = row.try_get("", "position")?;
    // The stored filter (the one registered last), so that workers of one consumer running
    // different versions never pass over events another of them still takes.
    let config = ConsumerConfig::from_json(&row.try_get::<String>("", "config")?);
    // Every event with a delivery row is settled for the position: the row itself holds it
    // (leased, waiting, failed, dead) until it is done. So the position stops below the first
    // matching event that has no row yet.
    // ORDER BY .. LIMIT 1 (not MIN) lets the database stop at the first match.
    let mut q = Sql::new("SELECT e.seq FROM distributes e WHERE e.seq > ");
    q.bind(position).push(" AND e.seq <= ").bind(horizon);
    config.push_filter(&mut q);
    q.push(" AND NOT EXISTS (SELECT 1 FROM distribute_deliveries d WHERE d.consumer = ")
        .bind(consumer)
        .push(" AND d.event_id = e.id) ORDER BY e.seq LIMIT 1");
    let pending = scalar(db, q.build(b)).await?;
    let new_position = pending.map_or(horizon, |p| p - 1).min(horizon);
    if new_position > position {
        db.execute_raw(stmt(
            b,
            "UPDATE distribute_consumers SET position = ? WHERE name = ? AND position < ?",
            vec![new_position.into(), consumer.into(), new_position.into()],
        ))
        .await?;
        db.execute_raw(stmt(
            b,
            "DELETE FROM distribute_deliveries WHERE consumer = ? AND state = ? AND seq <= ?",
            vec![
                consumer.into(),
                DeliveryState::Done.into(),
                new_position.into(),
            ],
        ))
        .await?;
    }
    Ok(new_position.max(position))
}

/// Deletes the consumer's unfinished deliveries whose event is gone (deleted by hand, or pruned
/// while the consumer was being registered): nothing can handle them, and they would hold back
/// their object's later events forever. Returns how many. Idle workers run this, so it costs
/// nothing while a consumer is busy.
pub(crate) async fn forget_orphans(db: &DatabaseConnection, consumer: &str) -> Result<u64> {
    let mut q = Sql::new("DELETE FROM distribute_deliveries WHERE consumer = ");
    q.bind(consumer)
        .push(" AND state <> ")
        .bind(DeliveryState::Done)
        .push(" AND NOT EXISTS (SELECT 1 FROM distributes e WHERE e.id = distribute_deliveries.event_id)");
    let n = db
        .execute_raw(q.build(db.get_database_backend()))
        .await?
        .rows_affected();
    if n > 0 {
        tracing::warn!(
            consumer,
            deliveries = n,
            "forgot deliveries whose events are gone"
        );
    }
    Ok(n)
}

/// What an idle worker checks once per poll interval, in one statement: the highest `seq`, whether
/// events wait for the sequencer, and when the consumer's next retry or lease expiry is due.
pub(crate) struct Probe {
    pub max_seq: i64,
    pub unsequenced: bool,
    pub next_due: Option<i64>,
}

pub(crate) async fn probe(
    db: &DatabaseConnection,
    consumer: &str,
    config: &ConsumerConfig,
) -> Result<Probe> {
    let b = db.get_database_backend();
    // Only deliveries a claim could take count as due: one held back behind an earlier event of
    // its object is not, or the worker would spin until that one is done.
    let mut q = Sql::new(
        "SELECT (SELECT MAX(seq) FROM distributes) AS max_seq, \
         (SELECT COUNT(*) FROM (SELECT 1 FROM distributes WHERE seq IS NULL LIMIT 1) u) AS unsequenced, \
         (SELECT MIN(d.available_at) FROM distribute_deliveries d WHERE d.consumer = ",
    );
    q.bind(consumer).push(" AND d.state IN ");
    push_claimable(&mut q);
    q.push(" AND ");
    config.push_unblocked(&mut q, consumer, "d");
    q.push(") AS next_due");
    let row = db
        .query_one_raw(q.build(b))
        .await?
        .ok_or_else(|| DbErr::Custom("the probe returned no row".into()))?;
    Ok(Probe {
        max_seq: row.try_get::<Option<i64>>("", "max_seq")?.unwrap_or(0),
        unsequenced: row.try_get::<i64>("", "unsequenced")? > 0,
        next_due: row.try_get("", "next_due")?,
    })
}
