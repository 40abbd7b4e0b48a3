//! The JSON payload of a relayed event (one versioned wire form) and its `Nats-Msg-Id`.

use acts_as_distributed::{Action, Event};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The version of the payload written by this release, in its `version` field.
///
/// Version 1: the fields of [`Payload`]; `changes` and `previous` keep the event's own format
/// (`format`, see `acts_as_distributed::FORMAT_VERSION`).
pub const PAYLOAD_VERSION: u16 = 1;

/// A relayed event as it travels in a NATS message body.
///
/// ```
/// use acts_as_distributed::{Action, Event};
/// use acts_as_distributed_nats::Payload;
///
/// let event = Event::new(42, "User", "u-1", Action::Create, serde_json::json!({"name": "Ada"}));
/// let payload = Payload::from_event("app-1", &event);
/// let bytes = serde_json::to_vec(&payload).unwrap();
/// let back = Payload::decode(&bytes).unwrap().into_event(1);
/// assert_eq!((back.id, back.changes), (42, serde_json::json!({"name": "Ada"})));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Payload {
    /// The payload version ([`PAYLOAD_VERSION`]).
    pub version: u16,
    /// The relay's stable source id (the outbox the event comes from).
    pub source: String,
    /// The event's id in its source's `distributes` table.
    pub id: i64,
    /// The CamelCase model name.
    pub distributed_type: String,
    /// The object's uuid or key.
    pub distributed_id: String,
    /// What happened.
    pub action: Action,
    /// Column name to the JSON form of its value.
    pub changes: Json,
    /// The old values of an update (entities with `previous = true`).
    #[serde(default)]
    pub previous: Option<Json>,
    /// Where the change came from.
    #[serde(default)]
    pub client_id: Option<String>,
    /// A note for the receivers.
    #[serde(default)]
    pub messages: Option<String>,
    /// When the change was captured.
    pub created_at: DateTime<Utc>,
    /// The source transaction (PostgreSQL).
    #[serde(default)]
    pub source_txid: Option<i64>,
    /// The event format version.
    pub format: i16,
}

impl Payload {
    /// The payload of `event`, relayed by `source`.
    pub fn from_event(source: &str, event: &Event) -> Self {
        Self {
            version: PAYLOAD_VERSION,
            source: source.to_owned(),
            id: event.id,
            distributed_type: event.distributed_type.clone(),
            distributed_id: event.distributed_id.clone(),
            action: event.action,
            changes: event.changes.clone(),
            previous: event.previous.clone(),
            client_id: event.client_id.clone(),
            messages: event.messages.clone(),
            created_at: event.created_at,
            source_txid: event.source_txid,
            format: event.format,
        }
    }

    /// Reads a message body.
    ///
    /// # Errors
    /// A message saying what is wrong: not JSON, a missing or mistyped field, a payload version
    /// this release does not know.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let payload: Payload =
            serde_json::from_slice(bytes).map_err(|e| format!("malformed payload: {e}"))?;
        if payload.version == 0 || payload.version > PAYLOAD_VERSION {
            return Err(format!(
                "payload version {} is not supported (this release reads 1 to {PAYLOAD_VERSION})",
                payload.version
            ));
        }
        if payload.distributed_type.is_empty() || payload.distributed_id.is_empty() {
            return Err("malformed payload: empty distributed_type or distributed_id".into());
        }
        Ok(payload)
    }

    /// The event a handler receives: `seq` is the stream sequence (the order of the stream),
    /// `attempt` the delivery attempt.
    pub fn into_event(self, stream_sequence: u64) -> Event {
        let mut event = Event::new(
            self.id,
            self.distributed_type,
            self.distributed_id,
            self.action,
            self.changes,
        );
        event.seq = i64::try_from(stream_sequence).unwrap_or(i64::MAX);
        event.previous = self.previous;
        event.client_id = self.client_id;
        event.messages = self.messages;
        event.created_at = self.created_at;
        event.source_txid = self.source_txid;
        event.format = self.format;
        event
    }
}

/// The `Nats-Msg-Id` of an event: `<source>:<event id>`, stable across retries and restarts, so
/// the stream drops a republished copy within its duplicate window.
pub fn message_id(source: &str, event_id: i64) -> String {
    format!("{source}:{event_id}")
}

/// The event id in a `Nats-Msg-Id` of `source`, if it is one.
pub fn parse_message_id(source: &str, message_id: &str) -> Option<i64> {
    message_id
        .strip_prefix(source)?
        .strip_prefix(':')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip() {
        assert_eq!(message_id("eu-1", 17), "eu-1:17");
        assert_eq!(parse_message_id("eu-1", "eu-1:17"), Some(17));
        assert_eq!(parse_message_id("eu-1", "eu-2:17"), None);
        assert_eq!(parse_message_id("eu", "eu-1:17"), None);
    }

    #[test]
    fn malformed_and_future_payloads_are_refused() {
        assert!(
            Payload::decode(b"not json")
                .expect_err("an error")
                .contains("malformed")
        );
        assert!(Payload::decode(b"{\"version\":1}").is_err());
        let event = Event::new(1, "User", "u", Action::Destroy, serde_json::json!({}));
        let mut p = serde_json::to_value(Payload::from_event("s", &event)).expect("ok");
        p["version"] = 9.into();
        let e = Payload::decode(&serde_json::to_vec(&p).expect("ok")).expect_err("an error");
        assert!(e.contains("version 9"), "{e}");
    }

    #[test]
    fn every_field_survives() {
        let mut event = Event::new(3, "User", "u", Action::Update, serde_json::json!({"a": 1}));
        event.previous = Some(serde_json::json!({"a": 0}));
        event.client_id = Some("web".into());
        event.messages = Some("note".into());
        event.source_txid = Some(99);
        let bytes = serde_json::to_vec(&Payload::from_event("s", &event)).expect("ok");
        let back = Payload::decode(&bytes).expect("ok").into_event(12);
        assert_eq!(back.seq, 12);
        assert_eq!(back.previous, event.previous);
        assert_eq!(back.client_id, event.client_id);
        assert_eq!(back.messages, event.messages);
        assert_eq!(back.source_txid, Some(99));
        assert_eq!(back.created_at, event.created_at);
    }
}
