//! The current members of stored segments, as campaigns read them: a page at a time with what
//! reachability needs, the members of several segments within a range of contacts, sizes,
//! samples, and which of a few contacts belong to which segments.
//!
//! A current member has a `segment_memberships` row with `exited_at IS NULL`. Every read here
//! is answered by the `(segment_id, contact_id)` index, so a launch or an audience count
//! streams a segment of any size with flat memory.

use std::collections::{BTreeMap, HashMap, HashSet};

use clarion_model::{
    Channel, ContactId, SegmentId, SubscriptionStatus, Suppression, WorkspaceId, reachability,
};
use sea_orm::{
    ConnectionTrait, DbErr, QueryResult,
    sea_query::{Expr, ExprTrait, JoinType, Order, Query, SelectStatement},
};

/// A current member of a segment with what decides whether it can be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub contact: ContactId,
    /// Whether the contact has an email address.
    pub has_email: bool,
    /// The stored email subscription; `None` when it is none Clarion knows.
    pub email_status: Option<SubscriptionStatus>,
    /// The stored webhook subscription; `None` when it is none Clarion knows.
    pub webhook_status: Option<SubscriptionStatus>,
    /// The contact's time zone, if it has one (a name no longer known counts as none).
    pub time_zone: Option<clarion_model::TimeZone>,
}

impl Member {
    /// Whether the member can be sent to on `channel` (see [`clarion_model::reachability`]).
    ///
    /// # Errors
    /// Why not.
    pub fn reachability(&self, channel: Channel) -> Result<(), Suppression> {
        let status = match channel {
            Channel::Email => self.email_status,
            Channel::Webhook => self.webhook_status,
        };
        reachability(channel, self.has_email, status)
    }

    fn from_row(row: &QueryResult) -> Result<Self, DbErr> {
        let has_email: i64 = row.try_get("", "has_email")?;
        let status = |column: &str| -> Result<Option<SubscriptionStatus>, DbErr> {
            let value: String = row.try_get("", column)?;
            Ok(SubscriptionStatus::parse(&value).ok())
        };
        Ok(Self {
            contact: ContactId(row.try_get("", "contact_id")?),
            has_email: has_email != 0,
            email_status: status("email_status")?,
            webhook_status: status("webhook_status")?,
            time_zone: row
                .try_get::<Option<String>>("", "time_zone")?
                .and_then(|name| clarion_model::TimeZone::parse(&name).ok()),
        })
    }
}

/// Up to `limit` current members of `segment` after the contact `after` (`None`: from the
/// first), in contact id order.
///
/// # Errors
/// Database failures.
pub async fn page(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    segment: SegmentId,
    after: Option<ContactId>,
    limit: u64,
) -> Result<Vec<Member>, DbErr> {
    db.query_all(&page_query(workspace, segment, after, limit))
        .await?
        .iter()
        .map(Member::from_row)
        .collect()
}

/// The query behind [`page`]. The `(segment_id, contact_id)` index answers it.
fn page_query(
    workspace: WorkspaceId,
    segment: SegmentId,
    after: Option<ContactId>,
    limit: u64,
) -> SelectStatement {
    let after = after.map_or(i64::MIN, |c| c.0);
    Query::select()
        .column(("m", "contact_id"))
        .columns([
            ("c", "email_status"),
            ("c", "webhook_status"),
            ("c", "time_zone"),
        ])
        .expr_as(
            Expr::cust("CAST(CASE WHEN c.email IS NOT NULL THEN 1 ELSE 0 END AS BIGINT)"),
            "has_email",
        )
        .from_as("segment_memberships", "m")
        .join_as(
            JoinType::InnerJoin,
            "contacts",
            "c",
            Expr::col(("c", "id")).equals(("m", "contact_id")),
        )
        .and_where(Expr::col(("m", "segment_id")).eq(segment.0))
        .and_where(Expr::col(("m", "exited_at")).is_null())
        .and_where(Expr::col(("m", "contact_id")).gt(after))
        // Said again of the contacts, so that a merge join starts the contacts' index there
        // too instead of scanning it from the beginning at every page.
        .and_where(Expr::col(("c", "id")).gt(after))
        .and_where(Expr::col(("c", "workspace_id")).eq(workspace.0))
        .order_by(("m", "contact_id"), Order::Asc)
        .limit(limit)
        .to_owned()
}

