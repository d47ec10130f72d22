//! Suggested segments: groups of customers found by k-means clustering on their RFM scores and
//! interest profiles, each described in words and approximated by a rule that can be saved as
//! a segment.
//!
//! How it works:
//! 1. The base is the contacts with computed traits (customers with at least one purchase).
//!    Each is a point: its recency, frequency and monetary scores scaled from 1..5 to 0..1,
//!    and its interest share in each of the workspace's most common categories (0..1).
//! 2. k-means (linfa-clustering, k-means++ initialisation, a seeded random generator) is fitted
//!    on a deterministic sample of at most `sample` contacts, spread over the whole id range by
//!    a seeded ordering of the ids, so the same data and seed give the same suggestions.
//! 3. Everyone in the base is then assigned to the nearest centre page by page (never more
//!    than one page in memory), which gives each group's exact size and average profile.
//! 4. Each group is described by what sets it apart from the whole base (scores at least 0.75
//!    above or below the average, categories with at least 10 points more interest), and
//!    approximated by up to three thresholds on traits and interests, chosen greedily on the
//!    sample for the best F1 score against the group; precision and recall are reported.

use std::collections::BTreeMap;

use clarion_model::WorkspaceId;
use linfa::{
    DatasetBase,
    traits::{Fit, Predict},
};
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand_xoshiro::{Xoshiro256Plus, rand_core::SeedableRng};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, QueryResult,
    sea_query::{Expr, ExprTrait, Order, Query, SelectStatement},
};
use serde::Serialize;
use serde_json::Number;

use crate::{
    RuleError, SegmentError,
    rule::{Comparison, Literal, Op, Operand, Rule},
};

/// How suggestions are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuggestOptions {
    /// How many groups to look for (2 to [`MAX_CLUSTERS`]).
    pub clusters: usize,
    /// At most this many contacts are used to fit the groups (1 to [`MAX_SAMPLE`]).
    pub sample: usize,
    /// Seeds the sample order and the k-means initialisation.
    pub seed: u64,
    /// How many of the most common interest categories are features (1 to [`MAX_CATEGORIES`]).
    pub categories: usize,
    /// Contacts read per page when everyone is assigned to a group.
    pub page_size: u64,
}

pub const MAX_CLUSTERS: usize = 12;
pub const MAX_SAMPLE: usize = 200_000;
pub const MAX_CATEGORIES: usize = 30;
/// k-means runs from different starting centres; the one with the tightest groups is kept.
const RUNS: usize = 3;

impl Default for SuggestOptions {
    fn default() -> Self {
        SuggestOptions {
            clusters: 4,
            sample: 10_000,
            seed: 42,
            categories: 12,
            page_size: 5_000,
        }
    }
}

impl SuggestOptions {
    /// Checks the bounds; an error names the bad option.
    pub fn check(&self) -> Result<(), SegmentError> {
        let bad = |path: &str, message: String| {
            Err(SegmentError::InvalidRequest(vec![RuleError {
                path: path.to_string(),
                message,
            }]))
        };
        if !(2..=MAX_CLUSTERS).contains(&self.clusters) {
            return bad(
                "clusters",
                format!("expected 2 to {MAX_CLUSTERS} groups, not {}", self.clusters),
            );
        }
        if !(1..=MAX_SAMPLE).contains(&self.sample) {
            return bad(
                "sample",
                format!("expected 1 to {MAX_SAMPLE} contacts, not {}", self.sample),
            );
        }
        if !(1..=MAX_CATEGORIES).contains(&self.categories) {
            return bad(
                "categories",
                format!(
                    "expected 1 to {MAX_CATEGORIES} categories, not {}",
                    self.categories
                ),
            );
        }
        if self.page_size == 0 {
            return bad("page_size", "expected at least 1".to_string());
        }
        Ok(())
    }
}

/// The average profile of a group (or of the whole base).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    /// Mean RFM scores, 1 to 5.
    pub recency: f64,
    pub frequency: f64,
    pub monetary: f64,
    /// Mean interest share per category, 0 to 1, for the categories used as features.
    pub interests: BTreeMap<String, f64>,
}

