//! Launch: a campaign's audience becomes delivery rows and queued jobs.
//!
//! One streaming pass over the current members of each group (targets in priority order,
//! then the fallback's audience), a page at a time: each member is assigned a variant and the
//! holdout with the same hash as previews and audience counts, gets one row per channel —
//! `holdout`, `suppressed` with the reason (no address, unsubscribed, bounced, complained), or
//! `queued` — written with one multi-row INSERT per page, and the queued rows' ids are
//! enqueued in pipelined batches before the next page is read. Memory holds one page, however
//! large the audience. Rows are unique per run, contact and channel, so a repeated write is
//! harmless.
//!
//! The database is the source of truth: if Redis fails half-way, the rows written stay
//! `queued` and the supervisor ([`crate::control::supervise`]) enqueues them once the queue
//! answers again.

use std::collections::BTreeMap;
use std::time::Instant;

use clarion_model::{Channel, Timestamp, WorkspaceId};
use clarion_queue::Queue;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, QueryResult, Statement,
    sea_query::{Expr, ExprTrait, Query},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    CampaignError,
    assign::{GroupPlan, groups, weights},
    audience::{members_page, taken_earlier},
    campaign::{Campaign, CampaignId, Status, VariantId},
    sending::{DeliveryJob, DeliveryStatus, Queues, RunStatus, SendingSettings},
    store,
};

/// What a launch did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LaunchReport {
    /// The run this launch started.
    pub run_id: i64,
    pub campaign_id: CampaignId,
    /// Contacts in the campaign's audience, held-out ones included.
    pub audience: u64,
    /// Of those, held out as control (one row per channel, never sent).
    pub holdout: u64,
    /// Delivery rows queued for sending (one per recipient and channel).
    pub queued: u64,
    /// Delivery rows not sent on purpose, by reason.
    pub suppressed: BTreeMap<String, u64>,
    /// Jobs not enqueued because Redis failed during the launch; the supervisor enqueues
    /// them once it answers.
    pub enqueue_deferred: u64,
    pub elapsed_ms: u64,
}

/// Where a launch spent its time, for the debug log.
#[derive(Default)]
struct Phases {
    read: std::time::Duration,
    assign: std::time::Duration,
    write: std::time::Duration,
}

/// One member's rows, before they are written.
struct Row {
    contact: i64,
    channel: Channel,
    variant: VariantId,
    status: DeliveryStatus,
    reason: Option<&'static str>,
}

