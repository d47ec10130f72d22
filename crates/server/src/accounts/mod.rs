//! People who use the dashboard: accounts with a role and an argon2id password
//! ([`users`], [`password`]), server-side sessions ([`sessions`]), one-time invitation and
//! reset links ([`links`]) and the Redis counters that lock out password guessing
//! ([`limiter`]). The dashboard's handlers parse a form, call one function here and show its
//! error beside the field it names.

pub mod limiter;
pub mod links;
pub mod password;
pub mod sessions;
pub mod users;

use clarion_model::{Coded, ErrorCode, FieldError};

pub use limiter::LoginLimiter;
pub use links::LinkPurpose;
pub use sessions::Session;
pub use users::User;

/// Everything that can go wrong with accounts, sessions and links.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    #[error("Redis error")]
    Redis(#[from] redis::RedisError),
    /// A form field breaks a rule: shown beside the field.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Unknown email, wrong password or a deactivated account: deliberately not told apart.
    #[error("the email address or password is wrong")]
    BadCredentials,
    /// Too many failed logins for this account or from this address.
    #[error("too many failed logins; try again in {minutes} minute(s)")]
    LockedOut { minutes: u64 },
    /// A link that was tampered with, is unknown, expired or already used.
    #[error("this link is not valid: it may have expired or been used already")]
    BadLink,
    #[error("a user with the email address {0} already exists")]
    Duplicate(String),
    #[error("no such user")]
    NotFound,
    /// The change would leave the workspace without an active admin.
    #[error("the workspace must keep at least one active admin")]
    LastAdmin,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("stored row is unreadable: column {column}: {reason}")]
    Corrupt {
        column: &'static str,
        reason: String,
    },
}

impl AccountError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AccountError::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The form field this error belongs beside, if it is about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            AccountError::Invalid { field, .. } => Some(field),
            AccountError::Duplicate(_) => Some("email"),
            _ => None,
        }
    }

    /// What to show beside [`AccountError::field`].
    pub fn field_message(&self) -> String {
        match self {
            AccountError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

impl Coded for AccountError {
    fn code(&self) -> ErrorCode {
        match self {
            AccountError::Db(db) => db.code(),
            AccountError::Redis(_) => ErrorCode::Unavailable,
            AccountError::Invalid { .. } => ErrorCode::ValidationFailed,
            AccountError::BadCredentials => ErrorCode::Unauthorized,
            AccountError::LockedOut { .. } => ErrorCode::Forbidden,
            AccountError::BadLink | AccountError::NotFound => ErrorCode::NotFound,
            AccountError::Duplicate(_) | AccountError::LastAdmin => ErrorCode::Conflict,
            AccountError::Hash(_) | AccountError::Corrupt { .. } => ErrorCode::Internal,
        }
    }

    fn details(&self) -> Vec<FieldError> {
        match self.field() {
            Some(field) => vec![FieldError::field(field, self.field_message())],
            None => Vec::new(),
        }
    }
}

pub(crate) fn corrupt(column: &'static str) -> impl Fn(clarion_model::ModelError) -> AccountError {
    move |e| AccountError::Corrupt {
        column,
        reason: e.to_string(),
    }
}

/// A random token of 32 bytes, URL-safe base64.
pub(crate) fn random_token() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a token, hex: what the database keeps instead of the token.
pub(crate) fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What accounts need beside the database: the Redis counters of failed logins and the key
/// that signs one-time links.
#[derive(Clone)]
pub struct Accounts {
    pub limiter: LoginLimiter,
    pub links: links::LinkSigner,
}
