//! sea-orm entities: one module per table. Timestamps are milliseconds since the Unix epoch
//! (see [`crate::Timestamp`]); JSON columns are `jsonb` on PostgreSQL and text on SQLite.

pub mod api_key;
pub mod attribute_definition;
pub mod contact;
pub mod event;
pub mod workspace;
