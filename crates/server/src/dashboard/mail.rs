//! The emails of accounts: an invitation or a password-reset link, sent through the
//! configured relay (or written to the outbox when none is configured), so that an admin need
//! not pass the link on by hand and a person can reset a forgotten password alone.

use clarion_dispatch::{DispatchError, EmailConfig, EmailMessage, EmailSender};
use clarion_model::Timestamp;

use super::templates::datetime;
use crate::{
    accounts::{AccountError, LinkPurpose, User, links, random_token},
    state::AppState,
};

/// One link email: who gets it, from whom, and the link.
pub struct LinkEmail<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub purpose: LinkPurpose,
    pub url: &'a str,
    pub expires_at: Timestamp,
}

impl LinkEmail<'_> {
    fn message(&self) -> EmailMessage {
        let expires = datetime(self.expires_at.millis());
        let (subject, text) = match self.purpose {
            LinkPurpose::Invite => (
                "You are invited to Clarion",
                format!(
                    "You have been invited to Clarion.\n\nChoose your password here to finish setting up your account:\n\n{}\n\nThe link works once and expires {expires}.\n",
                    self.url
                ),
            ),
            LinkPurpose::Reset => (
                "Reset your Clarion password",
                format!(
                    "Someone asked to reset the password of the Clarion account of this address.\n\nChoose a new password here:\n\n{}\n\nThe link works once and expires {expires}. If you did not ask for it, ignore this email: your password stays as it is.\n",
                    self.url
                ),
            ),
        };
        EmailMessage {
            delivery_id: format!("account-{}", random_token()),
            campaign_id: None,
            from: self.from.to_string(),
            to: self.to.to_string(),
            reply_to: None,
            subject: subject.to_string(),
            text: Some(text),
            html: None,
            list_unsubscribe: None,
            headers: vec![("Auto-Submitted".into(), "auto-generated".into())],
            dkim: None,
            return_path: None,
        }
    }

    /// Sends the email; answers what the relay said (or where the outbox file went).
    ///
    /// # Errors
    /// The relay refused or did not answer, or the email settings are unusable.
    pub async fn send(&self, config: &EmailConfig) -> Result<String, DispatchError> {
        let sender = EmailSender::new(config).await?;
        let result = sender.send_email(&self.message()).await;
        sender.shutdown().await;
        result.map(|receipt| receipt.detail)
    }
}

/// A link just issued for a user, and how emailing it went.
pub(super) struct Issued {
    pub purpose: LinkPurpose,
    pub url: String,
    pub expires_at: Timestamp,
    /// What the relay said, or why the email could not be sent.
    pub mailed: Result<String, DispatchError>,
}

/// Issues a one-time link for `user` and emails it: an invitation while the account has no
/// password, a password reset once it has one.
///
/// # Errors
/// The link could not be stored. A failed email is not an error: [`Issued::mailed`] says
/// why, and the page can still show the link.
pub(super) async fn issue_and_send(
    state: &AppState,
    user: &User,
    created_by: Option<i64>,
) -> Result<Issued, AccountError> {
    let dashboard = &state.settings.dashboard;
    let (purpose, ttl) = if user.has_password {
        (LinkPurpose::Reset, dashboard.reset_link_lifetime())
    } else {
        (LinkPurpose::Invite, dashboard.invite_link_lifetime())
    };
    let (token, expires_at) = links::issue(
        &state.db,
        &state.accounts.links,
        user.id,
        purpose,
        ttl,
        created_by,
    )
    .await?;
    let url = format!(
        "{}/password/{token}",
        state.settings.server.public_url.trim_end_matches('/')
    );
    let email = LinkEmail {
        from: &dashboard.mail_from,
        to: &user.email,
        purpose,
        url: &url,
        expires_at,
    };
    let mailed = email.send(&state.settings.email).await;
    match &mailed {
        Ok(_) => tracing::info!(user = user.id, purpose = purpose.as_str(), "link emailed"),
        Err(error) => {
            tracing::warn!(user = user.id, purpose = purpose.as_str(), %error, "a link email could not be sent");
        }
    }
    Ok(Issued {
        purpose,
        url,
        expires_at,
        mailed,
    })
}
