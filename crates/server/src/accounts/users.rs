//! Accounts: one per email address, with a role (as for API keys) and, once the invitation
//! or first-login link was used, an argon2id password hash.

use clarion_model::{EmailAddress, Role, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, QueryResult,
    sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement},
};

use super::{AccountError, corrupt, password};

/// An account as the dashboard shows it (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub workspace: WorkspaceId,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Whether a password was ever set (an invited user who has not accepted has none).
    pub has_password: bool,
    pub created_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
    pub deactivated_at: Option<Timestamp>,
}

impl User {
    pub fn is_active(&self) -> bool {
        self.deactivated_at.is_none()
    }
}

const COLUMNS: [&str; 9] = [
    "id",
    "workspace_id",
    "email",
    "name",
    "role",
    "password_hash",
    "created_at",
    "last_login_at",
    "deactivated_at",
];

fn select() -> SelectStatement {
    Query::select().columns(COLUMNS).from("users").to_owned()
}

fn from_row(row: &QueryResult) -> Result<User, AccountError> {
    let role: String = row.try_get("", "role")?;
    Ok(User {
        id: row.try_get("", "id")?,
        workspace: WorkspaceId(row.try_get("", "workspace_id")?),
        email: row.try_get("", "email")?,
        name: row.try_get("", "name")?,
        role: Role::parse(&role).map_err(corrupt("users.role"))?,
        has_password: row
            .try_get::<Option<String>>("", "password_hash")?
            .is_some(),
        created_at: Timestamp::from_millis(row.try_get("", "created_at")?),
        last_login_at: row
            .try_get::<Option<i64>>("", "last_login_at")?
            .map(Timestamp::from_millis),
        deactivated_at: row
            .try_get::<Option<i64>>("", "deactivated_at")?
            .map(Timestamp::from_millis),
    })
}

/// An email address as accounts store it: checked, trimmed, lower-case.
pub fn parse_email(field: &'static str, value: &str) -> Result<String, AccountError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AccountError::invalid(field, "enter an email address"));
    }
    EmailAddress::parse(value)
        .map(|email| email.as_str().to_lowercase())
        .map_err(|_| {
            AccountError::invalid(field, "is not an email address such as ada@example.com")
        })
}

/// A display name: trimmed, at most 100 characters; may be empty.
pub fn parse_name(value: &str) -> Result<String, AccountError> {
    let value = value.trim();
    if value.chars().count() > 100 {
        return Err(AccountError::invalid(
            "name",
            "must be at most 100 characters",
        ));
    }
    Ok(value.to_string())
}

/// Creates an account without a password; it is used through an invitation link.
///
/// # Errors
/// [`AccountError::Invalid`] for a bad address or name, [`AccountError::Duplicate`] when the
/// address has an account already.
pub async fn create(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    email: &str,
    name: &str,
    role: Role,
) -> Result<User, AccountError> {
    let email = parse_email("email", email)?;
    let name = parse_name(name)?;
    if find_by_email(db, &email).await?.is_some() {
        return Err(AccountError::Duplicate(email));
    }
    let now = Timestamp::now();
    let insert = Query::insert()
        .into_table("users")
        .columns(["workspace_id", "email", "name", "role", "created_at"])
        .values_panic([
            Expr::from(workspace.0),
            Expr::from(email.clone()),
            Expr::from(name),
            Expr::from(role.as_str()),
            Expr::from(now.millis()),
        ])
        .returning_col(Alias::new("id"))
        .to_owned();
    // Two invitations of one address at once: the unique index keeps one.
    let row = db.query_one(&insert).await.map_err(|e| {
        if matches!(
            e.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ) {
            AccountError::Duplicate(email.clone())
        } else {
            AccountError::Db(e)
        }
    })?;
    let id: i64 = row.ok_or(AccountError::NotFound)?.try_get("", "id")?;
    get(db, workspace, id).await?.ok_or(AccountError::NotFound)
}

