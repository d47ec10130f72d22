//! Real peers for Clarion's tests, each started per test on its own port of 127.0.0.1:
//!
//! * [`SmtpServer`]: `python3 -m aiosmtpd` (Debian package python3-aiosmtpd) with a handler
//!   that records every message, optionally with PIPELINING, STARTTLS, AUTH or implicit TLS;
//!   it can be stopped and started again on the same port to play a relay outage.
//! * [`WebhookReceiver`]: an actix-web server that records every request and answers from a
//!   script of replies.
//!
//! Beside them, [`dkimpy_verify`] checks DKIM signatures with an independent verifier.
//!
//! The crate knows nothing of Clarion's own types: callers build their relay or webhook
//! settings from the host and port a peer reports. TLS clients need a rustls crypto provider
//! installed by the caller (`clarion_dispatch::install_crypto_provider`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dkim;
mod receiver;
mod smtp;

pub use dkim::{DkimVerdict, dkimpy_verify};
pub use receiver::{Recorded, Reply, WebhookReceiver};
pub use smtp::{Received, SmtpOptions, SmtpServer};

/// The address every peer listens on.
pub const HOST: &str = "127.0.0.1";

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((HOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
