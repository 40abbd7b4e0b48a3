//! Regression tests for the queue defects of issue 10. Each test names the behaviour a user relies
//! on and asserts it on every backend where the defect applies. They fail on the code the issue
//! describes and are ignored, naming the defect, until the fix lands (the fix removes the ignore).
//!
//! Tests that need a worker process to die or freeze start this test binary again with an ignored
//! child test (`abort_child`, `slow_child`), as `tests/queue.rs` does for a killed worker. The
//! child and the parent write what their handlers do to a ledger file that both append to.

mod common;

use acts_as_distributed::{Event, Handler, HandlerError, Queue, RetryPolicy, Worker};
use common::queue::*;
use common::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// `update` events of `Note`s, one per object name.
fn notes<S: Into<String>>(
    objects: impl IntoIterator<Item = S>,
) -> Vec<(&'static str, String, &'static str)> {
    objects
        .into_iter()
        .map(|o| ("Note", o.into(), "update"))
        .collect()
}

/// The ids of the events of object `distributed_id`, oldest first.
async fn ids_of(db: &DatabaseConnection, distributed_id: &str) -> Vec<i64> {
    events(db)
        .await
        .into_iter()
        .filter(|e| e.distributed_id == distributed_id)
        .map(|e| e.id)
        .collect()
}

/// What went wrong, per backend: a test checks every backend and then fails once, listing each
/// backend where the behaviour does not hold.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, backend: &Backend, ok: bool, message: String) {
        if !ok {
            self.0.push(format!("{}: {message}", backend.name()));
        }
    }

    fn assert_none(self) {
        assert!(self.0.is_empty(), "\n{}\n", self.0.join("\n"));
    }
}

/// Milliseconds since the epoch (the parent and its children share the host's clock).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Appends `"{worker} {mark} {event} {ms}"` to the ledger, one `write` per line so that the
/// lines of several processes never interleave. `mark` is `S` when a handler starts an event and
/// `E` when it ends it.
fn ledger_write(ledger: &Path, worker: &str, mark: char, event: &Event) {
    let line = format!(
        "{worker} {mark} {} {} {}\n",
        event.id,
        now_ms(),
        event.attempt
    );
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ledger)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .expect("write the ledger");
}

/// One handling of one event by one worker, from the ledger.
#[derive(Debug, Clone)]
struct Handling {
    worker: String,
    event: i64,
    start: i64,
    /// `None` while running (or when its process died in it).
    end: Option<i64>,
    /// The delivery's attempt: it grows with every new lease (the fencing token).
    attempt: u32,
}

