//! Email: MIME building, optional DKIM signing, and delivery through a pooled SMTP relay or, with
//! no relay configured, as `.eml` files in an outbox directory.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::DispatchError;
use crate::dkim::{DkimAlgorithm, DkimKey};
use crate::relay::{ImplicitTls, Relay, RelaySettings, Security};
use crate::sender::{SendReceipt, SendResult, Sender};

/// How email leaves Clarion: the `[email]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP relay. Without one, every message is written to `outbox_dir` instead.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Where `.eml` files go when no relay is configured. Created if missing.
    #[serde(default = "default_outbox_dir")]
    pub outbox_dir: PathBuf,
    /// DKIM signing of every outgoing message, for either transport.
    #[serde(default)]
    pub dkim: Option<DkimSettings>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp: None,
            outbox_dir: default_outbox_dir(),
            dkim: None,
        }
    }
}

fn default_outbox_dir() -> PathBuf {
    PathBuf::from("data/outbox")
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP. Only for a relay on the same host or a trusted network.
    None,
    /// Plain connection upgraded with STARTTLS, which the relay must offer (default port 587).
    #[default]
    Starttls,
    /// TLS from the first byte, "SMTPS" (default port 465).
    Tls,
}

impl TlsMode {
    fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::Starttls => 587,
            Self::Tls => 465,
        }
    }
}

/// An SMTP relay and how to use it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name (also the name its TLS certificate must carry) or IP address.
    pub host: String,
    /// Port; defaults to 25, 587 or 465 after `tls`.
    #[serde(default)]
    pub port: Option<u16>,
    /// Transport security; STARTTLS unless set.
    #[serde(default)]
    pub tls: TlsMode,
    /// User name for SMTP AUTH (PLAIN or LOGIN); no authentication when absent.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for SMTP AUTH. Never logged or printed.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Connections kept open to the relay and the most used at once.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Limit for connecting and for each SMTP command, in seconds.
    #[serde(default = "default_smtp_timeout_secs")]
    pub timeout_secs: u64,
    /// Name announced in EHLO; the machine's host name when absent.
    #[serde(default)]
    pub hello_name: Option<String>,
    /// A PEM file of CA certificates to trust for the relay besides the public web PKI roots,
    /// for relays with certificates from a private CA.
    #[serde(default)]
    pub root_certificates: Option<PathBuf>,
}

fn default_pool_size() -> u32 {
    10
}

fn default_smtp_timeout_secs() -> u64 {
    30
}

impl SmtpConfig {
    /// A relay at `host:port` without TLS or authentication, with default pool and timeouts:
    /// what tests and local sinks use.
    pub fn plain(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port: Some(port),
            tls: TlsMode::None,
            username: None,
            password: None,
            pool_size: default_pool_size(),
            timeout_secs: default_smtp_timeout_secs(),
            hello_name: None,
            root_certificates: None,
        }
    }
}

/// DKIM signing settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSettings {
    /// Selector: the key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// The signing domain (`d=`), normally the From domain.
    pub domain: String,
    /// The signing algorithm; RSA unless set.
    #[serde(default)]
    pub algorithm: DkimAlgorithm,
    /// The private key, in the form `algorithm` names. Never logged or printed.
    pub private_key: SecretString,
}

impl DkimSettings {
    /// Reads the key; an unreadable one is an error naming `email.dkim.private_key`.
    pub fn key(&self) -> Result<DkimKey, DispatchError> {
        DkimKey::parse(
            &self.selector,
            &self.domain,
            self.algorithm,
            &self.private_key,
        )
        .map_err(|error| DispatchError::invalid_config("email.dkim.private_key", error.to_string()))
    }
}

/// The `List-Unsubscribe` header set (RFC 2369, one-click per RFC 8058).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUnsubscribe {
    /// The HTTPS unsubscribe link of this recipient.
    pub url: String,
    /// An optional `mailto:` alternative, without the `mailto:` prefix.
    pub mailto: Option<String>,
    /// Adds `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, promising that a POST to `url`
    /// unsubscribes without further interaction.
    pub one_click: bool,
}

