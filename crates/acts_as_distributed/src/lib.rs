//! # acts_as_distributed
//!
//! Declare [`acts_as_distributed!`] in a SeaORM entity and every create, update and destroy of it
//! writes one row to the `distributes` table, in the same transaction as the change: a persistent
//! queue that other processes read to replicate the data elsewhere or to react to events.
//!
//! ```
//! mod user {
//!     use sea_orm::entity::prelude::*;
//!
//!     #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
//!     #[sea_orm(table_name = "users")]
//!     pub struct Model {
//!         #[sea_orm(primary_key)]
//!         pub id: i32,
//!         pub uuid: Uuid,
//!         pub name: String,
//!         pub password: String,
//!     }
//!
//!     #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
//!     pub enum Relation {}
//!
//!     // In place of `impl ActiveModelBehavior for ActiveModel {}`:
//!     acts_as_distributed::acts_as_distributed!(except = [Column::Password]);
//! }
//!
//! use acts_as_distributed::DistributedEntity;
//! assert_eq!(user::Entity::distributed_type(), "User");
//! use sea_orm::IdenStatic;
//! let names: Vec<&str> = user::Entity::distributed_columns().iter().map(|c| c.as_str()).collect();
//! assert_eq!(names, ["uuid", "name"]);
//! ```
//!
//! Guides: `docs/capture.md` (what is captured, on which SeaORM paths, and how),
//! `docs/values.md` (the JSON form of each value), `docs/queue.md` (consumers and workers),
//! `docs/replication.md` (the replicator, snapshot and verify).

mod bulk;
mod capture;
mod config;
mod distribution;
mod error;
mod event;
mod handler;
mod hooks;
mod macros;
mod manual;
mod queue;
mod replicate;
mod retry;
mod scope;
mod transaction;
pub mod values;
mod worker;

pub use async_trait::async_trait;
pub use bulk::{DistributedExecExt, insert_many};
pub use config::{OutsideTransaction, Settings, UnknownConnection};
pub use distribution::{DistributedEntity, Distribution};
pub use error::{Error, Result};
pub use event::{Action, FORMAT_VERSION, distribute};
pub use handler::{Event, Handler, HandlerError};
pub use hooks::DistributedBehavior;
pub use manual::{ManualEvent, record_model};
pub use queue::{BlockedObject, ConsumerStatus, DeadEvents, Queue, StartFrom, TypeStatus};
pub use replicate::{
    Applied, EntityDiff, Replicator, ReplicatorBuilder, Snapshot, SnapshotProgress, UnknownColumns,
    VerifyReport,
};
pub use retry::RetryPolicy;
pub use scope::{Scope, without_distributing};
pub use transaction::transaction;
pub use worker::{Worker, WorkerBuilder, WorkerHandle};

mod active_model_ext;
pub use active_model_ext::DistributedActiveModelExt;

/// The one-line import: the macro's traits, the scope and the helper.
pub mod prelude {
    pub use crate::{
        DistributedActiveModelExt, DistributedBehavior, DistributedEntity, DistributedExecExt,
        Scope, acts_as_distributed, transaction, without_distributing,
    };
}

/// What the macro expands to refers to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::capture::{after_delete, after_save, before_delete, before_save};
    pub use async_trait;
    pub use sea_orm;
}
