//! Batch leases: a claimed range of new events is one row of `distribute_batches`, not a row per
//! event. The batch `(lo, hi]` of a consumer holds the events of its filter with
//! `lo < seq <= hi` that have no delivery row; ranges of one consumer never overlap, so `lo`
//! names the batch. A batch that ends well leaves nothing behind; only the events that fail or
//! must wait get delivery rows.

use super::consumer::{ConsumerConfig, Unless};
use super::state::DeliveryState;
use crate::backend::now_sql;
use crate::error::Result;
use crate::sql::Sql;
use sea_orm::ConnectionTrait;
use std::collections::HashSet;

/// One row of `distribute_batches`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchRow {
    pub lo: i64,
    pub hi: i64,
    pub owner: String,
    pub leased_until: i64,
}

/// The batches of `consumer` being handled (or left behind by stopped workers).
pub(crate) async fn batches_of<C: ConnectionTrait>(
    db: &C,
    consumer: &str,
) -> Result<Vec<BatchRow>> {
    let mut q =
        Sql::new("SELECT lo, hi, owner, leased_until FROM distribute_batches WHERE consumer = ");
    q.bind(consumer).push(" ORDER BY lo");
    let rows = db.query_all_raw(q.build(db.get_database_backend())).await?;
    rows.iter()
        .map(|r| {
            Ok(BatchRow {
                lo: r.try_get("", "lo")?,
                hi: r.try_get("", "hi")?,
                owner: r.try_get("", "owner")?,
                leased_until: r.try_get("", "leased_until")?,
            })
        })
        .collect()
}

/// How the events of a batch that will not be settled by its worker go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leftover {
    /// Its worker stopped while it held the batch (the lease ran out): each event becomes a
    /// stranded lease of that worker, whose attempt counts (see the claim's crash accounting).
    Stranded,
    /// Given back without counting an attempt (a worker's own batch it could not settle).
    Given,
}

/// Turns the events of `batch` into delivery rows and deletes the batch row; returns how many
/// events it held.
pub(crate) async fn dissolve<C: ConnectionTrait>(
    db: &C,
    consumer: &str,
    config: &ConsumerConfig,
    batch: &BatchRow,
    leftover: Leftover,
) -> Result<u64> {
    let b = db.get_database_backend();
    let (state, attempts, available_at, owner) = match leftover {
        Leftover::Stranded => (
            DeliveryState::Leased,
            1,
            batch.leased_until,
            Some(batch.owner.as_str()),
        ),
        Leftover::Given => (DeliveryState::Waiting, 0, 0, None),
    };
    let mut q = Sql::new(
        "INSERT INTO distribute_deliveries (consumer, event_id, seq, distributed_type, distributed_id, \
         state, attempts, available_at, lease_owner, updated_at) SELECT ",
    );
    q.bind(consumer)
        .push(", e.id, e.seq, e.distributed_type, e.distributed_id, ")
        .bind(state)
        .push(", ")
        .bind(attempts)
        .push(", ")
        .bind(available_at)
        .push(", ")
        .bind(owner)
        .push(&format!(
            ", {} FROM distributes e WHERE e.seq > ",
            now_sql(b)
        ))
        .bind(batch.lo)
        .push(" AND e.seq <= ")
        .bind(batch.hi);
    config.push_filter(&mut q);
    q.push(" AND NOT EXISTS (SELECT 1 FROM distribute_deliveries d WHERE d.consumer = ")
        .bind(consumer)
        .push(" AND d.event_id = e.id)");
    let n = db.execute_raw(q.build(b)).await?.rows_affected();
    let mut q = Sql::new("DELETE FROM distribute_batches WHERE consumer = ");
    q.bind(consumer).push(" AND lo = ").bind(batch.lo);
    db.execute_raw(q.build(b)).await?;
    Ok(n)
}

/// The objects that have events in `batches` (other workers' batches being handled): a claim
/// must not start their later events before those batches are settled.
pub(crate) async fn objects_in<C: ConnectionTrait>(
    db: &C,
    config: &ConsumerConfig,
    batches: &[BatchRow],
) -> Result<HashSet<(String, String)>> {
    if batches.is_empty() {
        return Ok(HashSet::new());
    }
    let mut q =
        Sql::new("SELECT DISTINCT e.distributed_type, e.distributed_id FROM distributes e WHERE (");
    for (i, batch) in batches.iter().enumerate() {
        if i > 0 {
            q.push(" OR ");
        }
        q.push("(e.seq > ")
            .bind(batch.lo)
            .push(" AND e.seq <= ")
            .bind(batch.hi)
            .push(")");
    }
    q.push(")");
    config.push_filter(&mut q);
    let rows = db.query_all_raw(q.build(db.get_database_backend())).await?;
    rows.iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect()
}

/// The batches of `consumer` held under a lease that has not run out (a plain read: it takes no
/// lock, not even SQLite's write lock).
pub(crate) async fn held_batches<C: ConnectionTrait>(db: &C, consumer: &str) -> Result<Vec<i64>> {
    let b = db.get_database_backend();
    let mut q = Sql::new("SELECT lo FROM distribute_batches WHERE consumer = ");
    q.bind(consumer)
        .push(&format!(" AND leased_until > {}", now_sql(b)));
    let rows = db.query_all_raw(q.build(b)).await?;
    rows.iter()
        .map(|r| Ok(r.try_get_by_index::<i64>(0)?))
        .collect()
}

/// Where the batches named by `los` stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batches {
    /// Every one is settled (its row is gone).
    Settled,
    /// Some are still leased.
    Held,
    /// None is leased, but some ran out without being settled: their worker stopped, and their
    /// events come again (from a later claim), before the later events of their objects.
    Abandoned,
}

/// Where the batches of `consumer` named by `los` stand.
pub(crate) async fn batches_state<C: ConnectionTrait>(
    db: &C,
    consumer: &str,
    los: &[i64],
) -> Result<Batches> {
    if los.is_empty() {
        return Ok(Batches::Settled);
    }
    let b = db.get_database_backend();
    let mut q = Sql::new(&format!(
        "SELECT COUNT(*), COUNT(CASE WHEN leased_until > {} THEN 1 END) FROM distribute_batches WHERE consumer = ",
        now_sql(b)
    ));
    q.bind(consumer)
        .push(" AND lo IN (")
        .bind_list(los.iter().copied())
        .push(")");
    let Some(row) = db.query_one_raw(q.build(b)).await? else {
        return Ok(Batches::Settled);
    };
    let (present, held): (i64, i64) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    Ok(match (present, held) {
        (0, _) => Batches::Settled,
        (_, 0) => Batches::Abandoned,
        _ => Batches::Held,
    })
}

/// Which of the events `ids` of `consumer` are held back now by an earlier unfinished delivery
/// of their object (see [`ConsumerConfig::push_unblocked`]) other than those leased to `owner`
/// (the claim's own, handled before them).
pub(crate) async fn held_back<C: ConnectionTrait>(
    db: &C,
    consumer: &str,
    owner: &str,
    config: &ConsumerConfig,
    ids: &[i64],
) -> Result<HashSet<i64>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let mut q = Sql::new("SELECT e.id FROM distributes e WHERE e.id IN (");
    q.bind_list(ids.iter().copied()).push(") AND NOT ");
    config.push_unblocked_but(&mut q, consumer, "e", Unless::LeasedTo(owner));
    let rows = db.query_all_raw(q.build(db.get_database_backend())).await?;
    rows.iter()
        .map(|r| Ok(r.try_get_by_index::<i64>(0)?))
        .collect()
}
