//! Hand-written SQL shared by the queue and the capture paths: placeholders, scalar reads, times.

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use std::time::Duration;

/// A statement in `?` placeholders, numbered `$1, $2, ..` for PostgreSQL.
pub(crate) fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// A statement's text and its values, built in order: each [`bind`](Self::bind) writes a `?` where
/// its value belongs, so the two never get out of step.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    /// A statement starting with `text`.
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.text.push('?');
        self.values.push(value.into());
        self
    }

    /// Appends another statement part, text and values.
    pub(crate) fn append(&mut self, other: Sql) -> &mut Self {
        self.text.push_str(&other.text);
        self.values.extend(other.values);
        self
    }

    /// Appends `?, ?, ..` for the values of `items`.
    pub(crate) fn bind_list<V: Into<Value>>(
        &mut self,
        items: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        for (i, v) in items.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self
    }

    /// The statement for `backend`.
    pub(crate) fn build(&self, backend: DbBackend) -> Statement {
        stmt(backend, &self.text, self.values.clone())
    }
}

/// `?, ?, ?` for `n` values.
pub(crate) fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The first column of the first row, as a number (`None` for no row or NULL).
pub(crate) async fn scalar<C: ConnectionTrait>(
    db: &C,
    statement: Statement,
) -> Result<Option<i64>, DbErr> {
    Ok(db
        .query_one_raw(statement)
        .await?
        .map(|r| r.try_get_by_index::<Option<i64>>(0))
        .transpose()?
        .flatten())
}

/// Now, in milliseconds since the Unix epoch (the unit of every time in the queue tables).
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A duration in milliseconds, saturating.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let s = stmt(
            DbBackend::Postgres,
            "a = ? AND b IN (?, ?)",
            vec![1.into(), 2.into(), 3.into()],
        );
        assert_eq!(s.sql, "a = $1 AND b IN ($2, $3)");
        let s = stmt(DbBackend::MySql, "a = ?", vec![1.into()]);
        assert_eq!(s.sql, "a = ?");
        assert_eq!(marks(3), "?, ?, ?");
        let mut q = Sql::new("SELECT 1 WHERE a = ");
        q.bind(1).push(" AND b IN (").bind_list([2, 3]).push(")");
        let s = q.build(DbBackend::Postgres);
        assert_eq!(s.sql, "SELECT 1 WHERE a = $1 AND b IN ($2, $3)");
        assert_eq!(s.values.map(|v| v.0.len()), Some(3));
    }
}
