//! Background workers that consume `distributes`: build, spawn, watch, shut down.
//!
//! - [`builder`](WorkerBuilder): the settings, checked once;
//! - `handler`: the [`Handler`] trait your code implements, and [`HandlerError`];
//! - `batch`: handling one claimed batch (grouping by object, panics, outcomes);
//! - `retry`: the [`RetryPolicy`];
//! - `listen`: the PostgreSQL wake-up.
//!
//! The loop: probe (one cheap statement), sequence new events, claim a batch, handle it while
//! renewing its lease, record the outcomes, advance the position.

mod batch;
mod builder;
mod handler;
mod listen;
mod retry;

pub use builder::WorkerBuilder;
pub use handler::{Handler, HandlerError};
pub use retry::RetryPolicy;

use crate::error::{Error, Result};
use crate::queue::batch::{Batches, batches_state, held_back, held_batches};
use crate::queue::claim::Claimed;
use crate::queue::claim::{ClaimRequest, claim};
use crate::queue::consumer::register;
use crate::queue::lease::{BatchLease, Deadline};
use crate::queue::position::{probe, tidy};
use crate::queue::sequencer::{SEQUENCE_BATCH, sequence, sequence_all};
use batch::{BatchRunner, Outcome};
use builder::WorkerOptions;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// How often an idle worker sweeps its consumer's finished and orphaned delivery rows.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

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
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
}

/// What the worker's task and its handle share.
struct Shared {
    db: DatabaseConnection,
    consumer: Arc<str>,
    owner: Arc<str>,
    options: WorkerOptions,
    batch: Arc<BatchRunner>,
    health: Mutex<WorkerHealth>,
    /// Its last claim beside other workers' batches met mostly their objects.
    crowded: AtomicBool,
    /// Claims it considered giving up to other workers' batches.
    yields: AtomicU32,
    /// When it last swept its consumer's finished and orphaned delivery rows.
    swept_at: Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("consumer", &self.consumer)
            .field("owner", &self.owner)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Whether a worker is doing its job, as [`WorkerHandle::health`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerHealth {
    /// Where the worker stands.
    pub state: WorkerState,
    /// The last error of a worker step (claim, acknowledgement, the database), if any.
    pub last_error: Option<String>,
    /// Steps that failed in a row since the last one that worked.
    pub failures_in_a_row: u32,
    /// When a step last worked.
    pub last_success: Option<DateTime<Utc>>,
    /// Events handled (done, failed or given back) since the worker started.
    pub events: u64,
}

/// Where a worker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkerState {
    /// Registering its consumer.
    #[default]
    Starting,
    /// Claiming and handling; its last step worked.
    Running,
    /// Its last step failed; it tries again after the poll interval.
    Failing,
    /// It has ended (shut down, or stopped by an error nothing can fix: see the handle's result).
    Stopped,
}

impl Worker {
    /// A worker of the consumer `consumer` (created on first start) reading `db`.
    pub fn builder(db: DatabaseConnection, consumer: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder::new(db, consumer.into())
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.shared.consumer
    }

    /// Registers the consumer if needed, then claims and handles one batch. Returns how many
    /// events it took (0 when none were ready). For tests and tools; [`spawn`](Self::spawn)
    /// runs this in a loop.
    pub async fn run_once(&self) -> Result<usize> {
        self.shared.batch.handler.check().await?;
        self.shared.register().await?;
        sequence_all(&self.shared.db).await?;
        Ok(self.shared.cycle(&CancellationToken::new()).await?.0)
    }

