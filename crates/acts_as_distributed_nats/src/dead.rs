//! `distribute_nats_dead`: the messages a stream consumer gave up on (a permanent error, the
//! attempts used up, a malformed message), where an operator can see them.

use crate::migration::Dead;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};

/// Longest payload kept, in bytes (the rest is cut).
const MAX_PAYLOAD: usize = 60_000;

/// One message a stream consumer terminated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadMessage {
    /// The stream.
    pub stream: String,
    /// The durable consumer.
    pub consumer: String,
    /// The message's stream sequence.
    pub stream_sequence: u64,
    /// Its subject.
    pub subject: String,
    /// Its `Nats-Msg-Id`, if it had one.
    pub message_id: Option<String>,
    /// The event id, when the payload could be read.
    pub event_id: Option<i64>,
    /// Why it was given up.
    pub error: String,
    /// The message body (lossy UTF-8, at most 60,000 bytes).
    pub payload: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl DeadMessage {
    pub(crate) fn body(bytes: &[u8]) -> String {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        if text.len() > MAX_PAYLOAD {
            let mut cut = MAX_PAYLOAD;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        text
    }
}

/// Records `dead` in `db`.
pub(crate) async fn record(db: &DatabaseConnection, dead: &DeadMessage) -> Result<(), DbErr> {
    let mut insert = Query::insert();
    insert
        .into_table(Dead::Table)
        .columns([
            Dead::Stream,
            Dead::Consumer,
            Dead::StreamSeq,
            Dead::Subject,
            Dead::MessageId,
            Dead::EventId,
            Dead::Error,
            Dead::Payload,
            Dead::CreatedAt,
        ])
        .values([
            Expr::val(dead.stream.as_str()),
            Expr::val(dead.consumer.as_str()),
            Expr::val(i64::try_from(dead.stream_sequence).unwrap_or(i64::MAX)),
            Expr::val(dead.subject.as_str()),
            Expr::val(dead.message_id.clone()),
            Expr::val(dead.event_id),
            Expr::val(dead.error.as_str()),
            Expr::val(dead.payload.as_str()),
            Expr::val(dead.at.timestamp_millis()),
        ])
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    db.execute(&insert).await.map(|_| ())
}

/// The dead messages recorded in `db` for `stream`, oldest first.
///
/// # Errors
/// A database error (the table is missing: run this crate's migration).
pub async fn dead_messages(
    db: &DatabaseConnection,
    stream: &str,
) -> Result<Vec<DeadMessage>, crate::Error> {
    let mut select = Query::select();
    select
        .columns([
            Dead::Stream,
            Dead::Consumer,
            Dead::StreamSeq,
            Dead::Subject,
            Dead::MessageId,
            Dead::EventId,
            Dead::Error,
            Dead::Payload,
            Dead::CreatedAt,
        ])
        .from(Dead::Table)
        .and_where(Expr::col(Dead::Stream).eq(stream))
        .order_by(Dead::Id, Order::Asc);
    let rows = db.query_all(&select).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.try_get("", "stream_seq")?;
        let at: i64 = r.try_get("", "created_at")?;
        out.push(DeadMessage {
            stream: r.try_get("", "stream")?,
            consumer: r.try_get("", "consumer")?,
            stream_sequence: u64::try_from(seq).unwrap_or_default(),
            subject: r.try_get("", "subject")?,
            message_id: r.try_get("", "message_id")?,
            event_id: r.try_get("", "event_id")?,
            error: r.try_get("", "error")?,
            payload: r.try_get("", "payload")?,
            at: DateTime::from_timestamp_millis(at).unwrap_or_default(),
        });
    }
    Ok(out)
}
