//! Computed traits: what a contact's purchases say about it (orders, revenue, RFM scores, a
//! named RFM segment, historic CLV) and which product categories its behaviour points to
//! (interest profiles). [`recompute`] rewrites them for a whole workspace with a few
//! set-based statements, from every event the first time and from the stored rows after;
//! [`refresh_contacts`] and [`refresh_interests`] rewrite those of the contacts whose events
//! changed in between (ingestion calls them); rules read them through `trait` and `interest`
//! nodes.
//!
//! # Purchases, RFM and CLV
//!
//! Only events that happened at or before the moment of computation (`now`) count. A contact
//! has purchase traits when it has at least one purchase event (kind `purchases.kind`,
//! default `purchase`); contacts without one have no traits, and rules treat their traits as
//! missing.
//!
//! - **orders**: the number of distinct values of the purchase events' order property
//!   (`purchases.order_property`, default `invoice`, so the lines of one invoice are one
//!   order); a purchase event without that property is an order of its own.
//! - **revenue**: net revenue, the sum of the purchase events' `amount` minus the size of the
//!   refund events' `amount` (kind `purchases.refund_kind`, default `refund`), whatever sign
//!   the refund was written with (the Online Retail data writes cancellations as negative
//!   quantities). A missing amount counts as 0. Rounded to hundredths; amounts are summed as
//!   they are, whatever their currency.
//! - **first_purchase_at**, **last_purchase_at**: the first and the last purchase event.
//! - **recency_days**: days from the last purchase to the moment it is read, with fractions.
//!   It changes every moment, so it is not stored but computed from `last_purchase_at` by
//!   whoever reads it ([`recency_days`], `trait_value`): a rule on it is evaluated at
//!   the rule's `now`, the API answers it as of the request.
//! - **clv**: historic customer lifetime value, the net revenue to date (the same number as
//!   `revenue`; it is kept apart so that a predictive CLV can replace it without changing
//!   what `revenue` means).
//!
//! **RFM scores** are quintiles from 1 to 5 among the workspace's contacts with purchase
//! traits, 5 being best: recency by the last purchase (later is better), frequency by
//! `orders` (more is better), monetary by `revenue` (more is better). With `n` such contacts
//! and `rank` = 1 + the number of contacts with a strictly worse value, the score is
//! `1 + floor(5 × (rank − 1) / n)`. Contacts with equal values therefore get equal scores,
//! the score of the first position their group takes (many one-order customers all get
//! frequency 1 rather than being spread over several scores by an arbitrary order), and
//! with fewer than five contacts the top scores stay empty.
//!
//! The **named RFM segment** reads the recency score `R` against `FM`, the mean of the
//! frequency and monetary scores rounded half up (`(F + M + 1) / 2` in integers):
//!
//! | R \ FM | 1              | 2                   | 3                   | 4           | 5           |
//! |--------|----------------|---------------------|---------------------|-------------|-------------|
//! | 5      | new            | potential_loyalists | potential_loyalists | champions   | champions   |
//! | 4      | promising      | potential_loyalists | potential_loyalists | loyal       | champions   |
//! | 3      | about_to_sleep | need_attention      | need_attention      | loyal       | loyal       |
//! | 2      | hibernating    | about_to_sleep      | at_risk             | at_risk     | cannot_lose |
//! | 1      | lost           | hibernating         | at_risk             | cannot_lose | cannot_lose |
//!
//! Read it as: recent buyers of high value are champions, recent buyers of little value are
//! new or promising, valuable buyers who stopped are at risk or cannot be lost, and buyers
//! who bought little long ago are hibernating or lost.
//!
//! # Interests
//!
//! Events whose kind has a weight (`interests.weights`, default view 1, cart 3, purchase 5,
//! search 2) and whose category property (`interests.category_property`, default
//! `category`) holds a non-empty string feed the contact's interest in that category:
//!
//! `raw(contact, category) = Σ weight(kind) × 0.5 ^ (age_days / half_life_days)`
//!
//! with `age_days` the event's age at `now` and `half_life_days` default 30. A contact's
//! scores are its raw values divided by their sum, so they are shares that add up to 1: a
//! score of 0.4 for `cats` means 40 % of the contact's recent, weighted interest went to
//! cats. Events more than 60 half-lives old are left out (they would weigh less than 10⁻¹⁸
//! of a new one; with the default half-life that is about five years), so an interest fades
//! out completely rather than living on as the share of a long-silent contact. A contact
//! without counted events has no interests, and rules read every interest of it as 0.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clarion_model::{ContactId, EventKind, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement, TransactionTrait,
    Value, sea_query::Expr,
};
use serde::{Deserialize, Serialize};

use crate::SegmentError;
use crate::validate::is_property_name;

const DAY_MILLIS: i64 = 86_400_000;

/// Events older than this many half-lives are left out of interests.
const MAX_HALF_LIVES: i64 = 60;

/// The named RFM segments, indexed by `[R - 1][FM - 1]` (see the module documentation).
pub const RFM_GRID: [[&str; 5]; 5] = [
    [
        "lost",
        "hibernating",
        "at_risk",
        "cannot_lose",
        "cannot_lose",
    ],
    [
        "hibernating",
        "about_to_sleep",
        "at_risk",
        "at_risk",
        "cannot_lose",
    ],
    [
        "about_to_sleep",
        "need_attention",
        "need_attention",
        "loyal",
        "loyal",
    ],
    [
        "promising",
        "potential_loyalists",
        "potential_loyalists",
        "loyal",
        "champions",
    ],
    [
        "new",
        "potential_loyalists",
        "potential_loyalists",
        "champions",
        "champions",
    ],
];

/// Every named RFM segment, best first; the values the `rfm_segment` trait takes.
pub const RFM_SEGMENTS: [&str; 11] = [
    "champions",
    "loyal",
    "potential_loyalists",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cannot_lose",
    "hibernating",
    "lost",
];

/// What counts as a purchase, a refund and an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PurchaseSettings {
    /// The event kind of a purchase (or of one line of a purchase).
    pub kind: String,
    /// The event kind of a refund; it lowers revenue by the size of its amount.
    pub refund_kind: String,
    /// The event property naming the order a purchase event belongs to, so that the lines of
    /// one order count as one; events without it count as an order each.
    pub order_property: String,
}

impl Default for PurchaseSettings {
    fn default() -> Self {
        PurchaseSettings {
            kind: "purchase".to_string(),
            refund_kind: "refund".to_string(),
            order_property: "invoice".to_string(),
        }
    }
}

/// How behavioural events become interest scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InterestSettings {
    /// The weight of one event of each kind; kinds not listed (or weighing 0) are ignored.
    pub weights: BTreeMap<String, f64>,
    /// After this many days an event counts half as much.
    pub half_life_days: f64,
    /// The event property holding the product category.
    pub category_property: String,
}

impl Default for InterestSettings {
    fn default() -> Self {
        let weights = [
            ("view", 1.0),
            ("cart", 3.0),
            ("purchase", 5.0),
            ("search", 2.0),
        ]
        .into_iter()
        .map(|(kind, weight)| (kind.to_string(), weight))
        .collect();
        InterestSettings {
            weights,
            half_life_days: 30.0,
            category_property: "category".to_string(),
        }
    }
}

/// Everything [`recompute`] needs to know about a workspace's events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraitSettings {
    pub purchases: PurchaseSettings,
    pub interests: InterestSettings,
}

