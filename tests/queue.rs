//! The queue: named consumers, competing workers, ordering, retries, dead events, `after`,
//! leases that survive a killed worker, shutdown, wake-up, pruning, late consumers, bad rows.

mod common;

use acts_as_distributed::{
    DeadEvents, Event, HandlerError, Queue, RetryPolicy, StartFrom, Worker, WorkerHandle,
};
use common::queue::*;
use common::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writes `n` events straight into `distributes`, spread over `objects` objects of type `Note`
/// (event i belongs to object `o{i % objects}`). Returns their ids in order.
async fn seed<C: ConnectionTrait>(db: &C, n: usize, objects: usize) -> Vec<i64> {
    let rows: Vec<(&str, String, &str)> = (0..n)
        .map(|i| {
            let action = if i < objects { "create" } else { "update" };
            ("Note", format!("o{}", i % objects), action)
        })
        .collect();
    write_events(db, &rows).await;
    all_ids(db).await
}

#[tokio::test]
async fn fan_out_gives_every_consumer_every_event_once() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 300, 20).await;
        let (a, b) = (Seen::default(), Seen::default());
        let wa = recording(&t.db, "indexer", &a)
            .batch_size(50)
            .build()
            .expect("build");
        let wb = recording(&t.db, "mailer", &b)
            .batch_size(64)
            .build()
            .expect("build");
        assert_eq!(drain(&wa).await, 300, "{}", backend.name());
        assert_eq!(drain(&wb).await, 300);
        for seen in [&a, &b] {
            let mut got = seen.ids();
            got.sort();
            assert_eq!(got, ids, "{}: every event exactly once", backend.name());
        }
        assert_eq!(drain(&wa).await, 0, "nothing twice");
    }
}

/// 4 workers of one consumer over 10,000 events across 200 objects: every event handled once,
/// never by two workers at once, and each object's events in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn competing_workers_share_the_work_in_order() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 10_000, 200).await;
        let in_flight = Arc::new(Mutex::new(HashSet::new()));
        let order: Arc<Mutex<HashMap<String, Vec<i64>>>> = Arc::default();
        let overlaps = Arc::new(Mutex::new(0usize));
        let handled = Seen::default();
        let mut handles: Vec<WorkerHandle> = Vec::new();
        for _ in 0..4 {
            let (in_flight, order, overlaps, handled) = (
                in_flight.clone(),
                order.clone(),
                overlaps.clone(),
                handled.clone(),
            );
            let worker = Worker::builder(t.db.clone(), "replica")
                .batch_size(100)
                .concurrency(4)
                .poll_interval(Duration::from_millis(20))
                .handler(move |e: Event| {
                    let (in_flight, order, overlaps, handled) = (
                        in_flight.clone(),
                        order.clone(),
                        overlaps.clone(),
                        handled.clone(),
                    );
                    async move {
                        if !in_flight.lock().expect("set").insert(e.id) {
                            *overlaps.lock().expect("n") += 1;
                        }
                        order
                            .lock()
                            .expect("order")
                            .entry(e.distributed_id.clone())
                            .or_default()
                            .push(e.id);
                        tokio::task::yield_now().await;
                        in_flight.lock().expect("set").remove(&e.id);
                        handled.push(e);
                        Ok::<_, HandlerError>(())
                    }
                })
                .build()
                .expect("build");
            handles.push(worker.spawn());
        }
        wait_until("10,000 events", Duration::from_secs(240), || {
            handled.len() >= 10_000
        })
        .await;
        for h in handles {
            h.shutdown(Duration::from_secs(5)).await.expect("shutdown");
        }
        let mut got = handled.ids();
        got.sort();
        assert_eq!(got.len(), 10_000, "{}", backend.name());
        got.dedup();
        assert_eq!(
            got,
            ids,
            "{}: each event handled exactly once",
            backend.name()
        );
        assert_eq!(
            *overlaps.lock().expect("n"),
            0,
            "no event held by two workers at once"
        );
        for (object, seq) in order.lock().expect("order").iter() {
            assert!(
                seq.windows(2).all(|w| w[0] < w[1]),
                "{}: {object} out of order",
                backend.name()
            );
        }
        eprintln!(
            "{}: 4 workers handled 10,000 events of 200 objects in order",
            backend.name()
        );
    }
}

