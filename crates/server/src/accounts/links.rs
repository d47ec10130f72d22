//! One-time links that let a person set their password: the invitation of a new account (and
//! the first admin's login link) and the password reset. A link's token is 32 random bytes and
//! an HMAC-SHA256 of them (keyed by an installation secret, with the link's purpose), so a
//! forged or altered link is refused before the database is asked; the database keeps only a
//! hash of the token, with its expiry and the moment it was used. Using a link is a
//! compare-and-set on `used_at`, so it works once even when submitted twice at once.

use std::time::Duration;

use base64::Engine as _;
use clarion_model::{Timestamp, WorkspaceId};
use hmac::{Hmac, Mac as _};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, TransactionTrait,
    sea_query::{Expr, ExprTrait, Query},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::{AccountError, User, password, random_token, sessions, token_hash, users};

/// The name of the installation secret that signs links (see `store::secrets`).
pub const LINK_KEY: &str = "dashboard.link_key";

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// A new account sets its first password (also the first admin's login link).
    Invite,
    /// An account sets a new password; every session of it ends.
    Reset,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Invite => "invite",
            LinkPurpose::Reset => "reset",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "invite" => Some(LinkPurpose::Invite),
            "reset" => Some(LinkPurpose::Reset),
            _ => None,
        }
    }
}

/// Signs and checks link tokens with the installation's link key.
#[derive(Clone)]
pub struct LinkSigner {
    key: SecretString,
}

impl LinkSigner {
    pub fn new(key: SecretString) -> Self {
        LinkSigner { key }
    }

    fn mac(&self, nonce: &str) -> Result<Vec<u8>, AccountError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes())
            .map_err(|e| AccountError::Hash(e.to_string()))?;
        mac.update(b"clarion-link\0");
        mac.update(nonce.as_bytes());
        Ok(mac.finalize().into_bytes().to_vec())
    }

    fn sign(&self, nonce: &str) -> Result<String, AccountError> {
        let mac = self.mac(nonce)?;
        Ok(format!(
            "{nonce}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
        ))
    }

    /// Whether the token's signature is right (in constant time).
    fn verify(&self, token: &str) -> bool {
        let Some((nonce, signature)) = token.split_once('.') else {
            return false;
        };
        let Ok(signature) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature)
        else {
            return false;
        };
        match self.mac(nonce) {
            Ok(expected) => subtle::ConstantTimeEq::ct_eq(&expected[..], &signature[..]).into(),
            Err(_) => false,
        }
    }
}

/// A link as the page shows it before it is used.
#[derive(Debug, Clone)]
pub struct LinkTarget {
    pub link_id: i64,
    pub purpose: LinkPurpose,
    pub user: User,
    pub expires_at: Timestamp,
}

/// Issues a link for `user` valid for `ttl`; returns its token (shown once, never stored).
pub async fn issue(
    db: &DatabaseConnection,
    signer: &LinkSigner,
    user: i64,
    purpose: LinkPurpose,
    ttl: Duration,
    created_by: Option<i64>,
) -> Result<(String, Timestamp), AccountError> {
    let token = signer.sign(&random_token())?;
    let now = Timestamp::now().millis();
    let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2));
    let insert = Query::insert()
        .into_table("user_links")
        .columns([
            "user_id",
            "purpose",
            "token_hash",
            "created_by",
            "created_at",
            "expires_at",
        ])
        .values_panic([
            Expr::from(user),
            Expr::from(purpose.as_str()),
            Expr::from(token_hash(&token)),
            Expr::from(created_by),
            Expr::from(now),
            Expr::from(expires),
        ])
        .to_owned();
    db.execute(&insert).await?;
    Ok((token, Timestamp::from_millis(expires)))
}