/// Weights must be 0 (ignored) or within this range, so that decayed weights never
/// underflow.
const WEIGHT_RANGE: std::ops::RangeInclusive<f64> = 1e-6..=1e6;

impl TraitSettings {
    /// Checks event kinds, property names, weights and the half-life. The error names the
    /// setting, e.g. `interests.half_life_days`.
    pub fn check(&self) -> Result<(), SegmentError> {
        let bad = |key: &str, message: String| {
            Err(SegmentError::Settings {
                key: key.to_string(),
                message,
            })
        };
        let kinds = [
            ("purchases.kind".to_string(), &self.purchases.kind),
            (
                "purchases.refund_kind".to_string(),
                &self.purchases.refund_kind,
            ),
        ]
        .into_iter()
        .chain(
            self.interests
                .weights
                .keys()
                .map(|kind| (format!("interests.weights.{kind}"), kind)),
        );
        for (key, kind) in kinds {
            if let Err(error) = EventKind::parse(kind.as_str()) {
                return bad(&key, error.to_string());
            }
        }
        if self.purchases.kind == self.purchases.refund_kind {
            return bad(
                "purchases.refund_kind",
                format!(
                    "must differ from purchases.kind (both are {:?})",
                    self.purchases.kind
                ),
            );
        }
        for (key, name) in [
            ("purchases.order_property", &self.purchases.order_property),
            (
                "interests.category_property",
                &self.interests.category_property,
            ),
        ] {
            if !is_property_name(name) {
                return bad(
                    key,
                    format!("{name:?} is not a property name: 1 to 64 of letters, digits and _"),
                );
            }
        }
        let half_life = self.interests.half_life_days;
        if !(half_life.is_finite() && half_life > 0.0 && half_life <= 36_500.0) {
            return bad(
                "interests.half_life_days",
                format!("must be more than 0 and at most 36500 days, not {half_life}"),
            );
        }
        for (kind, weight) in &self.interests.weights {
            if !(*weight == 0.0 || WEIGHT_RANGE.contains(weight)) {
                return bad(
                    &format!("interests.weights.{kind}"),
                    format!(
                        "must be 0 (ignore the kind) or between {} and {}, not {weight}",
                        WEIGHT_RANGE.start(),
                        WEIGHT_RANGE.end()
                    ),
                );
            }
        }
        Ok(())
    }
}

/// What one [`recompute`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraitSummary {
    /// The moment the traits describe.
    pub computed_at: Timestamp,
    /// Contacts with purchase traits (at least one purchase).
    pub contacts: u64,
    /// How many of them each named RFM segment holds; segments without members are left out.
    pub segments: BTreeMap<String, u64>,
    /// Contacts with at least one interest.
    pub interest_contacts: u64,
    /// (contact, category) scores written.
    pub interest_scores: u64,
    /// Whether every purchase or every interest profile was computed from all events again
    /// (no previous computation with the same settings, the last full one a day old, or many
    /// contacts changed since); otherwise the stored rows were caught up and scored again and
    /// the profiles that cannot have changed kept.
    pub full: bool,
    /// Time spent on orders, revenue, RFM and CLV.
    pub purchases_elapsed: Duration,
    /// Time spent on interests.
    pub interests_elapsed: Duration,
}

/// A contact's purchase traits, as of the computation.
#[derive(Debug, Clone, PartialEq, Serialize, FromQueryResult)]
pub struct PurchaseTraits {
    pub orders: i64,
    pub revenue: f64,
    pub first_purchase_at: i64,
    pub last_purchase_at: i64,
    /// Days from the last purchase to the moment of reading ([`for_contact`]'s `now`).
    #[sea_orm(skip)]
    pub recency_days: f64,
    pub rfm_recency: i16,
    pub rfm_frequency: i16,
    pub rfm_monetary: i16,
    pub rfm_segment: String,
    pub clv: f64,
    /// When these values were last written: by a computation of the workspace whose scores
    /// changed this contact's, or by a batch with this contact's purchases.
    pub computed_at: i64,
}

/// The `recency_days` trait: days from `last_purchase_at` to `now`, with fractions.
pub fn recency_days(last_purchase_at: i64, now: Timestamp) -> f64 {
    (now.millis() - last_purchase_at) as f64 / 86_400_000.0
}

/// The value of the trait `column` at `now` of the `contact_traits` row aliased `alias`, in
/// SQL: the column itself, except `recency_days`, which is not stored and is computed as
/// [`recency_days`] computes it.
pub(crate) fn trait_value(backend: DbBackend, alias: &str, column: &str, now: Timestamp) -> Expr {
    if column != "recency_days" {
        return Expr::col((alias.to_string(), column.to_string()));
    }
    crate::compile::custom_sql(
        backend,
        &format!("(CAST(? - {alias}.last_purchase_at AS DOUBLE PRECISION) / 86400000.0)"),
        vec![Expr::val(now.millis())],
    )
}

/// One category of a contact's interest profile.
#[derive(Debug, Clone, PartialEq, Serialize, FromQueryResult)]
pub struct Interest {
    pub category: String,
    /// The category's share of the contact's interest, 0 to 1.
    pub score: f64,
}

/// What Clarion computed about one contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactTraits {
    /// When the values were last written: the later of the workspace's last computation and
    /// the contact's last purchase batch; `None` when neither happened.
    pub computed_at: Option<Timestamp>,
    /// `None` when the contact had no purchase at that time.
    pub purchases: Option<PurchaseTraits>,
    /// Highest score first; empty when the contact had no categorised events.
    pub interests: Vec<Interest>,
}

