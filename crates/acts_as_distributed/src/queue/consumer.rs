//! Consumers: their filter and policies (one per consumer, stored in
//! `distribute_consumers.config`), where a new one starts, and registration.

use super::sequencer::{last_seq, sequence_all};
use super::state::{DeadEvents, DeliveryState};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::sql::{Sql, now_ms, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::{Deserialize, Serialize};

/// Where a consumer that did not exist yet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// From the oldest event still in `distributes` (the default).
    #[default]
    Oldest,
    /// From the events that become visible after the consumer is registered.
    Now,
}

/// A consumer's filter and policies, kept in `distribute_consumers.config` (its JSON form) for
/// status and used by every claim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ConsumerConfig {
    pub types: Vec<String>,
    pub actions: Vec<Action>,
    pub after: Vec<String>,
    pub dead_events: DeadEvents,
}

impl ConsumerConfig {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// The stored config; a row written by hand that does not parse reads as the default.
    pub(crate) fn from_json(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// Appends ` AND ..` conditions on `e` for the type and action filter.
    pub(crate) fn push_filter(&self, q: &mut Sql) {
        if !self.types.is_empty() {
            q.push(" AND e.distributed_type IN (")
                .bind_list(self.types.iter().map(String::as_str))
                .push(")");
        }
        if !self.actions.is_empty() {
            q.push(" AND e.action IN (")
                .bind_list(self.actions.iter().map(|a| a.as_str()))
                .push(")");
        }
    }

    /// Appends `NOT EXISTS` an earlier delivery of the object of `row` (an alias of `distributes`
    /// or `distribute_deliveries` with `seq`, `distributed_type`, `distributed_id`) that holds
    /// it back under this consumer's [`DeadEvents`] policy.
    pub(crate) fn push_unblocked(&self, q: &mut Sql, consumer: &str, row: &str) {
        self.push_unblocked_but(q, consumer, row, Unless::Nothing);
    }

    /// [`push_unblocked`](Self::push_unblocked), except that the earlier deliveries `unless`
    /// names do not hold `row` back.
    pub(crate) fn push_unblocked_but(
        &self,
        q: &mut Sql,
        consumer: &str,
        row: &str,
        unless: Unless<'_>,
    ) {
        q.push("NOT EXISTS (SELECT 1 FROM distribute_deliveries p WHERE p.consumer = ")
            .bind(consumer)
            .push(&format!(
                " AND p.distributed_type = {row}.distributed_type AND p.distributed_id = {row}.distributed_id \
                 AND p.seq < {row}.seq AND p.state IN ("
            ))
            .bind_list(self.dead_events.holding_states())
            .push(")");
        match unless {
            Unless::Nothing => {}
            Unless::DueAt(now) => {
                q.push(" AND NOT (p.state IN ");
                push_claimable(q);
                q.push(" AND p.available_at <= ").bind(now).push(")");
            }
            Unless::LeasedTo(owner) => {
                q.push(" AND (p.lease_owner IS NULL OR p.lease_owner <> ")
                    .bind(owner)
                    .push(")");
            }
        }
        q.push(")");
    }
}

/// Earlier deliveries that do not hold an event back, for [`ConsumerConfig::push_unblocked_but`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unless<'a> {
    /// Every earlier open delivery holds it back.
    Nothing,
    /// Deliveries due at this time (ms) are taken by the same claim, in `seq` order: they do not
    /// hold back the later events of their object, which may come in the same batch. (Otherwise
    /// the events of a batch given back would come back one per object and claim, out of order
    /// across objects.)
    DueAt(i64),
    /// Deliveries leased to this owner are in its own batch, handled before in `seq` order.
    LeasedTo(&'a str),
}

/// `IN (..)` of the states a claim can take once due.
pub(crate) fn push_claimable(q: &mut Sql) {
    q.push("(").bind_list(DeliveryState::CLAIMABLE).push(")");
}

/// The stored config of a consumer registered without one (by [`Queue::register_consumer`] or
/// a snapshot): the first worker's filter becomes the consumer's.
///
/// [`Queue::register_consumer`]: super::Queue::register_consumer
const NO_FILTER_YET: &str = "";

impl ConsumerConfig {
    /// The same config with its lists sorted and without repeats, for comparing.
    fn normalized(&self) -> Self {
        let mut c = self.clone();
        c.types.sort();
        c.types.dedup();
        c.actions.sort_by_key(|a| a.as_str());
        c.actions.dedup();
        c.after.sort();
        c.after.dedup();
        c
    }
}

async fn stored_config(db: &DatabaseConnection, consumer: &str) -> Result<Option<String>> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT config FROM distribute_consumers WHERE name = ?",
            vec![consumer.into()],
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<String>("", "config")).transpose()?)
}

