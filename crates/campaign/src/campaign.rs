//! What a campaign is: as a marketer writes it ([`CampaignInput`]) and as Clarion stores and
//! returns it ([`Campaign`]).

use std::collections::BTreeMap;

use clarion_model::{CampaignId, Channel, Goal, Timestamp, VariantId};
use clarion_template::{EmailContent, WebhookContent};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a campaign is in its life: written as a draft, then launched once (sending), paused
/// and resumed, and ended as sent (every delivery settled) or cancelled. Only drafts may be
/// edited; to change a launched campaign, duplicate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being written; may be edited freely.
    Draft,
    /// Launched: its deliveries are being sent.
    Sending,
    /// Launched, then paused by a user or by the error-rate guard; queued deliveries wait.
    Paused,
    /// Every delivery of the launch is settled.
    Sent,
    /// Stopped for good; deliveries still queued were cancelled.
    Cancelled,
}

impl Status {
    /// The status as stored and sent.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Sending => "sending",
            Status::Paused => "paused",
            Status::Sent => "sent",
            Status::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        match value {
            "draft" => Some(Status::Draft),
            "sending" => Some(Status::Sending),
            "paused" => Some(Status::Paused),
            "sent" => Some(Status::Sent),
            "cancelled" => Some(Status::Cancelled),
            _ => None,
        }
    }
}

/// The email of a variant. Every field is a template (minijinja syntax) over `contact`,
/// `segment`, `campaign`, `locale`, `time_zone` and `unsubscribe_url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailVariant {
    /// Subject line; required.
    #[serde(default)]
    pub subject: String,
    /// Preview text shown after the subject; may be empty.
    #[serde(default)]
    pub preheader: String,
    /// HTML body, autoescaped; links become tracked links and an open pixel is added.
    #[serde(default)]
    pub html: String,
    /// Plain-text body; derived from the HTML when absent or blank.
    #[serde(default)]
    pub text: Option<String>,
    /// `From` header, e.g. `Shop <news@shop.example>`; required.
    #[serde(default)]
    pub from: String,
    /// `Reply-To` header; none when absent or blank.
    #[serde(default)]
    pub reply_to: Option<String>,
}

impl EmailVariant {
    /// The content as the template engine takes it.
    #[must_use]
    pub fn content(&self) -> EmailContent {
        EmailContent {
            subject: self.subject.clone(),
            preheader: self.preheader.clone(),
            html: self.html.clone(),
            text: self.text.clone(),
            from: self.from.clone(),
            reply_to: self.reply_to.clone(),
        }
    }
}

/// The webhook call of a variant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookVariant {
    /// JSON payload template; printed values are inserted as JSON literals, so write
    /// `{"name": {{ contact.first_name }}}` without quotes around the value.
    #[serde(default)]
    pub payload: String,
    /// Extra HTTP headers, name to value template.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The webhook endpoint to POST to, by id or name (`/api/v1/webhook-endpoints`); left
    /// out, the call goes to `sending.webhook_url`, signed with `webhook.secret`. An id keeps
    /// working when the endpoint is renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl WebhookVariant {
    /// The content as the template engine takes it.
    #[must_use]
    pub fn content(&self) -> WebhookContent {
        WebhookContent {
            payload: self.payload.clone(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// One variant as written: its name, its weight in the A/B/n split of its segment, and its
/// content for each channel of the campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantInput {
    /// Set to keep an existing variant (and its history) when the campaign is saved again;
    /// leave out for a new variant.
    #[serde(default)]
    pub id: Option<VariantId>,
    /// Unique within the campaign, e.g. `Champions A`.
    pub name: String,
    /// Relative share of the segment's contacts (a positive whole number); 1 when left out.
    #[serde(default = "one")]
    #[schema(minimum = 1)]
    pub weight: i64,
    /// The email, required when the campaign sends email.
    #[serde(default)]
    pub email: Option<EmailVariant>,
    /// The webhook call, required when the campaign sends webhooks.
    #[serde(default)]
    pub webhook: Option<WebhookVariant>,
}

fn one() -> i64 {
    1
}

/// A segment of the campaign with the variants its members get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetInput {
    /// The segment's slug.
    pub segment: String,
    /// One variant, or several for an A/B/n test.
    pub variants: Vec<VariantInput>,
}

/// A campaign as written by a marketer (the body of create and update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    /// 1 to 200 characters, no control characters.
    #[schema(
        max_length = 200,
        pattern = r"^\s*[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?\s*$"
    )]
    pub name: String,
    pub goal: Goal,
    /// Share of the audience held out as a control group (0 up to, not including, 100).
    #[serde(default)]
    #[schema(minimum = 0, exclusive_maximum = 100)]
    pub holdout_percent: f64,
    /// The channels the campaign sends on; every variant has content for each.
    pub channels: Vec<Channel>,
    /// Segments in priority order: a contact in several gets the variant of the first.
    #[serde(default)]
    pub targets: Vec<TargetInput>,
    /// The segment whose members in none of the targets get the fallback variant; required
    /// with a fallback.
    #[serde(default)]
    pub audience_segment: Option<String>,
    /// The variant for members of the audience segment who are in none of the targets.
    #[serde(default)]
    pub fallback: Option<VariantInput>,
    /// A transactional campaign (receipts, password resets) is exempt from the workspace's
    /// frequency caps and its messages do not count toward them; false when left out.
    #[serde(default)]
    pub transactional: bool,
}

