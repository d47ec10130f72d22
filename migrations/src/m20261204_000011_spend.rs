//! Marketing spend: what a workspace paid for a campaign or a channel over a period, the
//! numerator of customer acquisition cost (CAC).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000011_spend"
    }
}

#[derive(Iden)]
enum MarketingSpend {
    Table,
    Id,
    WorkspaceId,
    CampaignId,
    Channel,
    AmountMinor,
    Currency,
    PeriodFrom,
    PeriodTo,
    Label,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum Workspaces {
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
        // One payment: either for a campaign (`campaign_id`, deleted with the campaign, whose
        // deliveries and so acquired customers go with it) or for a channel (`channel`), never
        // both. The amount is exact, in the currency's minor units (cents for EUR, yen for
        // JPY); the period is [period_from, period_to) in Unix milliseconds.
        manager
            .create_table(
                Table::create()
                    .table(MarketingSpend::Table)
                    .col(
                        ColumnDef::new(MarketingSpend::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(big(MarketingSpend::WorkspaceId))
                    .col(ColumnDef::new(MarketingSpend::CampaignId).big_integer().null())
                    .col(ColumnDef::new(MarketingSpend::Channel).string().null())
                    .col(big(MarketingSpend::AmountMinor))
                    .col(ColumnDef::new(MarketingSpend::Currency).string().not_null())
                    .col(big(MarketingSpend::PeriodFrom))
                    .col(big(MarketingSpend::PeriodTo))
                    .col(ColumnDef::new(MarketingSpend::Label).text().null())
                    .col(big(MarketingSpend::CreatedAt))
                    .col(big(MarketingSpend::UpdatedAt))
                    .check(Expr::cust(
                        "(campaign_id IS NULL) <> (channel IS NULL) AND amount_minor > 0 AND period_from < period_to",
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .from(MarketingSpend::Table, MarketingSpend::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(MarketingSpend::Table, MarketingSpend::CampaignId)
                            .to(Campaigns::Table, Campaigns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Reports read the spend overlapping a period.
        manager
            .create_index(
                Index::create()
                    .name("ix_marketing_spend_period")
                    .table(MarketingSpend::Table)
                    .col(MarketingSpend::WorkspaceId)
                    .col(MarketingSpend::PeriodFrom)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_marketing_spend_campaign")
                    .table(MarketingSpend::Table)
                    .col(MarketingSpend::CampaignId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MarketingSpend::Table).to_owned())
            .await
    }
}
