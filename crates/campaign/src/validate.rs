//! Save-time checks of a campaign: every problem is collected, each naming where it is (the
//! JSON path, the variant, the field, and for templates the line and column).
//!
//! These checks need no database; [`crate::store`] adds the ones that do (segments exist,
//! variant ids belong to the campaign).

use std::collections::{BTreeMap, HashSet};

use clarion_model::{Channel, EventKind};
use clarion_template::{Engine, TemplateIssue};
use serde::Serialize;
use utoipa::ToSchema;

use crate::campaign::{CampaignInput, VariantInput};

/// Longest campaign or variant name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Most segments one campaign may target.
pub const MAX_TARGETS: usize = 100;
/// Most variants of one segment (an A/B/n test).
pub const MAX_VARIANTS_PER_TARGET: usize = 26;
/// Largest weight of a variant.
pub const MAX_WEIGHT: i64 = 1_000_000;
/// Longest attribution window, in hours (a year).
pub const MAX_WINDOW_HOURS: i64 = 8_760;

/// One problem with a campaign as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Issue {
    /// Where the problem is in the request body, e.g. `targets[0].variants[1].email.subject`.
    pub path: String,
    /// The name of the variant the problem is in, if it is in one.
    pub variant: Option<String>,
    /// The variant's field, e.g. `email.html` or `webhook.headers.X-Shop`.
    pub field: Option<String>,
    /// 1-based line in the field's template, when known.
    pub line: Option<usize>,
    /// 1-based column in the field's template, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl Issue {
    /// A problem outside any variant.
    pub(crate) fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            path: path.into(),
            variant: None,
            field: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn in_variant(
        path: &str,
        variant: &str,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Issue {
            path: join(path, field),
            variant: Some(variant.to_owned()),
            field: Some(field.to_owned()),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path)?;
        if let Some(variant) = &self.variant {
            write!(f, " (variant {variant:?})")?;
        }
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, " at line {line}, column {column}")?,
            (Some(line), None) => write!(f, " at line {line}")?,
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem of a campaign that can be found without the database.
#[must_use]
pub fn check_campaign(input: &CampaignInput) -> Vec<Issue> {
    let mut issues = Vec::new();
    check_name(&mut issues, "name", &input.name, "the campaign");
    if let Err(e) = EventKind::parse(input.goal.event.clone()) {
        issues.push(Issue::at("goal.event", e.to_string()));
    }
    if !(1..=MAX_WINDOW_HOURS).contains(&input.goal.window_hours) {
        issues.push(Issue::at(
            "goal.window_hours",
            format!(
                "the attribution window must be 1 to {MAX_WINDOW_HOURS} hours, not {}",
                input.goal.window_hours
            ),
        ));
    }
    if !input.holdout_percent.is_finite()
        || input.holdout_percent < 0.0
        || input.holdout_percent >= 100.0
    {
        issues.push(Issue::at(
            "holdout_percent",
            format!(
                "must be at least 0 and below 100, not {}",
                input.holdout_percent
            ),
        ));
    }
    if input.channels.is_empty() {
        issues.push(Issue::at(
            "channels",
            "name at least one channel: email, webhook",
        ));
    }
    let mut seen_channels = HashSet::new();
    for (i, channel) in input.channels.iter().enumerate() {
        if !seen_channels.insert(channel) {
            issues.push(Issue::at(
                format!("channels[{i}]"),
                format!("{} is listed twice", channel.as_str()),
            ));
        }
    }

    if input.targets.is_empty() && input.fallback.is_none() {
        issues.push(Issue::at(
            "targets",
            "a campaign needs at least one target segment or a fallback variant",
        ));
    }
    if input.targets.len() > MAX_TARGETS {
        issues.push(Issue::at(
            "targets",
            format!(
                "a campaign may target at most {MAX_TARGETS} segments, not {}",
                input.targets.len()
            ),
        ));
    }
    let mut segments: BTreeMap<&str, usize> = BTreeMap::new();
    for (t, target) in input.targets.iter().enumerate() {
        let path = format!("targets[{t}]");
        if target.segment.trim().is_empty() {
            issues.push(Issue::at(
                format!("{path}.segment"),
                "name the segment by its slug",
            ));
        } else if let Some(first) = segments.insert(target.segment.as_str(), t) {
            issues.push(Issue::at(
                format!("{path}.segment"),
                format!(
                    "segment {:?} is already targeted at targets[{first}]; a contact gets one message, so each segment appears once (give one target several variants for an A/B test)",
                    target.segment
                ),
            ));
        }
        if target.variants.is_empty() {
            issues.push(Issue::at(
                format!("{path}.variants"),
                "a target needs at least one variant",
            ));
        }
        if target.variants.len() > MAX_VARIANTS_PER_TARGET {
            issues.push(Issue::at(
                format!("{path}.variants"),
                format!(
                    "a segment may have at most {MAX_VARIANTS_PER_TARGET} variants, not {}",
                    target.variants.len()
                ),
            ));
        }
    }
    match (&input.fallback, &input.audience_segment) {
        (Some(_), None) => issues.push(Issue::at(
            "audience_segment",
            "a fallback variant needs an audience segment: its members who are in none of the targets get the fallback",
        )),
        (None, Some(_)) => issues.push(Issue::at(
            "audience_segment",
            "an audience segment is only used by a fallback variant; add one or leave the audience out",
        )),
        (Some(_), Some(slug)) if slug.trim().is_empty() => issues.push(Issue::at(
            "audience_segment",
            "name the segment by its slug",
        )),
        _ => {}
    }

    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for (path, variant) in variants_with_paths(input) {
        issues.extend(check_variant(&path, variant, &input.channels));
        if let Some(first) = names.insert(variant.name.trim(), path.clone()) {
            issues.push(Issue::in_variant(
                &path,
                &variant.name,
                "name",
                format!(
                    "the name {:?} is already used by {first}; variant names are unique in a campaign",
                    variant.name
                ),
            ));
        }
        if let Some(id) = variant.id
            && let Some(first) = ids.insert(id, path.clone())
        {
            issues.push(Issue::in_variant(
                &path,
                &variant.name,
                "id",
                format!("variant id {id} is already used by {first}"),
            ));
        }
    }
    issues
}

