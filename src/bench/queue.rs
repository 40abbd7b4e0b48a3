//! The queue benches' settings, backlog and tracking: `queue_drain`, `queue_pickup`,
//! `queue_claim_cost` and `queue_profile` share them.

use super::sql::{analyze, exec, scalar_sql};
use super::{Result, knob, knob_or_zero, on_each_backend, progress};
use crate::testdb::Backend;
use acts_as_distributed::{Event, HandlerError, Queue, Worker};
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, InsertStatement, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The settings of a queue bench, from the environment; each bench reads the ones it uses.
#[derive(Clone, Copy, Debug)]
pub struct Knobs {
    /// `BENCH_BACKLOG` (200000): events in the drained backlog.
    pub backlog: usize,
    /// `BENCH_OBJECTS` (1000): objects the events are spread over.
    pub objects: usize,
    /// `BENCH_BATCH` (500): the library's batch size (at most 1000) and the baseline's LIMIT.
    pub batch: usize,
    /// `BENCH_ROUNDS` (1): rounds of drains.
    pub rounds: usize,
    /// `BENCH_DRAIN_POLL_MS` (100): poll interval of the drain workers.
    pub drain_poll: Duration,
    /// `BENCH_SAMPLES` (200): pickup latency samples.
    pub samples: usize,
    /// `BENCH_POLL_MS` (50): poll interval of the latency workers.
    pub latency_poll: Duration,
    /// `BENCH_HISTORY_SMALL` (10000): processed events of the small claim-cost database.
    pub history_small: usize,
    /// `BENCH_HISTORY` (2000000): processed events of the large claim-cost database.
    pub history: usize,
    /// `BENCH_CLAIMS` (20): timed `run_once` calls per claim-cost database.
    pub claims: usize,
    /// `BENCH_PROFILE_EVENTS` (20000; 0 turns it off): events of the statement profile.
    pub profile_events: usize,
    /// `BENCH_CONCURRENCY` (1): above 1, also drain with 4 workers of this concurrency each.
    pub concurrency: usize,
}

impl Knobs {
    /// The settings from the environment variables, or their defaults.
    pub fn from_env() -> Self {
        Knobs {
            backlog: knob("BENCH_BACKLOG", 200_000),
            objects: knob("BENCH_OBJECTS", 1_000),
            batch: knob("BENCH_BATCH", 500),
            rounds: knob("BENCH_ROUNDS", 1),
            drain_poll: Duration::from_millis(knob("BENCH_DRAIN_POLL_MS", 100) as u64),
            samples: knob("BENCH_SAMPLES", 200),
            latency_poll: Duration::from_millis(knob("BENCH_POLL_MS", 50) as u64),
            history_small: knob("BENCH_HISTORY_SMALL", 10_000),
            history: knob("BENCH_HISTORY", 2_000_000),
            claims: knob("BENCH_CLAIMS", 20),
            profile_events: knob_or_zero("BENCH_PROFILE_EVENTS", 20_000),
            concurrency: knob("BENCH_CONCURRENCY", 1),
        }
    }

    /// Runs `bench` with these settings on each backend, as [`on_each_backend`] does, first
    /// saying the settings on stderr.
    pub fn on_each_backend<T>(
        &self,
        mut bench: impl AsyncFnMut(&Backend, &Knobs) -> Result<T>,
    ) -> Result<(Vec<T>, Duration)> {
        on_each_backend(async |backend| {
            progress(&format!("{}: {self:?}", backend.name()));
            bench(backend, self).await
        })
    }
}

/// The columns of `distributes` a bench writes for a new event.
pub const EVENT_COLUMNS: [&str; 5] = [
    "distributed_type",
    "distributed_id",
    "action",
    "changes",
    "created_at",
];

