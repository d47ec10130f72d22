use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{EventId, ExternalId, ModelError, Timestamp};

/// What happened, e.g. `purchase`, `page_view`, `email_click`: 1 to 64 characters of a-z,
/// 0-9, `_`, `.`, `:` and `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    min_length = 1,
    max_length = 64,
    pattern = "^[a-z][a-z0-9_.:-]{0,63}$",
    example = "purchase"
)]
pub struct EventKind(String);

impl EventKind {
    pub fn parse(value: impl Into<String>) -> Result<Self, ModelError> {
        let value = value.into();
        let bad = |reason| ModelError::EventKind {
            value: value.clone(),
            reason,
        };
        if value.is_empty() || value.len() > 64 {
            return Err(bad("it must be 1 to 64 characters long"));
        }
        if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(bad("it must start with a lower-case letter"));
        }
        if !value.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-')
        }) {
            return Err(bad("only a-z, 0-9, _, ., : and - are allowed"));
        }
        Ok(EventKind(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventKind {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        EventKind::parse(value)
    }
}

impl From<EventKind> for String {
    fn from(value: EventKind) -> Self {
        value.0
    }
}

/// An ISO 4217 currency code, three capital letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        match value.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(ModelError::Currency(value.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII capitals are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_string()
    }
}

/// The sender's key for an event; an event whose key was seen before in the workspace is
/// stored once and answered as a duplicate. 1 to 255 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    min_length = 1,
    max_length = 255,
    pattern = r"^[^\x00-\x1f\x7f-\x9f]+$",
    example = "order-88123"
)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: impl Into<String>) -> Result<Self, ModelError> {
        let value = value.into();
        if value.is_empty() || value.chars().count() > 255 {
            return Err(ModelError::IdempotencyKey(
                "it must be 1 to 255 characters long",
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(ModelError::IdempotencyKey(
                "it contains a control character",
            ));
        }
        Ok(IdempotencyKey(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        IdempotencyKey::parse(value)
    }
}

impl From<IdempotencyKey> for String {
    fn from(value: IdempotencyKey) -> Self {
        value.0
    }
}

/// One item of `POST /events/batch`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// The contact the event belongs to.
    pub external_id: ExternalId,
    pub kind: EventKind,
    /// When it happened; the time of receipt when left out.
    #[serde(default)]
    pub occurred_at: Option<Timestamp>,
    /// A money amount (order value, refund) or any measure the event carries.
    #[serde(default, deserialize_with = "finite")]
    pub amount: Option<f64>,
    #[serde(default)]
    pub currency: Option<Currency>,
    /// Free-form details: product, category, campaign. Rules can filter on them.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
}

fn finite<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    match Option::<f64>::deserialize(deserializer)? {
        Some(amount) if !amount.is_finite() => Err(serde::de::Error::custom(ModelError::Amount)),
        amount => Ok(amount),
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Event {
    pub id: EventId,
    pub external_id: ExternalId,
    pub kind: EventKind,
    pub occurred_at: Timestamp,
    pub amount: Option<f64>,
    pub currency: Option<Currency>,
    #[schema(value_type = Object)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    pub idempotency_key: Option<IdempotencyKey>,
    pub received_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_currencies_and_keys_are_checked() {
        assert!(EventKind::parse("email.click").is_ok());
        assert!(EventKind::parse("Purchase").is_err());
        assert!(EventKind::parse("").is_err());
        assert_eq!(Currency::parse("GBP").unwrap().as_str(), "GBP");
        assert!(Currency::parse("gbp").is_err());
        assert!(IdempotencyKey::parse("").is_err());
    }

    #[test]
    fn event_input_reads_defaults_and_refuses_unknown_fields() {
        let event: EventInput =
            serde_json::from_str(r#"{"external_id":"c1","kind":"purchase"}"#).unwrap();
        assert_eq!(event.occurred_at, None);
        assert!(event.properties.is_empty());
        assert!(
            serde_json::from_str::<EventInput>(r#"{"external_id":"c1","kind":"x","amout":1}"#)
                .is_err()
        );
    }
}
