//! Rendering a campaign's variants into messages: what the delivery worker sends and what a
//! preview shows, through one [`MessageRenderer`] so the two never differ.

use clarion_model::Channel;
use clarion_template::{
    Engine, MessageTracking, RenderContext, RenderedEmail, RenderedWebhook, TemplateCache,
    TemplateError, Tracker, emails_look_identical, webhooks_look_identical,
};
use serde_json::json;

use crate::{
    campaign::{Campaign, SegmentRef, Slot, Variant},
    contacts::ContactData,
    preview::PREVIEW_DELIVERY,
};

/// Renders a campaign's variants into the messages sent (or previewed) for contacts, each
/// variant compiled once.
pub struct MessageRenderer<'a> {
    campaign: &'a Campaign,
    tracker: &'a Tracker,
    cache: TemplateCache,
    campaign_value: serde_json::Value,
}

/// One variant rendered for one contact, per channel of the campaign.
#[derive(Debug)]
pub struct Rendered {
    pub email: Option<Result<RenderedEmail, TemplateError>>,
    pub webhook: Option<Result<RenderedWebhook, TemplateError>>,
}

impl Rendered {
    /// Whether every channel rendered.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.email.as_ref().is_none_or(Result::is_ok)
            && self.webhook.as_ref().is_none_or(Result::is_ok)
    }

    /// Whether both rendered completely and look the same on every channel.
    #[must_use]
    pub fn looks_like(&self, other: &Rendered) -> bool {
        let same_email = match (&self.email, &other.email) {
            (Some(Ok(a)), Some(Ok(b))) => emails_look_identical(a, b),
            (None, None) => true,
            _ => false,
        };
        let same_webhook = match (&self.webhook, &other.webhook) {
            (Some(Ok(a)), Some(Ok(b))) => webhooks_look_identical(a, b),
            (None, None) => true,
            _ => false,
        };
        same_email && same_webhook
    }
}

/// The `segment` value of the render context.
#[must_use]
pub fn segment_value(segment: &SegmentRef) -> serde_json::Value {
    json!({ "id": segment.id, "slug": segment.slug, "name": segment.name })
}

/// The `campaign` value of the render context.
#[must_use]
pub fn campaign_value(campaign: &Campaign) -> serde_json::Value {
    json!({
        "id": campaign.id,
        "name": campaign.name,
        "goal": { "event": campaign.goal.event, "window_hours": campaign.goal.window_hours },
    })
}

impl<'a> MessageRenderer<'a> {
    /// A renderer for `campaign`, signing tracking links with `tracker`.
    #[must_use]
    pub fn new(campaign: &'a Campaign, tracker: &'a Tracker) -> Self {
        Self {
            campaign,
            tracker,
            cache: TemplateCache::new(Engine::default(), 256),
            campaign_value: campaign_value(campaign),
        }
    }

    /// The campaign this renders.
    #[must_use]
    pub fn campaign(&self) -> &'a Campaign {
        self.campaign
    }

    /// Renders `variant` (sitting at `slot`) for `contact` on each channel of the campaign,
    /// with links signed for no delivery (a preview).
    #[must_use]
    pub fn render(&self, slot: Slot<'_>, variant: &Variant, contact: &ContactData) -> Rendered {
        self.render_on(
            slot,
            variant,
            contact,
            PREVIEW_DELIVERY,
            &self.campaign.channels,
        )
    }

    /// Renders `variant` for `contact` on `channels`, with tracking and unsubscribe links
    /// signed for `delivery_id`: what a delivery worker sends.
    #[must_use]
    pub fn render_on(
        &self,
        slot: Slot<'_>,
        variant: &Variant,
        contact: &ContactData,
        delivery_id: &str,
        channels: &[Channel],
    ) -> Rendered {
        let ctx = RenderContext::new(
            &contact.value,
            &segment_value(slot.segment()),
            &self.campaign_value,
            contact.recipient.clone(),
        );
        let contact_id = contact.id.to_string();
        let link_table = crate::engagement::link_table_name(variant.id.0, variant.version);
        let mut tracking = MessageTracking::new(self.tracker, delivery_id, &contact_id);
        // A sent message's literal links point into the saved version's link table; a
        // preview may show content that was never saved, so each of its links is signed.
        if delivery_id != PREVIEW_DELIVERY {
            tracking = tracking.with_link_table(&link_table);
        }
        let key = format!("{}:{}", variant.id, variant.version);
        let email = channels
            .contains(&Channel::Email)
            .then_some(variant.email.as_ref())
            .flatten()
            .map(|email| {
                self.cache
                    .email(&key, &email.content())
                    .and_then(|compiled| compiled.render(&ctx, &tracking))
            });
        let webhook = channels
            .contains(&Channel::Webhook)
            .then_some(variant.webhook.as_ref())
            .flatten()
            .map(|webhook| {
                self.cache
                    .webhook(&key, &webhook.content())
                    .and_then(|compiled| compiled.render(&ctx, &tracking))
            });
        Rendered { email, webhook }
    }
}
