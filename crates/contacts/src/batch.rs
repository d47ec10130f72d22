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

    /// Turns a typed-deserialisation failure into an item error naming the field, nested
    /// ones by their path (`subscriptions.email`, `targets[0].name`).
    pub fn from_serde(index: usize, error: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let mut field = error.path().to_string();
        if field == "." {
            field.clear();
        }
        let mut message = error.inner().to_string();
        // serde_json appends "at line 1 column 57" counted within the item's own text, which
        // would mislead; the index and the field locate the problem.
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // Missing and unknown fields are reported at their parent; name the field itself.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix))
            .and_then(|rest| rest.split('`').next());
        if let Some(name) = named
            && !field.ends_with(name)
        {
            field = if field.is_empty() {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            };
        }
        ItemError {
            index,
            field: (!field.is_empty()).then_some(field),
            message,
        }
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
