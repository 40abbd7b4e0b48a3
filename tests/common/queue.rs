//! Helpers of the queue tests: events written straight into `distributes`, workers that record
//! what they handle, waiting, the queue tables read with raw SQL, and workers in child processes.

use super::events;
use acts_as_distributed::{Event, HandlerError, Worker, WorkerBuilder, WorkerHandle};
pub use acts_as_distributed_suite::bench::queue::insert_events;
use sea_orm::sea_query::Expr;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// Writes one event per `(distributed_type, distributed_id, action)` straight into `distributes`
/// (no capture, no sequencing), in order, 500 rows per statement. The i-th event's `changes` are
/// `{"n": i}`.
pub async fn write_events<C: ConnectionTrait>(db: &C, events: &[(&str, String, &str)]) {
    for (chunk_no, chunk) in events.chunks(500).enumerate() {
        let mut insert = insert_events(&[]);
        for (i, (distributed_type, distributed_id, action)) in chunk.iter().enumerate() {
            insert
                .values([
                    Expr::val(*distributed_type),
                    Expr::val(distributed_id.as_str()),
                    Expr::val(*action),
                    Expr::val(serde_json::json!({ "n": chunk_no * 500 + i })),
                    Expr::val(chrono::Utc::now()),
                ])
                .expect("values");
        }
        db.execute(&insert).await.expect("write events");
    }
}

/// The ids of every event in `distributes`, oldest first.
pub async fn all_ids<C: ConnectionTrait>(db: &C) -> Vec<i64> {
    events(db).await.into_iter().map(|e| e.id).collect()
}

// ---------------------------------------------------------------------------------------------
// Workers that record
// ---------------------------------------------------------------------------------------------

/// Everything a handler saw.
#[derive(Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<Event>>>);

impl Seen {
    /// The ids of the events seen, in the order they were handled.
    pub fn ids(&self) -> Vec<i64> {
        self.0.lock().expect("seen").iter().map(|e| e.id).collect()
    }

    /// How many events were seen.
    pub fn len(&self) -> usize {
        self.0.lock().expect("seen").len()
    }

    /// Records an event.
    pub fn push(&self, e: Event) {
        self.0.lock().expect("seen").push(e);
    }

    /// Whether every one of `ids` was seen.
    pub fn has_all(&self, ids: &[i64]) -> bool {
        let got: HashSet<i64> = self.ids().into_iter().collect();
        ids.iter().all(|id| got.contains(id))
    }
}

/// A worker of `consumer` whose handler records every event in `seen` and succeeds.
fn recorder(db: &DatabaseConnection, consumer: &str, seen: &Seen) -> WorkerBuilder {
    let seen = seen.clone();
    Worker::builder(db.clone(), consumer).handler(move |e: Event| {
        let seen = seen.clone();
        async move {
            seen.push(e);
            Ok::<_, HandlerError>(())
        }
    })
}

/// A worker whose handler records every event and succeeds; it polls every 20 ms (and, on
/// PostgreSQL, listens for NOTIFY as workers do by default).
pub fn recording(db: &DatabaseConnection, consumer: &str, seen: &Seen) -> WorkerBuilder {
    recorder(db, consumer, seen).poll_interval(Duration::from_millis(20))
}

/// A worker whose handler records every event and succeeds; it only polls, every 50 ms, and does
/// not listen for NOTIFY.
pub fn polling_recording(db: &DatabaseConnection, consumer: &str, seen: &Seen) -> WorkerBuilder {
    recorder(db, consumer, seen)
        .poll_interval(Duration::from_millis(50))
        .listen(false)
}

