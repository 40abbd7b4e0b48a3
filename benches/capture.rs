//! Run with: `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo bench --bench capture`
//!
//! The overhead of capture, as ratios measured side by side in one run: the time of a create,
//! update or destroy of a distributed entity (`item`, declared with `acts_as_distributed!()`) over
//! the time of the same SeaORM call on an entity with the same columns whose
//! `ActiveModelBehavior` is empty (`plain_item`).
//!
//! Transaction shapes, for each of insert / update / delete:
//!
//! - one row per transaction: `db.begin()`, one SeaORM call, `commit()`. The distributed entity
//!   runs both through `acts_as_distributed::transaction` (the event is buffered and written at
//!   commit) and through a plain `db.begin()` (the event is written at once);
//! - `BENCH_BATCH` rows (1,000 by default) per transaction, the same two ways.
//!
//! Plus a raw-SQL reference through `execute_raw`: a one-row transaction of one INSERT, against one
//! INSERT and one INSERT into `distributes` (the floor of any two-statement capture), and on
//! PostgreSQL against an INSERT whose PL/pgSQL `AFTER INSERT` trigger writes `distributes`.
//!
//! Every round runs every variant of a group once, in an order that rotates from round to round,
//! so that background noise hits each side alike; each figure is the median over rounds of the
//! time per row, and the ratio is the median with capture over the median without.
//!
//! Knobs (environment variables): `BENCH_ROUNDS` (default 7), `BENCH_OPS` (one-row transactions
//! per variant per round, default 200), `BENCH_BATCH` (rows per transaction in the batch shape,
//! default 1000). SQLite always; PostgreSQL when `TEST_POSTGRES_URL` is set; MySQL / MariaDB when
//! `TEST_MYSQL_URL` is set. The table goes to stdout, progress to stderr.

use acts_as_distributed_suite::bench::{
    BoxError, Result, knob, median, on_each_backend, progress, table_head,
};
use acts_as_distributed_suite::testdb::{Backend, TestDb};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;
use uuid::Uuid;

/// One row as both bench entities store it, so that every variant is handed the same data.
#[derive(Clone, Debug)]
struct Row {
    id: i32,
    uuid: Uuid,
    name: String,
    qty: i32,
    created_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// The columns every bench entity has, in a table of its own: the same model for all three,
/// stamped into each module.
macro_rules! bench_entity_model {
    ($table:tt) => {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = $table)]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i32,
            pub uuid: Uuid,
            pub name: String,
            pub qty: i32,
            pub created_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
    };
}

/// The SeaORM calls each bench entity runs; the same code for both, stamped into each module.
macro_rules! bench_entity_ops {
    () => {
        use super::{Op, Row};
        use sea_orm::{
            ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
        };

        fn model(row: &Row) -> Model {
            Model {
                id: row.id,
                uuid: row.uuid,
                name: row.name.clone(),
                qty: row.qty,
                created_at: row.created_at,
            }
        }

        /// `op` on each row, one SeaORM call a row, through `db`.
        pub async fn run<C: ConnectionTrait>(op: Op, db: &C, rows: &[Row]) -> Result<(), DbErr> {
            for row in rows {
                match op {
                    Op::Insert => {
                        ActiveModel {
                            uuid: Set(row.uuid),
                            name: Set(row.name.clone()),
                            qty: Set(row.qty),
                            created_at: Set(row.created_at),
                            ..Default::default()
                        }
                        .insert(db)
                        .await?;
                    }
                    Op::Update => {
                        // As after a find: every column `Unchanged`, then two of them set.
                        let mut am: ActiveModel = model(row).into();
                        am.name = Set(row.name.clone());
                        am.qty = Set(row.qty);
                        am.update(db).await?;
                    }
                    Op::Delete => {
                        ActiveModel::from(model(row)).delete(db).await?;
                    }
                }
            }
            Ok(())
        }

        /// Inserts `rows` without hooks (so without events), all with `qty = tag`, and returns
        /// them as stored.
        pub async fn seed<C: ConnectionTrait>(
            db: &C,
            rows: &[Row],
            tag: i32,
        ) -> Result<Vec<Row>, DbErr> {
            for chunk in rows.chunks(500) {
                Entity::insert_many(chunk.iter().map(|r| ActiveModel {
                    uuid: Set(r.uuid),
                    name: Set(r.name.clone()),
                    qty: Set(tag),
                    created_at: Set(r.created_at),
                    ..Default::default()
                }))
                .exec_without_returning(db)
                .await?;
            }
            let stored = Entity::find()
                .filter(Column::Qty.eq(tag))
                .all(db)
                .await?
                .into_iter()
                .map(|m| Row {
                    id: m.id,
                    uuid: m.uuid,
                    name: m.name,
                    qty: m.qty,
                    created_at: m.created_at,
                })
                .collect();
            Ok(stored)
        }
    };
}

