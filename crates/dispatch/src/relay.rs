//! The pool of SMTP connections to the relay.
//!
//! lettre speaks SMTP (greeting, EHLO, STARTTLS, AUTH, the mail transaction, dot-stuffing);
//! this module decides when connections are opened, reused and closed. lettre's own pool is
//! not used because, measured against Postfix's smtp-sink, it delivered about 200 messages/s
//! over 10 connections: it leaves Nagle's algorithm on while writing the message and its
//! final dot separately, so every message waits for the relay's delayed ACK (~40 ms); it
//! sends a NOOP before every reuse; and it opens connections beyond its size under load.
//!
//! Here sockets get `TCP_NODELAY` (for implicit TLS the handshake is done here with
//! tokio-rustls, since lettre would open that socket itself); a reused connection is trusted
//! until MAIL FROM shows it stale (nothing has been accepted at that point, so retrying on a
//! fresh connection cannot duplicate a message); a rejected transaction is reset with RSET
//! instead of closing the connection; and a semaphore caps the open connections at the pool
//! size. Where the relay offers PIPELINING (RFC 2920), MAIL FROM, RCPT TO and DATA go out in
//! one write, so a message costs two round trips instead of four.
//!
//! A timeout after the message was sent leaves unknown whether the relay accepted it; it is
//! reported as transient, so such a message may be delivered twice.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use crate::DispatchError;

/// Connections idle longer than this are closed instead of reused: relays drop idle clients
/// after a few minutes (Postfix: 300 s), and a held connection occupies one of their slots.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// How the relay is reached; built once from the configuration.
pub(crate) struct RelaySettings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) security: Security,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) hello_name: ClientId,
    pub(crate) timeout: Duration,
    pub(crate) pool_size: usize,
}

pub(crate) enum Security {
    Plain,
    Starttls(TlsParameters),
    /// TLS from the first byte. lettre would open this socket itself, without TCP_NODELAY, so
    /// the handshake is done here and lettre gets the encrypted stream.
    Implicit(ImplicitTls),
}

pub(crate) struct ImplicitTls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl ImplicitTls {
    /// Trusts the public web PKI roots plus the certificates in `extra_roots_pem`.
    pub(crate) fn new(host: &str, extra_roots_pem: Option<&[u8]>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = extra_roots_pem {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate = certificate.map_err(|error| error.to_string())?;
                roots.add(certificate).map_err(|error| error.to_string())?;
            }
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|error| error.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|error| format!("{host:?} is not a valid TLS server name: {error}"))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// A TLS stream lettre can speak SMTP over.
#[derive(Debug)]
struct TlsSocket(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for TlsSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsSocket {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// An open connection and what the relay said it supports.
struct Connection {
    smtp: AsyncSmtpConnection,
    pipelining: bool,
}

impl Connection {
    /// Says QUIT and closes. A relay that does not answer within a second is simply hung up
    /// on, so a dead relay cannot hold a pool slot.
    async fn abort(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.smtp.abort()).await;
    }
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// Where a transaction failed, which decides whether a retry on a fresh connection is safe.
enum Failure {
    /// MAIL FROM failed: nothing of this message was accepted.
    AtMail(lettre::transport::smtp::Error),
    /// RCPT TO failed: the relay refused the recipient (a bounce).
    AtRcpt(lettre::transport::smtp::Error),
    /// DATA or the message content failed.
    Later(lettre::transport::smtp::Error),
}

pub(crate) struct Relay {
    settings: RelaySettings,
    idle: Mutex<Vec<Idle>>,
    // One permit per open connection, so a burst waits for a connection instead of opening
    // more than `pool_size`.
    permits: Semaphore,
}

impl Relay {
    pub(crate) fn new(settings: RelaySettings) -> Self {
        let permits = Semaphore::new(settings.pool_size);
        Self {
            settings,
            idle: Mutex::new(Vec::new()),
            permits,
        }
    }

    pub(crate) fn address(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.port)
    }

    /// Delivers one message over a pooled connection.
    pub(crate) async fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Response, DispatchError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| DispatchError::transient("the SMTP sender is shut down"))?;
        let timeout = self.settings.timeout;

        if let Some(mut connection) = self.take_idle().await {
            match tokio::time::timeout(timeout, transact(&mut connection, envelope, message)).await
            {
                Ok(Ok(response)) => {
                    self.park(connection);
                    return Ok(response);
                }
                // A 5xx at MAIL FROM is about this message, not the connection.
                Ok(Err(Failure::AtMail(error))) if error.is_permanent() => {
                    self.recover(connection).await;
                    return Err(classify(error));
                }
                // Anything else at MAIL FROM most likely means the relay closed the idle
                // connection; nothing was accepted, so a fresh connection may try again.
                Ok(Err(Failure::AtMail(_))) => connection.abort().await,
                Ok(Err(Failure::Later(error))) => {
                    self.recover(connection).await;
                    return Err(classify(error));
                }
                Ok(Err(Failure::AtRcpt(error))) => {
                    self.recover(connection).await;
                    return Err(classify_recipient(error));
                }
                Err(_) => {
                    connection.abort().await;
                    return Err(timed_out(timeout));
                }
            }
        }

        let mut connection = match tokio::time::timeout(timeout, self.connect()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(timed_out(timeout)),
        };
        match tokio::time::timeout(timeout, transact(&mut connection, envelope, message)).await {
            Ok(Ok(response)) => {
                self.park(connection);
                Ok(response)
            }
            Ok(Err(Failure::AtMail(error) | Failure::Later(error))) => {
                self.recover(connection).await;
                Err(classify(error))
            }
            Ok(Err(Failure::AtRcpt(error))) => {
                self.recover(connection).await;
                Err(classify_recipient(error))
            }
            Err(_) => {
                connection.abort().await;
                Err(timed_out(timeout))
            }
        }
    }