/// Transaction A writes its event first (lower id) but commits after B's event was consumed:
/// A's event is still delivered.
#[tokio::test]
async fn an_event_committed_late_is_never_skipped() {
    for backend in backends() {
        if backend == Backend::Sqlite {
            continue; // One writer at a time: SQLite commits events in id order.
        }
        let t = TestDb::new(&backend).await;
        let seen = Seen::default();
        let worker = recording(&t.db, "replica", &seen).build().expect("build");
        let a = t.db.begin().await.expect("begin a");
        seed(&a, 1, 1).await;
        let b = t.db.begin().await.expect("begin b");
        let mut insert = insert_events(&[]);
        insert.values_panic([
            Expr::val("Note"),
            Expr::val("b"),
            Expr::val("create"),
            Expr::val(serde_json::json!({})),
            Expr::val(chrono::Utc::now()),
        ]);
        b.execute(&insert).await.expect("insert b");
        b.commit().await.expect("commit b");
        assert_eq!(drain(&worker).await, 1, "{}: B's event", backend.name());
        let b_id = seen.ids()[0];
        a.commit().await.expect("commit a");
        assert_eq!(
            drain(&worker).await,
            1,
            "{}: A's event, committed late",
            backend.name()
        );
        let a_id = seen.ids()[1];
        assert!(a_id < b_id, "A's id is the lower one");
    }
}

#[tokio::test]
async fn failures_are_retried_with_growing_delays_then_dead() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 2, 2).await;
        let attempts: Arc<Mutex<Vec<(i64, Instant, u32)>>> = Arc::default();
        let log = attempts.clone();
        let worker = Worker::builder(t.db.clone(), "flaky")
            .poll_interval(Duration::from_millis(10))
            .retry(
                RetryPolicy::default()
                    .base(Duration::from_millis(100))
                    .cap(Duration::from_millis(300))
                    .max_attempts(4)
                    .jitter(0.5),
            )
            .handler(move |e: Event| {
                let log = log.clone();
                async move {
                    log.lock()
                        .expect("log")
                        .push((e.id, Instant::now(), e.attempt));
                    if e.changes["n"] == 0 {
                        Err(HandlerError::retry("the mail server is down"))
                    } else {
                        Err(HandlerError::permanent("no such address"))
                    }
                }
            })
            .build()
            .expect("build")
            .spawn();
        wait_until("4 attempts", Duration::from_secs(10), || {
            attempts
                .lock()
                .expect("log")
                .iter()
                .filter(|a| a.0 == ids[0])
                .count()
                >= 4
        })
        .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        worker
            .shutdown(Duration::from_secs(2))
            .await
            .expect("shutdown");

        let log = attempts.lock().expect("log").clone();
        let retried: Vec<&(i64, Instant, u32)> = log.iter().filter(|a| a.0 == ids[0]).collect();
        assert_eq!(
            retried.len(),
            4,
            "{}: exactly max_attempts attempts",
            backend.name()
        );
        assert_eq!(
            retried.iter().map(|a| a.2).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let gaps: Vec<Duration> = retried.windows(2).map(|w| w[1].1 - w[0].1).collect();
        // Delays 100, 200, 300 (capped) ms, each less up to half by jitter.
        for (gap, full) in gaps.iter().zip([100u64, 200, 300]) {
            let full = Duration::from_millis(full);
            assert!(
                *gap >= full / 2,
                "{}: gap {gap:?} under {full:?} less jitter",
                backend.name()
            );
            assert!(
                *gap <= full + Duration::from_millis(350),
                "{}: gap {gap:?} over {full:?}",
                backend.name()
            );
        }
        assert_eq!(
            delivery_state(&t.db, "flaky", ids[0]).await,
            Some(("dead".into(), 4))
        );
        let permanent: Vec<_> = log.iter().filter(|a| a.0 == ids[1]).collect();
        assert_eq!(permanent.len(), 1, "a permanent error is not retried");
        assert_eq!(
            delivery_state(&t.db, "flaky", ids[1]).await,
            Some(("dead".into(), 1))
        );
        let rows = events(&t.db).await;
        assert!(
            rows.iter().all(|e| e.error),
            "the original's error flag marks dead events"
        );

        // Retried by command: delivered again, and this time it succeeds.
        let queue = Queue::new(t.db.clone());
        assert_eq!(
            queue
                .retry_dead("flaky", Some(ids[0]))
                .await
                .expect("retry"),
            1
        );
        let seen = Seen::default();
        let fixed = recording(&t.db, "flaky", &seen).build().expect("build");
        drain(&fixed).await;
        assert_eq!(seen.ids(), [ids[0]], "{}", backend.name());
        assert!(handled(&t.db, "flaky", ids[0]).await);
        assert!(!events(&t.db).await[0].error, "the flag clears");
    }
}

