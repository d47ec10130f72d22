//! Event webhooks of email providers: Amazon SES (through SNS), SendGrid, Postmark and
//! Mailgun tell Clarion about bounces and complaints of the mail they relayed.
//!
//! Each request is verified the provider's way before anything is read from it (see each
//! module), then its bounce and complaint events become [`feedback::Report`]s, applied by
//! [`feedback::apply`]: contacts marked, suppressions added, `email_bounce` and
//! `email_complaint` events recorded with the provider's event id as idempotency key. A request
//! that fails verification records nothing and answers 401.
//!
//! Verified requests are queued in Redis and answered at once; a worker writes them in
//! large batches (see [`queued`]). A replayed event id or Mailgun token is refused with 409
//! when the request arrives.
//!
//! When Redis does not take a request, it is written before its answer, together with the
//! others waiting: each hands its reports (and Mailgun's signed token) to a writer task,
//! which takes every request waiting at that moment and applies them as one batch (one token
//! insert, one event batch, one suppression insert, ...), then tells each request its own
//! part. A batch that fails is applied again request by request, so a request's answer is
//! its own. On PostgreSQL several writers take turns at the queue, so that one batch's round
//! trips overlap another's; everything a batch writes is idempotent (event keys, Mailgun
//! tokens, suppressions), so two batches about the same address cannot record it twice.

pub mod mailgun;
pub mod postmark;
pub mod queued;
pub mod sendgrid;
pub mod ses;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use clarion_contacts::Ingest;
use clarion_model::{Coded, DEFAULT_WORKSPACE, EmailAddress, ErrorCode, FieldError};
use sea_orm::DbBackend;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, oneshot};
use utoipa::ToSchema;

use crate::feedback::{self, Applied, BounceSettings, FeedbackError, Report};

/// `[providers]`: which provider webhooks are accepted, with their keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderSettings {
    pub ses: ses::SesSettings,
    pub sendgrid: sendgrid::SendgridSettings,
    pub postmark: postmark::PostmarkSettings,
    pub mailgun: mailgun::MailgunSettings,
}

impl ProviderSettings {
    /// Checks the values; the error names the key.
    ///
    /// # Errors
    /// The bad key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.sendgrid.validate()?;
        self.ses.validate()?;
        Ok(())
    }
}

/// A provider whose webhooks Clarion reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Ses,
    Sendgrid,
    Postmark,
    Mailgun,
}

impl Provider {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Ses => "ses",
            Provider::Sendgrid => "sendgrid",
            Provider::Postmark => "postmark",
            Provider::Mailgun => "mailgun",
        }
    }
}

/// One webhook request as it arrived: header names in lower case, the body untouched (the
/// signatures cover its exact bytes).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What a verified request came to. Its events are either queued, to be written moments
/// later (`queued`), or, when Redis does not take them, written before the answer
/// (`recorded`, `unknown`, `marked`).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Received {
    /// Bounce and complaint events read from the request.
    pub events: u64,
    /// Other events (deliveries, opens, ...), not used.
    pub ignored: u64,
    /// Events received before (same event id), neither queued nor stored again.
    pub duplicates: u64,
    /// New events queued; each is stored, marks its contact and suppresses its address
    /// once the writer takes it (normally within a second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
    /// Events stored (one per event and contact with the address), when written at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<u64>,
    /// Events about an address no contact has, when written at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<u64>,
    /// Contacts whose email status changed, when written at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marked: Option<u64>,
    /// An SNS subscription was confirmed (SES only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub subscription_confirmed: bool,
}

impl Received {
    fn written(&mut self, applied: &Applied) {
        self.duplicates = applied.duplicates;
        self.recorded = Some(applied.recorded);
        self.unknown = Some(applied.unknown);
        self.marked = Some(applied.marked);
    }
}

