//! Scheduling: a campaign's schedule (one-off or recurring, with its next fire time) and the
//! history of its firings, whose run key (campaign and scheduled slot) is unique, so that no
//! slot is ever fired twice, whatever several scheduler processes do.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000008_schedules"
    }
}

#[derive(Iden)]
enum CampaignSchedules {
    Table,
    Id,
    WorkspaceId,
    CampaignId,
    Kind,
    At,
    Cron,
    TimeZone,
    StartsAt,
    EndsAt,
    MaxRuns,
    CatchUp,
    State,
    NextFireAt,
    Fired,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum ScheduleFirings {
    Table,
    Id,
    WorkspaceId,
    ScheduleId,
    CampaignId,
    SlotAt,
    Status,
    RunId,
    Reason,
    FiredBy,
    FiredAt,
    UpdatedAt,
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

fn big_null(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One schedule per campaign: `once` at an instant, or `recurring` by a cron expression
        // in a time zone, between optional bounds and up to a number of runs. `next_fire_at`
        // is the source of truth the scheduler rebuilds its jobs from.
        manager
            .create_table(
                Table::create()
                    .table(CampaignSchedules::Table)
                    .col(id(CampaignSchedules::Id))
                    .col(big(CampaignSchedules::WorkspaceId))
                    .col(big(CampaignSchedules::CampaignId))
                    .col(ColumnDef::new(CampaignSchedules::Kind).string().not_null())
                    .col(big_null(CampaignSchedules::At))
                    .col(ColumnDef::new(CampaignSchedules::Cron).text().null())
                    .col(
                        ColumnDef::new(CampaignSchedules::TimeZone)
                            .string()
                            .not_null(),
                    )
                    .col(big_null(CampaignSchedules::StartsAt))
                    .col(big_null(CampaignSchedules::EndsAt))
                    .col(big_null(CampaignSchedules::MaxRuns))
                    .col(
                        ColumnDef::new(CampaignSchedules::CatchUp)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(CampaignSchedules::State).string().not_null())
                    .col(big_null(CampaignSchedules::NextFireAt))
                    .col(big(CampaignSchedules::Fired))
                    .col(big(CampaignSchedules::CreatedAt))
                    .col(big(CampaignSchedules::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CampaignSchedules::Table, CampaignSchedules::CampaignId)
                            .to(Campaigns::Table, Campaigns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_campaign_schedules_campaign")
                    .table(CampaignSchedules::Table)
                    .col(CampaignSchedules::CampaignId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_campaign_schedules_due")
                    .table(CampaignSchedules::Table)
                    .col(CampaignSchedules::State)
                    .col(CampaignSchedules::NextFireAt)
                    .to_owned(),
            )
            .await?;

        // A firing is one scheduled slot: launched (with its run), skipped (catch-up policy,
        // paused campaign) or failed (with the reason).
        manager
            .create_table(
                Table::create()
                    .table(ScheduleFirings::Table)
                    .col(id(ScheduleFirings::Id))
                    .col(big(ScheduleFirings::WorkspaceId))
                    .col(big(ScheduleFirings::ScheduleId))
                    .col(big(ScheduleFirings::CampaignId))
                    .col(big(ScheduleFirings::SlotAt))
                    .col(ColumnDef::new(ScheduleFirings::Status).string().not_null())
                    .col(big_null(ScheduleFirings::RunId))
                    .col(ColumnDef::new(ScheduleFirings::Reason).text().null())
                    .col(ColumnDef::new(ScheduleFirings::FiredBy).string().not_null())
                    .col(big(ScheduleFirings::FiredAt))
                    .col(big(ScheduleFirings::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ScheduleFirings::Table, ScheduleFirings::ScheduleId)
                            .to(CampaignSchedules::Table, CampaignSchedules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The run key: the last line of defence against a slot fired twice.
        manager
            .create_index(
                Index::create()
                    .name("ux_schedule_firings_run_key")
                    .table(ScheduleFirings::Table)
                    .col(ScheduleFirings::CampaignId)
                    .col(ScheduleFirings::SlotAt)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ScheduleFirings::Table.into_iden(),
            CampaignSchedules::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
