//! Ingestion: contacts, events, attribute types and batch validation.
//!
//! Everything that writes contacts or events goes through [`Ingest`]: the REST API, the
//! tracking endpoints and the CSV import alike. It stores a batch (multi-row statements in one
//! transaction, the same code on SQLite and PostgreSQL) and then tells every registered
//! [`Listener`] which contacts changed, so that segment memberships (and later KPI roll-ups and
//! triggers) are current before the caller answers. The modules below it ([`contacts`],
//! [`events`], [`attributes`]) are the stores themselves, for reads and for the listeners.

pub mod attributes;
pub mod batch;
pub mod contacts;
pub mod events;
pub mod headers;
pub mod ingest;
mod sql;

pub use batch::ItemError;
pub use ingest::{Change, Ingest, Listener};
pub use sql::{begin_write, is_retryable, rows_per_statement};

/// A failure of the contact and event stores that is not the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    #[error("stored row is unreadable: column {column}: {reason}")]
    Corrupt {
        column: &'static str,
        reason: String,
    },
}

impl clarion_model::Coded for ContactsError {
    fn code(&self) -> clarion_model::ErrorCode {
        match self {
            ContactsError::Db(db) => db.code(),
            ContactsError::Corrupt { .. } => clarion_model::ErrorCode::Internal,
        }
    }
}

/// Maps a value that no longer parses to [`ContactsError::Corrupt`] naming its column: values
/// are checked on the way in, so this means a row was changed behind Clarion's back.
pub fn corrupt(column: &'static str) -> impl Fn(clarion_model::ModelError) -> ContactsError {
    move |e| ContactsError::Corrupt {
        column,
        reason: e.to_string(),
    }
}
