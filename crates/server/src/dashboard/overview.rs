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

const BLUE: &str = "#1f5fbf";
const GREEN: &str = "#157f3b";
const RED: &str = "#b42318";

/// A time chart as `assets/app.js` draws it: x in seconds since 1970, one line per series
/// (`null` leaves a gap).
#[derive(Serialize)]
struct Chart {
    x: Vec<i64>,
    unit: &'static str,
    series: Vec<Series>,
}

#[derive(Serialize)]
struct Series {
    label: &'static str,
    color: &'static str,
    fill: bool,
    values: Vec<Option<f64>>,
}

impl Series {
    fn line(
        label: &'static str,
        color: &'static str,
        values: impl Iterator<Item = Option<f64>>,
    ) -> Self {
        Series {
            label,
            color,
            fill: false,
            values: values.collect(),
        }
    }

    fn filled(
        label: &'static str,
        color: &'static str,
        values: impl Iterator<Item = Option<f64>>,
    ) -> Self {
        Series {
            fill: true,
            ..Series::line(label, color, values)
        }
    }
}

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
    let (cached, counted_at) = state
        .overview
        .get(&state.db, signed.session.workspace)
        .await
        .map_err(failed)?;
    let figures = clarion_campaign::overview::overview(
        &state.db,
        signed.session.workspace,
        Timestamp::now(),
        DAYS,
        LIMIT,
        Some(cached.totals),
    )
    .await
    .map_err(failed)?;
    let queues = queue_lines(&state).await;
    let chart = Chart {
        x: figures
            .daily
            .iter()
            .map(|d| d.day.millis() / 1000)
            .collect(),
        unit: "messages",
        series: vec![
            Series::filled(
                "Sent",
                BLUE,
                figures.daily.iter().map(|d| Some(d.sent as f64)),
            ),
            Series::line(
                "Failed",
                RED,
                figures.daily.iter().map(|d| Some(d.failed as f64)),
            ),
        ],
    };
    let trend = &cached.trend;
    let months: Vec<i64> = trend
        .months
        .iter()
        .map(|m| m.start.millis() / 1000)
        .collect();
    let customers = Chart {
        x: months.clone(),
        unit: "contacts",
        series: vec![
            Series::filled(
                "Active customers",
                BLUE,
                trend.months.iter().map(|m| Some(m.active as f64)),
            ),
            Series::line(
                "Buyers",
                GREEN,
                trend.months.iter().map(|m| Some(m.buyers as f64)),
            ),
        ],
    };
    let percent = |r: Option<f64>| r.map(|r| r * 100.0);
    let rates = Chart {
        x: months.clone(),
        unit: "%",
        series: vec![
            Series::line(
                "Conversion rate",
                GREEN,
                trend.months.iter().map(|m| percent(m.conversion_rate)),
            ),
            Series::line(
                "Churn rate",
                RED,
                trend.months.iter().map(|m| percent(m.churn_rate)),
            ),
        ],
    };
    let revenue = Chart {
        x: months,
        unit: "revenue",
        series: vec![Series::filled(
            "Revenue",
            BLUE,
            trend.months.iter().map(|m| Some(m.revenue)),
        )],
    };
    let this_month = trend.months.last();
    // Churn of the last whole month: the current one has not ended.
    let last_month = trend.months.iter().rev().nth(1);
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
            customers => minijinja::Value::from(minijinja::value::Serde(&customers)),
            rates => minijinja::Value::from(minijinja::value::Serde(&rates)),
            revenue => minijinja::Value::from(minijinja::value::Serde(&revenue)),
            trend => minijinja::Value::from(minijinja::value::Serde(trend)),
            this_month => minijinja::Value::from(minijinja::value::Serde(this_month)),
            last_month => minijinja::Value::from(minijinja::value::Serde(last_month)),
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
