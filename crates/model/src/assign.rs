//! Deterministic A/B/n variant choice and holdout membership.
//!
//! Every decision is a function of the campaign id and the contact id only, so preview, launch
//! and reports agree, on any machine and with any Rust version. The hash is the first 8 bytes
//! (big-endian) of SHA-256 over `"clarion-assign-v1" 0x00 purpose 0x00 campaign_id 0x00
//! contact_id`, where `purpose` is `holdout` or `variant`: the two decisions are independent,
//! so the holdout takes the same share from every variant.

use std::fmt::Display;

use sha2::{Digest, Sha256};

/// What a contact gets in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// The contact is held out: no message, counted as control for uplift.
    pub holdout: bool,
    /// Index of the variant in the weights list (chosen even for held-out contacts, so a
    /// report can compare a variant's recipients to its own share of the holdout); `None` when
    /// every weight is zero.
    pub variant: Option<usize>,
}

/// The stable 64-bit hash of a decision (see the module documentation).
#[must_use]
pub fn stable_hash(purpose: &str, campaign_id: &str, contact_id: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"clarion-assign-v1\0");
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(campaign_id.as_bytes());
    h.update([0]);
    h.update(contact_id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Scales a hash to `0..n` without modulo bias worth mentioning (n is small next to 2^64).
fn scale(hash: u64, n: u64) -> u64 {
    // The product fits in u128 and the shift leaves a value below n.
    u64::try_from((u128::from(hash) * u128::from(n)) >> 64).unwrap_or(0)
}

/// Whether the contact is in the campaign's holdout of `percent` percent (0 to 100,
/// resolution one millionth).
#[must_use]
pub fn in_holdout(campaign_id: impl Display, contact_id: impl Display, percent: f64) -> bool {
    if !percent.is_finite() || percent <= 0.0 {
        return false;
    }
    if percent >= 100.0 {
        return true;
    }
    let hash = stable_hash("holdout", &campaign_id.to_string(), &contact_id.to_string());
    // percent is in (0, 100) here, so the threshold is below 100,000,000.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let threshold = (percent * 1_000_000.0).round() as u64;
    scale(hash, 100_000_000) < threshold
}

/// Index of the variant the contact gets in an A/B/n split with the given relative weights,
/// or `None` when all weights are zero. A zero weight is never chosen.
#[must_use]
pub fn pick_variant(
    campaign_id: impl Display,
    contact_id: impl Display,
    weights: &[u32],
) -> Option<usize> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let hash = stable_hash("variant", &campaign_id.to_string(), &contact_id.to_string());
    let mut point = scale(hash, total);
    for (i, w) in weights.iter().enumerate() {
        let w = u64::from(*w);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

/// Both decisions at once.
#[must_use]
pub fn assign(
    campaign_id: impl Display,
    contact_id: impl Display,
    holdout_percent: f64,
    weights: &[u32],
) -> Assignment {
    let campaign = campaign_id.to_string();
    let contact = contact_id.to_string();
    Assignment {
        holdout: in_holdout(&campaign, &contact, holdout_percent),
        variant: pick_variant(&campaign, &contact, weights),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pinned() {
        // Pinned so that a change of the scheme is noticed: reports depend on it.
        assert_eq!(stable_hash("variant", "c1", "42"), {
            let d = Sha256::digest(b"clarion-assign-v1\x00variant\x00c1\x0042");
            u64::from_be_bytes(d[..8].try_into().unwrap())
        });
    }

    #[test]
    fn edges() {
        assert!(!in_holdout(1, 2, 0.0));
        assert!(in_holdout(1, 2, 100.0));
        assert_eq!(pick_variant(1, 2, &[0, 0]), None);
        assert_eq!(pick_variant(1, 2, &[0, 5, 0]), Some(1));
    }
}
