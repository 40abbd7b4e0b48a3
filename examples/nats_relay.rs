//! Run with: `cargo run --example nats_relay` (a NATS server with JetStream on
//! `nats://127.0.0.1:4222`, or the URL in `NATS_URL`).
//!
//! A SQLite source relays its events to NATS JetStream; a stream consumer on the other side
//! replicates them into a second SQLite database; a check prints `equal` when the replica
//! matches the source.

use acts_as_distributed::Replicator;
use acts_as_distributed_nats::{Migrator, Relay, StreamConsumer, StreamSpec, Subjects};
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
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let dir = tempfile::tempdir()?;
    let source = open(dir.path(), "source.db").await?;
    Migrator::up(&source, None).await?; // the queue and the relay's tables
    let replica = open(dir.path(), "replica.db").await?;

    // The relay: a consumer of the source's queue that publishes to JetStream. A stream and
    // subjects of this run's own, so that runs never meet.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (stream_name, prefix) = (format!("EXAMPLE_{run}"), format!("example_{run}"));
    let client = acts_as_distributed_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let relay = Relay::builder(source.clone(), client, "example-source")
        .subjects(Subjects::prefix(&prefix))
        .build()?;
    StreamSpec::new(&stream_name, relay.subjects())
        .for_relay(&relay)
        .ensure(&js)
        .await?;
    let relaying = relay
        .worker("nats-relay")
        .poll_interval(Duration::from_millis(50))
        .build()?
        .spawn();

    // Elsewhere: a stream consumer replicating into the replica.
    let replicator = Replicator::builder(replica.clone())
        .entity::<product::Entity>()
        .build()?;
    let consuming = StreamConsumer::builder(js.clone(), &stream_name, "replica")
        .handler(replicator.clone())
        .tasks(2)
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

    // Wait for the replica to catch up (45 events through the stream).
    let caught_up = tokio::time::timeout(Duration::from_secs(30), async {
        while consuming.stats().handled < 45 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let stats = consuming.stats();
    consuming.shutdown(Duration::from_secs(5)).await?;
    relaying.shutdown(Duration::from_secs(5)).await?;
    js.delete_stream(&stream_name).await?;
    caught_up.map_err(|_| format!("the replica did not catch up within 30 s: {stats:?}"))?;

    let report = replicator.verify(&source).await?;
    println!(
        "45 changes on the source, relayed through NATS stream {stream_name} and replicated \
         ({} messages handled): {report}",
        stats.handled
    );
    if !report.is_equal() {
        return Err("the replica differs from the source".into());
    }
    Ok(())
}
