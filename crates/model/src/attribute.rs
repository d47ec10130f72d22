use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ModelError, Timestamp};

/// Custom attributes of a contact: a JSON object from [`AttributeName`] to a typed value.
pub type Attributes = BTreeMap<AttributeName, serde_json::Value>;

/// The name of a custom contact attribute: a lower-case letter, then up to 63 lower-case
/// letters, digits or underscores. Names of built-in contact fields are refused so a rule can
/// never be ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "loyalty_tier")]
pub struct AttributeName(String);

/// Contact fields that are columns, not custom attributes.
pub const BUILT_IN_FIELDS: &[&str] = &[
    "id",
    "external_id",
    "email",
    "email_domain",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "time_zone",
    "country",
    "region",
    "city",
    "attributes",
    "subscriptions",
    "created_at",
    "updated_at",
];

impl AttributeName {
    pub fn parse(name: impl Into<String>) -> Result<Self, ModelError> {
        let name = name.into();
        let bad = |reason| ModelError::AttributeName {
            name: name.clone(),
            reason,
        };
        let mut chars = name.chars();
        match chars.next() {
            None => return Err(bad("it is empty")),
            Some(c) if !c.is_ascii_lowercase() => {
                return Err(bad("it must start with a lower-case letter"));
            }
            Some(_) => {}
        }
        if name.len() > 64 {
            return Err(bad("it is longer than 64 characters"));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(bad("only a-z, 0-9 and _ are allowed"));
        }
        if BUILT_IN_FIELDS.contains(&name.as_str()) {
            return Err(bad("it is the name of a built-in contact field"));
        }
        Ok(AttributeName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AttributeName {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        AttributeName::parse(value)
    }
}

impl From<AttributeName> for String {
    fn from(name: AttributeName) -> Self {
        name.0
    }
}

impl std::fmt::Display for AttributeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The type of a custom attribute, fixed by its first value in a workspace so that segment
/// rules can check their operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttributeType {
    String,
    Number,
    Boolean,
    /// An RFC 3339 timestamp or a `YYYY-MM-DD` date, kept as the string that was sent.
    Date,
    /// A list of strings (tags, interests).
    List,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::String => "string",
            AttributeType::Number => "number",
            AttributeType::Boolean => "boolean",
            AttributeType::Date => "date",
            AttributeType::List => "list",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "string" => AttributeType::String,
            "number" => AttributeType::Number,
            "boolean" => AttributeType::Boolean,
            "date" => AttributeType::Date,
            "list" => AttributeType::List,
            _ => return None,
        })
    }

    /// The type a first value gives its attribute. Strings that read as dates make the
    /// attribute a date.
    pub fn infer(name: &AttributeName, value: &serde_json::Value) -> Result<Self, ModelError> {
        use serde_json::Value;
        match value {
            Value::String(text) if is_date(text) => Ok(AttributeType::Date),
            Value::String(_) => Ok(AttributeType::String),
            Value::Number(_) => Ok(AttributeType::Number),
            Value::Bool(_) => Ok(AttributeType::Boolean),
            Value::Array(items) if items.iter().all(Value::is_string) => Ok(AttributeType::List),
            Value::Array(_) => Err(ModelError::AttributeType {
                name: name.to_string(),
                expected: "a list of strings",
                found: "a list with other values",
            }),
            Value::Object(_) => Err(ModelError::AttributeType {
                name: name.to_string(),
                expected: "a string, number, boolean, date or list of strings",
                found: "an object",
            }),
            Value::Null => Err(ModelError::AttributeType {
                name: name.to_string(),
                expected: "a value (null removes an attribute)",
                found: "null",
            }),
        }
    }

    /// Checks a value against the attribute's declared type.
    pub fn check(self, name: &AttributeName, value: &serde_json::Value) -> Result<(), ModelError> {
        use serde_json::Value;
        let ok = match (self, value) {
            (AttributeType::String, Value::String(_)) => true,
            (AttributeType::Date, Value::String(text)) => is_date(text),
            (AttributeType::Number, Value::Number(_)) => true,
            (AttributeType::Boolean, Value::Bool(_)) => true,
            (AttributeType::List, Value::Array(items)) => items.iter().all(Value::is_string),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ModelError::AttributeType {
                name: name.to_string(),
                expected: match self {
                    AttributeType::String => "a string",
                    AttributeType::Number => "a number",
                    AttributeType::Boolean => "a boolean",
                    AttributeType::Date => "a date (RFC 3339 or YYYY-MM-DD)",
                    AttributeType::List => "a list of strings",
                },
                found: json_kind(value),
            })
        }
    }
}

fn is_date(text: &str) -> bool {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() || Timestamp::parse(text).is_ok()
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The API schema of [`Attributes`]: names as [`AttributeName`] takes them, values a string,
/// number, boolean, list of strings, or `null` (which removes the attribute in a change).
pub fn attributes_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
    let built_in = BUILT_IN_FIELDS.join("|");
    let names = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^(?!(?:{built_in})$)[a-z][a-z0-9_]{{0,63}}$")));
    let values = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build();
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(names))
        .additional_properties(Some(Schema::OneOf(values)))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_lower_snake_case_and_not_built_in() {
        assert!(AttributeName::parse("loyalty_tier").is_ok());
        assert!(AttributeName::parse("Tier").is_err());
        assert!(AttributeName::parse("1st").is_err());
        assert!(AttributeName::parse("a-b").is_err());
        assert!(AttributeName::parse("email").is_err());
    }

    #[test]
    fn types_are_inferred_and_checked() {
        let name = AttributeName::parse("x").unwrap();
        assert_eq!(
            AttributeType::infer(&name, &json!(3)).unwrap(),
            AttributeType::Number
        );
        assert_eq!(
            AttributeType::infer(&name, &json!("2024-02-29")).unwrap(),
            AttributeType::Date
        );
        assert_eq!(
            AttributeType::infer(&name, &json!(["a"])).unwrap(),
            AttributeType::List
        );
        assert!(AttributeType::infer(&name, &json!({"a": 1})).is_err());
        assert!(AttributeType::Number.check(&name, &json!("3")).is_err());
        assert!(
            AttributeType::Date
                .check(&name, &json!("yesterday"))
                .is_err()
        );
        assert!(
            AttributeType::String
                .check(&name, &json!("2024-02-29"))
                .is_ok()
        );
    }
}
