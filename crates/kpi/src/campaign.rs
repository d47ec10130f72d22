//! The campaign report: what one run of a campaign did, in total and per variant, target
//! segment and channel, as a series per hour or day since launch, and the intent-to-treat
//! comparison of the treated contacts against the holdout. It reads the run totals of
//! [`crate::rollup`] only (a few hundred rows however large the audience).
//!
//! # Figures
//!
//! - `audience`: contacts assigned at launch (held-out ones included); per channel, the
//!   delivery rows written for it. `holdout`: of those, held out as control.
//! - `sent`, `failed`, `pending` (queued or sending), `cancelled`: deliveries by their status;
//!   `suppressed`: deliveries not sent on purpose, by reason (at launch, or by the worker when
//!   the contact became unreachable after launch).
//! - `unique_opens`, `unique_clicks`, `unsubscribes`, `bounced`, `complaints`: deliveries with
//!   at least one `email_open`, `email_click`, `unsubscribe`, `email_bounce`,
//!   `email_complaint` event naming them (repeats of one delivery count once).
//! - `click_to_open_rate` = unique_clicks / unique_opens.
//! - `recipients`: contacts with at least one sent delivery (per channel: sent deliveries).
//! - `attributed_conversions`: goal events attributed to the run's deliveries (see
//!   [`crate::rollup`] for the attribution rule and window); `attributed_revenue`: their
//!   amounts; `converters`: recipients with at least one attributed goal event.
//! - `conversion_rate` = converters / recipients; `revenue_per_recipient` =
//!   attributed_revenue / recipients; `average_order_value` = attributed_revenue /
//!   attributed_conversions.
//!
//! Every rate whose denominator is 0 is `null`.
//!
//! # Uplift against the holdout (intent-to-treat)
//!
//! Both groups are the contacts assigned at launch who were reachable then on at least one of
//! the campaign's channels: treated contacts (`treatment.contacts`) and held-out ones
//! (`holdout.contacts`), whatever happened to the deliveries afterwards. A contact converts
//! when it has a goal event in `[started_at, started_at + window)`; its revenue is the sum of
//! those events' amounts. `conversion` compares the conversion rates (two proportions),
//! `revenue_per_contact` the mean revenue per contact (Welch's t-test), each with the absolute
//! difference and its interval, the two-sided p-value, the relative lift with its
//! delta-method interval and whether it is significant at the workspace's confidence level
//! (see [`crate::stats`]). With fewer than the workspace's `min_sample` contacts in either
//! group the comparison is `null` and `verdict` is `not_enough_data`.

use std::collections::{BTreeMap, HashMap};

use clarion_model::{CampaignId, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, Order,
    sea_query::{Expr, ExprTrait, Func, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    Attribution, KpiError, settings,
    stats::{self, Comparison, ComparisonSettings, Interval, Proportion, Summary},
};

/// The step of a report's series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Hour,
    Day,
}

impl Step {
    fn hours(self) -> i64 {
        match self {
            Step::Hour => 1,
            Step::Day => 24,
        }
    }
}

/// The figures of a run, or of one variant, segment or channel of it; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Figures {
    pub audience: u64,
    pub holdout: u64,
    pub sent: u64,
    pub failed: u64,
    pub pending: u64,
    pub cancelled: u64,
    /// Deliveries not sent on purpose, by reason.
    pub suppressed: BTreeMap<String, u64>,
    pub bounced: u64,
    pub unique_opens: u64,
    pub unique_clicks: u64,
    /// unique_clicks / unique_opens; null without opens.
    pub click_to_open_rate: Option<f64>,
    pub unsubscribes: u64,
    pub complaints: u64,
    pub recipients: u64,
    pub converters: u64,
    pub attributed_conversions: u64,
    /// converters / recipients; null without recipients.
    pub conversion_rate: Option<f64>,
    pub attributed_revenue: f64,
    /// attributed_revenue / recipients; null without recipients.
    pub revenue_per_recipient: Option<f64>,
    /// attributed_revenue / attributed_conversions; null without conversions.
    pub average_order_value: Option<f64>,
}

/// One group of the intent-to-treat comparison.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GroupOutcome {
    /// Contacts of the group reachable at launch.
    pub contacts: u64,
    /// Of those, contacts with a goal event within the window after launch.
    pub converters: u64,
    /// converters / contacts; null for an empty group.
    pub conversion_rate: Option<f64>,
    /// Wilson interval of the conversion rate at the workspace's confidence level.
    pub conversion_interval: Option<Interval>,
    /// The goal events' amounts within the window.
    pub revenue: f64,
    /// revenue / contacts; null for an empty group.
    pub revenue_per_contact: Option<f64>,
    /// Sample standard deviation of the revenue per contact; null below two contacts.
    pub revenue_sd: Option<f64>,
}

