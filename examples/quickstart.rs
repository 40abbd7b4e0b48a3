//! Run with: `cargo run --example quickstart`
//!
//! Declares a distributed `User`, then creates, updates and destroys one on a SQLite file in a
//! temporary directory, and prints the rows `distributes` received.

use acts_as_distributed::distribute;
use acts_as_distributed_migration::Migrator;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, EntityTrait, QueryOrder, Schema, Set};
use sea_orm_migration::MigratorTrait;

mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub uuid: Uuid,
        pub name: String,
        pub email: String,
        pub password: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    // One line in place of `impl ActiveModelBehavior for ActiveModel {}`.
    acts_as_distributed::acts_as_distributed!(except = [Column::Password]);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("quickstart.db").display()
    );
    let db = Database::connect(&url).await?;

    // The distributes table, then the application's own table.
    Migrator::up(&db, None).await?;
    let schema = Schema::new(db.get_database_backend());
    db.execute(&schema.create_table_from_entity(user::Entity))
        .await?;

    // Every change in a transaction with its event: both commit, or neither.
    acts_as_distributed::transaction(&db, |txn| {
        Box::pin(async move {
            let ada = user::ActiveModel {
                uuid: Set(uuid::Uuid::new_v4()),
                name: Set("Ada".into()),
                email: Set("ada@example.com".into()),
                password: Set("secret".into()),
                ..Default::default()
            }
            .insert(txn)
            .await?;

            let mut ada: user::ActiveModel = ada.into();
            ada.email = Set("ada@lovelace.example".into()); // distributed
            ada.password = Set("new secret".into()); // excluded: never in an event
            let ada = ada.update(txn).await?;

            let mut only_secret: user::ActiveModel = ada.clone().into();
            only_secret.password = Set("another secret".into()); // no event at all
            only_secret.update(txn).await?;

            user::ActiveModel::from(ada).delete(txn).await?;
            Ok::<_, sea_orm::DbErr>(())
        })
    })
    .await?;

    let events = distribute::Entity::find()
        .order_by_asc(distribute::Column::Id)
        .all(&db)
        .await?;
    println!(
        "{:<3} {:<5} {:<8} {:<36} changes",
        "id", "type", "action", "distributed_id"
    );
    for e in &events {
        println!(
            "{:<3} {:<5} {:<8} {:<36} {}",
            e.id, e.distributed_type, e.action, e.distributed_id, e.changes
        );
    }
    println!(
        "\n{} events: create, update (email only), destroy.",
        events.len()
    );
    Ok(())
}
