//! What a batch write reports back: per item, either stored or why not.

use serde::Serialize;
use utoipa::ToSchema;

/// Why one item of a batch was not stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ItemError {
    /// Position of the item in the batch (0-based), or the CSV line number for imports.
    pub index: usize,
    /// The field at fault, e.g. `email` or `attributes.age`; absent when the whole item is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl ItemError {
    pub fn new(index: usize, field: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        ItemError {
            index,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Turns a typed-deserialisation failure into an item error naming the field.
    pub fn from_serde(index: usize, error: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        // serde reports missing and unknown fields at the parent; name the field itself.
        let field = if path == "." {
            field_in_message(&message)
        } else {
            Some(path)
        };
        let message = strip_position(&message);
        ItemError {
            index,
            field,
            message,
        }
    }
}

fn field_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    let prefix = &message[..start];
    (prefix.starts_with("missing field") || prefix.starts_with("unknown field"))
        .then(|| message[start..end].to_string())
}

/// serde_json appends "at line 1 column 57" counted within the item's own text, which would
/// mislead; the index already locates the item.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_the_field() {
        let error = serde_path_to_error::deserialize::<_, clarion_model::EventInput>(
            &mut serde_json::Deserializer::from_str(r#"{"external_id":"c1"}"#),
        )
        .unwrap_err();
        let item = ItemError::from_serde(4, error);
        assert_eq!(item.field.as_deref(), Some("kind"));
        assert_eq!(item.message, "missing field `kind`");

        let error = serde_path_to_error::deserialize::<_, clarion_model::ContactUpsert>(
            &mut serde_json::Deserializer::from_str(r#"{"external_id":"c1","email":"nope"}"#),
        )
        .unwrap_err();
        let item = ItemError::from_serde(0, error);
        assert_eq!(item.field.as_deref(), Some("email"));
        assert!(
            item.message.contains("not a valid email address"),
            "{}",
            item.message
        );
    }
}