fn read_ledger(ledger: &Path) -> Vec<Handling> {
    let text = std::fs::read_to_string(ledger).unwrap_or_default();
    let mut out: Vec<Handling> = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [worker, mark, event, ms, attempt] = parts[..] else {
            continue; // a line being written
        };
        let (event, ms) = (
            event.parse().expect("event id"),
            ms.parse().expect("milliseconds"),
        );
        let Ok(attempt) = attempt.parse() else {
            continue; // a line being written
        };
        match mark {
            "S" => out.push(Handling {
                worker: worker.to_owned(),
                event,
                start: ms,
                end: None,
                attempt,
            }),
            _ => {
                if let Some(h) = out
                    .iter_mut()
                    .rev()
                    .find(|h| h.worker == worker && h.event == event && h.end.is_none())
                {
                    h.end = Some(ms);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Defect 1: `after` stalls the whole consumer
// ---------------------------------------------------------------------------------------------

/// Issue 10, defect 1: "`after` stalls the whole consumer". Upstream consumer `a` holds one object
/// back (its first event is dead, `DeadEvents::Hold`); that object then gets more events than a
/// claim window (1,100 updates, batch size 100), followed by 5 events of other objects. The
/// dependent consumer `b` (`.after(["a"])`) must still get those 5 within 5 s: events `a` has
/// not handled wait on their own, never in front of other objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_keeps_delivering_other_objects_while_upstream_holds_one_back() {
    let mut failures = Failures::default();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let mut objects = notes(std::iter::repeat_n("held", 1 + 1_100));
        objects.extend(notes((0..5).map(|i| format!("free{i}"))));
        write_events(&t.db, &objects).await;
        let held = ids_of(&t.db, "held").await;
        let free: Vec<i64> = events(&t.db)
            .await
            .into_iter()
            .filter(|e| e.distributed_id != "held")
            .map(|e| e.id)
            .collect();
        assert_eq!((held.len(), free.len()), (1_101, 5));

        let upstream = Seen::default();
        let first_held = held[0];
        let up = upstream.clone();
        let a = Worker::builder(t.db.clone(), "a")
            .batch_size(100)
            .handler(move |e: Event| {
                let up = up.clone();
                async move {
                    if e.id == first_held {
                        return Err(HandlerError::permanent("this object is broken"));
                    }
                    up.push(e);
                    Ok(())
                }
            })
            .build()
            .expect("build a");
        drain(&a).await;
        let mut a_got = upstream.ids();
        a_got.sort_unstable();
        assert_eq!(
            a_got,
            free,
            "{}: precondition: `a` handled the other objects and holds `held`",
            backend.name()
        );

        let dependent = Seen::default();
        let b = polling_recording(&t.db, "b", &dependent)
            .after(["a"])
            .batch_size(100)
            .build()
            .expect("build b")
            .spawn();
        let started = Instant::now();
        let arrived = poll_until(Duration::from_secs(5), async || dependent.has_all(&free)).await;
        let waited = started.elapsed();
        b.shutdown(Duration::from_secs(5)).await.expect("shutdown");
        let got = dependent.ids();
        let got_free = got.iter().filter(|id| free.contains(id)).count();
        let got_held = got.iter().filter(|id| held.contains(id)).count();
        failures.check(
            &backend,
            arrived,
            format!(
                "`b` received {got_free} of the 5 events of other objects in {waited:?} \
                 (position of b {:?}, of a {:?}): the held object's 1,101 events stall it",
                position(&t.db, "b").await,
                position(&t.db, "a").await,
            ),
        );
        failures.check(
            &backend,
            got_held == 0,
            format!("`b` received {got_held} events `a` holds back"),
        );
        if arrived {
            eprintln!(
                "{}: `b` got the 5 other events in {waited:?} past 1,101 held ones",
                backend.name()
            );
        }
    }
    failures.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Defect 2: different filters skip events forever
// ---------------------------------------------------------------------------------------------

/// Issue 10, defect 2: "different filters skip events forever". A worker of consumer `c` runs
/// with `.types(["Note", "User"])`; another worker of `c` started with the narrower
/// `.types(["User"])` stored its filter, and the position moved past the `Note` events the wider
/// worker still needed. One filter per consumer: a worker started with a filter other than the
/// consumer's must fail with an error saying how to change the consumer's filter, and no event the
/// consumer's filter matches may be skipped.
#[tokio::test]
async fn a_worker_with_another_filter_is_refused_and_nothing_is_skipped() {
    let mut failures = Failures::default();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let wide_seen = Seen::default();
        let wide = polling_recording(&t.db, "c", &wide_seen)
            .types(["Note", "User"])
            .build()
            .expect("build the wide worker");
        assert_eq!(wide.run_once().await.expect("register c"), 0);

        let mut objects = notes(["n1", "n2", "n3"]);
        objects.extend(["u1", "u2", "u3"].map(|u| ("User", u.to_owned(), "update")));
        write_events(&t.db, &objects).await;
        let all = all_ids(&t.db).await;

        let narrow_seen = Seen::default();
        let narrow = match polling_recording(&t.db, "c", &narrow_seen)
            .types(["User"])
            .build()
        {
            Ok(worker) => worker.run_once().await,
            Err(e) => Err(e),
        };
        drain(&wide).await;

        let got: HashSet<i64> = wide_seen
            .ids()
            .into_iter()
            .chain(narrow_seen.ids())
            .collect();
        let skipped: Vec<i64> = all.iter().copied().filter(|id| !got.contains(id)).collect();
        let refused = matches!(&narrow, Err(e) if e.to_string().contains("filter"));
        failures.check(
            &backend,
            refused && skipped.is_empty(),
            format!(
                "the narrower worker's run_once returned {:?} (expected an error about the \
                 consumer's filter); events of `c` never delivered to any of its workers: \
                 {skipped:?} of {all:?}",
                narrow.as_ref().map_err(ToString::to_string),
            ),
        );
    }
    failures.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Defect 3: an event that kills the process is retried forever
// ---------------------------------------------------------------------------------------------

/// Issue 10, defect 3: "an event that kills the process is retried forever". A worker in a child
/// process (concurrency 1, lease 1 s, 3 attempts) aborts the process on one event, ahead of 10
/// events of other objects in the same batch; the child is started again up to 10 times. Crashes
/// count: the poison event must end dead after its attempts, and the 10 others be handled and not
/// dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_kills_the_worker_ends_dead_and_spares_its_batch() {
    let mut failures = Failures::default();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let mut objects = notes(["poison"]);
        objects.extend(notes((0..10).map(|i| format!("o{i}"))));
        write_events(&t.db, &objects).await;
        let poison = ids_of(&t.db, "poison").await[0];
        let others: Vec<i64> = events(&t.db)
            .await
            .into_iter()
            .map(|e| e.id)
            .filter(|id| *id != poison)
            .collect();
        let dir = tempfile::tempdir().expect("dir");
        let ledger = dir.path().join("ledger");

        let settled = async || {
            delivery_state(&t.db, "replica", poison)
                .await
                .is_some_and(|(state, _)| state == "dead")
                && count_handled(&t.db, "replica", &others).await == others.len()
        };
        let started = Instant::now();
        let (mut crashes, mut done) = (0, false);
        for _ in 0..10 {
            let mut child = ChildWorker::start("abort_child", &t.url, &ledger);
            let round = Instant::now();
            loop {
                if settled().await {
                    done = true;
                    break;
                }
                if child.exited().is_some() {
                    crashes += 1;
                    break;
                }
                if round.elapsed() > Duration::from_secs(10) {
                    break; // a child that neither crashes nor finishes: start another
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if done {
                break;
            }
        }
        let elapsed = started.elapsed();
        let state = delivery_state(&t.db, "replica", poison).await;
        let handled_others = count_handled(&t.db, "replica", &others).await;
        let ran: HashSet<i64> = read_ledger(&ledger).iter().map(|h| h.event).collect();
        let mut dead_others = Vec::new();
        for id in &others {
            if delivery_state(&t.db, "replica", *id)
                .await
                .is_some_and(|(s, _)| s == "dead")
            {
                dead_others.push(*id);
            }
        }
        let dead_in_status: u64 = Queue::new(t.db.clone())
            .status()
            .await
            .expect("status")
            .iter()
            .filter(|c| c.consumer == "replica")
            .flat_map(|c| c.types.iter().map(|s| s.dead))
            .sum();
        failures.check(
            &backend,
            done && dead_others.is_empty() && dead_in_status == 1,
            format!(
                "after {crashes} crashed child workers in {elapsed:?}, the poison event's \
                 delivery is {state:?} (expected dead); of the 10 other events of its batch \
                 {handled_others} are handled (the handler ran {}), dead others \
                 {dead_others:?}; status counts {dead_in_status} dead (expected 1)",
                ran.len()
            ),
        );
        if done {
            eprintln!(
                "{}: poison dead after {crashes} crashes, its batch handled, in {elapsed:?}",
                backend.name()
            );
        }
    }
    failures.assert_none();
}

/// The child side of `an_event_that_kills_the_worker_ends_dead_and_spares_its_batch`: aborts the
/// process on the event of object `poison`. Does nothing unless started by that test.
#[tokio::test]
#[ignore = "started in a child process by an_event_that_kills_the_worker_ends_dead_..."]
async fn abort_child() {
    let Some((db, ledger)) = child_env().await else {
        return;
    };
    let _handle = Worker::builder(db, "replica")
        .concurrency(1)
        .lease(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(50))
        .listen(false)
        .retry(
            RetryPolicy::default()
                .base(Duration::from_millis(50))
                .jitter(0.0)
                .max_attempts(3),
        )
        .handler(move |e: Event| {
            let ledger = ledger.clone();
            async move {
                if e.distributed_id == "poison" {
                    std::process::abort();
                }
                ledger_write(&ledger, "child", 'S', &e);
                ledger_write(&ledger, "child", 'E', &e);
                Ok::<_, HandlerError>(())
            }
        })
        .build()
        .expect("build")
        .spawn();
    tokio::time::sleep(Duration::from_secs(60)).await;
}

// ---------------------------------------------------------------------------------------------
// Defect 4: a long open transaction holds back everyone's events (MySQL / MariaDB)
// ---------------------------------------------------------------------------------------------

/// Issue 10, defect 4 (MySQL / MariaDB): a long open transaction holds back everyone's events. An
/// application transaction inserts an event and stays open; events committed before and after it
/// (lower and higher ids) must be delivered at once, within 2 s, while it is open for 6 s. Its own
/// event comes once it commits.
///
/// Not on SQLite, where an open write transaction holds every writer back by design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_open_transaction_delays_only_its_own_event() {
    let mut failures = Failures::default();
    for backend in backends() {
        if backend == Backend::Sqlite {
            continue;
        }
        let t = TestDb::new(&backend).await;
        write_events(&t.db, &notes(["before"])).await;
        let open = t.db.begin().await.expect("begin");
        write_events(&open, &notes(["open"])).await;
        write_events(&t.db, &notes(["after"])).await;
        let committed = Instant::now();
        let around = [
            ids_of(&t.db, "before").await[0],
            ids_of(&t.db, "after").await[0],
        ];

        let seen = Seen::default();
        let worker = polling_recording(&t.db, "replica", &seen)
            .build()
            .expect("build")
            .spawn();
        let prompt = poll_until(Duration::from_secs(6), async || seen.has_all(&around)).await;
        let around_after = committed.elapsed();
        let by_then = seen.ids();
        open.commit().await.expect("commit the long transaction");
        let own = ids_of(&t.db, "open").await[0];
        let all = poll_until(Duration::from_secs(10), async || {
            seen.has_all(&around) && seen.has_all(&[own])
        })
        .await;
        let all_after = committed.elapsed();
        worker.shutdown(Duration::from_secs(5)).await.expect("stop");
        failures.check(
            &backend,
            prompt && around_after < Duration::from_secs(2),
            format!(
                "the events {around:?} committed before and after a transaction open for 6 s \
                 were not delivered within 2 s; all arrived {all_after:?} after, once it \
                 committed (delivered while it was open: {by_then:?})",
            ),
        );
        failures.check(
            &backend,
            all,
            format!("the open transaction's event {own} never arrived once committed"),
        );
        if prompt {
            eprintln!(
                "{}: events around an open transaction delivered in {around_after:?}",
                backend.name()
            );
        }
    }
    failures.assert_none();
}

/// Runs `work` in a task of its own; the task returns its output and how long it took.
fn timed<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<(T, Duration)> {
    tokio::spawn(async move {
        let started = Instant::now();
        let out = work.await;
        (out, started.elapsed())
    })
}

/// Issue 10, defect 4 (MySQL / MariaDB), retry by command and pruning: `Queue::retry_dead` and
/// `Queue::prune` neither wait on an open application transaction nor hold back the application's
/// writes. Consumer `replica` holds one event dead and has handled 200 others; an application
/// transaction writes an event and stays open. `retry_dead` and `prune` (retention 0) must each
/// return within 1 s, and an event the application writes meanwhile must be written within 1 s.
///
/// Not on SQLite, where an open write transaction holds every writer back by design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_dead_and_prune_neither_wait_on_nor_hold_back_application_writes() {
    let mut failures = Failures::default();
    for backend in backends() {
        if backend == Backend::Sqlite {
            continue;
        }
        let t = TestDb::new(&backend).await;
        let mut objects = notes(["dead"]);
        objects.extend(notes((0..200).map(|i| format!("o{i}"))));
        write_events(&t.db, &objects).await;
        let dead = ids_of(&t.db, "dead").await[0];
        let worker = Worker::builder(t.db.clone(), "replica")
            .batch_size(100)
            .handler(move |e: Event| async move {
                if e.id == dead {
                    return Err(HandlerError::permanent("this object is broken"));
                }
                Ok(())
            })
            .build()
            .expect("build");
        drain(&worker).await;
        assert_eq!(
            delivery_state(&t.db, "replica", dead).await.map(|s| s.0),
            Some("dead".to_owned()),
            "{}: precondition: the event is dead",
            backend.name()
        );

        let open = t.db.begin().await.expect("begin");
        write_events(&open, &notes(["open"])).await;
        let queue = Queue::new(t.db.clone());
        let (q, p) = (queue.clone(), queue.clone());
        let retried =
            timed(async move { q.retry_dead("replica", None).await.expect("retry_dead") });
        let pruned = timed(async move { p.prune(Duration::ZERO, 50).await.expect("prune") });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let db = t.db.clone();
        let written = timed(async move { write_events(&db, &notes(["app"])).await });
        // The application transaction stays open for up to 3 s, until the three are done.
        poll_until(Duration::from_secs(3), async || {
            retried.is_finished() && pruned.is_finished() && written.is_finished()
        })
        .await;
        open.commit().await.expect("commit the long transaction");
        let (retried, retried_in) = retried.await.expect("retry_dead task");
        let (pruned, pruned_in) = pruned.await.expect("prune task");
        let (_, written_in) = written.await.expect("write task");
        let bound = Duration::from_secs(1);
        failures.check(
            &backend,
            written_in < bound,
            format!(
                "an application INSERT took {written_in:?} beside retry_dead ({retried_in:?}) \
                 and prune ({pruned_in:?})"
            ),
        );
        failures.check(
            &backend,
            retried_in < bound && pruned_in < bound,
            format!(
                "retry_dead took {retried_in:?} and prune {pruned_in:?} while an application \
                 transaction was open (3 s): they waited on it"
            ),
        );
        failures.check(
            &backend,
            (retried, pruned) == (1, 200),
            format!("retry_dead brought back {retried} of 1 event, prune deleted {pruned} of 200"),
        );
        eprintln!(
            "{}: beside an open transaction, retry_dead took {retried_in:?}, prune \
             {pruned_in:?}, an application INSERT {written_in:?}",
            backend.name()
        );
    }
    failures.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Defect 5: a lost lease goes unnoticed
// ---------------------------------------------------------------------------------------------

/// The worker of `a_worker_that_lost_its_lease_stops_and_does_not_ack`, in the child and in the
/// parent: every event takes 300 ms and is recorded in the ledger as `worker`.
fn slow_worker(db: DatabaseConnection, ledger: PathBuf, worker: &'static str) -> Worker {
    Worker::builder(db, "replica")
        .concurrency(1)
        .lease(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(50))
        .listen(false)
        .handler(move |e: Event| {
            let ledger = ledger.clone();
            async move {
                ledger_write(&ledger, worker, 'S', &e);
                tokio::time::sleep(Duration::from_millis(300)).await;
                ledger_write(&ledger, worker, 'E', &e);
                Ok::<_, HandlerError>(())
            }
        })
        .build()
        .expect("build")
}

/// Issue 10, defect 5: "a lost lease goes unnoticed". A worker in a child process holds a batch of
/// 12 slow events (3 objects, 300 ms each, lease 1 s) and is frozen with SIGSTOP for 3 s in its
/// third event; another worker takes the batch over. After SIGCONT the frozen worker must not start
/// further events of that batch, nor acknowledge them: no two workers handle one event at once
/// (among handlings started after the freeze), each object's events are started in order, and
/// every event is handled by the worker holding its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_stops_and_does_not_ack() {
    let mut failures = Failures::default();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        write_events(&t.db, &notes((0..12).map(|i| format!("o{}", i % 3)))).await;
        let object: HashMap<i64, String> = events(&t.db)
            .await
            .into_iter()
            .map(|e| (e.id, e.distributed_id))
            .collect();
        let ids: Vec<i64> = {
            let mut ids: Vec<i64> = object.keys().copied().collect();
            ids.sort_unstable();
            ids
        };
        let dir = tempfile::tempdir().expect("dir");
        let ledger = dir.path().join("ledger");

        let child = ChildWorker::start("slow_child", &t.url, &ledger);
        let third = poll_until(Duration::from_secs(30), async || {
            read_ledger(&ledger)
                .iter()
                .filter(|h| h.worker == "child")
                .count()
                >= 3
        })
        .await;
        assert!(third, "{}: the child never started", backend.name());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let paused_at = now_ms();
        child.signal("STOP");
        let other = slow_worker(t.db.clone(), ledger.clone(), "other").spawn();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let resumed_at = now_ms();
        child.signal("CONT");
        let all_handled = poll_until(Duration::from_secs(20), async || {
            count_handled(&t.db, "replica", &ids).await == ids.len()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(child);
        other.shutdown(Duration::from_secs(5)).await.expect("stop");
        failures.check(
            &backend,
            all_handled,
            "not every event was handled within 20 s".into(),
        );

        let ledger = read_ledger(&ledger);
        let mut problems = Vec::new();
        // The frozen batch was the child's first claim (attempt 1): after SIGCONT it may take
        // events again only under a new lease (a higher attempt), never under the lost one.
        for h in ledger
            .iter()
            .filter(|h| h.worker == "child" && h.start > paused_at && h.attempt == 1)
        {
            problems.push(format!(
                "the frozen worker started event {} {} ms after SIGCONT, its lease long lost",
                h.event,
                h.start - resumed_at
            ));
        }
        let after_pause: Vec<&Handling> = ledger.iter().filter(|h| h.start > paused_at).collect();
        for (i, a) in after_pause.iter().enumerate() {
            for b in &after_pause[i + 1..] {
                let overlap = a.event == b.event
                    && a.worker != b.worker
                    && a.start < b.end.unwrap_or(i64::MAX)
                    && b.start < a.end.unwrap_or(i64::MAX);
                if overlap {
                    problems.push(format!(
                        "event {} handled by two workers at once: {a:?} and {b:?}",
                        a.event
                    ));
                }
            }
        }
        let mut by_start = ledger.clone();
        by_start.sort_by_key(|h| h.start);
        let mut latest: HashMap<&str, &Handling> = HashMap::new();
        for h in &by_start {
            let o = object[&h.event].as_str();
            if let Some(prev) = latest.get(o)
                && prev.event > h.event
            {
                problems.push(format!(
                    "object {o}: event {} started after event {} (out of order): {h:?}",
                    h.event, prev.event
                ));
            }
            if latest.get(o).is_none_or(|prev| prev.event < h.event) {
                latest.insert(o, h);
            }
        }
        for id in &ids {
            let legit = ledger.iter().any(|h| {
                h.event == *id
                    && h.end.is_some()
                    && (h.worker == "other"
                        || h.end.is_some_and(|end| end < paused_at)
                        || h.attempt > 1)
            });
            if all_handled && !legit {
                problems.push(format!(
                    "event {id} is done, but only the worker that had lost its lease handled it: \
                     it was acknowledged by a worker that no longer held it"
                ));
            }
        }
        failures.check(
            &backend,
            problems.is_empty(),
            format!(
                "frozen for 3 s with a 1 s lease, {} problems:\n  {}",
                problems.len(),
                problems.join("\n  ")
            ),
        );
    }
    failures.assert_none();
}

/// The child side of `a_worker_that_lost_its_lease_stops_and_does_not_ack`. Does nothing unless
/// started by that test.
#[tokio::test]
#[ignore = "started in a child process by a_worker_that_lost_its_lease_stops_and_does_not_ack"]
async fn slow_child() {
    let Some((db, ledger)) = child_env().await else {
        return;
    };
    let _handle = slow_worker(db, ledger, "child").spawn();
    tokio::time::sleep(Duration::from_secs(60)).await;
}

// ---------------------------------------------------------------------------------------------
// Defect 6: a batch handler's panic is blamed on the first event
// ---------------------------------------------------------------------------------------------

/// A batch handler that panics whenever `culprit` is in its batch, and handles every other batch.
struct PanicsOn {
    culprit: i64,
}

#[acts_as_distributed::async_trait]
impl Handler for PanicsOn {
    async fn handle(&self, _event: Event) -> Result<(), HandlerError> {
        Err(HandlerError::permanent("a batch handler gets batches"))
    }

    fn handles_batches(&self) -> bool {
        true
    }

    async fn handle_batch(&self, events: Vec<Event>) -> Vec<Result<(), HandlerError>> {
        if events.iter().any(|e| e.id == self.culprit) {
            panic!("event {} breaks every batch it is in", self.culprit);
        }
        vec![Ok(()); events.len()]
    }
}

/// Issue 10, defect 6: "a batch handler's panic or commit failure is blamed on the first event".
/// A batch handler (concurrency 1) panics whenever the third event of the batch is in it. The
/// culprit's attempts must rise until it is dead; the events ahead of it (and behind it, of other
/// objects) are handled, never dead.
///
/// Only the panic: a commit failure reaches the worker as the first event's error (the
/// replicator's `(0, error)`), which the current `handle_batch` result cannot tell apart.
#[tokio::test]
async fn a_batch_handler_panic_is_blamed_on_the_event_that_causes_it() {
    let mut failures = Failures::default();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        write_events(&t.db, &notes((0..5).map(|i| format!("o{i}")))).await;
        let ids = all_ids(&t.db).await;
        let culprit = ids[2];
        let worker = Worker::builder(t.db.clone(), "batches")
            .handler(Arc::new(PanicsOn { culprit }) as Arc<dyn Handler>)
            .concurrency(1)
            .batch_size(100)
            .retry(
                RetryPolicy::default()
                    .base(Duration::from_millis(10))
                    .jitter(0.0)
                    .max_attempts(3),
            )
            .build()
            .expect("build");
        let settled = poll_until(Duration::from_secs(15), async || {
            worker.run_once().await.expect("run_once");
            let mut all = true;
            for id in &ids {
                let state = delivery_state(&t.db, "batches", *id).await;
                let done = if *id == culprit {
                    state.is_some_and(|(s, _)| s == "dead")
                } else {
                    state.is_some_and(|(s, _)| s == "dead") || handled(&t.db, "batches", *id).await
                };
                all &= done;
            }
            all
        })
        .await;
        let mut problems = Vec::new();
        match delivery_state(&t.db, "batches", culprit).await {
            Some((state, 3)) if state == "dead" => {}
            other => problems.push(format!(
                "the culprit {culprit}: {other:?} (expected dead after 3 attempts)"
            )),
        }
        for id in ids.iter().filter(|id| **id != culprit) {
            let state = delivery_state(&t.db, "batches", *id).await;
            if !handled(&t.db, "batches", *id).await {
                problems.push(format!(
                    "event {id} ({} the culprit): not handled, delivery {state:?}",
                    if *id < culprit { "ahead of" } else { "behind" }
                ));
            }
        }
        failures.check(
            &backend,
            settled && problems.is_empty(),
            format!(
                "settled: {settled}; blamed for the culprit's panic:\n  {}",
                problems.join("\n  ")
            ),
        );
    }
    failures.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Defect 7: what pruning and growth leave behind
// ---------------------------------------------------------------------------------------------

/// Issue 10, defect 7 (prune and growth), part (a): an `after` naming a consumer that does not
/// exist stalls silently. A consumer waiting for one that is not registered (retired, or a typo)
/// must be told: the worker's `build` or `run_once` returns an error naming the missing consumer.
#[tokio::test]
async fn after_naming_an_unregistered_consumer_is_reported() {
    let mut failures = Failures::default();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        write_events(&t.db, &notes(["o1", "o2", "o3"])).await;
        let seen = Seen::default();
        let outcome = match polling_recording(&t.db, "source", &seen)
            .after(["retired-indexer"])
            .build()
        {
            Ok(worker) => worker.run_once().await,
            Err(e) => Err(e),
        };
        let message = match &outcome {
            Err(e) => format!("the error does not name the missing consumer: {e}"),
            Ok(n) => format!(
                "run_once returned Ok({n}), having delivered {} of 3 events, and no error said \
                 that `after` names `retired-indexer`, which is not registered",
                seen.ids().len()
            ),
        };
        failures.check(
            &backend,
            matches!(&outcome, Err(e) if e.to_string().contains("retired-indexer")),
            message,
        );
    }
    failures.assert_none();
}

/// Issue 10, defect 7 (prune and growth), part (b): a delivery row whose event is gone blocks its
/// object forever. An errored (`retry`) delivery of object `x` and a given-back (`leased`)
/// delivery of object `y` outlive their event rows (deleted by hand): the objects' later events
/// must still be delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_event_is_gone_does_not_block_its_object() {
    let mut failures = Failures::default();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        write_events(&t.db, &notes(["x", "y", "x", "y"])).await;
        let (x, y) = (ids_of(&t.db, "x").await, ids_of(&t.db, "y").await);
        let started = Seen::default();
        let s = started.clone();
        let (x1, y1) = (x[0], y[0]);
        // Objects in parallel: x's first event fails, y's first one hangs until shutdown.
        let first = Worker::builder(t.db.clone(), "replica")
            .concurrency(2)
            .poll_interval(Duration::from_millis(50))
            .listen(false)
            .retry(
                RetryPolicy::default()
                    .base(Duration::from_millis(50))
                    .jitter(0.0),
            )
            .handler(move |e: Event| {
                let s = s.clone();
                async move {
                    let id = e.id;
                    s.push(e);
                    if id == x1 {
                        return Err(HandlerError::retry("the target is down"));
                    }
                    if id == y1 {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Ok(())
                }
            })
            .build()
            .expect("build")
            .spawn();
        let ready = poll_until(Duration::from_secs(10), async || started.has_all(&[x1, y1])).await;
        assert!(ready, "{}: x1 and y1 started", backend.name());
        tokio::time::sleep(Duration::from_millis(100)).await; // x's group has finished
        first
            .shutdown(Duration::from_millis(200))
            .await
            .expect("stop");
        assert_eq!(
            (
                delivery_state(&t.db, "replica", x1).await.map(|s| s.0),
                delivery_state(&t.db, "replica", y1).await.map(|s| s.0),
            ),
            (Some("retry".to_owned()), Some("waiting".to_owned())),
            "{}: precondition: x1 errored, y1 given back at shutdown",
            backend.name()
        );
        t.db.execute_raw(sql(
            &t.db,
            "DELETE FROM distributes WHERE id IN (?, ?)",
            vec![x1.into(), y1.into()],
        ))
        .await
        .expect("delete the events");

        let seen = Seen::default();
        let next = polling_recording(&t.db, "replica", &seen)
            .build()
            .expect("build");
        let later = [x[1], y[1]];
        let delivered = poll_until(Duration::from_secs(3), async || {
            next.run_once().await.expect("run_once");
            seen.has_all(&later)
        })
        .await;
        failures.check(
            &backend,
            delivered,
            format!(
                "the later events {later:?} of objects whose first event row is gone were not \
                 delivered in 3 s (got {:?}; deliveries: x1 {:?}, x2 {:?}, y1 {:?}, y2 {:?})",
                seen.ids(),
                delivery_state(&t.db, "replica", x1).await,
                delivery_state(&t.db, "replica", x[1]).await,
                delivery_state(&t.db, "replica", y1).await,
                delivery_state(&t.db, "replica", y[1]).await,
            ),
        );
    }
    failures.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Defect 8: a hung connection stalls the whole consumer
// ---------------------------------------------------------------------------------------------

/// Issue 10, defect 8: "a hung connection stalls the whole consumer". A worker reaches
/// PostgreSQL through a proxy that goes silent right after forwarding the claim's lock
/// (`UPDATE distribute_consumers SET claimed_at ..`): the server holds the lock for a client that
/// will never speak again, and new connections through the proxy hang. A second worker of the
/// same consumer on a healthy connection must still handle every event (the server ends the
/// silent transaction after the lease, so no lock outlives it), and the silent worker's
/// `shutdown` must return within its timeout plus a short grace.
///
/// PostgreSQL only: MySQL keeps the lock of a vanished client until its `wait_timeout` (see
/// docs/queue.md), and SQLite has no network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_connection_stalls_neither_the_consumer_nor_shutdown() {
    use common::freeze::FreezeProxy;
    let Some(backend) = backends()
        .into_iter()
        .find(|b| matches!(b, Backend::Postgres(_)))
    else {
        eprintln!("note: skipped: needs TEST_POSTGRES_URL");
        return;
    };
    let t = TestDb::new(&backend).await;
    write_events(&t.db, &notes((0..200).map(|i| format!("o{}", i % 10)))).await;
    let ids = all_ids(&t.db).await;
    let proxy = FreezeProxy::start(
        "127.0.0.1:5432".parse().expect("addr"),
        Some(b"UPDATE distribute_consumers SET claimed_at"),
    )
    .await;
    assert!(
        t.url.contains("127.0.0.1:5432"),
        "the test database is on 127.0.0.1:5432"
    );
    // Unencrypted, so that the proxy sees the statements.
    let through = format!(
        "{}{}sslmode=disable",
        t.url.replace("127.0.0.1:5432", &proxy.addr.to_string()),
        if t.url.contains('?') { '&' } else { '?' }
    );
    let mut options = sea_orm::ConnectOptions::new(through);
    options
        .max_connections(2)
        .connect_timeout(Duration::from_secs(1))
        .acquire_timeout(Duration::from_secs(1))
        .sqlx_logging(false);
    let hung_db = sea_orm::Database::connect(options)
        .await
        .expect("connect through the proxy");
    let lease = Duration::from_secs(2);
    let (seen_hung, seen_healthy) = (Seen::default(), Seen::default());
    let hung = polling_recording(&hung_db, "replica", &seen_hung)
        .lease(lease)
        .build()
        .expect("build")
        .spawn();
    let frozen = poll_until(Duration::from_secs(10), async || proxy.is_frozen()).await;
    assert!(
        frozen,
        "the silent worker's claim reached the server: {:?}",
        hung.health()
    );
    let healthy = polling_recording(&t.db, "replica", &seen_healthy)
        .lease(lease)
        .build()
        .expect("build")
        .spawn();
    let all = poll_until(Duration::from_secs(30), async || seen_healthy.has_all(&ids)).await;
    let asked = Instant::now();
    let stopped = hung.shutdown(Duration::from_secs(1)).await;
    let took = asked.elapsed();
    healthy
        .shutdown(Duration::from_secs(5))
        .await
        .expect("stop");
    assert!(
        all,
        "the healthy worker handled {} of {} events in 30 s while another worker's connection hung",
        seen_healthy.ids().len(),
        ids.len()
    );
    assert!(
        seen_hung.ids().is_empty(),
        "the silent worker handled nothing"
    );
    assert!(
        took < Duration::from_secs(4),
        "shutdown(1 s) of the silent worker took {took:?} ({stopped:?})"
    );
}

