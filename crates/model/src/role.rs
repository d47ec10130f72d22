use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ModelError;

/// What an API key may do. Roles are ordered: an admin may do all a marketer may, a marketer
/// all a viewer may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads contacts, events, segments, campaigns and reports.
    Viewer,
    /// Also writes contacts, events, segments and campaigns, and launches campaigns.
    Marketer,
    /// Also manages API keys and the workspace's settings.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Marketer => "marketer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Result<Self, ModelError> {
        match value {
            "viewer" => Ok(Role::Viewer),
            "marketer" => Ok(Role::Marketer),
            "admin" => Ok(Role::Admin),
            other => Err(ModelError::Role(other.to_string())),
        }
    }

    /// Whether a key of this role may do what needs `required`.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl std::str::FromStr for Role {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::parse(s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Admin.allows(Role::Marketer));
        assert!(Role::Marketer.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Marketer));
        assert!(!Role::Marketer.allows(Role::Admin));
    }
}