/// An errored event of X holds back X's later events, never Y's; a dead one keeps holding X by
/// default, and does not when the consumer moves past dead events.
#[tokio::test]
async fn failures_hold_back_only_their_own_object() {
    for backend in backends() {
        for policy in [DeadEvents::Hold, DeadEvents::Skip] {
            let t = TestDb::new(&backend).await;
            // o0: ids[0], ids[2], ids[4]; o1: ids[1], ids[3], ids[5]
            let ids = seed(&t.db, 6, 2).await;
            let seen = Seen::default();
            let fail_first = Arc::new(Mutex::new(true));
            let (s, f) = (seen.clone(), fail_first.clone());
            let x = ids[0];
            let worker = Worker::builder(t.db.clone(), "replica")
                .dead_events(policy)
                .retry(
                    RetryPolicy::default()
                        // Long enough that the first drain never reaches the retry.
                        .base(Duration::from_secs(1))
                        .max_attempts(2)
                        .jitter(0.0),
                )
                .handler(move |e: Event| {
                    let (s, f) = (s.clone(), f.clone());
                    async move {
                        if e.id == x && *f.lock().expect("flag") {
                            return Err(HandlerError::retry("not yet"));
                        }
                        s.push(e);
                        Ok::<_, HandlerError>(())
                    }
                })
                .build()
                .expect("build");
            drain(&worker).await;
            assert_eq!(
                seen.ids(),
                [ids[1], ids[3], ids[5]],
                "{}: Y flows, X waits",
                backend.name()
            );
            tokio::time::sleep(Duration::from_millis(1_100)).await;
            drain(&worker).await; // second attempt fails too: dead
            assert_eq!(
                delivery_state(&t.db, "replica", x).await.map(|s| s.0),
                Some("dead".into())
            );
            let status = Queue::new(t.db.clone()).status().await.expect("status");
            match policy {
                DeadEvents::Hold => {
                    assert_eq!(
                        seen.len(),
                        3,
                        "{}: X still held behind its dead event",
                        backend.name()
                    );
                    assert_eq!(status[0].blocked_objects.len(), 1);
                    assert_eq!(status[0].blocked_objects[0].distributed_id, "o0");
                    assert_eq!(
                        status[0].blocked_objects[0].last_error.as_deref(),
                        Some("not yet")
                    );
                    // Retried and fixed, the object flows again, in order.
                    *fail_first.lock().expect("flag") = false;
                    Queue::new(t.db.clone())
                        .retry_dead("replica", None)
                        .await
                        .expect("retry");
                    drain(&worker).await;
                    assert_eq!(
                        seen.ids()[3..],
                        [ids[0], ids[2], ids[4]],
                        "{}",
                        backend.name()
                    );
                }
                DeadEvents::Skip => {
                    assert_eq!(
                        seen.ids()[3..],
                        [ids[2], ids[4]],
                        "{}: moved past the dead one",
                        backend.name()
                    );
                    assert!(status[0].blocked_objects.is_empty());
                }
            }
        }
    }
}

#[tokio::test]
async fn after_waits_for_the_other_consumer() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 40, 5).await;
        let (a, b) = (Seen::default(), Seen::default());
        let wa = recording(&t.db, "events", &a)
            .batch_size(15)
            .build()
            .expect("build");
        let wb = recording(&t.db, "source", &b)
            .after(["events"])
            .build()
            .expect("build");
        wa.run_once().await.expect("register events"); // handles the first 15
        assert_eq!(a.len(), 15);
        drain(&wb).await;
        let mut got_b = b.ids();
        got_b.sort();
        let mut got_a = a.ids();
        got_a.sort();
        assert_eq!(
            got_b,
            got_a,
            "{}: source sees only what events handled",
            backend.name()
        );
        drain(&wa).await;
        drain(&wb).await;
        let mut got_b = b.ids();
        got_b.sort();
        assert_eq!(got_b, ids, "{}", backend.name());
    }
}