/// One suggested segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// A short name, e.g. "Recent kitchen fans".
    pub name: String,
    /// A slug made from the name, unique among the suggestions.
    pub slug: String,
    /// The segment category to save it under: `behavioural` when interests set it apart,
    /// `value` otherwise.
    pub category: &'static str,
    /// What sets the group apart from the whole base, in words.
    pub description: String,
    /// Contacts in the group.
    pub size: u64,
    /// Share of the base in the group, in percent.
    pub share_pct: f64,
    /// A rule approximating the group, ready for `POST /api/v1/segments`.
    pub rule: Rule,
    /// The same rule in the text form.
    pub rule_text: String,
    /// On the sample: the share of contacts matching the rule that are in the group.
    pub rule_precision: f64,
    /// On the sample: the share of the group that matches the rule.
    pub rule_recall: f64,
    pub profile: Profile,
}

/// The suggestions, largest group first, with what they were computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestions {
    /// Contacts with computed traits; the groups' sizes add up to it.
    pub base: u64,
    /// Contacts the groups were fitted on.
    pub sampled: usize,
    /// The profile of the whole base.
    pub overall: Profile,
    pub suggestions: Vec<Suggestion>,
}

/// One contact as a point: RFM scores (1..5) and interest shares per feature category.
#[derive(Debug, Clone)]
struct Point {
    rfm: [f64; 3],
    interests: Vec<f64>,
}

impl Point {
    fn features(&self) -> impl Iterator<Item = f64> + '_ {
        self.rfm
            .iter()
            .map(|s| (s - 1.0) / 4.0)
            .chain(self.interests.iter().copied())
    }
}

const RFM_TRAITS: [&str; 3] = ["rfm_recency", "rfm_frequency", "rfm_monetary"];

fn hash_order(backend: DbBackend, seed: u64) -> Expr {
    // Ids ordered by the fractional part of id × golden ratio (a Weyl sequence modulo a prime),
    // shifted by the seed: consecutive ids land far apart, so the first rows are a spread-out
    // sample of the whole id range. Computed in the database so only the sample travels; every
    // intermediate value stays well within 64 bits.
    let seed = (seed % 1_000_003) as i64;
    let template = match backend {
        DbBackend::Postgres => "(((contact_id % 1000003) * 618034 + $1) % 1000003)",
        _ => "(((contact_id % 1000003) * 618034 + ?) % 1000003)",
    };
    Expr::cust_with_exprs(template, [Expr::val(seed)])
}

fn traits_of(workspace: WorkspaceId) -> SelectStatement {
    Query::select()
        .columns(["contact_id", "rfm_recency", "rfm_frequency", "rfm_monetary"])
        .from("contact_traits")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned()
}

fn score(row: &sea_orm::QueryResult, column: &str) -> Result<f64, SegmentError> {
    // smallint on PostgreSQL, integer on SQLite.
    let value: i64 = match row.try_get::<i16>("", column) {
        Ok(v) => i64::from(v),
        Err(_) => row.try_get::<i64>("", column)?,
    };
    Ok(value as f64)
}

/// Which contacts' interests to read: those the sample query selects, or an id range.
enum Scope<'a> {
    Sample(&'a SelectStatement),
    Ids(i64, i64),
}

/// Turns traits rows and the interests of the same contacts into points, in row order.
async fn points(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    rows: &[QueryResult],
    scope: Scope<'_>,
    categories: &[String],
) -> Result<Vec<Point>, SegmentError> {
    let mut index = BTreeMap::new();
    let mut points = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("", "contact_id")?;
        index.insert(id, points.len());
        points.push(Point {
            rfm: [
                score(row, "rfm_recency")?,
                score(row, "rfm_frequency")?,
                score(row, "rfm_monetary")?,
            ],
            interests: vec![0.0; categories.len()],
        });
    }
    if points.is_empty() || categories.is_empty() {
        return Ok(points);
    }
    let mut interests = Query::select()
        .columns(["contact_id", "category", "score"])
        .from("contact_interests")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("category").is_in(categories.iter().cloned()))
        .to_owned();
    match scope {
        Scope::Ids(first, last) => {
            interests.and_where(Expr::col("contact_id").between(first, last));
        }
        Scope::Sample(traits) => {
            let mut sample_ids = traits.clone();
            sample_ids.clear_selects().column("contact_id");
            interests.and_where(Expr::col("contact_id").in_subquery(sample_ids));
        }
    }
    let slot: BTreeMap<&str, usize> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    for row in db.query_all(&interests).await? {
        let id: i64 = row.try_get("", "contact_id")?;
        let category: String = row.try_get("", "category")?;
        let score: f64 = row.try_get("", "score")?;
        if let (Some(at), Some(j)) = (index.get(&id), slot.get(category.as_str())) {
            points[*at].interests[*j] = score;
        }
    }
    Ok(points)
}

