//! Every value kind survives the trip into an event and back: what `decode_changes` gives for an
//! event's `changes` equals what a fresh SELECT of the row gives, for create, update and destroy,
//! on every backend (`sample` has one nullable column of each kind).

mod common;

use acts_as_distributed::values::to_json;
use acts_as_distributed::{DistributedEntity, Error, distribute};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use common::*;
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, EntityTrait, IdenStatic, IntoActiveModel, ModelTrait, Set,
    Value,
};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::str::FromStr;

fn is_mysql(backend: &Backend) -> bool {
    matches!(backend, Backend::MySql(_))
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn time(h: u32, m: u32, s: u32, micro: u32) -> NaiveTime {
    NaiveTime::from_hms_micro_opt(h, m, s, micro).expect("valid time")
}

fn datetime(d: NaiveDate, t: NaiveTime) -> NaiveDateTime {
    d.and_time(t)
}

/// `local` (a wall-clock time) at the offset of `offset_secs` seconds east of UTC.
fn zoned(local: NaiveDateTime, offset_secs: i32) -> DateTime<FixedOffset> {
    FixedOffset::east_opt(offset_secs)
        .expect("valid offset")
        .from_local_datetime(&local)
        .single()
        .expect("a fixed offset has one instant per wall-clock time")
}

fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&at)
}

fn decimal(s: &str) -> Decimal {
    Decimal::from_str(s).expect("valid decimal")
}

/// A text that needs escaping everywhere: quotes, backslashes, a newline, a tab, non-ASCII
/// letters and a character outside the Basic Multilingual Plane. (No NUL: PostgreSQL text
/// cannot hold it.)
const AWKWARD_TEXT: &str =
    "He said \"hi\" & 'bye'\\n is not \\\\ a newline,\nthis is.\tGrüße, Ω, 日本, 🚀";

/// Bytes that are not UTF-8: NUL, 0xFF, a lone continuation byte, a truncated sequence.
const AWKWARD_BYTES: [u8; 10] = [0x00, 0xFF, 0x80, 0xC3, 0x28, b'"', b'\\', b'\n', 0xFE, 0x00];

/// A row with every column set to a value that is easy to get wrong.
///
/// MySQL / MariaDB: the schema SeaORM creates gives `DATETIME`, `TIME` and `TIMESTAMP` without a
/// fraction (whole seconds) and `TIMESTAMP` only covers 1970-01-01 .. 2038-01-19 (UTC), so the
/// datetimes with offset / in UTC stay in that range there; the fractions are still sent, since
/// the create event is built from the values stored (SeaORM reads the row back after the INSERT).
/// The time stays away from 23:59:59.5+, which rounding could turn into MySQL's `24:00:00`.
fn rich_row(backend: &Backend) -> sample::ActiveModel {
    let mysql = is_mysql(backend);
    let clock = if mysql {
        time(13, 5, 9, 123_456)
    } else {
        time(23, 59, 59, 999_999)
    };
    let at_utc = if mysql {
        datetime(date(2038, 1, 19), time(3, 14, 7, 250_000))
    } else {
        // Before the Unix epoch: negative timestamps.
        datetime(date(1969, 7, 20), time(20, 17, 40, 654_321))
    };
    sample::ActiveModel {
        flag: Set(Some(true)),
        small: Set(Some(i16::MIN)),
        int: Set(Some(-42)),
        big: Set(Some(i64::MAX)),
        single: Set(Some(0.1)),
        double: Set(Some(0.1)),
        amount: Set(Some(decimal("-1234567890123456.7891"))),
        text: Set(Some(AWKWARD_TEXT.to_owned())),
        day: Set(Some(date(1000, 1, 1))),
        clock: Set(Some(clock)),
        local: Set(Some(datetime(date(2024, 2, 29), time(13, 5, 9, 123_456)))),
        // A non-UTC, non-whole-hour offset, west of UTC.
        zoned: Set(Some(zoned(
            datetime(date(2024, 2, 29), time(1, 2, 3, 456_789)),
            -(3 * 3600 + 30 * 60),
        ))),
        utc: Set(Some(utc(at_utc))),
        token: Set(Some(uuid::Uuid::from_u128(
            0x67e5_5044_10b1_426f_9247_bb68_0e5f_e0c8,
        ))),
        doc: Set(Some(json!({
            "name": "Ada \"the\" Countess",
            "list": [1, -2, 3.5, null, "x", true, [], {}],
            "nested": {"deeper": {"empty": null, "big": 9_007_199_254_740_993_i64}},
            "unicode": "Grüße 🚀",
        }))),
        bytes: Set(Some(AWKWARD_BYTES.to_vec())),
        ..Default::default()
    }
}

