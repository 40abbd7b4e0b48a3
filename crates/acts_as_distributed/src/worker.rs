//! Background workers that consume `distributes`: build, spawn, shut down.

use crate::error::Error;
use crate::event::Action;
use crate::handler::{Event, Handler, HandlerError};
use crate::queue::{self, ClaimRequest, Claimed, ConsumerConfig, DeadEvents, StartFrom};
use crate::retry::{RetryPolicy, random_unit};
use futures_util::FutureExt as _;
use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// A consumer of `distributes`, configured by [`Worker::builder`].
///
/// ```no_run
/// use acts_as_distributed::{HandlerError, Worker};
/// use std::time::Duration;
///
/// # async fn demo(db: sea_orm::DatabaseConnection) -> Result<(), acts_as_distributed::Error> {
/// let handle = Worker::builder(db, "mailer")
///     .types(["User"])
///     .handler(|event: acts_as_distributed::Event| async move {
///         println!("{} {} {}", event.action, event.distributed_type, event.changes);
///         Ok::<_, HandlerError>(())
///     })
///     .build()?
///     .spawn();
/// // ...
/// handle.shutdown(Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    consumer: String,
    owner: String,
    config: ConsumerConfig,
    handler: Arc<dyn Handler>,
    batch_size: u64,
    concurrency: usize,
    lease: Duration,
    retry: RetryPolicy,
    poll_interval: Duration,
    listen: bool,
    start: StartFrom,
}

/// Builds a [`Worker`]. Every setting but the handler has a default.
#[must_use = "a builder does nothing until `build` is called"]
pub struct WorkerBuilder {
    db: DatabaseConnection,
    consumer: String,
    config: ConsumerConfig,
    handler: Option<Arc<dyn Handler>>,
    batch_size: u64,
    concurrency: usize,
    lease: Duration,
    retry: RetryPolicy,
    poll_interval: Duration,
    listen: bool,
    start: StartFrom,
}

impl Worker {
    /// A worker of the consumer `consumer` (created on first start) reading `db`.
    pub fn builder(db: DatabaseConnection, consumer: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder {
            db,
            consumer: consumer.into(),
            config: ConsumerConfig::default(),
            handler: None,
            batch_size: 100,
            concurrency: 1,
            lease: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_secs(1),
            listen: true,
            start: StartFrom::Oldest,
        }
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// Registers the consumer if needed, then claims and handles one batch. Returns how many
    /// events it took (0 when none were ready). For tests and tools; [`spawn`](Self::spawn)
    /// runs this in a loop.
    pub async fn run_once(&self) -> Result<usize, Error> {
        self.inner.register().await?;
        while queue::sequence(&self.inner.db, 10_000).await? > 0 {}
        Ok(self.inner.cycle(&CancellationToken::new()).await?)
    }

    /// Starts the worker on the current tokio runtime.
    pub fn spawn(self) -> WorkerHandle {
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let inner = self.inner;
        let span = tracing::info_span!("worker", consumer = %inner.consumer, owner = %inner.owner);
        let task = tokio::spawn(inner.run(stop.clone(), abort.clone()).instrument(span));
        WorkerHandle { stop, abort, task }
    }
}

impl WorkerBuilder {
    /// Only events of these `distributed_type`s (default: all).
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Only these actions (default: all).
    pub fn actions(mut self, actions: impl IntoIterator<Item = Action>) -> Self {
        self.config.actions = actions.into_iter().collect();
        self
    }

    /// Receive an event only after these consumers have handled it.
    pub fn after<I, S>(mut self, consumers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.after = consumers.into_iter().map(Into::into).collect();
        self
    }

    /// What a dead event does to its object's later events (default: [`DeadEvents::Hold`]).
    pub fn dead_events(mut self, policy: DeadEvents) -> Self {
        self.config.dead_events = policy;
        self
    }