fn matrix(points: &[Point], width: usize) -> Result<Array2<f64>, SegmentError> {
    let flat: Vec<f64> = points.iter().flat_map(Point::features).collect();
    Array2::from_shape_vec((points.len(), width), flat).map_err(|e| {
        SegmentError::InvalidRequest(vec![RuleError {
            path: String::new(),
            message: format!("could not shape the features: {e}"),
        }])
    })
}

/// Sums of a group's points, for its average profile.
#[derive(Debug, Clone)]
struct Sums {
    count: u64,
    rfm: [f64; 3],
    interests: Vec<f64>,
}

impl Sums {
    fn new(categories: usize) -> Sums {
        Sums {
            count: 0,
            rfm: [0.0; 3],
            interests: vec![0.0; categories],
        }
    }

    fn add(&mut self, point: &Point) {
        self.count += 1;
        for (sum, value) in self.rfm.iter_mut().zip(point.rfm) {
            *sum += value;
        }
        for (sum, value) in self.interests.iter_mut().zip(&point.interests) {
            *sum += value;
        }
    }

    fn profile(&self, categories: &[String]) -> Profile {
        let n = Ord::max(self.count, 1) as f64;
        Profile {
            recency: self.rfm[0] / n,
            frequency: self.rfm[1] / n,
            monetary: self.rfm[2] / n,
            interests: categories
                .iter()
                .zip(&self.interests)
                .map(|(c, s)| (c.clone(), s / n))
                .collect(),
        }
    }
}