/// An `INSERT INTO distributes` of [`EVENT_COLUMNS`] (then `extra`), rows or a SELECT to follow.
pub fn insert_events(extra: &[&'static str]) -> InsertStatement {
    let mut insert = Query::insert();
    insert
        .into_table("distributes")
        .columns(EVENT_COLUMNS.iter().chain(extra).copied());
    insert
}

/// The `changes` of event `k`.
pub fn payload(k: usize) -> serde_json::Value {
    serde_json::json!({
        "n": k,
        "title": format!("Note {k}"),
        "body": "The quick brown fox jumps over the lazy dog.",
    })
}

/// Writes `n` events straight into `distributes` (no sequencing), 500 rows per INSERT and
/// 10,000 per transaction. Event `first + i` belongs to object `o{(first + i) % objects}`.
pub async fn seed_events(
    db: &DatabaseConnection,
    n: usize,
    objects: usize,
    first: usize,
) -> Result<()> {
    let now = Utc::now();
    let mut start = 0;
    while start < n {
        let txn = db.begin().await?;
        for _ in 0..20 {
            if start >= n {
                break;
            }
            let end = (start + 500).min(n);
            let mut insert = insert_events(&[]);
            for k in first + start..first + end {
                insert.values([
                    "Note".into(),
                    format!("o{}", k % objects).into(),
                    if k < objects { "create" } else { "update" }.into(),
                    payload(k).into(),
                    now.into(),
                ])?;
            }
            exec(&txn, &insert).await?;
            start = end;
        }
        txn.commit().await?;
    }
    Ok(())
}

/// Generates `n` already-sequenced events (`seq` 1..=n) in the server, 100,000 per statement,
/// and sets the sequencer's `last_seq` to `n`.
pub async fn generate_history(db: &DatabaseConnection, n: usize, objects: usize) -> Result<()> {
    db.execute_unprepared("CREATE TABLE bench_digits (x INTEGER NOT NULL)")
        .await?;
    db.execute_unprepared(
        "INSERT INTO bench_digits (x) VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)",
    )
    .await?;
    let (id, changes) = match db.get_database_backend() {
        DbBackend::MySql => (
            format!("CONCAT('o', n % {objects})"),
            "JSON_OBJECT('n', n, 'title', CONCAT('Note ', n), 'body', 'The quick brown fox jumps over the lazy dog.')",
        ),
        DbBackend::Postgres => (
            format!("'o' || (n % {objects})"),
            "jsonb_build_object('n', n, 'title', 'Note ' || n, 'body', 'The quick brown fox jumps over the lazy dog.')",
        ),
        _ => (
            format!("'o' || (n % {objects})"),
            "json_object('n', n, 'title', 'Note ' || n, 'body', 'The quick brown fox jumps over the lazy dog.')",
        ),
    };
    let now = Utc::now();
    for base in (0..n).step_by(100_000) {
        let end = (base + 100_000).min(n);
        // The numbers base..end, from the cross product of five digit tables.
        let mut nums = Query::select();
        nums.expr_as(
            Expr::cust(format!(
                "{base} + a.x + 10 * b.x + 100 * c.x + 1000 * d.x + 10000 * e.x"
            )),
            "n",
        );
        for alias in ["a", "b", "c", "d", "e"] {
            nums.from_as("bench_digits", alias);
        }
        let mut rows = Query::select();
        rows.exprs([
            Expr::cust("'Note'"),
            Expr::cust(id.clone()),
            Expr::cust("'update'"),
            Expr::cust(changes),
            Expr::value(now),
            Expr::cust("n + 1"),
        ])
        .from_subquery(nums, "nums")
        .and_where(Expr::cust(format!("n < {end}")));
        let mut insert = insert_events(&["seq"]);
        insert.select_from(rows)?;
        exec(db, &insert).await?;
    }
    exec(
        db,
        Query::update()
            .table("distribute_sequencer")
            .value("last_seq", n as i64)
            .and_where(Expr::col("id").eq(1)),
    )
    .await?;
    Ok(())
}

/// The backlog: its id range and size.
#[derive(Clone, Copy, Debug)]
pub struct Backlog {
    /// The first event's id.
    pub first_id: i64,
    /// The last event's id.
    pub last_id: i64,
    /// How many events.
    pub len: usize,
}

/// How long the backlog took to write and to sequence (not part of any timed figure).
#[derive(Clone, Copy, Debug)]
pub struct Seeding {
    /// Events written.
    pub events: usize,
    /// Seconds of [`seed_events`].
    pub seed_s: f64,
    /// Seconds of `Queue::sequence`.
    pub sequence_s: f64,
}

/// Writes the backlog of `BENCH_BACKLOG` events over `BENCH_OBJECTS` objects into `db`'s
/// `distributes` and numbers it with `Queue::sequence`, then analyzes the table.
pub async fn write_backlog(
    db: &DatabaseConnection,
    name: &str,
    knobs: &Knobs,
) -> Result<(Backlog, Seeding)> {
    let start = Instant::now();
    seed_events(db, knobs.backlog, knobs.objects, 0).await?;
    let seed_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let sequenced = Queue::new(db.clone()).sequence().await?;
    let sequence_s = start.elapsed().as_secs_f64();
    if usize::try_from(sequenced).ok() != Some(knobs.backlog) {
        return Err(format!("{name}: sequenced {sequenced} of {} events", knobs.backlog).into());
    }
    analyze(db, "distributes").await?;
    let first_id = scalar_sql(db, "SELECT MIN(id) FROM distributes")
        .await?
        .ok_or("no events")?;
    let last_id = scalar_sql(db, "SELECT MAX(id) FROM distributes")
        .await?
        .ok_or("no events")?;
    progress(&format!(
        "  {name}: {} events seeded in {seed_s:.1}s, sequenced in {sequence_s:.1}s",
        knobs.backlog
    ));
    let backlog = Backlog {
        first_id,
        last_id,
        len: knobs.backlog,
    };
    let seeding = Seeding {
        events: knobs.backlog,
        seed_s,
        sequence_s,
    };
    Ok((backlog, seeding))
}

/// Which backlog events a handler has seen.
pub struct Tracker {
    first_id: i64,
    flags: Vec<AtomicBool>,
    seen: AtomicUsize,
    duplicates: AtomicUsize,
    target: usize,
    done: Notify,
}

impl Tracker {
    /// A tracker of the events `first_id..=last_id`, done once `target` of them were seen.
    pub fn new(backlog: Backlog, target: usize) -> Self {
        let len = usize::try_from(backlog.last_id - backlog.first_id + 1).unwrap_or(0);
        Tracker {
            first_id: backlog.first_id,
            flags: (0..len).map(|_| AtomicBool::new(false)).collect(),
            seen: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            target,
            done: Notify::new(),
        }
    }

    /// Marks the event `id` seen (ids outside the range are ignored).
    pub fn see(&self, id: i64) {
        let Some(flag) = usize::try_from(id - self.first_id)
            .ok()
            .and_then(|i| self.flags.get(i))
        else {
            return;
        };
        if flag.swap(true, Ordering::AcqRel) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        } else if self.seen.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            self.done.notify_one();
        }
    }

    /// Events a handler got again.
    pub fn duplicates(&self) -> usize {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Waits until every event was seen; fails after two minutes without progress.
    pub async fn wait(&self, what: &str) -> Result<()> {
        let mut last = 0;
        let mut still = 0;
        while self.seen.load(Ordering::Acquire) < self.target {
            tokio::select! {
                _ = self.done.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(10)) => {
                    let now = self.seen.load(Ordering::Acquire);
                    progress(&format!("    {what}: {now} of {} events", self.target));
                    if now == last {
                        still += 1;
                        if still >= 12 {
                            return Err(format!("{what}: stalled at {now} of {} events", self.target).into());
                        }
                    } else {
                        still = 0;
                    }
                    last = now;
                }
            }
        }
        Ok(())
    }
}

/// A worker of `consumer` (from the oldest event, `listen(false)`, batch `BENCH_BATCH`, polling
/// every `BENCH_DRAIN_POLL_MS` when idle) whose no-op handler marks each event in `tracker`.
pub fn tracked_worker(
    db: &DatabaseConnection,
    consumer: &str,
    concurrency: usize,
    knobs: &Knobs,
    tracker: &Arc<Tracker>,
) -> Result<Worker> {
    let tracker = tracker.clone();
    Ok(Worker::builder(db.clone(), consumer)
        .batch_size(knobs.batch as u64)
        .concurrency(concurrency)
        .poll_interval(knobs.drain_poll)
        .listen(false)
        .handler(move |e: Event| {
            tracker.see(e.id);
            async { Ok::<_, HandlerError>(()) }
        })
        .build()?)
}
