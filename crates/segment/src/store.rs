//! Stored segments: their definitions, and the workspace schema built from them.
//!
//! A segment is either dynamic (a rule, whose members Clarion keeps current) or static (a list
//! of contacts uploaded once). Slugs name segments in rules (`{"segment": "vip"}`) and URLs;
//! they are unique per workspace.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use clarion_model::{SegmentId, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, FromQueryResult,
    sea_query::{Expr, ExprTrait, Order, Query, SelectStatement},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Rule, Schema, SegmentError};

/// What kind of customer grouping a segment is, for reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Demographic,
    Geographic,
    Psychographic,
    Firmographic,
    Technographic,
    Behavioural,
    Value,
    Needs,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::Demographic,
        Category::Geographic,
        Category::Psychographic,
        Category::Firmographic,
        Category::Technographic,
        Category::Behavioural,
        Category::Value,
        Category::Needs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Demographic => "demographic",
            Category::Geographic => "geographic",
            Category::Psychographic => "psychographic",
            Category::Firmographic => "firmographic",
            Category::Technographic => "technographic",
            Category::Behavioural => "behavioural",
            Category::Value => "value",
            Category::Needs => "needs",
        }
    }
}

impl FromStr for Category {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown category {value:?}; use one of {}",
                    Category::ALL.map(Category::as_str).join(", ")
                )
            })
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether Clarion computes a segment's members from a rule or keeps an uploaded list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    Dynamic,
    Static,
}

impl SegmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentKind::Dynamic => "dynamic",
            SegmentKind::Static => "static",
        }
    }
}

/// A stored segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: SegmentId,
    pub workspace: WorkspaceId,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub category: Category,
    pub kind: SegmentKind,
    /// The rule of a dynamic segment; `None` for a static one.
    pub rule: Option<Rule>,
    /// Members at the last materialization.
    pub member_count: i64,
    pub computed_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a new segment is made of.
#[derive(Debug, Clone)]
pub struct NewSegment {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub category: Category,
    pub rule: Option<Rule>,
}

/// Changes to a segment; `None` keeps a value.
#[derive(Debug, Clone, Default)]
pub struct SegmentChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<Category>,
    pub rule: Option<Rule>,
}

/// Checks a slug: 1 to 64 characters, lower-case letters, digits and `-`, starting with a
/// letter (so it never reads as a numeric id in a URL).
pub fn check_slug(slug: &str) -> Result<(), String> {
    let ok = !slug.is_empty()
        && slug.len() <= 64
        && slug.starts_with(|c: char| c.is_ascii_lowercase())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad slug {slug:?}: 1 to 64 of a-z, 0-9 and -, starting with a letter"
        ))
    }
}

/// A slug made from a name: `"VIP customers (DE)"` -> `"vip-customers-de"`.
pub fn slug_from_name(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 64 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-').to_string();
    if slug.starts_with(|c: char| c.is_ascii_lowercase()) {
        slug
    } else {
        format!("s-{slug}").trim_end_matches('-').to_string()
    }
}

#[derive(FromQueryResult)]
struct SegmentRow {
    id: i64,
    workspace_id: i64,
    slug: String,
    name: String,
    description: String,
    category: String,
    kind: String,
    rule: Option<String>,
    member_count: i64,
    computed_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: [&str; 12] = [
    "id",
    "workspace_id",
    "slug",
    "name",
    "description",
    "category",
    "kind",
    "rule",
    "member_count",
    "computed_at",
    "created_at",
    "updated_at",
];

impl SegmentRow {
    fn into_segment(self) -> Result<Segment, SegmentError> {
        let corrupt = |what: String| SegmentError::Corrupt(format!("segment {}: {what}", self.id));
        let category = self.category.parse().map_err(corrupt)?;
        let kind = match self.kind.as_str() {
            "dynamic" => SegmentKind::Dynamic,
            "static" => SegmentKind::Static,
            other => return Err(corrupt(format!("unknown kind {other:?}"))),
        };
        let rule = match &self.rule {
            Some(text) => {
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| corrupt(format!("stored rule is not JSON: {e}")))?;
                Some(Rule::from_json(&value).map_err(|e| corrupt(e.to_string()))?)
            }
            None => None,
        };
        Ok(Segment {
            id: SegmentId(self.id),
            workspace: WorkspaceId(self.workspace_id),
            slug: self.slug,
            name: self.name,
            description: self.description,
            category,
            kind,
            rule,
            member_count: self.member_count,
            computed_at: self.computed_at.map(Timestamp::from_millis),
            created_at: Timestamp::from_millis(self.created_at),
            updated_at: Timestamp::from_millis(self.updated_at),
        })
    }
}

