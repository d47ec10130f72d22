//! `GET /api/v1/contacts/{external_id}/traits`: what Clarion computed about one contact (RFM,
//! CLV, interests), as of the workspace's last trait computation.

use actix_web::{HttpResponse, web};
use clarion_model::{Role, Timestamp};
use clarion_segment::traits;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{auth::Caller, error::ApiError, state::AppState};
use clarion_contacts as store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/contacts/{external_id}/traits", web::get().to(get));
}

/// A contact's computed traits.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactTraits {
    pub external_id: String,
    /// When these values were last written: the later of the workspace's last computation
    /// (`clarion traits recompute` or the scheduler) and the last batch of events with this
    /// contact's purchases; `null` when neither happened yet.
    pub computed_at: Option<Timestamp>,
    /// `null` when the contact had no purchase at `computed_at`.
    pub purchases: Option<PurchaseTraits>,
    /// The contact's interest per product category, highest first; the scores add up to 1.
    /// Empty when no categorised event of a weighted kind was seen.
    pub interests: Vec<Interest>,
}

/// Orders, revenue and RFM of a contact with purchases, as of `computed_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurchaseTraits {
    /// Distinct orders (purchase events sharing an order id count once).
    pub orders: i64,
    /// Net revenue: purchases minus refunds.
    pub revenue: f64,
    pub first_purchase_at: Timestamp,
    pub last_purchase_at: Timestamp,
    /// Days from the last purchase to the moment of the request.
    pub recency_days: f64,
    pub rfm: Rfm,
    /// Historic customer lifetime value: the net revenue to date.
    pub clv: f64,
}

/// RFM quintiles among the workspace's buyers, 5 being best, and the named segment they make.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rfm {
    pub recency: i16,
    pub frequency: i16,
    pub monetary: i16,
    /// champions, loyal, potential_loyalists, new, promising, need_attention, about_to_sleep,
    /// at_risk, cannot_lose, hibernating or lost.
    #[schema(example = "champions")]
    pub segment: String,
}

/// One category of an interest profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct Interest {
    pub category: String,
    /// The category's share of the contact's decayed, weighted interest (0 to 1).
    pub score: f64,
}

/// A contact's RFM scores and segment, historic CLV and interest profile.
///
/// A batch of events with the contact's purchases or weighted events rewrites its traits and
/// interests before it answers (RFM scores placed against the last computation's score
/// bounds); the workspace's computation ranks everyone again. `recency_days` counts to
/// this moment.
#[utoipa::path(get, path = "/api/v1/contacts/{external_id}/traits", tag = "contacts",
    params(("external_id" = clarion_model::ExternalId, Path, description = "The contact's external id")),
    responses((status = 200, body = ContactTraits), (status = 400, body = ApiError),
        (status = 401, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(workspace = caller.workspace.0))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = super::external_id_in_path(&path)?;
    let contact = store::contacts::get(&state.db, caller.workspace, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("contact {:?}", id.as_str())))?;
    let computed =
        traits::for_contact(&state.db, caller.workspace, contact.id, Timestamp::now()).await?;
    Ok(HttpResponse::Ok().json(ContactTraits {
        external_id: id.as_str().to_string(),
        computed_at: computed.computed_at,
        purchases: computed.purchases.map(|p| PurchaseTraits {
            orders: p.orders,
            revenue: p.revenue,
            first_purchase_at: Timestamp::from_millis(p.first_purchase_at),
            last_purchase_at: Timestamp::from_millis(p.last_purchase_at),
            recency_days: p.recency_days,
            rfm: Rfm {
                recency: p.rfm_recency,
                frequency: p.rfm_frequency,
                monetary: p.rfm_monetary,
                segment: p.rfm_segment,
            },
            clv: p.clv,
        }),
        interests: computed
            .interests
            .into_iter()
            .map(|i| Interest {
                category: i.category,
                score: i.score,
            })
            .collect(),
    }))
}
