//! One JSON form per column value, and the way back.
//!
//! `changes` holds each attribute as a JSON value. The forms are chosen so that nothing is lost and
//! the decoder can turn the JSON back into the column's [`Value`] when it knows the column's type
//! (a typed template, see [`from_json`]):
//!
//! | column value | JSON form | example |
//! | --- | --- | --- |
//! | NULL (any type) | `null` | `null` |
//! | bool | boolean | `true` |
//! | integers (`i8` .. `i64`, `u8` .. `u64`) | number, exact | `-42` |
//! | `f32`, `f64`, finite | number, shortest form that reads back to the same float | `0.1` |
//! | `f32`, `f64`, not finite | string | `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | decimal | string, scale kept | `"12.50"` |
//! | string, char, database enum | string | `"Ada"` |
//! | bytes | string, standard base64 with padding | `"AP8="` |
//! | JSON | the JSON itself | `{"a": [1]}` |
//! | date | string, `YYYY-MM-DD` | `"2024-02-29"` |
//! | time | string, `HH:MM:SS[.fraction]`, up to nanoseconds | `"13:05:09.123456789"` |
//! | datetime without offset | string, `YYYY-MM-DDTHH:MM:SS[.fraction]` | `"2024-02-29T13:05:09.5"` |
//! | datetime with offset | string, RFC 3339 with the stored offset, up to nanoseconds | `"2024-02-29T13:05:09.5+02:00"` |
//! | datetime in UTC | string, RFC 3339 ending in `Z` | `"2024-02-29T11:05:09.5Z"` |
//! | uuid | string, hyphenated lower case | `"67e55044-10b1-426f-9247-bb680e5fe0c8"` |
//!
//! A JSON column that holds JSON `null` and a NULL column both become `null`: the JSON form cannot
//! tell them apart, and the decoder gives SQL NULL.
//!
//! A masked value (a `redact` column of the macro, or any value after [`erase`](crate::erase()))
//! is the JSON object `{"$redacted": true}`: see [`redacted`] and [`is_redacted`]. No column
//! other than a JSON column has an object as its form, so a mask is never a real value of one. Value kinds that only appear when other crates
//! enable extra SeaORM features (the `time` and `jiff` crates, `BigDecimal`, PostgreSQL arrays,
//! vectors, network types) are written in sea-query's own JSON form and cannot be decoded.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{
    DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc,
};
use rust_decimal::Decimal;
use sea_orm::sea_query::{ColumnType, Value};
use serde_json::{Number, Value as Json};
use std::str::FromStr;

/// Why a JSON value could not be turned back into a column value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {found} as {expected}")]
pub struct ValueError {
    /// The kind of value the column holds, such as `i32` or `date (YYYY-MM-DD)`.
    pub expected: &'static str,
    /// The JSON that did not fit, shortened to 80 characters.
    pub found: String,
}

impl ValueError {
    fn new(expected: &'static str, found: &Json) -> Self {
        let mut found = found.to_string();
        if found.len() > 80 {
            let mut cut = 77;
            while !found.is_char_boundary(cut) {
                cut -= 1;
            }
            found.truncate(cut);
            found.push_str("...");
        }
        Self { expected, found }
    }
}

/// The key of the masked-value object: a masked value is `{"$redacted": true}`.
pub const REDACTED_KEY: &str = "$redacted";

/// The masked value that replaces a value kept from consumers: the JSON object
/// `{"$redacted": true}`, whatever the column's type.
///
/// Written for the `redact` columns of [`acts_as_distributed!`](crate::acts_as_distributed) and by
/// [`erase`](crate::erase()). Only JSON columns have objects as their JSON form, so the mask can
/// never be mistaken for a real value of any other column; a JSON column whose value is exactly
/// this object reads as masked.
///
/// ```
/// use acts_as_distributed::values::{is_redacted, redacted};
/// assert_eq!(redacted().to_string(), r#"{"$redacted":true}"#);
/// assert!(is_redacted(&redacted()));
/// ```
pub fn redacted() -> Json {
    let mut object = serde_json::Map::with_capacity(1);
    object.insert(REDACTED_KEY.to_owned(), Json::Bool(true));
    Json::Object(object)
}

