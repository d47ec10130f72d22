//! Bounces and complaints: what the SMTP relay answers at send time and what email providers
//! report afterwards (see [`crate::providers`]), applied in one place.
//!
//! A hard bounce or a complaint marks the contact's email `bounced` or `complained` at once and
//! puts the address on the suppression list; soft bounces are counted, and a contact with
//! `bounces.soft_limit` soft-bounced messages within `bounces.soft_window_days` becomes
//! `bounced` too. Each report is recorded through ingestion as an `email_bounce` (with `type`
//! hard or soft, the SMTP `code` and `text`) or `email_complaint` event, so segments and KPIs
//! can use them; the report's own id is the event's idempotency key, so a report sent twice is
//! stored once and changes nothing the second time.
//!
//! Everything is batched: a batch of reports costs a handful of statements whatever its size.

use std::collections::{HashMap, HashSet};

use clarion_contacts::{ContactsError, Ingest, events::IngestOptions};
use clarion_model::{
    Channel, ContactId, EmailAddress, EventInput, EventKind, ExternalId, IdempotencyKey,
    ModelError, SubscriptionStatus, Timestamp, WorkspaceId,
};
use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Expr, ExprTrait, Func, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use utoipa::ToSchema;

use crate::suppression::{self, Address, NewEntry, Source};

/// `[bounces]`: when soft bounces make an address `bounced`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BounceSettings {
    /// Soft-bounced messages (SMTP 4xx for the recipient, or a provider's soft bounce) after
    /// which a contact's email becomes `bounced`; 0 never. A message deferred several times
    /// counts once.
    pub soft_limit: u32,
    /// ... within this many days.
    pub soft_window_days: u32,
}

impl Default for BounceSettings {
    fn default() -> Self {
        Self {
            soft_limit: 3,
            soft_window_days: 7,
        }
    }
}

impl BounceSettings {
    /// Checks the values; the error names the key.
    ///
    /// # Errors
    /// The bad key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.soft_limit > 0 && self.soft_window_days == 0 {
            return Err((
                "bounces.soft_window_days",
                "must be at least 1 when bounces.soft_limit is set".into(),
            ));
        }
        if self.soft_window_days > 3650 {
            return Err(("bounces.soft_window_days", "must be at most 3650".into()));
        }
        Ok(())
    }
}

/// What a report says about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The address does not take mail.
    HardBounce,
    /// Mail was refused for now (mailbox full, greylisting).
    SoftBounce,
    /// The recipient marked a message as spam.
    Complaint,
}

/// Whom a report is about.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// A contact Clarion sent to (the SMTP answer to one of its deliveries).
    Contact {
        contact: ContactId,
        external_id: ExternalId,
        email: EmailAddress,
    },
    /// An address a provider reports; every contact with it is concerned.
    Address(EmailAddress),
}

/// One bounce or complaint.
#[derive(Debug, Clone)]
pub struct Report {
    pub recipient: Recipient,
    pub kind: Kind,
    /// The SMTP reply code when there is one.
    pub code: Option<u16>,
    /// The relay's or provider's text.
    pub text: String,
    /// Where it was learnt: `smtp`, `ses`, `sendgrid`, `postmark`, `mailgun`.
    pub source: &'static str,
    /// The report's own id (the provider's event id; the delivery and attempt for SMTP),
    /// the idempotency key of its event.
    pub id: String,
    /// The delivery it is about, when known; soft bounces of one delivery count once. For a
    /// provider's report ([`Recipient::Address`]) a candidate read from the original
    /// Message-ID, kept only when that delivery went to the contact with the address.
    pub delivery: Option<i64>,
    pub campaign: Option<i64>,
    /// When it happened; now when not said.
    pub occurred_at: Option<Timestamp>,
}

/// What applying a batch of reports did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Applied {
    /// Events stored (one per report and contact).
    pub recorded: u64,
    /// Reports seen before (same id), not stored again.
    pub duplicates: u64,
    /// Reports about an address no contact has; nothing to record.
    pub unknown: u64,
    /// Contacts whose email status changed to `bounced` or `complained`.
    pub marked: u64,
}

