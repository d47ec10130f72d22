//! The campaign pages over real HTTP, as a browser without JavaScript sees them: a campaign
//! created through the form (problems shown beside their fields, template errors at their
//! line), launched from its page to a real SMTP server, its progress polled until done, its
//! report compared with the JSON report, and a viewer kept from every marketer action; on
//! SQLite and PostgreSQL.

use clarion_campaign::control;
use clarion_model::{Channel, Role};
use clarion_testkit::{Backend, on_both_backends};
use mail_parser::MessageParser;
use serde_json::{Value as Json, json};

use crate::app::TestApp;
use crate::campaigns::{contacts, create, segment};
use crate::dashboard::{PASSWORD, Page, Visitor, user};
use crate::sending::Sending;

/// A marketer logged in to the dashboard of `app`.
async fn marketer(app: &TestApp) -> Visitor {
    user(app, "mia@example.com", Role::Marketer, PASSWORD).await;
    let mut visitor = Visitor::new(app);
    let login = visitor.login("mia@example.com", PASSWORD).await;
    assert_eq!(login.status, 303, "{}", login.body);
    visitor
}

/// Contacts `vip1`, `vip2` in segment `vip` and `new1`..`new3` in segment `new`.
async fn two_segments(app: &TestApp) {
    let people: Vec<Json> = ["vip1", "vip2", "new1", "new2", "new3"]
        .iter()
        .map(|id| json!({"external_id": id, "email": format!("{id}@customer.example"), "first_name": id.to_uppercase()}))
        .collect();
    contacts(app, json!(people)).await;
    segment(app, "vip", &["vip1", "vip2"]).await;
    segment(app, "new", &["new1", "new2", "new3"]).await;
}

/// The text of the element with `id`, up to its closing tag.
fn element<'a>(page: &'a Page, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let start = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no element {id} in {}", page.body));
    let rest = &page.body[start + marker.len()..];
    let start = rest.find('>').unwrap() + 1;
    &rest[start..start + rest[start..].find('<').unwrap()]
}