    /// Closes every idle connection with QUIT and refuses further sends.
    pub(crate) async fn shutdown(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.lock_idle());
        for idle in idle {
            idle.connection.abort().await;
        }
    }

    async fn take_idle(&self) -> Option<Connection> {
        loop {
            let idle = self.lock_idle().pop()?;
            if idle.since.elapsed() < MAX_IDLE && !idle.connection.smtp.has_broken() {
                return Some(idle.connection);
            }
            idle.connection.abort().await;
        }
    }

    fn park(&self, connection: Connection) {
        self.lock_idle().push(Idle {
            connection,
            since: Instant::now(),
        });
    }

    /// After a refused transaction the connection is still good once reset.
    async fn recover(&self, mut connection: Connection) {
        if connection.smtp.has_broken() {
            connection.abort().await;
            return;
        }
        match tokio::time::timeout(self.settings.timeout, connection.smtp.command(Rset)).await {
            Ok(Ok(_)) => self.park(connection),
            Ok(Err(_)) | Err(_) => connection.abort().await,
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // The list holds no invariant a panicking holder could break; keep using it.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens and prepares a connection. Every failure here is the relay's or the
    /// configuration's (down, no STARTTLS, credentials refused), never the message's, so all
    /// are transient: messages wait for an operator instead of being dead-lettered.
    async fn connect(&self) -> Result<Connection, DispatchError> {
        let settings = &self.settings;
        let failed = |stage: &str, error: &dyn std::fmt::Display| {
            DispatchError::transient(format!(
                "SMTP relay {}: {stage} failed: {error}",
                self.address()
            ))
        };
        let socket = TcpStream::connect((settings.host.as_str(), settings.port))
            .await
            .map_err(|error| failed("connecting", &error))?;
        // lettre writes the message and its final dot separately; with Nagle's algorithm on,
        // the dot would wait for the relay's delayed ACK, ~40 ms per message.
        socket
            .set_nodelay(true)
            .map_err(|error| failed("setting TCP_NODELAY", &error))?;
        let stream: Box<dyn AsyncTokioStream> = match &settings.security {
            Security::Implicit(tls) => Box::new(TlsSocket(
                tls.connector
                    .connect(tls.server_name.clone(), socket)
                    .await
                    .map_err(|error| failed("TLS handshake", &error))?,
            )),
            Security::Plain | Security::Starttls(_) => Box::new(socket),
        };
        let mut connection =
            AsyncSmtpConnection::connect_with_transport(stream, &settings.hello_name)
                .await
                .map_err(|error| failed("greeting", &error))?;
        if let Security::Starttls(tls) = &settings.security {
            connection
                .starttls(tls.clone(), &settings.hello_name)
                .await
                .map_err(|error| failed("STARTTLS", &error))?;
        }
        if let Some(credentials) = &settings.credentials {
            let authenticated = connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await;
            if let Err(error) = authenticated {
                connection.abort().await;
                return Err(failed("authentication", &error));
            }
        }
        // lettre keeps only the EHLO keywords it uses itself; asking again costs one round
        // trip per connection and tells whether commands may be pipelined.
        let capabilities = connection
            .command(Ehlo::new(settings.hello_name.clone()))
            .await
            .map_err(|error| failed("EHLO", &error))?;
        let pipelining = capabilities
            .message()
            .any(|line| line.eq_ignore_ascii_case("PIPELINING"));
        Ok(Connection {
            smtp: connection,
            pipelining,
        })
    }
}

/// One mail transaction: MAIL FROM, RCPT TO for each recipient, DATA, the message.
async fn transact(
    connection: &mut Connection,
    envelope: &Envelope,
    message: &[u8],
) -> Result<Response, Failure> {
    let mut parameters = Vec::new();
    let non_ascii_address = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|address| !AsRef::<str>::as_ref(address).is_ascii());
    if non_ascii_address {
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(envelope.from().cloned(), parameters);
    let recipients = envelope
        .to()
        .iter()
        .map(|to| Rcpt::new(to.clone(), Vec::new()));
    let smtp = &mut connection.smtp;
    if connection.pipelining {
        let envelope_commands = Pipelined {
            mail,
            recipients: recipients.collect(),
        };
        let replies = envelope_commands.recipients.len() + 2;
        let mail_reply = smtp.command(&envelope_commands).await;
        // Every pipelined command gets its reply, failed or not; all are read before judging so
        // the connection stays in step. A read that fails without a reply means it is gone.
        let mut later = Vec::with_capacity(replies - 1);
        let mut lost = mail_reply.as_ref().is_err_and(|error| !is_reply(error));
        for _ in 1..replies {
            if lost {
                break;
            }
            let reply = smtp.read_response().await;
            lost = reply.as_ref().is_err_and(|error| !is_reply(error));
            later.push(reply);
        }
        let data_accepted = later.len() == replies - 1 && later.last().is_some_and(Result::is_ok);
        let recipients_count = replies - 2;
        let failure = match mail_reply {
            Err(error) => Some(Failure::AtMail(error)),
            Ok(_) => later.into_iter().enumerate().find_map(|(i, reply)| {
                reply.err().map(|error| {
                    if i < recipients_count {
                        Failure::AtRcpt(error)
                    } else {
                        Failure::Later(error)
                    }
                })
            }),
        };
        if let Some(failure) = failure {
            if data_accepted {
                // The relay waits for content it must not get; start afresh.
                smtp.abort().await;
            }
            return Err(failure);
        }
    } else {
        smtp.command(mail).await.map_err(Failure::AtMail)?;
        for recipient in recipients {
            smtp.command(recipient).await.map_err(Failure::AtRcpt)?;
        }
        smtp.command(Data).await.map_err(Failure::Later)?;
    }
    smtp.message(message).await.map_err(Failure::Later)
}

/// MAIL FROM, RCPT TO… and DATA written as one command group (RFC 2920).
struct Pipelined {
    mail: Mail,
    recipients: Vec<Rcpt>,
}

impl std::fmt::Display for Pipelined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Each command's own Display ends with CRLF.
        write!(f, "{}", self.mail)?;
        for recipient in &self.recipients {
            write!(f, "{recipient}")?;
        }
        write!(f, "{Data}")
    }
}