/// Whether `json` is the masked value of [`redacted`]: an object with the single entry
/// `"$redacted": true`. A consumer skips such an entry: the value it stands for is not in the event.
///
/// ```
/// use acts_as_distributed::values::is_redacted;
/// use serde_json::json;
/// assert!(is_redacted(&json!({"$redacted": true})));
/// assert!(!is_redacted(&json!("$redacted")));
/// assert!(!is_redacted(&json!({"$redacted": true, "other": 1})));
/// ```
pub fn is_redacted(json: &Json) -> bool {
    match json {
        Json::Object(object) => {
            object.len() == 1 && object.get(REDACTED_KEY) == Some(&Json::Bool(true))
        }
        _ => false,
    }
}

/// Renders a column value in its JSON form (see the [module docs](self)).
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Bool(v) => v.map_or(Json::Null, Json::Bool),
        Value::TinyInt(v) => v.map_or(Json::Null, Json::from),
        Value::SmallInt(v) => v.map_or(Json::Null, Json::from),
        Value::Int(v) => v.map_or(Json::Null, Json::from),
        Value::BigInt(v) => v.map_or(Json::Null, Json::from),
        Value::TinyUnsigned(v) => v.map_or(Json::Null, Json::from),
        Value::SmallUnsigned(v) => v.map_or(Json::Null, Json::from),
        Value::Unsigned(v) => v.map_or(Json::Null, Json::from),
        Value::BigUnsigned(v) => v.map_or(Json::Null, Json::from),
        // `f32` goes through its own shortest decimal form: widening to f64 first would write
        // 0.1f32 as 0.10000000149011612.
        Value::Float(v) => v.map_or(Json::Null, |f| float_json(f64::from(f), &f.to_string())),
        Value::Double(v) => v.map_or(Json::Null, |f| float_json(f, &f.to_string())),
        Value::String(v) => v.as_ref().map_or(Json::Null, |s| Json::String(s.clone())),
        Value::Char(v) => v.map_or(Json::Null, |c| Json::String(c.to_string())),
        Value::Enum(e) => match e {
            sea_orm::sea_query::OptionEnum::Some(e) => Json::String(e.value.to_string()),
            sea_orm::sea_query::OptionEnum::None(_) => Json::Null,
        },
        Value::Bytes(v) => v
            .as_ref()
            .map_or(Json::Null, |b| Json::String(BASE64.encode(b))),
        Value::Json(v) => v.as_ref().map_or(Json::Null, |j| (**j).clone()),
        Value::ChronoDate(v) => v.map_or(Json::Null, |d| {
            Json::String(d.format("%Y-%m-%d").to_string())
        }),
        Value::ChronoTime(v) => v.map_or(Json::Null, |t| {
            Json::String(t.format("%H:%M:%S%.f").to_string())
        }),
        Value::ChronoDateTime(v) => v.map_or(Json::Null, |t| {
            Json::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
        }),
        Value::ChronoDateTimeUtc(v) => v.map_or(Json::Null, |t| {
            Json::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        }),
        Value::ChronoDateTimeLocal(v) => v.map_or(Json::Null, |t| {
            Json::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, false))
        }),
        Value::ChronoDateTimeWithTimeZone(v) => v.map_or(Json::Null, |t| {
            Json::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, false))
        }),
        Value::Uuid(v) => v.map_or(Json::Null, |u| Json::String(u.hyphenated().to_string())),
        Value::Decimal(v) => v.map_or(Json::Null, |d| Json::String(d.to_string())),
        // Kinds enabled by features of other crates in the graph: sea-query's own form.
        #[allow(unreachable_patterns)]
        other => sea_orm::sea_query::sea_value_to_json_value(other),
    }
}

/// A finite float as the JSON number written by its shortest decimal form (`shortest`), a
/// non-finite one as a string.
fn float_json(f: f64, shortest: &str) -> Json {
    if f.is_nan() {
        return Json::String("NaN".to_owned());
    }
    if f.is_infinite() {
        return Json::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned());
    }
    shortest
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map_or(Json::Null, Json::Number)
}

