//! Snapshot / backfill: bring a new replica up from the rows the source holds, then continue
//! from the log.

use super::Replicator;
use crate::backend::{begin_consistent_read, begin_write};
use crate::capture::Scope;
use crate::error::Error;
use crate::queue::StartFrom;
use crate::queue::consumer::{register, remove};
use crate::queue::handover::{mark_done, unpassed_events};
use sea_orm::DatabaseConnection;
use std::time::Instant;

/// Where a running snapshot is, passed to [`Snapshot::on_progress`] after each page.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotProgress {
    /// The entity being copied.
    pub type_name: &'static str,
    /// Its rows copied so far.
    pub copied: u64,
    /// Its rows on the source when its copy began.
    pub total: u64,
}

/// The progress callback of a [`Snapshot`].
type OnProgress<'a> = Box<dyn FnMut(&SnapshotProgress) + Send + 'a>;

/// Copies every registered entity's rows from the source into the replica, made by
/// [`Replicator::snapshot`]:
///
/// 1. registers the consumer `consumer` on the source starting from now (an existing consumer
///    keeps its position), so every change from here on is in its queue;
/// 2. copies each entity's rows as one consistent state of the source (a repeatable-read,
///    read-only transaction), parents first (registration order), in pages ordered by primary
///    key, each page in one replica transaction: an object missing on the replica is inserted, a
///    present one gets the source's values;
/// 3. records the events committed before the copy's state as handled by the consumer (the copy
///    holds their effects);
/// 4. then run [`Replicator::worker`] with the same consumer (not before the snapshot ends): it
///    replays exactly the changes made after the copy's state, and the replica ends equal to the
///    source.
///
/// The source may keep changing throughout. Copies write no events on the replica.
#[must_use = "a snapshot does nothing until `run` is awaited"]
pub struct Snapshot<'a> {
    replicator: &'a Replicator,
    source: &'a DatabaseConnection,
    consumer: &'a str,
    page_size: u64,
    progress: Option<OnProgress<'a>>,
}

impl std::fmt::Debug for Snapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("replicator", self.replicator)
            .field("consumer", &self.consumer)
            .field("page_size", &self.page_size)
            .field("progress", &self.progress.as_ref().map(|_| "set"))
            .finish_non_exhaustive()
    }
}

impl<'a> Snapshot<'a> {
    pub(super) fn new(
        replicator: &'a Replicator,
        source: &'a DatabaseConnection,
        consumer: &'a str,
    ) -> Self {
        Self {
            replicator,
            source,
            consumer,
            page_size: 1_000,
            progress: None,
        }
    }

    /// Rows per page and replica transaction (default 1,000).
    pub fn page_size(mut self, rows: u64) -> Self {
        self.page_size = rows.max(1);
        self
    }

    /// Called after each page (progress is also logged at `info` every 10 seconds).
    pub fn on_progress(mut self, f: impl FnMut(&SnapshotProgress) + Send + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Runs the copy. Returns the rows copied per type, in registration order.
    ///
    /// # Errors
    /// [`Error::Db`] when the source cannot be read or the consumer registered;
    /// [`Error::Snapshot`] with the replica's message when a row cannot be written there.
    #[tracing::instrument(level = "info", name = "snapshot", skip_all, fields(consumer = self.consumer))]
    pub async fn run(mut self) -> Result<Vec<(&'static str, u64)>, Error> {
        self.replicator.check().await?;
        let created = register(self.source, self.consumer, None, StartFrom::Now).await?;
        let (source, consumer) = (self.source, self.consumer);
        let copied = self.copy().await;
        if copied.is_err() && created {
            // A consumer left behind would pin pruning and start a later snapshot at the wrong
            // place: the snapshot that made it takes it away again.
            if let Err(e) = remove(source, consumer).await {
                tracing::warn!(error = %e, consumer, "could not remove the failed snapshot's consumer");
            }
        }
        copied
    }

    async fn copy(&mut self) -> Result<Vec<(&'static str, u64)>, Error> {
        // One consistent state of the source for the whole copy: a child copied later never
        // refers to a parent created after the parents were copied.
        let source = begin_consistent_read(self.source).await?;
        // The events committed between the registration and this state are in the copy already:
        // the consumer is to start after them, exactly where the copy's state ends.
        let copied_events = unpassed_events(&source, self.consumer).await?;
        let target = &self.replicator.inner.target;
        let mut report = Vec::new();
        for entry in &self.replicator.inner.entries {
            let type_name = entry.type_name();
            let total = entry.count(&source).await?;
            let mut copied = 0;
            let mut after = None;
            let mut logged = Instant::now();
            tracing::info!(r#type = type_name, total, "snapshot: copying");
            loop {
                let txn = begin_write(target).await?;
                let (n, next) = Scope::new()
                    .without_distributing()
                    .run(entry.copy_page(&source, &txn, after, self.page_size))
                    .await
                    .map_err(|e| Error::Snapshot {
                        type_name: type_name.to_owned(),
                        message: e.message().to_owned(),
                    })?;
                txn.commit().await?;
                copied += n;
                if let Some(f) = self.progress.as_mut() {
                    f(&SnapshotProgress {
                        type_name,
                        copied,
                        total,
                    });
                }
                if logged.elapsed().as_secs() >= 10 {
                    tracing::info!(r#type = type_name, copied, total, "snapshot: progress");
                    logged = Instant::now();
                }
                match next {
                    Some(key) if n == self.page_size => after = Some(key),
                    _ => break,
                }
            }
            tracing::info!(r#type = type_name, copied, "snapshot: copied");
            report.push((type_name, copied));
        }
        source.commit().await?;
        mark_done(self.source, self.consumer, &copied_events).await?;
        Ok(report)
    }
}
