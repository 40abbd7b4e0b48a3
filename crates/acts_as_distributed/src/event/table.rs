//! The `distributes` table: its SeaORM entity, and its names for hand-built statements.

use sea_orm::DeriveIden;

/// The SeaORM entity of the `distributes` table, to read events with SeaORM.
pub mod distribute {
    use sea_orm::entity::prelude::*;

    /// One row of `distributes`: one create, update or destroy of one object.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "distributes")]
    pub struct Model {
        /// Increasing id: the order events were written in.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The CamelCase model name, such as `User`.
        pub distributed_type: String,
        /// The object's uuid, or its primary key rendered as a string.
        pub distributed_id: String,
        /// `create`, `update` or `destroy`.
        pub action: String,
        /// Column name to the JSON form of its value.
        #[sea_orm(column_type = "JsonBinary")]
        pub changes: Json,
        /// Where the change came from (a scope or the process-wide default).
        pub client_id: Option<String>,
        /// A note for the receivers (the original's `messages_for_distribution`).
        pub messages: Option<String>,
        /// The original plugin's error flag; consumers keep their own state (see the queue docs).
        pub error: bool,
        /// The original plugin's processed time; consumers keep their own state.
        pub processed_at: Option<DateTimeUtc>,
        /// When the change was captured, in UTC.
        pub created_at: DateTimeUtc,
        /// The event format version ([`FORMAT_VERSION`](crate::FORMAT_VERSION) when written).
        pub format: i16,
        /// The source transaction's id on PostgreSQL, NULL elsewhere.
        pub source_txid: Option<i64>,
        /// Update events of entities with `previous = true`: column name to the JSON form of the
        /// value each changed column held before the update (the same keys as `changes`). NULL
        /// for every other event.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub previous: Option<Json>,
    }

    /// `distributes` has no relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The names of `distributes` and its columns, for statements built with sea-query.
#[derive(DeriveIden)]
pub(crate) enum Distributes {
    Table,
    Id,
    DistributedType,
    DistributedId,
    Action,
    Changes,
    ClientId,
    Messages,
    CreatedAt,
    Format,
    SourceTxid,
    Previous,
}
