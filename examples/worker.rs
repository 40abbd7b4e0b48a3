//! Run with: `cargo run --example worker` (stop it with Ctrl-C)
//!
//! A background worker consuming `distributes` on SQLite: a writer saves a few users, the worker
//! prints each event, and Ctrl-C shuts the worker down gracefully.

use acts_as_distributed::{Event, HandlerError, Worker};
use acts_as_distributed_migration::Migrator;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, Schema, Set};
use sea_orm_migration::MigratorTrait;
use std::time::Duration;

mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        pub logins: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    acts_as_distributed::acts_as_distributed!();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("info,sqlx=warn")
        .init();
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("worker.db").display()
    );
    let db = Database::connect(&url).await?;
    Migrator::up(&db, None).await?;
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(user::Entity))
        .await?;

    let worker = Worker::builder(db.clone(), "printer")
        .poll_interval(Duration::from_millis(200))
        .handler(|event: Event| async move {
            println!(
                "event {:>2}: {} {} {} {}",
                event.id, event.action, event.distributed_type, event.distributed_id, event.changes
            );
            Ok::<_, HandlerError>(())
        })
        .build()?
        .spawn();

    // The writer: a few changes, one every half second.
    let writer = tokio::spawn(async move {
        for name in ["Ada", "Grace", "Edsger"] {
            let saved = acts_as_distributed::transaction(&db, |txn| {
                Box::pin(async move {
                    let user = user::ActiveModel {
                        name: Set(name.into()),
                        logins: Set(0),
                        ..Default::default()
                    }
                    .insert(txn)
                    .await?;
                    let mut user: user::ActiveModel = user.into();
                    user.logins = Set(1);
                    user.update(txn).await
                })
            })
            .await;
            if let Err(e) = saved {
                eprintln!("write failed: {e}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("writer done; press Ctrl-C to stop the worker");
    });

    tokio::signal::ctrl_c().await?;
    println!("shutting down");
    writer.abort();
    worker.shutdown(Duration::from_secs(5)).await?;
    println!("worker stopped cleanly");
    Ok(())
}
