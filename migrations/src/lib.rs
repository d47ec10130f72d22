//! Clarion's schema. Each migration builds its tables with sea-query, so one definition gives
//! the same schema on SQLite and PostgreSQL; `clarion migrate` (or `serve`, unless disabled)
//! applies the pending ones.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_foundation;
mod m20261122_000002_segments;
mod m20261122_000003_campaigns;
mod m20261129_000004_sending;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_foundation::Migration),
            Box::new(m20261122_000002_segments::Migration),
            Box::new(m20261122_000003_campaigns::Migration),
            Box::new(m20261129_000004_sending::Migration),
        ]
    }
}
