//! The NATS relay against a real JetStream server (`TEST_NATS_URL`): exact counts in the
//! stream, a relay killed with SIGKILL and restarted, a NATS outage through a proxy the test
//! cuts, per-object order, and the stream helper's checks.

mod common;

use acts_as_distributed::Queue;
use acts_as_distributed_nats::async_nats::jetstream::stream::StorageType;
use acts_as_distributed_nats::{Error, Relay, StreamSpec, Subjects};
use common::nats::{Proxy, TestStream, nats_url, unique};
use common::queue::{ChildWorker, child_env, poll_every, write_events};
use common::{Backend, TestDb, backends};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The relay's tables beside the queue's.
async fn migrate(db: &DatabaseConnection) {
    acts_as_distributed_nats::Migrator::up(db, None)
        .await
        .expect("the relay's migration");
}

/// `n` update events over `objects` objects of type `Note`, written straight into
/// `distributes`; returns their ids.
async fn seed(db: &DatabaseConnection, n: usize, objects: usize) -> Vec<i64> {
    let events: Vec<(&str, String, &str)> = (0..n)
        .map(|i| ("Note", format!("n{}", i % objects), "update"))
        .collect();
    write_events(db, &events).await;
    common::queue::all_ids(db).await
}

/// Relayed records in `distribute_nats_relayed`.
async fn records(db: &DatabaseConnection) -> i64 {
    db.query_one_raw(common::queue::sql(
        db,
        "SELECT COUNT(*) FROM distribute_nats_relayed",
        vec![],
    ))
    .await
    .expect("count records")
    .expect("a row")
    .try_get_by_index::<i64>(0)
    .expect("count")
}

/// Waits (up to `limit`) until the stream holds `n` messages.
async fn wait_count(s: &TestStream, n: u64, limit: Duration) -> bool {
    poll_every(Duration::from_millis(100), limit, async || {
        s.count().await >= n
    })
    .await
}

/// Asserts the stream holds each of `ids` exactly once, and nothing else.
async fn assert_exactly(s: &TestStream, source: &str, ids: &[i64], what: &str) {
    let got = s.event_ids(source).await;
    let distinct: HashSet<i64> = got.iter().copied().collect();
    let want: HashSet<i64> = ids.iter().copied().collect();
    let missing = want.difference(&distinct).count();
    println!(
        "{what}: {} messages, {} distinct, {missing} missing, {} duplicates",
        got.len(),
        distinct.len(),
        got.len() - distinct.len()
    );
    assert_eq!(missing, 0, "{what}: events missing from the stream");
    assert_eq!(
        got.len(),
        distinct.len(),
        "{what}: duplicates in the stream"
    );
    assert_eq!(distinct, want, "{what}: exactly the relayed events");
    assert_eq!(s.count().await, ids.len() as u64, "{what}: stream count");
}

/// Per object, the stream holds the events in the order they were written (id order here).
async fn assert_ordered_per_object(s: &TestStream, what: &str) {
    let per_object = s.per_object().await;
    for (object, ids) in &per_object {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, &sorted, "{what}: {object} out of order in the stream");
    }
    println!("{what}: {} objects in order", per_object.len());
}

/// 10,000 events relayed: the stream holds exactly 10,000 messages, one per event, in order per
/// object, and every ack is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_are_in_the_stream_exactly_once() {
    let Some(url) = nats_url() else { return };
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        migrate(&t.db).await;
        let ids = seed(&t.db, 10_000, 200).await;
        let s = TestStream::new(&url, |spec| spec).await;
        let client = acts_as_distributed_nats::connect(&url)
            .await
            .expect("connect");
        let source = unique("src");
        let relay = Relay::builder(t.db.clone(), client, &source)
            .subjects(s.subjects.clone())
            .build()
            .expect("relay");
        let started = Instant::now();
        let handle = relay
            .worker("nats-relay")
            .poll_interval(Duration::from_millis(20))
            .build()
            .expect("worker")
            .spawn();
        assert!(
            wait_count(&s, 10_000, Duration::from_secs(60)).await,
            "{}: relayed {} of 10000",
            backend.name(),
            s.count().await
        );
        let elapsed = started.elapsed();
        handle
            .shutdown(Duration::from_secs(10))
            .await
            .expect("shutdown");
        let what = format!("{}: 10000 events in {elapsed:?}", backend.name());
        assert_exactly(&s, &source, &ids, &what).await;
        assert_ordered_per_object(&s, &what).await;
        assert_eq!(records(&t.db).await, 10_000, "{what}: every ack recorded");
    }
}

