//! The suppression list: per workspace and channel, the addresses (email) and contacts
//! (webhook, by external id) that never receive anything, whatever their contact's
//! subscription says. Each entry keeps why (`reason`) and where it came from (`source`):
//! added by hand, imported, or added by Clarion after a hard bounce, too many soft bounces or
//! a complaint.
//!
//! Launch writes the deliveries of a suppressed recipient as `suppressed` with the entry's
//! source as the reason ([`Source::delivery_reason`]); the delivery worker looks again just
//! before sending, so an entry added after launch still stops the message.

use std::collections::HashMap;
use std::fmt::Write as _;

use clarion_model::{
    Channel, ContactId, EmailAddress, ExternalId, FieldError, Timestamp, WorkspaceId,
};
use sea_orm::{
    ConnectionTrait, DbErr, Statement,
    sea_query::{Expr, ExprTrait, OnConflict, Order, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a suppression came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Added through the API by a user.
    Manual,
    /// Read from an imported CSV file.
    Import,
    /// The address bounced permanently (an SMTP 5xx, or a provider's hard bounce).
    HardBounce,
    /// The address bounced softly too often within the window (`[bounces]`).
    SoftBounces,
    /// The recipient marked a message as spam.
    Complaint,
    /// The recipient unsubscribed (an import from another system, say).
    Unsubscribe,
}

impl Source {
    pub const ALL: [Source; 6] = [
        Source::Manual,
        Source::Import,
        Source::HardBounce,
        Source::SoftBounces,
        Source::Complaint,
        Source::Unsubscribe,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Manual => "manual",
            Source::Import => "import",
            Source::HardBounce => "hard_bounce",
            Source::SoftBounces => "soft_bounces",
            Source::Complaint => "complaint",
            Source::Unsubscribe => "unsubscribe",
        }
    }

    #[must_use]
    pub fn parse(value: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// The reason a delivery row of a suppressed recipient keeps.
    #[must_use]
    pub fn delivery_reason(self) -> &'static str {
        match self {
            Source::Manual => "on the suppression list (manual)",
            Source::Import => "on the suppression list (import)",
            Source::HardBounce => "on the suppression list (hard bounce)",
            Source::SoftBounces => "on the suppression list (soft bounces)",
            Source::Complaint => "on the suppression list (complaint)",
            Source::Unsubscribe => "on the suppression list (unsubscribe)",
        }
    }
}

/// An address on the list, parsed for its channel: an email address (domain lower-case, as
/// contacts store it) or a contact's external id (webhook).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub channel: Channel,
    value: String,
}

impl Address {
    /// Reads `value` as an address of `channel`.
    ///
    /// # Errors
    /// Why it is not one, for the `address` field.
    pub fn parse(channel: Channel, value: &str) -> Result<Address, String> {
        let value = match channel {
            Channel::Email => EmailAddress::parse(value)
                .map_err(|e| e.to_string())?
                .as_str()
                .to_owned(),
            Channel::Webhook => ExternalId::parse(value)
                .map_err(|e| e.to_string())?
                .as_str()
                .to_owned(),
        };
        Ok(Address { channel, value })
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// An entry to add.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub address: Address,
    pub reason: String,
    pub source: Source,
}

/// An entry of the list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Entry {
    pub id: i64,
    #[schema(value_type = String, example = "email")]
    pub channel: String,
    /// The email address, or the contact's external id on the webhook channel.
    pub address: String,
    pub reason: String,
    pub source: Source,
    /// When it was added, in milliseconds since the epoch.
    pub created_at: i64,
}

/// The longest reason kept.
pub const MAX_REASON: usize = 500;

/// Checks a reason: at most [`MAX_REASON`] characters.
///
/// # Errors
/// Why not, for the `reason` field.
pub fn check_reason(reason: &str) -> Result<(), String> {
    if reason.chars().count() > MAX_REASON {
        return Err(format!("must be at most {MAX_REASON} characters"));
    }
    Ok(())
}

/// Adds entries; an address already on the list keeps its first entry. Returns how many
/// were new.
///
/// # Errors
/// Database failures.
pub async fn add(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    entries: &[NewEntry],
) -> Result<u64, DbErr> {
    let now = Timestamp::now().millis();
    let mut added = 0;
    // 6 values a row; well under SQLite's 32,766 bind parameters per statement.
    for chunk in entries.chunks(2_000) {
        let mut insert = Query::insert();
        insert
            .into_table("suppressions")
            .columns([
                "workspace_id",
                "channel",
                "address",
                "reason",
                "source",
                "created_at",
            ])
            .on_conflict(
                OnConflict::columns(["workspace_id", "channel", "address"])
                    .do_nothing()
                    .to_owned(),
            );
        for entry in chunk {
            insert.values_panic([
                workspace.0.into(),
                entry.address.channel.as_str().into(),
                entry.address.as_str().into(),
                truncate(&entry.reason, MAX_REASON).into(),
                entry.source.as_str().into(),
                now.into(),
            ]);
        }
        added += db.execute(&insert).await?.rows_affected();
    }
    Ok(added)
}

