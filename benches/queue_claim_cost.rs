//! Run with: `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo bench --bench queue_claim_cost`
//!
//! The queue's claim cost per backend: what one `Worker::run_once` costs with a small and with a
//! large history of processed events in the table, and the time of each of its statements.
//!
//! **Claim cost.** Two fresh databases: one with `BENCH_HISTORY_SMALL` processed events, one with
//! `BENCH_HISTORY`. The processed events are generated in the server (`INSERT .. SELECT` over a
//! digits table) with `seq` already set; `distribute_sequencer.last_seq` and the consumer's
//! `position` and `claimed_to` are then set past them with an `UPDATE`: the state a consumer is in
//! after it has handled them. Then `BENCH_CLAIMS + 1`
//! batches of pending events are inserted and sequenced (not timed). Timed: `Worker::run_once`
//! with a no-op handler, which claims and handles one batch. That is the whole cycle: register (2
//! statements), one empty sequencer transaction, the claim transaction, the handler calls and
//! the settle. The first call per database is a warm-up; the calls alternate between the
//! two databases. `idle` is `run_once` with nothing pending. The workers use a pool with sqlx
//! statement logging on, so that the time of each statement per `run_once` is reported beside it
//! (the logging costs both sides alike).
//!
//! Knobs (environment variables): `BENCH_HISTORY` (default 2000000), `BENCH_HISTORY_SMALL`
//! (10000), `BENCH_CLAIMS` (20), `BENCH_BATCH` (500: the batch size), `BENCH_OBJECTS` (1000).
//! SQLite always; PostgreSQL when `TEST_POSTGRES_URL` is set; MySQL / MariaDB when
//! `TEST_MYSQL_URL` is set. The tables go to stdout, progress to stderr.

use acts_as_distributed::{Event, HandlerError, Queue, StartFrom, Worker};
use acts_as_distributed_suite::bench::queue::{Knobs, generate_history, seed_events};
use acts_as_distributed_suite::bench::sql::{analyze, exec};
use acts_as_distributed_suite::bench::statements::{
    Profile, logging_pool, profiling, take_profile,
};
use acts_as_distributed_suite::bench::{Result, max, median, progress, table_head};
use acts_as_distributed_suite::testdb::{Backend, TestDb};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use std::time::{Duration, Instant};

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
    small_profile: Profile,
    big_profile: Profile,
    runs: usize,
}

/// A database of the claim-cost test and the worker that claims from it (through a pool with
/// statement logging, for the per-statement times).
struct HistoryDb {
    _t: TestDb,
    worker: Worker,
    profile: Profile,
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
        Query::update()
            .table("distribute_consumers")
            .value("position", history as i64)
            .value("claimed_to", history as i64)
            .and_where(Expr::col("name").eq("claimer")),
    )
    .await?;
    let worker = Worker::builder(logging_pool(&t.url).await?, "claimer")
        .batch_size(knobs.batch as u64)
        .listen(false)
        .handler(|_e: Event| async { Ok::<_, HandlerError>(()) })
        .build()?;
    Ok(HistoryDb {
        _t: t,
        worker,
        profile: Profile::new(),
    })
}

/// Times one `run_once`; with `pending`, it must have taken events, and its statements are added
/// to the database's profile.
async fn timed_run_once(h: &mut HistoryDb, pending: bool) -> Result<f64> {
    take_profile();
    profiling(true);
    let start = Instant::now();
    let n = h.worker.run_once().await;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    profiling(false);
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
    let line = ClaimLine {
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
    };
    progress(&format!(
        "  {}: run_once {:.1} ms with {} processed events, {:.1} ms with {}",
        line.backend, line.small_ms, line.small, line.big_ms, line.big
    ));
    Ok(line)
}

/// The statement times of one backend, per `run_once`, small history against large.
fn print_statements(l: &ClaimLine) {
    println!(
        "\nClaim cost, where the time goes: {} (statement times per `run_once`, from sqlx's logging)\n",
        l.backend
    );
    table_head(
        &[
            "statement",
            "calls per run_once",
            &format!("{} processed (ms)", l.small),
            &format!("{} processed (ms)", l.big),
            "ratio",
        ],
        1,
    );
    let mut keys: Vec<&String> = l.small_profile.keys().chain(l.big_profile.keys()).collect();
    keys.sort();
    keys.dedup();
    let per_run = |p: &Profile, k: &String| {
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

fn print_report(lines: &[ClaimLine], knobs: &Knobs, elapsed: Duration) {
    println!(
        "\nQueue claim cost: batch {}, history {} vs {}; total {:.0}s\n",
        knobs.batch,
        knobs.history_small,
        knobs.history,
        elapsed.as_secs_f64()
    );
    println!(
        "Claim cost: `Worker::run_once` claiming and handling one batch of {} (median of {}; max in brackets)\n",
        knobs.batch, knobs.claims
    );
    table_head(
        &[
            "backend",
            "processed events",
            "run_once (ms)",
            "processed events",
            "run_once (ms)",
            "ratio",
            "idle run_once (ms)",
            "setup (s)",
        ],
        1,
    );
    for l in lines {
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
    for l in lines {
        print_statements(l);
    }
    println!(
        "\nThe issue's aim for the claim (large over small history, at most 1.5x; the drain's aim is in `queue_drain`)\n"
    );
    table_head(&["backend", "claim cost ratio"], 1);
    for l in lines {
        println!("| {} | {:.2}x |", l.backend, l.big_ms / l.small_ms);
    }
}

fn main() -> Result<()> {
    let knobs = Knobs::from_env();
    acts_as_distributed_suite::install_statement_log!()?;
    let (lines, elapsed) = knobs.on_each_backend(claim_cost)?;
    print_report(&lines, &knobs, elapsed);
    Ok(())
}