/// The baseline: the same columns, an empty `ActiveModelBehavior`.
mod plain_item {
    bench_entity_model!("bench_plain_items");

    impl ActiveModelBehavior for ActiveModel {}

    bench_entity_ops!();
}

/// The distributed entity: events of type `Item`.
mod item {
    bench_entity_model!("bench_items");

    acts_as_distributed::acts_as_distributed!();

    bench_entity_ops!();
}

/// Only for its table: the raw-SQL reference writes it with hand-written statements.
mod raw_item {
    bench_entity_model!("bench_raw_items");

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Variant {
    /// `plain_item` in `db.begin()` .. `commit()`.
    Plain,
    /// `item` in `db.begin()` .. `commit()`: each event written by its own INSERT at once.
    CapturedBegin,
    /// `item` in `acts_as_distributed::transaction`: events buffered, written at commit.
    CapturedHelper,
    /// Raw SQL: one INSERT.
    RawOne,
    /// Raw SQL: one INSERT, then one INSERT into `distributes`.
    RawTwo,
    /// Raw SQL: one INSERT into a table whose AFTER INSERT trigger writes `distributes`.
    RawTrigger,
}

impl Variant {
    fn captured(self) -> bool {
        matches!(self, Variant::CapturedBegin | Variant::CapturedHelper)
    }
}

/// Hand-written statements of the raw-SQL reference, in the backend's placeholder syntax.
struct RawSql {
    backend: DbBackend,
    item: String,
    trigger_item: String,
    event: String,
}

impl RawSql {
    fn new(backend: DbBackend) -> Self {
        let item = |table: &str| match backend {
            DbBackend::Postgres => {
                format!("INSERT INTO {table} (uuid, name, qty, created_at) VALUES ($1, $2, $3, $4)")
            }
            _ => format!("INSERT INTO {table} (uuid, name, qty, created_at) VALUES (?, ?, ?, ?)"),
        };
        // What the library writes for a create, minus the NULL client_id and messages.
        let event = match backend {
            DbBackend::Postgres => {
                "INSERT INTO distributes (distributed_type, distributed_id, action, \
                 changes, created_at, format, source_txid) VALUES ($1, $2, 'create', $3, $4, 1, \
                 pg_current_xact_id()::text::bigint)"
                    .to_owned()
            }
            _ => "INSERT INTO distributes (distributed_type, distributed_id, action, changes, \
                  created_at, format) VALUES (?, ?, 'create', ?, ?, 1)"
                .to_owned(),
        };
        RawSql {
            backend,
            item: item("bench_raw_items"),
            trigger_item: item("bench_raw_trigger_items"),
            event,
        }
    }

