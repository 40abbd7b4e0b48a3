//! The `distributes` table: its entity, the action names, and how captured events are written.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, InsertStatement, Query};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, DeriveIden, Statement};
use serde_json::Value as Json;

/// The version of the event format written by this release, stored in `distributes.format`.
///
/// Version 1: `changes` is a JSON object of column name to the JSON form of
/// [`values`](crate::values); `distributed_id` is the uuid column rendered as a string, or the
/// primary key (a composite key as a JSON array). `previous` (a later, nullable column) is NULL or
/// an object of the same form; adding it left `changes` as it was, so the version stays 1.
pub const FORMAT_VERSION: i16 = 1;

/// The SeaORM entity of the `distributes` table, to read events with SeaORM.
pub mod distribute {
    use sea_orm::entity::prelude::*;

    /// One row of `distributes`: one create, update or destroy of one object.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "distributes")]
    pub struct Model {
        /// Increasing id: the order events were written in.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The CamelCase model name, such as `User`.
        pub distributed_type: String,
        /// The object's uuid, or its primary key rendered as a string.
        pub distributed_id: String,
        /// `create`, `update` or `destroy`.
        pub action: String,
        /// Column name to the JSON form of its value.
        #[sea_orm(column_type = "JsonBinary")]
        pub changes: Json,
        /// Where the change came from (a scope or the process-wide default).
        pub client_id: Option<String>,
        /// A note for the receivers (the original's `messages_for_distribution`).
        pub messages: Option<String>,
        /// The original plugin's error flag; consumers keep their own state (see the queue docs).
        pub error: bool,
        /// The original plugin's processed time; consumers keep their own state.
        pub processed_at: Option<DateTimeUtc>,
        /// When the change was captured, in UTC.
        pub created_at: DateTimeUtc,
        /// The event format version ([`FORMAT_VERSION`](crate::FORMAT_VERSION) when written).
        pub format: i16,
        /// The source transaction's id on PostgreSQL, NULL elsewhere.
        pub source_txid: Option<i64>,
        /// Update events of entities with `previous = true`: column name to the JSON form of the
        /// value each changed column held before the update (the same keys as `changes`). NULL
        /// for every other event.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub previous: Option<Json>,
    }

    /// `distributes` has no relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What happened to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The row was inserted.
    Create,
    /// The row was updated.
    Update,
    /// The row was deleted.
    Destroy,
}

impl Action {
    /// The name stored in `distributes.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Destroy => "destroy",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "create" => Ok(Action::Create),
            "update" => Ok(Action::Update),
            "destroy" => Ok(Action::Destroy),
            other => Err(format!(
                "unknown action `{other}`: expected create, update or destroy"
            )),
        }
    }
}

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

#[derive(DeriveIden)]
pub(crate) enum Distributes {
    Table,
    Id,
    DistributedType,
    DistributedId,
    Action,
    Changes,
    ClientId,
    Messages,
    CreatedAt,
    Format,
    SourceTxid,
    Previous,
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
        result.map_err(missing_table_hint)?;
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

/// Adds the fix to the error a database gives when `distributes` does not exist yet.
pub(crate) fn missing_table_hint(e: DbErr) -> DbErr {
    let text = e.to_string();
    if text.contains("previous")
        && (text.contains("no such column")
            || text.contains("has no column")
            || text.contains("does not exist")
            || text.contains("Unknown column"))
    {
        return DbErr::Custom(format!(
            "{text}: `distributes.previous` is missing; run the migrations of acts_as_distributed_migration \
             again (`m20261128_000003_add_previous` adds it), or add its new migrations to your Migrator"
        ));
    }
    let missing = text.contains("no such table")
        || (text.contains("distributes")
            && (text.contains("does not exist") || text.contains("doesn't exist")));
    if missing {
        DbErr::Custom(format!(
            "{text}: the `distributes` table is missing; run the migration of acts_as_distributed_migration \
             (`acts_as_distributed_migration::Migrator::up(&db, None)`, or add its migrations to your Migrator)"
        ))
    } else {
        e
    }
}