/// Turns a JSON form back into a value of the same kind as `like`.
///
/// `like` is any value of the column's kind (its content is ignored), such as the column's entry in
/// `ActiveModel::default_values()` or [`template_for`] of its column type. JSON `null` gives the
/// NULL of that kind.
///
/// # Errors
/// [`ValueError`] when the JSON does not have the form of that kind, or the number does not fit.
pub fn from_json(json: &Json, like: &Value) -> Result<Value, ValueError> {
    if json.is_null() {
        return Ok(like.as_null());
    }
    let v = match like {
        Value::Bool(_) => Value::Bool(Some(
            json.as_bool()
                .ok_or_else(|| ValueError::new("bool", json))?,
        )),
        Value::TinyInt(_) => Value::TinyInt(Some(int(json, "i8")?)),
        Value::SmallInt(_) => Value::SmallInt(Some(int(json, "i16")?)),
        Value::Int(_) => Value::Int(Some(int(json, "i32")?)),
        Value::BigInt(_) => Value::BigInt(Some(int(json, "i64")?)),
        Value::TinyUnsigned(_) => Value::TinyUnsigned(Some(uint(json, "u8")?)),
        Value::SmallUnsigned(_) => Value::SmallUnsigned(Some(uint(json, "u16")?)),
        Value::Unsigned(_) => Value::Unsigned(Some(uint(json, "u32")?)),
        Value::BigUnsigned(_) => Value::BigUnsigned(Some(uint(json, "u64")?)),
        Value::Float(_) => Value::Float(Some(float(json, "f32")? as f32)),
        Value::Double(_) => Value::Double(Some(float(json, "f64")?)),
        Value::String(_) => Value::String(Some(string(json, "string")?.to_owned())),
        Value::Char(_) => {
            let s = string(json, "char")?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Value::Char(Some(c)),
                _ => return Err(ValueError::new("char", json)),
            }
        }
        Value::Enum(e) => {
            let s = string(json, "enum value")?;
            let type_name = match e {
                sea_orm::sea_query::OptionEnum::Some(e) => e.type_name.clone(),
                sea_orm::sea_query::OptionEnum::None(t) => t.clone(),
            };
            Value::Enum(sea_orm::sea_query::OptionEnum::Some(Box::new(
                sea_orm::sea_query::Enum {
                    type_name,
                    value: s.to_owned().into(),
                },
            )))
        }
        Value::Bytes(_) => {
            let s = string(json, "bytes (base64)")?;
            Value::Bytes(Some(
                BASE64
                    .decode(s)
                    .map_err(|_| ValueError::new("bytes (base64)", json))?,
            ))
        }
        Value::Json(_) => Value::Json(Some(Box::new(json.clone()))),
        Value::ChronoDate(_) => Value::ChronoDate(Some(parse(json, "date (YYYY-MM-DD)", |s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
        })?)),
        Value::ChronoTime(_) => Value::ChronoTime(Some(parse(json, "time (HH:MM:SS)", |s| {
            NaiveTime::parse_from_str(s, "%H:%M:%S%.f").ok()
        })?)),
        Value::ChronoDateTime(_) => {
            Value::ChronoDateTime(Some(parse(json, "datetime (YYYY-MM-DDTHH:MM:SS)", |s| {
                NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()
            })?))
        }
        Value::ChronoDateTimeUtc(_) => {
            Value::ChronoDateTimeUtc(Some(rfc3339(json)?.with_timezone(&Utc)))
        }
        Value::ChronoDateTimeLocal(_) => {
            Value::ChronoDateTimeLocal(Some(rfc3339(json)?.with_timezone(&Local)))
        }
        Value::ChronoDateTimeWithTimeZone(_) => {
            Value::ChronoDateTimeWithTimeZone(Some(rfc3339(json)?))
        }
        Value::Uuid(_) => Value::Uuid(Some(parse(json, "uuid", |s| {
            uuid::Uuid::parse_str(s).ok()
        })?)),
        Value::Decimal(_) => Value::Decimal(Some(parse(
            json,
            "decimal (a string such as \"12.50\")",
            |s| {
                Decimal::from_str(s)
                    .or_else(|_| Decimal::from_scientific(s))
                    .ok()
            },
        )?)),
        #[allow(unreachable_patterns)]
        _ => {
            return Err(ValueError::new(
                "a value kind acts_as_distributed cannot decode",
                json,
            ));
        }
    };
    Ok(v)
}

