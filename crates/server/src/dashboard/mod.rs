//! The dashboard: server-rendered pages for people, beside the API. People log in with email
//! and password ([`crate::accounts`]); every page needs a live session and the role it is for,
//! and every state-changing form carries the session's CSRF token and must come from this
//! site (Origin / Sec-Fetch-Site). Pages are minijinja templates built into the binary
//! ([`templates`]); front-end assets (htmx, uPlot) are vendored and served from `/assets`.
//!
//! Pages: `/` (overview), `/login`, `/logout`, `/forgot-password`, `/password/{token}`
//! (invitation and reset links), `/account/sessions`, `/users`, `/channels` and `/settings`
//! (admins), `/settings/suppressions`, `/contacts` (search and profiles), `/segments`
//! (list, builder, health, members, cross-tabs, suggestions) and `/campaigns` (list,
//! create, edit, preview, launch and the other actions, progress, report).

mod account;
mod assets;
mod campaign_form;
mod campaigns;
mod channels;
mod contacts;
mod forms;
mod guard;
mod login;
mod mail;
mod overview;
mod report;
mod schedule;
mod segments;
mod settings;
mod suppressions;
pub mod templates;
mod users;

use actix_web::{
    HttpResponse, ResponseError,
    cookie::{Cookie, SameSite, time::Duration as CookieDuration},
    http::{StatusCode, header},
    web,
};
use minijinja::context;
use serde::Serialize;

pub use guard::SignedIn;

use crate::{
    accounts::{AccountError, Session},
    error::ApiError,
    recent::Recent,
};

/// Figures of large segments and finished runs, kept between views ([`Recent`]); those
/// computed in less than [`PageFigures::KEEP_FROM`] are computed at every view.
#[derive(Clone)]
pub struct PageFigures {
    /// A segment's health, by segment and definition (an edited rule is computed anew).
    pub(crate) segments: Recent<
        (clarion_model::SegmentId, clarion_model::Timestamp),
        crate::routes::segments::SegmentFigures,
    >,
    /// The revenues and sizes over time of a page of the segment list, by its segments.
    pub(crate) segment_lists: Recent<Vec<clarion_model::SegmentId>, segments::ListFigures>,
    /// A completed or cancelled run's progress, by run and its last change (a retry reopens
    /// it).
    pub(crate) finished_runs:
        Recent<(i64, clarion_model::Timestamp), clarion_campaign::deliveries::Progress>,
}

impl PageFigures {
    /// A small share of the pages' 50 ms budget.
    pub const KEEP_FROM: std::time::Duration = std::time::Duration::from_millis(20);

    /// Computes the figures of the segment list's first page and of large segments, at
    /// start in the background, so that their first views do not wait for them.
    pub async fn warm(state: &crate::state::AppState) {
        segments::warm(state).await;
    }
}

impl Default for PageFigures {
    fn default() -> Self {
        PageFigures {
            segments: Recent::new("a segment's figures", 256).keeping_from(Self::KEEP_FROM),
            segment_lists: Recent::new("the segment list's figures", 64)
                .keeping_from(Self::KEEP_FROM),
            finished_runs: Recent::new("a finished run's progress", 256)
                .keeping_from(Self::KEEP_FROM),
        }
    }
}

/// The cookie holding the session token.
pub const SESSION_COOKIE: &str = "clarion_session";
/// The cookie holding the CSRF token of the forms shown before login (login, password links).
pub const FORM_COOKIE: &str = "clarion_form";

