//! Run with: `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench replication`
//!
//! The replication rate: events applied per second by `Replicator::worker` draining a backlog,
//! from PostgreSQL into SQLite and into PostgreSQL (and SQLite into SQLite), beside a worker of
//! the same queue with a no-op handler in the same run: the ratio is what applying costs on top
//! of consuming.
//!
//! The backlog is made by real captures on the source (not timed): `BENCH_OBJECTS` customers
//! created, then `BENCH_UPDATES` updates of random customers (one or two columns each), then one
//! customer in ten destroyed, through `acts_as_distributed::transaction` in batches of 500. Each
//! variant is a fresh consumer (`StartFrom::Oldest`) over that same backlog, with a fresh replica
//! database; the clock runs from `spawn()` until the consumer has no pending event. Variants run
//! in an order that rotates per round; each figure is the median over `BENCH_ROUNDS` rounds.
//! After each replication the bench checks `verify` says equal (not timed).
//!
//! Knobs: `BENCH_OBJECTS` (2000), `BENCH_UPDATES` (6000), `BENCH_ROUNDS` (3), `BENCH_BATCH`
//! (500). The table goes to stdout, progress to stderr.

use acts_as_distributed::{HandlerError, Queue, Replicator, StartFrom, Worker};
use acts_as_distributed_suite::bench::{BoxError, knob, median, progress};
use acts_as_distributed_suite::entities::customer;
use acts_as_distributed_suite::testdb::{Backend, TestDb, backends};
use sea_orm::prelude::{Decimal, Uuid};
use sea_orm::{ActiveModelTrait, DatabaseConnection, IntoActiveModel, Set};
use std::time::{Duration, Instant};

/// Writes the backlog on `db` through captures. Returns the number of events.
async fn backlog(
    db: &DatabaseConnection,
    objects: usize,
    updates: usize,
) -> Result<usize, BoxError> {
    let mut made: Vec<customer::Model> = Vec::with_capacity(objects);
    for start in (0..objects).step_by(500) {
        let end = (start + 500).min(objects);
        let batch = acts_as_distributed::transaction(db, |txn| {
            Box::pin(async move {
                let mut out = Vec::new();
                for i in start..end {
                    out.push(
                        customer::ActiveModel {
                            uuid: Set(Uuid::new_v4()),
                            name: Set(format!("customer {i}")),
                            credit: Set(Decimal::new(i as i64 * 7, 2)),
                            note: Set((i % 3 == 0).then(|| "vip".to_owned())),
                            ..Default::default()
                        }
                        .insert(txn)
                        .await?,
                    );
                }
                Ok::<_, sea_orm::DbErr>(out)
            })
        })
        .await?;
        made.extend(batch);
    }
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let picks: Vec<(usize, u64)> = (0..updates)
        .map(|_| ((next() % objects as u64) as usize, next()))
        .collect();
    for chunk in picks.chunks(500) {
        let chunk = chunk.to_vec();
        let models: Vec<customer::Model> = chunk.iter().map(|(i, _)| made[*i].clone()).collect();
        acts_as_distributed::transaction(db, |txn| {
            Box::pin(async move {
                for (model, (_, r)) in models.into_iter().zip(chunk) {
                    let mut am = model.into_active_model();
                    am.name = Set(format!("renamed {r}"));
                    if r % 2 == 0 {
                        am.credit = Set(Decimal::new((r % 100_000) as i64, 2));
                    }
                    am.update(txn).await?;
                }
                Ok::<_, sea_orm::DbErr>(())
            })
        })
        .await?;
    }
    let doomed: Vec<customer::Model> = made.into_iter().step_by(10).collect();
    let destroyed = doomed.len();
    for chunk in doomed.chunks(500) {
        let chunk = chunk.to_vec();
        acts_as_distributed::transaction(db, |txn| {
            Box::pin(async move {
                for model in chunk {
                    model.into_active_model().delete(txn).await?;
                }
                Ok::<_, sea_orm::DbErr>(())
            })
        })
        .await?;
    }
    Ok(objects + updates + destroyed)
}

