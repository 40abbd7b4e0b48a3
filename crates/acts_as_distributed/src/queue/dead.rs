//! Dead events brought back by command.

use super::state::DeliveryState;
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