/// Suggests segments for `workspace`; see the module documentation for how.
pub async fn suggest(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    options: SuggestOptions,
) -> Result<Suggestions, SegmentError> {
    options.check()?;
    let backend = db.get_database_backend();
    let count = Query::select()
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from("contact_traits")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    let base: i64 = match db.query_one(&count).await? {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    let base = u64::try_from(base).unwrap_or(0);
    if base == 0 {
        return Err(SegmentError::TraitsMissing);
    }

    // The most common interest categories among the base.
    let category_order = match backend {
        DbBackend::Postgres => Expr::cust("i.category COLLATE \"C\""),
        _ => Expr::cust("i.category"),
    };
    let top = Query::select()
        .column(("i", "category"))
        .from_as("contact_interests", "i")
        .inner_join(
            "contact_traits",
            Expr::col(("contact_traits", "contact_id")).equals(("i", "contact_id")),
        )
        .and_where(Expr::col(("i", "workspace_id")).eq(workspace.0))
        .group_by_col(("i", "category"))
        .order_by_expr(Expr::cust("SUM(i.score)"), Order::Desc)
        .order_by_expr(category_order, Order::Asc)
        .limit(options.categories as u64)
        .to_owned();
    let categories: Vec<String> = db
        .query_all(&top)
        .await?
        .iter()
        .map(|row| row.try_get("", "category"))
        .collect::<Result<_, _>>()?;
    let width = 3 + categories.len();

    // Fit on a deterministic sample.
    let mut sample_query = traits_of(workspace);
    sample_query
        .order_by_expr(hash_order(backend, options.seed), Order::Asc)
        .order_by("contact_id", Order::Asc)
        .limit(options.sample as u64);
    let sample_rows = db.query_all(&sample_query).await?;
    let sample = points(
        db,
        workspace,
        &sample_rows,
        Scope::Sample(&sample_query),
        &categories,
    )
    .await?;
    if sample.len() < options.clusters {
        return Err(SegmentError::InvalidRequest(vec![RuleError {
            path: "clusters".to_string(),
            message: format!(
                "only {} contact(s) have computed traits; ask for at most that many groups",
                sample.len()
            ),
        }]));
    }
    let records = matrix(&sample, width)?;
    let (clusters, seed) = (options.clusters, options.seed);
    // Fitting is seconds of CPU work on a large sample: it runs on a blocking thread, not on
    // the async runtime serving requests.
    let fitted = tokio::task::spawn_blocking(move || {
        let model = KMeans::params_with_rng(clusters, Xoshiro256Plus::seed_from_u64(seed))
            .n_runs(RUNS)
            .max_n_iterations(200)
            .tolerance(1e-4)
            .fit(&DatasetBase::from(records.clone()))?;
        let labels: Vec<usize> = model.predict(&records).to_vec();
        Ok::<_, linfa_clustering::KMeansError>((model, labels))
    })
    .await
    .map_err(|e| SegmentError::Clustering(e.to_string()))?;
    let (model, sample_labels) = fitted.map_err(|e| {
        SegmentError::InvalidRequest(vec![RuleError {
            path: "clusters".to_string(),
            message: format!("the groups could not be fitted (try fewer): {e}"),
        }])
    })?;

    // Assign everyone, page by page, for exact sizes and profiles.
    let mut sums = vec![Sums::new(categories.len()); options.clusters];
    let mut overall = Sums::new(categories.len());
    let mut after: Option<i64> = None;
    loop {
        let mut page = traits_of(workspace);
        if let Some(after) = after {
            page.and_where(Expr::col("contact_id").gt(after));
        }
        page.order_by("contact_id", Order::Asc)
            .limit(options.page_size);
        let first = after.map_or(i64::MIN, |a| a + 1);
        // The last id of the page is only known after reading it; interests are read for
        // the ids from the page's first to its last.
        let rows = db.query_all(&page).await?;
        let Some(last_row) = rows.last() else { break };
        let last: i64 = last_row.try_get("", "contact_id")?;
        let page_points =
            points(db, workspace, &rows, Scope::Ids(first, last), &categories).await?;
        let labels = model.predict(&matrix(&page_points, width)?);
        for (point, label) in page_points.iter().zip(labels.iter()) {
            if let Some(group) = sums.get_mut(*label) {
                group.add(point);
            }
            overall.add(point);
        }
        after = Some(last);
        if (rows.len() as u64) < options.page_size {
            break;
        }
    }

    let overall_profile = overall.profile(&categories);
    let mut suggestions = Vec::new();
    for (group, group_sums) in sums.iter().enumerate() {
        if group_sums.count == 0 {
            continue;
        }
        let profile = group_sums.profile(&categories);
        let members: Vec<bool> = sample_labels.iter().map(|l| *l == group).collect();
        let (conditions, precision, recall) = approximate(&sample, &members, &categories);
        let interest_led = conditions
            .iter()
            .any(|c| matches!(c, Condition::Interest { .. }));
        let rule = match conditions.len() {
            1 => conditions[0].to_rule(&categories),
            _ => Rule::All(conditions.iter().map(|c| c.to_rule(&categories)).collect()),
        };
        let (name, description) = describe(&profile, &overall_profile);
        suggestions.push(Suggestion {
            name,
            slug: String::new(),
            category: if interest_led { "behavioural" } else { "value" },
            description,
            size: group_sums.count,
            share_pct: group_sums.count as f64 * 100.0 / Ord::max(overall.count, 1) as f64,
            rule_text: rule.to_text(),
            rule,
            rule_precision: precision,
            rule_recall: recall,
            profile,
        });
    }
    suggestions.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(&b.name)));
    name_uniquely(&mut suggestions);
    Ok(Suggestions {
        base: overall.count,
        sampled: sample.len(),
        overall: overall_profile,
        suggestions,
    })
}

/// Gives repeated names a number and makes a slug of each.
fn name_uniquely(suggestions: &mut [Suggestion]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for s in suggestions.iter_mut() {
        let n = seen.entry(s.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            s.name = format!("{} ({n})", s.name);
        }
        s.slug = slugify(&s.name);
    }
}

fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        "suggested".to_string()
    } else {
        format!("suggested-{slug}")
    }
}