/// What a token is a live link for: signed right, known, unused, unexpired, its account
/// active.
///
/// # Errors
/// [`AccountError::BadLink`] otherwise, whatever the reason.
pub async fn check(
    db: &impl ConnectionTrait,
    signer: &LinkSigner,
    token: &str,
) -> Result<LinkTarget, AccountError> {
    if !signer.verify(token) {
        return Err(AccountError::BadLink);
    }
    let query = Query::select()
        .columns(["id", "user_id", "purpose", "expires_at", "used_at"])
        .from("user_links")
        .and_where(Expr::col("token_hash").eq(token_hash(token)))
        .to_owned();
    let row = db.query_one(&query).await?.ok_or(AccountError::BadLink)?;
    let used: Option<i64> = row.try_get("", "used_at")?;
    let expires: i64 = row.try_get("", "expires_at")?;
    if used.is_some() || expires <= Timestamp::now().millis() {
        return Err(AccountError::BadLink);
    }
    let purpose: String = row.try_get("", "purpose")?;
    let purpose = LinkPurpose::parse(&purpose).ok_or(AccountError::Corrupt {
        column: "user_links.purpose",
        reason: format!("unknown purpose {purpose:?}"),
    })?;
    let user_id: i64 = row.try_get("", "user_id")?;
    let user = user_by_id(db, user_id).await?;
    if !user.is_active() {
        return Err(AccountError::BadLink);
    }
    Ok(LinkTarget {
        link_id: row.try_get("", "id")?,
        purpose,
        user,
        expires_at: Timestamp::from_millis(expires),
    })
}

async fn user_by_id(db: &impl ConnectionTrait, id: i64) -> Result<User, AccountError> {
    let query = Query::select()
        .column("workspace_id")
        .from("users")
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    let workspace: i64 = db
        .query_one(&query)
        .await?
        .ok_or(AccountError::BadLink)?
        .try_get("", "workspace_id")?;
    users::get(db, WorkspaceId(workspace), id)
        .await?
        .ok_or(AccountError::BadLink)
}

/// Uses a link: sets the account's password (after checking it against the rules, named as
/// `field`), marks the link used and, for a reset, ends every session of the account. Returns
/// the account.
///
/// # Errors
/// [`AccountError::Invalid`] for a password that breaks a rule (the link stays usable),
/// [`AccountError::BadLink`] for a link that is not (or no longer) live.
pub async fn redeem(
    db: &DatabaseConnection,
    signer: &LinkSigner,
    token: &str,
    new_password: &str,
    confirmation: &str,
) -> Result<User, AccountError> {
    let target = check(db, signer, token).await?;
    password::check("password", new_password)?;
    if new_password != confirmation {
        return Err(AccountError::invalid(
            "confirm",
            "does not match the password above",
        ));
    }
    let hash = password::hash(new_password.to_string()).await?;
    let txn = db.begin().await?;
    let used = Query::update()
        .table("user_links")
        .value("used_at", Timestamp::now().millis())
        .and_where(Expr::col("id").eq(target.link_id))
        .and_where(Expr::col("used_at").is_null())
        .and_where(Expr::col("expires_at").gt(Timestamp::now().millis()))
        .to_owned();
    if txn.execute(&used).await?.rows_affected() != 1 {
        return Err(AccountError::BadLink);
    }
    users::store_password(&txn, target.user.id, hash).await?;
    // A new password ends every session: whoever knew the old one is out. Other open links of
    // the account stop working too.
    sessions::revoke_all(&txn, target.user.id, None).await?;
    let others = Query::update()
        .table("user_links")
        .value("used_at", Timestamp::now().millis())
        .and_where(Expr::col("user_id").eq(target.user.id))
        .and_where(Expr::col("used_at").is_null())
        .to_owned();
    txn.execute(&others).await?;
    txn.commit().await?;
    Ok(target.user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_unchanged_and_under_its_key() {
        let signer = LinkSigner::new(SecretString::from("k".repeat(32)));
        let token = signer.sign("abc").unwrap();
        assert!(signer.verify(&token));
        assert!(!signer.verify(&token.replacen("abc", "abd", 1)));
        assert!(!signer.verify("abc"));
        let other = LinkSigner::new(SecretString::from("j".repeat(32)));
        assert!(!other.verify(&token));
    }
}
