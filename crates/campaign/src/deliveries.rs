//! Reading deliveries: a campaign's progress (counts per status, channel and variant, the
//! sending rate and the time left) and the deliveries of a campaign or of a contact.

use std::collections::BTreeMap;

use clarion_model::{
    CampaignId, Channel, ContactId, DeliveryStatus, RunStatus, Timestamp, VariantId, WorkspaceId,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, QueryResult,
    sea_query::{Expr, ExprTrait, JoinType, Order, Query, SelectStatement},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    CampaignError,
    campaign::Campaign,
    control::{Run, latest_run},
};

/// The window the sending rate is measured over, in seconds.
const RATE_WINDOW_SECS: i64 = 30;

/// Deliveries per status.
pub type StatusCounts = BTreeMap<String, u64>;

/// Counts of one variant on one channel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VariantProgress {
    pub variant_id: VariantId,
    pub variant: String,
    pub channel: Channel,
    /// Deliveries per status (queued, sending, sent, failed, suppressed, holdout, cancelled).
    #[schema(value_type = Object)]
    pub counts: StatusCounts,
}

/// Where a launched campaign stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Progress {
    pub run: Run,
    /// Deliveries per status, all channels.
    #[schema(value_type = Object)]
    pub totals: StatusCounts,
    /// Deliveries per status for each channel.
    #[schema(value_type = Object)]
    pub channels: BTreeMap<String, StatusCounts>,
    pub variants: Vec<VariantProgress>,
    /// Deliveries sent per second over the last 30 seconds.
    pub rate_per_second: f64,
    /// Deliveries still queued or being sent.
    pub remaining: u64,
    /// Seconds until the remaining deliveries are sent at the current rate; null while
    /// nothing is being sent (paused, or no rate measured yet).
    pub eta_seconds: Option<u64>,
}

/// The progress of the latest run of `campaign`, if it was launched.
///
/// # Errors
/// Database failures.
pub async fn progress(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: &Campaign,
) -> Result<Option<Progress>, CampaignError> {
    match latest_run(db, workspace, campaign.id).await? {
        Some(run) => Ok(Some(run_progress(db, campaign, run).await?)),
        None => Ok(None),
    }
}

/// Where `run` of `campaign` stands: one grouped count over the run's deliveries.
///
/// # Errors
/// Database failures.
pub async fn run_progress(
    db: &DatabaseConnection,
    campaign: &Campaign,
    run: Run,
) -> Result<Progress, CampaignError> {
    let select = Query::select()
        .columns(["channel", "variant_id", "status"])
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from("deliveries")
        .and_where(Expr::col("run_id").eq(run.id))
        .group_by_columns(["channel", "variant_id", "status"])
        .to_owned();
    let zero = || -> StatusCounts {
        DeliveryStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect()
    };
    let mut totals = zero();
    let mut channels: BTreeMap<String, StatusCounts> = campaign
        .channels
        .iter()
        .map(|c| (c.as_str().to_owned(), zero()))
        .collect();
    let mut variants: Vec<VariantProgress> = Vec::new();
    for (_, variant) in campaign.variants() {
        for &channel in &campaign.channels {
            variants.push(VariantProgress {
                variant_id: variant.id,
                variant: variant.name.clone(),
                channel,
                counts: zero(),
            });
        }
    }
    for row in db.query_all(&select).await? {
        let channel: String = row.try_get("", "channel")?;
        let variant = VariantId(row.try_get("", "variant_id")?);
        let status: String = row.try_get("", "status")?;
        let n = u64::try_from(row.try_get::<i64>("", "n")?).unwrap_or(0);
        *totals.entry(status.clone()).or_default() += n;
        *channels
            .entry(channel.clone())
            .or_insert_with(zero)
            .entry(status.clone())
            .or_default() += n;
        if let Some(v) = variants
            .iter_mut()
            .find(|v| v.variant_id == variant && v.channel.as_str() == channel)
        {
            *v.counts.entry(status).or_default() += n;
        }
    }
    let since = Timestamp::now().millis() - RATE_WINDOW_SECS * 1000;
    let recent = Query::select()
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from("deliveries")
        .and_where(Expr::col("run_id").eq(run.id))
        .and_where(Expr::col("status").eq(DeliveryStatus::Sent.as_str()))
        .and_where(Expr::col("sent_at").gte(since))
        .to_owned();
    let sent_recently: i64 = match db.query_one(&recent).await? {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    #[allow(clippy::cast_precision_loss)]
    let rate = sent_recently as f64 / RATE_WINDOW_SECS as f64;
    let remaining =
        totals.get("queued").copied().unwrap_or(0) + totals.get("sending").copied().unwrap_or(0);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    // A paused run sends nothing, whatever it sent in the last 30 seconds.
    let eta_seconds = (rate > 0.0 && run.status == RunStatus::Running)
        .then(|| (remaining as f64 / rate).ceil() as u64);
    Ok(Progress {
        run,
        totals,
        channels,
        variants,
        rate_per_second: (rate * 10.0).round() / 10.0,
        remaining,
        eta_seconds,
    })
}

/// One delivery as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub campaign_id: CampaignId,
    pub run_id: i64,
    /// The contact's external id.
    pub contact: String,
    pub channel: Channel,
    pub variant_id: VariantId,
    pub status: DeliveryStatus,
    /// Why it was suppressed or failed, or the last transient error while it waits to retry.
    pub reason: Option<String>,
    /// What the peer answered when it was accepted (SMTP reply, HTTP status, file written).
    pub detail: Option<String>,
    pub attempts: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    /// Not sent before this moment: its wave's due time (the recipient's local time, or the
    /// end of quiet hours). Absent for runs sent all at once.
    pub due_at: Option<Timestamp>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub campaign: Option<CampaignId>,
    pub contact: Option<ContactId>,
    pub status: Option<DeliveryStatus>,
    pub channel: Option<Channel>,
    /// Only deliveries with a larger id.
    pub after: Option<i64>,
    pub limit: u64,
}