/// SQL text with bound values, numbered `$n` on PostgreSQL and `?` on SQLite.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DbBackend) -> Self {
        Sql {
            backend,
            text: String::new(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        if self.backend == DbBackend::Postgres {
            self.text.push_str(&format!("${}", self.values.len()));
        } else {
            self.text.push('?');
        }
        self
    }

    /// A top-level property of the event row `e` (SQL NULL when absent or JSON null).
    fn property(&mut self, name: &str) -> &mut Self {
        match self.backend {
            DbBackend::Postgres => self
                .push("(e.properties ->> ")
                .bind(name.to_string())
                .push(")"),
            _ => self
                .push("json_extract(e.properties, ")
                .bind(format!("$.\"{name}\""))
                .push(")"),
        }
    }

    /// Whether that property holds a JSON string.
    fn property_is_string(&mut self, name: &str) -> &mut Self {
        match self.backend {
            DbBackend::Postgres => self
                .push("jsonb_typeof(e.properties -> ")
                .bind(name.to_string())
                .push(") = 'string'"),
            _ => self
                .push("json_type(e.properties, ")
                .bind(format!("$.\"{name}\""))
                .push(") = 'text'"),
        }
    }

    fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// `0.5 ^ x` for `0 <= x <= 60`, from columns `x` (PostgreSQL) or `n` = floor(x) and
/// `z` = (x - n) × ln 2 (SQLite, whose bundled build has no `pow`): 2^-n by a shift and
/// e^-z by its Taylor series to the 17th term, exact to double precision for z < ln 2.
fn decay(backend: DbBackend) -> String {
    match backend {
        DbBackend::Postgres => "power(CAST(0.5 AS DOUBLE PRECISION), x)".to_string(),
        _ => {
            let mut series = "1.0".to_string();
            for k in (1..=17).rev() {
                series = format!("(1.0 - z / {k}.0 * {series})");
            }
            format!("({series} / (1 << n))")
        }
    }
}

/// Rewrites the purchase traits, RFM scores and segments, CLV and interests of every contact
/// of `workspace` as of `now`. The purchase traits are rewritten in one transaction (readers
/// see the old values or the new ones, never a mix; ingestion's refreshes of the same
/// contacts wait for it), the interests a range of contacts at a time
/// ([`recompute_interests`]). The work is done by the database in set-based statements.
///
/// The first computation, any after the settings changed and the first a day after the last
/// full one read every purchase, refund and weighted event of the workspace. The others start
/// from the stored rows, which ingestion keeps current: they catch up the contacts whose
/// events it may have missed, score every buyer again ([`catch_up`]) and keep the interest
/// profiles that cannot have changed ([`catch_up_interests`]); the result is the same.
#[tracing::instrument(skip_all, fields(workspace = workspace.0))]
pub async fn recompute(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    now: Timestamp,
    settings: &TraitSettings,
) -> Result<TraitSummary, SegmentError> {
    settings.check()?;
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    if backend == DbBackend::Postgres {
        // The ranks sort every buyer three times and the aggregates group every purchase;
        // with the default 4 MB they spill to disk. This holds for this transaction only.
        txn.execute_unprepared("SET LOCAL work_mem = '256MB'")
            .await?;
    }

    let started = Instant::now();
    let fingerprint = serde_json::to_string(settings).unwrap_or_default();
    let events_seen = highest_event_id(&txn).await?;
    let previous = last_computation(&txn, workspace).await?;
    // The previous computation to start from, if any.
    let previous = previous.filter(|previous| {
        previous.settings.as_deref() == Some(fingerprint.as_str())
            && previous.computed_at <= now.millis()
            && previous.events_seen.is_some()
            && previous
                .full_at
                .is_some_and(|at| now.millis() - at < FULL_EVERY_MILLIS)
    });
    let caught_up = match &previous {
        Some(previous) => catch_up(&txn, workspace, now, &settings.purchases, previous).await?,
        None => None,
    };
    let contacts = match caught_up {
        Some(contacts) => contacts,
        None => compute_all(&txn, workspace, now, &settings.purchases).await?,
    };
    let mut count = Sql::new(backend);
    count
        .push("SELECT rfm_segment, COUNT(*) AS members FROM contact_traits WHERE workspace_id = ")
        .bind(workspace.0)
        .push(" GROUP BY rfm_segment");
    let mut segments = BTreeMap::new();
    for row in txn.query_all_raw(count.build()).await? {
        let name: String = row.try_get("", "rfm_segment")?;
        let members: i64 = row.try_get("", "members")?;
        segments.insert(name, u64::try_from(members).unwrap_or(0));
    }
    let purchases_elapsed = started.elapsed();

    txn.commit().await?;

    let started = Instant::now();
    let interests_caught_up = match &previous {
        Some(previous) => {
            catch_up_interests(db, workspace, now, &settings.interests, previous).await?
        }
        None => None,
    };
    let (interest_scores, interest_contacts) = match interests_caught_up {
        Some(counts) => counts,
        None => recompute_interests(db, workspace, now, &settings.interests).await?,
    };
    let interests_elapsed = started.elapsed();
    let full = caught_up.is_none() || interests_caught_up.is_none();
    // A computation that caught up either part keeps the moment of the last full one.
    let full_at = match &previous {
        Some(previous) if !(caught_up.is_none() && interests_caught_up.is_none()) => {
            previous.full_at
        }
        _ => Some(now.millis()),
    };

    let txn = db.begin().await?;
    let mut delete = Sql::new(backend);
    delete
        .push("DELETE FROM trait_computations WHERE workspace_id = ")
        .bind(workspace.0);
    txn.execute_raw(delete.build()).await?;
    let mut insert = Sql::new(backend);
    insert
        .push("INSERT INTO trait_computations (workspace_id, computed_at, events_seen, settings, full_at, contacts, interest_contacts, elapsed_ms) VALUES (")
        .bind(workspace.0)
        .push(", ")
        .bind(now.millis())
        .push(", ")
        .bind(events_seen)
        .push(", ")
        .bind(fingerprint)
        .push(", ")
        .bind(full_at)
        .push(", ")
        .bind(i64::try_from(contacts).unwrap_or(i64::MAX))
        .push(", ")
        .bind(i64::try_from(interest_contacts).unwrap_or(i64::MAX))
        .push(", ")
        .bind(i64::try_from((purchases_elapsed + interests_elapsed).as_millis()).unwrap_or(i64::MAX))
        .push(")");
    txn.execute_raw(insert.build()).await?;
    txn.commit().await?;

    tracing::info!(
        contacts,
        full,
        interest_contacts,
        purchases_ms = purchases_elapsed.as_millis() as u64,
        interests_ms = interests_elapsed.as_millis() as u64,
        "traits recomputed"
    );
    Ok(TraitSummary {
        computed_at: now,
        contacts,
        segments,
        interest_contacts,
        interest_scores,
        full,
        purchases_elapsed,
        interests_elapsed,
    })
}

/// The start of an events filter on the workspace, to be followed by its bound id. When a
/// few contacts are read, the workspace is written so that no index can serve it: without
/// statistics (a new database, autovacuum off) both databases would otherwise walk the
/// (workspace, kind, time) index over every contact's events instead of the contact index.
fn workspace_filter(for_contacts: bool) -> &'static str {
    if for_contacts {
        "e.workspace_id + 0 = "
    } else {
        "e.workspace_id = "
    }
}

/// Which of a workspace's contacts a statement covers.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Contacts(&'a [ContactId]),
    /// Contact ids from the first, inclusive, to the second, exclusive.
    Range(i64, i64),
}

impl Scope<'_> {
    /// Appends ` AND <column> ...` for the contacts covered.
    fn restrict(self, sql: &mut Sql, column: &str) {
        match self {
            Scope::Contacts(contacts) => {
                sql.push(&format!(" AND {column} IN ("));
                for (i, contact) in contacts.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.bind(contact.0);
                }
                sql.push(")");
            }
            Scope::Range(from, to) => {
                sql.push(&format!(" AND {column} >= "))
                    .bind(from)
                    .push(&format!(" AND {column} < "))
                    .bind(to);
            }
        }
    }
}

/// The `per_contact` CTE: each buyer's orders, net revenue in cents and first and last
/// purchase as of `now`, over the whole workspace or only `contacts`.
fn per_contact(
    sql: &mut Sql,
    workspace: WorkspaceId,
    now: Timestamp,
    settings: &PurchaseSettings,
    contacts: Option<&[ContactId]>,
) {
    let purchase = || settings.kind.clone();
    sql.push("WITH per_contact AS (SELECT e.contact_id AS contact_id, COUNT(DISTINCT CASE WHEN e.kind = ")
        .bind(purchase())
        .push(" THEN ")
        .property(&settings.order_property)
        .push(" END) + SUM(CASE WHEN e.kind = ")
        .bind(purchase())
        .push(" AND ")
        .property(&settings.order_property)
        .push(" IS NULL THEN 1 ELSE 0 END) AS orders, ROUND(SUM(CASE WHEN e.kind = ")
        .bind(purchase())
        .push(" THEN COALESCE(e.amount, 0) ELSE -ABS(COALESCE(e.amount, 0)) END) * 100) AS cents, MIN(CASE WHEN e.kind = ")
        .bind(purchase())
        .push(" THEN e.occurred_at END) AS first_at, MAX(CASE WHEN e.kind = ")
        .bind(purchase())
        .push(" THEN e.occurred_at END) AS last_at FROM events AS e WHERE ")
        .push(workspace_filter(contacts.is_some()))
        .bind(workspace.0)
        .push(" AND e.kind IN (")
        .bind(purchase())
        .push(", ")
        .bind(settings.refund_kind.clone())
        .push(") AND e.occurred_at <= ")
        .bind(now.millis());
    if let Some(contacts) = contacts {
        Scope::Contacts(contacts).restrict(sql, "e.contact_id");
    }
    sql.push(" GROUP BY e.contact_id), ");
}

