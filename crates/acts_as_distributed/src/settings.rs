//! Process-wide settings: default `client_id` and `messages`, and what a save outside a
//! transaction does.

use std::sync::{Arc, RwLock};

/// What a distributed save does when its connection is not a transaction.
///
/// Outside a transaction the data change commits on its own, and its event is written by a second
/// statement: if that one fails, the change stays without its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OutsideTransaction {
    /// Save as asked, without a word.
    Allow,
    /// Save as asked and log a `tracing` warning, once per entity (the default).
    #[default]
    Warn,
    /// Refuse the save with an error that says to use a transaction (strict mode).
    Error,
}

/// What to assume for a connection type that cannot say whether it is a transaction (anything
/// but SeaORM's `DatabaseConnection` and `DatabaseTransaction`, such as `DatabaseExecutor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownConnection {
    /// Treat it as a transaction: no warning, no error (the default).
    #[default]
    AssumeTransaction,
    /// Treat it as a plain connection: [`OutsideTransaction`] applies.
    AssumeOutside,
}

/// Process-wide settings, installed with [`Settings::install`].
///
/// ```
/// use acts_as_distributed::{OutsideTransaction, Settings};
///
/// Settings::new()
///     .client_id("billing-api")
///     .outside_transaction(OutsideTransaction::Error)
///     .install();
/// ```
///
/// A [`Scope`](crate::Scope) overrides `client_id` and `messages` for the changes inside it.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub(crate) client_id: Option<Arc<str>>,
    pub(crate) messages: Option<Arc<str>>,
    pub(crate) outside_transaction: OutsideTransaction,
    pub(crate) unknown_connection: UnknownConnection,
}

static SETTINGS: RwLock<Option<Settings>> = RwLock::new(None);

impl Settings {
    /// The defaults: no `client_id`, no `messages`, a warning for saves outside a transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `client_id` of every event not inside a scope that sets one.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into().into());
        self
    }

    /// The `messages` of every event not inside a scope that sets them.
    pub fn messages(mut self, messages: impl Into<String>) -> Self {
        self.messages = Some(messages.into().into());
        self
    }

    /// What a save outside a transaction does (default: [`OutsideTransaction::Warn`]).
    pub fn outside_transaction(mut self, policy: OutsideTransaction) -> Self {
        self.outside_transaction = policy;
        self
    }

    /// What to assume for connection types that cannot tell (default:
    /// [`UnknownConnection::AssumeTransaction`]).
    pub fn unknown_connection(mut self, assume: UnknownConnection) -> Self {
        self.unknown_connection = assume;
        self
    }

    /// Makes these the settings of the whole process, replacing earlier ones.
    pub fn install(self) {
        *SETTINGS.write().unwrap_or_else(|p| p.into_inner()) = Some(self);
    }

    /// The settings in force.
    pub fn current() -> Settings {
        SETTINGS
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }
}
