//! The campaign form as a person types it: every value kept as text, so a page that refuses
//! it shows back exactly what was typed, with each problem beside its field. Field names are
//! flat (`t0.v1.subject` is the subject of the second variant of the first segment) because
//! an HTML form posts name–value pairs; [`CampaignForm::parse`] reads them back into the
//! shape, [`CampaignForm::input`] into the domain's [`CampaignInput`], and
//! [`field_of_issue`] puts each of the domain's problems back beside its field.

use std::collections::BTreeMap;

use clarion_campaign::{
    Campaign, CampaignInput, EmailVariant, Issue, TargetInput, Variant, VariantId, VariantInput,
    WebhookVariant,
};
use clarion_model::{Channel, Goal};
use serde::Serialize;

/// Most segments and variants a form may carry, as the domain allows.
const MAX_TARGETS: usize = clarion_campaign::validate::MAX_TARGETS;
const MAX_VARIANTS: usize = clarion_campaign::validate::MAX_VARIANTS_PER_TARGET;

/// Problems by form field (`name`, `t0.segment`, `t0.v1.html`, ...); `form` holds those
/// that belong to no single field.
pub type FieldErrors = BTreeMap<String, String>;

/// One variant as typed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VariantForm {
    /// The stored variant's id, so that saving keeps its history; empty for a new one.
    pub id: String,
    pub name: String,
    pub weight: String,
    pub subject: String,
    pub preheader: String,
    pub from: String,
    pub reply_to: String,
    pub html: String,
    pub text: String,
    pub payload: String,
    pub endpoint: String,
}

/// One segment with its variants, as typed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetForm {
    pub segment: String,
    pub variants: Vec<VariantForm>,
}

/// The whole form as typed.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignForm {
    pub name: String,
    pub goal_event: String,
    pub window_hours: String,
    pub holdout_percent: String,
    pub email: bool,
    pub webhook: bool,
    pub transactional: bool,
    pub targets: Vec<TargetForm>,
}

/// What a button of the form asks for besides saving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Save,
    /// Show the form again as typed, e.g. with the fields of a channel just ticked.
    Refresh,
    AddTarget,
    /// Another variant (an A/B test) for the target at this index.
    AddVariant(usize),
}

impl Default for CampaignForm {
    /// A new campaign: one segment with one variant, by email, a week to convert.
    fn default() -> Self {
        CampaignForm {
            name: String::new(),
            goal_event: "purchase".into(),
            window_hours: "168".into(),
            holdout_percent: "10".into(),
            email: true,
            webhook: false,
            transactional: false,
            targets: vec![TargetForm::blank()],
        }
    }
}

impl TargetForm {
    fn blank() -> Self {
        TargetForm {
            segment: String::new(),
            variants: vec![VariantForm::blank()],
        }
    }
}

impl VariantForm {
    fn blank() -> Self {
        VariantForm {
            weight: "1".into(),
            ..VariantForm::default()
        }
    }

    /// Whether nothing but the weight was typed: such a row is an unused slot, left out.
    fn is_blank(&self) -> bool {
        [
            &self.id,
            &self.name,
            &self.subject,
            &self.preheader,
            &self.from,
            &self.reply_to,
            &self.html,
            &self.text,
            &self.payload,
            &self.endpoint,
        ]
        .iter()
        .all(|value| value.trim().is_empty())
    }

    fn of(variant: &Variant) -> Self {
        let email = variant.email.clone().unwrap_or_default();
        let webhook = variant.webhook.clone().unwrap_or_default();
        VariantForm {
            id: variant.id.0.to_string(),
            name: variant.name.clone(),
            weight: variant.weight.to_string(),
            subject: email.subject,
            preheader: email.preheader,
            from: email.from,
            reply_to: email.reply_to.unwrap_or_default(),
            html: email.html,
            text: email.text.unwrap_or_default(),
            payload: webhook.payload,
            endpoint: webhook.endpoint.unwrap_or_default(),
        }
    }

    fn set(&mut self, field: &str, value: String) {
        let slot = match field {
            "id" => &mut self.id,
            "name" => &mut self.name,
            "weight" => &mut self.weight,
            "subject" => &mut self.subject,
            "preheader" => &mut self.preheader,
            "from" => &mut self.from,
            "reply_to" => &mut self.reply_to,
            "html" => &mut self.html,
            "text" => &mut self.text,
            "payload" => &mut self.payload,
            "endpoint" => &mut self.endpoint,
            _ => return,
        };
        *slot = value;
    }
}