/// A second created row, with the other ends of the ranges.
fn extreme_row() -> sample::ActiveModel {
    sample::ActiveModel {
        flag: Set(Some(false)),
        small: Set(Some(i16::MAX)),
        int: Set(Some(i32::MIN)),
        big: Set(Some(i64::MIN)),
        single: Set(Some(f32::MAX)),
        double: Set(Some(1e300)),
        amount: Set(Some(decimal("9999999999999999.9999"))),
        text: Set(Some(String::new())),
        day: Set(Some(date(9999, 12, 31))),
        clock: Set(Some(time(0, 0, 0, 0))),
        local: Set(Some(datetime(date(1970, 1, 1), time(0, 0, 0, 0)))),
        zoned: Set(Some(zoned(
            datetime(date(2001, 9, 9), time(1, 46, 40, 0)),
            14 * 3600,
        ))),
        utc: Set(Some(utc(datetime(date(2000, 1, 1), time(0, 0, 0, 1))))),
        token: Set(Some(uuid::Uuid::max())),
        doc: Set(Some(json!([null, [[]], {"a": {"b": [0, -0.5, 1e-7]}}]))),
        bytes: Set(Some(vec![0xFF; 3])),
        ..Default::default()
    }
}

/// A third created row: floats with all their digits, as computations give them, and an
/// ordinary decimal.
///
/// About one such double in ten is read back one ulp off by serde_json without its
/// `float_roundtrip` feature (its default parser is fast but not exact); this one is, so the
/// test catches `changes` being parsed that way.
fn computed_row() -> sample::ActiveModel {
    sample::ActiveModel {
        single: Set(Some(1.0 / 3.0)),
        double: Set(Some(985.690_694_632_869_5)),
        amount: Set(Some(decimal("12.5000"))),
        ..Default::default()
    }
}

/// The names of the distributed columns of `sample`: every column but the key.
fn distributed_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = sample::Entity::distributed_columns()
        .iter()
        .map(|c| c.as_str())
        .collect();
    names.sort_unstable();
    names
}

/// The row `id` as it is stored now.
async fn fresh<C: ConnectionTrait>(db: &C, id: i32) -> sample::Model {
    sample::Entity::find_by_id(id)
        .one(db)
        .await
        .expect("select the sample")
        .expect("the sample exists")
}

/// The only event of `action` for the sample `id`.
async fn event_of<C: ConnectionTrait>(
    db: &C,
    backend: &Backend,
    action: &str,
    id: i32,
) -> distribute::Model {
    let mut found: Vec<distribute::Model> = events(db)
        .await
        .into_iter()
        .filter(|e| {
            e.distributed_type == "Sample"
                && e.action == action
                && e.distributed_id == id.to_string()
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{}: one {action} event for sample {id}",
        backend.name()
    );
    found.remove(0)
}

/// `changes` decoded, by column name.
fn decoded(backend: &Backend, what: &str, changes: &Json) -> HashMap<&'static str, Value> {
    sample::Entity::decode_changes(changes)
        .unwrap_or_else(|e| panic!("{}: {what}: decoding {changes}: {e}", backend.name()))
        .into_iter()
        .map(|(c, v)| (c.as_str(), v))
        .collect()
}

/// Checks that `changes` holds every distributed column, and that each one decodes to the value
/// `stored` holds and is the JSON form of that value. Returns one line per mismatch (backend,
/// what, column, event JSON, decoded value, stored value), so that a test reports every column
/// on every backend that does not round-trip, not just the first.
///
/// `offset_as_sent`: columns whose event keeps the offset that was sent while the database keeps
/// only the instant (MySQL update events, see `updated_values_round_trip`): for those the decoded
/// value must be the same instant (chrono compares instants), and the JSON may differ in offset.
fn round_trip_mismatches(
    backend: &Backend,
    what: &str,
    changes: &Json,
    stored: &sample::Model,
    offset_as_sent: &[&str],
) -> Vec<String> {
    let b = backend.name();
    assert_eq!(
        keys(changes),
        distributed_names(),
        "{b}: {what}: every distributed column is in changes: {changes}"
    );
    let values = decoded(backend, what, changes);
    let mut mismatches = Vec::new();
    for column in sample::Entity::distributed_columns() {
        let name = column.as_str();
        let json = &changes[name];
        let got = values
            .get(name)
            .unwrap_or_else(|| panic!("{b}: {what}: `{name}` decoded"));
        let want = stored.get(*column);
        if got != &want {
            mismatches.push(format!(
                "{b}: {what}: column `{name}`: event {json}, decoded {got:?}, stored {want:?}"
            ));
        } else if !offset_as_sent.contains(&name) && json != &to_json(&want) {
            mismatches.push(format!(
                "{b}: {what}: column `{name}`: event {json} is not the JSON form {} of the stored \
                 value {want:?}",
                to_json(&want)
            ));
        }
    }
    mismatches
}

