//! The transaction helper: the caller's work and its events in one transaction, with the events
//! written at commit in as few statements as possible.

use crate::event::{NewEvent, insert_events};
use crate::scope;
use sea_orm::{
    AccessMode, ConnectionTrait, DbBackend, DbErr, IsolationLevel, SqliteTransactionMode,
    TransactionError, TransactionOptions, TransactionSession, TransactionTrait,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// Events captured through one helper transaction, waiting for its commit.
#[derive(Debug)]
pub(crate) struct EventBuffer {
    /// Address and type of the transaction the events belong to.
    connection: usize,
    connection_type: &'static str,
    events: Mutex<Vec<NewEvent>>,
}

impl EventBuffer {
    fn for_connection<C>(txn: &C) -> Self {
        Self {
            connection: address(txn),
            connection_type: std::any::type_name::<C>(),
            events: Mutex::new(Vec::new()),
        }
    }

    /// Whether `db` is the helper's own transaction (and not, say, the pool or a nested
    /// transaction, whose events must be written through them at once).
    pub(crate) fn is_for<C>(&self, db: &C) -> bool {
        address(db) == self.connection && std::any::type_name::<C>() == self.connection_type
    }

    pub(crate) fn push(&self, event: NewEvent) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    pub(crate) fn take(&self) -> Vec<NewEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn address<C>(c: &C) -> usize {
    (c as *const C).cast::<()>() as usize
}

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

/// Begins a transaction that will write: `BEGIN IMMEDIATE` on SQLite, so it takes the write lock
/// at once instead of failing with "database is locked" when it upgrades from reading while
/// another connection (a worker, say) writes; a plain `BEGIN` elsewhere.
pub(crate) async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Begins a read-only transaction that sees one consistent state of the database throughout
/// (`REPEATABLE READ` on PostgreSQL and MySQL; on SQLite a read transaction sees one state).
pub(crate) async fn begin_consistent_read<C: TransactionTrait + ConnectionTrait>(
    db: &C,
) -> Result<C::Transaction, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        // SeaORM warns about options SQLite lacks; its read transactions are consistent anyway.
        return db.begin().await;
    }
    db.begin_with_options(TransactionOptions {
        isolation_level: Some(IsolationLevel::RepeatableRead),
        access_mode: Some(AccessMode::ReadOnly),
        ..TransactionOptions::default()
    })
    .await
}