/// A NULL value of the kind SeaORM's derive gives a column of this type by default (`Integer` gives
/// `i32`, `TimestampWithTimeZone` gives `DateTime<FixedOffset>`, ...), for [`from_json`] when no
/// better template is at hand. `None` for types without a decodable kind.
pub fn template_for(column_type: &ColumnType) -> Option<Value> {
    Some(match column_type {
        ColumnType::Char(_) | ColumnType::String(_) | ColumnType::Text => Value::String(None),
        ColumnType::TinyInteger => Value::TinyInt(None),
        ColumnType::SmallInteger => Value::SmallInt(None),
        ColumnType::Integer => Value::Int(None),
        ColumnType::BigInteger => Value::BigInt(None),
        ColumnType::TinyUnsigned => Value::TinyUnsigned(None),
        ColumnType::SmallUnsigned => Value::SmallUnsigned(None),
        ColumnType::Unsigned => Value::Unsigned(None),
        ColumnType::BigUnsigned => Value::BigUnsigned(None),
        ColumnType::Float => Value::Float(None),
        ColumnType::Double => Value::Double(None),
        ColumnType::Decimal(_) | ColumnType::Money(_) => Value::Decimal(None),
        ColumnType::DateTime | ColumnType::Timestamp => Value::ChronoDateTime(None),
        ColumnType::TimestampWithTimeZone => Value::ChronoDateTimeWithTimeZone(None),
        ColumnType::Time => Value::ChronoTime(None),
        ColumnType::Date => Value::ChronoDate(None),
        ColumnType::Year => Value::Int(None),
        ColumnType::Binary(_) | ColumnType::VarBinary(_) | ColumnType::Blob => Value::Bytes(None),
        ColumnType::Boolean => Value::Bool(None),
        ColumnType::Json | ColumnType::JsonBinary => Value::Json(None),
        ColumnType::Uuid => Value::Uuid(None),
        ColumnType::Enum { .. } => Value::String(None),
        _ => return None,
    })
}

fn int<T: TryFrom<i64>>(json: &Json, expected: &'static str) -> Result<T, ValueError> {
    json.as_i64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| ValueError::new(expected, json))
}

fn uint<T: TryFrom<u64>>(json: &Json, expected: &'static str) -> Result<T, ValueError> {
    json.as_u64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| ValueError::new(expected, json))
}

fn float(json: &Json, expected: &'static str) -> Result<f64, ValueError> {
    match json {
        Json::Number(n) => n.as_f64().ok_or_else(|| ValueError::new(expected, json)),
        Json::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(ValueError::new(expected, json)),
        },
        _ => Err(ValueError::new(expected, json)),
    }
}

fn string<'a>(json: &'a Json, expected: &'static str) -> Result<&'a str, ValueError> {
    json.as_str().ok_or_else(|| ValueError::new(expected, json))
}

fn parse<T>(
    json: &Json,
    expected: &'static str,
    f: impl FnOnce(&str) -> Option<T>,
) -> Result<T, ValueError> {
    string(json, expected)
        .ok()
        .and_then(f)
        .ok_or_else(|| ValueError::new(expected, json))
}