/// Launches campaign `id` now.
///
/// # Errors
/// [`CampaignError::NotFound`]; [`CampaignError::Conflict`] when the campaign is not a draft
/// (it was launched already) or uses a channel that is not configured;
/// [`CampaignError::Queue`] when Redis does not answer at the start (nothing is changed then).
#[tracing::instrument(skip_all, fields(campaign = id.0))]
pub async fn launch(
    db: &DatabaseConnection,
    queues: &Queues,
    settings: &SendingSettings,
    workspace: WorkspaceId,
    id: CampaignId,
    launched_by: Option<i64>,
) -> Result<LaunchReport, CampaignError> {
    let started = Instant::now();
    let campaign = store::get(db, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {id}")))?;
    if campaign.status != Status::Draft {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} is {} and was launched already; duplicate it to send it again",
            campaign.status.as_str()
        )));
    }
    if campaign.sends(Channel::Webhook) && settings.webhook_url.is_empty() {
        return Err(CampaignError::Conflict(
            "the campaign sends webhooks, but no webhook receiver is configured: set sending.webhook_url and webhook.secret".into(),
        ));
    }
    // Open the queues first: with Redis down, refuse before anything changes.
    let mut opened = Vec::new();
    for &channel in &campaign.channels {
        opened.push((channel, queues.open(channel).await?));
    }

    let now = Timestamp::now().millis();
    let claim = Query::update()
        .table("campaigns")
        .value("status", Status::Sending.as_str())
        .value("updated_at", now)
        .and_where(Expr::col("id").eq(id.0))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("status").eq(Status::Draft.as_str()))
        .to_owned();
    if db.execute(&claim).await?.rows_affected() != 1 {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} was launched at the same moment by another request"
        )));
    }
    let insert = Query::insert()
        .into_table("campaign_runs")
        .columns([
            "workspace_id",
            "campaign_id",
            "status",
            "launched_by",
            "audience",
            "queued",
            "suppressed",
            "holdout",
            "started_at",
            "updated_at",
        ])
        .values_panic([
            workspace.0.into(),
            id.0.into(),
            RunStatus::Running.as_str().into(),
            launched_by.into(),
            0i64.into(),
            0i64.into(),
            0i64.into(),
            0i64.into(),
            now.into(),
            now.into(),
        ])
        .returning_col("id")
        .to_owned();
    let run_id: i64 = db
        .query_one(&insert)
        .await?
        .ok_or_else(|| CampaignError::Corrupt("the new run has no id".into()))?
        .try_get("", "id")?;

    let mut report = LaunchReport {
        run_id,
        campaign_id: id,
        audience: 0,
        holdout: 0,
        queued: 0,
        suppressed: BTreeMap::new(),
        enqueue_deferred: 0,
        elapsed_ms: 0,
    };
    let page = settings.launch_page;
    let mut phases = Phases::default();
    // Three things overlap at each step: page N is written, page N+1 is read, and the jobs
    // of page N-1 are enqueued. The database works on two connections at once.
    let mut pending: Vec<(usize, Vec<DeliveryJob>)> = Vec::new();
    // Workers claim while the launch writes; see `refresh_statistics`.
    let mut written_rows = 0u64;
    let mut analyze_at = 10_000u64;
    for plan in groups(&campaign) {
        let weights = weights(&campaign, plan.group);
        let step = Instant::now();
        let mut members = db
            .query_all(&members_page(workspace, plan.segment.id, i64::MIN, page))
            .await?;
        phases.read += step.elapsed();
        loop {
            let step = Instant::now();
            let (Some(first), Some(last)) = (members.first(), members.last()) else {
                break;
            };
            let low: i64 = first.try_get("", "contact_id")?;
            let high: i64 = last.try_get("", "contact_id")?;
            let taken = taken_earlier(db, &plan.earlier, low, high).await?;
            let mut rows = Vec::with_capacity(members.len() * campaign.channels.len());
            for member in &members {
                let contact: i64 = member.try_get("", "contact_id")?;
                if taken.contains(&contact) {
                    continue;
                }
                let Some((variant, holdout)) = choose(&campaign, &plan, &weights, contact) else {
                    continue;
                };
                report.audience += 1;
                report.holdout += u64::from(holdout);
                for &channel in &campaign.channels {
                    let (status, reason) = if holdout {
                        (DeliveryStatus::Holdout, None)
                    } else {
                        reachability(member, channel)?
                    };
                    if let (DeliveryStatus::Suppressed, Some(reason)) = (status, reason) {
                        *report.suppressed.entry(reason.to_owned()).or_default() += 1;
                    }
                    rows.push(Row {
                        contact,
                        channel,
                        variant,
                        status,
                        reason,
                    });
                }
            }
            phases.assign += step.elapsed();
            let step = Instant::now();
            let more = members.len() as u64 == page;
            let next = members_page(workspace, plan.segment.id, high, page);
            let (written, next, deferred) = tokio::join!(
                write_rows(db, run_id, id, workspace, plan.segment.id, &rows),
                async {
                    if more {
                        db.query_all(&next).await
                    } else {
                        Ok(Vec::new())
                    }
                },
                enqueue(&opened, std::mem::take(&mut pending), run_id),
            );
            phases.write += step.elapsed();
            report.enqueue_deferred += deferred;
            let queued = written?;
            members = next?;
            written_rows += rows.len() as u64;
            if written_rows >= analyze_at {
                refresh_statistics(db).await?;
                analyze_at = analyze_at.saturating_mul(10);
            }
            for (index, (channel, _)) in opened.iter().enumerate() {
                let jobs: Vec<DeliveryJob> = queued
                    .iter()
                    .filter(|(c, _)| c == channel)
                    .map(|&(_, id)| DeliveryJob { id })
                    .collect();
                report.queued += jobs.len() as u64;
                if !jobs.is_empty() {
                    pending.push((index, jobs));
                }
            }
        }
    }
    report.enqueue_deferred += enqueue(&opened, pending, run_id).await;
    refresh_statistics(db).await?;
    tracing::debug!(
        first_read_ms = phases.read.as_millis(),
        assign_ms = phases.assign.as_millis(),
        write_read_and_enqueue_ms = phases.write.as_millis(),
        "launch phases"
    );

    let suppressed: u64 = report.suppressed.values().sum();
    let counts = Query::update()
        .table("campaign_runs")
        .value(
            "audience",
            i64::try_from(report.audience).unwrap_or(i64::MAX),
        )
        .value("queued", i64::try_from(report.queued).unwrap_or(i64::MAX))
        .value("suppressed", i64::try_from(suppressed).unwrap_or(i64::MAX))
        .value("holdout", i64::try_from(report.holdout).unwrap_or(i64::MAX))
        .value("updated_at", Timestamp::now().millis())
        .and_where(Expr::col("id").eq(run_id))
        .to_owned();
    db.execute(&counts).await?;
    if report.queued == 0 {
        crate::control::complete_if_done(db, run_id).await?;
    }
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        run = run_id,
        audience = report.audience,
        queued = report.queued,
        suppressed,
        holdout = report.holdout,
        ms = report.elapsed_ms,
        "campaign launched"
    );
    Ok(report)
}

