//! The suppression list: addresses (email) and contacts (webhook, by external id) that are
//! never sent anything. Everyone reads it, a page at a time; marketers and admins add,
//! remove, import (CSV pasted into the page) and export it. Handlers call the same domain
//! functions as `/api/v1/suppressions`.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, http::header, web};
use clarion_campaign::suppression::{self, Address, Entry, ImportReport, NewEntry, Source};
use clarion_model::{Channel, Role};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{
    PageError, SignedIn,
    forms::{FieldErrors, Refusal, Refused, capitalised, value},
    render_signed,
};
use crate::state::AppState;

/// Entries per page.
const PAGE: u64 = 50;
/// The largest CSV accepted from the page; bigger lists go through the API or the CLI.
pub const MAX_IMPORT_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    channel: String,
    /// The id of the last entry of the previous page.
    after: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EntryForm {
    channel: String,
    address: String,
    reason: String,
    #[serde(skip_serializing)]
    csrf: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ImportForm {
    channel: String,
    csv: String,
    #[serde(skip_serializing)]
    csrf: String,
}

#[derive(Default, Serialize)]
struct Extra {
    notice: String,
    add_form: EntryForm,
    add_errors: FieldErrors,
    import_form: ImportForm,
    import_errors: FieldErrors,
    report: Option<ImportReport>,
}

fn channel(field: &str, text: &str) -> Result<Option<Channel>, Refused> {
    match text.trim() {
        "" => Ok(None),
        text => Channel::parse(text)
            .map(Some)
            .ok_or_else(|| Refused::field(field, "Choose email or webhook.")),
    }
}

async fn render(
    state: &AppState,
    signed: &SignedIn,
    status: StatusCode,
    query: &ListQuery,
    extra: Extra,
) -> Result<HttpResponse, PageError> {
    let filter = channel("channel", &query.channel).map_err(|_| {
        PageError::BadRequest("The channel filter must be email or webhook.".into())
    })?;
    let entries: Vec<Entry> = suppression::list(
        &state.db,
        signed.session.workspace,
        filter,
        query.after,
        PAGE,
    )
    .await
    .map_err(|e| Refusal::of(&e, &[]).page())?;
    let next = (entries.len() as u64 == PAGE)
        .then(|| entries.last().map(|entry| entry.id))
        .flatten();
    Ok(render_signed(
        status,
        "suppressions.html",
        signed,
        context! {
            title => "Suppression list",
            active => "suppressions",
            entries => value(&entries),
            channel => filter.map(Channel::as_str).unwrap_or(""),
            next,
            paged => query.after.is_some(),
            extra => value(&extra),
        },
    ))
}

/// `GET /settings/suppressions`.
pub async fn page(
    state: web::Data<AppState>,
    signed: SignedIn,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Viewer)?;
    render(&state, &signed, StatusCode::OK, &query, Extra::default()).await
}

fn address(form: &EntryForm) -> Result<Address, Refused> {
    let channel = channel("channel", &form.channel)?.unwrap_or(Channel::Email);
    Address::parse(channel, form.address.trim())
        .map_err(|message| Refused::field("address", capitalised(&message)))
}

/// `POST /settings/suppressions`: puts an address on the list.
pub async fn add(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<EntryForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let form = form.into_inner();
    let added = async {
        let address = address(&form)?;
        let reason = match form.reason.trim() {
            "" => "added by hand".to_string(),
            reason => reason.to_string(),
        };
        suppression::check_reason(&reason)
            .map_err(|m| Refused::field("reason", capitalised(&m)))?;
        let entry = NewEntry {
            address: address.clone(),
            reason,
            source: Source::Manual,
        };
        let added = suppression::add(&state.db, signed.session.workspace, &[entry])
            .await
            .map_err(|e| Refusal::of(&e, &[]))?;
        Ok::<_, Refusal>((address, added))
    }
    .await;
    let query = ListQuery::default();
    match added {
        Ok((address, added)) => {
            let notice = if added > 0 {
                format!("{} is on the suppression list.", address.as_str())
            } else {
                format!("{} was on the list already.", address.as_str())
            };
            let extra = Extra {
                notice,
                ..Extra::default()
            };
            render(&state, &signed, StatusCode::OK, &query, extra).await
        }
        Err(refusal) => {
            let refused = refusal.form()?;
            let extra = Extra {
                add_form: form,
                add_errors: refused.errors,
                ..Extra::default()
            };
            render(&state, &signed, refused.status, &query, extra).await
        }
    }
}

/// `POST /settings/suppressions/remove`: takes an address off the list.
pub async fn remove(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<EntryForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let address = address(&form).map_err(|refused| Refusal::from(refused).page())?;
    let removed = suppression::remove(&state.db, signed.session.workspace, &address)
        .await
        .map_err(|e| Refusal::of(&e, &[]).page())?;
    if !removed {
        return Err(PageError::NotFound(format!(
            "{} is not on the suppression list.",
            address.as_str()
        )));
    }
    let extra = Extra {
        notice: format!(
            "{} was taken off the list; it receives messages again if its contact is subscribed.",
            address.as_str()
        ),
        ..Extra::default()
    };
    render(
        &state,
        &signed,
        StatusCode::OK,
        &ListQuery::default(),
        extra,
    )
    .await
}

/// `POST /settings/suppressions/import`: adds the rows of a pasted CSV file; bad rows are
/// listed with their line and skipped.
pub async fn import(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<ImportForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let form = form.into_inner();
    let imported = async {
        let channel = channel("channel", &form.channel)?.unwrap_or(Channel::Email);
        if form.csv.trim().is_empty() {
            return Err(Refused::field(
                "csv",
                "Choose or paste a CSV file with an address (or email) column.",
            )
            .into());
        }
        suppression::import(
            &state.db,
            signed.session.workspace,
            channel,
            form.csv.as_bytes(),
        )
        .await
        .map_err(|e| Refusal::of(&e, &["csv", "header"]))
    }
    .await;
    let query = ListQuery::default();
    match imported {
        Ok(report) => {
            let extra = Extra {
                notice: format!(
                    "{} rows read: {} added, {} already on the list, {} refused.",
                    report.rows, report.added, report.existing, report.rejected
                ),
                report: Some(report),
                ..Extra::default()
            };
            render(&state, &signed, StatusCode::OK, &query, extra).await
        }
        Err(refusal) => {
            let mut refused = refusal.form()?;
            if let Some(header) = refused.errors.remove("header") {
                refused.errors.insert("csv".into(), header);
            }
            let extra = Extra {
                import_form: form,
                import_errors: refused.errors,
                ..Extra::default()
            };
            render(&state, &signed, refused.status, &query, extra).await
        }
    }
}

/// `GET /settings/suppressions/export`: the list (of one channel, or all) as a CSV file.
pub async fn export(
    state: web::Data<AppState>,
    signed: SignedIn,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Viewer)?;
    let filter = channel("channel", &query.channel)
        .map_err(|_| PageError::BadRequest("The channel must be email or webhook.".into()))?;
    let csv = suppression::export(&state.db, signed.session.workspace, filter)
        .await
        .map_err(|e| Refusal::of(&e, &[]).page())?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"suppressions.csv\"",
        ))
        .body(csv))
}
