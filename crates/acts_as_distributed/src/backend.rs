//! What differs between the backends, decided in one place: which statements can return rows,
//! and how transactions that write or read consistently begin.

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
