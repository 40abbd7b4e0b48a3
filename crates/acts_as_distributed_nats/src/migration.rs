//! The relay's tables: `distribute_nats_relayed` (each relayed event's stream sequence, recorded
//! at its publish ack, for reconcile) and `distribute_nats_dead` (messages the stream consumer
//! gave up on, for operators).

use sea_orm_migration::prelude::*;

/// The table of relayed events.
#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum Relayed {
    #[sea_orm(iden = "distribute_nats_relayed")]
    Table,
    Source,
    EventId,
    Stream,
    StreamSeq,
    #[sea_orm(iden = "relayed_at")]
    At,
}

/// The table of dead stream messages.
#[derive(DeriveIden, Clone, Copy)]
pub(crate) enum Dead {
    #[sea_orm(iden = "distribute_nats_dead")]
    Table,
    Id,
    Stream,
    Consumer,
    StreamSeq,
    Subject,
    MessageId,
    EventId,
    Error,
    Payload,
    CreatedAt,
}

/// Creates the two tables.
struct CreateNatsTables;

impl MigrationName for CreateNatsTables {
    fn name(&self) -> &str {
        "m20261210_000001_create_nats_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNatsTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Relayed::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Relayed::Source).string_len(255).not_null())
                    .col(ColumnDef::new(Relayed::EventId).big_integer().not_null())
                    .col(ColumnDef::new(Relayed::Stream).string_len(255).not_null())
                    .col(ColumnDef::new(Relayed::StreamSeq).big_integer().not_null())
                    .col(ColumnDef::new(Relayed::At).big_integer().not_null())
                    .primary_key(Index::create().col(Relayed::Source).col(Relayed::EventId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Dead::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Dead::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Dead::Stream).string_len(255).not_null())
                    .col(ColumnDef::new(Dead::Consumer).string_len(255).not_null())
                    .col(ColumnDef::new(Dead::StreamSeq).big_integer().not_null())
                    .col(ColumnDef::new(Dead::Subject).string_len(1024).not_null())
                    .col(ColumnDef::new(Dead::MessageId).string_len(512).null())
                    .col(ColumnDef::new(Dead::EventId).big_integer().null())
                    .col(ColumnDef::new(Dead::Error).text().not_null())
                    .col(ColumnDef::new(Dead::Payload).text().not_null())
                    .col(ColumnDef::new(Dead::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Dead::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Relayed::Table).if_exists().to_owned())
            .await
    }
}

/// The migrations of this crate, to add after acts_as_distributed's in your own `Migrator`:
///
/// ```
/// use sea_orm_migration::prelude::*;
///
/// pub struct Migrator;
///
/// #[async_trait::async_trait]
/// impl MigratorTrait for Migrator {
///     fn migrations() -> Vec<Box<dyn MigrationTrait>> {
///         let mut migrations = acts_as_distributed_migration::migrations();
///         migrations.extend(acts_as_distributed_nats::migrations());
///         migrations
///     }
/// }
/// # assert_eq!(Migrator::migrations().last().unwrap().name(), "m20261210_000001_create_nats_tables");
/// ```
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(CreateNatsTables)]
}

/// acts_as_distributed's migrations followed by this crate's, for a database whose migrations
/// you run no other way (in place of `acts_as_distributed_migration::Migrator`, which it
/// extends: a database migrated by that one can move on to this one).
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = acts_as_distributed_migration::migrations();
        all.extend(migrations());
        all
    }
}
