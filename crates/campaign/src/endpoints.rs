//! Webhook endpoints: the receivers campaigns send webhooks to.
//!
//! Each endpoint has a name, a URL (checked against the webhook target policy when saved, and
//! again at every send, since DNS answers change), its own Standard Webhooks secret that
//! Clarion generates and shows once, extra headers, a rate limit, a timeout, and the running
//! results of its deliveries, which the delivery workers add once per batch.
//!
//! Rotating a secret keeps the previous one signing for an overlap (`webhook.
//! rotation_overlap_secs`, or until the rotation is finished): meanwhile every delivery
//! carries both signatures in `webhook-signature`, so a receiver can switch secrets without
//! losing a message.
//!
//! A campaign's webhook variant names its endpoint (`webhook.endpoint`, by id or name); a
//! variant naming none goes to `sending.webhook_url`, signed with `webhook.secret`, as before
//! endpoints existed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clarion_contacts::begin_write;
use clarion_dispatch::{
    SigningKeys, WebhookMessage, WebhookSecret, WebhookSender, check_extra_header,
};
use clarion_model::{Timestamp, WorkspaceId};
use clarion_template::{
    Engine, MessageTracking, Recipient, RenderContext, Tracker, WebhookContent,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, QueryResult, SqlErr,
    sea_query::{Expr, ExprTrait, Order, Query, SimpleExpr},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use utoipa::ToSchema;

use crate::{CampaignError, contacts, validate::Issue};

/// Longest endpoint name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most extra headers of one endpoint.
pub const MAX_HEADERS: usize = 32;
/// Shortest and longest request timeout of an endpoint, in milliseconds.
pub const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=60_000;
/// Highest rate limit of an endpoint, in requests per second.
pub const MAX_RATE_PER_SECOND: u32 = 100_000;
/// Longest URL, in bytes.
pub const MAX_URL_BYTES: usize = 2_000;
/// Random bytes of a generated secret (the spec asks for 24 to 64).
const SECRET_BYTES: usize = 32;
/// Longest overlap a rotation may ask for: 30 days, in seconds.
pub const MAX_OVERLAP_SECS: u64 = 30 * 24 * 60 * 60;
/// The payload a "send test" renders when none is given.
pub const SAMPLE_PAYLOAD: &str =
    r#"{"type": "clarion.test", "endpoint": {{ extra.endpoint.name }}, "contact": {{ contact }}}"#;
/// Longest body excerpt a "send test" answers with, in characters.
const EXCERPT_CHARS: usize = 2_000;
/// Longest a "send test" waits for the receiver, whatever the endpoint's timeout: the
/// answer goes to a person waiting for it.
const SEND_TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A new endpoint as written.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    /// Unique in the workspace, 1 to 100 characters, not only digits (campaign variants name
    /// an endpoint by name or id).
    #[schema(min_length = 1, max_length = 100, example = "crm")]
    pub name: String,
    /// Where deliveries are POSTed: http or https, no credentials, a host the webhook target
    /// policy allows.
    #[schema(example = "https://hooks.example.com/clarion")]
    pub url: String,
    /// Extra headers sent with every delivery, name to value (e.g. an API key the receiver
    /// expects). Headers Clarion sets itself and hop-by-hop headers are refused.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deliveries per second to this endpoint across all workers; 0 for no limit.
    #[serde(default)]
    #[schema(maximum = 100_000)]
    pub rate_limit_per_second: u32,
    /// Limit of one request, connecting to reading the answer, in milliseconds (100 to
    /// 60000); `webhook.timeout_ms` when left out.
    #[serde(default)]
    #[schema(minimum = 100, maximum = 60_000)]
    pub timeout_ms: Option<u64>,
    /// A disabled endpoint keeps its deliveries waiting until it is enabled again.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Changes to an endpoint; fields left out keep their value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    pub url: Option<String>,
    /// Replaces all extra headers.
    pub headers: Option<BTreeMap<String, String>>,
    #[schema(maximum = 100_000)]
    pub rate_limit_per_second: Option<u32>,
    #[schema(minimum = 100, maximum = 60_000)]
    pub timeout_ms: Option<u64>,
    pub enabled: Option<bool>,
}

