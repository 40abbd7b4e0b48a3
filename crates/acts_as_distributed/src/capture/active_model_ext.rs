//! Single saves without an event (the original's `save_without_distributing`).

use super::scope::without_distributing;
use async_trait::async_trait;
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ConnectionTrait, DbErr, DeleteResult, EntityTrait,
    IntoActiveModel,
};

/// Saves and deletes that write no event, for one call. Implemented for every ActiveModel.
#[async_trait]
pub trait DistributedActiveModelExt: ActiveModelTrait + ActiveModelBehavior + Send {
    /// `save`, without writing an event.
    async fn save_without_distributing<C>(self, db: &C) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
        <Self::Entity as EntityTrait>::Model: IntoActiveModel<Self>,
    {
        without_distributing(self.save(db)).await
    }

    /// `delete`, without writing an event.
    async fn delete_without_distributing<C>(self, db: &C) -> Result<DeleteResult, DbErr>
    where
        C: ConnectionTrait,
    {
        without_distributing(self.delete(db)).await
    }
}

impl<A: ActiveModelTrait + ActiveModelBehavior + Send> DistributedActiveModelExt for A {}
