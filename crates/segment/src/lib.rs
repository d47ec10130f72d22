//! Segment rules for Clarion.
//!
//! A segment is a rule over contacts: attribute conditions, event conditions (performed,
//! count, sum/avg/min/max, first/last occurrence, in windows), computed traits, interests and
//! other segments, combined with `all`, `any` and `not`. A rule is read from JSON
//! ([`Rule::from_json`]) or from the compact text form ([`parse_text`]), checked against the
//! workspace's [`Schema`] ([`validate`]), compiled to one parameterized SQL query for SQLite
//! or PostgreSQL ([`compile`]), and run for a size or a page of members ([`preview`]).
//! The traits and interests rules use are computed by [`traits::recompute`]. Campaigns read
//! the current members of stored segments through [`members`]. Saved segments
//! keep their members materialized ([`membership`]): [`sweep::Memberships`] listens to
//! ingestion (`clarion_contacts::Ingest`) and updates the contacts a batch touched before the
//! batch answers, and [`sweep::sweep_all`] lets time windows expire. Saving a segment (naming,
//! checks, materializing its members and those of the segments using it) is [`save`].
//!
//! Every [`SegmentError`] carries its API error code ([`Coded`]), so the same problem answers
//! the same code from every endpoint.

pub mod compile;
pub mod crosstab;
pub mod members;
pub mod membership;
pub mod preview;
pub mod report;
pub mod rule;
pub mod save;
pub mod store;
pub mod suggest;
pub mod sweep;
pub mod traits;
pub mod validate;

use clarion_model::{Coded, ErrorCode, FieldError};

pub use compile::compile;
pub use crosstab::{Crosstab, CrosstabRequest, Dimension, crosstab};
pub use preview::{PreviewOptions, count, members};
pub use suggest::{SuggestOptions, Suggestion, suggest};
pub use traits::{TraitSettings, TraitSummary, recompute};
pub use validate::{Schema, ValidRule, validate, validate_segment};

pub use rule::{
    Aggregate, AttrCondition, Comparison, EventCondition, Literal, Measure, Op, Operand,
    PropertyFilter, Rule, Span, SpanUnit, TextError, Window, parse_text,
};

/// A problem with one node of a rule, named by its JSON path, e.g. `all[2].count.op`. The
/// root's path is empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", if path.is_empty() { "rule" } else { path.as_str() })]
pub struct RuleError {
    pub path: String,
    pub message: String,
}

/// Everything that can go wrong with a segment.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The JSON form could not be read.
    #[error("the rule is invalid: {0}")]
    Json(RuleError),
    /// The text form could not be read.
    #[error("the rule is invalid: {0}")]
    Text(#[from] TextError),
    /// The rule does not fit the workspace's schema.
    #[error("the rule is invalid: {}", list(.0))]
    Invalid(Vec<RuleError>),
    /// The rule uses a value Clarion does not compute. Traits and interests are computed now
    /// (see [`traits`]), so compilation no longer answers this; code elsewhere still maps it.
    #[error("{path}: {what} is not computed yet, so rules cannot use it")]
    NotYetComputed { path: String, what: String },
    /// A trait setting is out of range; `key` names it, e.g. `interests.half_life_days`.
    #[error("trait settings: {key}: {message}")]
    Settings { key: String, message: String },
    /// A request around rules (a cross-tab, a suggestion) has a bad field, named by its
    /// path, e.g. `rows.attr` or `filter.all[0].op`.
    #[error("{}", list(.0))]
    InvalidRequest(Vec<RuleError>),
    /// Suggestions need the traits (RFM, interests) computed first.
    #[error(
        "no contact of this workspace has computed traits yet: compute traits (RFM and interest profiles) first, then ask for suggestions"
    )]
    TraitsMissing,
    /// The clustering itself failed (its worker thread stopped).
    #[error("clustering failed: {0}")]
    Clustering(String),
    /// The query ran longer than the preview allows.
    #[error(
        "the segment query took longer than {} ms and was stopped; narrow the rule or raise segments.preview_timeout_ms",
        .0.as_millis()
    )]
    Timeout(std::time::Duration),
    /// The request conflicts with what is stored (a taken slug, a segment still in use).
    #[error("{0}")]
    Conflict(String),
    /// The segment does not exist in the workspace (any more).
    #[error("{0} was not found")]
    NotFound(String),
    /// A stored value could not be read back; the database was changed behind Clarion.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

impl Coded for SegmentError {
    fn code(&self) -> ErrorCode {
        match self {
            SegmentError::Json(_)
            | SegmentError::Text(_)
            | SegmentError::Invalid(_)
            | SegmentError::NotYetComputed { .. } => ErrorCode::InvalidRule,
            SegmentError::InvalidRequest(_) | SegmentError::TraitsMissing => {
                ErrorCode::ValidationFailed
            }
            SegmentError::Timeout(_) => ErrorCode::QueryTimeout,
            SegmentError::Conflict(_) => ErrorCode::Conflict,
            SegmentError::NotFound(_) => ErrorCode::NotFound,
            SegmentError::Db(db) => db.code(),
            // Trait settings come from the configuration, not from the request.
            SegmentError::Settings { .. }
            | SegmentError::Clustering(_)
            | SegmentError::Corrupt(_) => ErrorCode::Internal,
        }
    }

    fn details(&self) -> Vec<FieldError> {
        let nodes = |errors: &[RuleError]| {
            errors
                .iter()
                .map(|e| FieldError::path(&e.path, &e.message))
                .collect()
        };
        match self {
            SegmentError::Json(error) => nodes(std::slice::from_ref(error)),
            SegmentError::Invalid(errors) => nodes(errors),
            SegmentError::Text(error) => {
                vec![FieldError::path("", &error.message).at(Some(error.line), Some(error.column))]
            }
            SegmentError::NotYetComputed { path, what } => {
                vec![FieldError::path(
                    path,
                    format!("{what} is not computed yet"),
                )]
            }
            SegmentError::InvalidRequest(errors) => errors
                .iter()
                .map(|e| FieldError::field(&e.path, &e.message))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn list(errors: &[RuleError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_problems_name_their_node_and_request_problems_their_field() {
        let text = parse_text("age >>> 3").unwrap_err();
        let error = SegmentError::Text(text.clone());
        assert_eq!(error.code(), ErrorCode::InvalidRule);
        assert_eq!(
            error.details(),
            [FieldError::path("", &text.message).at(Some(text.line), Some(text.column))]
        );

        let node = RuleError {
            path: "all[1].attr".into(),
            message: "unknown attribute".into(),
        };
        let error = SegmentError::Invalid(vec![node.clone()]);
        assert_eq!(error.code(), ErrorCode::InvalidRule);
        assert_eq!(error.details()[0].path.as_deref(), Some("all[1].attr"));

        let error = SegmentError::InvalidRequest(vec![node]);
        assert_eq!(error.code(), ErrorCode::ValidationFailed);
        assert_eq!(error.details()[0].field.as_deref(), Some("all[1].attr"));
        assert_eq!(error.to_string(), "all[1].attr: unknown attribute");

        let error = SegmentError::Timeout(std::time::Duration::from_millis(250));
        assert_eq!(error.code(), ErrorCode::QueryTimeout);
        assert!(error.to_string().contains("250 ms"));
    }
}
