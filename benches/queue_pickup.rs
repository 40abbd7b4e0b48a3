//! Run with: `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo bench --bench queue_pickup`
//!
//! The queue's pickup latency per backend: the time from commit to the handler's start.
//!
//! **Pickup latency.** The database first holds the drain bench's backlog (`BENCH_BACKLOG` events
//! over `BENCH_OBJECTS` objects, written and sequenced as in `queue_drain`; not timed). A consumer
//! that starts at `StartFrom::Now` idles; a writer commits `BENCH_SAMPLES` events one at a time
//! (one autocommit INSERT each, 3–13 ms apart) and records the instant the INSERT returned; the
//! handler records the instant it is called; matched by event id. PostgreSQL with
//! `LISTEN`/`NOTIFY` (poll interval 10 s) and every backend with polling only (`listen(false)`,
//! poll interval `BENCH_POLL_MS`).
//!
//! Knobs (environment variables): `BENCH_SAMPLES` (default 200), `BENCH_POLL_MS` (poll interval of
//! the latency workers, 50), `BENCH_BATCH` (500, the workers' batch size), `BENCH_BACKLOG`
//! (200000) and `BENCH_OBJECTS` (1000). SQLite always; PostgreSQL when `TEST_POSTGRES_URL` is
//! set; MySQL / MariaDB when `TEST_MYSQL_URL` is set. The table goes to stdout, progress to
//! stderr.

use acts_as_distributed::{Event, HandlerError, StartFrom, Worker};
use acts_as_distributed_suite::bench::queue::{Knobs, insert_events, payload, write_backlog};
use acts_as_distributed_suite::bench::sql::scalar;
use acts_as_distributed_suite::bench::{Result, percentile, progress, table_head};
use acts_as_distributed_suite::testdb::{Backend, TestDb};
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Commits one event and returns its id.
async fn insert_one(db: &DatabaseConnection, i: usize) -> Result<i64> {
    let mut insert = insert_events(&[]);
    insert.values([
        "Latency".into(),
        format!("l{}", i % 10).into(),
        Expr::cust("'update'"),
        payload(i).into(),
        Utc::now().into(),
    ])?;
    if db.get_database_backend() == DbBackend::MySql {
        let r = db.execute(&insert).await?;
        Ok(i64::try_from(r.last_insert_id())?)
    } else {
        insert.returning_col("id");
        let row = db.query_one(&insert).await?.ok_or("no id returned")?;
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

/// Waits until `consumer` is registered, then half a second more (idle and, with LISTEN,
/// listening).
async fn registered(db: &DatabaseConnection, consumer: &str) -> Result<()> {
    let mut count = Query::select();
    count
        .expr(Expr::cust("COUNT(*)"))
        .from("distribute_consumers")
        .and_where(Expr::col("name").eq(consumer));
    let count = db.get_database_backend().build(&count);
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(db, count.clone()).await? != Some(1) {
        if Instant::now() > deadline {
            return Err(format!("{consumer} did not register").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
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
    registered(db, &consumer).await?;

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

async fn bench_backend(backend: &Backend, knobs: &Knobs) -> Result<Vec<LatencyLine>> {
    let name = backend.name();
    let t = TestDb::new(backend).await;
    let db = &t.db;
    write_backlog(db, name, knobs).await?;
    let mut modes = Vec::new();
    if db.get_database_backend() == DbBackend::Postgres {
        modes.push(("LISTEN/NOTIFY", true, Duration::from_secs(10)));
    }
    modes.push(("polling", false, knobs.latency_poll));
    let mut lines = Vec::new();
    for (wake, listen, poll) in modes {
        let line = pickup_latency(db, name, wake, listen, poll, knobs).await?;
        progress(&format!(
            "  {name}: pickup with {wake}: p50 {:.1} ms, p99 {:.1} ms",
            line.p50, line.p99
        ));
        lines.push(line);
    }
    Ok(lines)
}

fn main() -> Result<()> {
    let knobs = Knobs::from_env();
    acts_as_distributed_suite::install_statement_log!()?;
    let (lines, elapsed) = knobs.on_each_backend(bench_backend)?;
    println!(
        "\nQueue pickup latency: {} samples, on a backlog of {} events; total {:.0}s\n",
        knobs.samples,
        knobs.backlog,
        elapsed.as_secs_f64()
    );
    println!("Pickup latency: commit to handler start\n");
    table_head(
        &[
            "backend",
            "wake-up",
            "poll interval",
            "samples",
            "p50 (ms)",
            "p99 (ms)",
            "max (ms)",
        ],
        2,
    );
    for l in lines.iter().flatten() {
        println!(
            "| {} | {} | {:?} | {} | {:.1} | {:.1} | {:.1} |",
            l.backend, l.wake, l.poll, l.samples, l.p50, l.p99, l.max
        );
    }
    Ok(())
}
