//! The capture step behind each SeaORM hook. The macro forwards every hook here.
//!
//! - create: after SeaORM's INSERT, from the model it returns (database defaults included).
//! - update: SeaORM's `after_save` cannot tell which columns were set, and state carried between
//!   hooks gets mixed up between concurrent saves. So `before_save` runs the UPDATE itself, builds
//!   the event from what that statement stored, and hands SeaORM an ActiveModel with nothing left
//!   to write: SeaORM then only reads the row back. A failed UPDATE leaves no event.
//! - destroy: `before_delete` reads the whole row (locked where the backend can), so the event
//!   carries every attribute even when the ActiveModel held only the key; `after_delete`, which
//!   runs only once the DELETE succeeded, writes the event.
//! - previous values (`previous = true`): `before_save` reads the row (locked where the backend
//!   can) just before its UPDATE, and the update event carries the old values of the changed
//!   columns beside the new ones.
//! - redaction (`redact = [..]`): every value of a redacted column is masked where the event is
//!   built ([`Distribution::json_of`](crate::Distribution::json_of)).

use super::behavior::DistributedBehavior;
use super::distribution::{DistributedEntity, render_id};
use super::emit::{check_connection, emit, new_event};
use super::scope;
use crate::backend::has_returning;
use crate::event::Action;
use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DbBackend, DbErr, EntityTrait, IdenStatic,
    IntoActiveModel, Iterable, ModelTrait, PrimaryKeyToColumn, PrimaryKeyTrait, QuerySelect,
    sea_query::{FromValueTuple, ValueTuple},
};
use serde_json::{Map, Value as Json};

type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;
type ColumnOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Column;

/// `ActiveModelBehavior::before_save` of a distributed entity.
pub async fn before_save<A, C>(am: A, db: &C, insert: bool) -> Result<A, DbErr>
where
    A: DistributedBehavior + Send,
    A::Entity: DistributedEntity,
    ModelOf<A>: IntoActiveModel<A>,
    C: ConnectionTrait,
{
    let am = <A as DistributedBehavior>::before_save(am, db, insert).await?;
    let ctx = scope::current();
    if ctx.disabled {
        return Ok(am);
    }
    if insert {
        check_connection(&ctx, db, A::Entity::distributed_type())?;
        return Ok(am);
    }
    let dist = A::Entity::distribution();
    let changed: Vec<ColumnOf<A>> = dist
        .distributed_columns()
        .iter()
        .copied()
        .filter(|c| am.get(*c).is_set())
        .collect();
    if changed.is_empty() {
        // Nothing distributed changes: SeaORM saves as usual and no event is written.
        return Ok(am);
    }
    check_connection(&ctx, db, A::Entity::distributed_type())?;

    let previous = if dist.records_previous() {
        read_previous(&am, &changed, db).await?
    } else {
        None
    };
    let (changes, distributed_id) = if has_returning(db) {
        // One UPDATE .. RETURNING: the event carries exactly what this statement stored.
        let model = A::Entity::update(am.clone()).exec(db).await?;
        let changes = changed
            .iter()
            .map(|c| (c.as_str().to_owned(), dist.json_of(*c, &model.get(*c))))
            .collect();
        (changes, dist.id_of_model(&model))
    } else {
        // MySQL / MariaDB: no RETURNING, and reading the row back could see another writer's
        // values. The event carries the values this statement sent.
        A::Entity::update(am.clone())
            .exec_without_returning(db)
            .await?;
        let changes: Map<String, Json> = changed
            .iter()
            .map(|c| (c.as_str().to_owned(), active_json(&am, *c)))
            .collect();
        (changes, id_of_active_model(&am, db).await?)
    };
    let mut event = new_event(
        &ctx,
        dist.type_name().into(),
        distributed_id,
        Action::Update,
        changes,
    );
    event.previous = previous;
    emit(db, &ctx, event).await?;

    // The row is written: leave SeaORM only the key, so it reads the row back instead of
    // writing it a second time.
    let mut am = am;
    for col in ColumnOf::<A>::iter() {
        if !is_primary::<A>(col) && am.get(col).is_set() {
            am.not_set(col);
        }
    }
    Ok(am)
}

/// `ActiveModelBehavior::after_save` of a distributed entity.
pub async fn after_save<A, C>(model: ModelOf<A>, db: &C, insert: bool) -> Result<ModelOf<A>, DbErr>
where
    A: DistributedBehavior + Send,
    A::Entity: DistributedEntity,
    C: ConnectionTrait,
{
    if insert {
        let ctx = scope::current();
        if !ctx.disabled {
            let dist = A::Entity::distribution();
            let event = new_event(
                &ctx,
                dist.type_name().into(),
                dist.id_of_model(&model),
                Action::Create,
                dist.attributes_of(&model),
            );
            emit(db, &ctx, event).await?;
        }
    }
    <A as DistributedBehavior>::after_save(model, db, insert).await
}

