//! Reading and writing campaigns, their targets and variants, and the revisions of each
//! variant. Every write runs in one transaction and is checked first: nothing is stored when
//! any problem is found. The same statements run on SQLite and PostgreSQL.
//!
//! * `write`: create, update, save a variant, duplicate, delete.
//! * `load`: one campaign, the list of campaigns (by creation for the API, sorted and paged
//!   for the dashboard), a variant's history, segments by slug.

mod load;
mod write;

pub use load::{SortKey, get, history, list, segments_by_slug, sorted};
pub use write::{create, delete, duplicate, input_of, save_variant, update};