/// One rendered email for one recipient, independent of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    /// The delivery this message belongs to. It becomes the Message-ID
    /// (`<delivery_id@from-domain>`) and the `X-Clarion-Delivery` header, so replies, bounces
    /// and retries can be traced to it. Letters, digits and `.-_` only.
    pub delivery_id: String,
    /// The campaign, sent as `X-Clarion-Campaign` when present.
    pub campaign_id: Option<String>,
    /// Sender mailbox, e.g. `Clarion News <news@example.com>`.
    pub from: String,
    /// Recipient mailbox.
    pub to: String,
    /// Optional Reply-To mailbox.
    pub reply_to: Option<String>,
    /// Subject, any Unicode (encoded per RFC 2047).
    pub subject: String,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body. With `text` as well the message is multipart/alternative.
    pub html: Option<String>,
    /// Unsubscribe headers.
    pub list_unsubscribe: Option<ListUnsubscribe>,
    /// Further headers (name, value), e.g. `Precedence: bulk`. A header built from the fields
    /// above (From, Subject, List-Unsubscribe, …) cannot be replaced this way: the message
    /// fails permanently.
    pub headers: Vec<(String, String)>,
    /// The key to sign this message with, e.g. its sender identity's. Without one, the
    /// sender's `[email.dkim]` key signs, when configured.
    pub dkim: Option<Arc<DkimKey>>,
    /// The envelope sender (SMTP `MAIL FROM`, where bounces go, also called Return-Path);
    /// the From address when absent.
    pub return_path: Option<String>,
}

/// A message built, signed and serialized, ready to be handed to the transport.
///
/// Preparing is the CPU part of sending; a worker may prepare a batch up front and send the
/// prepared messages afterwards.
#[derive(Clone)]
pub struct PreparedEmail {
    envelope: lettre::address::Envelope,
    message_id: String,
    bytes: Vec<u8>,
}

impl PreparedEmail {
    /// The Message-ID header value, angle brackets included.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The message as sent on the wire (RFC 5322, CRLF line ends, before dot-stuffing).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for PreparedEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedEmail")
            .field("message_id", &self.message_id)
            .field("envelope", &self.envelope)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

enum Transport {
    Smtp(Relay),
    File {
        transport: AsyncFileTransport<Tokio1Executor>,
        dir: PathBuf,
    },
}

/// Sends [`EmailMessage`]s through the configured relay or into the outbox directory.
///
/// Cheap to share: wrap it in an `Arc` and use it from every task of a worker.
pub struct EmailSender {
    transport: Transport,
    dkim: Option<Arc<DkimKey>>,
}

impl fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match &self.transport {
            Transport::Smtp(relay) => format!("smtp://{}", relay.address()),
            Transport::File { dir, .. } => format!("file://{}", dir.display()),
        };
        f.debug_struct("EmailSender")
            .field("transport", &transport)
            .field("dkim", &self.dkim.is_some())
            .finish()
    }
}

/// Headers built from [`EmailMessage`] fields or by signing, in lower case; extra headers may
/// not replace them (lettre would, envelope included).
const BUILT_HEADERS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "dkim-signature",
    "x-clarion-delivery",
    "x-clarion-campaign",
];

impl EmailSender {
    /// Builds the sender. With `smtp` set, opens no connection yet: the pool connects on first
    /// use. Without it, creates `outbox_dir` if needed.
    pub async fn new(config: &EmailConfig) -> Result<Self, DispatchError> {
        let dkim = config
            .dkim
            .as_ref()
            .map(DkimSettings::key)
            .transpose()?
            .map(Arc::new);
        let transport = match &config.smtp {
            Some(smtp) => smtp_transport(smtp)?,
            None => {
                tokio::fs::create_dir_all(&config.outbox_dir)
                    .await
                    .map_err(|error| {
                        DispatchError::invalid_config(
                            "email.outbox_dir",
                            format!("cannot create {}: {error}", config.outbox_dir.display()),
                        )
                    })?;
                Transport::File {
                    transport: AsyncFileTransport::new(&config.outbox_dir),
                    dir: config.outbox_dir.clone(),
                }
            }
        };
        Ok(Self { transport, dkim })
    }

    /// Builds, signs and serializes `message`. Fails permanently when an address, the delivery
    /// id or a header is malformed, or when there is no body.
    pub fn prepare(&self, message: &EmailMessage) -> Result<PreparedEmail, DispatchError> {
        prepare(message, self.dkim.as_deref())
    }

    /// [`Self::prepare`] on Tokio's blocking thread pool. MIME encoding takes tens of
    /// microseconds per message and RSA DKIM signing up to milliseconds; off the async
    /// threads, that work does not delay the replies on every other pooled connection.
    pub async fn prepare_in_background(
        &self,
        message: &EmailMessage,
    ) -> Result<PreparedEmail, DispatchError> {
        let message = message.clone();
        let dkim = self.dkim.clone();
        tokio::task::spawn_blocking(move || prepare(&message, dkim.as_deref()))
            .await
            .map_err(|error| {
                DispatchError::transient(format!("preparing the email failed: {error}"))
            })?
    }

