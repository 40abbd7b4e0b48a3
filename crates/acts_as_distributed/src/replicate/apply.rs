//! Playing one entity's events onto the replica, typed: the generic half of the replicator.
//!
//! Rows are written through the entity's ActiveModel, so the replica runs its own hooks (its own
//! timestamps, validation) and, when the replicator records its writes, its own capture.

use crate::capture::distribution::{DistributedEntity, decode_value};
use crate::event::Action;
use crate::values;
use crate::worker::HandlerError;
use sea_orm::sea_query::Value;
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ColumnType, Condition, ConnectionTrait,
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, IdenStatic,
    IntoActiveModel, Iterable, ModelTrait, PaginatorTrait, PrimaryKeyToColumn, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::str::FromStr;

/// What applying one event did to the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The row was inserted.
    Inserted,
    /// Columns of the row were updated.
    Updated,
    /// The row was deleted.
    Deleted,
    /// Nothing to do: the replica already holds these values, or the row the event updates or
    /// deletes is not there (it was deleted, or a later snapshot will bring it).
    Unchanged,
    /// The event came from a client the replicator skips (two-way replication).
    Skipped,
}

/// A registered entity, behind a trait object so that one replicator holds many entities.
#[async_trait::async_trait]
pub(crate) trait Entry: Send + Sync {
    /// The `distributed_type` of its events.
    fn type_name(&self) -> &'static str;
    /// Whether the entity has a column of this name.
    fn has_column(&self, name: &str) -> bool;
    /// The columns verify compares (the distributed ones that are not redacted).
    fn compared_columns(&self) -> Vec<&'static str>;
    /// Applies one event's action with the (already filtered) `changes`, a JSON object.
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        action: Action,
        distributed_id: &str,
        changes: &Json,
    ) -> Result<Applied, HandlerError>;
    /// Reads no row of the entity's table on `db` with every column of the entity: an error
    /// when the table or one of its columns is missing there.
    async fn check(&self, db: &DatabaseConnection) -> Result<(), DbErr>;
    /// Rows in the source table.
    async fn count(&self, db: &DatabaseTransaction) -> Result<u64, DbErr>;
    /// Copies up to `limit` rows after the primary key `after` from `source` (a read
    /// transaction) into the replica through `txn`. Returns how many and the key to continue after (`None` at the end).
    async fn copy_page(
        &self,
        source: &DatabaseTransaction,
        txn: &DatabaseTransaction,
        after: Option<Vec<Value>>,
        limit: u64,
    ) -> Result<(u64, Option<Vec<Value>>), HandlerError>;
    /// Every row of `db` as `distributed_id` to its compared values.
    async fn rows(&self, db: &DatabaseTransaction) -> Result<HashMap<String, Vec<Value>>, DbErr>;
}

/// The [`Entry`] of entity `E`.
pub(crate) struct Registered<E>(PhantomData<fn() -> E>);

impl<E> Registered<E> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

type ColumnOf<E> = <E as EntityTrait>::Column;

