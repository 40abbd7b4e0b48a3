//! The migration runs standalone and as part of an application's own `Migrator`, on every
//! backend, and can be rolled back.

mod common;

use acts_as_distributed_migration::Migrator;
use common::*;
use sea_orm::ActiveModelTrait;
use sea_orm_migration::prelude::*;

/// An application's own migrator: its table first, then the `distributes` migrations.
struct AppMigrator;

struct CreateUsers;

impl MigrationName for CreateUsers {
    fn name(&self) -> &str {
        "m20260101_000001_create_users"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateUsers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = sea_orm::Schema::new(manager.get_database_backend());
        manager
            .create_table(schema.create_table_from_entity(user::Entity))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(user::Entity).to_owned())
            .await
    }
}

#[async_trait::async_trait]
impl MigratorTrait for AppMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![Box::new(CreateUsers)];
        migrations.extend(acts_as_distributed_migration::migrations());
        migrations
    }
}

#[tokio::test]
async fn standalone_migrator_creates_and_drops_the_table() {
    for backend in backends() {
        let t = TestDb::empty(&backend).await;
        Migrator::up(&t.db, None).await.expect("up");
        let manager = SchemaManager::new(&t.db);
        assert!(
            manager.has_table("distributes").await.expect("has_table"),
            "{}",
            backend.name()
        );
        for column in [
            "id",
            "distributed_type",
            "distributed_id",
            "action",
            "changes",
            "client_id",
            "messages",
            "error",
            "processed_at",
            "created_at",
            "format",
            "source_txid",
            "previous",
        ] {
            assert!(
                manager
                    .has_column("distributes", column)
                    .await
                    .expect("has_column"),
                "{column}"
            );
        }
        assert!(
            manager
                .has_index("distributes", "idx_distributes_object")
                .await
                .expect("has_index"),
            "{}",
            backend.name()
        );
        Migrator::up(&t.db, None)
            .await
            .expect("a second up does nothing");
        Migrator::down(&t.db, None).await.expect("down");
        assert!(!manager.has_table("distributes").await.expect("has_table"));
    }
}

#[tokio::test]
async fn migrations_join_an_applications_own_migrator() {
    for backend in backends() {
        let t = TestDb::empty(&backend).await;
        AppMigrator::up(&t.db, None).await.expect("up");
        let applied: Vec<String> = AppMigrator::get_applied_migrations(&t.db)
            .await
            .expect("status")
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        assert_eq!(
            applied,
            [
                "m20260101_000001_create_users",
                "m20261128_000001_create_distributes",
                "m20261128_000002_create_queue",
                "m20261128_000003_add_previous",
                "m20261201_000004_batch_leases",
            ],
            "{}",
            backend.name()
        );
        // The application's model now writes its events.
        new_user("ada").insert(&t.db).await.expect("insert");
        assert_eq!(events(&t.db).await.len(), 1, "{}", backend.name());
    }
}

/// Issue 10's upgrade path: a database migrated and used by the previous release (a row per
/// claimed event in `distribute_deliveries`) takes `m20261201_000004_batch_leases` with queued,
/// leased, retrying, waiting, done and dead events present, and a worker of the new release goes
/// on exactly where the old one stood: nothing handled twice, nothing skipped, the dead event
/// still holding its object until it is retried.
#[tokio::test]
async fn an_upgrade_goes_on_where_the_previous_release_stood() {
    use acts_as_distributed::Queue;
    use common::queue::*;
    use std::time::Duration;

    for backend in backends() {
        let name = backend.name();
        let t = TestDb::empty(&backend).await;
        Migrator::up(&t.db, Some(3))
            .await
            .expect("the previous release's migrations");
        // Objects: a (dead), b (retry, then an event parked behind it), c (leased by a worker
        // that is gone), d (done above the position), e and f (never claimed).
        let objects = ["p", "p", "a", "b", "c", "d", "b", "e", "a", "f"];
        write_events(
            &t.db,
            &objects
                .iter()
                .map(|o| ("Note", (*o).to_owned(), "update"))
                .collect::<Vec<_>>(),
        )
        .await;
        let queue = Queue::new(t.db.clone());
        queue.sequence().await.expect("sequence");
        let numbered =
            t.db.query_all_raw(sql(
                &t.db,
                "SELECT id, seq FROM distributes ORDER BY id",
                vec![],
            ))
            .await
            .expect("ids");
        let ids: Vec<i64> = numbered
            .iter()
            .map(|r| r.try_get("", "id").expect("id"))
            .collect();
        let seqs: Vec<i64> = numbered
            .iter()
            .map(|r| r.try_get("", "seq").expect("seq"))
            .collect();
        let now = chrono::Utc::now().timestamp_millis();
        // What the previous release left: position past the first two events, a row per claimed
        // event above it.
        t.db.execute_raw(sql(
            &t.db,
            "INSERT INTO distribute_consumers (name, position, config, created_at, claimed_at) VALUES (?, ?, ?, ?, ?)",
            vec!["replica".into(), seqs[1].into(), "".into(), now.into(), now.into()],
        ))
        .await
        .expect("consumer");
        let rows: [(usize, &str, i32, i64, Option<&str>); 5] = [
            (2, "dead", 5, now, None),
            (3, "retry", 1, now - 1_000, None),
            (4, "leased", 1, now - 60_000, Some("gone-worker")),
            (5, "done", 1, 0, None),
            (6, "waiting", 0, 0, None),
        ];
        for (i, state, attempts, available_at, owner) in rows {
            t.db.execute_raw(sql(
                &t.db,
                "INSERT INTO distribute_deliveries (consumer, event_id, seq, distributed_type, distributed_id, \
                 state, attempts, available_at, lease_owner, last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    "replica".into(),
                    ids[i].into(),
                    seqs[i].into(),
                    "Note".into(),
                    objects[i].into(),
                    state.into(),
                    attempts.into(),
                    available_at.into(),
                    owner.into(),
                    (state == "dead").then_some("the target refused it").into(),
                    now.into(),
                ],
            ))
            .await
            .expect("delivery row");
        }

        Migrator::up(&t.db, None).await.expect("upgrade");

        let seen = Seen::default();
        let worker = polling_recording(&t.db, "replica", &seen)
            .lease(Duration::from_secs(5))
            .build()
            .expect("build");
        drain(&worker).await;
        let expect: Vec<i64> = [3, 4, 6, 7, 9].iter().map(|&i| ids[i]).collect();
        let mut got = seen.ids();
        got.sort_unstable();
        assert_eq!(
            got, expect,
            "{name}: the retry, the stranded lease, the parked event and the new ones, each once"
        );
        let order = seen.ids();
        let at = |id: i64| order.iter().position(|x| *x == id);
        assert!(
            at(ids[3]) < at(ids[6]),
            "{name}: b's events in order: {order:?}"
        );
        assert_eq!(
            delivery_state(&t.db, "replica", ids[2]).await.map(|s| s.0),
            Some("dead".to_owned()),
            "{name}: the dead event stays dead"
        );

        // Retried by command, the dead event and the one it held are handled, in order.
        assert_eq!(
            queue.retry_dead("replica", None).await.expect("retry_dead"),
            1
        );
        drain(&worker).await;
        let tail: Vec<i64> = seen.ids()[expect.len()..].to_vec();
        assert_eq!(
            tail,
            vec![ids[2], ids[8]],
            "{name}: a's events after the retry"
        );
        assert_eq!(
            position(&t.db, "replica").await,
            Some(*seqs.last().expect("seqs")),
            "{name}: the position reaches the last event"
        );
    }
}
