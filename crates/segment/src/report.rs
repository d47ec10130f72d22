//! What a marketer asks of a segment, saved or not: how big, how valuable, how reachable,
//! how it overlaps the others, who is in it, and how it changed over time.
//!
//! Every figure is one aggregate query over a set of contact ids: the rule's compiled query
//! for an unsaved rule, the current memberships for a stored segment.

use std::collections::BTreeMap;

use clarion_model::{Channel, ContactId, SegmentId, Timestamp, WorkspaceId, reachable_sql};
use sea_orm::{
    DatabaseConnection, FromQueryResult, QueryResult,
    sea_query::{Alias, Expr, ExprTrait, JoinType, Order, Query, SelectStatement},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    PreviewOptions, SegmentError,
    preview::run,
    store::{self, Segment},
};

const DAY: i64 = 86_400_000;

/// The contact ids of a stored segment's current members, as a subquery.
pub fn members_of(segment: SegmentId) -> SelectStatement {
    Query::select()
        .column("contact_id")
        .from("segment_memberships")
        .and_where(Expr::col("segment_id").eq(segment.0))
        .and_where(Expr::col("exited_at").is_null())
        .to_owned()
}

/// How many members each channel can reach ([`clarion_model::reachability`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Reachable {
    /// Members with an email address whose email subscription is `subscribed`.
    pub email: u64,
    /// Members whose webhook subscription is `subscribed`.
    pub webhook: u64,
}

/// What the members are worth, from their computed traits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct SegmentValue {
    /// The members' net revenue to date.
    pub revenue: f64,
    /// Their share of the whole base's revenue, 0..1 (0 when the base has none).
    pub revenue_share: f64,
    /// The members' average historic CLV, over members with purchases; `null` when none has.
    pub average_clv: Option<f64>,
}

/// How a segment overlaps another stored segment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Overlap {
    pub slug: String,
    pub name: String,
    /// Contacts in both.
    pub both: u64,
    /// `both` as a share of this segment's size.
    pub share_of_this: f64,
    /// `both` as a share of the other segment's size.
    pub share_of_other: f64,
}

/// Size, share of the base, value, reachability and overlap of a set of contacts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Overview {
    pub size: u64,
    /// Every contact of the workspace.
    pub base: u64,
    /// `size / base`, 0..1.
    pub share: f64,
    pub value: SegmentValue,
    pub reachable: Reachable,
    /// The stored segments sharing members with this one, largest overlap first.
    pub overlap: Vec<Overlap>,
}

#[derive(FromQueryResult)]
struct Totals {
    size: i64,
    email: Option<i64>,
    webhook: Option<i64>,
    revenue: Option<f64>,
    average_clv: Option<f64>,
}

fn sum_when(condition: &str) -> Expr {
    Expr::cust(format!("SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"))
}

fn totals_query(workspace: WorkspaceId, members: Option<SelectStatement>) -> SelectStatement {
    let mut query = Query::select();
    query
        .expr_as(Expr::col(("x", "id")).count(), "size")
        .expr_as(sum_when(&reachable_sql(Channel::Email, "x")), "email")
        .expr_as(sum_when(&reachable_sql(Channel::Webhook, "x")), "webhook")
        .expr_as(Expr::col(("t", "revenue")).sum(), "revenue")
        .expr_as(Expr::col(("t", "clv")).avg(), "average_clv")
        .from_as("contacts", "x")
        .join_as(
            JoinType::LeftJoin,
            "contact_traits",
            "t",
            Expr::col(("t", "contact_id")).equals(("x", "id")),
        )
        .and_where(Expr::col(("x", "workspace_id")).eq(workspace.0));
    if let Some(members) = members {
        query.and_where(Expr::col(("x", "id")).in_subquery(members));
    }
    query
}

async fn one<T: FromQueryResult>(
    db: &DatabaseConnection,
    query: &SelectStatement,
    options: PreviewOptions,
) -> Result<Option<T>, SegmentError> {
    let rows = run(db, query, options).await?;
    rows.first()
        .map(|row| T::from_query_result(row, "").map_err(SegmentError::from))
        .transpose()
}