/// Whether a comparison found a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A group is below the minimum sample (or neither varies): no verdict.
    NotEnoughData,
    Significant,
    NotSignificant,
}

fn verdict(comparison: Option<&Comparison>) -> Verdict {
    match comparison {
        None => Verdict::NotEnoughData,
        Some(c) if c.significant => Verdict::Significant,
        Some(_) => Verdict::NotSignificant,
    }
}

/// Treated contacts against the holdout, intent-to-treat; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Uplift {
    pub treatment: GroupOutcome,
    pub holdout: GroupOutcome,
    /// Treatment minus holdout conversion rate; null below the minimum sample.
    pub conversion: Option<Comparison>,
    pub conversion_verdict: Verdict,
    /// Treatment minus holdout revenue per contact (Welch); null below the minimum sample.
    pub revenue_per_contact: Option<Comparison>,
    pub revenue_verdict: Verdict,
}

/// The figures of one variant, target segment or channel.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Breakdown {
    /// The variant's or segment's id; null for a channel.
    pub id: Option<i64>,
    /// The variant's name, the segment's slug or the channel.
    pub name: String,
    pub figures: Figures,
    /// The comparison within this variant or segment; null for a channel (the holdout is
    /// not split by channel).
    pub uplift: Option<Uplift>,
}

/// The time-based figures of one step of the series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct SeriesPoint {
    /// Steps since launch, from 0.
    pub offset: i64,
    /// When the step begins (launch plus offset steps), RFC 3339.
    pub start: String,
    pub sent: u64,
    pub failed: u64,
    pub unique_opens: u64,
    pub unique_clicks: u64,
    pub unsubscribes: u64,
    pub complaints: u64,
    pub bounced: u64,
    pub attributed_conversions: u64,
    pub attributed_revenue: f64,
}

/// The report of one run of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CampaignReport {
    pub campaign_id: i64,
    pub run_id: i64,
    /// When the run started, RFC 3339.
    pub started_at: String,
    pub goal_event: String,
    pub window_hours: i64,
    pub attribution: Attribution,
    pub totals: Figures,
    pub uplift: Uplift,
    pub variants: Vec<Breakdown>,
    pub segments: Vec<Breakdown>,
    pub channels: Vec<Breakdown>,
    /// Present when asked for with `series=hour|day`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Vec<SeriesPoint>>,
}

/// Metrics that count contacts: the total takes them from the contact rows (channel ""),
/// not summed over channels.
const CONTACT_METRICS: [&str; 4] = ["audience", "holdout", "recipients", "converters"];

/// Sums of one metric: count, amount, squares of the per-contact amounts.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: i64,
    amount: f64,
    sq: f64,
}

/// Rows of the run totals for one group (all, a variant, a segment), by channel and metric.
#[derive(Debug, Default)]
struct Group(HashMap<(String, String), Sums>);

impl Group {
    fn add(&mut self, channel: &str, metric: &str, sums: Sums) {
        let entry = self
            .0
            .entry((channel.to_owned(), metric.to_owned()))
            .or_default();
        entry.n += sums.n;
        entry.amount += sums.amount;
        entry.sq += sums.sq;
    }

