//! Materialized memberships: who is in each stored segment now, and since when.
//!
//! Each stay of a contact in a segment is one `segment_memberships` row with `entered_at`
//! and, once the contact leaves, `exited_at`. Three things keep them current:
//! - [`materialize`] makes a segment's current members exactly the contacts its rule selects
//!   (on save, and in the periodic [`sweep`] that lets time windows expire);
//! - [`refresh_contacts`] re-evaluates every dynamic segment for a few contacts, right after
//!   their events or fields changed;
//! - [`replace_static_members`] sets the members of an uploaded list.
//!
//! All work is set-based SQL: the rule's query is joined against the memberships, so no
//! member list is ever held in memory. Each segment is updated in its own transaction that
//! first locks the segment's row, so a sweep and a refresh of the same segment run one after
//! the other and never record a stay twice.

use std::collections::BTreeSet;

use clarion_model::{ContactId, SegmentId, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, FromQueryResult, TransactionTrait,
    sea_query::{Expr, ExprTrait, Query, SelectStatement},
};

use crate::{
    SegmentError, ValidRule, compile,
    store::{self, Segment, SegmentKind},
    validate_segment,
};

/// Contacts per statement when a statement names contacts one by one.
const CHUNK: usize = 1000;

/// What one update of a segment changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub entered: u64,
    pub exited: u64,
}

impl std::ops::AddAssign for Changes {
    fn add_assign(&mut self, other: Changes) {
        self.entered += other.entered;
        self.exited += other.exited;
    }
}

/// Makes the current members of `segment` exactly the contacts `rule` selects at `now`,
/// recording entries and exits, and stores the new member count.
pub async fn materialize(
    db: &DatabaseConnection,
    segment: &Segment,
    rule: &ValidRule,
    now: Timestamp,
) -> Result<Changes, SegmentError> {
    update_segment(db, segment, rule, now, None).await
}

/// Re-evaluates the dynamic segments of `workspace` for `contacts` only, after their events or
/// fields changed. With `events_only`, segments whose rules do not look at events are left
/// alone (a new event cannot change them).
pub async fn refresh_contacts(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    contacts: &[ContactId],
    now: Timestamp,
    events_only: bool,
) -> Result<Changes, SegmentError> {
    let mut total = Changes::default();
    if contacts.is_empty() {
        return Ok(total);
    }
    let mut ids: Vec<i64> = contacts.iter().map(|c| c.0).collect();
    ids.sort_unstable();
    ids.dedup();
    for (segment, rule) in dynamic_rules(db, workspace).await? {
        if events_only && !rule.uses_events() {
            continue;
        }
        for chunk in ids.chunks(CHUNK) {
            total += update_segment(db, &segment, &rule, now, Some(chunk)).await?;
        }
    }
    Ok(total)
}

/// What a sweep did.
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    pub segments: usize,
    pub changes: Changes,
    /// Segments whose rules no longer validate (e.g. an attribute they use changed type),
    /// with the reason; their members are left as they were.
    pub failed: Vec<(String, String)>,
}

/// Re-materializes every dynamic segment of the workspace at `now`, so that members whose
/// time windows expired leave, and those that a window now includes enter.
pub async fn sweep(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    now: Timestamp,
) -> Result<SweepReport, SegmentError> {
    let segments = store::list(db, workspace).await?;
    let schema = store::schema_with(db, workspace, &segments).await?;
    let mut report = SweepReport::default();
    for segment in segments {
        let Some(rule) = &segment.rule else { continue };
        match validate_segment(&segment.slug, rule, &schema) {
            Ok(valid) => {
                report.changes += materialize(db, &segment, &valid, now).await?;
                report.segments += 1;
            }
            Err(errors) => report.failed.push((
                segment.slug.clone(),
                SegmentError::Invalid(errors).to_string(),
            )),
        }
    }
    Ok(report)
}

