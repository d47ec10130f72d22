//! `POST /api/v1/segments/suggest`: segments found by clustering contacts on their RFM scores
//! and interest profiles.

use actix_web::{HttpResponse, web};
use clarion_model::Role;
use clarion_segment::{SuggestOptions, suggest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::parse_optional_body;
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/segments/suggest", web::post().to(compute));
}

/// The body of `POST /segments/suggest`; every field is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestBody {
    /// How many groups to look for, 2 to 12 (default 4).
    #[schema(minimum = 2, maximum = 12)]
    pub clusters: Option<usize>,
    /// At most this many contacts are used to fit the groups, 1 to 200,000 (default 10,000);
    /// everyone is then assigned to a group for the sizes.
    #[schema(minimum = 1, maximum = 200000)]
    pub sample: Option<usize>,
    /// Seeds the sample and the clustering: the same data and seed give the same answer
    /// (default 42).
    pub seed: Option<u64>,
    /// How many of the most common interest categories to use, 1 to 30 (default 12).
    #[schema(minimum = 1, maximum = 30)]
    pub categories: Option<usize>,
}

/// One suggested segment; save it with `POST /api/v1/segments` using its `name`, `slug`,
/// `category` and `rule`.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SuggestionDoc {
    name: String,
    slug: String,
    /// `behavioural` when interests set the group apart, else `value`.
    category: String,
    /// What sets the group apart from the whole base, in words.
    description: String,
    size: u64,
    /// Percent of the base.
    share_pct: f64,
    /// The rule approximating the group, in the JSON form.
    #[schema(value_type = Object)]
    rule: Value,
    /// The same rule in the text form.
    rule_text: String,
    /// On the sample: share of the rule's matches that are in the group.
    rule_precision: f64,
    /// On the sample: share of the group the rule matches.
    rule_recall: f64,
    /// Mean RFM scores (1 to 5) and interest shares (0 to 1) of the group.
    #[schema(value_type = Object)]
    profile: Value,
}

/// The suggestions, largest group first.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SuggestionsDoc {
    /// Contacts with computed traits; the sizes add up to it.
    base: u64,
    /// Contacts the groups were fitted on.
    sampled: usize,
    /// The profile of the whole base.
    #[schema(value_type = Object)]
    overall: Value,
    suggestions: Vec<SuggestionDoc>,
}

/// Suggests segments by k-means clustering of the contacts with computed traits on their RFM
/// scores and interest profiles. Each suggestion has a size, a description of what sets it
/// apart, and a rule approximating it that can be saved as a segment.
#[utoipa::path(post, path = "/api/v1/segments/suggest", tag = "segments",
    request_body(content = Option<SuggestBody>, description = "Optional; may be empty"),
    responses(
        (status = 200, description = "The suggestions", body = SuggestionsDoc),
        (status = 400, description = "The body is not JSON", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 422, description = "A bad option, or no traits computed yet", body = ApiError)),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(workspace = caller.workspace.0))]
pub async fn compute(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    // An empty body asks for the defaults.
    let body: SuggestBody = parse_optional_body(&body)?;
    let defaults = SuggestOptions::default();
    let options = SuggestOptions {
        clusters: body.clusters.unwrap_or(defaults.clusters),
        sample: body.sample.unwrap_or(defaults.sample),
        seed: body.seed.unwrap_or(defaults.seed),
        categories: body.categories.unwrap_or(defaults.categories),
        ..defaults
    };
    let suggestions = suggest(&state.db, caller.workspace, options).await?;
    Ok(HttpResponse::Ok().json(suggestions))
}
