//! Run with: `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo bench --bench queue`
//!
//! The queue's throughput, pickup latency, claim cost and memory, per backend, with a raw-SQL
//! job-queue baseline measured side by side in the same run and on the same database.
//!
//! 1. **Drain.** A backlog of `BENCH_BACKLOG` events over `BENCH_OBJECTS` objects (event `i`
//!    belongs to object `o{i % objects}`) is written straight into `distributes` with multi-row
//!    INSERTs and numbered by the sequencer (`Queue::sequence`); neither is timed, but the
//!    sequencer's time is reported on its own. Each library variant is a fresh consumer
//!    (`StartFrom::Oldest`) over that same backlog: its workers are built, then the clock runs
//!    from `spawn()` until a no-op handler has seen every event once (worker shutdown is not
//!    timed). The baseline copies the same rows into `bench_jobs` (same payload columns plus
//!    `processed_at`, with an index on the pending rows; not timed) and runs 1 or 2 clients, each
//!    looping: `BEGIN`; `SELECT id .. WHERE processed_at IS NULL ORDER BY id LIMIT <batch> FOR
//!    UPDATE SKIP LOCKED` (SQLite: no `FOR UPDATE SKIP LOCKED`, and `BEGIN IMMEDIATE` so that two
//!    clients queue for the write lock instead of failing to upgrade); `UPDATE bench_jobs SET
//!    processed_at = <now> WHERE id IN (..)`; `COMMIT`. A round runs every variant once, in an
//!    order that rotates from round to round; each figure is the median over rounds. The library
//!    workers run with `listen(false)` (nothing is inserted during a drain) and poll every
//!    `BENCH_DRAIN_POLL_MS` when a claim comes back empty. `seen twice` counts events a handler
//!    got again (an expired lease); `library warnings` counts what the library logged at `WARN`
//!    (such as a failed worker step), the first 20 of which go to stderr.
//! 2. **Memory and CPU.** Before each drain the bench resets the process's peak RSS (`5` into
//!    `/proc/self/clear_refs`) and reads `VmRSS`; after the drain it reads `VmHWM`. This is the
//!    whole bench process (its runtime, pools and bookkeeping), so the RSS before is the baseline.
//!    `bench CPU` is the process's user + system time (`/proc/self/stat`) over the drain, per
//!    event: the client side on PostgreSQL and MariaDB; on SQLite it includes the database engine.
//! 3. **Pickup latency.** A consumer that starts at `StartFrom::Now` idles; a writer commits
//!    `BENCH_SAMPLES` events one at a time (one autocommit INSERT each, 3–13 ms apart) and
//!    records the instant the INSERT returned; the handler records the instant it is called;
//!    matched by event id. PostgreSQL with `LISTEN`/`NOTIFY` (poll interval 10 s) and every
//!    backend with polling only (`listen(false)`, poll interval `BENCH_POLL_MS`).
//! 4. **Claim cost.** Two fresh databases: one with `BENCH_HISTORY_SMALL` processed events, one
//!    with `BENCH_HISTORY`. The processed events are generated in the server (`INSERT .. SELECT`
//!    over a digits table) with `seq` already set; `distribute_sequencer.last_seq` and the
//!    consumer's `position` are then set past them with an `UPDATE`: the state a consumer is in
//!    after it has handled them and `advance` has deleted their `done` deliveries. Then
//!    `BENCH_CLAIMS + 1` batches of pending events are inserted and sequenced (not timed). Timed:
//!    `Worker::run_once` with a no-op handler, which claims and handles one batch. That is the
//!    whole cycle: register (2 statements), one empty sequencer transaction, the claim
//!    transaction, the handler calls, the ack and the advance. The first call per database is a
//!    warm-up; the calls alternate between the two databases. `idle` is `run_once` with nothing
//!    pending. The workers use a pool with sqlx statement logging on, so that the time of each
//!    statement per `run_once` is reported beside it (the logging costs both sides alike).
//! 5. **Where the time goes** (`BENCH_PROFILE_EVENTS` > 0). A second pool on the drain database
//!    with sqlx statement logging on; a `tracing` subscriber that listens only to `sqlx::query`
//!    adds up each statement's elapsed time (sqlx's own timer: from sending to the last row).
//!    One worker drains that many events, then one baseline client handles as many jobs. The
//!    logging slows both a little; the shares are what matters.
//!
//! Knobs (environment variables): `BENCH_BACKLOG` (default 200000), `BENCH_OBJECTS` (1000),
//! `BENCH_BATCH` (500: the library's batch size, at most 1000, and the baseline's LIMIT),
//! `BENCH_ROUNDS` (1), `BENCH_DRAIN_POLL_MS` (poll interval of the drain workers, 100),
//! `BENCH_CONCURRENCY` (1; above 1 adds a drain by 4 workers of that concurrency each),
//! `BENCH_SAMPLES` (200), `BENCH_POLL_MS` (poll interval of the latency workers, 50),
//! `BENCH_HISTORY` (2000000), `BENCH_HISTORY_SMALL` (10000), `BENCH_CLAIMS` (20),
//! `BENCH_PROFILE_EVENTS` (20000; 0 turns it off). SQLite always; PostgreSQL when
//! `TEST_POSTGRES_URL` is set; MySQL / MariaDB when `TEST_MYSQL_URL` is set. The tables go to
//! stdout, progress to stderr.

use acts_as_distributed::{Event, HandlerError, Queue, StartFrom, Worker, WorkerHandle};
use acts_as_distributed_suite::bench::{knob, median, progress, stmt};
use acts_as_distributed_suite::testdb::{Backend, TestDb, backends};
use chrono::Utc;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait, Value,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

