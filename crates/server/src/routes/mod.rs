//! HTTP routes. [`configure`] registers them all; `main` and the tests use the same function.

pub mod campaigns;
pub mod contacts;
pub mod crosstab;
pub mod docs;
pub mod events;
pub mod health;
pub mod kpi;
pub mod providers;
pub mod schedules;
pub mod segments;
pub mod senders;
pub mod sending;
pub mod settings;
pub mod spend;
pub mod suggest;
pub mod suppressions;
pub mod templates;
pub mod tracking;
pub mod traits;
pub mod triggers;
pub mod waves;
pub mod webhook_endpoints;

use actix_web::web;
use clarion_model::{ErrorCode, ExternalId};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use utoipa::IntoParams;

use clarion_contacts::ItemError;

use crate::error::{ApiError, describe_json_error};

/// Registers every route: health, metrics, the tracking links of messages (`/t/...`) and
/// the email providers' webhooks (`/webhooks/...`) at the root, the documentation under
/// `/api`, the REST API under `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    tracking::configure(cfg);
    providers::configure(cfg);
    docs::configure(cfg);
    crate::dashboard::configure(cfg);
    cfg.service(
        web::scope("/api/v1")
            .configure(contacts::configure)
            .configure(events::configure)
            .configure(crosstab::configure)
            .configure(suggest::configure)
            .configure(segments::configure)
            .configure(campaigns::configure)
            .configure(sending::configure)
            .configure(suppressions::configure)
            .configure(schedules::configure)
            .configure(waves::configure)
            .configure(triggers::configure)
            .configure(senders::configure)
            .configure(templates::configure)
            .configure(traits::configure)
            .configure(webhook_endpoints::configure)
            .configure(kpi::configure)
            .configure(spend::configure)
            .configure(settings::configure),
    );
}

/// Query parameters of batch endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BatchQuery {
    /// Store nothing when any item is refused (default: store the valid items and report the
    /// rest).
    #[serde(default)]
    pub atomic: bool,
}

/// The items of a batch that parsed, with their positions, and why the others did not.
pub(crate) type ParsedBatch<T> = (Vec<(usize, T)>, Vec<ItemError>);

/// Parses each item of a batch on its own, so one bad item costs only itself. Refuses the
/// whole batch when it holds more items than allowed.
pub(crate) fn parse_batch<T: DeserializeOwned>(
    raw: &[Box<RawValue>],
    max_batch: usize,
    noun: &str,
) -> Result<ParsedBatch<T>, ApiError> {
    if raw.len() > max_batch {
        return Err(ApiError::new(
            ErrorCode::BatchTooLarge,
            format!(
                "a batch may hold at most {max_batch} {noun}; this one holds {}: split it",
                raw.len()
            ),
        ));
    }
    let mut items = Vec::with_capacity(raw.len());
    let mut errors = Vec::new();
    for (index, item) in raw.iter().enumerate() {
        let mut deserializer = serde_json::Deserializer::from_str(item.get());
        match serde_path_to_error::deserialize(&mut deserializer) {
            Ok(value) => items.push((index, value)),
            Err(error) => errors.push(ItemError::from_serde(index, error)),
        }
    }
    Ok((items, errors))
}

/// Reads a JSON body into `T`; a value of the wrong shape is a 422 naming its field (e.g.
/// `category: unknown variant "lifestyle", expected one of ...`, or `targets[0].name:
/// missing field`). `body` is JSON already (the `Json<Box<RawValue>>` extractor answered 400
/// otherwise), so every failure here is the caller's value, never the syntax.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    require_object(body)?;
    let mut value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, describe_json_error(&e)))?;
    whole_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let item = ItemError::from_serde(0, error);
        ApiError::invalid_field(item.field.as_deref().unwrap_or_default(), item.message)
    })
}

/// JSON does not tell `7` from `7.0`, and the OpenAPI document calls both an integer; serde
/// reads only the first into an integer field, so whole numbers are made integers first.
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float.abs() < 9.0e15
            {
                // Exact: a whole float below 2^53 converts without loss.
                *value = serde_json::Value::from(float as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(whole_numbers_as_integers)
        }
        _ => {}
    }
}