#[async_trait::async_trait]
impl<E> Entry for Registered<E>
where
    E: DistributedEntity + Sync,
    E::ActiveModel: ActiveModelBehavior + Send + Sync,
    E::Model: IntoActiveModel<E::ActiveModel> + Sync,
{
    fn type_name(&self) -> &'static str {
        E::distributed_type()
    }

    fn has_column(&self, name: &str) -> bool {
        ColumnOf::<E>::from_str(name).is_ok()
    }

    fn compared_columns(&self) -> Vec<&'static str> {
        compared::<E>().map(|c| c.as_str()).collect()
    }

    async fn check(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        E::find().limit(0).all(db).await.map(|_| ())
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        action: Action,
        distributed_id: &str,
        changes: &Json,
    ) -> Result<Applied, HandlerError> {
        let key = parse_key::<E>(distributed_id)?;
        let values = decode::<E>(changes)?;
        apply_values::<E>(txn, action, key, values).await
    }

    async fn count(&self, db: &DatabaseTransaction) -> Result<u64, DbErr> {
        E::find().count(db).await
    }

    async fn copy_page(
        &self,
        source: &DatabaseTransaction,
        txn: &DatabaseTransaction,
        after: Option<Vec<Value>>,
        limit: u64,
    ) -> Result<(u64, Option<Vec<Value>>), HandlerError> {
        let primary: Vec<ColumnOf<E>> = E::PrimaryKey::iter().map(|k| k.into_column()).collect();
        let mut find = E::find();
        for c in &primary {
            find = find.order_by_asc(*c);
        }
        if let Some(after) = &after {
            find = find.filter(after_key(&primary, after));
        }
        let rows = find.limit(limit).all(source).await.map_err(db_failure)?;
        let next = rows
            .last()
            .map(|row| primary.iter().map(|c| row.get(*c)).collect());
        let dist = E::distribution();
        let copied = rows.len() as u64;
        for row in rows {
            let key = dist
                .id_columns()
                .iter()
                .map(|c| (*c, row.get(*c)))
                .collect();
            let values = compared::<E>().map(|c| (c, row.get(c))).collect();
            apply_values::<E>(txn, Action::Create, key, values).await?;
        }
        Ok((copied, next))
    }

    async fn rows(&self, db: &DatabaseTransaction) -> Result<HashMap<String, Vec<Value>>, DbErr> {
        let dist = E::distribution();
        Ok(E::find()
            .all(db)
            .await?
            .into_iter()
            .map(|row| {
                let values = compared::<E>().map(|c| comparable(c, row.get(c))).collect();
                (dist.id_of_model(&row), values)
            })
            .collect())
    }
}

/// Creates, updates or deletes the row whose id columns hold `key`.
async fn apply_values<E>(
    txn: &DatabaseTransaction,
    action: Action,
    key: Vec<(ColumnOf<E>, Value)>,
    values: Vec<(ColumnOf<E>, Value)>,
) -> Result<Applied, HandlerError>
where
    E: DistributedEntity,
    E::ActiveModel: ActiveModelBehavior + Send,
    E::Model: IntoActiveModel<E::ActiveModel>,
{
    let condition = key
        .iter()
        .fold(Condition::all(), |c, (col, v)| c.add(col.eq(v.clone())));
    let mut find = E::find().filter(condition);
    if txn.get_database_backend() != DbBackend::Sqlite {
        find = find.lock_exclusive();
    }
    let existing = find.one(txn).await.map_err(db_failure)?;
    match (action, existing) {
        (Action::Destroy, None) | (Action::Update, None) => Ok(Applied::Unchanged),
        (Action::Destroy, Some(row)) => {
            row.into_active_model()
                .delete(txn)
                .await
                .map_err(db_failure)?;
            Ok(Applied::Deleted)
        }
        (Action::Create | Action::Update, Some(row)) => {
            let mut am = row.clone().into_active_model();
            let mut changed = false;
            for (col, value) in values {
                if !same(&row.get(col), &value) {
                    set(&mut am, col, value)?;
                    changed = true;
                }
            }
            if !changed {
                return Ok(Applied::Unchanged);
            }
            am.update(txn).await.map_err(db_failure)?;
            Ok(Applied::Updated)
        }
        (Action::Create, None) => {
            let mut am = <E::ActiveModel as ActiveModelTrait>::default();
            let given: Vec<&str> = values.iter().map(|(c, _)| c.as_str()).collect();
            for (col, value) in key {
                if !given.contains(&col.as_str()) {
                    set(&mut am, col, value)?;
                }
            }
            for (col, value) in values {
                set(&mut am, col, value)?;
            }
            am.insert(txn).await.map_err(db_failure)?;
            Ok(Applied::Inserted)
        }
    }
}

fn set<A: ActiveModelTrait>(
    am: &mut A,
    col: <A::Entity as EntityTrait>::Column,
    value: Value,
) -> Result<(), HandlerError> {
    am.try_set(col, value.clone()).map_err(|e| {
        HandlerError::permanent(format!(
            "column `{}`: cannot set {}: {e}",
            col.as_str(),
            values::to_json(&value)
        ))
    })
}

