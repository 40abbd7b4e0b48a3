//! The buffer of one [`transaction`](crate::transaction()) helper: the events captured through
//! its transaction, waiting for its commit.

use crate::event::NewEvent;
use std::sync::Mutex;

/// Events captured through one helper transaction, waiting for its commit.
#[derive(Debug)]
pub(crate) struct EventBuffer {
    /// Address and type of the transaction the events belong to.
    connection: usize,
    connection_type: &'static str,
    events: Mutex<Vec<NewEvent>>,
}

impl EventBuffer {
    pub(crate) fn for_connection<C>(txn: &C) -> Self {
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
