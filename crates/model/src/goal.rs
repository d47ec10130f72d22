//! What a campaign wants its recipients to do, which conversions and uplift are measured
//! against.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the campaign wants contacts to do: an event kind within a time after the message
/// (or after holdout assignment, for the control group), e.g. `purchase` within 168 hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    /// The event kind that counts as a conversion, e.g. `purchase`.
    #[schema(example = "purchase")]
    pub event: String,
    /// The attribution window in hours (1 to 8760).
    #[schema(example = 168, minimum = 1, maximum = 8760)]
    pub window_hours: i64,
}