/// The `INSERT` of the `scored` CTE's rows (`contact_id, orders, cents, first_at, last_at, r,
/// f, m`) into `contact_traits`, with the named segment from the grid.
fn insert_scored(sql: &mut Sql, workspace: WorkspaceId, now: Timestamp) {
    sql.push(
        "INSERT INTO contact_traits (contact_id, workspace_id, orders, revenue, first_purchase_at, \
         last_purchase_at, rfm_recency, rfm_frequency, rfm_monetary, rfm_segment, clv, computed_at) \
         SELECT contact_id, ",
    )
    .bind(workspace.0)
    .push(", orders, cents / 100.0, first_at, last_at, r, f, m, ");
    segment_case(sql, &|sql, dimension| {
        sql.push(["r", "f", "m"][dimension]);
    });
    sql.push(", cents / 100.0, ")
        .bind(now.millis())
        .push(" FROM scored");
}

/// The columns an upsert of [`insert_scored`]'s rows rewrites on a conflict.
const UPSERTED: [&str; 11] = [
    "workspace_id",
    "orders",
    "revenue",
    "clv",
    "first_purchase_at",
    "last_purchase_at",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
    "rfm_segment",
    "computed_at",
];

/// [`insert_scored`] as an upsert: a contact with a row gets the new values, or with
/// `only_changed` only when one of them (`computed_at` aside) differs.
fn upsert_scored(sql: &mut Sql, workspace: WorkspaceId, now: Timestamp, only_changed: bool) {
    insert_scored(sql, workspace, now);
    // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT.
    sql.push(" WHERE true ON CONFLICT (contact_id) DO UPDATE SET ");
    let set: Vec<String> = UPSERTED
        .iter()
        .map(|column| format!("{column} = excluded.{column}"))
        .collect();
    sql.push(&set.join(", "));
    if only_changed {
        let changed: Vec<String> = UPSERTED
            .iter()
            .filter(|column| **column != "computed_at")
            .map(|column| format!("contact_traits.{column} <> excluded.{column}"))
            .collect();
        sql.push(" WHERE ").push(&changed.join(" OR "));
    }
}

/// The named RFM segment from the grid, with `score` pushing the expression of each
/// dimension's score (0 recency, 1 frequency, 2 monetary).
fn segment_case(sql: &mut Sql, score: &dyn Fn(&mut Sql, usize)) {
    sql.push("CASE ");
    score(sql, 0);
    sql.push(" * 10 + (");
    score(sql, 1);
    sql.push(" + ");
    score(sql, 2);
    sql.push(" + 1) / 2");
    for (r, row) in RFM_GRID.iter().enumerate() {
        for (fm, name) in row.iter().enumerate() {
            sql.push(&format!(" WHEN {} THEN ", (r + 1) * 10 + fm + 1))
                .bind(name.to_string());
        }
    }
    sql.push(" END");
}

/// Makes the next computation of `workspace` read every event again, whatever the last one
/// was (say, after events were changed in the database by hand).
pub async fn require_full(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<(), SegmentError> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("UPDATE trait_computations SET full_at = NULL WHERE workspace_id = ")
        .bind(workspace.0);
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// What the catch-up needs of a workspace's last computation.
#[derive(FromQueryResult)]
struct Previous {
    computed_at: i64,
    /// The buyers it found.
    contacts: i64,
    /// The contacts with an interest profile it found.
    interest_contacts: i64,
    events_seen: Option<i64>,
    settings: Option<String>,
    full_at: Option<i64>,
}

/// A computation whose last full one described a moment this long before is full again,
/// whatever the stored rows say: whatever ingestion and the catch-up might have missed lives
/// a day at most.
const FULL_EVERY_MILLIS: i64 = DAY_MILLIS;

async fn last_computation(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<Option<Previous>, SegmentError> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "SELECT computed_at, contacts, interest_contacts, events_seen, settings, full_at FROM trait_computations \
         WHERE workspace_id = ",
    )
    .bind(workspace.0);
    Ok(Previous::find_by_statement(sql.build()).one(db).await?)
}

#[derive(FromQueryResult)]
struct Number {
    value: Option<i64>,
}

/// The highest event id stored (of any workspace; ids only grow), 0 without events.
async fn highest_event_id(db: &impl ConnectionTrait) -> Result<i64, SegmentError> {
    let statement = Statement::from_string(
        db.get_database_backend(),
        "SELECT MAX(id) AS value FROM events",
    );
    let highest = Number::find_by_statement(statement).one(db).await?;
    Ok(highest.and_then(|h| h.value).unwrap_or(0))
}

/// Above this share of the last computation's buyers, contacts to catch up are recomputed by
/// the full statement instead: grouping every purchase once is then cheaper than a lookup per
/// contact.
const CATCH_UP_SHARE: f64 = 0.1;

/// Brings the stored purchase traits of `workspace` up to `now` from `previous`, its last
/// computation with the same purchase settings, and ranks every buyer again; returns the
/// buyers, or `None` when so many contacts changed that the full computation is cheaper.
///
/// Ingestion rewrites a contact's orders, revenue and first and last purchase whenever a batch
/// brings it a purchase or a refund ([`refresh_contacts`]), and a deleted contact's row goes
/// with it, so the stored rows only miss what ingestion could not write: events with a higher
/// id than `previous` saw (their batch's refresh may have failed) and events whose time lay
/// after the previous computation's `now` and has now come (ingestion accepts events dated a
/// little in the future). Those contacts are computed from their events as [`recompute`]
/// does. (A batch that committed after `previous` read the highest id but holds lower ids,
/// and whose refresh failed, is caught by the next full computation, at most a day later.)
/// Then every buyer is scored again ([`score_all`]).
async fn catch_up(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    now: Timestamp,
    settings: &PurchaseSettings,
    previous: &Previous,
) -> Result<Option<u64>, SegmentError> {
    let kinds = [settings.kind.as_str(), settings.refund_kind.as_str()];
    let Some(contacts) = contacts_to_catch_up(
        db,
        workspace,
        &kinds,
        now,
        previous,
        previous.contacts,
        None,
    )
    .await?
    else {
        return Ok(None);
    };
    refresh_contacts(db, workspace, &contacts, now, settings).await?;
    Ok(Some(score_all(db, workspace, now).await?))
}

