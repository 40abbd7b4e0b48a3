use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// Adds `distributes.previous`: for update events of entities declared with `previous = true`,
/// the values the changed columns held before the update, as a JSON object of the same form as
/// `changes`. Nullable and without a default, so adding it rewrites no row; NULL for every event
/// written before and for every event that carries no old values.
#[derive(DeriveMigrationName)]
pub struct AddPrevious;

#[derive(DeriveIden)]
enum Distributes {
    Table,
    Previous,
}

#[async_trait::async_trait]
impl MigrationTrait for AddPrevious {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The same JSON type as `changes`: `jsonb` on PostgreSQL, `json` on MySQL, text on SQLite.
        let mut previous = ColumnDef::new(Distributes::Previous);
        match manager.get_database_backend() {
            DbBackend::Sqlite => previous.json(),
            _ => previous.json_binary(),
        };
        manager
            .alter_table(
                Table::alter()
                    .table(Distributes::Table)
                    .add_column(previous.null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Distributes::Table)
                    .drop_column(Distributes::Previous)
                    .to_owned(),
            )
            .await
    }
}
