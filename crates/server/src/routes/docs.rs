//! The OpenAPI document, generated from the handlers and types, and a reference page that
//! works offline (Redoc, vendored under `assets/redoc`).

use std::sync::LazyLock;

use actix_web::{HttpResponse, http::header, web};
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::{
        Content, Ref, RefOr, Required, Response,
        path::Operation,
        request_body::RequestBody,
        schema::{Schema, SchemaType, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::{
    campaigns, contacts, crosstab, events, health, kpi, providers, schedules, segments, senders,
    sending, settings, spend, suggest, suppressions, templates, tracking, traits, triggers, waves,
    webhook_endpoints,
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
        schedules::preview, schedules::put, schedules::get, schedules::cancel, schedules::pause,
        schedules::resume, schedules::runs,
        waves::plan, waves::run_waves, waves::put_quiet, waves::get_quiet, waves::delete_quiet,
        triggers::put, triggers::get, triggers::stop,
        senders::create, senders::list, senders::get, senders::update, senders::delete, senders::test,
        traits::get,
        webhook_endpoints::create, webhook_endpoints::list, webhook_endpoints::get,
        webhook_endpoints::update, webhook_endpoints::delete, webhook_endpoints::disable,
        webhook_endpoints::enable, webhook_endpoints::rotate_secret,
        webhook_endpoints::finish_rotation, webhook_endpoints::test,
        kpi::campaign_report, kpi::segment_conversion, kpi::segment_comparison,
        kpi::churn_report, kpi::retention_report, kpi::trend_report,
        kpi::get_settings, kpi::put_settings, kpi::cac_report,
        settings::get_frequency_caps, settings::put_frequency_caps,
        spend::create, spend::list, spend::get, spend::update, spend::delete,
        tracking::click, tracking::link, tracking::open, tracking::unsubscribe_page, tracking::unsubscribe,
        suppressions::list, suppressions::add, suppressions::get, suppressions::remove,
        suppressions::import, suppressions::export,
        providers::ses, providers::sendgrid, providers::postmark, providers::mailgun,
    ),
    components(schemas(
        ApiError, clarion_contacts::ItemError, clarion_contacts::contacts::UpsertReport, clarion_contacts::events::EventReport,
        clarion_contacts::events::Duplicate, clarion_model::Contact, clarion_model::ContactUpsert,
        clarion_model::ContactPatch, clarion_model::EventInput, clarion_model::Event,
        clarion_model::Subscriptions, clarion_model::SubscriptionsPatch, clarion_model::ExternalId,
        clarion_model::EmailAddress, clarion_model::PhoneNumber, clarion_model::ShortText,
        clarion_model::Locale, clarion_model::TimeZone, clarion_model::CountryCode,
        clarion_model::EventKind, clarion_model::Currency, clarion_model::IdempotencyKey,
        clarion_model::Timestamp, super::cursor::Cursor,
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
        clarion_campaign::schedule::ScheduleInput, clarion_campaign::schedule::CatchUp,
        clarion_campaign::schedule::PreviewInput, clarion_campaign::schedule::PreviewAnswer,
        clarion_campaign::schedule::store::ScheduleView, clarion_campaign::schedule::store::ScheduleState,
        clarion_campaign::schedule::store::Firing, schedules::RunList,
        clarion_campaign::schedule::waves::Wave, clarion_campaign::schedule::waves::WavePlan,
        clarion_campaign::schedule::quiet::QuietHoursInput, clarion_campaign::schedule::quiet::QuietHoursView,
        clarion_campaign::schedule::quiet::QuietAction, waves::RunWaves,
        clarion_campaign::trigger::TriggerInput, clarion_campaign::trigger::TriggerView,
        clarion_campaign::trigger::TriggerState, clarion_campaign::trigger::SendView,
        clarion_campaign::trigger::SendCounts,
        traits::ContactTraits, traits::PurchaseTraits, traits::Rfm, traits::Interest,
        webhook_endpoints::EndpointList, clarion_campaign::endpoints::EndpointInput,
        clarion_campaign::endpoints::EndpointPatch, clarion_campaign::endpoints::Endpoint,
        clarion_campaign::endpoints::EndpointResults,
        clarion_campaign::endpoints::EndpointWithSecret,
        clarion_campaign::endpoints::RotateRequest, clarion_campaign::endpoints::TestRequest,
        clarion_campaign::endpoints::TestResult,
        suppressions::SuppressionInput, suppressions::SuppressionPage,
        clarion_campaign::suppression::Entry, clarion_campaign::suppression::Source,
        clarion_campaign::suppression::ImportReport, clarion_campaign::suppression::LineError,
        clarion_campaign::providers::Received,
        clarion_kpi::KpiSettings, clarion_kpi::Attribution, clarion_kpi::campaign::CampaignReport,
        clarion_kpi::campaign::Figures, clarion_kpi::campaign::Uplift,
        clarion_kpi::campaign::GroupOutcome, clarion_kpi::campaign::Verdict,
        clarion_kpi::campaign::Breakdown, clarion_kpi::campaign::SeriesPoint,
        clarion_kpi::campaign::Step, clarion_kpi::stats::Comparison,
        clarion_kpi::stats::Interval, clarion_kpi::stats::RelativeLift, clarion_kpi::stats::Method,
        clarion_kpi::segment::SegmentConversion, clarion_kpi::segment::SegmentComparison,
        clarion_kpi::segment::Conversion, clarion_kpi::segment::Group, clarion_kpi::segment::Basis,
        clarion_kpi::churn::ChurnReport, clarion_kpi::churn::ChurnPeriod, clarion_kpi::churn::Period,
        clarion_kpi::trend::Trend, clarion_kpi::trend::TrendMonth,
        clarion_kpi::churn::RetentionReport, clarion_kpi::churn::Cohort, clarion_kpi::settings::ChurnDefinition,
        clarion_kpi::cac::CacReport, clarion_kpi::cac::CacGroup, clarion_kpi::cac::Grouping,
        clarion_kpi::spend::Spend, clarion_kpi::spend::SpendInput, spend::SpendPage,
        senders::SenderList, clarion_campaign::senders::Sender, clarion_campaign::senders::SenderInput,
        clarion_campaign::senders::DkimInput, clarion_campaign::senders::DkimView,
        clarion_campaign::senders::DnsRecord, clarion_campaign::senders::KeyAlgorithm,
        clarion_campaign::senders::SenderKind, clarion_campaign::test_send::TestSendRequest,
        clarion_campaign::test_send::TestSendReport,
        clarion_campaign::frequency::FrequencyCaps, clarion_campaign::frequency::FrequencyCap,
    )),
    modifiers(&BearerKeys, &CommonAnswers),
    tags(
        (name = "contacts", description = "Customers and their attributes"),
        (name = "events", description = "What customers do"),
        (name = "segments", description = "Groups of contacts defined by rules or uploaded lists, kept current"),
        (name = "campaigns", description = "Campaigns with a message variant per segment: A/B tests, previews, audience"),
        (name = "templates", description = "Checking message templates while writing them"),
        (name = "sending", description = "Launching campaigns, their progress, pause, resume, cancel, retry; deliveries and dead letters"),
        (name = "webhook-endpoints", description = "The receivers webhook variants send to: their own secrets (rotated with overlap), headers, rate limits, timeouts, results, and send test"),
        (name = "scheduling", description = "One-off and recurring schedules: fire-time previews, a campaign's schedule with its firings, and its runs; campaigns triggered on segment entry"),
        (name = "kpi", description = "KPI reports: campaign results with attribution and the uplift against the holdout, segment conversion, churn, retention, customer acquisition cost; marketing spend; JSON or CSV"),
        (name = "senders", description = "Sender identities: from-addresses and domains with their DKIM keys; sending a test of a variant"),
        (name = "settings", description = "Workspace settings: frequency caps across campaigns, per channel"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "suppressions", description = "Addresses and contacts never sent anything, with why: added by hand, imported, or after bounces and complaints"),
        (name = "provider webhooks", description = "Bounces and complaints reported by email providers (SES through SNS, SendGrid, Postmark, Mailgun). No API key: each request is verified the provider's way"),
        (name = "tracking", description = "Links in messages: click redirects, the open pixel and unsubscribes. No API key; only signed tokens are acted on. Opens and clicks are answered once queued in Redis and stored in batches by the worker role's recorder, so reports and segments show them once their batch is stored (about one batch's recording while the recorder keeps up, longer during a backlog); unsubscribes are stored before the answer"),
    )
)]
pub struct ApiDoc;

