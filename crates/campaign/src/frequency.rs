//! Frequency caps: per workspace and channel, at most `max_messages` messages to one contact
//! within `window_hours` (say 2 marketing emails in 7 days), across every campaign.
//!
//! What counts is what was sent: deliveries with status `sent` on the channel whose
//! `sent_at` lies within the window, from campaigns that are not transactional. A message
//! sent at `t` counts while `now - t < window`; from `t + window` on it no longer does.
//! Transactional campaigns ([`crate::Campaign::transactional`]) are never capped and never
//! counted.
//!
//! The cap is checked twice: at launch, a contact who has had `max_messages` already gets a
//! `suppressed` row with the reason [`REASON`]; and by the worker just before sending, since
//! other campaigns may have sent in between. The worker's check is one query per batch
//! (and workspace), whatever the batch size; within a batch, a contact's messages are allowed
//! in claim order until the cap is reached.
//!
//! Two workers sending to the same contact at the same moment each see the other's message
//! only once it is recorded `sent`, so such a race can let one message over the cap through.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use clarion_contacts::begin_write;
use clarion_model::{Channel, ContactId, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, Statement,
    sea_query::{Expr, ExprTrait, Order, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{CampaignError, validate::Issue};

/// The reason a delivery over a cap keeps.
pub const REASON: &str = "frequency cap";

/// Most messages a cap may allow.
pub const MAX_MESSAGES: i64 = 10_000;

/// The longest window: a leap year, in hours.
pub const MAX_WINDOW_HOURS: i64 = 366 * 24;

/// One channel's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    /// The channel capped: `email` or `webhook`; each at most once.
    pub channel: Channel,
    /// The most messages a contact is sent on the channel within the window (1 to 10000).
    #[schema(minimum = 1, maximum = 10_000, example = 2)]
    pub max_messages: i64,
    /// The window in hours (1 to 8784, a leap year), e.g. 168 for 7 days. A message counts
    /// from when it was sent until exactly `window_hours` later.
    #[schema(minimum = 1, maximum = 8784, example = 168)]
    pub window_hours: i64,
}

/// A workspace's caps; a channel left out is not capped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCaps {
    /// At most one per channel; an empty list turns the caps off.
    pub caps: Vec<FrequencyCap>,
}

impl FrequencyCaps {
    /// The cap of `channel`, if it has one.
    #[must_use]
    pub fn of(&self, channel: Channel) -> Option<FrequencyCap> {
        self.caps.iter().copied().find(|c| c.channel == channel)
    }

