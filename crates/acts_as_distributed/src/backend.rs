//! What differs between the backends, decided in one place: which statements can return rows,
//! how transactions that write or read consistently begin, and how the queue's maintenance writes
//! keep clear of MySQL's locking reads.

use crate::sql::Sql;
use sea_orm::{
    AccessMode, ConnectionTrait, DbBackend, DbErr, IsolationLevel, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

/// Whether `UPDATE` and `DELETE` can return rows here. MySQL has no `RETURNING`, and MariaDB's
/// (which SeaORM can be built to use) does not cover `UPDATE`: one path for both.
pub(crate) fn has_returning<T: ConnectionTrait>(db: &T) -> bool {
    db.get_database_backend() != DbBackend::MySql && db.support_returning()
}

/// Begins a transaction that will write: `BEGIN IMMEDIATE` on SQLite, so it takes the write lock
/// at once instead of failing with "database is locked" when it upgrades from reading while
/// another connection (a worker, say) writes; a plain `BEGIN` elsewhere.
pub(crate) async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Begins a read-only transaction that sees one consistent state of the database throughout
/// (`REPEATABLE READ` on PostgreSQL and MySQL; on SQLite a read transaction sees one state).
pub(crate) async fn begin_consistent_read<C: TransactionTrait + ConnectionTrait>(
    db: &C,
) -> Result<C::Transaction, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        // SeaORM warns about options SQLite lacks; its read transactions are consistent anyway.
        return db.begin().await;
    }
    db.begin_with_options(TransactionOptions {
        isolation_level: Some(IsolationLevel::RepeatableRead),
        access_mode: Some(AccessMode::ReadOnly),
        ..TransactionOptions::default()
    })
    .await
}

/// The database's clock as milliseconds since the Unix epoch, as an SQL expression. Leases and
/// retry times are set and compared on this one clock, so a worker whose own clock is off (or
/// that was paused) never sees a lease as its own for longer than the database does.
pub(crate) fn now_sql(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        DbBackend::MySql => "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
        _ => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

/// Whether the queue's maintenance writes (sequencing, retry by command, pruning) must find their
/// rows with a plain read first and then change them by key (see [`join_keys`]), in a
/// transaction from [`begin_read_committed`]. On MySQL / MariaDB a write that searches rows locks
/// every row it reads (and, under the default REPEATABLE READ, the gaps between them): it waits
/// on every uncommitted event an open application transaction wrote, and holds back the
/// application's inserts while it runs. A plain read takes no locks and skips uncommitted rows.
/// PostgreSQL and SQLite keep their single statements: there a write waits only on the rows it
/// changes.
pub(crate) fn writes_by_key<C: ConnectionTrait>(db: &C) -> bool {
    db.get_database_backend() == DbBackend::MySql
}

/// Keys per statement for [`writes_by_key`].
pub(crate) const KEYS_PER_STATEMENT: usize = 1_000;

/// `(SELECT ? AS id UNION ALL SELECT ? ..) k STRAIGHT_JOIN {table} FORCE INDEX ({index}) ON `, to
/// be followed by the join condition on `k.id`: `ids` as a table for [`writes_by_key`], in
/// `UPDATE <this> .. SET ..` or `DELETE t FROM <this> ..`. The server then reads the keys first
/// and looks each row up in `index`. With `WHERE id IN (..)`, or without the hint, MySQL may
/// scan the whole table instead (it does for small ones), and such a scan waits on every
/// uncommitted row.
pub(crate) fn join_keys(ids: &[i64], table: &str, index: &str) -> Sql {
    let mut q = Sql::new("(SELECT ");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            q.push(" UNION ALL SELECT ");
        }
        q.bind(*id);
        if i == 0 {
            q.push(" AS id");
        }
    }
    q.push(&format!(
        ") k STRAIGHT_JOIN {table} FORCE INDEX ({index}) ON "
    ));
    q
}

/// Begins a transaction for [`writes_by_key`]: READ COMMITTED on MySQL, so that its writes take
/// no gap locks and lock only the rows they change; a plain `BEGIN` elsewhere. (READ COMMITTED
/// writes need `binlog_format` `ROW` or `MIXED`, the defaults, when the binary log is on.)
pub(crate) async fn begin_read_committed<C: TransactionTrait + ConnectionTrait>(
    db: &C,
) -> Result<C::Transaction, DbErr> {
    if db.get_database_backend() != DbBackend::MySql {
        return db.begin().await;
    }
    db.begin_with_options(TransactionOptions {
        isolation_level: Some(IsolationLevel::ReadCommitted),
        ..TransactionOptions::default()
    })
    .await
}

/// Bounds what a queue transaction may wait for on the server: on PostgreSQL its lock waits and
/// statements, and how long it may sit idle (a worker whose connection hangs mid-transaction is
/// ended by the server after `limit`, so no lock it holds outlives its lease). One statement;
/// nothing elsewhere (MySQL keeps the lock of a vanished client until its `wait_timeout`, see
/// docs/queue.md).
pub(crate) async fn bound_transaction<C: ConnectionTrait>(
    txn: &C,
    limit: std::time::Duration,
) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let ms = limit.as_millis().clamp(1, i32::MAX as u128).to_string();
    txn.execute_raw(sea_orm::Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true), \
         set_config('idle_in_transaction_session_timeout', $1, true)",
        [ms.into()],
    ))
    .await?;
    Ok(())
}
