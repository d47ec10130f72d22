//! The installation's tracker: builds and verifies the signed click, open and unsubscribe
//! links of messages, from the `[tracking]` configuration.

use clarion_template::{Tracker, TrackingKeys};
use rand::RngCore;
use secrecy::ExposeSecret;

use crate::config::Settings;

/// The tracker the configuration describes. Without configured keys, a random key is made
/// for this process (and a warning logged): links then stop verifying after a restart.
pub fn tracker(settings: &Settings) -> anyhow::Result<Tracker> {
    let tracking = &settings.tracking;
    let keys = if tracking.signing_keys.is_empty() {
        tracing::warn!(
            "tracking.signing_keys is empty: tracking links are signed with a random key that changes at every start; set keys in production"
        );
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        TrackingKeys::new(&[key])?
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
