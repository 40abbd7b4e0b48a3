//! The stream consumer: a durable JetStream pull consumer that drives any
//! [`Handler`](acts_as_distributed::Handler) (the replicator included), in order per object
//! across several tasks.

use crate::dead::{DeadMessage, record};
use crate::error::{Error, Result};
use crate::payload::Payload;
use acts_as_distributed::{Event, Handler, HandlerError, RetryPolicy};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind, Message};
use futures_util::{FutureExt as _, StreamExt as _};
use sea_orm::DatabaseConnection;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// The stream consumer's settings.
#[derive(Debug, Clone)]
struct ConsumerOptions {
    stream: String,
    durable: String,
    filter: Option<String>,
    tasks: usize,
    retry: RetryPolicy,
    ack_wait: Duration,
    max_ack_pending: i64,
    batch: usize,
    hold: Duration,
}

/// A durable pull consumer of a stream that hands each message's event to a [`Handler`].
///
/// - Success acks the message; a retryable error naks it with the retry policy's delay; a
///   permanent error, or a retryable one past the policy's attempts, terminates it and records
///   it (the log, and `distribute_nats_dead` when [`dead_letters`](StreamConsumerBuilder::dead_letters)
///   names a database; see [`dead_messages`](crate::dead_messages)).
/// - A handler running longer than a third of the ack wait reports progress, so the server
///   does not redeliver the message meanwhile.
/// - Messages are spread over `tasks` tasks by object (type and id): one object's events are
///   handled one after the other, in stream order. An event that waits for a retry holds back
///   its object's later events (naked until it is done), never other objects'.
/// - A message whose body is not a [`Payload`] is terminated and recorded; the rest flows.
///
/// Run one process per durable consumer: order per object holds within a process (its tasks),
/// not across processes sharing the durable consumer.
///
/// ```no_run
/// # async fn demo(js: async_nats::jetstream::Context, replicator: acts_as_distributed::Replicator,
/// #               db: sea_orm::DatabaseConnection) -> Result<(), acts_as_distributed_nats::Error> {
/// use acts_as_distributed_nats::StreamConsumer;
///
/// let handle = StreamConsumer::builder(js, "DISTRIBUTES", "replica-eu")
///     .handler(replicator)
///     .tasks(4)
///     .dead_letters(db)
///     .build()?
///     .spawn();
/// // ...
/// handle.shutdown(std::time::Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StreamConsumer {
    shared: Arc<Shared>,
}

struct Shared {
    js: jetstream::Context,
    handler: Arc<dyn Handler>,
    dead_db: Option<DatabaseConnection>,
    options: ConsumerOptions,
    stats: Stats,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConsumer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Stats {
    handled: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    malformed: AtomicU64,
}

/// What a stream consumer has done since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct StreamConsumerStats {
    /// Messages handled and acknowledged.
    pub handled: u64,
    /// Failures naked for a retry.
    pub retried: u64,
    /// Messages terminated (permanent errors, attempts used up, malformed messages).
    pub dead: u64,
    /// Of those, messages whose body was not a payload.
    pub malformed: u64,
}

/// Builds a [`StreamConsumer`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct StreamConsumerBuilder {
    js: jetstream::Context,
    handler: Option<Arc<dyn Handler>>,
    dead_db: Option<DatabaseConnection>,
    options: ConsumerOptions,
}

impl std::fmt::Debug for StreamConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConsumerBuilder")
            .field("options", &self.options)
            .field("handler", &self.handler.as_ref().map(|_| "set"))
            .finish_non_exhaustive()
    }
}

impl StreamConsumer {
    /// A consumer of `stream` under the durable name `durable` (created on first start,
    /// reused after).
    pub fn builder(
        js: jetstream::Context,
        stream: impl Into<String>,
        durable: impl Into<String>,
    ) -> StreamConsumerBuilder {
        StreamConsumerBuilder {
            js,
            handler: None,
            dead_db: None,
            options: ConsumerOptions {
                stream: stream.into(),
                durable: durable.into(),
                filter: None,
                tasks: 1,
                retry: RetryPolicy::default(),
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 1_000,
                batch: 200,
                hold: Duration::from_millis(500),
            },
        }
    }

    /// Starts the consumer on the current tokio runtime.
    pub fn spawn(self) -> StreamConsumerHandle {
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let shared = self.shared;
        let span = tracing::info_span!(
            "stream_consumer",
            stream = %shared.options.stream,
            consumer = %shared.options.durable
        );
        let task = tokio::spawn(
            shared
                .clone()
                .run(stop.clone(), abort.clone())
                .instrument(span),
        );
        StreamConsumerHandle {
            stop,
            abort,
            task,
            shared,
        }
    }
}

