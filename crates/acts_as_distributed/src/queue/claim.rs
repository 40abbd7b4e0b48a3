//! Claiming a batch: due retries, expired leases and waiting events first, then new events in
//! `seq` order, leased to one worker in one transaction.

use super::batch::{BatchRow, Leftover, batches_of, dissolve, objects_in};
use super::consumer::{ConsumerConfig, Unless, push_claimable};
use super::lease::{BatchLease, Held};
use super::position::position_sql;
use super::sequencer::last_seq;
use super::state::DeliveryState;
use crate::backend::{bound_transaction, has_returning, now_sql};
use crate::error::{Error, Result};
use crate::event::{Action, Event};
use crate::sql::{Sql, marks, ms, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, QueryResult, TransactionTrait, Value};
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// An event claimed for a consumer: the event, or why its row cannot be read.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub id: i64,
    pub seq: i64,
    pub distributed_type: String,
    pub distributed_id: String,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    pub event: Result<Event, String>,
}

impl Claimed {
    /// The object the event belongs to.
    pub(crate) fn object(&self) -> (String, String) {
        (self.distributed_type.clone(), self.distributed_id.clone())
    }
}

/// What one claim asks for.
pub(crate) struct ClaimRequest<'a> {
    pub consumer: &'a Arc<str>,
    pub owner: &'a Arc<str>,
    pub config: &'a ConsumerConfig,
    pub limit: u64,
    pub lease: Duration,
    /// Attempts before an event is dead, crashes included.
    pub max_attempts: u32,
}

/// One claimed batch: its events, how many new events were parked as waiting, the lease
/// through which the worker settles them, and which of its objects have earlier events in other
/// workers' batches (`deferred`, to be started only once the batches named in `behind` are
/// settled).
pub(crate) struct Claim {
    pub events: Vec<Claimed>,
    pub parked: usize,
    pub lease: BatchLease,
    pub deferred: HashSet<(String, String)>,
    pub behind: Vec<i64>,
}

const EVENT_COLUMNS: &str = "e.id, e.seq, e.distributed_type, e.distributed_id, e.action, e.changes, \
    e.client_id, e.messages, e.created_at, e.format, e.source_txid, e.previous";

fn read_claimed(row: &QueryResult, attempt: u32) -> Result<Claimed, DbErr> {
    let id: i64 = row.try_get("", "id")?;
    let seq: i64 = row.try_get("", "seq")?;
    let distributed_type: String = row.try_get("", "distributed_type")?;
    let distributed_id: String = row.try_get("", "distributed_id")?;
    let event = (|| {
        let action: String = row.try_get("", "action").map_err(|e| e.to_string())?;
        let action: Action = action.parse()?;
        let changes: Json = row
            .try_get("", "changes")
            .map_err(|e| format!("`changes` is not valid JSON: {e}"))?;
        if !changes.is_object() {
            return Err(format!("`changes` must be a JSON object, found {changes}"));
        }
        let previous: Option<Json> = row
            .try_get("", "previous")
            .map_err(|e| format!("`previous` is not valid JSON: {e}"))?;
        if previous.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(format!(
                "`previous` must be NULL or a JSON object, found {}",
                previous.unwrap_or_default()
            ));
        }
        Ok(Event {
            id,
            seq,
            distributed_type: distributed_type.clone(),
            distributed_id: distributed_id.clone(),
            action,
            changes,
            previous,
            client_id: row.try_get("", "client_id").map_err(|e| e.to_string())?,
            messages: row.try_get("", "messages").map_err(|e| e.to_string())?,
            created_at: row.try_get("", "created_at").map_err(|e| e.to_string())?,
            source_txid: row.try_get("", "source_txid").map_err(|e| e.to_string())?,
            format: row.try_get("", "format").map_err(|e| e.to_string())?,
            attempt,
        })
    })();
    Ok(Claimed {
        id,
        seq,
        distributed_type,
        distributed_id,
        attempt,
        event,
    })
}

