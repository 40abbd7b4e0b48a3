//! Handling one claimed batch: grouping by object, calling the handler (panics caught), and the
//! outcome of each event.

use super::handler::{Handler, HandlerError};
use super::retry::{RetryPolicy, random_unit};
use crate::event::Event;
use crate::queue::DeadEvents;
use crate::queue::claim::Claimed;
use crate::queue::lease::Deadline;
use crate::queue::state::DeliveryState;
use futures_util::FutureExt as _;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub(crate) use crate::queue::lease::Outcome;

/// What a batch needs from its worker.
pub(crate) struct BatchRunner {
    pub handler: Arc<dyn Handler>,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub dead_events: DeadEvents,
}

/// Splits a batch into the groups handled one after the other: with `in_sequence`, one group of
/// the whole batch in `seq` order; otherwise one group per object, in claim order.
pub(crate) fn group(claimed: Vec<Claimed>, in_sequence: bool) -> Vec<Vec<Claimed>> {
    if in_sequence {
        let mut claimed = claimed;
        claimed.sort_by_key(|c| c.event.as_ref().map_or(i64::MAX, |e| e.seq));
        return vec![claimed];
    }
    let mut groups: Vec<Vec<Claimed>> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for c in claimed {
        let i = *index.entry(c.object()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(c);
    }
    groups
}

/// The objects held back within one group: after a failure that holds an object, its later events
/// in the group go back to the queue (they wait behind the failed one).
#[derive(Default)]
struct Held(HashSet<(String, String)>);

impl Held {
    fn contains(&self, c: &Claimed) -> bool {
        self.0.contains(&c.object())
    }
}

impl BatchRunner {
    /// Handles a batch: objects in parallel (up to `concurrency`), each object's events in order.
    /// On `abort`, stops the handlers and gives their events back. Every event gets an outcome.
    pub(crate) async fn run(
        self: &Arc<Self>,
        claimed: Vec<Claimed>,
        deadline: &Deadline,
        abort: &CancellationToken,
    ) -> Vec<Outcome> {
        let all_ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        let in_sequence = self.concurrency == 1;
        let at_once = in_sequence && self.handler.handles_batches();
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        for group in group(claimed, in_sequence) {
            let this = self.clone();
            let permits = permits.clone();
            let deadline = deadline.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if at_once {
                    this.handle_at_once(group, &deadline).await
                } else {
                    this.handle_group(group, &deadline).await
                }
            });
        }
        let mut outcomes = Vec::new();
        loop {
            tokio::select! {
                next = tasks.join_next() => match next {
                    Some(Ok(mut group_outcomes)) => outcomes.append(&mut group_outcomes),
                    Some(Err(e)) => tracing::error!(error = %e, "an event group task failed"),
                    None => break,
                },
                _ = abort.cancelled() => {
                    tasks.abort_all();
                    while let Some(r) = tasks.join_next().await {
                        if let Ok(mut group_outcomes) = r {
                            outcomes.append(&mut group_outcomes);
                        }
                    }
                    break;
                }
            }
        }
        // Whatever has no outcome (an aborted or failed task) goes back to the queue.
        let settled: HashSet<i64> = outcomes.iter().map(Outcome::id).collect();
        outcomes.extend(
            all_ids
                .into_iter()
                .filter(|id| !settled.contains(id))
                .map(Outcome::Released),
        );
        outcomes
    }

    /// Events in order, one handler call each.
    async fn handle_group(&self, group: Vec<Claimed>, deadline: &Deadline) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(group.len());
        let mut held = Held::default();
        for mut c in group {
            // A worker that lost its lease, or cannot know it still has it, starts nothing more.
            if held.contains(&c) || !deadline.holds() {
                outcomes.push(Outcome::Released(c.id));
                continue;
            }
            // The event moves to the handler; what its outcome needs stays in `c`.
            let result = match std::mem::replace(&mut c.event, Err(String::new())) {
                Err(malformed) => Err(malformed_error(&malformed)),
                Ok(event) => self.call(event).await,
            };
            outcomes.push(self.settle(&c, result, &mut held));
        }
        outcomes
    }

    /// A batch handed to a handler that takes batches, in order. Malformed rows fail at once
    /// (and hold their object); the rest go to the handler in one call.
    async fn handle_at_once(&self, group: Vec<Claimed>, deadline: &Deadline) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(group.len());
        let mut held = Held::default();
        let mut handed = Vec::with_capacity(group.len());
        for c in group {
            if held.contains(&c) {
                outcomes.push(Outcome::Released(c.id));
                continue;
            }
            match c.event {
                Ok(_) => handed.push(c),
                Err(ref malformed) => {
                    let e = Err(malformed_error(malformed));
                    outcomes.push(self.settle(&c, e, &mut held));
                }
            }
        }
        if !deadline.holds() {
            outcomes.extend(handed.iter().map(|c| Outcome::Released(c.id)));
            return outcomes;
        }
        let events: Vec<Event> = handed
            .iter()
            .filter_map(|c| c.event.as_ref().ok().cloned())
            .collect();
        let span = tracing::debug_span!("handle_batch", events = events.len());
        let results = match catch_panic(self.handler.handle_batch(events).instrument(span)).await {
            Ok(results) => results,
            Err(panic) => {
                // The panic belongs to some event of the batch, not to the first: hand the
                // events over again one at a time, so that only the culprit fails.
                tracing::warn!(error = %panic, "the batch handler panicked; handling the batch one event at a time");
                outcomes.extend(self.handle_singly(handed, &mut held, deadline).await);
                return outcomes;
            }
        };
        let mut results = results.into_iter();
        for c in handed {
            match results.next() {
                Some(result) => outcomes.push(self.settle(&c, result, &mut held)),
                None => outcomes.push(Outcome::Released(c.id)),
            }
        }
        outcomes
    }

    /// Each event as a batch of its own, in order.
    async fn handle_singly(
        &self,
        group: Vec<Claimed>,
        held: &mut Held,
        deadline: &Deadline,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(group.len());
        for c in group {
            let Ok(event) = c.event.clone() else {
                continue;
            };
            if held.contains(&c) || !deadline.holds() {
                outcomes.push(Outcome::Released(c.id));
                continue;
            }
            let result = match catch_panic(self.handler.handle_batch(vec![event])).await {
                Ok(results) => results.into_iter().next(),
                Err(panic) => Some(Err(panic)),
            };
            outcomes.push(match result {
                Some(result) => self.settle(&c, result, held),
                // The handler did not get to it: back to the queue.
                None => Outcome::Released(c.id),
            });
        }
        outcomes
    }

    async fn call(&self, event: Event) -> Result<(), HandlerError> {
        let span = tracing::debug_span!("handle", event = event.id, r#type = %event.distributed_type, action = %event.action, attempt = event.attempt);
        catch_panic(self.handler.handle(event).instrument(span))
            .await
            .and_then(|r| r)
    }

    /// The outcome of one handled event; a failure that holds its object marks it in `held`.
    fn settle(&self, c: &Claimed, result: Result<(), HandlerError>, held: &mut Held) -> Outcome {
        let Err(e) = result else {
            return Outcome::Done(c.id);
        };
        let (outcome, state) = failure(&self.retry, c.id, c.attempt, &e);
        if self.dead_events.holds(state) {
            held.0.insert(c.object());
        }
        outcome
    }
}