/// Creates the consumer if it does not exist (at the start `start` says). With a `config` (a
/// worker's), that becomes the consumer's filter if it has none yet, and must equal it
/// otherwise: one filter per consumer. Every consumer named in `after` must be registered.
/// Returns whether this call created the consumer.
pub(crate) async fn register(
    db: &DatabaseConnection,
    consumer: &str,
    config: Option<&ConsumerConfig>,
    start: StartFrom,
) -> Result<bool> {
    let b = db.get_database_backend();
    if let Some(config) = config {
        for other in &config.after {
            if stored_config(db, other).await?.is_none() {
                return Err(Error::UnknownConsumer {
                    consumer: other.clone(),
                });
            }
        }
    }
    let wanted = config.map_or_else(|| NO_FILTER_YET.to_owned(), ConsumerConfig::to_json);
    let mut created = false;
    if stored_config(db, consumer).await?.is_none() {
        let position: i64 = match start {
            StartFrom::Oldest => 0,
            StartFrom::Now => {
                sequence_all(db).await?;
                last_seq(db).await?
            }
        };
        let inserted = db
            .execute_raw(stmt(
                b,
                "INSERT INTO distribute_consumers (name, position, claimed_to, config, created_at, claimed_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                vec![
                    consumer.into(),
                    position.into(),
                    position.into(),
                    wanted.clone().into(),
                    now_ms().into(),
                    0i64.into(),
                ],
            ))
            .await;
        // Another worker of the same consumer may have registered it a moment before.
        match inserted {
            Ok(_) => created = true,
            Err(e) if stored_config(db, consumer).await?.is_none() => return Err(e.into()),
            Err(_) => {}
        }
    }
    let Some(config) = config else {
        return Ok(created);
    };
    // The first worker of a consumer registered without a filter gives it one (once, however
    // many workers race for it), then every worker's must be that one.
    db.execute_raw(stmt(
        b,
        "UPDATE distribute_consumers SET config = ? WHERE name = ? AND config = ?",
        vec![wanted.clone().into(), consumer.into(), NO_FILTER_YET.into()],
    ))
    .await?;
    let stored = stored_config(db, consumer).await?.unwrap_or_default();
    if ConsumerConfig::from_json(&stored).normalized() != config.normalized() {
        return Err(Error::Config(format!(
            "consumer `{consumer}` has the filter {stored} and this worker asks for {wanted}: \
             every worker of a consumer uses its one filter (types, actions, after, dead_events). \
             Start this worker with the consumer's filter, or give it a consumer of its own; to \
             change the filter, stop every worker of `{consumer}`, remove the consumer \
             (Queue::remove_consumer; it forgets its position and deliveries) and start it again \
             with the new filter and a start_from"
        )));
    }
    Ok(created)
}

/// Removes a consumer, its delivery rows and its batches; returns whether it existed.
pub(crate) async fn remove(db: &DatabaseConnection, consumer: &str) -> Result<bool> {
    let b = db.get_database_backend();
    for table in ["distribute_deliveries", "distribute_batches"] {
        db.execute_raw(stmt(
            b,
            &format!("DELETE FROM {table} WHERE consumer = ?"),
            vec![consumer.into()],
        ))
        .await?;
    }
    let removed = db
        .execute_raw(stmt(
            b,
            "DELETE FROM distribute_consumers WHERE name = ?",
            vec![consumer.into()],
        ))
        .await?
        .rows_affected();
    Ok(removed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_config_round_trips_through_json() {
        let config = ConsumerConfig {
            types: vec!["User".into()],
            actions: vec![Action::Create, Action::Destroy],
            after: vec!["indexer".into()],
            dead_events: DeadEvents::Skip,
        };
        assert_eq!(ConsumerConfig::from_json(&config.to_json()), config);
        assert_eq!(
            ConsumerConfig::from_json("not json"),
            ConsumerConfig::default()
        );
        // The form written by earlier releases reads the same.
        let earlier = r#"{"types":["User"],"actions":["create","destroy"],"after":["indexer"],"dead_events":"skip"}"#;
        assert_eq!(ConsumerConfig::from_json(earlier), config);
    }

    #[test]
    fn the_filter_binds_each_type_and_action() {
        let config = ConsumerConfig {
            types: vec!["User".into(), "Post".into()],
            actions: vec![Action::Update],
            ..ConsumerConfig::default()
        };
        let mut q = Sql::new("SELECT 1 FROM distributes e WHERE 1 = 1");
        config.push_filter(&mut q);
        let s = q.build(sea_orm::DbBackend::Sqlite);
        assert_eq!(
            s.sql,
            "SELECT 1 FROM distributes e WHERE 1 = 1 AND e.distributed_type IN (?, ?) AND e.action IN (?)"
        );
    }
}
