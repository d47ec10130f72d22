//! Contacts: the searchable, paged list and a contact's profile (attributes, computed traits
//! and predictions, segment stays, event timeline, deliveries). Read-only, for every role;
//! the filters are those of `GET /api/v1/contacts`, read by the same code.

use actix_web::{HttpResponse, http::StatusCode, web};
use clarion_campaign::deliveries::{self, DeliveryFilter};
use clarion_contacts::{self as store, events::EventFilter};
use clarion_model::{EventId, Timestamp};
use clarion_segment::{report, traits};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{PageError, SignedIn, page_error, see_other, signed_page, view};
use crate::{
    routes::{
        contacts::{ContactQuery, read_contact_query},
        cursor, external_id_in_path,
    },
    state::AppState,
};

/// Contacts per page of the list.
const PAGE: u64 = 50;
/// Events and deliveries per page of a profile.
const TIMELINE: u64 = 25;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/contacts", web::get().to(list))
        .route("/contacts/{external_id}", web::get().to(profile));
}

/// The search form as typed; empty fields filter nothing.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Search {
    /// An external id to open directly.
    id: String,
    email: String,
    email_domain: String,
    country: String,
    city: String,
    /// A custom attribute's name, and the value it must have.
    attr: String,
    value: String,
    cursor: String,
}

