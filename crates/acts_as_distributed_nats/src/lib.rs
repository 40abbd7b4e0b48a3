//! # acts_as_distributed_nats
//!
//! Beyond one machine: events of acts_as_distributed's `distributes` table flow through NATS
//! JetStream to consumers and replicas anywhere, with the same handlers.
//!
//! - [`Relay`]: a consumer of `distributes` that publishes each event (subject
//!   `<prefix>.<Type>.<action>`, a versioned JSON [`Payload`], `Nats-Msg-Id` =
//!   `<source>:<event id>`) and counts it relayed only once JetStream acknowledged it;
//! - [`StreamSpec`]: creates the stream, or checks an existing one, never changing it;
//! - [`Reconcile`]: finds relayed events the stream has lost and republishes them under the
//!   same ids;
//! - [`StreamConsumer`]: a durable pull consumer driving any
//!   [`Handler`](acts_as_distributed::Handler) (the replicator included), in order per object
//!   across several tasks.
//!
//! The relay and reconcile keep what they need in two tables of their own: add
//! [`migrations()`] to your `Migrator` (or run [`Migrator`]). See `docs/nats.md`.

#![warn(missing_docs)]
#![warn(missing_debug_implementations)]

mod connect;
mod consumer;
mod dead;
mod error;
mod migration;
mod payload;
mod reconcile;
mod record;
mod relay;
mod stream;
mod subject;

pub use async_nats;
pub use connect::{connect, connect_options};
pub use consumer::{
    StreamConsumer, StreamConsumerBuilder, StreamConsumerHandle, StreamConsumerStats,
};
pub use dead::{DeadMessage, dead_messages};
pub use error::{Error, Result};
pub use migration::{Migrator, migrations};
pub use payload::{PAYLOAD_VERSION, Payload, message_id, parse_message_id};
pub use reconcile::{Reconcile, ReconcileReport};
pub use relay::{Relay, RelayBuilder};
pub use stream::{DEFAULT_DUPLICATE_WINDOW, StreamSpec};
pub use subject::{DEFAULT_PREFIX, Subjects};
