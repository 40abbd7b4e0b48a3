//! Your code that handles events, and what it answers: done, retry later, or never.

use crate::error::Error;
use crate::event::Event;
use std::future::Future;

/// A handler's failure: retried later, or dead at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// Try again after the retry policy's delay (until the attempts run out).
    Retry(String),
    /// Never try again: the event is dead (kept, visible, retryable by command).
    Permanent(String),
}

impl HandlerError {
    /// A failure worth retrying.
    pub fn retry(message: impl std::fmt::Display) -> Self {
        Self::Retry(message.to_string())
    }

    /// A failure no retry can fix.
    pub fn permanent(message: impl std::fmt::Display) -> Self {
        Self::Permanent(message.to_string())
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Self::Retry(m) | Self::Permanent(m) => m,
        }
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Retry(m) => write!(f, "retryable: {m}"),
            Self::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

/// Any error converts to a retryable failure, so `?` works in handlers.
impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self::Retry(e.to_string())
    }
}

/// Your code that handles events: an async closure `Fn(Event) -> impl Future<Output =
/// Result<(), HandlerError>>`, or a type implementing this trait (also as `Arc<dyn Handler>`).
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles one event. The same event may come again (at-least-once): make the effect
    /// idempotent, keyed by [`Event::id`].
    async fn handle(&self, event: Event) -> Result<(), HandlerError>;

    /// Checks what the handler needs before its worker starts (the replicator: the replica's
    /// tables and columns). An error stops the worker at once: [`spawn`](crate::Worker::spawn)ed
    /// workers end with it (see [`WorkerHandle::shutdown`](crate::WorkerHandle::shutdown)) and
    /// [`run_once`](crate::Worker::run_once) returns it. Default: nothing to check.
    async fn check(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Whether [`handle_batch`](Self::handle_batch) takes a whole batch as one unit. A worker
    /// with `concurrency(1)` then hands it each claimed batch at once. Default: `false`.
    fn handles_batches(&self) -> bool {
        false
    }

    /// Handles `events` in order as one unit (the replicator: one replica transaction), for
    /// handlers whose [`handles_batches`](Self::handles_batches) is `true`. Returns an outcome
    /// per event, in order, up to the first failure included; events past the returned ones go
    /// back to the queue unhandled. The default calls [`handle`](Self::handle) one event at a
    /// time and stops at the first failure.
    async fn handle_batch(&self, events: Vec<Event>) -> Vec<Result<(), HandlerError>> {
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            let result = self.handle(event).await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        results
    }
}

#[async_trait::async_trait]
impl<F, Fut> Handler for F
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, event: Event) -> Result<(), HandlerError> {
        self(event).await
    }
}

#[async_trait::async_trait]
impl Handler for std::sync::Arc<dyn Handler> {
    async fn handle(&self, event: Event) -> Result<(), HandlerError> {
        (**self).handle(event).await
    }

    async fn check(&self) -> Result<(), Error> {
        (**self).check().await
    }

    fn handles_batches(&self) -> bool {
        (**self).handles_batches()
    }

    async fn handle_batch(&self, events: Vec<Event>) -> Vec<Result<(), HandlerError>> {
        (**self).handle_batch(events).await
    }
}