    /// The figures over all channels (`None`) or of one channel.
    fn figures(&self, channel: Option<&str>) -> Figures {
        let mut metrics: HashMap<&str, Sums> = HashMap::new();
        for ((row_channel, metric), sums) in &self.0 {
            let take = match channel {
                Some(c) => row_channel == c,
                None => (row_channel.is_empty()) == CONTACT_METRICS.contains(&metric.as_str()),
            };
            if take {
                let entry = metrics.entry(metric.as_str()).or_default();
                entry.n += sums.n;
                entry.amount += sums.amount;
            }
        }
        let count = |m: &str| {
            metrics
                .get(m)
                .map_or(0, |s| u64::try_from(s.n).unwrap_or(0))
        };
        let mut figures = Figures {
            audience: count("audience"),
            holdout: count("holdout"),
            sent: count("sent"),
            failed: count("failed"),
            pending: count("pending"),
            cancelled: count("cancelled"),
            suppressed: BTreeMap::new(),
            bounced: count("bounced"),
            unique_opens: count("opened"),
            unique_clicks: count("clicked"),
            click_to_open_rate: None,
            unsubscribes: count("unsubscribed"),
            complaints: count("complained"),
            recipients: count("recipients"),
            converters: count("converters"),
            attributed_conversions: count("conversions"),
            conversion_rate: None,
            attributed_revenue: metrics.get("conversions").map_or(0.0, |s| s.amount),
            revenue_per_recipient: None,
            average_order_value: None,
        };
        for (metric, sums) in &metrics {
            if let Some(reason) = metric.strip_prefix("suppressed:")
                && sums.n > 0
            {
                figures
                    .suppressed
                    .insert(reason.to_owned(), u64::try_from(sums.n).unwrap_or(0));
            }
        }
        figures.click_to_open_rate = stats::rate(figures.unique_clicks, figures.unique_opens);
        figures.conversion_rate = stats::rate(figures.converters, figures.recipients);
        figures.revenue_per_recipient = ratio(figures.attributed_revenue, figures.recipients);
        figures.average_order_value =
            ratio(figures.attributed_revenue, figures.attributed_conversions);
        figures
    }

    fn outcome(
        &self,
        group: &str,
        reachable: &str,
        settings: &ComparisonSettings,
    ) -> (GroupOutcome, Proportion, Option<Summary>) {
        let get = |metric: &str| {
            self.0
                .get(&(String::new(), metric.to_owned()))
                .copied()
                .unwrap_or_default()
        };
        let contacts = u64::try_from(get(reachable).n).unwrap_or(0);
        let converters = u64::try_from(get(&format!("itt_converters_{group}")).n).unwrap_or(0);
        let revenue = get(&format!("itt_revenue_{group}"));
        let summary = Summary::from_sums(contacts, revenue.amount, revenue.sq);
        let outcome = GroupOutcome {
            contacts,
            converters,
            conversion_rate: stats::rate(converters, contacts),
            conversion_interval: stats::wilson(converters, contacts, settings.level),
            revenue: revenue.amount,
            revenue_per_contact: ratio(revenue.amount, contacts),
            revenue_sd: summary.filter(|s| s.n > 1).map(|s| s.sd),
        };
        (outcome, Proportion::new(converters, contacts), summary)
    }

    fn uplift(&self, settings: &ComparisonSettings) -> Uplift {
        let (treatment, t_rate, t_summary) = self.outcome("t", "treatment_reachable", settings);
        let (holdout, h_rate, h_summary) = self.outcome("h", "holdout_reachable", settings);
        let conversion = stats::compare_proportions(h_rate, t_rate, settings);
        let revenue_per_contact = match (h_summary, t_summary) {
            (Some(h), Some(t)) => stats::compare_means(h, t, settings),
            _ => None,
        };
        Uplift {
            treatment,
            holdout,
            conversion_verdict: verdict(conversion.as_ref()),
            conversion,
            revenue_verdict: verdict(revenue_per_contact.as_ref()),
            revenue_per_contact,
        }
    }
}

fn ratio(amount: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| amount / count as f64)
}