/// A running stream consumer.
#[derive(Debug)]
pub struct StreamConsumerHandle {
    stop: CancellationToken,
    abort: CancellationToken,
    task: tokio::task::JoinHandle<Result<()>>,
    shared: Arc<Shared>,
}

impl StreamConsumerHandle {
    /// Stops fetching, lets the messages being handled finish for up to `timeout`, then stops
    /// the rest (unacknowledged messages come again after the ack wait). Returns the error that
    /// stopped the consumer, if one did.
    pub async fn shutdown(self, timeout: Duration) -> Result<()> {
        self.stop.cancel();
        let mut task = self.task;
        let ended = match tokio::time::timeout(timeout, &mut task).await {
            Ok(ended) => ended,
            Err(_) => {
                self.abort.cancel();
                task.await
            }
        };
        ended.map_err(|e| Error::Task(e.to_string()))?
    }

    /// Whether the consumer has stopped (shut down, or stopped by an error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// What it has done so far.
    pub fn stats(&self) -> StreamConsumerStats {
        let s = &self.shared.stats;
        StreamConsumerStats {
            handled: s.handled.load(Ordering::Relaxed),
            retried: s.retried.load(Ordering::Relaxed),
            dead: s.dead.load(Ordering::Relaxed),
            malformed: s.malformed.load(Ordering::Relaxed),
        }
    }
}

/// One message on its way to a task.
struct Job {
    message: Message,
    event: Event,
    sequence: u64,
}

