//! Scopes: per-task, nestable settings for the changes made inside them.
//!
//! A scope wraps a future. Every save awaited inside it (in the same tokio task) sees its
//! `messages`, `client_id` and on/off switch; other tasks never do. A `tokio::spawn` inside a
//! scope starts outside it: wrap the spawned future in the scope again if it should apply there.

use super::buffer::EventBuffer;
use std::future::Future;
use std::sync::Arc;

/// What the changes made in the current task see.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context {
    pub messages: Option<Arc<str>>,
    pub client_id: Option<Arc<str>>,
    pub disabled: bool,
    pub buffer: Option<Arc<EventBuffer>>,
}

tokio::task_local! {
    static CONTEXT: Context;
}

/// The context of the calling task (the default outside every scope).
pub(crate) fn current() -> Context {
    CONTEXT.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `fut` with `ctx` as its context.
pub(crate) async fn run_with<F: Future>(ctx: Context, fut: F) -> F::Output {
    CONTEXT.scope(ctx, fut).await
}

/// Settings for the changes made inside a future: `messages`, `client_id`, distribution on or
/// off. Nestable: an inner scope keeps what it does not set from the outer one.
///
/// ```
/// # use acts_as_distributed::Scope;
/// # async fn import() {}
/// # async fn demo() {
/// Scope::new()
///     .client_id("importer")
///     .messages("nightly import")
///     .run(import())
///     .await;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a scope does nothing until `run` is awaited"]
pub struct Scope {
    messages: Option<Arc<str>>,
    client_id: Option<Arc<str>>,
    distributing: Option<bool>,
}

impl Scope {
    /// A scope that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `messages` for the events inside (a note for the receivers).
    pub fn messages(mut self, messages: impl Into<String>) -> Self {
        self.messages = Some(messages.into().into());
        self
    }

    /// `client_id` for the events inside (where the change came from).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into().into());
        self
    }

    /// Write no events inside (the original's `without_distributing`).
    pub fn without_distributing(mut self) -> Self {
        self.distributing = Some(false);
        self
    }

    /// Write events inside again, within an outer scope that turned them off.
    pub fn with_distributing(mut self) -> Self {
        self.distributing = Some(true);
        self
    }

    /// Runs `fut` inside this scope.
    pub async fn run<F: Future>(self, fut: F) -> F::Output {
        let mut ctx = current();
        if let Some(m) = self.messages {
            ctx.messages = Some(m);
        }
        if let Some(c) = self.client_id {
            ctx.client_id = Some(c);
        }
        if let Some(on) = self.distributing {
            ctx.disabled = !on;
        }
        run_with(ctx, fut).await
    }
}

/// Runs `fut` without writing events for the changes inside it (in this task only).
///
/// ```
/// # use acts_as_distributed::without_distributing;
/// # async fn fix_typos() {}
/// # async fn demo() {
/// without_distributing(fix_typos()).await;
/// # }
/// ```
pub async fn without_distributing<F: Future>(fut: F) -> F::Output {
    Scope::new().without_distributing().run(fut).await
}
