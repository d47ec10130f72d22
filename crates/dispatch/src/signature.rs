//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>).
//!
//! A receiver verifies a delivery by recomputing
//! `base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"))` and comparing it with
//! the `v1,`-prefixed value in `webhook-signature`; the key is the base64 text after `whsec_`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::DispatchError;

/// Header carrying the unique message id; receivers deduplicate on it.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Header carrying the signing time in Unix seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the signature(s), `v1,<base64>`.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

const SECRET_PREFIX: &str = "whsec_";

/// A webhook signing secret, parsed from its `whsec_<base64>` form. Debug output hides it.
#[derive(Clone)]
pub struct WebhookSecret {
    // The key schedule is computed once; each signature clones it instead of re-keying.
    keyed: Hmac<Sha256>,
}

impl WebhookSecret {
    /// Parses `whsec_` followed by the standard base64 of the key (the spec recommends 24 to
    /// 64 random bytes). The prefix is required so a secret cannot be confused with other
    /// credentials.
    pub fn parse(secret: &str) -> Result<Self, DispatchError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            DispatchError::invalid_config("webhook.secret", "must start with `whsec_`")
        })?;
        let key = BASE64.decode(encoded).map_err(|error| {
            DispatchError::invalid_config(
                "webhook.secret",
                format!("the part after `whsec_` is not base64: {error}"),
            )
        })?;
        if key.is_empty() {
            return Err(DispatchError::invalid_config(
                "webhook.secret",
                "the key after `whsec_` is empty",
            ));
        }
        Self::from_key(&key)
    }

    /// Uses raw key bytes, e.g. freshly generated ones; the receiver's owner gets them as
    /// `whsec_` followed by their standard base64.
    pub fn from_key(key: &[u8]) -> Result<Self, DispatchError> {
        let keyed = Hmac::<Sha256>::new_from_slice(key).map_err(|error| {
            DispatchError::invalid_config("webhook.secret", format!("unusable key: {error}"))
        })?;
        Ok(Self { keyed })
    }

    /// The `v1,<base64>` signature of `body` sent with id `webhook_id` at Unix time
    /// `timestamp`, i.e. the value of the `webhook-signature` header.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.keyed.clone();
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// The secrets one endpoint signs with: the current one first, then, while a rotation
/// overlaps, the one it replaces. Each delivery carries one signature per secret in
/// `webhook-signature`, space-separated (`v1,<new> v1,<old>`), so a receiver that knows either
/// secret verifies it.
#[derive(Clone, Debug)]
pub struct SigningKeys {
    secrets: Vec<WebhookSecret>,
}

impl SigningKeys {
    /// Signs with `current` alone.
    pub fn new(current: WebhookSecret) -> Self {
        Self {
            secrets: vec![current],
        }
    }

    /// Signs with `current` and, during a rotation, also with `previous`.
    pub fn rotating(current: WebhookSecret, previous: Option<WebhookSecret>) -> Self {
        let mut secrets = vec![current];
        secrets.extend(previous);
        Self { secrets }
    }

    /// The value of `webhook-signature`: one `v1,<base64>` per secret, space-separated.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut header = String::new();
        for secret in &self.secrets {
            if !header.is_empty() {
                header.push(' ');
            }
            header.push_str(&secret.sign(webhook_id, timestamp, body));
        }
        header
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Signs one delivery: the `webhook-signature` value for `body` with id `webhook_id` at Unix
/// time `timestamp`, given the secret in `whsec_` form.
pub fn sign(
    secret: &str,
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, DispatchError> {
    Ok(WebhookSecret::parse(secret)?.sign(webhook_id, timestamp, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks reference implementations.
    #[test]
    fn matches_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let timestamp = 1_614_265_330;
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, timestamp, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rejects_secrets_without_prefix_or_base64() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        assert!(WebhookSecret::parse("whsec_").is_err());
    }

    #[test]
    fn a_rotation_signs_with_the_new_secret_then_the_old_one() {
        let new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let old = "whsec_c2Vjb25kIGtleSBvZiAyNCBieXRlcyEh";
        let keys = SigningKeys::rotating(
            WebhookSecret::parse(new).unwrap(),
            Some(WebhookSecret::parse(old).unwrap()),
        );
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            keys.sign(id, 1_614_265_330, body),
            format!(
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= {}",
                sign(old, id, 1_614_265_330, body).unwrap()
            )
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{secret:?}"), "WebhookSecret(<redacted>)");
    }
}
