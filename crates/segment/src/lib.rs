//! Segment rules for Clarion.
//!
//! A segment is a rule over contacts: attribute conditions, event conditions (performed,
//! count, sum/avg/min/max, first/last occurrence, in windows), computed traits, interests and
//! other segments, combined with `all`, `any` and `not`. A rule is read from JSON
//! ([`Rule::from_json`]) or from the compact text form ([`parse_text`]), checked against the
//! workspace's [`Schema`] ([`validate`]), compiled to one parameterized SQL query for SQLite
//! or PostgreSQL ([`compile`]), and run for a size or a page of members ([`preview`]).
//! The traits and interests rules use are computed by [`traits::recompute`]. Campaigns read
//! the current members of stored segments through [`members`].

pub mod compile;
pub mod crosstab;
pub mod members;
pub mod membership;
pub mod preview;
pub mod report;
pub mod rule;
pub mod store;
pub mod suggest;
pub mod traits;
pub mod validate;

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
    #[error("the rule could not be read: {0}")]
    Json(RuleError),
    /// The text form could not be read.
    #[error("the rule could not be read: {0}")]
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
    #[error("the request is invalid: {}", list(.0))]
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
    #[error("the segment query took longer than {0:?} and was stopped")]
    Timeout(std::time::Duration),
    /// The request conflicts with what is stored (a taken slug, a segment still in use).
    #[error("{0}")]
    Conflict(String),
    /// A stored value could not be read back; the database was changed behind Clarion.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

fn list(errors: &[RuleError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
