//! Logging in and out, "forgot your password?", and the one-time links that set a password
//! (invitation, first admin, reset). These forms are shown before there is a session, so
//! their CSRF token is a random value in a cookie of its own that the form must repeat (plus
//! the origin check).

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use minijinja::context;
use serde::Deserialize;

use super::{
    FORM_COOKIE, PageError, SESSION_COOKIE, cookie, guard, html_response, mail, removal,
    render_page, see_other, templates,
};
use crate::{
    accounts::{AccountError, LinkPurpose, links, sessions, users},
    state::AppState,
};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NextQuery {
    next: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    email: String,
    password: String,
    csrf: String,
    next: String,
}

/// The CSRF token of the pre-login forms: the browser's, or a new one.
fn form_token(request: &HttpRequest) -> String {
    request
        .cookie(FORM_COOKIE)
        .map(|cookie| cookie.value().to_string())
        .filter(|value| value.len() >= 32)
        .unwrap_or_else(crate::accounts::random_token)
}

fn check_form_token(request: &HttpRequest, presented: &str) -> Result<(), PageError> {
    let expected = request
        .cookie(FORM_COOKIE)
        .map(|cookie| cookie.value().to_string())
        .unwrap_or_default();
    guard::check_token(request, &expected, presented)
}

/// A pre-login page with its form cookie set.
fn form_page(
    state: &AppState,
    status: StatusCode,
    template: &str,
    context: minijinja::Value,
    token: String,
) -> HttpResponse {
    match templates::render(template, context) {
        Ok(html) => html_response(status)
            .cookie(cookie(
                &state.settings,
                FORM_COOKIE,
                token,
                Some(std::time::Duration::from_secs(24 * 3600)),
            ))
            .body(html),
        Err(error) => {
            tracing::error!(%error, "a dashboard page could not be rendered");
            render_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "message.html",
                context! { title => "Something went wrong", text => "Clarion could not show this page.", user => (), csrf => "", active => "" },
            )
        }
    }
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    token: String,
    email: &str,
    next: &str,
    errors: minijinja::Value,
    notice: &str,
) -> HttpResponse {
    let context = context! {
        title => "Log in",
        user => (),
        active => "",
        csrf => token.clone(),
        email,
        next,
        errors,
        notice,
    };
    form_page(state, status, "login.html", context, token)
}

/// `GET /login`: the login form (or straight on, when already logged in).
pub async fn page(
    request: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, PageError> {
    if let Some(token) = request.cookie(SESSION_COOKIE)
        && sessions::authenticate(&state.db, token.value())
            .await?
            .is_some()
    {
        return Ok(see_other(guard::safe_next(&query.next)).finish());
    }
    Ok(login_page(
        &state,
        StatusCode::OK,
        form_token(&request),
        "",
        guard::safe_next(&query.next),
        context! {},
        "",
    ))
}

/// `POST /login`: checks the lockout, then the password; starts a session.
pub async fn submit(
    request: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    check_form_token(&request, &form.csrf)?;
    let token = form_token(&request);
    let next = guard::safe_next(&form.next);
    let email = form.email.trim();
    let mut errors = std::collections::BTreeMap::new();
    if email.is_empty() {
        errors.insert("email", "Enter your email address.");
    }
    if form.password.is_empty() {
        errors.insert("password", "Enter your password.");
    }
    if !errors.is_empty() {
        return Ok(login_page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            token,
            email,
            next,
            minijinja::Value::from(minijinja::value::Serde(&errors)),
            "",
        ));
    }
    let address = guard::client_address(&request);
    let limiter = &state.accounts.limiter;
    let refused = |status: StatusCode, message: String| {
        login_page(
            &state,
            status,
            token.clone(),
            email,
            next,
            context! { form => message },
            "",
        )
    };
    match limiter.check(email, &address).await {
        Ok(()) => {}
        Err(AccountError::LockedOut { minutes }) => {
            let unit = if minutes == 1 { "minute" } else { "minutes" };
            return Ok(refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed logins for this account or from this address. Logins are refused, even with the right password, for {minutes} {unit}."
                ),
            ));
        }
        Err(other) => return Err(other.into()),
    }
    let user = match users::verify_login(&state.db, email, &form.password).await {
        Ok(user) => user,
        Err(AccountError::BadCredentials) => {
            limiter.failed(email, &address).await?;
            return Ok(refused(
                StatusCode::UNAUTHORIZED,
                "The email address or password is wrong.".into(),
            ));
        }
        Err(other) => return Err(other.into()),
    };
    limiter.succeeded(email, &address).await?;
    let user_agent = request
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let lifetime = state.settings.dashboard.session_lifetime();
    let session = sessions::create(&state.db, user.id, user_agent, &address, lifetime).await?;
    tracing::info!(user = user.id, "dashboard login");
    Ok(see_other(next)
        .cookie(cookie(
            &state.settings,
            SESSION_COOKIE,
            session,
            Some(lifetime),
        ))
        .finish())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfForm {
    pub csrf: String,
}

