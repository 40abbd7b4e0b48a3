//! Consumers are named and kept: one filter each, and a retired one can be removed so that it
//! stops holding back pruning.

mod common;

use acts_as_distributed::{Action, HandlerError, ManualEvent, Queue, StartFrom, Worker};
use common::{TestDb, backends, events};
use std::time::Duration;

async fn notes(db: &sea_orm::DatabaseConnection, n: usize) {
    for i in 0..n {
        ManualEvent::new("Note", format!("n{i}"), Action::Create)
            .record(db)
            .await
            .expect("record");
    }
}

fn worker(db: &sea_orm::DatabaseConnection, consumer: &str) -> acts_as_distributed::WorkerBuilder {
    Worker::builder(db.clone(), consumer).handler(|_| async { Ok::<_, HandlerError>(()) })
}

#[tokio::test]
async fn a_removed_consumer_stops_pinning_prune_and_its_name_can_start_again() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let queue = Queue::new(t.db.clone());
        queue
            .register_consumer("retired", StartFrom::Oldest)
            .await
            .expect("register");
        notes(&t.db, 5).await;
        let live = worker(&t.db, "live").build().expect("build");
        while live.run_once().await.expect("run_once") > 0 {}
        assert_eq!(
            queue.prune(Duration::ZERO, 100).await.expect("prune"),
            0,
            "{}: the retired consumer still needs every event",
            backend.name()
        );
        assert!(queue.remove_consumer("retired").await.expect("remove"));
        assert!(
            !queue
                .remove_consumer("retired")
                .await
                .expect("remove again")
        );
        assert_eq!(
            queue.prune(Duration::ZERO, 100).await.expect("prune"),
            5,
            "{}: nothing pins prune any more",
            backend.name()
        );
        assert!(events(&t.db).await.is_empty());
        let names: Vec<String> = queue
            .status()
            .await
            .expect("status")
            .into_iter()
            .map(|c| c.consumer)
            .collect();
        assert_eq!(names, ["live"]);

        // Removed, the name starts afresh with a filter of its own.
        notes(&t.db, 2).await;
        let again = worker(&t.db, "retired")
            .types(["Note"])
            .build()
            .expect("build");
        assert_eq!(again.run_once().await.expect("run_once"), 2);
    }
}

#[tokio::test]
async fn the_first_worker_gives_a_consumer_registered_without_a_filter_its_filter() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let queue = Queue::new(t.db.clone());
        queue
            .register_consumer("c", StartFrom::Oldest)
            .await
            .expect("register");
        let narrow = worker(&t.db, "c").types(["Note"]).build().expect("build");
        narrow.run_once().await.expect("the first filter is taken");
        // The same filter, written in another order, is the same filter.
        let same = worker(&t.db, "c")
            .types(["Note", "Note"])
            .actions([Action::Update, Action::Create, Action::Destroy])
            .build()
            .expect("build");
        let e = same.run_once().await.expect_err("actions differ");
        assert!(e.to_string().contains("Queue::remove_consumer"), "{e}");
        let reordered = worker(&t.db, "c")
            .types(["Note", "Note"])
            .build()
            .expect("build");
        reordered.run_once().await.expect("same filter");
        // A spawned worker with another filter stops at once with that error.
        let handle = worker(&t.db, "c")
            .types(["User"])
            .build()
            .expect("build")
            .spawn();
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while !handle.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ended.is_ok(), "{}: stopped at once", backend.name());
        let e = handle
            .shutdown(Duration::from_secs(1))
            .await
            .expect_err("refused");
        assert!(matches!(e, acts_as_distributed::Error::Config(_)), "{e:?}");
    }
}
