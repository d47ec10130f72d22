use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ModelError;

/// A short free-text field (names, city, region): trimmed, at most 200 characters, no control
/// characters. Empty text is refused; send `null` to clear a field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    max_length = 200,
    pattern = r"^\s*[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?\s*$"
)]
pub struct ShortText(String);

impl ShortText {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(value: impl Into<String>) -> Result<Self, ModelError> {
        let value = value.into();
        let trimmed = value.trim();
        let reason = if trimmed.is_empty() {
            Some("it is empty (send null to clear it)".to_string())
        } else if trimmed.chars().count() > Self::MAX_CHARS {
            Some(format!("it is longer than {} characters", Self::MAX_CHARS))
        } else if trimmed.chars().any(char::is_control) {
            Some("it contains a control character".to_string())
        } else {
            None
        };
        match reason {
            Some(reason) => Err(ModelError::Text {
                field: "text",
                reason,
            }),
            None => Ok(ShortText(trimmed.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ShortText {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ShortText::parse(value)
    }
}

impl From<ShortText> for String {
    fn from(text: ShortText) -> Self {
        text.0
    }
}
