//! The one way the API answers an error: `{"code", "message", "details"}`, with the HTTP status
//! [`status`] gives the code. Domain errors carry their own code ([`Coded`]); they become
//! answers through [`ApiError::from_error`], and a 422 lists its problems in one shape,
//! `details: {"errors": [{"field" or "path", "message", ...}]}` ([`FieldError`]). A 500 says
//! nothing about internals; the cause goes to the log.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use clarion_model::{Coded, ErrorCode, FieldError};
use serde::Serialize;
use utoipa::ToSchema;

/// The HTTP status of each error code: the one table of the API.
pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidJson | ErrorCode::InvalidQuery => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge | ErrorCode::BatchTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::ValidationFailed | ErrorCode::InvalidRule | ErrorCode::QueryTimeout => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The `details` of an answer that lists problems.
#[derive(Debug, Serialize)]
struct Problems<'a> {
    errors: &'a [FieldError],
}

/// An error answer of the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// A stable machine-readable code, e.g. `validation_failed`.
    #[schema(value_type = String, example = "validation_failed")]
    #[serde(serialize_with = "code_str")]
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Per-item or per-field detail where there is some.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

fn code_str<S: serde::Serializer>(code: &ErrorCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(code.as_str())
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Adds `details` of any shape. Prefer [`ApiError::with_errors`], the shape every 422
    /// shares.
    pub fn with_details(mut self, details: impl Serialize) -> Self {
        self.details = serde_json::to_value(details).ok();
        self
    }

    /// Lists the problems as `details.errors`; no details when there are none.
    pub fn with_errors(self, errors: &[FieldError]) -> Self {
        if errors.is_empty() {
            self
        } else {
            self.with_details(Problems { errors })
        }
    }

    /// A 422 for one bad field of the request, e.g. `sample: must be 0 to 100, not 500`.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let error = FieldError::field(field, message);
        ApiError::new(ErrorCode::ValidationFailed, error.to_string())
            .with_errors(std::slice::from_ref(&error))
    }

    /// The answer to a domain error: its code, its message and its problems. An `internal`
    /// error answers a 500 that reveals nothing and logs the cause; an `unavailable` one says
    /// which dependency does not answer, unless it names the field concerned itself (a
    /// provider event another request is taking in).
    pub fn from_error<E: Coded + 'static>(error: &E) -> Self {
        match error.code() {
            ErrorCode::Internal => ApiError::internal(error),
            ErrorCode::Unavailable if error.details().is_empty() => unavailable(error),
            code => ApiError::new(code, error.to_string()).with_errors(&error.details()),
        }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} was not found"))
    }

    /// Logs the cause chain and answers a 500 that reveals nothing of it.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %cause_chain(cause), "request failed");
        ApiError::new(
            ErrorCode::Internal,
            "an internal error occurred; the server log has the details",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status(self.code)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self)
    }
}

/// Logs the cause and names the dependency that does not answer, without its error text.
fn unavailable(error: &(dyn std::error::Error + 'static)) -> ApiError {
    tracing::error!(error = %cause_chain(error), "a dependency is unavailable");
    let mut cause = Some(error);
    while let Some(current) = cause {
        if current.is::<sea_orm::DbErr>() {
            return ApiError::new(
                ErrorCode::Unavailable,
                "the database does not answer; try again shortly",
            );
        }
        cause = current.source();
    }
    ApiError::new(
        ErrorCode::Unavailable,
        "the job queue (Redis) does not answer; nothing was changed, try again",
    )
}

fn cause_chain(cause: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = cause.to_string();
    let mut source = cause.source();
    while let Some(inner) = source {
        chain.push_str(": ");
        chain.push_str(&inner.to_string());
        source = inner.source();
    }
    chain
}

/// `?` on a domain error in a handler: each answers through [`ApiError::from_error`].
macro_rules! from_coded {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for ApiError {
            fn from(error: $error) -> Self {
                ApiError::from_error(&error)
            }
        })*
    };
}

from_coded!(
    sea_orm::DbErr,
    clarion_model::ModelError,
    clarion_segment::SegmentError,
    clarion_campaign::CampaignError,
    clarion_template::TemplateError,
    clarion_contacts::ContactsError,
    clarion_contacts::contacts::PatchError,
    clarion_kpi::KpiError,
    crate::store::StoreError,
    clarion_campaign::providers::ProviderError,
    clarion_campaign::suppression::ImportError,
);

/// Maps the JSON body extractor's failures to API errors.
pub fn json_error(
    error: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &error {
        E::OverflowKnownLength { length, limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is {length} bytes; at most {limit} are accepted"),
        ),
        E::Overflow { limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than the {limit} bytes accepted"),
        ),
        E::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        ),
        E::Deserialize(inner) => ApiError::new(ErrorCode::InvalidJson, describe_json_error(inner)),
        _ => ApiError::new(ErrorCode::InvalidJson, error.to_string()),
    };
    api.into()
}

/// Maps query-string failures to API errors.
pub fn query_error(
    error: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::new(
        ErrorCode::InvalidQuery,
        format!("the query string is invalid: {error}"),
    )
    .into()
}

/// Maps path failures to API errors.
pub fn path_error(
    error: actix_web::error::PathError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::new(
        ErrorCode::InvalidQuery,
        format!("the path is invalid: {error}"),
    )
    .into()
}

/// A JSON error with its position, e.g. "expected `,` or `}` at line 3, column 7".
pub fn describe_json_error(error: &serde_json::Error) -> String {
    if error.is_syntax() || error.is_eof() {
        format!("the body is not valid JSON: {error}")
    } else {
        format!("the body does not have the expected shape: {error}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_has_a_distinct_name_and_an_error_status() {
        let names: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            let status = status(code);
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code}"
            );
        }
    }

    #[test]
    fn problems_share_one_shape() {
        let error = ApiError::invalid_field("name", "must be 1 to 200 characters");
        assert_eq!(error.message, "name: must be 1 to 200 characters");
        assert_eq!(
            error.details,
            Some(serde_json::json!({"errors": [
                {"field": "name", "message": "must be 1 to 200 characters"}
            ]}))
        );
    }
}