/// Brings PostgreSQL's statistics of the outbox up to date. A launch can grow the table from
/// nothing to millions of rows in seconds, long before autovacuum looks at it; with the old
/// statistics the planner believes a run has a handful of rows and claims batches by
/// scanning the run's whole index instead of looking the ids up (4 s instead of 1 ms a batch
/// at a million rows). Run after 10,000, 100,000, ... rows and at the end; it samples, so it
/// costs little, and it does not block writers.
async fn refresh_statistics(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared("ANALYZE deliveries").await?;
    }
    Ok(())
}

/// Enqueues each channel's jobs; returns how many could not be (Redis failed), which stay
/// queued in the database for the supervisor.
async fn enqueue(
    opened: &[(Channel, Queue<DeliveryJob>)],
    jobs: Vec<(usize, Vec<DeliveryJob>)>,
    run_id: i64,
) -> u64 {
    let mut deferred = 0;
    for (index, jobs) in jobs {
        let Some((_, queue)) = opened.get(index) else {
            continue;
        };
        if let Err(error) = queue.enqueue_batch(&jobs).await {
            tracing::warn!(%error, run = run_id, jobs = jobs.len(), "enqueue failed during launch; the supervisor will enqueue these deliveries");
            deferred += jobs.len() as u64;
        }
    }
    deferred
}

/// The variant and holdout of `contact` in `plan`'s group: the same hash as
/// [`crate::assign::assign_in_group`], without building an [`crate::Assignment`] per member.
fn choose(
    campaign: &Campaign,
    plan: &GroupPlan<'_>,
    weights: &[u32],
    contact: i64,
) -> Option<(VariantId, bool)> {
    let decision =
        clarion_template::assign::assign(campaign.id.0, contact, campaign.holdout_percent, weights);
    let index = decision.variant?;
    let variant = match plan.group {
        crate::assign::Group::Target(position) => {
            campaign.targets.get(position)?.variants.get(index)?.id
        }
        crate::assign::Group::Fallback => campaign.fallback.as_ref()?.id,
    };
    Some((variant, decision.holdout))
}