/// The form fields of one segment with one email variant.
fn target(
    index: usize,
    segment: &str,
    name: &str,
    subject: &str,
    html: &str,
) -> Vec<(String, String)> {
    [
        (format!("t{index}.segment"), segment),
        (format!("t{index}.v0.name"), name),
        (format!("t{index}.v0.weight"), "1"),
        (format!("t{index}.v0.from"), "Shop <news@shop.example>"),
        (format!("t{index}.v0.subject"), subject),
        (format!("t{index}.v0.html"), html),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

async fn post_form(
    visitor: &mut Visitor,
    path: &str,
    csrf: &str,
    fields: &[(String, String)],
) -> Page {
    let mut form: Vec<(&str, &str)> = vec![("csrf", csrf), ("channel_email", "on")];
    form.extend(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    visitor.post(path, &form).await
}

fn basics(name: &str, window: &str) -> Vec<(String, String)> {
    [
        ("name", name),
        ("goal_event", "purchase"),
        ("window_hours", window),
        ("holdout_percent", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn a_marketer_creates_a_campaign_through_the_form(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    two_segments(&app).await;
    let mut visitor = marketer(&app).await;
    let form = visitor.get("/campaigns/new").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(
        form.body.contains("Segment vip (vip, 2 members)"),
        "segments are offered"
    );
    let csrf = form.csrf();

    // A window that is not a number: refused beside its field, everything typed kept.
    let mut fields = basics("Spring sale", "a week");
    fields.extend(target(0, "vip", "VIP", "Only for you", "<p>Hi</p>"));
    let refused = post_form(&mut visitor, "/campaigns", &csrf, &fields).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        element(&refused, "window_hours-error")
            .contains("&quot;a week&quot; is not a whole number"),
        "{}",
        element(&refused, "window_hours-error")
    );
    assert!(refused.body.contains("value=\"a week\""));
    assert!(refused.body.contains("value=\"Only for you\""));
    assert!(
        refused
            .body
            .contains("aria-invalid=\"true\" aria-describedby=\"window_hours-error\"")
    );

    // The domain's checks land beside their fields too: an empty name, a template error at
    // its line in the second segment's body.
    let mut fields = basics("", "168");
    fields.extend(target(0, "vip", "VIP", "Only for you", "<p>Hi</p>"));
    fields.extend(target(
        1,
        "new",
        "Welcome",
        "Welcome",
        "<p>Hello</p>\n<p>there</p>\n<p>{{ contact.first_name </p>",
    ));
    let refused = post_form(&mut visitor, "/campaigns", &csrf, &fields).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let html_error = element(&refused, "t1-v0-html-error");
    assert!(html_error.starts_with("Line 3"), "{html_error}");
    assert!(!element(&refused, "name-error").is_empty());
    assert!(
        refused.body.contains("{{ contact.first_name &lt;/p&gt;"),
        "the body as typed"
    );
    let (_, listed) = app.get("/api/v1/campaigns").await;
    assert_eq!(listed["campaigns"], json!([]), "nothing was stored");

    // A form without this session's token changes nothing.
    let forged = post_form(&mut visitor, "/campaigns", "forged", &fields).await;
    assert_eq!(forged.status, 403);

    // "Add a variant" grows the form without saving it.
    let mut grow = fields.clone();
    grow.push(("op".into(), "add-variant-0".into()));
    let grown = post_form(&mut visitor, "/campaigns", &csrf, &grow).await;
    assert_eq!(grown.status, 200);
    assert!(grown.body.contains("name=\"t0.v1.name\""));

    let mut fields = basics("Spring sale", "72");
    fields.extend(target(
        0,
        "vip",
        "VIP",
        "Only for you, {{ contact.first_name }}",
        "<p>Hi</p>",
    ));
    fields.extend(target(1, "new", "Welcome", "Welcome", "<p>Hello</p>"));
    let saved = post_form(&mut visitor, "/campaigns", &csrf, &fields).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let location = saved.location.unwrap();
    let id: i64 = location.trim_start_matches("/campaigns/").parse().unwrap();

    // What the API reads back is what was typed.
    let (_, stored) = app.get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(stored["name"], "Spring sale");
    assert_eq!(
        stored["goal"],
        json!({"event": "purchase", "window_hours": 72})
    );
    assert_eq!(stored["targets"][0]["segment"]["slug"], "vip");
    assert_eq!(
        stored["targets"][1]["variants"][0]["email"]["subject"],
        "Welcome"
    );

    // Its page previews each variant for a member of its segment.
    let page = visitor.get(&location).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(&format!("href=\"/campaigns/{id}/launch\""))
    );
    let variant = stored["targets"][0]["variants"][0]["id"].as_i64().unwrap();
    let preview = visitor
        .get(&format!("/campaigns/{id}/preview/{variant}"))
        .await;
    assert_eq!(preview.status, 200);
    assert!(
        preview.body.contains("Only for you, VIP1"),
        "{}",
        preview.body
    );
    // The body is its own sandboxed document in a frame, so the email's inline styles and
    // images show without loosening the dashboard's own policy.
    let body_url = format!("/campaigns/{id}/preview/{variant}/body");
    assert!(preview.body.contains(&format!("src=\"{body_url}\"")));
    let body = visitor.get(&body_url).await;
    assert_eq!(body.status, 200);
    assert!(body.body.contains("<p>Hi</p>"), "{}", body.body);

    // Editing keeps the variant ids (and so their history).
    let edit = visitor.get(&format!("/campaigns/{id}/edit")).await;
    assert!(
        edit.body
            .contains(&format!("name=\"t0.v0.id\" value=\"{variant}\""))
    );
    let list = visitor.get("/campaigns?sort=name&dir=asc").await;
    assert!(
        list.body
            .contains(&format!("href=\"/campaigns/{id}\">Spring sale</a>"))
    );
}

on_both_backends!(a_marketer_creates_a_campaign_through_the_form);

/// The number in a `data-figure` cell of the report row `data-{kind}="{name}"`.
fn figure(page: &Page, kind: &str, name: &str, figure: &str) -> u64 {
    let row = page
        .body
        .find(&format!("data-{kind}=\"{name}\""))
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    let rest = &page.body[row..];
    let cell = rest.find(&format!("data-figure=\"{figure}\">")).unwrap() + figure.len() + 15;
    rest[cell..cell + rest[cell..].find('<').unwrap()]
        .replace(',', "")
        .parse()
        .unwrap()
}

async fn a_campaign_launched_from_its_page_is_delivered_and_reported(backend: Backend) {
    let s = Sending::start(backend).await;
    let app = &s.app;
    two_segments(app).await;
    let mut visitor = marketer(app).await;
    let csrf = visitor.get("/campaigns/new").await.csrf();
    let mut fields = basics("Two segments", "168");
    fields.extend(target(
        0,
        "vip",
        "VIP",
        "VIP offer",
        "<p>Dear {{ contact.first_name }}</p>",
    ));
    fields.extend(target(
        1,
        "new",
        "Welcome",
        "Welcome aboard",
        "<p>Hello</p>",
    ));
    let saved = post_form(&mut visitor, "/campaigns", &csrf, &fields).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let page_path = saved.location.unwrap();
    let id: i64 = page_path.trim_start_matches("/campaigns/").parse().unwrap();

    // Launching asks first; the question changes nothing.
    let question = visitor.get(&format!("/campaigns/{id}/launch")).await;
    assert_eq!(question.status, 200);
    assert!(question.body.contains("Yes, launch it"));
    let (_, draft) = app.get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(draft["status"], "draft");
    let launched = visitor
        .post(&format!("/campaigns/{id}/launch"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (launched.status, launched.location.as_deref()),
        (303, Some(page_path.as_str()))
    );

    // Progress is polled while the run sends.
    let sending = visitor.get(&format!("/campaigns/{id}/progress")).await;
    assert!(
        sending.body.contains("hx-trigger=\"every 2s\""),
        "{}",
        sending.body
    );
    assert!(sending.body.contains("data-run-status=\"running\""));
    // Launching twice is refused with a page that says why, not a 500.
    let again = visitor
        .post(&format!("/campaigns/{id}/launch"), &[("csrf", &csrf)])
        .await;
    assert_eq!(again.status, 409, "{}", again.body);

    s.settle(id, Channel::Email).await;
    let state = &app.state;
    control::supervise(&state.db, &state.queues, &state.settings.sending)
        .await
        .unwrap();
    let done = visitor.get(&format!("/campaigns/{id}/progress")).await;
    assert!(
        done.body.contains("data-run-status=\"completed\""),
        "{}",
        done.body
    );
    assert!(!done.body.contains("hx-trigger"), "polling stops when done");
    assert_eq!(element(&done, "total-sent"), "5");
    // The overview's recent campaigns (read from the run roll-ups) agree with the rows:
    // 5 sent, none failed or queued, and the day's chart carries the 5.
    let overview = visitor.get("/").await;
    assert_eq!(overview.status, 200);
    let row = overview
        .body
        .split("<tr>")
        .find(|row| row.contains("state-completed") || row.contains("state-sent"))
        .unwrap_or_else(|| panic!("no finished campaign on the overview: {}", overview.body));
    let cells: Vec<&str> = row
        .split("<td class=\"num")
        .skip(1)
        .map(|cell| cell.split('>').nth(1).unwrap().split('<').next().unwrap())
        .collect();
    assert_eq!(cells, ["5", "0", "0"], "{row}");
    assert_eq!(element(&overview, "figure-sent"), "5");

    // The SMTP server got each segment's own message.
    let mut subjects: Vec<(String, String)> = s
        .smtp
        .received()
        .iter()
        .map(|m| {
            let parsed = MessageParser::default().parse(&m.raw).unwrap();
            (m.rcpt_tos[0].clone(), parsed.subject().unwrap().to_owned())
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            ("new1@customer.example", "Welcome aboard"),
            ("new2@customer.example", "Welcome aboard"),
            ("new3@customer.example", "Welcome aboard"),
            ("vip1@customer.example", "VIP offer"),
            ("vip2@customer.example", "VIP offer"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );

    // The report page shows the figures of the JSON report.
    let (status, report) = app.get(&format!("/api/v1/kpi/campaigns/{id}")).await;
    assert_eq!(status, 200, "{report}");
    let page = visitor.get(&format!("/campaigns/{id}/report")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        element(&page, "figure-sent"),
        report["totals"]["sent"].to_string()
    );
    for (kind, list) in [("variant", "variants"), ("segment", "segments")] {
        for breakdown in report[list].as_array().unwrap() {
            let name = breakdown["name"].as_str().unwrap();
            assert_eq!(
                figure(&page, kind, name, "sent"),
                breakdown["figures"]["sent"].as_u64().unwrap(),
                "{kind} {name}"
            );
        }
    }
    assert_eq!(figure(&page, "variant", "VIP", "sent"), 2);
    assert_eq!(figure(&page, "segment", "new", "sent"), 3);
    assert!(page.body.contains("<svg class=\"uplift\""));
}

on_both_backends!(a_campaign_launched_from_its_page_is_delivered_and_reported);

async fn a_viewer_reads_campaigns_but_cannot_change_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    two_segments(&app).await;
    let created = create(
        &app,
        &json!({
            "name": "Read only",
            "goal": { "event": "purchase", "window_hours": 168 },
            "channels": ["email"],
            "targets": [{ "segment": "vip", "variants": [{ "name": "A", "email": {
                "subject": "Hi", "html": "<p>Hi</p>", "from": "Shop <news@shop.example>" } }] }],
        }),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    user(&app, "vic@example.com", Role::Viewer, PASSWORD).await;
    let mut visitor = Visitor::new(&app);
    visitor.login("vic@example.com", PASSWORD).await;

    let list = visitor.get("/campaigns").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("Read only"));
    assert!(!list.body.contains("/campaigns/new"), "no New button");
    let page = visitor.get(&format!("/campaigns/{id}")).await;
    assert_eq!(page.status, 200);
    for action in ["edit", "launch", "pause", "resume", "cancel"] {
        assert!(
            !page.body.contains(&format!("/campaigns/{id}/{action}\"")),
            "no {action} button"
        );
    }
    let csrf = page.csrf();
    for path in [
        "/campaigns/new".to_owned(),
        format!("/campaigns/{id}/edit"),
        format!("/campaigns/{id}/launch"),
    ] {
        assert_eq!(visitor.get(&path).await.status, 403, "{path}");
    }
    for path in [
        "/campaigns".to_owned(),
        format!("/campaigns/{id}/edit"),
        format!("/campaigns/{id}/launch"),
        format!("/campaigns/{id}/cancel"),
    ] {
        let refused = visitor
            .post(&path, &[("csrf", &csrf), ("name", "Taken over")])
            .await;
        assert_eq!(refused.status, 403, "{path}");
    }
    let (_, still) = app.get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(
        (still["status"].as_str(), still["name"].as_str()),
        (Some("draft"), Some("Read only"))
    );
    // Not launched: the report page says so instead of failing.
    let report = visitor.get(&format!("/campaigns/{id}/report")).await;
    assert_eq!(report.status, 409, "{}", report.body);
}

on_both_backends!(a_viewer_reads_campaigns_but_cannot_change_them);

/// A campaign to `vip` by email, created through the API; its id.
async fn vip_campaign(app: &TestApp, name: &str) -> i64 {
    let created = create(
        app,
        &json!({
            "name": name,
            "goal": { "event": "purchase", "window_hours": 168 },
            "channels": ["email"],
            "targets": [{ "segment": "vip", "variants": [{ "name": "A", "email": {
                "subject": "Hi", "html": "<p>Hi</p>", "from": "Shop <news@shop.example>" } }] }],
        }),
    )
    .await;
    created["id"].as_i64().unwrap()
}

async fn a_marketer_times_a_campaign_from_its_timing_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    two_segments(&app).await;
    let id = vip_campaign(&app, "Weekly news").await;
    let mut visitor = marketer(&app).await;
    let page = visitor.get(&format!("/campaigns/{id}")).await;
    assert!(
        page.body
            .contains(&format!("href=\"/campaigns/{id}/schedule\"")),
        "the campaign page links to its timing"
    );
    let timing = format!("/campaigns/{id}/schedule");
    let page = visitor.get(&timing).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(element(&page, "schedule-state").starts_with("No schedule"));
    let csrf = page.csrf();

    // A cron with a bad field: refused beside the field, what was typed kept, nothing saved.
    let bad = [
        ("csrf", csrf.as_str()),
        ("kind", "recurring"),
        ("cron", "0 25 * * MON"),
        ("time_zone", "Europe/Berlin"),
        ("catch_up", "run_once"),
    ];
    let refused = visitor.post(&timing, &bad).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        element(&refused, "schedule-cron-error").contains("hour"),
        "{}",
        element(&refused, "schedule-cron-error")
    );
    assert!(refused.body.contains("value=\"0 25 * * MON\""));
    let (status, _) = app.get(&format!("/api/v1/campaigns/{id}/schedule")).await;
    assert_eq!(status, 404, "nothing was saved");

    // Mondays at 09:00 in Berlin, four runs: the API reads back what the form said, and the
    // page lists the same next fire times as the API.
    let good = [
        ("csrf", csrf.as_str()),
        ("kind", "recurring"),
        ("at", ""),
        ("cron", "0 9 * * MON"),
        ("time_zone", "Europe/Berlin"),
        ("local_time", "on"),
        ("max_runs", "4"),
        ("catch_up", "skip"),
    ];
    let saved = visitor.post(&timing, &good).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let (status, schedule) = app.get(&format!("/api/v1/campaigns/{id}/schedule")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            &schedule["cron"],
            &schedule["time_zone"],
            &schedule["local_time"],
            &schedule["max_runs"],
            &schedule["catch_up"],
            &schedule["state"],
        ),
        (
            &json!("0 9 * * MON"),
            &json!("Europe/Berlin"),
            &json!(true),
            &json!(4),
            &json!("skip"),
            &json!("active"),
        )
    );
    let upcoming = schedule["upcoming"].as_array().unwrap();
    assert!(!upcoming.is_empty());
    let first = chrono::DateTime::parse_from_rfc3339(upcoming[0].as_str().unwrap()).unwrap();
    let shown = first.to_utc().format("%Y-%m-%d %H:%M UTC").to_string();
    assert!(saved.body.contains(&shown), "the page lists {shown}");

    // Paused and resumed from the page.
    let paused = visitor
        .post(&format!("{timing}/pause"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(paused.status, 303);
    let (_, schedule) = app.get(&format!("/api/v1/campaigns/{id}/schedule")).await;
    assert_eq!(schedule["state"], "paused");
    let page = visitor.get(&timing).await;
    assert!(page.body.contains("Resume schedule"));
    visitor
        .post(&format!("{timing}/resume"), &[("csrf", csrf.as_str())])
        .await;
    let (_, schedule) = app.get(&format!("/api/v1/campaigns/{id}/schedule")).await;
    assert_eq!(schedule["state"], "active");

    // Quiet hours: a time that is not a time is refused beside it; then saved overnight.
    let quiet = format!("/campaigns/{id}/quiet-hours");
    let refused = visitor
        .post(
            &quiet,
            &[
                ("csrf", csrf.as_str()),
                ("start", "9pm"),
                ("end", "08:00"),
                ("action", "delay"),
                ("time_zone", "UTC"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(!element(&refused, "quiet-start-error").is_empty());
    assert!(refused.body.contains("value=\"9pm\""));
    let saved = visitor
        .post(
            &quiet,
            &[
                ("csrf", csrf.as_str()),
                ("start", "21:00"),
                ("end", "08:00"),
                ("weekends", "on"),
                ("action", "drop"),
                ("time_zone", "Europe/Paris"),
            ],
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let (_, stored) = app
        .get(&format!("/api/v1/campaigns/{id}/quiet-hours"))
        .await;
    assert_eq!(
        (
            &stored["start"],
            &stored["end"],
            &stored["weekends"],
            &stored["action"],
            &stored["time_zone"]
        ),
        (
            &json!("21:00"),
            &json!("08:00"),
            &json!(true),
            &json!("drop"),
            &json!("Europe/Paris")
        )
    );
    visitor
        .post(&format!("{quiet}/remove"), &[("csrf", csrf.as_str())])
        .await;
    let (status, _) = app
        .get(&format!("/api/v1/campaigns/{id}/quiet-hours"))
        .await;
    assert_eq!(status, 404, "removed");

    // A campaign with a schedule takes no trigger: the page offers none; one without does.
    assert!(
        !visitor
            .get(&timing)
            .await
            .body
            .contains("id=\"trigger-form\"")
    );
    let other = vip_campaign(&app, "Welcome").await;
    let other_timing = format!("/campaigns/{other}/schedule");
    assert!(
        visitor
            .get(&other_timing)
            .await
            .body
            .contains("id=\"trigger-form\"")
    );
    let trigger = format!("/campaigns/{other}/trigger");
    // A static list nobody enters on their own, and a delay that is not one: each refused
    // beside its field.
    let refused = visitor
        .post(
            &trigger,
            &[("csrf", csrf.as_str()), ("segment", "new"), ("delay", "3d")],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(element(&refused, "trigger-segment-error").contains("static list"));
    crate::triggers::dynamic_segment(
        &app,
        "newcomers",
        json!({"attr": "first_name", "op": "starts_with", "value": "NEW"}),
    )
    .await;
    let refused = visitor
        .post(
            &trigger,
            &[
                ("csrf", csrf.as_str()),
                ("segment", "newcomers"),
                ("delay", "three days"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(!element(&refused, "trigger-delay-error").is_empty());
    assert!(refused.body.contains("value=\"three days\""));
    let saved = visitor
        .post(
            &trigger,
            &[
                ("csrf", csrf.as_str()),
                ("segment", "newcomers"),
                ("delay", "3d"),
                ("reentry_after", "30d"),
            ],
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let (_, stored) = app.get(&format!("/api/v1/campaigns/{other}/trigger")).await;
    assert_eq!(
        (
            &stored["segment"],
            &stored["delay"],
            &stored["reentry_after"],
            &stored["include_existing"],
            &stored["state"]
        ),
        (
            &json!("newcomers"),
            &json!("3d"),
            &json!("30d"),
            &json!(false),
            &json!("active")
        )
    );
    visitor
        .post(&format!("{trigger}/stop"), &[("csrf", csrf.as_str())])
        .await;
    let (_, stored) = app.get(&format!("/api/v1/campaigns/{other}/trigger")).await;
    assert_eq!(stored["state"], "stopped");

    // A viewer reads the page but has no form, and posting is refused.
    user(&app, "vic@example.com", Role::Viewer, PASSWORD).await;
    let mut viewer = Visitor::new(&app);
    viewer.login("vic@example.com", PASSWORD).await;
    let page = viewer.get(&timing).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"schedule-form\""));
    assert!(page.body.contains("0 9 * * MON"));
    let viewer_csrf = page.csrf();
    let refused = viewer
        .post(
            &format!("{timing}/cancel"),
            &[("csrf", viewer_csrf.as_str())],
        )
        .await;
    assert_eq!(refused.status, 403);
    let (_, schedule) = app.get(&format!("/api/v1/campaigns/{id}/schedule")).await;
    assert_eq!(schedule["state"], "active");
}

on_both_backends!(a_marketer_times_a_campaign_from_its_timing_page);