/// Fails with every mismatch found.
fn assert_no_mismatches(mismatches: &[String]) {
    assert!(
        mismatches.is_empty(),
        "{} value(s) do not round-trip:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn created_values_round_trip() {
    let mut mismatches = Vec::new();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        for (what, am) in [
            ("create of the rich row", rich_row(&backend)),
            ("create of the extreme row", extreme_row()),
            ("create of the computed row", computed_row()),
        ] {
            let inserted = am
                .insert(&t.db)
                .await
                .unwrap_or_else(|e| panic!("{}: {what}: insert: {e}", backend.name()));
            let event = event_of(&t.db, &backend, "create", inserted.id).await;
            let stored = fresh(&t.db, inserted.id).await;
            mismatches.extend(round_trip_mismatches(
                &backend,
                what,
                &event.changes,
                &stored,
                &[],
            ));
        }
    }
    assert_no_mismatches(&mismatches);
}

/// New values for every column of the rich row.
///
/// On MySQL / MariaDB the update event carries the values the UPDATE sent (there is no
/// RETURNING), so there the values are ones MySQL stores exactly as sent with the schema SeaORM
/// creates: whole seconds for `TIME`, `DATETIME` and `TIMESTAMP`, datetimes in the `TIMESTAMP`
/// range (1970 .. 2038), floats that are exact in binary, a decimal with the column's 4 places.
/// (The offset of `zoned` is not stored by MySQL, only the instant: see `offset_as_sent`.)
/// PostgreSQL and SQLite return what they stored, so there the values use full precision.
fn update_values(backend: &Backend, am: &mut sample::ActiveModel) {
    let mysql = is_mysql(backend);
    let micro = |m: u32| if mysql { 0 } else { m };
    am.flag = Set(Some(false));
    am.small = Set(Some(i16::MAX));
    am.int = Set(Some(i32::MIN));
    am.big = Set(Some(i64::MIN));
    am.single = Set(Some(if mysql { -0.375 } else { 0.3 }));
    // MySQL's DOUBLE stores every f64 as sent. A full-precision double that serde_json's default
    // (non-`float_roundtrip`) parser reads back one ulp off, like the one in `computed_row`.
    am.double = Set(Some(212.918_907_267_134_59));
    am.amount = Set(Some(decimal("-0.0001")));
    am.text = Set(Some(format!("{AWKWARD_TEXT}\r\n\u{1F600}")));
    am.day = Set(Some(date(9999, 12, 31)));
    am.clock = Set(Some(time(0, 0, 1, micro(1))));
    am.local = Set(Some(datetime(
        date(1999, 12, 31),
        time(23, 59, 58, micro(999_999)),
    )));
    am.zoned = Set(Some(zoned(
        datetime(date(2030, 6, 30), time(23, 0, 0, micro(5))),
        5 * 3600 + 45 * 60,
    )));
    am.utc = Set(Some(utc(if mysql {
        datetime(date(1970, 1, 1), time(0, 0, 1, 0))
    } else {
        datetime(date(2262, 4, 11), time(23, 47, 16, 854_775))
    })));
    am.token = Set(Some(uuid::Uuid::nil()));
    am.doc = Set(Some(json!({"replaced": [{"k": null}, -1, 0.25, "\"\\\n"]})));
    am.bytes = Set(Some(vec![0xFF, 0x00, 0xC0, 0xAF]));
}

