//! Customer acquisition cost (CAC): what a new customer cost, per channel, campaign or target
//! segment, over a period `[from, to)`.
//!
//! # Formula
//!
//! **CAC = spend / new customers** of a group, `null` when the group has no new customer.
//!
//! - **New customer**: a contact whose *first purchase ever* (its earliest event of the
//!   purchase kind, `event`, default `purchase`) falls in `[from, to)`. A contact that bought
//!   before `from` is not new, whatever it buys in the period.
//! - **Attributed** to one sent delivery by the rule of the campaign report
//!   ([`crate::rollup`]): among the contact's sent deliveries of campaigns whose goal is the
//!   purchase kind with `sent_at <= first purchase < sent_at + the campaign's attribution
//!   window`, the latest (last touch, the default) or the earliest (first touch, per
//!   workspace in the KPI settings); ties go to the higher (last touch) or lower (first
//!   touch) delivery id. The new customer counts for that delivery's channel, campaign and
//!   target segment. A new customer without such a delivery is not attributed: it counts in
//!   `new_customers` (all of them) but in no group. Held-out contacts have no sent delivery,
//!   so are never attributed; deliveries not sent (failed, suppressed, queued, cancelled) and
//!   campaigns with another goal never acquire anyone.
//! - **Spend**: the spends of the report's currency whose period overlaps `[from, to)`, each
//!   prorated by the share of its period inside the report's (a spend of March counts half in
//!   a report of March 16 to April 16, by milliseconds). A spend is for a campaign or a
//!   channel:
//!   - by `campaign`: a campaign's spend is its own; a channel's spend belongs to no
//!     campaign and is reported as *unallocated* (the group whose `name` is null).
//!   - by `channel`: a channel's spend is its own; a campaign's spend is split over the
//!     channels it was sent on by recipients (contacts with at least one sent delivery of the
//!     campaign on that channel, over all its runs).
//!   - by `segment`: a campaign's spend is split over its target segments by recipients
//!     (contacts with at least one sent delivery of the campaign written for that segment,
//!     over all its runs); a channel's spend has no segment and is unallocated.
//!
//!   A campaign without recipients yet cannot be split: its spend is unallocated.
//! - **Currency**: one report is in one currency, never a sum of several. With `currency`
//!   the report takes that currency's spends only; without it, the currency of the spends of
//!   the period, and when they are in more than one the report is refused (422 naming
//!   `currency`, listing them). Without spend in the period the currency is `null` and every
//!   spend 0.
//! - **Totals**: `spend` of every group (unallocated included); `attributed_new_customers`
//!   (the sum over the groups, each new customer being attributed at most once) and
//!   `cac` = spend / attributed_new_customers; `new_customers` counts every new customer,
//!   attributed or not, and `blended_cac` = spend / new_customers.
//!
//! Rates with an empty denominator are `null`, never 0 or NaN; a group with spend but no new
//! customer has CAC `null`, one with new customers but no spend has CAC 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use clarion_model::{EventKind, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DbBackend, Statement, Value,
    sea_query::{Expr, ExprTrait, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Attribution, KpiError, settings, spend::SpendCurrency};

const HOUR_MS: i64 = 3_600_000;
const _: () = assert!(
    HOUR_MS == 3_600_000,
    "the SQL below multiplies by this literal"
);

/// How a CAC report groups spend and new customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    #[default]
    Channel,
    Campaign,
    Segment,
}

impl Grouping {
    pub fn as_str(self) -> &'static str {
        match self {
            Grouping::Channel => "channel",
            Grouping::Campaign => "campaign",
            Grouping::Segment => "segment",
        }
    }
}

/// What a CAC report is about.
#[derive(Debug, Clone)]
pub struct CacQuery {
    pub from: Timestamp,
    pub to: Timestamp,
    pub by: Grouping,
    /// The report's currency; the period's only one when `None`.
    pub currency: Option<String>,
    /// The purchase event kind.
    pub event: String,
}

