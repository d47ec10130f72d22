//! A campaign's report page: the figures of its latest run in total, per variant and per
//! segment, from the KPI roll-ups (the same report as `GET /api/v1/kpi/campaigns/{id}`), and
//! the uplift of conversion against the holdout with its confidence interval, drawn as an
//! inline SVG chart that needs no script.

use actix_web::{HttpResponse, http::StatusCode, web};
use clarion_campaign::CampaignId;
use clarion_kpi::campaign::{CampaignReport, Uplift};
use minijinja::{Value, context, value::Serde};
use serde::Serialize;

use super::{PageError, SignedIn, render_page};
use crate::state::AppState;

/// The chart's drawing area, in SVG user units.
const WIDTH: f64 = 640.0;
const LABEL_WIDTH: f64 = 200.0;
const ROW_HEIGHT: f64 = 32.0;
const TOP: f64 = 8.0;

/// One row of the chart: a point estimate of the uplift with its interval.
#[derive(Debug, Serialize)]
struct ChartRow {
    label: String,
    y: f64,
    /// `None` when the groups are too small for a comparison.
    bar: Option<Bar>,
}

#[derive(Debug, Serialize)]
struct Bar {
    low: f64,
    high: f64,
    point: f64,
    /// `+1.2 pp (−0.3 to +2.7)`.
    text: String,
    significant: bool,
}

/// The chart: its rows, where zero is, the axis ticks and the height it needs.
#[derive(Debug, Serialize)]
struct Chart {
    rows: Vec<ChartRow>,
    zero: f64,
    ticks: Vec<(f64, String)>,
    height: f64,
    plot_left: f64,
    plot_right: f64,
}

/// Percentage points, signed.
fn points(value: f64) -> String {
    format!("{:+.1}", value * 100.0)
}

/// The uplift chart of `rows` (label, uplift): the difference in conversion rate against
/// the holdout, in percentage points, with its interval.
fn chart(rows: &[(String, Option<&Uplift>)]) -> Chart {
    let intervals: Vec<_> = rows
        .iter()
        .map(|(_, uplift)| uplift.and_then(|u| u.conversion.as_ref()))
        .collect();
    let (mut low, mut high) = intervals
        .iter()
        .flatten()
        .fold((0.0_f64, 0.0_f64), |(lo, hi), c| {
            (
                lo.min(c.difference_interval.low),
                hi.max(c.difference_interval.high),
            )
        });
    if (high - low).abs() < f64::EPSILON {
        (low, high) = (-0.01, 0.01);
    }
    let pad = (high - low) * 0.08;
    let (low, high) = (low - pad, high + pad);
    let left = LABEL_WIDTH;
    let right = WIDTH - 16.0;
    let x = |value: f64| left + (value - low) / (high - low) * (right - left);
    let rows = rows
        .iter()
        .zip(&intervals)
        .enumerate()
        .map(|(i, ((label, _), comparison))| {
            let y = TOP + ROW_HEIGHT * (i as f64) + ROW_HEIGHT / 2.0;
            ChartRow {
                label: label.clone(),
                y,
                bar: comparison.map(|c| Bar {
                    low: x(c.difference_interval.low),
                    high: x(c.difference_interval.high),
                    point: x(c.difference),
                    text: format!(
                        "{} pp ({} to {})",
                        points(c.difference),
                        points(c.difference_interval.low),
                        points(c.difference_interval.high)
                    ),
                    significant: c.significant,
                }),
            }
        })
        .collect::<Vec<_>>();
    let ticks = (0..=4)
        .map(|i| {
            let value = low + (high - low) * f64::from(i) / 4.0;
            (x(value), format!("{} pp", points(value)))
        })
        .collect();
    let height = TOP + ROW_HEIGHT * rows.len() as f64 + 28.0;
    Chart {
        rows,
        zero: x(0.0),
        ticks,
        height,
        plot_left: left,
        plot_right: right,
    }
}

fn chart_of(report: &CampaignReport) -> Chart {
    let mut rows = vec![("All recipients".to_owned(), Some(&report.uplift))];
    rows.extend(
        report
            .variants
            .iter()
            .map(|b| (format!("Variant {}", b.name), b.uplift.as_ref())),
    );
    rows.extend(
        report
            .segments
            .iter()
            .map(|b| (format!("Segment {}", b.name), b.uplift.as_ref())),
    );
    chart(&rows)
}

/// `GET /campaigns/{id}/report`.
pub async fn page(
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let missing = || PageError::NotFound("There is no such campaign.".into());
    let id = id.parse::<i64>().map_err(|_| missing())?;
    let workspace = signed.session.workspace;
    let campaign = clarion_campaign::store::get(&state.db, workspace, CampaignId(id))
        .await
        .map_err(PageError::from_coded)?
        .ok_or_else(missing)?;
    let report = clarion_kpi::campaign::report(&state.db, workspace, campaign.id, None, None)
        .await
        .map_err(PageError::from_coded)?;
    Ok(render_page(
        StatusCode::OK,
        "report.html",
        context! {
            title => format!("Report: {}", campaign.name),
            active => "campaigns",
            user => Value::from(Serde(signed.user())),
            csrf => signed.session.csrf_token.clone(),
            campaign => Value::from(Serde(&campaign)),
            report => Value::from(Serde(&report)),
            chart => Value::from(Serde(chart_of(&report))),
            width => WIDTH,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentage_points_carry_their_sign() {
        assert_eq!(points(0.0123), "+1.2");
        assert_eq!(points(-0.005), "-0.5");
    }

    #[test]
    fn rows_without_a_comparison_draw_no_bar_and_zero_sits_inside_the_axis() {
        let chart = chart(&[("All".into(), None), ("A".into(), None)]);
        assert!(chart.rows.iter().all(|r| r.bar.is_none()));
        assert!(chart.zero > chart.plot_left && chart.zero < chart.plot_right);
        assert_eq!(chart.ticks.len(), 5);
    }
}