fn count(n: Option<i64>) -> u64 {
    u64::try_from(n.unwrap_or(0)).unwrap_or(0)
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// The overview of the contacts `members` selects (a query of contact ids), compared with
/// the whole workspace and its stored segments. `exclude` leaves a segment out of the overlap
/// (the segment itself).
pub async fn overview(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    members: SelectStatement,
    exclude: Option<SegmentId>,
    options: PreviewOptions,
) -> Result<Overview, SegmentError> {
    let totals: Totals = one(db, &totals_query(workspace, Some(members.clone())), options)
        .await?
        .ok_or_else(|| SegmentError::Corrupt("an aggregate gave no row".into()))?;
    let base: Totals = one(db, &totals_query(workspace, None), options)
        .await?
        .ok_or_else(|| SegmentError::Corrupt("an aggregate gave no row".into()))?;
    let size = count(Some(totals.size));
    let overlap_query = Query::select()
        .column(("sm", "segment_id"))
        .expr_as(Expr::col(("sm", "contact_id")).count(), "both")
        .from_as("segment_memberships", "sm")
        .and_where(Expr::col(("sm", "exited_at")).is_null())
        .and_where(Expr::col(("sm", "contact_id")).in_subquery(members))
        .group_by_col(("sm", "segment_id"))
        .to_owned();
    let rows = run(db, &overlap_query, options).await?;
    let segments: BTreeMap<i64, Segment> = store::list(db, workspace)
        .await?
        .into_iter()
        .map(|s| (s.id.0, s))
        .collect();
    let mut overlap = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("", "segment_id")?;
        let both: i64 = row.try_get("", "both")?;
        if Some(SegmentId(id)) == exclude {
            continue;
        }
        if let Some(other) = segments.get(&id) {
            let both = count(Some(both));
            overlap.push(Overlap {
                slug: other.slug.clone(),
                name: other.name.clone(),
                both,
                share_of_this: ratio(both as f64, size as f64),
                share_of_other: ratio(both as f64, Ord::max(other.member_count, 0) as f64),
            });
        }
    }
    overlap.sort_by(|a, b| b.both.cmp(&a.both).then_with(|| a.slug.cmp(&b.slug)));
    let revenue = totals.revenue.unwrap_or(0.0);
    Ok(Overview {
        size,
        base: count(Some(base.size)),
        share: ratio(size as f64, count(Some(base.size)) as f64),
        value: SegmentValue {
            revenue,
            revenue_share: ratio(revenue, base.revenue.unwrap_or(0.0)),
            average_clv: totals.average_clv,
        },
        reachable: Reachable {
            email: count(totals.email),
            webhook: count(totals.webhook),
        },
        overlap,
    })
}

/// A contact as member lists show it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, FromQueryResult)]
pub struct MemberRow {
    #[serde(skip)]
    pub id: i64,
    pub external_id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub country: Option<String>,
    /// When the contact entered the segment (stored segments only), epoch milliseconds.
    #[serde(skip)]
    pub entered_at: Option<i64>,
}

fn member_columns(query: &mut SelectStatement) {
    query.columns([
        ("x", "id"),
        ("x", "external_id"),
        ("x", "email"),
        ("x", "first_name"),
        ("x", "last_name"),
        ("x", "country"),
    ]);
}

/// A page of the contacts with the given ids, in id order.
pub async fn contacts_by_id(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    ids: &[ContactId],
) -> Result<Vec<MemberRow>, SegmentError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = Query::select();
    member_columns(&mut query);
    query
        .expr_as(Expr::val(Option::<i64>::None), "entered_at")
        .from_as("contacts", "x")
        .and_where(Expr::col(("x", "workspace_id")).eq(workspace.0))
        .and_where(Expr::col(("x", "id")).is_in(ids.iter().map(|c| c.0)))
        .order_by(("x", "id"), Order::Asc);
    Ok(
        MemberRow::find_by_statement(db.get_database_backend().build(&query))
            .all(db)
            .await?,
    )
}

