//! A fresh database per test on SQLite (always), PostgreSQL (when `TEST_POSTGRES_URL` is set) and
//! MySQL / MariaDB (when `TEST_MYSQL_URL` is set).
//!
//! The URLs point at a server where the user may create databases, such as
//! `postgres://postgres@127.0.0.1:5432/postgres` and `mysql://root@127.0.0.1:3306/test`. Each
//! [`TestDb`] creates a database of its own with a unique name and drops it when dropped.

use crate::entities;
use acts_as_distributed_migration::Migrator;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Schema};
use sea_orm_migration::MigratorTrait;
use std::io::Write as _;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable with the PostgreSQL server URL.
pub const POSTGRES_URL: &str = "TEST_POSTGRES_URL";
/// The environment variable with the MySQL / MariaDB server URL.
pub const MYSQL_URL: &str = "TEST_MYSQL_URL";

/// A database backend the tests can run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A PostgreSQL server: the URL of a database to connect to for `CREATE DATABASE`.
    Postgres(String),
    /// A MySQL / MariaDB server: the URL of a database to connect to for `CREATE DATABASE`.
    MySql(String),
}

impl Backend {
    /// Short name, for test output.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
            Backend::MySql(_) => "mysql",
        }
    }
}

/// SQLite, and each server backend whose URL is set. Says which backends are skipped and how to
/// enable them, on the terminal, once per `cargo test` run (not once per test binary).
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    let mut skipped = Vec::new();
    match std::env::var(POSTGRES_URL) {
        Ok(url) if !url.is_empty() => all.push(Backend::Postgres(url)),
        _ => skipped.push(format!(
            "PostgreSQL (set {POSTGRES_URL}, e.g. postgres://postgres@127.0.0.1:5432/postgres)"
        )),
    }
    match std::env::var(MYSQL_URL) {
        Ok(url) if !url.is_empty() => all.push(Backend::MySql(url)),
        _ => skipped.push(format!(
            "MySQL/MariaDB (set {MYSQL_URL}, e.g. mysql://root@127.0.0.1:3306/test)"
        )),
    }
    static NOTICE: Once = Once::new();
    if !skipped.is_empty() {
        NOTICE.call_once(|| {
            if first_in_this_run() {
                // Straight to the terminal: the test harness captures `eprintln!`.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: skipping tests on {}",
                    skipped.join(" and ")
                );
            }
        });
    }
    all
}

/// Whether this test binary is the first of its `cargo test` run to get here.
///
/// Each test binary is a process of its own, and cargo runs them one after another as its
/// children. The first to get here creates a marker file in the temporary directory named after
/// that cargo process (its pid and start time, so a reused pid is a new run); the others find it.
/// Markers of cargo processes that are gone are removed on the way. Where that cannot be told
/// (not Linux, not started by cargo), every binary gives the note.
fn first_in_this_run() -> bool {
    let Some(run) = cargo_run() else {
        return true;
    };
    let dir = std::env::temp_dir();
    let prefix = "acts_as_distributed-test-note-";
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or_default();
            if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let marker = dir.join(format!("{prefix}{run}"));
    // `create_new` is atomic: exactly one binary of the run creates the file.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
    {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::AlreadyExists,
    }
}

/// `pid-starttime` of the cargo process that started this one, if it is cargo (Linux).
fn cargo_run() -> Option<String> {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).ok()?;
        if !comm.trim_end().starts_with("cargo") {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{parent}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces; the start
        // time is field 22 of the whole line, so 20th after the name.
        let after_name = stat.rsplit_once(')')?.1;
        let start = after_name.split_whitespace().nth(19)?;
        Some(format!("{parent}-{start}"))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// A database of its own for one test, with `distributes` and the test entities' tables.
pub struct TestDb {
    /// Which backend.
    pub backend: Backend,
    /// The pool.
    pub db: DatabaseConnection,
    /// The URL of this test's database.
    pub url: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh, migrated database on `backend`.
    pub async fn new(backend: &Backend) -> Self {
        let db = Self::empty(backend).await;
        Migrator::up(&db.db, None)
            .await
            .expect("run the distributes migration");
        entities::create_tables(&db.db).await;
        db
    }

    /// A fresh database on `backend` with no tables at all.
    pub async fn empty(backend: &Backend) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "aad_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..8)
                .unwrap_or("x")
        );
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                (url, Some(dir))
            }
            Backend::Postgres(admin) | Backend::MySql(admin) => {
                let conn = Database::connect(admin.as_str())
                    .await
                    .expect("connect to the test server");
                conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create the test database");
                conn.close().await.ok();
                (replace_database(admin, &name), None)
            }
        };
        let mut options = ConnectOptions::new(url.clone());
        options.max_connections(8).sqlx_logging(false);
        let db = Database::connect(options)
            .await
            .expect("connect to the test database");
        if db.get_database_backend() == DbBackend::Sqlite {
            db.execute_unprepared("PRAGMA journal_mode = WAL")
                .await
                .expect("WAL");
        }
        TestDb {
            backend: backend.clone(),
            db,
            url,
            name,
            _dir: dir,
        }
    }

    /// Creates the table of `entity` in this database.
    pub async fn create_table<E: sea_orm::EntityTrait>(&self, entity: E) {
        let backend = self.db.get_database_backend();
        let stmt = Schema::new(backend).create_table_from_entity(entity);
        self.db.execute(&stmt).await.expect("create table");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, force) = match &self.backend {
            Backend::Sqlite => return,
            Backend::Postgres(admin) => (admin.clone(), " WITH (FORCE)"),
            Backend::MySql(admin) => (admin.clone(), ""),
        };
        let sql = format!("DROP DATABASE IF EXISTS {}{force}", self.name);
        // Drop runs outside async; a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let conn = Database::connect(admin.as_str()).await.ok()?;
                conn.execute_unprepared(&sql).await.ok()?;
                conn.close().await.ok()
            })
        })
        .join();
    }
}

/// `url` with its database name replaced by `name`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let without_db = match base.rfind('/') {
        Some(i) if i > base.find("//").map_or(0, |j| j + 1) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{without_db}/{name}?{q}"),
        None => format!("{without_db}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            super::replace_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            super::replace_database("mysql://root@h:3306", "x"),
            "mysql://root@h:3306/x"
        );
        assert_eq!(
            super::replace_database("mysql://root@h/test?ssl-mode=disabled", "x"),
            "mysql://root@h/x?ssl-mode=disabled"
        );
    }
}
