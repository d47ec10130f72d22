//! What the server itself stores: the API keys that authenticate requests and the secrets
//! Clarion generates for the installation. Contacts and
//! events are `clarion_contacts`' business, campaigns and deliveries `clarion_campaign`'s.

pub mod keys;
pub mod secrets;

/// A failure of the store that is not the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    #[error("stored row is unreadable: column {column}: {reason}")]
    Corrupt {
        column: &'static str,
        reason: String,
    },
}

impl clarion_model::Coded for StoreError {
    fn code(&self) -> clarion_model::ErrorCode {
        match self {
            StoreError::Db(db) => db.code(),
            StoreError::Corrupt { .. } => clarion_model::ErrorCode::Internal,
        }
    }
}

/// Maps a value that no longer parses to [`StoreError::Corrupt`] naming its column: values are
/// checked on the way in, so this means a row was changed behind Clarion's back.
pub(crate) fn corrupt(column: &'static str) -> impl Fn(clarion_model::ModelError) -> StoreError {
    move |e| StoreError::Corrupt {
        column,
        reason: e.to_string(),
    }
}
