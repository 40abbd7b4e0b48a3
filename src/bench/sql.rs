//! The benches' own statements: run a `sea-query` statement, read one number back, refresh the
//! planner's statistics.

use super::Result;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, StatementBuilder};

/// Runs `statement` and returns the rows it affected.
pub async fn exec(db: &impl ConnectionTrait, statement: &impl StatementBuilder) -> Result<u64> {
    Ok(db.execute(statement).await?.rows_affected())
}

/// The first column of the first row of `statement`, as an integer (NULL as `None`).
pub async fn scalar(db: &impl ConnectionTrait, statement: Statement) -> Result<Option<i64>> {
    let row = db.query_one_raw(statement).await?.ok_or("no row")?;
    Ok(row.try_get_by_index::<Option<i64>>(0)?)
}

/// [`scalar`] of a statement without values.
pub async fn scalar_sql(db: &impl ConnectionTrait, sql: &str) -> Result<Option<i64>> {
    scalar(db, Statement::from_string(db.get_database_backend(), sql)).await
}

/// `ANALYZE` on the server backends, so that plans do not depend on when autovacuum or InnoDB's
/// background statistics last ran. SQLite keeps its defaults (nothing analyzes it on its own).
pub async fn analyze(db: &DatabaseConnection, table: &str) -> Result<()> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            db.execute_unprepared(&format!("ANALYZE {table}")).await?;
        }
        DbBackend::MySql => {
            db.execute_unprepared(&format!("ANALYZE TABLE {table}"))
                .await?;
        }
        _ => {}
    }
    Ok(())
}
