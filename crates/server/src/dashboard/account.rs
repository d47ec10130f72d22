//! "My sessions": every live session of the logged-in account, where and when it was used,
//! and revoking one or all of the others.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use minijinja::context;
use serde::Serialize;

use super::{
    PageError, SESSION_COOKIE, SignedIn, login::CsrfForm, removal, render_page, see_other,
};
use crate::{
    accounts::{AccountError, sessions},
    state::AppState,
};

#[derive(Serialize)]
struct SessionLine {
    id: i64,
    user_agent: String,
    address: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    current: bool,
}

/// What the last revocation did, carried to the page it redirects to.
#[derive(serde::Deserialize)]
pub struct Done {
    /// `one`, or the number of other sessions ended.
    revoked: Option<String>,
}

/// `GET /account/sessions`.
pub async fn page(
    state: web::Data<AppState>,
    signed: SignedIn,
    done: web::Query<Done>,
) -> Result<HttpResponse, PageError> {
    let notice = match done.revoked.as_deref() {
        Some("one") => "The session was logged out.".to_owned(),
        Some("0") => "There were no other sessions.".to_owned(),
        Some("1") => "1 other session was logged out.".to_owned(),
        Some(n) if n.parse::<u64>().is_ok() => format!("{n} other sessions were logged out."),
        _ => String::new(),
    };
    let lines: Vec<SessionLine> = sessions::list(&state.db, signed.session.user_id)
        .await?
        .into_iter()
        .map(|info| SessionLine {
            current: info.id == signed.session.id,
            id: info.id,
            user_agent: info.user_agent,
            address: info.address,
            created_at: info.created_at.millis(),
            last_seen_at: info.last_seen_at.millis(),
            expires_at: info.expires_at.millis(),
        })
        .collect();
    Ok(render_page(
        StatusCode::OK,
        "sessions.html",
        context! {
            title => "My sessions",
            active => "sessions",
            user => minijinja::Value::from(minijinja::value::Serde(signed.user())),
            csrf => signed.session.csrf_token.clone(),
            sessions => minijinja::Value::from(minijinja::value::Serde(&lines)),
            notice,
        },
    ))
}

/// `POST /account/sessions/{id}/revoke`: ends one session; ending this one logs out.
pub async fn revoke(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.check_form(&request, &form.csrf)?;
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::NotFound("There is no such session.".into()))?;
    match sessions::revoke(&state.db, signed.session.user_id, id).await {
        Ok(()) => {}
        Err(AccountError::NotFound) => {
            return Err(PageError::NotFound(
                "There is no such session of yours; it may have ended already.".into(),
            ));
        }
        Err(other) => return Err(other.into()),
    }
    if id == signed.session.id {
        return Ok(see_other("/login")
            .cookie(removal(&state.settings, SESSION_COOKIE))
            .finish());
    }
    // Back to the list by GET, so that reloading it posts nothing again.
    Ok(see_other("/account/sessions?revoked=one").finish())
}

/// `POST /account/sessions/revoke-others`: ends every session but this one.
pub async fn revoke_others(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.check_form(&request, &form.csrf)?;
    let ended =
        sessions::revoke_all(&state.db, signed.session.user_id, Some(signed.session.id)).await?;
    Ok(see_other(&format!("/account/sessions?revoked={ended}")).finish())
}