    /// Starts the worker on the current tokio runtime. A worker that cannot work at all (its
    /// tables are missing, or its handler's [`check`](Handler::check) fails) stops at once: [`WorkerHandle::is_finished`] turns true and
    /// [`WorkerHandle::shutdown`] returns the error.
    pub fn spawn(self) -> WorkerHandle {
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let shared = self.shared;
        let span =
            tracing::info_span!("worker", consumer = %shared.consumer, owner = %shared.owner);
        let task = tokio::spawn(
            shared
                .clone()
                .run(stop.clone(), abort.clone())
                .instrument(span),
        );
        WorkerHandle {
            stop,
            abort,
            task,
            shared,
        }
    }
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: CancellationToken,
    abort: CancellationToken,
    task: tokio::task::JoinHandle<Result<()>>,
    shared: Arc<Shared>,
}

impl WorkerHandle {
    /// Stops claiming, lets in-flight events finish for up to `timeout`, then gives back the ones
    /// still running (for another worker to take at once), and returns when the worker is gone:
    /// with the error that stopped it, if one did.
    pub async fn shutdown(self, timeout: Duration) -> Result<()> {
        self.stop.cancel();
        let mut task = self.task;
        let ended = match tokio::time::timeout(timeout, &mut task).await {
            Ok(ended) => ended,
            Err(_) => {
                // The handlers are stopped and their events given back; a worker whose database
                // calls hang cannot even do that, and is cut off shortly after.
                self.abort.cancel();
                let grace = timeout.min(Duration::from_secs(2));
                match tokio::time::timeout(grace, &mut task).await {
                    Ok(ended) => ended,
                    Err(_) => {
                        task.abort();
                        return Err(Error::Worker(format!(
                            "the worker did not stop within {:?}: its task was ended; the events \
                             it held go to other workers when their lease runs out",
                            timeout + grace
                        )));
                    }
                }
            }
        };
        ended.map_err(|e| Error::Worker(e.to_string()))?
    }

    /// Whether the worker has stopped.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Whether the worker is doing its job: its state, its last error and how many steps failed
    /// in a row.
    pub fn health(&self) -> WorkerHealth {
        self.shared.health()
    }
}

/// Whether the next step claims (it had work last time, or the probe saw some) or only probes.
#[derive(Debug)]
struct Poll {
    /// The highest `seq` the last claim saw.
    last_seen: i64,
    /// The last claim took events: claim again at once.
    busy: bool,
    /// The last claim was full: a backlog is being drained.
    backlog: bool,
    /// When the last probe ran.
    probed_at: Option<std::time::Instant>,
}

impl Shared {
    fn new(
        db: DatabaseConnection,
        consumer: String,
        handler: Arc<dyn Handler>,
        options: WorkerOptions,
    ) -> Self {
        let batch = Arc::new(BatchRunner {
            handler,
            concurrency: options.concurrency,
            retry: options.retry.clone(),
            dead_events: options.config.dead_events,
        });
        Self {
            db,
            consumer: consumer.into(),
            owner: uuid::Uuid::new_v4().simple().to_string().into(),
            options,
            batch,
            health: Mutex::new(WorkerHealth::default()),
            crowded: AtomicBool::new(false),
            yields: AtomicU32::new(0),
            swept_at: Mutex::new(None),
        }
    }