    /// Where the consumer starts when it does not exist yet (default: [`StartFrom::Oldest`]).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// The code that handles each event: an async closure or an `Arc<dyn Handler>`.
    pub fn handler(mut self, handler: impl Handler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Events claimed at a time (default 100).
    pub fn batch_size(mut self, n: u64) -> Self {
        self.batch_size = n;
        self
    }

    /// Objects handled at once within a batch (default 1). Events of one object are always
    /// handled one after the other, in order.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// How long a claimed event stays this worker's without news (default 60 s). A running
    /// worker renews the leases of the batch it is handling every third of this, so handlers may
    /// take longer; a worker that dies stops renewing, and after this long another worker takes
    /// its events.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The retry policy (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How often an idle worker checks for work (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// On PostgreSQL, wake at once on `NOTIFY distributes` (default on; ignored elsewhere).
    pub fn listen(mut self, on: bool) -> Self {
        self.listen = on;
        self
    }

    /// Checks the settings and builds the worker.
    ///
    /// # Errors
    /// [`Error::Config`] for a missing handler, an empty or over-long consumer name, or zero
    /// batch size, concurrency, lease or poll interval.
    pub fn build(self) -> Result<Worker, Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.consumer.trim().is_empty() || self.consumer.len() > 255 {
            return bad(format!(
                "the consumer name must have 1 to 255 characters, got {:?}",
                self.consumer
            ));
        }
        let Some(handler) = self.handler else {
            return bad(format!(
                "worker `{}` has no handler: call .handler(|event| async move {{ .. }})",
                self.consumer
            ));
        };
        if self.batch_size == 0 || self.batch_size > 1_000 || self.concurrency == 0 {
            return bad(format!(
                "batch_size must be 1 to 1,000 (got {}) and concurrency at least 1 (got {})",
                self.batch_size, self.concurrency
            ));
        }
        if self.lease.is_zero() || self.poll_interval.is_zero() {
            return bad("lease and poll_interval must be longer than zero".into());
        }
        if self.config.after.iter().any(|a| a == &self.consumer) {
            return bad(format!(
                "consumer `{}` cannot wait for itself in `after`",
                self.consumer
            ));
        }
        Ok(Worker {
            inner: Arc::new(Inner {
                db: self.db,
                owner: uuid::Uuid::new_v4().simple().to_string(),
                consumer: self.consumer,
                config: self.config,
                handler,
                batch_size: self.batch_size,
                concurrency: self.concurrency,
                lease: self.lease,
                retry: self.retry,
                poll_interval: self.poll_interval,
                listen: self.listen,
                start: self.start,
            }),
        })
    }
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: CancellationToken,
    abort: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops claiming, lets in-flight events finish for up to `timeout`, then gives back the ones
    /// still running (for another worker to take at once), and returns when the worker is gone.
    pub async fn shutdown(self, timeout: Duration) -> Result<(), Error> {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            self.abort.cancel();
            return task.await.map_err(|e| Error::Worker(e.to_string()));
        }
        Ok(())
    }

    /// Whether the worker has stopped.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// How one event ended, within a batch.
enum Outcome {
    Done(i64),
    Failed {
        id: i64,
        retry_at: Option<i64>,
        error: String,
    },
    Released(i64),
}

impl Inner {
    async fn register(&self) -> Result<(), DbErr> {
        queue::register(&self.db, &self.consumer, Some(&self.config), self.start).await
    }

    async fn run(self: Arc<Self>, stop: CancellationToken, abort: CancellationToken) {
        let wake = Arc::new(Notify::new());
        if self.listen && self.db.get_database_backend() == DbBackend::Postgres {
            tokio::spawn(listen(self.db.clone(), wake.clone(), stop.clone()));
        }
        let mut registered = false;
        let mut last_seen = -1;
        let mut force = true;
        while !stop.is_cancelled() {
            let step = async {
                if stop.is_cancelled() {
                    return Ok(None);
                }
                if !registered {
                    self.register().await?;
                    registered = true;
                    tracing::info!("consumer registered; worker started");
                }
                let p = queue::probe(&self.db, &self.consumer, &self.config).await?;
                if p.unsequenced {
                    queue::sequence(&self.db, 10_000).await?;
                }
                let due = p.next_due.is_some_and(|d| d <= queue::now_ms());
                // An `after` consumer also waits for the other consumers' progress, which the
                // probe does not see: it claims once per poll interval.
                let upstream = !self.config.after.is_empty();
                if force || p.unsequenced || due || upstream || p.max_seq > last_seen {
                    last_seen = p.max_seq;
                    let n = self.cycle(&abort).await?;
                    force = n > 0;
                    // A due delivery that could not be taken (its lease was renewed meanwhile)
                    // must not make the worker spin: wait for the poll interval.
                    return Ok::<_, DbErr>(if n == 0 { None } else { p.next_due });
                }
                force = false;
                Ok(p.next_due)
            };
            let next_due = match step.await {
                Ok(next_due) => next_due,
                Err(e) => {
                    // Try again after the poll interval (a full cycle, whatever the probe says).
                    tracing::warn!(error = %e, "worker step failed; trying again after the poll interval");
                    last_seen = -1;
                    force = false;
                    None
                }
            };
            if force {
                continue;
            }
            let mut wait = self.poll_interval;
            if let Some(due) = next_due {
                let until =
                    Duration::from_millis(due.saturating_sub(queue::now_ms()).max(0) as u64);
                wait = wait.min(until);
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
            }
        }
        tracing::info!("worker stopped");
    }