/// A segment as a campaign refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SegmentRef {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

/// A stored variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Variant {
    pub id: VariantId,
    pub name: String,
    pub weight: u32,
    /// How many revisions were saved; the history lists them.
    pub version: i64,
    pub email: Option<EmailVariant>,
    pub webhook: Option<WebhookVariant>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A stored target: a segment and its variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Target {
    pub segment: SegmentRef,
    pub variants: Vec<Variant>,
}

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Campaign {
    pub id: CampaignId,
    pub name: String,
    pub status: Status,
    pub goal: Goal,
    pub holdout_percent: f64,
    pub channels: Vec<Channel>,
    pub targets: Vec<Target>,
    pub audience_segment: Option<SegmentRef>,
    pub fallback: Option<Variant>,
    /// Exempt from the frequency caps, and not counted by them.
    pub transactional: bool,
    /// The campaign this one was copied from, if any.
    pub duplicated_from: Option<CampaignId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where a variant sits in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot<'a> {
    /// Variant `index` of the target of `segment`, at priority `position`.
    Target {
        position: usize,
        index: usize,
        segment: &'a SegmentRef,
    },
    /// The fallback variant, for the audience segment.
    Fallback { audience: &'a SegmentRef },
}

impl Campaign {
    /// Every variant with where it sits, targets first in priority order, then the fallback.
    pub fn variants(&self) -> impl Iterator<Item = (Slot<'_>, &Variant)> {
        let targeted = self.targets.iter().enumerate().flat_map(|(position, t)| {
            t.variants.iter().enumerate().map(move |(index, v)| {
                (
                    Slot::Target {
                        position,
                        index,
                        segment: &t.segment,
                    },
                    v,
                )
            })
        });
        let fallback = self
            .fallback
            .as_ref()
            .zip(self.audience_segment.as_ref())
            .map(|(v, audience)| (Slot::Fallback { audience }, v));
        targeted.chain(fallback)
    }

    /// A variant by id, with where it sits.
    #[must_use]
    pub fn variant(&self, id: VariantId) -> Option<(Slot<'_>, &Variant)> {
        self.variants().find(|(_, v)| v.id == id)
    }

    /// Whether a variant sends webhooks to `sending.webhook_url` (it names no endpoint).
    #[must_use]
    pub fn uses_default_webhook_endpoint(&self) -> bool {
        self.variants().any(|(_, variant)| {
            variant
                .webhook
                .as_ref()
                .is_some_and(|webhook| webhook.endpoint.is_none())
        })
    }

    /// Whether the campaign sends on `channel`.
    #[must_use]
    pub fn sends(&self, channel: Channel) -> bool {
        self.channels.contains(&channel)
    }
}

impl Slot<'_> {
    /// The segment whose members this variant is for.
    #[must_use]
    pub fn segment(&self) -> &SegmentRef {
        match self {
            Slot::Target { segment, .. } => segment,
            Slot::Fallback { audience } => audience,
        }
    }
}

/// One saved revision of a variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Revision {
    /// 1 for the first save, then counting up.
    pub version: i64,
    pub name: String,
    pub weight: u32,
    pub email: Option<EmailVariant>,
    pub webhook: Option<WebhookVariant>,
    /// The API key that saved it, when known.
    pub saved_by: Option<i64>,
    pub saved_at: Timestamp,
}

/// A campaign in a list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CampaignSummary {
    pub id: CampaignId,
    pub name: String,
    pub status: Status,
    pub channels: Vec<Channel>,
    /// Exempt from the frequency caps, and not counted by them.
    pub transactional: bool,
    /// Number of variants, the fallback included.
    pub variants: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
