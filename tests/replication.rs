//! Replication into another database: random workloads across backend pairs with the replicator
//! running (stopped and restarted mid-way), replays, snapshots under writes, two-way, bad input,
//! schema changes and foreign keys.

mod common;

use acts_as_distributed::{
    Action, Applied, Event, Queue, Replicator, StartFrom, UnknownColumns, distribute,
    without_distributing,
};
use common::*;
use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, IntoActiveModel,
    NotSet, Set, TransactionTrait,
};
use serde_json::json;
use std::time::Duration;

/// Source → replica pairs to run: SQLite → SQLite always, and with the server URLs set
/// PostgreSQL → SQLite, SQLite → PostgreSQL, PostgreSQL → PostgreSQL, MariaDB → PostgreSQL and
/// PostgreSQL → MariaDB.
fn pairs() -> Vec<(Backend, Backend)> {
    let all = backends();
    let pg = all.iter().find(|b| matches!(b, Backend::Postgres(_)));
    let my = all.iter().find(|b| matches!(b, Backend::MySql(_)));
    let mut pairs = vec![(Backend::Sqlite, Backend::Sqlite)];
    if let Some(pg) = pg {
        pairs.push((pg.clone(), Backend::Sqlite));
        pairs.push((Backend::Sqlite, pg.clone()));
        pairs.push((pg.clone(), pg.clone()));
        if let Some(my) = my {
            pairs.push((my.clone(), pg.clone()));
            pairs.push((pg.clone(), my.clone()));
        }
    } else if let Some(my) = my {
        pairs.push((my.clone(), Backend::Sqlite));
        pairs.push((Backend::Sqlite, my.clone()));
    }
    pairs
}

/// A write transaction: `BEGIN IMMEDIATE` on SQLite, where the workload writes while the
/// replicator's worker acknowledges events in the same file.
async fn write_txn(db: &DatabaseConnection) -> sea_orm::DatabaseTransaction {
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
    .expect("begin")
}

fn replicator(replica: &DatabaseConnection) -> Replicator {
    Replicator::builder(replica.clone())
        .entity::<customer::Entity>()
        .entity::<purchase::Entity>()
        .entity::<sample::Entity>()
        .build()
        .expect("replicator")
}

/// A small deterministic random number generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What the workload has alive on the source.
#[derive(Default)]
struct Alive {
    customers: Vec<customer::Model>,
    purchases: Vec<purchase::Model>,
    samples: Vec<i32>,
    objects_created: usize,
    operations: usize,
}

