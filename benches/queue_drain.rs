//! Run with: `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo bench --bench queue_drain`
//!
//! The queue's drain rate, memory and CPU, per backend, with a raw-SQL job-queue baseline
//! measured side by side in the same run and on the same database.
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
//!
//! The other queue benches: `queue_pickup` (pickup latency), `queue_claim_cost` (claim cost over
//! a small and a large history) and `queue_profile` (where the time goes, per statement).
//!
//! Knobs (environment variables): `BENCH_BACKLOG` (default 200000), `BENCH_OBJECTS` (1000),
//! `BENCH_BATCH` (500: the library's batch size, at most 1000, and the baseline's LIMIT),
//! `BENCH_ROUNDS` (1), `BENCH_DRAIN_POLL_MS` (poll interval of the drain workers, 100),
//! `BENCH_CONCURRENCY` (1; above 1 adds a drain by 4 workers of that concurrency each). SQLite
//! always; PostgreSQL when `TEST_POSTGRES_URL` is set; MySQL / MariaDB when `TEST_MYSQL_URL` is
//! set. The tables go to stdout, progress to stderr.

use acts_as_distributed::WorkerHandle;
use acts_as_distributed_suite::bench::process::{Meter, mib};
use acts_as_distributed_suite::bench::queue::{
    Backlog, Knobs, Seeding, Tracker, tracked_worker, write_backlog,
};
use acts_as_distributed_suite::bench::raw::{fill_jobs, pending_jobs, raw_client};
use acts_as_distributed_suite::bench::statements::warnings;
use acts_as_distributed_suite::bench::{Result, median, progress, table_head};
use acts_as_distributed_suite::testdb::{Backend, TestDb};
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Drain {
    /// The library: this many workers of one consumer, each with this concurrency.
    Library { workers: usize, concurrency: usize },
    /// The raw-SQL baseline with this many clients.
    Raw { clients: usize },
    /// This many consumers draining the same backlog together, one worker each; the rate is
    /// their total.
    Consumers { consumers: usize },
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
            Drain::Consumers { consumers } => {
                format!("library, {consumers} consumers together (total of their rates)")
            }
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
        Drain::Consumers { consumers: 4 },
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

impl DrainRun {
    /// The time, CPU and peak RSS of a drain of `backlog` that started at `start`, read now.
    fn measure(backlog: Backlog, start: Instant, meter: &Meter) -> Self {
        let elapsed = start.elapsed();
        let cpu_us = meter.cpu_us_per(backlog.len);
        let rss_peak = meter.rss_peak();
        DrainRun {
            rate: backlog.len as f64 / elapsed.as_secs_f64(),
            rss_before: meter.rss_before,
            rss_peak,
            duplicates: 0,
            warnings: 0,
            cpu_us,
        }
    }
}

async fn library_drain(
    db: &DatabaseConnection,
    consumer: &str,
    workers: usize,
    concurrency: usize,
    knobs: &Knobs,
    backlog: Backlog,
) -> Result<DrainRun> {
    let tracker = Arc::new(Tracker::new(backlog, backlog.len));
    let built = (0..workers)
        .map(|_| tracked_worker(db, consumer, concurrency, knobs, &tracker))
        .collect::<Result<Vec<_>>>()?;
    let warnings_before = warnings();
    let meter = Meter::start();
    let start = Instant::now();
    let handles: Vec<WorkerHandle> = built.into_iter().map(|w| w.spawn()).collect();
    tracker.wait(consumer).await?;
    let mut run = DrainRun::measure(backlog, start, &meter);
    for h in handles {
        h.shutdown(Duration::from_secs(30)).await?;
    }
    run.duplicates = tracker.duplicates();
    run.warnings = warnings() - warnings_before;
    Ok(run)
}

/// `consumers` consumers of the same backlog, one worker each, spawned together; the clock runs
/// until every one has seen every event. Each one's own rate goes to stderr.
async fn consumers_drain(
    db: &DatabaseConnection,
    prefix: &str,
    consumers: usize,
    knobs: &Knobs,
    backlog: Backlog,
) -> Result<DrainRun> {
    let trackers: Vec<Arc<Tracker>> = (0..consumers)
        .map(|_| Arc::new(Tracker::new(backlog, backlog.len)))
        .collect();
    let names: Vec<String> = (0..consumers).map(|i| format!("{prefix}_{i}")).collect();
    let built = names
        .iter()
        .zip(&trackers)
        .map(|(name, tracker)| tracked_worker(db, name, 1, knobs, tracker))
        .collect::<Result<Vec<_>>>()?;
    let warnings_before = warnings();
    let meter = Meter::start();
    let start = Instant::now();
    let handles: Vec<WorkerHandle> = built.into_iter().map(|w| w.spawn()).collect();
    let waits = names
        .iter()
        .zip(&trackers)
        .map(|(name, tracker)| async move { tracker.wait(name).await.map(|()| start.elapsed()) });
    let times = futures::future::try_join_all(waits).await?;
    let mut run = DrainRun::measure(backlog, start, &meter);
    run.rate *= consumers as f64;
    for h in handles {
        h.shutdown(Duration::from_secs(30)).await?;
    }
    let each: Vec<String> = times
        .iter()
        .map(|t| format!("{:.0}", backlog.len as f64 / t.as_secs_f64()))
        .collect();
    progress(&format!(
        "    each consumer's events/s: {}",
        each.join(", ")
    ));
    run.duplicates = trackers.iter().map(|t| t.duplicates()).sum();
    run.warnings = warnings() - warnings_before;
    Ok(run)
}

async fn raw_drain(
    db: &DatabaseConnection,
    clients: usize,
    knobs: &Knobs,
    backlog: Backlog,
) -> Result<DrainRun> {
    fill_jobs(db, backlog).await?;
    let meter = Meter::start();
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(raw_client(db.clone(), knobs.batch, usize::MAX)))
        .collect();
    let mut handled = 0;
    for t in tasks {
        handled += t.await??;
    }
    let run = DrainRun::measure(backlog, start, &meter);
    let left = pending_jobs(db).await?;
    if handled != backlog.len || left != Some(0) {
        return Err(format!(
            "raw drain: handled {handled} of {} jobs, {left:?} left",
            backlog.len
        )
        .into());
    }
    Ok(run)
}