/// The child side of `a_relay_killed_mid_batch_loses_and_duplicates_nothing`: a relay that runs
/// until it is killed. Does nothing unless started by that test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by a_relay_killed_mid_batch_loses_and_duplicates_nothing in a child process"]
async fn relay_child() {
    let Some((db, file)) = child_env().await else {
        return;
    };
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("config")).expect("json");
    let text = |k: &str| config[k].as_str().expect("a string").to_owned();
    let client = acts_as_distributed_nats::connect(&text("nats"))
        .await
        .expect("connect");
    let relay = Relay::builder(db, client, text("source"))
        .subjects(Subjects::prefix(text("prefix")))
        .build()
        .expect("relay");
    let _handle = relay
        .worker("nats-relay")
        // Small batches: after each kill, the events of the killed batch come back one at a
        // time (crashes count), so a small batch keeps the test short.
        .batch_size(100)
        .lease(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("worker")
        .spawn();
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// The relay in a child process is killed with SIGKILL mid-batch, three times, and restarted:
/// the stream still holds exactly the 10,000 events, none missing, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_loses_and_duplicates_nothing() {
    let Some(url) = nats_url() else { return };
    // SQLite and PostgreSQL: on MariaDB the retake of a killed batch took from 6 s to 73 s
    // from run to run on the 2-core CI machine (not yet understood), too long for a test.
    for backend in backends() {
        if matches!(backend, Backend::MySql(_)) {
            continue;
        }
        let t = TestDb::new(&backend).await;
        migrate(&t.db).await;
        let ids = seed(&t.db, 10_000, 500).await;
        let s = TestStream::new(&url, |spec| spec).await;
        let source = unique("src");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("relay.json");
        let config = serde_json::json!({
            "nats": url, "prefix": s.subjects.prefix_str(), "source": source,
        });
        std::fs::write(&file, config.to_string()).expect("config");
        let started = Instant::now();
        let mut kills = Vec::new();
        for threshold in [1_500u64, 4_000, 7_000] {
            let mut child = ChildWorker::start("relay_child", &t.url, &file);
            assert!(
                wait_count(&s, threshold, Duration::from_secs(60)).await,
                "{}: the child relay stalled below {threshold}",
                backend.name()
            );
            child.kill();
            kills.push(s.count().await);
        }
        let _last = ChildWorker::start("relay_child", &t.url, &file);
        let all = poll_every(
            Duration::from_millis(200),
            Duration::from_secs(90),
            async || {
                let pending: u64 = Queue::new(t.db.clone())
                    .status()
                    .await
                    .map(|c| {
                        c.iter()
                            .flat_map(|c| &c.types)
                            .map(|t| t.pending + t.errored)
                            .sum()
                    })
                    .unwrap_or(1);
                pending == 0 && s.count().await >= 10_000
            },
        )
        .await;
        assert!(
            all,
            "{}: relayed {} of 10000",
            backend.name(),
            s.count().await
        );
        let what = format!(
            "{}: killed at {kills:?} messages, done in {:?}",
            backend.name(),
            started.elapsed()
        );
        assert_exactly(&s, &source, &ids, &what).await;
        assert_ordered_per_object(&s, &what).await;
    }
}

/// NATS becomes unreachable (a proxy between the relay and the server is cut) for 3 s while the
/// relay works, then comes back: every event is in the stream once, in order per object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_pauses_the_relay_and_loses_nothing() {
    let Some(url) = nats_url() else { return };
    let t = TestDb::new(&Backend::Sqlite).await;
    migrate(&t.db).await;
    let ids = seed(&t.db, 4_000, 100).await;
    let s = TestStream::new(&url, |spec| spec).await;
    let proxy = Proxy::start(&url).await;
    let client = acts_as_distributed_nats::connect(&proxy.url)
        .await
        .expect("connect through the proxy");
    let source = unique("src");
    let relay = Relay::builder(t.db.clone(), client, &source)
        .subjects(s.subjects.clone())
        .ack_timeout(Duration::from_secs(1))
        .retry_span(Duration::from_secs(30))
        .build()
        .expect("relay");
    let handle = relay
        .worker("nats-relay")
        .batch_size(200)
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("worker")
        .spawn();
    assert!(
        wait_count(&s, 500, Duration::from_secs(30)).await,
        "the relay started"
    );
    proxy.cut();
    let at_cut = s.count().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = s.count().await;
    proxy.restore();
    let back = Instant::now();
    assert!(
        wait_count(&s, 4_000, Duration::from_secs(40)).await,
        "relayed {} of 4000 after the outage",
        s.count().await
    );
    let caught_up = back.elapsed();
    handle
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
    assert!(
        during <= at_cut + 300,
        "nothing reached the stream during the cut"
    );
    let what =
        format!("outage: cut at {at_cut}, {during} at restore, caught up {caught_up:?} after");
    assert_exactly(&s, &source, &ids, &what).await;
    assert_ordered_per_object(&s, &what).await;
}