/// `t3` as 3, below `limit`.
fn index(part: &str, prefix: char, limit: usize) -> Option<usize> {
    part.strip_prefix(prefix)?
        .parse()
        .ok()
        .filter(|i| *i < limit)
}

fn optional(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

impl CampaignForm {
    /// The form of a stored campaign.
    pub fn of(campaign: &Campaign) -> Self {
        CampaignForm {
            name: campaign.name.clone(),
            goal_event: campaign.goal.event.clone(),
            window_hours: campaign.goal.window_hours.to_string(),
            holdout_percent: campaign.holdout_percent.to_string(),
            email: campaign.sends(Channel::Email),
            webhook: campaign.sends(Channel::Webhook),
            transactional: campaign.transactional,
            targets: campaign
                .targets
                .iter()
                .map(|target| TargetForm {
                    segment: target.segment.slug.clone(),
                    variants: target.variants.iter().map(VariantForm::of).collect(),
                })
                .collect(),
        }
    }

    /// Reads the posted pairs: the form as typed, the button pressed and the CSRF token.
    /// Unknown names and indexes past the domain's limits are ignored.
    pub fn parse(pairs: Vec<(String, String)>) -> (Self, Op, String) {
        let mut form = CampaignForm {
            email: false,
            targets: Vec::new(),
            ..CampaignForm::default()
        };
        let mut targets: BTreeMap<usize, (String, BTreeMap<usize, VariantForm>)> = BTreeMap::new();
        let mut op = Op::Save;
        let mut csrf = String::new();
        for (name, value) in pairs {
            match name.as_str() {
                "csrf" => csrf = value,
                "name" => form.name = value,
                "goal_event" => form.goal_event = value,
                "window_hours" => form.window_hours = value,
                "holdout_percent" => form.holdout_percent = value,
                "channel_email" => form.email = true,
                "channel_webhook" => form.webhook = true,
                "transactional" => form.transactional = true,
                "op" if value == "add-target" => op = Op::AddTarget,
                "op" if value == "refresh" => op = Op::Refresh,
                "op" => {
                    if let Some(i) = value
                        .strip_prefix("add-variant-")
                        .and_then(|i| i.parse().ok())
                    {
                        op = Op::AddVariant(i);
                    }
                }
                _ => {
                    let mut parts = name.split('.');
                    let (Some(t), Some(second)) = (
                        parts.next().and_then(|p| index(p, 't', MAX_TARGETS)),
                        parts.next(),
                    ) else {
                        continue;
                    };
                    let target = targets.entry(t).or_default();
                    if second == "segment" {
                        target.0 = value;
                    } else if let (Some(v), Some(field)) =
                        (index(second, 'v', MAX_VARIANTS), parts.next())
                    {
                        target.1.entry(v).or_default().set(field, value);
                    }
                }
            }
        }
        form.targets = targets
            .into_values()
            .map(|(segment, variants)| TargetForm {
                segment,
                variants: variants.into_values().collect(),
            })
            .collect();
        (form, op, csrf)
    }

    /// Adds the empty slot a button asked for; false when the domain's limit is reached.
    pub fn grow(&mut self, op: Op) -> bool {
        match op {
            Op::Save | Op::Refresh => false,
            Op::AddTarget if self.targets.len() < MAX_TARGETS => {
                self.targets.push(TargetForm::blank());
                true
            }
            Op::AddVariant(t) => match self.targets.get_mut(t) {
                Some(target) if target.variants.len() < MAX_VARIANTS => {
                    target.variants.push(VariantForm::blank());
                    true
                }
                _ => false,
            },
            Op::AddTarget => false,
        }
    }

    /// The campaign as the domain takes it, over `base` (the stored campaign's input when
    /// editing, so what the form does not show, such as a fallback variant or webhook
    /// headers, is kept). Values that are not numbers come back as field errors; every other
    /// check is the domain's.
    pub fn input(&self, base: Option<&Campaign>) -> Result<CampaignInput, FieldErrors> {
        let mut errors = FieldErrors::new();
        let window_hours = self.window_hours.trim().parse::<i64>().unwrap_or_else(|_| {
            errors.insert(
                "window_hours".into(),
                format!("{:?} is not a whole number of hours.", self.window_hours),
            );
            0
        });
        let holdout_percent = self
            .holdout_percent
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| p.is_finite())
            .unwrap_or_else(|| {
                errors.insert(
                    "holdout_percent".into(),
                    format!("{:?} is not a percentage.", self.holdout_percent),
                );
                0.0
            });
        let channels: Vec<Channel> = [
            (self.email, Channel::Email),
            (self.webhook, Channel::Webhook),
        ]
        .into_iter()
        .filter_map(|(on, channel)| on.then_some(channel))
        .collect();
        let targets = self
            .kept_rows()
            .into_iter()
            .map(|(t, rows)| {
                let target = &self.targets[t];
                TargetInput {
                    segment: target.segment.trim().to_owned(),
                    variants: rows
                        .into_iter()
                        .map(|v| {
                            let key = format!("t{t}.v{v}");
                            self.variant(&target.variants[v], &channels, base, &key, &mut errors)
                        })
                        .collect(),
                }
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CampaignInput {
            name: self.name.clone(),
            goal: Goal {
                event: self.goal_event.trim().to_owned(),
                window_hours,
            },
            holdout_percent,
            channels,
            targets,
            audience_segment: base
                .and_then(|c| c.audience_segment.as_ref().map(|s| s.slug.clone())),
            fallback: base.and_then(|c| c.fallback.as_ref().map(kept)),
            transactional: self.transactional,
        })
    }

    /// For each target row that is sent to the domain, its form index and those of its
    /// variant rows that are sent, in order (see [`field_of_issue`]).
    pub fn kept_rows(&self) -> Vec<(usize, Vec<usize>)> {
        self.targets
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                !t.segment.trim().is_empty() || t.variants.iter().any(|v| !v.is_blank())
            })
            .map(|(t, target)| {
                let variants = target
                    .variants
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| !v.is_blank())
                    .map(|(v, _)| v)
                    .collect();
                (t, variants)
            })
            .collect()
    }

    fn variant(
        &self,
        form: &VariantForm,
        channels: &[Channel],
        base: Option<&Campaign>,
        key: &str,
        errors: &mut FieldErrors,
    ) -> VariantInput {
        let id = form.id.trim().parse::<i64>().ok().map(VariantId);
        let weight = form.weight.trim().parse::<i64>().unwrap_or_else(|_| {
            errors.insert(
                format!("{key}.weight"),
                format!("{:?} is not a whole number.", form.weight),
            );
            1
        });
        let stored = id.and_then(|id| base?.variant(id)).map(|(_, v)| v);
        let headers = stored
            .and_then(|v| v.webhook.as_ref())
            .map(|w| w.headers.clone())
            .unwrap_or_default();
        VariantInput {
            id,
            name: form.name.clone(),
            weight,
            email: channels.contains(&Channel::Email).then(|| EmailVariant {
                subject: form.subject.clone(),
                preheader: form.preheader.clone(),
                html: form.html.clone(),
                text: optional(&form.text),
                from: form.from.clone(),
                reply_to: optional(&form.reply_to),
            }),
            webhook: channels
                .contains(&Channel::Webhook)
                .then(|| WebhookVariant {
                    payload: form.payload.clone(),
                    headers,
                    endpoint: optional(&form.endpoint),
                }),
        }
    }
}