/// The distributed columns whose values events carry: all but the redacted ones (a snapshot
/// copies these, verify compares these).
fn compared<E: DistributedEntity>() -> impl Iterator<Item = ColumnOf<E>> {
    let dist = E::distribution();
    dist.distributed_columns()
        .iter()
        .copied()
        .filter(|c| !dist.is_redacted(*c))
}

/// `value` as verify compares it: a decimal rounded to its column's scale, since SQLite stores
/// SeaORM's decimals as floating point (`-4398294.4482` reads back as `-4398294.448200001`).
fn comparable<C: ColumnTrait>(column: C, value: Value) -> Value {
    match (column.def().get_column_type(), value) {
        (
            ColumnType::Decimal(Some((_, scale))) | ColumnType::Money(Some((_, scale))),
            Value::Decimal(Some(d)),
        ) => Value::Decimal(Some(d.round_dp(*scale))),
        (_, value) => value,
    }
}

/// Whether two values of one column are the same (floats by their JSON form, so NaN equals NaN;
/// datetimes by instant; decimals by number).
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    a == b || values::to_json(a) == values::to_json(b)
}

/// The id column values that `distributed_id` renders: a single value as its plain text, a
/// composite key as a JSON array.
fn parse_key<E: DistributedEntity>(
    distributed_id: &str,
) -> Result<Vec<(ColumnOf<E>, Value)>, HandlerError> {
    let columns = E::distribution().id_columns();
    let bad = |why: String| {
        HandlerError::permanent(format!(
            "{}: cannot read the id `{distributed_id}`: {why}",
            E::distributed_type()
        ))
    };
    if let [column] = columns {
        let as_text = decode_value::<E>(*column, &Json::String(distributed_id.to_owned()));
        let value = match as_text {
            Ok(v) => v,
            // Numbers (and other non-text keys) are rendered as their JSON.
            Err(text_error) => serde_json::from_str::<Json>(distributed_id)
                .ok()
                .and_then(|json| decode_value::<E>(*column, &json).ok())
                .ok_or_else(|| bad(text_error.to_string()))?,
        };
        return Ok(vec![(*column, value)]);
    }
    let parts: Vec<Json> = serde_json::from_str(distributed_id)
        .map_err(|_| bad(format!("expected a JSON array of {} values", columns.len())))?;
    if parts.len() != columns.len() {
        return Err(bad(format!(
            "expected {} values, found {}",
            columns.len(),
            parts.len()
        )));
    }
    columns
        .iter()
        .zip(&parts)
        .map(|(c, json)| {
            Ok((
                *c,
                decode_value::<E>(*c, json).map_err(|e| bad(e.to_string()))?,
            ))
        })
        .collect()
}

/// `changes` as typed column values; a value of the wrong form is a permanent error naming the
/// entity, the column and the value.
fn decode<E: DistributedEntity>(changes: &Json) -> Result<Vec<(ColumnOf<E>, Value)>, HandlerError> {
    E::decode_changes(changes)
        .map_err(|e| HandlerError::permanent(format!("{e}; the event is kept as dead")))
}

/// Rows whose key comes after `after` in key order: `(a, b) > (x, y)` spelt out, which every
/// backend understands.
fn after_key<C: ColumnTrait>(primary: &[C], after: &[Value]) -> Condition {
    let mut any = Condition::any();
    for i in 0..primary.len() {
        let mut branch = Condition::all();
        for j in 0..i {
            branch = branch.add(primary[j].eq(after[j].clone()));
        }
        any = any.add(branch.add(primary[i].gt(after[i].clone())));
    }
    any
}

/// A database error while applying: retried (a parent not there yet, a lock, a lost connection).
pub(crate) fn db_failure(e: DbErr) -> HandlerError {
    // SeaORM's words when a NULL column meets a field that is not an `Option`: no retry helps.
    if let DbErr::Type(message) = &e
        && let Some(column) = message.strip_prefix("Missing value for column ")
    {
        return HandlerError::permanent(format!(
            "the replica's column {column} is NULL and the replica entity's field for it cannot \
             hold NULL: events never carry this column (except / redact), so make the field an \
             `Option<..>` in the replica's entity, or give the replica's column a default that is \
             not NULL"
        ));
    }
    HandlerError::retry(format!("the replica refused the change: {e}"))
}