/// Why a webhook request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider is not configured; its endpoint does not exist.
    #[error("the {0} webhook is not configured")]
    NotConfigured(&'static str),
    /// The signature (or credentials) did not verify; nothing was recorded. The message says
    /// which part failed, never a secret.
    #[error("{0}")]
    Unauthorized(String),
    /// The request verified but is not in the provider's format.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Everything in the request was received before (same event ids, or a signed token seen
    /// before); nothing changed.
    #[error("{field}: {message}")]
    Replayed { field: String, message: String },
    /// A certificate or confirmation URL could not be fetched (SES).
    #[error("{0}")]
    Upstream(String),
    /// Another request with the same event (or token) is being taken in, or was cut off
    /// while it was; nothing was recorded, and sending the request again is safe: it is
    /// then refused as a replay or taken.
    #[error("{field}: {message}")]
    InFlight { field: String, message: String },
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
    /// The batch this request was written in could not be stored (the database failed);
    /// sending the request again is safe.
    #[error("the events could not be stored: {message}")]
    Write { code: ErrorCode, message: String },
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
}

impl ProviderError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Coded for ProviderError {
    fn code(&self) -> ErrorCode {
        match self {
            ProviderError::NotConfigured(_) => ErrorCode::NotFound,
            ProviderError::Unauthorized(_) => ErrorCode::Unauthorized,
            ProviderError::Invalid { .. } => ErrorCode::ValidationFailed,
            ProviderError::Replayed { .. } => ErrorCode::Conflict,
            ProviderError::Upstream(_) | ProviderError::InFlight { .. } => ErrorCode::Unavailable,
            ProviderError::Feedback(error) => error.code(),
            ProviderError::Write { code, .. } => *code,
            ProviderError::Db(error) => error.code(),
        }
    }

    fn details(&self) -> Vec<FieldError> {
        match self {
            ProviderError::Invalid { field, message }
            | ProviderError::Replayed { field, message }
            | ProviderError::InFlight { field, message } => {
                vec![FieldError::field(field.clone(), message.clone())]
            }
            _ => Vec::new(),
        }
    }
}