/// Spend, new customers and CAC of one channel, campaign or segment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CacGroup {
    /// The campaign's or segment's id; null for a channel and for unallocated spend.
    pub id: Option<i64>,
    /// The channel, the campaign's name or the segment's slug; null for unallocated spend
    /// (spend that belongs to no group of this grouping).
    pub name: Option<String>,
    /// Prorated spend, in the report's currency (not rounded).
    pub spend: f64,
    /// New customers attributed to the group's deliveries.
    pub new_customers: u64,
    /// spend / new_customers; null without new customers.
    pub cac: Option<f64>,
}

/// Customer acquisition cost over a period; see the module docs for every figure.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CacReport {
    pub from: Timestamp,
    pub to: Timestamp,
    pub by: Grouping,
    /// The purchase event kind.
    pub event: String,
    /// The currency of every spend figure; null when there is no spend in the period.
    pub currency: Option<String>,
    pub attribution: Attribution,
    /// All spend of the period (prorated), unallocated included.
    pub spend: f64,
    /// Contacts whose first purchase ever lies in the period, attributed or not.
    pub new_customers: u64,
    /// Of them, those attributed to a delivery.
    pub attributed_new_customers: u64,
    /// spend / attributed_new_customers; null without any.
    pub cac: Option<f64>,
    /// spend / new_customers; null without any.
    pub blended_cac: Option<f64>,
    /// Groups with spend or new customers, in name (channel) or id order; unallocated last.
    pub groups: Vec<CacGroup>,
}

/// Where spend or a new customer is counted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Channel(String),
    Id(i64),
    Unallocated,
}

impl CacQuery {
    /// The checked currency, if one was asked for.
    fn check(&self) -> Result<Option<SpendCurrency>, KpiError> {
        if self.from >= self.to {
            return Err(KpiError::invalid("to", "must lie after from"));
        }
        EventKind::parse(&self.event).map_err(|e| KpiError::invalid("event", e.to_string()))?;
        self.currency
            .as_deref()
            .map(|code| SpendCurrency::parse("currency", code))
            .transpose()
    }
}