/// Why reports could not be applied; never the reporter's fault.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error(transparent)]
    Store(#[from] ContactsError),
    #[error("database error")]
    Db(#[from] DbErr),
    #[error("invalid value: {0}")]
    Model(#[from] ModelError),
}

impl clarion_model::Coded for FeedbackError {
    fn code(&self) -> clarion_model::ErrorCode {
        match self {
            FeedbackError::Store(error) => error.code(),
            FeedbackError::Db(error) => error.code(),
            FeedbackError::Model(_) => clarion_model::ErrorCode::Internal,
        }
    }
}

/// One report for one contact, ready to store.
struct Resolved<'a> {
    /// The report's place in the batch.
    index: usize,
    report: &'a Report,
    contact: ContactId,
    /// The delivery and campaign it is about, when known.
    delivery: Option<i64>,
    campaign: Option<i64>,
    external_id: ExternalId,
    email: String,
}

/// Applies a batch of reports of `workspace`: records their events, marks contacts and adds
/// suppressions.
///
/// # Errors
/// Database failures; what was stored before stays (a retried batch changes nothing twice).
pub async fn apply(
    ingest: &Ingest,
    settings: &BounceSettings,
    workspace: WorkspaceId,
    reports: &[Report],
) -> Result<Applied, FeedbackError> {
    let mut total = Applied::default();
    for one in apply_each(ingest, settings, workspace, reports).await? {
        total.add(&one);
    }
    Ok(total)
}

impl Applied {
    /// Adds another count to this one.
    pub fn add(&mut self, other: &Applied) {
        self.recorded += other.recorded;
        self.duplicates += other.duplicates;
        self.unknown += other.unknown;
        self.marked += other.marked;
    }
}

/// [`apply`], answering what became of each report (in the order of `reports`), so that
/// reports of several requests can be applied together and each request told its own part.
///
/// # Errors
/// Database failures; what was stored before stays (a retried batch changes nothing twice).
pub async fn apply_each(
    ingest: &Ingest,
    settings: &BounceSettings,
    workspace: WorkspaceId,
    reports: &[Report],
) -> Result<Vec<Applied>, FeedbackError> {
    let mut applied = vec![Applied::default(); reports.len()];
    let resolved = resolve(ingest.db(), workspace, reports, &mut applied).await?;
    if resolved.is_empty() {
        return Ok(applied);
    }

    let mut events = Vec::with_capacity(resolved.len());
    for (index, item) in resolved.iter().enumerate() {
        events.push((index, event(item)?));
    }
    let options = IngestOptions {
        create_unknown_contacts: false,
        max_future_millis: 60_000,
        atomic: false,
    };
    let stored = ingest.events(workspace, events, options).await?;
    let duplicate: HashSet<usize> = stored.duplicates.iter().map(|d| d.index).collect();
    let refused: HashSet<usize> = stored.errors.iter().map(|e| e.index).collect();
    let mut fresh: Vec<&Resolved<'_>> = Vec::with_capacity(resolved.len());
    for (i, item) in resolved.iter().enumerate() {
        if duplicate.contains(&i) {
            applied[item.index].duplicates += 1;
        } else if !refused.contains(&i) {
            applied[item.index].recorded += 1;
            fresh.push(item);
        }
    }
    if fresh.is_empty() {
        return Ok(applied);
    }

    record_bounces(ingest.db(), workspace, &fresh).await?;
    let mut bounced: Vec<&Resolved<'_>> = fresh
        .iter()
        .copied()
        .filter(|item| item.report.kind == Kind::HardBounce)
        .collect();
    let soft: Vec<ContactId> = fresh
        .iter()
        .filter(|item| item.report.kind == Kind::SoftBounce)
        .map(|item| item.contact)
        .collect();
    let over = over_soft_limit(ingest.db(), settings, workspace, &soft).await?;
    let mut soft_over: Vec<&Resolved<'_>> = Vec::new();
    for item in &fresh {
        if item.report.kind == Kind::SoftBounce && over.contains(&item.contact) {
            soft_over.push(item);
        }
    }
    let complained: Vec<&Resolved<'_>> = fresh
        .iter()
        .copied()
        .filter(|item| item.report.kind == Kind::Complaint)
        .collect();

    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for (items, source) in [
        (&complained, Source::Complaint),
        (&bounced, Source::HardBounce),
        (&soft_over, Source::SoftBounces),
    ] {
        for item in items.iter() {
            if seen.insert(item.email.clone())
                && let Ok(address) = Address::parse(Channel::Email, &item.email)
            {
                entries.push(NewEntry {
                    address,
                    reason: describe(item.report),
                    source,
                });
            }
        }
    }
    // A deadlock between concurrent reports of the same addresses is retried, like
    // ingestion retries its own.
    let mut attempt = 0;
    loop {
        match suppression::add(ingest.db(), workspace, &entries).await {
            Err(error) if attempt < 3 && clarion_contacts::is_retryable(&error) => attempt += 1,
            done => {
                done?;
                break;
            }
        }
    }

    bounced.append(&mut soft_over);
    for (items, status) in [
        (&complained, SubscriptionStatus::Complained),
        (&bounced, SubscriptionStatus::Bounced),
    ] {
        let contacts: Vec<ContactId> = items.iter().map(|item| item.contact).collect();
        let mut attempt = 0;
        let changed = loop {
            match ingest.mark_email(workspace, &contacts, status).await {
                Err(ContactsError::Db(ref error))
                    if attempt < 3 && clarion_contacts::is_retryable(error) =>
                {
                    attempt += 1;
                }
                done => break done?,
            }
        };
        // A change is the doing of the first report about that contact.
        for contact in changed {
            if let Some(item) = items.iter().find(|item| item.contact == contact) {
                applied[item.index].marked += 1;
            }
        }
    }
    Ok(applied)
}

/// The contacts each report is about; reports about addresses no contact has are counted
/// as unknown.
async fn resolve<'a>(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    reports: &'a [Report],
    applied: &mut [Applied],
) -> Result<Vec<Resolved<'a>>, FeedbackError> {
    let addresses: Vec<&str> = reports
        .iter()
        .filter_map(|report| match &report.recipient {
            Recipient::Address(email) => Some(email.as_str()),
            Recipient::Contact { .. } => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut by_email: HashMap<String, Vec<(ContactId, ExternalId)>> = HashMap::new();
    for (id, external_id, email) in
        clarion_contacts::contacts::by_emails(db, workspace, &addresses).await?
    {
        by_email.entry(email).or_default().push((id, external_id));
    }
    let named: Vec<i64> = reports
        .iter()
        .filter(|report| matches!(report.recipient, Recipient::Address(_)))
        .filter_map(|report| report.delivery)
        .collect();
    let deliveries = deliveries_of(db, workspace, &named).await?;
    let mut resolved = Vec::with_capacity(reports.len());
    for (index, report) in reports.iter().enumerate() {
        match &report.recipient {
            Recipient::Contact {
                contact,
                external_id,
                email,
            } => resolved.push(Resolved {
                index,
                report,
                contact: *contact,
                delivery: report.delivery,
                campaign: report.campaign,
                external_id: external_id.clone(),
                email: email.as_str().to_owned(),
            }),
            Recipient::Address(email) => match by_email.get(email.as_str()) {
                Some(contacts) => {
                    for (contact, external_id) in contacts {
                        // The delivery the provider names, if it went to this contact.
                        let sent = report
                            .delivery
                            .and_then(|id| deliveries.get(&id))
                            .filter(|(to, _)| to == contact);
                        resolved.push(Resolved {
                            index,
                            report,
                            contact: *contact,
                            delivery: sent.and(report.delivery),
                            campaign: sent.map(|(_, campaign)| *campaign),
                            external_id: external_id.clone(),
                            email: email.as_str().to_owned(),
                        });
                    }
                }
                None => applied[index].unknown += 1,
            },
        }
    }
    Ok(resolved)
}

/// The contact and campaign of each of `ids` that is a delivery of `workspace`.
async fn deliveries_of(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    ids: &[i64],
) -> Result<HashMap<i64, (ContactId, i64)>, DbErr> {
    let mut found = HashMap::new();
    let unique: HashSet<i64> = ids.iter().copied().collect();
    let unique: Vec<i64> = unique.into_iter().collect();
    for chunk in unique.chunks(5_000) {
        let select = Query::select()
            .columns(["id", "contact_id", "campaign_id"])
            .from("deliveries")
            .and_where(Expr::col("workspace_id").eq(workspace.0))
            .and_where(Expr::col("id").is_in(chunk.iter().copied()))
            .to_owned();
        for row in db.query_all(&select).await? {
            found.insert(
                row.try_get::<i64>("", "id")?,
                (
                    ContactId(row.try_get("", "contact_id")?),
                    row.try_get::<i64>("", "campaign_id")?,
                ),
            );
        }
    }
    Ok(found)
}

/// The event of one report for one contact.
fn event(item: &Resolved<'_>) -> Result<EventInput, ModelError> {
    let report = item.report;
    let mut properties = Map::new();
    let kind = match report.kind {
        Kind::HardBounce => {
            properties.insert("type".into(), json!("hard"));
            "email_bounce"
        }
        Kind::SoftBounce => {
            properties.insert("type".into(), json!("soft"));
            "email_bounce"
        }
        Kind::Complaint => "email_complaint",
    };
    if let Some(code) = report.code {
        properties.insert("code".into(), json!(code));
    }
    properties.insert("text".into(), json!(truncate(&report.text, 1000)));
    properties.insert("source".into(), json!(report.source));
    properties.insert("email".into(), json!(item.email));
    if let Some(delivery) = item.delivery {
        properties.insert("delivery_id".into(), json!(delivery));
    }
    if let Some(campaign) = item.campaign {
        properties.insert("campaign_id".into(), json!(campaign));
    }
    // One key per report and contact: an address several contacts share gives each its event.
    let key = format!("{}:{}:{}", report.source, report.id, item.contact.0);
    let key = if key.chars().count() > 255 {
        format!(
            "{}:{}:{}",
            report.source,
            hex_digest(&report.id),
            item.contact.0
        )
    } else {
        key
    };
    Ok(EventInput {
        external_id: item.external_id.clone(),
        kind: EventKind::parse(kind)?,
        occurred_at: report.occurred_at,
        amount: None,
        currency: None,
        properties,
        idempotency_key: Some(IdempotencyKey::parse(key)?),
    })
}

/// The bounce log, which soft-bounce counting reads.
async fn record_bounces(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    items: &[&Resolved<'_>],
) -> Result<(), DbErr> {
    let now = Timestamp::now().millis();
    let bounces: Vec<&&Resolved<'_>> = items
        .iter()
        .filter(|item| item.report.kind != Kind::Complaint)
        .collect();
    for chunk in bounces.chunks(2_000) {
        let mut insert = Query::insert();
        insert.into_table("bounces").columns([
            "workspace_id",
            "contact_id",
            "delivery_id",
            "kind",
            "code",
            "text",
            "source",
            "occurred_at",
        ]);
        for item in chunk {
            let report = item.report;
            insert.values_panic([
                workspace.0.into(),
                item.contact.0.into(),
                item.delivery.into(),
                match report.kind {
                    Kind::HardBounce => "hard",
                    _ => "soft",
                }
                .into(),
                report.code.map(i32::from).into(),
                truncate(&report.text, 1000).into(),
                report.source.into(),
                report.occurred_at.map_or(now, Timestamp::millis).into(),
            ]);
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Of `contacts`, those with `soft_limit` or more soft-bounced messages within the window.
async fn over_soft_limit(
    db: &impl ConnectionTrait,
    settings: &BounceSettings,
    workspace: WorkspaceId,
    contacts: &[ContactId],
) -> Result<HashSet<ContactId>, DbErr> {
    let mut over = HashSet::new();
    if settings.soft_limit == 0 || contacts.is_empty() {
        return Ok(over);
    }
    let since = Timestamp::now().millis() - i64::from(settings.soft_window_days) * 86_400_000;
    let unique: HashSet<i64> = contacts.iter().map(|c| c.0).collect();
    // A message deferred several times is one soft bounce: count deliveries, and reports
    // without a delivery (a provider's) one by one.
    let select = Query::select()
        .column("contact_id")
        .expr_as(
            Func::count_distinct(Func::coalesce([
                Expr::col("delivery_id"),
                Expr::col("id").mul(-1),
            ])),
            "messages",
        )
        .from("bounces")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("contact_id").is_in(unique))
        .and_where(Expr::col("kind").eq("soft"))
        .and_where(Expr::col("occurred_at").gte(since))
        .group_by_col("contact_id")
        .to_owned();
    for row in db.query_all(&select).await? {
        let messages: i64 = row.try_get("", "messages")?;
        if messages >= i64::from(settings.soft_limit) {
            over.insert(ContactId(row.try_get("", "contact_id")?));
        }
    }
    Ok(over)
}

/// The reason a suppression keeps: the kind, code and text.
fn describe(report: &Report) -> String {
    let kind = match report.kind {
        Kind::HardBounce => "hard bounce",
        Kind::SoftBounce => "soft bounces",
        Kind::Complaint => "complaint",
    };
    let text = truncate(&report.text, 400);
    match report.code {
        Some(code) => format!("{kind} ({}): {code} {text}", report.source),
        None if text.is_empty() => format!("{kind} ({})", report.source),
        None => format!("{kind} ({}): {text}", report.source),
    }
}

fn hex_digest(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soft_limit_needs_a_window() {
        assert!(BounceSettings::default().validate().is_ok());
        let settings = BounceSettings {
            soft_limit: 3,
            soft_window_days: 0,
        };
        assert_eq!(
            settings.validate().map_err(|(key, _)| key),
            Err("bounces.soft_window_days")
        );
    }
}
