//! Who a campaign reaches: per variant, how many contacts get it, how many of them are held
//! out, and how many of the rest are reachable on each channel.
//!
//! Each target's segment is read a page of current members at a time through
//! [`clarion_segment::members`], together with which of those contacts are in an earlier
//! target's segment (they get that target's message). Each remaining contact is assigned with
//! the same hash as at launch and counted as reachable by the same rules: the contact's own
//! state ([`clarion_model::reachability`]) and the workspace's suppression list, looked up a
//! page at a time as launch does ([`suppression::of_contacts`]). Memory stays flat however
//! large the segment, and the counts agree with what launch will do.

use std::collections::{BTreeMap, HashMap, HashSet};

use clarion_model::{Channel, ContactId, SegmentId, VariantId, WorkspaceId};
use clarion_segment::members;
use clarion_template::Tracker;
use sea_orm::ConnectionTrait;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    CampaignError,
    assign::{GroupPlan, assign_in_group, groups, segment_ids},
    campaign::{Campaign, SegmentRef},
    contacts,
    preview::{Warning, WarningKind, empty_segment, identical_variants},
    render::MessageRenderer,
    suppression,
};

/// Segment members read per query.
const PAGE: u64 = 5_000;
/// Members taken from each segment to look for identical variants.
const SAMPLE_PER_SEGMENT: u64 = 2;
/// Most contacts rendered for the identical-variants check.
const MAX_SAMPLE: usize = 10;

/// Counts for one variant (or for the whole campaign).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Counts {
    /// Contacts who get this variant, held-out ones included.
    pub contacts: u64,
    /// Of those, held out as control.
    pub holdout: u64,
    /// Contacts who would be sent the variant (`contacts - holdout`).
    pub recipients: u64,
    /// Of the recipients, how many each channel of the campaign reaches.
    pub reachable: BTreeMap<String, u64>,
}

/// The audience of one variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct VariantAudience {
    pub variant_id: VariantId,
    pub variant: String,
    /// The segment the variant is for, by slug.
    pub segment: String,
    /// Whether this is the fallback variant.
    pub fallback: bool,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Current size of a segment the campaign uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SegmentSize {
    pub segment: String,
    pub members: u64,
}

/// The answer to an audience request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AudienceReport {
    /// Targets' variants in priority order, then the fallback.
    pub variants: Vec<VariantAudience>,
    pub total: Counts,
    pub segments: Vec<SegmentSize>,
    pub warnings: Vec<Warning>,
}