/// The entry of one address, if it is on the list.
///
/// # Errors
/// Database failures.
pub async fn get(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    address: &Address,
) -> Result<Option<Entry>, DbErr> {
    let select = select(workspace)
        .and_where(Expr::col("channel").eq(address.channel.as_str()))
        .and_where(Expr::col("address").eq(address.as_str()))
        .to_owned();
    db.query_one(&select)
        .await?
        .map(|row| entry(&row))
        .transpose()
}

/// Removes an address from the list; returns whether it was there.
///
/// # Errors
/// Database failures.
pub async fn remove(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    address: &Address,
) -> Result<bool, DbErr> {
    let delete = Query::delete()
        .from_table("suppressions")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("channel").eq(address.channel.as_str()))
        .and_where(Expr::col("address").eq(address.as_str()))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected() > 0)
}

/// Up to `limit` entries after id `after`, oldest first, of one channel or all.
///
/// # Errors
/// Database failures.
pub async fn list(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    channel: Option<Channel>,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<Entry>, DbErr> {
    let mut select = select(workspace);
    if let Some(channel) = channel {
        select.and_where(Expr::col("channel").eq(channel.as_str()));
    }
    if let Some(after) = after {
        select.and_where(Expr::col("id").gt(after));
    }
    select.order_by("id", Order::Asc).limit(limit);
    db.query_all(&select).await?.iter().map(entry).collect()
}

fn select(workspace: WorkspaceId) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .columns(["id", "channel", "address", "reason", "source", "created_at"])
        .from("suppressions")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned()
}

fn entry(row: &sea_orm::QueryResult) -> Result<Entry, DbErr> {
    let source: String = row.try_get("", "source")?;
    Ok(Entry {
        id: row.try_get("", "id")?,
        channel: row.try_get("", "channel")?,
        address: row.try_get("", "address")?,
        reason: row.try_get("", "reason")?,
        source: Source::parse(&source)
            .ok_or_else(|| DbErr::Custom(format!("suppression source {source:?}")))?,
        created_at: row.try_get("", "created_at")?,
    })
}

/// Whether the workspace has any entry on `channel`; a launch skips the per-page lookups
/// when it has none.
///
/// # Errors
/// Database failures.
pub async fn any(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    channel: Channel,
) -> Result<bool, DbErr> {
    let select = Query::select()
        .column("id")
        .from("suppressions")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("channel").eq(channel.as_str()))
        .limit(1)
        .to_owned();
    Ok(db.query_one(&select).await?.is_some())
}

/// Which of `contacts` are suppressed on `channel`, and by what: their address (email) or
/// external id (webhook) is on the list. One query, answered by the contacts' primary key
/// and the list's unique index.
///
/// # Errors
/// Database failures.
pub async fn of_contacts(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    channel: Channel,
    contacts: &[ContactId],
) -> Result<HashMap<ContactId, Source>, DbErr> {
    let mut found = HashMap::new();
    if contacts.is_empty() {
        return Ok(found);
    }
    let column = match channel {
        Channel::Email => "email",
        Channel::Webhook => "external_id",
    };
    // Contact ids are integers and the channel one of Clarion's constants, so they are
    // written inline: a page of a launch holds thousands.
    for chunk in contacts.chunks(10_000) {
        let mut ids = String::with_capacity(chunk.len() * 8);
        for (i, id) in chunk.iter().enumerate() {
            if i > 0 {
                ids.push(',');
            }
            let _ = write!(ids, "{}", id.0);
        }
        let sql = format!(
            "SELECT c.id AS contact_id, s.source AS source FROM contacts c \
             JOIN suppressions s ON s.workspace_id = c.workspace_id AND s.channel = '{}' \
             AND s.address = c.{column} \
             WHERE c.workspace_id = {} AND c.id IN ({ids})",
            channel.as_str(),
            workspace.0,
        );
        let backend = db.get_database_backend();
        for row in db
            .query_all_raw(Statement::from_string(backend, sql))
            .await?
        {
            let source: String = row.try_get("", "source")?;
            if let Some(source) = Source::parse(&source) {
                found.insert(ContactId(row.try_get("", "contact_id")?), source);
            }
        }
    }
    Ok(found)
}

/// One line of an imported file that could not be read.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LineError {
    /// The line in the file, 1 for the header.
    pub line: u64,
    /// The column at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportReport {
    /// Rows read (the header not counted).
    pub rows: u64,
    /// Addresses added to the list.
    pub added: u64,
    /// Addresses already on the list (or twice in the file), left as they were.
    pub existing: u64,
    /// Rows refused; each is in `errors`.
    pub rejected: u64,
    pub errors: Vec<LineError>,
}

/// Why an import file was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file has no `address` (or `email`) column, or its header does not read.
    #[error("{0}")]
    Header(String),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl clarion_model::Coded for ImportError {
    fn code(&self) -> clarion_model::ErrorCode {
        match self {
            ImportError::Header(_) => clarion_model::ErrorCode::ValidationFailed,
            ImportError::Db(db) => db.code(),
        }
    }

    fn details(&self) -> Vec<FieldError> {
        match self {
            ImportError::Header(message) => vec![FieldError::field("header", message.clone())],
            ImportError::Db(_) => Vec::new(),
        }
    }
}

