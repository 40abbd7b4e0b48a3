//! What is distributed of an entity: its type name, its id columns, its distributed and
//! non-distributed columns. Built once per entity by [`acts_as_distributed!`](crate::acts_as_distributed).

use crate::error::Error;
use crate::values;
use sea_orm::sea_query::Value;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IdenStatic, Iterable, ModelTrait,
    PrimaryKeyToColumn,
};
use serde_json::{Map, Value as Json};
use std::str::FromStr;

/// Columns that are never distributed, whatever the options say (besides the primary key).
const NEVER_DISTRIBUTED: [&str; 2] = ["created_at", "updated_at"];

/// How one entity is distributed. Get it with [`DistributedEntity::distribution`].
#[derive(Debug)]
pub struct Distribution<E: EntityTrait> {
    type_name: String,
    id_columns: Vec<E::Column>,
    distributed: Vec<E::Column>,
    non_distributed: Vec<E::Column>,
    redacted: Vec<E::Column>,
    previous: bool,
}

/// An entity declared with [`acts_as_distributed!`](crate::acts_as_distributed).
pub trait DistributedEntity: EntityTrait {
    /// How this entity is distributed (built once, on first use).
    fn distribution() -> &'static Distribution<Self>;

    /// The columns whose changes are distributed, in the entity's column order.
    fn distributed_columns() -> &'static [Self::Column] {
        &Self::distribution().distributed
    }

    /// The columns that never appear in events: the primary key, `created_at`, `updated_at` and
    /// the `except` columns (or all but the `only` ones).
    fn non_distributed_columns() -> &'static [Self::Column] {
        &Self::distribution().non_distributed
    }

    /// The distributed columns whose values events carry masked (the macro's `redact`): their key
    /// is in `changes` (and `previous`), their value is [`values::redacted`].
    fn redacted_columns() -> &'static [Self::Column] {
        &Self::distribution().redacted
    }

    /// The `distributed_type` of this entity's events.
    fn distributed_type() -> &'static str {
        &Self::distribution().type_name
    }

    /// The distributed attributes of `model`, as a create event would carry them.
    fn distributed_attributes(model: &Self::Model) -> Map<String, Json> {
        Self::distribution().attributes_of(model)
    }

    /// Turns an event's `changes` back into column values of this entity: each entry is decoded
    /// by [`values::from_json`] into the kind of value the column's Rust field holds. Masked
    /// entries ([`values::is_redacted`]) are left out: the event does not hold their value.
    ///
    /// # Errors
    /// [`Error::NotAnObject`] when `changes` is not an object, [`Error::UnknownColumn`] for a key
    /// that is no column of this entity, [`Error::Value`] for a value of the wrong form.
    fn decode_changes(changes: &Json) -> Result<Vec<(Self::Column, Value)>, Error> {
        let type_name = || Self::distributed_type().to_owned();
        let object = changes.as_object().ok_or_else(|| Error::NotAnObject {
            type_name: type_name(),
            found: json_kind(changes),
        })?;
        let templates = <Self::ActiveModel as ActiveModelTrait>::default_values();
        object
            .iter()
            .filter(|(_, json)| !values::is_redacted(json))
            .map(|(name, json)| {
                let column = Self::Column::from_str(name).map_err(|_| Error::UnknownColumn {
                    type_name: type_name(),
                    column: name.clone(),
                })?;
                let value =
                    decode_like(&templates, column, json).map_err(|source| Error::Value {
                        type_name: type_name(),
                        column: name.clone(),
                        source,
                    })?;
                Ok((column, value))
            })
            .collect()
    }
}

/// Turns the JSON form of one value of `column` back into the kind of value its Rust field holds.
pub(crate) fn decode_value<E: EntityTrait>(
    column: E::Column,
    json: &Json,
) -> Result<Value, values::ValueError> {
    decode_like(
        &<E::ActiveModel as ActiveModelTrait>::default_values(),
        column,
        json,
    )
}

/// [`decode_value`] with the entity's `default_values()` at hand (built once per event).
fn decode_like<A: ActiveModelTrait>(
    templates: &A,
    column: <A::Entity as EntityTrait>::Column,
    json: &Json,
) -> Result<Value, values::ValueError> {
    let like = templates
        .get(column)
        .into_value()
        .or_else(|| values::template_for(column.def().get_column_type()))
        .unwrap_or(Value::String(None));
    values::from_json(json, &like)
}

pub(crate) fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl<E: EntityTrait> Distribution<E> {
    #[doc(hidden)]
    /// Used by the macro.
    pub fn builder() -> DistributionBuilder<E> {
        DistributionBuilder {
            except: Vec::new(),
            only: None,
            uuid: None,
            type_name: None,
            redact: Vec::new(),
            previous: false,
        }
    }

    /// The `distributed_type` written into events, such as `User`.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The column(s) whose value becomes `distributed_id`: the uuid column, or the primary key.
    pub fn id_columns(&self) -> &[E::Column] {
        &self.id_columns
    }

    /// See [`DistributedEntity::distributed_columns`].
    pub fn distributed_columns(&self) -> &[E::Column] {
        &self.distributed
    }

    /// See [`DistributedEntity::non_distributed_columns`].
    pub fn non_distributed_columns(&self) -> &[E::Column] {
        &self.non_distributed
    }

    /// See [`DistributedEntity::redacted_columns`].
    pub fn redacted_columns(&self) -> &[E::Column] {
        &self.redacted
    }

    /// Whether update events carry the old values of the changed columns (the macro's
    /// `previous = true`).
    pub fn records_previous(&self) -> bool {
        self.previous
    }

    /// Whether the values of `column` are masked in events.
    pub fn is_redacted(&self, column: E::Column) -> bool {
        self.redacted.iter().any(|r| r.as_str() == column.as_str())
    }

    /// The JSON form of `value` as an event carries it for `column`: the
    /// [mask](values::redacted) for a redacted column, else [`values::to_json`].
    pub fn json_of(&self, column: E::Column, value: &Value) -> Json {
        if self.is_redacted(column) {
            values::redacted()
        } else {
            values::to_json(value)
        }
    }

    /// Every distributed attribute of `model` in its JSON form (redacted ones masked).
    pub fn attributes_of(&self, model: &E::Model) -> Map<String, Json> {
        self.distributed
            .iter()
            .map(|c| (c.as_str().to_owned(), self.json_of(*c, &model.get(*c))))
            .collect()
    }

    /// `distributed_id` of `model`.
    pub(crate) fn id_of_model(&self, model: &E::Model) -> String {
        render_id(self.id_columns.iter().map(|c| model.get(*c)).collect())
    }
}

