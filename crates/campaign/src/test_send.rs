//! "Send test": one variant's email, rendered for a chosen contact or a sample member of its
//! segment, sent to one address through the configured relay, signed as a delivery would be.
//! The answer says what the relay said.

use clarion_dispatch::{EmailMessage, EmailSender, ListUnsubscribe};
use clarion_model::{EmailAddress, SegmentId, Timestamp, VariantId, WorkspaceId};
use clarion_segment::members;
use clarion_template::Tracker;
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

use crate::{
    CampaignError, campaign::Campaign, contacts, preview::PREVIEW_DELIVERY,
    render::MessageRenderer, senders, validate::Issue, worker::with_preheader,
};

/// Where to send a test and whom to render it for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSendRequest {
    /// The address the test goes to.
    #[schema(value_type = String, format = "email", example = "me@shop.example")]
    pub to: String,
    /// External id of the contact to render for; by default the first member of the
    /// variant's segment.
    #[serde(default)]
    pub contact: Option<String>,
}

/// What became of a test message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestSendReport {
    /// True when the relay accepted the message (or it was written to the outbox).
    pub accepted: bool,
    /// The relay's answer (`250 ...`), or why the message was not sent.
    pub answer: String,
    /// The address it went to.
    pub to: String,
    /// The contact it was rendered for (external id).
    pub contact: String,
    /// The rendered From and Subject.
    pub from: String,
    pub subject: String,
    /// `d=` and `s=` of the DKIM signature, when the message was signed by a sender identity
    /// (the `[email.dkim]` key may sign otherwise).
    pub signed_by: Option<String>,
}

/// Sends variant `variant_id` of `campaign` to `request.to`.
///
/// # Errors
/// [`CampaignError::NotFound`] for an unknown variant, [`CampaignError::Invalid`] naming the
/// field for a bad address, an unknown contact, a variant without email or a template that
/// fails for the contact; database failures.
pub async fn send_test(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    campaign: &Campaign,
    variant_id: VariantId,
    request: &TestSendRequest,
    tracker: &Tracker,
    sender: &EmailSender,
) -> Result<TestSendReport, CampaignError> {
    let Some((slot, variant)) = campaign.variant(variant_id) else {
        return Err(CampaignError::NotFound(format!(
            "variant {variant_id} of campaign {}",
            campaign.id
        )));
    };
    let to = EmailAddress::parse(request.to.as_str())
        .map_err(|error| CampaignError::Invalid(vec![Issue::at("to", error.to_string())]))?;
    if variant.email.is_none() {
        return Err(CampaignError::Invalid(vec![Issue::at(
            "variant_id",
            format!("variant {variant_id} has no email to send"),
        )]));
    }
    let contact = match &request.contact {
        Some(external_id) => {
            contacts::by_external_ids(db, workspace, std::slice::from_ref(external_id))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    CampaignError::Invalid(vec![Issue::at(
                        "contact",
                        format!("there is no contact with external_id {external_id:?}"),
                    )])
                })?
        }
        None => {
            let ids = members::sample(db, SegmentId(slot.segment().id), 1).await?;
            contacts::by_ids(db, workspace, &ids)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    CampaignError::Invalid(vec![Issue::at(
                        "contact",
                        format!(
                            "segment {:?} has no members to render for: name a contact",
                            slot.segment().slug
                        ),
                    )])
                })?
        }
    };
    let renderer = MessageRenderer::new(campaign, tracker);
    let email = match renderer.render(slot, variant, &contact).email {
        Some(Ok(email)) => email,
        Some(Err(error)) => {
            return Err(CampaignError::Invalid(vec![Issue::at(
                "contact",
                format!(
                    "the email does not render for contact {:?}: {error}",
                    contact.external_id
                ),
            )]));
        }
        None => {
            return Err(CampaignError::Invalid(vec![Issue::at(
                "variant_id",
                format!("variant {variant_id} has no email to send"),
            )]));
        }
    };
    let identities = senders::identities(db, workspace).await?;
    let identity = identities.for_from(&email.from);
    let message = EmailMessage {
        delivery_id: format!(
            "test-{}-{}-{}",
            campaign.id,
            variant_id,
            Timestamp::now().millis()
        ),
        campaign_id: Some(campaign.id.to_string()),
        to: to.as_str().to_owned(),
        reply_to: email
            .reply_to
            .clone()
            .or_else(|| identity.and_then(|i| i.reply_to.clone())),
        subject: email.subject.clone(),
        text: Some(email.text.clone()),
        html: Some(with_preheader(&email.preheader, email.html.clone())),
        list_unsubscribe: Some(ListUnsubscribe {
            url: tracker.unsubscribe_url(PREVIEW_DELIVERY, &contact.id.to_string()),
            mailto: None,
            one_click: true,
        }),
        headers: vec![("X-Clarion-Test".to_owned(), "yes".to_owned())],
        dkim: identity.map(|i| Arc::clone(&i.key)),
        return_path: identity.and_then(|i| i.return_path.clone()),
        from: email.from.clone(),
    };
    let (accepted, answer) = match sender.send_email(&message).await {
        Ok(receipt) => (true, receipt.detail),
        Err(error) => (false, error.to_string()),
    };
    Ok(TestSendReport {
        accepted,
        answer,
        to: message.to,
        contact: contact.external_id,
        from: message.from,
        subject: message.subject,
        signed_by: identity.map(|i| format!("d={}; s={}", i.key.domain(), i.key.selector())),
    })
}