    /// Claims one batch, handles it, records the outcomes and advances the position.
    async fn cycle(self: &Arc<Self>, abort: &CancellationToken) -> Result<usize, DbErr> {
        let claimed = queue::claim(
            &self.db,
            &ClaimRequest {
                consumer: &self.consumer,
                owner: &self.owner,
                config: &self.config,
                limit: self.batch_size,
                lease: self.lease,
            },
        )
        .await?;
        let (claimed, parked) = claimed;
        let n = claimed.len();
        if n == 0 {
            // Nothing to handle; still move the position over events outside the filter or
            // parked, so that it keeps up (and pruning with it).
            queue::advance(&self.db, &self.consumer).await?;
            return Ok(parked);
        }
        // While the handlers work, the leases are renewed every third of the lease, so a slow
        // handler keeps its events; a worker that dies stops renewing and loses them.
        let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        let renew = async {
            let every = (self.lease / 3).max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) =
                    queue::renew(&self.db, &self.consumer, &self.owner, &ids, self.lease).await
                {
                    tracing::warn!(error = %e, "renewing leases failed; trying again");
                }
            }
        };
        let outcomes = tokio::select! {
            outcomes = self.handle_batch(claimed, abort) => outcomes,
            never = renew => never,
        };
        let mut done = Vec::new();
        let mut released = Vec::new();
        // Every outcome is recorded even when one write fails, so no event stays leased.
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Outcome::Done(id) => done.push(id),
                Outcome::Released(id) => released.push(id),
                Outcome::Failed {
                    id,
                    retry_at,
                    error,
                } => {
                    let r =
                        queue::fail(&self.db, &self.consumer, &self.owner, id, retry_at, &error)
                            .await;
                    first_error = first_error.or(r.err());
                }
            }
        }
        let r = queue::ack(&self.db, &self.consumer, &self.owner, &done).await;
        first_error = first_error.or(r.err());
        let r = queue::release(&self.db, &self.consumer, &self.owner, &released).await;
        first_error = first_error.or(r.err());
        if let Some(e) = first_error {
            return Err(e);
        }
        queue::advance(&self.db, &self.consumer).await?;
        tracing::debug!(
            claimed = n,
            done = done.len(),
            released = released.len(),
            "batch handled"
        );
        Ok(n + parked)
    }

    /// Handles a batch: objects in parallel (up to `concurrency`), each object's events in order.
    /// On `abort`, stops the handlers and gives their events back.
    async fn handle_batch(
        self: &Arc<Self>,
        claimed: Vec<Claimed>,
        abort: &CancellationToken,
    ) -> Vec<Outcome> {
        let mut groups: Vec<Vec<Claimed>> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let all_ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        if self.concurrency == 1 {
            // One at a time in sequence order, across objects too: a replica's foreign keys need
            // a parent's create before its children's.
            let mut claimed = claimed;
            claimed.sort_by_key(|c| c.event.as_ref().map_or(i64::MAX, |e| e.seq));
            groups.push(claimed);
        } else {
            for c in claimed {
                let key = (c.distributed_type.clone(), c.distributed_id.clone());
                let i = *index.entry(key).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
                groups[i].push(c);
            }
        }
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        for group in groups {
            let this = self.clone();
            let permits = permits.clone();
            let at_once = self.concurrency == 1 && self.handler.handles_batches();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if at_once {
                    this.handle_at_once(group).await
                } else {
                    this.handle_group(group).await
                }
            });
        }
        let mut outcomes = Vec::new();
        loop {
            tokio::select! {
                next = tasks.join_next() => match next {
                    Some(Ok(mut group_outcomes)) => outcomes.append(&mut group_outcomes),
                    Some(Err(e)) => tracing::error!(error = %e, "an event group task failed"),
                    None => break,
                },
                _ = abort.cancelled() => {
                    tasks.abort_all();
                    while let Some(r) = tasks.join_next().await {
                        if let Ok(mut group_outcomes) = r {
                            outcomes.append(&mut group_outcomes);
                        }
                    }
                    break;
                }
            }
        }
        // Whatever has no outcome (an aborted or failed task) goes back to the queue.
        let settled: std::collections::HashSet<i64> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Done(id) | Outcome::Released(id) | Outcome::Failed { id, .. } => *id,
            })
            .collect();
        outcomes.extend(
            all_ids
                .into_iter()
                .filter(|id| !settled.contains(id))
                .map(Outcome::Released),
        );
        outcomes
    }

    /// Events in order (one object's, or with concurrency 1 the whole batch). After a failure
    /// that holds an object back, the rest of that object's are given back (they wait behind the
    /// failed one).
    async fn handle_group(&self, group: Vec<Claimed>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(group.len());
        let mut held: HashSet<(String, String)> = HashSet::new();
        for c in group {
            let object = (c.distributed_type, c.distributed_id);
            if held.contains(&object) {
                outcomes.push(Outcome::Released(c.id));
                continue;
            }
            let (id, attempt) = (c.id, c.attempt);
            let result = match c.event {
                Err(malformed) => Err(HandlerError::permanent(format!(
                    "malformed event row: {malformed}"
                ))),
                Ok(event) => self.call(event).await,
            };
            match result {
                Ok(()) => outcomes.push(Outcome::Done(id)),
                Err(e) => {
                    let (outcome, holds) = self.failure(id, attempt, &e);
                    outcomes.push(outcome);
                    if holds {
                        held.insert(object);
                    }
                }
            }
        }
        outcomes
    }

    /// A batch handed to a handler that takes batches, in order. Malformed rows fail at once
    /// (and hold their object); the rest go to the handler in one call.
    async fn handle_at_once(&self, group: Vec<Claimed>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(group.len());
        let mut held: HashSet<(String, String)> = HashSet::new();
        let mut events = Vec::with_capacity(group.len());
        for c in group {
            let object = (c.distributed_type, c.distributed_id);
            if held.contains(&object) {
                outcomes.push(Outcome::Released(c.id));
                continue;
            }
            match c.event {
                Ok(event) => events.push(event),
                Err(malformed) => {
                    let e = HandlerError::permanent(format!("malformed event row: {malformed}"));
                    let (outcome, holds) = self.failure(c.id, c.attempt, &e);
                    outcomes.push(outcome);
                    if holds {
                        held.insert(object);
                    }
                }
            }
        }
        let handed: Vec<(i64, u32)> = events.iter().map(|e| (e.id, e.attempt)).collect();
        let span = tracing::debug_span!("handle_batch", events = handed.len());
        let results = match AssertUnwindSafe(self.handler.handle_batch(events))
            .catch_unwind()
            .instrument(span)
            .await
        {
            Ok(results) => results,
            Err(panic) => vec![Err(HandlerError::retry(format!(
                "handler panicked: {}",
                panic_message(&*panic)
            )))],
        };
        let mut results = results.into_iter();
        for (id, attempt) in handed {
            match results.next() {
                Some(Ok(())) => outcomes.push(Outcome::Done(id)),
                Some(Err(e)) => outcomes.push(self.failure(id, attempt, &e).0),
                None => outcomes.push(Outcome::Released(id)),
            }
        }
        outcomes
    }

    /// The outcome of a failed attempt, and whether it holds back the later events of its object.
    fn failure(&self, id: i64, attempt: u32, e: &HandlerError) -> (Outcome, bool) {
        let dead = matches!(e, HandlerError::Permanent(_)) || self.retry.is_exhausted(attempt);
        let retry_at = (!dead).then(|| {
            let delay = self.retry.delay(attempt, random_unit());
            queue::now_ms().saturating_add(delay.as_millis() as i64)
        });
        tracing::warn!(event = id, attempt, dead, error = %e, "handler failed");
        let outcome = Outcome::Failed {
            id,
            retry_at,
            error: e.message().to_owned(),
        };
        (
            outcome,
            !dead || self.config.dead_events == DeadEvents::Hold,
        )
    }

    async fn call(&self, event: Event) -> Result<(), HandlerError> {
        let span = tracing::debug_span!("handle", event = event.id, r#type = %event.distributed_type, action = %event.action, attempt = event.attempt);
        match AssertUnwindSafe(self.handler.handle(event))
            .catch_unwind()
            .instrument(span)
            .await
        {
            Ok(result) => result,
            Err(panic) => Err(HandlerError::retry(format!(
                "handler panicked: {}",
                panic_message(&*panic)
            ))),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Wakes the worker on each `NOTIFY distributes` (PostgreSQL), reconnecting after errors.
async fn listen(db: DatabaseConnection, wake: Arc<Notify>, stop: CancellationToken) {
    use sea_orm::sqlx::postgres::PgListener;
    while !stop.is_cancelled() {
        let listener = async {
            // A connection of its own, not one taken from the application's pool for good.
            let options = db.get_postgres_connection_pool().connect_options();
            let pool = sea_orm::sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with((*options).clone());
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen("distributes").await?;
            Ok::<_, sea_orm::sqlx::Error>(l)
        };
        match listener.await {
            Ok(mut l) => loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    n = l.recv() => match n {
                        Ok(_) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection lost; polling until it is back");
                            break;
                        }
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot LISTEN on distributes; polling instead"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
