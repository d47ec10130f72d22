//! The dashboard over real HTTP, as a browser without JavaScript sees it: logins, lockout,
//! CSRF, roles, sessions, one-time links and the overview's figures, on SQLite and
//! PostgreSQL. (tests/api/browser.rs drives the same pages in a real Chromium.)

use std::collections::BTreeMap;
use std::time::Duration;

use clarion_model::{DEFAULT_WORKSPACE, Role};
use clarion_server::accounts::{LinkPurpose, links, users};
use clarion_testkit::{Backend, on_both_backends};
use serde_json::json;

use crate::app::TestApp;

pub const PASSWORD: &str = "correct horse battery";

/// Creates a user with `password` through an invitation link, as a person would.
pub async fn user(app: &TestApp, email: &str, role: Role, password: &str) -> i64 {
    let user = users::create(&app.db, DEFAULT_WORKSPACE, email, "", role)
        .await
        .unwrap();
    let (token, _) = links::issue(
        &app.db,
        &app.state.accounts.links,
        user.id,
        LinkPurpose::Invite,
        Duration::from_secs(3600),
        None,
    )
    .await
    .unwrap();
    links::redeem(
        &app.db,
        &app.state.accounts.links,
        &token,
        password,
        password,
    )
    .await
    .unwrap();
    user.id
}

/// A browser without JavaScript: keeps cookies, follows no redirects, sends the
/// `Sec-Fetch-Site` and `Origin` headers a browser sends for a form of the same site.
pub struct Visitor {
    client: reqwest::Client,
    base: String,
    pub cookies: BTreeMap<String, String>,
    /// The last `Set-Cookie` headers seen, as sent.
    pub set_cookies: Vec<String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The value of the first hidden `csrf` input.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a csrf field") + marker.len();
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_string()
    }
}

impl Visitor {
    pub fn new(app: &TestApp) -> Visitor {
        Visitor {
            client: crate::app::http_client()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
            cookies: BTreeMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, response: reqwest::Response) -> Page {
        self.set_cookies.clear();
        for header in response.headers().get_all("set-cookie") {
            let text = header.to_str().unwrap().to_string();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
            self.set_cookies.push(text);
        }
        Page {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            // minijinja's HTML escaping writes `/` as `&#x2f;`; browsers read it back as `/`.
            body: response.text().await.unwrap().replace("&#x2f;", "/"),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(response).await
    }

    /// Posts a form as a page of this site would.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_from(path, form, Some(&self.base.clone()), Some("same-origin"))
            .await
    }

    pub async fn post_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
        fetch_site: Option<&str>,
    ) -> Page {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = fetch_site {
            request = request.header("sec-fetch-site", site);
        }
        let response = request.send().await.unwrap();
        self.finish(response).await
    }

    /// Logs in through the form; returns the answer to the POST.
    pub async fn login(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = form.csrf();
        self.post(
            "/login",
            &[
                ("email", email),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/"),
            ],
        )
        .await
    }
}

async fn a_person_logs_in_with_email_and_password_and_sees_the_overview(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "ada@example.com", Role::Marketer, PASSWORD).await;
    let mut visitor = Visitor::new(&app);

    // Without a session every page sends the person to the login page, and back afterwards.
    let page = visitor.get("/").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/login"))
    );
    let page = visitor.get("/account/sessions").await;
    assert_eq!(
        page.location.as_deref(),
        Some("/login?next=/account/sessions")
    );

    let wrong = visitor.login("ada@example.com", "not the password").await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong
            .body
            .contains("The email address or password is wrong.")
    );
    assert!(
        wrong.body.contains("value=\"ada@example.com\""),
        "what was typed is kept"
    );
    assert!(!visitor.cookies.contains_key("clarion_session"));

    // Addresses are matched whatever their case.
    let ok = visitor.login("Ada@Example.com", PASSWORD).await;
    assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/")));
    let cookie = visitor
        .set_cookies
        .iter()
        .find(|c| c.starts_with("clarion_session="))
        .unwrap()
        .clone();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "served over http: {cookie}");

    // The session token is stored only as a hash.
    let token = visitor.cookies["clarion_session"].clone();
    let stored: Vec<String> = sea_orm::ConnectionTrait::query_all_raw(
        &app.db,
        sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT token_hash FROM user_sessions",
        ),
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "token_hash").unwrap())
    .collect();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&token));
    assert_eq!(stored[0].len(), 64);

    let overview = visitor.get("/").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("ada@example.com"));
    assert!(overview.body.contains(">marketer<"));
    assert!(
        !overview.body.contains("href=\"/users\""),
        "a marketer is not shown the users page"
    );
    let login_again = visitor.get("/login?next=/account/sessions").await;
    assert_eq!(login_again.location.as_deref(), Some("/account/sessions"));

    // Logging out ends the session on the server, not just in the browser.
    let csrf = overview.csrf();
    let out = visitor.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.location.as_deref()), (303, Some("/login")));
    let mut replay = Visitor::new(&app);
    replay.cookies.insert("clarion_session".into(), token);
    assert_eq!(replay.get("/").await.status, 303);
}

