//! The one way contacts and events enter Clarion.
//!
//! [`Ingest`] stores a batch and then notifies its [`Listener`]s of the contacts it touched,
//! in registration order, before it returns: a caller that gets an answer knows that segment
//! memberships (and whatever else listens) already reflect what it sent. The data is stored
//! before any listener runs, so a listener that fails only logs; the periodic sweep catches up.

use std::sync::Arc;

use clarion_model::{
    Contact, ContactId, ContactPatch, ContactUpsert, EventInput, ExternalId, SubscriptionStatus,
    WorkspaceId,
};
use sea_orm::DatabaseConnection;

use crate::{
    ContactsError,
    contacts::{self, PatchError, UpsertReport},
    events::{self, Earliest, EventReport, IngestOptions},
};

/// What changed for the contacts a listener is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Their fields or attributes were written (created, updated, unsubscribed).
    Fields,
    /// New events of theirs were stored, the earliest of each contact and kind listed; their
    /// fields are as they were.
    Events(&'a [Earliest]),
}

/// Something that follows ingestion: segment memberships now, KPI roll-ups and triggers next.
#[async_trait::async_trait]
pub trait Listener: Send + Sync {
    /// Called after `contacts` of `workspace` were stored with `change`. Deliberately
    /// infallible: the write has happened, so a listener logs its own failures.
    async fn ingested(&self, workspace: WorkspaceId, contacts: &[ContactId], change: Change<'_>);
}

/// The ingestion entry point, shared by the REST API, the tracking endpoints and CSV import.
/// Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    db: DatabaseConnection,
    listeners: Vec<Arc<dyn Listener>>,
}

impl Ingest {
    /// Ingestion into `db` that notifies nobody yet.
    pub fn new(db: DatabaseConnection) -> Self {
        Ingest {
            db,
            listeners: Vec::new(),
        }
    }

    /// Adds a listener, notified after the ones added before it.
    #[must_use]
    pub fn with_listener(mut self, listener: Arc<dyn Listener>) -> Self {
        self.listeners.push(listener);
        self
    }

    /// The database ingestion writes to.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Creates or updates contacts by external id; see [`contacts::upsert_batch`].
    pub async fn contacts(
        &self,
        workspace: WorkspaceId,
        items: Vec<(usize, ContactUpsert)>,
        atomic: bool,
    ) -> Result<UpsertReport, ContactsError> {
        let report = contacts::upsert_batch(&self.db, workspace, items, atomic).await?;
        self.notify(workspace, &report.contacts, Change::Fields)
            .await;
        Ok(report)
    }

    /// Changes some fields of one contact; see [`contacts::patch`].
    pub async fn patch_contact(
        &self,
        workspace: WorkspaceId,
        external_id: &ExternalId,
        patch: ContactPatch,
    ) -> Result<Contact, PatchError> {
        let contact = contacts::patch(&self.db, workspace, external_id, patch).await?;
        self.notify(workspace, &[contact.id], Change::Fields).await;
        Ok(contact)
    }

    /// Stores events; see [`events::insert_batch`].
    pub async fn events(
        &self,
        workspace: WorkspaceId,
        items: Vec<(usize, EventInput)>,
        options: IngestOptions,
    ) -> Result<EventReport, ContactsError> {
        let report = events::insert_batch(&self.db, workspace, items, options).await?;
        self.notify(
            workspace,
            &report.contacts,
            Change::Events(&report.earliest),
        )
        .await;
        Ok(report)
    }

    /// Unsubscribes a contact from email (an unsubscribe link or a one-click POST). Returns
    /// whether its status changed; listeners hear of it only then.
    pub async fn unsubscribe_email(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
    ) -> Result<bool, ContactsError> {
        let changed = contacts::unsubscribe_email(&self.db, workspace, contact).await?;
        if changed {
            self.notify(workspace, &[contact], Change::Fields).await;
        }
        Ok(changed)
    }

    /// Sets the email status of contacts after a bounce or complaint; see
    /// [`contacts::mark_email`]. Returns the contacts whose status changed; listeners hear of
    /// those.
    pub async fn mark_email(
        &self,
        workspace: WorkspaceId,
        contacts: &[ContactId],
        status: SubscriptionStatus,
    ) -> Result<Vec<ContactId>, ContactsError> {
        let changed = contacts::mark_email(&self.db, workspace, contacts, status).await?;
        self.notify(workspace, &changed, Change::Fields).await;
        Ok(changed)
    }

    async fn notify(&self, workspace: WorkspaceId, contacts: &[ContactId], change: Change<'_>) {
        if contacts.is_empty() {
            return;
        }
        for listener in &self.listeners {
            listener.ingested(workspace, contacts, change).await;
        }
    }
}
