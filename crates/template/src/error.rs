//! The crate's one error type.

use clarion_model::{Coded, ErrorCode, FieldError};
use serde::Serialize;

/// One problem found in a template when it is saved.
///
/// `field` names the part of the variant (`subject`, `html`, `payload`, `headers.X-Shop`, ...);
/// `line` and `column` are 1-based and point into that field's source when the problem has a
/// position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateIssue {
    /// Which part of the variant the problem is in.
    pub field: String,
    /// 1-based line in the field's source, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) in the field's source, when known.
    pub column: Option<usize>,
    /// What is wrong, for a marketer to read.
    pub message: String,
}

impl std::fmt::Display for TemplateIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(
                f,
                "{} (line {line}, column {column}): {}",
                self.field, self.message
            ),
            (Some(line), None) => write!(f, "{} (line {line}): {}", self.field, self.message),
            _ => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Everything that can go wrong in this crate.
///
/// Save-time problems come back as [`TemplateError::Invalid`] with every issue found.
/// Render-time problems concern one message only (one contact's data triggered them): the
/// caller records the message as failed with the error's text as the reason; none of them is
/// worth a retry, since rendering the same data again gives the same result.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The variant was refused when compiled or validated.
    #[error("the template has {} problem(s): {}", .0.len(), join_issues(.0))]
    Invalid(Vec<TemplateIssue>),

    /// A value the template prints or iterates over is missing from this contact's data.
    #[error("{field}: undefined value at line {line}: {message} (add a default, e.g. `|default('')`)", line = fmt_line(*.line))]
    Undefined {
        /// Part of the variant being rendered.
        field: String,
        /// 1-based line of the failing expression, when known.
        line: Option<usize>,
        /// The engine's description of the lookup that failed.
        message: String,
    },

    /// The template used up its instruction budget (an endless or very long loop).
    #[error("{field}: the template exceeded its budget of {fuel} instructions (endless loop?)")]
    OutOfFuel {
        /// Part of the variant being rendered.
        field: String,
        /// The configured budget.
        fuel: u64,
    },

    /// The rendered output grew beyond the configured cap.
    #[error("{field}: the rendered output exceeds the cap of {limit} bytes")]
    OutputTooLarge {
        /// Part of the variant being rendered.
        field: String,
        /// The configured cap in bytes.
        limit: usize,
    },

    /// Any other failure while evaluating the template (type errors, recursion limit, bad
    /// filter arguments).
    #[error("{field}: rendering failed at line {line}: {message}", line = fmt_line(*.line))]
    Render {
        /// Part of the variant being rendered.
        field: String,
        /// 1-based line of the failing expression, when known.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },

    /// The rendered webhook payload is not valid JSON.
    #[error("payload: the rendered webhook payload is not valid JSON: {0}")]
    InvalidPayload(String),

    /// A link uses a scheme that could run code in the reader's mail client.
    #[error(
        "{field}: link {url:?} uses a forbidden scheme (javascript:, vbscript: and data: are refused)"
    )]
    ForbiddenLink {
        /// Part of the variant the link is in.
        field: String,
        /// The link target as rendered.
        url: String,
    },

    /// A rendered header value contains a line break or another control character.
    #[error(
        "{field}: the rendered value contains a line break or control character, which would corrupt the message header"
    )]
    HeaderInjection {
        /// Part of the variant being rendered.
        field: String,
    },

    /// The rendered HTML could not be rewritten for tracking.
    #[error("html: rewriting links for tracking failed: {0}")]
    Rewrite(String),

    /// A tracking token is malformed, was not signed by any configured key, or was altered.
    #[error("tracking token rejected: {0}")]
    InvalidToken(&'static str),

    /// A configuration value handed to this crate is unusable.
    #[error("invalid template configuration: {0}")]
    Config(String),

    /// The locale or time zone given for a recipient is not usable.
    #[error("invalid recipient setting: {0}")]
    Recipient(String),

    /// A context value could not be converted for the template engine.
    #[error("the render context could not be built: {0}")]
    Context(String),
}

fn fmt_line(line: Option<usize>) -> String {
    line.map_or_else(|| "?".to_owned(), |l| l.to_string())
}

fn join_issues(issues: &[TemplateIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Coded for TemplateError {
    fn code(&self) -> ErrorCode {
        match self {
            // What the marketer wrote, or what it makes of one contact's data.
            TemplateError::Invalid(_)
            | TemplateError::Undefined { .. }
            | TemplateError::OutOfFuel { .. }
            | TemplateError::OutputTooLarge { .. }
            | TemplateError::Render { .. }
            | TemplateError::InvalidPayload(_)
            | TemplateError::ForbiddenLink { .. }
            | TemplateError::HeaderInjection { .. }
            | TemplateError::Recipient(_) => ErrorCode::ValidationFailed,
            // A tracking link that Clarion did not sign leads nowhere.
            TemplateError::InvalidToken(_) => ErrorCode::NotFound,
            TemplateError::Rewrite(_) | TemplateError::Config(_) | TemplateError::Context(_) => {
                ErrorCode::Internal
            }
        }
    }

    fn details(&self) -> Vec<FieldError> {
        match self {
            TemplateError::Invalid(issues) => issues
                .iter()
                .map(|i| FieldError::field(&i.field, &i.message).at(i.line, i.column))
                .collect(),
            TemplateError::Undefined {
                field,
                line,
                message,
            }
            | TemplateError::Render {
                field,
                line,
                message,
            } => vec![FieldError::field(field, message).at(*line, None)],
            _ => Vec::new(),
        }
    }
}
