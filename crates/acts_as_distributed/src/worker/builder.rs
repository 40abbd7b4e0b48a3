//! [`WorkerBuilder`]: the worker's settings, in one struct that the builder fills and the worker
//! keeps, checked once in [`build`](WorkerBuilder::build).

use super::handler::Handler;
use super::retry::RetryPolicy;
use super::{Shared, Worker};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::queue::consumer::ConsumerConfig;
use crate::queue::{DeadEvents, StartFrom};
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use std::time::Duration;

/// Largest batch a worker claims at once.
pub(crate) const MAX_BATCH: u64 = 1_000;
/// Longest consumer name, in bytes (the column's width).
const MAX_NAME_BYTES: usize = 255;

/// A worker's settings.
#[derive(Debug, Clone)]
pub(crate) struct WorkerOptions {
    pub config: ConsumerConfig,
    pub start: StartFrom,
    pub batch_size: u64,
    pub concurrency: usize,
    pub lease: Duration,
    pub retry: RetryPolicy,
    pub poll_interval: Duration,
    pub listen: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            config: ConsumerConfig::default(),
            start: StartFrom::Oldest,
            batch_size: 100,
            concurrency: 1,
            lease: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_secs(1),
            listen: true,
        }
    }
}

impl WorkerOptions {
    /// Every setting in range, or the first that is not, with what to give instead.
    fn check(&self, consumer: &str) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if consumer.trim().is_empty() || consumer.len() > MAX_NAME_BYTES {
            return bad(format!(
                "the consumer name must have 1 to {MAX_NAME_BYTES} characters (bytes in UTF-8), got {consumer:?}"
            ));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return bad(format!(
                "batch_size must be 1 to {MAX_BATCH}, got {}",
                self.batch_size
            ));
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1, got 0".into());
        }
        if self.lease.is_zero() || self.poll_interval.is_zero() {
            return bad("lease and poll_interval must be longer than zero".into());
        }
        if self.config.after.iter().any(|a| a == consumer) {
            return bad(format!(
                "consumer `{consumer}` cannot wait for itself in `after`"
            ));
        }
        Ok(())
    }
}

/// Builds a [`Worker`]. Every setting but the handler has a default.
#[must_use = "a builder does nothing until `build` is called"]
pub struct WorkerBuilder {
    db: DatabaseConnection,
    consumer: String,
    handler: Option<Arc<dyn Handler>>,
    options: WorkerOptions,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("consumer", &self.consumer)
            .field("handler", &self.handler.as_ref().map(|_| "set"))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    pub(crate) fn new(db: DatabaseConnection, consumer: String) -> Self {
        Self {
            db,
            consumer,
            handler: None,
            options: WorkerOptions::default(),
        }
    }

    /// Only events of these `distributed_type`s (default: all).
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.config.types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Only these actions (default: all).
    pub fn actions(mut self, actions: impl IntoIterator<Item = Action>) -> Self {
        self.options.config.actions = actions.into_iter().collect();
        self
    }

    /// Receive an event only after these consumers have handled it.
    pub fn after<I, S>(mut self, consumers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.config.after = consumers.into_iter().map(Into::into).collect();
        self
    }

    /// What a dead event does to its object's later events (default: [`DeadEvents::Hold`]).
    pub fn dead_events(mut self, policy: DeadEvents) -> Self {
        self.options.config.dead_events = policy;
        self
    }

    /// Where the consumer starts when it does not exist yet (default: [`StartFrom::Oldest`]).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.options.start = start;
        self
    }

    /// The code that handles each event: an async closure or an `Arc<dyn Handler>`.
    pub fn handler(mut self, handler: impl Handler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Events claimed at a time, 1 to 1,000 (default 100).
    pub fn batch_size(mut self, n: u64) -> Self {
        self.options.batch_size = n;
        self
    }

    /// Objects handled at once within a batch (default 1). Events of one object are always
    /// handled one after the other, in order; with 1, every event of a batch is handled in the
    /// order it was sequenced, across objects too (a replica's parents before their children).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.options.concurrency = n;
        self
    }

    /// How long a claimed event stays this worker's without news (default 60 s). A running
    /// worker renews the leases of the batch it is handling every third of this, so handlers may
    /// take longer; a worker that dies stops renewing, and after this long another worker takes
    /// its events.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.options.lease = lease;
        self
    }

    /// The retry policy (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = policy;
        self
    }

    /// How often an idle worker checks for work (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.options.poll_interval = interval;
        self
    }

    /// On PostgreSQL, wake at once on `NOTIFY distributes` (default on; ignored elsewhere).
    pub fn listen(mut self, on: bool) -> Self {
        self.options.listen = on;
        self
    }

    /// Checks the settings and builds the worker.
    ///
    /// # Errors
    /// [`Error::Config`] for a missing handler, an empty or over-long consumer name, a batch
    /// size outside 1 to 1,000, zero concurrency, lease or poll interval, or an `after` naming
    /// the consumer itself.
    pub fn build(self) -> Result<Worker> {
        let Some(handler) = self.handler else {
            return Err(Error::Config(format!(
                "worker `{}` has no handler: call .handler(|event| async move {{ .. }})",
                self.consumer
            )));
        };
        self.options.check(&self.consumer)?;
        Ok(Worker {
            shared: Arc::new(Shared::new(self.db, self.consumer, handler, self.options)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(consumer: &str, change: impl FnOnce(&mut WorkerOptions)) -> Result<()> {
        let mut options = WorkerOptions::default();
        change(&mut options);
        options.check(consumer)
    }

    #[test]
    fn each_bad_setting_is_named_alone() {
        let message = |r: Result<()>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(check("mailer", |_| {}).is_ok());
        let batch = message(check("mailer", |o| o.batch_size = 0));
        assert!(
            batch.contains("batch_size") && !batch.contains("concurrency"),
            "{batch}"
        );
        assert!(message(check("mailer", |o| o.batch_size = 1_001)).contains("batch_size"));
        let concurrency = message(check("mailer", |o| o.concurrency = 0));
        assert!(
            concurrency.contains("concurrency") && !concurrency.contains("batch"),
            "{concurrency}"
        );
        assert!(message(check("mailer", |o| o.lease = Duration::ZERO)).contains("lease"));
        assert!(message(check(" ", |_| {})).contains("name"));
        assert!(message(check(&"x".repeat(256), |_| {})).contains("name"));
        assert!(
            message(check("mailer", |o| o.config.after = vec!["mailer".into()])).contains("itself")
        );
    }
}