/// Deliveries matching `filter`, in id order, a page at a time.
///
/// # Errors
/// Database failures.
pub async fn list(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliveryView>, CampaignError> {
    let mut select: SelectStatement = Query::select()
        .columns(
            [
                "id",
                "campaign_id",
                "run_id",
                "channel",
                "variant_id",
                "status",
                "reason",
                "detail",
                "attempts",
                "created_at",
                "updated_at",
                "sent_at",
                "due_at",
            ]
            .map(|c| ("d", c)),
        )
        .column(("c", "external_id"))
        .from_as("deliveries", "d")
        .join_as(
            JoinType::InnerJoin,
            "contacts",
            "c",
            Expr::col(("c", "id")).equals(("d", "contact_id")),
        )
        .and_where(Expr::col(("d", "workspace_id")).eq(workspace.0))
        .order_by(("d", "id"), Order::Asc)
        .limit(filter.limit)
        .to_owned();
    if let Some(campaign) = filter.campaign {
        select.and_where(Expr::col(("d", "campaign_id")).eq(campaign.0));
    }
    if let Some(contact) = filter.contact {
        select.and_where(Expr::col(("d", "contact_id")).eq(contact.0));
    }
    if let Some(status) = filter.status {
        select.and_where(Expr::col(("d", "status")).eq(status.as_str()));
    }
    if let Some(channel) = filter.channel {
        select.and_where(Expr::col(("d", "channel")).eq(channel.as_str()));
    }
    if let Some(after) = filter.after {
        select.and_where(Expr::col(("d", "id")).gt(after));
    }
    db.query_all(&select).await?.iter().map(view).collect()
}

fn view(row: &QueryResult) -> Result<DeliveryView, CampaignError> {
    let channel: String = row.try_get("", "channel")?;
    let status: String = row.try_get("", "status")?;
    Ok(DeliveryView {
        id: row.try_get("", "id")?,
        campaign_id: CampaignId(row.try_get("", "campaign_id")?),
        run_id: row.try_get("", "run_id")?,
        contact: row.try_get("", "external_id")?,
        channel: Channel::parse(&channel)
            .ok_or_else(|| CampaignError::Corrupt(format!("channel {channel:?}")))?,
        variant_id: VariantId(row.try_get("", "variant_id")?),
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| CampaignError::Corrupt(format!("delivery status {status:?}")))?,
        reason: row.try_get("", "reason")?,
        detail: row.try_get("", "detail")?,
        attempts: row.try_get("", "attempts")?,
        created_at: Timestamp::from_millis(row.try_get("", "created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("", "updated_at")?),
        sent_at: row
            .try_get::<Option<i64>>("", "sent_at")?
            .map(Timestamp::from_millis),
        due_at: row
            .try_get::<Option<i64>>("", "due_at")?
            .map(Timestamp::from_millis),
    })
}