/// Where the values the scores rank are read: the stored rows (a catch-up) or the totals of
/// a full computation (before they are stored).
#[derive(Clone, Copy)]
struct Ranked {
    /// The `FROM` clause.
    from: &'static str,
    /// Whether `from` holds every workspace's rows (filtered by `workspace_id`).
    shared: bool,
    /// Per dimension, the ranked value as a `BIGINT` expression.
    values: [&'static str; 3],
}

const STORED: Ranked = Ranked {
    from: "contact_traits",
    shared: true,
    values: [DIMENSIONS[0].3, DIMENSIONS[1].3, DIMENSIONS[2].3],
};

const TOTALS: Ranked = Ranked {
    from: "trait_totals AS tt",
    shared: false,
    values: ["tt.last_at", "tt.orders", "CAST(tt.cents AS BIGINT)"],
};

impl Ranked {
    /// ` FROM ...` with the workspace filter where needed.
    fn push_from(self, sql: &mut Sql, workspace: WorkspaceId) {
        sql.push(" FROM ").push(self.from);
        if self.shared {
            sql.push(" WHERE workspace_id = ").bind(workspace.0);
        }
    }
}

/// Finds the score thresholds ([`score_thresholds`]) that give each buyer exactly the score
/// its rank gives it among the `ranked` values, and writes the score bounds ingestion places
/// new values against. Returns the number of buyers and the thresholds per dimension, or
/// `None` (and no bounds) without buyers.
async fn find_thresholds(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    ranked: Ranked,
) -> Result<Option<(u64, Vec<[i64; 4]>)>, SegmentError> {
    let backend = db.get_database_backend();
    let Some((buyers, found)) = all_thresholds(db, workspace, ranked).await? else {
        delete_bounds(db, workspace).await?;
        return Ok(None);
    };
    let mut thresholds = Vec::with_capacity(DIMENSIONS.len());
    let mut bounds = Sql::new(backend);
    bounds.push("INSERT INTO rfm_bounds (workspace_id, dimension, score, high) VALUES ");
    for (d, ((dimension, _, _, _), (found, highest))) in DIMENSIONS.iter().zip(found).enumerate() {
        // The highest value of each score given: a score k < 5 covers the values above the
        // threshold of k (none for 1) up to that of k + 1; 5 those above its threshold.
        let tops = found.iter().copied().chain([highest]);
        let floors = [None].into_iter().chain(found.iter().copied().map(Some));
        for (score, (floor, top)) in floors.zip(tops).enumerate() {
            if floor.is_none_or(|floor| top > floor) {
                if d > 0 || score > 0 {
                    bounds.push(", ");
                }
                bounds
                    .push("(")
                    .bind(workspace.0)
                    .push(", ")
                    .bind(dimension.to_string())
                    .push(&format!(", {}, ", score + 1))
                    .bind(top)
                    .push(")");
            }
        }
        thresholds.push(found);
    }
    delete_bounds(db, workspace).await?;
    db.execute_raw(bounds.build()).await?;
    Ok(Some((u64::try_from(buyers).unwrap_or(0), thresholds)))
}

/// Pushes the score of `dimension` for the value `value` under `thresholds`.
fn score_case(sql: &mut Sql, thresholds: &[[i64; 4]], dimension: usize, value: &str) {
    sql.push("CASE");
    for (k, threshold) in thresholds[dimension].iter().enumerate().rev() {
        sql.push(&format!(" WHEN {value} > "))
            .bind(*threshold)
            .push(&format!(" THEN {}", k + 2));
    }
    sql.push(" ELSE 1 END");
}

/// Pushes `, rfm_recency = ..., rfm_frequency = ..., rfm_monetary = ..., rfm_segment = ...`
/// for the stored values under `thresholds`.
fn set_scores(sql: &mut Sql, thresholds: &[[i64; 4]]) {
    for (dimension, (_, column, _, _)) in DIMENSIONS.iter().enumerate() {
        sql.push(&format!(", {column} = "));
        score_case(sql, thresholds, dimension, STORED.values[dimension]);
    }
    sql.push(", rfm_segment = ");
    segment_case(sql, &|sql, dimension| {
        sql.push("(");
        score_case(sql, thresholds, dimension, STORED.values[dimension]);
        sql.push(")");
    });
}

/// Pushes `(rfm_recency <> ... OR ...)`: whether a row's stored scores differ from those its
/// stored values get under `thresholds`.
fn scores_differ(sql: &mut Sql, thresholds: &[[i64; 4]]) {
    sql.push("(");
    for (dimension, (_, column, _, _)) in DIMENSIONS.iter().enumerate() {
        if dimension > 0 {
            sql.push(" OR ");
        }
        sql.push(&format!("{column} <> "));
        score_case(sql, thresholds, dimension, STORED.values[dimension]);
    }
    sql.push(")");
}

/// Scores every buyer of `workspace` again from its stored values in one pass and writes the
/// rows whose scores changed, with their named segment: most buyers keep their scores from
/// one computation to the next (recency is not stored, and the thresholds move little).
/// Returns the number of buyers.
async fn score_all(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    now: Timestamp,
) -> Result<u64, SegmentError> {
    let Some((buyers, thresholds)) = find_thresholds(db, workspace, STORED).await? else {
        return Ok(0);
    };
    let mut rank = Sql::new(db.get_database_backend());
    rank.push("UPDATE contact_traits SET computed_at = ")
        .bind(now.millis());
    set_scores(&mut rank, &thresholds);
    rank.push(" WHERE workspace_id = ")
        .bind(workspace.0)
        .push(" AND ");
    scores_differ(&mut rank, &thresholds);
    db.execute_raw(rank.build()).await?;
    Ok(buyers)
}

/// The number of buyers and, per dimension, the thresholds and highest value of
/// [`score_thresholds`]; `None` without buyers.
async fn all_thresholds(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    ranked: Ranked,
) -> Result<Option<(i64, [([i64; 4], i64); 3])>, SegmentError> {
    if db.get_database_backend() == DbBackend::Postgres {
        return postgres_thresholds(db, workspace, ranked).await;
    }
    let buyers = count_buyers(db, workspace, ranked).await?;
    if buyers == 0 {
        return Ok(None);
    }
    let mut found = [([0; 4], 0); 3];
    for (found, value) in found.iter_mut().zip(ranked.values) {
        *found = score_thresholds(db, workspace, ranked, value, buyers).await?;
    }
    Ok(Some((buyers, found)))
}

/// [`all_thresholds`] in one pass over the buyers on PostgreSQL: `percentile_disc(p)` is the
/// value at position `ceil(p × n)`, and the aggregates of one dimension share one sort. With
/// `p = k/5 − 1e-9` that position is exactly `ceil(k × n / 5)` for up to 10^8 buyers: when
/// `k × n / 5` is whole, `1e-9 × n` (below 1) takes it just under; otherwise its fraction is
/// at least 1/5, far above `1e-9 × n` and the rounding error of the product.
async fn postgres_thresholds(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    ranked: Ranked,
) -> Result<Option<(i64, [([i64; 4], i64); 3])>, SegmentError> {
    let mut sql = Sql::new(DbBackend::Postgres);
    sql.push("SELECT COUNT(*) AS buyers");
    for (d, stored) in ranked.values.iter().enumerate() {
        for k in 1..=4 {
            sql.push(&format!(
                ", percentile_disc({k} / 5.0 - 1e-9) WITHIN GROUP (ORDER BY {stored}) AS t{d}_{k}"
            ));
        }
        sql.push(&format!(", MAX({stored}) AS t{d}_5"));
    }
    ranked.push_from(&mut sql, workspace);
    let Some(row) = db.query_one_raw(sql.build()).await? else {
        return Ok(None);
    };
    let buyers: i64 = row.try_get("", "buyers")?;
    if buyers == 0 {
        return Ok(None);
    }
    let mut found = [([0; 4], 0); 3];
    for (d, (thresholds, highest)) in found.iter_mut().enumerate() {
        for (k, threshold) in thresholds.iter_mut().enumerate() {
            *threshold = row.try_get("", &format!("t{d}_{}", k + 1))?;
        }
        *highest = row.try_get("", &format!("t{d}_5"))?;
    }
    Ok(Some((buyers, found)))
}

/// The workspace's buyers among the `ranked` rows.
async fn count_buyers(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    ranked: Ranked,
) -> Result<i64, SegmentError> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT COUNT(*) AS value");
    ranked.push_from(&mut sql, workspace);
    let count = Number::find_by_statement(sql.build()).one(db).await?;
    Ok(count.and_then(|c| c.value).unwrap_or(0))
}