/// A threshold on one feature.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Condition {
    /// `trait rfm_x >= score` (or `<=`).
    Score {
        which: usize,
        at_least: bool,
        score: i64,
    },
    /// `interest category >= share`.
    Interest { slot: usize, share: f64 },
}

impl Condition {
    fn holds(&self, point: &Point) -> bool {
        match *self {
            Condition::Score {
                which,
                at_least,
                score,
            } => {
                let value = point.rfm[which];
                if at_least {
                    value >= score as f64
                } else {
                    value <= score as f64
                }
            }
            Condition::Interest { slot, share } => point.interests[slot] >= share - 1e-9,
        }
    }

    fn to_rule(self, categories: &[String]) -> Rule {
        match self {
            Condition::Score {
                which,
                at_least,
                score,
            } => Rule::Trait(Comparison {
                name: RFM_TRAITS[which].to_string(),
                op: if at_least { Op::Ge } else { Op::Le },
                value: Operand::One(Literal::Number(Number::from(score))),
            }),
            Condition::Interest { slot, share } => Rule::Interest(Comparison {
                name: categories[slot].clone(),
                op: Op::Ge,
                value: Operand::One(Literal::Number(
                    Number::from_f64(share).unwrap_or_else(|| Number::from(0)),
                )),
            }),
        }
    }
}

