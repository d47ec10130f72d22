//! The dashboard's channels and settings pages over real HTTP, as a browser without
//! JavaScript sees them, on SQLite and PostgreSQL: admins manage webhook endpoints (the
//! secret shown once and verified by the receiver), sender identities, API keys, frequency
//! caps and the suppression list; viewers get 403 and no buttons; invitations and password
//! resets arrive by email at a real SMTP server and their links work once.

use std::time::{Duration, Instant};

use clarion_dispatch::SmtpConfig;
use clarion_model::Role;
use clarion_testkit::{Backend, on_both_backends};
use clarion_testpeers::{Reply, SmtpServer, WebhookReceiver};

use crate::app::TestApp;
use crate::dashboard::{PASSWORD, Page, Visitor, user};
use crate::webhook_endpoints::verified_with;

/// A server whose webhook policy allows the local receiver and whose email goes to `smtp`.
async fn app(backend: Backend, smtp: Option<&SmtpServer>) -> TestApp {
    clarion_dispatch::install_crypto_provider();
    let relay = smtp.map(|smtp| SmtpConfig::plain(smtp.host(), smtp.port));
    TestApp::spawn_with(backend, move |settings| {
        settings.webhook.allow_loopback = true;
        settings.email.smtp = relay;
    })
    .await
}

/// A visitor logged in as a new user of `role`.
async fn signed_in(app: &TestApp, email: &str, role: Role) -> Visitor {
    user(app, email, role, PASSWORD).await;
    let mut visitor = Visitor::new(app);
    let page = visitor.login(email, PASSWORD).await;
    assert_eq!(page.status, 303, "{}", page.body);
    visitor
}

/// Posts a form of `page` (its CSRF token added).
async fn submit(visitor: &mut Visitor, page: &Page, path: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = page.csrf();
    let mut form = fields.to_vec();
    form.push(("csrf", &csrf));
    visitor.post(path, &form).await
}

/// The `value` of the input with `id`.
fn input_value(page: &Page, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {}", page.body));
    let rest = &page.body[at..];
    let start = rest.find("value=\"").unwrap() + "value=\"".len();
    let end = rest[start..].find('"').unwrap();
    rest[start..start + end].to_string()
}

/// The text of the field error of the input with `id`.
fn field_error(page: &Page, id: &str) -> String {
    let marker = format!("id=\"{id}-error\">");
    let at = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no error for #{id} in {}", page.body));
    let rest = &page.body[at + marker.len()..];
    rest[..rest.find('<').unwrap()].to_string()
}

/// The id of the endpoint `name` from its row's forms.
fn endpoint_id(page: &Page, name: &str) -> String {
    let row = page
        .body
        .find(&format!("data-endpoint=\"{name}\""))
        .unwrap();
    let rest = &page.body[row..];
    let start = rest.find("/channels/webhooks/").unwrap() + "/channels/webhooks/".len();
    let end = rest[start..].find('/').unwrap();
    rest[start..start + end].to_string()
}