/// How an endpoint's deliveries went, added to by the delivery workers once per batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EndpointResults {
    /// Deliveries the receiver accepted (2xx).
    pub successes: i64,
    /// Attempts that failed, retried ones included.
    pub failures: i64,
    /// Why the latest failed attempt failed.
    pub last_error: Option<String>,
    /// The HTTP status of the latest attempt the receiver answered.
    pub last_status_code: Option<u16>,
    /// When the latest batch of deliveries to this endpoint finished.
    pub last_at: Option<Timestamp>,
}

/// A stored endpoint, without its secret (which is shown only when created or rotated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Endpoint {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// 0 for no limit.
    pub rate_limit_per_second: u32,
    pub timeout_ms: u64,
    pub enabled: bool,
    /// While a secret rotation overlaps: when the previous secret stops signing.
    pub rotation_ends_at: Option<Timestamp>,
    pub results: EndpointResults,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An endpoint with its new secret: the answer to a create or a rotation, the only time the
/// secret is shown. Debug output hides the secret.
#[derive(Clone, Serialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// The signing secret, `whsec_` + base64 of 32 random bytes: give it to the receiver now,
    /// it is not shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwU1h0Y2hNb3Jl")]
    pub secret: String,
}

impl fmt::Debug for EndpointWithSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointWithSecret")
            .field("endpoint", &self.endpoint)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The optional body of a rotation.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the previous secret keeps signing, in seconds (0 to 2592000);
    /// `webhook.rotation_overlap_secs` when left out.
    #[schema(maximum = 2_592_000)]
    pub overlap_secs: Option<u64>,
}

/// The optional body of a "send test".
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// The external id of the contact to render the payload for; a sample contact when left
    /// out.
    pub contact: Option<String>,
    /// The payload template (as in a campaign's webhook variant; `extra.endpoint` holds the
    /// endpoint's id and name); a sample event naming the endpoint and the contact when left
    /// out.
    pub payload: Option<String>,
}

/// What the endpoint answered to a "send test".
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestResult {
    /// Whether the receiver accepted it (2xx).
    pub delivered: bool,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// From sending to reading the answer, in milliseconds.
    pub latency_ms: u64,
    /// The start of the receiver's answer (up to 2,000 characters).
    pub body_excerpt: String,
    /// Why it was not delivered.
    pub error: Option<String>,
    /// The `webhook-id` it was sent with.
    pub webhook_id: String,
    /// The rendered payload that was sent.
    #[schema(value_type = Object)]
    pub payload: Json,
}

/// The settings endpoints fall back on (from `[webhook]`).
#[derive(Debug, Clone, Copy)]
pub struct EndpointDefaults {
    /// `webhook.timeout_ms`.
    pub timeout_ms: u64,
    /// `webhook.rotation_overlap_secs`.
    pub rotation_overlap_secs: u64,
}

/// How a request or a campaign variant names an endpoint: by id (digits) or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndpointRef {
    Id(i64),
    Name(String),
}

impl EndpointRef {
    /// Digits are an id, anything else a name (names cannot be only digits).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        match text.parse::<i64>() {
            Ok(id) if text.bytes().all(|b| b.is_ascii_digit()) => Self::Id(id),
            _ => Self::Name(text.to_owned()),
        }
    }

    fn condition(&self) -> SimpleExpr {
        match self {
            Self::Id(id) => Expr::col("id").eq(*id),
            Self::Name(name) => Expr::col("name").eq(name.as_str()),
        }
    }
}

impl fmt::Display for EndpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "webhook endpoint {id}"),
            Self::Name(name) => write!(f, "webhook endpoint {name:?}"),
        }
    }
}