/// Runs `worker` until a run takes nothing; returns how many events it took.
pub async fn drain(worker: &Worker) -> usize {
    let mut total = 0;
    loop {
        let n = worker.run_once().await.expect("run_once");
        total += n;
        if n == 0 {
            return total;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/// Checks `done` every `interval` until it holds or `limit` has passed; returns whether it held.
pub async fn poll_every(
    interval: Duration,
    limit: Duration,
    mut done: impl AsyncFnMut() -> bool,
) -> bool {
    let start = Instant::now();
    loop {
        if done().await {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Checks `done` every 20 ms until it holds or `limit` has passed; returns whether it held.
pub async fn poll_until(limit: Duration, done: impl AsyncFnMut() -> bool) -> bool {
    poll_every(Duration::from_millis(20), limit, done).await
}

/// Checks `done` every 10 ms until it holds; fails the test once `limit` has passed.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let held = poll_every(Duration::from_millis(10), limit, async || done()).await;
    assert!(held, "timed out waiting for {what}");
}

/// Waits up to `limit` for a spawned worker to stop by itself; returns whether it has stopped.
pub async fn stops_within(handle: &WorkerHandle, limit: Duration) -> bool {
    poll_until(limit, async || handle.is_finished()).await;
    handle.is_finished()
}

// ---------------------------------------------------------------------------------------------
// The queue tables, read with raw SQL
// ---------------------------------------------------------------------------------------------

/// A statement with `?` placeholders, numbered for PostgreSQL.
pub fn sql(db: &DatabaseConnection, text: &str, values: Vec<sea_orm::Value>) -> Statement {
    let b = db.get_database_backend();
    let mut text = text.to_owned();
    if b == DbBackend::Postgres {
        let mut n = 0;
        while let Some(i) = text.find('?') {
            n += 1;
            text.replace_range(i..=i, &format!("${n}"));
        }
    }
    Statement::from_sql_and_values(b, text, values)
}

/// The state and attempts of `consumer`'s delivery of the event, if it has a row.
pub async fn delivery_state(
    db: &DatabaseConnection,
    consumer: &str,
    event_id: i64,
) -> Option<(String, i32)> {
    db.query_one_raw(sql(
        db,
        "SELECT state, attempts FROM distribute_deliveries WHERE consumer = ? AND event_id = ?",
        vec![consumer.into(), event_id.into()],
    ))
    .await
    .expect("read delivery")
    .map(|r| {
        (
            r.try_get("", "state").expect("state"),
            r.try_get("", "attempts").expect("attempts"),
        )
    })
}

/// A consumer's position as the queue derives it (docs/queue.md): the lowest batch being handled,
/// or what the consumer has claimed. `c` is its `distribute_consumers` row.
const POSITION: &str = "COALESCE((SELECT MIN(b.lo) FROM distribute_batches b WHERE b.consumer = c.name), c.claimed_to)";

/// Whether `consumer` has handled the event: a `done` delivery, or (once the position moved past
/// it) no delivery row at all below the position.
pub async fn handled(db: &DatabaseConnection, consumer: &str, event_id: i64) -> bool {
    if let Some((state, _)) = delivery_state(db, consumer, event_id).await {
        return state == "done";
    }
    db.query_one_raw(sql(
        db,
        &format!(
            "SELECT COUNT(*) FROM distributes e, distribute_consumers c \
             WHERE e.id = ? AND c.name = ? AND e.seq <= {POSITION}"
        ),
        vec![event_id.into(), consumer.into()],
    ))
    .await
    .expect("read position")
    .expect("a row")
    .try_get_by_index::<i64>(0)
    .expect("count")
        == 1
}

/// How many of `ids` `consumer` has handled.
pub async fn count_handled(db: &DatabaseConnection, consumer: &str, ids: &[i64]) -> usize {
    let mut n = 0;
    for id in ids {
        if handled(db, consumer, *id).await {
            n += 1;
        }
    }
    n
}

/// A consumer's position, if the consumer is registered.
pub async fn position(db: &DatabaseConnection, consumer: &str) -> Option<i64> {
    db.query_one_raw(sql(
        db,
        &format!("SELECT {POSITION} FROM distribute_consumers c WHERE c.name = ?"),
        vec![consumer.into()],
    ))
    .await
    .expect("read position")
    .map(|r| r.try_get_by_index(0).expect("position"))
}

// ---------------------------------------------------------------------------------------------
// Workers in child processes
// ---------------------------------------------------------------------------------------------

/// The environment of a child worker process: the URL of the test's database, and a file the
/// child and its parent share.
const CHILD_URL: &str = "AAD_CHILD_URL";
const CHILD_FILE: &str = "AAD_CHILD_FILE";

/// A worker in a child process: this test binary running one ignored child test, its output
/// discarded. Killed (and reaped) when dropped, so a failing test leaves no process behind.
pub struct ChildWorker(std::process::Child);

impl ChildWorker {
    /// Starts the child test `test` on the database at `url`, sharing `file` (in a temporary
    /// directory, which is the child's working directory: a core dump of an aborting child lands
    /// there). The child reads both with [`child_env`].
    pub fn start(test: &str, url: &str, file: &Path) -> Self {
        let dir = file.parent().expect("the shared file's directory");
        let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_URL, url)
            .env(CHILD_FILE, file)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the child worker");
        Self(child)
    }

    /// `kill -<signal> <pid>` (`STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Its exit status, once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().expect("child status")
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// In a child test: the database and the shared file [`ChildWorker::start`] gave it, or `None`
/// when the test runs on its own.
pub async fn child_env() -> Option<(DatabaseConnection, PathBuf)> {
    let (Ok(url), Ok(file)) = (std::env::var(CHILD_URL), std::env::var(CHILD_FILE)) else {
        return None;
    };
    let db = sea_orm::Database::connect(url).await.expect("connect");
    Some((db, PathBuf::from(file)))
}
