//! Who is logged in, and whether a form may change anything: the session cookie, the role a
//! page needs, the synchronizer CSRF token and the Origin / Sec-Fetch-Site check.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage as _, HttpRequest, dev::Payload, http::header, web};
use clarion_model::Role;
use subtle::ConstantTimeEq as _;

use super::{PageError, SESSION_COOKIE, UserView};
use crate::{
    accounts::{Session, sessions},
    state::AppState,
};

/// A request with a live session. Without one, the page answers a redirect to the login page
/// that comes back here. The extractor also leaves a copy in the request's extensions, so that
/// an error page of the request can show the menu ([`super::error_pages_with_menu`]).
#[derive(Clone)]
pub struct SignedIn {
    pub session: Session,
}

impl SignedIn {
    /// Refuses with the 403 page unless the user's role allows `required`.
    pub fn require(&self, required: Role) -> Result<(), PageError> {
        if self.session.role.allows(required) {
            Ok(())
        } else {
            Err(PageError::Forbidden(format!(
                "This page is for users with the {required} role or higher; you are a {}.",
                self.session.role
            )))
        }
    }

    /// Refuses a state-changing form whose token is not this session's, or that comes from
    /// another site.
    pub fn check_form(&self, request: &HttpRequest, presented: &str) -> Result<(), PageError> {
        check_token(request, &self.session.csrf_token, presented)
    }

    /// The user as templates show them.
    pub fn user(&self) -> UserView {
        UserView::of(&self.session)
    }
}

impl FromRequest for SignedIn {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let request = request.clone();
        let token = request
            .cookie(SESSION_COOKIE)
            .map(|cookie| cookie.value().to_string());
        let next = match request.query_string() {
            "" => request.path().to_string(),
            query => format!("{}?{query}", request.path()),
        };
        let next = if request.method() == actix_web::http::Method::GET {
            next
        } else {
            "/".to_string()
        };
        Box::pin(async move {
            let state = state.ok_or(PageError::Internal)?;
            let token = token
                .filter(|token| !token.is_empty())
                .ok_or_else(|| PageError::LoginRequired { next: next.clone() })?;
            let session = sessions::authenticate(&state.db, &token)
                .await?
                .ok_or(PageError::LoginRequired { next })?;
            let signed = SignedIn { session };
            request.extensions_mut().insert(signed.clone());
            Ok(signed)
        })
    }
}

/// Checks a form's token against the expected one (in constant time) and the request's
/// origin.
pub(crate) fn check_token(
    request: &HttpRequest,
    expected: &str,
    presented: &str,
) -> Result<(), PageError> {
    let matches: bool = expected.as_bytes().ct_eq(presented.as_bytes()).into();
    if expected.is_empty() || !matches || !same_origin(request) {
        return Err(PageError::Csrf);
    }
    Ok(())
}

/// Whether a request comes from a page of this site: a browser's `Sec-Fetch-Site` must say
/// `same-origin` (or `none`, typed by the user), and an `Origin` must be this server's, as
/// the request reached it or as `server.public_url` names it. Clients that send neither
/// (not browsers) are judged by the token alone.
pub(crate) fn same_origin(request: &HttpRequest) -> bool {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let info = request.connection_info();
    let own = format!("{}://{}", info.scheme(), info.host());
    if origin.eq_ignore_ascii_case(&own) {
        return true;
    }
    request
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| {
            let public = state.settings.server.public_url.trim_end_matches('/');
            let public_origin = public
                .find("://")
                .and_then(|at| {
                    public[at + 3..]
                        .find('/')
                        .map(|end| &public[..at + 3 + end])
                })
                .unwrap_or(public);
            origin.eq_ignore_ascii_case(public_origin)
        })
}

/// The client's address, as the connection shows it (a proxy in front shows as itself).
pub(crate) fn client_address(request: &HttpRequest) -> String {
    request
        .peer_addr()
        .map(|address| address.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Where to go after login: a path on this site, never another site (`//host`, `/\host`).
pub(crate) fn safe_next(next: &str) -> &str {
    let plain = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.contains(['\r', '\n']);
    if plain && next != "/login" { next } else { "/" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next("/users"), "/users");
        assert_eq!(safe_next("/users?x=1"), "/users?x=1");
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next(""), "/");
    }
}
