//! Frequency caps across campaigns and transactional campaigns, checked the way a user sees
//! them: what the real SMTP server (aiosmtpd) received per address, compared with a count
//! the test makes itself from the campaigns it sent, and the deliveries' statuses and reasons.
//! The worker is the server's own, driven with `run_once`.

use std::collections::BTreeMap;

use clarion_campaign::frequency;
use clarion_model::{Channel, ContactId, DEFAULT_WORKSPACE, Role, Timestamp};
use clarion_server::store;
use clarion_testkit::{Backend, on_both_backends};
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value as Json, json};

use crate::app::read;
use crate::campaigns::{contacts, create, segment};
use crate::sending::{Sending, campaign, email};

const CAPS: &str = "/api/v1/settings/frequency-caps";

/// An email campaign to segment `slug`, transactional or not; returns its id.
async fn email_campaign(s: &Sending, name: &str, slug: &str, transactional: bool) -> i64 {
    let mut body = campaign(
        name,
        &["email"],
        slug,
        json!({"name": "Only", "email": email(&format!("{name} news"), "<p>Hello</p>")}),
    );
    body["transactional"] = json!(transactional);
    let created = create(&s.app, &body).await;
    assert_eq!(created["transactional"], transactional, "{created}");
    created["id"].as_i64().unwrap()
}

/// Messages the SMTP server accepted, per recipient address.
fn received(s: &Sending) -> BTreeMap<String, usize> {
    let mut by_address = BTreeMap::new();
    for message in s.smtp.received() {
        for to in &message.rcpt_tos {
            *by_address.entry(to.clone()).or_default() += 1;
        }
    }
    by_address
}

async fn admin_key(s: &Sending) -> String {
    store::keys::create(&s.app.db, DEFAULT_WORKSPACE, "admin", Role::Admin)
        .await
        .unwrap()
        .0
}

async fn put_caps(s: &Sending, key: &str, body: &Json) -> (u16, Json) {
    let response = s
        .app
        .client
        .request(Method::PUT, s.app.url(CAPS))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    read(response).await
}

/// Sets the workspace's email cap.
async fn cap_email(s: &Sending, max_messages: i64, window_hours: i64) {
    let key = admin_key(s).await;
    let body = json!({"caps": [{"channel": "email", "max_messages": max_messages, "window_hours": window_hours}]});
    let (status, answer) = put_caps(s, &key, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, body);
}

/// Launches campaign `id` and sends what it queued; returns the launch report.
async fn send(s: &Sending, id: i64) -> Json {
    let report = s.launch(id).await;
    s.settle(id, Channel::Email).await;
    report
}

/// The (contact, reason) of a campaign's deliveries with `status`, sorted.
async fn with_status(s: &Sending, id: i64, status: &str) -> Vec<(String, Option<String>)> {
    let mut found: Vec<(String, Option<String>)> = s
        .deliveries(&format!(
            "/api/v1/campaigns/{id}/deliveries?status={status}"
        ))
        .await
        .iter()
        .map(|d| {
            (
                d["contact"].as_str().unwrap().to_owned(),
                d["reason"].as_str().map(str::to_owned),
            )
        })
        .collect();
    found.sort();
    found
}

fn address(id: &str) -> String {
    format!("{id}@customer.example")
}

async fn people(s: &Sending, ids: &[&str]) {
    let items: Vec<Json> = ids
        .iter()
        .map(|id| json!({"external_id": id, "email": address(id)}))
        .collect();
    contacts(&s.app, json!(items)).await;
}

