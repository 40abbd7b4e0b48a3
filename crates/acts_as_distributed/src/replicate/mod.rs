//! Replication into another database: a [`Handler`] that plays events onto a replica, a
//! [snapshot](Replicator::snapshot) that brings a new replica up from existing rows, and
//! [verify](Replicator::verify) that compares source and replica. Guide: `docs/replication.md`.

mod apply;
mod snapshot;
mod verify;

pub use apply::Applied;
pub use snapshot::{Snapshot, SnapshotProgress};
pub use verify::{EntityDiff, VerifyReport};

use crate::backend::begin_write;
use crate::capture::Scope;
use crate::capture::distribution::DistributedEntity;
use crate::error::Error;
use crate::event::Event;
use crate::event::{Action, distribute};
use crate::worker::{Handler, HandlerError};
use crate::worker::{Worker, WorkerBuilder};
use apply::{Entry, Registered, db_failure};
use sea_orm::{
    ActiveModelBehavior, ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction,
    EntityTrait, IntoActiveModel, QueryFilter,
};
use serde_json::{Map, Value as Json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// What the replicator does with an event's column that the replica's entity does not have (a
/// column added on the source while the replica runs the older entity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownColumns {
    /// Fail the event with a permanent error that names the entity, the column and the value:
    /// the event is dead, kept for an operator, and its object waits (the default: a replica
    /// must not silently drift).
    #[default]
    Fail,
    /// Leave the column out and apply the rest (a warning is logged once per entity and column).
    Ignore,
}

/// Plays events onto a replica database: create inserts, update sets the changed columns, destroy
/// deletes, each keyed by the entity's uuid column (its primary key when it has none).
///
/// Run it as a consumer with [`Replicator::worker`], or call [`Replicator::apply`] from your own
/// handler (a NATS consumer, say). Cloning is cheap.
///
/// ```no_run
/// # mod user {
/// #     use sea_orm::entity::prelude::*;
/// #     #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
/// #     #[sea_orm(table_name = "users")]
/// #     pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub uuid: Uuid, pub name: String }
/// #     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// #     pub enum Relation {}
/// #     acts_as_distributed::acts_as_distributed!();
/// # }
/// use acts_as_distributed::Replicator;
/// use std::time::Duration;
///
/// # async fn demo(source: sea_orm::DatabaseConnection, replica: sea_orm::DatabaseConnection)
/// # -> Result<(), acts_as_distributed::Error> {
/// let replicator = Replicator::builder(replica).entity::<user::Entity>().build()?;
/// let handle = replicator.worker(source.clone(), "replica").build()?.spawn();
/// // ...
/// handle.shutdown(Duration::from_secs(10)).await?;
/// assert!(replicator.verify(&source).await?.is_equal());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Replicator {
    inner: Arc<Shared>,
}

struct Shared {
    target: DatabaseConnection,
    entries: Vec<Arc<dyn Entry>>,
    by_type: HashMap<&'static str, usize>,
    unknown_columns: UnknownColumns,
    record_as: Option<String>,
    skip_client_ids: Vec<String>,
    /// (type, column) pairs already warned about under [`UnknownColumns::Ignore`].
    warned: Mutex<HashSet<(String, String)>>,
}

