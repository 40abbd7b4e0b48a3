//! Run with: `cargo run --example replicate`
//!
//! Replicates a SQLite database into another SQLite database: a short workload of creates,
//! updates and destroys on the source while the replicator runs as a consumer, then a check that
//! prints `equal` when the replica matches the source.

use acts_as_distributed::Replicator;
use acts_as_distributed_migration::Migrator;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, IntoActiveModel, Schema, Set,
};
use sea_orm_migration::MigratorTrait;
use std::time::Duration;

mod product {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "products")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(unique)]
        pub uuid: Uuid,
        pub name: String,
        pub stock: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    acts_as_distributed::acts_as_distributed!();
}

async fn open(dir: &std::path::Path, name: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let url = format!("sqlite://{}?mode=rwc", dir.join(name).display());
    let db = Database::connect(&url).await?;
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(product::Entity))
        .await?;
    Ok(db)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let source = open(dir.path(), "source.db").await?;
    Migrator::up(&source, None).await?; // the queue lives with the source's data
    let replica = open(dir.path(), "replica.db").await?;

    // The replicator: a consumer of the source's queue that writes into the replica.
    let replicator = Replicator::builder(replica.clone())
        .entity::<product::Entity>()
        .build()?;
    let worker = replicator
        .worker(source.clone(), "replica")
        .poll_interval(Duration::from_millis(50))
        .build()?
        .spawn();

    // A short workload on the source.
    for round in 0..20 {
        acts_as_distributed::transaction(&source, |txn| {
            Box::pin(async move {
                let product = product::ActiveModel {
                    uuid: Set(uuid::Uuid::new_v4()),
                    name: Set(format!("product {round}")),
                    stock: Set(round),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
                let mut product = product.into_active_model();
                product.stock = Set(round * 10);
                let product = product.update(txn).await?;
                if round % 4 == 0 {
                    product.into_active_model().delete(txn).await?;
                }
                Ok::<_, sea_orm::DbErr>(())
            })
        })
        .await?;
    }

    // Wait for the replica to catch up, then stop the worker.
    let queue = acts_as_distributed::Queue::new(source.clone());
    let caught_up = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = queue.status().await?;
            let replica = status.iter().find(|c| c.consumer == "replica");
            let pending =
                replica.map(|c| c.types.iter().map(|t| t.pending + t.errored).sum::<u64>());
            if pending == Some(0) {
                return Ok::<_, acts_as_distributed::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await?;
    caught_up.map_err(|_| "the replica did not catch up within 30 s")??;

    let report = replicator.verify(&source).await?;
    println!("45 changes on the source (20 creates, 20 updates, 5 destroys), replicated: {report}");
    if !report.is_equal() {
        return Err("the replica differs from the source".into());
    }
    Ok(())
}
