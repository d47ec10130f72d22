use clarion_model::{Coded, ErrorCode, FieldError};

/// Everything that can go wrong with a KPI report or setting.
#[derive(Debug, thiserror::Error)]
pub enum KpiError {
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    /// What the report is about does not exist, e.g. `campaign 7`.
    #[error("{0} not found")]
    NotFound(String),
    /// The report cannot be made yet, e.g. a campaign that was never launched.
    #[error("{0}")]
    Conflict(String),
    /// A parameter of the request is out of range; `field` names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// CSV could not be written (only ever into memory, so a bug if it happens).
    #[error("CSV export failed: {0}")]
    Csv(String),
}

impl KpiError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        KpiError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl Coded for KpiError {
    fn code(&self) -> ErrorCode {
        match self {
            KpiError::Db(db) => db.code(),
            KpiError::Csv(_) => ErrorCode::Internal,
            KpiError::NotFound(_) => ErrorCode::NotFound,
            KpiError::Conflict(_) => ErrorCode::Conflict,
            KpiError::Invalid { .. } => ErrorCode::ValidationFailed,
        }
    }

    fn details(&self) -> Vec<FieldError> {
        match self {
            KpiError::Invalid { field, message } => vec![FieldError::field(field, message)],
            _ => Vec::new(),
        }
    }
}
