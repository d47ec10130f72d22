//! The installation's tracker: builds and verifies the signed click, open and unsubscribe
//! links of messages, from the `[tracking]` configuration.

use clarion_template::{Tracker, TrackingKeys};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

use crate::config::Settings;
use crate::store::secrets::{TRACKING_KEY, installation_secret};

/// The tracker the configuration describes. Without configured keys, the installation's own
/// key signs: generated at the first start and kept in the database, so links keep working
/// across restarts and between every process on the same database.
pub async fn tracker(settings: &Settings, db: &DatabaseConnection) -> anyhow::Result<Tracker> {
    let tracking = &settings.tracking;
    let keys = if tracking.signing_keys.is_empty() {
        tracing::info!(
            "tracking.signing_keys is empty: tracking links are signed with the key Clarion generated and keeps in the database"
        );
        let key = installation_secret(db, TRACKING_KEY).await?;
        TrackingKeys::new(&[key.expose_secret().as_bytes()])?
    } else {
        let keys: Vec<&[u8]> = tracking
            .signing_keys
            .iter()
            .map(|k| k.expose_secret().as_bytes())
            .collect();
        TrackingKeys::new(&keys)?
    };
    let base = if tracking.base_url.is_empty() {
        &settings.server.public_url
    } else {
        &tracking.base_url
    };
    let mut tracker = Tracker::new(base, keys)?;
    if !tracking.unsubscribe_mailto.is_empty() {
        tracker = tracker.with_unsubscribe_mailto(&tracking.unsubscribe_mailto)?;
    }
    Ok(tracker)
}
