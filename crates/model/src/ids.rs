use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ModelError;

macro_rules! int_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

int_id!(
    /// The tenant a row belongs to. API keys belong to one workspace and see only its rows.
    WorkspaceId
);
int_id!(
    /// Clarion's own key of a contact; the outside world names contacts by [`ExternalId`].
    ContactId
);
int_id!(
    /// Clarion's own key of a stored event.
    EventId
);
int_id!(
    /// Clarion's own key of a stored segment; people name segments by their slug.
    SegmentId
);
int_id!(
    /// Clarion's key of a campaign.
    CampaignId
);
int_id!(
    /// Clarion's key of a campaign's variant; it stays the same across edits, so its history
    /// can be read.
    VariantId
);
int_id!(
    /// Clarion's key of a run: one launch of a campaign.
    RunId
);
int_id!(
    /// Clarion's key of a delivery: the outbox row of one message to one contact on one
    /// channel in one run.
    DeliveryId
);

/// The id a customer has in the systems that send Clarion its data: unique per workspace,
/// 1 to 255 characters, no control characters, no surrounding white space.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    min_length = 1,
    max_length = 255,
    pattern = r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$",
    example = "cust-1042"
)]
pub struct ExternalId(String);

impl ExternalId {
    pub const MAX_LEN: usize = 255;

    pub fn parse(value: impl Into<String>) -> Result<Self, ModelError> {
        let value = value.into();
        if value.is_empty() {
            return Err(ModelError::ExternalId("it is empty"));
        }
        if value.chars().count() > Self::MAX_LEN {
            return Err(ModelError::ExternalId("it is longer than 255 characters"));
        }
        if value.trim() != value {
            return Err(ModelError::ExternalId("it starts or ends with white space"));
        }
        if value.chars().any(char::is_control) {
            return Err(ModelError::ExternalId("it contains a control character"));
        }
        Ok(ExternalId(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ExternalId {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ExternalId::parse(value)
    }
}

impl From<ExternalId> for String {
    fn from(id: ExternalId) -> Self {
        id.0
    }
}

impl std::fmt::Display for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_refuse_blank_padded_and_control_characters() {
        assert!(ExternalId::parse("cust-1").is_ok());
        assert!(ExternalId::parse("").is_err());
        assert!(ExternalId::parse(" cust").is_err());
        assert!(ExternalId::parse("a\nb").is_err());
        assert!(ExternalId::parse("x".repeat(256)).is_err());
    }
}
