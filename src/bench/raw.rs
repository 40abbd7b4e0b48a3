//! The raw-SQL job-queue baseline: the backlog copied into `bench_jobs`, drained by clients that
//! each loop over one transaction: `SELECT id .. WHERE processed_at IS NULL ORDER BY id LIMIT
//! <batch> FOR UPDATE SKIP LOCKED` (SQLite: no `FOR UPDATE SKIP LOCKED`, and `BEGIN IMMEDIATE` so
//! that two clients queue for the write lock instead of failing to upgrade); `UPDATE bench_jobs
//! SET processed_at = <now> WHERE id IN (..)`; `COMMIT`. Its statements are hand-written, in the
//! backend's own placeholders.

use super::Result;
use super::queue::Backlog;
use super::sql::analyze;
use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait, Value,
};

/// (Re)creates `bench_jobs` holding a copy of the backlog, all pending.
pub async fn fill_jobs(db: &DatabaseConnection, backlog: Backlog) -> Result<()> {
    // One connection for the whole rebuild: another SQLite connection with a stale schema cache
    // would still see the dropped index.
    let txn = db.begin().await?;
    txn.execute_unprepared("DROP TABLE IF EXISTS bench_jobs")
        .await?;
    let (create, index) = match db.get_database_backend() {
        DbBackend::Postgres => (
            "CREATE TABLE bench_jobs (id BIGINT PRIMARY KEY, distributed_type VARCHAR(255) NOT NULL, \
             distributed_id VARCHAR(255) NOT NULL, action VARCHAR(16) NOT NULL, changes JSONB NOT NULL, \
             client_id VARCHAR(255), messages TEXT, created_at TIMESTAMPTZ NOT NULL, processed_at TIMESTAMPTZ)",
            "CREATE INDEX bench_jobs_pending ON bench_jobs (id) WHERE processed_at IS NULL",
        ),
        DbBackend::MySql => (
            "CREATE TABLE bench_jobs (id BIGINT PRIMARY KEY, distributed_type VARCHAR(255) NOT NULL, \
             distributed_id VARCHAR(255) NOT NULL, action VARCHAR(16) NOT NULL, changes JSON NOT NULL, \
             client_id VARCHAR(255), messages TEXT, created_at DATETIME(6) NOT NULL, processed_at DATETIME(6) NULL)",
            "CREATE INDEX bench_jobs_pending ON bench_jobs (processed_at, id)",
        ),
        _ => (
            "CREATE TABLE bench_jobs (id INTEGER PRIMARY KEY, distributed_type VARCHAR(255) NOT NULL, \
             distributed_id VARCHAR(255) NOT NULL, action VARCHAR(16) NOT NULL, changes TEXT NOT NULL, \
             client_id VARCHAR(255), messages TEXT, created_at TEXT NOT NULL, processed_at TEXT)",
            "CREATE INDEX bench_jobs_pending ON bench_jobs (id) WHERE processed_at IS NULL",
        ),
    };
    txn.execute_unprepared(create).await?;
    // The ids are integers of the bench's own: written into the text.
    txn.execute_unprepared(&format!(
        "INSERT INTO bench_jobs (id, distributed_type, distributed_id, action, changes, client_id, \
         messages, created_at) SELECT id, distributed_type, distributed_id, action, changes, client_id, \
         messages, created_at FROM distributes WHERE id >= {} AND id <= {}",
        backlog.first_id, backlog.last_id
    ))
    .await?;
    txn.execute_unprepared(index).await?;
    txn.commit().await?;
    analyze(db, "bench_jobs").await?;
    Ok(())
}

/// The UPDATE that marks `n` claimed jobs processed: the time, then the `n` ids.
fn mark_processed(backend: DbBackend, n: usize) -> String {
    let ids: Vec<String> = match backend {
        DbBackend::Postgres => (2..n + 2).map(|i| format!("${i}")).collect(),
        _ => vec!["?".to_owned(); n],
    };
    let time = if backend == DbBackend::Postgres {
        "$1"
    } else {
        "?"
    };
    format!(
        "UPDATE bench_jobs SET processed_at = {time} WHERE id IN ({})",
        ids.join(", ")
    )
}

/// One baseline client: claims and marks batches until none is left (or `limit` jobs). Returns
/// the jobs it handled.
pub async fn raw_client(db: DatabaseConnection, batch: usize, limit: usize) -> Result<usize> {
    let b = db.get_database_backend();
    let select = format!(
        "SELECT id FROM bench_jobs WHERE processed_at IS NULL ORDER BY id LIMIT {batch}{}",
        if b == DbBackend::Sqlite {
            ""
        } else {
            " FOR UPDATE SKIP LOCKED"
        }
    );
    let mut done = 0;
    while done < limit {
        let txn = if b == DbBackend::Sqlite {
            db.begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?
        } else {
            db.begin().await?
        };
        let rows = txn
            .query_all_raw(Statement::from_string(b, select.clone()))
            .await?;
        if rows.is_empty() {
            txn.commit().await?;
            break;
        }
        let mut values: Vec<Value> = Vec::with_capacity(rows.len() + 1);
        values.push(Utc::now().into());
        for r in &rows {
            values.push(r.try_get_by_index::<i64>(0)?.into());
        }
        txn.execute_raw(Statement::from_sql_and_values(
            b,
            mark_processed(b, rows.len()),
            values,
        ))
        .await?;
        txn.commit().await?;
        done += rows.len();
    }
    Ok(done)
}

/// The jobs still pending.
pub async fn pending_jobs(db: &DatabaseConnection) -> Result<Option<i64>> {
    super::sql::scalar_sql(
        db,
        "SELECT COUNT(*) FROM bench_jobs WHERE processed_at IS NULL",
    )
    .await
}

#[cfg(test)]
mod tests {
    use sea_orm::DbBackend;

    #[test]
    fn placeholders_per_backend() {
        assert_eq!(
            super::mark_processed(DbBackend::Postgres, 2),
            "UPDATE bench_jobs SET processed_at = $1 WHERE id IN ($2, $3)"
        );
        assert_eq!(
            super::mark_processed(DbBackend::MySql, 2),
            "UPDATE bench_jobs SET processed_at = ? WHERE id IN (?, ?)"
        );
    }
}
