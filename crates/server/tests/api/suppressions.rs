//! Bounces at send time and the suppression list, checked the way a user sees them: what the
//! real SMTP server (aiosmtpd) received, what the API says about the contact, its events,
//! the list and the deliveries of the next campaign.
//!
//! The aiosmtpd peer answers RCPT TO for local parts starting with `reject` with
//! `550 5.1.1 No such user here` and for `defer` with `450 4.2.1 Mailbox temporarily
//! unavailable`.

use crate::app::{TestApp, read};
use crate::campaigns::{contacts, create, segment};
use crate::providers::{MAILGUN_KEY, mailgun_body, mailgun_failed};
use crate::sending::{Sending, campaign, email};
use clarion_model::Channel;
use clarion_testkit::{Backend, on_both_backends};
use reqwest::Method;
use serde_json::{Value as Json, json};

/// An email campaign to segment `slug`; returns its id.
async fn email_campaign(s: &Sending, name: &str, slug: &str) -> i64 {
    create(
        &s.app,
        &campaign(
            name,
            &["email"],
            slug,
            json!({"name": "Only", "email": email(&format!("{name} news"), "<p>Hello</p>")}),
        ),
    )
    .await["id"]
        .as_i64()
        .unwrap()
}

/// How many messages the SMTP server accepted for `address`.
fn received_by(s: &Sending, address: &str) -> usize {
    s.smtp
        .received()
        .iter()
        .filter(|m| m.rcpt_tos.iter().any(|to| to == address))
        .count()
}