/// The receiving side of every provider: settings, ingestion, and the SNS certificates
/// fetched so far. Share one per process.
pub struct Receiver {
    ingest: Ingest,
    bounces: BounceSettings,
    settings: ProviderSettings,
    ses: ses::Certificates,
    /// Where verified requests are queued, when there is a Redis queue.
    queue: Option<queued::ReportQueue>,
    /// The writer tasks' queue, started at the first request written before its answer.
    writer: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl Receiver {
    #[must_use]
    pub fn new(ingest: Ingest, bounces: BounceSettings, settings: ProviderSettings) -> Self {
        let ses = ses::Certificates::new(&settings.ses);
        Self {
            ingest,
            bounces,
            settings,
            ses,
            queue: None,
            writer: OnceLock::new(),
        }
    }

    /// Queues verified requests in `queue` and answers them at once; without it (or while
    /// Redis does not answer) each request is written before its answer.
    #[must_use]
    pub fn with_queue(mut self, queue: queued::ReportQueue) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The queue verified requests go to, if any.
    #[must_use]
    pub fn queue(&self) -> Option<&queued::ReportQueue> {
        self.queue.as_ref()
    }

    /// A writer of the queued requests (a worker runs it).
    #[must_use]
    pub fn report_writer(&self) -> queued::ReportWriter {
        queued::ReportWriter::new(self.ingest.clone(), self.bounces.clone())
    }

    /// Verifies one webhook request of `provider`, then applies its bounces and complaints.
    ///
    /// # Errors
    /// [`ProviderError::Unauthorized`] when it does not verify (nothing recorded);
    /// [`ProviderError::Invalid`] when it is not in the provider's format;
    /// [`ProviderError::Replayed`] when all of it was received before;
    /// [`ProviderError::NotConfigured`] for a provider without settings.
    #[tracing::instrument(skip_all, fields(provider = provider.as_str()))]
    pub async fn receive(
        &self,
        provider: Provider,
        request: &Request,
    ) -> Result<Received, ProviderError> {
        let (parsed, token) = match provider {
            Provider::Ses => {
                let settings = &self.settings.ses;
                match ses::verify_and_read(settings, &self.ses, request).await? {
                    ses::Read::Confirmed => {
                        return Ok(Received {
                            subscription_confirmed: true,
                            ..Received::default()
                        });
                    }
                    ses::Read::Events(parsed) => (parsed, None),
                }
            }
            Provider::Sendgrid => (
                sendgrid::verify_and_read(&self.settings.sendgrid, request)?,
                None,
            ),
            Provider::Postmark => (
                postmark::verify_and_read(&self.settings.postmark, request)?,
                None,
            ),
            Provider::Mailgun => {
                let verified = mailgun::verify(&self.settings.mailgun, request)?;
                (verified.events, Some(verified.token))
            }
        };
        let mut received = Received {
            events: parsed.reports.len() as u64,
            ignored: parsed.ignored,
            ..Received::default()
        };
        if parsed.reports.is_empty() && token.is_none() {
            return Ok(received);
        }
        let replayed = || ProviderError::Replayed {
            field: parsed.id_field.to_owned(),
            message: "every event of this request was received before; nothing changed".into(),
        };
        if let Some(queue) = &self.queue {
            // A Mailgun token stays claimed while its signature is fresh, and a little longer.
            let token_life =
                std::time::Duration::from_secs(self.settings.mailgun.max_age_secs + 300);
            let token_claim = token.as_deref().map(|token| (token, token_life));
            match queue.submit(provider, token_claim, &parsed.reports).await {
                Ok(queued::Submitted::Queued { queued, duplicates }) => {
                    received.queued = Some(queued);
                    received.duplicates = duplicates;
                    return Ok(received);
                }
                Ok(queued::Submitted::Replayed) => return Err(replayed()),
                Ok(queued::Submitted::TokenReplayed) => return Err(mailgun::replayed()),
                Ok(queued::Submitted::InFlight { token }) => {
                    let (field, what) = if token {
                        ("signature.token", "this token")
                    } else {
                        (parsed.id_field, "one of these events")
                    };
                    return Err(ProviderError::InFlight {
                        field: field.to_owned(),
                        message: format!(
                            "another request with {what} is being taken in; nothing was recorded, send this one again in a minute"
                        ),
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "Redis did not take a provider request; writing it now");
                }
            }
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            token,
            reports: parsed.reports,
            reply,
        };
        self.writer()
            .send(job)
            .map_err(|_| ProviderError::Upstream("the bounce writer has stopped".into()))?;
        let applied = answer
            .await
            .map_err(|_| ProviderError::Upstream("the bounce writer has stopped".into()))??;
        if applied.recorded == 0 && applied.duplicates > 0 && applied.unknown == 0 {
            return Err(replayed());
        }
        received.written(&applied);
        Ok(received)
    }

    /// The writer tasks' queue; the first call starts the tasks on the current runtime.
    fn writer(&self) -> &mpsc::UnboundedSender<Job> {
        self.writer.get_or_init(|| {
            let (sender, jobs) = mpsc::unbounded_channel();
            let jobs = Arc::new(Mutex::new(jobs));
            for _ in 0..writers(self.ingest.db().get_database_backend()) {
                tokio::spawn(write(
                    self.ingest.clone(),
                    self.bounces.clone(),
                    Arc::clone(&jobs),
                ));
            }
            sender
        })
    }
}

/// Writer tasks per process. SQLite has one writer at a time anyway; PostgreSQL overlaps the
/// round trips of several batches (measured with `clarion bench bounces`).
fn writers(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Postgres => 4,
        _ => 1,
    }
}

/// One verified request waiting to be written.
struct Job {
    /// Mailgun's signed token, to claim.
    token: Option<String>,
    reports: Vec<Report>,
    reply: oneshot::Sender<Result<Applied, ProviderError>>,
}

/// Reports written in one batch at most; a larger request is written alone.
const BATCH_REPORTS: usize = 2_000;

/// A writer task: every request waiting when it is free is written in one batch. It ends
/// when the [`Receiver`] is dropped.
async fn write(
    ingest: Ingest,
    bounces: BounceSettings,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
) {
    loop {
        // The queue is held only while the batch is taken, not while it is written.
        let batch = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut reports = first.reports.len();
            let mut batch = vec![first];
            while reports < BATCH_REPORTS {
                let Ok(job) = jobs.try_recv() else { break };
                reports += job.reports.len();
                batch.push(job);
            }
            batch
        };
        write_batch(&ingest, &bounces, batch).await;
    }
}