/// Values of every kind. With MySQL on either side, times are whole seconds (MySQL's `DATETIME`
/// and `TIME` columns made by SeaORM keep no fractions).
fn sample_values(rng: &mut Rng, whole_seconds: bool) -> sample::ActiveModel {
    use chrono::{FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
    let n = rng.next();
    let nanos = if whole_seconds {
        0
    } else {
        (rng.below(1_000_000) * 1_000) as u32
    };
    let day = NaiveDate::from_ymd_opt(
        2000 + rng.below(30) as i32,
        1 + rng.below(12) as u32,
        1 + rng.below(28) as u32,
    )
    .expect("date");
    let clock = NaiveTime::from_hms_nano_opt(
        rng.below(24) as u32,
        rng.below(60) as u32,
        rng.below(60) as u32,
        nanos,
    )
    .expect("time");
    let local = day.and_time(clock);
    let texts = [
        "plain",
        "quote ' and \"double\"",
        "ünïcödé ✓",
        "",
        "back\\slash",
        "tab\tnew\nline",
    ];
    let maybe = |rng: &mut Rng| rng.chance(85);
    sample::ActiveModel {
        id: NotSet,
        flag: Set(maybe(rng).then(|| n.is_multiple_of(2))),
        small: Set(maybe(rng).then_some((n % 60_000) as i16)),
        int: Set(maybe(rng).then_some(n as i32)),
        big: Set(maybe(rng).then_some(n as i64 >> 1)),
        single: Set(maybe(rng).then(|| [0.1f32, -2.5, 1.0e-7, 3.25e20][(n % 4) as usize])),
        double: Set(maybe(rng).then(|| (n % 1_000_000) as f64 / 3.0)),
        amount: Set(
            maybe(rng).then(|| Decimal::new((n % 100_000_000_000) as i64 - 50_000_000_000, 4))
        ),
        text: Set(maybe(rng).then(|| texts[(n % texts.len() as u64) as usize].to_owned())),
        day: Set(maybe(rng).then_some(day)),
        clock: Set(maybe(rng).then_some(clock)),
        local: Set(maybe(rng).then_some(local)),
        zoned: Set(maybe(rng).then(|| {
            FixedOffset::east_opt(2 * 3600)
                .expect("offset")
                .from_local_datetime(&local)
                .single()
                .expect("zoned")
        })),
        utc: Set(maybe(rng).then(|| Utc.from_utc_datetime(&local))),
        token: Set(maybe(rng).then(Uuid::new_v4)),
        doc: Set(
            maybe(rng).then(|| json!({"n": n % 1000, "tags": ["a", "b"], "nested": {"ok": true}}))
        ),
        bytes: Set(maybe(rng).then(|| n.to_le_bytes().to_vec())),
    }
}

/// One random step on the source, in a transaction of its own: creates, updates and destroys of
/// customers, their purchases (children holding the customer's uuid) and samples.
async fn step(db: &DatabaseConnection, rng: &mut Rng, alive: &mut Alive, whole_seconds: bool) {
    let txn = write_txn(db).await;
    let ops = 1 + rng.below(3);
    for _ in 0..ops {
        alive.operations += 1;
        let roll = rng.below(100);
        match roll {
            0..=14 => {
                let c = customer::ActiveModel {
                    uuid: Set(Uuid::new_v4()),
                    name: Set(format!("customer {}", rng.below(1000))),
                    credit: Set(Decimal::new(rng.below(1_000_000) as i64, 2)),
                    note: Set(rng.chance(50).then(|| "vip".to_owned())),
                    ..Default::default()
                }
                .insert(&txn)
                .await
                .expect("create customer");
                alive.customers.push(c);
                alive.objects_created += 1;
            }
            15..=34 if !alive.customers.is_empty() => {
                let i = rng.below(alive.customers.len() as u64) as usize;
                let mut am = alive.customers[i].clone().into_active_model();
                if rng.chance(60) {
                    am.name = Set(format!("renamed {}", rng.below(1000)));
                }
                if rng.chance(60) {
                    am.credit = Set(Decimal::new(rng.below(1_000_000) as i64, 2));
                }
                if rng.chance(30) {
                    am.note = Set(rng.chance(50).then(|| format!("note {}", rng.below(10))));
                }
                alive.customers[i] = am.update(&txn).await.expect("update customer");
            }
            35..=54 if !alive.customers.is_empty() => {
                let c = &alive.customers[rng.below(alive.customers.len() as u64) as usize];
                let p = purchase::ActiveModel {
                    uuid: Set(Uuid::new_v4()),
                    customer_uuid: Set(c.uuid),
                    item: Set(format!("item {}", rng.below(100))),
                    quantity: Set(1 + rng.below(9) as i32),
                    ..Default::default()
                }
                .insert(&txn)
                .await
                .expect("create purchase");
                alive.purchases.push(p);
                alive.objects_created += 1;
            }
            55..=69 if !alive.purchases.is_empty() => {
                let i = rng.below(alive.purchases.len() as u64) as usize;
                let mut am = alive.purchases[i].clone().into_active_model();
                am.quantity = Set(1 + rng.below(50) as i32);
                if rng.chance(40) {
                    am.item = Set(format!("changed {}", rng.below(100)));
                }
                alive.purchases[i] = am.update(&txn).await.expect("update purchase");
            }
            70..=75 if !alive.purchases.is_empty() => {
                let i = rng.below(alive.purchases.len() as u64) as usize;
                let p = alive.purchases.swap_remove(i);
                p.into_active_model()
                    .delete(&txn)
                    .await
                    .expect("delete purchase");
            }
            76..=79 if alive.customers.len() > 5 => {
                // A customer and its purchases go together, children first.
                let i = rng.below(alive.customers.len() as u64) as usize;
                let c = alive.customers.swap_remove(i);
                let (theirs, rest): (Vec<_>, Vec<_>) = alive
                    .purchases
                    .drain(..)
                    .partition(|p| p.customer_uuid == c.uuid);
                alive.purchases = rest;
                for p in theirs {
                    p.into_active_model()
                        .delete(&txn)
                        .await
                        .expect("delete purchase");
                }
                c.into_active_model()
                    .delete(&txn)
                    .await
                    .expect("delete customer");
            }
            80..=89 => {
                let s = sample_values(rng, whole_seconds)
                    .insert(&txn)
                    .await
                    .expect("create sample");
                alive.samples.push(s.id);
                alive.objects_created += 1;
            }
            90..=96 if !alive.samples.is_empty() => {
                let id = alive.samples[rng.below(alive.samples.len() as u64) as usize];
                let mut am = sample_values(rng, whole_seconds);
                am.id = Set(id);
                // Only some columns change.
                if rng.chance(50) {
                    am.doc = NotSet;
                    am.bytes = NotSet;
                    am.text = NotSet;
                }
                am.update(&txn).await.expect("update sample");
            }
            _ if !alive.samples.is_empty() => {
                let i = rng.below(alive.samples.len() as u64) as usize;
                let id = alive.samples.swap_remove(i);
                sample::ActiveModel {
                    id: Set(id),
                    ..Default::default()
                }
                .delete(&txn)
                .await
                .expect("delete sample");
            }
            _ => {}
        }
    }
    txn.commit().await.expect("commit");
}

fn whole_seconds(source: &Backend, replica: &Backend) -> bool {
    matches!(source, Backend::MySql(_)) || matches!(replica, Backend::MySql(_))
}

/// Handles every ready event of `consumer` until none is left, then checks that none failed.
async fn drain(replicator: &Replicator, source: &DatabaseConnection, consumer: &str) {
    let worker = replicator
        .worker(source.clone(), consumer)
        .batch_size(500)
        .build()
        .expect("worker");
    let mut idle = 0;
    while idle < 2 {
        if worker.run_once().await.expect("run_once") == 0 {
            idle += 1;
        } else {
            idle = 0;
        }
    }
}

/// The deliveries of `consumer` that failed at least once, with their errors.
async fn failures(db: &DatabaseConnection, consumer: &str) -> Vec<String> {
    let rows = db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                DbBackend::Postgres => {
                    "SELECT event_id, state, last_error FROM distribute_deliveries \
                     WHERE consumer = $1 AND last_error IS NOT NULL ORDER BY event_id"
                }
                _ => {
                    "SELECT event_id, state, last_error FROM distribute_deliveries \
                     WHERE consumer = ? AND last_error IS NOT NULL ORDER BY event_id"
                }
            },
            [consumer.into()],
        ))
        .await
        .expect("read deliveries");
    rows.iter()
        .map(|r| {
            format!(
                "event {} {}: {}",
                r.try_get::<i64>("", "event_id").unwrap_or_default(),
                r.try_get::<String>("", "state").unwrap_or_default(),
                r.try_get::<String>("", "last_error").unwrap_or_default()
            )
        })
        .collect()
}

