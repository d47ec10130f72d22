//! The one error type of the crate.
//!
//! Whether a failed delivery is worth retrying is decided where the failure happens (an SMTP
//! reply code, an HTTP status, a refused connection) and carried in the variant, so the worker
//! never has to guess from a message string.

use std::time::Duration;

/// Why a message was not delivered, or why a sender could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// The peer or the network failed in a way that may pass: connection refused, a timeout,
    /// an SMTP 4xx reply, HTTP 429 or 5xx. Retry the same message later, after `retry_after`
    /// when the peer said how long to wait.
    #[error("transient delivery failure: {reason}")]
    Transient {
        /// What went wrong, for the delivery's history.
        reason: String,
        /// How long the peer asked us to wait (HTTP `Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
    /// Sending this message again will fail the same way: an SMTP 5xx reply for the recipient,
    /// an HTTP 4xx other than 408/429, an invalid address, a webhook target the policy forbids.
    /// The message belongs in the dead letters.
    #[error("permanent delivery failure: {reason}")]
    Permanent {
        /// What went wrong, for the delivery's history and the dead-letter view.
        reason: String,
    },
    /// The relay refused the recipient (an SMTP 4xx or 5xx reply to RCPT TO): a bounce. A 5xx
    /// is hard (the address does not take mail: permanent), a 4xx soft (a full mailbox, a
    /// greylisting server: transient, retried). The code and text are the relay's.
    #[error("SMTP relay refused the recipient: {code} {text}")]
    Bounced {
        /// The SMTP reply code, 400 to 599.
        code: u16,
        /// The reply's text, its lines joined with spaces.
        text: String,
        /// `"{code} {text}"`, for the delivery's history.
        reason: String,
    },
    /// A sender could not be built from its configuration. Returned only by constructors
    /// and [`crate::WebhookSecret::parse`], never by a send.
    #[error("invalid dispatch configuration `{setting}`: {reason}")]
    InvalidConfig {
        /// The configuration setting at fault, e.g. `email.dkim.private_key`.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl DispatchError {
    /// A transient failure without a hint about when to retry.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_config(setting: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            setting,
            reason: reason.into(),
        }
    }

    /// A bounce with the relay's reply code and text.
    pub fn bounced(code: u16, text: impl Into<String>) -> Self {
        let text = text.into();
        Self::Bounced {
            code,
            reason: format!("SMTP relay refused the recipient: {code} {text}"),
            text,
        }
    }

    /// True when the same message may succeed if sent again later.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transient { .. } => true,
            Self::Bounced { code, .. } => *code < 500,
            Self::Permanent { .. } | Self::InvalidConfig { .. } => false,
        }
    }

    /// The recipient's bounce, when the relay refused it: its reply code and text.
    pub fn bounce(&self) -> Option<(u16, &str)> {
        match self {
            Self::Bounced { code, text, .. } => Some((*code, text)),
            _ => None,
        }
    }

    /// The delay the peer asked for before a retry, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            Self::Permanent { .. } | Self::InvalidConfig { .. } | Self::Bounced { .. } => None,
        }
    }

    /// The human-readable reason, without the class prefix.
    pub fn reason(&self) -> &str {
        match self {
            Self::Transient { reason, .. }
            | Self::Permanent { reason }
            | Self::Bounced { reason, .. }
            | Self::InvalidConfig { reason, .. } => reason,
        }
    }
}