    /// Hands a prepared message to the transport.
    pub async fn send_prepared(&self, email: &PreparedEmail) -> SendResult {
        match &self.transport {
            Transport::Smtp(relay) => {
                let response = relay.send(&email.envelope, &email.bytes).await?;
                Ok(SendReceipt {
                    detail: format!(
                        "{} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    ),
                })
            }
            Transport::File { transport, dir } => {
                let id = transport
                    .send_raw(&email.envelope, &email.bytes)
                    .await
                    .map_err(|error| {
                        // A full disk or a permission fixed by the operator lets a retry pass.
                        DispatchError::transient(format!(
                            "cannot write the email to {}: {error}",
                            dir.display()
                        ))
                    })?;
                Ok(SendReceipt {
                    detail: format!("written to {}", dir.join(format!("{id}.eml")).display()),
                })
            }
        }
    }

    /// Builds and sends one message.
    pub async fn send_email(&self, message: &EmailMessage) -> SendResult {
        let prepared = self.prepare_in_background(message).await?;
        self.send_prepared(&prepared).await
    }

    /// Closes pooled SMTP connections politely (QUIT). Sends after this fail transiently.
    pub async fn shutdown(&self) {
        if let Transport::Smtp(relay) = &self.transport {
            relay.shutdown().await;
        }
    }
}

impl Sender for EmailSender {
    type Message = EmailMessage;

    fn send(&self, message: &EmailMessage) -> impl Future<Output = SendResult> + Send {
        self.send_email(message)
    }
}

/// Builds, signs and serializes one message; see [`EmailSender::prepare`].
fn prepare(message: &EmailMessage, dkim: Option<&DkimKey>) -> Result<PreparedEmail, DispatchError> {
    let from: Mailbox = parse_mailbox("From", &message.from)?;
    if !is_message_id_part(&message.delivery_id) {
        return Err(DispatchError::permanent(format!(
            "delivery id {:?} cannot form a Message-ID: use letters, digits and .-_ only",
            message.delivery_id
        )));
    }
    let message_id = format!("<{}@{}>", message.delivery_id, from.email.domain());

    let mut builder = Message::builder()
        .from(from)
        .to(parse_mailbox("To", &message.to)?)
        .subject(message.subject.as_str())
        .message_id(Some(message_id.clone()))
        .raw_header(header("X-Clarion-Delivery", &message.delivery_id)?);
    if let Some(reply_to) = &message.reply_to {
        builder = builder.reply_to(parse_mailbox("Reply-To", reply_to)?);
    }
    if let Some(campaign_id) = &message.campaign_id {
        builder = builder.raw_header(header("X-Clarion-Campaign", campaign_id)?);
    }
    if let Some(unsubscribe) = &message.list_unsubscribe {
        let value = match &unsubscribe.mailto {
            Some(mailto) => format!("<{}>, <mailto:{mailto}>", unsubscribe.url),
            None => format!("<{}>", unsubscribe.url),
        };
        builder = builder.raw_header(header("List-Unsubscribe", &value)?);
        if unsubscribe.one_click {
            builder = builder.raw_header(header(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click",
            )?);
        }
    }
    for (name, value) in &message.headers {
        if BUILT_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(DispatchError::permanent(format!(
                "extra header {name} would replace the one built from the message fields"
            )));
        }
        builder = builder.raw_header(header(name, value)?);
    }

    let built = match (&message.text, &message.html) {
        (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(
            text.clone(),
            html.clone(),
        )),
        (Some(text), None) => builder.singlepart(SinglePart::plain(text.clone())),
        (None, Some(html)) => builder.singlepart(SinglePart::html(html.clone())),
        (None, None) => {
            return Err(DispatchError::permanent(
                "email has neither a text nor an HTML body",
            ));
        }
    };
    let email = built
        .map_err(|error| DispatchError::permanent(format!("cannot build the email: {error}")))?;
    // Signed after formatting, so the signature covers the headers exactly as sent, the
    // multipart Content-Type lettre adds while formatting included.
    let formatted = email.formatted();
    let bytes = match message.dkim.as_deref().or(dkim) {
        Some(key) => {
            let signature = key.sign(&formatted).map_err(DispatchError::permanent)?;
            let mut signed = Vec::with_capacity(signature.len() + formatted.len());
            signed.extend_from_slice(signature.as_bytes());
            signed.extend_from_slice(&formatted);
            signed
        }
        None => formatted,
    };
    let envelope = match &message.return_path {
        Some(return_path) => {
            let address = return_path.parse().map_err(|error| {
                DispatchError::permanent(format!("invalid return path {return_path:?}: {error}"))
            })?;
            lettre::address::Envelope::new(Some(address), email.envelope().to().to_vec())
                .map_err(|error| DispatchError::permanent(format!("invalid envelope: {error}")))?
        }
        None => email.envelope().clone(),
    };
    Ok(PreparedEmail {
        envelope,
        message_id,
        bytes,
    })
}