async fn assert_equal(replicator: &Replicator, source: &DatabaseConnection, what: &str) {
    let report = replicator.verify(source).await.expect("verify");
    assert!(report.is_equal(), "{what}: replica differs:\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_workload_replicates_across_backends_with_a_restart_and_a_replay() {
    for (source_backend, replica_backend) in pairs() {
        let what = format!("{} -> {}", source_backend.name(), replica_backend.name());
        let source = TestDb::new(&source_backend).await;
        let replica = TestDb::new(&replica_backend).await;
        let replicator = replicator(&replica.db);
        let whole = whole_seconds(&source_backend, &replica_backend);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut alive = Alive::default();

        // The replicator runs while the workload writes; it is stopped half-way and a new one
        // takes over.
        let first = replicator
            .worker(source.db.clone(), "replica")
            .poll_interval(Duration::from_millis(20))
            .build()
            .expect("worker")
            .spawn();
        while alive.operations < 2_500 {
            step(&source.db, &mut rng, &mut alive, whole).await;
        }
        first.shutdown(Duration::from_secs(10)).await.expect("stop");
        let second = replicator
            .worker(source.db.clone(), "replica")
            .poll_interval(Duration::from_millis(20))
            .build()
            .expect("worker")
            .spawn();
        while alive.operations < 5_000 {
            step(&source.db, &mut rng, &mut alive, whole).await;
        }
        second
            .shutdown(Duration::from_secs(10))
            .await
            .expect("stop");
        drain(&replicator, &source.db, "replica").await;

        assert!(
            alive.objects_created >= 300,
            "{what}: {} objects",
            alive.objects_created
        );
        let failed = failures(&source.db, "replica").await;
        assert!(
            failed.is_empty(),
            "{what}: no event may fail (foreign keys hold): {failed:?}"
        );
        assert_equal(&replicator, &source.db, &what).await;
        let report = replicator.verify(&source.db).await.expect("verify");
        let rows: Vec<usize> = report.entities.iter().map(|e| e.source_rows).collect();
        assert!(
            rows.iter().all(|n| *n > 0),
            "{what}: every entity has rows: {rows:?}"
        );

        // Replaying every event a second time ends in the same state.
        Queue::new(source.db.clone())
            .register_consumer("replay", StartFrom::Oldest)
            .await
            .expect("register");
        drain(&replicator, &source.db, "replay").await;
        assert!(
            failures(&source.db, "replay").await.is_empty(),
            "{what}: replay failed"
        );
        assert_equal(&replicator, &source.db, &format!("{what} after a replay")).await;
        let events = events(&source.db).await.len();
        println!(
            "{what}: {} operations, {} objects, {events} events, rows {rows:?}: equal, and equal after a replay",
            alive.operations, alive.objects_created
        );
    }
}

fn as_event(row: distribute::Model) -> Event {
    let mut event = Event::new(
        row.id,
        row.distributed_type,
        row.distributed_id,
        row.action.parse().expect("action"),
        row.changes,
    );
    event.created_at = row.created_at;
    event.client_id = row.client_id;
    event
}

#[tokio::test]
async fn applying_an_event_twice_changes_nothing_the_second_time() {
    for backend in backends() {
        let source = TestDb::new(&Backend::Sqlite).await;
        let replica = TestDb::new(&backend).await;
        let replicator = replicator(&replica.db);
        let mut rng = Rng(42);
        let mut alive = Alive::default();
        while alive.operations < 300 {
            step(&source.db, &mut rng, &mut alive, true).await;
        }
        let mut second = Vec::new();
        for row in events(&source.db).await {
            let event = as_event(row);
            replicator.apply(&event).await.expect("first apply");
            second.push(replicator.apply(&event).await.expect("second apply"));
        }
        assert!(
            second.iter().all(|a| *a == Applied::Unchanged),
            "{second:?}"
        );
        assert_equal(&replicator, &source.db, backend.name()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_under_writes_brings_up_rows_that_predate_capture() {
    for (source_backend, replica_backend) in pairs() {
        let what = format!("{} -> {}", source_backend.name(), replica_backend.name());
        let source = TestDb::new(&source_backend).await;
        let replica = TestDb::new(&replica_backend).await;
        let replicator = replicator(&replica.db);
        let whole = whole_seconds(&source_backend, &replica_backend);
        let mut rng = Rng(7);
        let mut alive = Alive::default();
        // Rows written before capture was declared: no events at all.
        without_distributing(async {
            while alive.operations < 1_000 {
                step(&source.db, &mut rng, &mut alive, whole).await;
            }
        })
        .await;
        assert!(events(&source.db).await.is_empty());
        // Writes go on during the snapshot.
        let writer = {
            let db = source.db.clone();
            tokio::spawn(async move {
                let mut rng = rng;
                let mut alive = alive;
                let start = alive.operations;
                while alive.operations < start + 600 {
                    step(&db, &mut rng, &mut alive, whole).await;
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut reports = Vec::new();
        let copied = replicator
            .snapshot(&source.db, "replica")
            .page_size(50)
            .on_progress(|p| reports.push((p.type_name, p.copied, p.total)))
            .run()
            .await
            .expect("snapshot");
        writer.await.expect("writer");
        assert!(copied.iter().all(|(_, n)| *n > 0), "{what}: {copied:?}");
        assert!(reports.len() > 3, "{what}: progress reported per page");
        drain(&replicator, &source.db, "replica").await;
        let failed = failures(&source.db, "replica").await;
        assert!(failed.is_empty(), "{what}: {failed:?}");
        assert_equal(&replicator, &source.db, &what).await;
        println!(
            "{what}: snapshot copied {copied:?} in {} pages, then the log: equal",
            reports.len()
        );
    }
}

#[tokio::test]
async fn two_way_replication_converges_without_echo() {
    for backend in backends() {
        let a = TestDb::new(&Backend::Sqlite).await;
        let b = TestDb::new(&backend).await;
        let a_to_b = Replicator::builder(b.db.clone())
            .entity::<customer::Entity>()
            .record_as("from-a")
            .skip_client_id("from-b")
            .build()
            .expect("a to b");
        let b_to_a = Replicator::builder(a.db.clone())
            .entity::<customer::Entity>()
            .record_as("from-b")
            .skip_client_id("from-a")
            .build()
            .expect("b to a");
        let new_customer = |name: &str| customer::ActiveModel {
            uuid: Set(Uuid::new_v4()),
            name: Set(name.to_owned()),
            credit: Set(Decimal::new(100, 2)),
            ..Default::default()
        };
        let mut on_a = Vec::new();
        let mut on_b = Vec::new();
        for i in 0..20 {
            let txn = write_txn(&a.db).await;
            on_a.push(
                new_customer(&format!("a{i}"))
                    .insert(&txn)
                    .await
                    .expect("insert"),
            );
            txn.commit().await.expect("commit");
            let txn = write_txn(&b.db).await;
            on_b.push(
                new_customer(&format!("b{i}"))
                    .insert(&txn)
                    .await
                    .expect("insert"),
            );
            txn.commit().await.expect("commit");
        }
        let sync = || async {
            for _ in 0..3 {
                drain(&a_to_b, &a.db, "to-b").await;
                drain(&b_to_a, &b.db, "to-a").await;
            }
        };
        sync().await;

        // Each side changes the other's objects; one object changes on both sides, B last.
        let shared = on_a[0].uuid;
        let find = |db: &DatabaseConnection, uuid: Uuid| {
            let db = db.clone();
            async move {
                use sea_orm::{ColumnTrait, QueryFilter};
                customer::Entity::find()
                    .filter(customer::Column::Uuid.eq(uuid))
                    .one(&db)
                    .await
                    .expect("find")
                    .expect("present")
            }
        };
        let update = |db: &DatabaseConnection, model: customer::Model, name: &str| {
            let db = db.clone();
            let name = name.to_owned();
            async move {
                let txn = write_txn(&db).await;
                let mut am = model.into_active_model();
                am.name = Set(name);
                am.update(&txn).await.expect("update");
                txn.commit().await.expect("commit");
            }
        };
        update(&b.db, find(&b.db, on_a[1].uuid).await, "b changed a1").await;
        update(&a.db, find(&a.db, on_b[1].uuid).await, "a changed b1").await;
        update(&a.db, find(&a.db, shared).await, "a's version").await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        update(&b.db, find(&b.db, shared).await, "b's version").await;
        let txn = write_txn(&a.db).await;
        find(&a.db, on_b[2].uuid)
            .await
            .into_active_model()
            .delete(&txn)
            .await
            .expect("delete");
        txn.commit().await.expect("commit");
        sync().await;

        assert_equal(&a_to_b, &a.db, "two-way, A against B").await;
        assert_equal(&b_to_a, &b.db, "two-way, B against A").await;
        assert_eq!(
            find(&a.db, shared).await.name,
            "b's version",
            "the later write wins"
        );
        assert_eq!(find(&a.db, on_a[1].uuid).await.name, "b changed a1");

        // No echo: each side holds its own events plus, at most once each, the other side's.
        let count = |db: &DatabaseConnection, client: Option<&'static str>| {
            let db = db.clone();
            async move {
                events(&db)
                    .await
                    .iter()
                    .filter(|e| e.client_id.as_deref() == client)
                    .count()
            }
        };
        let (a_local, b_local) = (count(&a.db, None).await, count(&b.db, None).await);
        let (a_from_b, b_from_a) = (
            count(&a.db, Some("from-b")).await,
            count(&b.db, Some("from-a")).await,
        );
        assert!(
            a_from_b <= b_local && b_from_a <= a_local,
            "{a_from_b} {b_local} {b_from_a} {a_local}"
        );
        assert_eq!(
            events(&a.db).await.len(),
            a_local + a_from_b,
            "nothing else on A"
        );
        sync().await;
        assert_eq!(
            count(&a.db, Some("from-b")).await,
            a_from_b,
            "quiet after syncing"
        );
        assert_eq!(
            count(&b.db, Some("from-a")).await,
            b_from_a,
            "quiet after syncing"
        );
        println!(
            "two-way sqlite <-> {}: A {a_local} local + {a_from_b} from B, B {b_local} local + {b_from_a} from A: equal, no echo",
            backend.name()
        );
    }
}

/// Writes a raw event straight into `distributes` (as a foreign producer or a broken row would).
async fn raw_event(
    db: &DatabaseConnection,
    type_name: &str,
    id: &str,
    action: Action,
    changes: serde_json::Value,
) {
    distribute::ActiveModel {
        distributed_type: Set(type_name.to_owned()),
        distributed_id: Set(id.to_owned()),
        action: Set(action.as_str().to_owned()),
        changes: Set(changes),
        error: Set(false),
        created_at: Set(chrono::Utc::now()),
        format: Set(1),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("raw event");
}

/// The dead deliveries of `consumer`: (event id, last error).
async fn dead(db: &DatabaseConnection, consumer: &str) -> Vec<String> {
    failures(db, consumer)
        .await
        .into_iter()
        .filter(|f| f.contains(" dead: "))
        .collect()
}

/// The replica's older `Customer`: the source has since added `note`.
mod old_customer {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "customers")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(unique)]
        pub uuid: Uuid,
        pub name: String,
        #[sea_orm(column_type = "Decimal(Some((12, 2)))")]
        pub credit: Decimal,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    acts_as_distributed::acts_as_distributed!(type_name = "Customer");
}

async fn customer_named(db: &DatabaseConnection, name: &str) -> Option<customer::Model> {
    use sea_orm::{ColumnTrait, QueryFilter};
    customer::Entity::find()
        .filter(customer::Column::Name.eq(name))
        .one(db)
        .await
        .expect("read customers")
}

#[tokio::test]
async fn bad_events_die_with_a_clear_error_and_the_rest_flows() {
    for backend in backends() {
        let source = TestDb::new(&Backend::Sqlite).await;
        let replica = TestDb::new(&backend).await;
        let replicator = replicator(&replica.db);
        let id = || Uuid::new_v4().to_string();
        raw_event(&source.db, "Ghost", "g1", Action::Create, json!({"x": 1})).await;
        raw_event(
            &source.db,
            "Customer",
            &id(),
            Action::Create,
            json!({"name": "bad value", "credit": "not a number"}),
        )
        .await;
        raw_event(
            &source.db,
            "Customer",
            &id(),
            Action::Create,
            json!({"name": "unknown column", "credit": "1.00", "loyalty": 3}),
        )
        .await;
        raw_event(
            &source.db,
            "Customer",
            "not-a-uuid",
            Action::Update,
            json!({"name": "bad id"}),
        )
        .await;
        raw_event(
            &source.db,
            "Customer",
            &id(),
            Action::Create,
            json!({"name": "fine", "credit": "2.50"}),
        )
        .await;
        drain(&replicator, &source.db, "replica").await;

        let dead = dead(&source.db, "replica").await;
        let expect = [
            "type `Ghost` is not registered",
            "Customer column `credit`: cannot read \"not a number\"",
            "Customer has no column `loyalty` (value 3)",
            "Customer: cannot read the id `not-a-uuid`",
        ];
        assert_eq!(dead.len(), expect.len(), "{dead:?}");
        for (error, expected) in dead.iter().zip(expect) {
            assert!(error.contains(expected), "{error} should say {expected}");
        }
        assert!(
            customer_named(&replica.db, "fine").await.is_some(),
            "later events flow"
        );
        assert!(customer_named(&replica.db, "bad value").await.is_none());
        println!(
            "{}: {} bad events dead with clear errors, the good one applied",
            backend.name(),
            dead.len()
        );
    }
}

#[tokio::test]
async fn schema_changes_follow_the_unknown_columns_policy() {
    for backend in backends() {
        let source = TestDb::new(&Backend::Sqlite).await;
        let replica = TestDb::new(&backend).await;
        let id = Uuid::new_v4();
        raw_event(
            &source.db,
            "Customer",
            &id.to_string(),
            Action::Create,
            json!({"uuid": id, "name": "newer", "credit": "1.00", "note": "added on the source"}),
        )
        .await;

        // A column added on the source that the replica's entity lacks: dead by default...
        let failing = Replicator::builder(replica.db.clone())
            .entity::<old_customer::Entity>()
            .build()
            .expect("replicator");
        drain(&failing, &source.db, "strict").await;
        let dead = dead(&source.db, "strict").await;
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert!(
            dead[0].contains("has no column `note` (value \"added on the source\")"),
            "{dead:?}"
        );
        assert!(customer_named(&replica.db, "newer").await.is_none());

        // ...or left out with UnknownColumns::Ignore.
        let ignoring = Replicator::builder(replica.db.clone())
            .entity::<old_customer::Entity>()
            .unknown_columns(UnknownColumns::Ignore)
            .build()
            .expect("replicator");
        drain(&ignoring, &source.db, "lenient").await;
        assert!(failures(&source.db, "lenient").await.is_empty());
        let row = customer_named(&replica.db, "newer").await.expect("applied");
        assert_eq!(row.note, None, "the unknown column is left out");

        // A column added on the replica with a default: events without it apply, the default stays.
        replica
            .db
            .execute_unprepared(
                "ALTER TABLE customers ADD COLUMN region VARCHAR(20) NOT NULL DEFAULT 'eu'",
            )
            .await
            .expect("add a column on the replica");
        let id2 = Uuid::new_v4();
        raw_event(
            &source.db,
            "Customer",
            &id2.to_string(),
            Action::Create,
            json!({"uuid": id2, "name": "second", "credit": "1.00"}),
        )
        .await;
        drain(&ignoring, &source.db, "lenient").await;
        let region = replica
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                replica.db.get_database_backend(),
                "SELECT region FROM customers WHERE name = 'second'",
            ))
            .await
            .expect("read")
            .expect("row")
            .try_get_by_index::<String>(0)
            .expect("region");
        assert_eq!(region, "eu");

        // A column the source no longer sends: the replica keeps its value.
        raw_event(
            &source.db,
            "Customer",
            &id.to_string(),
            Action::Update,
            json!({"name": "renamed"}),
        )
        .await;
        let full = Replicator::builder(replica.db.clone())
            .entity::<customer::Entity>()
            .build()
            .expect("replicator");
        drain(&full, &source.db, "full").await;
        let row = customer_named(&replica.db, "renamed")
            .await
            .expect("renamed");
        assert_eq!(row.note.as_deref(), Some("added on the source"), "kept");
    }
}

#[tokio::test]
async fn configuration_mistakes_are_clear() {
    let db = TestDb::new(&Backend::Sqlite).await;
    let none = Replicator::builder(db.db.clone())
        .build()
        .expect_err("no entities");
    assert!(none.to_string().contains("register them"), "{none}");
    let twice = Replicator::builder(db.db.clone())
        .entity::<customer::Entity>()
        .entity::<customer::Entity>()
        .build()
        .expect_err("twice");
    assert!(twice.to_string().contains("`Customer`"), "{twice}");
    let echo = Replicator::builder(db.db.clone())
        .entity::<customer::Entity>()
        .record_as("x")
        .skip_client_id("x")
        .build()
        .expect_err("echo");
    assert!(echo.to_string().contains("record_as"), "{echo}");
}
