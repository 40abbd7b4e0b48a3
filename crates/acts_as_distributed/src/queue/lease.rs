//! A worker's lease on a claimed batch, renewed while its handlers work, and settled in one
//! transaction at the end: the batch row deleted (the derived position moves with it), failures
//! and given-back events written as delivery rows. Every change is made only where the lease is still this
//! worker's.

use super::state::DeliveryState;
use crate::backend::{bound_transaction, now_sql};
use crate::error::Result;
use crate::sql::{Sql, ms};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How one event of a batch ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Handled.
    Done(i64),
    /// Failed: tried again after `retry_in`, or dead when it is `None`.
    Failed {
        id: i64,
        retry_in: Option<Duration>,
        error: String,
    },
    /// Not started (its object is held back, or the worker stops): given back without counting
    /// the attempt.
    Released(i64),
}

impl Outcome {
    /// The event.
    pub(crate) fn id(&self) -> i64 {
        match self {
            Outcome::Done(id) | Outcome::Released(id) | Outcome::Failed { id, .. } => *id,
        }
    }
}

/// What one claim leased: delivery rows (retries, expired leases, waiting events) and at most
/// one batch row (new events), with each event's `seq` and object for the rows a failure writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Held {
    pub rows: Vec<i64>,
    pub batch: Option<i64>,
    pub events: HashMap<i64, (i64, String, String)>,
}

/// The lease of one worker (`owner`) of `consumer` on the events of one claimed batch.
#[derive(Debug, Clone)]
pub(crate) struct BatchLease {
    db: DatabaseConnection,
    consumer: Arc<str>,
    owner: Arc<str>,
    held: Held,
    duration: Duration,
    deadline: Deadline,
}

/// Until when the worker knows it holds a lease, on its own monotonic clock: from the moment it
/// asked for the lease (or for its renewal) plus nine tenths of the lease, and never again once
/// a renewal found the lease taken. A worker paused past it (SIGSTOP, a stalled runtime) finds
/// it passed when it resumes, and starts nothing more of the batch.
#[derive(Debug, Clone)]
pub(crate) struct Deadline(Arc<std::sync::Mutex<Option<Instant>>>);