fn select(workspace: WorkspaceId) -> SelectStatement {
    Query::select()
        .columns(COLUMNS)
        .from("segments")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned()
}

async fn fetch(
    db: &impl ConnectionTrait,
    query: &SelectStatement,
) -> Result<Vec<Segment>, SegmentError> {
    SegmentRow::find_by_statement(db.get_database_backend().build(query))
        .all(db)
        .await?
        .into_iter()
        .map(SegmentRow::into_segment)
        .collect()
}

/// Every segment of the workspace, by slug.
pub async fn list(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<Vec<Segment>, SegmentError> {
    fetch(db, select(workspace).order_by("slug", Order::Asc)).await
}

/// A segment named by its numeric id or its slug.
pub async fn find(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id_or_slug: &str,
) -> Result<Option<Segment>, SegmentError> {
    let mut query = select(workspace);
    match id_or_slug.parse::<i64>() {
        Ok(id) => query.and_where(Expr::col("id").eq(id)),
        Err(_) => query.and_where(Expr::col("slug").eq(id_or_slug)),
    };
    Ok(fetch(db, &query).await?.into_iter().next())
}

/// A segment by id.
pub async fn get(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id: SegmentId,
) -> Result<Option<Segment>, SegmentError> {
    let query = select(workspace)
        .and_where(Expr::col("id").eq(id.0))
        .to_owned();
    Ok(fetch(db, &query).await?.into_iter().next())
}

/// The workspace's schema for validating rules: its custom attributes, the rules of its
/// dynamic segments and the ids of its static ones. `except` leaves one segment out (the one
/// being edited, so that it cannot refer to itself except as a reported cycle).
pub async fn schema(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<Schema, SegmentError> {
    let segments = list(db, workspace).await?;
    schema_with(db, workspace, &segments).await
}

/// [`schema`] from segments the caller has listed already.
pub async fn schema_with(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    segments: &[Segment],
) -> Result<Schema, SegmentError> {
    let mut schema = Schema::load(db, workspace).await?;
    for segment in segments {
        schema = match &segment.rule {
            Some(rule) => schema.with_segment(segment.slug.clone(), rule.clone()),
            None => schema.with_static_segment(segment.slug.clone(), segment.id),
        };
    }
    Ok(schema)
}

fn rule_json(rule: &Option<Rule>) -> Option<String> {
    rule.as_ref().map(|rule| rule.to_json().to_string())
}

/// Stores a new segment (with no members yet). A taken slug is a [`SegmentError::Conflict`].
pub async fn create(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    new: NewSegment,
    now: Timestamp,
) -> Result<Segment, SegmentError> {
    if find(db, workspace, &new.slug).await?.is_some() {
        return Err(SegmentError::Conflict(format!(
            "a segment with slug {:?} exists already",
            new.slug
        )));
    }
    let kind = if new.rule.is_some() {
        SegmentKind::Dynamic
    } else {
        SegmentKind::Static
    };
    let insert = Query::insert()
        .into_table("segments")
        .columns([
            "workspace_id",
            "slug",
            "name",
            "description",
            "category",
            "kind",
            "rule",
            "member_count",
            "created_at",
            "updated_at",
        ])
        .values_panic([
            workspace.0.into(),
            new.slug.clone().into(),
            new.name.into(),
            new.description.into(),
            new.category.as_str().into(),
            kind.as_str().into(),
            rule_json(&new.rule).into(),
            0i64.into(),
            now.millis().into(),
            now.millis().into(),
        ])
        .returning_col("id")
        .to_owned();
    let row = db
        .query_one(&insert)
        .await
        .map_err(|e| unique_violation(e, &new.slug))?
        .ok_or_else(|| SegmentError::Corrupt("INSERT ... RETURNING gave no row".into()))?;
    let id: i64 = row.try_get("", "id")?;
    get(db, workspace, SegmentId(id))
        .await?
        .ok_or_else(|| SegmentError::Corrupt(format!("segment {id} vanished after insert")))
}

/// Two requests creating the same slug at once: the loser gets the same conflict.
fn unique_violation(error: sea_orm::DbErr, slug: &str) -> SegmentError {
    let text = error.to_string();
    if text.contains("UNIQUE") || text.contains("unique") || text.contains("23505") {
        SegmentError::Conflict(format!("a segment with slug {slug:?} exists already"))
    } else {
        SegmentError::Db(error)
    }
}

/// Applies changes to a segment's definition, and nothing else: [`crate::save::update`]
/// checks them and re-materializes when the rule changed.
pub async fn update(
    db: &impl ConnectionTrait,
    segment: &Segment,
    changes: SegmentChanges,
    now: Timestamp,
) -> Result<Segment, SegmentError> {
    let mut update = Query::update();
    update
        .table("segments")
        .value("updated_at", now.millis())
        .and_where(Expr::col("id").eq(segment.id.0))
        .and_where(Expr::col("workspace_id").eq(segment.workspace.0));
    if let Some(name) = changes.name {
        update.value("name", name);
    }
    if let Some(description) = changes.description {
        update.value("description", description);
    }
    if let Some(category) = changes.category {
        update.value("category", category.as_str());
    }
    if let Some(rule) = changes.rule {
        update.value("rule", rule_json(&Some(rule)));
    }
    db.execute(&update).await?;
    get(db, segment.workspace, segment.id)
        .await?
        .ok_or_else(|| SegmentError::Corrupt(format!("segment {} vanished", segment.id)))
}

/// The slugs of the segments whose rules refer to `slug`, directly or through others.
pub fn dependents(segments: &[Segment], slug: &str) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut frontier = vec![slug.to_string()];
    while let Some(current) = frontier.pop() {
        for segment in segments {
            if let Some(rule) = &segment.rule
                && rule.refers_to(&current)
                && found.insert(segment.slug.clone())
            {
                frontier.push(segment.slug.clone());
            }
        }
    }
    found.remove(slug);
    found.into_iter().collect()
}

/// Deletes a segment and its membership history. A segment other segments refer to is kept:
/// [`SegmentError::Conflict`] names them.
pub async fn delete(db: &impl ConnectionTrait, segment: &Segment) -> Result<(), SegmentError> {
    let all = list(db, segment.workspace).await?;
    let users = dependents(&all, &segment.slug);
    if !users.is_empty() {
        return Err(SegmentError::Conflict(format!(
            "segment {:?} is used by the rules of {}; change those first",
            segment.slug,
            users.join(", ")
        )));
    }
    #[derive(FromQueryResult)]
    struct CampaignName {
        name: String,
    }
    let used_by = Query::select()
        .distinct()
        .column(("cp", "name"))
        .from_as("campaigns", "cp")
        .left_join(
            "campaign_targets",
            Expr::col(("campaign_targets", "campaign_id")).equals(("cp", "id")),
        )
        .cond_where(
            Expr::col(("cp", "audience_segment_id"))
                .eq(segment.id.0)
                .or(Expr::col(("campaign_targets", "segment_id")).eq(segment.id.0)),
        )
        .order_by(("cp", "name"), Order::Asc)
        .to_owned();
    let campaigns: Vec<String> =
        CampaignName::find_by_statement(db.get_database_backend().build(&used_by))
            .all(db)
            .await?
            .into_iter()
            .map(|c| format!("{:?}", c.name))
            .collect();
    if !campaigns.is_empty() {
        return Err(SegmentError::Conflict(format!(
            "segment {:?} is used by the campaigns {}; remove it from them first",
            segment.slug,
            campaigns.join(", ")
        )));
    }
    // SQLite enforces foreign keys only when asked; delete the memberships explicitly.
    db.execute(
        &Query::delete()
            .from_table("segment_memberships")
            .and_where(Expr::col("segment_id").eq(segment.id.0))
            .to_owned(),
    )
    .await?;
    db.execute(
        &Query::delete()
            .from_table("segments")
            .and_where(Expr::col("id").eq(segment.id.0))
            .to_owned(),
    )
    .await?;
    Ok(())
}