/// Every variant of the input with its JSON path.
pub(crate) fn variants_with_paths(
    input: &CampaignInput,
) -> impl Iterator<Item = (String, &VariantInput)> {
    let targeted = input.targets.iter().enumerate().flat_map(|(t, target)| {
        target
            .variants
            .iter()
            .enumerate()
            .map(move |(v, variant)| (format!("targets[{t}].variants[{v}]"), variant))
    });
    targeted.chain(
        input
            .fallback
            .iter()
            .map(|variant| ("fallback".to_owned(), variant)),
    )
}

/// Every problem of one variant of a campaign sending on `channels`; `path` is where the
/// variant is in the request body.
#[must_use]
pub fn check_variant(path: &str, variant: &VariantInput, channels: &[Channel]) -> Vec<Issue> {
    let mut issues = Vec::new();
    let name = variant.name.as_str();
    if let Some(problem) = name_problem(name) {
        issues.push(Issue::in_variant(
            path,
            name,
            "name",
            format!("the variant name {problem}"),
        ));
    }
    if variant.weight < 1 || variant.weight > MAX_WEIGHT {
        issues.push(Issue::in_variant(
            path,
            name,
            "weight",
            format!(
                "the weight must be a positive whole number up to {MAX_WEIGHT}, not {}",
                variant.weight
            ),
        ));
    }
    let engine = Engine::default();
    let sends = |c: Channel| channels.contains(&c);
    match (&variant.email, sends(Channel::Email)) {
        (Some(email), true) => {
            if let Err(found) = engine.check_email(&email.content(), None) {
                issues.extend(
                    found
                        .into_iter()
                        .map(|i| template_issue(path, name, "email", i)),
                );
            }
        }
        (None, true) => issues.push(Issue::in_variant(
            path,
            name,
            "email",
            "the campaign sends email, so every variant needs an email (subject, html, from)",
        )),
        (Some(_), false) => issues.push(Issue::in_variant(
            path,
            name,
            "email",
            "the campaign does not send email; add \"email\" to channels or remove this content",
        )),
        (None, false) => {}
    }
    match (&variant.webhook, sends(Channel::Webhook)) {
        (Some(webhook), true) => {
            if let Err(found) = engine.check_webhook(&webhook.content(), None) {
                issues.extend(
                    found
                        .into_iter()
                        .map(|i| template_issue(path, name, "webhook", i)),
                );
            }
        }
        (None, true) => issues.push(Issue::in_variant(
            path,
            name,
            "webhook",
            "the campaign sends webhooks, so every variant needs a webhook payload",
        )),
        (Some(_), false) => issues.push(Issue::in_variant(
            path,
            name,
            "webhook",
            "the campaign does not send webhooks; add \"webhook\" to channels or remove this content",
        )),
        (None, false) => {}
    }
    issues
}