/// The report of run `run` of campaign `campaign` (its latest run when `None`), with a
/// series when `series` is given.
///
/// # Errors
/// [`KpiError::NotFound`] for an unknown campaign or a run of another campaign;
/// [`KpiError::Conflict`] when the campaign was never launched; database errors.
#[tracing::instrument(skip_all, fields(campaign = campaign.0))]
pub async fn report(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    campaign: CampaignId,
    run: Option<i64>,
    series: Option<Step>,
) -> Result<CampaignReport, KpiError> {
    let select = Query::select()
        .columns(["goal_event", "goal_window_hours"])
        .from("campaigns")
        .and_where(Expr::col("id").eq(campaign.0))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    let row = db
        .query_one(&select)
        .await?
        .ok_or_else(|| KpiError::NotFound(format!("campaign {}", campaign.0)))?;
    let goal_event: String = row.try_get("", "goal_event")?;
    let window_hours: i64 = row.try_get("", "goal_window_hours")?;

    let mut runs = Query::select()
        .columns(["id", "started_at"])
        .from("campaign_runs")
        .and_where(Expr::col("campaign_id").eq(campaign.0))
        .order_by("id", Order::Desc)
        .limit(1)
        .to_owned();
    if let Some(run) = run {
        runs.and_where(Expr::col("id").eq(run));
    }
    let Some(row) = db.query_one(&runs).await? else {
        return Err(match run {
            Some(run) => KpiError::NotFound(format!("run {run} of campaign {}", campaign.0)),
            None => KpiError::Conflict(format!("campaign {} has not been launched", campaign.0)),
        });
    };
    let run_id: i64 = row.try_get("", "id")?;
    let started_at: i64 = row.try_get("", "started_at")?;
    let kpi = settings::get(db, workspace).await?;
    let comparison = kpi.comparison();

    let counts = Query::select()
        .columns(["variant_id", "segment_id", "channel", "metric", "bucket"])
        // PostgreSQL sums BIGINT into NUMERIC.
        .expr_as(Expr::cust("CAST(SUM(n) AS BIGINT)"), "n")
        .expr_as(Func::sum(Expr::col("amount")), "amount")
        .expr_as(Func::sum(Expr::col("amount_sq")), "amount_sq")
        .from("kpi_run_counts")
        .and_where(Expr::col("run_id").eq(run_id))
        .group_by_columns(["variant_id", "segment_id", "channel", "metric", "bucket"])
        .to_owned();
    let mut total = Group::default();
    let mut variants: BTreeMap<i64, Group> = BTreeMap::new();
    let mut segments: BTreeMap<i64, Group> = BTreeMap::new();
    let mut points: BTreeMap<i64, SeriesPoint> = BTreeMap::new();
    for row in db.query_all(&counts).await? {
        let variant: i64 = row.try_get("", "variant_id")?;
        let segment: i64 = row.try_get("", "segment_id")?;
        let channel: String = row.try_get("", "channel")?;
        let metric: String = row.try_get("", "metric")?;
        let bucket: i64 = row.try_get("", "bucket")?;
        let sums = Sums {
            n: row.try_get("", "n")?,
            amount: row.try_get("", "amount")?,
            sq: row.try_get("", "amount_sq")?,
        };
        total.add(&channel, &metric, sums);
        variants
            .entry(variant)
            .or_default()
            .add(&channel, &metric, sums);
        segments
            .entry(segment)
            .or_default()
            .add(&channel, &metric, sums);
        if let Some(step) = series
            && !channel.is_empty()
        {
            let offset = bucket.div_euclid(step.hours());
            let point = points.entry(offset).or_default();
            let n = u64::try_from(sums.n).unwrap_or(0);
            match metric.as_str() {
                "sent" => point.sent += n,
                "failed" => point.failed += n,
                "opened" => point.unique_opens += n,
                "clicked" => point.unique_clicks += n,
                "unsubscribed" => point.unsubscribes += n,
                "complained" => point.complaints += n,
                "bounced" => point.bounced += n,
                "conversions" => {
                    point.attributed_conversions += n;
                    point.attributed_revenue += sums.amount;
                }
                _ => {}
            }
        }
    }

    let variant_names = names(db, "campaign_variants", "name", "campaign_id", campaign.0).await?;
    let segment_names = names(db, "segments", "slug", "workspace_id", workspace.0).await?;
    let breakdown = |groups: &BTreeMap<i64, Group>, names: &HashMap<i64, String>| {
        groups
            .iter()
            .map(|(id, group)| Breakdown {
                id: Some(*id),
                name: names.get(id).cloned().unwrap_or_else(|| format!("#{id}")),
                figures: group.figures(None),
                uplift: Some(group.uplift(&comparison)),
            })
            .collect::<Vec<_>>()
    };
    let mut channels: Vec<String> = total
        .0
        .keys()
        .map(|(channel, _)| channel.clone())
        .filter(|c| !c.is_empty())
        .collect();
    channels.sort();
    channels.dedup();

    let series = series.map(|step| {
        let last = points.keys().next_back().copied().unwrap_or(0);
        (0..=last)
            .map(|offset| {
                let mut point = points.remove(&offset).unwrap_or_default();
                point.offset = offset;
                point.start =
                    Timestamp::from_millis(started_at + offset * step.hours() * 3_600_000)
                        .to_rfc3339();
                point
            })
            .collect()
    });

    Ok(CampaignReport {
        campaign_id: campaign.0,
        run_id,
        started_at: Timestamp::from_millis(started_at).to_rfc3339(),
        goal_event,
        window_hours,
        attribution: kpi.attribution,
        totals: total.figures(None),
        uplift: total.uplift(&comparison),
        variants: breakdown(&variants, &variant_names),
        segments: breakdown(&segments, &segment_names),
        channels: channels
            .iter()
            .map(|channel| Breakdown {
                id: None,
                name: channel.clone(),
                figures: total.figures(Some(channel)),
                uplift: None,
            })
            .collect(),
        series,
    })
}

