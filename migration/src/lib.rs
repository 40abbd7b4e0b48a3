//! Migrations that create the `distributes` table of
//! [acts_as_distributed](https://docs.rs/acts_as_distributed).
//!
//! Run them standalone through [`Migrator`]:
//!
//! ```no_run
//! use acts_as_distributed_migration::Migrator;
//! use sea_orm_migration::MigratorTrait;
//!
//! # async fn run(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), sea_orm_migration::DbErr> {
//! Migrator::up(db, None).await?;
//! # Ok(()) }
//! ```
//!
//! or add them to your application's own `Migrator`, after the migrations of your tables:
//!
//! ```
//! use sea_orm_migration::prelude::*;
//!
//! pub struct Migrator;
//!
//! #[async_trait::async_trait]
//! impl MigratorTrait for Migrator {
//!     fn migrations() -> Vec<Box<dyn MigrationTrait>> {
//!         let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![/* your migrations */];
//!         migrations.extend(acts_as_distributed_migration::migrations());
//!         migrations
//!     }
//! }
//! ```
//!
//! Later releases only add migrations to [`migrations`]; a migration, once released, never
//! changes.

use sea_orm_migration::prelude::*;

mod m20261128_000001_create_distributes;
mod m20261128_000002_create_queue;
mod m20261128_000003_add_previous;

pub use m20261128_000001_create_distributes::CreateDistributes;
pub use m20261128_000002_create_queue::CreateQueue;
pub use m20261128_000003_add_previous::AddPrevious;

/// Every migration of the `distributes` table, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateDistributes),
        Box::new(CreateQueue),
        Box::new(AddPrevious),
    ]
}

/// A migrator with just this crate's migrations, for running them standalone.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        migrations()
    }
}