/// The outcome of a failed attempt and the state it leaves the delivery in: dead when the error
/// is permanent or the attempts are used up, else a retry after the policy's delay.
fn failure(
    retry: &RetryPolicy,
    id: i64,
    attempt: u32,
    e: &HandlerError,
) -> (Outcome, DeliveryState) {
    let dead = matches!(e, HandlerError::Permanent(_)) || retry.is_exhausted(attempt);
    let retry_in = (!dead).then(|| retry.delay(attempt, random_unit()));
    tracing::warn!(event = id, attempt, dead, error = %e, "handler failed");
    let outcome = Outcome::Failed {
        id,
        retry_in,
        error: e.message().to_owned(),
    };
    let state = if dead {
        DeliveryState::Dead
    } else {
        DeliveryState::Retry
    };
    (outcome, state)
}

fn malformed_error(malformed: &str) -> HandlerError {
    HandlerError::permanent(format!("malformed event row: {malformed}"))
}

/// Runs `fut`, turning a panic into a retryable failure.
async fn catch_panic<T>(fut: impl Future<Output = T>) -> Result<T, HandlerError> {
    AssertUnwindSafe(fut).catch_unwind().await.map_err(|panic| {
        HandlerError::retry(format!("handler panicked: {}", panic_message(&*panic)))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Action;
    use serde_json::json;

    fn claimed(id: i64, seq: i64, object: &str) -> Claimed {
        let mut event = Event::new(id, "User", object, Action::Update, json!({}));
        event.seq = seq;
        Claimed {
            id,
            seq,
            distributed_type: "User".into(),
            distributed_id: object.into(),
            attempt: 1,
            event: Ok(event),
        }
    }

    fn ids(groups: &[Vec<Claimed>]) -> Vec<Vec<i64>> {
        groups
            .iter()
            .map(|g| g.iter().map(|c| c.id).collect())
            .collect()
    }

    #[test]
    fn groups_are_per_object_in_claim_order_or_one_in_sequence_order() {
        let batch = || {
            vec![
                claimed(1, 12, "a"),
                claimed(2, 11, "b"),
                claimed(3, 13, "a"),
                claimed(4, 10, "c"),
            ]
        };
        assert_eq!(ids(&group(batch(), false)), [vec![1, 3], vec![2], vec![4]]);
        assert_eq!(ids(&group(batch(), true)), [vec![4, 2, 1, 3]]);
    }

    #[test]
    fn a_failure_is_retried_until_the_attempts_run_out_and_a_permanent_one_is_dead_at_once() {
        let retry = RetryPolicy::default().max_attempts(3);
        let (outcome, state) = failure(&retry, 7, 1, &HandlerError::retry("busy"));
        assert_eq!(state, DeliveryState::Retry);
        assert!(matches!(outcome, Outcome::Failed { retry_in: Some(d), .. } if !d.is_zero()));
        let (_, state) = failure(&retry, 7, 3, &HandlerError::retry("busy"));
        assert_eq!(state, DeliveryState::Dead);
        let (outcome, state) = failure(&retry, 7, 1, &HandlerError::permanent("bad"));
        assert_eq!(state, DeliveryState::Dead);
        assert_eq!(
            outcome,
            Outcome::Failed {
                id: 7,
                retry_in: None,
                error: "bad".into()
            }
        );
    }

    #[tokio::test]
    async fn a_panic_becomes_a_retryable_failure_with_its_message() {
        let r = catch_panic(async { panic!("boom {}", 1) }).await;
        assert_eq!(r, Err(HandlerError::retry("handler panicked: boom 1")));
        assert_eq!(catch_panic(async { 5 }).await, Ok(5));
    }
}
