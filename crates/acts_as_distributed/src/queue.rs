//! The queue's SQL: sequencing events, registering consumers, claiming, acknowledging, advancing
//! positions, status, retry by command and pruning. `docs/queue.md` explains each statement.
//!
//! All times in the queue tables are milliseconds since the Unix epoch (UTC), from the workers'
//! clocks.

use crate::event::Action;
use crate::handler::Event;
use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement,
    TransactionTrait, Value,
};
use serde_json::Value as Json;
use std::collections::HashSet;
use std::time::Duration;

/// Where a consumer that did not exist yet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// From the oldest event still in `distributes` (the default).
    #[default]
    Oldest,
    /// From the events that become visible after the consumer is registered.
    Now,
}

/// What a dead event does to the later events of its object, for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadEvents {
    /// Hold them back until the dead event is retried and handled (the default: a replica must
    /// not drift).
    #[default]
    Hold,
    /// Move past: later events of the object are delivered; the dead one stays dead.
    Skip,
}

/// A consumer's filter and policies, kept in `distribute_consumers.config` for status and used by
/// every claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ConsumerConfig {
    pub types: Vec<String>,
    pub actions: Vec<Action>,
    pub after: Vec<String>,
    pub dead_events: DeadEvents,
}

impl ConsumerConfig {
    fn to_json(&self) -> String {
        serde_json::json!({
            "types": self.types,
            "actions": self.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            "after": self.after,
            "dead_events": match self.dead_events { DeadEvents::Hold => "hold", DeadEvents::Skip => "skip" },
        })
        .to_string()
    }

    fn from_json(text: &str) -> Self {
        let json: Json = serde_json::from_str(text).unwrap_or_default();
        let strings = |key: &str| -> Vec<String> {
            json[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            types: strings("types"),
            actions: strings("actions")
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            after: strings("after"),
            dead_events: if json["dead_events"] == "skip" {
                DeadEvents::Skip
            } else {
                DeadEvents::Hold
            },
        }
    }

    /// `AND ..` conditions on `e` for the type and action filter, with their values.
    fn filter_sql(&self, values: &mut Vec<Value>) -> String {
        let mut sql = String::new();
        if !self.types.is_empty() {
            sql.push_str(&format!(
                " AND e.distributed_type IN ({})",
                marks(self.types.len())
            ));
            values.extend(self.types.iter().map(|t| Value::from(t.as_str())));
        }
        if !self.actions.is_empty() {
            sql.push_str(&format!(" AND e.action IN ({})", marks(self.actions.len())));
            values.extend(self.actions.iter().map(|a| Value::from(a.as_str())));
        }
        sql
    }

    /// `NOT EXISTS` an earlier delivery of the object of `row` (an alias of `distributes` or
    /// `distribute_deliveries` with `seq`, `distributed_type`, `distributed_id`) that holds it back;
    /// takes the consumer as its one value.
    fn unblocked(&self, row: &str) -> String {
        format!(
            "NOT EXISTS (SELECT 1 FROM distribute_deliveries p WHERE p.consumer = ? \
             AND p.distributed_type = {row}.distributed_type AND p.distributed_id = {row}.distributed_id \
             AND p.seq < {row}.seq AND p.state IN {})",
            self.blocking_states()
        )
    }

    /// The delivery states that hold back later events of the same object.
    fn blocking_states(&self) -> &'static str {
        match self.dead_events {
            DeadEvents::Hold => "('leased', 'retry', 'waiting', 'dead')",
            DeadEvents::Skip => "('leased', 'retry', 'waiting')",
        }
    }
}

/// `?, ?, ?` for `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// A statement in `?` placeholders, numbered `$1, $2, ..` for PostgreSQL.
pub(crate) fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Adds the migration hint to the error a database gives when the queue tables are missing.
fn hint(e: DbErr) -> DbErr {
    let text = e.to_string();
    if text.contains("distribute_")
        && (text.contains("no such table")
            || text.contains("does not exist")
            || text.contains("doesn't exist"))
    {
        DbErr::Custom(format!(
            "{text}: the queue tables are missing; run the migrations of acts_as_distributed_migration"
        ))
    } else {
        e
    }
}

