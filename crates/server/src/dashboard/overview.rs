//! The overview page: contacts, segments with their sizes, recent and upcoming campaigns,
//! failures that need attention, messages per day, and the health of the delivery queues
//! (refreshed in place by htmx).

use actix_web::{HttpResponse, http::StatusCode, web};
use clarion_model::{Channel, Timestamp};
use minijinja::context;
use serde::Serialize;

use super::{PageError, SignedIn, render_page};
use crate::state::AppState;

/// Days of delivery history on the chart.
const DAYS: u32 = 14;
/// Lines per list.
const LIMIT: u64 = 10;

#[derive(Serialize)]
struct QueueLine {
    channel: &'static str,
    /// `None` when Redis did not answer.
    stats: Option<QueueFigures>,
}

#[derive(Serialize)]
struct QueueFigures {
    depth: u64,
    pending: u64,
    delayed: u64,
    dead: u64,
    consumers: u64,
}

async fn queue_lines(state: &AppState) -> Vec<QueueLine> {
    let mut lines = Vec::new();
    for channel in Channel::ALL {
        let stats = match state.queues.open(channel).await {
            Ok(queue) => queue.stats().await,
            Err(error) => Err(error),
        };
        let stats = match stats {
            Ok(stats) => Some(QueueFigures {
                depth: stats.depth,
                pending: stats.pending,
                delayed: stats.delayed,
                dead: stats.dead,
                consumers: stats.consumers,
            }),
            Err(error) => {
                tracing::warn!(%error, channel = channel.as_str(), "queue figures unavailable");
                None
            }
        };
        lines.push(QueueLine {
            channel: channel.as_str(),
            stats,
        });
    }
    lines
}

/// `GET /`.
pub async fn page_handler(
    state: web::Data<AppState>,
    signed: SignedIn,
) -> Result<HttpResponse, PageError> {
    let failed = |error: clarion_campaign::CampaignError| match clarion_model::Coded::code(&error) {
        clarion_model::ErrorCode::Unavailable => PageError::Unavailable,
        _ => PageError::internal(&error),
    };
    let (totals, counted_at) = state
        .overview_totals
        .get(&state.db, signed.session.workspace)
        .await
        .map_err(failed)?;
    let figures = clarion_campaign::overview::overview(
        &state.db,
        signed.session.workspace,
        Timestamp::now(),
        DAYS,
        LIMIT,
        Some(totals),
    )
    .await
    .map_err(failed)?;
    let queues = queue_lines(&state).await;
    let chart = serde_json::json!({
        "days": figures.daily.iter().map(|d| d.day.millis() / 1000).collect::<Vec<_>>(),
        "sent": figures.daily.iter().map(|d| d.sent).collect::<Vec<_>>(),
        "failed": figures.daily.iter().map(|d| d.failed).collect::<Vec<_>>(),
    });
    let total_sent: u64 = figures.daily.iter().map(|d| d.sent).sum();
    let total_failed: u64 = figures.daily.iter().map(|d| d.failed).sum();
    let segments: Vec<_> = figures
        .segments
        .iter()
        .map(|s| {
            context! {
                id => s.id, slug => s.slug.clone(), name => s.name.clone(), members => s.members,
                share => if figures.contacts > 0 { (s.members as f64) * 100.0 / (figures.contacts as f64) } else { 0.0 },
                computed_at => s.computed_at.map(|t| t.millis()),
            }
        })
        .collect();
    let recent: Vec<_> = figures
        .recent
        .iter()
        .map(|c| context! { id => c.id, name => c.name.clone(), status => c.status.clone(), updated_at => c.updated_at.millis(), sent => c.sent, failed => c.failed, pending => c.pending })
        .collect();
    let upcoming: Vec<_> = figures
        .upcoming
        .iter()
        .map(|u| context! { campaign_id => u.campaign_id, campaign => u.campaign.clone(), kind => u.kind.clone(), next_fire_at => u.next_fire_at.millis(), time_zone => u.time_zone.clone() })
        .collect();
    let failures: Vec<_> = figures
        .failures
        .iter()
        .map(|f| context! { campaign_id => f.campaign_id, campaign => f.campaign.clone(), failed => f.failed, last_failed_at => f.last_failed_at.millis() })
        .collect();
    Ok(render_page(
        StatusCode::OK,
        "overview.html",
        context! {
            title => "Overview",
            active => "overview",
            user => minijinja::Value::from(minijinja::value::Serde(signed.user())),
            csrf => signed.session.csrf_token.clone(),
            contacts => figures.contacts,
            subscribed => figures.subscribed,
            events => figures.events,
            counted_at => counted_at.millis(),
            segments,
            recent,
            upcoming,
            failures,
            chart => minijinja::Value::from(minijinja::value::Serde(&chart)),
            days => DAYS,
            total_sent,
            total_failed,
            queues => minijinja::Value::from(minijinja::value::Serde(&queues)),
        },
    ))
}

/// `GET /overview/queues`: the queue table alone, for htmx to refresh.
pub async fn queues(
    state: web::Data<AppState>,
    _signed: SignedIn,
) -> Result<HttpResponse, PageError> {
    let queues = queue_lines(&state).await;
    Ok(render_page(
        StatusCode::OK,
        "queues.html",
        context! { queues => minijinja::Value::from(minijinja::value::Serde(&queues)) },
    ))
}