// ---------------------------------------------------------------------------------------------
// Order behind a batch whose worker died
// ---------------------------------------------------------------------------------------------

/// Found by the NATS relay's kill test: a worker whose batch holds an object's later event waits
/// for the batch of another worker holding that object's earlier event. When that other worker
/// is killed, its batch is abandoned (its lease runs out, unsettled): the waiting worker must not
/// take that as settled and handle the later event first. Here a child process claims `x`'s
/// first event and three others (batch of 4) and hangs in it; a worker in this process claims the
/// next batch, with `x`'s second event, and waits; the child is killed. Every event must be
/// handled, `x`'s in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_batch_keeps_its_objects_in_order() {
    let mut failures = Failures::default();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        write_events(&t.db, &notes(["x", "a", "b", "c", "d", "x"])).await;
        let x = ids_of(&t.db, "x").await;
        let all = all_ids(&t.db).await;
        let dir = tempfile::tempdir().expect("dir");
        let ledger = dir.path().join("ledger");
        let mut child = ChildWorker::start("hanging_child", &t.url, &ledger);
        let started = poll_until(Duration::from_secs(30), async || {
            read_ledger(&ledger).iter().any(|h| h.event == x[0])
        })
        .await;
        assert!(
            started,
            "{}: the child never started x's first event",
            backend.name()
        );
        let seen = Seen::default();
        let other = polling_recording(&t.db, "replica", &seen)
            .batch_size(4)
            .lease(Duration::from_secs(1))
            .build()
            .expect("build")
            .spawn();
        // The other worker has claimed the second batch and waits behind the child's.
        tokio::time::sleep(Duration::from_millis(300)).await;
        child.kill();
        let done = poll_until(Duration::from_secs(30), async || seen.has_all(&all)).await;
        other.shutdown(Duration::from_secs(5)).await.expect("stop");
        let order = seen.ids();
        let at = |id: i64| order.iter().position(|e| *e == id);
        failures.check(
            &backend,
            done && at(x[0]) < at(x[1]),
            format!(
                "handled {order:?}: every event, x's first ({}) before its second ({})",
                x[0], x[1]
            ),
        );
    }
    failures.assert_none();
}