/// The first column of the first row, as a number (`None` for no row or NULL).
async fn scalar<C: ConnectionTrait>(db: &C, statement: Statement) -> Result<Option<i64>, DbErr> {
    Ok(db
        .query_one_raw(statement)
        .await?
        .map(|r| r.try_get_by_index::<Option<i64>>(0))
        .transpose()?
        .flatten())
}

/// Numbers up to `limit` events that became visible since the last run, in `id` order, after
/// every `seq` given before. Returns how many.
pub(crate) async fn sequence(db: &DatabaseConnection, limit: u64) -> Result<u64, DbErr> {
    let b = db.get_database_backend();
    let txn = db.begin().await?;
    // The lock: one sequencer at a time (on SQLite, the write lock).
    txn.execute_raw(stmt(
        b,
        "UPDATE distribute_sequencer SET last_seq = last_seq WHERE id = 1",
        vec![],
    ))
    .await
    .map_err(hint)?;
    let last: i64 = txn
        .query_one_raw(stmt(
            b,
            "SELECT last_seq FROM distribute_sequencer WHERE id = 1",
            vec![],
        ))
        .await?
        .ok_or_else(|| {
            DbErr::Custom("distribute_sequencer has no row: rerun the queue migration".into())
        })?
        .try_get_by_index(0)?;
    let range = txn
        .query_one_raw(stmt(
            b,
            "SELECT MIN(id), MAX(id) FROM \
             (SELECT id FROM distributes WHERE seq IS NULL ORDER BY id LIMIT ?) batch",
            vec![(limit as i64).into()],
        ))
        .await?;
    let bound = |i| -> Result<Option<i64>, DbErr> {
        Ok(range
            .as_ref()
            .map(|r| r.try_get_by_index::<Option<i64>>(i))
            .transpose()?
            .flatten())
    };
    let (Some(low), Some(high)) = (bound(0)?, bound(1)?) else {
        txn.rollback().await?;
        return Ok(0);
    };
    // `seq = id + shift` keeps the id order, starts above every seq given before, and takes one
    // statement whatever the count. Gaps in seq are harmless. An event of this id range that
    // became visible meanwhile gets its seq in this same batch, which no consumer has seen yet.
    let shift = last + 1 - low;
    let numbered = txn
        .execute_raw(stmt(
            b,
            "UPDATE distributes SET seq = id + ? WHERE seq IS NULL AND id >= ? AND id <= ?",
            vec![shift.into(), low.into(), high.into()],
        ))
        .await?
        .rows_affected();
    txn.execute_raw(stmt(
        b,
        "UPDATE distribute_sequencer SET last_seq = ? WHERE id = 1",
        vec![(high + shift).into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(numbered)
}

/// Creates the consumer if it does not exist (at the start `start` says), and records its config.
pub(crate) async fn register(
    db: &DatabaseConnection,
    consumer: &str,
    config: Option<&ConsumerConfig>,
    start: StartFrom,
) -> Result<(), DbErr> {
    let stored = config.cloned().unwrap_or_default().to_json();
    let b = db.get_database_backend();
    let exists = db
        .query_one_raw(stmt(
            b,
            "SELECT 1 FROM distribute_consumers WHERE name = ?",
            vec![consumer.into()],
        ))
        .await
        .map_err(hint)?
        .is_some();
    if !exists {
        let position: i64 = match start {
            StartFrom::Oldest => 0,
            StartFrom::Now => {
                while sequence(db, 10_000).await? > 0 {}
                scalar(
                    db,
                    stmt(
                        b,
                        "SELECT last_seq FROM distribute_sequencer WHERE id = 1",
                        vec![],
                    ),
                )
                .await?
                .unwrap_or(0)
            }
        };
        let inserted = db
            .execute_raw(stmt(
                b,
                "INSERT INTO distribute_consumers (name, position, config, created_at, claimed_at) VALUES (?, ?, ?, ?, ?)",
                vec![consumer.into(), position.into(), stored.clone().into(), now_ms().into(), 0i64.into()],
            ))
            .await;
        // Another worker of the same consumer may have registered it a moment before.
        if let Err(e) = inserted {
            let exists_now = db
                .query_one_raw(stmt(
                    b,
                    "SELECT 1 FROM distribute_consumers WHERE name = ?",
                    vec![consumer.into()],
                ))
                .await?
                .is_some();
            if !exists_now {
                return Err(e);
            }
        }
    }
    if config.is_some() {
        db.execute_raw(stmt(
            b,
            "UPDATE distribute_consumers SET config = ? WHERE name = ?",
            vec![stored.into(), consumer.into()],
        ))
        .await?;
    }
    Ok(())
}

/// An event claimed for a consumer: the event, or why its row cannot be read.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub id: i64,
    pub distributed_type: String,
    pub distributed_id: String,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    pub event: Result<Event, String>,
}

const EVENT_COLUMNS: &str = "e.id, e.seq, e.distributed_type, e.distributed_id, e.action, e.changes, \
    e.client_id, e.messages, e.created_at, e.format, e.source_txid, e.previous";

fn read_claimed(row: &QueryResult, attempt: u32) -> Result<Claimed, DbErr> {
    let id: i64 = row.try_get("", "id")?;
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
            seq: row.try_get("", "seq").map_err(|e| e.to_string())?,
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

/// What one claim asks for.
pub(crate) struct ClaimRequest<'a> {
    pub consumer: &'a str,
    pub owner: &'a str,
    pub config: &'a ConsumerConfig,
    pub limit: u64,
    pub lease: Duration,
}

/// Leases up to `limit` events to `owner`: first the due retries, expired leases and waiting
/// events, then new events in `seq` order. A new event whose object is held back (an earlier
/// event of it is leased, waiting for a retry, waiting, or dead under [`DeadEvents::Hold`]) is
/// parked as `waiting`, so that the position can move past it; one that an `after` consumer has
/// not handled yet is left alone, and so are the later events of its object. Claims of one
/// consumer are serialized by a lock on its row. Returns the claimed events and how many were
/// parked.
pub(crate) async fn claim(
    db: &DatabaseConnection,
    req: &ClaimRequest<'_>,
) -> Result<(Vec<Claimed>, usize), DbErr> {
    let b = db.get_database_backend();
    let txn = db.begin().await?;
    let locked = txn
        .execute_raw(stmt(
            b,
            "UPDATE distribute_consumers SET claimed_at = ? WHERE name = ?",
            vec![now_ms().into(), req.consumer.into()],
        ))
        .await
        .map_err(hint)?;
    if locked.rows_affected() == 0 {
        return Err(DbErr::Custom(format!(
            "consumer `{}` is not registered: start a worker for it first",
            req.consumer
        )));
    }
    // Times start once the lock is held, so waiting for it does not shorten the lease.
    let now = now_ms();
    let until = now.saturating_add(ms(req.lease));
    let position = scalar(
        &txn,
        stmt(
            b,
            "SELECT position FROM distribute_consumers WHERE name = ?",
            vec![req.consumer.into()],
        ),
    )
    .await?
    .unwrap_or(0);

    // Due retries, expired leases and waiting events whose object is free.
    let due = txn
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {EVENT_COLUMNS}, d.attempts FROM distribute_deliveries d \
                 JOIN distributes e ON e.id = d.event_id \
                 WHERE d.consumer = ? AND d.state IN ('leased', 'retry', 'waiting') AND d.available_at <= ? \
                 AND {} ORDER BY d.seq LIMIT ?",
                req.config.unblocked("d")
            ),
            vec![req.consumer.into(), now.into(), req.consumer.into(), (req.limit as i64).into()],
        ))
        .await?;
    let mut claimed = Vec::with_capacity(req.limit as usize);
    if !due.is_empty() {
        let ids: Vec<i64> = due
            .iter()
            .map(|r| r.try_get("", "id"))
            .collect::<Result<_, _>>()?;
        let mut values: Vec<Value> = vec![
            until.into(),
            req.owner.into(),
            now.into(),
            req.consumer.into(),
            now.into(),
        ];
        values.extend(ids.iter().map(|id| Value::from(*id)));
        // Re-checked here: a worker whose lease expired may have settled the event meanwhile.
        txn.execute_raw(stmt(
            b,
            &format!(
                "UPDATE distribute_deliveries SET state = 'leased', attempts = attempts + 1, available_at = ?, \
                 lease_owner = ?, updated_at = ? WHERE consumer = ? AND state IN ('leased', 'retry', 'waiting') \
                 AND available_at <= ? AND event_id IN ({})",
                marks(ids.len())
            ),
            values,
        ))
        .await?;
        let mut values: Vec<Value> = vec![req.consumer.into(), req.owner.into(), until.into()];
        values.extend(ids.iter().map(|id| Value::from(*id)));
        let mine: HashSet<i64> = txn
            .query_all_raw(stmt(
                b,
                &format!(
                    "SELECT event_id FROM distribute_deliveries WHERE consumer = ? AND lease_owner = ? \
                     AND state = 'leased' AND available_at = ? AND event_id IN ({})",
                    marks(ids.len())
                ),
                values,
            ))
            .await?
            .iter()
            .map(|r| r.try_get_by_index::<i64>(0))
            .collect::<Result<_, _>>()?;
        for row in &due {
            let attempts: i32 = row.try_get("", "attempts")?;
            let c = read_claimed(row, attempts.max(0) as u32 + 1)?;
            if mine.contains(&c.id) {
                claimed.push(c);
            }
        }
    }

    // New events above the position.
    let room = req.limit.saturating_sub(claimed.len() as u64);
    let mut parked = 0;
    if room > 0 {
        let mut values: Vec<Value> = vec![req.consumer.into()];
        let mut after_ok = String::from("1 = 1");
        for other in &req.config.after {
            after_ok.push_str(
                " AND (e.seq <= (SELECT position FROM distribute_consumers WHERE name = ?) \
                   OR EXISTS (SELECT 1 FROM distribute_deliveries a WHERE a.consumer = ? AND a.event_id = e.id AND a.state = 'done')) \
                 AND NOT EXISTS (SELECT 1 FROM distribute_deliveries a WHERE a.consumer = ? AND a.event_id = e.id AND a.state <> 'done')",
            );
            values.extend([
                other.as_str().into(),
                other.as_str().into(),
                other.as_str().into(),
            ]);
        }
        values.push(position.into());
        let filter = req.config.filter_sql(&mut values);
        values.push(req.consumer.into());
        values.push((room as i64).into());
        let rows = txn
            .query_all_raw(stmt(
                b,
                &format!(
                    "SELECT {EVENT_COLUMNS}, \
                     CASE WHEN {} THEN 0 ELSE 1 END AS blocked, CASE WHEN {after_ok} THEN 1 ELSE 0 END AS after_ok \
                     FROM distributes e WHERE e.seq > ?{filter} \
                     AND NOT EXISTS (SELECT 1 FROM distribute_deliveries d WHERE d.consumer = ? AND d.event_id = e.id) \
                     ORDER BY e.seq LIMIT ?",
                    req.config.unblocked("e")
                ),
                values,
            ))
            .await?;
        // Objects whose events wait in this batch: behind an event left alone for an `after`
        // consumer (no row: leave the later ones alone too), or behind a parked one.
        let mut left_alone: HashSet<(String, String)> = HashSet::new();
        let mut waiting: HashSet<(String, String)> = HashSet::new();
        let (mut leased_ids, mut waiting_ids) = (Vec::new(), Vec::new());
        for row in &rows {
            let c = read_claimed(row, 1)?;
            let object = (c.distributed_type.clone(), c.distributed_id.clone());
            if left_alone.contains(&object) || flag(row, "after_ok")? == 0 {
                left_alone.insert(object);
                continue;
            }
            if flag(row, "blocked")? == 1 || waiting.contains(&object) {
                waiting.insert(object);
                waiting_ids.push(c.id);
            } else {
                leased_ids.push(c.id);
                claimed.push(c);
            }
        }
        parked = waiting_ids.len();
        // The delivery rows copy the event's columns in the database: the statement carries
        // only ids (a few kilobytes for a batch, where one bound value per column and row made
        // it large enough to stall on the client's socket).
        let deliveries = [
            ("leased", 1i32, until, Some(req.owner), leased_ids),
            ("waiting", 0, 0, None, waiting_ids),
        ];
        for (state, attempts, available_at, owner, ids) in deliveries {
            if ids.is_empty() {
                continue;
            }
            let mut values: Vec<Value> = vec![
                req.consumer.into(),
                state.into(),
                attempts.into(),
                available_at.into(),
                owner.into(),
                now.into(),
            ];
            values.extend(ids.iter().map(|id| Value::from(*id)));
            txn.execute_raw(stmt(
                b,
                &format!(
                    "INSERT INTO distribute_deliveries (consumer, event_id, seq, distributed_type, distributed_id, \
                     state, attempts, available_at, lease_owner, updated_at) \
                     SELECT ?, e.id, e.seq, e.distributed_type, e.distributed_id, ?, ?, ?, ?, ? \
                     FROM distributes e WHERE e.id IN ({})",
                    marks(ids.len())
                ),
                values,
            ))
            .await?;
        }
    }
    txn.commit().await?;
    Ok((claimed, parked))
}

