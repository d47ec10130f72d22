//! KPI roll-ups: what each contact contributes to each campaign run's figures (so a change of
//! one contact is applied as a difference), the run totals per variant, segment, channel,
//! metric and hour since launch that reports read, and each workspace's KPI settings.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000009_kpi"
    }
}

#[derive(Iden)]
enum KpiRunFacts {
    Table,
    RunId,
    ContactId,
    WorkspaceId,
    VariantId,
    SegmentId,
    Channel,
    Metric,
    Bucket,
    N,
    Amount,
}

#[derive(Iden)]
enum KpiRunCounts {
    Table,
    RunId,
    VariantId,
    SegmentId,
    Channel,
    Metric,
    Bucket,
    N,
    Amount,
    AmountSq,
}

#[derive(Iden)]
enum KpiSettings {
    Table,
    WorkspaceId,
    Attribution,
    MinSample,
    ConfidenceLevel,
    Churn,
    ActivityEvent,
    StartEvent,
    CancelEvent,
    InactivityDays,
    TimeZone,
    UpdatedAt,
}

#[derive(Iden)]
enum CampaignRuns {
    Table,
    Id,
}

#[derive(Iden)]
enum Workspaces {
    Table,
    Id,
}

fn big(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

fn text(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).string().not_null().to_owned()
}

fn double(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).double().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per contact, run, channel ('' for figures of the contact), metric and hour
        // since launch: the contact's part of the run's totals. Replaced whenever the contact's
        // deliveries or events change.
        manager
            .create_table(
                Table::create()
                    .table(KpiRunFacts::Table)
                    .col(big(KpiRunFacts::RunId))
                    .col(big(KpiRunFacts::ContactId))
                    .col(big(KpiRunFacts::WorkspaceId))
                    .col(big(KpiRunFacts::VariantId))
                    .col(big(KpiRunFacts::SegmentId))
                    .col(text(KpiRunFacts::Channel))
                    .col(text(KpiRunFacts::Metric))
                    .col(big(KpiRunFacts::Bucket))
                    .col(big(KpiRunFacts::N))
                    .col(double(KpiRunFacts::Amount))
                    .primary_key(
                        Index::create()
                            .col(KpiRunFacts::ContactId)
                            .col(KpiRunFacts::RunId)
                            .col(KpiRunFacts::Channel)
                            .col(KpiRunFacts::Metric)
                            .col(KpiRunFacts::Bucket),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(KpiRunFacts::Table, KpiRunFacts::RunId)
                            .to(CampaignRuns::Table, CampaignRuns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_kpi_run_facts_run")
                    .table(KpiRunFacts::Table)
                    .col(KpiRunFacts::RunId)
                    .to_owned(),
            )
            .await?;

        // The run's totals: sums of the facts per variant, segment, channel, metric and hour
        // since launch; `amount_sq` sums the squares of the per-contact amounts (for variances).
        manager
            .create_table(
                Table::create()
                    .table(KpiRunCounts::Table)
                    .col(big(KpiRunCounts::RunId))
                    .col(big(KpiRunCounts::VariantId))
                    .col(big(KpiRunCounts::SegmentId))
                    .col(text(KpiRunCounts::Channel))
                    .col(text(KpiRunCounts::Metric))
                    .col(big(KpiRunCounts::Bucket))
                    .col(big(KpiRunCounts::N))
                    .col(double(KpiRunCounts::Amount))
                    .col(double(KpiRunCounts::AmountSq))
                    .primary_key(
                        Index::create()
                            .col(KpiRunCounts::RunId)
                            .col(KpiRunCounts::VariantId)
                            .col(KpiRunCounts::SegmentId)
                            .col(KpiRunCounts::Channel)
                            .col(KpiRunCounts::Metric)
                            .col(KpiRunCounts::Bucket),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(KpiRunCounts::Table, KpiRunCounts::RunId)
                            .to(CampaignRuns::Table, CampaignRuns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // How a workspace's KPIs are computed; a workspace without a row uses the defaults.
        manager
            .create_table(
                Table::create()
                    .table(KpiSettings::Table)
                    .col(
                        ColumnDef::new(KpiSettings::WorkspaceId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(text(KpiSettings::Attribution))
                    .col(big(KpiSettings::MinSample))
                    .col(double(KpiSettings::ConfidenceLevel))
                    .col(text(KpiSettings::Churn))
                    .col(text(KpiSettings::ActivityEvent))
                    .col(text(KpiSettings::StartEvent))
                    .col(text(KpiSettings::CancelEvent))
                    .col(big(KpiSettings::InactivityDays))
                    .col(text(KpiSettings::TimeZone))
                    .col(big(KpiSettings::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(KpiSettings::Table, KpiSettings::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            KpiSettings::Table.into_iden(),
            KpiRunCounts::Table.into_iden(),
            KpiRunFacts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