/// An endpoint as a delivery worker sends to it.
#[derive(Debug, Clone)]
pub struct SendTarget {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The current secret, and the previous one while a rotation overlaps.
    pub signing: Arc<SigningKeys>,
    pub timeout: Duration,
    /// Deliveries per second; `None` for no limit.
    pub rate_limit: Option<u32>,
    pub enabled: bool,
}

impl SendTarget {
    /// The message of one delivery to this endpoint: its extra headers first, the variant's
    /// own headers replacing any of the same name.
    #[must_use]
    pub fn message(
        &self,
        webhook_id: String,
        body: Vec<u8>,
        variant_headers: Vec<(String, String)>,
    ) -> WebhookMessage {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| {
                !variant_headers
                    .iter()
                    .any(|(own, _)| own.eq_ignore_ascii_case(name))
            })
            .cloned()
            .collect();
        headers.extend(variant_headers);
        WebhookMessage {
            url: self.url.clone(),
            webhook_id,
            body,
            headers,
            signing: Some(Arc::clone(&self.signing)),
            timeout: Some(self.timeout),
        }
    }
}

/// What one batch of deliveries did at one endpoint, written with one UPDATE.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub successes: i64,
    pub failures: i64,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
}

/// Creates an endpoint with a new secret; the answer is the only time the secret is shown.
///
/// # Errors
/// [`CampaignError::Invalid`] naming each bad field (nothing is stored),
/// [`CampaignError::Conflict`] when the name is taken.
#[tracing::instrument(skip_all, fields(workspace = workspace.0))]
pub async fn create(
    db: &DatabaseConnection,
    sender: &WebhookSender,
    defaults: EndpointDefaults,
    workspace: WorkspaceId,
    input: &EndpointInput,
) -> Result<EndpointWithSecret, CampaignError> {
    let mut issues = Vec::new();
    let name = check_name(&input.name, &mut issues);
    check_headers(&input.headers, &mut issues);
    check_limits(
        Some(input.rate_limit_per_second),
        input.timeout_ms,
        &mut issues,
    );
    check_url(sender, &input.url, &mut issues).await;
    if !issues.is_empty() {
        return Err(CampaignError::Invalid(issues));
    }
    let secret = generate_secret();
    let now = Timestamp::now().millis();
    let insert = Query::insert()
        .into_table("webhook_endpoints")
        .columns([
            "workspace_id",
            "name",
            "url",
            "secret",
            "headers",
            "rate_per_second",
            "timeout_ms",
            "enabled",
            "successes",
            "failures",
            "created_at",
            "updated_at",
        ])
        .values([
            workspace.0.into(),
            name.clone().into(),
            input.url.trim().into(),
            secret.clone().into(),
            headers_json(&input.headers).into(),
            i64::from(input.rate_limit_per_second).into(),
            timeout_value(input.timeout_ms.unwrap_or(defaults.timeout_ms)).into(),
            input.enabled.into(),
            0i64.into(),
            0i64.into(),
            now.into(),
            now.into(),
        ])
        .map_err(|error| DbErr::Custom(error.to_string()))?
        .returning_col("id")
        .to_owned();
    let row = db
        .query_one(&insert)
        .await
        .map_err(|error| name_taken(error, &name))?;
    let id: i64 = row
        .ok_or_else(|| CampaignError::Corrupt("the endpoint insert returned no id".into()))?
        .try_get("", "id")?;
    let endpoint = get(db, workspace, &EndpointRef::Id(id))
        .await?
        .ok_or_else(|| CampaignError::NotFound(EndpointRef::Id(id).to_string()))?;
    tracing::info!(endpoint = id, "webhook endpoint created");
    Ok(EndpointWithSecret { endpoint, secret })
}