/// Numbered placeholders (`$n` on PostgreSQL, `?n` on SQLite), so one value can be used twice.
fn place(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

/// One spend overlapping the period.
struct SpendRow {
    campaign: Option<i64>,
    channel: Option<String>,
    /// Prorated, in minor units.
    minor: f64,
}

/// The CAC report for `query`.
///
/// # Errors
/// [`KpiError::Invalid`] naming `to` (not after `from`), `event` (not an event kind) or
/// `currency` (unknown, or none given while the period's spend is in several); database
/// errors.
#[tracing::instrument(skip_all, fields(by = query.by.as_str()))]
pub async fn report(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    query: &CacQuery,
) -> Result<CacReport, KpiError> {
    let asked = query.check()?;
    let attribution = settings::get(db, workspace).await?.attribution;
    let (from, to) = (query.from.millis(), query.to.millis());

    // Spend overlapping the period, in one currency.
    let select = Query::select()
        .columns([
            "campaign_id",
            "channel",
            "amount_minor",
            "currency",
            "period_from",
            "period_to",
        ])
        .from("marketing_spend")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("period_from").lt(to))
        .and_where(Expr::col("period_to").gt(from))
        .to_owned();
    let rows = db.query_all(&select).await?;
    let currencies: BTreeSet<String> = rows
        .iter()
        .map(|r| r.try_get::<String>("", "currency"))
        .collect::<Result<_, _>>()?;
    let currency = match asked {
        Some(currency) => Some(currency),
        None => match currencies.len() {
            0 => None,
            1 => currencies
                .iter()
                .next()
                .map(|code| SpendCurrency::parse("currency", code))
                .transpose()?,
            _ => {
                return Err(KpiError::invalid(
                    "currency",
                    format!(
                        "the spend of this period is in {}; a report is in one currency: choose one with currency",
                        currencies.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        },
    };
    let mut spends = Vec::new();
    if let Some(currency) = currency {
        for row in &rows {
            if row.try_get::<String>("", "currency")? != currency.code() {
                continue;
            }
            let (start, end): (i64, i64) = (
                row.try_get("", "period_from")?,
                row.try_get("", "period_to")?,
            );
            let minor: i64 = row.try_get("", "amount_minor")?;
            let overlap = (Ord::min(end, to) - Ord::max(start, from)) as f64;
            spends.push(SpendRow {
                campaign: row.try_get("", "campaign_id")?,
                channel: row.try_get("", "channel")?,
                minor: minor as f64 * overlap / (end - start) as f64,
            });
        }
    }

    // How each campaign's spend is split (by channel or segment): its recipients per key.
    let campaigns: BTreeSet<i64> = spends.iter().filter_map(|s| s.campaign).collect();
    let weights = match query.by {
        Grouping::Campaign => HashMap::new(),
        by => recipients(db, workspace, &campaigns, by).await?,
    };

    let mut groups: BTreeMap<Key, (f64, u64)> = BTreeMap::new();
    for spend in &spends {
        match (query.by, spend.campaign, &spend.channel) {
            (Grouping::Campaign, Some(campaign), _) => {
                groups.entry(Key::Id(campaign)).or_default().0 += spend.minor;
            }
            (Grouping::Channel, None, Some(channel)) => {
                groups.entry(Key::Channel(channel.clone())).or_default().0 += spend.minor;
            }
            (Grouping::Channel | Grouping::Segment, Some(campaign), _) => {
                let split = weights.get(&campaign).filter(|w| !w.is_empty());
                match split {
                    Some(split) => {
                        let total: u64 = split.values().sum();
                        for (key, n) in split {
                            groups.entry(key.clone()).or_default().0 +=
                                spend.minor * *n as f64 / total as f64;
                        }
                    }
                    None => groups.entry(Key::Unallocated).or_default().0 += spend.minor,
                }
            }
            _ => groups.entry(Key::Unallocated).or_default().0 += spend.minor,
        }
    }

    // New customers and the delivery each is attributed to.
    let (new_customers, attributed) = new_customers(db, workspace, query, attribution).await?;
    for touch in attributed.values() {
        let key = match query.by {
            Grouping::Channel => Key::Channel(touch.channel.clone()),
            Grouping::Campaign => Key::Id(touch.campaign),
            Grouping::Segment => Key::Id(touch.segment),
        };
        groups.entry(key).or_default().1 += 1;
    }

    let names = match query.by {
        Grouping::Channel => HashMap::new(),
        Grouping::Campaign => names(db, workspace, "campaigns", "name").await?,
        Grouping::Segment => names(db, workspace, "segments", "slug").await?,
    };
    let major = |minor: f64| currency.map_or(0.0, |c| c.major(minor));
    let groups: Vec<CacGroup> = groups
        .into_iter()
        .map(|(key, (minor, n))| {
            let spend = major(minor);
            let (id, name) = match key {
                Key::Channel(channel) => (None, Some(channel)),
                Key::Id(id) => (
                    Some(id),
                    Some(names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))),
                ),
                Key::Unallocated => (None, None),
            };
            CacGroup {
                id,
                name,
                spend,
                new_customers: n,
                cac: per(spend, n),
            }
        })
        .collect();
    let spend = major(spends.iter().map(|s| s.minor).sum());
    let attributed_new_customers = attributed.len() as u64;
    Ok(CacReport {
        from: query.from,
        to: query.to,
        by: query.by,
        event: query.event.clone(),
        currency: currency.map(|c| c.code().to_owned()),
        attribution,
        spend,
        new_customers,
        attributed_new_customers,
        cac: per(spend, attributed_new_customers),
        blended_cac: per(spend, new_customers),
        groups,
    })
}

fn per(spend: f64, customers: u64) -> Option<f64> {
    (customers > 0).then(|| spend / customers as f64)
}

/// Distinct recipients (contacts with a sent delivery) of each campaign per channel or
/// target segment, over all its runs.
async fn recipients(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    campaigns: &BTreeSet<i64>,
    by: Grouping,
) -> Result<HashMap<i64, BTreeMap<Key, u64>>, KpiError> {
    let mut out: HashMap<i64, BTreeMap<Key, u64>> = HashMap::new();
    if campaigns.is_empty() {
        return Ok(out);
    }
    let column = if by == Grouping::Segment {
        "segment_id"
    } else {
        "channel"
    };
    let select = Query::select()
        .column("campaign_id")
        .expr_as(Expr::col(column), "k")
        // PostgreSQL counts into BIGINT already; the cast keeps SQLite's answer the same type.
        .expr_as(
            Expr::cust("CAST(COUNT(DISTINCT contact_id) AS BIGINT)"),
            "n",
        )
        .from("deliveries")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("status").eq("sent"))
        .and_where(Expr::col("campaign_id").is_in(campaigns.iter().copied()))
        .group_by_columns(["campaign_id", column])
        .to_owned();
    for row in db.query_all(&select).await? {
        let key = if by == Grouping::Segment {
            Key::Id(row.try_get("", "k")?)
        } else {
            Key::Channel(row.try_get("", "k")?)
        };
        let n: i64 = row.try_get("", "n")?;
        out.entry(row.try_get("", "campaign_id")?)
            .or_default()
            .insert(key, u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}

/// The delivery a new customer is attributed to.
#[derive(Debug, Clone)]
struct Touch {
    delivery: i64,
    sent_at: i64,
    channel: String,
    campaign: i64,
    segment: i64,
}

/// Every new customer of the period (how many) and the delivery each attributed one is
/// credited to, by contact.
async fn new_customers(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    query: &CacQuery,
    attribution: Attribution,
) -> Result<(u64, HashMap<i64, Touch>), KpiError> {
    let backend = db.get_database_backend();
    let (w, k, f, t) = (
        place(backend, 1),
        place(backend, 2),
        place(backend, 3),
        place(backend, 4),
    );
    let values: Vec<Value> = vec![
        workspace.0.into(),
        query.event.clone().into(),
        query.from.millis().into(),
        query.to.millis().into(),
    ];
    // Contacts that bought in the period and never before it; an earlier purchase of the
    // same contact is looked up by its (contact, kind, time) index.
    let firsts = format!(
        "WITH firsts AS (SELECT e.contact_id AS contact_id, MIN(e.occurred_at) AS first_at \
         FROM events e WHERE e.workspace_id = {w} AND e.kind = {k} \
         AND e.occurred_at >= {f} AND e.occurred_at < {t} \
         AND NOT EXISTS (SELECT 1 FROM events p WHERE p.contact_id = e.contact_id \
                         AND p.kind = {k} AND p.occurred_at < {f}) \
         GROUP BY e.contact_id) "
    );
    // One statement, so the new customers are found once: a first row with their count,
    // then every delivery that may be credited with one of them.
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "{firsts}SELECT CAST(0 AS BIGINT) AS touch, CAST(COUNT(*) AS BIGINT) AS contact_id, \
                 CAST(NULL AS BIGINT) AS delivery_id, CAST(NULL AS BIGINT) AS sent_at, \
                 CAST(NULL AS TEXT) AS channel, CAST(NULL AS BIGINT) AS campaign_id, \
                 CAST(NULL AS BIGINT) AS segment_id FROM firsts \
                 UNION ALL \
                 SELECT CAST(1 AS BIGINT) AS touch, f.contact_id AS contact_id, d.id AS delivery_id, d.sent_at AS sent_at, \
                 d.channel AS channel, d.campaign_id AS campaign_id, d.segment_id AS segment_id \
                 FROM firsts f JOIN deliveries d ON d.contact_id = f.contact_id \
                 JOIN campaigns c ON c.id = d.campaign_id \
                 WHERE d.workspace_id = {w} AND d.status = 'sent' AND c.goal_event = {k} \
                 AND d.sent_at <= f.first_at \
                 AND f.first_at < d.sent_at + CAST(c.goal_window_hours AS BIGINT) * 3600000"
            ),
            values,
        ))
        .await?;
    let mut count = 0i64;
    let mut chosen: HashMap<i64, Touch> = HashMap::new();
    for row in rows {
        let contact: i64 = row.try_get("", "contact_id")?;
        if row.try_get::<i64>("", "touch")? == 0 {
            count = contact;
            continue;
        }
        let touch = Touch {
            delivery: row.try_get("", "delivery_id")?,
            sent_at: row.try_get("", "sent_at")?,
            channel: row.try_get("", "channel")?,
            campaign: row.try_get("", "campaign_id")?,
            segment: row.try_get("", "segment_id")?,
        };
        let better = |old: &Touch| {
            let (new, old) = ((touch.sent_at, touch.delivery), (old.sent_at, old.delivery));
            match attribution {
                Attribution::LastTouch => new > old,
                Attribution::FirstTouch => new < old,
            }
        };
        if chosen.get(&contact).is_none_or(better) {
            chosen.insert(contact, touch);
        }
    }
    Ok((u64::try_from(count).unwrap_or(0), chosen))
}