/// The contacts between `low` and `high` (inclusive) who are current members of one of
/// `segments`.
///
/// A range read per page rather than a `NOT EXISTS` in the page query: with statistics that
/// lag behind a fresh materialization, PostgreSQL planned that anti-join as a scan of the
/// other segment per member (42 s for 10,000 members); the range read uses the
/// `(segment_id, contact_id)` index whatever the statistics say.
///
/// # Errors
/// Database failures.
pub async fn in_any_between(
    db: &impl ConnectionTrait,
    segments: &[SegmentId],
    low: ContactId,
    high: ContactId,
) -> Result<HashSet<ContactId>, DbErr> {
    if segments.is_empty() {
        return Ok(HashSet::new());
    }
    let select = Query::select()
        .column("contact_id")
        .from("segment_memberships")
        .and_where(Expr::col("segment_id").is_in(segments.iter().map(|s| s.0)))
        .and_where(Expr::col("exited_at").is_null())
        .and_where(Expr::col("contact_id").gte(low.0))
        .and_where(Expr::col("contact_id").lte(high.0))
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| Ok(ContactId(row.try_get("", "contact_id")?)))
        .collect()
}

/// How many current members each of `segments` has; a segment without members is left out.
///
/// # Errors
/// Database failures.
pub async fn sizes(
    db: &impl ConnectionTrait,
    segments: &[SegmentId],
) -> Result<BTreeMap<SegmentId, u64>, DbErr> {
    if segments.is_empty() {
        return Ok(BTreeMap::new());
    }
    let select = Query::select()
        .column("segment_id")
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from("segment_memberships")
        .and_where(Expr::col("exited_at").is_null())
        .and_where(Expr::col("segment_id").is_in(segments.iter().map(|s| s.0)))
        .group_by_col("segment_id")
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            let n: i64 = row.try_get("", "n")?;
            Ok((
                SegmentId(row.try_get("", "segment_id")?),
                u64::try_from(n).unwrap_or(0),
            ))
        })
        .collect()
}

/// Up to `limit` current members of `segment`, in contact id order.
///
/// # Errors
/// Database failures.
pub async fn sample(
    db: &impl ConnectionTrait,
    segment: SegmentId,
    limit: u64,
) -> Result<Vec<ContactId>, DbErr> {
    let select = Query::select()
        .column("contact_id")
        .from("segment_memberships")
        .and_where(Expr::col("segment_id").eq(segment.0))
        .and_where(Expr::col("exited_at").is_null())
        .order_by("contact_id", Order::Asc)
        .limit(limit)
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| Ok(ContactId(row.try_get("", "contact_id")?)))
        .collect()
}

/// Which of `segments` each of `contacts` is a current member of, in one query; a contact in
/// none of them is left out.
///
/// # Errors
/// Database failures.
pub async fn of_contacts(
    db: &impl ConnectionTrait,
    contacts: &[ContactId],
    segments: &[SegmentId],
) -> Result<HashMap<ContactId, HashSet<SegmentId>>, DbErr> {
    let mut member_of: HashMap<ContactId, HashSet<SegmentId>> = HashMap::new();
    if contacts.is_empty() || segments.is_empty() {
        return Ok(member_of);
    }
    let select = Query::select()
        .columns(["contact_id", "segment_id"])
        .from("segment_memberships")
        .and_where(Expr::col("exited_at").is_null())
        .and_where(Expr::col("contact_id").is_in(contacts.iter().map(|c| c.0)))
        .and_where(Expr::col("segment_id").is_in(segments.iter().map(|s| s.0)))
        .to_owned();
    for row in db.query_all(&select).await? {
        member_of
            .entry(ContactId(row.try_get("", "contact_id")?))
            .or_default()
            .insert(SegmentId(row.try_get("", "segment_id")?));
    }
    Ok(member_of)
}
