//! Clarion's multichannel dispatch: delivering rendered messages.
//!
//! - [`EmailSender`] sends [`EmailMessage`]s as multipart MIME through an SMTP relay (STARTTLS
//!   or TLS, AUTH, pooled connections, optional DKIM), or writes them as `.eml` files when no
//!   relay is configured. A [`DkimKey`] signs the formatted bytes, exactly what is sent.
//! - [`WebhookSender`] POSTs [`WebhookMessage`]s signed per Standard Webhooks, to targets a
//!   [`TargetPolicy`] allows, without following redirects.
//!
//! Both implement [`Sender`], whose `send_many` sends a batch concurrently over the pooled
//! connections. Every failure is a [`DispatchError`] that says whether to retry.
//!
//! Nothing here touches the database: the worker turns delivery rows into messages and
//! records the outcomes.
//!
//! Configuration ([`EmailConfig`], [`WebhookConfig`]) deserializes from sections like these:
//!
//! ```toml
//! [email]
//! outbox_dir = "data/outbox"      # used while no relay is configured
//!
//! [email.smtp]                    # optional: the relay
//! host = "smtp.example.com"
//! tls = "starttls"                # none | starttls | tls
//! username = "clarion"
//! password = "…"                  # never logged
//! pool_size = 10
//!
//! [email.dkim]                    # optional
//! selector = "clarion2026"
//! domain = "example.com"
//! algorithm = "rsa"               # rsa (PKCS#1 or PKCS#8 PEM) | ed25519 (base64 seed)
//! private_key = "-----BEGIN RSA PRIVATE KEY-----…"
//!
//! [webhook]
//! secret = "whsec_…"              # Standard Webhooks signing secret
//! timeout_ms = 15000
//! allow_private = false           # also allow_loopback, allow_link_local
//! ```

#[cfg(feature = "bench")]
pub mod bench;
mod dkim;
mod email;
mod error;
mod relay;
mod sender;
mod signature;
mod target;
mod webhook;

pub use dkim::{DkimAlgorithm, DkimKey, InvalidDkimKey};
pub use email::{
    DkimSettings, EmailConfig, EmailMessage, EmailSender, ListUnsubscribe, PreparedEmail,
    SmtpConfig, TlsMode,
};
pub use error::DispatchError;
pub use sender::{SendReceipt, SendResult, Sender};
pub use signature::{
    SigningKeys, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, WebhookSecret, sign,
};
pub use target::{BlockedTarget, TargetPolicy};
pub use webhook::{
    WebhookAttempt, WebhookConfig, WebhookMessage, WebhookSender, check_extra_header,
};

/// Installs rustls' *ring* crypto provider as the process default, once.
///
/// Clarion uses one rustls provider for the whole binary. Call this at the start of `main` and
/// in test helpers, before any TLS connection is made. Calling it again, or after another part
/// of the program installed a provider, changes nothing.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is the state we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