/// `ActiveModelBehavior::before_delete` of a distributed entity.
///
/// Returns the whole row (every column `Unchanged`) when it exists, or the key alone marked `Set`
/// when it does not: [`after_delete`] writes an event only for the first.
pub async fn before_delete<A, C>(am: A, db: &C) -> Result<A, DbErr>
where
    A: DistributedBehavior + Send,
    A::Entity: DistributedEntity,
    ModelOf<A>: IntoActiveModel<A>,
    C: ConnectionTrait,
{
    let mut am = <A as DistributedBehavior>::before_delete(am, db).await?;
    let ctx = scope::current();
    if ctx.disabled {
        return Ok(am);
    }
    let Some(key) = am.get_primary_key_value() else {
        // SeaORM reports the missing key itself.
        return Ok(am);
    };
    check_connection(&ctx, db, A::Entity::distributed_type())?;
    match locked_row::<A, C>(key, db).await? {
        Some(row) => Ok(row.into_active_model()),
        None => {
            for col in ColumnOf::<A>::iter() {
                if is_primary::<A>(col) {
                    am.reset(col);
                } else {
                    am.not_set(col);
                }
            }
            Ok(am)
        }
    }
}

/// `ActiveModelBehavior::after_delete` of a distributed entity.
pub async fn after_delete<A, C>(am: A, db: &C) -> Result<A, DbErr>
where
    A: DistributedBehavior + Send,
    A::Entity: DistributedEntity,
    C: ConnectionTrait,
{
    let ctx = scope::current();
    let found = <A::Entity as EntityTrait>::PrimaryKey::iter()
        .all(|k| matches!(am.get(k.into_column()), ActiveValue::Unchanged(_)));
    if !ctx.disabled && found {
        let dist = A::Entity::distribution();
        let changes = dist
            .distributed_columns()
            .iter()
            .map(|c| (c.as_str().to_owned(), active_json(&am, *c)))
            .collect();
        let id = render_id(
            dist.id_columns()
                .iter()
                .map(|c| {
                    am.get(*c)
                        .into_value()
                        .unwrap_or(sea_orm::Value::String(None))
                })
                .collect(),
        );
        emit(
            db,
            &ctx,
            new_event(&ctx, dist.type_name().into(), id, Action::Destroy, changes),
        )
        .await?;
    }
    <A as DistributedBehavior>::after_delete(am, db).await
}

fn is_primary<A: ActiveModelTrait>(col: ColumnOf<A>) -> bool {
    <A::Entity as EntityTrait>::PrimaryKey::iter().any(|k| k.into_column().as_str() == col.as_str())
}

/// The JSON form of an ActiveModel's value as an event carries it (masked when redacted).
fn active_json<A>(am: &A, col: ColumnOf<A>) -> Json
where
    A: ActiveModelTrait,
    A::Entity: DistributedEntity,
{
    let dist = A::Entity::distribution();
    match am.get(col).into_value() {
        Some(v) => dist.json_of(col, &v),
        None if dist.is_redacted(col) => crate::values::redacted(),
        None => Json::Null,
    }
}

/// The values the `changed` columns hold before the UPDATE that follows, read by key: locked on
/// PostgreSQL and MySQL (`SELECT .. FOR UPDATE`), so that inside a transaction no other writer can
/// change them before this statement; SQLite has one writer at a time. `None` when the row does
/// not exist (the UPDATE then fails with SeaORM's error, and no event is written).
async fn read_previous<A, C>(
    am: &A,
    changed: &[ColumnOf<A>],
    db: &C,
) -> Result<Option<Map<String, Json>>, DbErr>
where
    A: ActiveModelTrait,
    A::Entity: DistributedEntity,
    C: ConnectionTrait,
{
    let key = am
        .get_primary_key_value()
        .ok_or(DbErr::UpdateGetPrimaryKey)?;
    let dist = A::Entity::distribution();
    Ok(locked_row::<A, C>(key, db).await?.map(|row| {
        changed
            .iter()
            .map(|c| (c.as_str().to_owned(), dist.json_of(*c, &row.get(*c))))
            .collect()
    }))
}

/// The row with primary key `key`, locked (`SELECT .. FOR UPDATE`) on PostgreSQL and MySQL;
/// SQLite has one writer at a time.
async fn locked_row<A, C>(key: ValueTuple, db: &C) -> Result<Option<ModelOf<A>>, DbErr>
where
    A: ActiveModelTrait,
    C: ConnectionTrait,
{
    let key =
        <<A::Entity as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType::from_value_tuple(
            key,
        );
    let mut find = A::Entity::find_by_id(key);
    if db.get_database_backend() != DbBackend::Sqlite {
        find = find.lock_exclusive();
    }
    find.one(db).await
}

/// `distributed_id` after an update without RETURNING: from the ActiveModel when it holds the id
/// columns, else read by primary key.
async fn id_of_active_model<A, C>(am: &A, db: &C) -> Result<String, DbErr>
where
    A: ActiveModelTrait,
    A::Entity: DistributedEntity,
    C: ConnectionTrait,
{
    let dist = A::Entity::distribution();
    let held: Option<Vec<sea_orm::Value>> = dist
        .id_columns()
        .iter()
        .map(|c| am.get(*c).into_value())
        .collect();
    if let Some(values) = held {
        return Ok(render_id(values));
    }
    let key = am
        .get_primary_key_value()
        .ok_or(DbErr::UpdateGetPrimaryKey)?;
    let key =
        <<A::Entity as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType::from_value_tuple(
            key,
        );
    let row = A::Entity::find_by_id(key)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("{} just updated", dist.type_name())))?;
    Ok(dist.id_of_model(&row))
}
