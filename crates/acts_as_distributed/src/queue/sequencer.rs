//! The sequencer: numbers events (`distributes.seq`) in the order they become visible, so that a
//! transaction committing after a later id is never passed over by a consumer's position.

use crate::backend;
use crate::error::{Error, Result};
use crate::sql::{Sql, scalar, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr};

/// Events numbered per sequencer transaction.
pub(crate) const SEQUENCE_BATCH: u64 = 10_000;

/// The highest `seq` given so far.
pub(crate) async fn last_seq<C: ConnectionTrait>(db: &C) -> Result<i64> {
    Ok(scalar(
        db,
        stmt(
            db.get_database_backend(),
            "SELECT last_seq FROM distribute_sequencer WHERE id = 1",
            vec![],
        ),
    )
    .await?
    .unwrap_or(0))
}

/// Numbers every event visible now; returns how many.
pub(crate) async fn sequence_all(db: &DatabaseConnection) -> Result<u64> {
    let mut total = 0;
    loop {
        let n = sequence(db, SEQUENCE_BATCH).await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

/// Numbers up to `limit` events that became visible since the last run, in `id` order, after
/// every `seq` given before. Returns how many.
pub(crate) async fn sequence(db: &DatabaseConnection, limit: u64) -> Result<u64> {
    let b = db.get_database_backend();
    let txn = backend::begin_read_committed(db).await?;
    // The lock: one sequencer at a time (on SQLite, the write lock).
    txn.execute_raw(stmt(
        b,
        "UPDATE distribute_sequencer SET last_seq = last_seq WHERE id = 1",
        vec![],
    ))
    .await?;
    // Above every seq given, and above any seq a row was written with by hand (a collision
    // with the unique index would fail every run, and later events would wait forever).
    let row = txn
        .query_one_raw(stmt(
            b,
            "SELECT last_seq, (SELECT MAX(seq) FROM distributes) FROM distribute_sequencer WHERE id = 1",
            vec![],
        ))
        .await?
        .ok_or_else(|| {
            Error::Db(DbErr::Custom(
                "distribute_sequencer has no row: rerun the queue migration".into(),
            ))
        })?;
    let given: i64 = row.try_get_by_index(0)?;
    let written: Option<i64> = row.try_get_by_index(1)?;
    let last = given.max(written.unwrap_or(0));
    let numbered = if backend::writes_by_key(&txn) {
        number_by_key(&txn, last, limit).await?
    } else {
        number_range(&txn, last, limit).await?
    };
    let Some((numbered, high_seq)) = numbered else {
        txn.rollback().await?;
        return Ok(0);
    };
    txn.execute_raw(stmt(
        b,
        "UPDATE distribute_sequencer SET last_seq = ? WHERE id = 1",
        vec![high_seq.into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(numbered)
}

/// Numbers the first `limit` unsequenced events, `seq = id + shift` with `shift = last + 1 -
/// (lowest id)`: that keeps the id order, starts above every seq given before, and takes one
/// statement whatever the count. Gaps in seq are harmless. An event of this id range that became
/// visible meanwhile gets its seq in this same batch, which no consumer has seen yet. Returns how
/// many, and the highest seq given; `None` when there was nothing to number.
async fn number_range(
    txn: &DatabaseTransaction,
    last: i64,
    limit: u64,
) -> Result<Option<(u64, i64)>> {
    let b = txn.get_database_backend();
    let range = txn
        .query_one_raw(stmt(
            b,
            "SELECT MIN(id), MAX(id) FROM \
             (SELECT id FROM distributes WHERE seq IS NULL ORDER BY id LIMIT ?) batch",
            vec![(limit as i64).into()],
        ))
        .await?;
    let bound = |i| -> Result<Option<i64>, DbErr> {
        Ok(range
            .as_ref()
            .map(|r| r.try_get_by_index::<Option<i64>>(i))
            .transpose()?
            .flatten())
    };
    let (Some(low), Some(high)) = (bound(0)?, bound(1)?) else {
        return Ok(None);
    };
    let shift = last + 1 - low;
    let numbered = txn
        .execute_raw(stmt(
            b,
            "UPDATE distributes SET seq = id + ? WHERE seq IS NULL AND id >= ? AND id <= ?",
            vec![shift.into(), low.into(), high.into()],
        ))
        .await?
        .rows_affected();
    Ok(Some((numbered, high + shift)))
}

/// [`number_range`] for MySQL, where the range `UPDATE` would wait on every uncommitted event in
/// its range (see [`backend::writes_by_key`]): the ids of the events visible now come from a plain
/// read, and only they are numbered, by primary key. An event still uncommitted in between is
/// numbered by a later run, above this batch, like any event that becomes visible later.
async fn number_by_key(
    txn: &DatabaseTransaction,
    last: i64,
    limit: u64,
) -> Result<Option<(u64, i64)>> {
    let b = txn.get_database_backend();
    let ids: Vec<i64> = txn
        .query_all_raw(stmt(
            b,
            "SELECT id FROM distributes WHERE seq IS NULL ORDER BY id LIMIT ?",
            vec![(limit as i64).into()],
        ))
        .await?
        .iter()
        .map(|r| r.try_get_by_index::<i64>(0))
        .collect::<Result<_, _>>()?;
    let (Some(&low), Some(&high)) = (ids.first(), ids.last()) else {
        return Ok(None);
    };
    let shift = last + 1 - low;
    let mut numbered = 0;
    for chunk in ids.chunks(backend::KEYS_PER_STATEMENT) {
        let mut q = Sql::new("UPDATE ");
        q.append(backend::join_keys(chunk, "distributes e", "PRIMARY"))
            .push("e.id = k.id SET e.seq = e.id + ")
            .bind(shift)
            .push(" WHERE e.seq IS NULL");
        numbered += txn.execute_raw(q.build(b)).await?.rows_affected();
    }
    Ok(Some((numbered, high + shift)))
}
