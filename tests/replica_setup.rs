//! Setting a replica up: a replica without its tables is a clear error at once, a failed snapshot
//! leaves no consumer behind, and a replica column the entity cannot read says why.

mod common;

use acts_as_distributed::{Error, Queue, Replicator, without_distributing};
use common::queue::stops_within;
use common::*;
use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, NotSet, Set};
use std::time::Duration;

/// An entity whose `secret` never travels: the replica's column for it may be NULL.
mod account {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "accounts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(unique)]
        pub uuid: Uuid,
        pub name: String,
        pub secret: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    acts_as_distributed::acts_as_distributed!(except = [Column::Secret]);
}

/// The replica's table of `accounts` with `secret` nullable.
mod account_replica_table {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "accounts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(unique)]
        pub uuid: Uuid,
        pub name: String,
        pub secret: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A SQLite source with the test tables, and as the replica an empty database (no tables at all)
/// on `backend`.
async fn source_and_empty_replica(backend: &Backend) -> (TestDb, TestDb) {
    let source = TestDb::new(&Backend::Sqlite).await;
    (source, TestDb::empty(backend).await)
}

/// A SQLite source and a replica on `backend`, both with the test tables.
async fn source_and_replica(backend: &Backend) -> (TestDb, TestDb) {
    let source = TestDb::new(&Backend::Sqlite).await;
    (source, TestDb::new(backend).await)
}

fn customers_replicator(replica: &DatabaseConnection) -> Replicator {
    Replicator::builder(replica.clone())
        .entity::<customer::Entity>()
        .build()
        .expect("replicator")
}

async fn consumers(db: &DatabaseConnection) -> Vec<String> {
    Queue::new(db.clone())
        .status()
        .await
        .expect("status")
        .into_iter()
        .map(|c| c.consumer)
        .collect()
}

async fn new_customer(db: &DatabaseConnection, name: &str) {
    customer::ActiveModel {
        id: NotSet,
        uuid: Set(Uuid::new_v4()),
        name: Set(name.into()),
        credit: Set(Decimal::new(100, 2)),
        note: Set(None),
    }
    .insert(db)
    .await
    .expect("insert customer");
}

#[tokio::test]
async fn a_replicator_worker_into_a_replica_without_tables_stops_at_once() {
    for backend in backends() {
        let (source, replica) = source_and_empty_replica(&backend).await;
        let replicator = customers_replicator(&replica.db);
        let worker = replicator
            .worker(source.db.clone(), "replica")
            .poll_interval(Duration::from_millis(50));
        let once = worker.build().expect("build").run_once().await;
        assert!(
            matches!(&once, Err(Error::Config(m)) if m.contains("Customer") && m.contains("create the replica's tables")),
            "{}: {once:?}",
            backend.name()
        );
        let handle = replicator
            .worker(source.db.clone(), "replica")
            .build()
            .expect("build")
            .spawn();
        assert!(
            stops_within(&handle, Duration::from_secs(10)).await,
            "{}: stopped at once",
            backend.name()
        );
        let ended = handle.shutdown(Duration::from_secs(1)).await;
        assert!(
            matches!(ended, Err(Error::Config(_))),
            "{}: {ended:?}",
            backend.name()
        );
        assert!(
            consumers(&source.db).await.is_empty(),
            "{}: nothing registered",
            backend.name()
        );
    }
}

#[tokio::test]
async fn a_snapshot_into_a_replica_without_tables_fails_at_once_and_registers_nothing() {
    for backend in backends() {
        let (source, replica) = source_and_empty_replica(&backend).await;
        let replicator = customers_replicator(&replica.db);
        let result = replicator.snapshot(&source.db, "replica").run().await;
        assert!(
            matches!(result, Err(Error::Config(_))),
            "{}: {result:?}",
            backend.name()
        );
        assert!(consumers(&source.db).await.is_empty(), "{}", backend.name());
    }
}

#[tokio::test]
async fn a_snapshot_that_fails_while_copying_leaves_no_consumer() {
    for backend in backends() {
        let (source, replica) = source_and_replica(&backend).await;
        // The replica refuses a second customer of the same name; the source has two.
        replica
            .db
            .execute_unprepared("CREATE UNIQUE INDEX customers_name ON customers (name)")
            .await
            .expect("unique index");
        without_distributing(async {
            new_customer(&source.db, "Ada").await;
            new_customer(&source.db, "Ada").await;
        })
        .await;
        let replicator = customers_replicator(&replica.db);
        let result = replicator.snapshot(&source.db, "replica").run().await;
        assert!(
            matches!(&result, Err(Error::Snapshot { type_name, .. }) if type_name == "Customer"),
            "{}: {result:?}",
            backend.name()
        );
        assert!(
            consumers(&source.db).await.is_empty(),
            "{}: the failed snapshot's consumer is gone",
            backend.name()
        );
        // Once the cause is fixed, a new snapshot starts from scratch and succeeds.
        replica
            .db
            .execute_unprepared(match backend {
                Backend::MySql(_) => "DROP INDEX customers_name ON customers",
                _ => "DROP INDEX customers_name",
            })
            .await
            .expect("drop index");
        replicator
            .snapshot(&source.db, "replica")
            .run()
            .await
            .expect("second snapshot");
        assert_eq!(consumers(&source.db).await, ["replica"]);
    }
}

#[tokio::test]
async fn a_null_replica_column_the_entity_cannot_hold_is_a_permanent_error_that_says_so() {
    for backend in backends() {
        let (source, replica) = source_and_replica(&backend).await;
        source.create_table(account::Entity).await;
        replica.create_table(account_replica_table::Entity).await;
        acts_as_distributed::transaction(&source.db, |txn| {
            Box::pin(async move {
                account::ActiveModel {
                    id: NotSet,
                    uuid: Set(Uuid::new_v4()),
                    name: Set("Ada".into()),
                    secret: Set("hunter2".into()),
                }
                .insert(txn)
                .await
            })
        })
        .await
        .expect("insert account");
        let replicator = Replicator::builder(replica.db.clone())
            .entity::<account::Entity>()
            .build()
            .expect("replicator");
        let worker = replicator
            .worker(source.db.clone(), "replica")
            .build()
            .expect("build");
        worker.run_once().await.expect("run_once");
        let status = Queue::new(source.db.clone())
            .status()
            .await
            .expect("status");
        let replica_status = status
            .iter()
            .find(|c| c.consumer == "replica")
            .expect("consumer");
        assert_eq!(
            replica_status.types.iter().map(|t| t.dead).sum::<u64>(),
            1,
            "{}: dead at once, not retried",
            backend.name()
        );
        let error = replica_status.blocked_objects[0]
            .last_error
            .clone()
            .unwrap_or_default();
        assert!(
            error.contains("'secret'")
                && error.contains("cannot hold NULL")
                && error.contains("Option"),
            "{}: {error}",
            backend.name()
        );
    }
}
