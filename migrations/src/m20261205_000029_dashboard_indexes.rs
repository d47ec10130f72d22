//! Two indexes the dashboard's pages need at 1,000,000 contacts (`clarion bench dashboard`):
//!
//! - a contact's segment stays, past ones included, for its profile: the only index by
//!   contact covered current memberships alone, so each profile scanned the whole membership
//!   history (about 50 ms);
//! - the failed deliveries of the last days, for the overview's "needs attention": a partial
//!   index of failed rows only, which stays small however much is sent.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000029_dashboard_indexes"
    }
}

const STAYS: &str = "ix_segment_memberships_contact_history";
const FAILED: &str = "ix_deliveries_failed";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "CREATE INDEX {STAYS} ON segment_memberships (contact_id, entered_at)"
        ))
        .await?;
        // Both databases take a partial index with the same syntax.
        db.execute_unprepared(&format!(
            "CREATE INDEX {FAILED} ON deliveries (workspace_id, updated_at) WHERE status = 'failed'"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for name in [FAILED, STAYS] {
            db.execute_unprepared(&format!("DROP INDEX {name}")).await?;
        }
        Ok(())
    }
}