/// Every endpoint of the workspace, by id.
///
/// # Errors
/// Database failures.
pub async fn list(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<Vec<Endpoint>, CampaignError> {
    let select = base_select(workspace).order_by("id", Order::Asc).to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(endpoint_of)
        .collect()
}

/// One endpoint.
///
/// # Errors
/// Database failures.
pub async fn get(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    key: &EndpointRef,
) -> Result<Option<Endpoint>, CampaignError> {
    let select = base_select(workspace).and_where(key.condition()).to_owned();
    db.query_one(&select)
        .await?
        .as_ref()
        .map(endpoint_of)
        .transpose()
}

/// Changes an endpoint; a new URL is checked like a new endpoint's.
///
/// # Errors
/// [`CampaignError::NotFound`], [`CampaignError::Invalid`] naming each bad field (nothing is
/// changed), [`CampaignError::Conflict`] when the new name is taken.
#[tracing::instrument(skip_all, fields(workspace = workspace.0))]
pub async fn update(
    db: &DatabaseConnection,
    sender: &WebhookSender,
    workspace: WorkspaceId,
    key: &EndpointRef,
    patch: &EndpointPatch,
) -> Result<Endpoint, CampaignError> {
    let mut issues = Vec::new();
    let name = patch
        .name
        .as_deref()
        .map(|name| check_name(name, &mut issues));
    if let Some(headers) = &patch.headers {
        check_headers(headers, &mut issues);
    }
    check_limits(patch.rate_limit_per_second, patch.timeout_ms, &mut issues);
    if let Some(url) = &patch.url {
        check_url(sender, url, &mut issues).await;
    }
    if !issues.is_empty() {
        return Err(CampaignError::Invalid(issues));
    }
    let mut update = Query::update();
    update
        .table("webhook_endpoints")
        .value("updated_at", Timestamp::now().millis())
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(key.condition());
    if let Some(name) = &name {
        update.value("name", name.as_str());
    }
    if let Some(url) = &patch.url {
        update.value("url", url.trim());
    }
    if let Some(headers) = &patch.headers {
        update.value("headers", headers_json(headers));
    }
    if let Some(rate) = patch.rate_limit_per_second {
        update.value("rate_per_second", i64::from(rate));
    }
    if let Some(timeout) = patch.timeout_ms {
        update.value("timeout_ms", timeout_value(timeout));
    }
    if let Some(enabled) = patch.enabled {
        update.value("enabled", enabled);
    }
    let changed = db
        .execute(&update)
        .await
        .map_err(|error| name_taken(error, name.as_deref().unwrap_or_default()))?;
    if changed.rows_affected() == 0 {
        return Err(CampaignError::NotFound(key.to_string()));
    }
    let renamed = match &name {
        Some(name) => EndpointRef::Name(name.clone()),
        None => key.clone(),
    };
    get(db, workspace, &renamed)
        .await?
        .ok_or_else(|| CampaignError::NotFound(key.to_string()))
}

/// Deletes an endpoint. Deliveries of launched campaigns that still name it fail with that
/// reason.
///
/// # Errors
/// [`CampaignError::NotFound`].
pub async fn delete(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    key: &EndpointRef,
) -> Result<(), CampaignError> {
    let delete = Query::delete()
        .from_table("webhook_endpoints")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(key.condition())
        .to_owned();
    if db.execute(&delete).await?.rows_affected() == 0 {
        return Err(CampaignError::NotFound(key.to_string()));
    }
    Ok(())
}

/// Gives an endpoint a new secret. The one it replaces keeps signing for `overlap` (or until
/// [`finish_rotation`]); a secret older than that stops at once.
///
/// # Errors
/// [`CampaignError::NotFound`], [`CampaignError::Invalid`] for an overlap over 30 days.
#[tracing::instrument(skip_all, fields(workspace = workspace.0))]
pub async fn rotate_secret(
    db: &DatabaseConnection,
    defaults: EndpointDefaults,
    workspace: WorkspaceId,
    key: &EndpointRef,
    request: &RotateRequest,
) -> Result<EndpointWithSecret, CampaignError> {
    let overlap = request
        .overlap_secs
        .unwrap_or(defaults.rotation_overlap_secs);
    if overlap > MAX_OVERLAP_SECS {
        return Err(CampaignError::Invalid(vec![field_issue(
            "overlap_secs",
            format!("must be at most {MAX_OVERLAP_SECS} seconds (30 days), not {overlap}"),
        )]));
    }
    let secret = generate_secret();
    let now = Timestamp::now().millis();
    let until = now.saturating_add(i64::try_from(overlap.saturating_mul(1000)).unwrap_or(i64::MAX));
    let txn = begin_write(db).await?;
    let current = Query::select()
        .column("secret")
        .from("webhook_endpoints")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(key.condition())
        .to_owned();
    let Some(row) = txn.query_one(&current).await? else {
        return Err(CampaignError::NotFound(key.to_string()));
    };
    let previous: String = row.try_get("", "secret")?;
    let (previous, until) = if overlap == 0 {
        (None, None)
    } else {
        (Some(previous), Some(until))
    };
    let update = Query::update()
        .table("webhook_endpoints")
        .value("secret", secret.as_str())
        .value("previous_secret", previous)
        .value("previous_until", until)
        .value("updated_at", now)
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(key.condition())
        .to_owned();
    txn.execute(&update).await?;
    let endpoint = get(&txn, workspace, key)
        .await?
        .ok_or_else(|| CampaignError::NotFound(key.to_string()))?;
    txn.commit().await?;
    tracing::info!(
        endpoint = endpoint.id,
        overlap_secs = overlap,
        "webhook endpoint secret rotated"
    );
    Ok(EndpointWithSecret { endpoint, secret })
}

/// Ends a rotation now: the previous secret stops signing.
///
/// # Errors
/// [`CampaignError::NotFound`].
pub async fn finish_rotation(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    key: &EndpointRef,
) -> Result<Endpoint, CampaignError> {
    let update = Query::update()
        .table("webhook_endpoints")
        .value("previous_secret", Option::<String>::None)
        .value("previous_until", Option::<i64>::None)
        .value("updated_at", Timestamp::now().millis())
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(key.condition())
        .to_owned();
    if db.execute(&update).await?.rows_affected() == 0 {
        return Err(CampaignError::NotFound(key.to_string()));
    }
    get(db, workspace, key)
        .await?
        .ok_or_else(|| CampaignError::NotFound(key.to_string()))
}

/// "Send test": renders `request.payload` (or [`SAMPLE_PAYLOAD`]) for the chosen contact (or
/// a sample one), POSTs it signed to the endpoint as a delivery would be (extra headers,
/// timeout, both signatures during a rotation, the target policy with DNS checked), and says
/// what the receiver answered, waiting at most 10 s (or the endpoint's shorter timeout). The
/// endpoint's results are not changed, and a disabled endpoint can be tested.
///
/// # Errors
/// [`CampaignError::NotFound`] for the endpoint or the contact, [`CampaignError::Invalid`]
/// for a payload template that does not compile or render.
#[tracing::instrument(skip_all, fields(workspace = workspace.0))]
pub async fn send_test(
    db: &DatabaseConnection,
    sender: &WebhookSender,
    tracker: &Tracker,
    workspace: WorkspaceId,
    key: &EndpointRef,
    request: &TestRequest,
) -> Result<TestResult, CampaignError> {
    let targets = targets(db, workspace, std::slice::from_ref(key)).await?;
    let target = targets
        .get(key)
        .ok_or_else(|| CampaignError::NotFound(key.to_string()))?;
    let (contact_value, contact_id, recipient) = match &request.contact {
        Some(external_id) => {
            let found = contacts::by_external_ids(db, workspace, std::slice::from_ref(external_id))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| CampaignError::NotFound(format!("contact {external_id:?}")))?;
            (found.value, found.id.to_string(), found.recipient)
        }
        None => (
            json!({"external_id": "sample", "email": "sample@example.com", "first_name": "Sam",
                   "last_name": "Sample", "attributes": {}, "traits": {}}),
            "0".to_owned(),
            Recipient::fallback(),
        ),
    };
    let content = WebhookContent {
        payload: request
            .payload
            .clone()
            .unwrap_or_else(|| SAMPLE_PAYLOAD.to_owned()),
        headers: Vec::new(),
    };
    let template_issue =
        |message: String| CampaignError::Invalid(vec![field_issue("payload", message)]);
    let compiled = Engine::default()
        .compile_webhook(&content)
        .map_err(|error| template_issue(error.to_string()))?;
    let ctx = RenderContext::new(
        &contact_value,
        &json!({"id": 0, "slug": "send-test", "name": "Send test"}),
        &json!({"id": 0, "name": "Send test", "goal": {"event": "none", "window_hours": 0}}),
        recipient,
    )
    .with_extra(&json!({"endpoint": {"id": target.id, "name": target.name}}));
    let webhook_id = format!("msg_test_{}", uuid_like());
    let tracking = MessageTracking::new(tracker, &webhook_id, &contact_id);
    let rendered = compiled
        .render(&ctx, &tracking)
        .map_err(|error| template_issue(error.to_string()))?;
    let mut message = target.message(webhook_id.clone(), rendered.body.into_bytes(), Vec::new());
    message.timeout = Some(target.timeout.min(SEND_TEST_TIMEOUT));
    let attempt = sender.attempt(&message).await;
    let excerpt = String::from_utf8_lossy(&attempt.body);
    Ok(TestResult {
        delivered: attempt.result.is_ok(),
        status_code: attempt.status,
        latency_ms: u64::try_from(attempt.elapsed.as_millis()).unwrap_or(u64::MAX),
        body_excerpt: excerpt.chars().take(EXCERPT_CHARS).collect(),
        error: attempt.result.err().map(|error| error.reason().to_owned()),
        webhook_id,
        payload: rendered.payload,
    })
}

