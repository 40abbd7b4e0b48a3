//! Sensitive data after the fact: [`erase`] masks one object's values in every retained event.
//!
//! Masking at capture time is the macro's `redact` option (see
//! [`Distribution::json_of`](crate::Distribution::json_of)); the mask itself is
//! [`values::redacted`]. This file also holds the compile-time checks of the macro's options.

use super::distribution::DistributedEntity;
use super::scope;
use crate::backend::begin_write;
use crate::error::Result;
use crate::event::{Distributes, insert_events};
use crate::values;
use sea_orm::sea_query::{Expr, ExprTrait, LockType, Order, Query};
use sea_orm::{ConnectionTrait, DbBackend, TransactionSession, TransactionTrait};
use serde_json::{Map, Value as Json};

/// Masks every value of one object's retained events: rewrites `changes` (and `previous`) of each
/// row of `distributes` with this `distributed_type` and `distributed_id`, so that every value
/// becomes the [mask](values::redacted). The keys stay: consumers still see which columns each
/// event changed, and the event keeps its id, type, action, object id and place in every
/// consumer's order. Returns the number of events rewritten (0 when nothing was left to mask).
///
/// Every consumer reads the same rows, so this erases the data for all of them at once, including
/// events not handled yet (they are then delivered masked, and a consumer skips masked values).
/// It runs in one transaction of its own (a savepoint when `db` is a transaction), holding the
/// object's events locked on PostgreSQL and MySQL. Called with the transaction of the
/// [`transaction`](crate::transaction()) helper, it first writes the events the helper holds for
/// commit, so that the changes made earlier in the same transaction are erased too.
///
/// Not rewritten: `distributed_id` (so choose a uuid, not an e-mail address, as the id column of
/// an entity with personal data), `messages`, errors that handlers stored, and copies outside the
/// table (replicas, NATS streams). An object that still exists writes new events as it changes;
/// use `redact` on its sensitive columns, or erase after its destroy.
///
/// ```no_run
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub uuid: Uuid, pub name: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// # acts_as_distributed::acts_as_distributed!(); }
/// # async fn demo(db: &sea_orm::DatabaseConnection, gone: sea_orm::prelude::Uuid) -> acts_as_distributed::Result<()> {
/// let rewritten = acts_as_distributed::erase::<user::Entity, _>(db, &gone.to_string()).await?;
/// println!("masked {rewritten} events of user {gone}");
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Db`](crate::Error::Db) when the database fails; nothing is rewritten then.
pub async fn erase<E, C>(db: &C, distributed_id: &str) -> Result<u64>
where
    E: DistributedEntity,
    C: ConnectionTrait + TransactionTrait,
{
    erase_object(db, E::distributed_type(), distributed_id).await
}

/// [`erase`] by `distributed_type` name, for objects whose entity is not at hand (an entity that
/// was removed from the code, a type written with `type_name`).
///
/// # Errors
/// [`Error::Db`](crate::Error::Db) when the database fails; nothing is rewritten then.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn erase_object<C>(db: &C, distributed_type: &str, distributed_id: &str) -> Result<u64>
where
    C: ConnectionTrait + TransactionTrait,
{
    if let Some(buffer) = scope::current().buffer.filter(|b| b.is_for(db)) {
        let held = buffer.take();
        if let Err(e) = insert_events(db, held.clone()).await {
            // Back to the helper, which writes them at commit (or reports the failure then).
            for event in held {
                buffer.push(event);
            }
            return Err(e.into());
        }
    }
    let txn = begin_write(db).await?;
    let mut select = Query::select();
    select
        .columns([Distributes::Id, Distributes::Changes, Distributes::Previous])
        .from(Distributes::Table)
        .and_where(Expr::col(Distributes::DistributedType).eq(distributed_type))
        .and_where(Expr::col(Distributes::DistributedId).eq(distributed_id))
        .order_by(Distributes::Id, Order::Asc);
    if txn.get_database_backend() != DbBackend::Sqlite {
        select.lock(LockType::Update);
    }
    let rows = txn.query_all(&select).await?;
    let mut rewritten = 0;
    for row in rows {
        let id: i64 = row.try_get("", "id")?;
        let changes: Json = row.try_get("", "changes")?;
        let previous: Option<Json> = row.try_get("", "previous")?;
        let masked_changes = mask_all(&changes);
        let masked_previous = previous.as_ref().map(mask_all);
        if masked_changes == changes && masked_previous == previous {
            continue;
        }
        let mut update = Query::update();
        update
            .table(Distributes::Table)
            .value(Distributes::Changes, Expr::val(masked_changes))
            .value(Distributes::Previous, Expr::val(masked_previous))
            .and_where(Expr::col(Distributes::Id).eq(id));
        txn.execute(&update).await?;
        rewritten += 1;
    }
    txn.commit().await?;
    tracing::debug!(rewritten, "erased the object's values");
    Ok(rewritten)
}

/// Every value of an object masked, keys kept. Anything but an object (a malformed row) becomes
/// an empty object: it may hold data, and its shape says nothing a consumer can use.
fn mask_all(json: &Json) -> Json {
    match json {
        Json::Object(object) => Json::Object(
            object
                .keys()
                .map(|k| (k.clone(), values::redacted()))
                .collect::<Map<String, Json>>(),
        ),
        _ => Json::Object(Map::new()),
    }
}

/// Whether no element of `a` is in `b`: the macro's compile-time check that no column is both in
/// `redact` and in `except`. Not a public API.
#[doc(hidden)]
pub const fn disjoint(a: &[isize], b: &[isize]) -> bool {
    let mut i = 0;
    while i < a.len() {
        if contains(b, a[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether every element of `a` is in `b`: the macro's check that `redact` stays within `only`.
/// Not a public API.
#[doc(hidden)]
pub const fn subset(a: &[isize], b: &[isize]) -> bool {
    let mut i = 0;
    while i < a.len() {
        if !contains(b, a[i]) {
            return false;
        }
        i += 1;
    }
    true
}

const fn contains(set: &[isize], x: isize) -> bool {
    let mut i = 0;
    while i < set.len() {
        if set[i] == x {
            return true;
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_value_is_masked_and_the_keys_stay() {
        let masked = mask_all(&json!({"email": "a@b.c", "age": 3, "doc": {"x": 1}, "gone": null}));
        assert_eq!(
            masked,
            json!({
                "email": {"$redacted": true},
                "age": {"$redacted": true},
                "doc": {"$redacted": true},
                "gone": {"$redacted": true},
            })
        );
        assert_eq!(mask_all(&masked), masked, "masking twice changes nothing");
        assert_eq!(mask_all(&json!("not an object")), json!({}));
    }

    #[test]
    fn option_checks() {
        assert!(disjoint(&[1, 2], &[3]));
        assert!(disjoint(&[], &[3]));
        assert!(!disjoint(&[1, 3], &[3]));
        assert!(subset(&[1], &[1, 2]));
        assert!(subset(&[], &[]));
        assert!(!subset(&[3], &[1, 2]));
    }
}
