//! Events recorded by hand: domain events, and changes made where SeaORM runs no hooks (raw SQL,
//! `delete_by_id`, ...). They take the same path as captured ones: the scope's `client_id`,
//! `messages` and on/off switch, strict mode, and the transaction helper's buffer.

use super::distribution::{DistributedEntity, json_kind};
use super::emit::{check_connection, emit, new_event};
use super::scope;
use crate::error::{Error, Result};
use crate::event::Action;
use sea_orm::{ConnectionTrait, ModelTrait};
use serde_json::{Map, Value as Json};
use std::borrow::Cow;

/// The longest `distributed_type`, `distributed_id` and `client_id` the `distributes` table holds.
const MAX_CHARS: usize = 255;

/// One event written by hand into `distributes`, in the caller's transaction.
///
/// ```no_run
/// use acts_as_distributed::{Action, ManualEvent};
/// use sea_orm::{DbErr, TransactionTrait};
/// use serde_json::json;
///
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> Result<(), acts_as_distributed::Error> {
/// let txn = db.begin().await?;
/// // .. the change itself, through `txn` ..
/// ManualEvent::new("Invoice", 42, Action::Update)
///     .changes(json!({"status": "paid", "total": "120.00"}))
///     .messages("paid by card")
///     .record(&txn)
///     .await?;
/// txn.commit().await?;
/// # Ok(())
/// # }
/// ```
///
/// `client_id` and `messages` default to the enclosing [`Scope`](crate::Scope)'s, then to the
/// installed [`Settings`](crate::Settings); inside
/// [`without_distributing`](crate::without_distributing()) nothing is written. Strict mode and
/// the once-per-type warning apply as to saves, by `distributed_type`.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a manual event is written only by `record`"]
pub struct ManualEvent {
    distributed_type: String,
    distributed_id: String,
    action: Action,
    changes: Json,
    client_id: Option<String>,
    messages: Option<String>,
}

impl ManualEvent {
    /// An event about the object `distributed_id` of type `distributed_type`, with empty
    /// `changes`. The id is written as its `Display` form: a uuid hyphenated, a number in
    /// decimal, as captured events write them.
    pub fn new(
        distributed_type: impl Into<String>,
        distributed_id: impl std::fmt::Display,
        action: Action,
    ) -> Self {
        Self {
            distributed_type: distributed_type.into(),
            distributed_id: distributed_id.to_string(),
            action,
            changes: Json::Object(Map::new()),
            client_id: None,
            messages: None,
        }
    }

    /// The event capture would write for `model` of a distributed entity: its `distributed_type`,
    /// its `distributed_id`, and every distributed attribute as `changes`.
    ///
    /// For `Action::Update`, capture records only the columns the save set; this records them
    /// all. Pass [`changes`](Self::changes) to narrow it down (the values in their
    /// [JSON form](crate::values::to_json)).
    pub fn for_model<M>(action: Action, model: &M) -> Self
    where
        M: ModelTrait,
        M::Entity: DistributedEntity<Model = M>,
    {
        let dist = M::Entity::distribution();
        Self {
            distributed_type: dist.type_name().to_owned(),
            distributed_id: dist.id_of_model(model),
            action,
            changes: Json::Object(dist.attributes_of(model)),
            client_id: None,
            messages: None,
        }
    }

    /// `changes`: a JSON object of attribute name to value (see [`values`](crate::values) for
    /// the forms receivers decode). Anything but an object is refused by [`record`](Self::record).
    pub fn changes(mut self, changes: Json) -> Self {
        self.changes = changes;
        self
    }

    /// `client_id` for this event, in place of the scope's or the default.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// `messages` for this event, in place of the scope's or the default.
    pub fn messages(mut self, messages: impl Into<String>) -> Self {
        self.messages = Some(messages.into());
        self
    }

    /// Writes the event through `db`: inside the caller's transaction when `db` is one, into the
    /// [`transaction`](crate::transaction()) helper's batch when `db` is the helper's.
    ///
    /// # Errors
    /// Before writing anything: [`Error::InvalidEvent`] for an empty or over-long (more than 255
    /// characters) `distributed_type`, `distributed_id` or `client_id`, [`Error::NotAnObject`]
    /// when `changes` is not a JSON object. Then [`Error::Db`]: strict mode outside a
    /// transaction, or the database's error.
    #[tracing::instrument(level = "debug", skip_all, fields(distributed_type = %self.distributed_type))]
    pub async fn record<C: ConnectionTrait>(self, db: &C) -> Result<()> {
        self.validate()?;
        let changes = match self.changes {
            Json::Object(changes) => changes,
            other => {
                return Err(Error::NotAnObject {
                    type_name: self.distributed_type,
                    found: json_kind(&other),
                });
            }
        };
        let ctx = scope::current();
        if ctx.disabled {
            return Ok(());
        }
        check_connection(&ctx, db, &self.distributed_type)?;
        let mut event = new_event(
            &ctx,
            Cow::Owned(self.distributed_type),
            self.distributed_id,
            self.action,
            changes,
        );
        if let Some(client_id) = self.client_id {
            event.client_id = Some(client_id.into());
        }
        if let Some(messages) = self.messages {
            event.messages = Some(messages.into());
        }
        emit(db, &ctx, event).await?;
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        let required = [
            (
                "distributed_type",
                self.distributed_type.as_str(),
                "give the type name receivers know the object by, such as `Invoice`",
            ),
            (
                "distributed_id",
                self.distributed_id.as_str(),
                "give the object's id: its uuid, or its key as text",
            ),
        ];
        for (field, value, what) in required {
            if value.trim().is_empty() {
                return Err(Error::InvalidEvent {
                    field,
                    problem: format!("is empty: {what}"),
                });
            }
        }
        let limited = required
            .iter()
            .map(|(field, value, _)| (*field, Some(*value)))
            .chain([("client_id", self.client_id.as_deref())]);
        for (field, value) in limited {
            let chars = value.map_or(0, |v| v.chars().count());
            if chars > MAX_CHARS {
                return Err(Error::InvalidEvent {
                    field,
                    problem: format!(
                        "is {chars} characters long and the column holds {MAX_CHARS}: shorten it"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Records the event capture would write for `model`: the same `distributed_type`,
/// `distributed_id` and distributed attributes. For changes SeaORM made without hooks, such as
/// a `delete_by_id` of a row read first, or raw SQL. See [`ManualEvent::for_model`] (an update
/// event carries every distributed attribute).
///
/// ```no_run
/// # mod user { use sea_orm::entity::prelude::*;
/// # #[derive(Clone, Debug, PartialEq, DeriveEntityModel)] #[sea_orm(table_name = "users")]
/// # pub struct Model { #[sea_orm(primary_key)] pub id: i32, pub name: String }
/// # #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)] pub enum Relation {}
/// # acts_as_distributed::acts_as_distributed!(); }
/// use acts_as_distributed::{Action, record_model};
/// use sea_orm::{EntityTrait, QuerySelect, TransactionTrait};
///
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> Result<(), acts_as_distributed::Error> {
/// let txn = db.begin().await?;
/// if let Some(row) = user::Entity::find_by_id(7).lock_exclusive().one(&txn).await? {
///     user::Entity::delete_by_id(7).exec(&txn).await?;
///     record_model(&txn, Action::Destroy, &row).await?;
/// }
/// txn.commit().await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// As [`ManualEvent::record`].
pub async fn record_model<M, C>(db: &C, action: Action, model: &M) -> Result<()>
where
    M: ModelTrait,
    M::Entity: DistributedEntity<Model = M>,
    C: ConnectionTrait,
{
    ManualEvent::for_model(action, model).record(db).await
}