/// The form of a one-click unsubscribe (RFC 8058). Any form is taken, or none: the signed
/// token is the request.
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct UnsubscribeForm {
    /// `One-Click` from a mail client, the button's value from the page.
    #[serde(rename = "List-Unsubscribe")]
    list_unsubscribe: Option<String>,
}

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

/// Adds to every operation the error answers that come from the framework around the handler
/// rather than from the handler itself, so the document lists every status an endpoint can
/// answer: 401 and 403 (the API key), 400, 413 and 415 (the body and the query string, before
/// the handler runs) and 503 (the database does not answer). Only `/api/v1` operations get
/// them; an answer an operation documents itself keeps its own description.
struct CommonAnswers;

impl CommonAnswers {
    fn add(operation: &mut Operation, status: u16, description: &str) {
        let error = Content::new(Some(RefOr::Ref(Ref::from_schema_name("ApiError"))));
        let mut response = Response::new(description);
        response
            .content
            .insert("application/json".into(), error.into());
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(response));
    }

    /// An optional body is one that may be left out; `null` is not a body the handlers take,
    /// so the `null` alternative of an `Option<T>` body goes.
    fn not_null_when_optional(body: &mut RequestBody) {
        if body.required == Some(Required::True) {
            return;
        }
        for content in body.content.values_mut() {
            let RefOr::T(content) = content else { continue };
            let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
                continue;
            };
            let mut kept = one_of.items.iter().filter(|item| {
                !matches!(item, RefOr::T(Schema::Object(object))
                    if object.schema_type == SchemaType::Type(Type::Null))
            });
            if let (Some(only), None) = (kept.next(), kept.next()) {
                content.schema = Some(only.clone());
            }
        }
    }

    fn complete(operation: &mut Operation) {
        let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
        let parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
        if let Some(RefOr::T(body)) = &mut operation.request_body {
            Self::not_null_when_optional(body);
        }
        let body = match &operation.request_body {
            Some(RefOr::T(body)) => Some(body.content.contains_key("application/json")),
            _ => None,
        };
        if secured {
            Self::add(
                operation,
                401,
                "No `Authorization: Bearer` key, or one that is unknown or revoked",
            );
            Self::add(operation, 403, "The key's role may not do this");
        }
        if let Some(json) = body {
            Self::add(
                operation,
                400,
                "The body cannot be read (not JSON, or not of the expected shape), or a parameter is malformed",
            );
            Self::add(
                operation,
                413,
                "The body is larger than `server.max_body_bytes`",
            );
            Self::add(
                operation,
                415,
                "The body is not sent with the documented `Content-Type`",
            );
            if json {
                Self::add(
                    operation,
                    422,
                    "A field of the body has a wrong value; `details.errors` names each",
                );
            }
        } else if parameters {
            Self::add(operation, 400, "A path or query parameter is malformed");
        }
        Self::add(
            operation,
            503,
            "The database does not answer; try again shortly",
        );
    }
}

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // The tracking links and the operations endpoints answer for themselves (pages,
        // images, readiness), not with API errors.
        let api = openapi
            .paths
            .paths
            .iter_mut()
            .filter(|(path, _)| path.starts_with("/api/v1/"));
        for (_, item) in api {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                Self::complete(operation);
            }
        }
    }
}