impl Search {
    /// The form as the API's query parameters.
    fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = [
            ("email", &self.email),
            ("email_domain", &self.email_domain),
            ("country", &self.country),
            ("city", &self.city),
            ("cursor", &self.cursor),
        ]
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(key, value)| (key.to_string(), value.trim().to_string()))
        .collect();
        if !self.attr.trim().is_empty() {
            pairs.push((format!("attr.{}", self.attr.trim()), self.value.clone()));
        }
        pairs.push(("limit".into(), PAGE.to_string()));
        pairs
    }

    /// The query string of this search on another page.
    fn with_cursor(&self, cursor: &str) -> String {
        let search = Search {
            cursor: cursor.to_string(),
            ..self.clone()
        };
        let fields = [
            ("email", &search.email),
            ("email_domain", &search.email_domain),
            ("country", &search.country),
            ("city", &search.city),
            ("attr", &search.attr),
            ("value", &search.value),
            ("cursor", &search.cursor),
        ];
        fields
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(key, value)| format!("{key}={}", super::encode_query(value)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `GET /contacts`: a page of contacts matching the search, in creation order; an external
/// id opens that contact.
pub async fn list(
    state: web::Data<AppState>,
    signed: SignedIn,
    search: web::Query<Search>,
) -> Result<HttpResponse, PageError> {
    let search = search.into_inner();
    if !search.id.trim().is_empty() {
        let id = search.id.trim();
        let found = store::contacts::resolve_ids(&state.db, signed.session.workspace, &[id], false)
            .await
            .map_err(page_error)?;
        if found.contains_key(id) {
            let path = format!("/contacts/{}", super::encode_query(id));
            return Ok(see_other(&path).finish());
        }
        return Ok(render_list(
            &signed,
            StatusCode::NOT_FOUND,
            &search,
            Vec::new(),
            format!("No contact has the external id {id:?}."),
        ));
    }
    let query = match read_contact_query(&state, signed.session.workspace, search.pairs()).await {
        Ok(query) => query,
        Err(error) if error.code == clarion_model::ErrorCode::InvalidQuery => {
            return Ok(render_list(
                &signed,
                StatusCode::BAD_REQUEST,
                &search,
                Vec::new(),
                error.message,
            ));
        }
        Err(error) => return Err(error.into()),
    };
    let ContactQuery {
        filter,
        after,
        limit,
    } = query;
    let contacts =
        store::contacts::list(&state.db, signed.session.workspace, &filter, after, limit)
            .await
            .map_err(page_error)?;
    Ok(render_list(
        &signed,
        StatusCode::OK,
        &search,
        contacts,
        String::new(),
    ))
}

fn render_list(
    signed: &SignedIn,
    status: StatusCode,
    search: &Search,
    contacts: Vec<clarion_model::Contact>,
    error: String,
) -> HttpResponse {
    let next = (contacts.len() as u64 == PAGE)
        .then(|| {
            contacts
                .last()
                .map(|c| search.with_cursor(&cursor::encode(c.id.0)))
        })
        .flatten();
    let first = (!search.cursor.is_empty()).then(|| search.with_cursor(""));
    signed_page(
        status,
        "contacts.html",
        signed,
        ("Contacts", "contacts"),
        context! {
            contacts => view(&contacts),
            search => view(search),
            next,
            first,
            error,
        },
    )
}

/// Paging of a profile's two timelines.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProfilePages {
    /// Events older than this cursor.
    events: String,
    /// Deliveries after this cursor.
    deliveries: String,
}

#[derive(Serialize)]
struct PageLinks {
    events_next: Option<String>,
    deliveries_next: Option<String>,
    paged: bool,
}

/// `GET /contacts/{external_id}`: everything Clarion knows about one contact.
pub async fn profile(
    state: web::Data<AppState>,
    signed: SignedIn,
    path: web::Path<String>,
    pages: web::Query<ProfilePages>,
) -> Result<HttpResponse, PageError> {
    let workspace = signed.session.workspace;
    let id = external_id_in_path(&path).map_err(|_| no_contact(&path))?;
    let contact = store::contacts::get(&state.db, workspace, &id)
        .await
        .map_err(page_error)?
        .ok_or_else(|| no_contact(&path))?;
    let decode = |text: &str| -> Result<Option<i64>, PageError> {
        if text.is_empty() {
            return Ok(None);
        }
        cursor::decode(text).map(Some).map_err(PageError::from)
    };
    let events_before = decode(&pages.events)?.map(EventId);
    let deliveries_after = decode(&pages.deliveries)?;
    let computed = traits::for_contact(&state.db, workspace, contact.id, Timestamp::now())
        .await
        .map_err(page_error)?;
    let predicted = clarion_kpi::predictions::for_contact(&state.db, workspace, contact.id)
        .await
        .map_err(page_error)?;
    let stays = report::stays_of_contact(&state.db, contact.id)
        .await
        .map_err(page_error)?;
    let events = store::events::list_for_contact(
        &state.db,
        workspace,
        contact.id,
        &id,
        &EventFilter::default(),
        events_before,
        TIMELINE,
    )
    .await
    .map_err(page_error)?;
    let sent = deliveries::list(
        &state.db,
        workspace,
        &DeliveryFilter {
            contact: Some(contact.id),
            after: deliveries_after,
            limit: TIMELINE,
            ..DeliveryFilter::default()
        },
    )
    .await
    .map_err(page_error)?;
    let links = PageLinks {
        events_next: (events.len() as u64 == TIMELINE)
            .then(|| events.last().map(|e| cursor::encode(e.id.0)))
            .flatten(),
        deliveries_next: (sent.len() as u64 == TIMELINE)
            .then(|| sent.last().map(|d| cursor::encode(d.id)))
            .flatten(),
        paged: !pages.events.is_empty() || !pages.deliveries.is_empty(),
    };
    let title = format!("Contact {}", id.as_str());
    Ok(signed_page(
        StatusCode::OK,
        "contact.html",
        &signed,
        (title.as_str(), "contacts"),
        context! {
            contact => view(&contact),
            attributes => view(&contact.attributes),
            traits => view(&computed),
            predicted => view(&predicted),
            stays => view(&stays),
            events => view(&events),
            deliveries => view(&sent),
            links => view(&links),
        },
    ))
}

fn no_contact(id: &str) -> PageError {
    PageError::NotFound(format!("There is no contact with the external id {id:?}."))
}
