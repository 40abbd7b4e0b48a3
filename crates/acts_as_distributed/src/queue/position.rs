//! A consumer's position: every event up to it is handled, dead, or outside its filter. Moving
//! it forward (`advance`), and the idle worker's one-statement check for new work (`probe`).

use super::consumer::{ConsumerConfig, push_claimable};
use super::state::DeliveryState;
use crate::backend::now_sql;
use crate::error::Result;
use crate::sql::{Sql, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

/// The position of the consumer whose `distribute_consumers` row is `c`, as an SQL expression:
/// the lowest batch still being handled, or what it has claimed when none is. Every event up to
/// it is handled, outside the filter, or held by its own delivery row. Derived, so that settling
/// a batch never writes the consumer's row (which claims lock).
pub(crate) fn position_sql(c: &str) -> String {
    format!(
        "COALESCE((SELECT MIN(pb.lo) FROM distribute_batches pb WHERE pb.consumer = {c}.name), {c}.claimed_to)"
    )
}

/// Stores the derived position in `distribute_consumers.position`, for readers of the table
/// (idle workers run it).
pub(crate) async fn advance<C: ConnectionTrait>(db: &C, consumer: &str) -> Result<()> {
    let reach = position_sql("distribute_consumers");
    db.execute_raw(stmt(
        db.get_database_backend(),
        &format!(
            "UPDATE distribute_consumers SET position = {reach} WHERE name = ? AND position < {reach}"
        ),
        vec![consumer.into()],
    ))
    .await?;
    Ok(())
}

/// What an idle worker tidies: the position moved (over events outside the filter, say) and,
/// with `sweep`, the `done` delivery rows it has passed deleted (a snapshot's hand-over writes
/// them) and the deliveries whose event is gone forgotten (see [`forget_orphans`]). The sweep
/// scans, so workers run it about once a minute, not on every idle poll. Returns how many rows
/// it deleted.
pub(crate) async fn tidy(db: &DatabaseConnection, consumer: &str, sweep: bool) -> Result<u64> {
    advance(db, consumer).await?;
    if !sweep {
        return Ok(0);
    }
    let passed = db
        .execute_raw(stmt(
            db.get_database_backend(),
            &format!(
                "DELETE FROM distribute_deliveries WHERE consumer = ? AND state = ? AND seq <= \
                 (SELECT {} FROM distribute_consumers c WHERE c.name = ?)",
                position_sql("c")
            ),
            vec![consumer.into(), DeliveryState::Done.into(), consumer.into()],
        ))
        .await?
        .rows_affected();
    Ok(passed + forget_orphans(db, consumer).await?)
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
    /// How long until the next retry or lease expiry is due (zero: due now), on the database's
    /// clock.
    pub next_due: Option<std::time::Duration>,
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
    q.push(") AS next_due, (SELECT MIN(leased_until) FROM distribute_batches WHERE consumer = ")
        .bind(consumer)
        .push(&format!(") AS batch_due, {} AS now", now_sql(b)));
    let row = db
        .query_one_raw(q.build(b))
        .await?
        .ok_or_else(|| DbErr::Custom("the probe returned no row".into()))?;
    let now: i64 = row.try_get("", "now")?;
    // A batch whose lease runs out is due then: another worker turns it into deliveries.
    let next_due: Option<i64> = row.try_get("", "next_due")?;
    let batch_due: Option<i64> = row.try_get("", "batch_due")?;
    Ok(Probe {
        max_seq: row.try_get::<Option<i64>>("", "max_seq")?.unwrap_or(0),
        unsequenced: row.try_get::<i64>("", "unsequenced")? > 0,
        next_due: [next_due, batch_due]
            .into_iter()
            .flatten()
            .min()
            .map(|due| std::time::Duration::from_millis(due.saturating_sub(now).max(0) as u64)),
    })
}