    async fn run<C: ConnectionTrait>(&self, variant: Variant, db: &C, rows: &[Row]) -> Result<()> {
        for row in rows {
            let values: [Value; 4] = [
                row.uuid.into(),
                row.name.clone().into(),
                row.qty.into(),
                row.created_at.into(),
            ];
            let sql = if variant == Variant::RawTrigger {
                &self.trigger_item
            } else {
                &self.item
            };
            db.execute_raw(Statement::from_sql_and_values(
                self.backend,
                sql.as_str(),
                values,
            ))
            .await?;
            if variant == Variant::RawTwo {
                let changes = serde_json::json!({
                    "uuid": row.uuid.to_string(),
                    "name": row.name,
                    "qty": row.qty,
                });
                let values: [Value; 4] = [
                    "RawItem".into(),
                    row.uuid.to_string().into(),
                    changes.into(),
                    row.created_at.into(),
                ];
                db.execute_raw(Statement::from_sql_and_values(
                    self.backend,
                    self.event.as_str(),
                    values,
                ))
                .await?;
            }
        }
        Ok(())
    }
}

/// A PostgreSQL copy of the raw table whose AFTER INSERT trigger writes the event.
async fn create_trigger_table(db: &DatabaseConnection) -> Result<()> {
    for sql in [
        "CREATE TABLE bench_raw_trigger_items (LIKE bench_raw_items INCLUDING ALL)",
        "CREATE FUNCTION bench_capture() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO distributes (distributed_type, distributed_id, action, changes, created_at,
                                    format, source_txid)
           VALUES ('RawItem', NEW.uuid::text, 'create',
                   jsonb_build_object('uuid', NEW.uuid, 'name', NEW.name, 'qty', NEW.qty),
                   now(), 1, pg_current_xact_id()::text::bigint);
           RETURN NULL;
         END
         $$",
        "CREATE TRIGGER bench_capture AFTER INSERT ON bench_raw_trigger_items
         FOR EACH ROW EXECUTE FUNCTION bench_capture()",
    ] {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

/// Runs the rows of one transaction in `variant`.
async fn run_transaction(
    db: &DatabaseConnection,
    raw: &RawSql,
    variant: Variant,
    op: Op,
    rows: Vec<Row>,
) -> Result<()> {
    match variant {
        Variant::Plain => {
            let txn = db.begin().await?;
            plain_item::run(op, &txn, &rows).await?;
            txn.commit().await?;
        }
        Variant::CapturedBegin => {
            let txn = db.begin().await?;
            item::run(op, &txn, &rows).await?;
            txn.commit().await?;
        }
        Variant::CapturedHelper => {
            acts_as_distributed::transaction(db, |txn| {
                Box::pin(async move { item::run(op, txn, &rows).await })
            })
            .await?;
        }
        Variant::RawOne | Variant::RawTwo | Variant::RawTrigger => {
            let txn = db.begin().await?;
            raw.run(variant, &txn, &rows).await?;
            txn.commit().await?;
        }
    }
    Ok(())
}

/// Unique `qty` tags for seeded rows (the row values of the timed runs stay below them).
static SEED_TAG: AtomicI32 = AtomicI32::new(1_000_000);

fn new_rows(n: usize, label: &str) -> Vec<Row> {
    let now = Utc::now();
    (0..n)
        .map(|i| Row {
            id: 0,
            uuid: Uuid::new_v4(),
            name: format!("{label}-{i}"),
            qty: i32::try_from(i % 100_000).unwrap_or(0),
            created_at: now,
        })
        .collect()
}

async fn seed(db: &DatabaseConnection, variant: Variant, n: usize) -> Result<Vec<Row>> {
    let tag = SEED_TAG.fetch_add(1, Ordering::Relaxed);
    let rows = new_rows(n, "seed");
    let stored = if variant == Variant::Plain {
        plain_item::seed(db, &rows, tag).await?
    } else {
        item::seed(db, &rows, tag).await?
    };
    if stored.len() != n {
        return Err(format!("seeded {} rows, found {}", n, stored.len()).into());
    }
    Ok(stored)
}

/// One measured group: one operation, one transaction shape, the baseline and what it is
/// compared with.
struct Group {
    op: Op,
    /// Transactions per variant per round.
    transactions: usize,
    rows_per_transaction: usize,
    baseline: Variant,
    compared: Vec<(Variant, String)>,
    operation_label: &'static str,
}

/// Per variant, the time per row of each round (in round order).
type Timings = HashMap<Variant, Vec<f64>>;

struct Bench<'a> {
    db: &'a DatabaseConnection,
    raw: RawSql,
    /// Rows whose `update` the update groups time, per table.
    update_pool: HashMap<bool, Vec<Row>>,
    /// Rows the captured variants changed: the events `distributes` must hold.
    expected_item_events: usize,
    expected_raw_events: usize,
}

impl Bench<'_> {
    /// The rows of one variant's turn, split in transactions; seeds the rows of a delete first.
    async fn prepare(
        &mut self,
        group: &Group,
        variant: Variant,
        turn: usize,
        transactions: usize,
        per_transaction: usize,
    ) -> Result<Vec<Vec<Row>>> {
        let n = transactions * per_transaction;
        let rows = match group.op {
            Op::Insert => new_rows(n, &format!("ins{turn}")),
            Op::Update => {
                let captured = variant.captured();
                if self.update_pool.get(&captured).is_none_or(|p| p.len() < n) {
                    let pool = seed(self.db, variant, n).await?;
                    self.update_pool.insert(captured, pool);
                }
                let pool = self.update_pool.get(&captured).map_or(&[][..], |p| &p[..n]);
                pool.iter()
                    .enumerate()
                    .map(|(i, r)| Row {
                        name: format!("upd{turn}-{i}"),
                        qty: i32::try_from(turn % 100_000).unwrap_or(0),
                        ..r.clone()
                    })
                    .collect()
            }
            Op::Delete => seed(self.db, variant, n).await?,
        };
        Ok(rows.chunks(per_transaction).map(<[Row]>::to_vec).collect())
    }