    fn health(&self) -> WorkerHealth {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update_health(&self, change: impl FnOnce(&mut WorkerHealth)) {
        change(&mut self.health.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn step_worked(&self, events: usize) {
        self.update_health(|h| {
            h.state = WorkerState::Running;
            h.failures_in_a_row = 0;
            h.last_success = Some(Utc::now());
            h.events += events as u64;
        });
    }

    fn step_failed(&self, e: &Error) {
        self.update_health(|h| {
            h.state = WorkerState::Failing;
            h.failures_in_a_row = h.failures_in_a_row.saturating_add(1);
            h.last_error = Some(e.to_string());
        });
    }

    async fn register(&self) -> Result<()> {
        register(
            &self.db,
            &self.consumer,
            Some(&self.options.config),
            self.options.start,
        )
        .await
        .map(|_| ())
    }

    /// Registers the consumer, trying again after each poll interval while the database is
    /// unreachable. Errors no retry can fix (missing tables) end the worker.
    async fn start(&self, stop: &CancellationToken) -> Result<()> {
        if let Err(e) = self.batch.handler.check().await {
            tracing::error!(error = %e, "the handler's check failed; the worker cannot start");
            return Err(e);
        }
        loop {
            match self.register().await {
                Ok(()) => {
                    tracing::info!("consumer registered; worker started");
                    self.step_worked(0);
                    return Ok(());
                }
                Err(e @ (Error::MissingMigration { .. } | Error::Config(_))) => {
                    tracing::error!(error = %e, "the worker cannot start");
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "registering the consumer failed; trying again after the poll interval");
                    self.step_failed(&e);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.options.poll_interval) => {}
            }
        }
    }

    async fn run(self: Arc<Self>, stop: CancellationToken, abort: CancellationToken) -> Result<()> {
        let started = self.start(&stop).await;
        let result = match started {
            Ok(()) => {
                let wake = Arc::new(Notify::new());
                let listener = self
                    .options
                    .listen
                    .then(|| listen::spawn(&self.db, wake.clone(), stop.clone()))
                    .flatten();
                self.poll_loop(&stop, &abort, &wake).await;
                if let Some(listener) = listener {
                    // It ends with `stop`; a panic in it is logged, not raised.
                    if let Err(e) = listener.await {
                        tracing::warn!(error = %e, "the LISTEN task failed");
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        self.update_health(|h| h.state = WorkerState::Stopped);
        tracing::info!("worker stopped");
        result
    }

    async fn poll_loop(&self, stop: &CancellationToken, abort: &CancellationToken, wake: &Notify) {
        let mut poll = Poll {
            last_seen: -1,
            busy: true,
            backlog: false,
            probed_at: None,
        };
        while !stop.is_cancelled() {
            let next_due = match self.step(&mut poll, abort).await {
                Ok(next_due) => next_due,
                Err(e) => {
                    tracing::warn!(error = %e, "worker step failed; trying again after the poll interval");
                    self.step_failed(&e);
                    poll = Poll {
                        last_seen: -1,
                        busy: false,
                        backlog: false,
                        probed_at: None,
                    };
                    None
                }
            };
            if poll.busy {
                continue;
            }
            let mut wait = self.options.poll_interval;
            if let Some(due) = next_due {
                wait = wait.min(due);
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
            }
        }
    }

    /// One probe, and a claim when it may find work. Returns when the next retry or lease expiry
    /// is due.
    async fn step(&self, poll: &mut Poll, abort: &CancellationToken) -> Result<Option<Duration>> {
        // Draining a backlog (its last batch was full), a worker claims again at once and probes
        // (and sequences) once per poll interval.
        let probed_lately = poll
            .probed_at
            .is_some_and(|t| t.elapsed() < self.options.poll_interval);
        if poll.backlog && probed_lately {
            let (n, again) = self.cycle(abort).await?;
            self.step_worked(n);
            poll.busy = again;
            poll.backlog = n as u64 >= self.options.batch_size;
            return Ok(None);
        }
        poll.probed_at = Some(std::time::Instant::now());
        let p = self
            .bounded(
                "the probe",
                probe(&self.db, &self.consumer, &self.options.config),
            )
            .await?;
        if p.unsequenced {
            self.bounded("sequencing", sequence(&self.db, SEQUENCE_BATCH))
                .await?;
        }
        let due = p.next_due.is_some_and(|d| d.is_zero());
        // An `after` consumer also waits for the other consumers' progress, which the probe does
        // not see: it claims once per poll interval.
        let upstream = !self.options.config.after.is_empty();
        if !(poll.busy || p.unsequenced || due || upstream || p.max_seq > poll.last_seen) {
            self.step_worked(0);
            return Ok(p.next_due);
        }
        poll.last_seen = p.max_seq;
        let (n, again) = self.cycle(abort).await?;
        self.step_worked(n);
        poll.busy = again;
        poll.backlog = n as u64 >= self.options.batch_size;
        // A due delivery that could not be taken (its lease was renewed meanwhile) must not make
        // the worker spin: wait for the poll interval.
        Ok(if n == 0 { None } else { p.next_due })
    }

    /// Claims one batch, handles it and records the outcomes. Returns how many events it took
    /// (or parked), and whether to claim again at once.
    async fn cycle(&self, abort: &CancellationToken) -> Result<(usize, bool)> {
        // A worker whose claims mostly met objects of other workers' batches waits for those
        // batches instead of claiming beside them (every eighth claim looks again): with cheap
        // handlers, workers then take turns instead of waiting on each other.
        if self.crowded.load(Ordering::Relaxed)
            && self.yields.fetch_add(1, Ordering::Relaxed) % 8 != 7
        {
            let check = held_batches(&self.db, &self.consumer);
            let behind = self.bounded("a check of other batches", check).await?;
            if !behind.is_empty() {
                self.wait_settled(&behind, None, abort).await?;
                return Ok((0, true));
            }
        }
        let request = ClaimRequest {
            consumer: &self.consumer,
            owner: &self.owner,
            config: &self.options.config,
            limit: self.options.batch_size,
            lease: self.options.lease,
            max_attempts: self.options.retry.attempts(),
        };
        let claim = self.bounded("a claim", claim(&self.db, &request)).await?;
        if !claim.behind.is_empty() {
            let deferred = claim
                .events
                .iter()
                .filter(|c| claim.deferred.contains(&c.object()))
                .count();
            self.crowded
                .store(deferred * 2 >= claim.events.len().max(1), Ordering::Relaxed);
        }
        let n = claim.events.len();
        if n == 0 {
            // Nothing to handle; still move the position over events outside the filter or
            // parked, so that it keeps up (and pruning with it).
            let sweep = {
                let mut at = self.swept_at.lock().unwrap_or_else(|p| p.into_inner());
                let due = at.is_none_or(|t| t.elapsed() >= SWEEP_EVERY);
                if due {
                    *at = Some(std::time::Instant::now());
                }
                due
            };
            let tidied = self
                .bounded("tidying", tidy(&self.db, &self.consumer, sweep))
                .await?;
            let n = claim.parked + tidied as usize;
            return Ok((n, n > 0));
        }
        // While the handlers work, the leases are renewed every third of the lease, so a slow
        // handler keeps its events; a worker that dies stops renewing and loses them.
        let lease = claim.lease;
        let renew = async {
            let every = (self.options.lease / 3).max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(every).await;
                let renewed = tokio::time::timeout(every, lease.renew()).await;
                if let Err(e) = renewed.unwrap_or_else(|_| Err(self.timed_out("a renewal", every)))
                {
                    tracing::warn!(error = %e, "renewing leases failed; trying again");
                }
            }
        };
        let work = self.handle(claim.events, &claim.deferred, &claim.behind, &lease, abort);
        let outcomes = tokio::select! {
            outcomes = work => outcomes,
            never = renew => never,
        };
        if !lease.holds()
            || !self
                .bounded("settling a batch", lease.settle(&outcomes))
                .await?
        {
            // Another worker may hold these events now: record nothing (what was handled comes
            // again, at least once), so no acknowledgement is of an event this worker lost.
            tracing::warn!(
                events = n,
                "the batch's lease was lost or ran out while it was handled; recording none of its outcomes"
            );
            self.update_health(|h| {
                h.last_error = Some("a batch's lease was lost while it was handled".into())
            });
            return Ok((n, true));
        }
        tracing::debug!(
            claimed = n,
            done = outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Done(_)))
                .count(),
            "batch handled"
        );
        Ok((n + claim.parked, true))
    }

    /// `call`, bounded by the lease: a database call that hangs (a lost network, a stalled
    /// server) fails instead, so the worker goes on (with another connection of its pool) and
    /// its shutdown keeps its timeout.
    async fn bounded<T>(&self, what: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let limit = self.options.lease;
        tokio::time::timeout(limit, call)
            .await
            .unwrap_or_else(|_| Err(self.timed_out(what, limit)))
    }

    fn timed_out(&self, what: &str, limit: Duration) -> Error {
        Error::Db(sea_orm::DbErr::Custom(format!(
            "{what} took longer than {limit:?}: the database is unreachable or stalled"
        )))
    }

    /// Waits until the batches named by `behind` are settled; returns whether they were, within
    /// one lease and while `deadline` (the worker's own lease) holds. A batch whose lease ran out
    /// unsettled (its worker stopped) ends the wait with `false`: its events come again first.
    async fn wait_settled(
        &self,
        behind: &[i64],
        deadline: Option<&Deadline>,
        abort: &CancellationToken,
    ) -> Result<bool> {
        let waited = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let check = batches_state(&self.db, &self.consumer, behind);
            match self.bounded("a check of other batches", check).await? {
                Batches::Settled => return Ok(true),
                // Their events come again before the later events of their objects: what waits
                // behind them must not go first.
                Batches::Abandoned => return Ok(false),
                Batches::Held => {}
            }
            if waited.elapsed() >= self.options.lease || deadline.is_some_and(|d| !d.holds()) {
                return Ok(false);
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = abort.cancelled() => return Ok(false),
            }
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Handles a claimed batch. Events of objects that also have events in other workers'
    /// batches (`deferred`, behind the batches `behind`) start only once those batches are
    /// settled, and go back unhandled when their objects are held back by then. With concurrency
    /// 1 the whole batch waits, so that it is handled in `seq` order across objects.
    async fn handle(
        &self,
        events: Vec<Claimed>,
        deferred: &HashSet<(String, String)>,
        behind: &[i64],
        lease: &BatchLease,
        abort: &CancellationToken,
    ) -> Vec<Outcome> {
        let deadline = lease.deadline();
        if deferred.is_empty() {
            return self.batch.run(events, deadline, abort).await;
        }
        let (mut now, waiting): (Vec<_>, Vec<_>) = events
            .into_iter()
            .partition(|c| !deferred.contains(&c.object()));
        let mut outcomes = Vec::new();
        if self.batch.concurrency > 1 {
            outcomes = self
                .batch
                .run(std::mem::take(&mut now), deadline, abort)
                .await;
        }
        let (free, given) = self.free_of(waiting, behind, lease, abort).await;
        outcomes.extend(given);
        now.extend(free);
        outcomes.extend(self.batch.run(now, deadline, abort).await);
        outcomes
    }

    /// Waits for the batches `behind` to be settled; returns the events of `waiting` free to
    /// start then, and the outcomes of those given back (their objects held back, or the batches
    /// not settled within one lease).
    async fn free_of(
        &self,
        waiting: Vec<Claimed>,
        behind: &[i64],
        lease: &BatchLease,
        abort: &CancellationToken,
    ) -> (Vec<Claimed>, Vec<Outcome>) {
        let give_back = |events: Vec<Claimed>| {
            let outcomes = events.iter().map(|c| Outcome::Released(c.id)).collect();
            (Vec::new(), outcomes)
        };
        match self
            .wait_settled(behind, Some(lease.deadline()), abort)
            .await
        {
            Ok(true) => {}
            Ok(false) => return give_back(waiting),
            Err(e) => {
                tracing::warn!(error = %e, "checking other workers' batches failed");
                return give_back(waiting);
            }
        }
        let ids: Vec<i64> = waiting.iter().map(|c| c.id).collect();
        let check = held_back(
            &self.db,
            &self.consumer,
            lease.owner(),
            &self.options.config,
            &ids,
        );
        let held = match self.bounded("a check of held objects", check).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "checking held objects failed");
                return give_back(waiting);
            }
        };
        let (free, held): (Vec<_>, Vec<_>) =
            waiting.into_iter().partition(|c| !held.contains(&c.id));
        (free, held.iter().map(|c| Outcome::Released(c.id)).collect())
    }
}