/// A 0/1 column computed by a `CASE` (an `i32` on PostgreSQL, an `i64` elsewhere).
fn flag(row: &QueryResult, column: &str) -> Result<i64, DbErr> {
    row.try_get::<i64>("", column)
        .or_else(|_| row.try_get::<i32>("", column).map(i64::from))
}

/// Appends a condition on `e` (an alias of `distributes`): every consumer of `after` has handled
/// the event (it is below that consumer's position without a delivery row, or its delivery is
/// done).
fn push_after_ok(q: &mut Sql, after: &[String]) {
    q.push("1 = 1");
    for other in after {
        q.push(&format!(
            " AND (e.seq <= (SELECT {} FROM distribute_consumers c WHERE c.name = ",
            position_sql("c")
        ))
        .bind(other.as_str())
        .push(") OR EXISTS (SELECT 1 FROM distribute_deliveries a WHERE a.consumer = ")
        .bind(other.as_str())
        .push(" AND a.event_id = e.id AND a.state = ")
        .bind(DeliveryState::Done)
        .push(")) AND NOT EXISTS (SELECT 1 FROM distribute_deliveries a WHERE a.consumer = ")
        .bind(other.as_str())
        .push(" AND a.event_id = e.id AND a.state <> ")
        .bind(DeliveryState::Done)
        .push(")");
    }
}

/// Ends as dead the deliveries of `consumer` whose lease ran out under their worker
/// `max_attempts` times; returns whether other such deliveries (of stopped workers, with
/// attempts left) remain.
async fn crash_accounting<C: ConnectionTrait>(
    txn: &C,
    consumer: &str,
    now: i64,
    max_attempts: u32,
) -> Result<bool> {
    // `now` is the database's clock, read when the claim took its lock.
    let b = txn.get_database_backend();
    let stranded = |q: &mut Sql| {
        q.bind(consumer)
            .push(" AND state = ")
            .bind(DeliveryState::Leased)
            .push(" AND lease_owner IS NOT NULL AND available_at <= ")
            .bind(now);
    };
    // One read on the happy path (it finds nothing): the stranded leases with their attempts.
    let mut q = Sql::new("SELECT event_id, attempts FROM distribute_deliveries WHERE consumer = ");
    stranded(&mut q);
    let rows = txn.query_all_raw(q.build(b)).await?;
    let mut exhausted = Vec::new();
    for row in &rows {
        let attempts: i32 = row.try_get("", "attempts")?;
        if attempts.max(0) as u32 >= max_attempts {
            exhausted.push(row.try_get::<i64>("", "event_id")?);
        }
    }
    if !exhausted.is_empty() {
        tracing::warn!(events = ?exhausted, consumer, "events whose workers stopped on every attempt are dead");
        let mut q = Sql::new("UPDATE distribute_deliveries SET state = ");
        q.bind(DeliveryState::Dead)
            .push(", last_error = ")
            .bind(format!(
                "the worker handling it stopped before finishing (a crash, a kill, a pause or a lost \
                 connection) on each of its {max_attempts} attempts"
            ))
            .push(", lease_owner = NULL, updated_at = ")
            .bind(now)
            .push(" WHERE consumer = ");
        stranded(&mut q);
        q.push(" AND event_id IN (")
            .bind_list(exhausted.iter().copied())
            .push(")");
        txn.execute_raw(q.build(b)).await?;
        let mut q = Sql::new("UPDATE distributes SET error = ");
        q.bind(true)
            .push(" WHERE id IN (")
            .bind_list(exhausted.iter().copied())
            .push(")");
        txn.execute_raw(q.build(b)).await?;
    }
    Ok(rows.len() > exhausted.len())
}

