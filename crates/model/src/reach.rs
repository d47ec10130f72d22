//! Whether a contact can be sent to on a channel, and if not, why: the one definition that
//! launch, the delivery worker, audience counts and segment health reports share.
//!
//! A contact is reachable by email when it has an address and its email subscription is
//! `subscribed`; by webhook when its webhook subscription is `subscribed`. [`reachability`]
//! decides it for one contact in Rust; [`reachable_sql`] is the same rule as a SQL condition
//! over a `contacts` row, for counts done in the database.
//!
//! On top of the contact's own state, the workspace's suppression list (table
//! `suppressions`: per channel, an email address or, for webhooks, a contact's external id)
//! keeps a listed contact from being reached whatever its subscription says. The SQL condition
//! includes it; the Rust side looks the list up a page at a time (launch, audience counts,
//! the worker), since a contact row does not carry it.

use crate::{Channel, SubscriptionStatus};

/// Why a contact is not sent to on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suppression {
    /// Email without an address.
    NoAddress,
    /// The contact unsubscribed from the channel.
    Unsubscribed,
    /// The address bounced permanently.
    Bounced,
    /// The contact marked a message as spam.
    Complained,
    /// The stored status is none Clarion knows.
    NotSubscribed,
}

impl Suppression {
    /// The reason as a delivery row stores it.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Suppression::NoAddress => "no email address",
            Suppression::Unsubscribed => "unsubscribed",
            Suppression::Bounced => "bounced",
            Suppression::Complained => "complained",
            Suppression::NotSubscribed => "not subscribed",
        }
    }
}

impl std::fmt::Display for Suppression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Whether a contact with (or without) an email address and with the stored subscription
/// `status` on `channel` (`None` when it does not read as a [`SubscriptionStatus`]) can be sent
/// to there.
///
/// # Errors
/// The [`Suppression`] that keeps the message from being sent.
pub fn reachability(
    channel: Channel,
    has_email: bool,
    status: Option<SubscriptionStatus>,
) -> Result<(), Suppression> {
    if channel == Channel::Email && !has_email {
        return Err(Suppression::NoAddress);
    }
    match status {
        Some(SubscriptionStatus::Subscribed) => Ok(()),
        Some(SubscriptionStatus::Unsubscribed) => Err(Suppression::Unsubscribed),
        Some(SubscriptionStatus::Bounced) => Err(Suppression::Bounced),
        Some(SubscriptionStatus::Complained) => Err(Suppression::Complained),
        None => Err(Suppression::NotSubscribed),
    }
}

/// [`reachability`] and the suppression list as a SQL condition over the `contacts` row
/// aliased `alias`: true exactly when the contact can be sent to on `channel`. `alias` must be
/// a plain SQL identifier. The list is checked through its unique
/// `(workspace_id, channel, address)` index, one lookup per contact.
#[must_use]
pub fn reachable_sql(channel: Channel, alias: &str) -> String {
    let subscribed = SubscriptionStatus::Subscribed.as_str();
    let (own, address) = match channel {
        Channel::Email => (
            format!("{alias}.email IS NOT NULL AND {alias}.email_status = '{subscribed}'"),
            "email",
        ),
        Channel::Webhook => (
            format!("{alias}.webhook_status = '{subscribed}'"),
            "external_id",
        ),
    };
    format!(
        "{own} AND NOT EXISTS (SELECT 1 FROM suppressions sup WHERE sup.workspace_id = \
         {alias}.workspace_id AND sup.channel = '{}' AND sup.address = {alias}.{address})",
        channel.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_needs_an_address_before_a_subscription() {
        let subscribed = Some(SubscriptionStatus::Subscribed);
        assert_eq!(reachability(Channel::Email, true, subscribed), Ok(()));
        assert_eq!(
            reachability(Channel::Email, false, subscribed),
            Err(Suppression::NoAddress)
        );
        assert_eq!(reachability(Channel::Webhook, false, subscribed), Ok(()));
        assert_eq!(
            reachability(Channel::Webhook, true, Some(SubscriptionStatus::Complained)),
            Err(Suppression::Complained)
        );
        assert_eq!(
            reachability(Channel::Email, true, None).map_err(Suppression::reason),
            Err("not subscribed")
        );
    }

    #[test]
    fn the_sql_condition_names_the_alias() {
        assert_eq!(
            reachable_sql(Channel::Email, "c"),
            "c.email IS NOT NULL AND c.email_status = 'subscribed' AND NOT EXISTS (SELECT 1 \
             FROM suppressions sup WHERE sup.workspace_id = c.workspace_id AND sup.channel = \
             'email' AND sup.address = c.email)"
        );
        assert_eq!(
            reachable_sql(Channel::Webhook, "x"),
            "x.webhook_status = 'subscribed' AND NOT EXISTS (SELECT 1 FROM suppressions sup \
             WHERE sup.workspace_id = x.workspace_id AND sup.channel = 'webhook' AND \
             sup.address = x.external_id)"
        );
    }
}
