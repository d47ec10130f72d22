//! Clarion's shared domain model.
//!
//! Every value that enters Clarion from outside (an API request, a CSV row, a configuration
//! file) is parsed once into one of these types, and the rest of the code trusts it: an
//! [`EmailAddress`] is always valid, a [`TimeZone`] always names an IANA zone, an
//! [`AttributeName`] is always safe to use as a JSON path. The crate does no I/O; the sea-orm
//! entities behind the `db` feature describe the tables for the crates that query them.

mod attribute;
mod contact;
mod error;
mod event;
mod ids;
mod patch;
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
pub use error::{Coded, ErrorCode, FieldError, ModelError};
pub use event::{Currency, Event, EventInput, EventKind, IdempotencyKey};
pub use ids::{ContactId, EventId, ExternalId, SegmentId, WorkspaceId};
pub use patch::Patch;
pub use role::Role;
pub use text::ShortText;
pub use time::Timestamp;

/// The workspace every row belongs to until multi-tenancy is switched on.
pub const DEFAULT_WORKSPACE: WorkspaceId = WorkspaceId(1);
