//! `distribute_nats_relayed`: each relayed event's stream and sequence, as its publish ack gave
//! them. Written once per batch; read by reconcile.

use crate::migration::Relayed;
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};

/// One publish ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    pub event_id: i64,
    pub stream: String,
    pub sequence: u64,
}

/// Rows per statement.
const CHUNK: usize = 500;

/// Records `acks` of `source` (replacing earlier records of the same events).
pub(crate) async fn record_acks<C: ConnectionTrait>(
    db: &C,
    source: &str,
    acks: &[Ack],
) -> Result<(), DbErr> {
    let now = chrono::Utc::now().timestamp_millis();
    for chunk in acks.chunks(CHUNK) {
        let mut insert = Query::insert();
        insert.into_table(Relayed::Table).columns([
            Relayed::Source,
            Relayed::EventId,
            Relayed::Stream,
            Relayed::StreamSeq,
            Relayed::At,
        ]);
        for a in chunk {
            insert
                .values([
                    Expr::val(source),
                    Expr::val(a.event_id),
                    Expr::val(a.stream.as_str()),
                    Expr::val(i64::try_from(a.sequence).unwrap_or(i64::MAX)),
                    Expr::val(now),
                ])
                .map_err(|e| DbErr::Custom(e.to_string()))?;
        }
        insert.on_conflict(
            OnConflict::columns([Relayed::Source, Relayed::EventId])
                .update_columns([Relayed::Stream, Relayed::StreamSeq, Relayed::At])
                .to_owned(),
        );
        db.execute(&insert).await?;
    }
    Ok(())
}