/// Three campaigns to overlapping segments under a cap of 2 emails in 7 days: the third
/// message to a contact is suppressed at launch with the reason `frequency cap`, and what
/// reached the SMTP server is, per address, the smaller of the cap and the campaigns that
/// targeted it.
async fn a_cap_suppresses_the_message_over_it_across_campaigns(backend: Backend) {
    let s = Sending::start(backend).await;
    cap_email(&s, 2, 168).await;
    people(&s, &["a", "b", "c"]).await;
    let segments: [(&str, &[&str]); 3] = [
        ("all", &["a", "b", "c"]),
        ("ab", &["a", "b"]),
        ("bc", &["b", "c"]),
    ];
    for (slug, members) in segments {
        segment(&s.app, slug, members).await;
    }
    // In this order: everyone, then a and b, then b and c.
    let sent_to = ["all", "ab", "bc"];
    let mut expected_suppressed = Vec::new();
    let mut targeted: BTreeMap<String, usize> = BTreeMap::new();
    for (n, slug) in sent_to.iter().enumerate() {
        let id = email_campaign(&s, &format!("Campaign {n}"), slug, false).await;
        let report = send(&s, id).await;
        let members = segments.iter().find(|(name, _)| name == slug).unwrap().1;
        let mut over = 0;
        for member in members {
            let before = targeted.entry((*member).to_owned()).or_default();
            if *before >= 2 {
                over += 1;
            }
            *before += 1;
        }
        expected_suppressed.push(over);
        let suppressed = report["suppressed"]["frequency cap"].as_u64().unwrap_or(0);
        assert_eq!(suppressed, over as u64, "campaign {n}: {report}");
        if over > 0 {
            // Only b has had two: everyone and ab.
            assert_eq!(
                with_status(&s, id, "suppressed").await,
                [("b".to_owned(), Some("frequency cap".to_owned()))]
            );
        }
    }
    assert_eq!(expected_suppressed, [0, 0, 1]);
    let expected: BTreeMap<String, usize> = targeted
        .iter()
        .map(|(id, n)| (address(id), (*n).min(2)))
        .collect();
    assert_eq!(received(&s), expected);
}

/// Campaigns launched before any of them sent are all queued; the worker checks again just
/// before sending and suppresses what is over the cap by then. With batches of one message
/// each check sees only the database; with one batch for all, it also counts the batch.
async fn the_worker_rechecks_the_cap_at_send_time(backend: Backend) {
    for batch_size in [1, 500] {
        let s = Sending::start_with(backend, |settings| {
            settings.sending.batch_size = batch_size;
        })
        .await;
        cap_email(&s, 2, 168).await;
        people(&s, &["x", "y"]).await;
        segment(&s.app, "xy", &["x", "y"]).await;
        let mut ids = Vec::new();
        for n in 0..3 {
            let id = email_campaign(&s, &format!("Campaign {n}"), "xy", false).await;
            let report = s.launch(id).await;
            assert_eq!(report["queued"], 2, "nothing was sent yet: {report}");
            ids.push(id);
        }
        for &id in &ids {
            s.settle(id, Channel::Email).await;
        }
        let mut suppressed = Vec::new();
        let mut sent = 0;
        for &id in &ids {
            suppressed.extend(with_status(&s, id, "suppressed").await);
            sent += with_status(&s, id, "sent").await.len();
        }
        suppressed.sort();
        let reason = Some("frequency cap".to_owned());
        assert_eq!(
            suppressed,
            [("x".to_owned(), reason.clone()), ("y".to_owned(), reason)],
            "batch size {batch_size}"
        );
        assert_eq!(sent, 4, "batch size {batch_size}");
        assert_eq!(
            received(&s),
            BTreeMap::from([(address("x"), 2), (address("y"), 2)]),
            "batch size {batch_size}"
        );
    }
}

