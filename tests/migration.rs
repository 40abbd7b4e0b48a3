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
