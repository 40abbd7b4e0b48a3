//! The relay: a consumer of `distributes` that publishes each event to JetStream and counts it
//! as relayed only once its publish ack has arrived.

use crate::error::{Error, Result};
use crate::payload::{Payload, message_id};
use crate::record::{Ack, record_acks};
use crate::subject::Subjects;
use acts_as_distributed::{Event, Handler, HandlerError, RetryPolicy, Worker, WorkerBuilder};
use async_nats::jetstream::context::{Publish, PublishErrorKind};
use async_nats::jetstream::{self, publish::PublishAck};
use futures_util::future::join_all;
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The relay's settings.
#[derive(Debug, Clone)]
struct RelayOptions {
    source: String,
    subjects: Subjects,
    max_in_flight: usize,
    ack_timeout: Duration,
    retry_span: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    record_acks: bool,
}

/// Publishes events of `distributes` to NATS JetStream: the [`Handler`] of a worker made by
/// [`worker`](Self::worker).
///
/// - Each event goes to the subject [`Subjects`] gives (`distributes.<Type>.<action>` by
///   default), with a [`Payload`] body and `Nats-Msg-Id` = `<source>:<event id>`, so the stream
///   drops a republished copy within its duplicate window.
/// - An event is done (acknowledged in the queue) only once JetStream's publish ack for it has
///   arrived. An ambiguous outcome (ack timeout, connection lost) is retried under the same id,
///   with a capped backoff, for up to the retry span; after that the event goes back to the
///   queue and comes again (the relay's worker never lets an event die of an outage).
/// - At most `max_in_flight` publishes are unacknowledged at once, across the objects of a
///   batch; the events of one object are published one after the other, each after the
///   previous one's ack, so the stream holds them in order.
/// - Each ack's stream sequence is recorded in `distribute_nats_relayed` (one statement per
///   batch), which [`Reconcile`](crate::Reconcile) reads.
///
/// ```no_run
/// # async fn demo(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
/// use acts_as_distributed_nats::{Relay, StreamSpec, connect};
///
/// let client = connect("nats://127.0.0.1:4222").await?;
/// let relay = Relay::builder(db, client.clone(), "app-eu-1").build()?;
/// StreamSpec::new("DISTRIBUTES", relay.subjects())
///     .for_relay(&relay)
///     .ensure(&async_nats::jetstream::new(client))
///     .await?;
/// let handle = relay.worker("nats-relay").build()?.spawn();
/// // ...
/// handle.shutdown(std::time::Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    client: async_nats::Client,
    js: jetstream::Context,
    options: RelayOptions,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Relay`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct RelayBuilder {
    db: DatabaseConnection,
    client: async_nats::Client,
    options: RelayOptions,
}

impl std::fmt::Debug for RelayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayBuilder")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay of the events of `db` to the NATS server of `client`. `source` names this outbox
    /// (one per source database) in every message id: keep it stable across restarts and
    /// deployments, and different between outboxes that share a stream.
    pub fn builder(
        db: DatabaseConnection,
        client: async_nats::Client,
        source: impl Into<String>,
    ) -> RelayBuilder {
        RelayBuilder {
            db,
            client,
            options: RelayOptions {
                source: source.into(),
                subjects: Subjects::default(),
                max_in_flight: 256,
                ack_timeout: Duration::from_secs(5),
                retry_span: Duration::from_secs(60),
                backoff_min: Duration::from_millis(100),
                backoff_max: Duration::from_secs(5),
                record_acks: true,
            },
        }
    }

    /// A worker of consumer `consumer` with this relay as its handler: batches of 1,000, one
    /// batch at a time, and a retry policy (1 s doubling to 30 s, unlimited attempts) under which
    /// an outage never makes an event dead; events the stream refuses for good (too large, a
    /// subject no stream takes is *not* one of them) die at once. Add other settings (`types`,
    /// `actions`, `poll_interval`), then `build()`.
    pub fn worker(&self, consumer: impl Into<String>) -> WorkerBuilder {
        Worker::builder(self.inner.db.clone(), consumer)
            .handler(self.clone())
            .batch_size(1_000)
            .concurrency(1)
            .retry(
                RetryPolicy::default()
                    .base(Duration::from_secs(1))
                    .cap(Duration::from_secs(30))
                    .max_attempts(u32::MAX),
            )
    }

    /// The subjects events go to.
    pub fn subjects(&self) -> &Subjects {
        &self.inner.options.subjects
    }

    /// The source id in message ids.
    pub fn source(&self) -> &str {
        &self.inner.options.source
    }

    /// The longest time between the first publish of a message and its last retry under the
    /// same id within one handling: the retry span plus one ack timeout. The stream's duplicate
    /// window must be at least this long ([`StreamSpec::for_relay`](crate::StreamSpec::for_relay)).
    pub fn longest_retry_span(&self) -> Duration {
        self.inner.options.retry_span + self.inner.options.ack_timeout
    }

    /// The JetStream context the relay publishes through.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }

    /// The source database.
    pub fn database(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// Publishes one event and waits for its ack, retrying an ambiguous outcome under the same
    /// message id for up to the retry span.
    pub(crate) async fn publish(&self, event: &Event) -> Result<PublishAck, HandlerError> {
        let o = &self.inner.options;
        let subject = o.subjects.subject(event).map_err(HandlerError::permanent)?;
        let body = serde_json::to_vec(&Payload::from_event(&o.source, event))
            .map_err(HandlerError::permanent)?;
        let max_payload = self.inner.client.server_info().max_payload;
        if max_payload > 0 && body.len() > max_payload {
            return Err(HandlerError::permanent(format!(
                "the payload of event {} is {} bytes, over the server's max_payload of \
                 {max_payload}",
                event.id,
                body.len()
            )));
        }
        let body = bytes::Bytes::from(body);
        let id = message_id(&o.source, event.id);
        let started = Instant::now();
        let mut delay = o.backoff_min;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let publish = Publish::build().payload(body.clone()).message_id(&id);
            let outcome = match self.inner.js.send_publish(subject.clone(), publish).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let error = match outcome {
                Ok(ack) => {
                    if tries > 1 {
                        tracing::info!(
                            event = event.id,
                            tries,
                            duplicate = ack.duplicate,
                            "published after retries"
                        );
                    }
                    return Ok(ack);
                }
                Err(e) => e,
            };
            let text = error.to_string();
            let permanent = matches!(error.kind(), PublishErrorKind::Other)
                && ["exceed", "too large", "invalid"]
                    .iter()
                    .any(|m| text.to_lowercase().contains(m));
            if permanent {
                return Err(HandlerError::permanent(format!(
                    "JetStream refused event {} on `{subject}`: {text}",
                    event.id
                )));
            }
            let reason = match error.kind() {
                PublishErrorKind::StreamNotFound => format!("no stream takes `{subject}`"),
                PublishErrorKind::TimedOut => "no ack in time (ambiguous)".to_owned(),
                PublishErrorKind::BrokenPipe => "connection lost before the ack (ambiguous)".into(),
                _ => text,
            };
            if started.elapsed() + delay > o.retry_span {
                return Err(HandlerError::retry(format!(
                    "event {} not acknowledged after {tries} tries in {:?}: {reason}",
                    event.id,
                    started.elapsed()
                )));
            }
            tracing::warn!(event = event.id, tries, %reason, "publish not acknowledged; retrying under the same id");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(o.backoff_max);
        }
    }

    /// Publishes a batch: the objects concurrently (bounded by `max_in_flight`), the events of
    /// one object one after the other; then records the acks. Outcomes in batch order, up to
    /// the first failure.
    async fn relay_batch(&self, events: Vec<Event>) -> Vec<Result<(), HandlerError>> {
        let o = &self.inner.options;
        let started = Instant::now();
        let permits = Semaphore::new(o.max_in_flight);
        let mut chains: Vec<Vec<usize>> = Vec::new();
        let mut by_object: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            let key = (e.distributed_type.as_str(), e.distributed_id.as_str());
            let chain = *by_object.entry(key).or_insert_with(|| {
                chains.push(Vec::new());
                chains.len() - 1
            });
            chains[chain].push(i);
        }
        let runs = chains.iter().map(|chain| {
            let events = &events;
            let permits = &permits;
            async move {
                let mut out = Vec::with_capacity(chain.len());
                for &i in chain {
                    let Ok(_permit) = permits.acquire().await else {
                        break;
                    };
                    let result = self.publish(&events[i]).await;
                    let failed = result.is_err();
                    out.push((i, result));
                    if failed {
                        break;
                    }
                }
                out
            }
        });
        let mut outcomes: Vec<Option<Result<PublishAck, HandlerError>>> =
            (0..events.len()).map(|_| None).collect();
        for (i, result) in join_all(runs).await.into_iter().flatten() {
            outcomes[i] = Some(result);
        }
        let acks: Vec<Ack> = outcomes
            .iter()
            .zip(&events)
            .filter_map(|(o, e)| match o {
                Some(Ok(ack)) => Some(Ack {
                    event_id: e.id,
                    stream: ack.stream.clone(),
                    sequence: ack.sequence,
                }),
                _ => None,
            })
            .collect();
        let recorded = if o.record_acks && !acks.is_empty() {
            record_acks(&self.inner.db, &o.source, &acks).await
        } else {
            Ok(())
        };
        let mut results = Vec::with_capacity(events.len());
        for outcome in outcomes {
            match (outcome, &recorded) {
                (Some(Ok(_)), Ok(())) => results.push(Ok(())),
                (Some(Ok(_)), Err(e)) => {
                    results.push(Err(HandlerError::retry(format!(
                        "published, but recording its ack failed: {e}"
                    ))));
                    break;
                }
                (Some(Err(e)), _) => {
                    results.push(Err(e));
                    break;
                }
                (None, _) => break,
            }
        }
        tracing::debug!(
            events = events.len(),
            relayed = acks.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "relayed a batch"
        );
        results
    }
}

#[async_trait::async_trait]
impl Handler for Relay {
    async fn handle(&self, event: Event) -> Result<(), HandlerError> {
        self.relay_batch(vec![event])
            .await
            .pop()
            .unwrap_or_else(|| Err(HandlerError::retry("not relayed")))
    }

    fn handles_batches(&self) -> bool {
        true
    }

    async fn handle_batch(&self, events: Vec<Event>) -> Vec<Result<(), HandlerError>> {
        self.relay_batch(events).await
    }
}

impl RelayBuilder {
    /// The subjects events go to (default `distributes.<Type>.<action>`).
    pub fn subjects(mut self, subjects: Subjects) -> Self {
        self.options.subjects = subjects;
        self
    }

    /// Publishes unacknowledged at once, at least 1 (default 256).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.options.max_in_flight = n;
        self
    }

    /// How long a publish waits for its ack before it counts as ambiguous and is retried
    /// (default 5 s).
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.options.ack_timeout = timeout;
        self
    }

    /// How long one publish is retried under its id before its event goes back to the queue
    /// (default 60 s). With the ack timeout, it makes the
    /// [longest retry span](Relay::longest_retry_span) the duplicate window must cover.
    pub fn retry_span(mut self, span: Duration) -> Self {
        self.options.retry_span = span;
        self
    }

    /// The pause between retries of one publish: from `min`, doubling, at most `max` (default
    /// 100 ms to 5 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.options.backoff_min = min;
        self.options.backoff_max = max;
        self
    }

    /// Whether each ack's stream sequence is recorded in `distribute_nats_relayed`, for
    /// [`Reconcile`](crate::Reconcile) (default on; needs this crate's migration).
    pub fn record_acks(mut self, on: bool) -> Self {
        self.options.record_acks = on;
        self
    }

    /// Checks the settings and builds the relay.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty or over-long source id or one with white space, an
    /// invalid subject prefix, zero `max_in_flight` or ack timeout, or a backoff whose minimum
    /// is zero or above its maximum.
    pub fn build(self) -> Result<Relay> {
        let o = &self.options;
        let bad = |m: String| Err(Error::Config(m));
        if o.source.is_empty()
            || o.source.len() > 200
            || o.source
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return bad(format!(
                "the relay's source id must have 1 to 200 characters and no white space, got {:?}",
                o.source
            ));
        }
        o.subjects.check().map_err(Error::Config)?;
        if o.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1".into());
        }
        if o.ack_timeout.is_zero() {
            return bad("ack_timeout must be longer than zero".into());
        }
        if o.backoff_min.is_zero() || o.backoff_min > o.backoff_max {
            return bad(format!(
                "backoff: the minimum must be above zero and at most the maximum, got {:?} to {:?}",
                o.backoff_min, o.backoff_max
            ));
        }
        let mut js = jetstream::new(self.client.clone());
        js.set_timeout(o.ack_timeout);
        Ok(Relay {
            inner: Arc::new(Inner {
                db: self.db,
                client: self.client,
                js,
                options: self.options,
            }),
        })
    }
}