async fn cookies_are_secure_when_served_over_https(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.server.public_url = "https://clarion.example".into();
    })
    .await;
    user(&app, "ada@example.com", Role::Viewer, PASSWORD).await;
    let mut visitor = Visitor::new(&app);
    let form = visitor.get("/login").await;
    let csrf = form.csrf();
    // The form comes from the public origin, as behind a TLS proxy.
    let ok = visitor
        .post_from(
            "/login",
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
            Some("https://clarion.example"),
            Some("same-origin"),
        )
        .await;
    assert_eq!(ok.status, 303);
    let cookie = visitor
        .set_cookies
        .iter()
        .find(|c| c.starts_with("clarion_session="))
        .unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
}

async fn repeated_failures_lock_the_account_and_the_address(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.dashboard.lockout_account_failures = 3;
        settings.dashboard.lockout_address_failures = 5;
    })
    .await;
    user(&app, "ada@example.com", Role::Viewer, PASSWORD).await;
    user(&app, "bob@example.com", Role::Viewer, PASSWORD).await;
    let mut visitor = Visitor::new(&app);
    for _ in 0..3 {
        assert_eq!(visitor.login("ada@example.com", "guess").await.status, 401);
    }
    // Locked: even the right password is refused, and the page says for how long.
    let locked = visitor.login("ada@example.com", PASSWORD).await;
    assert_eq!(locked.status, 429);
    assert!(
        locked.body.contains("Too many failed logins"),
        "{}",
        locked.body
    );
    assert!(locked.body.contains("for 15 minutes."), "{}", locked.body);
    assert!(!visitor.cookies.contains_key("clarion_session"));

    // Another account from the same address still works until the address's own limit.
    let bob = Visitor::new(&app).login("bob@example.com", PASSWORD).await;
    assert_eq!(bob.status, 303);
    for _ in 0..2 {
        assert_eq!(
            visitor.login("carol@example.com", "guess").await.status,
            401
        );
    }
    // Five failures from this address: every account is refused from here.
    let address_locked = visitor.login("bob@example.com", PASSWORD).await;
    assert_eq!(address_locked.status, 429, "{}", address_locked.body);
}

