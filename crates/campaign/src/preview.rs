//! Previews: a variant rendered for chosen contacts or for sample members of its segment,
//! which variant each contact would get, and warnings about variants that render the same.
//! Rendering itself is [`crate::render`]'s, the same as the delivery worker's.

use clarion_model::{Channel, ContactId, SegmentId, VariantId, WorkspaceId};
use clarion_segment::members;
use clarion_template::{RenderedEmail, RenderedWebhook, Tracker};
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    CampaignError,
    assign::{Assignment, assign_contacts},
    campaign::{Campaign, SegmentRef, Slot, Variant},
    contacts::{self, ContactData},
    render::{MessageRenderer, Rendered},
    validate::Issue,
};

/// Most contacts one preview renders for.
pub const MAX_PREVIEW_CONTACTS: usize = 50;

/// The delivery id tracking links of a preview are signed for; no delivery has it.
pub const PREVIEW_DELIVERY: &str = "preview";

/// What to preview: `contacts` by external id, or a `sample` of members of the segment of
/// `variant_id`. Without `variant_id`, each contact's message is the variant it would get.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The variant to render; by default each contact's own.
    #[serde(default)]
    pub variant_id: Option<VariantId>,
    /// External ids of the contacts to render for (at most 50).
    #[serde(default)]
    pub contacts: Vec<String>,
    /// How many members of the variant's segment to render for (1 to 50), in contact order.
    #[serde(default)]
    pub sample: Option<i64>,
}

/// A message that could not be rendered for a contact, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RenderFailure {
    pub channel: Channel,
    pub message: String,
}

/// One contact's preview.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactPreview {
    /// The contact's external id.
    pub contact: String,
    /// What the contact gets in this campaign; null when it is outside the audience.
    pub assignment: Option<Assignment>,
    /// The variant rendered: the one asked for, or else the assigned one (null when none).
    pub variant_id: Option<VariantId>,
    /// The rendered variant's name.
    pub variant: Option<String>,
    /// The email as it would be sent (tracked links and pixel included).
    #[schema(value_type = Option<Object>)]
    pub email: Option<RenderedEmail>,
    /// The webhook call as it would be sent.
    #[schema(value_type = Option<Object>)]
    pub webhook: Option<RenderedWebhook>,
    /// Channels whose message fails for this contact, with the reason.
    pub errors: Vec<RenderFailure>,
}

/// Kinds of [`Warning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A variant's segment has no current members.
    EmptySegment,
    /// Two variants render the same message for the same contact.
    IdenticalVariants,
    /// A variant's segment has members, but all of them get an earlier target's message.
    NoRecipients,
}

/// Something about the campaign a marketer should know before launching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
    /// The variants concerned.
    pub variants: Vec<VariantId>,
    /// The segment concerned, by slug.
    pub segment: Option<String>,
    /// The contact the finding was made for, by external id.
    pub contact: Option<String>,
}

/// The answer to a preview.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PreviewReport {
    pub previews: Vec<ContactPreview>,
    pub warnings: Vec<Warning>,
}

