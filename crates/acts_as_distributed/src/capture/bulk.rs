//! Bulk and builder writes with their events.
//!
//! SeaORM runs no hooks for `insert_many`, `update_many`, `delete_many`, `delete_by_id`,
//! `Entity::insert(..)` and `Entity::delete(..)`, so the macro cannot see them. The functions here
//! run those writes and record one event per affected row, from the rows the statement actually
//! affected:
//!
//! - PostgreSQL and SQLite: the statement itself with `RETURNING` (one statement).
//! - MySQL / MariaDB, which lack `UPDATE .. RETURNING`: a locking read of the matching rows
//!   (`SELECT .. FOR UPDATE`, built from the statement's own `WHERE`, `ORDER BY` and `LIMIT`), the
//!   write restricted to the keys read, and for an update a read-back of those rows under the lock.
//!   Inserts go row by row, each read back by its key.
//!
//! Each call runs inside a transaction of its own (a `SAVEPOINT` when `db` already is a
//! transaction), so the write and its events commit together, and a failure leaves neither.

use super::distribution::{DistributedEntity, render_id};
use super::emit::{buffer_for, check_connection, new_event};
use super::scope::{self, Context};
use crate::backend::has_returning;
use crate::event::{Action, NewEvent, insert_events};
use sea_orm::sea_query::{Condition, InsertStatement, IntoValueTuple, Query, UpdateStatement};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, DeleteMany, DeleteOne,
    EntityTrait, IdenStatic, Insert, IntoActiveModel, Iterable, ModelTrait, PrimaryKeyToColumn,
    QueryFilter, QueryTrait, Statement, TransactionSession, TransactionTrait, UpdateMany,
    ValidatedDeleteOne, Value,
};
use std::collections::HashMap;
use std::future::Future;

type ModelOf<E> = <E as EntityTrait>::Model;

/// Keys per statement when a write or a read is restricted to the keys of rows already read.
const KEYS_PER_STATEMENT: usize = 500;

/// Runs a SeaORM write that skips the hooks and records one event per affected row, in the same
/// transaction. Implemented for the builders of
/// [`update_many`](sea_orm::EntityTrait::update_many) ([`UpdateMany`]),
/// [`delete_many`](sea_orm::EntityTrait::delete_many) ([`DeleteMany`]),
/// [`delete_by_id`](sea_orm::EntityTrait::delete_by_id) ([`ValidatedDeleteOne`]),
/// [`Entity::delete`](sea_orm::EntityTrait::delete) ([`DeleteOne`]) and
/// [`Entity::insert`](sea_orm::EntityTrait::insert) ([`Insert`]) of a distributed entity. For
/// `insert_many`, see [`insert_many`](crate::insert_many()).
///
/// What each records:
/// - update: the distributed columns the statement sets, with the values stored (an expression
///   such as `Expr::col(Column::Logins).add(1)` records its result). A statement that sets no
///   distributed column records nothing, and rows the filter does not match record nothing.
/// - destroy: every distributed attribute of each deleted row.
/// - create: every distributed attribute as stored (database defaults included).
///
/// `exec_distributed` returns what SeaORM's `exec_with_returning` returns: the rows as stored
/// after the write (the deleted rows for a delete), on every backend. Scopes apply as to saves
/// ([`Scope`](crate::Scope), [`without_distributing`](crate::without_distributing())), and so do
/// strict mode and the [`transaction`](crate::transaction()) helper, which writes the events at
/// its commit. The entity's own hooks ([`DistributedBehavior`](crate::DistributedBehavior)) do not
/// run, as with SeaORM's `exec`.
///
/// ```no_run
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String, pub logins: i32 }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// # acts_as_distributed::acts_as_distributed!(); }
/// use acts_as_distributed::prelude::*;
/// use sea_orm::sea_query::{Expr, ExprTrait};
/// use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter};
///
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::TransactionError<DbErr>> {
/// acts_as_distributed::transaction(db, |txn| {
///     Box::pin(async move {
///         // One update event per matching row, carrying the stored `logins`.
///         let updated = user::Entity::update_many()
///             .col_expr(user::Column::Logins, Expr::col(user::Column::Logins).add(1))
///             .filter(user::Column::Name.starts_with("A"))
///             .exec_distributed(txn)
///             .await?;
///         // One destroy event per deleted row, with all its distributed attributes.
///         let deleted = user::Entity::delete_many()
///             .filter(user::Column::Logins.eq(0))
///             .exec_distributed(txn)
///             .await?;
///         let gone = user::Entity::delete_by_id(7).exec_distributed(txn).await?;
///         Ok::<_, DbErr>((updated.len(), deleted.len(), gone.is_some()))
///     })
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub trait DistributedExecExt: Sized {
    /// What the write returns: the affected rows, as SeaORM's `exec_with_returning` gives them.
    type Output;

    /// Runs the write and records an event for each affected row, in one transaction of `db`
    /// (a savepoint when `db` is a transaction).
    ///
    /// # Errors
    /// SeaORM's errors for the write and the event insert; in strict mode
    /// ([`OutsideTransaction::Error`](crate::OutsideTransaction::Error)) a [`DbErr::Custom`] when
    /// `db` is not a transaction. Nothing is written when it fails. `Insert` refuses upserts
    /// (`on_conflict`): their row may be a create or an update.
    fn exec_distributed<C>(
        self,
        db: &C,
    ) -> impl Future<Output = Result<Self::Output, DbErr>> + Send
    where
        C: ConnectionTrait + TransactionTrait;
}

impl<E: DistributedEntity> DistributedExecExt for UpdateMany<E> {
    type Output = Vec<ModelOf<E>>;

    async fn exec_distributed<C>(self, db: &C) -> Result<Self::Output, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        update::<E, C>(self.into_query(), db).await
    }
}

