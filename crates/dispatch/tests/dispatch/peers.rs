//! The shared test peers (crate clarion-testpeers) as these tests use them: with the crypto
//! provider installed, and relay settings pointing at an SMTP peer.

use clarion_dispatch::{EmailConfig, SmtpConfig};
pub use clarion_testpeers::{
    Reply, SmtpOptions, SmtpServer, WebhookReceiver, dkimpy_verify, free_port,
};

/// Relay settings for `server`: plain SMTP, default pool.
pub fn smtp_config(server: &SmtpServer) -> EmailConfig {
    clarion_dispatch::install_crypto_provider();
    EmailConfig {
        smtp: Some(SmtpConfig::plain(server.host(), server.port)),
        ..EmailConfig::default()
    }
}

/// A webhook receiver answering from `script`, then 204.
pub fn receiver(script: Vec<Reply>) -> WebhookReceiver {
    clarion_dispatch::install_crypto_provider();
    WebhookReceiver::start(script)
}