/// The endpoints `refs` name, as delivery workers send to them, keyed by the reference that
/// found them; references to nothing are left out. One query.
///
/// # Errors
/// Database failures; [`CampaignError::Corrupt`] for a stored secret that does not parse.
pub async fn targets(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    refs: &[EndpointRef],
) -> Result<HashMap<EndpointRef, Arc<SendTarget>>, CampaignError> {
    if refs.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<i64> = refs
        .iter()
        .filter_map(|r| match r {
            EndpointRef::Id(id) => Some(*id),
            EndpointRef::Name(_) => None,
        })
        .collect();
    let names: Vec<String> = refs
        .iter()
        .filter_map(|r| match r {
            EndpointRef::Name(name) => Some(name.clone()),
            EndpointRef::Id(_) => None,
        })
        .collect();
    let select = Query::select()
        .columns([
            "id",
            "name",
            "url",
            "secret",
            "previous_secret",
            "previous_until",
            "headers",
            "rate_per_second",
            "timeout_ms",
            "enabled",
        ])
        .from("webhook_endpoints")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(
            Expr::col("id")
                .is_in(ids)
                .or(Expr::col("name").is_in(names)),
        )
        .to_owned();
    let now = Timestamp::now().millis();
    let mut found = HashMap::new();
    for row in db.query_all(&select).await? {
        let target = Arc::new(target_of(&row, now)?);
        found.insert(EndpointRef::Id(target.id), Arc::clone(&target));
        found.insert(EndpointRef::Name(target.name.clone()), target);
    }
    found.retain(|key, _| refs.contains(key));
    Ok(found)
}

