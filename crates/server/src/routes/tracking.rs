//! The tracking endpoints messages link to, at the root rather than under `/api`: the click
//! redirect `/t/c/{token}`, the open pixel `/t/o/{token}`, and the unsubscribe page
//! `/t/u/{token}` with its RFC 8058 one-click POST.
//!
//! They are reached from mail clients, so they take no API key; they act only on tokens the
//! installation's tracker signed, and they answer pages and images, not JSON. Clicks, opens and
//! unsubscribes are stored as `email_click`, `email_open` and `unsubscribe` events of the
//! delivery's contact, like any ingested event. Links signed for a campaign preview (delivery
//! id `preview`) work but record nothing.
//!
//! An open or a click is answered as soon as Redis holds it: the handler verifies the token,
//! queues a hit and answers; the recorder stores hits in batches (`clarion_campaign::hits`,
//! which says what is deferred and what can be lost). An unsubscribe is recorded before the
//! answer.
//!
//! Opens and clicks by machines are recorded with the reason (`machine` property; see
//! `clarion_kpi::machine`): the `User-Agent` header and the client's address (from
//! `Forwarded` / `X-Forwarded-For` when present, else the peer) are what the request shows.
//! The hidden honeypot link of every tracked HTML message is a click URL to `/t/trap`: its
//! click is recorded as a machine's and answered with an empty page instead of a redirect.

use actix_web::{
    HttpRequest, HttpResponse,
    http::{
        StatusCode,
        header::{self, HeaderValue},
    },
    web,
};
use clarion_campaign::{
    engagement::{self, Unsubscribed},
    hits::{Action, Hit},
    preview::PREVIEW_DELIVERY,
};
use clarion_model::ContactId;
use clarion_template::tracking::ClickTarget;

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/t/c/{token}", web::get().to(click))
        .route("/t/l/{token}/{index}", web::get().to(link))
        .route("/t/o/{token}", web::get().to(open))
        .route("/t/u/{token}", web::get().to(unsubscribe_page))
        .route("/t/u/{token}", web::post().to(unsubscribe));
}

/// A transparent 1x1 GIF: the open pixel.
const PIXEL: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x00, 0x00, 0x00, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Which delivery a verified token names.
enum DeliveryRef {
    /// A campaign preview: nothing is recorded.
    Preview,
    /// A row of `deliveries`.
    Id(i64),
    /// Signed by us, but no delivery id this server gives out.
    Unknown,
}

impl DeliveryRef {
    fn parse(delivery_id: &str) -> Self {
        if delivery_id == PREVIEW_DELIVERY {
            DeliveryRef::Preview
        } else {
            delivery_id
                .parse()
                .map_or(DeliveryRef::Unknown, DeliveryRef::Id)
        }
    }
}

/// Redirects to the link's target and queues an `email_click` event (flagged as a
/// machine's for bots, bursts and the honeypot link, which answers an empty page).
///
/// Only a token the installation signed redirects, and only to the URL inside it, so this is
/// never an open redirect; any other token gets a 400 page.
#[utoipa::path(get, path = "/t/c/{token}", tag = "tracking",
    params(("token" = String, Path, description = "The signed click token of a message link")),
    responses(
        (status = 302, description = "Redirect to the link's target", headers(("Location" = String))),
        (status = 200, description = "The hidden honeypot link: an empty page (the click is recorded as a machine's)", content_type = "text/html"),
        (status = 400, description = "The link is broken or was altered", content_type = "text/html")))]
#[tracing::instrument(skip_all)]
pub async fn click(
    state: web::Data<AppState>,
    request: HttpRequest,
    token: web::Path<String>,
) -> HttpResponse {
    let Ok(target) = state.tracker.verify_click(&token) else {
        count(&state, "click", "invalid");
        return broken_link();
    };
    follow(&state, &request, target).await
}

/// Redirects to a link written literally in the message's variant (entry `index` of the
/// variant version's link table, named by the message's signed token) and queues an
/// `email_click` event, like `/t/c/{token}`.
///
/// The token names the delivery and the saved variant version; an altered token, an index
/// outside that version's links or a version no longer stored gets a 400 page, so this is
/// never an open redirect either.
#[utoipa::path(get, path = "/t/l/{token}/{index}", tag = "tracking",
    params(
        ("token" = String, Path, description = "The signed per-message link token"),
        ("index" = String, Path, description = "The link's place in the variant version's link table")),
    responses(
        (status = 302, description = "Redirect to the link's target", headers(("Location" = String))),
        (status = 200, description = "The entry is the honeypot target: an empty page (the click is recorded as a machine's)", content_type = "text/html"),
        (status = 400, description = "The link is broken or was altered", content_type = "text/html"),
        (status = 503, description = "The database does not answer; the link can be followed again", content_type = "text/html")))]
