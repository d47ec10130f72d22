//! Server-side sessions. The browser's cookie holds a random token; the table holds only its
//! SHA-256, the session's CSRF token, and what the "my sessions" page shows (browser, address,
//! times). A session ends at its expiry, when revoked, or when its account is deactivated.

use std::time::Duration;

use clarion_model::{Role, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection,
    sea_query::{Alias, Expr, ExprTrait, JoinType, Order, Query},
};

use super::{AccountError, corrupt, random_token, token_hash};

/// How often `last_seen_at` is written at most (every request would be a write).
const TOUCH_EVERY_MS: i64 = 60_000;

/// The user a valid session token stands for, with the session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub workspace: WorkspaceId,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// The synchronizer token every state-changing form of this session must carry.
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// A session as "my sessions" lists it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: i64,
    pub user_agent: String,
    pub address: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Starts a session for `user` lasting `lifetime`; returns the token for the cookie (not
/// stored).
pub async fn create(
    db: &DatabaseConnection,
    user: i64,
    user_agent: &str,
    address: &str,
    lifetime: Duration,
) -> Result<String, AccountError> {
    let token = random_token();
    let now = Timestamp::now().millis();
    let lifetime = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 2);
    let user_agent: String = user_agent.chars().take(300).collect();
    let insert = Query::insert()
        .into_table("user_sessions")
        .columns([
            "user_id",
            "token_hash",
            "csrf_token",
            "user_agent",
            "address",
            "created_at",
            "last_seen_at",
            "expires_at",
        ])
        .values_panic([
            Expr::from(user),
            Expr::from(token_hash(&token)),
            Expr::from(random_token()),
            Expr::from(user_agent),
            Expr::from(address.to_string()),
            Expr::from(now),
            Expr::from(now),
            Expr::from(now.saturating_add(lifetime)),
        ])
        .to_owned();
    db.execute(&insert).await?;
    Ok(token)
}

/// The live session of a cookie token: not expired, not revoked, its account active.
pub async fn authenticate(
    db: &DatabaseConnection,
    token: &str,
) -> Result<Option<Session>, AccountError> {
    let now = Timestamp::now().millis();
    let query = Query::select()
        .expr_as(Expr::col(("s", "id")), Alias::new("session_id"))
        .columns([
            ("s", "user_id"),
            ("s", "csrf_token"),
            ("s", "expires_at"),
            ("s", "last_seen_at"),
        ])
        .columns([
            ("u", "workspace_id"),
            ("u", "email"),
            ("u", "name"),
            ("u", "role"),
        ])
        .from_as("user_sessions", "s")
        .join_as(
            JoinType::InnerJoin,
            Alias::new("users"),
            Alias::new("u"),
            Expr::col(("u", "id")).equals(("s", "user_id")),
        )
        .and_where(Expr::col(("s", "token_hash")).eq(token_hash(token)))
        .and_where(Expr::col(("s", "revoked_at")).is_null())
        .and_where(Expr::col(("s", "expires_at")).gt(now))
        .and_where(Expr::col(("u", "deactivated_at")).is_null())
        .to_owned();
    let Some(row) = db.query_one(&query).await? else {
        return Ok(None);
    };
    let id: i64 = row.try_get("", "session_id")?;
    let last_seen: i64 = row.try_get("", "last_seen_at")?;
    if now - last_seen > TOUCH_EVERY_MS {
        let touch = Query::update()
            .table("user_sessions")
            .value("last_seen_at", now)
            .and_where(Expr::col("id").eq(id))
            .to_owned();
        db.execute(&touch).await?;
    }
    let role: String = row.try_get("", "role")?;
    Ok(Some(Session {
        id,
        user_id: row.try_get("", "user_id")?,
        workspace: WorkspaceId(row.try_get("", "workspace_id")?),
        email: row.try_get("", "email")?,
        name: row.try_get("", "name")?,
        role: Role::parse(&role).map_err(corrupt("users.role"))?,
        csrf_token: row.try_get("", "csrf_token")?,
        expires_at: Timestamp::from_millis(row.try_get("", "expires_at")?),
    }))
}

/// The live sessions of an account, most recently used first.
pub async fn list(db: &DatabaseConnection, user: i64) -> Result<Vec<SessionInfo>, AccountError> {
    let query = Query::select()
        .columns([
            "id",
            "user_agent",
            "address",
            "created_at",
            "last_seen_at",
            "expires_at",
        ])
        .from("user_sessions")
        .and_where(Expr::col("user_id").eq(user))
        .and_where(Expr::col("revoked_at").is_null())
        .and_where(Expr::col("expires_at").gt(Timestamp::now().millis()))
        .order_by("last_seen_at", Order::Desc)
        .order_by("id", Order::Desc)
        .to_owned();
    db.query_all(&query)
        .await?
        .iter()
        .map(|row| {
            Ok(SessionInfo {
                id: row.try_get("", "id")?,
                user_agent: row.try_get("", "user_agent")?,
                address: row.try_get("", "address")?,
                created_at: Timestamp::from_millis(row.try_get("", "created_at")?),
                last_seen_at: Timestamp::from_millis(row.try_get("", "last_seen_at")?),
                expires_at: Timestamp::from_millis(row.try_get("", "expires_at")?),
            })
        })
        .collect()
}

/// Ends one session of an account (logout, or "revoke" on "my sessions").
///
/// # Errors
/// [`AccountError::NotFound`] when the account has no such live session.
pub async fn revoke(db: &DatabaseConnection, user: i64, session: i64) -> Result<(), AccountError> {
    let update = Query::update()
        .table("user_sessions")
        .value("revoked_at", Timestamp::now().millis())
        .and_where(Expr::col("id").eq(session))
        .and_where(Expr::col("user_id").eq(user))
        .and_where(Expr::col("revoked_at").is_null())
        .to_owned();
    match db.execute(&update).await?.rows_affected() {
        0 => Err(AccountError::NotFound),
        _ => Ok(()),
    }
}

/// Ends every session of an account but `except`; returns how many ended.
pub async fn revoke_all(
    db: &impl ConnectionTrait,
    user: i64,
    except: Option<i64>,
) -> Result<u64, AccountError> {
    let mut update = Query::update()
        .table("user_sessions")
        .value("revoked_at", Timestamp::now().millis())
        .and_where(Expr::col("user_id").eq(user))
        .and_where(Expr::col("revoked_at").is_null())
        .to_owned();
    if let Some(except) = except {
        update.and_where(Expr::col("id").ne(except));
    }
    Ok(db.execute(&update).await?.rows_affected())
}
