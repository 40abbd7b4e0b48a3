//! How captured events are written to `distributes`: in order, in as few statements as the
//! backend allows.

use super::{Action, Distributes, FORMAT_VERSION};
use crate::error::hint_missing_migration;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, InsertStatement, Query};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use serde_json::Value as Json;

/// A captured change, not yet written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewEvent {
    /// An entity's type name (borrowed) or a manual event's (owned).
    pub distributed_type: std::borrow::Cow<'static, str>,
    pub distributed_id: String,
    pub action: Action,
    pub changes: serde_json::Map<String, Json>,
    /// The old values of the changed columns (update events of `previous = true` entities).
    pub previous: Option<serde_json::Map<String, Json>>,
    pub client_id: Option<std::sync::Arc<str>>,
    pub messages: Option<std::sync::Arc<str>>,
    pub created_at: DateTime<Utc>,
}

/// Rows per INSERT: 9 bound values a row stays well under every backend's limit on parameters.
const ROWS_PER_STATEMENT: usize = 1_000;

/// PostgreSQL, several events: one statement text whatever the count (so the server keeps its
/// prepared plan), with the rows in one JSON parameter, in order.
const POSTGRES_BATCH_INSERT: &str = "INSERT INTO distributes \
    (distributed_type, distributed_id, action, changes, client_id, messages, created_at, format, source_txid) \
    SELECT t, i, a, c, ci, m, ca, $2, pg_current_xact_id()::text::bigint \
    FROM json_to_recordset($1::json) AS e(n int, t text, i text, a text, c jsonb, ci text, m text, ca timestamptz) \
    ORDER BY n";

/// [`POSTGRES_BATCH_INSERT`] with `previous`, for batches that hold old values. Batches without
/// them keep the statement above, which works before the `previous` migration ran.
const POSTGRES_BATCH_INSERT_PREVIOUS: &str = "INSERT INTO distributes \
    (distributed_type, distributed_id, action, changes, client_id, messages, created_at, format, source_txid, previous) \
    SELECT t, i, a, c, ci, m, ca, $2, pg_current_xact_id()::text::bigint, p \
    FROM json_to_recordset($1::json) AS e(n int, t text, i text, a text, c jsonb, ci text, m text, ca timestamptz, p jsonb) \
    ORDER BY n";

/// Writes `events` in order through `db` (so inside the caller's transaction when `db` is one),
/// in as few statements as the backend allows.
pub(crate) async fn insert_events<C: ConnectionTrait>(
    db: &C,
    events: Vec<NewEvent>,
) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk: Vec<NewEvent> = events.by_ref().take(ROWS_PER_STATEMENT).collect();
        let result = if backend == DbBackend::Postgres && chunk.len() > 1 {
            db.execute_raw(postgres_batch(chunk)).await
        } else {
            db.execute(&values_insert(backend, chunk)?).await
        };
        result.map_err(hint_missing_migration)?;
    }
    Ok(())
}

fn postgres_batch(chunk: Vec<NewEvent>) -> Statement {
    let with_previous = chunk.iter().any(|e| e.previous.is_some());
    let rows: Vec<Json> = chunk
        .into_iter()
        .enumerate()
        .map(|(n, e)| {
            serde_json::json!({
                "n": n,
                "t": e.distributed_type,
                "i": e.distributed_id,
                "a": e.action.as_str(),
                "c": Json::Object(e.changes),
                "ci": e.client_id.as_deref(),
                "m": e.messages.as_deref(),
                "ca": e.created_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                "p": e.previous.map(Json::Object),
            })
        })
        .collect();
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        if with_previous {
            POSTGRES_BATCH_INSERT_PREVIOUS
        } else {
            POSTGRES_BATCH_INSERT
        },
        [Json::Array(rows).to_string().into(), FORMAT_VERSION.into()],
    )
}

fn values_insert(backend: DbBackend, chunk: Vec<NewEvent>) -> Result<InsertStatement, DbErr> {
    // `previous` only when some event has old values: events of entities without `previous =
    // true` stay writable before the `previous` migration ran.
    let with_previous = chunk.iter().any(|e| e.previous.is_some());
    let mut insert = Query::insert();
    let mut columns = vec![
        Distributes::DistributedType,
        Distributes::DistributedId,
        Distributes::Action,
        Distributes::Changes,
        Distributes::ClientId,
        Distributes::Messages,
        Distributes::CreatedAt,
        Distributes::Format,
        Distributes::SourceTxid,
    ];
    if with_previous {
        columns.push(Distributes::Previous);
    }
    insert.into_table(Distributes::Table).columns(columns);
    for e in chunk {
        // The source transaction: PostgreSQL names it; elsewhere there is no cheap equivalent.
        let txid: Expr = match backend {
            DbBackend::Postgres => Expr::cust("pg_current_xact_id()::text::bigint"),
            _ => Expr::val(None::<i64>),
        };
        let mut row = vec![
            Expr::val(e.distributed_type.as_ref()),
            Expr::val(e.distributed_id),
            Expr::val(e.action.as_str()),
            Expr::val(Json::Object(e.changes)),
            Expr::val(e.client_id.as_deref()),
            Expr::val(e.messages.as_deref()),
            Expr::val(e.created_at),
            Expr::val(FORMAT_VERSION),
            txid,
        ];
        if with_previous {
            row.push(Expr::val(e.previous.map(Json::Object)));
        }
        insert
            .values(row)
            .map_err(|e| DbErr::Custom(format!("building the distributes insert: {e}")))?;
    }
    Ok(insert)
}