struct DrainLine {
    backend: &'static str,
    drain: Drain,
    runs: Vec<DrainRun>,
}

impl DrainLine {
    fn rate(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.rate).collect::<Vec<_>>())
    }
}

/// One backend's drains and how its backlog was written.
struct BackendReport {
    backend: &'static str,
    seeding: Seeding,
    drains: Vec<DrainLine>,
}

async fn bench_backend(backend: &Backend, knobs: &Knobs) -> Result<BackendReport> {
    let name = backend.name();
    let t = TestDb::new(backend).await;
    let db = &t.db;
    let (backlog, seeding) = write_backlog(db, name, knobs).await?;

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
                Drain::Consumers { consumers } => {
                    let prefix = format!("together_{consumers}_r{round}");
                    consumers_drain(db, &prefix, consumers, knobs, backlog).await?
                }
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
    let drains = drains(knobs)
        .into_iter()
        .map(|drain| DrainLine {
            backend: name,
            drain,
            runs: runs.remove(&drain).unwrap_or_default(),
        })
        .collect();
    Ok(BackendReport {
        backend: name,
        seeding,
        drains,
    })
}

fn print_report(reports: &[BackendReport], knobs: &Knobs, elapsed: Duration) {
    println!(
        "\nQueue drain: backlog {} events over {} objects, batch {}, {} round(s) (median); total {:.0}s\n",
        knobs.backlog,
        knobs.objects,
        knobs.batch,
        knobs.rounds,
        elapsed.as_secs_f64()
    );

    println!(
        "Drain rate (no-op handler; library workers poll every {:?} when idle)\n",
        knobs.drain_poll
    );
    table_head(
        &[
            "backend",
            "drain",
            "events/s",
            "vs raw SQL 1 client",
            "vs raw SQL 2 clients",
            "bench CPU (µs/event)",
            "RSS before (MiB)",
            "peak RSS during (MiB)",
            "seen twice",
            "library warnings",
        ],
        2,
    );
    let rate_of = |report: &BackendReport, drain: Drain| {
        report
            .drains
            .iter()
            .find(|l| l.drain == drain)
            .map_or(f64::NAN, DrainLine::rate)
    };
    for report in reports {
        let raw1 = rate_of(report, Drain::Raw { clients: 1 });
        let raw2 = rate_of(report, Drain::Raw { clients: 2 });
        for l in &report.drains {
            let rate = l.rate();
            let before = l.runs.iter().filter_map(|r| r.rss_before).reduce(f64::max);
            let peak = l.runs.iter().filter_map(|r| r.rss_peak).reduce(f64::max);
            let dups: usize = l.runs.iter().map(|r| r.duplicates).sum();
            let warnings: usize = l.runs.iter().map(|r| r.warnings).sum();
            let cpu: Vec<f64> = l.runs.iter().filter_map(|r| r.cpu_us).collect();
            let cpu = if cpu.is_empty() {
                "n/a".to_owned()
            } else {
                format!("{:.1}", median(&cpu))
            };
            println!(
                "| {} | {} | {:.0} | {:.2}x | {:.2}x | {cpu} | {} | {} | {dups} | {warnings} |",
                l.backend,
                l.drain.label(),
                rate,
                rate / raw1,
                rate / raw2,
                mib(before),
                mib(peak),
            );
        }
    }

    println!("\nSequencer and seeding (not part of the drain times)\n");
    table_head(
        &[
            "backend",
            "events",
            "seed with 500-row INSERTs (s)",
            "Queue::sequence (s)",
            "sequenced events/s",
        ],
        1,
    );
    for r in reports {
        let s = &r.seeding;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} |",
            r.backend,
            s.events,
            s.seed_s,
            s.sequence_s,
            s.events as f64 / s.sequence_s
        );
    }

    println!(
        "\nThe issue's aim for the drain (best library variant over raw SQL with 2 clients, at least 0.7x on PostgreSQL; the claim's aim is in `queue_claim_cost`)\n"
    );
    table_head(
        &["backend", "best library drain", "vs raw SQL 2 clients"],
        2,
    );
    for report in reports {
        let best = report
            .drains
            .iter()
            .filter(|l| matches!(l.drain, Drain::Library { .. }))
            .map(|l| (l, l.rate()))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let raw2 = rate_of(report, Drain::Raw { clients: 2 });
        if let Some((line, rate)) = best {
            println!(
                "| {} | {} ({rate:.0} events/s) | {:.2}x |",
                report.backend,
                line.drain.label(),
                rate / raw2
            );
        }
    }
}

fn main() -> Result<()> {
    let knobs = Knobs::from_env();
    acts_as_distributed_suite::install_statement_log!()?;
    let (reports, elapsed) = knobs.on_each_backend(bench_backend)?;
    print_report(&reports, &knobs, elapsed);
    Ok(())
}