/// The events a consumer has not passed yet that are committed as `read` sees the database: a
/// snapshot taken through `read` already holds their effects.
pub(crate) async fn unpassed_events<C: ConnectionTrait>(
    read: &C,
    consumer: &str,
) -> Result<Vec<i64>, DbErr> {
    read.query_all_raw(stmt(
        read.get_database_backend(),
        "SELECT e.id FROM distributes e, distribute_consumers c \
         WHERE c.name = ? AND (e.seq IS NULL OR e.seq > c.position)",
        vec![consumer.into()],
    ))
    .await
    .map_err(hint)?
    .iter()
    .map(|r| r.try_get_by_index::<i64>(0))
    .collect()
}

/// Records `ids` as handled by `consumer` without handing them to it (events whose effects a
/// snapshot copied). Events it already has a delivery of are left as they are.
pub(crate) async fn mark_done(
    db: &DatabaseConnection,
    consumer: &str,
    ids: &[i64],
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    while sequence(db, 10_000).await? > 0 {}
    for chunk in ids.chunks(1_000) {
        let mut values: Vec<Value> = vec![consumer.into(), now_ms().into(), consumer.into()];
        values.extend(chunk.iter().map(|id| Value::from(*id)));
        db.execute_raw(stmt(
            b,
            &format!(
                "INSERT INTO distribute_deliveries (consumer, event_id, seq, distributed_type, distributed_id, \
                 state, attempts, available_at, lease_owner, updated_at) \
                 SELECT ?, e.id, e.seq, e.distributed_type, e.distributed_id, 'done', 0, 0, NULL, ? \
                 FROM distributes e WHERE NOT EXISTS (SELECT 1 FROM distribute_deliveries d \
                 WHERE d.consumer = ? AND d.event_id = e.id) AND e.id IN ({})",
                marks(chunk.len())
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// Marks events handled.
pub(crate) async fn ack(
    db: &DatabaseConnection,
    consumer: &str,
    owner: &str,
    ids: &[i64],
) -> Result<(), DbErr> {
    let set = "state = 'done', lease_owner = NULL, last_error = NULL, updated_at = ?";
    update_own_leases(db, consumer, owner, ids, set, vec![now_ms().into()]).await?;
    Ok(())
}

/// Updates the deliveries `owner` still leases among `ids` (a worker that lost its lease to
/// another changes nothing).
async fn update_own_leases(
    db: &DatabaseConnection,
    consumer: &str,
    owner: &str,
    ids: &[i64],
    set: &str,
    mut values: Vec<Value>,
) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    values.extend([consumer.into(), owner.into()]);
    values.extend(ids.iter().map(|id| Value::from(*id)));
    let sql = format!(
        "UPDATE distribute_deliveries SET {set} \
         WHERE consumer = ? AND lease_owner = ? AND state = 'leased' AND event_id IN ({})",
        marks(ids.len())
    );
    let done = db
        .execute_raw(stmt(db.get_database_backend(), &sql, values))
        .await?;
    Ok(done.rows_affected())
}

/// Extends the leases `owner` still holds among `ids` to `lease` from now.
pub(crate) async fn renew(
    db: &DatabaseConnection,
    consumer: &str,
    owner: &str,
    ids: &[i64],
    lease: Duration,
) -> Result<u64, DbErr> {
    let until = now_ms().saturating_add(ms(lease));
    update_own_leases(
        db,
        consumer,
        owner,
        ids,
        "available_at = ?",
        vec![until.into()],
    )
    .await
}

/// Records a failure: retry at `retry_at` (ms), or dead when `retry_at` is `None`.
pub(crate) async fn fail(
    db: &DatabaseConnection,
    consumer: &str,
    owner: &str,
    id: i64,
    retry_at: Option<i64>,
    error: &str,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    let (state, at) = match retry_at {
        Some(at) => ("retry", at),
        None => ("dead", now_ms()),
    };
    let error: String = error.chars().take(4_000).collect();
    let set = "state = ?, available_at = ?, last_error = ?, lease_owner = NULL, updated_at = ?";
    let values = vec![state.into(), at.into(), error.into(), now_ms().into()];
    let updated = update_own_leases(db, consumer, owner, &[id], set, values).await?;
    if retry_at.is_none() && updated == 1 {
        db.execute_raw(stmt(
            b,
            "UPDATE distributes SET error = ? WHERE id = ?",
            vec![true.into(), id.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Gives leased events back without counting the attempt, for another worker to take now.
pub(crate) async fn release(
    db: &DatabaseConnection,
    consumer: &str,
    owner: &str,
    ids: &[i64],
) -> Result<(), DbErr> {
    let set = "available_at = ?, attempts = attempts - 1, lease_owner = NULL, updated_at = ?";
    update_own_leases(
        db,
        consumer,
        owner,
        ids,
        set,
        vec![now_ms().into(), now_ms().into()],
    )
    .await?;
    Ok(())
}

/// Moves the consumer's position over every event that is handled, dead, or outside its filter,
/// and deletes the `done` deliveries below it. Returns the new position.
pub(crate) async fn advance(db: &DatabaseConnection, consumer: &str) -> Result<i64, DbErr> {
    let b = db.get_database_backend();
    // Read the horizon first: events sequenced later get a higher seq and cannot be passed over.
    let horizon = scalar(
        db,
        stmt(
            b,
            "SELECT last_seq FROM distribute_sequencer WHERE id = 1",
            vec![],
        ),
    )
    .await?
    .unwrap_or(0);
    let row = db
        .query_one_raw(stmt(
            b,
            "SELECT position, config FROM distribute_consumers WHERE name = ?",
            vec![consumer.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("consumer `{consumer}` is not registered")))?;
    let position: i64 = row.try_get("", "position")?;
    // The stored filter (the one registered last), so that workers of one consumer running
    // different versions never pass over events another of them still takes.
    let config = ConsumerConfig::from_json(&row.try_get::<String>("", "config")?);
    // Every event with a delivery row is settled for the position: the row itself holds it
    // (leased, waiting, failed, dead) until it is done. So the position stops below the first
    // matching event that has no row yet.
    let mut values: Vec<Value> = vec![position.into(), horizon.into()];
    let filter = config.filter_sql(&mut values);
    values.push(consumer.into());
    let pending = scalar(
        db,
        stmt(
            b,
            &format!(
                // ORDER BY .. LIMIT 1 (not MIN) lets the database stop at the first match.
                "SELECT e.seq FROM distributes e WHERE e.seq > ? AND e.seq <= ?{filter} \
                 AND NOT EXISTS (SELECT 1 FROM distribute_deliveries d WHERE d.consumer = ? AND d.event_id = e.id) \
                 ORDER BY e.seq LIMIT 1"
            ),
            values,
        ),
    )
    .await?;
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
            "DELETE FROM distribute_deliveries WHERE consumer = ? AND state = 'done' AND seq <= ?",
            vec![consumer.into(), new_position.into()],
        ))
        .await?;
    }
    Ok(new_position.max(position))
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
) -> Result<Probe, DbErr> {
    let b = db.get_database_backend();
    // Only deliveries a claim could take count as due: one held back behind an earlier event of
    // its object is not, or the worker would spin until that one is done.
    let row = db
        .query_one_raw(stmt(
            b,
            &format!(
                "SELECT (SELECT MAX(seq) FROM distributes) AS max_seq, \
                 (SELECT COUNT(*) FROM (SELECT 1 FROM distributes WHERE seq IS NULL LIMIT 1) u) AS unsequenced, \
                 (SELECT MIN(d.available_at) FROM distribute_deliveries d WHERE d.consumer = ? \
                   AND d.state IN ('leased', 'retry', 'waiting') AND {}) AS next_due",
                config.unblocked("d")
            ),
            vec![consumer.into(), consumer.into()],
        ))
        .await
        .map_err(hint)?
        .ok_or_else(|| DbErr::Custom("the probe returned no row".into()))?;
    Ok(Probe {
        max_seq: row.try_get::<Option<i64>>("", "max_seq")?.unwrap_or(0),
        unsequenced: row.try_get::<i64>("", "unsequenced")? > 0,
        next_due: row.try_get("", "next_due")?,
    })
}

/// Counts of one consumer's events of one type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TypeStatus {
    /// The `distributed_type`.
    pub distributed_type: String,
    /// Matching events not handled yet and not failing (including those leased right now).
    pub pending: u64,
    /// Events that failed and wait for a retry.
    pub errored: u64,
    /// Events that failed for good (kept; see [`Queue::retry_dead`]).
    pub dead: u64,
    /// Events handled and still in `distributes`.
    pub processed: u64,
    /// When the oldest pending event was captured.
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// One consumer's state.
#[derive(Debug, Clone, PartialEq, Default)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Inspect and act on the queue: status, retry of dead events, pruning.
///
/// ```no_run
/// # async fn demo(db: sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
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
    pub async fn sequence(&self) -> Result<u64, DbErr> {
        let mut total = 0;
        loop {
            let n = sequence(&self.db, 10_000).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Registers a consumer ahead of its workers, starting where `start` says. Does nothing for a
    /// consumer that exists.
    pub async fn register_consumer(&self, consumer: &str, start: StartFrom) -> Result<(), DbErr> {
        register(&self.db, consumer, None, start).await
    }

    /// The state of every consumer, per type.
    pub async fn status(&self) -> Result<Vec<ConsumerStatus>, DbErr> {
        let b = self.db.get_database_backend();
        self.sequence().await?;
        let consumers = self
            .db
            .query_all_raw(stmt(
                b,
                "SELECT name, position, config FROM distribute_consumers ORDER BY name",
                vec![],
            ))
            .await
            .map_err(hint)?;
        let mut out = Vec::new();
        for row in consumers {
            let consumer: String = row.try_get("", "name")?;
            let position: i64 = row.try_get("", "position")?;
            let config = ConsumerConfig::from_json(&row.try_get::<String>("", "config")?);
            let mut values: Vec<Value> = vec![
                position.into(),
                position.into(),
                position.into(),
                consumer.as_str().into(),
            ];
            let filter = config.filter_sql(&mut values);
            let rows = self
                .db
                .query_all_raw(stmt(
                    b,
                    &format!(
                        "SELECT e.distributed_type AS t, \
                         COUNT(CASE WHEN (d.state IS NULL AND e.seq > ?) OR d.state IN ('leased', 'waiting') THEN 1 END) AS pending, \
                         COUNT(CASE WHEN d.state = 'retry' THEN 1 END) AS errored, \
                         COUNT(CASE WHEN d.state = 'dead' THEN 1 END) AS dead, \
                         COUNT(CASE WHEN d.state = 'done' OR (d.state IS NULL AND e.seq <= ?) THEN 1 END) AS processed, \
                         MIN(CASE WHEN (d.state IS NULL AND e.seq > ?) OR d.state IN ('leased', 'waiting') THEN e.created_at END) AS oldest \
                         FROM distributes e LEFT JOIN distribute_deliveries d ON d.event_id = e.id AND d.consumer = ? \
                         WHERE e.seq IS NOT NULL{filter} GROUP BY e.distributed_type ORDER BY e.distributed_type"
                    ),
                    values,
                ))
                .await?;
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
                self.blocked(&consumer).await?
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

    async fn blocked(&self, consumer: &str) -> Result<Vec<BlockedObject>, DbErr> {
        let b = self.db.get_database_backend();
        let rows = self
            .db
            .query_all_raw(stmt(
                b,
                "SELECT d.distributed_type, d.distributed_id, d.event_id, d.last_error FROM distribute_deliveries d \
                 WHERE d.consumer = ? AND d.state = 'dead' AND NOT EXISTS (SELECT 1 FROM distribute_deliveries p \
                   WHERE p.consumer = d.consumer AND p.distributed_type = d.distributed_type \
                   AND p.distributed_id = d.distributed_id AND p.state = 'dead' AND p.seq < d.seq) \
                 ORDER BY d.seq",
                vec![consumer.into()],
            ))
            .await?;
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

    /// Brings dead events of `consumer` back (one event, or all when `event_id` is `None`): they
    /// are delivered again at once, with a fresh count of attempts. Returns how many.
    pub async fn retry_dead(&self, consumer: &str, event_id: Option<i64>) -> Result<u64, DbErr> {
        let b = self.db.get_database_backend();
        let mut sql = "UPDATE distribute_deliveries SET state = 'retry', attempts = 0, available_at = ?, updated_at = ? \
                       WHERE consumer = ? AND state = 'dead'"
            .to_owned();
        let now = now_ms();
        let mut values: Vec<Value> = vec![now.into(), now.into(), consumer.into()];
        if let Some(id) = event_id {
            sql.push_str(" AND event_id = ?");
            values.push(id.into());
        }
        let n = self
            .db
            .execute_raw(stmt(b, &sql, values))
            .await
            .map_err(hint)?
            .rows_affected();
        self.db
            .execute_raw(stmt(
                b,
                "UPDATE distributes SET error = ? WHERE error = ? AND NOT EXISTS \
                 (SELECT 1 FROM distribute_deliveries d WHERE d.event_id = distributes.id AND d.state = 'dead')",
                vec![false.into(), true.into()],
            ))
            .await?;
        Ok(n)
    }

    /// Deletes events every consumer has passed (handled, or outside its filter) that were
    /// captured more than `retention` ago, `batch_size` rows per statement, and returns how many.
    /// Events some consumer still holds as failed or dead stay. With no consumer registered,
    /// nothing is pruned.
    pub async fn prune(&self, retention: Duration, batch_size: u64) -> Result<u64, DbErr> {
        let b = self.db.get_database_backend();
        let floor = scalar(
            &self.db,
            stmt(b, "SELECT MIN(position) FROM distribute_consumers", vec![]),
        )
        .await
        .map_err(hint)?;
        let Some(floor) = floor else { return Ok(0) };
        let before = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|r| Utc::now().checked_sub_signed(r))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let batch_size = batch_size.clamp(1, 10_000);
        let mut total = 0;
        loop {
            // The ids first, then a DELETE by id: MySQL runs a DELETE with a subquery on the
            // same table as a full scan per batch.
            let ids: Vec<Value> = self
                .db
                .query_all_raw(stmt(
                    b,
                    "SELECT e.id FROM distributes e WHERE e.seq <= ? AND e.created_at < ? \
                     AND NOT EXISTS (SELECT 1 FROM distribute_deliveries d WHERE d.event_id = e.id AND d.state <> 'done') \
                     ORDER BY e.seq LIMIT ?",
                    vec![floor.into(), before.into(), (batch_size as i64).into()],
                ))
                .await?
                .iter()
                .map(|r| r.try_get_by_index::<i64>(0).map(Value::from))
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                break;
            }
            let sql = format!("DELETE FROM distributes WHERE id IN ({})", marks(ids.len()));
            total += self
                .db
                .execute_raw(stmt(b, &sql, ids))
                .await?
                .rows_affected();
        }
        // Delivery rows of pruned events (`done` rows above some position).
        self.db
            .execute_raw(stmt(
                b,
                "DELETE FROM distribute_deliveries WHERE state = 'done' AND NOT EXISTS \
                 (SELECT 1 FROM distributes e WHERE e.id = distribute_deliveries.event_id)",
                vec![],
            ))
            .await?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let s = stmt(
            DbBackend::Postgres,
            "a = ? AND b IN (?, ?)",
            vec![1.into(), 2.into(), 3.into()],
        );
        assert_eq!(s.sql, "a = $1 AND b IN ($2, $3)");
        let s = stmt(DbBackend::MySql, "a = ?", vec![1.into()]);
        assert_eq!(s.sql, "a = ?");
    }

    #[test]
    fn consumer_config_round_trips_through_json() {
        let config = ConsumerConfig {
            types: vec!["User".into()],
            actions: vec![Action::Create, Action::Destroy],
            after: vec!["indexer".into()],
            dead_events: DeadEvents::Skip,
        };
        assert_eq!(ConsumerConfig::from_json(&config.to_json()), config);
        assert_eq!(
            ConsumerConfig::from_json("not json"),
            ConsumerConfig::default()
        );
    }
}
