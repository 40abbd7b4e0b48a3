//! The stream consumer against a real JetStream server (`TEST_NATS_URL`): order per object with
//! 4 tasks under retries, progress of a long handler, malformed messages and permanent errors
//! recorded while the rest flows, and PostgreSQL -> relay -> NATS -> stream consumer ->
//! replicator -> SQLite and MariaDB under a random workload.

mod common;

use acts_as_distributed::{Event, HandlerError, Replicator, RetryPolicy};
use acts_as_distributed_nats::{Relay, StreamConsumer, dead_messages};
use common::nats::{TestStream, nats_url, unique};
use common::queue::{poll_every, write_events};
use common::{Backend, TestDb, backends, customer, purchase};
use sea_orm::{ActiveModelTrait, DatabaseConnection, IntoActiveModel, Set};
use sea_orm_migration::MigratorTrait;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn migrate(db: &DatabaseConnection) {
    acts_as_distributed_nats::Migrator::up(db, None)
        .await
        .expect("the relay's migration");
}

/// Relays every event of `db` into the test stream; returns the relay's worker handle.
async fn relay(
    db: &DatabaseConnection,
    url: &str,
    s: &TestStream,
) -> acts_as_distributed::WorkerHandle {
    let client = acts_as_distributed_nats::connect(url)
        .await
        .expect("connect");
    Relay::builder(db.clone(), client, unique("src"))
        .subjects(s.subjects.clone())
        .build()
        .expect("relay")
        .worker("nats-relay")
        .poll_interval(Duration::from_millis(20))
        .build()
        .expect("worker")
        .spawn()
}

/// What a handler saw: (event id, object, attempt), in the order handled successfully.
#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<Vec<(i64, String, u32)>>>);

impl Ledger {
    fn len(&self) -> usize {
        self.0.lock().expect("ledger").len()
    }
    fn entries(&self) -> Vec<(i64, String, u32)> {
        self.0.lock().expect("ledger").clone()
    }
}

/// Four consumer tasks, retries on one event in seven (first attempt) and a handler slower than
/// the ack wait: each event is handled once, in order per object, in the stream and at the
/// consumer; the slow one is not redelivered (its progress kept it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_object_holds_in_the_stream_and_across_four_consumer_tasks() {
    let Some(url) = nats_url() else { return };
    let t = TestDb::new(&Backend::Sqlite).await;
    migrate(&t.db).await;
    let events: Vec<(&str, String, &str)> = (0..3_000)
        .map(|i| ("Note", format!("n{}", i % 60), "update"))
        .collect();
    write_events(&t.db, &events).await;
    let s = TestStream::new(&url, |spec| spec).await;
    let relaying = relay(&t.db, &url, &s).await;
    let ledger = Ledger::default();
    let failures = Arc::new(Mutex::new(0u32));
    let slow_id = 1_500;
    let (l, f) = (ledger.clone(), failures.clone());
    let consumer = StreamConsumer::builder(s.js.clone(), &s.name, "ordered")
        .tasks(4)
        .ack_wait(Duration::from_secs(1))
        .retry(
            RetryPolicy::default()
                .base(Duration::from_millis(50))
                .cap(Duration::from_millis(200)),
        )
        .handler(move |e: Event| {
            let (l, f) = (l.clone(), f.clone());
            async move {
                if e.id % 7 == 0 && e.attempt == 1 {
                    *f.lock().expect("failures") += 1;
                    return Err(HandlerError::retry("not yet"));
                }
                if e.id == slow_id {
                    tokio::time::sleep(Duration::from_millis(2_500)).await;
                }
                l.0.lock()
                    .expect("ledger")
                    .push((e.id, e.distributed_id.clone(), e.attempt));
                Ok::<_, HandlerError>(())
            }
        })
        .build()
        .expect("consumer")
        .spawn();
    let all = poll_every(
        Duration::from_millis(100),
        Duration::from_secs(60),
        async || ledger.len() >= 3_000,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await; // anything handled twice shows now
    let stats = consumer.stats();
    consumer
        .shutdown(Duration::from_secs(10))
        .await
        .expect("consumer shutdown");
    relaying
        .shutdown(Duration::from_secs(10))
        .await
        .expect("relay shutdown");
    assert!(all, "handled {} of 3000", ledger.len());
    let entries = ledger.entries();
    let ids: HashSet<i64> = entries.iter().map(|e| e.0).collect();
    println!(
        "4 tasks: {} handled, {} distinct, {} retried first, stats {stats:?}",
        entries.len(),
        ids.len(),
        failures.lock().expect("failures")
    );
    assert_eq!(entries.len(), 3_000, "each event handled once");
    assert_eq!(ids.len(), 3_000, "no event twice");
    let mut per_object: HashMap<&str, Vec<i64>> = HashMap::new();
    for (id, object, _) in &entries {
        per_object.entry(object).or_default().push(*id);
    }
    for (object, ids) in &per_object {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, &sorted, "{object} out of order at the consumer");
    }
    let slow = entries
        .iter()
        .find(|e| e.0 == slow_id)
        .expect("the slow event");
    assert_eq!(
        slow.2, 1,
        "the slow handler kept its message (progress), no redelivery"
    );
    for (object, ids) in s.per_object().await {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "{object} out of order in the stream");
    }
    assert!(stats.retried >= 3_000 / 7, "{stats:?}");
}