/// Reads a body that may be left out (empty or only whitespace), which means `T::default()`;
/// a body that is not JSON is a 400 (`invalid_json`).
pub(crate) fn parse_optional_body<T: Default + DeserializeOwned>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not UTF-8 JSON"))?;
    // Syntax first, on its own: serde_json reports some values of the wrong type (a number
    // for an enum) as syntax errors, and those are 422s, not 400s.
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, describe_json_error(&e)))?;
    parse_body(text)
}

/// Refuses a body that is not a JSON object: serde would read a struct from an array too
/// (`[null, null]` as the first two fields), which no documented body is.
pub(crate) fn require_object(body: &str) -> Result<(), ApiError> {
    if body.trim_start().starts_with('{') {
        return Ok(());
    }
    Err(ApiError::invalid_field(
        "",
        "the body must be a JSON object",
    ))
}

/// With `atomic`, any refused item refuses the whole batch.
pub(crate) fn refuse_if_atomic(errors: &[ItemError], atomic: bool) -> Result<(), ApiError> {
    if atomic && !errors.is_empty() {
        Err(refused_batch(errors.to_vec()))
    } else {
        Ok(())
    }
}

/// The items refused while parsing and those the store refused, in item order; with
/// `atomic`, a 422 when there are any (the store has then written nothing).
pub(crate) fn combine_refusals(
    mut parsed: Vec<ItemError>,
    mut stored: Vec<ItemError>,
    atomic: bool,
) -> Result<Vec<ItemError>, ApiError> {
    parsed.append(&mut stored);
    refuse_if_atomic(&parsed, atomic)?;
    parsed.sort_by_key(|e| e.index);
    Ok(parsed)
}

/// The answer to an atomic batch with refused items: 422 naming each one.
fn refused_batch(mut errors: Vec<ItemError>) -> ApiError {
    errors.sort_by_key(|e| e.index);
    ApiError::new(
        ErrorCode::ValidationFailed,
        format!(
            "{} item(s) of the batch were refused, so nothing was stored (atomic=true)",
            errors.len()
        ),
    )
    // Batch refusals list the items' own errors ({"index", "field", "message"}): the same
    // shape as every 422, with the index of the item.
    .with_details(serde_json::json!({ "errors": errors }))
}

/// Opaque page cursors: the key of the last item, its 8 bytes base64url-encoded, so that
/// every string of the documented pattern is a cursor and every other string is refused.
pub(crate) mod cursor {
    use base64::Engine as _;
    use utoipa::ToSchema;

    use crate::error::ApiError;
    use clarion_model::ErrorCode;

    /// A page cursor, as a page's `next_cursor` gives it out.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    #[schema(
        value_type = String,
        pattern = "^[A-Za-z0-9_-]{10}[AEIMQUYcgkosw048]$",
        example = "AAAAAAAAAGQ"
    )]
    pub struct Cursor(String);

    pub fn encode(id: i64) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_be_bytes())
    }

    pub fn decode(cursor: &str) -> Result<i64, ApiError> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(i64::from_be_bytes)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    "cursor is not one this API gave out",
                )
            })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn every_key_round_trips_and_other_text_is_refused() {
            for id in [0, 1, 100, i64::MAX, -5] {
                let text = super::encode(id);
                assert_eq!(text.len(), 11);
                assert_eq!(super::decode(&text).ok(), Some(id));
            }
            for bad in ["", "@@@", "MQ", "AAAAAAAAAAB", "AAAAAAAAAAAA"] {
                assert!(super::decode(bad).is_err(), "{bad}");
            }
        }
    }
}

/// Reads a contact's external id from the URL path; a malformed one is a 400.
pub(crate) fn external_id_in_path(path: &str) -> Result<ExternalId, ApiError> {
    ExternalId::parse(path).map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.to_string()))
}

/// Checks a page size: 1 to 1,000, 100 when left out.
pub(crate) fn page_limit(limit: Option<u64>) -> Result<u64, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n),
        Some(n) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and 1000, not {n}"),
        )),
    }
}