/// Adds one batch's results to each endpoint's, one UPDATE per endpoint.
///
/// # Errors
/// Database failures.
pub async fn record_results(
    db: &impl ConnectionTrait,
    tallies: &HashMap<i64, Tally>,
) -> Result<(), DbErr> {
    let now = Timestamp::now().millis();
    for (id, tally) in tallies {
        let mut update = Query::update();
        update
            .table("webhook_endpoints")
            .value("successes", Expr::col("successes").add(tally.successes))
            .value("failures", Expr::col("failures").add(tally.failures))
            .value("last_at", now)
            .and_where(Expr::col("id").eq(*id));
        if let Some(error) = &tally.last_error {
            update.value("last_error", truncate(error, 1_000));
        }
        if let Some(status) = tally.last_status {
            update.value("last_status", i32::from(status));
        }
        db.execute(&update).await?;
    }
    Ok(())
}

/// Checks that every endpoint named by a campaign's variants exists; `named` holds the path
/// of each variant, its name and the reference.
///
/// # Errors
/// Database failures.
pub(crate) async fn check_references(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    named: &[(String, String, String)],
    issues: &mut Vec<Issue>,
) -> Result<(), CampaignError> {
    if named.is_empty() {
        return Ok(());
    }
    let refs: Vec<EndpointRef> = named
        .iter()
        .map(|(_, _, r)| EndpointRef::parse(r))
        .collect();
    let found = targets(db, workspace, &refs).await?;
    for ((path, variant, reference), key) in named.iter().zip(&refs) {
        if !found.contains_key(key) {
            issues.push(Issue::in_variant(
                path,
                variant,
                "webhook.endpoint",
                format!(
                    "there is no webhook endpoint {reference:?} in this workspace (name one by id or name, or leave it out for sending.webhook_url)"
                ),
            ));
        }
    }
    Ok(())
}