/// A stored variant as input that keeps its id (and so its history).
fn kept(variant: &Variant) -> VariantInput {
    VariantInput {
        id: Some(variant.id),
        name: variant.name.clone(),
        weight: i64::from(variant.weight),
        email: variant.email.clone(),
        webhook: variant.webhook.clone(),
    }
}

/// The form field a domain problem belongs beside: `targets[0].variants[1].email.html`
/// is `t0.v1.html`, `goal.window_hours` is `window_hours`. Problems of what the form does
/// not show (the fallback, webhook headers) belong to the form as a whole, `form`.
///
/// Targets and variants left blank are skipped before saving, so `targets[i]` counts only
/// the rows that were sent; `kept_rows` maps those indexes back to the form's.
pub fn field_of_issue(issue: &Issue, kept_rows: &[(usize, Vec<usize>)]) -> String {
    let path = issue.path.as_str();
    match path {
        "name" | "holdout_percent" | "channels" | "transactional" => return path.to_owned(),
        "goal.event" => return "goal_event".into(),
        "goal.window_hours" => return "window_hours".into(),
        "targets" => return "t0.segment".into(),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("targets[") else {
        return "form".into();
    };
    let Some((t, rest)) = rest.split_once(']') else {
        return "form".into();
    };
    let Some((t, variants)) = t.parse::<usize>().ok().and_then(|t| kept_rows.get(t)) else {
        return "form".into();
    };
    let Some(rest) = rest.strip_prefix(".variants[") else {
        return format!("t{t}.segment");
    };
    let Some((v, field)) = rest.split_once(']') else {
        return format!("t{t}.segment");
    };
    let Some(v) = v.parse::<usize>().ok().and_then(|v| variants.get(v)) else {
        return format!("t{t}.segment");
    };
    let field = field
        .trim_start_matches('.')
        .trim_start_matches("email.")
        .trim_start_matches("webhook.");
    let known = [
        "name",
        "weight",
        "subject",
        "preheader",
        "from",
        "reply_to",
        "html",
        "text",
        "payload",
        "endpoint",
    ];
    if known.contains(&field) {
        format!("t{t}.v{v}.{field}")
    } else if field.starts_with("headers") || field.is_empty() {
        format!("t{t}.v{v}.name")
    } else {
        "form".into()
    }
}

/// The domain's problems by form field, each with the template line and column when it has
/// them; several problems of one field are joined.
pub fn errors_of(issues: &[Issue], kept_rows: &[(usize, Vec<usize>)]) -> FieldErrors {
    let mut errors = FieldErrors::new();
    for issue in issues {
        let text = match (issue.line, issue.column) {
            (Some(line), Some(column)) => {
                format!("Line {line}, column {column}: {}", issue.message)
            }
            (Some(line), None) => format!("Line {line}: {}", issue.message),
            _ => super::capitalised(&issue.message),
        };
        let text = if field_of_issue(issue, kept_rows) == "form" {
            format!("{}: {text}", issue.path)
        } else {
            text
        };
        errors
            .entry(field_of_issue(issue, kept_rows))
            .and_modify(|existing| {
                existing.push(' ');
                existing.push_str(&text);
            })
            .or_insert(text);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn flat_names_read_back_into_targets_and_variants() {
        let (form, op, csrf) = CampaignForm::parse(pairs(&[
            ("csrf", "tok"),
            ("name", "Spring"),
            ("channel_email", "on"),
            ("t0.segment", "vip"),
            ("t0.v0.name", "A"),
            ("t0.v1.name", "B"),
            ("t1.segment", "new"),
            ("t1.v0.subject", "Hi"),
            ("t999.segment", "ignored"),
            ("op", "add-variant-1"),
        ]));
        assert_eq!((csrf.as_str(), op), ("tok", Op::AddVariant(1)));
        assert!(form.email && !form.webhook);
        assert_eq!(form.targets.len(), 2);
        assert_eq!(form.targets[0].variants[1].name, "B");
        assert_eq!(form.targets[1].variants[0].subject, "Hi");
    }

    #[test]
    fn numbers_that_are_not_numbers_are_named_by_field() {
        let (form, _, _) = CampaignForm::parse(pairs(&[
            ("window_hours", "a week"),
            ("holdout_percent", "ten"),
            ("t0.segment", "vip"),
            ("t0.v0.name", "A"),
            ("t0.v0.weight", "x"),
        ]));
        let errors = form.input(None).unwrap_err();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["holdout_percent", "t0.v0.weight", "window_hours"]
        );
    }

    #[test]
    fn problems_land_beside_the_rows_they_were_typed_in() {
        let issue = |path: &str| Issue {
            path: path.into(),
            variant: None,
            field: None,
            line: Some(3),
            column: Some(7),
            message: "unexpected end".into(),
        };
        // Form row 0 was left blank, so the domain's target 0 is the form's row 1, whose
        // variant 0 is blank too.
        let kept = vec![(1, vec![1])];
        assert_eq!(
            field_of_issue(&issue("targets[0].variants[0].email.html"), &kept),
            "t1.v1.html"
        );
        assert_eq!(
            field_of_issue(&issue("targets[0].segment"), &kept),
            "t1.segment"
        );
        assert_eq!(
            field_of_issue(&issue("goal.window_hours"), &kept),
            "window_hours"
        );
        assert_eq!(field_of_issue(&issue("fallback.name"), &kept), "form");
        let errors = errors_of(&[issue("targets[0].variants[0].email.html")], &kept);
        assert_eq!(errors["t1.v1.html"], "Line 3, column 7: unexpected end");
    }
}
