//! The `acts_as_distributed!` declarations of the entities in `generated/`, which belong to
//! `sea-orm-cli` and are regenerated from the database at will:
//!
//! ```sh
//! sea-orm-cli generate entity -u sqlite://app.db -o src/entities/generated \
//!     --impl-active-model-behavior=false
//! ```
//!
//! `--impl-active-model-behavior=false` leaves out the empty `impl ActiveModelBehavior for
//! ActiveModel {}` that the macro replaces. Regenerated without it, the build fails with E0119
//! (conflicting implementations of `ActiveModelBehavior`) rather than losing the capture.
//!
//! One module per entity, each importing that entity's names: the macro needs `Entity`,
//! `ActiveModel` and `Column` in scope, and two glob imports in one module would clash.

/// `generated::invoices`, distributed as `Invoice` with the customer's e-mail address masked.
pub mod invoices {
    use crate::entities::generated::invoices::*;
    use acts_as_distributed::DistributedBehavior;
    use sea_orm::entity::prelude::*;
    use sea_orm::{ActiveValue, Set};

    acts_as_distributed::acts_as_distributed!(
        type_name = "Invoice",
        redact = [Column::CustomerEmail],
        hooks = true,
    );

    /// Your own hooks live here as well, beside the declaration, out of the generated file.
    #[acts_as_distributed::async_trait]
    impl DistributedBehavior for ActiveModel {
        async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
        where
            C: ConnectionTrait,
        {
            if insert {
                if let ActiveValue::NotSet = self.uuid {
                    self.uuid = Set(Uuid::new_v4());
                }
                self.created_at = Set(chrono::Utc::now().fixed_offset());
            }
            Ok(self)
        }
    }
}
