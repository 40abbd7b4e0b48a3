//! Capture: every create, update and destroy of a distributed entity becomes one event.
//!
//! - `macros`: [`acts_as_distributed!`](crate::acts_as_distributed), a thin layer over
//! - `hooks`: the capture step behind each SeaORM hook (where an update event gets its changed
//!   columns);
//! - `distribution`: an entity's distributed columns, key and type name ([`DistributedEntity`]);
//! - `behavior`: your own hooks beside capture ([`DistributedBehavior`]);
//! - `emit`: where an event goes (the helper's buffer or straight through the connection) and
//!   the outside-a-transaction policy; `buffer`: the helper's buffer; `transaction`: the helper;
//! - `scope`: per-task settings ([`Scope`], [`without_distributing`]);
//! - `bulk`, `manual`, `redact`, `active_model_ext`: bulk writes, manual events, redaction and
//!   erasure, saves without distributing.

pub(crate) mod active_model_ext;
pub(crate) mod behavior;
pub(crate) mod buffer;
pub(crate) mod bulk;
pub(crate) mod distribution;
pub(crate) mod emit;
pub(crate) mod hooks;
mod macros;
pub(crate) mod manual;
pub(crate) mod redact;
pub(crate) mod scope;
pub(crate) mod transaction;

pub use active_model_ext::DistributedActiveModelExt;
pub use behavior::DistributedBehavior;
pub use bulk::{DistributedExecExt, insert_many};
pub use distribution::{DistributedEntity, Distribution};
pub use manual::{ManualEvent, record_model};
pub use redact::{erase, erase_object};
pub use scope::{Scope, without_distributing};
pub use transaction::transaction;