impl Shared {
    async fn run(self: Arc<Self>, stop: CancellationToken, abort: CancellationToken) -> Result<()> {
        self.handler.check().await?;
        let consumer = self.consumer().await?;
        tracing::info!(tasks = self.options.tasks, "stream consumer started");
        let mut tasks = JoinSet::new();
        let mut senders = Vec::with_capacity(self.options.tasks);
        for _ in 0..self.options.tasks {
            let (tx, rx) = mpsc::channel::<Job>(self.options.batch.max(16));
            senders.push(tx);
            tasks.spawn(self.clone().partition(rx).in_current_span());
        }
        'fetch: while !stop.is_cancelled() {
            let messages = consumer
                .stream()
                .max_messages_per_batch(self.options.batch)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot pull from the stream; trying again");
                    tokio::select! {
                        _ = stop.cancelled() => break 'fetch,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'fetch,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => break 'fetch,
                    next = messages.next() => next,
                };
                match next {
                    None => continue 'fetch,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "pull error; going on");
                    }
                    Some(Ok(message)) => {
                        if let Some((job, partition)) = self.route(message).await {
                            tokio::select! {
                                _ = stop.cancelled() => break 'fetch,
                                _ = senders[partition].send(job) => {}
                            }
                        }
                    }
                }
            }
        }
        drop(senders);
        tokio::select! {
            _ = async { while tasks.join_next().await.is_some() {} } => {}
            _ = abort.cancelled() => tasks.shutdown().await,
        }
        tracing::info!("stream consumer stopped");
        Ok(())
    }

    /// The durable pull consumer, created if needed.
    async fn consumer(&self) -> Result<PullConsumer> {
        let o = &self.options;
        let stream = self
            .js
            .get_stream(&o.stream)
            .await
            .map_err(|e| Error::nats(format!("stream `{}`: {e}", o.stream)))?;
        let config = pull::Config {
            durable_name: Some(o.durable.clone()),
            filter_subject: o.filter.clone().unwrap_or_default(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: o.ack_wait,
            max_deliver: -1,
            max_ack_pending: o.max_ack_pending,
            ..Default::default()
        };
        stream
            .get_or_create_consumer(&o.durable, config)
            .await
            .map_err(|e| Error::nats(format!("consumer `{}`: {e}", o.durable)))
    }

    /// Reads a message: a job for its object's task, or (malformed) terminated and recorded.
    async fn route(&self, message: Message) -> Option<(Job, usize)> {
        let sequence = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                tracing::warn!(error = %e, "a message without JetStream metadata; ignored");
                return None;
            }
        };
        match Payload::decode(&message.payload) {
            Ok(payload) => {
                let event = payload.into_event(sequence);
                let partition = partition_of(&event, self.options.tasks);
                Some((
                    Job {
                        message,
                        event,
                        sequence,
                    },
                    partition,
                ))
            }
            Err(error) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                self.terminate(&message, sequence, None, &error).await;
                None
            }
        }
    }

    /// One task: the jobs of its objects, in order per object.
    async fn partition(self: Arc<Self>, mut jobs: mpsc::Receiver<Job>) {
        let mut open: HashMap<(String, String), BTreeSet<u64>> = HashMap::new();
        let mut failures: HashMap<u64, (u32, Instant)> = HashMap::new();
        while let Some(job) = jobs.recv().await {
            let key = (
                job.event.distributed_type.clone(),
                job.event.distributed_id.clone(),
            );
            let first = {
                let seqs = open.entry(key.clone()).or_default();
                seqs.insert(job.sequence);
                seqs.first().copied()
            };
            if first != Some(job.sequence) {
                // An earlier event of the object is not done: wait for it.
                let hold = first
                    .and_then(|f| failures.get(&f))
                    .map(|(_, at)| at.saturating_duration_since(Instant::now()))
                    .unwrap_or_default()
                    .max(self.options.hold);
                nak(&job.message, hold).await;
                continue;
            }
            let attempt = failures.get(&job.sequence).map_or(0, |f| f.0) + 1;
            let done = self.handle(job, attempt).await;
            match done {
                Settled::Done(sequence) => {
                    failures.remove(&sequence);
                    if let Some(seqs) = open.get_mut(&key) {
                        seqs.remove(&sequence);
                        if seqs.is_empty() {
                            open.remove(&key);
                        }
                    }
                }
                Settled::Retry(sequence, delay) => {
                    failures.insert(sequence, (attempt, Instant::now() + delay));
                }
            }
        }
    }

    /// Handles one job (reporting progress while the handler runs) and settles its message.
    async fn handle(&self, job: Job, attempt: u32) -> Settled {
        let Job {
            message,
            mut event,
            sequence,
        } = job;
        event.attempt = attempt;
        let event_id = event.id;
        let run = AssertUnwindSafe(self.handler.handle(event)).catch_unwind();
        tokio::pin!(run);
        let every = (self.options.ack_wait / 3).max(Duration::from_millis(100));
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let result = loop {
            tokio::select! {
                r = &mut run => break r.unwrap_or_else(|_| Err(HandlerError::retry("the handler panicked"))),
                _ = progress.tick() => {
                    if let Err(e) = message.ack_with(AckKind::Progress).await {
                        tracing::warn!(event = event_id, error = %e, "cannot report progress");
                    }
                }
            }
        };
        match result {
            Ok(()) => {
                if let Err(e) = message.ack().await {
                    tracing::warn!(event = event_id, error = %e, "ack failed: the message comes again");
                }
                self.stats.handled.fetch_add(1, Ordering::Relaxed);
                Settled::Done(sequence)
            }
            Err(HandlerError::Retry(m)) if !self.options.retry.is_exhausted(attempt) => {
                let delay = self.options.retry.delay(attempt, random_unit());
                tracing::warn!(event = event_id, attempt, error = %m, ?delay, "handler failed; naked for a retry");
                nak(&message, delay).await;
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                Settled::Retry(sequence, delay)
            }
            Err(e) => {
                let error = match &e {
                    HandlerError::Retry(m) => {
                        format!("{m} (gave up after {attempt} attempts)")
                    }
                    other => other.message().to_owned(),
                };
                self.terminate(&message, sequence, Some(event_id), &error)
                    .await;
                Settled::Done(sequence)
            }
        }
    }

    /// Terminates a message and records it.
    async fn terminate(
        &self,
        message: &Message,
        sequence: u64,
        event_id: Option<i64>,
        error: &str,
    ) {
        self.stats.dead.fetch_add(1, Ordering::Relaxed);
        tracing::error!(sequence, event = ?event_id, subject = %message.subject, %error, "message terminated");
        if let Err(e) = message.ack_with(AckKind::Term).await {
            tracing::warn!(sequence, error = %e, "cannot terminate the message");
        }
        let Some(db) = &self.dead_db else {
            return;
        };
        let dead = DeadMessage {
            stream: self.options.stream.clone(),
            consumer: self.options.durable.clone(),
            stream_sequence: sequence,
            subject: message.subject.to_string(),
            message_id: message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned()),
            event_id,
            error: error.to_owned(),
            payload: DeadMessage::body(&message.payload),
            at: chrono::Utc::now(),
        };
        if let Err(e) = record(db, &dead).await {
            tracing::error!(sequence, error = %e, "cannot record the dead message");
        }
    }
}