/// A warning for each pair of variants that render the same message for one of
/// `contacts` (the first such contact is named).
#[must_use]
pub fn identical_variants(
    renderer: &MessageRenderer<'_>,
    contacts: &[ContactData],
) -> Vec<Warning> {
    let variants: Vec<(Slot<'_>, &Variant)> = renderer.campaign().variants().collect();
    let mut warnings: Vec<Warning> = Vec::new();
    for contact in contacts {
        let rendered: Vec<Rendered> = variants
            .iter()
            .map(|(slot, variant)| renderer.render(*slot, variant, contact))
            .collect();
        for i in 0..variants.len() {
            for j in i + 1..variants.len() {
                let pair = vec![variants[i].1.id, variants[j].1.id];
                if warnings.iter().any(|w| w.variants == pair)
                    || !rendered[i].is_complete()
                    || !rendered[i].looks_like(&rendered[j])
                {
                    continue;
                }
                warnings.push(Warning {
                        kind: WarningKind::IdenticalVariants,
                        message: format!(
                            "variants {:?} (segment {}) and {:?} (segment {}) render the same message for contact {:?}; if they are meant to differ, the segmentation changes nothing here",
                            variants[i].1.name,
                            variants[i].0.segment().slug,
                            variants[j].1.name,
                            variants[j].0.segment().slug,
                            contact.external_id
                        ),
                        variants: pair,
                        segment: None,
                        contact: Some(contact.external_id.clone()),
                    });
            }
        }
    }
    warnings
}

/// Renders what `request` asks for.
///
/// # Errors
/// [`CampaignError::Invalid`] when the request names an unknown variant or contact, asks for
/// too many contacts, or mixes `contacts` and `sample`.
pub async fn preview(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    campaign: &Campaign,
    request: &PreviewRequest,
    tracker: &Tracker,
) -> Result<PreviewReport, CampaignError> {
    let mut issues = Vec::new();
    let chosen = match request.variant_id {
        Some(id) => match campaign.variant(id) {
            Some(found) => Some(found),
            None => {
                issues.push(Issue::at(
                    "variant_id",
                    format!("campaign {} has no variant {id}", campaign.id),
                ));
                None
            }
        },
        None => None,
    };
    match (request.contacts.is_empty(), request.sample) {
        (true, None) => issues.push(Issue::at(
            "contacts",
            "name contacts by external id, or ask for a sample of a variant's segment",
        )),
        (false, Some(_)) => issues.push(Issue::at(
            "sample",
            "ask for either contacts or a sample, not both",
        )),
        _ => {}
    }
    if request.contacts.len() > MAX_PREVIEW_CONTACTS {
        issues.push(Issue::at(
            "contacts",
            format!(
                "a preview renders for at most {MAX_PREVIEW_CONTACTS} contacts, not {}",
                request.contacts.len()
            ),
        ));
    }
    if let Some(n) = request.sample {
        if !(1..=MAX_PREVIEW_CONTACTS as i64).contains(&n) {
            issues.push(Issue::at(
                "sample",
                format!("the sample must be 1 to {MAX_PREVIEW_CONTACTS} contacts, not {n}"),
            ));
        }
        if request.variant_id.is_none() {
            issues.push(Issue::at(
                "variant_id",
                "a sample is drawn from a variant's segment: name the variant",
            ));
        }
    }
    if !issues.is_empty() {
        return Err(CampaignError::Invalid(issues));
    }

    let mut warnings = Vec::new();
    let people = match (request.sample, chosen) {
        (Some(n), Some((slot, variant))) => {
            let segment = slot.segment();
            let ids =
                members::sample(db, SegmentId(segment.id), u64::try_from(n).unwrap_or(1)).await?;
            if ids.is_empty() {
                warnings.push(empty_segment(segment, vec![variant.id]));
            }
            contacts::by_ids(db, workspace, &ids).await?
        }
        _ => {
            let found = contacts::by_external_ids(db, workspace, &request.contacts).await?;
            let missing: Vec<Issue> = request
                .contacts
                .iter()
                .enumerate()
                .filter(|(_, e)| !found.iter().any(|c| &c.external_id == *e))
                .map(|(i, e)| {
                    Issue::at(
                        format!("contacts[{i}]"),
                        format!("there is no contact with external_id {e:?}"),
                    )
                })
                .collect();
            if !missing.is_empty() {
                return Err(CampaignError::Invalid(missing));
            }
            found
        }
    };

    let ids: Vec<ContactId> = people.iter().map(|c| c.id).collect();
    let mut assignments = assign_contacts(db, campaign, &ids).await?;
    let renderer = MessageRenderer::new(campaign, tracker);
    let mut previews = Vec::with_capacity(people.len());
    for contact in &people {
        let assignment = assignments.remove(&contact.id).flatten();
        let shown = chosen.or_else(|| {
            assignment
                .as_ref()
                .and_then(|a| campaign.variant(a.variant_id))
        });
        let mut preview = ContactPreview {
            contact: contact.external_id.clone(),
            assignment,
            variant_id: shown.map(|(_, v)| v.id),
            variant: shown.map(|(_, v)| v.name.clone()),
            email: None,
            webhook: None,
            errors: Vec::new(),
        };
        if let Some((slot, variant)) = shown {
            let rendered = renderer.render(slot, variant, contact);
            match rendered.email {
                Some(Ok(email)) => preview.email = Some(email),
                Some(Err(e)) => preview.errors.push(RenderFailure {
                    channel: Channel::Email,
                    message: e.to_string(),
                }),
                None => {}
            }
            match rendered.webhook {
                Some(Ok(webhook)) => preview.webhook = Some(webhook),
                Some(Err(e)) => preview.errors.push(RenderFailure {
                    channel: Channel::Webhook,
                    message: e.to_string(),
                }),
                None => {}
            }
        }
        previews.push(preview);
    }
    warnings.extend(identical_variants(&renderer, &people));
    Ok(PreviewReport { previews, warnings })
}

/// The warning that a segment of the campaign has no current members.
pub(crate) fn empty_segment(segment: &SegmentRef, variants: Vec<VariantId>) -> Warning {
    Warning {
        kind: WarningKind::EmptySegment,
        message: format!(
            "segment {:?} ({}) has no members, so its variant(s) reach no one",
            segment.slug, segment.name
        ),
        variants,
        segment: Some(segment.slug.clone()),
        contact: None,
    }
}