async fn names(
    db: &impl ConnectionTrait,
    table: &str,
    column: &str,
    owner: &str,
    owner_id: i64,
) -> Result<HashMap<i64, String>, KpiError> {
    let select = Query::select()
        .column("id")
        .expr_as(Expr::col(column.to_owned()), "label")
        .from(table.to_owned())
        .and_where(Expr::col(owner.to_owned()).eq(owner_id))
        .to_owned();
    let mut out = HashMap::new();
    for row in db.query_all(&select).await? {
        out.insert(row.try_get("", "id")?, row.try_get("", "label")?);
    }
    Ok(out)
}

const FIGURE_COLUMNS: [&str; 20] = [
    "audience",
    "holdout",
    "sent",
    "failed",
    "pending",
    "cancelled",
    "suppressed",
    "bounced",
    "unique_opens",
    "unique_clicks",
    "click_to_open_rate",
    "unsubscribes",
    "complaints",
    "recipients",
    "converters",
    "attributed_conversions",
    "conversion_rate",
    "attributed_revenue",
    "revenue_per_recipient",
    "average_order_value",
];

fn optional(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn figure_cells(f: &Figures) -> Vec<String> {
    let suppressed: u64 = f.suppressed.values().sum();
    vec![
        f.audience.to_string(),
        f.holdout.to_string(),
        f.sent.to_string(),
        f.failed.to_string(),
        f.pending.to_string(),
        f.cancelled.to_string(),
        suppressed.to_string(),
        f.bounced.to_string(),
        f.unique_opens.to_string(),
        f.unique_clicks.to_string(),
        optional(f.click_to_open_rate),
        f.unsubscribes.to_string(),
        f.complaints.to_string(),
        f.recipients.to_string(),
        f.converters.to_string(),
        f.attributed_conversions.to_string(),
        optional(f.conversion_rate),
        f.attributed_revenue.to_string(),
        optional(f.revenue_per_recipient),
        optional(f.average_order_value),
    ]
}

/// The report as CSV: with a series, one row per step; otherwise one row for the total and
/// one per variant, segment and channel (`scope`, `id`, `name`, then every figure; a `null`
/// rate is an empty cell, suppressions are summed over reasons).
///
/// # Errors
/// [`KpiError::Csv`] (never for a report this module made).
pub fn to_csv(report: &CampaignReport) -> Result<String, KpiError> {
    let fail = |e: csv::Error| KpiError::Csv(e.to_string());
    let mut out = csv::Writer::from_writer(Vec::new());
    if let Some(series) = &report.series {
        out.write_record([
            "offset",
            "start",
            "sent",
            "failed",
            "unique_opens",
            "unique_clicks",
            "unsubscribes",
            "complaints",
            "bounced",
            "attributed_conversions",
            "attributed_revenue",
        ])
        .map_err(fail)?;
        for p in series {
            out.write_record([
                p.offset.to_string(),
                p.start.clone(),
                p.sent.to_string(),
                p.failed.to_string(),
                p.unique_opens.to_string(),
                p.unique_clicks.to_string(),
                p.unsubscribes.to_string(),
                p.complaints.to_string(),
                p.bounced.to_string(),
                p.attributed_conversions.to_string(),
                p.attributed_revenue.to_string(),
            ])
            .map_err(fail)?;
        }
    } else {
        let mut header = vec!["scope", "id", "name"];
        header.extend(FIGURE_COLUMNS);
        out.write_record(&header).map_err(fail)?;
        let mut row = |scope: &str, id: Option<i64>, name: &str, figures: &Figures| {
            let mut cells = vec![
                scope.to_owned(),
                id.map(|i| i.to_string()).unwrap_or_default(),
                name.to_owned(),
            ];
            cells.extend(figure_cells(figures));
            out.write_record(&cells)
        };
        row("total", None, "", &report.totals).map_err(fail)?;
        for (scope, groups) in [
            ("variant", &report.variants),
            ("segment", &report.segments),
            ("channel", &report.channels),
        ] {
            for b in groups {
                row(scope, b.id, &b.name, &b.figures).map_err(fail)?;
            }
        }
    }
    let bytes = out.into_inner().map_err(|e| KpiError::Csv(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| KpiError::Csv(e.to_string()))
}