#[tokio::test]
async fn a_consumer_added_later_starts_where_it_is_told() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        seed(&t.db, 1_000, 50).await;
        let (oldest, now) = (Seen::default(), Seen::default());
        let w_old = recording(&t.db, "backfill", &oldest)
            .start_from(StartFrom::Oldest)
            .batch_size(500)
            .build()
            .expect("build");
        let w_now = recording(&t.db, "live", &now)
            .start_from(StartFrom::Now)
            .build()
            .expect("build");
        assert_eq!(drain(&w_old).await, 1_000, "{}", backend.name());
        assert_eq!(
            drain(&w_now).await,
            0,
            "{}: nothing from before",
            backend.name()
        );
        new_user("ada").insert(&t.db).await.expect("insert");
        assert_eq!(drain(&w_now).await, 1);
        assert_eq!(now.0.lock().expect("seen")[0].distributed_type, "User");
    }
}

#[tokio::test]
async fn prune_removes_only_what_every_consumer_has_passed() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 10, 10).await;
        let queue = Queue::new(t.db.clone());
        assert_eq!(
            queue.prune(Duration::ZERO, 3).await.expect("prune"),
            0,
            "no consumer: nothing"
        );
        let all = recording(&t.db, "all", &Seen::default())
            .build()
            .expect("build");
        drain(&all).await;
        let (bad, dead) = (ids[3], ids[4]);
        let picky = Worker::builder(t.db.clone(), "picky")
            .retry(RetryPolicy::default().base(Duration::from_secs(3600)))
            .handler(move |e: Event| async move {
                match e.id {
                    id if id == bad => Err(HandlerError::retry("later")),
                    id if id == dead => Err(HandlerError::permanent("never")),
                    _ => Ok(()),
                }
            })
            .build()
            .expect("build");
        drain(&picky).await;
        assert_eq!(
            queue
                .prune(Duration::from_secs(3600), 3)
                .await
                .expect("prune"),
            0,
            "retention"
        );
        let pruned = queue.prune(Duration::ZERO, 3).await.expect("prune");
        let left: Vec<i64> = all_ids(&t.db).await;
        // Pruned: events both consumers passed. Kept: the errored one, the dead one, and what
        // lies above the errored one in "picky"'s position.
        assert!(
            left.contains(&bad) && left.contains(&dead),
            "{}: {left:?}",
            backend.name()
        );
        assert_eq!(pruned as usize + left.len(), 10);
        assert_eq!(
            left.iter().min(),
            Some(&bad),
            "{}: everything below the errored event is gone",
            backend.name()
        );
        // New events still flow after pruning.
        new_user("ada").insert(&t.db).await.expect("insert");
        assert_eq!(drain(&all).await, 1);
    }
}

/// Unknown actions and `changes` that are not JSON objects: the event is dead with a clear error,
/// the rest flows.
#[tokio::test]
async fn malformed_rows_are_dead_with_a_clear_error() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        seed(&t.db, 3, 3).await;
        let b = t.db.get_database_backend();
        let bad_action = match b {
            DbBackend::Postgres => {
                "UPDATE distributes SET action = 'explode' WHERE distributed_id = 'o1'"
            }
            _ => "UPDATE distributes SET action = 'explode' WHERE distributed_id = 'o1'",
        };
        t.db.execute_unprepared(bad_action)
            .await
            .expect("break a row");
        if backend == Backend::Sqlite {
            t.db.execute_unprepared(
                "UPDATE distributes SET changes = 'not json' WHERE distributed_id = 'o2'",
            )
            .await
            .expect("break a row");
        } else {
            t.db.execute_unprepared(
                "UPDATE distributes SET changes = '[1, 2]' WHERE distributed_id = 'o2'",
            )
            .await
            .expect("break a row");
        }
        let seen = Seen::default();
        let worker = recording(&t.db, "replica", &seen).build().expect("build");
        assert_eq!(drain(&worker).await, 3, "{}", backend.name());
        assert_eq!(seen.len(), 1, "only the good row reaches the handler");
        let status = Queue::new(t.db.clone()).status().await.expect("status");
        let note = &status[0].types[0];
        assert_eq!((note.dead, note.processed), (2, 1), "{}", backend.name());
        let errors: Vec<String> = status[0]
            .blocked_objects
            .iter()
            .filter_map(|o| o.last_error.clone())
            .collect();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("unknown action `explode`")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("changes")), "{errors:?}");
    }
}