fn rfc3339(json: &Json) -> Result<DateTime<FixedOffset>, ValueError> {
    parse(json, "datetime with offset (RFC 3339)", |s| {
        DateTime::parse_from_rfc3339(s).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn round_trip(v: Value) {
        let j = to_json(&v);
        let back = from_json(&j, &v).unwrap_or_else(|e| panic!("{v:?} -> {j} failed: {e}"));
        assert_eq!(back, v, "through {j}");
        // NULL of every kind is `null` and comes back as the same kind.
        assert_eq!(to_json(&v.as_null()), Json::Null);
        assert_eq!(from_json(&Json::Null, &v).ok(), Some(v.as_null()));
    }

    #[test]
    fn every_supported_kind_round_trips() {
        let dt = NaiveDate::from_ymd_opt(2024, 2, 29)
            .and_then(|d| d.and_hms_nano_opt(13, 5, 9, 123_456_789))
            .expect("valid date");
        let off = FixedOffset::east_opt(5 * 3600 + 1800).expect("valid offset");
        for v in [
            Value::Bool(Some(true)),
            Value::TinyInt(Some(i8::MIN)),
            Value::SmallInt(Some(i16::MAX)),
            Value::Int(Some(-7)),
            Value::BigInt(Some(i64::MIN)),
            Value::TinyUnsigned(Some(u8::MAX)),
            Value::SmallUnsigned(Some(u16::MAX)),
            Value::Unsigned(Some(u32::MAX)),
            Value::BigUnsigned(Some(u64::MAX)),
            Value::Float(Some(0.1)),
            Value::Float(Some(f32::MAX)),
            Value::Float(Some(f32::MIN_POSITIVE)),
            Value::Float(Some(f32::INFINITY)),
            Value::Double(Some(0.1)),
            Value::Double(Some(-1e300)),
            Value::Double(Some(f64::NEG_INFINITY)),
            Value::String(Some("Grüße, \"quoted\" \u{0}".into())),
            Value::Char(Some('é')),
            Value::Bytes(Some(vec![0, 255, 128, 10])),
            Value::Json(Some(Box::new(
                json!({"a": [1, null, "x"], "b": {"c": 1.5}}),
            ))),
            Value::ChronoDate(Some(dt.date())),
            Value::ChronoTime(Some(dt.time())),
            Value::ChronoDateTime(Some(dt)),
            Value::ChronoDateTimeUtc(Some(Utc.from_utc_datetime(&dt))),
            Value::ChronoDateTimeWithTimeZone(Some(off.from_utc_datetime(&dt))),
            Value::Uuid(Some(uuid::Uuid::from_u128(
                0x67e5_5044_10b1_426f_9247_bb68_0e5f_e0c8,
            ))),
            Value::Decimal(Some(
                Decimal::from_str("-12345678901234567.8900").expect("decimal"),
            )),
        ] {
            round_trip(v);
        }
    }

    #[test]
    fn nan_round_trips_as_a_string() {
        assert_eq!(to_json(&Value::Double(Some(f64::NAN))), json!("NaN"));
        assert_eq!(to_json(&Value::Float(Some(f32::NAN))), json!("NaN"));
        let back = from_json(&json!("NaN"), &Value::Float(None)).expect("NaN decodes");
        assert!(matches!(back, Value::Float(Some(f)) if f.is_nan()));
    }

    #[test]
    fn documented_forms() {
        let dt = NaiveDate::from_ymd_opt(2024, 2, 29)
            .and_then(|d| d.and_hms_milli_opt(13, 5, 9, 500))
            .expect("valid");
        assert_eq!(to_json(&Value::Float(Some(0.1))), json!(0.1));
        assert_eq!(
            to_json(&Value::Decimal(Some(Decimal::new(1250, 2)))),
            json!("12.50")
        );
        assert_eq!(to_json(&Value::Bytes(Some(vec![0, 255]))), json!("AP8="));
        assert_eq!(
            to_json(&Value::ChronoDateTime(Some(dt))),
            json!("2024-02-29T13:05:09.500")
        );
        assert_eq!(
            to_json(&Value::ChronoDateTimeUtc(Some(Utc.from_utc_datetime(&dt)))),
            json!("2024-02-29T13:05:09.500Z")
        );
        assert_eq!(
            to_json(&Value::Double(Some(f64::INFINITY))),
            json!("Infinity")
        );
    }

    #[test]
    fn misfits_are_clear_errors() {
        let e = from_json(&json!(300), &Value::TinyInt(None)).expect_err("300 is no i8");
        assert_eq!(e.to_string(), "cannot read 300 as i8");
        assert!(from_json(&json!("2024-13-01"), &Value::ChronoDate(None)).is_err());
        assert!(from_json(&json!("not base64!"), &Value::Bytes(None)).is_err());
        assert!(from_json(&json!(1.5), &Value::Int(None)).is_err());
        assert!(from_json(&json!("ab"), &Value::Char(None)).is_err());
        let long = from_json(&json!("x".repeat(500)), &Value::Int(None)).expect_err("no int");
        assert!(long.found.len() <= 80);
    }

    #[test]
    fn the_mask_is_no_real_value_of_a_non_json_column() {
        let mask_text = redacted().to_string();
        for v in [
            Value::String(Some(mask_text.clone())),
            Value::String(Some(REDACTED_KEY.to_owned())),
            Value::Bytes(Some(mask_text.clone().into_bytes())),
            Value::Bool(Some(true)),
            Value::Int(Some(1)),
            Value::Double(Some(f64::NAN)),
            Value::Decimal(Some(Decimal::ONE)),
            Value::Uuid(Some(uuid::Uuid::nil())),
            Value::Char(Some('$')),
            Value::String(None),
        ] {
            assert!(!is_redacted(&to_json(&v)), "{v:?}");
        }
        // Only a JSON column can hold it, and then it reads as masked (documented).
        assert!(is_redacted(&to_json(&Value::Json(Some(Box::new(
            redacted()
        ))))));
        assert!(!is_redacted(&json!({"$redacted": false})));
        assert!(!is_redacted(&json!([{"$redacted": true}])));
    }

    #[test]
    fn templates_follow_seaorm_defaults() {
        assert_eq!(template_for(&ColumnType::Integer), Some(Value::Int(None)));
        assert_eq!(
            template_for(&ColumnType::JsonBinary),
            Some(Value::Json(None))
        );
        assert_eq!(template_for(&ColumnType::Vector(None)), None);
    }
}