impl<E: DistributedEntity> DistributedExecExt for DeleteMany<E> {
    type Output = Vec<ModelOf<E>>;

    async fn exec_distributed<C>(self, db: &C) -> Result<Self::Output, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        delete::<E, C>(self, db).await
    }
}

impl<E: DistributedEntity> DistributedExecExt for ValidatedDeleteOne<E> {
    type Output = Option<ModelOf<E>>;

    async fn exec_distributed<C>(self, db: &C) -> Result<Self::Output, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        let mut many = E::delete_many();
        *QueryTrait::query(&mut many) = self.into_query();
        Ok(delete::<E, C>(many, db).await?.into_iter().next())
    }
}

impl<E: DistributedEntity> DistributedExecExt for DeleteOne<E> {
    type Output = Option<ModelOf<E>>;

    async fn exec_distributed<C>(self, db: &C) -> Result<Self::Output, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        self.validate()?.exec_distributed(db).await
    }
}

impl<A> DistributedExecExt for Insert<A>
where
    A: ActiveModelTrait + Send,
    A::Entity: DistributedEntity,
    ModelOf<A::Entity>: IntoActiveModel<A>,
{
    type Output = ModelOf<A::Entity>;

    async fn exec_distributed<C>(self, db: &C) -> Result<Self::Output, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
    {
        insert_one::<A, C>(self, db).await
    }
}

