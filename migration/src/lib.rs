//! Migrations that create the `distributes` table of
//! [acts_as_distributed](https://docs.rs/acts_as_distributed) and the tables of its queue.
//!
//! Add them to your application's own `Migrator` with [`migrations()`], after the migrations of
//! your tables:
//!
//! ```
//! use sea_orm_migration::prelude::*;
//!
//! pub struct Migrator;
//!
//! #[async_trait::async_trait]
//! impl MigratorTrait for Migrator {
//!     fn migrations() -> Vec<Box<dyn MigrationTrait>> {
//!         let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![
//!             // Box::new(m20240101_000001_create_users::Migration),
//!         ];
//!         migrations.extend(acts_as_distributed_migration::migrations());
//!         migrations
//!     }
//! }
//!
//! assert_eq!(
//!     Migrator::migrations().iter().map(|m| m.name().to_owned()).collect::<Vec<_>>(),
//!     [
//!         "m20261128_000001_create_distributes",
//!         "m20261128_000002_create_queue",
//!         "m20261128_000003_add_previous",
//!         "m20261201_000004_batch_leases",
//!     ]
//! );
//! ```
//!
//! or run them standalone through [`Migrator`], in a database whose migrations you run no other
//! way:
//!
//! ```no_run
//! use acts_as_distributed_migration::Migrator;
//! use sea_orm_migration::MigratorTrait; // the trait of `up`: without it, E0599
//!
//! # async fn run(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), sea_orm_migration::DbErr> {
//! Migrator::up(db, None).await?;
//! # Ok(()) }
//! ```
//!
//! Use one of the two per database, not both: both record what they ran in SeaORM's
//! `seaql_migrations` table, and a migrator refuses to run (`Migration file of version '..' is
//! missing`) when that table lists migrations it does not have.
//!
//! `up`, `down` and the others come from `sea_orm_migration::MigratorTrait`, so the application
//! depends on `sea-orm-migration` (with its database driver and runtime features) beside this
//! crate.
//!
//! Later releases only add migrations to [`migrations()`]; a migration, once released, never
//! changes.

use sea_orm_migration::prelude::*;

mod m20261128_000001_create_distributes;
mod m20261128_000002_create_queue;
mod m20261128_000003_add_previous;
mod m20261201_000004_batch_leases;

pub use m20261128_000001_create_distributes::CreateDistributes;
pub use m20261128_000002_create_queue::CreateQueue;
pub use m20261128_000003_add_previous::AddPrevious;
pub use m20261201_000004_batch_leases::BatchLeases;

/// Every migration of the `distributes` table, oldest first: extend your own `Migrator`'s
/// `migrations()` with these (see the [crate docs](crate)).
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateDistributes),
        Box::new(CreateQueue),
        Box::new(AddPrevious),
        Box::new(BatchLeases),
    ]
}

/// A migrator with just this crate's migrations, for running them standalone in a database that
/// no other migrator manages (see the [crate docs](crate)).
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        migrations()
    }
}