/// Takes the consumer's lock (its row) and reads, on the database's clock, when it was taken and
/// how far the consumer has claimed. Times start once the lock is held, so waiting for it does
/// not shorten the lease.
async fn lock_consumer<C: ConnectionTrait>(txn: &C, consumer: &str) -> Result<(i64, i64)> {
    let b = txn.get_database_backend();
    let mut q = Sql::new(&format!(
        "UPDATE distribute_consumers SET claimed_at = {} WHERE name = ",
        now_sql(b)
    ));
    q.bind(consumer);
    let row = if has_returning(txn) {
        q.push(" RETURNING claimed_at, claimed_to");
        txn.query_one_raw(q.build(b)).await?
    } else {
        let locked = txn.execute_raw(q.build(b)).await?.rows_affected();
        if locked == 0 {
            None
        } else {
            txn.query_one_raw(stmt(
                b,
                "SELECT claimed_at, claimed_to FROM distribute_consumers WHERE name = ?",
                vec![consumer.into()],
            ))
            .await?
        }
    };
    let row = row.ok_or_else(|| Error::UnknownConsumer {
        consumer: consumer.to_owned(),
    })?;
    Ok((
        row.try_get("", "claimed_at")?,
        row.try_get("", "claimed_to")?,
    ))
}

/// Leases up to `limit` events to `owner`: first the due retries, expired leases and waiting
/// events (delivery rows), then new events above the consumer's `claimed_to` in `seq` order, as
/// one batch row. A new event whose object is held back (see
/// [`DeadEvents::holds`](super::DeadEvents)) or that an `after` consumer has not handled yet is
/// parked as `waiting`, and so are the later events of its object in the batch, so that they
/// never fill a later claim's window. Batches whose worker stopped are turned into delivery rows
/// first. Claims of one consumer are serialized by a lock on its row.
pub(crate) async fn claim(db: &DatabaseConnection, req: &ClaimRequest<'_>) -> Result<Claim> {
    let b = db.get_database_backend();
    let consumer: &str = req.consumer;
    let owner: &str = req.owner;
    let asked_at = std::time::Instant::now();
    let txn = db.begin().await?;
    bound_transaction(&txn, req.lease).await?;
    let (now, claimed_to) = lock_consumer(&txn, consumer).await?;
    let until = now.saturating_add(ms(req.lease));
    // Read before the new events, so that every event up to it is among those this claim sees.
    let horizon = last_seq(&txn).await?;

    // Batches whose lease ran out (their worker stopped, or was paused) become delivery rows,
    // whose attempts count; a batch of this worker's own that it could not settle is given back.
    let mut others = Vec::new();
    for batch in batches_of(&txn, consumer).await? {
        if batch.owner == owner && batch.leased_until > now {
            dissolve(&txn, consumer, req.config, &batch, Leftover::Given).await?;
        } else if batch.leased_until <= now {
            dissolve(&txn, consumer, req.config, &batch, Leftover::Stranded).await?;
        } else {
            others.push(batch);
        }
    }

    // A lease that ran out while its worker still owned it means that worker stopped before
    // finishing (a crash, a kill, a pause, a lost connection). Such attempts count: an event whose
    // attempts are used up that way is dead, like one whose handler kept failing.
    let crashed = crash_accounting(&txn, consumer, now, req.max_attempts).await?;
    // While stopped workers' events are about, they are taken one at a time, so that the
    // attempts of an event that kills its worker are its own and not those of its batch.
    let limit = if crashed { 1 } else { req.limit };

    let mut claimed = claim_due(&txn, req, now, until, limit).await?;
    let due_ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();

    // New events above what the consumer has claimed.
    let room = if crashed {
        0
    } else {
        limit.saturating_sub(claimed.len() as u64)
    };
    let mut parked = 0;
    let mut batch = None;
    if room > 0 {
        let mut q = Sql::new(&format!("SELECT {EVENT_COLUMNS}, CASE WHEN "));
        req.config.push_unblocked(&mut q, consumer, "e");
        q.push(" THEN 0 ELSE 1 END AS blocked, CASE WHEN ");
        push_after_ok(&mut q, &req.config.after);
        q.push(" THEN 1 ELSE 0 END AS after_ok FROM distributes e WHERE e.seq > ")
            .bind(claimed_to);
        req.config.push_filter(&mut q);
        // A snapshot's hand-over records events above the position as done.
        q.push(" AND NOT EXISTS (SELECT 1 FROM distribute_deliveries d WHERE d.consumer = ")
            .bind(consumer)
            .push(" AND d.event_id = e.id) ORDER BY e.seq LIMIT ")
            .bind(room as i64);
        let rows = txn.query_all_raw(q.build(b)).await?;
        // An event is parked as waiting when its object is held back, when an `after` consumer
        // has not handled it yet, or behind an event of its object parked in this batch. Parked,
        // it no longer fills the window of later claims.
        let mut waiting: HashSet<(String, String)> = HashSet::new();
        let mut waiting_ids = Vec::new();
        let mut last = claimed_to;
        let mut leased = 0;
        for row in &rows {
            let c = read_claimed(row, 1)?;
            last = last.max(c.seq);
            let object = c.object();
            let held = flag(row, "blocked")? == 1 || flag(row, "after_ok")? == 0;
            if held || waiting.contains(&object) {
                waiting.insert(object);
                waiting_ids.push(c.id);
            } else {
                leased += 1;
                claimed.push(c);
            }
        }
        parked = waiting_ids.len();
        if parked > 0 {
            park(&txn, consumer, &waiting_ids).await?;
        }
        if leased > 0 {
            txn.execute_raw(stmt(
                b,
                &format!(
                    "INSERT INTO distribute_batches (consumer, lo, hi, owner, leased_until, created_at) \
                     VALUES (?, ?, ?, ?, ?, {})",
                    now_sql(b)
                ),
                vec![
                    consumer.into(),
                    claimed_to.into(),
                    last.into(),
                    owner.into(),
                    until.into(),
                ],
            ))
            .await?;
            batch = Some(BatchRow {
                lo: claimed_to,
                hi: last,
                owner: owner.to_owned(),
                leased_until: until,
            });
        }
        // A window that was not full saw every matching event up to the horizon.
        let reach = if (rows.len() as u64) < room {
            last.max(horizon)
        } else {
            last
        };
        if reach > claimed_to {
            txn.execute_raw(stmt(
                b,
                "UPDATE distribute_consumers SET claimed_to = ? WHERE name = ?",
                vec![reach.into(), consumer.into()],
            ))
            .await?;
        }
    }

    // Objects with events in other workers' batches wait for those batches to be settled.
    let busy = objects_in(&txn, req.config, &others).await?;
    let deferred: HashSet<(String, String)> = if busy.is_empty() {
        HashSet::new()
    } else {
        claimed
            .iter()
            .map(Claimed::object)
            .filter(|o| busy.contains(o))
            .collect()
    };
    txn.commit().await?;

    let seqs: HashMap<i64, (i64, String, String)> = claimed
        .iter()
        .map(|c| {
            (
                c.id,
                (c.seq, c.distributed_type.clone(), c.distributed_id.clone()),
            )
        })
        .collect();
    let lease = BatchLease::new(
        db.clone(),
        req.consumer.clone(),
        req.owner.clone(),
        Held {
            rows: due_ids,
            batch: batch.map(|b| b.lo),
            events: seqs,
        },
        req.lease,
        asked_at,
    );
    Ok(Claim {
        events: claimed,
        parked,
        lease,
        deferred,
        behind: others.iter().map(|b| b.lo).collect(),
    })
}