/// The child side of `an_abandoned_batch_keeps_its_objects_in_order`: claims a batch of 4 and
/// hangs in its first event. Does nothing unless started by that test.
#[tokio::test]
#[ignore = "started in a child process by an_abandoned_batch_keeps_its_objects_in_order"]
async fn hanging_child() {
    let Some((db, ledger)) = child_env().await else {
        return;
    };
    let _handle = Worker::builder(db, "replica")
        .batch_size(4)
        .lease(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(50))
        .listen(false)
        .handler(move |e: Event| {
            let ledger = ledger.clone();
            async move {
                ledger_write(&ledger, "child", 'S', &e);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, HandlerError>(())
            }
        })
        .build()
        .expect("build")
        .spawn();
    tokio::time::sleep(Duration::from_secs(60)).await;
}

// ---------------------------------------------------------------------------------------------
// Bad rows (issue 15's probe)
// ---------------------------------------------------------------------------------------------

/// Issue 15: "a row written with an explicit `seq` that collides with the sequencer's next value
/// makes the sequencer fail on the unique index every poll, forever, and later events wait". A
/// row written by hand with the `seq` the sequencer would give next: the sequencer numbers the
/// other events above it, and every event is handled.
#[tokio::test]
async fn a_row_written_with_the_next_seq_does_not_stop_the_sequencer() {
    let mut failures = Failures::default();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        write_events(&t.db, &notes(["a", "c"])).await;
        let first = all_ids(&t.db).await[0];
        // The seq the sequencer gives the first event on a fresh table: its id.
        t.db.execute_raw(sql(
            &t.db,
            "INSERT INTO distributes (distributed_type, distributed_id, action, changes, error, created_at, format, seq) \
             SELECT distributed_type, 'b', action, changes, error, created_at, format, ? FROM distributes WHERE id = ?",
            vec![first.into(), first.into()],
        ))
        .await
        .expect("a row with an explicit seq");
        let sequenced = Queue::new(t.db.clone()).sequence().await;
        let seen = Seen::default();
        let worker = polling_recording(&t.db, "replica", &seen)
            .build()
            .expect("build");
        let handled = drain(&worker).await;
        failures.check(
            &backend,
            sequenced.is_ok() && handled == 3,
            format!(
                "sequence: {sequenced:?}; handled {handled} of 3 events: {:?}",
                seen.ids()
            ),
        );
    }
    failures.assert_none();
}