/// For scores 2 to 5, the value a buyer's `value` (an expression over the `ranked` rows) must
/// exceed to get at least that score, among `buyers` buyers. The score is
/// `1 + floor(5 × less / n)` with `less` the buyers with a strictly lower value, so it is at
/// least `k` exactly when `less >= ceil((k − 1) × n / 5) = p`, that is when the value exceeds
/// the `p`-th lowest value: one sort per dimension instead of a rank per buyer. Also returns
/// the highest value.
async fn score_thresholds(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    ranked: Ranked,
    value: &str,
    buyers: i64,
) -> Result<([i64; 4], i64), SegmentError> {
    let positions: [i64; 4] = std::array::from_fn(|i| ((i as i64 + 1) * buyers + 4) / 5);
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(&format!(
        "SELECT pos, x FROM (SELECT x, ROW_NUMBER() OVER (ORDER BY x) AS pos FROM \
         (SELECT {value} AS x"
    ));
    ranked.push_from(&mut sql, workspace);
    sql.push(") AS v) AS ranked WHERE pos IN (");
    for position in positions {
        sql.bind(position).push(", ");
    }
    sql.bind(buyers).push(")");
    let mut found = BTreeMap::new();
    for row in db.query_all_raw(sql.build()).await? {
        found.insert(row.try_get::<i64>("", "pos")?, row.try_get::<i64>("", "x")?);
    }
    let at = |position: i64| {
        found.get(&position).copied().ok_or_else(|| {
            SegmentError::Db(sea_orm::DbErr::Custom(format!(
                "no buyer at position {position} of {buyers} by {value}"
            )))
        })
    };
    let mut thresholds = [0; 4];
    for (threshold, position) in thresholds.iter_mut().zip(positions) {
        *threshold = at(position)?;
    }
    Ok((thresholds, at(buyers)?))
}

