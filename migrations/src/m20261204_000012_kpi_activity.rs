//! KPI roll-up of each contact's activity: its active spells under the workspace's churn
//! definition, kept current at ingestion, so churn, active contacts and retention cohorts are
//! answered from one row per spell instead of a scan of the raw events.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000012_kpi_activity"
    }
}

#[derive(Iden)]
enum KpiSpells {
    Table,
    WorkspaceId,
    ContactId,
    StartedAt,
    EndedAt,
    Last,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per active spell of a contact: `[started_at, ended_at)`, `ended_at` NULL
        // while open (cancel definition) and the inactivity end otherwise; `last` marks the
        // contact's latest spell, whose end lying in the future means it is still active.
        manager
            .create_table(
                Table::create()
                    .table(KpiSpells::Table)
                    .col(
                        ColumnDef::new(KpiSpells::WorkspaceId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(KpiSpells::ContactId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(KpiSpells::StartedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(KpiSpells::EndedAt).big_integer().null())
                    .col(ColumnDef::new(KpiSpells::Last).small_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(KpiSpells::WorkspaceId)
                            .col(KpiSpells::ContactId)
                            .col(KpiSpells::StartedAt),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_kpi_spells_started")
                    .table(KpiSpells::Table)
                    .col(KpiSpells::WorkspaceId)
                    .col(KpiSpells::StartedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KpiSpells::Table).to_owned())
            .await
    }
}
