//! Reconcile: JetStream can lose messages it has acknowledged (its disk sync is periodic by
//! default), so the relayed events still retained in `distributes` are compared with the stream,
//! by the stream sequence each ack gave, and the missing ones are republished under their ids.

use crate::error::{Error, Result};
use crate::migration::Relayed;
use crate::payload::message_id;
use crate::record::{Ack, record_acks};
use crate::relay::Relay;
use acts_as_distributed::{Event, distribute};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use futures_util::StreamExt as _;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Records read per page.
const PAGE: u64 = 5_000;
/// Stream lookups at once.
const LOOKUPS: usize = 32;

/// What a reconcile found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// Relayed events still retained in `distributes` that were checked.
    pub checked: u64,
    /// Of those, found in the stream at their recorded sequence, with their id.
    pub present: u64,
    /// Event ids missing from the stream.
    pub missing: Vec<i64>,
    /// Missing events republished (stored anew).
    pub republished: Vec<i64>,
    /// Missing events the stream took for duplicates (their id is still in its duplicate
    /// window): run reconcile again once the window has passed.
    pub deduplicated: Vec<i64>,
    /// Records of events pruned from `distributes` since, deleted (nothing to compare).
    pub forgotten: u64,
}

impl std::fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} checked, {} present, {} missing ({} republished, {} still in the duplicate window), {} forgotten",
            self.checked,
            self.present,
            self.missing.len(),
            self.republished.len(),
            self.deduplicated.len(),
            self.forgotten
        )
    }
}

/// A reconcile of one relay's records with one stream; made by [`Relay::reconcile`].
#[derive(Debug)]
#[must_use = "a reconcile does nothing until `run` is called"]
pub struct Reconcile<'a> {
    relay: &'a Relay,
    stream: String,
    dry_run: bool,
}

impl Relay {
    /// A reconcile of what this relay recorded as relayed to `stream`.
    pub fn reconcile(&self, stream: impl Into<String>) -> Reconcile<'_> {
        Reconcile {
            relay: self,
            stream: stream.into(),
            dry_run: false,
        }
    }
}

impl Reconcile<'_> {
    /// Only report; republish nothing.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// Compares, republishes the missing events in their order, and reports.
    ///
    /// # Errors
    /// [`Error::Db`] for the database, [`Error::Nats`] when the stream cannot be read, or a
    /// missing event cannot be republished.
    #[tracing::instrument(skip(self), fields(stream = %self.stream, source = %self.relay.source()))]
    pub async fn run(self) -> Result<ReconcileReport> {
        let db = self.relay.database();
        let source = self.relay.source().to_owned();
        let stream = self
            .relay
            .jetstream()
            .get_stream(&self.stream)
            .await
            .map_err(|e| Error::nats(format!("stream `{}`: {e}", self.stream)))?;
        let mut report = ReconcileReport::default();
        let mut after = i64::MIN;
        loop {
            let mut select = Query::select();
            select
                .columns([Relayed::EventId, Relayed::StreamSeq])
                .from(Relayed::Table)
                .and_where(Expr::col(Relayed::Source).eq(source.as_str()))
                .and_where(Expr::col(Relayed::Stream).eq(self.stream.as_str()))
                .and_where(Expr::col(Relayed::EventId).gt(after))
                .order_by(Relayed::EventId, Order::Asc)
                .limit(PAGE);
            let rows = db.query_all(&select).await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get_by_index(0)?;
            let mut page = Vec::with_capacity(rows.len());
            for r in &rows {
                let id: i64 = r.try_get_by_index(0)?;
                let seq: i64 = r.try_get_by_index(1)?;
                page.push((id, u64::try_from(seq).unwrap_or_default()));
            }
            let ids: Vec<i64> = page.iter().map(|p| p.0).collect();
            let retained: HashSet<i64> = distribute::Entity::find()
                .filter(distribute::Column::Id.is_in(ids.clone()))
                .all(db)
                .await?
                .into_iter()
                .map(|e| e.id)
                .collect();
            let gone: Vec<i64> = ids
                .iter()
                .copied()
                .filter(|i| !retained.contains(i))
                .collect();
            if !gone.is_empty() && !self.dry_run {
                let mut delete = Query::delete();
                delete
                    .from_table(Relayed::Table)
                    .and_where(Expr::col(Relayed::Source).eq(source.as_str()))
                    .and_where(Expr::col(Relayed::EventId).is_in(gone.clone()));
                db.execute(&delete).await?;
            }
            report.forgotten += gone.len() as u64;
            let checks = page
                .into_iter()
                .filter(|(id, _)| retained.contains(id))
                .map(|(id, seq)| {
                    let stream = &stream;
                    let source = source.as_str();
                    async move { (id, present(stream, seq, &message_id(source, id)).await) }
                });
            let results: Vec<(i64, Result<bool>)> = futures_util::stream::iter(checks)
                .buffer_unordered(LOOKUPS)
                .collect()
                .await;
            for (id, found) in results {
                report.checked += 1;
                if found? {
                    report.present += 1;
                } else {
                    report.missing.push(id);
                }
            }
        }
        report.missing.sort_unstable();
        if !report.missing.is_empty() && !self.dry_run {
            self.republish(&mut report).await?;
        }
        tracing::info!(%report, "reconciled");
        Ok(report)
    }

    async fn republish(&self, report: &mut ReconcileReport) -> Result<()> {
        let db = self.relay.database();
        for chunk in report.missing.clone().chunks(500) {
            let rows = distribute::Entity::find()
                .filter(distribute::Column::Id.is_in(chunk.to_vec()))
                .order_by_asc(distribute::Column::Id)
                .all(db)
                .await?;
            let mut acks = Vec::with_capacity(rows.len());
            for row in rows {
                let event = as_event(row)?;
                let ack = self.relay.publish(&event).await.map_err(|e| {
                    Error::nats(format!("cannot republish event {}: {e}", event.id))
                })?;
                if ack.duplicate {
                    report.deduplicated.push(event.id);
                } else {
                    report.republished.push(event.id);
                    acks.push(Ack {
                        event_id: event.id,
                        stream: ack.stream,
                        sequence: ack.sequence,
                    });
                }
            }
            record_acks(db, self.relay.source(), &acks).await?;
        }
        Ok(())
    }
}

/// Whether the stream holds the message `id` at `seq`.
async fn present(stream: &Stream, seq: u64, id: &str) -> Result<bool> {
    match stream.get_raw_message(seq).await {
        Ok(m) => Ok(m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .is_some_and(|v| v.as_str() == id)),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(false),
        Err(e) => Err(Error::nats(format!("cannot read sequence {seq}: {e}"))),
    }
}

/// The event of a `distributes` row.
fn as_event(row: distribute::Model) -> Result<Event> {
    let action = row
        .action
        .parse()
        .map_err(|e: String| Error::Config(format!("event {}: {e}", row.id)))?;
    let mut event = Event::new(
        row.id,
        row.distributed_type,
        row.distributed_id,
        action,
        row.changes,
    );
    event.previous = row.previous;
    event.client_id = row.client_id;
    event.messages = row.messages;
    event.created_at = row.created_at;
    event.source_txid = row.source_txid;
    event.format = row.format;
    Ok(event)
}
