//! What the admin pages' forms share: a domain function's refusal placed beside the fields
//! it names, numbers read from text inputs with the field's own message, and how a Serialize
//! value reaches a template.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use clarion_model::{Coded, ErrorCode};
use serde::Serialize;

use super::PageError;

/// Each field's message, by the field's name; `form` holds what belongs to no field shown.
pub(crate) type FieldErrors = BTreeMap<String, String>;

/// A form the domain refused: the status to answer with the form again, and why.
#[derive(Debug)]
pub(crate) struct Refused {
    pub status: StatusCode,
    pub errors: FieldErrors,
}

impl Refused {
    /// A refusal of one field, found by the page itself.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Refused {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors: FieldErrors::from([(field.to_string(), message.into())]),
        }
    }
}

/// Why a form's action did not happen: fields to correct, or a page to show instead.
#[derive(Debug)]
pub(crate) enum Refusal {
    Form(Refused),
    Page(PageError),
}

impl From<Refused> for Refusal {
    fn from(refused: Refused) -> Self {
        Refusal::Form(refused)
    }
}

impl From<PageError> for Refusal {
    fn from(page: PageError) -> Self {
        Refusal::Page(page)
    }
}

impl Refusal {
    /// Sorts a domain error into the fields of a form that has `fields`: problems with a
    /// field go beside it, the rest into `form` at the top. Errors no field explains (an
    /// unknown thing, a service down, an internal failure) become the error page.
    pub fn of<E: Coded + 'static>(error: &E, fields: &[&str]) -> Self {
        let code = error.code();
        match code {
            ErrorCode::Internal => return Refusal::Page(PageError::internal(error)),
            ErrorCode::Unavailable => return Refusal::Page(PageError::Unavailable),
            ErrorCode::NotFound => {
                return Refusal::Page(PageError::NotFound(capitalised(&error.to_string())));
            }
            _ => {}
        }
        let mut errors = FieldErrors::new();
        let mut general = Vec::new();
        for detail in error.details() {
            let name = detail.field.or(detail.path).unwrap_or_default();
            // `headers.X-Key` belongs beside the `headers` input, naming the header.
            let (root, rest) = name
                .split_once(['.', '['])
                .map_or((name.as_str(), ""), |(root, rest)| (root, rest));
            if fields.contains(&root) {
                let message = if rest.is_empty() {
                    capitalised(&detail.message)
                } else {
                    format!("{}: {}", rest.trim_end_matches(']'), detail.message)
                };
                errors
                    .entry(root.to_string())
                    .and_modify(|known| {
                        known.push_str("; ");
                        known.push_str(&message);
                    })
                    .or_insert(message);
            } else if name.is_empty() {
                general.push(capitalised(&detail.message));
            } else {
                general.push(format!("{name}: {}", detail.message));
            }
        }
        if errors.is_empty() && general.is_empty() {
            general.push(capitalised(&error.to_string()));
        }
        if !general.is_empty() {
            errors.insert("form".to_string(), general.join("; "));
        }
        Refusal::Form(Refused {
            status: crate::error::status(code),
            errors,
        })
    }

    /// The fields to show again, or the page to answer instead.
    pub fn form(self) -> Result<Refused, PageError> {
        match self {
            Refusal::Form(refused) => Ok(refused),
            Refusal::Page(page) => Err(page),
        }
    }

    /// A refusal shown as a page of its own, for actions without fields (delete, rotate).
    pub fn page(self) -> PageError {
        match self {
            Refusal::Form(refused) => {
                PageError::BadRequest(refused.errors.into_values().collect::<Vec<_>>().join("; "))
            }
            Refusal::Page(page) => page,
        }
    }
}

/// A whole number typed in `field`, within `range`; empty is `None`.
pub(crate) fn number(
    field: &str,
    text: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, Refused> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.replace(['_', ','], "").parse::<u64>() {
        Ok(value) if range.contains(&value) => Ok(Some(value)),
        _ => Err(Refused::field(
            field,
            format!(
                "Enter a whole number from {} to {}.",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// The text with its first letter in upper case.
pub(crate) fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// A serializable value as templates read it.
pub(crate) fn value<T: Serialize>(value: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_with_their_range_and_blank_is_none() {
        assert_eq!(number("n", " 1,000 ", 0..=5000).unwrap(), Some(1000));
        assert_eq!(number("n", "", 1..=5).unwrap(), None);
        let refused = number("n", "7", 1..=5).unwrap_err();
        assert_eq!(refused.errors["n"], "Enter a whole number from 1 to 5.");
        assert!(number("n", "-1", 0..=5).is_err());
    }
}