#[tokio::test]
async fn a_panicking_handler_is_retried_and_the_worker_lives_on() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 2, 2).await;
        let seen = Seen::default();
        let s = seen.clone();
        let boom = ids[0];
        let worker = Worker::builder(t.db.clone(), "replica")
            .retry(
                RetryPolicy::default()
                    .base(Duration::from_millis(10))
                    .jitter(0.0),
            )
            .handler(move |e: Event| {
                let s = s.clone();
                async move {
                    if e.id == boom && e.attempt == 1 {
                        panic!("handler bug");
                    }
                    s.push(e);
                    Ok::<_, HandlerError>(())
                }
            })
            .build()
            .expect("build");
        drain(&worker).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        drain(&worker).await;
        let mut got = seen.ids();
        got.sort();
        assert_eq!(got, ids, "{}", backend.name());
        assert!(handled(&t.db, "replica", boom).await);
        let attempts: Vec<u32> = seen
            .0
            .lock()
            .expect("seen")
            .iter()
            .filter(|e| e.id == boom)
            .map(|e| e.attempt)
            .collect();
        assert_eq!(attempts, [2], "the panic counted as attempt 1");
    }
}

/// Shutdown stops claiming; in-flight events finish within the timeout, or are given back for
/// another worker to take at once. Never left claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_or_releases_in_flight_events() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 2, 2).await;
        let started = Seen::default();
        let s = started.clone();
        let slow = Worker::builder(t.db.clone(), "replica")
            .concurrency(2)
            .lease(Duration::from_secs(3600))
            .handler(move |e: Event| {
                let s = s.clone();
                async move {
                    let slow = e.changes["n"] == 1;
                    s.push(e);
                    tokio::time::sleep(Duration::from_millis(if slow { 60_000 } else { 10 })).await;
                    Ok::<_, HandlerError>(())
                }
            })
            .build()
            .expect("build")
            .spawn();
        wait_until("both started", Duration::from_secs(10), || {
            started.len() == 2
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let begun = Instant::now();
        slow.shutdown(Duration::from_millis(300))
            .await
            .expect("shutdown");
        assert!(
            begun.elapsed() < Duration::from_secs(5),
            "returned soon after the timeout"
        );
        assert!(
            handled(&t.db, "replica", ids[0]).await,
            "{}: the quick one finished",
            backend.name()
        );
        // The slow one was given back: another worker takes it at once despite the 1 h lease.
        let seen = Seen::default();
        let next = recording(&t.db, "replica", &seen).build().expect("build");
        assert_eq!(drain(&next).await, 1, "{}", backend.name());
        assert_eq!(seen.ids(), [ids[1]]);
        assert_eq!(
            seen.0.lock().expect("seen")[0].attempt,
            1,
            "a released event is not a failed attempt"
        );
    }
}

/// PostgreSQL: with a 30 s poll interval, NOTIFY wakes the worker at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_a_postgres_worker_before_the_poll_interval() {
    for backend in backends() {
        if !matches!(backend, Backend::Postgres(_)) {
            continue;
        }
        let t = TestDb::new(&backend).await;
        let seen = Seen::default();
        let handle = recording(&t.db, "replica", &seen)
            .poll_interval(Duration::from_secs(30))
            .listen(true)
            .build()
            .expect("build")
            .spawn();
        tokio::time::sleep(Duration::from_millis(500)).await; // registered, idle, listening
        let written = Instant::now();
        new_user("ada").insert(&t.db).await.expect("insert");
        wait_until("the event", Duration::from_secs(10), || seen.len() == 1).await;
        let latency = written.elapsed();
        handle
            .shutdown(Duration::from_secs(2))
            .await
            .expect("shutdown");
        assert!(
            latency < Duration::from_secs(2),
            "picked up after {latency:?}"
        );
        eprintln!("postgres: NOTIFY pickup in {latency:?}");
    }
}