#[tracing::instrument(skip_all)]
pub async fn link(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (token, index) = path.into_inner();
    let Ok(link) = state.tracker.verify_link(&token, &index) else {
        count(&state, "click", "invalid");
        return broken_link();
    };
    match state
        .link_tables
        .target(&state.db, &link.link_table, link.index)
        .await
    {
        Ok(Some(url)) => {
            let target = ClickTarget {
                delivery_id: link.delivery_id,
                url,
            };
            follow(&state, &request, target).await
        }
        Ok(None) => {
            count(&state, "click", "invalid");
            broken_link()
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "click: the link table could not be read");
            count(&state, "click", "failed");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "We could not open this link just now. Please try again in a few minutes.",
                None,
            )
        }
    }
}

/// Queues the click on a verified target and answers the redirect (or the honeypot's empty
/// page).
async fn follow(state: &AppState, request: &HttpRequest, target: ClickTarget) -> HttpResponse {
    let honeypot = state.tracker.is_honeypot(&target);
    let Ok(location) = HeaderValue::from_str(&location(&target.url)) else {
        count(state, "click", "invalid");
        return broken_link();
    };
    let action = Action::Click {
        url: target.url,
        honeypot,
    };
    hand_over(state, request, &target.delivery_id, action).await;
    if honeypot {
        return HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body("");
    }
    // A failure to record does not cost the reader the page they asked for.
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Answers the open pixel and queues an `email_open` event.
///
/// Every token gets the image, so mail clients never show a broken one; only a valid token
/// records an open.
#[utoipa::path(get, path = "/t/o/{token}", tag = "tracking",
    params(("token" = String, Path, description = "The signed open token of a message")),
    responses((status = 200, description = "A transparent 1x1 GIF", content_type = "image/gif")))]
#[tracing::instrument(skip_all)]
pub async fn open(
    state: web::Data<AppState>,
    request: HttpRequest,
    token: web::Path<String>,
) -> HttpResponse {
    match state.tracker.verify_open(&token) {
        Err(_) => count(&state, "open", "invalid"),
        Ok(delivery_id) => hand_over(&state, &request, &delivery_id, Action::Open).await,
    }
    HttpResponse::Ok()
        .content_type("image/gif")
        .insert_header((header::CACHE_CONTROL, "no-store, max-age=0"))
        .body(PIXEL.as_slice())
}

/// Hands an open or click on a verified token's delivery to the recorder: queued in Redis
/// (`accepted`), or, when Redis does not take it, recorded before answering. Preview links
/// and delivery ids this server never gave out record nothing. Failures are logged and
/// counted, never shown to the reader.
async fn hand_over(state: &AppState, request: &HttpRequest, delivery_id: &str, action: Action) {
    let label = action.label();
    let id = match DeliveryRef::parse(delivery_id) {
        DeliveryRef::Preview => return count(state, label, "preview"),
        DeliveryRef::Unknown => return count(state, label, "unknown_delivery"),
        DeliveryRef::Id(id) => id,
    };
    let hit = Hit::new(id, action, user_agent(request), client_address(request));
    let Err(error) = state.hits.accept(&hit).await else {
        return count(state, label, "accepted");
    };
    tracing::warn!(%error, "tracking: Redis did not take the hit; recording it now");
    match state.recorder.record(std::slice::from_ref(&hit)).await {
        Ok(tally) => state.metrics.count_recorded(&tally),
        Err(error) => {
            let error = anyhow::Error::from(error);
            tracing::error!(error = %format!("{error:#}"), kind = label, "tracking: the event could not be stored");
            count(state, label, "failed");
        }
    }
}

/// The unsubscribe page: says what the button does. Nothing changes until it is pressed
/// (link scanners fetch pages, they do not submit forms).
#[utoipa::path(get, path = "/t/u/{token}", tag = "tracking",
    params(("token" = String, Path, description = "The signed unsubscribe token of a message")),
    responses(
        (status = 200, description = "A page with the unsubscribe button", content_type = "text/html"),
        (status = 400, description = "The link is broken or was altered", content_type = "text/html")))]