async fn an_admin_manages_webhook_endpoints_and_the_receiver_verifies_the_secret_shown_once(
    backend: Backend,
) {
    let app = app(backend, None).await;
    let mut admin = signed_in(&app, "root@example.com", Role::Admin).await;
    let receiver = WebhookReceiver::start(vec![]);
    receiver.answer_otherwise(Reply::status(202).body("queued by the crm"));
    let page = admin.get("/channels").await;
    assert_eq!(page.status, 200, "{}", page.body);

    // A bad form keeps what was typed and says what is wrong beside each field.
    let refused = submit(
        &mut admin,
        &page,
        "/channels/webhooks",
        &[
            ("name", "crm"),
            ("url", "ftp://files.example"),
            ("timeout_ms", "5"),
        ],
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(input_value(&refused, "endpoint-name"), "crm");
    assert!(field_error(&refused, "endpoint-timeout").contains("100 to 60000"));
    let refused = submit(
        &mut admin,
        &page,
        "/channels/webhooks",
        &[("name", "crm"), ("url", "ftp://files.example")],
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(!field_error(&refused, "endpoint-url").is_empty());
    assert_eq!(input_value(&refused, "endpoint-url"), "ftp://files.example");

    let url = receiver.url("/crm");
    let created = submit(
        &mut admin,
        &page,
        "/channels/webhooks",
        &[("name", "crm"), ("url", &url), ("headers", "X-Api-Key: k1")],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret = input_value(&created, "new-secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    // Shown once: the page never shows it again.
    let again = admin.get("/channels").await;
    assert!(!again.body.contains(&secret));
    assert!(again.body.contains(&url));

    // "Send test" reaches the receiver, signed with that secret, and shows its answer.
    let id = endpoint_id(&again, "crm");
    let tested = submit(
        &mut admin,
        &again,
        &format!("/channels/webhooks/{id}/test"),
        &[],
    )
    .await;
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert!(
        tested.body.contains("<dd id=\"test-status\">202</dd>"),
        "{}",
        tested.body
    );
    assert!(tested.body.contains("queued by the crm"));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].headers["x-api-key"], "k1");
    assert_eq!(verified_with(&secret, &requests), [true]);

    // Rotation shows a new secret once, and the receiver with it verifies the next test.
    let rotated = submit(
        &mut admin,
        &tested,
        &format!("/channels/webhooks/{id}/rotate"),
        &[],
    )
    .await;
    let new_secret = input_value(&rotated, "new-secret");
    assert_ne!(new_secret, secret);
    submit(
        &mut admin,
        &rotated,
        &format!("/channels/webhooks/{id}/test"),
        &[],
    )
    .await;
    assert_eq!(
        verified_with(&new_secret, &receiver.requests()[1..]),
        [true]
    );

    // Edit with a bad value: the row's form opens again with what was typed.
    let edited = submit(
        &mut admin,
        &rotated,
        &format!("/channels/webhooks/{id}"),
        &[
            ("name", "crm"),
            ("url", &url),
            ("rate_limit_per_second", "lots"),
        ],
    )
    .await;
    assert_eq!(edited.status, 422, "{}", edited.body);
    assert_eq!(input_value(&edited, &format!("edit-{id}-rate")), "lots");
    let edited = submit(
        &mut admin,
        &edited,
        &format!("/channels/webhooks/{id}"),
        &[
            ("name", "crm-eu"),
            ("url", &url),
            ("rate_limit_per_second", "25"),
        ],
    )
    .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let (_, listed) = app.get("/api/v1/webhook-endpoints").await;
    assert_eq!(listed["endpoints"][0]["name"], "crm-eu");
    assert_eq!(listed["endpoints"][0]["rate_limit_per_second"], 25);

    let disabled = submit(
        &mut admin,
        &edited,
        &format!("/channels/webhooks/{id}/disable"),
        &[],
    )
    .await;
    assert!(disabled.body.contains("is disabled"), "{}", disabled.body);
    let (_, listed) = app.get("/api/v1/webhook-endpoints").await;
    assert_eq!(listed["endpoints"][0]["enabled"], false);
    let deleted = submit(
        &mut admin,
        &disabled,
        &format!("/channels/webhooks/{id}/delete"),
        &[],
    )
    .await;
    assert_eq!(deleted.status, 200);
    let (_, listed) = app.get("/api/v1/webhook-endpoints").await;
    assert_eq!(listed["endpoints"], serde_json::json!([]));
}

async fn an_admin_creates_a_sender_identity_and_sees_the_dkim_record_to_publish(backend: Backend) {
    let app = app(backend, None).await;
    let mut admin = signed_in(&app, "root@example.com", Role::Admin).await;
    let page = admin.get("/channels").await;
    let refused = submit(
        &mut admin,
        &page,
        "/channels/senders",
        &[("address", "not an address")],
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(!field_error(&refused, "sender-address").is_empty());
    assert_eq!(input_value(&refused, "sender-address"), "not an address");

    let created = submit(
        &mut admin,
        &page,
        "/channels/senders",
        &[("address", "news@shop.example"), ("algorithm", "ed25519")],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let (_, senders) = app.get("/api/v1/senders").await;
    let record = &senders["senders"][0]["dkim"]["dns_record"];
    assert_eq!(record["name"], "clarion._domainkey.shop.example");
    let value = record["value"].as_str().unwrap();
    assert!(value.starts_with("v=DKIM1; k=ed25519; p="), "{value}");
    // The page shows the record exactly as the API publishes it.
    assert!(created.body.contains(value));
    assert!(created.body.contains("clarion._domainkey.shop.example"));
}

async fn api_keys_are_shown_once_work_and_stop_working_when_revoked(backend: Backend) {
    let app = app(backend, None).await;
    let mut admin = signed_in(&app, "root@example.com", Role::Admin).await;
    let page = admin.get("/settings").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let refused = submit(
        &mut admin,
        &page,
        "/settings/keys",
        &[("name", " "), ("role", "owner")],
    )
    .await;
    assert_eq!(refused.status, 422);
    assert!(!field_error(&refused, "key-name").is_empty());
    assert_eq!(
        field_error(&refused, "key-role"),
        "Choose viewer, marketer or admin."
    );

    let created = submit(
        &mut admin,
        &page,
        "/settings/keys",
        &[("name", "warehouse"), ("role", "viewer")],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = input_value(&created, "new-key");
    let call = |key: String| {
        let request = app.client.get(app.url("/api/v1/senders")).bearer_auth(key);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(call(key.clone()).await, 200);
    let again = admin.get("/settings").await;
    assert!(!again.body.contains(&key), "the key is shown once");
    let row = again.body.find("data-key=\"").unwrap();
    let rest = &again.body[row..];
    let start = rest.find("/settings/keys/").unwrap() + "/settings/keys/".len();
    let id = &rest[start..start + rest[start..].find('/').unwrap()];
    let revoked = submit(
        &mut admin,
        &again,
        &format!("/settings/keys/{id}/revoke"),
        &[],
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(call(key).await, 401);
}

async fn frequency_caps_and_kpi_settings_are_saved_and_bad_values_named(backend: Backend) {
    let app = app(backend, None).await;
    let mut admin = signed_in(&app, "root@example.com", Role::Admin).await;
    let page = admin.get("/settings").await;
    let refused = submit(
        &mut admin,
        &page,
        "/settings/frequency-caps",
        &[("email_max", "3"), ("email_window", "")],
    )
    .await;
    assert_eq!(refused.status, 422);
    assert_eq!(
        field_error(&refused, "caps-email-window"),
        "Give the window too, in hours."
    );
    assert_eq!(input_value(&refused, "caps-email-max"), "3");
    let saved = submit(
        &mut admin,
        &page,
        "/settings/frequency-caps",
        &[("email_max", "3"), ("email_window", "168")],
    )
    .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let (_, caps) = app.get("/api/v1/settings/frequency-caps").await;
    assert_eq!(
        caps,
        serde_json::json!({"caps": [{"channel": "email", "max_messages": 3, "window_hours": 168}]})
    );

    let form = |zone: &'static str| {
        vec![
            ("attribution", "first_touch"),
            ("min_sample", "50"),
            ("confidence_level", "0.9"),
            ("churn", "inactivity"),
            ("activity_event", "purchase"),
            ("start_event", "subscription_started"),
            ("cancel_event", "subscription_cancelled"),
            ("inactivity_days", "30"),
            ("time_zone", zone),
        ]
    };
    let refused = submit(&mut admin, &saved, "/settings/kpi", &form("Mars/Olympus")).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        field_error(&refused, "kpi-zone").contains("IANA"),
        "{}",
        refused.body
    );
    assert_eq!(input_value(&refused, "kpi-zone"), "Mars/Olympus");
    let saved = submit(&mut admin, &refused, "/settings/kpi", &form("Europe/Paris")).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let (_, kpi) = app.get("/api/v1/kpi/settings").await;
    assert_eq!(kpi["attribution"], "first_touch");
    assert_eq!(kpi["inactivity_days"], 30);
    assert_eq!(kpi["time_zone"], "Europe/Paris");
}

async fn the_suppression_list_is_paged_imported_exported_and_read_only_for_viewers(
    backend: Backend,
) {
    let app = app(backend, None).await;
    let mut marketer = signed_in(&app, "ada@example.com", Role::Marketer).await;
    let page = marketer.get("/settings/suppressions").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let refused = submit(
        &mut marketer,
        &page,
        "/settings/suppressions",
        &[("channel", "email"), ("address", "nobody")],
    )
    .await;
    assert_eq!(refused.status, 422);
    assert_eq!(input_value(&refused, "add-address"), "nobody");
    assert!(!field_error(&refused, "add-address").is_empty());
    let added = submit(
        &mut marketer,
        &page,
        "/settings/suppressions",
        &[
            ("channel", "email"),
            ("address", "gone@example.com"),
            ("reason", "asked by phone"),
        ],
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.body);

    let mut csv = String::from("address,reason\n");
    for i in 0..60 {
        csv.push_str(&format!("user{i:02}@example.com,import\n"));
    }
    csv.push_str("not-an-address,broken\n");
    let imported = submit(
        &mut marketer,
        &added,
        "/settings/suppressions/import",
        &[("channel", "email"), ("csv", &csv)],
    )
    .await;
    assert_eq!(imported.status, 200, "{}", imported.body);
    assert!(
        imported
            .body
            .contains("61 rows read: 60 added, 0 already on the list, 1 refused."),
        "{}",
        imported.body
    );
    assert!(imported.body.contains("Line 62:"), "{}", imported.body);

    // 61 entries: a page of 50, then the rest.
    let first = marketer.get("/settings/suppressions").await;
    assert_eq!(first.body.matches("data-address=").count(), 50);
    let next = first.body.find("rel=\"next\"").map(|_| ()).and_then(|_| {
        let at = first.body.find("&amp;after=")? + "&amp;after=".len();
        Some(first.body[at..at + first.body[at..].find('"')?].to_string())
    });
    let second = marketer
        .get(&format!("/settings/suppressions?after={}", next.unwrap()))
        .await;
    assert_eq!(second.body.matches("data-address=").count(), 11);

    let export = marketer.get("/settings/suppressions/export").await;
    assert_eq!(export.status, 200);
    assert_eq!(export.body.lines().count(), 62, "a header and 61 rows");
    assert!(export.body.contains("gone@example.com,asked by phone"));

    let removed = submit(
        &mut marketer,
        &first,
        "/settings/suppressions/remove",
        &[("channel", "email"), ("address", "gone@example.com")],
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let (status, _) = app.get("/api/v1/suppressions/email/gone@example.com").await;
    assert_eq!(status, 404);

    // A viewer reads the list without the buttons and may not change it.
    let mut viewer = signed_in(&app, "vic@example.com", Role::Viewer).await;
    let page = viewer.get("/settings/suppressions").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("user00@example.com"));
    assert!(!page.body.contains("/settings/suppressions/remove"));
    assert!(!page.body.contains("/settings/suppressions/import"));
    let refused = submit(
        &mut viewer,
        &page,
        "/settings/suppressions",
        &[("address", "x@example.com")],
    )
    .await;
    assert_eq!(refused.status, 403);
}

async fn viewers_and_marketers_get_403_on_channels_and_settings_and_see_no_links(backend: Backend) {
    let app = app(backend, None).await;
    for (email, role) in [
        ("vic@example.com", Role::Viewer),
        ("ada@example.com", Role::Marketer),
    ] {
        let mut visitor = signed_in(&app, email, role).await;
        let overview = visitor.get("/").await;
        assert_eq!(overview.status, 200);
        assert!(!overview.body.contains("href=\"/channels\""));
        assert!(!overview.body.contains("href=\"/settings\""));
        for path in ["/channels", "/settings"] {
            let page = visitor.get(path).await;
            assert_eq!(page.status, 403, "{role} {path}");
            assert!(!page.body.contains("Create endpoint") && !page.body.contains("Create key"));
        }
        let refused = submit(
            &mut visitor,
            &overview,
            "/settings/keys",
            &[("name", "x"), ("role", "admin")],
        )
        .await;
        assert_eq!(refused.status, 403);
        let refused = submit(
            &mut visitor,
            &overview,
            "/channels/webhooks",
            &[("name", "x"), ("url", "http://127.0.0.1:1/")],
        )
        .await;
        assert_eq!(refused.status, 403);
    }
    let (_, listed) = app.get("/api/v1/webhook-endpoints").await;
    assert_eq!(listed["endpoints"], serde_json::json!([]));
}

/// Waits for an email to `to` at the SMTP server; the link in it.
async fn link_mailed_to(smtp: &SmtpServer, to: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(message) = smtp
            .received()
            .into_iter()
            .find(|m| m.rcpt_tos.iter().any(|r| r == to))
        {
            let parsed = mail_parser::MessageParser::default()
                .parse(&message.raw)
                .unwrap();
            let text = parsed.body_text(0).unwrap().to_string();
            let start = text.find("http").unwrap();
            let end = start + text[start..].find(char::is_whitespace).unwrap();
            return text[start..end].to_string();
        }
        assert!(Instant::now() < deadline, "no email to {to}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets a password through a link (as its page's form does); the answer.
async fn use_link(app: &TestApp, link: &str, password: &str) -> Page {
    let path = &link[link.find("/password/").unwrap()..];
    let mut visitor = Visitor::new(app);
    let form = visitor.get(path).await;
    if form.status != 200 {
        return form;
    }
    submit(
        &mut visitor,
        &form,
        path,
        &[("password", password), ("confirm", password)],
    )
    .await
}

async fn an_invitation_arrives_by_email_and_its_link_works_once(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = app(backend, Some(&smtp)).await;
    let mut admin = signed_in(&app, "root@example.com", Role::Admin).await;
    let page = admin.get("/users").await;
    let invited = submit(
        &mut admin,
        &page,
        "/users",
        &[
            ("email", "new@example.com"),
            ("name", "New"),
            ("role", "marketer"),
        ],
    )
    .await;
    assert_eq!(invited.status, 200, "{}", invited.body);
    assert!(
        invited.body.contains("The link was emailed to them."),
        "{}",
        invited.body
    );
    let link = link_mailed_to(&smtp, "new@example.com").await;
    assert!(link.starts_with(&app.settings.server.public_url), "{link}");
    assert_eq!(
        use_link(&app, &link, "a brand new passphrase").await.status,
        303
    );
    assert_eq!(
        use_link(&app, &link, "another passphrase 2").await.status,
        410
    );
    let mut person = Visitor::new(&app);
    assert_eq!(
        person
            .login("new@example.com", "a brand new passphrase")
            .await
            .status,
        303
    );
}

async fn a_forgotten_password_is_reset_by_email_without_telling_who_has_an_account(
    backend: Backend,
) {
    let smtp = SmtpServer::start().await;
    let app = app(backend, Some(&smtp)).await;
    user(&app, "ada@example.com", Role::Marketer, PASSWORD).await;
    let mut visitor = Visitor::new(&app);
    let login = visitor.get("/login").await;
    assert!(login.body.contains("href=\"/forgot-password\""));
    let form = visitor.get("/forgot-password").await;
    assert_eq!(form.status, 200);
    let refused = submit(
        &mut visitor,
        &form,
        "/forgot-password",
        &[("email", "ada at example")],
    )
    .await;
    assert_eq!(refused.status, 422);
    assert_eq!(input_value(&refused, "email"), "ada at example");

    let known = submit(
        &mut visitor,
        &form,
        "/forgot-password",
        &[("email", "ada@example.com")],
    )
    .await;
    let unknown = submit(
        &mut visitor,
        &form,
        "/forgot-password",
        &[("email", "eve@example.com")],
    )
    .await;
    assert_eq!((known.status, unknown.status), (200, 200));
    assert_eq!(
        known.body.replace("ada@example.com", "X"),
        unknown.body.replace("eve@example.com", "X"),
        "the answer is the same whether or not the account exists"
    );
    let link = link_mailed_to(&smtp, "ada@example.com").await;
    assert_eq!(use_link(&app, &link, "my new passphrase").await.status, 303);
    assert_eq!(
        use_link(&app, &link, "my other passphrase").await.status,
        410
    );
    assert_eq!(visitor.login("ada@example.com", PASSWORD).await.status, 401);
    let mut again = Visitor::new(&app);
    assert_eq!(
        again
            .login("ada@example.com", "my new passphrase")
            .await
            .status,
        303
    );
    assert!(
        smtp.received()
            .iter()
            .all(|m| m.rcpt_tos != ["eve@example.com"]),
        "nothing is sent to an unknown address"
    );

    // Beyond the hourly allowance of one account, requests are refused.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let page = submit(
            &mut visitor,
            &form,
            "/forgot-password",
            &[("email", "ada@example.com")],
        )
        .await;
        statuses.push(page.status);
    }
    assert_eq!(statuses, [200, 200, 429]);
}

on_both_backends!(
    an_admin_manages_webhook_endpoints_and_the_receiver_verifies_the_secret_shown_once,
    an_admin_creates_a_sender_identity_and_sees_the_dkim_record_to_publish,
    api_keys_are_shown_once_work_and_stop_working_when_revoked,
    frequency_caps_and_kpi_settings_are_saved_and_bad_values_named,
    the_suppression_list_is_paged_imported_exported_and_read_only_for_viewers,
    viewers_and_marketers_get_403_on_channels_and_settings_and_see_no_links,
    an_invitation_arrives_by_email_and_its_link_works_once,
    a_forgotten_password_is_reset_by_email_without_telling_who_has_an_account,
);