/// The dynamic segments of a workspace with their validated rules; segments whose rules no
/// longer validate are skipped (the sweep reports them).
pub async fn dynamic_rules(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<Vec<(Segment, ValidRule)>, SegmentError> {
    let segments = store::list(db, workspace).await?;
    let schema = store::schema_with(db, workspace, &segments).await?;
    Ok(segments
        .into_iter()
        .filter_map(|segment| {
            let valid = validate_segment(&segment.slug, segment.rule.as_ref()?, &schema).ok()?;
            Some((segment, valid))
        })
        .collect())
}

async fn update_segment(
    db: &DatabaseConnection,
    segment: &Segment,
    rule: &ValidRule,
    now: Timestamp,
    only: Option<&[i64]>,
) -> Result<Changes, SegmentError> {
    let backend = db.get_database_backend();
    let members = |extra: &dyn Fn(&mut SelectStatement)| -> Result<SelectStatement, SegmentError> {
        let mut query = compile(rule, segment.workspace, backend, now)?;
        if let Some(ids) = only {
            query.and_where(Expr::col(("c", "id")).is_in(ids.iter().copied()));
        }
        extra(&mut query);
        Ok(query)
    };

    let txn = db.begin().await?;
    // Locks the segment's row (PostgreSQL) or the database (SQLite) before reading members.
    lock(&txn, segment, only.is_none().then_some(now)).await?;

    let mut exit = Query::update();
    exit.table("segment_memberships")
        .value("exited_at", now.millis())
        .and_where(Expr::col("segment_id").eq(segment.id.0))
        .and_where(Expr::col("exited_at").is_null())
        .and_where(
            Expr::exists(members(&|q| {
                q.and_where(Expr::col(("c", "id")).equals(("segment_memberships", "contact_id")));
            })?)
            .not(),
        );
    if let Some(ids) = only {
        exit.and_where(Expr::col("contact_id").is_in(ids.iter().copied()));
    }
    let exited = txn.execute(&exit).await?.rows_affected();

    let mut entering = members(&|q| {
        q.and_where(Expr::exists(current_member(segment.id)).not());
    })?;
    entering
        .clear_selects()
        .expr(Expr::val(segment.id.0))
        .column(("c", "id"))
        .expr(Expr::val(now.millis()));
    let enter = Query::insert()
        .into_table("segment_memberships")
        .columns(["segment_id", "contact_id", "entered_at"])
        .select_from(entering)
        .map_err(|e| SegmentError::Corrupt(format!("membership insert: {e}")))?
        .to_owned();
    let entered = txn.execute(&enter).await?.rows_affected();

    let count = if only.is_none() {
        // A full materialization recounts, so the stored count never drifts.
        Expr::expr(
            Query::select()
                .expr(Expr::col("contact_id").count())
                .from("segment_memberships")
                .and_where(Expr::col("segment_id").eq(segment.id.0))
                .and_where(Expr::col("exited_at").is_null())
                .take(),
        )
    } else {
        Expr::col("member_count")
            .add(i64::try_from(entered).unwrap_or(i64::MAX))
            .sub(i64::try_from(exited).unwrap_or(i64::MAX))
    };
    txn.execute(
        &Query::update()
            .table("segments")
            .value("member_count", count)
            .and_where(Expr::col("id").eq(segment.id.0))
            .to_owned(),
    )
    .await?;
    txn.commit().await?;
    Ok(Changes { entered, exited })
}

/// `EXISTS`-subquery: the contact `c` is a current member of the segment.
fn current_member(segment: SegmentId) -> SelectStatement {
    Query::select()
        .expr(Expr::val(1))
        .from_as("segment_memberships", "cur")
        .and_where(Expr::col(("cur", "segment_id")).eq(segment.0))
        .and_where(Expr::col(("cur", "contact_id")).equals(("c", "id")))
        .and_where(Expr::col(("cur", "exited_at")).is_null())
        .to_owned()
}

/// The first statement of every membership transaction writes the segment's row: on
/// PostgreSQL that row lock makes concurrent updates of one segment wait for each other; on
/// SQLite the write takes the database's write lock before anything is read.
async fn lock(
    txn: &impl ConnectionTrait,
    segment: &Segment,
    computed_at: Option<Timestamp>,
) -> Result<(), SegmentError> {
    let mut update = Query::update();
    update
        .table("segments")
        .and_where(Expr::col("id").eq(segment.id.0));
    match computed_at {
        Some(at) => update.value("computed_at", at.millis()),
        None => update.value("id", Expr::col("id")),
    };
    let touched = txn.execute(&update).await?.rows_affected();
    if touched == 0 {
        return Err(SegmentError::Conflict(format!(
            "segment {:?} was deleted meanwhile",
            segment.slug
        )));
    }
    Ok(())
}

/// How an upload changes a static segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// The list becomes the members; others leave.
    Replace,
    /// The listed contacts join.
    Add,
    /// The listed contacts leave.
    Remove,
}

