//! Clarion's shared domain model.
//!
//! Every value that enters Clarion from outside (an API request, a CSV row, a configuration
//! file) is parsed once into one of these types, and the rest of the code trusts it: an
//! [`EmailAddress`] is always valid, a [`TimeZone`] always names an IANA zone, an
//! [`AttributeName`] is always safe to use as a JSON path. The crate does no I/O; the sea-orm
//! entities behind the `db` feature describe the tables for the crates that query them.
//!
//! Beside what enters from outside, the model holds what every crate above it shares: the ids
//! of campaigns, variants, runs and deliveries, the statuses a delivery and a run go through,
//! the delivery job, a campaign's [`Goal`], who is reachable on a channel ([`reachability`])
//! and the deterministic assignment hash ([`assign`]).

pub mod assign;
mod attribute;
mod contact;
mod delivery;
mod error;
mod event;
mod goal;
mod ids;
mod patch;
mod reach;
mod role;
mod text;
mod time;

#[cfg(feature = "db")]
pub mod entity;

pub use attribute::{AttributeName, AttributeType, Attributes};
pub use contact::{
    Channel, Contact, ContactPatch, ContactUpsert, CountryCode, EmailAddress, Locale, PhoneNumber,
    SubscriptionStatus, Subscriptions, SubscriptionsPatch, TimeZone,
};
pub use delivery::{DeliveryJob, DeliveryStatus, RunStatus};
pub use error::{Coded, ErrorCode, FieldError, ModelError};
pub use event::{Currency, Event, EventInput, EventKind, IdempotencyKey};
pub use goal::Goal;
pub use ids::{
    CampaignId, ContactId, DeliveryId, EventId, ExternalId, RunId, SegmentId, VariantId,
    WorkspaceId,
};
pub use patch::Patch;
pub use reach::{Suppression, reachability, reachable_sql};
pub use role::Role;
pub use text::ShortText;
pub use time::Timestamp;

/// The workspace every row belongs to until multi-tenancy is switched on.
pub const DEFAULT_WORKSPACE: WorkspaceId = WorkspaceId(1);