/// A malformed body, a payload of an unknown version and an event the handler refuses for good
/// reach the stream consumer: each is terminated and recorded in `distribute_nats_dead`, and the
/// other 100 events are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_and_permanent_errors_are_recorded_and_the_rest_flows() {
    let Some(url) = nats_url() else { return };
    let t = TestDb::new(&Backend::Sqlite).await;
    migrate(&t.db).await;
    let s = TestStream::new(&url, |spec| spec).await;
    let prefix = s.subjects.prefix_str().to_owned();
    s.js.publish(format!("{prefix}.Note.update"), "not json".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let events: Vec<(&str, String, &str)> = (0..101)
        .map(|i| ("Note", format!("n{}", i % 10), "update"))
        .collect();
    write_events(&t.db, &events).await;
    let relaying = relay(&t.db, &url, &s).await;
    let future = serde_json::json!({
        "version": 99, "source": "x", "id": 1, "distributed_type": "Note", "distributed_id": "z",
        "action": "create", "changes": {}, "created_at": "2026-01-01T00:00:00Z", "format": 1
    });
    s.js.publish(format!("{prefix}.Note.create"), future.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let refused = common::queue::all_ids(&t.db).await[50];
    let ledger = Ledger::default();
    let l = ledger.clone();
    let consumer = StreamConsumer::builder(s.js.clone(), &s.name, "checker")
        .tasks(2)
        .dead_letters(t.db.clone())
        .handler(move |e: Event| {
            let l = l.clone();
            async move {
                if e.id == refused {
                    return Err(HandlerError::permanent("refused for good"));
                }
                l.0.lock()
                    .expect("ledger")
                    .push((e.id, e.distributed_id.clone(), e.attempt));
                Ok::<_, HandlerError>(())
            }
        })
        .build()
        .expect("consumer")
        .spawn();
    let flowed = poll_every(
        Duration::from_millis(100),
        Duration::from_secs(30),
        async || ledger.len() >= 100 && consumer.stats().dead >= 3,
    )
    .await;
    let stats = consumer.stats();
    consumer
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
    relaying
        .shutdown(Duration::from_secs(10))
        .await
        .expect("relay shutdown");
    assert!(flowed, "handled {}, {stats:?}", ledger.len());
    let dead = dead_messages(&t.db, &s.name).await.expect("dead messages");
    for d in &dead {
        println!(
            "dead: seq {} event {:?}: {}",
            d.stream_sequence, d.event_id, d.error
        );
    }
    assert_eq!(ledger.len(), 100, "the other events flowed");
    assert_eq!(dead.len(), 3, "three recorded");
    assert_eq!((stats.dead, stats.malformed), (3, 2), "{stats:?}");
    assert!(
        dead.iter()
            .any(|d| d.error.contains("malformed") && d.payload == "not json")
    );
    assert!(dead.iter().any(|d| d.error.contains("version 99")));
    assert!(
        dead.iter()
            .any(|d| d.event_id == Some(refused) && d.error.contains("refused for good"))
    );
}

/// A small random workload of customers and purchases in its own transactions.
async fn workload(db: &DatabaseConnection, steps: usize, seed: u64) {
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut customers: Vec<customer::Model> = Vec::new();
    let mut purchases: Vec<purchase::Model> = Vec::new();
    for _ in 0..steps {
        let roll = next(100);
        if roll < 25 || customers.is_empty() {
            let c = customer::ActiveModel {
                uuid: Set(uuid::Uuid::new_v4()),
                name: Set(format!("c{}", next(1000))),
                credit: Set(rust_decimal::Decimal::new(next(100_000) as i64, 2)),
                note: Set(None),
                ..Default::default()
            };
            customers.push(
                acts_as_distributed::transaction(db, |txn| {
                    Box::pin(async move { c.insert(txn).await })
                })
                .await
                .expect("create customer"),
            );
        } else if roll < 50 {
            let i = next(customers.len() as u64) as usize;
            let mut am = customers[i].clone().into_active_model();
            am.name = Set(format!("renamed {}", next(1000)));
            customers[i] = acts_as_distributed::transaction(db, |txn| {
                Box::pin(async move { am.update(txn).await })
            })
            .await
            .expect("update customer");
        } else if roll < 80 {
            let c = &customers[next(customers.len() as u64) as usize];
            let p = purchase::ActiveModel {
                uuid: Set(uuid::Uuid::new_v4()),
                customer_uuid: Set(c.uuid),
                item: Set(format!("item {}", next(100))),
                quantity: Set(1 + next(9) as i32),
                ..Default::default()
            };
            purchases.push(
                acts_as_distributed::transaction(db, |txn| {
                    Box::pin(async move { p.insert(txn).await })
                })
                .await
                .expect("create purchase"),
            );
        } else if roll < 92 && !purchases.is_empty() {
            let i = next(purchases.len() as u64) as usize;
            let mut am = purchases[i].clone().into_active_model();
            am.quantity = Set(1 + next(50) as i32);
            purchases[i] = acts_as_distributed::transaction(db, |txn| {
                Box::pin(async move { am.update(txn).await })
            })
            .await
            .expect("update purchase");
        } else if !purchases.is_empty() {
            let p = purchases.swap_remove(next(purchases.len() as u64) as usize);
            acts_as_distributed::transaction(db, |txn| {
                Box::pin(async move { p.into_active_model().delete(txn).await })
            })
            .await
            .expect("delete purchase");
        }
    }
}

/// PostgreSQL -> relay -> NATS -> two stream consumers (4 tasks each) -> replicators -> SQLite
/// and MariaDB, with a random workload running while the relay works: both replicas equal the
/// source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_through_nats_replicates_into_sqlite_and_mariadb() {
    let Some(url) = nats_url() else { return };
    let all = backends();
    let (Some(pg), Some(my)) = (
        all.iter().find(|b| matches!(b, Backend::Postgres(_))),
        all.iter().find(|b| matches!(b, Backend::MySql(_))),
    ) else {
        println!(
            "note: skipping the end-to-end NATS test (needs TEST_POSTGRES_URL and TEST_MYSQL_URL)"
        );
        return;
    };
    let source = TestDb::new(pg).await;
    migrate(&source.db).await;
    let replicas = [TestDb::new(&Backend::Sqlite).await, TestDb::new(my).await];
    let s = TestStream::new(&url, |spec| spec).await;
    workload(&source.db, 300, 7).await; // before the relay starts
    let relaying = relay(&source.db, &url, &s).await;
    let mut consumers = Vec::new();
    let mut replicators = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        let replicator = Replicator::builder(replica.db.clone())
            .entity::<customer::Entity>()
            .entity::<purchase::Entity>()
            .build()
            .expect("replicator");
        consumers.push(
            StreamConsumer::builder(s.js.clone(), &s.name, format!("replica{i}"))
                .tasks(4)
                // Children may arrive before their parents (other tasks): retried soon.
                .retry(
                    RetryPolicy::default()
                        .base(Duration::from_millis(50))
                        .cap(Duration::from_millis(500))
                        .max_attempts(100),
                )
                .dead_letters(replica.db.clone())
                .handler(replicator.clone())
                .build()
                .expect("consumer")
                .spawn(),
        );
        replicators.push(replicator);
    }
    workload(&source.db, 700, 11).await; // while the relay and the consumers work
    let mut reports = Vec::new();
    for (replicator, replica) in replicators.iter().zip(&replicas) {
        let equal = poll_every(
            Duration::from_millis(250),
            Duration::from_secs(60),
            async || {
                replicator
                    .verify(&source.db)
                    .await
                    .is_ok_and(|r| r.is_equal())
            },
        )
        .await;
        let report = replicator.verify(&source.db).await.expect("verify");
        println!("{}: {report}", replica.backend.name());
        assert!(
            equal,
            "{}: replica differs:\n{report}",
            replica.backend.name()
        );
        reports.push(report);
    }
    for (c, replica) in consumers.into_iter().zip(&replicas) {
        let stats = c.stats();
        println!("{}: {stats:?}", replica.backend.name());
        c.shutdown(Duration::from_secs(10)).await.expect("shutdown");
        assert_eq!(stats.dead, 0, "{}: nothing dead", replica.backend.name());
    }
    relaying
        .shutdown(Duration::from_secs(10))
        .await
        .expect("relay shutdown");
}