fn type_names(entries: &[Arc<dyn Entry>]) -> Vec<&'static str> {
    entries.iter().map(|e| e.type_name()).collect()
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("entities", &type_names(&self.inner.entries))
            .field("unknown_columns", &self.inner.unknown_columns)
            .field("record_as", &self.inner.record_as)
            .field("skip_client_ids", &self.inner.skip_client_ids)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ReplicatorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorBuilder")
            .field("entities", &type_names(&self.entries))
            .field("unknown_columns", &self.unknown_columns)
            .field("record_as", &self.record_as)
            .field("skip_client_ids", &self.skip_client_ids)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Replicator`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct ReplicatorBuilder {
    target: DatabaseConnection,
    entries: Vec<Arc<dyn Entry>>,
    unknown_columns: UnknownColumns,
    record_as: Option<String>,
    skip_client_ids: Vec<String>,
}

impl Replicator {
    /// A replicator writing into `target`.
    pub fn builder(target: DatabaseConnection) -> ReplicatorBuilder {
        ReplicatorBuilder {
            target,
            entries: Vec::new(),
            unknown_columns: UnknownColumns::default(),
            record_as: None,
            skip_client_ids: Vec::new(),
        }
    }

    /// A worker of consumer `consumer` on `source` with this replicator as its handler, handling
    /// one event at a time in sequence order (so parents are created before their children). Add
    /// the worker's other settings, then `build()`.
    pub fn worker(&self, source: DatabaseConnection, consumer: impl Into<String>) -> WorkerBuilder {
        Worker::builder(source, consumer)
            .handler(self.clone())
            .concurrency(1)
    }

    /// Checks that the replica has each registered entity's table with every column of the
    /// entity. Its worker and [`snapshot`](Self::snapshot) run this first, so a replica without
    /// its tables is a clear error at once instead of retried events.
    ///
    /// # Errors
    /// [`Error::Config`] naming the entity and what the replica said; [`Error::Db`] when the
    /// replica cannot be reached.
    pub async fn check(&self) -> Result<(), Error> {
        for entry in &self.inner.entries {
            if let Err(e) = entry.check(&self.inner.target).await {
                let text = e.to_string();
                let missing = [
                    "no such",
                    "does not exist",
                    "doesn't exist",
                    "unknown column",
                    "has no column",
                ]
                .iter()
                .any(|m| text.to_lowercase().contains(m));
                if !missing {
                    return Err(Error::Db(e));
                }
                return Err(Error::Config(format!(
                    "the replica lacks the table of {} or one of its columns ({text}): create the \
                     replica's tables first (its own migrations, or SeaORM's \
                     Schema::create_table_from_entity), with every column of the replica's entity",
                    entry.type_name()
                )));
            }
        }
        Ok(())
    }

    /// Applies one event to the replica in a transaction of its own.
    ///
    /// # Errors
    /// A permanent [`HandlerError`] for what no retry can fix (a type not registered, a column
    /// the replica lacks under [`UnknownColumns::Fail`], a value that does not fit the column),
    /// naming the entity, column and value; a retryable one for database errors.
    pub async fn apply(&self, event: &Event) -> Result<Applied, HandlerError> {
        let txn = begin_write(&self.inner.target).await.map_err(db_failure)?;
        let applied = self.apply_in(&txn, event).await?;
        txn.commit().await.map_err(db_failure)?;
        Ok(applied)
    }

    /// Applies one event through the replica transaction `txn`.
    async fn apply_in(
        &self,
        txn: &DatabaseTransaction,
        event: &Event,
    ) -> Result<Applied, HandlerError> {
        let inner = &self.inner;
        if let Some(client) = &event.client_id
            && inner.skip_client_ids.iter().any(|s| s == client)
        {
            return Ok(Applied::Skipped);
        }
        let what = || {
            format!(
                "event {} ({} {} {})",
                event.id, event.action, event.distributed_type, event.distributed_id
            )
        };
        let Some(entry) = inner
            .by_type
            .get(event.distributed_type.as_str())
            .map(|i| inner.entries[*i].clone())
        else {
            return Err(HandlerError::permanent(format!(
                "{}: type `{}` is not registered with this replicator; register its entity with \
                 ReplicatorBuilder::entity, or leave the type out of the worker with `.types(..)`",
                what(),
                event.distributed_type
            )));
        };
        let Json::Object(changes) = &event.changes else {
            return Err(HandlerError::permanent(format!(
                "{}: `changes` is not a JSON object",
                what()
            )));
        };
        let mut changes = if event.action == Action::Destroy {
            Map::new()
        } else {
            self.known_columns(entry.as_ref(), changes)
                .map_err(|e| prefix(&what(), e))?
        };
        if inner.record_as.is_some() && event.action != Action::Destroy {
            self.drop_newer_local_changes(txn, event, &mut changes)
                .await
                .map_err(|e| prefix(&what(), e))?;
        }
        let applied = self
            .in_scope(entry.apply(
                txn,
                event.action,
                &event.distributed_id,
                &Json::Object(changes),
            ))
            .await
            .map_err(|e| prefix(&what(), e))?;
        tracing::debug!(event = event.id, ?applied, "replicated");
        Ok(applied)
    }

    /// Runs the replica's writes with capture off, or recorded under `record_as`.
    async fn in_scope<F: Future>(&self, fut: F) -> F::Output {
        match &self.inner.record_as {
            Some(client_id) => {
                Scope::new()
                    .client_id(client_id.clone())
                    .with_distributing()
                    .run(fut)
                    .await
            }
            None => Scope::new().without_distributing().run(fut).await,
        }
    }

    /// `changes` without, by the policy, the columns the replica's entity does not have.
    fn known_columns(
        &self,
        entry: &dyn Entry,
        changes: &Map<String, Json>,
    ) -> Result<Map<String, Json>, HandlerError> {
        let mut kept = Map::new();
        for (name, value) in changes {
            if entry.has_column(name) {
                kept.insert(name.clone(), value.clone());
                continue;
            }
            match self.inner.unknown_columns {
                UnknownColumns::Fail => {
                    return Err(HandlerError::permanent(format!(
                        "the replica's {} has no column `{name}` (value {}); add the column to the \
                         replica's entity and table, or build the replicator with \
                         UnknownColumns::Ignore, then retry the dead event",
                        entry.type_name(),
                        short(value)
                    )));
                }
                UnknownColumns::Ignore => {
                    let first = self
                        .inner
                        .warned
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((entry.type_name().to_owned(), name.clone()));
                    if first {
                        tracing::warn!(
                            r#type = entry.type_name(),
                            column = %name,
                            "the replica has no such column: its values are left out"
                        );
                    }
                }
            }
        }
        Ok(kept)
    }

    /// Two-way conflict rule (last writer wins, per column): drops from `changes` the columns
    /// that a local write on the replica changed after the event was captured.
    async fn drop_newer_local_changes(
        &self,
        txn: &DatabaseTransaction,
        event: &Event,
        changes: &mut Map<String, Json>,
    ) -> Result<(), HandlerError> {
        let own = self.inner.record_as.as_deref().unwrap_or_default();
        let newer = distribute::Entity::find()
            .filter(distribute::Column::DistributedType.eq(event.distributed_type.as_str()))
            .filter(distribute::Column::DistributedId.eq(event.distributed_id.as_str()))
            .filter(distribute::Column::CreatedAt.gt(event.created_at))
            .filter(
                Condition::any()
                    .add(distribute::Column::ClientId.is_null())
                    .add(distribute::Column::ClientId.ne(own)),
            )
            .all(txn)
            .await
            .map_err(|e| {
                HandlerError::retry(format!(
                    "reading the replica's own later events of this object for the two-way \
                     conflict rule (the replica needs the distributes table and its migrations): {e}"
                ))
            })?;
        for local in newer {
            if let Json::Object(local_changes) = local.changes {
                for column in local_changes.keys() {
                    changes.remove(column);
                }
            }
        }
        Ok(())
    }

    /// A snapshot that brings the replica up from the rows `source` holds now; see [`Snapshot`].
    pub fn snapshot<'a>(
        &'a self,
        source: &'a DatabaseConnection,
        consumer: &'a str,
    ) -> Snapshot<'a> {
        Snapshot::new(self, source, consumer)
    }

    /// Compares every registered entity between `source` and the replica on the distributed
    /// columns, keyed by `distributed_id`.
    ///
    /// # Errors
    /// [`Error::Db`] when either database cannot be read.
    #[tracing::instrument(level = "info", skip_all)]
    pub async fn verify(&self, source: &DatabaseConnection) -> Result<VerifyReport, Error> {
        verify::verify(&self.inner.entries, source, &self.inner.target).await
    }
}

#[async_trait::async_trait]
impl Handler for Replicator {
    async fn handle(&self, event: Event) -> Result<(), HandlerError> {
        self.apply(&event).await.map(|_| ())
    }

    async fn check(&self) -> Result<(), Error> {
        Replicator::check(self).await
    }

    fn handles_batches(&self) -> bool {
        true
    }

    /// A whole batch in one replica transaction, in order. When an event fails, the transaction
    /// rolls back and the events before it are applied again on their own (so they are done and
    /// only the failed one counts an attempt); the events after it go back to the queue.
    #[tracing::instrument(level = "debug", name = "replicate", skip_all, fields(events = events.len()))]
    async fn handle_batch(&self, events: Vec<Event>) -> Vec<Result<(), HandlerError>> {
        let mut end = events.len();
        let mut failed = None;
        loop {
            match self.apply_all(&events[..end]).await {
                Ok(()) => {
                    let mut results: Vec<Result<(), HandlerError>> =
                        (0..end).map(|_| Ok(())).collect();
                    results.extend(failed.map(Err));
                    return results;
                }
                // The first `i` applied fine: try them alone, and report event `i`.
                Err((i, e)) => {
                    end = i;
                    failed = Some(e);
                }
            }
        }
    }
}

impl Replicator {
    /// Applies `events` in one replica transaction; on failure rolls it back and says which.
    async fn apply_all(&self, events: &[Event]) -> Result<(), (usize, HandlerError)> {
        if events.is_empty() {
            return Ok(());
        }
        let txn = begin_write(&self.inner.target)
            .await
            .map_err(|e| (0, db_failure(e)))?;
        for (i, event) in events.iter().enumerate() {
            if let Err(e) = self.apply_in(&txn, event).await {
                let _ = txn.rollback().await;
                return Err((i, e));
            }
        }
        txn.commit().await.map_err(|e| (0, db_failure(e)))
    }
}

impl ReplicatorBuilder {
    /// Replicates entity `E` (register parents before their children: a snapshot copies in this
    /// order).
    pub fn entity<E>(mut self) -> Self
    where
        E: DistributedEntity + Sync,
        E::ActiveModel: ActiveModelBehavior + Send + Sync,
        E::Model: IntoActiveModel<E::ActiveModel> + Sync,
    {
        self.entries.push(Arc::new(Registered::<E>::new()));
        self
    }

    /// What to do with event columns the replica does not have (default: [`UnknownColumns::Fail`]).
    pub fn unknown_columns(mut self, policy: UnknownColumns) -> Self {
        self.unknown_columns = policy;
        self
    }

    /// Two-way replication: capture the replica's writes as events with this `client_id` (the
    /// replica needs the `distributes` table), so that they travel on from the replica, and
    /// apply the conflict rule (a column changed on the replica after the event was captured
    /// keeps the replica's value). The other direction's replicator skips this client id.
    pub fn record_as(mut self, client_id: impl Into<String>) -> Self {
        self.record_as = Some(client_id.into());
        self
    }

    /// Events with this `client_id` are not applied (they are the other direction's replicated
    /// writes coming back): the echo guard of two-way replication.
    pub fn skip_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.skip_client_ids.push(client_id.into());
        self
    }

    /// The replicator.
    ///
    /// # Errors
    /// [`Error::Config`] when no entity is registered, two entities share a type name, or
    /// `record_as` is also skipped.
    pub fn build(self) -> Result<Replicator, Error> {
        if self.entries.is_empty() {
            return Err(Error::Config(
                "the replicator has no entities: register them with ReplicatorBuilder::entity"
                    .into(),
            ));
        }
        let mut by_type = HashMap::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if by_type.insert(entry.type_name(), i).is_some() {
                return Err(Error::Config(format!(
                    "two replicated entities have the type name `{}`; give one another \
                     `type_name` in acts_as_distributed!",
                    entry.type_name()
                )));
            }
        }
        if let Some(own) = &self.record_as
            && self.skip_client_ids.contains(own)
        {
            return Err(Error::Config(format!(
                "record_as(\"{own}\") is also skipped: use the other direction's client id in \
                 skip_client_id"
            )));
        }
        Ok(Replicator {
            inner: Arc::new(Shared {
                target: self.target,
                entries: self.entries,
                by_type,
                unknown_columns: self.unknown_columns,
                record_as: self.record_as,
                skip_client_ids: self.skip_client_ids,
                warned: Mutex::default(),
            }),
        })
    }
}

fn prefix(what: &str, e: HandlerError) -> HandlerError {
    match e {
        HandlerError::Retry(m) => HandlerError::Retry(format!("{what}: {m}")),
        HandlerError::Permanent(m) => HandlerError::Permanent(format!("{what}: {m}")),
    }
}

/// A value for an error message, at most 80 characters.
fn short(value: &Json) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}
