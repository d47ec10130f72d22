//! The goal roll-up (`kpi_goal_days`) kept by the database as events are inserted, in the
//! inserting transaction, instead of by ingestion's listener afterwards.
//!
//! The listener recomputed each touched contact's rows from its whole history on every batch:
//! with a year of events per contact, ingestion through the batch API fell from about 11,000
//! to 1,200-2,000 events/s on PostgreSQL as histories grew (`clarion bench ingest`, 400,000
//! events), most of it deleting and inserting the same rows again. A trigger adds each
//! inserted event to its day's row, so the cost of a batch is the batch, the roll-up can
//! never miss an event that was stored (every path that inserts events, COPY included, goes
//! through it), and an insert ignored as a duplicate adds nothing.
//!
//! PostgreSQL: one statement-level trigger sums the statement's new rows per contact, kind
//! and day and adds them with one `INSERT ... ON CONFLICT DO UPDATE`, in key order, so
//! concurrent batches lock shared rows in the same order. SQLite: a row-level trigger adds
//! each event (SQLite has no statement-level triggers; its writers are one at a time).

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000030_goal_days_trigger"
    }
}

/// The UTC day number of an event's `occurred_at` (`column`), rounding down before 1970 too
/// (both databases truncate integer division toward zero).
fn day_of(column: &str) -> String {
    format!(
        "CASE WHEN {column} >= 0 THEN {column} / 86400000 \
         ELSE ({column} - 86399999) / 86400000 END"
    )
}

const TRIGGER: &str = "events_kpi_goal_days";
const FUNCTION: &str = "events_kpi_goal_days_add";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(&format!(
                    "CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN \
                       INSERT INTO kpi_goal_days (workspace_id, contact_id, kind, day, orders, revenue) \
                       SELECT workspace_id, contact_id, kind, {day}, COUNT(*), SUM(COALESCE(amount, 0.0)) \
                       FROM new_events GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 \
                       ON CONFLICT (workspace_id, contact_id, kind, day) DO UPDATE \
                       SET orders = kpi_goal_days.orders + EXCLUDED.orders, \
                           revenue = kpi_goal_days.revenue + EXCLUDED.revenue; \
                       RETURN NULL; \
                     END $$",
                    day = day_of("occurred_at")
                ))
                .await?;
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {TRIGGER} AFTER INSERT ON events \
                     REFERENCING NEW TABLE AS new_events \
                     FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
                ))
                .await?;
            }
            _ => {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER {TRIGGER} AFTER INSERT ON events BEGIN \
                       INSERT INTO kpi_goal_days (workspace_id, contact_id, kind, day, orders, revenue) \
                       VALUES (NEW.workspace_id, NEW.contact_id, NEW.kind, {day}, 1, COALESCE(NEW.amount, 0.0)) \
                       ON CONFLICT (workspace_id, contact_id, kind, day) DO UPDATE \
                       SET orders = orders + 1, revenue = revenue + excluded.revenue; \
                     END",
                    day = day_of("NEW.occurred_at")
                ))
                .await?;
            }
        }
        // From now on the roll-up follows the events exactly; start it from them, so events a
        // failed listener call left out count too.
        db.execute_unprepared("DELETE FROM kpi_goal_days").await?;
        db.execute_unprepared(&format!(
            "INSERT INTO kpi_goal_days (workspace_id, contact_id, kind, day, orders, revenue) \
             SELECT workspace_id, contact_id, kind, {day}, COUNT(*), SUM(COALESCE(amount, 0.0)) \
             FROM events GROUP BY workspace_id, contact_id, kind, {day}",
            day = day_of("occurred_at")
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(&format!("DROP TRIGGER {TRIGGER} ON events"))
                .await?;
            db.execute_unprepared(&format!("DROP FUNCTION {FUNCTION}()"))
                .await?;
        } else {
            db.execute_unprepared(&format!("DROP TRIGGER {TRIGGER}"))
                .await?;
        }
        Ok(())
    }
}
