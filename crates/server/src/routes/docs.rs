//! The OpenAPI document, generated from the handlers and types, and a reference page that
//! works offline (Redoc, vendored under `assets/redoc`).

use actix_web::{HttpResponse, http::header, web};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::{
    campaigns, contacts, crosstab, events, health, segments, sending, suggest, templates, tracking,
    traits,
};
use crate::error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Clarion API",
        description = "Contacts, events and campaigns of a Clarion workspace. Every /api/v1 request needs `Authorization: Bearer <api key>`; keys have the role admin, marketer or viewer. Errors are JSON objects `{code, message, details}`.",
    ),
    paths(
        contacts::upsert_batch, contacts::list, contacts::get, contacts::patch, contacts::delete,
        contacts::events, events::insert_batch, health::health, health::ready, health::metrics,
        segments::list, segments::create, segments::get, segments::update, segments::delete,
        segments::preview, segments::health, segments::members, segments::upload_members,
        segments::history, segments::contact_segments,
        crosstab::compute, suggest::compute,
        campaigns::create, campaigns::list, campaigns::get, campaigns::update, campaigns::delete,
        campaigns::duplicate, campaigns::save_variant, campaigns::history, campaigns::preview,
        campaigns::audience, templates::validate,
        sending::launch, sending::progress, sending::pause, sending::resume, sending::cancel,
        sending::retry, sending::campaign_deliveries, sending::contact_deliveries, sending::dead_letters,
        traits::get,
        tracking::click, tracking::open, tracking::unsubscribe_page, tracking::unsubscribe,
    ),
    components(schemas(
        ApiError, clarion_contacts::ItemError, clarion_contacts::contacts::UpsertReport, clarion_contacts::events::EventReport,
        clarion_contacts::events::Duplicate, clarion_model::Contact, clarion_model::ContactUpsert,
        clarion_model::ContactPatch, clarion_model::EventInput, clarion_model::Event,
        clarion_model::Subscriptions, clarion_model::SubscriptionsPatch,
        segments::SegmentView, segments::SegmentInput, segments::SegmentPatch,
        segments::PreviewInput, segments::PreviewView, segments::HealthView, segments::MembersPage,
        segments::MemberView, segments::UploadReport, segments::UnknownLine,
        clarion_segment::report::Overview, clarion_segment::report::SegmentValue,
        clarion_segment::report::Reachable, clarion_segment::report::Overlap,
        clarion_segment::report::MemberRow, clarion_segment::report::Day,
        clarion_segment::report::Stay, clarion_segment::store::Category,
        clarion_segment::store::SegmentKind,
        crosstab::CrosstabBody, crosstab::CrosstabDoc, crosstab::CellDoc,
        suggest::SuggestBody, suggest::SuggestionsDoc, suggest::SuggestionDoc,
        campaigns::CampaignPage, campaigns::DuplicateRequest, campaigns::VariantHistory,
        templates::TemplateCheck, templates::TemplateReport,
        clarion_campaign::CampaignInput, clarion_campaign::Campaign, clarion_campaign::CampaignSummary,
        clarion_campaign::Goal, clarion_campaign::TargetInput, clarion_campaign::VariantInput,
        clarion_campaign::EmailVariant, clarion_campaign::WebhookVariant, clarion_campaign::Target,
        clarion_campaign::Variant, clarion_campaign::SegmentRef, clarion_campaign::Status,
        clarion_campaign::Revision, clarion_campaign::Issue, clarion_campaign::PreviewRequest,
        clarion_campaign::PreviewReport, clarion_campaign::ContactPreview, clarion_campaign::Assignment,
        clarion_campaign::preview::RenderFailure, clarion_campaign::Warning, clarion_campaign::WarningKind,
        clarion_campaign::AudienceReport, clarion_campaign::VariantAudience,
        clarion_campaign::audience::Counts, clarion_campaign::audience::SegmentSize,
        clarion_campaign::CampaignId, clarion_campaign::VariantId, clarion_model::Channel,
        sending::PauseRequest, sending::RetryRequest, sending::RetryReport, sending::DeliveryPage,
        sending::DeadLetterView, clarion_campaign::LaunchReport, clarion_campaign::control::Run,
        clarion_campaign::RunStatus, clarion_campaign::DeliveryStatus,
        clarion_campaign::deliveries::Progress, clarion_campaign::deliveries::VariantProgress,
        clarion_campaign::deliveries::DeliveryView,
        traits::ContactTraits, traits::PurchaseTraits, traits::Rfm, traits::Interest,
    )),
    modifiers(&BearerKeys),
    tags(
        (name = "contacts", description = "Customers and their attributes"),
        (name = "events", description = "What customers do"),
        (name = "segments", description = "Groups of contacts defined by rules or uploaded lists, kept current"),
        (name = "campaigns", description = "Campaigns with a message variant per segment: A/B tests, previews, audience"),
        (name = "templates", description = "Checking message templates while writing them"),
        (name = "sending", description = "Launching campaigns, their progress, pause, resume, cancel, retry; deliveries and dead letters"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "tracking", description = "Links in messages: click redirects, the open pixel and unsubscribes. No API key; only signed tokens are acted on"),
    )
)]
pub struct ApiDoc;

struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `clarion keys create`"))
                    .build(),
            ),
        );
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/openapi.json", web::get().to(openapi_json))
        .route("/api/docs", web::get().to(reference_page))
        .route("/api/docs/redoc.standalone.js", web::get().to(redoc_js));
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

const REFERENCE_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Clarion API reference</title>
  <style>body { margin: 0; }</style>
</head>
<body>
  <redoc spec-url="/api/openapi.json" hide-download-button="false"></redoc>
  <script src="/api/docs/redoc.standalone.js"></script>
</body>
</html>
"#;

async fn reference_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(REFERENCE_PAGE)
}

static REDOC_JS: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");

async fn redoc_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(REDOC_JS)
}
