//! Run with: `TEST_NATS_URL=nats://127.0.0.1:4222 TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo bench --bench nats_relay`
//!
//! The NATS relay, per backend, beside the queue's no-op drain rate measured in the same run on
//! the same database:
//!
//! 1. **No-op drain**: a backlog of `BENCH_BACKLOG` events over `BENCH_OBJECTS` objects, written
//!    straight into `distributes` and sequenced (not timed), drained by one worker with a no-op
//!    handler (batches of `BENCH_BATCH`); the clock runs from `spawn()` to the last event seen.
//! 2. **Relay**: the same backlog, relayed by one relay worker (batches of `BENCH_BATCH`, 256
//!    publishes in flight, acks recorded) into a file-storage stream of its own; the clock runs
//!    from `spawn()` until the stream holds every event.
//! 3. **Stream consumer**: a durable pull consumer with 4 tasks and a no-op handler reads the
//!    whole stream; from `spawn()` to the last message acknowledged.
//! 4. **End to end**: with the relay and the stream consumer running and idle, `BENCH_SAMPLES`
//!    single events, one at a time, each committed in its own transaction; latency from the
//!    commit's return to the stream consumer's handler. The relay polls every `BENCH_POLL_MS`
//!    (PostgreSQL also wakes it by NOTIFY).
//!
//! Knobs: `BENCH_BACKLOG` (20000), `BENCH_OBJECTS` (1000), `BENCH_BATCH` (1000), `BENCH_SAMPLES`
//! (200), `BENCH_POLL_MS` (20). Needs `TEST_NATS_URL`; SQLite always, PostgreSQL and MariaDB when
//! their URLs are set. The table goes to stdout, progress to stderr.

use acts_as_distributed::{Event, HandlerError, Worker};
use acts_as_distributed_nats::{Relay, StreamConsumer, StreamSpec, Subjects};
use acts_as_distributed_suite::bench::queue::{Knobs, seed_events, write_backlog};
use acts_as_distributed_suite::bench::{
    Result, knob, on_each_backend, percentile, progress, table_head,
};
use acts_as_distributed_suite::testdb::{Backend, TestDb};
use sea_orm_migration::MigratorTrait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Row {
    backend: &'static str,
    drain: f64,
    relay: f64,
    consumer: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn wait(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !done().await {
        if start.elapsed() > limit {
            return Err(format!("{what}: timed out").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn bench(backend: &Backend, url: &str) -> Result<Row> {
    let mut knobs = Knobs::from_env();
    knobs.backlog = knob("BENCH_BACKLOG", 20_000);
    let batch = knob("BENCH_BATCH", 1_000) as u64;
    let samples = knob("BENCH_SAMPLES", 200);
    let poll = Duration::from_millis(knob("BENCH_POLL_MS", 20) as u64);
    let n = knobs.backlog;
    let t = TestDb::new(backend).await;
    acts_as_distributed_nats::Migrator::up(&t.db, None).await?;
    progress(&format!("{}: writing {n} events", backend.name()));
    write_backlog(&t.db, backend.name(), &knobs).await?;

    // 1. No-op drain.
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let started = Instant::now();
    let handle = Worker::builder(t.db.clone(), "noop")
        .batch_size(batch)
        .listen(false)
        .poll_interval(Duration::from_millis(100))
        .handler(move |_e: Event| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::Relaxed);
                Ok::<_, HandlerError>(())
            }
        })
        .build()?
        .spawn();
    wait("drain", Duration::from_secs(600), async || {
        seen.load(Ordering::Relaxed) >= n
    })
    .await?;
    let drain = n as f64 / started.elapsed().as_secs_f64();
    handle.shutdown(Duration::from_secs(10)).await?;
    progress(&format!("{}: no-op drain {drain:.0}/s", backend.name()));

    // 2. Relay.
    let client = acts_as_distributed_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("BENCH_{run}");
    let relay = Relay::builder(t.db.clone(), client, format!("bench-{run}"))
        .subjects(Subjects::prefix(format!("bench_{run}")))
        .build()?;
    StreamSpec::new(&name, relay.subjects()).ensure(&js).await?;
    let started = Instant::now();
    let relaying = relay
        .worker("relay")
        .batch_size(batch)
        .poll_interval(poll)
        .build()?
        .spawn();
    let stream_count = async || -> u64 {
        match js.get_stream(&name).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    };
    wait("relay", Duration::from_secs(600), async || {
        stream_count().await >= n as u64
    })
    .await?;
    let relay_rate = n as f64 / started.elapsed().as_secs_f64();
    progress(&format!("{}: relay {relay_rate:.0}/s", backend.name()));

    // 3. Stream consumer; 4. end to end.
    let got = Arc::new(AtomicUsize::new(0));
    let arrived: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let (g, a) = (got.clone(), arrived.clone());
    let started = Instant::now();
    let consuming = StreamConsumer::builder(js.clone(), &name, "bench")
        .tasks(4)
        .handler(move |e: Event| {
            let (g, a) = (g.clone(), a.clone());
            async move {
                g.fetch_add(1, Ordering::Relaxed);
                a.lock().expect("arrived").insert(e.id, Instant::now());
                Ok::<_, HandlerError>(())
            }
        })
        .build()?
        .spawn();
    wait("stream consumer", Duration::from_secs(600), async || {
        got.load(Ordering::Relaxed) >= n
    })
    .await?;
    let consumer_rate = n as f64 / started.elapsed().as_secs_f64();
    progress(&format!(
        "{}: stream consumer {consumer_rate:.0}/s",
        backend.name()
    ));
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let before = got.load(Ordering::Relaxed);
        seed_events(&t.db, 1, 1, n + i).await?;
        let committed = Instant::now();
        wait("end to end", Duration::from_secs(30), async || {
            got.load(Ordering::Relaxed) > before
        })
        .await?;
        let at = *arrived
            .lock()
            .expect("arrived")
            .values()
            .max()
            .unwrap_or(&committed);
        latencies.push(at.saturating_duration_since(committed).as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    consuming.shutdown(Duration::from_secs(10)).await?;
    relaying.shutdown(Duration::from_secs(10)).await?;
    js.delete_stream(&name).await?;
    Ok(Row {
        backend: backend.name(),
        drain,
        relay: relay_rate,
        consumer: consumer_rate,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
    })
}

fn main() -> Result<()> {
    let Ok(url) = std::env::var("TEST_NATS_URL") else {
        eprintln!("set TEST_NATS_URL (e.g. nats://127.0.0.1:4222) to run the NATS bench");
        return Ok(());
    };
    let (rows, took) = on_each_backend(async |backend: &Backend| bench(backend, &url).await)?;
    table_head(
        &[
            "backend",
            "no-op drain (events/s)",
            "relay (events/s)",
            "relay / drain",
            "stream consumer (msgs/s)",
            "end to end p50 (ms)",
            "end to end p99 (ms)",
        ],
        1,
    );
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.1} | {:.1} |",
            r.backend,
            r.drain,
            r.relay,
            r.relay / r.drain,
            r.consumer,
            r.p50_ms,
            r.p99_ms
        );
    }
    println!("\n(run took {:.0} s)", took.as_secs_f64());
    Ok(())
}