#[tokio::test]
async fn updated_values_round_trip() {
    let mut mismatches = Vec::new();
    for backend in backends() {
        let t = TestDb::new(&backend).await;
        let before = rich_row(&backend).insert(&t.db).await.expect("insert");
        let mut am = before.clone().into_active_model();
        update_values(&backend, &mut am);
        let returned = am
            .update(&t.db)
            .await
            .unwrap_or_else(|e| panic!("{}: update: {e}", backend.name()));
        let event = event_of(&t.db, &backend, "update", before.id).await;
        let stored = fresh(&t.db, before.id).await;
        assert_eq!(
            returned,
            stored,
            "{}: the model update returns",
            backend.name()
        );
        // MySQL stores a datetime with offset as its instant and reads it back in UTC; the event
        // carries the offset that was sent.
        let offset_as_sent: &[&str] = if is_mysql(&backend) { &["zoned"] } else { &[] };
        mismatches.extend(round_trip_mismatches(
            &backend,
            "update",
            &event.changes,
            &stored,
            offset_as_sent,
        ));
    }
    assert_no_mismatches(&mismatches);
}

/// The NULL of each column's kind, in the entity's column order.
fn null_of_each_kind() -> Vec<(&'static str, Value)> {
    vec![
        ("flag", Value::Bool(None)),
        ("small", Value::SmallInt(None)),
        ("int", Value::Int(None)),
        ("big", Value::BigInt(None)),
        ("single", Value::Float(None)),
        ("double", Value::Double(None)),
        ("amount", Value::Decimal(None)),
        ("text", Value::String(None)),
        ("day", Value::ChronoDate(None)),
        ("clock", Value::ChronoTime(None)),
        ("local", Value::ChronoDateTime(None)),
        ("zoned", Value::ChronoDateTimeWithTimeZone(None)),
        ("utc", Value::ChronoDateTimeUtc(None)),
        ("token", Value::Uuid(None)),
        ("doc", Value::Json(None)),
        ("bytes", Value::Bytes(None)),
    ]
}

/// Every column but the key explicitly set to NULL.
fn all_null() -> sample::ActiveModel {
    sample::ActiveModel {
        flag: Set(None),
        small: Set(None),
        int: Set(None),
        big: Set(None),
        single: Set(None),
        double: Set(None),
        amount: Set(None),
        text: Set(None),
        day: Set(None),
        clock: Set(None),
        local: Set(None),
        zoned: Set(None),
        utc: Set(None),
        token: Set(None),
        doc: Set(None),
        bytes: Set(None),
        ..Default::default()
    }
}

#[tokio::test]
async fn nulls_round_trip() {
    for backend in backends() {
        let b = backend.name();
        let t = TestDb::new(&backend).await;
        let inserted = all_null()
            .insert(&t.db)
            .await
            .expect("insert a row of NULLs");
        let event = event_of(&t.db, &backend, "create", inserted.id).await;
        let expected: serde_json::Map<String, Json> = distributed_names()
            .into_iter()
            .map(|n| (n.to_owned(), Json::Null))
            .collect();
        assert_eq!(
            event.changes,
            Json::Object(expected),
            "{b}: every column is null"
        );
        let stored = fresh(&t.db, inserted.id).await;
        assert_no_mismatches(&round_trip_mismatches(
            &backend,
            "create of NULLs",
            &event.changes,
            &stored,
            &[],
        ));
        // The NULL of the column's own kind, not just any NULL.
        let values = decoded(&backend, "create of NULLs", &event.changes);
        for (name, null) in null_of_each_kind() {
            assert_eq!(values.get(name), Some(&null), "{b}: column `{name}`");
        }
    }
}

#[tokio::test]
async fn non_finite_floats_round_trip_where_stored() {
    let rows = [
        (f32::NAN, f64::INFINITY),
        (f32::INFINITY, f64::NEG_INFINITY),
        (f32::NEG_INFINITY, f64::NAN),
    ];
    for backend in backends() {
        // Only PostgreSQL stores non-finite floats: SQLite stores NaN as NULL, and MySQL / MariaDB
        // reject NaN and the infinities.
        if !matches!(backend, Backend::Postgres(_)) {
            continue;
        }
        let b = backend.name();
        let t = TestDb::new(&backend).await;
        for (single, double) in rows {
            let inserted = sample::ActiveModel {
                single: Set(Some(single)),
                double: Set(Some(double)),
                ..Default::default()
            }
            .insert(&t.db)
            .await
            .expect("insert non-finite floats");
            let create = event_of(&t.db, &backend, "create", inserted.id).await;

            // Turn each around through an update, which PostgreSQL returns.
            let mut am = inserted.clone().into_active_model();
            am.single = Set(Some(-single));
            am.double = Set(Some(-double));
            am.update(&t.db).await.expect("update non-finite floats");
            let update = event_of(&t.db, &backend, "update", inserted.id).await;

            for (what, changes, single, double) in [
                ("create", &create.changes, single, double),
                ("update", &update.changes, -single, -double),
            ] {
                assert_eq!(
                    (&changes["single"], &changes["double"]),
                    (&non_finite_json(single.into()), &non_finite_json(double)),
                    "{b}: {what}: the event names the non-finite floats"
                );
                let values = decoded(&backend, what, changes);
                assert_same_float(b, what, "single", &values["single"], &Value::from(single));
                assert_same_float(b, what, "double", &values["double"], &Value::from(double));
            }
            let stored = fresh(&t.db, inserted.id).await;
            let values = decoded(&backend, "update", &update.changes);
            for column in [sample::Column::Single, sample::Column::Double] {
                let name = column.as_str();
                assert_same_float(
                    b,
                    "update vs SELECT",
                    name,
                    &values[name],
                    &stored.get(column),
                );
            }
        }
    }
}