/// Up to `limit` current members of a stored segment after the contact `after`, in contact
/// id order, with the time each entered.
pub async fn members_page(
    db: &DatabaseConnection,
    segment: &Segment,
    after: Option<ContactId>,
    limit: u64,
) -> Result<Vec<MemberRow>, SegmentError> {
    let mut query = Query::select();
    member_columns(&mut query);
    query
        .expr_as(Expr::col(("sm", "entered_at")), "entered_at")
        .from_as("segment_memberships", "sm")
        .join_as(
            JoinType::InnerJoin,
            "contacts",
            "x",
            Expr::col(("x", "id")).equals(("sm", "contact_id")),
        )
        .and_where(Expr::col(("sm", "segment_id")).eq(segment.id.0))
        .and_where(Expr::col(("sm", "exited_at")).is_null())
        .order_by(("sm", "contact_id"), Order::Asc)
        .limit(limit);
    if let Some(after) = after {
        query.and_where(Expr::col(("sm", "contact_id")).gt(after.0));
    }
    Ok(
        MemberRow::find_by_statement(db.get_database_backend().build(&query))
            .all(db)
            .await?,
    )
}

/// One UTC day of a segment's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub entered: u64,
    pub exited: u64,
    /// Members at the end of the day.
    pub size: u64,
}

/// Entries, exits and size per UTC day from `since` up to and including `until`'s day.
pub async fn history(
    db: &DatabaseConnection,
    segment: &Segment,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<Day>, SegmentError> {
    let mut all = histories(db, &[segment.id], since, until).await?;
    Ok(all.remove(&segment.id.0).unwrap_or_default())
}

/// [`history`] of several segments at once, by segment id: three grouped queries whatever
/// their number, for lists that draw each segment's size over time.
pub async fn histories(
    db: &DatabaseConnection,
    segments: &[SegmentId],
    since: Timestamp,
    until: Timestamp,
) -> Result<BTreeMap<i64, Vec<Day>>, SegmentError> {
    if segments.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ids: Vec<i64> = segments.iter().map(|s| s.0).collect();
    let first_day = since.millis().div_euclid(DAY);
    let last_day = until.millis().div_euclid(DAY);
    let start = first_day * DAY;
    let end = (last_day + 1) * DAY;
    // Members at the start: entered before it and not exited before it.
    let before = Query::select()
        .column("segment_id")
        .expr_as(Expr::col("id").count(), "n")
        .from("segment_memberships")
        .and_where(Expr::col("segment_id").is_in(ids.clone()))
        .and_where(Expr::col("entered_at").lt(start))
        .and_where(
            Expr::col("exited_at")
                .is_null()
                .or(Expr::col("exited_at").gte(start)),
        )
        .group_by_col("segment_id")
        .to_owned();
    let options = PreviewOptions::default();
    let starting: BTreeMap<i64, i64> = run(db, &before, options)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "segment_id")?, row.try_get("", "n")?)))
        .collect::<Result<_, SegmentError>>()?;
    let per_day = |column: &'static str| {
        let day = Expr::cust(format!("(\"{column}\" / {DAY})"));
        Query::select()
            .column("segment_id")
            .expr_as(day.clone(), "day")
            .expr_as(Expr::col("id").count(), "n")
            .from("segment_memberships")
            .and_where(Expr::col("segment_id").is_in(ids.clone()))
            .and_where(Expr::col(column).gte(start))
            .and_where(Expr::col(column).lt(end))
            .group_by_col("segment_id")
            .group_by_columns([Alias::new("day")])
            .to_owned()
    };
    let entered = day_counts(run(db, &per_day("entered_at"), options).await?)?;
    let exited = day_counts(run(db, &per_day("exited_at"), options).await?)?;
    let mut all = BTreeMap::new();
    for id in ids {
        let mut size = starting.get(&id).copied().unwrap_or(0);
        let mut days = Vec::new();
        for day in first_day..=last_day {
            let e = entered.get(&(id, day)).copied().unwrap_or(0);
            let x = exited.get(&(id, day)).copied().unwrap_or(0);
            size += e - x;
            days.push(Day {
                date: chrono::DateTime::from_timestamp_millis(day * DAY)
                    .map(|d| d.date_naive().to_string())
                    .unwrap_or_default(),
                entered: count(Some(e)),
                exited: count(Some(x)),
                size: count(Some(size)),
            });
        }
        all.insert(id, days);
    }
    Ok(all)
}