async fn contact(s: &Sending, id: &str) -> Json {
    let (status, contact) = s.app.get(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!(status, 200, "{contact}");
    contact
}

async fn events(s: &Sending, id: &str, kind: &str) -> Vec<Json> {
    let (status, page) = s
        .app
        .get(&format!("/api/v1/contacts/{id}/events?kind={kind}"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().unwrap().clone()
}

async fn entry(s: &Sending, channel: &str, address: &str) -> (u16, Json) {
    s.app
        .get(&format!("/api/v1/suppressions/{channel}/{address}"))
        .await
}

async fn a_hard_bounce_at_the_smtp_server_suppresses_the_contact_for_the_next_campaign(
    backend: Backend,
) {
    let s = Sending::start(backend).await;
    contacts(
        &s.app,
        json!([
            {"external_id": "ok", "email": "ok@customer.example"},
            {"external_id": "gone", "email": "reject-gone@customer.example"},
        ]),
    )
    .await;
    segment(&s.app, "all", &["ok", "gone"]).await;

    let first = email_campaign(&s, "First", "all").await;
    let report = s.launch(first).await;
    assert_eq!(report["queued"], 2, "{report}");
    s.settle(first, Channel::Email).await;

    // The refusal is the delivery's reason, and the contact is bounced at once.
    let failed = s
        .deliveries(&format!(
            "/api/v1/campaigns/{first}/deliveries?status=failed"
        ))
        .await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["contact"], "gone", "{failed:#?}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("550"), "{reason}");
    assert_eq!(
        contact(&s, "gone").await["subscriptions"]["email"],
        "bounced"
    );
    assert_eq!(
        contact(&s, "ok").await["subscriptions"]["email"],
        "subscribed"
    );

    // An email_bounce event segments and KPIs can use, with the relay's code and text.
    let bounces = events(&s, "gone", "email_bounce").await;
    assert_eq!(bounces.len(), 1, "{bounces:#?}");
    let properties = &bounces[0]["properties"];
    assert_eq!(properties["type"], "hard", "{properties}");
    assert_eq!(properties["code"], 550, "{properties}");
    assert!(
        properties["text"]
            .as_str()
            .unwrap()
            .contains("No such user here"),
        "{properties}"
    );
    assert_eq!(properties["campaign_id"], first, "{properties}");

    // The address is on the suppression list, saying why.
    let (status, listed) = entry(&s, "email", "reject-gone@customer.example").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["source"], "hard_bounce", "{listed}");
    assert!(
        listed["reason"].as_str().unwrap().contains("550"),
        "{listed}"
    );

    // The next campaign does not send to it.
    let second = email_campaign(&s, "Second", "all").await;
    let report = s.launch(second).await;
    assert_eq!(report["queued"], 1, "{report}");
    assert_eq!(report["suppressed"], json!({"bounced": 1}), "{report}");
    s.settle(second, Channel::Email).await;
    assert_eq!(received_by(&s, "ok@customer.example"), 2);
    assert_eq!(received_by(&s, "reject-gone@customer.example"), 0);
    let suppressed = s
        .deliveries(&format!(
            "/api/v1/campaigns/{second}/deliveries?status=suppressed"
        ))
        .await;
    assert_eq!(suppressed.len(), 1, "{suppressed:#?}");
    assert_eq!(suppressed[0]["reason"], "bounced", "{suppressed:#?}");
}

async fn soft_bounces_are_retried_and_enough_of_them_mark_the_contact_bounced(backend: Backend) {
    let s = Sending::start_with(backend, |settings| {
        settings.sending.max_attempts = 2;
        settings.bounces.soft_limit = 2;
        settings.bounces.soft_window_days = 7;
    })
    .await;
    contacts(
        &s.app,
        json!([{"external_id": "full", "email": "defer-full@customer.example"}]),
    )
    .await;
    segment(&s.app, "full", &["full"]).await;

    // One message, deferred on both attempts: one soft-bounced message, under the limit.
    let first = email_campaign(&s, "First", "full").await;
    s.launch(first).await;
    s.settle(first, Channel::Email).await;
    let failed = s
        .deliveries(&format!(
            "/api/v1/campaigns/{first}/deliveries?status=failed"
        ))
        .await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{failed:#?}"
    );
    let soft = events(&s, "full", "email_bounce").await;
    assert_eq!(soft.len(), 2, "one event per answer: {soft:#?}");
    for event in &soft {
        assert_eq!(event["properties"]["type"], "soft", "{event}");
        assert_eq!(event["properties"]["code"], 450, "{event}");
    }
    assert_eq!(
        contact(&s, "full").await["subscriptions"]["email"],
        "subscribed"
    );
    assert_eq!(
        entry(&s, "email", "defer-full@customer.example").await.0,
        404
    );

    // A second soft-bounced message reaches the limit.
    let second = email_campaign(&s, "Second", "full").await;
    s.launch(second).await;
    s.settle(second, Channel::Email).await;
    assert_eq!(
        contact(&s, "full").await["subscriptions"]["email"],
        "bounced"
    );
    let (status, listed) = entry(&s, "email", "defer-full@customer.example").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["source"], "soft_bounces", "{listed}");

    let third = email_campaign(&s, "Third", "full").await;
    let report = s.launch(third).await;
    assert_eq!(report["queued"], 0, "{report}");
    assert_eq!(report["suppressed"], json!({"bounced": 1}), "{report}");
    assert_eq!(received_by(&s, "defer-full@customer.example"), 0);
}

async fn post_csv(s: &Sending, path: &str, csv: &str) -> (u16, Json) {
    let response = s
        .app
        .request(Method::POST, path)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    read(response).await
}

async fn the_suppression_list_is_managed_through_the_api(backend: Backend) {
    let s = Sending::start(backend).await;
    let app = &s.app;

    let (status, added) = app
        .post(
            "/api/v1/suppressions",
            &json!({"address": "Ada@Example.COM", "reason": "asked by phone"}),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["address"], "Ada@example.com", "{added}");
    assert_eq!(added["channel"], "email");
    assert_eq!(added["source"], "manual");
    // Adding it again keeps the first entry.
    let (status, again) = app
        .post(
            "/api/v1/suppressions",
            &json!({"address": "Ada@example.com", "reason": "other"}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["reason"], "asked by phone", "{again}");

    // Bad input names the field and stores nothing.
    let (status, refused) = app
        .post(
            "/api/v1/suppressions",
            &json!({"address": "not-an-address"}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["details"]["errors"][0]["field"], "address",
        "{refused}"
    );
    let (status, refused) = app
        .post(
            "/api/v1/suppressions",
            &json!({"address": "x@example.com", "reason": "r".repeat(501)}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["details"]["errors"][0]["field"], "reason",
        "{refused}"
    );

    // A viewer reads but does not write.
    let viewer = |method: Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(&app.viewer_key)
    };
    let (status, _) = read(
        viewer(Method::GET, "/api/v1/suppressions")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = read(
        viewer(Method::POST, "/api/v1/suppressions")
            .json(&json!({"address": "v@example.com"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = read(
        viewer(Method::DELETE, "/api/v1/suppressions/email/Ada@example.com")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = read(
        app.client
            .get(app.url("/api/v1/suppressions"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);

    // Import: good rows are kept, bad rows reported by line and column.
    let csv = "email,reason,channel\n\
               bob@example.com,left the company,\n\
               broken,typo,\n\
               cust-7,,webhook\n\
               carl@example.com,,fax\n\
               ada@example.com,dup,\n";
    let (status, report) = post_csv(&s, "/api/v1/suppressions/import", csv).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rows"], 5, "{report}");
    assert_eq!(report["added"], 3, "{report}");
    assert_eq!(report["rejected"], 2, "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors[0]["line"], 3, "{report}");
    assert_eq!(errors[0]["field"], "address", "{report}");
    assert_eq!(errors[1]["line"], 5, "{report}");
    assert_eq!(errors[1]["field"], "channel", "{report}");
    // `ada@example.com` differs from the stored `Ada@example.com` in its local part, which
    // mail servers may treat as case-sensitive: it is a separate entry.
    let (status, refused) = post_csv(&s, "/api/v1/suppressions/import", "name\nx\n").await;
    assert_eq!(status, 422, "{refused}");
    let response = app
        .request(Method::POST, "/api/v1/suppressions/import")
        .json(&json!({"address": "x@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);

    // Paging goes through every entry once.
    let mut seen = Vec::new();
    let mut path = "/api/v1/suppressions?limit=2".to_owned();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for entry in page["suppressions"].as_array().unwrap() {
            seen.push(format!(
                "{}:{}",
                entry["channel"].as_str().unwrap(),
                entry["address"].as_str().unwrap()
            ));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/suppressions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "email:Ada@example.com",
            "email:ada@example.com",
            "email:bob@example.com",
            "webhook:cust-7"
        ]
    );
    let (_, webhook_only) = app.get("/api/v1/suppressions?channel=webhook").await;
    assert_eq!(webhook_only["suppressions"].as_array().unwrap().len(), 1);

    // Export: a CSV a spreadsheet (or the csv crate) reads back.
    let response = app
        .request(Method::GET, "/api/v1/suppressions/export?channel=email")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["channel", "address", "reason", "source", "created_at"]
    );
    let mut exported: Vec<(String, String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[1].to_owned(), r[2].to_owned(), r[3].to_owned())
        })
        .collect();
    exported.sort();
    assert_eq!(
        exported,
        [
            (
                "Ada@example.com".to_owned(),
                "asked by phone".to_owned(),
                "manual".to_owned()
            ),
            (
                "ada@example.com".to_owned(),
                "dup".to_owned(),
                "import".to_owned()
            ),
            (
                "bob@example.com".to_owned(),
                "left the company".to_owned(),
                "import".to_owned()
            ),
        ]
    );

    // Remove: gone, then 404.
    let response = app
        .request(Method::DELETE, "/api/v1/suppressions/email/bob@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(entry(&s, "email", "bob@example.com").await.0, 404);
    let response = app
        .request(Method::DELETE, "/api/v1/suppressions/email/bob@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

async fn suppressed_addresses_get_nothing_whatever_their_contact_says(backend: Backend) {
    let s = Sending::start(backend).await;
    contacts(
        &s.app,
        json!([
            {"external_id": "a", "email": "a@customer.example"},
            {"external_id": "b", "email": "b@customer.example"},
            {"external_id": "c", "email": "c@customer.example"},
        ]),
    )
    .await;
    segment(&s.app, "abc", &["a", "b", "c"]).await;
    let (status, body) = s
        .app
        .post(
            "/api/v1/suppressions",
            &json!({"address": "a@customer.example"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Launch records the suppressed delivery with the list's reason; the contact itself is
    // still subscribed.
    let id = email_campaign(&s, "Sale", "abc").await;
    let report = s.launch(id).await;
    assert_eq!(report["queued"], 2, "{report}");
    assert_eq!(
        report["suppressed"],
        json!({"on the suppression list (manual)": 1}),
        "{report}"
    );
    assert_eq!(
        contact(&s, "a").await["subscriptions"]["email"],
        "subscribed"
    );

    // An address listed after launch is stopped by the worker at send time.
    let (status, body) = s
        .app
        .post(
            "/api/v1/suppressions",
            &json!({"address": "b@customer.example", "reason": "asked us to stop"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    s.settle(id, Channel::Email).await;
    assert_eq!(received_by(&s, "a@customer.example"), 0);
    assert_eq!(received_by(&s, "b@customer.example"), 0);
    assert_eq!(received_by(&s, "c@customer.example"), 1);
    let suppressed = s
        .deliveries(&format!(
            "/api/v1/campaigns/{id}/deliveries?status=suppressed"
        ))
        .await;
    let mut reasons: Vec<(String, String)> = suppressed
        .iter()
        .map(|d| {
            (
                d["contact"].as_str().unwrap().to_owned(),
                d["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            (
                "a".to_owned(),
                "on the suppression list (manual)".to_owned()
            ),
            (
                "b".to_owned(),
                "on the suppression list (manual)".to_owned()
            ),
        ]
    );
}

/// Segment health and campaign audience count a contact as reachable on a channel only when
/// its own state allows it and it is not on that channel's suppression list. 48 contacts cover
/// every combination of address, email status, webhook status and entries on either list; the
/// expected figures are counted here from the same table of cases.
async fn reachable_counts_leave_out_the_suppression_list(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    struct Case {
        id: String,
        email: bool,
        email_status: &'static str,
        webhook_status: &'static str,
        email_listed: bool,
        webhook_listed: bool,
    }
    let statuses = ["subscribed", "unsubscribed", "bounced"];
    let mut cases = Vec::new();
    for i in 0..48_usize {
        cases.push(Case {
            id: format!("r{i}"),
            email: i % 2 == 0 || i % 7 == 1,
            email_status: statuses[(i / 2) % 3],
            webhook_status: statuses[(i / 6) % 3],
            email_listed: i % 4 < 2,
            webhook_listed: (i / 3) % 3 == 0,
        });
    }
    let items: Vec<Json> = cases
        .iter()
        .map(|c| {
            let mut item = json!({"external_id": c.id,
                "subscriptions": {"email": c.email_status, "webhook": c.webhook_status}});
            if c.email {
                item["email"] = json!(format!("{}@shop.example", c.id));
            }
            item
        })
        .collect();
    contacts(&app, json!(items)).await;
    let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    segment(&app, "everyone", &ids).await;
    for c in &cases {
        if c.email_listed {
            // Upper-case domain: the list keeps addresses as contacts do, so it still matches.
            let body = json!({"address": format!("{}@SHOP.example", c.id)});
            let (status, body) = app.post("/api/v1/suppressions", &body).await;
            assert_eq!(status, 201, "{body}");
        }
        if c.webhook_listed {
            let body = json!({"channel": "webhook", "address": c.id});
            let (status, body) = app.post("/api/v1/suppressions", &body).await;
            assert_eq!(status, 201, "{body}");
        }
    }
    // Entries of the other channel's kind, and addresses no contact has, change nothing.
    for body in [
        json!({"channel": "webhook", "address": "r0@shop.example"}),
        json!({"address": "nobody@shop.example"}),
    ] {
        let (status, body) = app.post("/api/v1/suppressions", &body).await;
        assert_eq!(status, 201, "{body}");
    }
    let email = cases
        .iter()
        .filter(|c| c.email && c.email_status == "subscribed" && !c.email_listed)
        .count();
    let webhook = cases
        .iter()
        .filter(|c| c.webhook_status == "subscribed" && !c.webhook_listed)
        .count();
    let listed_but_otherwise_reachable = cases
        .iter()
        .filter(|c| c.email && c.email_status == "subscribed" && c.email_listed)
        .count();
    assert!(email > 0 && webhook > 0 && listed_but_otherwise_reachable > 0);

    let (status, health) = app.get("/api/v1/segments/everyone/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["size"], cases.len());
    assert_eq!(
        health["reachable"],
        json!({"email": email, "webhook": webhook}),
        "{health}"
    );

    let body = json!({
        "name": "Reach",
        "goal": { "event": "purchase", "window_hours": 168 },
        "holdout_percent": 0,
        "channels": ["email", "webhook"],
        "targets": [{"segment": "everyone", "variants": [{
            "name": "Only",
            "email": email_body(),
            "webhook": {"payload": "{\"who\": {{ contact.external_id }}}"},
        }]}],
    });
    let id = create(&app, &body).await["id"].as_i64().unwrap();
    let (status, audience) = app.get(&format!("/api/v1/campaigns/{id}/audience")).await;
    assert_eq!(status, 200, "{audience}");
    assert_eq!(
        audience["total"],
        json!({"contacts": cases.len(), "holdout": 0, "recipients": cases.len(),
               "reachable": {"email": email, "webhook": webhook}}),
        "{audience}"
    );
}

fn email_body() -> Json {
    json!({"subject": "Hello", "html": "<p>Hello</p>", "from": "Shop <news@shop.example>"})
}

/// A provider's soft bounce names the message through the original Message-ID (Clarion sends
/// `<DELIVERY_ID@domain>`): it is tied to that delivery, so a message the provider reports
/// twice counts once towards `bounces.soft_limit`. A Message-ID of a delivery to someone else
/// is not taken.
async fn a_providers_soft_bounce_is_tied_to_its_delivery(backend: Backend) {
    let s = Sending::start_with(backend, |settings| {
        settings.providers.mailgun.signing_key = MAILGUN_KEY.to_owned().into();
        settings.bounces.soft_limit = 2;
        settings.bounces.soft_window_days = 7;
    })
    .await;
    contacts(
        &s.app,
        json!([
            {"external_id": "p", "email": "p@customer.example"},
            {"external_id": "q", "email": "q@customer.example"},
        ]),
    )
    .await;
    segment(&s.app, "pq", &["p", "q"]).await;
    let id = email_campaign(&s, "Sale", "pq").await;
    s.launch(id).await;
    s.settle(id, Channel::Email).await;
    // The Message-ID as the receiving server saw it, which a provider reports back.
    let received = s.smtp.received();
    let to_p = received
        .iter()
        .find(|m| m.rcpt_tos.iter().any(|to| to == "p@customer.example"))
        .unwrap();
    let message_id = mail_parser::MessageParser::default()
        .parse(&to_p.raw)
        .unwrap()
        .message_id()
        .unwrap()
        .to_owned();
    let delivery = s.delivery_of("p").await["id"].as_i64().unwrap();

    let soft = |token: &str, event: &str, recipient: &str| {
        let mut failed = mailgun_failed(event, recipient, "temporary", 452);
        failed["message"]["headers"]["message-id"] = json!(message_id);
        // Within the soft-bounce window.
        failed["timestamp"] = json!(clarion_model::Timestamp::now().millis() as f64 / 1000.0);
        mailgun_body(MAILGUN_KEY, token, failed)
    };
    // The same message reported twice: one soft-bounced message, under the limit of 2.
    for (token, event) in [("t-1", "ev-1"), ("t-2", "ev-2")] {
        let (status, body) = s
            .app
            .client
            .post(s.app.url("/webhooks/mailgun"))
            .header("content-type", "application/json")
            .body(soft(token, event, "p@customer.example"))
            .send()
            .await
            .map(|r| (r.status().as_u16(), r))
            .unwrap();
        assert_eq!(status, 200, "{:?}", body.text().await);
    }
    s.app.write_provider_reports().await;
    assert_eq!(
        contact(&s, "p").await["subscriptions"]["email"],
        "subscribed"
    );
    let bounces = events(&s, "p", "email_bounce").await;
    assert_eq!(bounces.len(), 2, "{bounces:#?}");
    for event in &bounces {
        assert_eq!(event["properties"]["delivery_id"], delivery, "{event}");
        assert_eq!(event["properties"]["campaign_id"], id, "{event}");
    }
    // q did not get that message: its reports are not tied to it and count one by one.
    for (token, event) in [("t-3", "ev-3"), ("t-4", "ev-4")] {
        let response = s
            .app
            .client
            .post(s.app.url("/webhooks/mailgun"))
            .header("content-type", "application/json")
            .body(soft(token, event, "q@customer.example"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    s.app.write_provider_reports().await;
    let bounces = events(&s, "q", "email_bounce").await;
    assert_eq!(bounces.len(), 2, "{bounces:#?}");
    assert!(
        bounces
            .iter()
            .all(|e| e["properties"].get("delivery_id").is_none()),
        "{bounces:#?}"
    );
    assert_eq!(contact(&s, "q").await["subscriptions"]["email"], "bounced");
}

on_both_backends!(
    a_hard_bounce_at_the_smtp_server_suppresses_the_contact_for_the_next_campaign,
    soft_bounces_are_retried_and_enough_of_them_mark_the_contact_bounced,
    the_suppression_list_is_managed_through_the_api,
    suppressed_addresses_get_nothing_whatever_their_contact_says,
    reachable_counts_leave_out_the_suppression_list,
    a_providers_soft_bounce_is_tied_to_its_delivery,
);