/// Claims the batch's tokens (a request with a token seen before is a replay), then applies
/// the reports of the rest together.
async fn write_batch(ingest: &Ingest, bounces: &BounceSettings, batch: Vec<Job>) {
    let tokens: Vec<&str> = batch
        .iter()
        .filter_map(|job| job.token.as_deref())
        .collect();
    let claimed = if tokens.is_empty() {
        Ok(HashSet::new())
    } else {
        mailgun::claim_tokens(ingest.db(), &tokens).await
    };
    let mut fresh = match claimed {
        Ok(fresh) => fresh,
        Err(error) => {
            let (code, message) = (error.code(), error.to_string());
            for job in batch {
                let _ = job.reply.send(Err(ProviderError::Write {
                    code,
                    message: message.clone(),
                }));
            }
            return;
        }
    };
    let mut accepted = Vec::with_capacity(batch.len());
    for job in batch {
        match &job.token {
            // Taken out once: the same token twice in a batch is a replay the second time.
            Some(token) if !fresh.remove(token) => {
                let _ = job.reply.send(Err(mailgun::replayed()));
            }
            _ => accepted.push(job),
        }
    }
    if accepted.len() < 2 {
        for job in accepted {
            let applied = feedback::apply(ingest, bounces, DEFAULT_WORKSPACE, &job.reports).await;
            let _ = job.reply.send(applied.map_err(ProviderError::from));
        }
        return;
    }
    let reports: Vec<Report> = accepted
        .iter()
        .flat_map(|job| job.reports.iter().cloned())
        .collect();
    match feedback::apply_each(ingest, bounces, DEFAULT_WORKSPACE, &reports).await {
        Ok(each) => {
            let mut each = each.into_iter();
            for job in accepted {
                let mut applied = Applied::default();
                for one in each.by_ref().take(job.reports.len()) {
                    applied.add(&one);
                }
                let _ = job.reply.send(Ok(applied));
            }
        }
        // A report that cannot become an event fails before anything is stored: each request
        // is applied alone, so only the one that carries it is refused.
        Err(FeedbackError::Model(_)) => {
            for job in accepted {
                let applied =
                    feedback::apply(ingest, bounces, DEFAULT_WORKSPACE, &job.reports).await;
                let _ = job.reply.send(applied.map_err(ProviderError::from));
            }
        }
        Err(error) => {
            let (code, message) = (error.code(), error.to_string());
            for job in accepted {
                let _ = job.reply.send(Err(ProviderError::Write {
                    code,
                    message: message.clone(),
                }));
            }
        }
    }
}

/// The bounces and complaints of one request.
#[derive(Debug, Default)]
pub struct Parsed {
    pub reports: Vec<Report>,
    pub ignored: u64,
    /// The field that holds the provider's event id, for a replay's message.
    pub id_field: &'static str,
}

/// Reads a provider's address field; a value that is not an address is the provider's
/// format error, naming the field.
fn address(field: &str, value: &str) -> Result<EmailAddress, ProviderError> {
    EmailAddress::parse(value).map_err(|e| ProviderError::invalid(field, e.to_string()))
}

/// The delivery a provider's copy of the original `Message-ID` names: Clarion sends each
/// message as `<DELIVERY_ID@from-domain>`. Only a candidate: [`feedback::apply`] keeps it
/// when that delivery went to the reported address's contact.
fn delivery_of(message_id: Option<&str>) -> Option<i64> {
    let id = message_id?
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let (local, _) = id.split_once('@')?;
    local.parse::<i64>().ok().filter(|id| *id > 0)
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The SMTP code at the start of a provider's diagnostic text (`smtp; 550 5.1.1 ...`).
fn smtp_code(text: &str) -> Option<u16> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|part| part.len() == 3)
        .and_then(|part| part.parse::<u16>().ok())
        .filter(|code| (200..600).contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_codes_are_found_in_diagnostic_texts() {
        assert_eq!(smtp_code("smtp; 550 5.1.1 user unknown"), Some(550));
        assert_eq!(smtp_code("452 4.2.2 mailbox full"), Some(452));
        assert_eq!(smtp_code("5.1.1 no code"), None);
        assert_eq!(delivery_of(Some("<1234@shop.example>")), Some(1234));
        assert_eq!(delivery_of(Some(" 77@shop.example")), Some(77));
        assert_eq!(delivery_of(Some("<20261203.1@shop.example>")), None);
        assert_eq!(delivery_of(Some("<-5@shop.example>")), None);
        assert_eq!(delivery_of(None), None);
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