/// Counts by (segment id, day).
fn day_counts(rows: Vec<QueryResult>) -> Result<BTreeMap<(i64, i64), i64>, SegmentError> {
    rows.iter()
        .map(|row| {
            Ok((
                (row.try_get("", "segment_id")?, row.try_get("", "day")?),
                row.try_get("", "n")?,
            ))
        })
        .collect()
}

/// The net revenue of each segment's current members, by segment id, in one grouped query
/// (segments without members with revenue are left out).
pub async fn revenues(
    db: &DatabaseConnection,
    segments: &[SegmentId],
) -> Result<BTreeMap<i64, f64>, SegmentError> {
    if segments.is_empty() {
        return Ok(BTreeMap::new());
    }
    let query = Query::select()
        .column(("sm", "segment_id"))
        .expr_as(Expr::col(("t", "revenue")).sum(), "revenue")
        .from_as("segment_memberships", "sm")
        .join_as(
            JoinType::InnerJoin,
            "contact_traits",
            "t",
            Expr::col(("t", "contact_id")).equals(("sm", "contact_id")),
        )
        .and_where(Expr::col(("sm", "segment_id")).is_in(segments.iter().map(|s| s.0)))
        .and_where(Expr::col(("sm", "exited_at")).is_null())
        .group_by_col(("sm", "segment_id"))
        .to_owned();
    run(db, &query, PreviewOptions::default())
        .await?
        .iter()
        .map(|row| {
            let revenue: Option<f64> = row.try_get("", "revenue")?;
            Ok((row.try_get("", "segment_id")?, revenue.unwrap_or(0.0)))
        })
        .collect()
}

/// A stay of a contact in a segment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Stay {
    pub slug: String,
    pub name: String,
    pub entered_at: Timestamp,
    /// `null` while the contact is a member.
    pub exited_at: Option<Timestamp>,
}

/// Every stay of a contact in the workspace's segments, current ones first, newest first.
pub async fn stays_of_contact(
    db: &DatabaseConnection,
    contact: ContactId,
) -> Result<Vec<Stay>, SegmentError> {
    #[derive(FromQueryResult)]
    struct Row {
        slug: String,
        name: String,
        entered_at: i64,
        exited_at: Option<i64>,
    }
    let query = Query::select()
        .columns([("s", "slug"), ("s", "name")])
        .columns([("sm", "entered_at"), ("sm", "exited_at")])
        .from_as("segment_memberships", "sm")
        .join_as(
            JoinType::InnerJoin,
            "segments",
            "s",
            Expr::col(("s", "id")).equals(("sm", "segment_id")),
        )
        .and_where(Expr::col(("sm", "contact_id")).eq(contact.0))
        .order_by_expr(
            Expr::cust("CASE WHEN sm.exited_at IS NULL THEN 0 ELSE 1 END"),
            Order::Asc,
        )
        .order_by(("sm", "entered_at"), Order::Desc)
        .order_by(("s", "slug"), Order::Asc)
        .to_owned();
    let rows = Row::find_by_statement(db.get_database_backend().build(&query))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Stay {
            slug: r.slug,
            name: r.name,
            entered_at: Timestamp::from_millis(r.entered_at),
            exited_at: r.exited_at.map(Timestamp::from_millis),
        })
        .collect())
}