/// Drains the backlog as consumer `consumer` with `worker`; returns the seconds taken.
async fn drain(
    source: &DatabaseConnection,
    consumer: &str,
    worker: Worker,
) -> Result<f64, BoxError> {
    let queue = Queue::new(source.clone());
    queue.register_consumer(consumer, StartFrom::Oldest).await?;
    let started = Instant::now();
    let handle = worker.spawn();
    loop {
        let status = queue.status().await?;
        let left: u64 = status
            .iter()
            .filter(|c| c.consumer == consumer)
            .flat_map(|c| &c.types)
            .map(|t| t.pending + t.errored + t.dead)
            .sum();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    handle.shutdown(Duration::from_secs(10)).await?;
    Ok(seconds)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let objects = knob("BENCH_OBJECTS", 2_000);
    let updates = knob("BENCH_UPDATES", 6_000);
    let rounds = knob("BENCH_ROUNDS", 3);
    let batch = knob("BENCH_BATCH", 500) as u64;
    let all = backends();
    let postgres = all
        .iter()
        .find(|b| matches!(b, Backend::Postgres(_)))
        .cloned();
    let mut sources = vec![Backend::Sqlite];
    sources.extend(postgres.clone());

    println!(
        "| source | replica | events | no-op drain (events/s) | replication (events/s) | ratio |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for source_backend in sources {
        let source = TestDb::new(&source_backend).await;
        progress(&format!("{}: writing the backlog", source_backend.name()));
        let events = backlog(&source.db, objects, updates).await?;
        Queue::new(source.db.clone()).sequence().await?;
        let replicas: Vec<Backend> = match &source_backend {
            Backend::Postgres(_) => vec![Backend::Sqlite, source_backend.clone()],
            _ => vec![Backend::Sqlite],
        };
        // Variant 0 is the no-op drain; variant i + 1 replicates into replicas[i].
        let variants = replicas.len() + 1;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants];
        for round in 0..rounds {
            for k in 0..variants {
                let v = (k + round) % variants;
                let consumer = format!("bench_{round}_{v}");
                if v == 0 {
                    let worker = Worker::builder(source.db.clone(), consumer.clone())
                        .handler(|_e: acts_as_distributed::Event| async {
                            Ok::<_, HandlerError>(())
                        })
                        .batch_size(batch)
                        .poll_interval(Duration::from_millis(5))
                        .listen(false)
                        .build()?;
                    times[0].push(drain(&source.db, &consumer, worker).await?);
                } else {
                    let replica = TestDb::empty(&replicas[v - 1]).await;
                    acts_as_distributed_suite::entities::create_tables(&replica.db).await;
                    let replicator = Replicator::builder(replica.db.clone())
                        .entity::<customer::Entity>()
                        .build()?;
                    let worker = replicator
                        .worker(source.db.clone(), consumer.clone())
                        .batch_size(batch)
                        .poll_interval(Duration::from_millis(5))
                        .listen(false)
                        .build()?;
                    times[v].push(drain(&source.db, &consumer, worker).await?);
                    let report = replicator.verify(&source.db).await?;
                    if !report.is_equal() {
                        return Err(format!("the replica differs:\n{report}").into());
                    }
                }
                progress(&format!(
                    "{} round {round} variant {v}: {:.2} s",
                    source_backend.name(),
                    times[v].last().copied().unwrap_or_default()
                ));
            }
        }
        let noop = events as f64 / median(&times[0]);
        for (i, replica) in replicas.iter().enumerate() {
            let rate = events as f64 / median(&times[i + 1]);
            println!(
                "| {} | {} | {events} | {noop:.0} | {rate:.0} | {:.2}x |",
                source_backend.name(),
                replica.name(),
                rate / noop
            );
        }
    }
    Ok(())
}
