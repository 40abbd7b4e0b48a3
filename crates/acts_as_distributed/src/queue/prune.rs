//! Retention: deleting events every consumer has passed, in batches.

use super::position::position_sql;
use super::state::DeliveryState;
use crate::backend;
use crate::error::Result;
use crate::sql::{Sql, marks, scalar, stmt};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};
use std::time::Duration;

/// Deletes events every consumer has passed that were captured more than `retention` ago,
/// `batch_size` rows per statement; returns how many. See [`Queue::prune`](super::Queue::prune).
pub(crate) async fn prune(
    db: &DatabaseConnection,
    retention: Duration,
    batch_size: u64,
) -> Result<u64> {
    let b = db.get_database_backend();
    let floor = scalar(
        db,
        stmt(
            b,
            &format!(
                "SELECT MIN({}) FROM distribute_consumers c",
                position_sql("c")
            ),
            vec![],
        ),
    )
    .await?;
    let Some(floor) = floor else { return Ok(0) };
    let before = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| Utc::now().checked_sub_signed(r))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let batch_size = batch_size.clamp(1, 10_000);
    let done = DeliveryState::Done;
    let by_key = backend::writes_by_key(db);
    let mut total = 0;
    loop {
        // The ids first, then a DELETE by id: MySQL runs a DELETE with a subquery on the
        // same table as a full scan per batch.
        let ids: Vec<i64> = db
            .query_all_raw(stmt(
                b,
                "SELECT e.id FROM distributes e WHERE e.seq <= ? AND e.created_at < ? \
                 AND NOT EXISTS (SELECT 1 FROM distribute_deliveries d WHERE d.event_id = e.id AND d.state <> ?) \
                 ORDER BY e.seq LIMIT ?",
                vec![floor.into(), before.into(), done.into(), (batch_size as i64).into()],
            ))
            .await?
            .iter()
            .map(|r| r.try_get_by_index::<i64>(0))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            break;
        }
        if by_key {
            total += delete_by_key(db, &ids).await?;
        } else {
            let sql = format!("DELETE FROM distributes WHERE id IN ({})", marks(ids.len()));
            let ids = ids.into_iter().map(Value::from).collect();
            total += db.execute_raw(stmt(b, &sql, ids)).await?.rows_affected();
        }
    }
    if by_key {
        return Ok(total);
    }
    // Delivery rows of pruned events (`done` rows above some position).
    db.execute_raw(stmt(
        b,
        "DELETE FROM distribute_deliveries WHERE state = ? AND NOT EXISTS \
         (SELECT 1 FROM distributes e WHERE e.id = distribute_deliveries.event_id)",
        vec![done.into()],
    ))
    .await?;
    Ok(total)
}

/// MySQL (see [`backend::writes_by_key`]): deletes the events `ids` by key, and their delivery
/// rows with them instead of the sweep in [`prune`], which would scan and lock every delivery row
/// and the events it reads. Returns how many events.
async fn delete_by_key(db: &DatabaseConnection, ids: &[i64]) -> Result<u64> {
    let b = db.get_database_backend();
    let mut total = 0;
    for chunk in ids.chunks(backend::KEYS_PER_STATEMENT) {
        let txn = backend::begin_read_committed(db).await?;
        let mut q = Sql::new("DELETE e FROM ");
        q.append(backend::join_keys(chunk, "distributes e", "PRIMARY"))
            .push("e.id = k.id");
        total += txn.execute_raw(q.build(b)).await?.rows_affected();
        let mut q = Sql::new("DELETE d FROM ");
        q.append(backend::join_keys(
            chunk,
            "distribute_deliveries d",
            "idx_deliveries_event",
        ))
        .push("d.event_id = k.id AND d.state = ")
        .bind(DeliveryState::Done);
        txn.execute_raw(q.build(b)).await?;
        txn.commit().await?;
    }
    Ok(total)
}
