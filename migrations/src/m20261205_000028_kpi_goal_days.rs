//! KPI roll-up of each contact's events per kind and UTC day: how many and their amounts.
//! Segment conversion over a period reads the whole days of the period from it and only the
//! two partial edge days from the raw events, so a report is one indexed pass over the
//! period's rows instead of a scan of every member's events.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000028_kpi_goal_days"
    }
}

#[derive(Iden)]
enum KpiGoalDays {
    Table,
    WorkspaceId,
    ContactId,
    Kind,
    Day,
    Orders,
    Revenue,
}

#[derive(Iden)]
enum Contacts {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per contact, event kind and UTC day (`occurred_at` floor-divided by a day)
        // with at least one event: `orders` events, `revenue` the sum of their amounts (none
        // counts 0). The rows of a deleted contact go with it, as its events do.
        manager
            .create_table(
                Table::create()
                    .table(KpiGoalDays::Table)
                    .col(
                        ColumnDef::new(KpiGoalDays::WorkspaceId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(KpiGoalDays::ContactId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(KpiGoalDays::Kind).string().not_null())
                    .col(ColumnDef::new(KpiGoalDays::Day).big_integer().not_null())
                    .col(ColumnDef::new(KpiGoalDays::Orders).big_integer().not_null())
                    .col(ColumnDef::new(KpiGoalDays::Revenue).double().not_null())
                    .primary_key(
                        Index::create()
                            .col(KpiGoalDays::WorkspaceId)
                            .col(KpiGoalDays::ContactId)
                            .col(KpiGoalDays::Kind)
                            .col(KpiGoalDays::Day),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(KpiGoalDays::Table, KpiGoalDays::ContactId)
                            .to(Contacts::Table, Contacts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A report reads a kind's days of a period; every column it needs is in the index, so
        // PostgreSQL answers from the index alone.
        manager
            .create_index(
                Index::create()
                    .name("ix_kpi_goal_days_period")
                    .table(KpiGoalDays::Table)
                    .col(KpiGoalDays::WorkspaceId)
                    .col(KpiGoalDays::Kind)
                    .col(KpiGoalDays::Day)
                    .col(KpiGoalDays::ContactId)
                    .col(KpiGoalDays::Orders)
                    .col(KpiGoalDays::Revenue)
                    .to_owned(),
            )
            .await?;
        // The events already stored, summed the way ingestion keeps the roll-up.
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO kpi_goal_days (workspace_id, contact_id, kind, day, orders, revenue) \
                 SELECT workspace_id, contact_id, kind, {day}, COUNT(*), SUM(COALESCE(amount, 0.0)) \
                 FROM events GROUP BY workspace_id, contact_id, kind, {day}",
                day = DAY_OF_EVENT
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KpiGoalDays::Table).to_owned())
            .await
    }
}

/// The UTC day number of an event, rounding down before 1970 too (both databases truncate
/// integer division toward zero).
const DAY_OF_EVENT: &str = "CASE WHEN occurred_at >= 0 THEN occurred_at / 86400000 \
                            ELSE (occurred_at - 86399999) / 86400000 END";
