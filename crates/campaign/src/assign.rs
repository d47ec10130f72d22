//! Which variant a contact gets in a campaign.
//!
//! 1. The first target (in the campaign's order) whose segment the contact is a current member
//!    of wins; a contact in none of them but in the audience segment gets the fallback.
//! 2. Within the target, the A/B/n weights pick a variant, and the holdout share decides
//!    whether the contact is held out; both by [`clarion_model::assign::assign`] over the
//!    campaign id and the contact id, so preview, launch and reports agree.
//!
//! Memberships are read through [`clarion_segment::members`].

use std::collections::{HashMap, HashSet};

use clarion_model::{ContactId, SegmentId, VariantId};
use clarion_segment::members;
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;
use utoipa::ToSchema;

use crate::campaign::{Campaign, SegmentRef};

/// A group of a campaign's audience: the members of one target, or the fallback's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// The target at this position.
    Target(usize),
    /// Members of the audience segment in no target.
    Fallback,
}

/// What one contact gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Assignment {
    /// The variant; for a held-out contact, the one it would have got.
    pub variant_id: VariantId,
    /// The variant's name.
    pub variant: String,
    /// The slug of the segment the contact was reached through.
    pub segment: String,
    /// Whether the variant is the fallback.
    pub fallback: bool,
    /// Held out as control: no message is sent.
    pub holdout: bool,
}

/// The group a contact belongs to, given the segments it is a current member of.
#[must_use]
pub fn group_of(campaign: &Campaign, member_of: &HashSet<SegmentId>) -> Option<Group> {
    if let Some(position) = campaign
        .targets
        .iter()
        .position(|t| member_of.contains(&SegmentId(t.segment.id)))
    {
        return Some(Group::Target(position));
    }
    match (&campaign.fallback, &campaign.audience_segment) {
        (Some(_), Some(audience)) if member_of.contains(&SegmentId(audience.id)) => {
            Some(Group::Fallback)
        }
        _ => None,
    }
}

/// The variant weights of a group, in order.
#[must_use]
pub fn weights(campaign: &Campaign, group: Group) -> Vec<u32> {
    match group {
        Group::Target(position) => campaign
            .targets
            .get(position)
            .map(|t| t.variants.iter().map(|v| v.weight).collect())
            .unwrap_or_default(),
        Group::Fallback => vec![1],
    }
}

/// What a contact of `group` gets.
#[must_use]
pub fn assign_in_group(
    campaign: &Campaign,
    group: Group,
    contact: ContactId,
) -> Option<Assignment> {
    let decision = clarion_model::assign::assign(
        campaign.id.0,
        contact.0,
        campaign.holdout_percent,
        &weights(campaign, group),
    );
    let index = decision.variant?;
    let (variant, segment, fallback) = match group {
        Group::Target(position) => {
            let target = campaign.targets.get(position)?;
            (target.variants.get(index)?, &target.segment, false)
        }
        Group::Fallback => (
            campaign.fallback.as_ref()?,
            campaign.audience_segment.as_ref()?,
            true,
        ),
    };
    Some(Assignment {
        variant_id: variant.id,
        variant: variant.name.clone(),
        segment: segment.slug.clone(),
        fallback,
        holdout: decision.holdout,
    })
}

/// One group of the audience as launch and the audience count read it: the members of
/// `segment`, less those in one of the `earlier` segments (they belong to an earlier group).
#[derive(Debug, Clone)]
pub struct GroupPlan<'a> {
    pub group: Group,
    pub segment: &'a SegmentRef,
    pub earlier: Vec<SegmentId>,
}

/// The campaign's groups in priority order: each target, then the fallback's audience less
/// every target.
#[must_use]
pub fn groups(campaign: &Campaign) -> Vec<GroupPlan<'_>> {
    let all_targets: Vec<SegmentId> = campaign
        .targets
        .iter()
        .map(|t| SegmentId(t.segment.id))
        .collect();
    let mut plans: Vec<GroupPlan<'_>> = campaign
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| GroupPlan {
            group: Group::Target(i),
            segment: &t.segment,
            earlier: all_targets[..i].to_vec(),
        })
        .collect();
    if campaign.fallback.is_some()
        && let Some(audience) = &campaign.audience_segment
    {
        plans.push(GroupPlan {
            group: Group::Fallback,
            segment: audience,
            earlier: all_targets,
        });
    }
    plans
}

/// The ids of every segment the campaign reads: targets in order, then the audience.
#[must_use]
pub fn segment_ids(campaign: &Campaign) -> Vec<SegmentId> {
    campaign
        .targets
        .iter()
        .map(|t| SegmentId(t.segment.id))
        .chain(campaign.audience_segment.as_ref().map(|s| SegmentId(s.id)))
        .collect()
}

/// What each of `contacts` gets (`None` for a contact outside the campaign's audience), read
/// from their current memberships in one query.
///
/// # Errors
/// Database failures.
pub async fn assign_contacts(
    db: &impl ConnectionTrait,
    campaign: &Campaign,
    contacts: &[ContactId],
) -> Result<HashMap<ContactId, Option<Assignment>>, DbErr> {
    let member_of = members::of_contacts(db, contacts, &segment_ids(campaign)).await?;
    let none = HashSet::new();
    Ok(contacts
        .iter()
        .map(|&contact| {
            let groups = member_of.get(&contact).unwrap_or(&none);
            let assignment = group_of(campaign, groups)
                .and_then(|group| assign_in_group(campaign, group, contact));
            (contact, assignment)
        })
        .collect())
}
