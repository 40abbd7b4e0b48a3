//! Your own hook logic beside the macro.

use async_trait::async_trait;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait};

/// Your own hooks for a distributed entity, with SeaORM's `ActiveModelBehavior` signatures.
///
/// [`acts_as_distributed!`](crate::acts_as_distributed) implements `ActiveModelBehavior` for you,
/// so SeaORM's own trait cannot be implemented a second time. Write your hooks here instead and
/// pass `hooks = true` to the macro. Each hook runs before the capture step of the same name, so
/// what `before_save` sets (timestamps, normalised values) is saved and appears in the event, and
/// an error from `before_save` or `before_delete` stops the change and its event.
///
/// ```
/// # mod user {
/// use sea_orm::entity::prelude::*;
/// use sea_orm::Set;
///
/// #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
/// #[sea_orm(table_name = "users")]
/// pub struct Model {
///     #[sea_orm(primary_key)]
///     pub id: i32,
///     pub email: String,
/// }
///
/// #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
/// pub enum Relation {}
///
/// acts_as_distributed::acts_as_distributed!(hooks = true);
///
/// #[acts_as_distributed::async_trait]
/// impl acts_as_distributed::DistributedBehavior for ActiveModel {
///     async fn before_save<C>(mut self, _db: &C, _insert: bool) -> Result<Self, DbErr>
///     where
///         C: ConnectionTrait,
///     {
///         if let sea_orm::ActiveValue::Set(email) = &self.email {
///             if !email.contains('@') {
///                 return Err(DbErr::Custom(format!("not an email address: {email}")));
///             }
///             self.email = Set(email.to_lowercase());
///         }
///         Ok(self)
///     }
/// }
/// # }
/// ```
#[async_trait]
#[allow(unused_variables)]
pub trait DistributedBehavior: ActiveModelTrait {
    /// Build a fresh ActiveModel, as `ActiveModelBehavior::new` (pre-fill columns here).
    fn new() -> Self {
        <Self as ActiveModelTrait>::default()
    }

    /// Runs before `insert`, `update` and `save` (and before the change is captured).
    async fn before_save<C>(self, db: &C, insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        Ok(self)
    }

    /// Runs after `insert`, `update` and `save` succeeded (after the change was captured).
    async fn after_save<C>(
        model: <Self::Entity as EntityTrait>::Model,
        db: &C,
        insert: bool,
    ) -> Result<<Self::Entity as EntityTrait>::Model, DbErr>
    where
        C: ConnectionTrait,
    {
        Ok(model)
    }

    /// Runs before `delete` (before the row is read for its destroy event).
    async fn before_delete<C>(self, db: &C) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        Ok(self)
    }

    /// Runs after `delete` (after the destroy event was captured).
    async fn after_delete<C>(self, db: &C) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        Ok(self)
    }
}
