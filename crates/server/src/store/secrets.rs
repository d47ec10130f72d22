//! Secrets Clarion makes for itself and keeps in the database, so every process of an
//! installation (and every restart) uses the same one: today the tracking-link key used while
//! `tracking.signing_keys` is empty.

use clarion_model::Timestamp;
use rand::RngCore as _;
use sea_orm::{
    ConnectionTrait, DatabaseConnection,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use secrecy::SecretString;

use super::StoreError;

/// The name of the generated tracking-link key.
pub const TRACKING_KEY: &str = "tracking.signing_key";

/// The secret called `name`, made (32 random bytes, hex) and stored by the first process that
/// asks; every later call, in any process on the same database, reads the same value.
///
/// # Errors
/// Database failures.
pub async fn installation_secret(
    db: &DatabaseConnection,
    name: &str,
) -> Result<SecretString, StoreError> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    // Two processes starting at once both insert; the primary key keeps the first and the
    // other's insert does nothing, so both read the same row below.
    let insert = Query::insert()
        .into_table("installation_secrets")
        .columns(["name", "value", "created_at"])
        .values_panic([
            Expr::from(name),
            Expr::from(hex::encode(bytes)),
            Expr::from(Timestamp::now().millis()),
        ])
        .on_conflict(OnConflict::column("name").do_nothing().to_owned())
        .to_owned();
    db.execute(&insert).await?;
    let select = Query::select()
        .column("value")
        .from("installation_secrets")
        .and_where(Expr::col("name").eq(name))
        .to_owned();
    let row = db.query_one(&select).await?.ok_or(StoreError::Corrupt {
        column: "installation_secrets.value",
        reason: format!("the secret {name} was stored but cannot be read back"),
    })?;
    let value: String = row.try_get("", "value")?;
    Ok(SecretString::from(value))
}
