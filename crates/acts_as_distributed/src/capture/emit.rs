//! Where a captured event goes: into the enclosing [`transaction`](crate::transaction()) helper's
//! buffer, or straight through the save's connection; and what a save outside a transaction does
//! ([`OutsideTransaction`]). Hook capture, bulk writes and manual events all pass through here.

use super::buffer::EventBuffer;
use super::scope::Context;
use crate::event::{Action, NewEvent, insert_events};
use crate::settings::{OutsideTransaction, Settings, UnknownConnection};
use sea_orm::{ConnectionTrait, DbErr};
use serde_json::{Map, Value as Json};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// An event with the `client_id` and `messages` of `ctx`, else of the installed [`Settings`].
pub(crate) fn new_event(
    ctx: &Context,
    distributed_type: Cow<'static, str>,
    distributed_id: String,
    action: Action,
    changes: Map<String, Json>,
) -> NewEvent {
    let (client_id, messages) = match (&ctx.client_id, &ctx.messages) {
        (Some(c), Some(m)) => (Some(c.clone()), Some(m.clone())),
        _ => {
            let settings = Settings::current();
            (
                ctx.client_id.clone().or(settings.client_id),
                ctx.messages.clone().or(settings.messages),
            )
        }
    };
    NewEvent {
        distributed_type,
        distributed_id,
        action,
        changes,
        previous: None,
        client_id,
        messages,
        created_at: chrono::Utc::now(),
    }
}

/// The buffer of the enclosing [`transaction`](crate::transaction()) helper when `db` is that
/// helper's own transaction: events written through `db` wait there for the commit.
pub(crate) fn buffer_for<'a, C>(ctx: &'a Context, db: &C) -> Option<&'a Arc<EventBuffer>> {
    ctx.buffer.as_ref().filter(|b| b.is_for(db))
}

/// Buffers the event when `db` is the transaction of the enclosing
/// [`transaction`](crate::transaction()) helper, else writes it at once through `db`.
pub(crate) async fn emit<C: ConnectionTrait>(
    db: &C,
    ctx: &Context,
    event: NewEvent,
) -> Result<(), DbErr> {
    if let Some(buffer) = buffer_for(ctx, db) {
        buffer.push(event);
        return Ok(());
    }
    insert_events(db, vec![event]).await
}

/// Applies [`OutsideTransaction`] when `db` is not a transaction. `type_name` is the
/// `distributed_type` of the event about to be written (the warning is shown once per type).
pub(crate) fn check_connection<C: ConnectionTrait>(
    ctx: &Context,
    db: &C,
    type_name: &str,
) -> Result<(), DbErr> {
    if buffer_for(ctx, db).is_some() {
        return Ok(());
    }
    let settings = Settings::current();
    let connection = std::any::type_name::<C>();
    let outside = if connection.ends_with("DatabaseTransaction") {
        false
    } else if connection.ends_with("DatabaseConnection") {
        true
    } else {
        settings.unknown_connection == UnknownConnection::AssumeOutside
    };
    if !outside {
        return Ok(());
    }
    match settings.outside_transaction {
        OutsideTransaction::Allow => Ok(()),
        OutsideTransaction::Warn => {
            static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
            let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
            let warned = warned.get_or_insert_with(HashSet::new);
            if !warned.contains(type_name) {
                warned.insert(type_name.to_owned());
                tracing::warn!(
                    entity = type_name,
                    "a {} was saved outside a transaction: its event is written by a second statement, \
                     so a failure between the two keeps the change without its event; use \
                     acts_as_distributed::transaction (this warning is shown once per entity)",
                    type_name
                );
            }
            Ok(())
        }
        OutsideTransaction::Error => Err(DbErr::Custom(format!(
            "acts_as_distributed: refusing to save a {} outside a transaction (strict mode); run it \
             inside acts_as_distributed::transaction or a SeaORM transaction, or relax \
             Settings::outside_transaction",
            type_name
        ))),
    }
}
