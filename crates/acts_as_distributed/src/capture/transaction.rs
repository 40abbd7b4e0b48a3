//! The transaction helper: the caller's work and its events in one transaction, with the events
//! written at commit in as few statements as possible.

use super::buffer::EventBuffer;
use super::scope;
use crate::backend::begin_write;
use crate::event::insert_events;
use sea_orm::{ConnectionTrait, TransactionError, TransactionSession, TransactionTrait};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Runs `work` in a new transaction of `db`, with the events of its saves.
///
/// The saves made through the transaction handed to `work` have their events collected, in the
/// order of the changes, and written at commit by multi-row INSERTs (1,000 events a statement),
/// so a transaction of many saves does not pay one extra statement per row. When `work` fails,
/// the transaction rolls back with its events. Saves made through another connection, a nested
/// transaction, or in another task write their events through their own connection at once.
///
/// Errors are SeaORM's [`TransactionError`]: `Transaction(e)` for the error of `work`,
/// `Connection(e)` for a database error at begin, event write or commit.
///
/// ```no_run
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// # acts_as_distributed::acts_as_distributed!(); }
/// use sea_orm::{ActiveModelTrait, DbErr, Set};
///
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::TransactionError<DbErr>> {
/// acts_as_distributed::transaction(db, |txn| {
///     Box::pin(async move {
///         for name in ["Ada", "Grace"] {
///             user::ActiveModel { name: Set(name.into()), ..Default::default() }
///                 .insert(txn)
///                 .await?;
///         }
///         Ok::<_, DbErr>(())
///     })
/// })
/// .await
/// # }
/// ```
#[tracing::instrument(level = "debug", skip_all)]
pub async fn transaction<C, F, T, E>(db: &C, work: F) -> Result<T, TransactionError<E>>
where
    C: TransactionTrait,
    C::Transaction: ConnectionTrait,
    F: for<'c> FnOnce(
            &'c C::Transaction,
        ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    T: Send,
    E: std::fmt::Display + std::fmt::Debug + Send,
{
    let txn = begin_write(db)
        .await
        .map_err(TransactionError::Connection)?;
    let buffer = Arc::new(EventBuffer::for_connection(&txn));
    let mut ctx = scope::current();
    ctx.buffer = Some(buffer.clone());
    match scope::run_with(ctx, work(&txn)).await {
        Ok(value) => {
            let events = buffer.take();
            let count = events.len();
            if let Err(e) = insert_events(&txn, events).await {
                // Dropping the transaction rolls it back; say so explicitly where we can.
                let _ = txn.rollback().await;
                return Err(TransactionError::Connection(e));
            }
            tracing::debug!(events = count, "wrote the events at commit");
            txn.commit().await.map_err(TransactionError::Connection)?;
            Ok(value)
        }
        Err(e) => {
            txn.rollback().await.map_err(TransactionError::Connection)?;
            Err(TransactionError::Transaction(e))
        }
    }
}
