use sea_orm_migration::prelude::*;

/// Leases per batch instead of per event (queue v2): a claimed batch of new events is one row of
/// `distribute_batches`, and the events a worker handles leave no row behind. Additive: every
/// existing table, column and row stays, and a database that already holds events and delivery
/// rows goes on where it stood.
///
/// - `distribute_consumers.claimed_to`: every matching event with `seq` up to it has been claimed
///   (in a batch, or as a delivery row). New claims start above it. For the consumers that
///   exist, set to their highest delivery row's `seq` (or their position), so they claim exactly
///   what they would have claimed before.
/// - `distribute_batches`: one row per batch being handled: the events of the consumer's filter
///   with `lo < seq <= hi` that have no delivery row, leased to `owner` until `leased_until`
///   (milliseconds, the database's clock). Ranges of one consumer never overlap, so `(consumer,
///   lo)` names a batch.
#[derive(DeriveMigrationName)]
pub struct BatchLeases;

#[derive(DeriveIden)]
enum DistributeConsumers {
    Table,
    ClaimedTo,
}

#[derive(DeriveIden)]
enum DistributeBatches {
    Table,
    Consumer,
    Lo,
    Hi,
    Owner,
    LeasedUntil,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for BatchLeases {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(DistributeConsumers::Table)
                    .add_column(
                        ColumnDef::new(DistributeConsumers::ClaimedTo)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        // The previous release wrote a delivery row for every event it claimed, in `seq` order:
        // each consumer has claimed up to its highest row (or its position).
        let conn = manager.get_connection();
        conn.execute_unprepared(
            "UPDATE distribute_consumers SET claimed_to = COALESCE((SELECT MAX(d.seq) \
             FROM distribute_deliveries d WHERE d.consumer = distribute_consumers.name), 0)",
        )
        .await?;
        conn.execute_unprepared(
            "UPDATE distribute_consumers SET claimed_to = position WHERE claimed_to < position",
        )
        .await?;
        let text = |col: DistributeBatches| {
            let mut def = ColumnDef::new(col);
            def.string_len(255).not_null();
            def
        };
        let number = |col: DistributeBatches| {
            let mut def = ColumnDef::new(col);
            def.big_integer().not_null();
            def
        };
        manager
            .create_table(
                Table::create()
                    .table(DistributeBatches::Table)
                    .col(text(DistributeBatches::Consumer))
                    .col(number(DistributeBatches::Lo))
                    .col(number(DistributeBatches::Hi))
                    .col(
                        ColumnDef::new(DistributeBatches::Owner)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(number(DistributeBatches::LeasedUntil))
                    .col(number(DistributeBatches::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(DistributeBatches::Consumer)
                            .col(DistributeBatches::Lo),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DistributeBatches::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(DistributeConsumers::Table)
                    .drop_column(DistributeConsumers::ClaimedTo)
                    .to_owned(),
            )
            .await
    }
}