/// Counts the campaign's audience and looks for empty segments and identical variants.
///
/// # Errors
/// Database failures.
pub async fn audience(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    campaign: &Campaign,
    tracker: &Tracker,
) -> Result<AudienceReport, CampaignError> {
    let channels: Vec<Channel> = campaign.channels.clone();
    let empty_counts = || Counts {
        reachable: channels
            .iter()
            .map(|c| (c.as_str().to_owned(), 0))
            .collect(),
        ..Counts::default()
    };
    let mut variants: Vec<VariantAudience> = campaign
        .variants()
        .map(|(slot, v)| VariantAudience {
            variant_id: v.id,
            variant: v.name.clone(),
            segment: slot.segment().slug.clone(),
            fallback: campaign.fallback.as_ref().is_some_and(|f| f.id == v.id),
            counts: empty_counts(),
        })
        .collect();
    // Only channels whose list has entries are looked up, page by page.
    let mut listed = Vec::new();
    for &channel in &channels {
        if suppression::any(db, workspace, channel).await? {
            listed.push(channel);
        }
    }

    for GroupPlan {
        group,
        segment,
        earlier,
    } in groups(campaign)
    {
        let mut after = None;
        loop {
            let page = members::page(db, workspace, SegmentId(segment.id), after, PAGE).await?;
            let (Some(first), Some(last)) = (page.first(), page.last()) else {
                break;
            };
            let taken = members::in_any_between(db, &earlier, first.contact, last.contact).await?;
            let mut on_list: HashMap<Channel, HashSet<ContactId>> = HashMap::new();
            if !listed.is_empty() {
                let ids: Vec<ContactId> = page.iter().map(|m| m.contact).collect();
                for &channel in &listed {
                    let found = suppression::of_contacts(db, workspace, channel, &ids).await?;
                    on_list.insert(channel, found.into_keys().collect());
                }
            }
            for member in &page {
                if taken.contains(&member.contact) {
                    continue;
                }
                let Some(assignment) = assign_in_group(campaign, group, member.contact) else {
                    continue;
                };
                if let Some(counts) = variants
                    .iter_mut()
                    .find(|v| v.variant_id == assignment.variant_id)
                    .map(|v| &mut v.counts)
                {
                    add(counts, assignment.holdout, member, &on_list);
                }
            }
            if (page.len() as u64) < PAGE {
                break;
            }
            after = Some(last.contact);
        }
    }
    let mut total = empty_counts();
    for v in &variants {
        total.contacts += v.counts.contacts;
        total.holdout += v.counts.holdout;
        total.recipients += v.counts.recipients;
        for (channel, n) in &v.counts.reachable {
            *total.reachable.entry(channel.clone()).or_default() += n;
        }
    }

    let sizes = members::sizes(db, &segment_ids(campaign)).await?;
    let mut warnings = Vec::new();
    for (slot_segment, ids) in segments_with_variants(campaign) {
        let members = sizes.get(&SegmentId(slot_segment.id)).copied().unwrap_or(0);
        if members == 0 {
            warnings.push(empty_segment(slot_segment, ids));
        } else {
            let silent: Vec<VariantId> = variants
                .iter()
                .filter(|v| ids.contains(&v.variant_id) && v.counts.contacts == 0)
                .map(|v| v.variant_id)
                .collect();
            if !silent.is_empty() {
                warnings.push(Warning {
                    kind: WarningKind::NoRecipients,
                    message: format!(
                        "all {members} member(s) of segment {:?} are in an earlier target's segment, so its variant(s) reach no one",
                        slot_segment.slug
                    ),
                    variants: silent,
                    segment: Some(slot_segment.slug.clone()),
                    contact: None,
                });
            }
        }
    }

    let mut sample = Vec::new();
    for segment in segment_ids(campaign) {
        for id in members::sample(db, segment, SAMPLE_PER_SEGMENT).await? {
            if !sample.contains(&id) && sample.len() < MAX_SAMPLE {
                sample.push(id);
            }
        }
    }
    let people = contacts::by_ids(db, workspace, &sample).await?;
    warnings.extend(identical_variants(
        &MessageRenderer::new(campaign, tracker),
        &people,
    ));

    let segments = campaign
        .targets
        .iter()
        .map(|t| &t.segment)
        .chain(campaign.audience_segment.as_ref())
        .map(|s| SegmentSize {
            segment: s.slug.clone(),
            members: sizes.get(&SegmentId(s.id)).copied().unwrap_or(0),
        })
        .collect();
    Ok(AudienceReport {
        variants,
        total,
        segments,
        warnings,
    })
}

/// Counts one member; `on_list` holds, per channel, the page's contacts on the suppression
/// list.
fn add(
    counts: &mut Counts,
    holdout: bool,
    member: &members::Member,
    on_list: &HashMap<Channel, HashSet<ContactId>>,
) {
    counts.contacts += 1;
    if holdout {
        counts.holdout += 1;
        return;
    }
    counts.recipients += 1;
    for channel in Channel::ALL {
        if let Some(n) = counts.reachable.get_mut(channel.as_str()) {
            let listed = on_list
                .get(&channel)
                .is_some_and(|ids| ids.contains(&member.contact));
            *n += u64::from(member.reachability(channel).is_ok() && !listed);
        }
    }
}

/// Each segment of the campaign with the variants that depend on it.
fn segments_with_variants(campaign: &Campaign) -> Vec<(&SegmentRef, Vec<VariantId>)> {
    let mut out: Vec<(&SegmentRef, Vec<VariantId>)> = campaign
        .targets
        .iter()
        .map(|t| (&t.segment, t.variants.iter().map(|v| v.id).collect()))
        .collect();
    if let (Some(fallback), Some(audience)) = (&campaign.fallback, &campaign.audience_segment) {
        out.push((audience, vec![fallback.id]));
    }
    out
}
