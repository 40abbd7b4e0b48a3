//! The snapshot hand-over: the events a copy of the source already contains are recorded as
//! handled by the consumer that continues from the log, so they are not replayed.

use super::position::position_sql;
use super::sequencer::sequence_all;
use super::state::DeliveryState;
use crate::error::Result;
use crate::sql::{Sql, now_ms, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection};

/// The events a consumer has not passed yet that are committed as `read` sees the database: a
/// snapshot taken through `read` already holds their effects.
pub(crate) async fn unpassed_events<C: ConnectionTrait>(
    read: &C,
    consumer: &str,
) -> Result<Vec<i64>> {
    Ok(read
        .query_all_raw(stmt(
            read.get_database_backend(),
            &format!(
                "SELECT e.id FROM distributes e, distribute_consumers c \
                 WHERE c.name = ? AND (e.seq IS NULL OR e.seq > {})",
                position_sql("c")
            ),
            vec![consumer.into()],
        ))
        .await?
        .iter()
        .map(|r| r.try_get_by_index::<i64>(0))
        .collect::<Result<_, _>>()?)
}

/// Records `ids` as handled by `consumer` without handing them to it (events whose effects a
/// snapshot copied). Events it already has a delivery of are left as they are.
pub(crate) async fn mark_done(db: &DatabaseConnection, consumer: &str, ids: &[i64]) -> Result<()> {
    let b = db.get_database_backend();
    sequence_all(db).await?;
    for chunk in ids.chunks(1_000) {
        let mut q = Sql::new(
            "INSERT INTO distribute_deliveries (consumer, event_id, seq, distributed_type, distributed_id, \
             state, attempts, available_at, lease_owner, updated_at) SELECT ",
        );
        q.bind(consumer)
            .push(", e.id, e.seq, e.distributed_type, e.distributed_id, ")
            .bind(DeliveryState::Done)
            .push(", 0, 0, NULL, ")
            .bind(now_ms())
            .push(
                " FROM distributes e WHERE NOT EXISTS (SELECT 1 FROM distribute_deliveries d \
                 WHERE d.consumer = ",
            )
            .bind(consumer)
            .push(" AND d.event_id = e.id) AND e.id IN (")
            .bind_list(chunk.iter().copied())
            .push(")");
        db.execute_raw(q.build(b)).await?;
    }
    Ok(())
}