    /// Runs one variant's turn and returns the time per row.
    async fn turn(
        &mut self,
        group: &Group,
        variant: Variant,
        turn: usize,
        transactions: usize,
        per_transaction: usize,
    ) -> Result<f64> {
        let work = self
            .prepare(group, variant, turn, transactions, per_transaction)
            .await?;
        let rows: usize = work.iter().map(Vec::len).sum();
        let start = Instant::now();
        for rows in work {
            run_transaction(self.db, &self.raw, variant, group.op, rows).await?;
        }
        let elapsed = start.elapsed();
        if variant.captured() {
            self.expected_item_events += rows;
        }
        if matches!(variant, Variant::RawTwo | Variant::RawTrigger) {
            self.expected_raw_events += rows;
        }
        Ok(elapsed.as_secs_f64() / rows as f64)
    }

    async fn run_group(&mut self, group: &Group, rounds: usize) -> Result<Timings> {
        let mut variants: Vec<Variant> = std::iter::once(group.baseline)
            .chain(group.compared.iter().map(|(v, _)| *v))
            .collect();
        let mut turn = 0;
        // Warm-up (not timed): pool connections, prepared statements, caches.
        for &v in &variants {
            turn += 1;
            self.turn(
                group,
                v,
                turn,
                group.transactions.min(20),
                group.rows_per_transaction.min(20),
            )
            .await?;
        }
        let mut timings = Timings::new();
        for round in 0..rounds {
            if round > 0 {
                variants.rotate_left(1);
            }
            for &v in &variants {
                turn += 1;
                let t = self
                    .turn(
                        group,
                        v,
                        turn,
                        group.transactions,
                        group.rows_per_transaction,
                    )
                    .await?;
                timings.entry(v).or_default().push(t);
            }
        }
        Ok(timings)
    }
}

struct Line {
    backend: &'static str,
    operation: &'static str,
    shape: String,
    without: f64,
    with: f64,
    ratio_min: f64,
    ratio_max: f64,
}

fn lines_of(backend: &'static str, group: &Group, timings: &Timings) -> Vec<Line> {
    let base = timings.get(&group.baseline).map_or(&[][..], Vec::as_slice);
    group
        .compared
        .iter()
        .map(|(variant, shape)| {
            let with = timings.get(variant).map_or(&[][..], Vec::as_slice);
            let per_round: Vec<f64> = with.iter().zip(base).map(|(w, b)| w / b).collect();
            Line {
                backend,
                operation: group.operation_label,
                shape: shape.clone(),
                without: median(base),
                with: median(with),
                ratio_min: per_round.iter().copied().fold(f64::INFINITY, f64::min),
                ratio_max: per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            }
        })
        .collect()
}

