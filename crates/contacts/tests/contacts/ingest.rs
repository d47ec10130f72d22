use std::sync::{Arc, Mutex};

use clarion_contacts::{
    Change, Ingest, Listener,
    contacts::{self, PatchError},
    events::{self, Earliest, IngestOptions},
};
use clarion_model::{
    ContactId, ContactPatch, ContactUpsert, DEFAULT_WORKSPACE, EventInput, ExternalId, Timestamp,
    WorkspaceId,
};
use clarion_testkit::{Backend, TestDb, on_both_backends};

/// A notification as heard: the change, with its earliest events in contact and kind order.
#[derive(Debug, PartialEq)]
enum Heard {
    Fields,
    Events(Vec<Earliest>),
}

/// Remembers every notification, in order.
#[derive(Default)]
struct Recorder {
    heard: Mutex<Vec<(WorkspaceId, Vec<ContactId>, Heard)>>,
}

#[async_trait::async_trait]
impl Listener for Recorder {
    async fn ingested(&self, workspace: WorkspaceId, contacts: &[ContactId], change: Change<'_>) {
        let mut sorted = contacts.to_vec();
        sorted.sort_by_key(|c| c.0);
        let heard = match change {
            Change::Fields => Heard::Fields,
            Change::Events(earliest) => {
                let mut earliest = earliest.to_vec();
                earliest.sort_by(|a, b| (a.contact.0, &a.kind).cmp(&(b.contact.0, &b.kind)));
                Heard::Events(earliest)
            }
        };
        self.heard.lock().unwrap().push((workspace, sorted, heard));
    }
}

impl Recorder {
    fn take(&self) -> Vec<(WorkspaceId, Vec<ContactId>, Heard)> {
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
        vec![(DEFAULT_WORKSPACE, both.clone(), Heard::Fields)]
    );
    assert_eq!(
        second.take(),
        vec![(DEFAULT_WORKSPACE, both, Heard::Fields)]
    );