fn base_select(workspace: WorkspaceId) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .columns([
            "id",
            "name",
            "url",
            "headers",
            "rate_per_second",
            "timeout_ms",
            "enabled",
            "previous_until",
            "successes",
            "failures",
            "last_error",
            "last_status",
            "last_at",
            "created_at",
            "updated_at",
        ])
        .from("webhook_endpoints")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned()
}

fn endpoint_of(row: &QueryResult) -> Result<Endpoint, CampaignError> {
    let now = Timestamp::now().millis();
    let previous_until: Option<i64> = row.try_get("", "previous_until")?;
    let last_status: Option<i32> = row.try_get("", "last_status")?;
    let last_at: Option<i64> = row.try_get("", "last_at")?;
    Ok(Endpoint {
        id: row.try_get("", "id")?,
        name: row.try_get("", "name")?,
        url: row.try_get("", "url")?,
        headers: parse_headers(&row.try_get::<String>("", "headers")?)?,
        rate_limit_per_second: u32::try_from(row.try_get::<i64>("", "rate_per_second")?)
            .unwrap_or(0),
        timeout_ms: u64::try_from(row.try_get::<i64>("", "timeout_ms")?).unwrap_or(0),
        enabled: row.try_get("", "enabled")?,
        rotation_ends_at: previous_until
            .filter(|until| *until > now)
            .map(Timestamp::from_millis),
        results: EndpointResults {
            successes: row.try_get("", "successes")?,
            failures: row.try_get("", "failures")?,
            last_error: row.try_get("", "last_error")?,
            last_status_code: last_status.and_then(|s| u16::try_from(s).ok()),
            last_at: last_at.map(Timestamp::from_millis),
        },
        created_at: Timestamp::from_millis(row.try_get("", "created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("", "updated_at")?),
    })
}

fn target_of(row: &QueryResult, now: i64) -> Result<SendTarget, CampaignError> {
    let id: i64 = row.try_get("", "id")?;
    let secret = |text: &str| {
        WebhookSecret::parse(text).map_err(|_| {
            CampaignError::Corrupt(format!(
                "the secret of webhook endpoint {id} does not parse"
            ))
        })
    };
    let current = secret(&row.try_get::<String>("", "secret")?)?;
    let previous_until: Option<i64> = row.try_get("", "previous_until")?;
    let previous = match row.try_get::<Option<String>>("", "previous_secret")? {
        Some(text) if previous_until.is_some_and(|until| until > now) => Some(secret(&text)?),
        _ => None,
    };
    let rate: i64 = row.try_get("", "rate_per_second")?;
    Ok(SendTarget {
        id,
        name: row.try_get("", "name")?,
        url: row.try_get("", "url")?,
        headers: parse_headers(&row.try_get::<String>("", "headers")?)?
            .into_iter()
            .collect(),
        signing: Arc::new(SigningKeys::rotating(current, previous)),
        timeout: Duration::from_millis(
            u64::try_from(row.try_get::<i64>("", "timeout_ms")?).unwrap_or(0),
        ),
        rate_limit: u32::try_from(rate).ok().filter(|rate| *rate > 0),
        enabled: row.try_get("", "enabled")?,
    })
}

fn parse_headers(text: &str) -> Result<BTreeMap<String, String>, CampaignError> {
    serde_json::from_str(text)
        .map_err(|error| CampaignError::Corrupt(format!("stored endpoint headers: {error}")))
}

fn headers_json(headers: &BTreeMap<String, String>) -> String {
    Json::from(
        headers
            .iter()
            .map(|(name, value)| (name.clone(), Json::from(value.as_str())))
            .collect::<serde_json::Map<_, _>>(),
    )
    .to_string()
}

fn timeout_value(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// `whsec_` + base64 of fresh random bytes.
fn generate_secret() -> String {
    let key: [u8; SECRET_BYTES] = rand::random();
    format!("whsec_{}", BASE64.encode(key))
}

/// A random id for a test message.
fn uuid_like() -> String {
    let bytes: [u8; 12] = rand::random();
    hex_lower(&bytes)
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn field_issue(field: &str, message: impl Into<String>) -> Issue {
    Issue {
        path: field.to_owned(),
        variant: None,
        field: Some(field.to_owned()),
        line: None,
        column: None,
        message: message.into(),
    }
}

fn check_name(name: &str, issues: &mut Vec<Issue>) -> String {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        issues.push(field_issue(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters, not {chars}"),
        ));
    } else if name.bytes().all(|b| b.is_ascii_digit()) {
        issues.push(field_issue(
            "name",
            "must not be only digits: campaigns name endpoints by id or name",
        ));
    } else if name.chars().any(char::is_control) {
        issues.push(field_issue("name", "must not contain control characters"));
    }
    name.to_owned()
}

fn check_headers(headers: &BTreeMap<String, String>, issues: &mut Vec<Issue>) {
    if headers.len() > MAX_HEADERS {
        issues.push(field_issue(
            "headers",
            format!("at most {MAX_HEADERS} headers, not {}", headers.len()),
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in headers {
        let field = format!("headers.{name}");
        if let Err(reason) = check_extra_header(name, value) {
            issues.push(field_issue(&field, reason));
        } else if seen.contains(&name.to_ascii_lowercase()) {
            issues.push(field_issue(
                &field,
                "is given twice (header names are case-insensitive)",
            ));
        }
        seen.push(name.to_ascii_lowercase());
    }
}

fn check_limits(rate: Option<u32>, timeout_ms: Option<u64>, issues: &mut Vec<Issue>) {
    if let Some(rate) = rate
        && rate > MAX_RATE_PER_SECOND
    {
        issues.push(field_issue(
            "rate_limit_per_second",
            format!("must be 0 (no limit) to {MAX_RATE_PER_SECOND}, not {rate}"),
        ));
    }
    if let Some(timeout) = timeout_ms
        && !TIMEOUT_RANGE_MS.contains(&timeout)
    {
        issues.push(field_issue(
            "timeout_ms",
            format!(
                "must be {} to {} milliseconds, not {timeout}",
                TIMEOUT_RANGE_MS.start(),
                TIMEOUT_RANGE_MS.end()
            ),
        ));
    }
}

/// The URL as a delivery would check it, its host resolved now: http(s), no credentials, no
/// forbidden address.
async fn check_url(sender: &WebhookSender, url: &str, issues: &mut Vec<Issue>) {
    let url = url.trim();
    if url.is_empty() || url.len() > MAX_URL_BYTES {
        issues.push(field_issue(
            "url",
            format!("must be an http(s) URL of 1 to {MAX_URL_BYTES} bytes"),
        ));
        return;
    }
    if let Err(error) = sender.check_target(url).await {
        issues.push(field_issue("url", error.reason()));
    }
}

fn name_taken(error: DbErr, name: &str) -> CampaignError {
    if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        CampaignError::Conflict(format!(
            "a webhook endpoint named {name:?} exists already in this workspace"
        ))
    } else {
        CampaignError::Db(error)
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}