async fn bench_backend(
    backend: &Backend,
    rounds: usize,
    ops: usize,
    batch: usize,
) -> Result<Vec<Line>> {
    let test_db = TestDb::new(backend).await;
    test_db.create_table(plain_item::Entity).await;
    test_db.create_table(item::Entity).await;
    test_db.create_table(raw_item::Entity).await;
    let db = &test_db.db;
    let kind = db.get_database_backend();
    if kind == DbBackend::Postgres {
        create_trigger_table(db).await?;
    }
    let mut bench = Bench {
        db,
        raw: RawSql::new(kind),
        update_pool: HashMap::new(),
        expected_item_events: 0,
        expected_raw_events: 0,
    };

    let mut groups = Vec::new();
    for op in [Op::Insert, Op::Update, Op::Delete] {
        groups.push(Group {
            op,
            transactions: ops,
            rows_per_transaction: 1,
            baseline: Variant::Plain,
            compared: vec![
                (Variant::CapturedHelper, "1 row/tx, helper".to_owned()),
                (Variant::CapturedBegin, "1 row/tx, db.begin()".to_owned()),
            ],
            operation_label: op.label(),
        });
    }
    for op in [Op::Insert, Op::Update, Op::Delete] {
        groups.push(Group {
            op,
            transactions: 1,
            rows_per_transaction: batch,
            baseline: Variant::Plain,
            compared: vec![
                (Variant::CapturedHelper, format!("{batch} rows/tx, helper")),
                (
                    Variant::CapturedBegin,
                    format!("{batch} rows/tx, db.begin()"),
                ),
            ],
            operation_label: op.label(),
        });
    }
    let mut raw_compared = vec![(Variant::RawTwo, "1 row/tx, + 1 event INSERT".to_owned())];
    if kind == DbBackend::Postgres {
        raw_compared.push((
            Variant::RawTrigger,
            "1 row/tx, AFTER INSERT trigger".to_owned(),
        ));
    }
    groups.push(Group {
        op: Op::Insert,
        transactions: ops,
        rows_per_transaction: 1,
        baseline: Variant::RawOne,
        compared: raw_compared,
        operation_label: "raw SQL insert",
    });

    let mut lines = Vec::new();
    for group in &groups {
        let start = Instant::now();
        let timings = bench.run_group(group, rounds).await?;
        let new_lines = lines_of(backend.name(), group, &timings);
        for l in &new_lines {
            progress(&format!(
                "  {} {} {}: {:.2}x ({:.1}s)",
                l.backend,
                l.operation,
                l.shape,
                l.with / l.without,
                start.elapsed().as_secs_f64()
            ));
        }
        lines.extend(new_lines);
    }

    // The captured variants must have written one event per row, and the baseline none.
    let count = |sql: &str| {
        let sql = sql.to_owned();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(kind, sql))
                .await?
                .ok_or("no count")?;
            Ok::<i64, BoxError>(row.try_get_by_index::<i64>(0)?)
        }
    };
    let items = count("SELECT COUNT(*) FROM distributes WHERE distributed_type = 'Item'").await?;
    let raws = count("SELECT COUNT(*) FROM distributes WHERE distributed_type = 'RawItem'").await?;
    let all = count("SELECT COUNT(*) FROM distributes").await?;
    if usize::try_from(items).ok() != Some(bench.expected_item_events)
        || usize::try_from(raws).ok() != Some(bench.expected_raw_events)
        || all != items + raws
    {
        return Err(format!(
            "{}: distributes holds {items} Item and {raws} RawItem events of {all}, expected {} and {}",
            backend.name(),
            bench.expected_item_events,
            bench.expected_raw_events
        )
        .into());
    }
    progress(&format!(
        "  {}: distributes holds the {items} + {raws} events expected",
        backend.name()
    ));
    Ok(lines)
}

fn main() -> Result<()> {
    let rounds = knob("BENCH_ROUNDS", 7);
    let ops = knob("BENCH_OPS", 200);
    let batch = knob("BENCH_BATCH", 1000);
    let (lines, elapsed) = on_each_backend(async |backend| {
        progress(&format!(
            "{}: {rounds} rounds, {ops} one-row transactions and {batch}-row transactions per variant per round",
            backend.name()
        ));
        bench_backend(backend, rounds, ops, batch).await
    })?;
    let lines: Vec<Line> = lines.into_iter().flatten().collect();

    println!(
        "\nCapture overhead: {rounds} rounds (median), {ops} one-row transactions and one {batch}-row \
         transaction per variant per round; total {:.0}s\n",
        elapsed.as_secs_f64()
    );
    table_head(
        &[
            "backend",
            "operation",
            "tx shape",
            "without (ops/s)",
            "with (ops/s)",
            "ratio",
            "ratio range over rounds",
        ],
        3,
    );
    for l in &lines {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.2}x | {:.2}–{:.2} |",
            l.backend,
            l.operation,
            l.shape,
            1.0 / l.without,
            1.0 / l.with,
            l.with / l.without,
            l.ratio_min,
            l.ratio_max,
        );
    }
    Ok(())
}