/// `POST /logout`: ends this session.
pub async fn logout(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: super::SignedIn,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.check_form(&request, &form.csrf)?;
    match sessions::revoke(&state.db, signed.session.user_id, signed.session.id).await {
        Ok(()) | Err(AccountError::NotFound) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(see_other("/login")
        .cookie(removal(&state.settings, SESSION_COOKIE))
        .finish())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PasswordForm {
    password: String,
    confirm: String,
    csrf: String,
}

fn link_form(
    state: &AppState,
    status: StatusCode,
    token: String,
    target: &links::LinkTarget,
    errors: minijinja::Value,
) -> HttpResponse {
    let (title, intro) = match target.purpose {
        LinkPurpose::Invite => (
            "Set your password",
            "Welcome to Clarion. Choose a password to finish setting up your account.",
        ),
        LinkPurpose::Reset => (
            "Choose a new password",
            "Choose a new password. Every session of your account will be logged out.",
        ),
    };
    let context = context! {
        title,
        intro,
        user => (),
        active => "",
        csrf => token.clone(),
        email => target.user.email.clone(),
        expires_at => target.expires_at.millis(),
        errors,
    };
    form_page(state, status, "password.html", context, token)
}

/// `GET /password/{token}`: the form of an invitation or reset link, if the link is live.
pub async fn link_page(
    request: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let target = links::check(&state.db, &state.accounts.links, &token).await?;
    Ok(link_form(
        &state,
        StatusCode::OK,
        form_token(&request),
        &target,
        context! {},
    ))
}

/// `POST /password/{token}`: sets the password, uses up the link and logs the person in.
pub async fn link_submit(
    request: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, PageError> {
    check_form_token(&request, &form.csrf)?;
    let user = match links::redeem(
        &state.db,
        &state.accounts.links,
        &token,
        &form.password,
        &form.confirm,
    )
    .await
    {
        Ok(user) => user,
        Err(error @ AccountError::Invalid { .. }) => {
            let target = links::check(&state.db, &state.accounts.links, &token).await?;
            let field = error.field().unwrap_or("password");
            let errors = std::collections::BTreeMap::from([(field, error.field_message())]);
            return Ok(link_form(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                form_token(&request),
                &target,
                minijinja::Value::from(minijinja::value::Serde(&errors)),
            ));
        }
        Err(other) => return Err(other.into()),
    };
    let user_agent = request
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let lifetime = state.settings.dashboard.session_lifetime();
    let session = sessions::create(
        &state.db,
        user.id,
        user_agent,
        &guard::client_address(&request),
        lifetime,
    )
    .await?;
    tracing::info!(user = user.id, "password set through a one-time link");
    Ok(see_other("/")
        .cookie(cookie(
            &state.settings,
            SESSION_COOKIE,
            session,
            Some(lifetime),
        ))
        .finish())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ForgotForm {
    email: String,
    csrf: String,
}

fn forgot_form(
    state: &AppState,
    status: StatusCode,
    token: String,
    email: &str,
    errors: minijinja::Value,
    notice: &str,
) -> HttpResponse {
    let context = context! {
        title => "Forgot your password?",
        user => (),
        active => "",
        csrf => token.clone(),
        email,
        errors,
        notice,
    };
    form_page(state, status, "forgot.html", context, token)
}

/// `GET /forgot-password`: asks for the address to send a reset link to.
pub async fn forgot_page(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    forgot_form(
        &state,
        StatusCode::OK,
        form_token(&request),
        "",
        context! {},
        "",
    )
}

/// `POST /forgot-password`: emails a reset link to the account of the address, if there is
/// one. The answer is the same either way and does not wait for the email, so neither its
/// words nor its timing tell whether the address has an account. Requests are counted per
/// address and per client, and refused beyond the hourly allowance.
pub async fn forgot_submit(
    request: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ForgotForm>,
) -> Result<HttpResponse, PageError> {
    check_form_token(&request, &form.csrf)?;
    let token = form_token(&request);
    let typed = form.email.trim();
    let email = match users::parse_email("email", typed) {
        Ok(email) => email,
        Err(error) => {
            let errors = std::collections::BTreeMap::from([(
                "email",
                super::forms::capitalised(&error.field_message()) + ".",
            )]);
            return Ok(forgot_form(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                token,
                typed,
                super::forms::value(&errors),
                "",
            ));
        }
    };
    let client = guard::client_address(&request);
    if !state
        .accounts
        .limiter
        .reset_requested(&email, &client)
        .await?
    {
        let errors =
            context! { form => "Too many reset links were asked for; try again in an hour." };
        return Ok(forgot_form(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            token,
            typed,
            errors,
            "",
        ));
    }
    let background = state.clone();
    let address = email.clone();
    tokio::spawn(async move { send_reset(&background, &address).await });
    let notice = format!(
        "If a Clarion account uses {email}, an email with a link to choose a new password is on its way. The link works once, for {} minutes.",
        state.settings.dashboard.reset_link_minutes
    );
    Ok(forgot_form(
        &state,
        StatusCode::OK,
        token,
        "",
        context! {},
        &notice,
    ))
}

/// Emails a reset link to the active account of `email`; nothing when there is none.
async fn send_reset(state: &AppState, email: &str) {
    let user = match users::find_by_email(&state.db, email).await {
        Ok(Some(user)) if user.is_active() => user,
        Ok(_) => return,
        Err(error) => {
            tracing::error!(%error, "a password reset could not look up its account");
            return;
        }
    };
    if let Err(error) = mail::issue_and_send(state, &user, None).await {
        tracing::error!(user = user.id, %error, "a password-reset link could not be issued");
    }
}
