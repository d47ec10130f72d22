//! Saving segments: creating and changing them with every check that goes with it.
//!
//! A new segment gets a slug made from its name unless one is given; its kind follows from
//! whether it has a rule; a dynamic segment's rule is read (JSON or text form), validated
//! against the workspace (a reference to itself, directly or through others, is a cycle) and
//! its members are computed before [`create`] returns. Changing a rule recomputes the members
//! of the segment and of every segment whose rule uses it. Deleting, refused while other
//! segments or campaigns use the segment, is [`store::delete`].
//!
//! Problems with the request answer [`SegmentError::InvalidRequest`] naming the field, and
//! problems with the rule [`SegmentError::Json`], [`SegmentError::Text`] or
//! [`SegmentError::Invalid`] naming the node.

use clarion_model::{Timestamp, WorkspaceId};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::{
    Rule, RuleError, SegmentError, ValidRule, membership, parse_text,
    store::{self, Category, NewSegment, Segment, SegmentChanges, SegmentKind},
    validate, validate_segment,
};

/// The longest segment name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A new segment, as `POST /api/v1/segments` takes it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentInput {
    /// 1 to 200 characters, not only white space.
    #[schema(max_length = 200, pattern = r"\S")]
    pub name: String,
    /// Lower-case letters, digits and `-`; made from the name when left out.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,63}$")]
    pub slug: Option<String>,
    #[serde(default)]
    pub description: String,
    pub category: Category,
    /// `dynamic` (the default when a rule is given) or `static` (members uploaded with
    /// `PUT /segments/{segment}/members`).
    pub kind: Option<SegmentKind>,
    /// The rule: its JSON form, or its text form as one string.
    #[schema(value_type = Option<Object>)]
    pub rule: Option<Value>,
}

/// Changes to a segment, as `PATCH /api/v1/segments/{segment}` takes them; fields left out
/// keep their value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentPatch {
    /// 1 to 200 characters, not only white space.
    #[schema(max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<Category>,
    /// A new rule (JSON or text form); the members are recomputed.
    #[schema(value_type = Option<Object>)]
    pub rule: Option<Value>,
}

fn invalid_field(field: &str, message: impl Into<String>) -> SegmentError {
    SegmentError::InvalidRequest(vec![RuleError {
        path: field.to_string(),
        message: message.into(),
    }])
}

/// Reads a rule given as its JSON form, or as its text form in a JSON string.
pub fn read_rule(value: &Value) -> Result<Rule, SegmentError> {
    match value {
        Value::String(text) => Ok(parse_text(text)?),
        other => Rule::from_json(other).map_err(SegmentError::Json),
    }
}

/// Validates `rule` against the workspace; as the rule of the segment `slug` when given, so
/// that a reference to itself is reported as a cycle.
pub async fn check_rule(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    slug: Option<&str>,
    rule: &Rule,
) -> Result<ValidRule, SegmentError> {
    let schema = store::schema(db, workspace).await?;
    match slug {
        Some(slug) => validate_segment(slug, rule, &schema),
        None => validate(rule, &schema),
    }
    .map_err(SegmentError::Invalid)
}

fn check_name(name: &str) -> Result<(), SegmentError> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid_field(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Creates a segment in `workspace` and, for a dynamic one, computes its members at `now`.
/// Returns the segment as stored, with its member count.
pub async fn create(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    input: SegmentInput,
    now: Timestamp,
) -> Result<Segment, SegmentError> {
    let name = input.name.trim().to_string();
    check_name(&name)?;
    let slug = input.slug.unwrap_or_else(|| store::slug_from_name(&name));
    store::check_slug(&slug).map_err(|e| invalid_field("slug", e))?;
    let kind = input.kind.unwrap_or(if input.rule.is_some() {
        SegmentKind::Dynamic
    } else {
        SegmentKind::Static
    });
    let rule = match (kind, &input.rule) {
        (SegmentKind::Dynamic, Some(value)) => Some(read_rule(value)?),
        (SegmentKind::Dynamic, None) => {
            return Err(invalid_field("rule", "a dynamic segment needs a rule"));
        }
        (SegmentKind::Static, Some(_)) => {
            return Err(invalid_field(
                "rule",
                "a static segment has no rule; upload its members with PUT /api/v1/segments/{segment}/members",
            ));
        }
        (SegmentKind::Static, None) => None,
    };
    let valid = match &rule {
        Some(rule) => Some(check_rule(db, workspace, Some(&slug), rule).await?),
        None => None,
    };
    let segment = store::create(
        db,
        workspace,
        NewSegment {
            slug,
            name,
            description: input.description,
            category: input.category,
            rule,
        },
        now,
    )
    .await?;
    if let Some(valid) = &valid {
        membership::materialize(db, &segment, valid, now).await?;
    }
    // Read back for the member count the materialization stored.
    store::get(db, workspace, segment.id)
        .await?
        .ok_or_else(|| SegmentError::NotFound("the new segment".into()))
}

/// Applies `patch` to `segment`. A new rule is validated, and the members of the segment and
/// of every segment whose rule uses it are recomputed at `now` (entries and exits recorded).
/// Returns the segment as stored.
pub async fn update(
    db: &DatabaseConnection,
    segment: &Segment,
    patch: SegmentPatch,
    now: Timestamp,
) -> Result<Segment, SegmentError> {
    if let Some(name) = &patch.name {
        check_name(name)?;
    }
    let rule = match &patch.rule {
        Some(_) if segment.kind == SegmentKind::Static => {
            return Err(invalid_field(
                "rule",
                "a static segment has no rule; upload its members instead",
            ));
        }
        Some(value) => {
            let rule = read_rule(value)?;
            check_rule(db, segment.workspace, Some(&segment.slug), &rule).await?;
            Some(rule)
        }
        None => None,
    };
    let rule_changed = rule.is_some();
    let updated = store::update(
        db,
        segment,
        SegmentChanges {
            name: patch.name.map(|n| n.trim().to_string()),
            description: patch.description,
            category: patch.category,
            rule,
        },
        now,
    )
    .await?;
    if rule_changed {
        rematerialize_with_dependents(db, segment, now).await?;
    }
    store::get(db, segment.workspace, updated.id)
        .await?
        .ok_or_else(|| SegmentError::NotFound(format!("segment {:?}", segment.slug)))
}

/// Recomputes the members of `segment` and of every segment whose rule inlines it, since a
/// rule that uses another segment compiles that segment's rule into its own query.
async fn rematerialize_with_dependents(
    db: &DatabaseConnection,
    segment: &Segment,
    now: Timestamp,
) -> Result<(), SegmentError> {
    let all = store::list(db, segment.workspace).await?;
    let affected = store::dependents(&all, &segment.slug);
    for (stored, valid) in membership::dynamic_rules(db, segment.workspace).await? {
        if stored.id == segment.id || affected.contains(&stored.slug) {
            membership::materialize(db, &stored, &valid, now).await?;
        }
    }
    Ok(())
}