/// `insert_many` with one create event per inserted row, in one transaction of `db` (a savepoint
/// when `db` is a transaction). Returns the inserted rows as stored, in the order given.
///
/// SeaORM's `Entity::insert_many(..)` builder cannot be split into its rows again, which MySQL /
/// MariaDB need (no `INSERT .. RETURNING` there), so this takes the ActiveModels. Each event
/// carries every distributed attribute as stored, database defaults included.
///
/// - PostgreSQL and SQLite: one multi-row `INSERT .. RETURNING`, as SeaORM's
///   `insert_many(..).exec_with_returning(..)`.
/// - MySQL / MariaDB: one INSERT per row, then the rows read back by their keys (which this
///   transaction holds locked, so no other writer's values). A column that some rows set and
///   others leave `NotSet` is written as NULL in the others, as SeaORM's multi-row insert does.
///
/// The entity's own hooks do not run (SeaORM's `insert_many` runs none): set what they would
/// set, such as timestamps or a generated uuid, yourself.
///
/// ```no_run
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// # acts_as_distributed::acts_as_distributed!(); }
/// use sea_orm::{DbErr, Set, TransactionTrait};
///
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> Result<(), DbErr> {
/// let txn = db.begin().await?;
/// let rows = acts_as_distributed::insert_many(
///     &txn,
///     ["Ada", "Grace"].map(|name| user::ActiveModel { name: Set(name.into()), ..Default::default() }),
/// )
/// .await?;
/// assert_eq!(rows.len(), 2);
/// txn.commit().await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// SeaORM's errors for the inserts and the event insert, and strict mode's as for
/// [`DistributedExecExt::exec_distributed`]. Nothing is written when it fails.
#[tracing::instrument(level = "debug", skip_all, fields(entity = A::Entity::distributed_type()))]
pub async fn insert_many<A, I, C>(db: &C, models: I) -> Result<Vec<ModelOf<A::Entity>>, DbErr>
where
    A: ActiveModelTrait + Send,
    A::Entity: DistributedEntity,
    ModelOf<A::Entity>: IntoActiveModel<A>,
    I: IntoIterator<Item = A>,
    C: ConnectionTrait + TransactionTrait,
{
    let models: Vec<A> = models.into_iter().collect();
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = scope::current();
    if !ctx.disabled {
        check_connection(&ctx, db, A::Entity::distributed_type())?;
    }
    let txn = db.begin().await?;
    let result = insert_rows::<A, _>(models, &txn).await;
    finish(
        db,
        &ctx,
        txn,
        with_events::<A::Entity>(&ctx, Action::Create, None, result),
    )
    .await
}

#[tracing::instrument(level = "debug", skip_all, fields(entity = A::Entity::distributed_type()))]
async fn insert_one<A, C>(insert: Insert<A>, db: &C) -> Result<ModelOf<A::Entity>, DbErr>
where
    A: ActiveModelTrait + Send,
    A::Entity: DistributedEntity,
    ModelOf<A::Entity>: IntoActiveModel<A>,
    C: ConnectionTrait + TransactionTrait,
{
    refuse_upsert(insert.as_query(), db.get_database_backend())?;
    let ctx = scope::current();
    if !ctx.disabled {
        check_connection(&ctx, db, A::Entity::distributed_type())?;
    }
    let txn = db.begin().await?;
    // SeaORM reads the row back by its key where the backend has no RETURNING; inside this
    // transaction the new row is locked, so the read sees what the INSERT stored.
    let result = insert.exec_with_returning(&txn).await.map(|m| vec![m]);
    let rows = finish(
        db,
        &ctx,
        txn,
        with_events::<A::Entity>(&ctx, Action::Create, None, result),
    )
    .await?;
    rows.into_iter().next().ok_or(DbErr::RecordNotInserted)
}

/// An event's row cannot tell an upsert's insert from its update: refuse rather than guess.
fn refuse_upsert(insert: &InsertStatement, backend: DbBackend) -> Result<(), DbErr> {
    let sql = backend.build(insert).sql;
    if sql.contains(" ON CONFLICT ") || sql.contains(" ON DUPLICATE KEY ") {
        return Err(DbErr::Custom(
            "acts_as_distributed: exec_distributed cannot record an upsert (on_conflict): the row \
             may have been inserted or updated; insert and update separately, or record the event \
             with ManualEvent"
                .to_owned(),
        ));
    }
    Ok(())
}

async fn insert_rows<A, T>(models: Vec<A>, txn: &T) -> Result<Vec<ModelOf<A::Entity>>, DbErr>
where
    A: ActiveModelTrait + Send,
    ModelOf<A::Entity>: IntoActiveModel<A>,
    T: ConnectionTrait,
{
    if has_returning(txn) {
        return A::Entity::insert_many(models)
            .exec_with_returning(txn)
            .await;
    }
    let models = fill_like_insert_many(models)?;
    let mut keys = Vec::with_capacity(models.len());
    for am in models {
        // The key the row was given, else the one the database generated (a NULL key filled in
        // above is generated too).
        let set_key: Option<Vec<Value>> = primary_columns::<A::Entity>()
            .iter()
            .map(|c| am.get(*c).into_value().filter(|v| *v != v.as_null()))
            .collect();
        let inserted = A::Entity::insert(am).exec(txn).await?;
        keys.push(set_key.unwrap_or_else(|| {
            inserted
                .last_insert_id
                .into_value_tuple()
                .into_iter()
                .collect()
        }));
    }
    read_by_keys::<A::Entity, _>(txn, &keys).await
}

/// Marks a column that some rows hold and others leave `NotSet` as NULL in the others: SeaORM's
/// multi-row insert has one column list for all rows and writes NULL there. Primary key columns
/// stay `NotSet` (the database generates them). A column whose field cannot hold NULL is an error,
/// as the NULL would be on the other backends.
fn fill_like_insert_many<A: ActiveModelTrait>(mut models: Vec<A>) -> Result<Vec<A>, DbErr> {
    let columns: Vec<_> = <A::Entity as EntityTrait>::Column::iter()
        .filter(|c| {
            !primary_columns::<A::Entity>()
                .iter()
                .any(|p| p.as_str() == c.as_str())
        })
        .collect();
    let nulls: Vec<Option<Value>> = columns
        .iter()
        .map(|c| {
            models
                .iter()
                .find_map(|am| am.get(*c).into_value())
                .map(|v| v.as_null())
        })
        .collect();
    for am in &mut models {
        for (c, null) in columns.iter().zip(&nulls) {
            if let Some(null) = null
                && am.get(*c).is_not_set()
            {
                am.try_set(*c, null.clone()).map_err(|_| {
                    DbErr::Custom(format!(
                        "insert_many: column `{}` is set in some rows and not in others, and \
                         cannot be NULL; set it in every row",
                        c.as_str()
                    ))
                })?;
            }
        }
    }
    Ok(models)
}

#[tracing::instrument(level = "debug", skip_all, fields(entity = E::distributed_type()))]
async fn update<E, C>(statement: UpdateStatement, db: &C) -> Result<Vec<ModelOf<E>>, DbErr>
where
    E: DistributedEntity,
    C: ConnectionTrait + TransactionTrait,
{
    if statement.get_values().is_empty() {
        // SeaORM runs nothing for an update that sets nothing.
        return Ok(Vec::new());
    }
    let set: Vec<String> = statement
        .get_values()
        .iter()
        .map(|(column, _)| column.to_string())
        .collect();
    let changed: Vec<E::Column> = E::distributed_columns()
        .iter()
        .copied()
        .filter(|c| set.iter().any(|s| s == c.as_str()))
        .collect();
    let ctx = scope::current();
    if !ctx.disabled && !changed.is_empty() {
        check_connection(&ctx, db, E::distributed_type())?;
    }
    let txn = db.begin().await?;
    let result = update_rows::<E, _>(statement, &txn).await;
    finish(
        db,
        &ctx,
        txn,
        with_events::<E>(&ctx, Action::Update, Some(changed.as_slice()), result),
    )
    .await
}

async fn update_rows<E, T>(statement: UpdateStatement, txn: &T) -> Result<Vec<ModelOf<E>>, DbErr>
where
    E: EntityTrait,
    T: ConnectionTrait,
{
    if has_returning(txn) {
        let mut many = E::update_many();
        *QueryTrait::query(&mut many) = statement;
        return many.exec_with_returning(txn).await;
    }
    let backend = txn.get_database_backend();
    let primary = primary_columns::<E>();
    if let Some(key) = statement
        .get_values()
        .iter()
        .find_map(|(column, _)| primary.iter().find(|p| p.as_str() == column.to_string()))
    {
        return Err(DbErr::Custom(format!(
            "acts_as_distributed: on {} an update_many that sets the primary key column `{}` \
             cannot be recorded (its rows are read back by key); update the key row by row with \
             ActiveModel::update",
            backend.as_str(),
            key.as_str()
        )));
    }
    // The statement with the same SET and no WHERE: what the full statement starts with.
    let mut head = Query::update();
    head.table(E::default().table_ref()).values(
        statement
            .get_values()
            .iter()
            .map(|(column, expr)| (column.clone(), (**expr).clone())),
    );
    let locked = locking_read::<E>(backend, backend.build(&statement), backend.build(&head))?;
    let rows: Vec<ModelOf<E>> = E::find().from_raw_sql(locked).all(txn).await?;
    if rows.is_empty() {
        return Ok(rows);
    }
    let keys: Vec<Vec<Value>> = rows.iter().map(key_of::<E>).collect();
    for chunk in keys.chunks(KEYS_PER_STATEMENT) {
        // The full statement (its ORDER BY matters to MySQL's unique checks), kept to the
        // locked rows.
        let mut by_key = statement.clone();
        by_key.cond_where(keys_condition::<E>(chunk));
        txn.execute(&by_key).await?;
    }
    // The rows are locked by this transaction: the read-back sees what the UPDATE stored.
    read_by_keys::<E, _>(txn, &keys).await
}

#[tracing::instrument(level = "debug", skip_all, fields(entity = E::distributed_type()))]
async fn delete<E, C>(many: DeleteMany<E>, db: &C) -> Result<Vec<ModelOf<E>>, DbErr>
where
    E: DistributedEntity,
    C: ConnectionTrait + TransactionTrait,
{
    let ctx = scope::current();
    if !ctx.disabled {
        check_connection(&ctx, db, E::distributed_type())?;
    }
    let txn = db.begin().await?;
    let result = delete_rows::<E, _>(many, &txn).await;
    finish(
        db,
        &ctx,
        txn,
        with_events::<E>(&ctx, Action::Destroy, None, result),
    )
    .await
}

async fn delete_rows<E, T>(many: DeleteMany<E>, txn: &T) -> Result<Vec<ModelOf<E>>, DbErr>
where
    E: EntityTrait,
    T: ConnectionTrait,
{
    if has_returning(txn) {
        return many.exec_with_returning(txn).await;
    }
    let backend = txn.get_database_backend();
    let mut head = Query::delete();
    head.from_table(E::default().table_ref());
    let locked = locking_read::<E>(
        backend,
        backend.build(many.as_query()),
        backend.build(&head),
    )?;
    let rows: Vec<ModelOf<E>> = E::find().from_raw_sql(locked).all(txn).await?;
    let keys: Vec<Vec<Value>> = rows.iter().map(key_of::<E>).collect();
    let mut deleted = 0;
    for chunk in keys.chunks(KEYS_PER_STATEMENT) {
        let mut by_key = many.as_query().clone();
        by_key.cond_where(keys_condition::<E>(chunk));
        deleted += txn.execute(&by_key).await?.rows_affected();
    }
    if deleted != rows.len() as u64 {
        // Cannot happen while the rows are locked; never record rows that were not deleted.
        return Err(DbErr::Custom(format!(
            "acts_as_distributed: the DELETE removed {deleted} of the {} rows locked for it; \
             nothing was deleted",
            rows.len()
        )));
    }
    Ok(rows)
}

/// The events for the affected `rows`: `changed` columns for an update, every distributed
/// attribute otherwise. None inside `without_distributing`, nor for an update of no distributed
/// column.
fn with_events<E: DistributedEntity>(
    ctx: &Context,
    action: Action,
    changed: Option<&[E::Column]>,
    rows: Result<Vec<ModelOf<E>>, DbErr>,
) -> Result<(Vec<ModelOf<E>>, Vec<NewEvent>), DbErr> {
    let rows = rows?;
    let dist = E::distribution();
    if ctx.disabled || changed.is_some_and(|c| c.is_empty()) {
        return Ok((rows, Vec::new()));
    }
    let events = rows
        .iter()
        .map(|row| {
            let changes = match changed {
                Some(columns) => columns
                    .iter()
                    .map(|c| (c.as_str().to_owned(), dist.json_of(*c, &row.get(*c))))
                    .collect(),
                None => dist.attributes_of(row),
            };
            new_event(
                ctx,
                dist.type_name().into(),
                dist.id_of_model(row),
                action,
                changes,
            )
        })
        .collect();
    Ok((rows, events))
}

/// Commits `txn` with the events, or rolls it back. The events go to the
/// [`transaction`](crate::transaction()) helper's buffer when `db` is the helper's transaction
/// (once `txn`, its savepoint, is released), else they are written through `txn` before it
/// commits.
async fn finish<C, T, V>(
    db: &C,
    ctx: &Context,
    txn: T,
    result: Result<(V, Vec<NewEvent>), DbErr>,
) -> Result<V, DbErr>
where
    C: ConnectionTrait,
    T: ConnectionTrait + TransactionSession,
{
    let (value, events) = match result {
        Ok(done) => done,
        Err(e) => {
            // The error that stopped the work matters more than one from the rollback.
            let _ = txn.rollback().await;
            return Err(e);
        }
    };
    let count = events.len();
    let held = match buffer_for(ctx, db) {
        Some(buffer) => Some((buffer, events)),
        None => {
            if !events.is_empty()
                && let Err(e) = insert_events(&txn, events).await
            {
                let _ = txn.rollback().await;
                return Err(e);
            }
            None
        }
    };
    txn.commit().await?;
    if let Some((buffer, events)) = held {
        for event in events {
            buffer.push(event);
        }
    }
    tracing::debug!(events = count, "recorded a bulk write");
    Ok(value)
}

/// `SELECT <every column> FROM <table> <the WHERE, ORDER BY and LIMIT of full> FOR UPDATE`.
///
/// sea-query keeps a statement's condition to itself, so it is taken from the rendered SQL: `full`
/// must be `head` (the same statement without WHERE, ORDER BY and LIMIT) followed by the rest,
/// with `head`'s values first. Anything else is refused rather than guessed.
fn locking_read<E: EntityTrait>(
    backend: DbBackend,
    full: Statement,
    head: Statement,
) -> Result<Statement, DbErr> {
    let refuse = |why: &str| {
        DbErr::Custom(format!(
            "acts_as_distributed: cannot build the locking read for this statement on {} ({why}); \
             filter it with .filter(..) only, or record its events with ManualEvent",
            backend.as_str()
        ))
    };
    let full_values = full.values.map(|v| v.0).unwrap_or_default();
    let head_values = head.values.map(|v| v.0).unwrap_or_default();
    let tail = full
        .sql
        .strip_prefix(&head.sql)
        .ok_or_else(|| refuse("it does not start as expected"))?;
    if !(tail.is_empty() || tail.starts_with(' '))
        || full_values.get(..head_values.len()) != Some(&head_values[..])
    {
        return Err(refuse("it does not start as expected"));
    }
    let select = E::find().build(backend);
    if select.values.as_ref().is_some_and(|v| !v.0.is_empty()) {
        return Err(refuse("the entity's SELECT has parameters"));
    }
    let lock = match backend {
        DbBackend::Sqlite => "",
        _ => " FOR UPDATE",
    };
    Ok(Statement::from_sql_and_values(
        backend,
        format!("{}{tail}{lock}", select.sql),
        full_values[head_values.len()..].iter().cloned(),
    ))
}

fn primary_columns<E: EntityTrait>() -> Vec<E::Column> {
    E::PrimaryKey::iter().map(|k| k.into_column()).collect()
}

fn key_of<E: EntityTrait>(row: &ModelOf<E>) -> Vec<Value> {
    primary_columns::<E>().iter().map(|c| row.get(*c)).collect()
}

/// Rows whose primary key is one of `keys`.
fn keys_condition<E: EntityTrait>(keys: &[Vec<Value>]) -> Condition {
    let columns = primary_columns::<E>();
    if let [column] = columns.as_slice() {
        return Condition::all().add(column.is_in(keys.iter().filter_map(|k| k.first().cloned())));
    }
    keys.iter().fold(Condition::any(), |any, key| {
        any.add(
            columns
                .iter()
                .zip(key)
                .fold(Condition::all(), |all, (c, v)| all.add(c.eq(v.clone()))),
        )
    })
}

/// The rows with `keys`, in the order of `keys`.
async fn read_by_keys<E, T>(txn: &T, keys: &[Vec<Value>]) -> Result<Vec<ModelOf<E>>, DbErr>
where
    E: EntityTrait,
    T: ConnectionTrait,
{
    let mut found: HashMap<String, ModelOf<E>> = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(KEYS_PER_STATEMENT) {
        for row in E::find()
            .filter(keys_condition::<E>(chunk))
            .all(txn)
            .await?
        {
            found.insert(render_id(key_of::<E>(&row)), row);
        }
    }
    keys.iter()
        .map(|key| {
            found.remove(&render_id(key.clone())).ok_or_else(|| {
                DbErr::RecordNotFound(format!(
                    "acts_as_distributed: the {} row {} just written",
                    E::default().table_name(),
                    render_id(key.clone())
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::EntityName;
    use sea_orm::sea_query::{Expr, ExprTrait};

    mod item {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = "items")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i32,
            pub name: String,
            pub stock: i32,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    fn read_for_update(many: UpdateMany<item::Entity>) -> Result<Statement, DbErr> {
        let backend = DbBackend::MySql;
        let statement = many.into_query();
        let mut head = Query::update();
        head.table(item::Entity.table_ref()).values(
            statement
                .get_values()
                .iter()
                .map(|(c, e)| (c.clone(), (**e).clone())),
        );
        locking_read::<item::Entity>(backend, backend.build(&statement), backend.build(&head))
    }

    #[test]
    fn the_locking_read_of_an_update_keeps_its_filter_and_its_values() {
        let read = read_for_update(
            item::Entity::update_many()
                .col_expr(item::Column::Stock, Expr::col(item::Column::Stock).add(5))
                .col_expr(item::Column::Name, Expr::value("x"))
                .filter(item::Column::Name.starts_with("a"))
                .filter(item::Column::Stock.lt(3)),
        )
        .expect("locking read");
        assert_eq!(
            read.sql,
            "SELECT `items`.`id`, `items`.`name`, `items`.`stock` FROM `items` \
             WHERE `items`.`name` LIKE ? AND `items`.`stock` < ? FOR UPDATE"
        );
        assert_eq!(
            read.values.map(|v| v.0),
            Some(vec![Value::from("a%"), Value::from(3)])
        );
    }

    #[test]
    fn the_locking_read_of_an_update_keeps_its_order_and_limit() {
        let mut many = item::Entity::update_many()
            .col_expr(item::Column::Stock, Expr::value(0))
            .filter(item::Column::Stock.gt(10));
        QueryTrait::query(&mut many)
            .order_by(item::Column::Id, sea_orm::Order::Desc)
            .limit(2);
        let read = read_for_update(many).expect("locking read");
        assert_eq!(
            read.sql,
            "SELECT `items`.`id`, `items`.`name`, `items`.`stock` FROM `items` \
             WHERE `items`.`stock` > ? ORDER BY `id` DESC LIMIT ? FOR UPDATE"
        );
        assert_eq!(
            read.values.map(|v| v.0),
            Some(vec![Value::from(10), Value::from(2u64)])
        );
    }

    #[test]
    fn the_locking_read_of_a_delete_without_filter_reads_every_row() {
        let backend = DbBackend::MySql;
        let mut head = Query::delete();
        head.from_table(item::Entity.table_ref());
        let read = locking_read::<item::Entity>(
            backend,
            backend.build(item::Entity::delete_many().as_query()),
            backend.build(&head),
        )
        .expect("locking read");
        assert_eq!(
            read.sql,
            "SELECT `items`.`id`, `items`.`name`, `items`.`stock` FROM `items` FOR UPDATE"
        );
    }

    #[test]
    fn a_statement_that_does_not_start_like_its_head_is_refused() {
        let backend = DbBackend::MySql;
        let mut head = Query::delete();
        head.from_table(item::Entity.table_ref());
        let other = Statement::from_string(backend, "DELETE FROM `items_archive` WHERE 1 = 1");
        let err = locking_read::<item::Entity>(backend, other, backend.build(&head))
            .expect_err("refused");
        assert!(err.to_string().contains("locking read"), "{err}");
    }

    #[test]
    fn composite_keys_match_pairwise() {
        mod pair {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
            #[sea_orm(table_name = "pairs")]
            pub struct Model {
                #[sea_orm(primary_key, auto_increment = false)]
                pub a: i32,
                #[sea_orm(primary_key, auto_increment = false)]
                pub b: i32,
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }
        let keys = vec![
            vec![Value::from(1), Value::from(2)],
            vec![Value::from(3), Value::from(4)],
        ];
        let sql = pair::Entity::find()
            .filter(keys_condition::<pair::Entity>(&keys))
            .build(DbBackend::Sqlite)
            .to_string();
        assert!(
            sql.ends_with(
                r#"WHERE ("pairs"."a" = 1 AND "pairs"."b" = 2) OR ("pairs"."a" = 3 AND "pairs"."b" = 4)"#
            ),
            "{sql}"
        );
    }

    #[test]
    fn upserts_are_refused() {
        use sea_orm::sea_query::OnConflict;
        let insert = item::Entity::insert(item::ActiveModel {
            name: sea_orm::Set("a".into()),
            stock: sea_orm::Set(1),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::column(item::Column::Name)
                .update_column(item::Column::Stock)
                .to_owned(),
        );
        for backend in [DbBackend::Sqlite, DbBackend::Postgres, DbBackend::MySql] {
            assert!(
                refuse_upsert(insert.as_query(), backend).is_err(),
                "{backend:?}"
            );
        }
        let plain = item::Entity::insert(item::ActiveModel {
            name: sea_orm::Set("a".into()),
            ..Default::default()
        });
        assert!(refuse_upsert(plain.as_query(), DbBackend::MySql).is_ok());
    }
}