/// Registers the dashboard's pages and assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(form_config(64 * 1024))
        .route("/", web::get().to(overview::page_handler))
        .route("/overview/queues", web::get().to(overview::queues))
        .route("/login", web::get().to(login::page))
        .route("/login", web::post().to(login::submit))
        .route("/logout", web::post().to(login::logout))
        .route("/forgot-password", web::get().to(login::forgot_page))
        .route("/forgot-password", web::post().to(login::forgot_submit))
        .route("/password/{token}", web::get().to(login::link_page))
        .route("/password/{token}", web::post().to(login::link_submit))
        .route("/account/sessions", web::get().to(account::page))
        .route(
            "/account/sessions/revoke-others",
            web::post().to(account::revoke_others),
        )
        .route(
            "/account/sessions/{id}/revoke",
            web::post().to(account::revoke),
        )
        .route("/users", web::get().to(users::page_handler))
        .route("/users", web::post().to(users::invite))
        .route("/users/{id}/role", web::post().to(users::role))
        .route("/users/{id}/deactivate", web::post().to(users::deactivate))
        .route("/users/{id}/reactivate", web::post().to(users::reactivate))
        .route("/users/{id}/reset-link", web::post().to(users::reset_link))
        .route("/channels", web::get().to(channels::page))
        .route(
            "/channels/webhooks",
            web::post().to(channels::create_endpoint),
        )
        .route(
            "/channels/webhooks/{id}",
            web::post().to(channels::update_endpoint),
        )
        .route(
            "/channels/webhooks/{id}/enable",
            web::post().to(channels::enable_endpoint),
        )
        .route(
            "/channels/webhooks/{id}/disable",
            web::post().to(channels::disable_endpoint),
        )
        .route(
            "/channels/webhooks/{id}/rotate",
            web::post().to(channels::rotate_endpoint),
        )
        .route(
            "/channels/webhooks/{id}/test",
            web::post().to(channels::test_endpoint),
        )
        .route(
            "/channels/webhooks/{id}/delete",
            web::post().to(channels::delete_endpoint),
        )
        .route("/channels/senders", web::post().to(channels::create_sender))
        .route(
            "/channels/senders/{id}/delete",
            web::post().to(channels::delete_sender),
        )
        .route("/settings", web::get().to(settings::page))
        .route("/settings/keys", web::post().to(settings::create_key))
        .route(
            "/settings/keys/{id}/revoke",
            web::post().to(settings::revoke_key),
        )
        .route(
            "/settings/frequency-caps",
            web::post().to(settings::save_caps),
        )
        .route("/settings/kpi", web::post().to(settings::save_kpi))
        .route("/settings/suppressions", web::get().to(suppressions::page))
        .route("/settings/suppressions", web::post().to(suppressions::add))
        .route(
            "/settings/suppressions/remove",
            web::post().to(suppressions::remove),
        )
        .route(
            "/settings/suppressions/export",
            web::get().to(suppressions::export),
        )
        .service(
            web::resource("/settings/suppressions/import")
                .app_data(form_config(suppressions::MAX_IMPORT_BYTES))
                .route(web::post().to(suppressions::import)),
        )
        .route("/campaigns", web::get().to(campaigns::list))
        .route("/campaigns", web::post().to(campaigns::create))
        .route("/campaigns/new", web::get().to(campaigns::new_form))
        .route("/campaigns/{id}", web::get().to(campaigns::show))
        .route("/campaigns/{id}/edit", web::get().to(campaigns::edit_form))
        .route("/campaigns/{id}/edit", web::post().to(campaigns::update))
        .route(
            "/campaigns/{id}/progress",
            web::get().to(campaigns::progress),
        )
        .route("/campaigns/{id}/report", web::get().to(report::page))
        .route(
            "/campaigns/{id}/preview/{variant}",
            web::get().to(campaigns::preview),
        )
        .route(
            "/campaigns/{id}/preview/{variant}/body",
            web::get().to(campaigns::preview_body),
        )
        .route("/campaigns/{id}/schedule", web::get().to(schedule::page))
        .route(
            "/campaigns/{id}/schedule",
            web::post().to(schedule::save_schedule),
        )
        .route(
            "/campaigns/{id}/schedule/{action}",
            web::post().to(schedule::schedule_action),
        )
        .route(
            "/campaigns/{id}/quiet-hours",
            web::post().to(schedule::save_quiet),
        )
        .route(
            "/campaigns/{id}/quiet-hours/remove",
            web::post().to(schedule::remove_quiet),
        )
        .route(
            "/campaigns/{id}/trigger",
            web::post().to(schedule::save_trigger),
        )
        .route(
            "/campaigns/{id}/trigger/stop",
            web::post().to(schedule::stop_trigger),
        )
        .route(
            "/campaigns/{id}/{action}",
            web::get().to(campaigns::confirm),
        )
        .route("/campaigns/{id}/{action}", web::post().to(campaigns::act))
        .route("/assets/{path:.*}", web::get().to(assets::serve))
        .configure(contacts::configure)
        .configure(segments::configure);
}

/// How the dashboard's forms are read: at most `limit` bytes, and a form that cannot be read
/// answers a page saying why.
fn form_config(limit: usize) -> web::FormConfig {
    web::FormConfig::default()
        .limit(limit)
        .error_handler(|error, _| {
            PageError::BadRequest(format!("the form could not be read: {error}")).into()
        })
}

/// Who is logged in, as templates see it.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub email: String,
    pub name: String,
    pub role: &'static str,
    pub is_marketer: bool,
    pub is_admin: bool,
}

impl UserView {
    fn of(session: &Session) -> Self {
        UserView {
            email: session.email.clone(),
            name: session.name.clone(),
            role: session.role.as_str(),
            is_marketer: session.role.allows(clarion_model::Role::Marketer),
            is_admin: session.role.allows(clarion_model::Role::Admin),
        }
    }
}