    /// Checks every cap; each problem names its field (`caps[1].window_hours`).
    ///
    /// # Errors
    /// [`CampaignError::Invalid`] with every problem found.
    pub fn check(&self) -> Result<(), CampaignError> {
        let mut issues = Vec::new();
        let mut seen = HashSet::new();
        for (i, cap) in self.caps.iter().enumerate() {
            if !seen.insert(cap.channel) {
                issues.push(issue(
                    &format!("caps[{i}].channel"),
                    format!(
                        "{} is capped twice; give each channel one cap",
                        cap.channel.as_str()
                    ),
                ));
            }
            if !(1..=MAX_MESSAGES).contains(&cap.max_messages) {
                issues.push(issue(
                    &format!("caps[{i}].max_messages"),
                    format!(
                        "must be 1 to {MAX_MESSAGES}, not {}; to stop capping a channel, leave it out",
                        cap.max_messages
                    ),
                ));
            }
            if !(1..=MAX_WINDOW_HOURS).contains(&cap.window_hours) {
                issues.push(issue(
                    &format!("caps[{i}].window_hours"),
                    format!(
                        "must be 1 to {MAX_WINDOW_HOURS} hours (a year), not {}",
                        cap.window_hours
                    ),
                ));
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(CampaignError::Invalid(issues))
        }
    }
}

fn issue(field: &str, message: String) -> Issue {
    let mut issue = Issue::at(field, message);
    issue.field = Some(field.to_owned());
    issue
}

/// The caps of `workspace`, email first.
///
/// # Errors
/// Database failures, or [`CampaignError::Corrupt`] for a channel Clarion did not write.
pub async fn get(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<FrequencyCaps, CampaignError> {
    let select = Query::select()
        .columns(["channel", "max_messages", "window_hours"])
        .from("frequency_caps")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .order_by("channel", Order::Asc)
        .to_owned();
    let mut caps = Vec::new();
    for row in db.query_all(&select).await? {
        let channel: String = row.try_get("", "channel")?;
        caps.push(FrequencyCap {
            channel: Channel::parse(&channel).ok_or_else(|| {
                CampaignError::Corrupt(format!("frequency cap channel {channel:?}"))
            })?,
            max_messages: row.try_get("", "max_messages")?,
            window_hours: row.try_get("", "window_hours")?,
        });
    }
    Ok(FrequencyCaps { caps })
}

/// Replaces the caps of `workspace` with `caps` (checked first; nothing changes when one is
/// wrong).
///
/// # Errors
/// [`CampaignError::Invalid`] naming each field at fault; database failures.
pub async fn put(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    caps: FrequencyCaps,
) -> Result<FrequencyCaps, CampaignError> {
    caps.check()?;
    let txn = begin_write(db).await?;
    let delete = Query::delete()
        .from_table("frequency_caps")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    txn.execute(&delete).await?;
    if !caps.caps.is_empty() {
        let now = Timestamp::now().millis();
        let mut insert = Query::insert();
        insert.into_table("frequency_caps").columns([
            "workspace_id",
            "channel",
            "max_messages",
            "window_hours",
            "updated_at",
        ]);
        for cap in &caps.caps {
            insert.values_panic([
                workspace.0.into(),
                cap.channel.as_str().into(),
                cap.max_messages.into(),
                cap.window_hours.into(),
                now.into(),
            ]);
        }
        txn.execute(&insert).await?;
    }
    txn.commit().await?;
    get(db, workspace).await
}

/// What the cap of one channel leaves a set of contacts.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// The cap; `None` when the channel is not capped (then everything may be sent).
    pub cap: Option<FrequencyCap>,
    /// Messages already counted per contact; contacts with none are left out.
    pub sent: HashMap<ContactId, i64>,
}

impl Counts {
    /// Whether `contact` has had its cap's worth already.
    #[must_use]
    pub fn is_full(&self, contact: ContactId) -> bool {
        self.cap
            .is_some_and(|cap| self.sent.get(&contact).copied().unwrap_or(0) >= cap.max_messages)
    }
}

/// The cap of `channel` in `workspace` and what counts against it at `now` for each of
/// `contacts`. One query (per 10,000 contacts) reads both, answered by the caps' primary key,
/// the deliveries' contact index and the campaigns' primary key; a workspace without a cap
/// on the channel costs one primary-key lookup.
///
/// # Errors
/// Database failures.
pub async fn counts(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    channel: Channel,
    now: Timestamp,
    contacts: &[ContactId],
) -> Result<Counts, DbErr> {
    let mut counts = Counts::default();
    if contacts.is_empty() {
        return Ok(counts);
    }
    let backend = db.get_database_backend();
    for chunk in contacts.chunks(10_000) {
        let mut ids = String::with_capacity(chunk.len() * 8);
        for (i, id) in chunk.iter().enumerate() {
            if i > 0 {
                ids.push(',');
            }
            let _ = write!(ids, "{}", id.0);
        }
        // Contact ids, the workspace and the time are integers and the channel one of
        // Clarion's constants, so they are written inline: a launch page holds thousands.
        // The left join answers the cap even when no contact has a message in the window;
        // without a cap there is no row at all.
        let sql = format!(
            "SELECT f.max_messages AS max_messages, f.window_hours AS window_hours, \
             d.contact_id AS contact_id, COUNT(d.id) AS sent \
             FROM frequency_caps f LEFT JOIN deliveries d \
             ON d.workspace_id = f.workspace_id AND d.channel = f.channel \
             AND d.contact_id IN ({ids}) AND d.status = 'sent' \
             AND d.sent_at > {now} - f.window_hours * 3600000 \
             AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = d.campaign_id AND c.transactional) \
             WHERE f.workspace_id = {workspace} AND f.channel = '{channel}' \
             GROUP BY f.max_messages, f.window_hours, d.contact_id",
            now = now.millis(),
            workspace = workspace.0,
            channel = channel.as_str(),
        );
        for row in db
            .query_all_raw(Statement::from_string(backend, sql))
            .await?
        {
            counts.cap = Some(FrequencyCap {
                channel,
                max_messages: row.try_get("", "max_messages")?,
                window_hours: row.try_get("", "window_hours")?,
            });
            let contact: Option<i64> = row.try_get("", "contact_id")?;
            if let Some(contact) = contact {
                counts
                    .sent
                    .insert(ContactId(contact), row.try_get("", "sent")?);
            }
        }
        if counts.cap.is_none() {
            // Not capped: the other chunks would answer the same.
            break;
        }
    }
    Ok(counts)
}

/// Splits a batch about to be sent on `channel` into what may go and what is over its
/// contact's cap, in the batch's order: a contact with `k` messages left in the window keeps
/// its first `k`. `recipient` names an item's workspace and contact, or `None` for an item
/// that is exempt (a transactional campaign's) and does not count. One query per workspace.
///
/// # Errors
/// Database failures.
pub async fn split<T>(
    db: &impl ConnectionTrait,
    channel: Channel,
    now: Timestamp,
    items: Vec<T>,
    recipient: impl Fn(&T) -> Option<(WorkspaceId, ContactId)>,
) -> Result<(Vec<T>, Vec<T>), DbErr> {
    let mut by_workspace: HashMap<WorkspaceId, Vec<ContactId>> = HashMap::new();
    for item in &items {
        if let Some((workspace, contact)) = recipient(item) {
            by_workspace.entry(workspace).or_default().push(contact);
        }
    }
    let mut left: HashMap<(WorkspaceId, ContactId), i64> = HashMap::new();
    for (workspace, mut contacts) in by_workspace {
        contacts.sort_unstable();
        contacts.dedup();
        let counts = counts(db, workspace, channel, now, &contacts).await?;
        let Some(cap) = counts.cap else { continue };
        for contact in contacts {
            let sent = counts.sent.get(&contact).copied().unwrap_or(0);
            left.insert((workspace, contact), cap.max_messages - sent);
        }
    }
    if left.is_empty() {
        return Ok((items, Vec::new()));
    }
    let (mut kept, mut over) = (Vec::with_capacity(items.len()), Vec::new());
    for item in items {
        let remaining = recipient(&item).and_then(|key| left.get_mut(&key));
        match remaining {
            Some(remaining) if *remaining <= 0 => over.push(item),
            Some(remaining) => {
                *remaining -= 1;
                kept.push(item);
            }
            None => kept.push(item),
        }
    }
    Ok((kept, over))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(channel: Channel, max_messages: i64, window_hours: i64) -> FrequencyCap {
        FrequencyCap {
            channel,
            max_messages,
            window_hours,
        }
    }

    #[test]
    fn bad_caps_name_their_field() {
        let caps = FrequencyCaps {
            caps: vec![
                cap(Channel::Email, 0, 168),
                cap(Channel::Webhook, 2, -1),
                cap(Channel::Email, 2, MAX_WINDOW_HOURS + 1),
            ],
        };
        let Err(CampaignError::Invalid(issues)) = caps.check() else {
            panic!("bad caps were accepted");
        };
        let fields: Vec<&str> = issues.iter().filter_map(|i| i.field.as_deref()).collect();
        assert_eq!(
            fields,
            [
                "caps[0].max_messages",
                "caps[1].window_hours",
                "caps[2].channel",
                "caps[2].window_hours"
            ]
        );
        let good = FrequencyCaps {
            caps: vec![
                cap(Channel::Email, 2, 168),
                cap(Channel::Webhook, MAX_MESSAGES, MAX_WINDOW_HOURS),
            ],
        };
        assert!(good.check().is_ok());
        assert_eq!(good.of(Channel::Email), Some(cap(Channel::Email, 2, 168)));
    }

    #[test]
    fn a_full_contact_is_one_at_the_cap() {
        let counts = Counts {
            cap: Some(cap(Channel::Email, 2, 1)),
            sent: HashMap::from([(ContactId(1), 2), (ContactId(2), 1)]),
        };
        assert!(counts.is_full(ContactId(1)));
        assert!(!counts.is_full(ContactId(2)));
        assert!(!counts.is_full(ContactId(3)));
        assert!(!Counts::default().is_full(ContactId(1)));
    }
}