async fn delete_bounds(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<(), SegmentError> {
    let mut delete = Sql::new(db.get_database_backend());
    delete
        .push("DELETE FROM rfm_bounds WHERE workspace_id = ")
        .bind(workspace.0);
    db.execute_raw(delete.build()).await?;
    Ok(())
}

/// Computes every buyer's orders, net revenue, first and last purchase from all of its
/// events as of `now` and scores them, writing only what changed: rows whose totals or
/// scores differ are updated, new buyers added, rows of contacts without a purchase any more
/// (refunded, deleted, or only future-dated) removed. The totals go to a temporary table
/// first, which the thresholds and the upsert read. Returns the number of buyers.
async fn compute_all(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    now: Timestamp,
    settings: &PurchaseSettings,
) -> Result<u64, SegmentError> {
    let backend = db.get_database_backend();
    // Named with its schema, so that no other table of that name can be dropped.
    let drop = match backend {
        DbBackend::Postgres => "DROP TABLE IF EXISTS pg_temp.trait_totals",
        _ => "DROP TABLE IF EXISTS temp.trait_totals",
    };
    db.execute_unprepared(drop).await?;
    db.execute_unprepared(
        "CREATE TEMPORARY TABLE trait_totals (contact_id BIGINT PRIMARY KEY, orders BIGINT NOT NULL, \
         cents DOUBLE PRECISION NOT NULL, first_at BIGINT NOT NULL, last_at BIGINT NOT NULL)",
    )
    .await?;
    let mut totals = Sql::new(backend);
    per_contact(&mut totals, workspace, now, settings, None);
    totals.push(
        "buyers AS (SELECT contact_id, orders, cents, first_at, last_at FROM per_contact \
         WHERE last_at IS NOT NULL) \
         INSERT INTO trait_totals (contact_id, orders, cents, first_at, last_at) SELECT * FROM buyers",
    );
    db.execute_raw(totals.build()).await?;
    if backend == DbBackend::Postgres {
        // Temporary tables get no statistics of their own.
        db.execute_unprepared("ANALYZE trait_totals").await?;
    }
    let scored = find_thresholds(db, workspace, TOTALS).await?;

    let mut gone = Sql::new(backend);
    gone.push("DELETE FROM contact_traits WHERE workspace_id = ")
        .bind(workspace.0)
        .push(" AND contact_id NOT IN (SELECT contact_id FROM trait_totals)");
    db.execute_raw(gone.build()).await?;

    let buyers = match scored {
        None => 0,
        Some((buyers, thresholds)) => {
            // One upsert, so that no plan can probe `contact_traits` while it grows (a table
            // without statistics yet was scanned once per new buyer). Revenue and CLV are
            // written as for every other row, so equal totals compare equal.
            let mut upsert = Sql::new(backend);
            upsert.push(
                "WITH scored AS (SELECT tt.contact_id AS contact_id, tt.orders AS orders, \
                 tt.cents AS cents, tt.first_at AS first_at, tt.last_at AS last_at",
            );
            for (dimension, value) in TOTALS.values.iter().enumerate() {
                upsert.push(", ");
                score_case(&mut upsert, &thresholds, dimension, value);
                upsert.push(&format!(" AS {}", ["r", "f", "m"][dimension]));
            }
            upsert.push(" FROM trait_totals AS tt) ");
            upsert_scored(&mut upsert, workspace, now, true);
            db.execute_raw(upsert.build()).await?;
            buyers
        }
    };
    db.execute_unprepared(drop).await?;
    Ok(buyers)
}

/// The RFM dimensions as `rfm_bounds` names them, with the `contact_traits` column of each
/// score and the value it ranks (`per_contact`'s column, and the same in `contact_traits`).
const DIMENSIONS: [(&str, &str, &str, &str); 3] = [
    ("recency", "rfm_recency", "last_at", "last_purchase_at"),
    ("frequency", "rfm_frequency", "orders", "orders"),
    (
        "monetary",
        "rfm_monetary",
        "cents",
        "CAST(ROUND(revenue * 100) AS BIGINT)",
    ),
];

/// One `INSERT ... SELECT ... ON CONFLICT DO UPDATE` computing the purchase traits of
/// `contacts` (see [`refresh_contacts`] for how they are scored).
fn contacts_statement(
    backend: DbBackend,
    workspace: WorkspaceId,
    now: Timestamp,
    settings: &PurchaseSettings,
    contacts: &[ContactId],
) -> Statement {
    let mut sql = Sql::new(backend);
    per_contact(&mut sql, workspace, now, settings, Some(contacts));
    sql.push("scored AS (SELECT contact_id, orders, cents, first_at, last_at");
    for (dimension, _, value, _) in DIMENSIONS {
        // The score of the lowest score group whose highest value reaches this value; above
        // every group, the top score; no bounds yet (no full computation), a lone buyer's 1.
        sql.push(", COALESCE((SELECT MIN(b.score) FROM rfm_bounds AS b WHERE b.workspace_id = ")
            .bind(workspace.0)
            .push(&format!(
                " AND b.dimension = '{dimension}' AND b.high >= per_contact.{value}), \
                 (SELECT CASE WHEN COUNT(*) = 0 THEN 1 ELSE 5 END FROM rfm_bounds AS b WHERE b.workspace_id = "
            ))
            .bind(workspace.0)
            .push(&format!(
                " AND b.dimension = '{dimension}')) AS {}",
                &dimension[..1]
            ));
    }
    sql.push(" FROM per_contact WHERE last_at IS NOT NULL) ");
    upsert_scored(&mut sql, workspace, now, false);
    sql.build()
}

/// Contacts per statement of [`refresh_contacts`].
const REFRESH_CHUNK: usize = 1_000;

/// Rewrites the purchase traits of `contacts` (of `workspace`) as of `now`, after their
/// purchases or refunds changed: orders, revenue, first and last purchase and CLV exactly as
/// [`recompute`] computes them, and RFM scores placed among the other buyers by the score
/// bounds of the workspace's last computation (`rfm_bounds`: per score, the highest value
/// that got it). A value between two score groups gets the higher group's score, as a rank
/// among the other buyers would give it; the other buyers keep their scores until the next
/// computation scores everyone again. Contacts without a purchase
/// by `now` are left as they are. Returns the contacts written.
pub async fn refresh_contacts(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    contacts: &[ContactId],
    now: Timestamp,
    settings: &PurchaseSettings,
) -> Result<u64, SegmentError> {
    let backend = db.get_database_backend();
    let mut written = 0;
    for chunk in contacts.chunks(REFRESH_CHUNK) {
        written += db
            .execute_raw(contacts_statement(backend, workspace, now, settings, chunk))
            .await?
            .rows_affected();
    }
    Ok(written)
}

/// One `INSERT ... SELECT` computing every contact's interest shares, or `None` when no
/// event kind has a weight: one pass over the recent weighted events grouped by contact and
/// category, then each group's share of its contact's total.
fn interest_statement(
    backend: DbBackend,
    workspace: WorkspaceId,
    now: Timestamp,
    settings: &InterestSettings,
    scope: Scope<'_>,
) -> Option<Statement> {
    let weights: Vec<(&String, f64)> = settings
        .weights
        .iter()
        .filter(|(_, weight)| **weight > 0.0)
        .map(|(kind, weight)| (kind, *weight))
        .collect();
    if weights.is_empty() {
        return None;
    }
    let category = &settings.category_property;
    let mut sql = Sql::new(backend);
    sql.push("WITH weighted AS (SELECT e.contact_id AS contact_id, ")
        .property(category)
        .push(" AS category, e.occurred_at AS occurred_at, CASE e.kind");
    for (kind, weight) in &weights {
        sql.push(" WHEN ")
            .bind(kind.to_string())
            .push(" THEN ")
            .bind(*weight);
    }
    sql.push(" END AS weight FROM events AS e WHERE ")
        .push(workspace_filter(true))
        .bind(workspace.0)
        .push(" AND e.kind IN (");
    for (i, (kind, _)) in weights.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(kind.to_string());
    }
    let half_life_millis = settings.half_life_days * DAY_MILLIS as f64;
    // A bound the (workspace, kind, occurred_at) index can use; `x <= 60` below is exact.
    let oldest = now.millis() - (MAX_HALF_LIVES as f64 * half_life_millis).ceil() as i64;
    sql.push(") AND e.occurred_at <= ")
        .bind(now.millis())
        .push(" AND e.occurred_at >= ")
        .bind(oldest)
        .push(" AND ")
        .property_is_string(category)
        .push(" AND ")
        .property(category)
        .push(" <> ''");
    scope.restrict(&mut sql, "e.contact_id");
    sql.push("), aged AS (SELECT contact_id, category, weight, (")
        .bind(now.millis())
        .push(" - occurred_at) / ")
        .bind(half_life_millis)
        .push(" AS x FROM weighted), ");
    match backend {
        DbBackend::Postgres => {
            sql.push("split AS (SELECT contact_id, category, weight, x FROM aged WHERE x <= ")
        }
        _ => sql.push(
            "split AS (SELECT contact_id, category, weight, CAST(x AS INTEGER) AS n, \
             (x - CAST(x AS INTEGER)) * 0.6931471805599453 AS z FROM aged WHERE x <= ",
        ),
    };
    sql.push(&MAX_HALF_LIVES.to_string())
        .push("), raw AS (SELECT contact_id, category, SUM(weight * ")
        .push(&decay(backend))
        .push(
            ") AS raw FROM split GROUP BY contact_id, category) \
               INSERT INTO contact_interests (contact_id, workspace_id, category, score) \
               SELECT contact_id, ",
        )
        .bind(workspace.0)
        .push(
            ", category, raw / SUM(raw) OVER (PARTITION BY contact_id) FROM raw \
             WHERE true ON CONFLICT (contact_id, category) DO UPDATE SET score = excluded.score",
        );
    Some(sql.build())
}

/// Contact ids per transaction of [`recompute_interests`].
const INTEREST_RANGE: i64 = 20_000;

#[derive(FromQueryResult)]
struct IdBounds {
    low: Option<i64>,
    high: Option<i64>,
}

/// Rewrites the interest profiles of every contact of `workspace` as of `now`, one range of
/// contact ids per transaction (read through the events' contact index), so that ingestion,
/// which refreshes the profiles of the contacts a batch touched, never waits long behind it.
/// Readers may see some ranges rewritten and others not yet; the shares are the same either
/// way unless the settings changed or events aged past the cut-off. Returns the scores
/// written and the contacts with a profile.
async fn recompute_interests(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    now: Timestamp,
    settings: &InterestSettings,
) -> Result<(u64, u64), SegmentError> {
    let backend = db.get_database_backend();
    // The ids of the workspace's contacts and of the profiles stored (those of deleted
    // contacts too, so that they are removed).
    let mut bounds = Sql::new(backend);
    bounds
        .push("SELECT MIN(low) AS low, MAX(high) AS high FROM (SELECT MIN(id) AS low, MAX(id) AS high FROM contacts WHERE workspace_id = ")
        .bind(workspace.0)
        .push(" UNION ALL SELECT MIN(contact_id), MAX(contact_id) FROM contact_interests WHERE workspace_id = ")
        .bind(workspace.0)
        .push(") AS b");
    let Some(IdBounds {
        low: Some(low),
        high: Some(high),
    }) = IdBounds::find_by_statement(bounds.build()).one(db).await?
    else {
        return Ok((0, 0));
    };
    let mut scores = 0;
    let mut from = low;
    while from <= high {
        let to = from.saturating_add(INTEREST_RANGE);
        let txn = db.begin().await?;
        let mut delete = Sql::new(backend);
        delete
            .push("DELETE FROM contact_interests WHERE workspace_id = ")
            .bind(workspace.0);
        Scope::Range(from, to).restrict(&mut delete, "contact_id");
        txn.execute_raw(delete.build()).await?;
        if let Some(statement) =
            interest_statement(backend, workspace, now, settings, Scope::Range(from, to))
        {
            scores += txn.execute_raw(statement).await?.rows_affected();
        }
        txn.commit().await?;
        from = to;
    }
    Ok((scores, count_interest_contacts(db, workspace).await?))
}