/// Whether a member can be sent to on `channel`, and if not, why.
fn reachability(
    member: &QueryResult,
    channel: Channel,
) -> Result<(DeliveryStatus, Option<&'static str>), sea_orm::DbErr> {
    let status: String = match channel {
        Channel::Email => {
            let has_email: i64 = member.try_get("", "has_email")?;
            if has_email == 0 {
                return Ok((DeliveryStatus::Suppressed, Some("no email address")));
            }
            member.try_get("", "email_status")?
        }
        Channel::Webhook => member.try_get("", "webhook_status")?,
    };
    Ok(match status.as_str() {
        "subscribed" => (DeliveryStatus::Queued, None),
        "unsubscribed" => (DeliveryStatus::Suppressed, Some("unsubscribed")),
        "bounced" => (DeliveryStatus::Suppressed, Some("bounced")),
        "complained" => (DeliveryStatus::Suppressed, Some("complained")),
        _ => (DeliveryStatus::Suppressed, Some("not subscribed")),
    })
}

/// Writes a page of rows (all of `segment`) in one statement and returns the queued ones'
/// channel and id.
///
/// Every value is an integer or one of Clarion's own constant strings, so the statement is
/// written with its values inline rather than as 60,000 bind parameters (SQLite allows
/// 32,766 per statement). PostgreSQL gets one array literal per column, unnested: parsing a
/// 5,000-row `VALUES` list cost it more than the insert itself.
async fn write_rows(
    db: &DatabaseConnection,
    run_id: i64,
    campaign: CampaignId,
    workspace: WorkspaceId,
    segment: i64,
    rows: &[Row],
) -> Result<Vec<(Channel, i64)>, sea_orm::DbErr> {
    use std::fmt::Write as _;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let now = Timestamp::now().millis();
    let backend = db.get_database_backend();
    let mut sql = String::with_capacity(400 + rows.len() * 64);
    sql.push_str(
        "INSERT INTO deliveries (workspace_id, run_id, campaign_id, contact_id, channel, \
         variant_id, segment_id, status, reason, attempts, created_at, updated_at) ",
    );
    let constants = format!("{}, {run_id}, {}", workspace.0, campaign.0);
    if backend == DbBackend::Postgres {
        let array = |f: &dyn Fn(&Row, &mut String)| {
            let mut out = String::with_capacity(rows.len() * 12);
            out.push_str("'{");
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                f(row, &mut out);
            }
            out.push_str("}'");
            out
        };
        let contacts = array(&|r, o| {
            let _ = write!(o, "{}", r.contact);
        });
        let channels = array(&|r, o| o.push_str(r.channel.as_str()));
        let variants = array(&|r, o| {
            let _ = write!(o, "{}", r.variant.0);
        });
        let statuses = array(&|r, o| o.push_str(r.status.as_str()));
        let reasons = array(&|r, o| match r.reason {
            Some(reason) => {
                let _ = write!(o, "\"{reason}\"");
            }
            None => o.push_str("NULL"),
        });
        let _ = write!(
            sql,
            "SELECT {constants}, u.contact_id, u.channel, u.variant_id, {segment}, u.status, \
             u.reason, 0, {now}, {now} FROM UNNEST({contacts}::bigint[], {channels}::text[], \
             {variants}::bigint[], {statuses}::text[], {reasons}::text[]) \
             AS u(contact_id, channel, variant_id, status, reason)"
        );
    } else {
        sql.push_str("VALUES ");
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let reason = row.reason.map_or_else(
                || "NULL".to_owned(),
                |r| format!("'{}'", r.replace('\'', "''")),
            );
            let _ = write!(
                sql,
                "({constants},{},'{}',{},{segment},'{}',{reason},0,{now},{now})",
                row.contact,
                row.channel.as_str(),
                row.variant.0,
                row.status.as_str(),
            );
        }
    }
    sql.push_str(
        " ON CONFLICT (run_id, contact_id, channel) DO NOTHING RETURNING id, channel, status",
    );
    let written = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await?;
    let mut queued = Vec::new();
    for row in written {
        let status: String = row.try_get("", "status")?;
        if status != DeliveryStatus::Queued.as_str() {
            continue;
        }
        let channel: String = row.try_get("", "channel")?;
        let channel = Channel::parse(&channel)
            .ok_or_else(|| sea_orm::DbErr::Custom(format!("delivery channel {channel:?}")))?;
        queued.push((channel, row.try_get("", "id")?));
    }
    Ok(queued)
}