/// True when the relay answered (with a 4xx or 5xx), false when no answer came at all.
fn is_reply(error: &lettre::transport::smtp::Error) -> bool {
    error.is_transient() || error.is_permanent()
}

fn timed_out(timeout: Duration) -> DispatchError {
    DispatchError::transient(format!(
        "SMTP relay did not answer within {} s",
        timeout.as_secs_f32()
    ))
}

/// A reply to RCPT TO is about the recipient: a bounce, hard (5xx) or soft (4xx), with the
/// relay's code and text. Failures without a reply are the connection's, as in [`classify`].
fn classify_recipient(error: lettre::transport::smtp::Error) -> DispatchError {
    match error.status() {
        Some(code) => {
            let text = std::error::Error::source(&error)
                .map(ToString::to_string)
                .unwrap_or_default();
            DispatchError::bounced(u16::from(code), text)
        }
        None => classify(error),
    }
}

/// Within a mail transaction, SMTP replies carry their own class: 4xx means "try again later",
/// 5xx means "never for this message". Failures without a reply (connection lost, timeout)
/// are passing.
fn classify(error: lettre::transport::smtp::Error) -> DispatchError {
    if error.is_permanent() {
        DispatchError::permanent(format!("SMTP relay refused the message: {error}"))
    } else if error.is_transient() {
        DispatchError::transient(format!("SMTP relay deferred the message: {error}"))
    } else if error.is_timeout() {
        DispatchError::transient(format!("SMTP relay timed out: {error}"))
    } else {
        DispatchError::transient(format!("SMTP relay unreachable or failing: {error}"))
    }
}
