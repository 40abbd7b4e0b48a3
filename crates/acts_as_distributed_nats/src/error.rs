//! The one error type of the NATS crate.

/// What can go wrong in the relay, the stream set-up, reconcile and the stream consumer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range or missing; the message says what to give instead.
    #[error("configuration: {0}")]
    Config(String),
    /// The stream exists with settings other than the ones asked for. Nothing was changed.
    #[error("stream `{stream}` does not match: {differences}")]
    StreamMismatch {
        /// The stream's name.
        stream: String,
        /// What differs, as `setting: found X, expected Y`, separated by `; `.
        differences: String,
    },
    /// The stream's duplicate window is shorter than the relay's longest retry span, so a
    /// retried publish could be stored twice.
    #[error(
        "the duplicate window of stream `{stream}` ({window:?}) is shorter than the relay's longest \
         retry span ({span:?}): give the stream a longer duplicate window, or the relay a shorter \
         retry span"
    )]
    DuplicateWindowTooShort {
        /// The stream's name.
        stream: String,
        /// Its duplicate window.
        window: std::time::Duration,
        /// The relay's longest retry span.
        span: std::time::Duration,
    },
    /// NATS or JetStream refused or failed a request.
    #[error("nats: {0}")]
    Nats(String),
    /// A database error (the relay's records, dead messages, reconcile).
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    /// An error of acts_as_distributed itself.
    #[error(transparent)]
    Queue(#[from] acts_as_distributed::Error),
    /// A background task ended abnormally (panicked or was cancelled).
    #[error("task: {0}")]
    Task(String),
}

impl Error {
    /// A NATS error, from anything that displays.
    pub(crate) fn nats(e: impl std::fmt::Display) -> Self {
        Self::Nats(e.to_string())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
