use std::sync::{Arc, Mutex};

use clarion_contacts::{
    Change, Ingest, Listener,
    contacts::{self, PatchError},
    events::IngestOptions,
};
use clarion_model::{
    ContactId, ContactPatch, ContactUpsert, DEFAULT_WORKSPACE, EventInput, ExternalId, WorkspaceId,
};
use clarion_testkit::{Backend, TestDb, on_both_backends};

/// Remembers every notification, in order.
#[derive(Default)]
struct Recorder {
    heard: Mutex<Vec<(WorkspaceId, Vec<ContactId>, Change)>>,
}

#[async_trait::async_trait]
impl Listener for Recorder {
    async fn ingested(&self, workspace: WorkspaceId, contacts: &[ContactId], change: Change) {
        let mut sorted = contacts.to_vec();
        sorted.sort_by_key(|c| c.0);
        self.heard.lock().unwrap().push((workspace, sorted, change));
    }
}

impl Recorder {
    fn take(&self) -> Vec<(WorkspaceId, Vec<ContactId>, Change)> {
        std::mem::take(&mut *self.heard.lock().unwrap())
    }
}

fn contact(json: serde_json::Value) -> ContactUpsert {
    serde_json::from_value(json).unwrap()
}

fn event(json: serde_json::Value) -> EventInput {
    serde_json::from_value(json).unwrap()
}

fn options() -> IngestOptions {
    IngestOptions {
        create_unknown_contacts: true,
        max_future_millis: 3_600_000,
        atomic: false,
    }
}

/// The stored id of an external id, read back from the database.
async fn id_of(ingest: &Ingest, external_id: &str) -> ContactId {
    let found = contacts::resolve_ids(ingest.db(), DEFAULT_WORKSPACE, &[external_id], false)
        .await
        .unwrap();
    ContactId(found[external_id])
}

async fn listeners_hear_of_every_stored_contact_once_per_batch(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let (first, second) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let ingest = Ingest::new(db)
        .with_listener(first.clone())
        .with_listener(second.clone());

    // Two good contacts and a duplicate external id, which is refused.
    let report = ingest
        .contacts(
            DEFAULT_WORKSPACE,
            vec![
                (
                    0,
                    contact(serde_json::json!({"external_id": "a", "first_name": "Ada"})),
                ),
                (1, contact(serde_json::json!({"external_id": "b"}))),
                (2, contact(serde_json::json!({"external_id": "a"}))),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!((report.created, report.updated, report.rejected), (2, 0, 1));
    let (a, b) = (id_of(&ingest, "a").await, id_of(&ingest, "b").await);
    let mut both = vec![a, b];
    both.sort_by_key(|c| c.0);
    assert_eq!(
        first.take(),
        vec![(DEFAULT_WORKSPACE, both.clone(), Change::Fields)]
    );
    assert_eq!(
        second.take(),
        vec![(DEFAULT_WORKSPACE, both, Change::Fields)]
    );

    // Events: one for a known contact, one that creates contact "c", one duplicate key.
    let report = ingest
        .events(
            DEFAULT_WORKSPACE,
            vec![
                (0, event(serde_json::json!({"external_id": "a", "kind": "purchase", "amount": 5, "idempotency_key": "k1"}))),
                (1, event(serde_json::json!({"external_id": "c", "kind": "view"}))),
                (2, event(serde_json::json!({"external_id": "a", "kind": "purchase", "idempotency_key": "k1"}))),
            ],
            options(),
        )
        .await
        .unwrap();
    assert_eq!((report.accepted, report.duplicates.len()), (2, 1));
    let c = id_of(&ingest, "c").await;
    let mut touched = vec![a, c];
    touched.sort_by_key(|c| c.0);
    assert_eq!(
        first.take(),
        vec![(DEFAULT_WORKSPACE, touched, Change::Events)]
    );

    // A batch that stores nothing tells nobody anything.
    let report = ingest
        .events(
            DEFAULT_WORKSPACE,
            vec![(0, event(serde_json::json!({"external_id": "a", "kind": "purchase", "idempotency_key": "k1"})))],
            options(),
        )
        .await
        .unwrap();
    assert_eq!(report.accepted, 0);
    assert!(first.take().is_empty());
    second.take();

    // A patch is a change of fields of its one contact; a missing contact changes nothing.
    let patch: ContactPatch =
        serde_json::from_value(serde_json::json!({"city": "Berlin"})).unwrap();
    let patched = ingest
        .patch_contact(DEFAULT_WORKSPACE, &ExternalId::parse("b").unwrap(), patch)
        .await
        .unwrap();
    assert_eq!(patched.id, b);
    assert_eq!(
        first.take(),
        vec![(DEFAULT_WORKSPACE, vec![b], Change::Fields)]
    );
    let patch: ContactPatch = serde_json::from_value(serde_json::json!({"city": "Rome"})).unwrap();
    let missing = ingest
        .patch_contact(
            DEFAULT_WORKSPACE,
            &ExternalId::parse("nobody").unwrap(),
            patch,
        )
        .await;
    assert!(matches!(missing, Err(PatchError::NotFound)), "{missing:?}");
    assert!(first.take().is_empty());

    // Unsubscribing notifies when the status changed, not when it already was.
    assert!(
        ingest
            .unsubscribe_email(DEFAULT_WORKSPACE, a)
            .await
            .unwrap()
    );
    assert!(
        !ingest
            .unsubscribe_email(DEFAULT_WORKSPACE, a)
            .await
            .unwrap()
    );
    assert_eq!(
        first.take(),
        vec![(DEFAULT_WORKSPACE, vec![a], Change::Fields)]
    );
    let stored = contacts::get(
        ingest.db(),
        DEFAULT_WORKSPACE,
        &ExternalId::parse("a").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        serde_json::to_value(&stored).unwrap()["subscriptions"]["email"],
        "unsubscribed"
    );
}

on_both_backends!(listeners_hear_of_every_stored_contact_once_per_batch);