#[tokio::test]
async fn status_counts_per_consumer_and_type() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 5, 5).await;
        new_user("ada").insert(&t.db).await.expect("insert");
        let failing = ids[0];
        let worker = Worker::builder(t.db.clone(), "replica")
            .types(["Note"])
            .batch_size(3)
            .retry(RetryPolicy::default().base(Duration::from_secs(3600)))
            .handler(move |e: Event| async move {
                if e.id == failing {
                    Err(HandlerError::retry("down"))
                } else {
                    Ok(())
                }
            })
            .build()
            .expect("build");
        worker.run_once().await.expect("one batch");
        let status = Queue::new(t.db.clone()).status().await.expect("status");
        assert_eq!(status.len(), 1);
        let s = &status[0];
        assert_eq!(s.consumer, "replica");
        assert_eq!(
            s.types.len(),
            1,
            "{}: only the consumer's types",
            backend.name()
        );
        let note = &s.types[0];
        assert_eq!(
            (note.pending, note.errored, note.dead, note.processed),
            (2, 1, 0, 2),
            "{}",
            backend.name()
        );
        assert!(note.oldest_pending.is_some());
    }
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error() {
    let t = TestDb::new(&Backend::Sqlite).await;
    let no_handler = Worker::builder(t.db.clone(), "replica").build();
    assert!(matches!(&no_handler, Err(e) if e.to_string().contains("has no handler")));
    let empty = Worker::builder(t.db.clone(), " ")
        .handler(|_e: Event| async { Ok::<_, HandlerError>(()) })
        .build();
    assert!(matches!(&empty, Err(e) if e.to_string().contains("1 to 255 characters")));
    let zero = Worker::builder(t.db.clone(), "r")
        .batch_size(0)
        .handler(|_e: Event| async { Ok::<_, HandlerError>(()) })
        .build();
    assert!(zero.is_err());
    let selfish = Worker::builder(t.db.clone(), "r")
        .after(["r"])
        .handler(|_e: Event| async { Ok::<_, HandlerError>(()) })
        .build();
    assert!(matches!(&selfish, Err(e) if e.to_string().contains("cannot wait for itself")));
    // Without the queue migration: a clear hint.
    let bare = TestDb::empty(&Backend::Sqlite).await;
    let w = Worker::builder(bare.db.clone(), "r")
        .handler(|_e: Event| async { Ok::<_, HandlerError>(()) })
        .build()
        .expect("build");
    let err = w.run_once().await.expect_err("no queue tables");
    assert!(err.to_string().contains("run the migrations"), "{err}");
}

/// The child side of `a_killed_worker_loses_nothing`: a worker whose handler never finishes.
/// Does nothing unless started by that test.
#[tokio::test]
#[ignore = "started by a_killed_worker_loses_nothing in a child process"]
async fn crash_child() {
    let Some((db, marker)) = child_env().await else {
        return;
    };
    let _handle = Worker::builder(db, "replica")
        .lease(Duration::from_secs(2))
        .handler(move |e: Event| {
            let marker = marker.clone();
            async move {
                std::fs::write(&marker, e.id.to_string()).expect("marker");
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, HandlerError>(())
            }
        })
        .build()
        .expect("build")
        .spawn();
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// A worker in a child process is killed with SIGKILL in the middle of an event: once its lease
/// expires, another worker takes every event it held. Nothing is lost.
#[tokio::test]
async fn a_killed_worker_loses_nothing() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 3, 3).await;
        let dir = tempfile::tempdir().expect("dir");
        let marker = dir.path().join("in-flight");
        let mut child = ChildWorker::start("crash_child", &t.url, &marker);
        assert!(
            poll_until(Duration::from_secs(60), async || marker.exists()).await,
            "the child never started an event"
        );
        let in_flight: i64 = std::fs::read_to_string(&marker)
            .expect("marker")
            .parse()
            .expect("id");
        child.kill();
        let killed = Instant::now();

        let seen = Seen::default();
        let worker = recording(&t.db, "replica", &seen).build().expect("build");
        while seen.len() < 3 {
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "{}: events lost",
                backend.name()
            );
            drain(&worker).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut got = seen.ids();
        got.sort();
        assert_eq!(got, ids, "{}: every event, once", backend.name());
        let retaken = seen
            .0
            .lock()
            .expect("seen")
            .iter()
            .find(|e| e.id == in_flight)
            .map(|e| e.attempt);
        assert_eq!(
            retaken,
            Some(2),
            "{}: the killed attempt counted",
            backend.name()
        );
        assert!(
            killed.elapsed() >= Duration::from_millis(1_000),
            "taken only after the lease expired"
        );
        eprintln!(
            "{}: 1 worker killed mid-event, 3 of 3 events handled after its lease expired",
            backend.name()
        );
    }
}

async fn max_seq(db: &DatabaseConnection) -> i64 {
    Queue::new(db.clone()).sequence().await.expect("sequence");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT MAX(seq) FROM distributes",
        ))
        .await
        .expect("max seq")
        .expect("a row");
    row.try_get_by_index::<Option<i64>>(0)
        .expect("seq")
        .unwrap_or(0)
}