/// Imports a CSV file: a header with `address` (or `email`) and optionally `channel` (email
/// or webhook; `channel` when the column is missing or empty), `reason` and `source`. Bad rows
/// are reported with their line and skipped; the good ones are added.
///
/// # Errors
/// [`ImportError::Header`] when the file cannot be read as such a CSV at all; nothing is
/// added then.
pub async fn import(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    channel: Channel,
    csv_bytes: &[u8],
) -> Result<ImportReport, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv_bytes);
    let headers = reader
        .headers()
        .map_err(|e| ImportError::Header(format!("the header does not read as CSV: {e}")))?
        .clone();
    let position = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let Some(address_at) = position(&["address", "email"]) else {
        return Err(ImportError::Header(
            "the file needs an `address` (or `email`) column in its first line".into(),
        ));
    };
    let (channel_at, reason_at, source_at) = (
        position(&["channel"]),
        position(&["reason"]),
        position(&["source"]),
    );
    let mut report = ImportReport {
        rows: 0,
        added: 0,
        existing: 0,
        rejected: 0,
        errors: Vec::new(),
    };
    let mut entries = Vec::new();
    let refuse = |report: &mut ImportReport, line: u64, field: Option<&str>, message: String| {
        report.rejected += 1;
        report.errors.push(LineError {
            line,
            field: field.map(str::to_owned),
            message,
        });
    };
    for (index, record) in reader.records().enumerate() {
        let line = index as u64 + 2;
        report.rows += 1;
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                refuse(
                    &mut report,
                    line,
                    None,
                    format!("does not read as CSV: {error}"),
                );
                continue;
            }
        };
        let cell = |at: Option<usize>| at.and_then(|at| record.get(at)).unwrap_or_default();
        let row_channel = match cell(channel_at) {
            "" => channel,
            text => match Channel::parse(text) {
                Some(channel) => channel,
                None => {
                    refuse(
                        &mut report,
                        line,
                        Some("channel"),
                        format!("{text:?} is not a channel: use email or webhook"),
                    );
                    continue;
                }
            },
        };
        let address = match Address::parse(row_channel, cell(Some(address_at))) {
            Ok(address) => address,
            Err(message) => {
                refuse(&mut report, line, Some("address"), message);
                continue;
            }
        };
        let source = match cell(source_at) {
            "" => Source::Import,
            text => match Source::parse(text) {
                Some(source) => source,
                None => {
                    refuse(
                        &mut report,
                        line,
                        Some("source"),
                        format!("{text:?} is not a source: use one of {}", source_names()),
                    );
                    continue;
                }
            },
        };
        let reason = cell(reason_at);
        if let Err(message) = check_reason(reason) {
            refuse(&mut report, line, Some("reason"), message);
            continue;
        }
        entries.push(NewEntry {
            address,
            reason: if reason.is_empty() {
                "imported".to_owned()
            } else {
                reason.to_owned()
            },
            source,
        });
    }
    report.added = add(db, workspace, &entries).await?;
    report.existing = entries.len() as u64 - report.added;
    Ok(report)
}

/// The source names, for messages.
#[must_use]
pub fn source_names() -> String {
    Source::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The list of one channel (or all) as CSV, `channel,address,reason,source,created_at`,
/// read a page at a time.
///
/// # Errors
/// Database failures.
pub async fn export(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    channel: Option<Channel>,
) -> Result<Vec<u8>, DbErr> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| DbErr::Custom(format!("writing CSV: {e}"));
    writer
        .write_record(["channel", "address", "reason", "source", "created_at"])
        .map_err(csv_error)?;
    let mut after = None;
    loop {
        let page = list(db, workspace, channel, after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for entry in &page {
            let created = Timestamp::from_millis(entry.created_at).to_rfc3339();
            writer
                .write_record([
                    entry.channel.as_str(),
                    &entry.address,
                    &entry.reason,
                    entry.source.as_str(),
                    &created,
                ])
                .map_err(csv_error)?;
        }
    }
    writer
        .into_inner()
        .map_err(|e| DbErr::Custom(format!("writing CSV: {e}")))
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
    fn addresses_are_read_for_their_channel() {
        let email = Address::parse(Channel::Email, " Ada@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Ada@example.com");
        assert!(Address::parse(Channel::Email, "not-an-address").is_err());
        assert_eq!(
            Address::parse(Channel::Webhook, "cust-1").unwrap().as_str(),
            "cust-1"
        );
        assert!(Address::parse(Channel::Webhook, "").is_err());
    }

    #[test]
    fn every_source_reads_back_and_has_a_reason() {
        for source in Source::ALL {
            assert_eq!(Source::parse(source.as_str()), Some(source));
            assert!(
                source
                    .delivery_reason()
                    .starts_with("on the suppression list")
            );
        }
        assert_eq!(Source::parse("bounce"), None);
    }
}