async fn forms_without_the_right_token_or_from_another_site_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "ada@example.com", Role::Admin, PASSWORD).await;
    let mut visitor = Visitor::new(&app);
    assert_eq!(visitor.login("ada@example.com", PASSWORD).await.status, 303);
    let page = visitor.get("/users").await;
    let csrf = page.csrf();
    let invite = |token: &str| {
        vec![
            ("email", "eve@example.com".to_string()),
            ("role", "admin".to_string()),
            ("csrf", token.to_string()),
        ]
    };
    let as_pairs = |fields: &Vec<(&'static str, String)>| {
        fields
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect::<Vec<(&str, String)>>()
    };

    for (token, origin, site) in [
        ("", Some(app.address.clone()), Some("same-origin")),
        (
            "forged-token",
            Some(app.address.clone()),
            Some("same-origin"),
        ),
        (
            csrf.as_str(),
            Some("https://evil.example".to_string()),
            Some("cross-site"),
        ),
        (
            csrf.as_str(),
            Some("https://evil.example".to_string()),
            None,
        ),
        (csrf.as_str(), None, Some("cross-site")),
    ] {
        let fields = as_pairs(&invite(token));
        let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = visitor
            .post_from("/users", &form, origin.as_deref(), site)
            .await;
        assert_eq!(
            refused.status, 403,
            "token {token:?} origin {origin:?} site {site:?}"
        );
        assert!(refused.body.contains("Form refused"));
    }
    assert!(
        users::find_by_email(&app.db, "eve@example.com")
            .await
            .unwrap()
            .is_none(),
        "nothing was created"
    );
    // A login form without its token is refused too (login CSRF).
    let mut stranger = Visitor::new(&app);
    let refused = stranger
        .post(
            "/login",
            &[("email", "ada@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(refused.status, 403);

    // The right token from this site goes through, and the link is shown once.
    let fields = as_pairs(&invite(&csrf));
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ok = visitor.post("/users", &form).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("/password/"));
    assert!(!visitor.get("/users").await.body.contains("/password/"));
}

async fn a_viewer_is_not_shown_admin_actions_and_gets_403_there(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "vera@example.com", Role::Viewer, PASSWORD).await;
    let mut visitor = Visitor::new(&app);
    assert_eq!(
        visitor.login("vera@example.com", PASSWORD).await.status,
        303
    );
    let overview = visitor.get("/").await;
    assert_eq!(overview.status, 200);
    assert!(!overview.body.contains("href=\"/users\""));
    let page = visitor.get("/users").await;
    assert_eq!(page.status, 403);
    assert!(
        page.body.contains("for users with the admin role"),
        "{}",
        page.body
    );
    // The refusal keeps the menu and the account of the person logged in (a viewer's menu,
    // without Users), and no "Log in" link.
    assert!(page.body.contains("aria-label=\"Main\""), "{}", page.body);
    assert!(page.body.contains("vera@example.com"), "{}", page.body);
    assert!(!page.body.contains("href=\"/users\""), "{}", page.body);
    assert!(!page.body.contains("href=\"/login\""), "{}", page.body);
    // Logged out, the same page is the login redirect; a missing campaign's page keeps the
    // menu too.
    assert_eq!(Visitor::new(&app).get("/users").await.status, 303);
    let missing = visitor.get("/campaigns/999999").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("aria-label=\"Main\""),
        "{}",
        missing.body
    );
    let csrf = visitor.get("/account/sessions").await.csrf();
    let posted = visitor
        .post(
            "/users",
            &[
                ("email", "x@example.com"),
                ("role", "admin"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(posted.status, 403);
    assert!(
        users::find_by_email(&app.db, "x@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_user_sees_and_revokes_their_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "ada@example.com", Role::Viewer, PASSWORD).await;
    let mut laptop = Visitor::new(&app);
    let mut phone = Visitor::new(&app);
    assert_eq!(laptop.login("ada@example.com", PASSWORD).await.status, 303);
    assert_eq!(phone.login("ada@example.com", PASSWORD).await.status, 303);
    let page = laptop.get("/account/sessions").await;
    assert_eq!(page.body.matches("data-session=").count(), 2);
    assert_eq!(page.body.matches(THIS_BROWSER).count(), 1);
    // The phone's session is the one not marked as this browser.
    let phone_session = users_sessions(&app).await;
    let laptop_id = session_of_page(&page.body);
    let other = *phone_session.iter().find(|id| **id != laptop_id).unwrap();
    let revoked = laptop
        .post(
            &format!("/account/sessions/{other}/revoke"),
            &[("csrf", &page.csrf())],
        )
        .await;
    // Post/Redirect/Get: the list comes back by GET, with what happened.
    assert_eq!(revoked.status, 303);
    assert_eq!(
        revoked.location.as_deref(),
        Some("/account/sessions?revoked=one")
    );
    let list = laptop.get("/account/sessions?revoked=one").await;
    assert!(list.body.contains("The session was logged out."));
    assert_eq!(list.body.matches("data-session=").count(), 1);
    assert_eq!(phone.get("/").await.status, 303, "the phone is logged out");
    assert_eq!(laptop.get("/").await.status, 200, "the laptop is not");
    // Revoking a session that is not one's own (or no longer live) says so.
    let again = laptop
        .post(
            &format!("/account/sessions/{other}/revoke"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(again.status, 404);
    let junk = laptop
        .post("/account/sessions/abc/revoke", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(junk.status, 404);
}

async fn users_sessions(app: &TestApp) -> Vec<i64> {
    sea_orm::ConnectionTrait::query_all_raw(
        &app.db,
        sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT id FROM user_sessions WHERE revoked_at IS NULL",
        ),
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<i64>("", "id").unwrap())
    .collect()
}

const THIS_BROWSER: &str = "<span class=\"badge\">this browser</span>";

/// The id of the session marked "this browser" on the sessions page.
fn session_of_page(body: &str) -> i64 {
    let at = body.find(THIS_BROWSER).unwrap();
    let start = body[..at].rfind("data-session=\"").unwrap() + "data-session=\"".len();
    let end = body[start..].find('"').unwrap();
    body[start..start + end].parse().unwrap()
}

async fn a_reset_link_works_once_and_not_after_it_expires(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = user(&app, "ada@example.com", Role::Admin, PASSWORD).await;
    let mut admin = Visitor::new(&app);
    assert_eq!(admin.login("ada@example.com", PASSWORD).await.status, 303);

    // An admin makes a reset link for themself from the users page.
    let page = admin.get("/users").await;
    let made = admin
        .post(
            &format!("/users/{id}/reset-link"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(made.status, 200);
    let start = made.body.find("/password/").unwrap();
    let end = start + made.body[start..].find('"').unwrap();
    let path = made.body[start..end].to_string();

    let mut person = Visitor::new(&app);
    let form = person.get(&path).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("Choose a new password"));
    // A short password and a mismatch are shown beside their fields; the link stays usable.
    let short = person
        .post(
            &path,
            &[
                ("password", "short"),
                ("confirm", "short"),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(short.status, 422);
    assert!(short.body.contains("must be at least 10 characters long"));
    assert!(short.body.contains("id=\"password-error\""));
    let mismatch = person
        .post(
            &path,
            &[
                ("password", "a new password 1"),
                ("confirm", "a new password 2"),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(mismatch.status, 422);
    assert!(mismatch.body.contains("id=\"confirm-error\""));
    let set = person
        .post(
            &path,
            &[
                ("password", "a new password 1"),
                ("confirm", "a new password 1"),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!((set.status, set.location.as_deref()), (303, Some("/")));
    assert_eq!(person.get("/").await.status, 200, "logged in by the link");
    // The reset ended the admin's other session; the old password no longer works.
    assert_eq!(admin.get("/").await.status, 303);
    assert_eq!(
        Visitor::new(&app)
            .login("ada@example.com", PASSWORD)
            .await
            .status,
        401
    );
    assert_eq!(
        Visitor::new(&app)
            .login("ada@example.com", "a new password 1")
            .await
            .status,
        303
    );

    // Used once: the link is refused, on GET and on POST.
    let used = person.get(&path).await;
    assert_eq!(used.status, 410);
    assert!(used.body.contains("may have expired or been used already"));
    let reused = person
        .post(
            &path,
            &[
                ("password", "another password"),
                ("confirm", "another password"),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(reused.status, 410);

    // An expired link, and a forged one, are refused the same way.
    let (token, _) = links::issue(
        &app.db,
        &app.state.accounts.links,
        id,
        LinkPurpose::Reset,
        Duration::from_millis(1),
        None,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(person.get(&format!("/password/{token}")).await.status, 410);
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(person.get(&format!("/password/{forged}")).await.status, 410);
    assert_eq!(person.get("/password/nonsense").await.status, 410);
}

async fn admins_invite_change_roles_and_deactivate_users(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin_id = user(&app, "ada@example.com", Role::Admin, PASSWORD).await;
    let mut admin = Visitor::new(&app);
    assert_eq!(admin.login("ada@example.com", PASSWORD).await.status, 303);
    let csrf = admin.get("/users").await.csrf();

    // Bad fields are shown beside each field, with what was typed kept.
    let bad = admin
        .post(
            "/users",
            &[
                ("email", "not-an-address"),
                ("name", "Bob"),
                ("role", "overlord"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(
        bad.body.contains("id=\"invite-email-error\""),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("id=\"invite-role-error\""));
    assert!(bad.body.contains("value=\"not-an-address\""));
    assert!(bad.body.contains("value=\"Bob\""));
    let duplicate = admin
        .post(
            "/users",
            &[
                ("email", "ADA@example.com"),
                ("role", "viewer"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(duplicate.status, 422);
    assert!(duplicate.body.contains("already exists"));

    let invited = admin
        .post(
            "/users",
            &[
                ("email", "bob@example.com"),
                ("role", "marketer"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(invited.status, 200);
    let start = invited.body.find("/password/").unwrap();
    let end = start + invited.body[start..].find('"').unwrap();
    let path = invited.body[start..end].to_string();
    let mut bob = Visitor::new(&app);
    let form = bob.get(&path).await;
    assert!(form.body.contains("Set your password"));
    let set = bob
        .post(
            &path,
            &[
                ("password", "bobs password!"),
                ("confirm", "bobs password!"),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(set.status, 303);
    assert!(bob.get("/").await.body.contains(">marketer<"));

    let bob_id = users::find_by_email(&app.db, "bob@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    let changed = admin
        .post(
            &format!("/users/{bob_id}/role"),
            &[("role", "viewer"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(changed.status, 200);
    assert!(changed.body.contains("bob@example.com is now viewer."));
    assert!(
        bob.get("/").await.body.contains(">viewer<"),
        "the role applies at once"
    );

    // The last admin can neither step down nor be deactivated.
    let step_down = admin
        .post(
            &format!("/users/{admin_id}/role"),
            &[("role", "viewer"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(step_down.status, 409);
    assert!(step_down.body.contains("at least one active admin"));
    let off = admin
        .post(&format!("/users/{admin_id}/deactivate"), &[("csrf", &csrf)])
        .await;
    assert_eq!(off.status, 409);

    let deactivated = admin
        .post(&format!("/users/{bob_id}/deactivate"), &[("csrf", &csrf)])
        .await;
    assert_eq!(deactivated.status, 200);
    assert_eq!(
        bob.get("/").await.status,
        303,
        "a deactivated user is logged out"
    );
    assert_eq!(
        Visitor::new(&app)
            .login("bob@example.com", "bobs password!")
            .await
            .status,
        401
    );
    let back = admin
        .post(&format!("/users/{bob_id}/reactivate"), &[("csrf", &csrf)])
        .await;
    assert_eq!(back.status, 200);
    assert_eq!(
        Visitor::new(&app)
            .login("bob@example.com", "bobs password!")
            .await
            .status,
        303
    );
    // Unknown users answer a page, not a 500.
    let missing = admin
        .post("/users/999999/role", &[("role", "viewer"), ("csrf", &csrf)])
        .await;
    assert_eq!(missing.status, 404);
}

async fn the_overview_shows_the_workspaces_figures(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "vera@example.com", Role::Viewer, PASSWORD).await;
    let contacts: Vec<_> = (0..1234)
        .map(|i| {
            json!({"external_id": format!("c{i}"), "email": format!("c{i}@example.com"),
                   "attributes": {"plan": if i % 3 == 0 { "pro" } else { "free" }}})
        })
        .collect();
    for chunk in contacts.chunks(500) {
        let (status, body) = app
            .post("/api/v1/contacts/batch", &json!({ "contacts": chunk }))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "Pro plan", "category": "firmographic",
                    "rule": {"attr": "plan", "op": "=", "value": "pro"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let slug = body["slug"].as_str().unwrap().to_string();
    let (status, body) = app
        .post(
            "/api/v1/campaigns",
            &json!({"name": "Spring sale", "goal": {"event": "purchase", "window_hours": 168},
                    "holdout_percent": 0, "channels": ["email"],
                    "targets": [{"segment": slug, "variants": [{"name": "A", "weight": 1, "email": {
                        "from": "Shop <news@shop.example>", "subject": "Hi", "html": "<p>Hello</p>"}}]}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Purchases now: ten buyers, one of them twice; the trend counts them this month.
    let mut purchases: Vec<_> = (0..10)
        .map(|i| json!({"external_id": format!("c{i}"), "kind": "purchase", "amount": f64::from(i) + 0.25}))
        .collect();
    purchases.push(json!({"external_id": "c0", "kind": "purchase", "amount": 1.0}));
    let (status, body) = app
        .post("/api/v1/events/batch", &json!({ "events": purchases }))
        .await;
    assert_eq!(status, 200, "{body}");
    let revenue: f64 = (0..10).map(|i| f64::from(i) + 0.25).sum::<f64>() + 1.0;

    // Independently counted: a third of the contacts are on the pro plan.
    let pro = (0..1234).filter(|i| i % 3 == 0).count();
    let mut visitor = Visitor::new(&app);
    assert_eq!(
        visitor.login("vera@example.com", PASSWORD).await.status,
        303
    );
    let page = visitor.get("/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("id=\"figure-contacts\">1,234<"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Pro plan"));
    assert!(
        page.body.contains(&format!(">{pro}<")),
        "segment size {pro}"
    );
    assert!(page.body.contains("Spring sale"));
    assert!(page.body.contains("state-draft"));
    // This month's customers: every buyer became active now, so all of them converted.
    for (id, shown) in [
        ("figure-active", "10".to_owned()),
        ("figure-buyers", "10".to_owned()),
        ("figure-conversion", "100.0%".to_owned()),
        ("figure-revenue", format!("{revenue:.2}")),
    ] {
        assert!(
            page.body.contains(&format!("id=\"{id}\">{shown}<")),
            "{id} should show {shown}: {}",
            page.body
        );
    }
    // The charts carry the API's trend, month for month.
    let (status, trend) = app.get("/api/v1/kpi/trend?months=12").await;
    assert_eq!(status, 200, "{trend}");
    let months = trend["months"].as_array().unwrap();
    assert_eq!(months.len(), 12);
    assert_eq!(months[11]["orders"], 11, "{trend}");
    for month in months {
        let label = month["month"].as_str().unwrap();
        assert!(
            page.body
                .contains(&format!("<th scope=\"row\">{label}</th>")),
            "{label}"
        );
    }
    assert!(page.body.contains("Delivery queues"));
    let fragment = visitor.get("/overview/queues").await;
    assert_eq!(fragment.status, 200);
    assert!(fragment.body.contains("<th scope=\"row\">email</th>"));
    // Assets are served from the binary with their licenses.
    for asset in [
        "/assets/vendor/htmx/htmx.min.js",
        "/assets/vendor/htmx/LICENSE",
        "/assets/vendor/uplot/uPlot.iife.min.js",
        "/assets/vendor/uplot/LICENSE",
        "/assets/app.css",
    ] {
        assert_eq!(visitor.get(asset).await.status, 200, "{asset}");
    }
    assert_eq!(visitor.get("/assets/../Cargo.toml").await.status, 404);
}

/// `clarion serve` computes the overview's slow figures at start; the first view shows them
/// (as counted then) instead of computing its own.
async fn the_overview_figures_computed_at_start_are_shown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user(&app, "vera@example.com", Role::Viewer, PASSWORD).await;
    let contacts: Vec<_> = (0..7)
        .map(|i| json!({"external_id": format!("w{i}")}))
        .collect();
    let (status, body) = app
        .post("/api/v1/contacts/batch", &json!({ "contacts": contacts }))
        .await;
    assert_eq!(status, 200, "{body}");
    app.state.overview.warm(&app.db).await;
    // Contacts added after the start are not counted until the figures are recomputed.
    let (status, body) = app
        .post(
            "/api/v1/contacts/batch",
            &json!({ "contacts": [{"external_id": "late"}] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut visitor = Visitor::new(&app);
    assert_eq!(
        visitor.login("vera@example.com", PASSWORD).await.status,
        303
    );
    let page = visitor.get("/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("id=\"figure-contacts\">7<"),
        "{}",
        page.body
    );
}

on_both_backends!(
    the_overview_figures_computed_at_start_are_shown,
    a_person_logs_in_with_email_and_password_and_sees_the_overview,
    cookies_are_secure_when_served_over_https,
    repeated_failures_lock_the_account_and_the_address,
    forms_without_the_right_token_or_from_another_site_are_refused,
    a_viewer_is_not_shown_admin_actions_and_gets_403_there,
    a_user_sees_and_revokes_their_sessions,
    a_reset_link_works_once_and_not_after_it_expires,
    admins_invite_change_roles_and_deactivate_users,
    the_overview_shows_the_workspaces_figures,
);
