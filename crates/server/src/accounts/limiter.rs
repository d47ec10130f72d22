//! Login throttling: Redis counts failed logins per account and per client address; once a
//! count reaches its threshold, logins for that account (or from that address) are refused,
//! even with the right password, until `lockout_minutes` after the last failure. Requests for
//! a password-reset link are counted the same way, per hour. Counters are shared by every
//! server process of the installation.

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Deserialize;

use super::{AccountError, token_hash};

/// `[dashboard]` thresholds of the limiter.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LockoutSettings {
    pub account_failures: u64,
    pub address_failures: u64,
    pub minutes: u64,
    /// Reset links one account may ask for per hour.
    pub reset_account_requests: u64,
    /// Reset links one client address may ask for per hour.
    pub reset_address_requests: u64,
}

/// Counts failed logins in Redis.
#[derive(Clone)]
pub struct LoginLimiter {
    redis: ConnectionManager,
    prefix: String,
    settings: LockoutSettings,
}

impl LoginLimiter {
    pub fn new(redis: ConnectionManager, key_prefix: &str, settings: LockoutSettings) -> Self {
        LoginLimiter {
            redis,
            prefix: key_prefix.to_string(),
            settings,
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.settings.minutes.saturating_mul(60))
    }

    /// Keys carry a hash of the address, not the address, and share a hash tag per kind.
    fn keys(&self, email: &str, address: &str) -> (String, String) {
        self.keys_of("login", email, address)
    }

    fn keys_of(&self, kind: &str, email: &str, address: &str) -> (String, String) {
        let account = token_hash(&email.trim().to_lowercase());
        let address = token_hash(address);
        (
            format!("{}:{{{kind}}}:account:{}", self.prefix, &account[..32]),
            format!("{}:{{{kind}}}:address:{}", self.prefix, &address[..32]),
        )
    }

    /// Counts a request for a password-reset link for `email` from `address`, and says whether
    /// it is within the hourly allowance of both. Counted whether or not the account exists, so
    /// the answer tells nothing about it.
    pub async fn reset_requested(&self, email: &str, address: &str) -> Result<bool, AccountError> {
        let (account, from) = self.keys_of("reset", email, address);
        let mut redis = self.redis.clone();
        let (account_count, address_count): (u64, u64) = redis::pipe()
            .incr(&account, 1)
            .expire(&account, 3600)
            .ignore()
            .incr(&from, 1)
            .expire(&from, 3600)
            .ignore()
            .query_async(&mut redis)
            .await?;
        Ok(account_count <= self.settings.reset_account_requests
            && address_count <= self.settings.reset_address_requests)
    }

    /// Refuses while the account or the address is locked out.
    ///
    /// # Errors
    /// [`AccountError::LockedOut`] with the minutes left; Redis failures.
    pub async fn check(&self, email: &str, address: &str) -> Result<(), AccountError> {
        let (account, from) = self.keys(email, address);
        let mut redis = self.redis.clone();
        let (account_count, account_ttl, address_count, address_ttl): (
            Option<u64>,
            i64,
            Option<u64>,
            i64,
        ) = redis::pipe()
            .get(&account)
            .pttl(&account)
            .get(&from)
            .pttl(&from)
            .query_async(&mut redis)
            .await?;
        let mut locked_ms = 0i64;
        if account_count.unwrap_or(0) >= self.settings.account_failures {
            locked_ms = locked_ms.max(account_ttl);
        }
        if address_count.unwrap_or(0) >= self.settings.address_failures {
            locked_ms = locked_ms.max(address_ttl);
        }
        if locked_ms > 0 {
            let minutes = u64::try_from(locked_ms)
                .unwrap_or(0)
                .div_ceil(60_000)
                .max(1);
            return Err(AccountError::LockedOut { minutes });
        }
        Ok(())
    }

    /// Counts a failed login for the account and the address.
    pub async fn failed(&self, email: &str, address: &str) -> Result<(), AccountError> {
        let (account, from) = self.keys(email, address);
        let seconds = i64::try_from(self.window().as_secs()).unwrap_or(i64::MAX);
        let mut redis = self.redis.clone();
        redis::pipe()
            .incr(&account, 1)
            .ignore()
            .expire(&account, seconds)
            .ignore()
            .incr(&from, 1)
            .ignore()
            .expire(&from, seconds)
            .ignore()
            .query_async::<()>(&mut redis)
            .await?;
        Ok(())
    }

    /// Forgets the account's failures after a successful login (the address keeps its count,
    /// so one client cannot guess many accounts by logging into its own between guesses).
    pub async fn succeeded(&self, email: &str, address: &str) -> Result<(), AccountError> {
        let (account, _) = self.keys(email, address);
        let mut redis = self.redis.clone();
        redis::cmd("DEL")
            .arg(&account)
            .query_async::<()>(&mut redis)
            .await?;
        Ok(())
    }
}