/// `"NaN"`, `"Infinity"` or `"-Infinity"`.
fn non_finite_json(f: f64) -> Json {
    if f.is_nan() {
        json!("NaN")
    } else if f > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

/// Same kind, and the same float, NaN matching NaN.
fn assert_same_float(backend: &str, what: &str, column: &str, got: &Value, want: &Value) {
    let same = match (got, want) {
        (Value::Float(Some(g)), Value::Float(Some(w))) => {
            (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits()
        }
        (Value::Double(Some(g)), Value::Double(Some(w))) => {
            (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits()
        }
        _ => false,
    };
    assert!(
        same,
        "{backend}: {what}: column `{column}`: decoded {got:?}, expected {want:?}"
    );
}

#[tokio::test]
async fn destroy_event_values_round_trip() {
    let mut mismatches = Vec::new();
    for backend in backends() {
        let b = backend.name();
        let t = TestDb::new(&backend).await;
        let inserted = rich_row(&backend).insert(&t.db).await.expect("insert");
        let before = fresh(&t.db, inserted.id).await;
        let key_only = sample::ActiveModel {
            id: Set(inserted.id),
            ..Default::default()
        };
        let deleted = key_only.delete(&t.db).await.expect("delete");
        assert_eq!(deleted.rows_affected, 1, "{b}");
        assert!(
            sample::Entity::find_by_id(inserted.id)
                .one(&t.db)
                .await
                .expect("select")
                .is_none(),
            "{b}: the row is gone"
        );
        let event = event_of(&t.db, &backend, "destroy", inserted.id).await;
        mismatches.extend(round_trip_mismatches(
            &backend,
            "destroy",
            &event.changes,
            &before,
            &[],
        ));
    }
    assert_no_mismatches(&mismatches);
}

#[test]
fn decode_errors_name_the_column() {
    let e = sample::Entity::decode_changes(&json!({"int": "x"})).expect_err("\"x\" is no i32");
    let Error::Value {
        type_name, column, ..
    } = &e
    else {
        panic!("expected Error::Value, got {e:?}");
    };
    assert_eq!((type_name.as_str(), column.as_str()), ("Sample", "int"));
    let message = e.to_string();
    assert!(
        message.contains("Sample") && message.contains("`int`"),
        "names the entity and the column: {message}"
    );
    assert!(
        message.contains("i32"),
        "names the expected kind: {message}"
    );

    let e = sample::Entity::decode_changes(&json!({"int": 1, "nope": 2}))
        .expect_err("no column `nope`");
    let Error::UnknownColumn { type_name, column } = &e else {
        panic!("expected Error::UnknownColumn, got {e:?}");
    };
    assert_eq!((type_name.as_str(), column.as_str()), ("Sample", "nope"));
    let message = e.to_string();
    assert!(
        message.contains("Sample") && message.contains("`nope`"),
        "{message}"
    );

    for not_an_object in [json!([1]), json!("x"), json!(null), json!(3)] {
        match sample::Entity::decode_changes(&not_an_object) {
            Err(Error::NotAnObject { type_name, .. }) => assert_eq!(type_name, "Sample"),
            other => panic!("{not_an_object}: expected Error::NotAnObject, got {other:?}"),
        }
    }

    // And the happy path needs no database either.
    let decoded = sample::Entity::decode_changes(&json!({"int": 7, "text": null}))
        .expect("decodes")
        .into_iter()
        .map(|(c, v)| (c.as_str(), v))
        .collect::<Vec<_>>();
    assert_eq!(
        decoded,
        [("int", Value::Int(Some(7))), ("text", Value::String(None))]
    );
}