/// Precision, recall and F1 of `conditions` (all must hold) against `members`.
fn score_conditions(
    points: &[Point],
    members: &[bool],
    conditions: &[Condition],
) -> (f64, f64, f64) {
    let (mut hit, mut matched, mut wanted) = (0_u64, 0_u64, 0_u64);
    for (point, member) in points.iter().zip(members) {
        let holds = conditions.iter().all(|c| c.holds(point));
        if holds {
            matched += 1;
        }
        if *member {
            wanted += 1;
            if holds {
                hit += 1;
            }
        }
    }
    let precision = if matched == 0 {
        0.0
    } else {
        hit as f64 / matched as f64
    };
    let recall = if wanted == 0 {
        0.0
    } else {
        hit as f64 / wanted as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    (precision, recall, f1)
}

/// The midpoint between the group's mean and the rest's mean of each feature on the sample:
/// RFM scores first, then interests.
fn midpoints(points: &[Point], members: &[bool], categories: usize) -> Vec<f64> {
    let width = 3 + categories;
    let mut inside = vec![0.0; width];
    let mut outside = vec![0.0; width];
    let (mut n_in, mut n_out) = (0.0_f64, 0.0_f64);
    for (point, member) in points.iter().zip(members) {
        let values = point.rfm.iter().chain(point.interests.iter());
        let (sums, n) = if *member {
            (&mut inside, &mut n_in)
        } else {
            (&mut outside, &mut n_out)
        };
        *n += 1.0;
        for (sum, value) in sums.iter_mut().zip(values) {
            *sum += value;
        }
    }
    inside
        .iter()
        .zip(&outside)
        .map(|(i, o)| (i / n_in.max(1.0) + o / n_out.max(1.0)) / 2.0)
        .collect()
}

/// Up to three thresholds whose conjunction best matches the group on the sample, chosen
/// greedily by F1 (ties go to the threshold nearest the midpoint between the group and the
/// rest, which leaves the widest margin); returns them with their precision and recall.
fn approximate(
    points: &[Point],
    members: &[bool],
    categories: &[String],
) -> (Vec<Condition>, f64, f64) {
    let middle = midpoints(points, members, categories.len());
    // How far a threshold is from its feature's midpoint, on a 0..1 scale.
    let distance = |c: &Condition| match *c {
        Condition::Score { which, score, .. } => (score as f64 - middle[which]).abs() / 4.0,
        Condition::Interest { slot, share } => (share - middle[3 + slot]).abs(),
    };
    // Interests are scanned first, so at equal F1 and distance an interest threshold wins.
    let mut candidates = Vec::new();
    for slot in 0..categories.len() {
        for step in 1..=19 {
            candidates.push(Condition::Interest {
                slot,
                share: f64::from(step) * 0.05,
            });
        }
    }
    for which in 0..3 {
        for score in 2..=5 {
            candidates.push(Condition::Score {
                which,
                at_least: true,
                score,
            });
        }
        for score in 1..=4 {
            candidates.push(Condition::Score {
                which,
                at_least: false,
                score,
            });
        }
    }
    let mut chosen: Vec<Condition> = Vec::new();
    let mut best = (0.0, 0.0, 0.0);
    for _ in 0..3 {
        let mut round_best: Option<(Condition, (f64, f64, f64), f64)> = None;
        for candidate in &candidates {
            if chosen.iter().any(|c| same_feature(c, candidate)) {
                continue;
            }
            let mut trial = chosen.clone();
            trial.push(*candidate);
            let scored = score_conditions(points, members, &trial);
            let far = distance(candidate);
            let better = match round_best {
                None => true,
                Some((_, b, b_far)) => {
                    scored.2 > b.2 + 1e-12 || ((scored.2 - b.2).abs() <= 1e-12 && far < b_far)
                }
            };
            if better {
                round_best = Some((*candidate, scored, far));
            }
        }
        match round_best {
            Some((condition, scored, _)) if chosen.is_empty() || scored.2 > best.2 + 0.01 => {
                chosen.push(condition);
                best = scored;
            }
            _ => break,
        }
    }
    // Round interest thresholds for display, e.g. 0.35 rather than 0.35000000000000003.
    for c in &mut chosen {
        if let Condition::Interest { share, .. } = c {
            *share = (*share * 100.0).round() / 100.0;
        }
    }
    (chosen, best.0, best.1)
}

fn same_feature(a: &Condition, b: &Condition) -> bool {
    match (a, b) {
        (Condition::Score { which: x, .. }, Condition::Score { which: y, .. }) => x == y,
        (Condition::Interest { slot: x, .. }, Condition::Interest { slot: y, .. }) => x == y,
        _ => false,
    }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// A name and a description of what sets `group` apart from `overall`.
fn describe(group: &Profile, overall: &Profile) -> (String, String) {
    let words = [
        (group.recency - overall.recency, "recent", "lapsed"),
        (
            group.frequency - overall.frequency,
            "frequent",
            "infrequent",
        ),
        (
            group.monetary - overall.monetary,
            "high-spending",
            "low-spending",
        ),
    ];
    let adjectives: Vec<&str> = words
        .iter()
        .filter_map(|(diff, high, low)| {
            if *diff >= 0.75 {
                Some(*high)
            } else if *diff <= -0.75 {
                Some(*low)
            } else {
                None
            }
        })
        .collect();
    let mut leaning: Vec<(&String, f64, f64)> = group
        .interests
        .iter()
        .map(|(category, share)| {
            let base = overall.interests.get(category).copied().unwrap_or(0.0);
            (category, *share, base)
        })
        .filter(|(_, share, base)| share - base >= 0.10)
        .collect();
    leaning.sort_by(|a, b| (b.1 - b.2).total_cmp(&(a.1 - a.2)).then(a.0.cmp(b.0)));
    leaning.truncate(2);

    let buyers = if adjectives.is_empty() {
        "buyers close to the average in recency, frequency and spend".to_string()
    } else {
        format!("{} buyers", adjectives.join(", "))
    };
    let mut description = buyers;
    for (category, share, base) in &leaning {
        description.push_str(&format!(
            "; {} of their interest in {category} vs {} overall",
            percent(*share),
            percent(*base)
        ));
    }
    description.push_str(&format!(
        " (mean scores R {:.1}, F {:.1}, M {:.1} vs {:.1}, {:.1}, {:.1} overall)",
        group.recency,
        group.frequency,
        group.monetary,
        overall.recency,
        overall.frequency,
        overall.monetary
    ));

    let lead = adjectives.first().copied();
    let name = match (lead, leaning.first()) {
        (Some(adjective), Some((category, _, _))) => format!("{adjective} {category} fans"),
        (None, Some((category, _, _))) => format!("{category} fans"),
        (Some(_), None) => format!("{} buyers", adjectives.join(" ")),
        (None, None) => "average buyers".to_string(),
    };
    let mut chars = name.chars();
    let name = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => name,
    };
    (name, description)
}