/// Brings the stored interest profiles of `workspace` up to `now` from `previous`, its last
/// computation with the same settings: returns the scores written and the contacts with a
/// profile, or `None` when so many contacts changed that computing every profile is cheaper.
///
/// A profile's shares do not change as time passes without events (every weight decays by the
/// same factor), and ingestion rewrites the profiles of the contacts a batch brought weighted
/// events ([`refresh_interests`]), so only these profiles can differ from a computation of
/// every contact: those of contacts with weighted events stored after `previous` started,
/// dated after its `now` (their time has come), or aging past the 60 half-lives between its
/// `now` and this one. They are computed again; the others are kept.
async fn catch_up_interests(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    now: Timestamp,
    settings: &InterestSettings,
    previous: &Previous,
) -> Result<Option<(u64, u64)>, SegmentError> {
    let kinds: Vec<&str> = interest_kinds(settings).collect();
    if kinds.is_empty() {
        return Ok(None);
    }
    let span = (MAX_HALF_LIVES as f64 * settings.half_life_days * DAY_MILLIS as f64).ceil() as i64;
    // Events counted then and too old now (a millisecond of margin each side for rounding).
    let aging = (previous.computed_at - span - 1, now.millis() - span + 1);
    let Some(contacts) = contacts_to_catch_up(
        db,
        workspace,
        &kinds,
        now,
        previous,
        previous.interest_contacts,
        Some(aging),
    )
    .await?
    else {
        return Ok(None);
    };
    let scores = refresh_interests(db, workspace, &contacts, now, settings).await?;
    Ok(Some((
        scores,
        count_interest_contacts(db, workspace).await?,
    )))
}

/// The contacts of `workspace` with events of `kinds`, dated at or before `now`, that the rows
/// stored since `previous` may not reflect: events with a higher id than it saw, dated after
/// its `now`, or dated within `aging` (both ends included). `None` when they are more than
/// [`CATCH_UP_SHARE`] of the `stored` contacts (and more than one refresh chunk): computing
/// every contact is then cheaper.
async fn contacts_to_catch_up(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    kinds: &[&str],
    now: Timestamp,
    previous: &Previous,
    stored: i64,
    aging: Option<(i64, i64)>,
) -> Result<Option<Vec<ContactId>>, SegmentError> {
    let mut sql = Sql::new(db.get_database_backend());
    let select = |sql: &mut Sql, first: bool| {
        if !first {
            sql.push(" UNION ");
        }
        sql.push("SELECT e.contact_id AS id FROM events AS e WHERE e.workspace_id = ")
            .bind(workspace.0)
            .push(" AND e.kind IN (");
        for (i, kind) in kinds.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(kind.to_string());
        }
        sql.push(") AND e.occurred_at <= ").bind(now.millis());
    };
    select(&mut sql, true);
    sql.push(" AND e.id > ")
        .bind(previous.events_seen.unwrap_or(0));
    select(&mut sql, false);
    sql.push(" AND e.occurred_at > ").bind(previous.computed_at);
    if let Some((from, to)) = aging {
        select(&mut sql, false);
        sql.push(" AND e.occurred_at >= ")
            .bind(from)
            .push(" AND e.occurred_at <= ")
            .bind(to);
    }
    let contacts: Vec<ContactId> = db
        .query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| row.try_get::<i64>("", "id").map(ContactId))
        .collect::<Result<_, _>>()?;
    if contacts.len() as f64 > CATCH_UP_SHARE * stored as f64 && contacts.len() > REFRESH_CHUNK {
        return Ok(None);
    }
    Ok(Some(contacts))
}

/// The contacts of `workspace` with an interest profile.
async fn count_interest_contacts(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<u64, SegmentError> {
    let mut count = Sql::new(db.get_database_backend());
    count
        .push("SELECT COUNT(DISTINCT contact_id) AS contacts FROM contact_interests WHERE workspace_id = ")
        .bind(workspace.0);
    let contacts: i64 = match db.query_one_raw(count.build()).await? {
        Some(row) => row.try_get("", "contacts")?,
        None => 0,
    };
    Ok(u64::try_from(contacts).unwrap_or(0))
}

/// The event kinds that feed interests (those with a weight).
pub fn interest_kinds(settings: &InterestSettings) -> impl Iterator<Item = &str> {
    settings
        .weights
        .iter()
        .filter(|(_, weight)| **weight > 0.0)
        .map(|(kind, _)| kind.as_str())
}

/// Rewrites the interest profiles of `contacts` (of `workspace`) as of `now`, after events
/// of a weighted kind were stored for them, exactly as [`recompute`] computes them. A
/// profile's shares do not change as time passes without events (every weight decays by the
/// same factor), so this keeps them current between two recomputations; only events that
/// age past 60 half-lives wait for the next one. Returns the scores written.
pub async fn refresh_interests(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    contacts: &[ContactId],
    now: Timestamp,
    settings: &InterestSettings,
) -> Result<u64, SegmentError> {
    let backend = db.get_database_backend();
    let mut written = 0;
    for chunk in contacts.chunks(REFRESH_CHUNK) {
        let txn = db.begin().await?;
        let mut delete = Sql::new(backend);
        delete.push("DELETE FROM contact_interests WHERE contact_id IN (");
        for (i, contact) in chunk.iter().enumerate() {
            if i > 0 {
                delete.push(", ");
            }
            delete.bind(contact.0);
        }
        delete.push(")");
        txn.execute_raw(delete.build()).await?;
        if let Some(statement) =
            interest_statement(backend, workspace, now, settings, Scope::Contacts(chunk))
        {
            written += txn.execute_raw(statement).await?.rows_affected();
        }
        txn.commit().await?;
    }
    Ok(written)
}

#[derive(FromQueryResult)]
struct ComputationRow {
    computed_at: i64,
}

/// The traits and interests of one contact (of `workspace`), as last computed, with
/// `recency_days` counted to `now`.
pub async fn for_contact(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    contact: ContactId,
    now: Timestamp,
) -> Result<ContactTraits, SegmentError> {
    let backend = db.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push("SELECT computed_at FROM trait_computations WHERE workspace_id = ")
        .bind(workspace.0);
    let computed_at = ComputationRow::find_by_statement(sql.build())
        .one(db)
        .await?
        .map(|row| Timestamp::from_millis(row.computed_at));

    let mut sql = Sql::new(backend);
    sql.push(
        "SELECT orders, revenue, first_purchase_at, last_purchase_at, rfm_recency, \
         rfm_frequency, rfm_monetary, rfm_segment, clv, computed_at FROM contact_traits \
         WHERE contact_id = ",
    )
    .bind(contact.0)
    .push(" AND workspace_id = ")
    .bind(workspace.0);
    let purchases = PurchaseTraits::find_by_statement(sql.build())
        .one(db)
        .await?
        .map(|p| PurchaseTraits {
            recency_days: recency_days(p.last_purchase_at, now),
            ..p
        });

    let mut sql = Sql::new(backend);
    sql.push("SELECT category, score FROM contact_interests WHERE contact_id = ")
        .bind(contact.0)
        .push(" AND workspace_id = ")
        .bind(workspace.0)
        .push(" ORDER BY score DESC, category");
    let interests = Interest::find_by_statement(sql.build()).all(db).await?;
    let written = purchases
        .as_ref()
        .map(|p| Timestamp::from_millis(p.computed_at));
    Ok(ContactTraits {
        computed_at: computed_at.max(written),
        purchases,
        interests,
    })
}
