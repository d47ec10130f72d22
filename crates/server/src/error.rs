//! The one way the API answers an error: `{"code", "message", "details"}` with the status of
//! the code in [`ErrorCode`]. A 500 says nothing about internals; the cause goes to the log.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use clarion_model::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

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

    pub fn with_details(mut self, details: impl Serialize) -> Self {
        self.details = serde_json::to_value(details).ok();
        self
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} was not found"))
    }

    /// Logs the cause chain and answers a 500 that reveals nothing of it.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(inner) = source {
            chain.push_str(": ");
            chain.push_str(&inner.to_string());
            source = inner.source();
        }
        tracing::error!(error = %chain, "request failed");
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
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self)
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        match &error {
            sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => {
                tracing::error!(error = %error, "database unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the database does not answer; try again shortly",
                )
            }
            _ => ApiError::internal(&error),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Db(db) => db.into(),
            other => ApiError::internal(&other),
        }
    }
}

impl From<clarion_contacts::ContactsError> for ApiError {
    fn from(error: clarion_contacts::ContactsError) -> Self {
        match error {
            clarion_contacts::ContactsError::Db(db) => db.into(),
            other => ApiError::internal(&other),
        }
    }
}

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
