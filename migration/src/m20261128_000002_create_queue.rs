use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

/// The queue's bookkeeping: the `seq` column of `distributes`, the sequencer, the consumers and
/// their per-event deliveries. Additive: `distributes` keeps every column and row.
///
/// - `distributes.seq`: the order in which events became visible, given by the sequencer. Consumers
///   keep positions in `seq`, never in `id`: a transaction can commit after one with a higher `id`,
///   and its event then gets a higher `seq` instead of being skipped.
/// - `distribute_sequencer`: one row holding the last `seq` given.
/// - `distribute_consumers`: one row per named consumer: every matching event with `seq` up to
///   `position` is handled (or dead); `config` holds its filter and policies as JSON, for status.
/// - `distribute_deliveries`: one row per consumer and event being handled, waiting for a retry,
///   dead, or done above the position.
///
/// On PostgreSQL, a statement trigger on `distributes` sends `NOTIFY distributes` so that
/// listening workers wake at once.
#[derive(DeriveMigrationName)]
pub struct CreateQueue;

#[derive(DeriveIden)]
enum Distributes {
    Table,
    Seq,
}

#[derive(DeriveIden)]
enum DistributeSequencer {
    Table,
    Id,
    LastSeq,
}

#[derive(DeriveIden)]
enum DistributeConsumers {
    Table,
    Name,
    Position,
    Config,
    CreatedAt,
    ClaimedAt,
}

#[derive(DeriveIden)]
enum DistributeDeliveries {
    Table,
    Consumer,
    EventId,
    Seq,
    DistributedType,
    DistributedId,
    State,
    Attempts,
    AvailableAt,
    LeaseOwner,
    LastError,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateQueue {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .alter_table(
                Table::alter()
                    .table(Distributes::Table)
                    .add_column(ColumnDef::new(Distributes::Seq).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_distributes_seq")
                    .table(Distributes::Table)
                    .col(Distributes::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        let conn = manager.get_connection();
        // Finding the events the sequencer has not numbered yet (on MySQL, the seq index, which
        // carries the primary key, serves).
        if backend != DbBackend::MySql {
            conn.execute_unprepared(
                "CREATE INDEX idx_distributes_unsequenced ON distributes (id) WHERE seq IS NULL",
            )
            .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(DistributeSequencer::Table)
                    .col(
                        ColumnDef::new(DistributeSequencer::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DistributeSequencer::LastSeq)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(DistributeSequencer::Table)
                    .columns([DistributeSequencer::Id, DistributeSequencer::LastSeq])
                    .values_panic([1.into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DistributeConsumers::Table)
                    .col(
                        ColumnDef::new(DistributeConsumers::Name)
                            .string_len(255)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DistributeConsumers::Position)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeConsumers::Config)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeConsumers::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeConsumers::ClaimedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DistributeDeliveries::Table)
                    .col(
                        ColumnDef::new(DistributeDeliveries::Consumer)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeDeliveries::EventId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeDeliveries::Seq)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeDeliveries::DistributedType)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeDeliveries::DistributedId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeDeliveries::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeDeliveries::Attempts)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeDeliveries::AvailableAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DistributeDeliveries::LeaseOwner)
                            .string_len(64)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(DistributeDeliveries::LastError)
                            .text()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(DistributeDeliveries::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(DistributeDeliveries::Consumer)
                            .col(DistributeDeliveries::EventId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_object")
                    .table(DistributeDeliveries::Table)
                    .col(DistributeDeliveries::Consumer)
                    .col(DistributeDeliveries::DistributedType)
                    .col(DistributeDeliveries::DistributedId)
                    .col(DistributeDeliveries::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_event")
                    .table(DistributeDeliveries::Table)
                    .col(DistributeDeliveries::EventId)
                    .col(DistributeDeliveries::State)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_due")
                    .table(DistributeDeliveries::Table)
                    .col(DistributeDeliveries::Consumer)
                    .col(DistributeDeliveries::State)
                    .col(DistributeDeliveries::AvailableAt)
                    .to_owned(),
            )
            .await?;

        if backend == DbBackend::Postgres {
            conn.execute_unprepared(
                "CREATE OR REPLACE FUNCTION distributes_notify() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN PERFORM pg_notify('distributes', ''); RETURN NULL; END $$",
            )
            .await?;
            conn.execute_unprepared(
                "CREATE TRIGGER distributes_notify AFTER INSERT ON distributes \
                 FOR EACH STATEMENT EXECUTE FUNCTION distributes_notify()",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            conn.execute_unprepared("DROP TRIGGER IF EXISTS distributes_notify ON distributes")
                .await?;
            conn.execute_unprepared("DROP FUNCTION IF EXISTS distributes_notify()")
                .await?;
        }
        for table in [
            "distribute_deliveries",
            "distribute_consumers",
            "distribute_sequencer",
        ] {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        let drop_index = |name: &str| {
            Index::drop()
                .name(name)
                .table(Distributes::Table)
                .to_owned()
        };
        if manager.get_database_backend() != DbBackend::MySql {
            manager
                .drop_index(drop_index("idx_distributes_unsequenced"))
                .await?;
        }
        manager
            .drop_index(drop_index("idx_distributes_seq"))
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Distributes::Table)
                    .drop_column(Distributes::Seq)
                    .to_owned(),
            )
            .await
    }
}