/// A template problem of a variant's `channel` content as a campaign issue.
pub(crate) fn template_issue(
    path: &str,
    variant: &str,
    channel: &str,
    issue: TemplateIssue,
) -> Issue {
    let field = format!("{channel}.{}", issue.field);
    Issue {
        path: join(path, &field),
        variant: (!variant.is_empty()).then(|| variant.to_owned()),
        field: Some(field),
        line: issue.line,
        column: issue.column,
        message: issue.message,
    }
}

/// `path.field`, or `field` alone at the root.
pub(crate) fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn check_name(issues: &mut Vec<Issue>, path: &str, name: &str, what: &str) {
    if let Some(problem) = name_problem(name) {
        issues.push(Issue::at(path, format!("the name of {what} {problem}")));
    }
}

fn name_problem(name: &str) -> Option<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        Some("is required".to_owned())
    } else if trimmed.chars().count() > MAX_NAME_CHARS {
        Some(format!("is longer than {MAX_NAME_CHARS} characters"))
    } else if trimmed.chars().any(char::is_control) {
        Some("contains a control character".to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::{EmailVariant, TargetInput};
    use clarion_model::Goal;

    fn variant(name: &str, subject: &str) -> VariantInput {
        VariantInput {
            id: None,
            name: name.into(),
            weight: 1,
            email: Some(EmailVariant {
                subject: subject.into(),
                html: "<p>Hi</p>".into(),
                from: "news@shop.example".into(),
                ..EmailVariant::default()
            }),
            webhook: None,
        }
    }

    fn campaign(targets: Vec<TargetInput>) -> CampaignInput {
        CampaignInput {
            name: "Spring".into(),
            goal: Goal {
                event: "purchase".into(),
                window_hours: 168,
            },
            holdout_percent: 10.0,
            channels: vec![Channel::Email],
            targets,
            audience_segment: None,
            fallback: None,
            transactional: false,
        }
    }

    #[test]
    fn a_sound_campaign_has_no_issues() {
        let input = campaign(vec![TargetInput {
            segment: "vip".into(),
            variants: vec![variant("A", "Hello {{ contact.first_name|default('') }}")],
        }]);
        assert_eq!(check_campaign(&input), vec![]);
    }

    #[test]
    fn template_issues_name_variant_field_line_and_column() {
        let input = campaign(vec![TargetInput {
            segment: "vip".into(),
            variants: vec![variant("A", "ok"), variant("B", "Hi\n{{ nope }}")],
        }]);
        let issues = check_campaign(&input);
        assert!(
            issues.iter().all(|i| i.variant.as_deref() == Some("B")),
            "{issues:?}"
        );
        let issue = issues
            .iter()
            .find(|i| i.message.contains("unknown variable `nope`"))
            .unwrap();
        assert_eq!(issue.path, "targets[0].variants[1].email.subject");
        assert_eq!(issue.variant.as_deref(), Some("B"));
        assert_eq!(issue.field.as_deref(), Some("email.subject"));
        assert_eq!((issue.line, issue.column), (Some(2), Some(4)));
    }

    #[test]
    fn duplicate_names_segments_and_bad_numbers_are_reported_together() {
        let mut input = campaign(vec![
            TargetInput {
                segment: "vip".into(),
                variants: vec![variant("A", "x")],
            },
            TargetInput {
                segment: "vip".into(),
                variants: vec![VariantInput {
                    weight: 0,
                    ..variant("A", "y")
                }],
            },
        ]);
        input.holdout_percent = 100.0;
        let paths: Vec<String> = check_campaign(&input).into_iter().map(|i| i.path).collect();
        assert_eq!(
            paths,
            [
                "holdout_percent",
                "targets[1].segment",
                "targets[1].variants[0].weight",
                "targets[1].variants[0].name",
            ]
        );
    }
}