/// Leases the due retries, expired leases and waiting events whose object is free (delivery
/// rows), up to `limit`.
async fn claim_due<C: ConnectionTrait>(
    txn: &C,
    req: &ClaimRequest<'_>,
    now: i64,
    until: i64,
    limit: u64,
) -> Result<Vec<Claimed>> {
    let b = txn.get_database_backend();
    let consumer: &str = req.consumer;
    let owner: &str = req.owner;
    let mut q = Sql::new(&format!(
        "SELECT {EVENT_COLUMNS}, d.attempts FROM distribute_deliveries d \
         JOIN distributes e ON e.id = d.event_id WHERE d.consumer = "
    ));
    q.bind(consumer).push(" AND d.state IN ");
    push_claimable(&mut q);
    q.push(" AND d.available_at <= ").bind(now).push(" AND ");
    req.config
        .push_unblocked_but(&mut q, consumer, "d", Unless::DueAt(now));
    if !req.config.after.is_empty() {
        // A waiting event may wait for an `after` consumer: only once that one has handled it.
        q.push(" AND (d.state <> ")
            .bind(DeliveryState::Waiting)
            .push(" OR ");
        push_after_ok(&mut q, &req.config.after);
        q.push(")");
    }
    q.push(" ORDER BY d.seq LIMIT ").bind(limit as i64);
    let due = txn.query_all_raw(q.build(b)).await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = due
        .iter()
        .map(|r| r.try_get("", "id"))
        .collect::<Result<_, _>>()?;
    // Re-checked here: a worker whose lease expired may have settled the event meanwhile.
    let mut q = Sql::new("UPDATE distribute_deliveries SET state = ");
    q.bind(DeliveryState::Leased)
        .push(", attempts = attempts + 1, available_at = ")
        .bind(until)
        .push(", lease_owner = ")
        .bind(owner)
        .push(", updated_at = ")
        .bind(now)
        .push(" WHERE consumer = ")
        .bind(consumer)
        .push(" AND state IN ");
    push_claimable(&mut q);
    q.push(" AND available_at <= ")
        .bind(now)
        .push(" AND event_id IN (")
        .bind_list(ids.iter().copied())
        .push(")");
    let taken = txn.execute_raw(q.build(b)).await?.rows_affected();
    let mine: Option<HashSet<i64>> = if taken == ids.len() as u64 {
        None
    } else {
        let mut q = Sql::new("SELECT event_id FROM distribute_deliveries WHERE consumer = ");
        q.bind(consumer)
            .push(" AND lease_owner = ")
            .bind(owner)
            .push(" AND state = ")
            .bind(DeliveryState::Leased)
            .push(" AND available_at = ")
            .bind(until)
            .push(" AND event_id IN (")
            .bind_list(ids.iter().copied())
            .push(")");
        Some(
            txn.query_all_raw(q.build(b))
                .await?
                .iter()
                .map(|r| r.try_get_by_index::<i64>(0))
                .collect::<Result<_, _>>()?,
        )
    };
    let mut claimed = Vec::with_capacity(due.len());
    for row in &due {
        let attempts: i32 = row.try_get("", "attempts")?;
        let c = read_claimed(row, attempts.max(0) as u32 + 1)?;
        if mine.as_ref().is_none_or(|m| m.contains(&c.id)) {
            claimed.push(c);
        }
    }
    Ok(claimed)
}

/// Parks new events as `waiting` delivery rows. The rows copy the event's columns in the
/// database: the statement carries only ids.
async fn park<C: ConnectionTrait>(txn: &C, consumer: &str, ids: &[i64]) -> Result<()> {
    let b = txn.get_database_backend();
    let mut values: Vec<Value> = vec![consumer.into(), DeliveryState::Waiting.into()];
    values.extend(ids.iter().map(|id| Value::from(*id)));
    txn.execute_raw(stmt(
        b,
        &format!(
            "INSERT INTO distribute_deliveries (consumer, event_id, seq, distributed_type, distributed_id, \
             state, attempts, available_at, lease_owner, updated_at) \
             SELECT ?, e.id, e.seq, e.distributed_type, e.distributed_id, ?, 0, 0, NULL, {} \
             FROM distributes e WHERE e.id IN ({})",
            now_sql(b),
            marks(ids.len())
        ),
        values,
    ))
    .await?;
    Ok(())
}
