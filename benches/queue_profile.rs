//! Run with: `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo bench --bench queue_profile`
//!
//! Where the queue's time goes, per backend and per statement, beside the raw-SQL job-queue
//! baseline on the same database.
//!
//! **Where the time goes** (`BENCH_PROFILE_EVENTS` > 0). The database holds the drain bench's
//! backlog (`BENCH_BACKLOG` events over `BENCH_OBJECTS` objects, written and sequenced as in
//! `queue_drain`; not timed). A second pool on it with sqlx statement logging on; a `tracing`
//! subscriber that listens only to `sqlx::query` adds up each statement's elapsed time (sqlx's
//! own timer: from sending to the last row). One worker drains that many events, then one
//! baseline client (the one of `queue_drain`) handles as many jobs. The logging slows both a
//! little; the shares are what matters.
//!
//! Knobs (environment variables): `BENCH_PROFILE_EVENTS` (default 20000; 0 turns it off),
//! `BENCH_BACKLOG` (200000), `BENCH_OBJECTS` (1000), `BENCH_BATCH` (500: the library's batch
//! size, at most 1000, and the baseline's LIMIT), `BENCH_DRAIN_POLL_MS` (poll interval of the
//! worker, 100). SQLite always; PostgreSQL when `TEST_POSTGRES_URL` is set; MySQL / MariaDB when
//! `TEST_MYSQL_URL` is set. The tables go to stdout, progress to stderr.

use acts_as_distributed_suite::bench::queue::{
    Backlog, Knobs, Tracker, tracked_worker, write_backlog,
};
use acts_as_distributed_suite::bench::raw::{fill_jobs, raw_client};
use acts_as_distributed_suite::bench::statements::{
    logging_pool, profiling, take_profile, take_rows_written,
};
use acts_as_distributed_suite::bench::{Result, progress, table_head};
use acts_as_distributed_suite::testdb::{Backend, TestDb};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct ProfileTable {
    backend: &'static str,
    what: String,
    events: usize,
    batches: usize,
    wall: f64,
    rows: Vec<(String, usize, f64)>,
    /// Rows inserted, updated or deleted.
    written: usize,
}

async fn profile(
    t: &TestDb,
    knobs: &Knobs,
    backlog: Backlog,
    events: usize,
) -> Result<Vec<ProfileTable>> {
    let db = logging_pool(&t.url).await?;
    let batches = events.div_ceil(knobs.batch);
    let backend = t.backend.name();
    let mut out = Vec::new();

    // One library worker, stopped once its handler has seen `events` events.
    let tracker = Arc::new(Tracker::new(backlog, events));
    let worker = tracked_worker(&db, "profile", 1, knobs, &tracker)?;
    take_rows_written();
    profiling(true);
    let start = Instant::now();
    let handle = worker.spawn();
    tracker.wait("profile").await?;
    // The last batch's ack and advance finish inside the shutdown.
    handle.shutdown(Duration::from_secs(30)).await?;
    let wall = start.elapsed().as_secs_f64();
    profiling(false);
    out.push(ProfileTable {
        backend,
        what: "library, 1 worker".into(),
        events,
        batches,
        wall,
        rows: take_profile(),
        written: take_rows_written(),
    });

    // One baseline client over as many jobs.
    fill_jobs(&t.db, backlog).await?;
    profiling(true);
    let start = Instant::now();
    let handled = raw_client(db.clone(), knobs.batch, events).await?;
    let wall = start.elapsed().as_secs_f64();
    profiling(false);
    out.push(ProfileTable {
        backend,
        what: "raw SQL, 1 client".into(),
        events: handled,
        batches: handled.div_ceil(knobs.batch),
        wall,
        rows: take_profile(),
        written: take_rows_written(),
    });
    db.close().await.ok();
    Ok(out)
}

async fn bench_backend(backend: &Backend, knobs: &Knobs) -> Result<Vec<ProfileTable>> {
    let name = backend.name();
    let t = TestDb::new(backend).await;
    let (backlog, _) = write_backlog(&t.db, name, knobs).await?;
    let events = knobs.profile_events.min(knobs.backlog);
    let tables = profile(&t, knobs, backlog, events).await?;
    progress(&format!("  {name}: statement profile done"));
    Ok(tables)
}

fn print_table(p: &ProfileTable) {
    let total: f64 = p.rows.iter().map(|r| r.2).sum();
    println!(
        "\nWhere the time goes: {} {}, {} events in {} batches, {:.2}s wall ({:.0} events/s with logging on); \
         statements {:.2}s = {:.0}% of wall; rows written: {} ({:.3} per event)\n",
        p.backend,
        p.what,
        p.events,
        p.batches,
        p.wall,
        p.events as f64 / p.wall,
        total,
        100.0 * total / p.wall,
        p.written,
        p.written as f64 / p.events.max(1) as f64
    );
    table_head(
        &[
            "statement",
            "calls",
            "per batch",
            "mean (ms)",
            "ms per batch",
            "share of wall",
        ],
        1,
    );
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

fn main() -> Result<()> {
    let knobs = Knobs::from_env();
    if knobs.profile_events == 0 {
        progress("BENCH_PROFILE_EVENTS is 0: no statement profile");
        return Ok(());
    }
    acts_as_distributed_suite::install_statement_log!()?;
    let (tables, elapsed) = knobs.on_each_backend(bench_backend)?;
    println!(
        "\nQueue statement profile: {} events of a backlog of {} over {} objects, batch {}; total {:.0}s",
        knobs.profile_events.min(knobs.backlog),
        knobs.backlog,
        knobs.objects,
        knobs.batch,
        elapsed.as_secs_f64()
    );
    for p in tables.iter().flatten() {
        print_table(p);
    }
    Ok(())
}
