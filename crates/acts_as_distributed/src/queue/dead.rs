//! Dead events brought back by command.

use super::state::DeliveryState;
use crate::backend;
use crate::error::Result;
use crate::sql::{Sql, now_ms, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection};

/// Brings dead events of `consumer` back (one event, or all); see
/// [`Queue::retry_dead`](super::Queue::retry_dead).
pub(crate) async fn retry_dead(
    db: &DatabaseConnection,
    consumer: &str,
    event_id: Option<i64>,
) -> Result<u64> {
    if !backend::writes_by_key(db) {
        return retry_in_place(db, consumer, event_id).await;
    }
    // MySQL (see `backend::writes_by_key`): the dead deliveries' ids from a plain read, then the
    // same two writes by key, a batch per transaction, in `event_id` order so that it ends.
    let b = db.get_database_backend();
    let mut total = 0;
    let mut after = i64::MIN;
    loop {
        let txn = backend::begin_read_committed(db).await?;
        let mut q = Sql::new("SELECT event_id FROM distribute_deliveries WHERE consumer = ");
        q.bind(consumer)
            .push(" AND state = ")
            .bind(DeliveryState::Dead)
            .push(" AND event_id > ")
            .bind(after);
        if let Some(id) = event_id {
            q.push(" AND event_id = ").bind(id);
        }
        q.push(" ORDER BY event_id LIMIT ")
            .bind(backend::KEYS_PER_STATEMENT as i64);
        let ids: Vec<i64> = txn
            .query_all_raw(q.build(b))
            .await?
            .iter()
            .map(|r| r.try_get_by_index::<i64>(0))
            .collect::<Result<_, _>>()?;
        let Some(&last) = ids.last() else {
            txn.commit().await?;
            return Ok(total);
        };
        let now = now_ms();
        let mut q = Sql::new("UPDATE ");
        q.append(backend::join_keys(
            &ids,
            "distribute_deliveries d",
            "PRIMARY",
        ))
        .push("d.consumer = ")
        .bind(consumer)
        .push(" AND d.event_id = k.id SET d.state = ")
        .bind(DeliveryState::Retry)
        .push(", d.attempts = 0, d.available_at = ")
        .bind(now)
        .push(", d.updated_at = ")
        .bind(now)
        .push(" WHERE d.state = ")
        .bind(DeliveryState::Dead);
        total += txn.execute_raw(q.build(b)).await?.rows_affected();
        // `LEFT JOIN .. IS NULL` rather than `NOT EXISTS`, which MySQL may run as a scan.
        let mut q = Sql::new("UPDATE ");
        q.append(backend::join_keys(&ids, "distributes e", "PRIMARY"))
            .push(
                "e.id = k.id LEFT JOIN distribute_deliveries d FORCE INDEX (idx_deliveries_event) \
                 ON d.event_id = e.id AND d.state = ",
            )
            .bind(DeliveryState::Dead)
            .push(" SET e.error = ")
            .bind(false)
            .push(" WHERE e.error = ")
            .bind(true)
            .push(" AND d.event_id IS NULL");
        txn.execute_raw(q.build(b)).await?;
        txn.commit().await?;
        after = last;
    }
}

/// PostgreSQL and SQLite: one statement for the deliveries, one for `distributes.error` of the
/// events no consumer holds dead any more.
async fn retry_in_place(
    db: &DatabaseConnection,
    consumer: &str,
    event_id: Option<i64>,
) -> Result<u64> {
    let b = db.get_database_backend();
    let now = now_ms();
    let mut q = Sql::new("UPDATE distribute_deliveries SET state = ");
    q.bind(DeliveryState::Retry)
        .push(", attempts = 0, available_at = ")
        .bind(now)
        .push(", updated_at = ")
        .bind(now)
        .push(" WHERE consumer = ")
        .bind(consumer)
        .push(" AND state = ")
        .bind(DeliveryState::Dead);
    if let Some(id) = event_id {
        q.push(" AND event_id = ").bind(id);
    }
    let n = db.execute_raw(q.build(b)).await?.rows_affected();
    db.execute_raw(stmt(
        b,
        "UPDATE distributes SET error = ? WHERE error = ? AND NOT EXISTS \
         (SELECT 1 FROM distribute_deliveries d WHERE d.event_id = distributes.id AND d.state = ?)",
        vec![false.into(), true.into(), DeliveryState::Dead.into()],
    ))
    .await?;
    Ok(n)
}