/// The stream helper checks an existing stream and names every mismatch, changing nothing; it
/// refuses a duplicate window shorter than the relay's longest retry span.
#[tokio::test]
async fn the_stream_helper_checks_and_never_changes_a_stream() {
    let Some(url) = nats_url() else { return };
    let s = TestStream::new(&url, |spec| spec.duplicate_window(Duration::from_secs(60))).await;
    // The same settings: accepted.
    StreamSpec::new(&s.name, &s.subjects)
        .duplicate_window(Duration::from_secs(60))
        .ensure(&s.js)
        .await
        .expect("the same stream is accepted");
    // Other settings: a mismatch naming each, and the stream unchanged.
    let err = StreamSpec::new(&s.name, &Subjects::prefix("elsewhere"))
        .storage(StorageType::Memory)
        .duplicate_window(Duration::from_secs(30))
        .ensure(&s.js)
        .await
        .expect_err("a mismatch");
    let text = err.to_string();
    println!("mismatch: {text}");
    assert!(matches!(err, Error::StreamMismatch { .. }), "{text}");
    for what in ["subjects", "storage", "duplicate window"] {
        assert!(text.contains(what), "{text}");
    }
    let config = s.stream().await.cached_info().config.clone();
    assert_eq!(config.storage, StorageType::File, "unchanged");
    assert_eq!(
        config.duplicate_window,
        Duration::from_secs(60),
        "unchanged"
    );
    // A relay retrying for 2 minutes needs a longer window than 60 s.
    let t = TestDb::new(&Backend::Sqlite).await;
    let client = acts_as_distributed_nats::connect(&url)
        .await
        .expect("connect");
    let relay = Relay::builder(t.db.clone(), client, "src")
        .subjects(s.subjects.clone())
        .retry_span(Duration::from_secs(120))
        .build()
        .expect("relay");
    let err = StreamSpec::new(&s.name, &s.subjects)
        .duplicate_window(Duration::from_secs(60))
        .for_relay(&relay)
        .check(&s.js)
        .await
        .expect_err("too short");
    assert!(
        matches!(err, Error::DuplicateWindowTooShort { .. }),
        "{err}"
    );
    let fresh = StreamSpec::new(unique("NEW").to_uppercase(), &Subjects::prefix(unique("n")))
        .duplicate_window(Duration::from_secs(60))
        .for_relay(&relay)
        .ensure(&s.js)
        .await
        .expect_err("refused before creating");
    assert!(
        matches!(fresh, Error::DuplicateWindowTooShort { .. }),
        "{fresh}"
    );
    // Bad relay settings are refused at build.
    let client = acts_as_distributed_nats::connect(&url)
        .await
        .expect("connect");
    let bad = Relay::builder(t.db.clone(), client, "has space").build();
    assert!(matches!(bad, Err(Error::Config(_))));
}

/// Messages deleted from the stream by hand are found by reconcile and republished under their
/// ids; nothing else is. A dry run reports without publishing; a second run finds all present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_republishes_exactly_the_messages_the_stream_lost() {
    let Some(url) = nats_url() else { return };
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        migrate(&t.db).await;
        let ids = seed(&t.db, 500, 50).await;
        // A short duplicate window, so that the republished copies are stored (a copy within
        // the window is dropped as a duplicate, and reported so).
        let s = TestStream::new(&url, |spec| spec.duplicate_window(Duration::from_secs(2))).await;
        let client = acts_as_distributed_nats::connect(&url)
            .await
            .expect("connect");
        let source = unique("src");
        let relay = Relay::builder(t.db.clone(), client, &source)
            .subjects(s.subjects.clone())
            .ack_timeout(Duration::from_secs(1))
            .retry_span(Duration::from_secs(1))
            .build()
            .expect("relay");
        let handle = relay
            .worker("nats-relay")
            .poll_interval(Duration::from_millis(20))
            .build()
            .expect("worker")
            .spawn();
        assert!(wait_count(&s, 500, Duration::from_secs(30)).await);
        handle
            .shutdown(Duration::from_secs(10))
            .await
            .expect("shutdown");
        // Lose every 71st message (8 of them).
        let messages = s.messages().await;
        let stream = s.stream().await;
        let mut lost = Vec::new();
        for (seq, id, _) in messages.iter().step_by(71) {
            assert!(
                stream.delete_message(*seq).await.expect("delete"),
                "deleted"
            );
            lost.push(acts_as_distributed_nats::parse_message_id(&source, id).expect("our id"));
        }
        lost.sort();
        assert_eq!(s.count().await, 500 - lost.len() as u64);
        tokio::time::sleep(Duration::from_millis(2_500)).await; // past the duplicate window
        let dry = relay
            .reconcile(&s.name)
            .dry_run(true)
            .run()
            .await
            .expect("dry run");
        assert_eq!(dry.checked, 500);
        assert_eq!(
            dry.missing,
            lost,
            "{}: found exactly the lost ones",
            backend.name()
        );
        assert!(dry.republished.is_empty());
        assert_eq!(
            s.count().await,
            500 - lost.len() as u64,
            "a dry run publishes nothing"
        );
        let report = relay.reconcile(&s.name).run().await.expect("reconcile");
        println!("{}: lost {lost:?}; {report}", backend.name());
        assert_eq!(report.missing, lost);
        assert_eq!(
            report.republished,
            lost,
            "{}: republished the lost ones",
            backend.name()
        );
        assert_eq!(report.present, 500 - lost.len() as u64);
        assert_exactly(
            &s,
            &source,
            &ids,
            &format!("{}: after reconcile", backend.name()),
        )
        .await;
        let again = relay
            .reconcile(&s.name)
            .run()
            .await
            .expect("reconcile again");
        assert_eq!((again.present, again.missing.len()), (500, 0), "{again}");
    }
}
