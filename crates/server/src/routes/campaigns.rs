//! `/api/v1/campaigns`: campaigns with their variants, duplicates, variant history, previews
//! and audience counts.

use actix_web::{HttpResponse, web};
use clarion_campaign::{
    AudienceReport, Campaign, CampaignId, CampaignInput, CampaignSummary, PreviewReport,
    PreviewRequest, Revision, VariantId, VariantInput, audience::audience as count,
    preview::preview as render, store,
};
use clarion_model::Role;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{cursor, page_limit, parse_body, parse_optional_body};
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/campaigns", web::post().to(create))
        .route("/campaigns", web::get().to(list))
        .route("/campaigns/{id}", web::get().to(get))
        .route("/campaigns/{id}", web::put().to(update))
        .route("/campaigns/{id}", web::delete().to(delete))
        .route("/campaigns/{id}/duplicate", web::post().to(duplicate))
        .route(
            "/campaigns/{id}/variants/{variant_id}",
            web::put().to(save_variant),
        )
        .route(
            "/campaigns/{id}/variants/{variant_id}/history",
            web::get().to(history),
        )
        .route("/campaigns/{id}/preview", web::post().to(preview))
        .route("/campaigns/{id}/audience", web::get().to(audience));
}

async fn load(state: &AppState, caller: &Caller, id: i64) -> Result<Campaign, ApiError> {
    store::get(&state.db, caller.workspace, CampaignId(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("campaign {id}")))
}

/// Creates a campaign (a draft) with its targets and variants.
///
/// Every template is compiled and checked: problems come back together as a 422 whose
/// `details.errors` name the path, the variant, the field, and the line and column.
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns",
    request_body = CampaignInput,
    responses((status = 201, body = Campaign), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError), (status = 422, description = "The campaign has problems; nothing was stored", body = ApiError)),
    security(("api_key" = [])))]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let input: CampaignInput = parse_body(body.get())?;
    let campaign = store::create(&state.db, caller.workspace, &input, Some(caller.key_id)).await?;
    Ok(HttpResponse::Created().json(campaign))
}

/// A page of campaigns.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignPage {
    pub campaigns: Vec<CampaignSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<u64>,
}

/// Lists campaigns in creation order, a page at a time.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns",
    params(
        ("cursor" = Option<super::cursor::Cursor>, Query, description = "From the previous page's next_cursor"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100"),
    ),
    responses((status = 200, body = CampaignPage), (status = 400, body = ApiError), (status = 401, body = ApiError)),
    security(("api_key" = [])))]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let limit = page_limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(cursor::decode)
        .transpose()?
        .map(CampaignId);
    let campaigns = store::list(&state.db, caller.workspace, after, limit).await?;
    let next_cursor = (campaigns.len() as u64 == limit)
        .then(|| campaigns.last().map(|c| cursor::encode(c.id.0)))
        .flatten();
    Ok(HttpResponse::Ok().json(CampaignPage {
        campaigns,
        next_cursor,
    }))
}

/// One campaign with its targets and variants.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = Campaign), (status = 401, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(load(&state, &caller, path.into_inner()).await?))
}

/// Replaces a campaign's settings, targets and variants.
///
/// A variant carrying the `id` of one of the campaign's variants keeps its id and history (a
/// change records a revision); a variant without `id` is new; variants left out are deleted.
#[utoipa::path(put, path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = i64, Path, description = "The campaign's id")),
    request_body = CampaignInput,
    responses((status = 200, body = Campaign), (status = 400, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "The campaign was launched; duplicate it to change it", body = ApiError),
        (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let input: CampaignInput = parse_body(body.get())?;
    let campaign = store::update(
        &state.db,
        caller.workspace,
        CampaignId(path.into_inner()),
        &input,
        Some(caller.key_id),
    )
    .await?;
    Ok(HttpResponse::Ok().json(campaign))
}

/// Deletes a campaign, its variants and their history.
#[utoipa::path(delete, path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 204, description = "Deleted"), (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "The campaign is sending or paused; cancel it first", body = ApiError)),
    security(("api_key" = [])))]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = path.into_inner();
    if store::delete(&state.db, caller.workspace, CampaignId(id)).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(format!("campaign {id}")))
    }
}