async fn names(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    table: &str,
    column: &str,
) -> Result<HashMap<i64, String>, KpiError> {
    let select = Query::select()
        .column("id")
        .expr_as(Expr::col(column.to_owned()), "label")
        .from(table.to_owned())
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    let mut out = HashMap::new();
    for row in db.query_all(&select).await? {
        out.insert(row.try_get("", "id")?, row.try_get("", "label")?);
    }
    Ok(out)
}

/// The report as CSV: `scope,id,name,currency,spend,new_customers,cac`, one row `total`
/// (attributed new customers), one row `blended` (every new customer), then one per group
/// (scope `channel`, `campaign` or `segment`; `unallocated` for spend of no group). A `null`
/// CAC is an empty cell.
///
/// # Errors
/// [`KpiError::Csv`] (never for a report this module made).
pub fn to_csv(report: &CacReport) -> Result<String, KpiError> {
    let fail = |e: csv::Error| KpiError::Csv(e.to_string());
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "scope",
        "id",
        "name",
        "currency",
        "spend",
        "new_customers",
        "cac",
    ])
    .map_err(fail)?;
    let currency = report.currency.clone().unwrap_or_default();
    let optional = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    out.write_record([
        "total".to_owned(),
        String::new(),
        String::new(),
        currency.clone(),
        report.spend.to_string(),
        report.attributed_new_customers.to_string(),
        optional(report.cac),
    ])
    .map_err(fail)?;
    out.write_record([
        "blended".to_owned(),
        String::new(),
        String::new(),
        currency.clone(),
        report.spend.to_string(),
        report.new_customers.to_string(),
        optional(report.blended_cac),
    ])
    .map_err(fail)?;
    for group in &report.groups {
        let scope = if group.name.is_none() {
            "unallocated"
        } else {
            report.by.as_str()
        };
        out.write_record([
            scope.to_owned(),
            group.id.map(|i| i.to_string()).unwrap_or_default(),
            group.name.clone().unwrap_or_default(),
            currency.clone(),
            group.spend.to_string(),
            group.new_customers.to_string(),
            optional(group.cac),
        ])
        .map_err(fail)?;
    }
    let bytes = out.into_inner().map_err(|e| KpiError::Csv(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| KpiError::Csv(e.to_string()))
}
