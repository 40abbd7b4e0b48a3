//! Events: what a change becomes. The [`Action`], the [`Event`] a consumer receives (and its
//! JSON form, `docs/events.md`), the `distributes` table ([`distribute`]) and how captured events
//! are written to it.

mod table;
mod write;

pub(crate) use table::Distributes;
pub use table::distribute;
pub(crate) use write::{NewEvent, insert_events};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The version of the event format written by this release, stored in `distributes.format`.
///
/// Version 1: `changes` is a JSON object of column name to the JSON form of
/// [`values`](crate::values); `distributed_id` is the uuid column rendered as a string, or the
/// primary key (a composite key as a JSON array). `previous` (a later, nullable column) is NULL or
/// an object of the same form; adding it left `changes` as it was, so the version stays 1.
pub const FORMAT_VERSION: i16 = 1;

/// What happened to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The row was inserted.
    Create,
    /// The row was updated.
    Update,
    /// The row was deleted.
    Destroy,
}

impl Action {
    /// The name stored in `distributes.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Destroy => "destroy",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "create" => Ok(Action::Create),
            "update" => Ok(Action::Update),
            "destroy" => Ok(Action::Destroy),
            other => Err(format!(
                "unknown action `{other}`: expected create, update or destroy"
            )),
        }
    }
}

/// One event, as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// The row's `id`: stable across attempts and consumers, the key for idempotent effects.
    pub id: i64,
    /// The position the sequencer gave the event (the order consumers receive events in).
    pub seq: i64,
    /// The CamelCase model name, such as `User`.
    pub distributed_type: String,
    /// The object's uuid or key.
    pub distributed_id: String,
    /// What happened.
    pub action: Action,
    /// Column name to the JSON form of its value. A [masked](crate::values::is_redacted) value
    /// stands for a value the event does not carry: skip it.
    pub changes: Json,
    /// Update events of entities declared with `previous = true`: column name to the JSON form of
    /// the value each changed column held before the update (the keys of `changes`). `None` for
    /// every other event.
    pub previous: Option<Json>,
    /// Where the change came from.
    pub client_id: Option<String>,
    /// A note for the receivers.
    pub messages: Option<String>,
    /// When the change was captured.
    pub created_at: DateTime<Utc>,
    /// The source transaction on PostgreSQL.
    pub source_txid: Option<i64>,
    /// The event format version.
    pub format: i16,
    /// Which attempt this is for this consumer, from 1.
    pub attempt: u32,
}

impl Event {
    /// An event as a consumer other than the built-in worker receives it (from NATS, say), for
    /// [`Replicator::apply`](crate::Replicator::apply) or your own handlers; the other fields
    /// start empty (`seq` 0, now, format 1, attempt 1) and are public to set.
    pub fn new(
        id: i64,
        distributed_type: impl Into<String>,
        distributed_id: impl Into<String>,
        action: Action,
        changes: Json,
    ) -> Self {
        Self {
            id,
            seq: 0,
            distributed_type: distributed_type.into(),
            distributed_id: distributed_id.into(),
            action,
            changes,
            client_id: None,
            messages: None,
            created_at: Utc::now(),
            source_txid: None,
            previous: None,
            format: FORMAT_VERSION,
            attempt: 1,
        }
    }
}
