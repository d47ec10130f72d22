//! Users (admins only): the accounts of the workspace, inviting one (a one-time link shown
//! once), changing a role, deactivating and reactivating, and a password-reset link.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use clarion_model::Role;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{PageError, SignedIn, forms::capitalised, login::CsrfForm, mail, render_page};
use crate::{
    accounts::{AccountError, LinkPurpose, users},
    state::AppState,
};

#[derive(Serialize)]
struct UserLine {
    id: i64,
    email: String,
    name: String,
    role: &'static str,
    active: bool,
    has_password: bool,
    created_at: i64,
    last_login_at: Option<i64>,
    is_self: bool,
}

/// What the page shows besides the list: a link just made, a notice, the invitation form as
/// typed with its errors.
#[derive(Default, Serialize)]
struct Extra {
    link: Option<NewLink>,
    notice: String,
    form: InviteForm,
    errors: std::collections::BTreeMap<String, String>,
    error: String,
}

#[derive(Serialize)]
struct NewLink {
    email: String,
    url: String,
    purpose: &'static str,
    expires_at: i64,
}

impl NewLink {
    fn of(email: &str, issued: mail::Issued) -> Self {
        NewLink {
            email: email.to_string(),
            url: issued.url,
            purpose: match issued.purpose {
                LinkPurpose::Invite => "invitation",
                LinkPurpose::Reset => "password reset",
            },
            expires_at: issued.expires_at.millis(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InviteForm {
    email: String,
    name: String,
    role: String,
    #[serde(skip_serializing)]
    csrf: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RoleForm {
    role: String,
    csrf: String,
}

const ROLES: [&str; 3] = ["viewer", "marketer", "admin"];

async fn render(
    state: &AppState,
    signed: &SignedIn,
    status: StatusCode,
    extra: Extra,
) -> Result<HttpResponse, PageError> {
    let lines: Vec<UserLine> = users::list(&state.db, signed.session.workspace)
        .await?
        .into_iter()
        .map(|user| UserLine {
            is_self: user.id == signed.session.user_id,
            active: user.is_active(),
            id: user.id,
            email: user.email,
            name: user.name,
            role: user.role.as_str(),
            has_password: user.has_password,
            created_at: user.created_at.millis(),
            last_login_at: user.last_login_at.map(|at| at.millis()),
        })
        .collect();
    Ok(render_page(
        status,
        "users.html",
        context! {
            title => "Users",
            active => "users",
            user => minijinja::Value::from(minijinja::value::Serde(signed.user())),
            csrf => signed.session.csrf_token.clone(),
            users => minijinja::Value::from(minijinja::value::Serde(&lines)),
            roles => ROLES,
            extra => minijinja::Value::from(minijinja::value::Serde(&extra)),
        },
    ))
}

/// `GET /users`.
pub async fn page_handler(
    state: web::Data<AppState>,
    signed: SignedIn,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    render(&state, &signed, StatusCode::OK, Extra::default()).await
}

fn parse_id(id: &str) -> Result<i64, PageError> {
    id.parse()
        .map_err(|_| PageError::NotFound("There is no such user.".into()))
}

/// The page again with an error about a user (the last admin, an unknown role).
async fn refuse(
    state: &AppState,
    signed: &SignedIn,
    status: StatusCode,
    error: String,
) -> Result<HttpResponse, PageError> {
    render(
        state,
        signed,
        status,
        Extra {
            error,
            ..Extra::default()
        },
    )
    .await
}

/// `POST /users`: creates an account and shows its invitation link once.
pub async fn invite(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let form = form.into_inner();
    let mut errors = std::collections::BTreeMap::new();
    let role = Role::parse(form.role.trim());
    if role.is_err() {
        errors.insert(
            "role".to_string(),
            "Choose viewer, marketer or admin.".to_string(),
        );
    }
    let created = match role {
        Ok(role) => Some(
            users::create(
                &state.db,
                signed.session.workspace,
                &form.email,
                &form.name,
                role,
            )
            .await,
        ),
        Err(_) => {
            // Report a bad address too, not only the role.
            if let Err(error) = users::parse_email("email", &form.email) {
                errors.insert("email".into(), error.field_message());
            }
            None
        }
    };
    let user = match created {
        Some(Ok(user)) => user,
        Some(Err(error)) if error.field().is_some() => {
            errors.insert(
                error.field().unwrap_or("email").to_string(),
                capitalised(&error.field_message()),
            );
            return invalid(&state, &signed, form, errors).await;
        }
        Some(Err(other)) => return Err(other.into()),
        None => return invalid(&state, &signed, form, errors).await,
    };
    let issued = mail::issue_and_send(&state, &user, Some(signed.session.user_id)).await?;
    tracing::info!(user = user.id, by = signed.session.user_id, "user invited");
    let notice = format!(
        "{} was invited as {}. {}",
        user.email,
        user.role,
        mailed_notice(&issued)
    );
    render(
        &state,
        &signed,
        StatusCode::OK,
        Extra {
            link: Some(NewLink::of(&user.email, issued)),
            notice,
            ..Extra::default()
        },
    )
    .await
}

/// What the notice says of the email of a link.
fn mailed_notice(issued: &mail::Issued) -> String {
    match &issued.mailed {
        Ok(_) => "The link was emailed to them.".to_string(),
        Err(error) => format!(
            "The email with the link could not be sent ({error}): pass the link on yourself."
        ),
    }
}

async fn invalid(
    state: &AppState,
    signed: &SignedIn,
    form: InviteForm,
    errors: std::collections::BTreeMap<String, String>,
) -> Result<HttpResponse, PageError> {
    let errors = errors
        .into_iter()
        .map(|(field, message)| (field, capitalised(&message)))
        .collect();
    render(
        state,
        signed,
        StatusCode::UNPROCESSABLE_ENTITY,
        Extra {
            form,
            errors,
            ..Extra::default()
        },
    )
    .await
}

/// `POST /users/{id}/role`.
pub async fn role(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let id = parse_id(&id)?;
    let Ok(role) = Role::parse(form.role.trim()) else {
        return refuse(
            &state,
            &signed,
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{:?} is not a role; choose viewer, marketer or admin.",
                form.role
            ),
        )
        .await;
    };
    let changed = users::set_role(&state.db, signed.session.workspace, id, role).await;
    settled(&state, &signed, changed, |user| {
        format!("{} is now {}.", user.email, user.role)
    })
    .await
}

/// `POST /users/{id}/deactivate`: the account can no longer log in; its sessions end.
pub async fn deactivate(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let id = parse_id(&id)?;
    let changed = users::deactivate(&state.db, signed.session.workspace, id).await;
    settled(&state, &signed, changed, |user| {
        format!("{} was deactivated and logged out.", user.email)
    })
    .await
}

/// `POST /users/{id}/reactivate`.
pub async fn reactivate(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let id = parse_id(&id)?;
    let changed = users::reactivate(&state.db, signed.session.workspace, id).await;
    settled(&state, &signed, changed, |user| {
        format!("{} can log in again.", user.email)
    })
    .await
}

/// The page after a change to an account: the list with `notice` of the changed user, a 409
/// when the change would leave the workspace without an active admin, or the error's page.
async fn settled(
    state: &AppState,
    signed: &SignedIn,
    changed: Result<users::User, AccountError>,
    notice: impl FnOnce(&users::User) -> String,
) -> Result<HttpResponse, PageError> {
    match changed {
        Ok(user) => {
            let extra = Extra {
                notice: notice(&user),
                ..Extra::default()
            };
            render(state, signed, StatusCode::OK, extra).await
        }
        Err(error @ AccountError::LastAdmin) => {
            let message = capitalised(&error.to_string()) + ".";
            refuse(state, signed, StatusCode::CONFLICT, message).await
        }
        Err(other) => Err(other.into()),
    }
}

/// `POST /users/{id}/reset-link`: a password-reset link for the user, shown once.
pub async fn reset_link(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let id = parse_id(&id)?;
    let user = users::get(&state.db, signed.session.workspace, id)
        .await?
        .ok_or_else(|| PageError::NotFound("There is no such user.".into()))?;
    let issued = mail::issue_and_send(&state, &user, Some(signed.session.user_id)).await?;
    let notice = mailed_notice(&issued);
    render(
        &state,
        &signed,
        StatusCode::OK,
        Extra {
            link: Some(NewLink::of(&user.email, issued)),
            notice,
            ..Extra::default()
        },
    )
    .await
}