/// A page that could not be shown as asked: each answers an HTML page saying why.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No live session: go to the login page, then come back to `next`.
    #[error("log in first")]
    LoginRequired { next: String },
    /// The role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// A missing or wrong CSRF token, or a form posted from another site.
    #[error("the form could not be accepted")]
    Csrf,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// The request does not fit the state of what it is about (launching twice, pausing a
    /// campaign that is not sending); the message says what to do instead.
    #[error("{0}")]
    Conflict(String),
    /// A one-time link that is forged, unknown, expired or used.
    #[error("this link is not valid")]
    BadLink,
    /// Redis or the database does not answer.
    #[error("a service Clarion needs does not answer")]
    Unavailable,
    /// Logged with its cause; the page says nothing of it.
    #[error("internal error")]
    Internal,
}

impl PageError {
    /// Logs the cause of an internal failure and answers the page that hides it.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let _ = crate::error::ApiError::internal(cause);
        PageError::Internal
    }

    fn status(&self) -> StatusCode {
        match self {
            PageError::LoginRequired { .. } => StatusCode::SEE_OTHER,
            PageError::Forbidden(_) | PageError::Csrf => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::BadLink => StatusCode::GONE,
            PageError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title_and_text(&self) -> (&'static str, String) {
        match self {
            PageError::LoginRequired { .. } => ("Log in", "Log in to continue.".into()),
            PageError::Forbidden(message) => ("Not allowed", message.clone()),
            PageError::Csrf => (
                "Form refused",
                "This form was refused: it has expired or it was sent from another site. Go back, reload the page and try again.".into(),
            ),
            PageError::NotFound(message) => ("Not found", message.clone()),
            PageError::BadRequest(message) => ("Bad request", message.clone()),
            PageError::Conflict(message) => ("Not possible now", capitalised(message)),
            PageError::BadLink => (
                "Link not valid",
                "This link is not valid: it may have expired or been used already. Ask an admin for a new one.".into(),
            ),
            PageError::Unavailable => (
                "Temporarily unavailable",
                "A service Clarion needs (the database or Redis) does not answer. Try again in a moment.".into(),
            ),
            PageError::Internal => (
                "Something went wrong",
                "Clarion could not show this page; the server log has the details.".into(),
            ),
        }
    }
}

impl PageError {
    /// The page for a domain error, by its API error code, so a page and the API refuse
    /// the same things the same way.
    pub fn from_coded<E: clarion_model::Coded + std::error::Error + 'static>(error: E) -> Self {
        use clarion_model::ErrorCode;
        match error.code() {
            ErrorCode::NotFound => PageError::NotFound(capitalised(&error.to_string()) + "."),
            ErrorCode::Conflict => PageError::Conflict(error.to_string()),
            ErrorCode::Unavailable => PageError::Unavailable,
            ErrorCode::Internal => PageError::internal(&error),
            _ => PageError::BadRequest(capitalised(&error.to_string())),
        }
    }

    /// The page for an answer the API would give, for checks shared with the API routes.
    pub fn from_api(error: &crate::error::ApiError) -> Self {
        use clarion_model::ErrorCode;
        match error.code {
            ErrorCode::NotFound => PageError::NotFound(capitalised(&error.message) + "."),
            ErrorCode::Conflict => PageError::Conflict(error.message.clone()),
            ErrorCode::Unavailable => PageError::Unavailable,
            ErrorCode::Internal => PageError::Internal,
            _ => PageError::BadRequest(capitalised(&error.message)),
        }
    }
}

/// `text` with its first letter in upper case, for messages written to follow a colon.
pub(crate) fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

impl From<AccountError> for PageError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Redis(_) => PageError::Unavailable,
            AccountError::BadLink => PageError::BadLink,
            AccountError::NotFound => {
                PageError::NotFound("There is no such user or session.".into())
            }
            other => match clarion_model::Coded::code(&other) {
                clarion_model::ErrorCode::Unavailable => PageError::Unavailable,
                clarion_model::ErrorCode::Internal => PageError::internal(&other),
                _ => PageError::BadRequest(other.to_string()),
            },
        }
    }
}

/// A domain failure met by a page, answered as the API would classify it: a 404 page for
/// what does not exist, a 400 page saying what is wrong, and the 500 and 503 pages that
/// reveal nothing (the cause is logged where the [`ApiError`] was made).
impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        use clarion_model::ErrorCode;
        match error.code {
            ErrorCode::NotFound => PageError::NotFound(capitalized(&error.message)),
            ErrorCode::Forbidden | ErrorCode::Unauthorized => PageError::Forbidden(error.message),
            ErrorCode::Unavailable => PageError::Unavailable,
            ErrorCode::Internal => PageError::Internal,
            _ => PageError::BadRequest(capitalized(&error.message)),
        }
    }
}

/// A domain crate's error as a page: `.map_err(page_error)?`.
pub(crate) fn page_error(error: impl Into<ApiError>) -> PageError {
    error.into().into()
}

