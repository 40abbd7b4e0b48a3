//! Helpers shared by the integration tests.
#![allow(dead_code, unused_imports)]

pub mod freeze;
pub mod nats;
pub mod queue;

pub use acts_as_distributed_suite::entities::*;
pub use acts_as_distributed_suite::testdb::{Backend, TestDb, backends};

use acts_as_distributed::distribute;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};
use serde_json::Value as Json;

/// Every event in `distributes`, oldest first.
pub async fn events<C: ConnectionTrait>(db: &C) -> Vec<distribute::Model> {
    distribute::Entity::find()
        .order_by_asc(distribute::Column::Id)
        .all(db)
        .await
        .expect("read distributes")
}

/// The keys of an event's `changes`, sorted.
pub fn keys(changes: &Json) -> Vec<String> {
    let mut keys: Vec<String> = changes
        .as_object()
        .expect("changes is an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// A new user ActiveModel with `login` set.
pub fn new_user(login: &str) -> user::ActiveModel {
    use sea_orm::Set;
    user::ActiveModel {
        login: Set(login.to_owned()),
        ..Default::default()
    }
}
