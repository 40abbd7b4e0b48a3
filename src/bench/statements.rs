//! Statement times from sqlx's own logging, and the library's warnings.
//!
//! A pool made by [`logging_pool`] has sqlx statement logging on. The `tracing` subscriber of
//! [`install_statement_log!`](crate::install_statement_log) listens only to `sqlx::query` (which
//! only such pools emit) and to the library's warnings, and writes each event to a [`Sink`]:
//! while [`profiling`] is on, a statement event adds its elapsed time (sqlx's own timer: from
//! sending to the last row) to the profile that [`take_profile`] hands out; a warning is counted
//! ([`warnings`]) and the first 20 go to stderr.

use super::{Result, progress};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Per statement key: calls and total seconds.
pub type Profile = HashMap<String, (usize, f64)>;

/// Filled only while `PROFILING` is set.
static PROFILE: Mutex<Option<Profile>> = Mutex::new(None);
static PROFILING: AtomicBool = AtomicBool::new(false);
/// Warnings logged by acts_as_distributed so far.
static WARNINGS: AtomicUsize = AtomicUsize::new(0);
/// Rows inserted, updated or deleted by the statements logged while profiling.
static ROWS_WRITTEN: AtomicUsize = AtomicUsize::new(0);

/// The subscriber's filter: sqlx's statements and the library's warnings, nothing else.
pub const FILTER: &str = "sqlx::query=trace,acts_as_distributed=warn";

/// Installs the `tracing` subscriber that sends sqlx's statement events (only a
/// [`logging_pool`] logs them) and the library's warnings to a
/// [`Sink`](crate::bench::statements::Sink); every other callsite stays disabled, so the timed
/// parts pay nothing for it. Evaluates to the `Result` of `try_init`.
///
/// A macro because `tracing-subscriber` is a dev-dependency of the suite: it expands in the
/// bench, which has it.
#[macro_export]
macro_rules! install_statement_log {
    () => {
        ::tracing_subscriber::fmt()
            .with_env_filter(::tracing_subscriber::EnvFilter::new(
                $crate::bench::statements::FILTER,
            ))
            .with_writer($crate::bench::statements::Sink::default)
            .with_ansi(false)
            .without_time()
            .try_init()
    };
}

/// A pool on `url` with sqlx statement logging on (4 connections).
pub async fn logging_pool(url: &str) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(4).sqlx_logging(true);
    Ok(Database::connect(options).await?)
}

/// Turns adding statement times to the profile on or off.
pub fn profiling(on: bool) {
    PROFILING.store(on, Ordering::Release);
}

/// The warnings the library logged so far.
pub fn warnings() -> usize {
    WARNINGS.load(Ordering::Relaxed)
}

/// The rows written (inserted, updated, deleted: sqlx's `rows_affected` of each `INSERT`,
/// `UPDATE` and `DELETE`) while profiling, since the last call.
pub fn take_rows_written() -> usize {
    ROWS_WRITTEN.swap(0, Ordering::AcqRel)
}

/// The profile so far, most time first, and a fresh one.
pub fn take_profile() -> Vec<(String, usize, f64)> {
    let map = PROFILE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_default();
    let mut v: Vec<_> = map.into_iter().map(|(k, (n, s))| (k, n, s)).collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v
}

/// Receives one formatted event and adds it to the profile (or counts a warning) when dropped.
#[derive(Default)]
pub struct Sink(Vec<u8>);

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
            let verb = sql.trim_start().get(..6).unwrap_or("").to_ascii_uppercase();
            if ["INSERT", "UPDATE", "DELETE"].contains(&verb.as_str()) {
                let rows = field_after(line, "rows_affected=")
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                ROWS_WRITTEN.fetch_add(rows, Ordering::Relaxed);
            }
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

/// A short name for a logged statement: whitespace collapsed, `$n` as `?`, lists of `?` folded,
/// then `SELECT … FROM <what follows>` for SELECTs (the outermost `FROM`) and the first 64
/// characters otherwise.
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

#[cfg(test)]
mod tests {
    #[test]
    fn statement_keys() {
        assert_eq!(
            super::statement_key("UPDATE t  SET a = $1 WHERE id IN ($2, $3, $4)"),
            "UPDATE t SET a = ? WHERE id IN (?)"
        );
        assert_eq!(
            super::statement_key("SELECT (SELECT 1 FROM x) FROM bench_jobs WHERE b = ?"),
            "SELECT … FROM bench_jobs WHERE b = ?"
        );
    }
}
