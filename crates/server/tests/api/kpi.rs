//! KPI reports through the API, on a campaign sent for real: launched, delivered to a real
//! SMTP server by the server's own worker, opened and clicked through the tracking links found
//! in the received messages, and converted by purchases sent to the events API. The report
//! must agree with what the test saw at the far end.

use std::collections::{BTreeMap, BTreeSet};

use clarion_model::{Channel, DEFAULT_WORKSPACE, Role, Timestamp};
use clarion_server::store;
use clarion_testkit::{Backend, on_both_backends};
use mail_parser::MessageParser;
use reqwest::{Method, header};
use serde_json::{Value as Json, json};

use crate::app::read;
use crate::campaigns::{contacts, create, segment};
use crate::sending::Sending;

/// The path of the first URL in `html` that contains `marker` (`/t/o/` or `/t/c/`).
fn tracking_path(html: &str, marker: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"));
    let end = html[start..]
        .find(['"', '\'', ' ', '>'])
        .map_or(html.len(), |e| start + e);
    html[start..end].replace("&amp;", "&")
}

async fn get_as(s: &Sending, key: &str, path: &str) -> (u16, Json) {
    let response = s
        .app
        .client
        .get(s.app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    read(response).await
}

async fn put_as(s: &Sending, key: &str, path: &str, body: &Json) -> (u16, Json) {
    let response = s
        .app
        .client
        .request(Method::PUT, s.app.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    read(response).await
}

async fn a_sent_campaign_is_reported_as_the_far_end_saw_it(backend: Backend) {
    let s = Sending::start(backend).await;
    let mut people: Vec<Json> = (1..=40)
        .map(|i| json!({"external_id": format!("c{i}"), "email": format!("c{i}@customer.example")}))
        .collect();
    people.push(json!({"external_id": "nomail"}));
    people.push(json!({"external_id": "gone", "email": "gone@customer.example", "subscriptions": {"email": "unsubscribed"}}));
    contacts(&s.app, json!(people)).await;
    let mut members: Vec<String> = (1..=40).map(|i| format!("c{i}")).collect();
    members.extend(["nomail".to_owned(), "gone".to_owned()]);
    let member_refs: Vec<&str> = members.iter().map(String::as_str).collect();
    segment(&s.app, "buyers", &member_refs).await;
    let campaign = create(
        &s.app,
        &json!({
            "name": "Autumn sale",
            "goal": { "event": "purchase", "window_hours": 168 },
            "holdout_percent": 25,
            "channels": ["email"],
            "targets": [{ "segment": "buyers", "variants": [{ "name": "A", "email": {
                "subject": "Autumn", "from": "Shop <news@shop.example>",
                "html": "<p>Sale! <a href=\"https://shop.example/sale\">Shop now</a></p>" } }] }],
        }),
    )
    .await;
    let id = campaign["id"].as_i64().unwrap();
    let launch = s.launch(id).await;
    s.drain(Channel::Email).await;

    // What arrived, by recipient.
    let mut html_of: BTreeMap<String, String> = BTreeMap::new();
    for message in s.smtp.received() {
        let parsed = MessageParser::default().parse(&message.raw).unwrap();
        let html = parsed.body_html(0).unwrap().into_owned();
        for to in &message.rcpt_tos {
            let contact = to.split('@').next().unwrap().to_owned();
            html_of.insert(contact, html.clone());
        }
    }
    let recipients: Vec<String> = html_of.keys().cloned().collect();
    assert!(recipients.len() >= 10, "{launch}");

    // Ten recipients open (one twice), five click, three buy; two held-out contacts buy.
    // People's mail clients send a user agent (a request without one is a machine's).
    let person =
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)";
    let people = crate::app::http_client()
        .user_agent(person)
        .build()
        .unwrap();
    for (i, contact) in recipients.iter().take(10).enumerate() {
        let path = tracking_path(&html_of[contact], "/t/o/");
        for _ in 0..(if i == 0 { 2 } else { 1 }) {
            let response = people.get(s.app.url(&path)).send().await.unwrap();
            assert_eq!(response.status(), 200);
        }
    }
    let no_redirects = crate::app::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(person)
        .build()
        .unwrap();
    for contact in recipients.iter().take(5) {
        // The shop link is written in the variant, so it is tracked through the message's one
        // token and its index in the variant's link table (`/t/l/`); the honeypot keeps `/t/c/`.
        let path = tracking_path(&html_of[contact], "/t/l/");
        let response = no_redirects.get(s.app.url(&path)).send().await.unwrap();
        assert!(response.status().is_redirection(), "{}", response.status());
    }
    // The worker's recorder stores the queued opens and clicks.
    let tally = s.app.record_hits().await;
    assert_eq!(tally.count("open", "recorded"), 11, "{tally:?}");
    assert_eq!(tally.count("click", "recorded"), 5, "{tally:?}");
    let (status, held) = s
        .app
        .get(&format!("/api/v1/campaigns/{id}/deliveries?status=holdout"))
        .await;
    assert_eq!(status, 200, "{held}");
    let held_out: BTreeSet<String> = held["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["contact"].as_str().unwrap().to_owned())
        .collect();
    let now = Timestamp::now().millis();
    let at = |ms: i64| Timestamp::from_millis(ms).to_rfc3339();
    let mut purchases = Vec::new();
    for (contact, amount) in recipients.iter().take(3).zip([10.0, 20.5, 30.25]) {
        purchases.push(json!({"external_id": contact, "kind": "purchase", "amount": amount, "occurred_at": at(now)}));
    }
    // Bought before the launch: neither attributed nor counted for the holdout comparison.
    purchases.push(json!({"external_id": recipients[3], "kind": "purchase", "amount": 99.0, "occurred_at": at(now - 86_400_000)}));
    let buying_holdout: Vec<&String> = held_out
        .iter()
        .filter(|c| c.starts_with('c'))
        .take(2)
        .collect();
    for contact in &buying_holdout {
        purchases.push(json!({"external_id": contact, "kind": "purchase", "amount": 5.0, "occurred_at": at(now)}));
    }
    let (status, body) = s
        .app
        .post("/api/v1/events/batch", &json!({ "events": purchases }))
        .await;
    assert_eq!(status, 200, "{body}");

    // The viewer reads the report.
    let (status, report) = get_as(
        &s,
        &s.app.viewer_key,
        &format!("/api/v1/kpi/campaigns/{id}?series=hour"),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let totals = &report["totals"];
    assert_eq!(totals["audience"], launch["audience"], "{report:#}");
    assert_eq!(totals["holdout"], launch["holdout"], "{report:#}");
    assert_eq!(totals["suppressed"], launch["suppressed"], "{report:#}");
    assert_eq!(totals["sent"], recipients.len(), "{report:#}");
    assert_eq!(totals["recipients"], recipients.len());
    assert_eq!(totals["unique_opens"], 10, "{report:#}");
    assert_eq!(totals["unique_clicks"], 5, "{report:#}");
    assert_eq!(totals["click_to_open_rate"], 0.5);
    assert_eq!(totals["attributed_conversions"], 3);
    assert_eq!(totals["converters"], 3);
    assert_eq!(totals["attributed_revenue"], 60.75);
    assert_eq!(totals["average_order_value"], 20.25);
    assert_eq!(totals["conversion_rate"], 3.0 / recipients.len() as f64);
    // Intent-to-treat: the held-out contacts with an address and a subscription, against the
    // treated ones reachable at launch (the queued ones).
    let reachable_holdout = held_out.iter().filter(|c| c.starts_with('c')).count();
    let uplift = &report["uplift"];
    assert_eq!(
        uplift["treatment"]["contacts"], launch["queued"],
        "{uplift:#}"
    );
    assert_eq!(uplift["treatment"]["converters"], 3);
    assert_eq!(
        uplift["holdout"]["contacts"], reachable_holdout,
        "{uplift:#}"
    );
    assert_eq!(uplift["holdout"]["converters"], buying_holdout.len());
    // Forty contacts are far below the default minimum sample of 100.
    assert_eq!(uplift["conversion"], Json::Null);
    assert_eq!(uplift["conversion_verdict"], "not_enough_data");
    let series = report["series"].as_array().unwrap();
    let sent: u64 = series.iter().map(|p| p["sent"].as_u64().unwrap()).sum();
    assert_eq!(sent, recipients.len() as u64);
    assert_eq!(report["channels"][0]["name"], "email");
    assert_eq!(report["variants"][0]["name"], "A");
    assert_eq!(report["segments"][0]["name"], "buyers");

    // CSV, for the viewer too.
    let response = s
        .app
        .client
        .get(s.app.url(&format!("/api/v1/kpi/campaigns/{id}?format=csv")))
        .bearer_auth(&s.app.viewer_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let total = reader.records().next().unwrap().unwrap();
    let cell = |name: &str| total[header.iter().position(|h| h == name).unwrap()].to_owned();
    assert_eq!(cell("scope"), "total");
    assert_eq!(cell("unique_opens"), "10");
    assert_eq!(cell("attributed_revenue"), "60.75");
}

async fn reports_and_settings_check_roles_and_input(backend: Backend) {
    let s = Sending::start(backend).await;
    let (admin, _) = store::keys::create(&s.app.db, DEFAULT_WORKSPACE, "admin", Role::Admin)
        .await
        .unwrap();
    let (status, body) = get_as(&s, &s.app.viewer_key, "/api/v1/kpi/settings").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"attribution": "last_touch", "min_sample": 100, "confidence_level": 0.95,
               "churn": "inactivity", "activity_event": "purchase",
               "start_event": "subscription_started", "cancel_event": "subscription_cancelled",
               "inactivity_days": 90, "time_zone": "UTC"})
    );
    for key in [&s.app.viewer_key, &s.app.marketer_key] {
        let (status, body) = put_as(
            &s,
            key,
            "/api/v1/kpi/settings",
            &json!({"attribution": "first_touch"}),
        )
        .await;
        assert_eq!(status, 403, "{body}");
    }
    let (status, body) = put_as(
        &s,
        &admin,
        "/api/v1/kpi/settings",
        &json!({"min_sample": 1}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["details"]["errors"][0]["field"], "min_sample",
        "{body}"
    );
    let (status, body) = put_as(
        &s,
        &admin,
        "/api/v1/kpi/settings",
        &json!({"attribution": "first_touch", "min_sample": 50}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = get_as(&s, &s.app.viewer_key, "/api/v1/kpi/settings").await;
    assert_eq!(body["attribution"], "first_touch", "{body}");
    assert_eq!(body["min_sample"], 50, "{body}");
    let (status, body) = put_as(
        &s,
        &admin,
        "/api/v1/kpi/settings",
        &json!({"time_zone": "Mars/Olympus"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["errors"][0]["field"], "time_zone", "{body}");

    let (status, body) = s.app.get("/api/v1/kpi/campaigns/4242").await;
    assert_eq!(status, 404, "{body}");
    segment(&s.app, "nobody", &[]).await;
    let draft = create(
        &s.app,
        &json!({"name": "Draft", "goal": {"event": "purchase", "window_hours": 24}, "holdout_percent": 0,
                "channels": ["email"], "targets": [{"segment": "nobody", "variants": [{"name": "A",
                "email": {"subject": "x", "html": "<p>x</p>", "from": "a@shop.example"}}]}]}),
    )
    .await;
    let (status, body) = s
        .app
        .get(&format!("/api/v1/kpi/campaigns/{}", draft["id"]))
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = s
        .app
        .get(&format!("/api/v1/kpi/campaigns/{}?format=xml", draft["id"]))
        .await;
    assert_eq!(status, 400, "{body}");

    // The other reports answer the viewer, name bad fields, and put null for empty rates.
    let viewer = &s.app.viewer_key;
    let period = "from=2026-01-01T00:00:00Z&to=2026-04-01T00:00:00Z";
    let (status, body) = get_as(
        &s,
        viewer,
        &format!("/api/v1/kpi/segments/nobody/conversion?event=purchase&{period}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["members"].clone(), body["conversion_rate"].clone()),
        (json!(0), Json::Null),
        "{body}"
    );
    let (status, body) = get_as(
        &s,
        viewer,
        &format!("/api/v1/kpi/segments/compare?first=nobody&second=nobody&event=purchase&{period}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversion"], Json::Null, "{body}");
    let (status, body) = get_as(
        &s,
        viewer,
        &format!("/api/v1/kpi/segments/ghost/conversion?event=purchase&{period}"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get_as(&s, viewer, "/api/v1/kpi/segments/nobody/conversion?event=purchase&from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["errors"][0]["field"], "to", "{body}");
    let (status, body) = get_as(&s, viewer, "/api/v1/kpi/segments/nobody/conversion?event=purchase&from=yesterday&to=2026-01-01T00:00:00Z").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["errors"][0]["field"], "from", "{body}");
    let (status, body) = get_as(
        &s,
        viewer,
        &format!("/api/v1/kpi/churn?period=month&{period}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["periods"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(body["periods"][0]["churn_rate"], Json::Null, "{body}");
    let (status, body) = get_as(
        &s,
        viewer,
        "/api/v1/kpi/retention?from=2026-01-01T00:00:00Z&months=3",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cohorts"][0]["month"], "2026-01", "{body}");
    let (status, body) = get_as(
        &s,
        viewer,
        "/api/v1/kpi/retention?from=2026-01-01T00:00:00Z&months=0",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = get_as(&s, viewer, "/api/v1/kpi/trend?months=3").await;
    assert_eq!(status, 200, "{body}");
    let months = body["months"].as_array().unwrap();
    assert_eq!(months.len(), 3, "{body}");
    assert_eq!(
        (
            months[2]["active"].clone(),
            months[2]["conversion_rate"].clone()
        ),
        (json!(0), Json::Null),
        "{body}"
    );
    let (status, body) = get_as(&s, viewer, "/api/v1/kpi/trend?months=121").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["errors"][0]["field"], "months", "{body}");
    let response = s
        .app
        .client
        .get(
            s.app
                .url("/api/v1/kpi/retention?from=2026-01-01T00:00:00Z&months=2&format=csv"),
        )
        .bearer_auth(viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap().lines().next().unwrap(),
        "cohort,size,month_0,month_1"
    );
}

on_both_backends!(
    a_sent_campaign_is_reported_as_the_far_end_saw_it,
    reports_and_settings_check_roles_and_input,
);
