//! Contacts as templates see them: the `contact` value of the render context and the
//! recipient's locale and time zone, read with the contact's computed traits in one query.
//!
//! The `contact` value holds the built-in fields (`external_id`, `email`, `first_name`,
//! `last_name`, `phone`, `locale`, `time_zone`, `country`, `region`, `city`, `created_at`),
//! `attributes` (the custom attributes), `subscriptions` (status per channel) and `traits`
//! (`orders`, `revenue`, `first_purchase_at`, `last_purchase_at`, `recency_days`,
//! `rfm_recency`, `rfm_frequency`, `rfm_monetary`, `rfm_segment`, `clv`; empty until the
//! contact's traits are computed; `recency_days` counts to the moment the contact is read). A field without a value is absent rather than null, so a
//! template printing it fails for that contact unless it gives a `default`.

use clarion_model::{ContactId, Timestamp, WorkspaceId};
use clarion_template::Recipient;
use sea_orm::{
    ConnectionTrait, DbErr, QueryResult,
    sea_query::{Expr, ExprTrait, JoinType, Order, Query, SelectStatement},
};
use serde_json::{Map, Value, json};

/// One contact, ready to render messages for.
#[derive(Debug, Clone)]
pub struct ContactData {
    /// Clarion's id, which assignment hashes.
    pub id: ContactId,
    /// The id the outside world knows the contact by.
    pub external_id: String,
    /// The `contact` value of the render context.
    pub value: Value,
    /// Locale and time zone for formatting; English and UTC when the contact has none or an
    /// unusable one.
    pub recipient: Recipient,
}

/// The contacts with these external ids, in the order asked; unknown ids are left out.
///
/// # Errors
/// Database failures.
pub async fn by_external_ids(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    external_ids: &[String],
) -> Result<Vec<ContactData>, DbErr> {
    if external_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut select = base_query(workspace);
    select.and_where(Expr::col(("c", "external_id")).is_in(external_ids.iter().cloned()));
    let mut found: Vec<ContactData> = db
        .query_all(&select)
        .await?
        .iter()
        .map(from_row)
        .collect::<Result<_, _>>()?;
    found.sort_by_key(|c| external_ids.iter().position(|e| *e == c.external_id));
    Ok(found)
}

/// The contacts with these ids, in id order; unknown ids are left out.
///
/// # Errors
/// Database failures.
pub async fn by_ids(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    ids: &[ContactId],
) -> Result<Vec<ContactData>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut select = base_query(workspace);
    select
        .and_where(Expr::col(("c", "id")).is_in(ids.iter().map(|id| id.0)))
        .order_by(("c", "id"), Order::Asc);
    db.query_all(&select).await?.iter().map(from_row).collect()
}

fn base_query(workspace: WorkspaceId) -> SelectStatement {
    let mut select = Query::select();
    select.columns(
        [
            "id",
            "external_id",
            "email",
            "phone",
            "first_name",
            "last_name",
            "locale",
            "time_zone",
            "country",
            "region",
            "city",
            "attributes",
            "email_status",
            "webhook_status",
            "created_at",
        ]
        .map(|c| ("c", c)),
    );
    select.columns(
        [
            "orders",
            "revenue",
            "first_purchase_at",
            "last_purchase_at",
            "rfm_segment",
            "clv",
        ]
        .map(|c| ("t", c)),
    );
    // SMALLINT on PostgreSQL: widened so both databases hand back a 64-bit integer.
    for score in ["rfm_recency", "rfm_frequency", "rfm_monetary"] {
        select.expr_as(Expr::cust(format!("CAST(t.{score} AS BIGINT)")), score);
    }
    select
        .from_as("contacts", "c")
        .join_as(
            JoinType::LeftJoin,
            "contact_traits",
            "t",
            Expr::col(("t", "contact_id")).equals(("c", "id")),
        )
        .and_where(Expr::col(("c", "workspace_id")).eq(workspace.0));
    select
}

fn from_row(row: &QueryResult) -> Result<ContactData, DbErr> {
    let mut contact = Map::new();
    let external_id: String = row.try_get("", "external_id")?;
    contact.insert("external_id".into(), json!(external_id));
    for field in [
        "email",
        "phone",
        "first_name",
        "last_name",
        "locale",
        "time_zone",
        "country",
        "region",
        "city",
    ] {
        if let Some(value) = row.try_get::<Option<String>>("", field)? {
            contact.insert(field.into(), json!(value));
        }
    }
    let attributes: Value = row.try_get("", "attributes")?;
    contact.insert(
        "attributes".into(),
        match attributes {
            Value::Object(map) => Value::Object(map),
            _ => Value::Object(Map::new()),
        },
    );
    contact.insert(
        "subscriptions".into(),
        json!({
            "email": row.try_get::<String>("", "email_status")?,
            "webhook": row.try_get::<String>("", "webhook_status")?,
        }),
    );
    contact.insert(
        "created_at".into(),
        json!(Timestamp::from_millis(row.try_get("", "created_at")?)),
    );

    let mut traits = Map::new();
    if let Some(orders) = row.try_get::<Option<i64>>("", "orders")? {
        traits.insert("orders".into(), json!(orders));
        for field in ["revenue", "clv"] {
            if let Some(v) = row.try_get::<Option<f64>>("", field)? {
                traits.insert(field.into(), json!(v));
            }
        }
        if let Some(last) = row.try_get::<Option<i64>>("", "last_purchase_at")? {
            traits.insert(
                "recency_days".into(),
                json!(clarion_segment::traits::recency_days(
                    last,
                    Timestamp::now()
                )),
            );
        }
        for field in ["first_purchase_at", "last_purchase_at"] {
            if let Some(v) = row.try_get::<Option<i64>>("", field)? {
                traits.insert(field.into(), json!(Timestamp::from_millis(v)));
            }
        }
        for field in ["rfm_recency", "rfm_frequency", "rfm_monetary"] {
            if let Some(v) = row.try_get::<Option<i64>>("", field)? {
                traits.insert(field.into(), json!(v));
            }
        }
        if let Some(v) = row.try_get::<Option<String>>("", "rfm_segment")? {
            traits.insert("rfm_segment".into(), json!(v));
        }
    }
    contact.insert("traits".into(), Value::Object(traits));

    let locale = contact
        .get("locale")
        .and_then(Value::as_str)
        .unwrap_or("en");
    let zone = contact
        .get("time_zone")
        .and_then(Value::as_str)
        .unwrap_or("UTC");
    let recipient = Recipient::new(locale, zone).unwrap_or_else(|_| Recipient::fallback());
    Ok(ContactData {
        id: ContactId(row.try_get("", "id")?),
        external_id,
        value: Value::Object(contact),
        recipient,
    })
}
