//! Sending: a run per launch of a campaign, and the outbox of deliveries, one row per
//! recipient and channel, whose status the delivery workers move forward by compare-and-set.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000004_sending"
    }
}

#[derive(Iden)]
enum CampaignRuns {
    Table,
    Id,
    WorkspaceId,
    CampaignId,
    Status,
    StatusReason,
    LaunchedBy,
    Audience,
    Queued,
    Suppressed,
    Holdout,
    StartedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(Iden)]
enum Deliveries {
    Table,
    Id,
    WorkspaceId,
    RunId,
    CampaignId,
    ContactId,
    Channel,
    VariantId,
    SegmentId,
    Status,
    Reason,
    Detail,
    Attempts,
    ClaimedAt,
    CreatedAt,
    UpdatedAt,
    SentAt,
}

#[derive(Iden)]
enum Campaigns {
    Table,
    Id,
}

fn id(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn big(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A run is one launch: running, paused (by a user or by the error-rate guard, with the
        // reason), cancelled or completed. The counts are what launch wrote.
        manager
            .create_table(
                Table::create()
                    .table(CampaignRuns::Table)
                    .col(id(CampaignRuns::Id))
                    .col(big(CampaignRuns::WorkspaceId))
                    .col(big(CampaignRuns::CampaignId))
                    .col(ColumnDef::new(CampaignRuns::Status).string().not_null())
                    .col(ColumnDef::new(CampaignRuns::StatusReason).text().null())
                    .col(
                        ColumnDef::new(CampaignRuns::LaunchedBy)
                            .big_integer()
                            .null(),
                    )
                    .col(big(CampaignRuns::Audience))
                    .col(big(CampaignRuns::Queued))
                    .col(big(CampaignRuns::Suppressed))
                    .col(big(CampaignRuns::Holdout))
                    .col(big(CampaignRuns::StartedAt))
                    .col(big(CampaignRuns::UpdatedAt))
                    .col(
                        ColumnDef::new(CampaignRuns::FinishedAt)
                            .big_integer()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(CampaignRuns::Table, CampaignRuns::CampaignId)
                            .to(Campaigns::Table, Campaigns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_campaign_runs_campaign")
                    .table(CampaignRuns::Table)
                    .col(CampaignRuns::CampaignId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_campaign_runs_status")
                    .table(CampaignRuns::Table)
                    .col(CampaignRuns::Status)
                    .to_owned(),
            )
            .await?;

        // The outbox. Status: queued -> sending -> sent | failed | suppressed, or holdout
        // (never sent, the control group) and cancelled. `reason` says why a delivery was
        // suppressed or failed (or the last transient error while it waits for a retry);
        // `detail` is the peer's answer. No foreign keys besides the run: a million-row launch
        // should not pay a lookup per row, and rows outlive edits of what they point at.
        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .col(id(Deliveries::Id))
                    .col(big(Deliveries::WorkspaceId))
                    .col(big(Deliveries::RunId))
                    .col(big(Deliveries::CampaignId))
                    .col(big(Deliveries::ContactId))
                    .col(ColumnDef::new(Deliveries::Channel).string().not_null())
                    .col(big(Deliveries::VariantId))
                    .col(big(Deliveries::SegmentId))
                    .col(ColumnDef::new(Deliveries::Status).string().not_null())
                    .col(ColumnDef::new(Deliveries::Reason).text().null())
                    .col(ColumnDef::new(Deliveries::Detail).text().null())
                    .col(big(Deliveries::Attempts))
                    .col(ColumnDef::new(Deliveries::ClaimedAt).big_integer().null())
                    .col(big(Deliveries::CreatedAt))
                    .col(big(Deliveries::UpdatedAt))
                    .col(ColumnDef::new(Deliveries::SentAt).big_integer().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Deliveries::Table, Deliveries::RunId)
                            .to(CampaignRuns::Table, CampaignRuns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_deliveries_run_contact_channel")
                    .table(Deliveries::Table)
                    .col(Deliveries::RunId)
                    .col(Deliveries::ContactId)
                    .col(Deliveries::Channel)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // No index names a column that sending changes (status, reason, attempts, times): a
        // status change is then a HOT update on PostgreSQL, which rewrites the row in place
        // instead of adding an entry to every index, and the free space left in each page
        // (fillfactor) gives those updates room. Lookups by run use the unique index above.
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE deliveries SET (fillfactor = 70)")
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_deliveries_contact")
                    .table(Deliveries::Table)
                    .col(Deliveries::ContactId)
                    .col(Deliveries::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Deliveries::Table.into_iden(),
            CampaignRuns::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
