//! The stream: create it, or check an existing one, never changing it silently.

use crate::error::{Error, Result};
use crate::subject::Subjects;
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType, Stream};
use async_nats::jetstream::{self, context::GetStreamErrorKind};
use std::time::Duration;

/// The JetStream default duplicate window, and this crate's.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The stream the relay publishes to: its name, subjects, storage, retention, duplicate window
/// and replicas. [`ensure`](Self::ensure) creates it, or checks that an existing one has exactly
/// these settings, and says what differs instead of changing anything.
///
/// ```no_run
/// # async fn demo(relay: acts_as_distributed_nats::Relay, js: async_nats::jetstream::Context)
/// # -> Result<(), acts_as_distributed_nats::Error> {
/// use acts_as_distributed_nats::StreamSpec;
/// use std::time::Duration;
///
/// let stream = StreamSpec::new("DISTRIBUTES", relay.subjects())
///     .duplicate_window(Duration::from_secs(300))
///     .replicas(3)
///     .for_relay(&relay) // refuses a window shorter than the relay's longest retry span
///     .ensure(&js)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a stream spec does nothing until `ensure` or `check` is called"]
pub struct StreamSpec {
    name: String,
    subjects: Vec<String>,
    storage: StorageType,
    retention: RetentionPolicy,
    duplicate_window: Duration,
    replicas: usize,
    max_age: Duration,
    relay_span: Option<Duration>,
}

impl StreamSpec {
    /// A stream named `name` over the subjects' [filter](Subjects::filter), on file storage with
    /// the limits retention, the default duplicate window (2 minutes), one replica, no age limit.
    pub fn new(name: impl Into<String>, subjects: &Subjects) -> Self {
        Self {
            name: name.into(),
            subjects: vec![subjects.filter()],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            replicas: 1,
            max_age: Duration::ZERO,
            relay_span: None,
        }
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The subjects the stream stores (default: the filter of the relay's subjects).
    pub fn subjects<I, S>(mut self, subjects: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subjects = subjects.into_iter().map(Into::into).collect();
        self
    }

    /// File (default) or memory storage. Memory loses the stream with the server.
    pub fn storage(mut self, storage: StorageType) -> Self {
        self.storage = storage;
        self
    }

    /// Retention (default limits: messages stay until a limit removes them, so several
    /// consumers and reconcile can read them).
    pub fn retention(mut self, retention: RetentionPolicy) -> Self {
        self.retention = retention;
        self
    }

    /// How long the stream remembers message ids to drop republished copies (default 2 min).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Replicas in a cluster (default 1; 3 in production, so an acknowledged message survives
    /// the loss of a server).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// How long messages are kept (default: no limit). Set only when creating: an existing
    /// stream's age limit is not checked.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Refuse a duplicate window shorter than this relay's
    /// [longest retry span](crate::Relay::longest_retry_span).
    pub fn for_relay(mut self, relay: &crate::Relay) -> Self {
        self.relay_span = Some(relay.longest_retry_span());
        self
    }

    /// Refuse a duplicate window shorter than `span`.
    pub fn min_duplicate_window(mut self, span: Duration) -> Self {
        self.relay_span = Some(span);
        self
    }

    /// The stream configuration to create.
    pub fn config(&self) -> Config {
        Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            storage: self.storage,
            retention: self.retention,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            max_age: self.max_age,
            ..Default::default()
        }
    }

    /// Creates the stream, or checks the existing one (see [`check`](Self::check)).
    ///
    /// # Errors
    /// [`Error::DuplicateWindowTooShort`] before anything is created; [`Error::StreamMismatch`]
    /// for an existing stream with other settings; [`Error::Nats`] when JetStream refuses.
    #[tracing::instrument(skip(self, js), fields(stream = %self.name))]
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<Stream> {
        self.check_window(self.duplicate_window)?;
        match self.existing(js).await? {
            Some(stream) => self.compare(stream),
            None => match js.create_stream(self.config()).await {
                Ok(stream) => {
                    tracing::info!(stream = %self.name, subjects = ?self.subjects, "created the stream");
                    Ok(stream)
                }
                // Created by someone else in the meantime: check theirs.
                Err(e) => match self.existing(js).await? {
                    Some(stream) => self.compare(stream),
                    None => Err(Error::nats(format!(
                        "cannot create stream `{}`: {e}",
                        self.name
                    ))),
                },
            },
        }
    }

    /// Checks that the stream exists with these settings (subjects, storage, retention,
    /// duplicate window, replicas).
    ///
    /// # Errors
    /// As [`ensure`](Self::ensure); a missing stream is [`Error::Config`].
    pub async fn check(&self, js: &jetstream::Context) -> Result<Stream> {
        let Some(stream) = self.existing(js).await? else {
            return Err(Error::Config(format!(
                "stream `{}` does not exist: create it with StreamSpec::ensure",
                self.name
            )));
        };
        self.compare(stream)
    }

    async fn existing(&self, js: &jetstream::Context) -> Result<Option<Stream>> {
        match js.get_stream(&self.name).await {
            Ok(stream) => Ok(Some(stream)),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(Error::nats(format!(
                    "cannot read stream `{}`: {e}",
                    self.name
                ))),
            },
        }
    }