/// The optional body of a duplicate request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DuplicateRequest {
    /// The copy's name (1 to 200 characters); by default the original's with ` (copy)`.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^\s*[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?\s*$"
    )]
    pub name: Option<String>,
}

/// Copies a campaign into a new draft; its variants start a history of their own.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/duplicate", tag = "campaigns",
    params(("id" = i64, Path, description = "The campaign to copy")),
    request_body(content = Option<DuplicateRequest>, description = "Optional; may be empty"),
    responses((status = 201, body = Campaign), (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn duplicate(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let request: DuplicateRequest = parse_optional_body(&body)?;
    let campaign = store::duplicate(
        &state.db,
        caller.workspace,
        CampaignId(path.into_inner()),
        request.name.as_deref(),
        Some(caller.key_id),
    )
    .await?;
    Ok(HttpResponse::Created().json(campaign))
}

/// Saves one variant: its name, weight and content. A change records a new revision; the
/// answer is the whole campaign.
#[utoipa::path(put, path = "/api/v1/campaigns/{id}/variants/{variant_id}", tag = "campaigns",
    params(("id" = i64, Path, description = "The campaign's id"), ("variant_id" = i64, Path, description = "The variant's id")),
    request_body = VariantInput,
    responses((status = 200, body = Campaign), (status = 400, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "The campaign was launched; duplicate it to change it", body = ApiError),
        (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn save_variant(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let (id, variant_id) = path.into_inner();
    let input: VariantInput = parse_body(body.get())?;
    let campaign = store::save_variant(
        &state.db,
        caller.workspace,
        CampaignId(id),
        VariantId(variant_id),
        &input,
        Some(caller.key_id),
    )
    .await?;
    Ok(HttpResponse::Ok().json(campaign))
}

/// The edit history of a variant.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantHistory {
    pub variant_id: VariantId,
    /// Newest first.
    pub revisions: Vec<Revision>,
}

/// Every saved revision of a variant, newest first.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/variants/{variant_id}/history", tag = "campaigns",
    params(("id" = i64, Path, description = "The campaign's id"), ("variant_id" = i64, Path, description = "The variant's id")),
    responses((status = 200, body = VariantHistory), (status = 401, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn history(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let (id, variant_id) = path.into_inner();
    let revisions = store::history(
        &state.db,
        caller.workspace,
        CampaignId(id),
        VariantId(variant_id),
    )
    .await?;
    Ok(HttpResponse::Ok().json(VariantHistory {
        variant_id: VariantId(variant_id),
        revisions,
    }))
}

/// Renders variants for contacts: `contacts` by external id (each gets the variant it would
/// get, or `variant_id`), or a `sample` of members of the segment of `variant_id`. Each
/// preview says which variant the contact would get and whether it is held out; a message
/// that fails for a contact is reported with its reason. Warns when two variants render the
/// same message for a previewed contact, and when the sampled segment is empty.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/preview", tag = "campaigns",
    params(("id" = i64, Path, description = "The campaign's id")),
    request_body = PreviewRequest,
    responses((status = 200, body = PreviewReport), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn preview(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let request: PreviewRequest = parse_body(body.get())?;
    let campaign = load(&state, &caller, path.into_inner()).await?;
    let report = render(
        &state.db,
        caller.workspace,
        &campaign,
        &request,
        &state.tracker,
    )
    .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Who the campaign reaches: per variant the contacts who get it, how many are held out, and
/// how many of the rest each channel reaches (email: an address and subscribed; webhook:
/// subscribed), from the current segment memberships. Warns about empty segments, variants
/// whose contacts all get an earlier target's message, and variants that render the same
/// message for a sample contact.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/audience", tag = "campaigns",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = AudienceReport), (status = 401, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn audience(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let campaign = load(&state, &caller, path.into_inner()).await?;
    let report = count(&state.db, caller.workspace, &campaign, &state.tracker).await?;
    Ok(HttpResponse::Ok().json(report))
}
