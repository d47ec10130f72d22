use std::fmt;

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

/// The stable error codes of Clarion's API, with the HTTP status each one answers with.
///
/// Clients match on the code, never on the message; a code, once published, keeps its meaning.
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

    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidQuery => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::PayloadTooLarge | ErrorCode::BatchTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::ValidationFailed | ErrorCode::InvalidRule | ErrorCode::QueryTimeout => 422,
            ErrorCode::Conflict => 409,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