#[tracing::instrument(skip_all)]
pub async fn unsubscribe_page(
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> HttpResponse {
    match state.tracker.verify_unsubscribe(&token) {
        Err(_) => broken_link(),
        Ok(target) if target.delivery_id == PREVIEW_DELIVERY => preview_unsubscribe(),
        Ok(_) => page(
            StatusCode::OK,
            "Unsubscribe",
            "Press the button to stop receiving these emails.",
            Some(
                "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
                 <button type=\"submit\">Unsubscribe</button></form>",
            ),
        ),
    }
}

/// Unsubscribes the contact from email: RFC 8058 one-click (body `List-Unsubscribe=One-Click`)
/// or the page's button.
///
/// Sets the contact's email subscription to `unsubscribed` (a complaint is kept), records an
/// `unsubscribe` event once per delivery, and brings the contact's segments up to date.
/// Repeating it changes nothing. The body is not needed: the signed token is the request.
#[utoipa::path(post, path = "/t/u/{token}", tag = "tracking",
    params(("token" = String, Path, description = "The signed unsubscribe token of a message")),
    request_body(content = super::docs::UnsubscribeForm, content_type = "application/x-www-form-urlencoded",
        description = "`List-Unsubscribe=One-Click` (RFC 8058), or empty"),
    responses(
        (status = 200, description = "Unsubscribed (or already so)", content_type = "text/html"),
        (status = 400, description = "The link is broken or was altered", content_type = "text/html"),
        (status = 503, description = "The database does not answer; nothing was changed or the change can be repeated", content_type = "text/html")))]
#[tracing::instrument(skip_all)]
pub async fn unsubscribe(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    let Ok(target) = state.tracker.verify_unsubscribe(&token) else {
        count(&state, "unsubscribe", "invalid");
        return broken_link();
    };
    let delivery = match DeliveryRef::parse(&target.delivery_id) {
        DeliveryRef::Preview => {
            count(&state, "unsubscribe", "preview");
            return preview_unsubscribe();
        }
        DeliveryRef::Id(id) => Some(id),
        DeliveryRef::Unknown => None,
    };
    let contact = target.contact_id.parse().ok().map(ContactId);
    let key = format!("unsubscribe:{}", target.delivery_id);
    match engagement::unsubscribe(&state.ingest, delivery, contact, &key).await {
        Ok(Unsubscribed::Done { changed }) => {
            count(
                &state,
                "unsubscribe",
                if changed { "recorded" } else { "repeated" },
            );
            unsubscribed_page()
        }
        Ok(Unsubscribed::NoContact) => {
            // Nobody to send to any more: as good as unsubscribed for the reader.
            count(&state, "unsubscribe", "unknown_delivery");
            unsubscribed_page()
        }
        Ok(Unsubscribed::Mismatch) => {
            tracing::warn!("unsubscribe token names a different contact than its delivery");
            count(&state, "unsubscribe", "invalid");
            broken_link()
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "unsubscribe failed");
            count(&state, "unsubscribe", "failed");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "We could not process your request just now. Please try again in a few minutes.",
                None,
            )
        }
    }
}

/// The request's `User-Agent`, when it is readable text.
fn user_agent(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

/// The client's address: the `Forwarded` / `X-Forwarded-For` one a proxy reports, else the
/// peer's. It only decides whether an open is Apple's proxy, so a forged header can only make
/// a request count as a machine's.
fn client_address(request: &HttpRequest) -> Option<std::net::IpAddr> {
    let info = request.connection_info();
    let text = info.realip_remote_addr()?;
    text.parse()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

fn count(state: &AppState, kind: &str, outcome: &str) {
    state
        .metrics
        .tracking
        .with_label_values(&[kind, outcome])
        .inc();
}

/// The click target as a `Location` value: characters a header cannot carry (spaces, control
/// and non-ASCII characters) percent-encoded, as a browser would before following the link.
fn location(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for byte in url.bytes() {
        if byte.is_ascii_graphic() {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn broken_link() -> HttpResponse {
    page(
        StatusCode::BAD_REQUEST,
        "Broken link",
        "This link is broken or expired. If you copied it, check that it is complete.",
        None,
    )
}

fn preview_unsubscribe() -> HttpResponse {
    page(
        StatusCode::OK,
        "Preview link",
        "This unsubscribe link comes from a campaign preview, so it does not unsubscribe anyone.",
        None,
    )
}

fn unsubscribed_page() -> HttpResponse {
    page(
        StatusCode::OK,
        "You are unsubscribed",
        "You will no longer receive these emails.",
        None,
    )
}

/// A small self-contained HTML page. Only fixed text goes into it, never request data.
fn page(status: StatusCode, title: &str, message: &str, form: Option<&str>) -> HttpResponse {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         button{{font-size:1rem;padding:.5rem 1.25rem;cursor:pointer}}</style></head>\
         <body><h1>{title}</h1><p>{message}</p>{form}</body></html>\n",
        form = form.unwrap_or_default(),
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header(("X-Robots-Tag", "noindex"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ))
        .body(body)
}
