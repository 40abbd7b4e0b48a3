//! The harness the benchmarks (`benches/*.rs`) share: settings from environment knobs, the loop
//! over backends, Markdown tables and medians; for the queue benches the backlog
//! ([`queue`]), the raw-SQL job-queue baseline ([`raw`]), the process's memory and CPU
//! ([`process`]), the bench's own SQL ([`sql`]) and the statement log ([`statements`]).
//!
//! Bench-only code: none of it stands in for library code, and the bench SQL is written with
//! `sea-query` builders or as per-backend text.

pub mod process;
pub mod queue;
pub mod raw;
pub mod sql;
pub mod statements;

use crate::testdb::{Backend, backends};
use std::io::Write as _;
use std::time::{Duration, Instant};

/// The error of the benches: anything.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A result with [`BoxError`].
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

/// A positive number from the environment variable `name`, or `default`.
pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(default)
}

/// A number from the environment variable `name` where 0 is allowed (it turns a part off), or
/// `default`.
pub fn knob_or_zero(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A progress line on stderr (the tables go to stdout).
pub fn progress(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// The median (NaN for no values).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The largest value (negative infinity for no values).
pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Nearest-rank percentile of sorted values (NaN for no values).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints the head of a Markdown table: the column names, then the rule, left-aligned for the
/// first `text_columns` columns and right-aligned (numbers) for the rest.
pub fn table_head(columns: &[&str], text_columns: usize) {
    println!("| {} |", columns.join(" | "));
    let rule: Vec<&str> = (0..columns.len())
        .map(|i| if i < text_columns { "---" } else { "---:" })
        .collect();
    println!("| {} |", rule.join(" | "));
}

/// Runs `bench` on each backend of [`backends`] (SQLite always, the servers whose URL is set),
/// one after the other in a multi-thread runtime. Returns the results in backend order and the
/// time the whole run took.
pub fn on_each_backend<T>(
    mut bench: impl AsyncFnMut(&Backend) -> Result<T>,
) -> Result<(Vec<T>, Duration)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        for backend in backends() {
            results.push(bench(&backend).await?);
        }
        Ok::<_, BoxError>(results)
    })?;
    Ok((results, started.elapsed()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn medians_and_percentiles() {
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0]), 2.5);
        assert!(super::median(&[]).is_nan());
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(super::percentile(&sorted, 50.0), 2.0);
        assert_eq!(super::percentile(&sorted, 99.0), 4.0);
        assert_eq!(super::max(&sorted), 4.0);
    }
}