    // Events: two for a known contact, one that creates contact "c", one duplicate key.
    let report = ingest
        .events(
            DEFAULT_WORKSPACE,
            vec![
                (0, event(serde_json::json!({"external_id": "a", "kind": "purchase", "amount": 5, "idempotency_key": "k1", "occurred_at": "2026-11-02T10:00:00Z"}))),
                (1, event(serde_json::json!({"external_id": "c", "kind": "view", "occurred_at": "2026-11-03T10:00:00Z"}))),
                (2, event(serde_json::json!({"external_id": "a", "kind": "purchase", "idempotency_key": "k1", "occurred_at": "2026-10-01T10:00:00Z"}))),
                (3, event(serde_json::json!({"external_id": "a", "kind": "purchase", "occurred_at": "2026-11-01T10:00:00Z"}))),
            ],
            options(),
        )
        .await
        .unwrap();
    assert_eq!((report.accepted, report.duplicates.len()), (3, 1));
    let c = id_of(&ingest, "c").await;
    let mut touched = vec![a, c];
    touched.sort_by_key(|c| c.0);
    // The earliest stored event of each contact and kind; the duplicate, though earlier, was
    // not stored and does not count.
    let at = |s: &str| Timestamp::parse(s).unwrap().millis();
    let mut earliest = vec![
        Earliest {
            contact: a,
            kind: "purchase".to_owned(),
            occurred_at: at("2026-11-01T10:00:00Z"),
        },
        Earliest {
            contact: c,
            kind: "view".to_owned(),
            occurred_at: at("2026-11-03T10:00:00Z"),
        },
    ];
    earliest.sort_by_key(|e| e.contact.0);
    assert_eq!(
        first.take(),
        vec![(DEFAULT_WORKSPACE, touched, Heard::Events(earliest))]
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
        vec![(DEFAULT_WORKSPACE, vec![b], Heard::Fields)]
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
        vec![(DEFAULT_WORKSPACE, vec![a], Heard::Fields)]
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

/// The events a contact has stored, oldest first, as the history API reads them back.
async fn history(ingest: &Ingest, external_id: &str) -> Vec<clarion_model::Event> {
    let id = id_of(ingest, external_id).await;
    let mut events = events::list_for_contact(
        ingest.db(),
        DEFAULT_WORKSPACE,
        id,
        &ExternalId::parse(external_id).unwrap(),
        &events::EventFilter::default(),
        None,
        100,
    )
    .await
    .unwrap();
    events.reverse();
    events
}

async fn events_come_back_as_sent_with_duplicates_named_within_and_across_batches(
    backend: Backend,
) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let ingest = Ingest::new(db);
    // Everything a text or CSV COPY would have to escape, and its NULL marker as a value.
    let awkward = serde_json::json!({
        "quote": "say \"hi\"",
        "backslash": "C:\\path\\",
        "newline": "one\ntwo\r\nthree",
        "tab": "a\tb",
        "null_marker": "\\N",
        "csv": "a,b;\"c\"",
        "unicode": "Grüße ✓ 🐈",
        "nested": {"list": [1, "\\N", null, 2.5], "empty": {}},
    });
    // The first batch is large enough to go to PostgreSQL by COPY, the second small enough
    // to go by UNNEST: both ways are checked.
    const FILLER: usize = events::COPY_MIN_ROWS;
    let mut first = vec![
        (
            0,
            event(
                serde_json::json!({"external_id": "a", "kind": "purchase", "occurred_at": "2026-01-02T03:04:05.678Z", "amount": 12.5, "currency": "EUR", "idempotency_key": "k1", "properties": awkward}),
            ),
        ),
        (
            1,
            event(
                serde_json::json!({"external_id": "a", "kind": "page_view", "occurred_at": "2026-01-03T00:00:00Z"}),
            ),
        ),
        (
            2,
            event(
                serde_json::json!({"external_id": "b", "kind": "purchase", "amount": 3, "idempotency_key": "k2"}),
            ),
        ),
        (
            3,
            event(
                serde_json::json!({"external_id": "b", "kind": "purchase", "amount": 4, "idempotency_key": "k1"}),
            ),
        ),
        (
            4,
            event(
                serde_json::json!({"external_id": "b", "kind": "page_view", "occurred_at": "2026-01-01T00:00:00Z", "idempotency_key": "\\N"}),
            ),
        ),
    ];
    first.extend((0..FILLER).map(|i| {
        (
            5 + i,
            event(serde_json::json!({"external_id": "filler", "kind": "page_view"})),
        )
    }));
    let before = clarion_model::Timestamp::now();
    let report = ingest
        .events(DEFAULT_WORKSPACE, first, options())
        .await
        .unwrap();
    let after = clarion_model::Timestamp::now();
    let duplicates = |report: &clarion_contacts::events::EventReport| {
        report
            .duplicates
            .iter()
            .map(|d| (d.index, d.idempotency_key.as_str().to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!((report.accepted, report.rejected), (4 + FILLER, 0));
    assert_eq!(duplicates(&report), vec![(3, "k1".to_string())]);

    // A second batch: a key of the first batch, a new key, and that new key again.
    let report = ingest
        .events(
            DEFAULT_WORKSPACE,
            vec![
                (0, event(serde_json::json!({"external_id": "a", "kind": "purchase", "amount": 1, "idempotency_key": "k2"}))),
                (1, event(serde_json::json!({"external_id": "c", "kind": "purchase", "amount": 2, "idempotency_key": "k3"}))),
                (2, event(serde_json::json!({"external_id": "c", "kind": "purchase", "amount": 3, "idempotency_key": "k3"}))),
            ],
            options(),
        )
        .await
        .unwrap();
    assert_eq!((report.accepted, report.rejected), (1, 0));
    assert_eq!(
        duplicates(&report),
        vec![(0, "k2".to_string()), (2, "k3".to_string())]
    );
    assert_eq!(
        events::count(ingest.db(), DEFAULT_WORKSPACE).await.unwrap(),
        5 + FILLER as u64
    );

    let a = history(&ingest, "a").await;
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].kind.as_str(), "purchase");
    assert_eq!(a[0].occurred_at.millis(), 1_767_323_045_678);
    assert_eq!(a[0].amount, Some(12.5));
    assert_eq!(
        a[0].currency.map(|c| c.as_str().to_string()),
        Some("EUR".into())
    );
    assert_eq!(
        a[0].idempotency_key.as_ref().map(|k| k.as_str()),
        Some("k1")
    );
    assert_eq!(serde_json::Value::Object(a[0].properties.clone()), awkward);
    assert_eq!(
        (
            a[1].kind.as_str(),
            a[1].amount,
            a[1].currency,
            a[1].idempotency_key.is_none()
        ),
        ("page_view", None, None, true)
    );
    assert!(a[1].properties.is_empty());

    let b = history(&ingest, "b").await;
    assert_eq!(b.len(), 2);
    assert_eq!(
        b[0].idempotency_key.as_ref().map(|k| k.as_str()),
        Some("\\N")
    );
    // An event without occurred_at happened when it was received.
    assert_eq!((b[1].amount, b[1].currency), (Some(3.0), None));
    assert!(
        b[1].occurred_at.millis() >= before.millis() && b[1].occurred_at.millis() <= after.millis()
    );
    assert_eq!(b[1].occurred_at.millis(), b[1].received_at.millis());

    let c = history(&ingest, "c").await;
    assert_eq!(
        c.iter().map(|e| e.amount).collect::<Vec<_>>(),
        vec![Some(2.0)]
    );
}

on_both_backends!(events_come_back_as_sent_with_duplicates_named_within_and_across_batches);
