//! Entities the tests, examples and benchmarks share.

pub mod blog;
pub mod customer;
pub mod distributed;
/// Entity files exactly as `sea-orm-cli generate entity --impl-active-model-behavior=false`
/// wrote them (see `distributed` for the command and their `acts_as_distributed!`).
#[allow(missing_docs)]
pub mod generated;
pub mod membership;
pub mod note;
pub mod patient;
pub mod probe;
pub mod purchase;
pub mod sample;
pub mod user;

use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Schema};

/// Creates the table of every entity here.
pub async fn create_tables(db: &DatabaseConnection) {
    let schema = Schema::new(db.get_database_backend());
    create(db, &schema, user::Entity).await;
    create(db, &schema, note::Entity).await;
    create(db, &schema, membership::Entity).await;
    create(db, &schema, sample::Entity).await;
    create(db, &schema, probe::Entity).await;
    create(db, &schema, customer::Entity).await;
    create(db, &schema, purchase::Entity).await;
    create(db, &schema, patient::Entity).await;
    create(db, &schema, generated::invoices::Entity).await;
    // Parents before the tables whose foreign keys point at them.
    create(db, &schema, blog::author::Entity).await;
    create(db, &schema, blog::profile::Entity).await;
    create(db, &schema, blog::post::Entity).await;
    create(db, &schema, blog::tag::Entity).await;
    create(db, &schema, blog::post_tag::Entity).await;
}

async fn create<E: EntityTrait>(db: &DatabaseConnection, schema: &Schema, entity: E) {
    db.execute(&schema.create_table_from_entity(entity))
        .await
        .expect("create a test table");
}
