//! Sending in each recipient's local time, and quiet hours: a schedule may be read on each
//! recipient's own clock (`local_time`), a delivery carries the moment it is due (`due_at`,
//! a not-before), a run's waves (one per time zone, with its due time and size) are kept
//! with the run, and a campaign may have quiet hours in the recipient's local time.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000013_local_time"
    }
}

#[derive(Iden)]
enum CampaignSchedules {
    Table,
    LocalTime,
}

#[derive(Iden)]
enum Deliveries {
    Table,
    DueAt,
}

#[derive(Iden)]
enum RunWaves {
    Table,
    Id,
    WorkspaceId,
    RunId,
    TimeZone,
    DueAt,
    Deliveries,
    Dropped,
    Delayed,
    ReleasedAt,
}

#[derive(Iden)]
enum CampaignQuietHours {
    Table,
    CampaignId,
    WorkspaceId,
    StartMinute,
    EndMinute,
    Weekends,
    Action,
    TimeZone,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum CampaignRuns {
    Table,
    Id,
}

#[derive(Iden)]
enum Campaigns {
    Table,
    Id,
}

fn big(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // 1: the schedule's `at` / `cron` is read on each recipient's clock.
        manager
            .alter_table(
                Table::alter()
                    .table(CampaignSchedules::Table)
                    .add_column(
                        ColumnDef::new(CampaignSchedules::LocalTime)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        // The moment a delivery may be sent (NULL: at once). Sending never changes it.
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(ColumnDef::new(Deliveries::DueAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // Releasing a wave reads its rows by run and due time; only delayed rows are indexed,
        // so runs sent at once pay nothing for it.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ix_deliveries_due ON deliveries (run_id, due_at, id) \
                 WHERE due_at IS NOT NULL",
            )
            .await?;

        // A run's waves: one per time zone of its audience, due when the send time reaches
        // that zone (or when its quiet hours end); released (enqueued) once due.
        manager
            .create_table(
                Table::create()
                    .table(RunWaves::Table)
                    .col(
                        ColumnDef::new(RunWaves::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(big(RunWaves::WorkspaceId))
                    .col(big(RunWaves::RunId))
                    .col(ColumnDef::new(RunWaves::TimeZone).string().not_null())
                    .col(big(RunWaves::DueAt))
                    .col(big(RunWaves::Deliveries))
                    .col(big(RunWaves::Dropped))
                    .col(big(RunWaves::Delayed))
                    .col(ColumnDef::new(RunWaves::ReleasedAt).big_integer().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(RunWaves::Table, RunWaves::RunId)
                            .to(CampaignRuns::Table, CampaignRuns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_run_waves_run_zone")
                    .table(RunWaves::Table)
                    .col(RunWaves::RunId)
                    .col(RunWaves::TimeZone)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_run_waves_due")
                    .table(RunWaves::Table)
                    .col(RunWaves::ReleasedAt)
                    .col(RunWaves::DueAt)
                    .to_owned(),
            )
            .await?;

        // A campaign's quiet hours, in minutes after local midnight; `action` is `delay` or
        // `drop`; `time_zone` is the zone of contacts without one.
        manager
            .create_table(
                Table::create()
                    .table(CampaignQuietHours::Table)
                    .col(
                        ColumnDef::new(CampaignQuietHours::CampaignId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(big(CampaignQuietHours::WorkspaceId))
                    .col(big(CampaignQuietHours::StartMinute))
                    .col(big(CampaignQuietHours::EndMinute))
                    .col(big(CampaignQuietHours::Weekends))
                    .col(
                        ColumnDef::new(CampaignQuietHours::Action)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CampaignQuietHours::TimeZone)
                            .string()
                            .not_null(),
                    )
                    .col(big(CampaignQuietHours::CreatedAt))
                    .col(big(CampaignQuietHours::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CampaignQuietHours::Table, CampaignQuietHours::CampaignId)
                            .to(Campaigns::Table, Campaigns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CampaignQuietHours::Table.into_iden(),
            RunWaves::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX ix_deliveries_due")
            .await?;
        for (table, column) in [
            (Deliveries::Table.into_iden(), Deliveries::DueAt.into_iden()),
            (
                CampaignSchedules::Table.into_iden(),
                CampaignSchedules::LocalTime.into_iden(),
            ),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
