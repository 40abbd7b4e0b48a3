//! A worker says how it is doing: a worker that cannot work stops at once with a clear error,
//! and a running one reports its health.

mod common;

use acts_as_distributed::{Error, HandlerError, Queue, Worker, WorkerHandle, WorkerState};
use common::queue::{poll_until, stops_within};
use common::{TestDb, backends};
use sea_orm::DatabaseConnection;
use std::time::Duration;

/// A spawned worker of `consumer` whose handler succeeds at once; it polls every 50 ms.
fn spawn_worker(db: &DatabaseConnection, consumer: &str) -> WorkerHandle {
    Worker::builder(db.clone(), consumer)
        .poll_interval(Duration::from_millis(50))
        .handler(|_| async { Ok::<_, HandlerError>(()) })
        .build()
        .expect("build")
        .spawn()
}

#[tokio::test]
async fn a_worker_without_the_queue_tables_stops_at_once_with_missing_migration() {
    for backend in backends() {
        let t = TestDb::empty(&backend).await;
        let handle = spawn_worker(&t.db, "mailer");
        assert!(
            stops_within(&handle, Duration::from_secs(10)).await,
            "{}: the worker stopped",
            backend.name()
        );
        let health = handle.health();
        assert_eq!(health.state, WorkerState::Stopped, "{}", backend.name());
        let ended = handle.shutdown(Duration::from_secs(1)).await;
        match ended {
            Err(Error::MissingMigration { what, .. }) => {
                assert!(
                    what.contains("distribute_consumers"),
                    "{}: {what}",
                    backend.name()
                )
            }
            other => panic!(
                "{}: expected MissingMigration, got {other:?}",
                backend.name()
            ),
        }
    }
}

#[tokio::test]
async fn queue_calls_without_the_tables_are_missing_migration_with_a_clean_message() {
    for backend in backends() {
        let t = TestDb::empty(&backend).await;
        let e = Queue::new(t.db.clone())
            .status()
            .await
            .expect_err("no tables");
        let text = e.to_string();
        assert!(
            matches!(e, Error::MissingMigration { .. }),
            "{}: {e:?}",
            backend.name()
        );
        assert!(
            text.contains("run the migrations of acts_as_distributed_migration")
                && !text.contains("at line"),
            "{}: {text}",
            backend.name()
        );
    }
}

#[tokio::test]
async fn a_running_worker_reports_itself_running_and_counts_its_events() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        for n in 0..3 {
            acts_as_distributed::ManualEvent::new(
                "Note",
                format!("n{n}"),
                acts_as_distributed::Action::Create,
            )
            .record(&t.db)
            .await
            .expect("record");
        }
        let handle = spawn_worker(&t.db, "notes");
        // Up to 10 s for the 3 events; the assertions below say what the worker reports.
        poll_until(Duration::from_secs(10), async || {
            handle.health().events >= 3
        })
        .await;
        let health = handle.health();
        assert_eq!(health.events, 3, "{}: {health:?}", backend.name());
        assert_eq!(health.state, WorkerState::Running, "{}", backend.name());
        assert_eq!(health.failures_in_a_row, 0);
        assert!(health.last_success.is_some());
        handle
            .shutdown(Duration::from_secs(2))
            .await
            .expect("shutdown");
    }
}
