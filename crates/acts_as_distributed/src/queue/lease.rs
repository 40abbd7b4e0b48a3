//! A worker's lease on a claimed batch, and what can happen to its events: renewed, handled
//! (acknowledged), failed (retry later or dead), or given back. Every change is made only where
//! the lease is still this worker's.

use super::state::DeliveryState;
use crate::error::Result;
use crate::sql::{Sql, ms, now_ms, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The lease of one worker (`owner`) of `consumer` on the events of one claimed batch.
#[derive(Debug, Clone)]
pub(crate) struct BatchLease {
    db: DatabaseConnection,
    consumer: Arc<str>,
    owner: Arc<str>,
    ids: Vec<i64>,
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

    fn extend(&self, asked_at: Instant, lease: Duration) {
        if let Some(t) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            *t = (*t).max(asked_at + safe(lease));
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

/// Longest handler error kept; longer ones are cut.
const MAX_ERROR_CHARS: usize = 4_000;

impl BatchLease {
    /// The lease on `ids`, asked for at `asked_at`.
    pub(crate) fn new(
        db: DatabaseConnection,
        consumer: Arc<str>,
        owner: Arc<str>,
        ids: Vec<i64>,
        duration: Duration,
        asked_at: Instant,
    ) -> Self {
        Self {
            db,
            consumer,
            owner,
            ids,
            duration,
            deadline: Deadline::starting(asked_at, duration),
        }
    }

    /// The worker's own view of the lease, which its handlers check before each event.
    pub(crate) fn deadline(&self) -> &Deadline {
        &self.deadline
    }

    /// Whether the lease is still surely this worker's.
    pub(crate) fn holds(&self) -> bool {
        self.deadline.holds()
    }

    /// Extends the batch's leases to the lease duration from now. When a lease is no longer this
    /// worker's (another took it), the whole batch counts as lost. Returns how many it extended.
    pub(crate) async fn renew(&self) -> Result<u64> {
        let asked_at = Instant::now();
        let until = now_ms().saturating_add(ms(self.duration));
        let mut set = Sql::new("available_at = ");
        set.bind(until);
        let renewed = self.update_with(&self.ids, set).await?;
        if renewed == self.ids.len() as u64 {
            self.deadline.extend(asked_at, self.duration);
        } else {
            tracing::warn!(
                renewed,
                batch = self.ids.len(),
                "a lease of this batch was taken over: starting nothing more of it"
            );
            self.deadline.lose();
        }
        Ok(renewed)
    }

    /// Marks events handled.
    pub(crate) async fn ack(&self, ids: &[i64]) -> Result<u64> {
        let mut set = Sql::new("state = ");
        set.bind(DeliveryState::Done)
            .push(", lease_owner = NULL, last_error = NULL, updated_at = ")
            .bind(now_ms());
        self.update_with(ids, set).await
    }

    /// Records a failure: retry at `retry_at` (ms), or dead when `retry_at` is `None`.
    pub(crate) async fn fail(&self, id: i64, retry_at: Option<i64>, error: &str) -> Result<()> {
        let (state, at) = match retry_at {
            Some(at) => (DeliveryState::Retry, at),
            None => (DeliveryState::Dead, now_ms()),
        };
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        let mut set = Sql::new("state = ");
        set.bind(state)
            .push(", available_at = ")
            .bind(at)
            .push(", last_error = ")
            .bind(error)
            .push(", lease_owner = NULL, updated_at = ")
            .bind(now_ms());
        let updated = self.update_with(&[id], set).await?;
        if state == DeliveryState::Dead && updated == 1 {
            self.db
                .execute_raw(stmt(
                    self.db.get_database_backend(),
                    "UPDATE distributes SET error = ? WHERE id = ?",
                    vec![true.into(), id.into()],
                ))
                .await?;
        }
        Ok(())
    }

    /// Gives events back without counting the attempt, for another worker to take now.
    pub(crate) async fn release(&self, ids: &[i64]) -> Result<u64> {
        let mut set = Sql::new("available_at = ");
        set.bind(now_ms())
            .push(", attempts = attempts - 1, lease_owner = NULL, updated_at = ")
            .bind(now_ms());
        self.update_with(ids, set).await
    }

    /// `UPDATE .. SET <set>` on the deliveries among `ids` this worker still leases (a worker
    /// that lost its lease to another changes nothing).
    async fn update_with(&self, ids: &[i64], set: Sql) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut q = Sql::new("UPDATE distribute_deliveries SET ");
        q.append(set);
        q.push(" WHERE consumer = ")
            .bind(&*self.consumer)
            .push(" AND lease_owner = ")
            .bind(&*self.owner)
            .push(" AND state = ")
            .bind(DeliveryState::Leased)
            .push(" AND event_id IN (")
            .bind_list(ids.iter().copied())
            .push(")");
        let done = self
            .db
            .execute_raw(q.build(self.db.get_database_backend()))
            .await?;
        Ok(done.rows_affected())
    }
}
