use std::fmt;

use serde::Serialize;
use utoipa::ToSchema;

/// Why a value from outside could not become a model type. The message names the value and
/// the rule it broke; callers add the field or row it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{value:?} is not a valid email address ({reason})")]
    Email { value: String, reason: String },
    #[error("{0:?} is not an IANA time zone (for example \"Europe/Berlin\")")]
    TimeZone(String),
    #[error("{0:?} is not an ISO 3166-1 alpha-2 country code (for example \"DE\")")]
    Country(String),
    #[error("{0:?} is not a locale tag (for example \"de-DE\" or \"en\")")]
    Locale(String),
    #[error("{0:?} is not a phone number in international form (for example \"+4930123456\")")]
    Phone(String),
    #[error("attribute name {name:?} is invalid: {reason}")]
    AttributeName { name: String, reason: &'static str },
    #[error("attribute {name:?} must be {expected}, got {found}")]
    AttributeType {
        name: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("external_id is invalid: {0}")]
    ExternalId(&'static str),
    #[error("event kind {value:?} is invalid: {reason}")]
    EventKind { value: String, reason: &'static str },
    #[error("{0:?} is not an ISO 4217 currency code (three capital letters, for example \"EUR\")")]
    Currency(String),
    #[error("idempotency key is invalid: {0}")]
    IdempotencyKey(&'static str),
    #[error("{value:?} is not a timestamp ({reason})")]
    Timestamp { value: String, reason: &'static str },
    #[error("{field} is invalid: {reason}")]
    Text { field: &'static str, reason: String },
    #[error("{0:?} is not a subscription status (subscribed, unsubscribed, bounced, complained)")]
    SubscriptionStatus(String),
    #[error("{0:?} is not a role (admin, marketer, viewer)")]
    Role(String),
    #[error("amount must be a finite number")]
    Amount,
}

/// The stable error codes of Clarion's API: the registry every crate's errors draw from.
///
/// Clients match on the code, never on the message; a code, once published, keeps its meaning.
/// Each domain error says which code it is through [`Coded`]; the HTTP status of each code is
/// the server's business (one table in `clarion-server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The body is not JSON, or not the JSON this endpoint takes.
    InvalidJson,
    /// The request was understood but a value breaks a rule; `details` names each one.
    ValidationFailed,
    /// A query parameter is malformed.
    InvalidQuery,
    /// No API key, or one Clarion does not know.
    Unauthorized,
    /// The API key's role may not do this.
    Forbidden,
    /// The resource does not exist in this workspace.
    NotFound,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// A batch holds more items than one request may carry.
    BatchTooLarge,
    /// The body's content type is not one this endpoint reads.
    UnsupportedMediaType,
    /// A segment rule is malformed or does not fit the workspace; `details` gives the path
    /// (or line and column) of each bad node.
    InvalidRule,
    /// The request conflicts with what is stored, e.g. a slug already taken or a segment that
    /// others still refer to.
    Conflict,
    /// A query ran longer than its configured limit and was stopped.
    QueryTimeout,
    /// A dependency (database, Redis) does not answer.
    Unavailable,
    /// Something failed inside Clarion; the log has the cause.
    Internal,
}

impl ErrorCode {
    /// Every code, for the error-code table in the API documentation.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::InvalidJson,
        ErrorCode::ValidationFailed,
        ErrorCode::InvalidQuery,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::PayloadTooLarge,
        ErrorCode::BatchTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidRule,
        ErrorCode::Conflict,
        ErrorCode::QueryTimeout,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The code as it appears in the `code` field of an error response.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::BatchTooLarge => "batch_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidRule => "invalid_rule",
            ErrorCode::Conflict => "conflict",
            ErrorCode::QueryTimeout => "query_timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that knows which [`ErrorCode`] it answers with, and which fields or nodes of the
/// request it blames. Every domain error enum implements it, so the same error answers the
/// same code from every endpoint.
pub trait Coded: std::error::Error {
    /// The code of the API answer.
    fn code(&self) -> ErrorCode;

    /// The problems to list in `details.errors`, one per field or rule node; empty when the
    /// message says it all.
    fn details(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

/// One problem of a refused request, as `details.errors` of an error answer lists it.
///
/// It names where the problem is: a `field` of the request body (`name`, `rows.attr`), or the
/// `path` of a node in a rule (`all[2].count.op`; empty for the whole rule) or in a campaign
/// (`targets[0].variants[1].email.subject`). `line` and `column` (1-based) point into a rule's
/// text form or a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The campaign variant the problem is in, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// What is wrong, for people.
    pub message: String,
}

impl FieldError {
    /// A problem with a field of the request body.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: Some(field.into()),
            ..FieldError::bare(message)
        }
    }

    /// A problem with a node of a rule (or another tree in the request), named by its path.
    pub fn path(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: Some(path.into()),
            ..FieldError::bare(message)
        }
    }

    /// Adds the line and column the problem is at.
    #[must_use]
    pub fn at(mut self, line: Option<usize>, column: Option<usize>) -> Self {
        self.line = line;
        self.column = column;
        self
    }

    /// Adds the campaign variant the problem is in.
    #[must_use]
    pub fn in_variant(mut self, variant: Option<String>) -> Self {
        self.variant = variant;
        self
    }

    fn bare(message: impl Into<String>) -> Self {
        FieldError {
            field: None,
            path: None,
            variant: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = self.field.as_deref().or(self.path.as_deref())
            && !at.is_empty()
        {
            write!(f, "{at}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl Coded for ModelError {
    /// A value from outside that breaks a rule of the model is the caller's to fix.
    fn code(&self) -> ErrorCode {
        ErrorCode::ValidationFailed
    }
}

/// A database that does not answer is `unavailable` (try again); any other database failure
/// is `internal`.
#[cfg(feature = "db")]
impl Coded for sea_orm::DbErr {
    fn code(&self) -> ErrorCode {
        match self {
            sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => {
                ErrorCode::Unavailable
            }
            _ => ErrorCode::Internal,
        }
    }
}