impl Deadline {
    fn starting(asked_at: Instant, lease: Duration) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(
            asked_at + safe(lease),
        ))))
    }

    /// Whether the lease is still surely this worker's.
    pub(crate) fn holds(&self) -> bool {
        let until = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|t| Instant::now() < t)
    }

    /// Extends it after a renewal asked for at `asked_at` worked; a deadline already passed
    /// stays passed (the worker cannot know that no one took the lease meanwhile).
    fn extend(&self, asked_at: Instant, lease: Duration) {
        let mut until = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match until.as_mut() {
            Some(t) if Instant::now() < *t => *t = (*t).max(asked_at + safe(lease)),
            _ => *until = None,
        }
    }

    fn lose(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The part of a lease a worker counts on: a tenth is left for the time a statement takes.
fn safe(lease: Duration) -> Duration {
    lease.mul_f64(0.9)
}

/// Longest handler error kept; a longer one keeps its start and its end, where the reason
/// usually is.
const MAX_ERROR_CHARS: usize = 4_000;

/// `error`, cut to [`MAX_ERROR_CHARS`] by dropping its middle.
fn cut(error: &str) -> String {
    let count = error.chars().count();
    if count <= MAX_ERROR_CHARS {
        return error.to_owned();
    }
    let keep = (MAX_ERROR_CHARS - 40) / 2;
    let start: String = error.chars().take(keep).collect();
    let end: String = error.chars().skip(count - keep).collect();
    format!("{start} [.. {} characters cut ..] {end}", count - 2 * keep)
}

impl BatchLease {
    /// The lease on what `held` names, asked for at `asked_at`.
    pub(crate) fn new(
        db: DatabaseConnection,
        consumer: Arc<str>,
        owner: Arc<str>,
        held: Held,
        duration: Duration,
        asked_at: Instant,
    ) -> Self {
        Self {
            db,
            consumer,
            owner,
            held,
            duration,
            deadline: Deadline::starting(asked_at, duration),
        }
    }

    /// The owner the lease is in the name of.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// The worker's own view of the lease, which its handlers check before each event.
    pub(crate) fn deadline(&self) -> &Deadline {
        &self.deadline
    }

    /// Whether the lease is still surely this worker's.
    pub(crate) fn holds(&self) -> bool {
        self.deadline.holds()
    }

    /// Extends the batch's leases to the lease duration from now (the database's clock). When
    /// any of them is no longer this worker's (another took it), the whole batch counts as lost.
    /// Returns whether the lease is still held.
    pub(crate) async fn renew(&self) -> Result<bool> {
        let asked_at = Instant::now();
        let b = self.db.get_database_backend();
        let until = format!("{} + {}", now_sql(b), ms(self.duration));
        // A lease that has run out is not renewed, even when no one has taken it yet.
        let mut held = true;
        if !self.held.rows.is_empty() {
            let mut q = Sql::new(&format!(
                "UPDATE distribute_deliveries SET available_at = {until} WHERE available_at > {} AND ",
                now_sql(b)
            ));
            self.push_mine(&mut q, &self.held.rows);
            let renewed = self.db.execute_raw(q.build(b)).await?.rows_affected();
            held &= renewed == self.held.rows.len() as u64;
        }
        if let Some(lo) = self.held.batch {
            let mut q = Sql::new(&format!(
                "UPDATE distribute_batches SET leased_until = {until} WHERE leased_until > {} AND consumer = ",
                now_sql(b)
            ));
            q.bind(&*self.consumer)
                .push(" AND lo = ")
                .bind(lo)
                .push(" AND owner = ")
                .bind(&*self.owner);
            held &= self.db.execute_raw(q.build(b)).await?.rows_affected() == 1;
        }
        if held {
            self.deadline.extend(asked_at, self.duration);
        } else {
            tracing::warn!("a lease of this batch was taken over: starting nothing more of it");
            self.deadline.lose();
        }
        Ok(held)
    }

    /// Records the outcomes in one transaction: the batch row deleted (if it is no longer this
    /// worker's, nothing is recorded: another worker handles its events again, at least once),
    /// a delivery row for each failed or given-back event of the batch, the delivery rows of
    /// handled events deleted and of the others updated (the derived position moves with the
    /// batch row). Returns whether it recorded them.
    pub(crate) async fn settle(&self, outcomes: &[Outcome]) -> Result<bool> {
        let b = self.db.get_database_backend();
        let txn = self.db.begin().await?;
        bound_transaction(&txn, self.duration).await?;
        if let Some(lo) = self.held.batch {
            let mut q = Sql::new("DELETE FROM distribute_batches WHERE consumer = ");
            q.bind(&*self.consumer)
                .push(" AND lo = ")
                .bind(lo)
                .push(" AND owner = ")
                .bind(&*self.owner);
            if txn.execute_raw(q.build(b)).await?.rows_affected() != 1 {
                txn.rollback().await?;
                self.deadline.lose();
                return Ok(false);
            }
        }
        let in_rows: std::collections::HashSet<i64> = self.held.rows.iter().copied().collect();
        let (mut done, mut given, mut new_rows, mut dead) = (vec![], vec![], vec![], vec![]);
        for outcome in outcomes {
            let row = in_rows.contains(&outcome.id());
            match outcome {
                Outcome::Done(id) if row => done.push(*id),
                Outcome::Done(_) => {}
                Outcome::Released(id) if row => given.push(*id),
                Outcome::Failed {
                    id,
                    retry_in,
                    error,
                } if row => {
                    let state = if retry_in.is_some() {
                        DeliveryState::Retry
                    } else {
                        DeliveryState::Dead
                    };
                    let mut set = Sql::new("state = ");
                    set.bind(state)
                        .push(&format!(", available_at = {} + ", now_sql(b)))
                        .bind(retry_in.map_or(0, ms))
                        .push(", last_error = ")
                        .bind(cut(error))
                        .push(&format!(
                            ", lease_owner = NULL, updated_at = {}",
                            now_sql(b)
                        ));
                    if self.update_rows(&txn, &[*id], set).await? == 1 && retry_in.is_none() {
                        dead.push(*id);
                    }
                }
                // Events of the batch row (every one has its `seq` and object in `held`).
                other if self.held.events.contains_key(&other.id()) => new_rows.push(other),
                _ => {}
            }
        }
        if !done.is_empty() {
            let mut q = Sql::new("DELETE FROM distribute_deliveries WHERE ");
            self.push_mine(&mut q, &done);
            txn.execute_raw(q.build(b)).await?;
        }
        if !given.is_empty() {
            let mut set = Sql::new(&format!("available_at = {}", now_sql(b)));
            set.push(&format!(
                ", attempts = attempts - 1, lease_owner = NULL, updated_at = {}",
                now_sql(b)
            ));
            self.update_rows(&txn, &given, set).await?;
        }
        for chunk in new_rows.chunks(500) {
            let mut q = Sql::new(
                "INSERT INTO distribute_deliveries (consumer, event_id, seq, distributed_type, distributed_id, \
                 state, attempts, available_at, lease_owner, last_error, updated_at) VALUES ",
            );
            for (i, outcome) in chunk.iter().enumerate() {
                let id = outcome.id();
                let (seq, ty, oid) = &self.held.events[&id];
                let (state, attempts, delay, error) = match outcome {
                    Outcome::Failed {
                        retry_in: Some(d),
                        error,
                        ..
                    } => (DeliveryState::Retry, 1, ms(*d), Some(cut(error))),
                    Outcome::Failed {
                        retry_in: None,
                        error,
                        ..
                    } => {
                        dead.push(id);
                        (DeliveryState::Dead, 1, 0, Some(cut(error)))
                    }
                    _ => (DeliveryState::Waiting, 0, 0, None),
                };
                q.push(if i == 0 { "(" } else { ", (" })
                    .bind(&*self.consumer)
                    .push(", ")
                    .bind(id)
                    .push(", ")
                    .bind(*seq)
                    .push(", ")
                    .bind(ty.as_str())
                    .push(", ")
                    .bind(oid.as_str())
                    .push(", ")
                    .bind(state)
                    .push(", ")
                    .bind(attempts)
                    .push(&format!(", {} + ", now_sql(b)))
                    .bind(delay)
                    .push(", NULL, ")
                    .bind(error)
                    .push(&format!(", {})", now_sql(b)));
            }
            txn.execute_raw(q.build(b)).await?;
        }
        if !dead.is_empty() {
            let mut q = Sql::new("UPDATE distributes SET error = ");
            q.bind(true)
                .push(" WHERE id IN (")
                .bind_list(dead.iter().copied())
                .push(")");
            txn.execute_raw(q.build(b)).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Appends the condition that picks the delivery rows among `ids` this worker still leases.
    fn push_mine(&self, q: &mut Sql, ids: &[i64]) {
        q.push("consumer = ")
            .bind(&*self.consumer)
            .push(" AND lease_owner = ")
            .bind(&*self.owner)
            .push(" AND state = ")
            .bind(DeliveryState::Leased)
            .push(" AND event_id IN (")
            .bind_list(ids.iter().copied())
            .push(")");
    }

    /// `UPDATE .. SET <set>` on the delivery rows among `ids` this worker still leases (a worker
    /// that lost its lease to another changes nothing); returns how many.
    async fn update_rows<C: ConnectionTrait>(&self, db: &C, ids: &[i64], set: Sql) -> Result<u64> {
        let mut q = Sql::new("UPDATE distribute_deliveries SET ");
        q.append(set);
        q.push(" WHERE ");
        self.push_mine(&mut q, ids);
        Ok(db
            .execute_raw(q.build(db.get_database_backend()))
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_error_keeps_its_start_and_its_end() {
        let error = format!("Reason: {} at the end: culprit", "x".repeat(10_000));
        let kept = cut(&error);
        assert!(kept.chars().count() <= MAX_ERROR_CHARS);
        assert!(kept.starts_with("Reason: "));
        assert!(kept.ends_with("at the end: culprit"));
        assert!(kept.contains("characters cut"));
        assert_eq!(cut("short"), "short");
    }
}