/// A dead event holding its object back does not pin the consumer's position: the object's later
/// events wait as parked deliveries, and the position (so claims and pruning) moves on.
#[tokio::test]
async fn a_held_object_does_not_pin_the_position() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 4, 2).await; // o0: ids[0], ids[2]; o1: ids[1], ids[3]
        let bad = ids[0];
        let worker = Worker::builder(t.db.clone(), "replica")
            .handler(move |e: Event| async move {
                if e.id == bad {
                    Err(HandlerError::permanent("broken"))
                } else {
                    Ok(())
                }
            })
            .build()
            .expect("build");
        drain(&worker).await;
        seed(&t.db, 6, 2).await; // more events of o0 and o1
        drain(&worker).await;
        assert_eq!(
            position(&t.db, "replica").await.expect("a consumer"),
            max_seq(&t.db).await,
            "{}",
            backend.name()
        );
        let status = Queue::new(t.db.clone()).status().await.expect("status");
        let note = &status[0].types[0];
        // o0's 4 later events wait behind the dead one; o1's 5 events are done.
        assert_eq!(
            (note.dead, note.pending, note.processed),
            (1, 4, 5),
            "{}",
            backend.name()
        );
    }
}

/// A consumer whose filter matches none of the new events still moves its position over them.
#[tokio::test]
async fn a_filtered_consumer_keeps_its_position_up() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let seen = Seen::default();
        let worker = recording(&t.db, "users-only", &seen)
            .types(["User"])
            .build()
            .expect("build");
        drain(&worker).await;
        seed(&t.db, 50, 5).await;
        drain(&worker).await;
        assert_eq!(seen.len(), 0);
        assert_eq!(
            position(&t.db, "users-only").await.expect("a consumer"),
            max_seq(&t.db).await,
            "{}",
            backend.name()
        );
    }
}

/// A worker whose due delivery is held back behind a failing event of its object sleeps its poll
/// interval instead of claiming in a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_delivery_does_not_make_the_worker_spin() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 2, 1).await; // one object: the first fails, the second is released
        let claims = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = claims.clone();
        let mut db = t.db.clone();
        db.set_metric_callback(move |info| {
            if info
                .statement
                .sql
                .starts_with("UPDATE distribute_consumers SET claimed_at")
            {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let first = ids[0];
        let handle = Worker::builder(db, "replica")
            .poll_interval(Duration::from_millis(300))
            .retry(RetryPolicy::default().base(Duration::from_secs(3600)))
            .handler(move |e: Event| async move {
                if e.id == first {
                    Err(HandlerError::retry("later"))
                } else {
                    Ok(())
                }
            })
            .build()
            .expect("build")
            .spawn();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let before = claims.load(std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let during = claims.load(std::sync::atomic::Ordering::Relaxed) - before;
        handle
            .shutdown(Duration::from_secs(2))
            .await
            .expect("shutdown");
        assert!(
            during <= 7,
            "{}: {during} claims in 1.5 s with a 300 ms poll interval",
            backend.name()
        );
    }
}

/// An idle `after` consumer notices when the other consumer catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_after_consumer_wakes_when_the_other_catches_up() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 10, 3).await;
        Queue::new(t.db.clone())
            .register_consumer("events", StartFrom::Oldest)
            .await
            .expect("register");
        let seen = Seen::default();
        let b = recording(&t.db, "source", &seen)
            .after(["events"])
            .poll_interval(Duration::from_millis(100))
            .listen(false)
            .build()
            .expect("build")
            .spawn();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(seen.len(), 0, "nothing before `events` handled it");
        let a = recording(&t.db, "events", &Seen::default())
            .build()
            .expect("build");
        drain(&a).await;
        wait_until("source to catch up", Duration::from_secs(10), || {
            seen.len() == 10
        })
        .await;
        b.shutdown(Duration::from_secs(2)).await.expect("shutdown");
        let mut got = seen.ids();
        got.sort();
        assert_eq!(got, ids, "{}", backend.name());
    }
}

/// A handler that takes whole batches (as the replicator does): fails event `fail` on its first
/// attempt and records every batch it was handed.
struct BatchTaker {
    fail: i64,
    batches: Mutex<Vec<Vec<i64>>>,
    done: Mutex<Vec<i64>>,
}