/// Sets the members of a static segment from a list of contact ids.
pub async fn replace_static_members(
    db: &DatabaseConnection,
    segment: &Segment,
    contacts: &[ContactId],
    mode: Upload,
    now: Timestamp,
) -> Result<Changes, SegmentError> {
    if segment.kind != SegmentKind::Static {
        return Err(SegmentError::Conflict(format!(
            "segment {:?} is computed from its rule; only static segments take uploaded members",
            segment.slug
        )));
    }
    let listed: BTreeSet<i64> = contacts.iter().map(|c| c.0).collect();
    let txn = db.begin().await?;
    lock(&txn, segment, Some(now)).await?;
    #[derive(FromQueryResult)]
    struct Member {
        contact_id: i64,
    }
    let current: BTreeSet<i64> = Member::find_by_statement(
        txn.get_database_backend().build(
            Query::select()
                .column("contact_id")
                .from("segment_memberships")
                .and_where(Expr::col("segment_id").eq(segment.id.0))
                .and_where(Expr::col("exited_at").is_null()),
        ),
    )
    .all(&txn)
    .await?
    .into_iter()
    .map(|m| m.contact_id)
    .collect();
    let (joining, leaving): (Vec<i64>, Vec<i64>) = match mode {
        Upload::Replace => (
            listed.difference(&current).copied().collect(),
            current.difference(&listed).copied().collect(),
        ),
        Upload::Add => (listed.difference(&current).copied().collect(), Vec::new()),
        Upload::Remove => (Vec::new(), listed.intersection(&current).copied().collect()),
    };
    for chunk in leaving.chunks(CHUNK) {
        txn.execute(
            &Query::update()
                .table("segment_memberships")
                .value("exited_at", now.millis())
                .and_where(Expr::col("segment_id").eq(segment.id.0))
                .and_where(Expr::col("exited_at").is_null())
                .and_where(Expr::col("contact_id").is_in(chunk.iter().copied()))
                .to_owned(),
        )
        .await?;
    }
    for chunk in joining.chunks(CHUNK) {
        let mut insert = Query::insert();
        insert.into_table("segment_memberships").columns([
            "segment_id",
            "contact_id",
            "entered_at",
        ]);
        for id in chunk {
            insert.values_panic([segment.id.0.into(), (*id).into(), now.millis().into()]);
        }
        txn.execute(&insert).await?;
    }
    let members = match mode {
        Upload::Replace => listed.len(),
        Upload::Add => current.len() + joining.len(),
        Upload::Remove => current.len() - leaving.len(),
    };
    txn.execute(
        &Query::update()
            .table("segments")
            .value("member_count", i64::try_from(members).unwrap_or(i64::MAX))
            .and_where(Expr::col("id").eq(segment.id.0))
            .to_owned(),
    )
    .await?;
    txn.commit().await?;
    Ok(Changes {
        entered: joining.len() as u64,
        exited: leaving.len() as u64,
    })
}
