use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// Creates the `distributes` table and the index that keeps each object's events in order.
///
/// Columns: the original plugin's (`distributed_id`, `distributed_type`, `client_id`, `action`,
/// `changes`, `error`, `messages`, `processed_at`, `created_at`), an integer `id` primary key, the
/// event `format` version and `source_txid` (the source transaction on PostgreSQL).
#[derive(DeriveMigrationName)]
pub struct CreateDistributes;

/// The columns of `distributes`.
#[derive(DeriveIden)]
enum Distributes {
    Table,
    Id,
    DistributedType,
    DistributedId,
    Action,
    Changes,
    ClientId,
    Messages,
    Error,
    ProcessedAt,
    CreatedAt,
    Format,
    SourceTxid,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDistributes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        // A UTC timestamp with microseconds: MySQL's TIMESTAMP keeps seconds only and ends in 2038.
        let timestamp = |col: Distributes| {
            let mut def = ColumnDef::new(col);
            match backend {
                DbBackend::MySql => def.custom(Alias::new("DATETIME(6)")),
                _ => def.timestamp_with_time_zone(),
            };
            def
        };
        let mut changes = ColumnDef::new(Distributes::Changes);
        match backend {
            DbBackend::Sqlite => changes.json(),
            _ => changes.json_binary(),
        };
        manager
            .create_table(
                Table::create()
                    .table(Distributes::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Distributes::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Distributes::DistributedType)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Distributes::DistributedId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Distributes::Action)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(changes.not_null())
                    .col(ColumnDef::new(Distributes::ClientId).string_len(255).null())
                    .col(ColumnDef::new(Distributes::Messages).text().null())
                    .col(
                        ColumnDef::new(Distributes::Error)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(timestamp(Distributes::ProcessedAt).null())
                    .col(timestamp(Distributes::CreatedAt).not_null())
                    .col(
                        ColumnDef::new(Distributes::Format)
                            .small_integer()
                            .not_null()
                            .default(1),
                    )
                    .col(ColumnDef::new(Distributes::SourceTxid).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_distributes_object")
                    .table(Distributes::Table)
                    .col(Distributes::DistributedType)
                    .col(Distributes::DistributedId)
                    .col(Distributes::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Distributes::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