#[acts_as_distributed::async_trait]
impl acts_as_distributed::Handler for BatchTaker {
    async fn handle(&self, _event: Event) -> Result<(), HandlerError> {
        Err(HandlerError::permanent(
            "a batch handler is called with batches",
        ))
    }

    fn handles_batches(&self) -> bool {
        true
    }

    async fn handle_batch(&self, events: Vec<Event>) -> Vec<Result<(), HandlerError>> {
        self.batches
            .lock()
            .expect("batches")
            .push(events.iter().map(|e| e.id).collect());
        let mut results = Vec::new();
        for e in events {
            if e.id == self.fail && e.attempt == 1 {
                results.push(Err(HandlerError::retry("first attempt fails")));
                break;
            }
            self.done.lock().expect("done").push(e.id);
            results.push(Ok(()));
        }
        results
    }
}

#[tokio::test]
async fn a_batch_handler_gets_whole_batches_in_order_and_a_failure_holds_only_the_rest() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 30, 30).await;
        let taker = Arc::new(BatchTaker {
            fail: ids[9],
            batches: Mutex::default(),
            done: Mutex::default(),
        });
        let worker = Worker::builder(t.db.clone(), "batches")
            .handler(taker.clone() as Arc<dyn acts_as_distributed::Handler>)
            .batch_size(100)
            .retry(
                RetryPolicy::default()
                    .base(Duration::from_millis(10))
                    .jitter(0.0),
            )
            .build()
            .expect("worker");
        let started = Instant::now();
        while taker.done.lock().expect("done").len() < 30 {
            worker.run_once().await.expect("run_once");
            assert!(started.elapsed() < Duration::from_secs(20), "drains");
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        let batches = taker.batches.lock().expect("batches").clone();
        assert_eq!(
            batches[0],
            ids,
            "{}: the first batch is every event, in order",
            backend.name()
        );
        let mut done = taker.done.lock().expect("done").clone();
        assert_eq!(
            &done[..9],
            &ids[..9],
            "the events before the failure are done first"
        );
        done.sort_unstable();
        assert_eq!(done, ids, "every event done exactly once");
        let status = Queue::new(t.db.clone()).status().await.expect("status");
        let types = &status
            .iter()
            .find(|c| c.consumer == "batches")
            .expect("consumer")
            .types;
        assert!(
            types
                .iter()
                .all(|s| s.pending == 0 && s.errored == 0 && s.dead == 0),
            "{types:?}"
        );
        println!(
            "{}: batches handed {:?}",
            backend.name(),
            batches.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_keeps_its_event_past_the_lease_by_renewing_it() {
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let ids = seed(&t.db, 1, 1).await;
        let calls = Arc::new(Mutex::new(Vec::<(&'static str, i64, Instant)>::new()));
        let worker = |name: &'static str, work: Duration| {
            let calls = calls.clone();
            Worker::builder(t.db.clone(), "slow")
                .lease(Duration::from_millis(600))
                .poll_interval(Duration::from_millis(20))
                .listen(false)
                .handler(move |e: Event| {
                    let calls = calls.clone();
                    async move {
                        calls
                            .lock()
                            .expect("calls")
                            .push((name, e.id, Instant::now()));
                        tokio::time::sleep(work).await;
                        Ok::<_, HandlerError>(())
                    }
                })
                .build()
                .expect("worker")
                .spawn()
        };
        let slow = worker("slow", Duration::from_millis(2_000));
        wait_until("the slow worker to start", Duration::from_secs(10), || {
            !calls.lock().expect("calls").is_empty()
        })
        .await;
        // Over three leases long: without renewal the other worker would take the event meanwhile.
        let other = worker("other", Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(2_400)).await;
        slow.shutdown(Duration::from_secs(5)).await.expect("stop");
        other.shutdown(Duration::from_secs(5)).await.expect("stop");
        let calls = calls.lock().expect("calls").clone();
        assert_eq!(
            calls.len(),
            1,
            "{}: handled once: {calls:?}",
            backend.name()
        );
        assert_eq!((calls[0].0, calls[0].1), ("slow", ids[0]));
        let status = Queue::new(t.db.clone()).status().await.expect("status");
        let types = &status
            .iter()
            .find(|c| c.consumer == "slow")
            .expect("consumer")
            .types;
        assert!(
            types.iter().all(|s| s.pending == 0 && s.errored == 0),
            "{types:?}"
        );
    }
}