/// The path templates of the document with the methods each answers, split into segments.
static METHODS: LazyLock<Vec<(Vec<String>, Vec<&'static str>)>> = LazyLock::new(|| {
    ApiDoc::openapi()
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods = [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ]
            .into_iter()
            .filter_map(|(method, present)| present.then_some(method))
            .collect();
            (path.split('/').map(str::to_owned).collect(), methods)
        })
        .collect()
});

/// The methods the document lists for a request path, when it documents the path at all.
/// The server's answer to a request no route took uses it: a documented path asked with
/// another method is a 405 with `Allow`, not a 404.
pub fn allowed_methods(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    // How many segments of a template match literally, when the template matches at all:
    // `/contacts/batch` is its own path, not a contact named "batch".
    let literal_matches = |template: &[String]| {
        if template.len() != segments.len() {
            return None;
        }
        let mut literal = 0;
        for (t, s) in template.iter().zip(&segments) {
            if t == s {
                literal += 1;
            } else if !(t.starts_with('{') && t.ends_with('}') && !s.is_empty()) {
                return None;
            }
        }
        Some(literal)
    };
    let matches: Vec<(usize, &Vec<&str>)> = METHODS
        .iter()
        .filter_map(|(template, methods)| literal_matches(template).map(|n| (n, methods)))
        .collect();
    let best = matches.iter().map(|(n, _)| *n).max()?;
    let mut allowed: Vec<&str> = matches
        .iter()
        .filter(|(n, _)| *n == best)
        .flat_map(|(_, methods)| methods.iter().copied())
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    Some(allowed.join(", "))
}

/// The answer to a documented path asked with a method it does not answer.
pub fn method_not_allowed(allowed: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allowed))
        .json(serde_json::json!({
            "code": "method_not_allowed",
            "message": format!("this endpoint answers {allowed}"),
        }))
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
