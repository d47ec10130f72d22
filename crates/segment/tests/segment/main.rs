//! Segment rules end to end: the JSON and text forms, validation, and membership computed by
//! SQL on SQLite and PostgreSQL against an independent computation over the same fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crosstab;
mod fixture;
mod language;
mod membership;
mod sql;
mod suggest;
mod traits;
mod validation;
