//! API keys: created with a role, shown once, stored as a SHA-256 hash.

use base64::Engine as _;
use clarion_model::{Role, Timestamp, WorkspaceId, entity::api_key};
use rand::RngCore as _;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use sha2::{Digest, Sha256};

use super::StoreError;

/// Every key starts with this, so secret scanners and people can tell what it is.
pub const KEY_PREFIX: &str = "clk_";

/// Who is asking: the workspace and role of a valid, unrevoked key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub key_id: i64,
    pub workspace: WorkspaceId,
    pub role: Role,
}

/// A key as listed: never the secret, only the prefix that identifies it.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key and returns its secret, which is not stored and cannot be shown again.
pub async fn create(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    name: &str,
    role: Role,
) -> Result<(String, KeyInfo), StoreError> {
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut secret);
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let prefix: String = key.chars().take(KEY_PREFIX.len() + 8).collect();
    let now = Timestamp::now();
    let row = api_key::ActiveModel {
        workspace_id: Set(workspace.0),
        name: Set(name.to_string()),
        role: Set(role.as_str().to_string()),
        prefix: Set(prefix.clone()),
        key_hash: Set(hash(&key)),
        created_at: Set(now.millis()),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok((
        key,
        KeyInfo {
            id: row.id,
            name: row.name,
            role,
            prefix,
            created_at: now,
            revoked_at: None,
        },
    ))
}

/// The caller a presented key stands for, if it is known and not revoked.
pub async fn authenticate(
    db: &DatabaseConnection,
    key: &str,
) -> Result<Option<Caller>, StoreError> {
    if !key.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    let row = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash(key)))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await?;
    row.map(|row| {
        Ok(Caller {
            key_id: row.id,
            workspace: WorkspaceId(row.workspace_id),
            role: Role::parse(&row.role).map_err(super::corrupt("api_keys.role"))?,
        })
    })
    .transpose()
}

/// Every key of the workspace, newest first.
pub async fn list(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
) -> Result<Vec<KeyInfo>, StoreError> {
    api_key::Entity::find()
        .filter(api_key::Column::WorkspaceId.eq(workspace.0))
        .order_by_desc(api_key::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            Ok(KeyInfo {
                id: row.id,
                role: Role::parse(&row.role).map_err(super::corrupt("api_keys.role"))?,
                name: row.name,
                prefix: row.prefix,
                created_at: Timestamp::from_millis(row.created_at),
                revoked_at: row.revoked_at.map(Timestamp::from_millis),
            })
        })
        .collect()
}

/// Revokes a key by id or prefix; returns how many keys were revoked.
pub async fn revoke(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id_or_prefix: &str,
) -> Result<u64, StoreError> {
    let target = match id_or_prefix.parse::<i64>() {
        Ok(id) => api_key::Column::Id.eq(id),
        Err(_) => api_key::Column::Prefix.eq(id_or_prefix),
    };
    let result = api_key::Entity::update_many()
        .col_expr(
            api_key::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(Timestamp::now().millis()),
        )
        .filter(api_key::Column::WorkspaceId.eq(workspace.0))
        .filter(api_key::Column::RevokedAt.is_null())
        .filter(target)
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