/// `distributed_id` from the id column values: a single value as its plain text (a uuid
/// hyphenated, a number in decimal, a string as is), several as a JSON array of their JSON forms,
/// such as `[7,"en"]`.
pub(crate) fn render_id(mut values: Vec<Value>) -> String {
    if values.len() == 1 {
        let v = values.remove(0);
        return match values::to_json(&v) {
            Json::String(s) => s,
            other => other.to_string(),
        };
    }
    Json::Array(values.iter().map(values::to_json).collect()).to_string()
}

/// The CamelCase of the module an entity type lives in: `app::entity::blog_post::Entity` gives
/// `BlogPost`.
pub(crate) fn default_type_name(entity_type_name: &str) -> String {
    let path = entity_type_name
        .split('<')
        .next()
        .unwrap_or(entity_type_name);
    let mut segments = path.rsplit("::");
    let last = segments.next().unwrap_or(path);
    let module = segments.next().unwrap_or(last);
    module
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|f| f.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// Collects the macro's options; see [`acts_as_distributed!`](crate::acts_as_distributed).
#[doc(hidden)]
#[derive(Debug)]
pub struct DistributionBuilder<E: EntityTrait> {
    except: Vec<E::Column>,
    only: Option<Vec<E::Column>>,
    uuid: Option<E::Column>,
    type_name: Option<&'static str>,
    redact: Vec<E::Column>,
    previous: bool,
}

impl<E: EntityTrait> DistributionBuilder<E> {
    /// Columns whose values are masked in events.
    pub fn redact(mut self, columns: impl IntoIterator<Item = E::Column>) -> Self {
        self.redact.extend(columns);
        self
    }

    /// Whether update events carry the old values of the changed columns.
    pub fn previous(mut self, previous: bool) -> Self {
        self.previous = previous;
        self
    }

    /// Columns kept out of events.
    pub fn except(mut self, columns: impl IntoIterator<Item = E::Column>) -> Self {
        self.except.extend(columns);
        self
    }

    /// The only columns in events.
    pub fn only(mut self, columns: impl IntoIterator<Item = E::Column>) -> Self {
        self.only = Some(columns.into_iter().collect());
        self
    }

    /// The column whose value is `distributed_id`.
    pub fn uuid(mut self, column: E::Column) -> Self {
        self.uuid = Some(column);
        self
    }

    /// The `distributed_type` of events.
    pub fn type_name(mut self, name: &'static str) -> Self {
        self.type_name = Some(name);
        self
    }

    /// The distribution these options describe.
    pub fn build(self) -> Distribution<E> {
        let primary: Vec<E::Column> = E::PrimaryKey::iter().map(|k| k.into_column()).collect();
        let named = |c: &E::Column, name: &str| c.as_str() == name;
        let id_columns = match self.uuid {
            Some(c) => vec![c],
            None => match E::Column::iter().find(|c| named(c, "uuid")) {
                Some(c) => vec![c],
                None => primary.clone(),
            },
        };
        let (distributed, non_distributed): (Vec<E::Column>, Vec<E::Column>) = E::Column::iter()
            .partition(|c| {
                let kept_out = primary.iter().any(|p| p.as_str() == c.as_str())
                    || NEVER_DISTRIBUTED.iter().any(|n| named(c, n))
                    || self.except.iter().any(|e| e.as_str() == c.as_str());
                let chosen = match &self.only {
                    Some(only) => only.iter().any(|o| o.as_str() == c.as_str()),
                    None => true,
                };
                chosen && !kept_out
            });
        // Only what events carry can be masked: a redacted key column or timestamp stays out.
        let redacted = distributed
            .iter()
            .copied()
            .filter(|c: &E::Column| self.redact.iter().any(|r| r.as_str() == c.as_str()))
            .collect();
        Distribution {
            type_name: self
                .type_name
                .map(str::to_owned)
                .unwrap_or_else(|| default_type_name(std::any::type_name::<E>())),
            id_columns,
            distributed,
            non_distributed,
            redacted,
            previous: self.previous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_name_is_the_camel_case_module() {
        assert_eq!(default_type_name("app::entity::user::Entity"), "User");
        assert_eq!(default_type_name("app::blog_post::Entity"), "BlogPost");
        assert_eq!(default_type_name("user::Entity"), "User");
        assert_eq!(default_type_name("a::post_tag_2::Entity"), "PostTag2");
    }

    #[test]
    fn ids_render_plainly_and_composites_as_json_arrays() {
        assert_eq!(render_id(vec![Value::Int(Some(7))]), "7");
        assert_eq!(render_id(vec![Value::String(Some("abc".into()))]), "abc");
        assert_eq!(
            render_id(vec![Value::Int(Some(7)), Value::String(Some("en".into()))]),
            r#"[7,"en"]"#
        );
    }
}
