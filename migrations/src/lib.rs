//! Clarion's schema. Each migration builds its tables with sea-query, so one definition gives
//! the same schema on SQLite and PostgreSQL; `clarion migrate` (or `serve`, unless disabled)
//! applies the pending ones.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_foundation;
mod m20261122_000002_segments;
mod m20261122_000003_campaigns;
mod m20261129_000004_sending;
mod m20261203_000005_senders;
mod m20261203_000006_webhook_endpoints;
mod m20261203_000007_suppression;
mod m20261203_000008_schedules;
mod m20261203_000009_kpi;
mod m20261203_000010_clv;
mod m20261204_000011_frequency_caps;
mod m20261204_000011_spend;
mod m20261204_000012_kpi_activity;
mod m20261204_000013_local_time;
mod m20261204_000013_triggers;
mod m20261204_000013_users;
mod m20261205_000027_launch_cursor;
mod m20261205_000028_kpi_goal_days;
mod m20261205_000029_dashboard_indexes;
mod m20261206_000030_goal_days_trigger;
mod m20261207_000031_rfm_bounds;
mod m20261208_000032_trait_catch_up;
mod m20261209_000033_recency_on_read;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_foundation::Migration),
            Box::new(m20261122_000002_segments::Migration),
            Box::new(m20261122_000003_campaigns::Migration),
            Box::new(m20261129_000004_sending::Migration),
            Box::new(m20261203_000005_senders::Migration),
            Box::new(m20261203_000006_webhook_endpoints::Migration),
            Box::new(m20261203_000007_suppression::Migration),
            Box::new(m20261203_000008_schedules::Migration),
            Box::new(m20261203_000009_kpi::Migration),
            Box::new(m20261203_000010_clv::Migration),
            Box::new(m20261204_000011_frequency_caps::Migration),
            Box::new(m20261204_000011_spend::Migration),
            Box::new(m20261204_000012_kpi_activity::Migration),
            Box::new(m20261204_000013_local_time::Migration),
            Box::new(m20261204_000013_triggers::Migration),
            Box::new(m20261204_000013_users::Migration),
            Box::new(m20261205_000027_launch_cursor::Migration),
            Box::new(m20261205_000028_kpi_goal_days::Migration),
            Box::new(m20261205_000029_dashboard_indexes::Migration),
            Box::new(m20261206_000030_goal_days_trigger::Migration),
            Box::new(m20261207_000031_rfm_bounds::Migration),
            Box::new(m20261208_000032_trait_catch_up::Migration),
            Box::new(m20261209_000033_recency_on_read::Migration),
        ]
    }
}

/// The same PostgreSQL URL pointing at another database (tests and benchmarks create their
/// own); query parameters are kept.
pub fn postgres_url_for_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

#[cfg(test)]
mod url_tests {
    use super::postgres_url_for_database;

    #[test]
    fn database_names_are_swapped_and_parameters_kept() {
        assert_eq!(
            postgres_url_for_database("postgres://u@127.0.0.1:5432/postgres", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            postgres_url_for_database(
                "postgres:///postgres?host=/var/run/postgresql&user=root",
                "x"
            ),
            "postgres:///x?host=/var/run/postgresql&user=root"
        );
    }
}