/// The settings of one run.
#[derive(Clone, Copy, Debug)]
struct Knobs {
    backlog: usize,
    objects: usize,
    batch: usize,
    rounds: usize,
    drain_poll: Duration,
    samples: usize,
    latency_poll: Duration,
    history_small: usize,
    history: usize,
    claims: usize,
    profile_events: usize,
    /// Above 1: also drain with 4 workers of this concurrency each.
    concurrency: usize,
}

impl Knobs {
    fn from_env() -> Self {
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
            profile_events: std::env::var("BENCH_PROFILE_EVENTS")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(20_000),
            concurrency: knob("BENCH_CONCURRENCY", 1),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SQL helpers

fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

async fn exec(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Result<u64> {
    let b = db.get_database_backend();
    Ok(db.execute_raw(stmt(b, sql, values)).await?.rows_affected())
}

/// The first column of the first row, as an integer (NULL as `None`).
async fn scalar(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Result<Option<i64>> {
    let b = db.get_database_backend();
    let row = db
        .query_one_raw(stmt(b, sql, values))
        .await?
        .ok_or("no row")?;
    Ok(row.try_get_by_index::<Option<i64>>(0)?)
}

/// `ANALYZE` on the server backends, so that plans do not depend on when autovacuum or InnoDB's
/// background statistics last ran. SQLite keeps its defaults (nothing analyzes it on its own).
async fn analyze(db: &DatabaseConnection, table: &str) -> Result<()> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            db.execute_unprepared(&format!("ANALYZE {table}")).await?;
        }
        DbBackend::MySql => {
            db.execute_unprepared(&format!("ANALYZE TABLE {table}"))
                .await?;
        }
        _ => {}
    }
    Ok(())
}

fn payload(k: usize) -> serde_json::Value {
    serde_json::json!({
        "n": k,
        "title": format!("Note {k}"),
        "body": "The quick brown fox jumps over the lazy dog.",
    })
}

/// Writes `n` events straight into `distributes` (no sequencing), 500 rows per INSERT and
/// 10,000 per transaction. Event `first + i` belongs to object `o{(first + i) % objects}`.
async fn seed_events(
    db: &DatabaseConnection,
    n: usize,
    objects: usize,
    first: usize,
) -> Result<()> {
    let b = db.get_database_backend();
    let now = Utc::now();
    let mut start = 0;
    while start < n {
        let txn = db.begin().await?;
        for _ in 0..20 {
            if start >= n {
                break;
            }
            let end = (start + 500).min(n);
            let mut values: Vec<Value> = Vec::with_capacity((end - start) * 5);
            for i in start..end {
                let k = first + i;
                values.push("Note".into());
                values.push(format!("o{}", k % objects).into());
                values.push(if k < objects { "create" } else { "update" }.into());
                values.push(payload(k).into());
                values.push(now.into());
            }
            let tuples = vec!["(?, ?, ?, ?, ?)"; end - start].join(", ");
            txn.execute_raw(stmt(
                b,
                &format!(
                    "INSERT INTO distributes (distributed_type, distributed_id, action, changes, \
                     created_at) VALUES {tuples}"
                ),
                values,
            ))
            .await?;
            start = end;
        }
        txn.commit().await?;
    }
    Ok(())
}

/// Generates `n` already-sequenced events (`seq` 1..=n) in the server, 100,000 per statement,
/// and sets the sequencer's `last_seq` to `n`.
async fn generate_history(db: &DatabaseConnection, n: usize, objects: usize) -> Result<()> {
    let b = db.get_database_backend();
    db.execute_unprepared("CREATE TABLE bench_digits (x INTEGER NOT NULL)")
        .await?;
    db.execute_unprepared(
        "INSERT INTO bench_digits (x) VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)",
    )
    .await?;
    let (id, changes) = match b {
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
        exec(
            db,
            &format!(
                "INSERT INTO distributes (distributed_type, distributed_id, action, changes, created_at, seq) \
                 SELECT 'Note', {id}, 'update', {changes}, ?, n + 1 FROM \
                 (SELECT {base} + a.x + 10 * b.x + 100 * c.x + 1000 * d.x + 10000 * e.x AS n \
                  FROM bench_digits a, bench_digits b, bench_digits c, bench_digits d, bench_digits e) nums \
                 WHERE n < {end}"
            ),
            vec![now.into()],
        )
        .await?;
    }
    exec(
        db,
        "UPDATE distribute_sequencer SET last_seq = ? WHERE id = 1",
        vec![(n as i64).into()],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Memory

/// A field of `/proc/self/status` in MiB (`VmRSS`, `VmHWM`).
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time of the whole process so far (user + system), from `/proc/self/stat` (in USER_HZ
/// ticks, 100 per second on Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resets `VmHWM` to the current RSS (Linux 4.0+). Returns whether it worked.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

// ---------------------------------------------------------------------------------------------
// Drain

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Drain {
    /// The library: this many workers of one consumer, each with this concurrency.
    Library { workers: usize, concurrency: usize },
    /// The raw-SQL baseline with this many clients.
    Raw { clients: usize },
}

impl Drain {
    fn label(self) -> String {
        match self {
            Drain::Library {
                workers,
                concurrency,
            } => format!(
                "library, {workers} worker{}, concurrency {concurrency}",
                if workers == 1 { "" } else { "s" }
            ),
            Drain::Raw { clients } => format!(
                "raw SQL, {clients} client{}",
                if clients == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The drains of one round, in the order of the first round.
fn drains(knobs: &Knobs) -> Vec<Drain> {
    let mut v = vec![
        Drain::Raw { clients: 1 },
        Drain::Library {
            workers: 1,
            concurrency: 1,
        },
        Drain::Raw { clients: 2 },
        Drain::Library {
            workers: 2,
            concurrency: 1,
        },
        Drain::Library {
            workers: 4,
            concurrency: 1,
        },
    ];
    if knobs.concurrency > 1 {
        v.push(Drain::Library {
            workers: 4,
            concurrency: knobs.concurrency,
        });
    }
    v
}

/// One drain: events per second and memory.
#[derive(Clone, Copy, Debug)]
struct DrainRun {
    rate: f64,
    rss_before: Option<f64>,
    rss_peak: Option<f64>,
    duplicates: usize,
    /// Warnings the library logged during the drain (failed worker steps and the like).
    warnings: usize,
    /// CPU time of the bench process per event, in microseconds.
    cpu_us: Option<f64>,
}

/// Which backlog events a handler has seen.
struct Tracker {
    first_id: i64,
    flags: Vec<AtomicBool>,
    seen: AtomicUsize,
    duplicates: AtomicUsize,
    target: usize,
    done: Notify,
}

impl Tracker {
    fn new(first_id: i64, last_id: i64, target: usize) -> Self {
        let len = usize::try_from(last_id - first_id + 1).unwrap_or(0);
        Tracker {
            first_id,
            flags: (0..len).map(|_| AtomicBool::new(false)).collect(),
            seen: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            target,
            done: Notify::new(),
        }
    }

    fn see(&self, id: i64) {
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

    /// Waits until every event was seen; fails after two minutes without progress.
    async fn wait(&self, what: &str) -> Result<()> {
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

/// The backlog: its id range and size.
#[derive(Clone, Copy, Debug)]
struct Backlog {
    first_id: i64,
    last_id: i64,
    len: usize,
}

async fn library_drain(
    db: &DatabaseConnection,
    consumer: &str,
    workers: usize,
    concurrency: usize,
    knobs: &Knobs,
    backlog: Backlog,
) -> Result<DrainRun> {
    let tracker = Arc::new(Tracker::new(backlog.first_id, backlog.last_id, backlog.len));
    let mut built = Vec::with_capacity(workers);
    for _ in 0..workers {
        let tracker = tracker.clone();
        built.push(
            Worker::builder(db.clone(), consumer)
                .batch_size(knobs.batch as u64)
                .concurrency(concurrency)
                .poll_interval(knobs.drain_poll)
                .listen(false)
                .handler(move |e: Event| {
                    tracker.see(e.id);
                    async { Ok::<_, HandlerError>(()) }
                })
                .build()?,
        );
    }
    let warnings = WARNINGS.load(Ordering::Relaxed);
    let reset = reset_peak_rss();
    let rss_before = status_mib("VmRSS:");
    let cpu = cpu_seconds();
    let start = Instant::now();
    let handles: Vec<WorkerHandle> = built.into_iter().map(Worker::spawn).collect();
    tracker.wait(consumer).await?;
    let elapsed = start.elapsed();
    let cpu_us = cpu_per_event(cpu, backlog.len);
    let rss_peak = if reset { status_mib("VmHWM:") } else { None };
    for h in handles {
        h.shutdown(Duration::from_secs(30)).await?;
    }
    Ok(DrainRun {
        rate: backlog.len as f64 / elapsed.as_secs_f64(),
        rss_before,
        rss_peak,
        duplicates: tracker.duplicates.load(Ordering::Relaxed),
        warnings: WARNINGS.load(Ordering::Relaxed) - warnings,
        cpu_us,
    })
}

/// Microseconds of process CPU per event since `before`.
fn cpu_per_event(before: Option<f64>, events: usize) -> Option<f64> {
    Some((cpu_seconds()? - before?) * 1e6 / events as f64)
}

/// (Re)creates `bench_jobs` holding a copy of the backlog, all pending.
async fn fill_jobs(db: &DatabaseConnection, backlog: Backlog) -> Result<()> {
    let b = db.get_database_backend();
    // One connection for the whole rebuild: another SQLite connection with a stale schema cache
    // would still see the dropped index.
    let txn = db.begin().await?;
    txn.execute_unprepared("DROP TABLE IF EXISTS bench_jobs")
        .await?;
    let (create, index) = match b {
        DbBackend::Postgres => (
            "CREATE TABLE bench_jobs (id BIGINT PRIMARY KEY, distributed_type VARCHAR(255) NOT NULL, \
             distributed_id VARCHAR(255) NOT NULL, action VARCHAR(16) NOT NULL, changes JSONB NOT NULL, \
             client_id VARCHAR(255), messages TEXT, created_at TIMESTAMPTZ NOT NULL, processed_at TIMESTAMPTZ)",
            "CREATE INDEX bench_jobs_pending ON bench_jobs (id) WHERE processed_at IS NULL",
        ),
        DbBackend::MySql => (
            "CREATE TABLE bench_jobs (id BIGINT PRIMARY KEY, distributed_type VARCHAR(255) NOT NULL, \
             distributed_id VARCHAR(255) NOT NULL, action VARCHAR(16) NOT NULL, changes JSON NOT NULL, \
             client_id VARCHAR(255), messages TEXT, created_at DATETIME(6) NOT NULL, processed_at DATETIME(6) NULL)",
            "CREATE INDEX bench_jobs_pending ON bench_jobs (processed_at, id)",
        ),
        _ => (
            "CREATE TABLE bench_jobs (id INTEGER PRIMARY KEY, distributed_type VARCHAR(255) NOT NULL, \
             distributed_id VARCHAR(255) NOT NULL, action VARCHAR(16) NOT NULL, changes TEXT NOT NULL, \
             client_id VARCHAR(255), messages TEXT, created_at TEXT NOT NULL, processed_at TEXT)",
            "CREATE INDEX bench_jobs_pending ON bench_jobs (id) WHERE processed_at IS NULL",
        ),
    };
    txn.execute_unprepared(create).await?;
    exec(
        &txn,
        "INSERT INTO bench_jobs (id, distributed_type, distributed_id, action, changes, client_id, \
         messages, created_at) SELECT id, distributed_type, distributed_id, action, changes, client_id, \
         messages, created_at FROM distributes WHERE id >= ? AND id <= ?",
        vec![backlog.first_id.into(), backlog.last_id.into()],
    )
    .await?;
    txn.execute_unprepared(index).await?;
    txn.commit().await?;
    analyze(db, "bench_jobs").await?;
    Ok(())
}

/// One baseline client: claims and marks batches until none is left (or `limit` jobs).
async fn raw_client(db: DatabaseConnection, batch: usize, limit: usize) -> Result<usize> {
    let b = db.get_database_backend();
    let select = format!(
        "SELECT id FROM bench_jobs WHERE processed_at IS NULL ORDER BY id LIMIT {batch}{}",
        if b == DbBackend::Sqlite {
            ""
        } else {
            " FOR UPDATE SKIP LOCKED"
        }
    );
    let mut done = 0;
    while done < limit {
        let txn = if b == DbBackend::Sqlite {
            db.begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?
        } else {
            db.begin().await?
        };
        let rows = txn
            .query_all_raw(Statement::from_string(b, select.clone()))
            .await?;
        if rows.is_empty() {
            txn.commit().await?;
            break;
        }
        let mut values: Vec<Value> = Vec::with_capacity(rows.len() + 1);
        values.push(Utc::now().into());
        for r in &rows {
            values.push(r.try_get_by_index::<i64>(0)?.into());
        }
        txn.execute_raw(stmt(
            b,
            &format!(
                "UPDATE bench_jobs SET processed_at = ? WHERE id IN ({})",
                marks(rows.len())
            ),
            values,
        ))
        .await?;
        txn.commit().await?;
        done += rows.len();
    }
    Ok(done)
}

async fn raw_drain(
    db: &DatabaseConnection,
    clients: usize,
    knobs: &Knobs,
    backlog: Backlog,
) -> Result<DrainRun> {
    fill_jobs(db, backlog).await?;
    let reset = reset_peak_rss();
    let rss_before = status_mib("VmRSS:");
    let cpu = cpu_seconds();
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(raw_client(db.clone(), knobs.batch, usize::MAX)))
        .collect();
    let mut handled = 0;
    for t in tasks {
        handled += t.await??;
    }
    let elapsed = start.elapsed();
    let cpu_us = cpu_per_event(cpu, backlog.len);
    let rss_peak = if reset { status_mib("VmHWM:") } else { None };
    let left = scalar(
        db,
        "SELECT COUNT(*) FROM bench_jobs WHERE processed_at IS NULL",
        vec![],
    )
    .await?;
    if handled != backlog.len || left != Some(0) {
        return Err(format!(
            "raw drain: handled {handled} of {} jobs, {left:?} left",
            backlog.len
        )
        .into());
    }
    Ok(DrainRun {
        rate: backlog.len as f64 / elapsed.as_secs_f64(),
        rss_before,
        rss_peak,
        duplicates: 0,
        warnings: 0,
        cpu_us,
    })
}

// ---------------------------------------------------------------------------------------------
// Pickup latency

/// Commits one event and returns its id.
async fn insert_one(db: &DatabaseConnection, i: usize) -> Result<i64> {
    let b = db.get_database_backend();
    let sql = "INSERT INTO distributes (distributed_type, distributed_id, action, changes, created_at) \
               VALUES (?, ?, 'update', ?, ?)";
    let values: Vec<Value> = vec![
        "Latency".into(),
        format!("l{}", i % 10).into(),
        payload(i).into(),
        Utc::now().into(),
    ];
    if b == DbBackend::MySql {
        let r = db.execute_raw(stmt(b, sql, values)).await?;
        Ok(i64::try_from(r.last_insert_id())?)
    } else {
        let row = db
            .query_one_raw(stmt(b, &format!("{sql} RETURNING id"), values))
            .await?
            .ok_or("no id returned")?;
        Ok(row.try_get_by_index::<i64>(0)?)
    }
}

struct LatencyLine {
    backend: &'static str,
    wake: &'static str,
    poll: Duration,
    samples: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

async fn pickup_latency(
    db: &DatabaseConnection,
    backend: &'static str,
    wake: &'static str,
    listen: bool,
    poll: Duration,
    knobs: &Knobs,
) -> Result<LatencyLine> {
    let consumer = format!("latency_{}", if listen { "notify" } else { "poll" });
    let started: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let worker = {
        let started = started.clone();
        Worker::builder(db.clone(), &consumer)
            .start_from(StartFrom::Now)
            .batch_size(knobs.batch as u64)
            .poll_interval(poll)
            .listen(listen)
            .handler(move |e: Event| {
                let at = Instant::now();
                started
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(e.id)
                    .or_insert(at);
                async { Ok::<_, HandlerError>(()) }
            })
            .build()?
    };
    let handle = worker.spawn();
    // Registered, idle and (with LISTEN) listening before the first sample.
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(
        db,
        "SELECT COUNT(*) FROM distribute_consumers WHERE name = ?",
        vec![consumer.as_str().into()],
    )
    .await?
        != Some(1)
    {
        if Instant::now() > deadline {
            return Err(format!("{consumer} did not register").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut committed = Vec::with_capacity(knobs.samples);
    for i in 0..knobs.samples {
        let id = insert_one(db, i).await?;
        committed.push((id, Instant::now()));
        tokio::time::sleep(Duration::from_millis(3 + (i as u64 * 7) % 11)).await;
    }
    let deadline = Instant::now() + poll + Duration::from_secs(30);
    loop {
        let seen = {
            let s = started.lock().unwrap_or_else(PoisonError::into_inner);
            committed
                .iter()
                .filter(|(id, _)| s.contains_key(id))
                .count()
        };
        if seen == committed.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{consumer}: saw {seen} of {} samples", committed.len()).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.shutdown(Duration::from_secs(10)).await?;
    let s = started.lock().unwrap_or_else(PoisonError::into_inner);
    let mut ms: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| {
            s.get(id)
                .map(|h| h.saturating_duration_since(*at).as_secs_f64() * 1e3)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    Ok(LatencyLine {
        backend,
        wake,
        poll,
        samples: ms.len(),
        p50: percentile(&ms, 50.0),
        p99: percentile(&ms, 99.0),
        max: ms.last().copied().unwrap_or(f64::NAN),
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// Claim cost

struct ClaimLine {
    backend: &'static str,
    small: usize,
    big: usize,
    small_ms: f64,
    big_ms: f64,
    small_max: f64,
    big_max: f64,
    small_idle: f64,
    big_idle: f64,
    setup_s: f64,
    /// Per statement: calls and seconds over the timed calls, small and large history.
    small_profile: HashMap<String, (usize, f64)>,
    big_profile: HashMap<String, (usize, f64)>,
    runs: usize,
}

/// A database of the claim-cost test and the worker that claims from it (through a pool with
/// statement logging, for the per-statement times).
struct HistoryDb {
    _t: TestDb,
    worker: Worker,
    profile: HashMap<String, (usize, f64)>,
}

/// A fresh database with `history` processed events and `BENCH_CLAIMS + 1` batches pending for
/// the consumer `claimer`, and a worker of that consumer.
async fn history_db(backend: &Backend, history: usize, knobs: &Knobs) -> Result<HistoryDb> {
    let t = TestDb::new(backend).await;
    let db = &t.db;
    generate_history(db, history, knobs.objects).await?;
    seed_events(db, (knobs.claims + 1) * knobs.batch, knobs.objects, history).await?;
    Queue::new(db.clone()).sequence().await?;
    analyze(db, "distributes").await?;
    Queue::new(db.clone())
        .register_consumer("claimer", StartFrom::Oldest)
        .await?;
    exec(
        db,
        "UPDATE distribute_consumers SET position = ? WHERE name = ?",
        vec![(history as i64).into(), "claimer".into()],
    )
    .await?;
    let mut options = ConnectOptions::new(t.url.clone());
    options.max_connections(4).sqlx_logging(true);
    let logged = Database::connect(options).await?;
    let worker = Worker::builder(logged, "claimer")
        .batch_size(knobs.batch as u64)
        .listen(false)
        .handler(|_e: Event| async { Ok::<_, HandlerError>(()) })
        .build()?;
    Ok(HistoryDb {
        _t: t,
        worker,
        profile: HashMap::new(),
    })
}

/// Times one `run_once`; with `pending`, it must have taken events, and its statements are added
/// to the database's profile.
async fn timed_run_once(h: &mut HistoryDb, pending: bool) -> Result<f64> {
    take_profile();
    PROFILING.store(true, Ordering::Release);
    let start = Instant::now();
    let n = h.worker.run_once().await;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    PROFILING.store(false, Ordering::Release);
    let n = n?;
    if pending && n == 0 {
        return Err("run_once took no event while a batch was pending".into());
    }
    if pending {
        for (key, calls, secs) in take_profile() {
            let e = h.profile.entry(key).or_default();
            e.0 += calls;
            e.1 += secs;
        }
    }
    Ok(ms)
}

async fn claim_cost(backend: &Backend, knobs: &Knobs) -> Result<ClaimLine> {
    let start = Instant::now();
    let mut small = history_db(backend, knobs.history_small, knobs).await?;
    progress(&format!(
        "  {}: {} processed events + {} pending ready ({:.0}s)",
        backend.name(),
        knobs.history_small,
        (knobs.claims + 1) * knobs.batch,
        start.elapsed().as_secs_f64()
    ));
    let mut big = history_db(backend, knobs.history, knobs).await?;
    let setup_s = start.elapsed().as_secs_f64();
    progress(&format!(
        "  {}: {} processed events + {} pending ready ({setup_s:.0}s)",
        backend.name(),
        knobs.history,
        (knobs.claims + 1) * knobs.batch,
    ));
    // Warm-up: pools, prepared statements, caches.
    timed_run_once(&mut small, true).await?;
    timed_run_once(&mut big, true).await?;
    small.profile.clear();
    big.profile.clear();
    let (mut s, mut g) = (Vec::new(), Vec::new());
    for i in 0..knobs.claims {
        if i % 2 == 0 {
            s.push(timed_run_once(&mut small, true).await?);
            g.push(timed_run_once(&mut big, true).await?);
        } else {
            g.push(timed_run_once(&mut big, true).await?);
            s.push(timed_run_once(&mut small, true).await?);
        }
    }
    let (mut si, mut gi) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        si.push(timed_run_once(&mut small, false).await?);
        gi.push(timed_run_once(&mut big, false).await?);
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Ok(ClaimLine {
        backend: backend.name(),
        small: knobs.history_small,
        big: knobs.history,
        small_ms: median(&s),
        big_ms: median(&g),
        small_max: max(&s),
        big_max: max(&g),
        small_idle: median(&si),
        big_idle: median(&gi),
        setup_s,
        small_profile: small.profile,
        big_profile: big.profile,
        runs: knobs.claims,
    })
}

// ---------------------------------------------------------------------------------------------
// Where the time goes: statement times from sqlx's own logging

/// Per statement shape: calls and total seconds. Filled only while `PROFILING` is set.
static PROFILE: Mutex<Option<HashMap<String, (usize, f64)>>> = Mutex::new(None);
static PROFILING: AtomicBool = AtomicBool::new(false);
/// Warnings logged by acts_as_distributed so far.
static WARNINGS: AtomicUsize = AtomicUsize::new(0);

/// Receives one formatted `sqlx::query` event and adds it to `PROFILE` when dropped.
struct Sink(Vec<u8>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // One event per sink.
        let text = String::from_utf8_lossy(&self.0);
        if text.trim().is_empty() {
            return;
        }
        if !(text.contains("sqlx::query") && text.contains("elapsed_secs=")) {
            // A warning of the library: counted, and the first 20 shown.
            if WARNINGS.fetch_add(1, Ordering::Relaxed) < 20 {
                progress(&format!("    library: {}", text.trim()));
            }
            return;
        }
        if !PROFILING.load(Ordering::Acquire) {
            return;
        }
        for line in text.lines() {
            let Some(secs) = field_after(line, "elapsed_secs=")
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            let sql = quoted(line, "db.statement=")
                .filter(|s| !s.trim().is_empty())
                .or_else(|| quoted(line, "summary="))
                .unwrap_or_default();
            let key = statement_key(&sql);
            let mut p = PROFILE.lock().unwrap_or_else(PoisonError::into_inner);
            let e = p.get_or_insert_with(HashMap::new).entry(key).or_default();
            e.0 += 1;
            e.1 += secs;
        }
    }
}

fn field_after<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.find(name).map(|i| &line[i + name.len()..])
}

/// The Debug-quoted value of a field, unescaped.
fn quoted(line: &str, name: &str) -> Option<String> {
    let rest = field_after(line, name)?.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next() {
                Some('n') | Some('t') | Some('r') => out.push(' '),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// A short name for a statement: whitespace collapsed, `$n` as `?`, lists of `?` folded, then
/// `SELECT … FROM <what follows>` for SELECTs (the outermost `FROM`) and the first 64 characters
/// otherwise.
fn statement_key(sql: &str) -> String {
    let mut s = String::with_capacity(sql.len());
    let mut chars = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    chars = chars.replace('…', "");
    let mut it = chars.chars().peekable();
    while let Some(c) = it.next() {
        if c == '$' && it.peek().is_some_and(char::is_ascii_digit) {
            while it.peek().is_some_and(char::is_ascii_digit) {
                it.next();
            }
            s.push('?');
        } else {
            s.push(c);
        }
    }
    while s.contains("?, ?") {
        s = s.replace("?, ?", "?");
    }
    let s = s.trim().to_owned();
    let cut = |t: &str, n: usize| -> String {
        if t.chars().count() > n {
            format!("{}…", t.chars().take(n).collect::<String>())
        } else {
            t.to_owned()
        }
    };
    if s.starts_with("SELECT")
        && let Some(i) = outer_from(&s)
    {
        return format!("SELECT … FROM {}", cut(&s[i + 6..], 52));
    }
    cut(&s, 64)
}

/// The byte offset of the first ` FROM ` outside parentheses.
fn outer_from(sql: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in sql.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ' ' if depth == 0 && sql[i..].starts_with(" FROM ") => return Some(i),
            _ => {}
        }
    }
    None
}

/// Sends sqlx's statement events (only the profiling pool logs them) and the library's warnings
/// to [`Sink`]; every other callsite stays disabled, so the timed parts pay nothing for it.
fn install_subscriber() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "sqlx::query=trace,acts_as_distributed=warn",
        ))
        .with_writer(|| Sink(Vec::new()))
        .with_ansi(false)
        .without_time()
        .try_init()
}

fn take_profile() -> Vec<(String, usize, f64)> {
    let map = PROFILE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_default();
    let mut v: Vec<_> = map.into_iter().map(|(k, (n, s))| (k, n, s)).collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v
}

struct ProfileTable {
    backend: &'static str,
    what: String,
    events: usize,
    batches: usize,
    wall: f64,
    rows: Vec<(String, usize, f64)>,
}

async fn profile(
    t: &TestDb,
    knobs: &Knobs,
    backlog: Backlog,
    events: usize,
) -> Result<Vec<ProfileTable>> {
    let mut options = ConnectOptions::new(t.url.clone());
    options.max_connections(4).sqlx_logging(true);
    let db = Database::connect(options).await?;
    let batches = events.div_ceil(knobs.batch);
    let backend = t.backend.name();
    let mut out = Vec::new();

    // One library worker, stopped once its handler has seen `events` events.
    let tracker = Arc::new(Tracker::new(backlog.first_id, backlog.last_id, events));
    let worker = {
        let tracker = tracker.clone();
        Worker::builder(db.clone(), "profile")
            .batch_size(knobs.batch as u64)
            .poll_interval(knobs.drain_poll)
            .listen(false)
            .handler(move |e: Event| {
                tracker.see(e.id);
                async { Ok::<_, HandlerError>(()) }
            })
            .build()?
    };
    PROFILING.store(true, Ordering::Release);
    let start = Instant::now();
    let handle = worker.spawn();
    tracker.wait("profile").await?;
    // The last batch's ack and advance finish inside the shutdown.
    handle.shutdown(Duration::from_secs(30)).await?;
    let wall = start.elapsed().as_secs_f64();
    PROFILING.store(false, Ordering::Release);
    out.push(ProfileTable {
        backend,
        what: "library, 1 worker".into(),
        events,
        batches,
        wall,
        rows: take_profile(),
    });

    // One baseline client over as many jobs.
    fill_jobs(&t.db, backlog).await?;
    PROFILING.store(true, Ordering::Release);
    let start = Instant::now();
    let handled = raw_client(db.clone(), knobs.batch, events).await?;
    let wall = start.elapsed().as_secs_f64();
    PROFILING.store(false, Ordering::Release);
    out.push(ProfileTable {
        backend,
        what: "raw SQL, 1 client".into(),
        events: handled,
        batches: handled.div_ceil(knobs.batch),
        wall,
        rows: take_profile(),
    });
    db.close().await.ok();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Per backend

struct DrainLine {
    backend: &'static str,
    drain: Drain,
    runs: Vec<DrainRun>,
}

struct SequencerLine {
    backend: &'static str,
    events: usize,
    seed_s: f64,
    sequence_s: f64,
}

#[derive(Default)]
struct Report {
    drains: Vec<DrainLine>,
    sequencer: Vec<SequencerLine>,
    latency: Vec<LatencyLine>,
    claims: Vec<ClaimLine>,
    profiles: Vec<ProfileTable>,
}

async fn bench_backend(backend: &Backend, knobs: &Knobs, report: &mut Report) -> Result<()> {
    let name = backend.name();
    let t = TestDb::new(backend).await;
    let db = &t.db;

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
    let first_id = scalar(db, "SELECT MIN(id) FROM distributes", vec![])
        .await?
        .ok_or("no events")?;
    let last_id = scalar(db, "SELECT MAX(id) FROM distributes", vec![])
        .await?
        .ok_or("no events")?;
    let backlog = Backlog {
        first_id,
        last_id,
        len: knobs.backlog,
    };
    progress(&format!(
        "  {name}: {} events seeded in {seed_s:.1}s, sequenced in {sequence_s:.1}s",
        knobs.backlog
    ));
    report.sequencer.push(SequencerLine {
        backend: name,
        events: knobs.backlog,
        seed_s,
        sequence_s,
    });

    // Drains, in an order that rotates from round to round.
    let mut order: Vec<Drain> = drains(knobs);
    let mut runs: HashMap<Drain, Vec<DrainRun>> = HashMap::new();
    for round in 0..knobs.rounds {
        if round > 0 {
            order.rotate_left(1);
        }
        for &drain in &order {
            let run = match drain {
                Drain::Library {
                    workers,
                    concurrency,
                } => {
                    let consumer = format!("drain_{workers}w_c{concurrency}_r{round}");
                    library_drain(db, &consumer, workers, concurrency, knobs, backlog).await?
                }
                Drain::Raw { clients } => raw_drain(db, clients, knobs, backlog).await?,
            };
            progress(&format!(
                "  {name} round {}: {}: {:.0} events/s ({} seen twice, {} library warnings)",
                round + 1,
                drain.label(),
                run.rate,
                run.duplicates,
                run.warnings
            ));
            runs.entry(drain).or_default().push(run);
        }
    }
    for drain in drains(knobs) {
        report.drains.push(DrainLine {
            backend: name,
            drain,
            runs: runs.remove(&drain).unwrap_or_default(),
        });
    }

    // Pickup latency.
    let mut modes = Vec::new();
    if db.get_database_backend() == DbBackend::Postgres {
        modes.push(("LISTEN/NOTIFY", true, Duration::from_secs(10)));
    }
    modes.push(("polling", false, knobs.latency_poll));
    for (wake, listen, poll) in modes {
        let line = pickup_latency(db, name, wake, listen, poll, knobs).await?;
        progress(&format!(
            "  {name}: pickup with {wake}: p50 {:.1} ms, p99 {:.1} ms",
            line.p50, line.p99
        ));
        report.latency.push(line);
    }

    // Where the time goes.
    if knobs.profile_events > 0 {
        let events = knobs.profile_events.min(knobs.backlog);
        report
            .profiles
            .extend(profile(&t, knobs, backlog, events).await?);
        progress(&format!("  {name}: statement profile done"));
    }
    drop(t);

    // Claim cost with a small and a large history.
    let line = claim_cost(backend, knobs).await?;
    progress(&format!(
        "  {name}: run_once {:.1} ms with {} processed events, {:.1} ms with {}",
        line.small_ms, line.small, line.big_ms, line.big
    ));
    report.claims.push(line);
    Ok(())
}

fn mib(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |m| format!("{m:.0}"))
}

fn print_report(report: &Report, knobs: &Knobs, elapsed: Duration) {
    println!(
        "\nQueue: backlog {} events over {} objects, batch {}, {} round(s) (median), {} latency samples, \
         history {} vs {}; total {:.0}s\n",
        knobs.backlog,
        knobs.objects,
        knobs.batch,
        knobs.rounds,
        knobs.samples,
        knobs.history_small,
        knobs.history,
        elapsed.as_secs_f64()
    );

    println!(
        "Drain rate (no-op handler; library workers poll every {:?} when idle)\n",
        knobs.drain_poll
    );
    println!(
        "| backend | drain | events/s | vs raw SQL 1 client | vs raw SQL 2 clients | bench CPU (µs/event) | RSS before (MiB) | peak RSS during (MiB) | seen twice | library warnings |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let rate_of = |backend: &str, drain: Drain| {
        report
            .drains
            .iter()
            .find(|l| l.backend == backend && l.drain == drain)
            .map(|l| median(&l.runs.iter().map(|r| r.rate).collect::<Vec<_>>()))
            .unwrap_or(f64::NAN)
    };
    for l in &report.drains {
        let rate = median(&l.runs.iter().map(|r| r.rate).collect::<Vec<_>>());
        let raw1 = rate_of(l.backend, Drain::Raw { clients: 1 });
        let raw2 = rate_of(l.backend, Drain::Raw { clients: 2 });
        let before = l.runs.iter().filter_map(|r| r.rss_before).reduce(f64::max);
        let peak = l.runs.iter().filter_map(|r| r.rss_peak).reduce(f64::max);
        let dups: usize = l.runs.iter().map(|r| r.duplicates).sum();
        let warnings: usize = l.runs.iter().map(|r| r.warnings).sum();
        println!(
            "| {} | {} | {:.0} | {:.2}x | {:.2}x | {} | {} | {} | {dups} | {warnings} |",
            l.backend,
            l.drain.label(),
            rate,
            rate / raw1,
            rate / raw2,
            {
                let cpu: Vec<f64> = l.runs.iter().filter_map(|r| r.cpu_us).collect();
                if cpu.is_empty() {
                    "n/a".to_owned()
                } else {
                    format!("{:.1}", median(&cpu))
                }
            },
            mib(before),
            mib(peak),
        );
    }

    println!("\nSequencer and seeding (not part of the drain times)\n");
    println!(
        "| backend | events | seed with 500-row INSERTs (s) | Queue::sequence (s) | sequenced events/s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for l in &report.sequencer {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} |",
            l.backend,
            l.events,
            l.seed_s,
            l.sequence_s,
            l.events as f64 / l.sequence_s
        );
    }

    println!("\nPickup latency: commit to handler start\n");
    println!("| backend | wake-up | poll interval | samples | p50 (ms) | p99 (ms) | max (ms) |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for l in &report.latency {
        println!(
            "| {} | {} | {:?} | {} | {:.1} | {:.1} | {:.1} |",
            l.backend, l.wake, l.poll, l.samples, l.p50, l.p99, l.max
        );
    }

    println!(
        "\nClaim cost: `Worker::run_once` claiming and handling one batch of {} (median of {}; max in brackets)\n",
        knobs.batch, knobs.claims
    );
    println!(
        "| backend | processed events | run_once (ms) | processed events | run_once (ms) | ratio | idle run_once (ms) | setup (s) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for l in &report.claims {
        println!(
            "| {} | {} | {:.1} ({:.1}) | {} | {:.1} ({:.1}) | {:.2}x | {:.1} / {:.1} | {:.0} |",
            l.backend,
            l.small,
            l.small_ms,
            l.small_max,
            l.big,
            l.big_ms,
            l.big_max,
            l.big_ms / l.small_ms,
            l.small_idle,
            l.big_idle,
            l.setup_s
        );
    }

    for l in &report.claims {
        println!(
            "\nClaim cost, where the time goes: {} (statement times per `run_once`, from sqlx's logging)\n",
            l.backend
        );
        println!(
            "| statement | calls per run_once | {} processed (ms) | {} processed (ms) | ratio |",
            l.small, l.big
        );
        println!("| --- | ---: | ---: | ---: | ---: |");
        let mut keys: Vec<&String> = l.small_profile.keys().chain(l.big_profile.keys()).collect();
        keys.sort();
        keys.dedup();
        let per_run = |p: &HashMap<String, (usize, f64)>, k: &String| {
            p.get(k).map_or((0.0, 0.0), |(n, s)| {
                (*n as f64 / l.runs as f64, s * 1e3 / l.runs as f64)
            })
        };
        let mut rows: Vec<(&String, f64, f64, f64)> = keys
            .into_iter()
            .map(|k| {
                let (calls, small) = per_run(&l.small_profile, k);
                let (_, big) = per_run(&l.big_profile, k);
                (k, calls, small, big)
            })
            .collect();
        rows.sort_by(|a, b| b.3.max(b.2).total_cmp(&a.3.max(a.2)));
        let (mut ts, mut tb) = (0.0, 0.0);
        for (k, calls, small, big) in rows {
            ts += small;
            tb += big;
            println!(
                "| `{}` | {calls:.1} | {small:.2} | {big:.2} | {:.2}x |",
                k.replace('|', "\\|"),
                big / small
            );
        }
        println!("| all statements | | {ts:.2} | {tb:.2} | {:.2}x |", tb / ts);
    }

    println!(
        "\nThe issue's aims (drain: best library variant over raw SQL with 2 clients, at least 0.7x on PostgreSQL; claim: large over small history, at most 1.5x)\n"
    );
    println!("| backend | best library drain | vs raw SQL 2 clients | claim cost ratio |");
    println!("| --- | --- | ---: | ---: |");
    let mut names: Vec<&str> = report.drains.iter().map(|l| l.backend).collect();
    names.dedup();
    for backend in names {
        let best = report
            .drains
            .iter()
            .filter(|l| l.backend == backend && matches!(l.drain, Drain::Library { .. }))
            .map(|l| {
                (
                    l,
                    median(&l.runs.iter().map(|r| r.rate).collect::<Vec<_>>()),
                )
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let raw2 = rate_of(backend, Drain::Raw { clients: 2 });
        let claim = report
            .claims
            .iter()
            .find(|c| c.backend == backend)
            .map_or(f64::NAN, |c| c.big_ms / c.small_ms);
        if let Some((line, rate)) = best {
            println!(
                "| {backend} | {} ({rate:.0} events/s) | {:.2}x | {claim:.2}x |",
                line.drain.label(),
                rate / raw2
            );
        }
    }

    for p in &report.profiles {
        let total: f64 = p.rows.iter().map(|r| r.2).sum();
        println!(
            "\nWhere the time goes: {} {}, {} events in {} batches, {:.2}s wall ({:.0} events/s with logging on); \
             statements {:.2}s = {:.0}% of wall\n",
            p.backend,
            p.what,
            p.events,
            p.batches,
            p.wall,
            p.events as f64 / p.wall,
            total,
            100.0 * total / p.wall
        );
        println!("| statement | calls | per batch | mean (ms) | ms per batch | share of wall |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for (key, n, secs) in &p.rows {
            println!(
                "| `{}` | {} | {:.1} | {:.2} | {:.2} | {:.0}% |",
                key.replace('|', "\\|"),
                n,
                *n as f64 / p.batches as f64,
                secs * 1e3 / *n as f64,
                secs * 1e3 / p.batches as f64,
                100.0 * secs / p.wall
            );
        }
    }
}

fn main() -> Result<()> {
    let knobs = Knobs::from_env();
    install_subscriber()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let report = runtime.block_on(async {
        let mut report = Report::default();
        for backend in backends() {
            progress(&format!("{}: {knobs:?}", backend.name()));
            bench_backend(&backend, &knobs, &mut report).await?;
        }
        Ok::<_, BoxError>(report)
    })?;
    print_report(&report, &knobs, started.elapsed());
    Ok(())
}