/// `text` with its first letter in upper case and a full stop, as pages write sentences.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        if let PageError::LoginRequired { next } = self {
            let target = if next == "/" || next.is_empty() {
                "/login".to_string()
            } else {
                format!("/login?next={}", encode_query(next))
            };
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, target))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
        }
        let (title, text) = self.title_and_text();
        let mut response = render_page(
            self.status(),
            "message.html",
            context! { title, text => text.clone(), user => (), csrf => "", active => "" },
        );
        response.extensions_mut().insert(ErrorPage { title, text });
        response
    }
}

/// What an error page says, kept on its response so that [`error_pages_with_menu`] can draw
/// it again for the person who is logged in.
#[derive(Clone)]
struct ErrorPage {
    title: &'static str,
    text: String,
}

/// Draws a dashboard error page again with the menu and the account of the person who asked,
/// when they were logged in (the error was rendered without knowing who asked). Other
/// responses pass unchanged.
pub fn error_pages_with_menu(
    response: actix_web::dev::ServiceResponse,
) -> actix_web::dev::ServiceResponse {
    let page = response.response().extensions().get::<ErrorPage>().cloned();
    let signed = actix_web::HttpMessage::extensions(response.request())
        .get::<SignedIn>()
        .cloned();
    let (Some(page), Some(signed)) = (page, signed) else {
        return response;
    };
    let status = response.status();
    let (request, _) = response.into_parts();
    let again = render_page(
        status,
        "message.html",
        context! {
            title => page.title,
            text => page.text,
            user => minijinja::Value::from(minijinja::value::Serde(signed.user())),
            csrf => signed.session.csrf_token.clone(),
            active => "",
        },
    );
    actix_web::dev::ServiceResponse::new(request, again)
}

/// Percent-encodes a value for a query string.
fn encode_query(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An HTML page with the dashboard's security headers: never cached, never framed, scripts
/// and styles only from this site.
pub(crate) fn render_page(
    status: StatusCode,
    template: &str,
    context: minijinja::Value,
) -> HttpResponse {
    match templates::render(template, context) {
        Ok(html) => html_response(status).body(html),
        Err(error) => {
            tracing::error!(%error, "a dashboard page could not be rendered");
            html_response(StatusCode::INTERNAL_SERVER_ERROR)
                .body("<!doctype html><title>Error</title><p>Clarion could not show this page; the server log has the details.</p>")
        }
    }
}

/// A page of a signed-in user: the layout's values (title, current nav item, the user, the
/// session's CSRF token) merged with the page's own.
pub(crate) fn signed_page(
    status: StatusCode,
    template: &str,
    signed: &SignedIn,
    (title, active): (&str, &str),
    page: minijinja::Value,
) -> HttpResponse {
    render_page(
        status,
        template,
        context! {
            title,
            active,
            user => view(signed.user()),
            csrf => signed.session.csrf_token.clone(),
            ..page
        },
    )
}

/// A serializable value as templates see it.
pub(crate) fn view<T: Serialize>(value: T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

pub(crate) fn html_response(status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
    builder
}

/// A page of a signed-in person: `page`'s values plus who they are and the session's CSRF
/// token, which the layout's forms need.
pub(crate) fn render_signed(
    status: StatusCode,
    template: &str,
    signed: &SignedIn,
    page: minijinja::Value,
) -> HttpResponse {
    render_page(
        status,
        template,
        context! {
            user => forms::value(&signed.user()),
            csrf => signed.session.csrf_token.clone(),
            ..page
        },
    )
}

/// A 303 to `location`.
pub(crate) fn see_other(location: &str) -> actix_web::HttpResponseBuilder {
    let mut builder = HttpResponse::SeeOther();
    builder
        .insert_header((header::LOCATION, location.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    builder
}

/// A cookie with the dashboard's attributes: HttpOnly, SameSite=Lax, path `/`, Secure when
/// the server's public URL is https.
pub(crate) fn cookie(
    settings: &crate::Settings,
    name: &'static str,
    value: String,
    max_age: Option<std::time::Duration>,
) -> Cookie<'static> {
    let mut cookie = Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(settings.server.public_url.starts_with("https://"))
        .finish();
    if let Some(max_age) = max_age {
        cookie.set_max_age(CookieDuration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX / 2),
        ));
    }
    cookie
}

/// A cookie that tells the browser to forget `name`.
pub(crate) fn removal(settings: &crate::Settings, name: &'static str) -> Cookie<'static> {
    let mut cookie = self::cookie(settings, name, String::new(), None);
    cookie.make_removal();
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_paths_are_encoded() {
        assert_eq!(encode_query("/users?x=1&y"), "/users%3Fx%3D1%26y");
    }
}