    fn check_window(&self, window: Duration) -> Result<()> {
        match self.relay_span {
            Some(span) if window < span => Err(Error::DuplicateWindowTooShort {
                stream: self.name.clone(),
                window,
                span,
            }),
            _ => Ok(()),
        }
    }

    fn compare(&self, stream: Stream) -> Result<Stream> {
        let found = &stream.cached_info().config;
        let differences = self.differences(found);
        if !differences.is_empty() {
            return Err(Error::StreamMismatch {
                stream: self.name.clone(),
                differences: differences.join("; "),
            });
        }
        self.check_window(found.duplicate_window)?;
        Ok(stream)
    }

    /// What differs between `found` and these settings.
    fn differences(&self, found: &Config) -> Vec<String> {
        let mut out = Vec::new();
        let mut want = self.subjects.clone();
        let mut have = found.subjects.clone();
        want.sort();
        have.sort();
        if want != have {
            out.push(format!("subjects: found {have:?}, expected {want:?}"));
        }
        if found.storage != self.storage {
            out.push(format!(
                "storage: found {:?}, expected {:?}",
                found.storage, self.storage
            ));
        }
        if found.retention != self.retention {
            out.push(format!(
                "retention: found {:?}, expected {:?}",
                found.retention, self.retention
            ));
        }
        if found.duplicate_window != self.duplicate_window {
            out.push(format!(
                "duplicate window: found {:?}, expected {:?}",
                found.duplicate_window, self.duplicate_window
            ));
        }
        if found.num_replicas.max(1) != self.replicas.max(1) {
            out.push(format!(
                "replicas: found {}, expected {}",
                found.num_replicas, self.replicas
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_difference_is_named() {
        let spec = StreamSpec::new("S", &Subjects::prefix("p"));
        let mut found = spec.config();
        assert!(spec.differences(&found).is_empty());
        found.subjects = vec!["q.>".into()];
        found.storage = StorageType::Memory;
        found.retention = RetentionPolicy::WorkQueue;
        found.duplicate_window = Duration::from_secs(1);
        let d = spec.differences(&found).join("; ");
        for what in ["subjects", "storage", "retention", "duplicate window"] {
            assert!(d.contains(what), "{d}");
        }
    }

    #[test]
    fn a_short_window_is_refused() {
        let spec = StreamSpec::new("S", &Subjects::default())
            .duplicate_window(Duration::from_secs(10))
            .min_duplicate_window(Duration::from_secs(30));
        let e = spec
            .check_window(spec.duplicate_window)
            .expect_err("an error");
        assert!(matches!(e, Error::DuplicateWindowTooShort { .. }), "{e}");
    }
}