/// How a handled job ended for its task.
enum Settled {
    Done(u64),
    Retry(u64, Duration),
}

async fn nak(message: &Message, delay: Duration) {
    if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
        tracing::warn!(error = %e, "nak failed: the message comes again after the ack wait");
    }
}

/// The task of an event's object.
fn partition_of(event: &Event, tasks: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    event.distributed_type.hash(&mut h);
    event.distributed_id.hash(&mut h);
    (h.finish() % tasks.max(1) as u64) as usize
}

/// A number from 0.0 to 1.0 for the retry jitter.
fn random_unit() -> f64 {
    let r = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (r >> 11) as f64 / (1u64 << 53) as f64
}

impl StreamConsumerBuilder {
    /// The code that handles each event: an async closure, a type implementing [`Handler`],
    /// or a [`Replicator`](acts_as_distributed::Replicator).
    pub fn handler(mut self, handler: impl Handler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Only messages on subjects matching this filter (default: the whole stream). Set when
    /// the durable consumer is created; an existing consumer keeps its own.
    pub fn filter_subject(mut self, filter: impl Into<String>) -> Self {
        self.options.filter = Some(filter.into());
        self
    }

    /// Tasks handling messages at once, each for its share of the objects (default 1).
    pub fn tasks(mut self, n: usize) -> Self {
        self.options.tasks = n;
        self
    }

    /// The retry policy: its delays for naks, its attempts before a message is terminated
    /// (default: [`RetryPolicy::default`]). Attempts are counted in memory: a restart starts
    /// them again.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = policy;
        self
    }

    /// How long the server waits for an ack before it redelivers (default 30 s); a running
    /// handler reports progress every third of it.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.options.ack_wait = wait;
        self
    }

    /// Messages delivered and not yet acknowledged, at most (default 1,000).
    pub fn max_ack_pending(mut self, n: i64) -> Self {
        self.options.max_ack_pending = n;
        self
    }

    /// Messages per pull request (default 200).
    pub fn batch(mut self, n: usize) -> Self {
        self.options.batch = n;
        self
    }

    /// Records terminated messages in this database's `distribute_nats_dead` (this crate's
    /// migration), beside the log.
    pub fn dead_letters(mut self, db: DatabaseConnection) -> Self {
        self.dead_db = Some(db);
        self
    }

    /// Checks the settings and builds the consumer.
    ///
    /// # Errors
    /// [`Error::Config`] for a missing handler, an empty stream or durable name (or one with
    /// `.`, `*`, `>` or white space), zero tasks, batch or ack wait, or `max_ack_pending` below 1.
    pub fn build(self) -> Result<StreamConsumer> {
        let o = &self.options;
        let bad = |m: String| Err(Error::Config(m));
        let Some(handler) = self.handler else {
            return bad(format!(
                "stream consumer `{}` has no handler: call .handler(..)",
                o.durable
            ));
        };
        for (what, name) in [("stream", &o.stream), ("durable consumer", &o.durable)] {
            if name.is_empty()
                || name
                    .chars()
                    .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace())
            {
                return bad(format!(
                    "the {what} name must be non-empty, without `.`, `*`, `>` or white space, got {name:?}"
                ));
            }
        }
        if o.tasks == 0 || o.batch == 0 || o.ack_wait.is_zero() || o.max_ack_pending < 1 {
            return bad(
                "tasks, batch, ack_wait and max_ack_pending must be at least 1 (above zero)".into(),
            );
        }
        Ok(StreamConsumer {
            shared: Arc::new(Shared {
                js: self.js,
                handler,
                dead_db: self.dead_db,
                options: self.options,
                stats: Stats::default(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acts_as_distributed::Action;

    #[test]
    fn one_object_always_goes_to_one_task() {
        let e = |id: &str| Event::new(1, "User", id, Action::Update, serde_json::json!({}));
        for id in ["a", "b", "c", "d"] {
            let p = partition_of(&e(id), 4);
            assert!(p < 4);
            assert_eq!(p, partition_of(&e(id), 4));
        }
        let spread: BTreeSet<usize> = (0..100)
            .map(|i| partition_of(&e(&i.to_string()), 4))
            .collect();
        assert_eq!(spread.len(), 4, "objects spread over the tasks");
    }

    #[test]
    fn random_units_are_units() {
        for _ in 0..100 {
            assert!((0.0..=1.0).contains(&random_unit()));
        }
    }
}
