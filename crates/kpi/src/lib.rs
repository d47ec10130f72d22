//! Clarion's KPI tracker.
//!
//! Reports read narrow roll-up tables, never scans of raw events: [`rollup`] keeps them current
//! as events arrive (an ingestion [`clarion_contacts::Listener`]) and as the delivery workers
//! record outcomes, and [`campaign`] answers the campaign report from them. Every figure is
//! defined where it is computed, with its numerator, denominator, time window and what it
//! leaves out; the README's KPI section repeats the definitions for users.
//!
//! The crate depends on the model and the database only, never on campaigns or the server:
//! it reads the outbox (`deliveries`, `campaign_runs`, `campaigns`) and `events` tables as
//! they are.

pub mod campaign;
mod error;
pub mod rollup;
pub mod settings;

pub use error::KpiError;
pub use settings::{Attribution, KpiSettings};