/// The account of an address (any workspace), active or not.
pub async fn find_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<User>, AccountError> {
    let query = select()
        .and_where(Expr::col("email").eq(email.trim().to_lowercase()))
        .to_owned();
    db.query_one(&query)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// An account of the workspace by id.
pub async fn get(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id: i64,
) -> Result<Option<User>, AccountError> {
    let query = select()
        .and_where(Expr::col("id").eq(id))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    db.query_one(&query)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Every account of the workspace, by email.
pub async fn list(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
) -> Result<Vec<User>, AccountError> {
    let query = select()
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .order_by("email", Order::Asc)
        .to_owned();
    db.query_all(&query).await?.iter().map(from_row).collect()
}

/// The account whose password this is; records the login time.
///
/// # Errors
/// [`AccountError::BadCredentials`] for an unknown address, a wrong password or a deactivated
/// account alike.
pub async fn verify_login(
    db: &DatabaseConnection,
    email: &str,
    password: &str,
) -> Result<User, AccountError> {
    let email = email.trim().to_lowercase();
    let query = Query::select()
        .columns(["id", "password_hash"])
        .from("users")
        .and_where(Expr::col("email").eq(email.as_str()))
        .and_where(Expr::col("deactivated_at").is_null())
        .to_owned();
    let found = db.query_one(&query).await?;
    let (id, stored) = match &found {
        Some(row) => (
            Some(row.try_get::<i64>("", "id")?),
            row.try_get::<Option<String>>("", "password_hash")?,
        ),
        None => (None, None),
    };
    if !password::verify(password.to_string(), stored).await? {
        return Err(AccountError::BadCredentials);
    }
    let id = id.ok_or(AccountError::BadCredentials)?;
    let update = Query::update()
        .table("users")
        .value("last_login_at", Timestamp::now().millis())
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    db.execute(&update).await?;
    let query = select().and_where(Expr::col("id").eq(id)).to_owned();
    db.query_one(&query)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()?
        .ok_or(AccountError::BadCredentials)
}

/// Stores a new password hash for an account (the caller has checked the password).
pub(crate) async fn store_password(
    db: &impl ConnectionTrait,
    user: i64,
    hash: String,
) -> Result<(), AccountError> {
    let update = Query::update()
        .table("users")
        .value("password_hash", hash)
        .and_where(Expr::col("id").eq(user))
        .to_owned();
    db.execute(&update).await?;
    Ok(())
}

/// Active admins of the workspace other than `except`.
async fn other_active_admins(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    except: i64,
) -> Result<i64, AccountError> {
    let query = Query::select()
        .expr_as(Expr::col("id").count(), "n")
        .from("users")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("role").eq(Role::Admin.as_str()))
        .and_where(Expr::col("deactivated_at").is_null())
        .and_where(Expr::col("id").ne(except))
        .to_owned();
    Ok(db
        .query_one(&query)
        .await?
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0))
}

/// Gives an account another role; the last active admin keeps theirs.
pub async fn set_role(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: i64,
    role: Role,
) -> Result<User, AccountError> {
    let user = get(db, workspace, id)
        .await?
        .ok_or(AccountError::NotFound)?;
    if user.role == Role::Admin
        && role != Role::Admin
        && user.is_active()
        && other_active_admins(db, workspace, id).await? == 0
    {
        return Err(AccountError::LastAdmin);
    }
    let update = Query::update()
        .table("users")
        .value("role", role.as_str())
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    db.execute(&update).await?;
    get(db, workspace, id).await?.ok_or(AccountError::NotFound)
}

/// Deactivates an account (it can no longer log in) and ends its sessions; the last active
/// admin stays.
pub async fn deactivate(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: i64,
) -> Result<User, AccountError> {
    let user = get(db, workspace, id)
        .await?
        .ok_or(AccountError::NotFound)?;
    if !user.is_active() {
        return Ok(user);
    }
    if user.role == Role::Admin && other_active_admins(db, workspace, id).await? == 0 {
        return Err(AccountError::LastAdmin);
    }
    let update = Query::update()
        .table("users")
        .value("deactivated_at", Timestamp::now().millis())
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    db.execute(&update).await?;
    super::sessions::revoke_all(db, id, None).await?;
    get(db, workspace, id).await?.ok_or(AccountError::NotFound)
}

/// Lets a deactivated account log in again.
pub async fn reactivate(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: i64,
) -> Result<User, AccountError> {
    let update = Query::update()
        .table("users")
        .value("deactivated_at", Option::<i64>::None)
        .and_where(Expr::col("id").eq(id))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    db.execute(&update).await?;
    get(db, workspace, id).await?.ok_or(AccountError::NotFound)
}
