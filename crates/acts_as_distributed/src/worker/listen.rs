//! Wake-up on PostgreSQL: `LISTEN distributes` on a connection of its own.

use sea_orm::DatabaseConnection;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts the listener when `db` is PostgreSQL (and the `postgres` feature is on); the task ends
/// when `stop` is cancelled, and the worker joins it.
pub(crate) fn spawn(
    db: &DatabaseConnection,
    wake: Arc<Notify>,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    #[cfg(feature = "postgres")]
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        return Some(tokio::spawn(listen(db.clone(), wake, stop)));
    }
    let _ = (db, wake, stop);
    None
}

/// Wakes the worker on each `NOTIFY distributes`, reconnecting after errors.
#[cfg(feature = "postgres")]
async fn listen(db: DatabaseConnection, wake: Arc<Notify>, stop: CancellationToken) {
    use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
    use std::time::Duration;
    while !stop.is_cancelled() {
        let listener = async {
            // A connection of its own, not one taken from the application's pool for good.
            let options = db.get_postgres_connection_pool().connect_options();
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with((*options).clone());
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen("distributes").await?;
            Ok::<_, sea_orm::sqlx::Error>(l)
        };
        match listener.await {
            Ok(mut l) => loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    n = l.recv() => match n {
                        Ok(_) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection lost; polling until it is back");
                            break;
                        }
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot LISTEN on distributes; polling instead"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