/// A transactional campaign is sent whatever the cap, and its messages leave the marketing
/// allowance untouched.
async fn transactional_campaigns_are_neither_capped_nor_counted(backend: Backend) {
    let s = Sending::start(backend).await;
    cap_email(&s, 1, 24).await;
    people(&s, &["t"]).await;
    segment(&s.app, "t", &["t"]).await;
    // (transactional, sent?) in order: the receipt does not use up the one marketing
    // message; the second receipt goes although the cap is full; the second marketing
    // message does not.
    let plan = [(true, true), (false, true), (true, true), (false, false)];
    let mut expected = 0;
    for (n, (transactional, goes)) in plan.into_iter().enumerate() {
        let id = email_campaign(&s, &format!("Message {n}"), "t", transactional).await;
        let report = send(&s, id).await;
        if goes {
            expected += 1;
            assert_eq!(report["queued"], 1, "message {n}: {report}");
            assert_eq!(with_status(&s, id, "sent").await.len(), 1, "message {n}");
        } else {
            assert_eq!(
                report["suppressed"],
                json!({"frequency cap": 1}),
                "message {n}: {report}"
            );
        }
    }
    assert_eq!(received(&s), BTreeMap::from([(address("t"), expected)]));
    assert_eq!(expected, 3);

    // The flag is shown in the list and kept by a duplicate.
    let (status, list) = s.app.get("/api/v1/campaigns").await;
    assert_eq!(status, 200, "{list}");
    let flags: Vec<bool> = list["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["transactional"].as_bool().unwrap())
        .collect();
    assert_eq!(flags, [true, false, true, false]);
    let first = list["campaigns"][0]["id"].as_i64().unwrap();
    let (status, copy) = s
        .app
        .post(&format!("/api/v1/campaigns/{first}/duplicate"), &json!({}))
        .await;
    assert_eq!(status, 201, "{copy}");
    assert_eq!(copy["transactional"], true, "{copy}");

    // At send time too: queued while the allowance was free, a marketing message is
    // suppressed once a receipt and another marketing message have gone; the receipt is not.
    people(&s, &["u"]).await;
    segment(&s.app, "u", &["u"]).await;
    let receipt = email_campaign(&s, "Receipt", "u", true).await;
    let news = email_campaign(&s, "News", "u", false).await;
    let more = email_campaign(&s, "More news", "u", false).await;
    for id in [receipt, news, more] {
        assert_eq!(s.launch(id).await["queued"], 1);
    }
    for id in [receipt, news, more] {
        s.settle(id, Channel::Email).await;
    }
    assert_eq!(with_status(&s, receipt, "sent").await.len(), 1);
    let news_sent = with_status(&s, news, "sent").await.len();
    let more_sent = with_status(&s, more, "sent").await.len();
    assert_eq!(
        news_sent + more_sent,
        1,
        "one marketing message within the cap"
    );
    assert_eq!(received(&s)[&address("u")], 2);
}

/// A message counts for `window_hours` after it was sent: one sent exactly that long ago no
/// longer does, one sent a millisecond later still does.
async fn the_window_counts_messages_sent_less_than_window_hours_ago(backend: Backend) {
    let s = Sending::start(backend).await;
    cap_email(&s, 1, 24).await;
    people(&s, &["old", "recent"]).await;
    segment(&s.app, "both", &["old", "recent"]).await;
    let first = email_campaign(&s, "First", "both", false).await;
    send(&s, first).await;

    // The exact boundary, on the message as it was recorded.
    let backend_kind = s.app.db.get_database_backend();
    let row = s
        .app
        .db
        .query_one_raw(Statement::from_string(
            backend_kind,
            format!("SELECT contact_id, sent_at FROM deliveries WHERE campaign_id = {first} ORDER BY id LIMIT 1"),
        ))
        .await
        .unwrap()
        .unwrap();
    let contact = ContactId(row.try_get("", "contact_id").unwrap());
    let sent_at: i64 = row.try_get("", "sent_at").unwrap();
    let window = 24 * 3_600_000;
    for (now, counted) in [
        (sent_at, 1),
        (sent_at + window - 1, 1),
        (sent_at + window, 0),
        (sent_at + window + 1, 0),
    ] {
        let counts = frequency::counts(
            &s.app.db,
            DEFAULT_WORKSPACE,
            Channel::Email,
            Timestamp::from_millis(now),
            &[contact],
        )
        .await
        .unwrap();
        assert_eq!(counts.cap.unwrap().max_messages, 1);
        assert_eq!(
            counts.sent.get(&contact).copied().unwrap_or(0),
            counted,
            "{} ms after sending",
            now - sent_at
        );
    }

    // Through launch and worker: "old" was sent just over a day ago, "recent" just under.
    let now = Timestamp::now().millis();
    for (contact, ago) in [("old", window + 60_000), ("recent", window - 600_000)] {
        s.app
            .db
            .execute_unprepared(&format!(
                "UPDATE deliveries SET sent_at = {} WHERE campaign_id = {first} \
                 AND contact_id = (SELECT id FROM contacts WHERE external_id = '{contact}')",
                now - ago
            ))
            .await
            .unwrap();
    }
    let second = email_campaign(&s, "Second", "both", false).await;
    let report = send(&s, second).await;
    assert_eq!(report["queued"], 1, "{report}");
    assert_eq!(
        with_status(&s, second, "suppressed").await,
        [("recent".to_owned(), Some("frequency cap".to_owned()))]
    );
    assert_eq!(
        received(&s),
        BTreeMap::from([(address("old"), 2), (address("recent"), 1)])
    );
}

/// Reading and changing the caps: viewers read, only admins change; bad caps are refused
/// with the field named and nothing saved.
async fn caps_are_set_through_the_api_and_bad_ones_refused(backend: Backend) {
    let s = Sending::start(backend).await;
    let admin = admin_key(&s).await;
    let get = async |key: &str| {
        let response = s
            .app
            .client
            .get(s.app.url(CAPS))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        read(response).await
    };
    assert_eq!(get(&s.app.viewer_key).await, (200, json!({"caps": []})));
    let caps = json!({"caps": [
        {"channel": "webhook", "max_messages": 5, "window_hours": 24},
        {"channel": "email", "max_messages": 2, "window_hours": 168},
    ]});
    for key in [&s.app.viewer_key, &s.app.marketer_key] {
        let (status, body) = put_caps(&s, key, &caps).await;
        assert_eq!(status, 403, "{body}");
    }
    let (status, body) = put_caps(&s, &admin, &caps).await;
    assert_eq!(status, 200, "{body}");
    let stored = json!({"caps": [
        {"channel": "email", "max_messages": 2, "window_hours": 168},
        {"channel": "webhook", "max_messages": 5, "window_hours": 24},
    ]});
    assert_eq!(body, stored);

    let bad = [
        (
            json!({"caps": [{"channel": "email", "max_messages": 0, "window_hours": 24}]}),
            "caps[0].max_messages",
        ),
        (
            json!({"caps": [{"channel": "email", "max_messages": -3, "window_hours": 24}]}),
            "caps[0].max_messages",
        ),
        (
            json!({"caps": [{"channel": "email", "max_messages": 2, "window_hours": -1}]}),
            "caps[0].window_hours",
        ),
        (
            json!({"caps": [{"channel": "email", "max_messages": 2, "window_hours": 0}]}),
            "caps[0].window_hours",
        ),
        (
            json!({"caps": [{"channel": "email", "max_messages": 2, "window_hours": 1_000_000}]}),
            "caps[0].window_hours",
        ),
        (
            json!({"caps": [{"channel": "sms", "max_messages": 2, "window_hours": 24}]}),
            "caps[0].channel",
        ),
        (
            json!({"caps": [
                {"channel": "email", "max_messages": 2, "window_hours": 24},
                {"channel": "email", "max_messages": 3, "window_hours": 24},
            ]}),
            "caps[1].channel",
        ),
        (
            json!({"caps": [{"channel": "email", "window_hours": 24}]}),
            "caps[0]",
        ),
    ];
    for (body, field) in bad {
        let (status, answer) = put_caps(&s, &admin, &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        let named = answer["details"]["errors"][0]["field"]
            .as_str()
            .unwrap_or_default();
        assert!(named.starts_with(field), "{body}: {answer}");
        assert_eq!(
            get(&s.app.viewer_key).await,
            (200, stored.clone()),
            "{body} changed the caps"
        );
    }

    // A campaign's flag must be a boolean.
    let mut body = campaign(
        "Bad flag",
        &["email"],
        "nobody",
        json!({"name": "Only", "email": email("Hi", "<p>Hi</p>")}),
    );
    body["transactional"] = json!("yes");
    let (status, answer) = s.app.post("/api/v1/campaigns", &body).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["details"]["errors"][0]["field"], "transactional",
        "{answer}"
    );

    // And the caps turn off.
    let (status, body) = put_caps(&s, &admin, &json!({"caps": []})).await;
    assert_eq!((status, body), (200, json!({"caps": []})));
}

on_both_backends!(
    a_cap_suppresses_the_message_over_it_across_campaigns,
    the_worker_rechecks_the_cap_at_send_time,
    transactional_campaigns_are_neither_capped_nor_counted,
    the_window_counts_messages_sent_less_than_window_hours_ago,
    caps_are_set_through_the_api_and_bad_ones_refused,
);