fn smtp_transport(config: &SmtpConfig) -> Result<Transport, DispatchError> {
    if config.pool_size == 0 {
        return Err(DispatchError::invalid_config(
            "email.smtp.pool_size",
            "must be at least 1",
        ));
    }
    let extra_roots = config
        .root_certificates
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|error| {
                DispatchError::invalid_config(
                    "email.smtp.root_certificates",
                    format!("{}: {error}", path.display()),
                )
            })
        })
        .transpose()?;
    let security = match config.tls {
        TlsMode::None => Security::Plain,
        TlsMode::Starttls => {
            let mut builder = TlsParameters::builder(config.host.clone());
            if let Some(pem) = &extra_roots {
                let certificate = Certificate::from_pem(pem).map_err(|error| {
                    DispatchError::invalid_config("email.smtp.root_certificates", error.to_string())
                })?;
                builder = builder.add_root_certificate(certificate);
            }
            Security::Starttls(builder.build_rustls().map_err(|error| {
                DispatchError::invalid_config("email.smtp.host", format!("TLS setup: {error}"))
            })?)
        }
        TlsMode::Tls => Security::Implicit(
            ImplicitTls::new(&config.host, extra_roots.as_deref()).map_err(|reason| {
                DispatchError::invalid_config("email.smtp", format!("TLS setup: {reason}"))
            })?,
        ),
    };
    let credentials = match (&config.username, &config.password) {
        (Some(username), Some(password)) => Some(Credentials::new(
            username.clone(),
            password.expose_secret().to_owned(),
        )),
        (None, None) => None,
        (Some(_), None) => {
            return Err(DispatchError::invalid_config(
                "email.smtp.password",
                "a username is set but no password",
            ));
        }
        (None, Some(_)) => {
            return Err(DispatchError::invalid_config(
                "email.smtp.username",
                "a password is set but no username",
            ));
        }
    };
    Ok(Transport::Smtp(Relay::new(RelaySettings {
        host: config.host.clone(),
        port: config.port.unwrap_or_else(|| config.tls.default_port()),
        security,
        credentials,
        hello_name: config
            .hello_name
            .clone()
            .map(ClientId::Domain)
            .unwrap_or_default(),
        timeout: Duration::from_secs(config.timeout_secs),
        pool_size: config.pool_size as usize,
    })))
}

fn parse_mailbox(field: &str, value: &str) -> Result<Mailbox, DispatchError> {
    value.parse().map_err(|error| {
        DispatchError::permanent(format!("invalid {field} mailbox {value:?}: {error}"))
    })
}

fn header(name: &str, value: &str) -> Result<HeaderValue, DispatchError> {
    let name = HeaderName::new_from_ascii(name.to_owned())
        .map_err(|_| DispatchError::permanent(format!("invalid header name {name:?}")))?;
    if value.contains(['\r', '\n']) {
        return Err(DispatchError::permanent(format!(
            "header {name} contains a line break"
        )));
    }
    Ok(HeaderValue::new(name, value.to_owned()))
}

fn is_message_id_part(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'))
        && !id.starts_with('.')
        && !id.ends_with('.')
        && !id.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_sections_deserialize_with_documented_defaults() {
        let config: EmailConfig = serde_json::from_value(serde_json::json!({
            "smtp": {
                "host": "smtp.example.com",
                "username": "clarion",
                "password": "hunter2"
            },
            "dkim": {
                "selector": "s1",
                "domain": "example.com",
                "algorithm": "ed25519",
                "private_key": "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
            }
        }))
        .unwrap();

        assert_eq!(config.outbox_dir, PathBuf::from("data/outbox"));
        let smtp = config.smtp.as_ref().unwrap();
        assert_eq!(smtp.tls, TlsMode::Starttls);
        assert_eq!(smtp.port.unwrap_or_else(|| smtp.tls.default_port()), 587);
        assert_eq!(smtp.pool_size, 10);
        assert_eq!(smtp.timeout_secs, 30);
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{config:?}").contains("nWGxne"));
        assert_eq!(config.dkim.unwrap().algorithm, DkimAlgorithm::Ed25519);
    }

    #[test]
    fn unknown_settings_are_rejected() {
        let error = serde_json::from_value::<EmailConfig>(serde_json::json!({
            "smtp": { "host": "smtp.example.com", "pool": 3 }
        }))
        .unwrap_err();
        assert!(error.to_string().contains("pool"), "{error}");
    }
}
