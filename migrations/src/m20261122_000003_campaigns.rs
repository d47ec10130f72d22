//! Campaigns: their goal and holdout, the ordered (segment -> variants) targets, the variants'
//! content and every saved revision of a variant.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000003_campaigns"
    }
}

#[derive(Iden)]
enum Campaigns {
    Table,
    Id,
    WorkspaceId,
    Name,
    Status,
    GoalEvent,
    GoalWindowHours,
    HoldoutPercent,
    Channels,
    AudienceSegmentId,
    DuplicatedFrom,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum CampaignTargets {
    Table,
    Id,
    CampaignId,
    Position,
    SegmentId,
}

#[derive(Iden)]
enum CampaignVariants {
    Table,
    Id,
    CampaignId,
    TargetId,
    Position,
    Name,
    Weight,
    Email,
    Webhook,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum CampaignVariantRevisions {
    Table,
    Id,
    VariantId,
    Version,
    Name,
    Weight,
    Email,
    Webhook,
    SavedBy,
    SavedAt,
}

#[derive(Iden)]
enum Workspaces {
    Table,
    Id,
}

#[derive(Iden)]
enum Segments {
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
        // `channels` is a comma-separated list (`email`, `webhook`). A segment a campaign
        // uses cannot be deleted while the campaign exists (RESTRICT), so a campaign never
        // points at a vanished audience.
        manager
            .create_table(
                Table::create()
                    .table(Campaigns::Table)
                    .col(id(Campaigns::Id))
                    .col(big(Campaigns::WorkspaceId))
                    .col(ColumnDef::new(Campaigns::Name).string().not_null())
                    .col(ColumnDef::new(Campaigns::Status).string().not_null())
                    .col(ColumnDef::new(Campaigns::GoalEvent).string().not_null())
                    .col(big(Campaigns::GoalWindowHours))
                    .col(
                        ColumnDef::new(Campaigns::HoldoutPercent)
                            .double()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Campaigns::Channels).string().not_null())
                    .col(
                        ColumnDef::new(Campaigns::AudienceSegmentId)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Campaigns::DuplicatedFrom)
                            .big_integer()
                            .null(),
                    )
                    .col(big(Campaigns::CreatedAt))
                    .col(big(Campaigns::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Campaigns::Table, Campaigns::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Campaigns::Table, Campaigns::AudienceSegmentId)
                            .to(Segments::Table, Segments::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Campaigns::Table, Campaigns::DuplicatedFrom)
                            .to(Campaigns::Table, Campaigns::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_campaigns_workspace")
                    .table(Campaigns::Table)
                    .col(Campaigns::WorkspaceId)
                    .col(Campaigns::Id)
                    .to_owned(),
            )
            .await?;

        // The campaign's segments in priority order: a contact in several of them gets the
        // message of the first.
        manager
            .create_table(
                Table::create()
                    .table(CampaignTargets::Table)
                    .col(id(CampaignTargets::Id))
                    .col(big(CampaignTargets::CampaignId))
                    .col(big(CampaignTargets::Position))
                    .col(big(CampaignTargets::SegmentId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CampaignTargets::Table, CampaignTargets::CampaignId)
                            .to(Campaigns::Table, Campaigns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(CampaignTargets::Table, CampaignTargets::SegmentId)
                            .to(Segments::Table, Segments::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_campaign_targets_segment")
                    .table(CampaignTargets::Table)
                    .col(CampaignTargets::CampaignId)
                    .col(CampaignTargets::SegmentId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_campaign_targets_segment")
                    .table(CampaignTargets::Table)
                    .col(CampaignTargets::SegmentId)
                    .to_owned(),
            )
            .await?;

        // A variant belongs to a target (an A/B/n test when a target has several), or is the
        // campaign's fallback when `target_id` is NULL. `email` and `webhook` hold the content
        // as JSON text; `version` counts the saved revisions.
        manager
            .create_table(
                Table::create()
                    .table(CampaignVariants::Table)
                    .col(id(CampaignVariants::Id))
                    .col(big(CampaignVariants::CampaignId))
                    .col(
                        ColumnDef::new(CampaignVariants::TargetId)
                            .big_integer()
                            .null(),
                    )
                    .col(big(CampaignVariants::Position))
                    .col(ColumnDef::new(CampaignVariants::Name).string().not_null())
                    .col(big(CampaignVariants::Weight))
                    .col(ColumnDef::new(CampaignVariants::Email).text().null())
                    .col(ColumnDef::new(CampaignVariants::Webhook).text().null())
                    .col(big(CampaignVariants::Version))
                    .col(big(CampaignVariants::CreatedAt))
                    .col(big(CampaignVariants::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CampaignVariants::Table, CampaignVariants::CampaignId)
                            .to(Campaigns::Table, Campaigns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(CampaignVariants::Table, CampaignVariants::TargetId)
                            .to(CampaignTargets::Table, CampaignTargets::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_campaign_variants_name")
                    .table(CampaignVariants::Table)
                    .col(CampaignVariants::CampaignId)
                    .col(CampaignVariants::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // Every save that changed a variant, with what it held then.
        manager
            .create_table(
                Table::create()
                    .table(CampaignVariantRevisions::Table)
                    .col(id(CampaignVariantRevisions::Id))
                    .col(big(CampaignVariantRevisions::VariantId))
                    .col(big(CampaignVariantRevisions::Version))
                    .col(
                        ColumnDef::new(CampaignVariantRevisions::Name)
                            .string()
                            .not_null(),
                    )
                    .col(big(CampaignVariantRevisions::Weight))
                    .col(
                        ColumnDef::new(CampaignVariantRevisions::Email)
                            .text()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(CampaignVariantRevisions::Webhook)
                            .text()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(CampaignVariantRevisions::SavedBy)
                            .big_integer()
                            .null(),
                    )
                    .col(big(CampaignVariantRevisions::SavedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                CampaignVariantRevisions::Table,
                                CampaignVariantRevisions::VariantId,
                            )
                            .to(CampaignVariants::Table, CampaignVariants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_campaign_variant_revisions_version")
                    .table(CampaignVariantRevisions::Table)
                    .col(CampaignVariantRevisions::VariantId)
                    .col(CampaignVariantRevisions::Version)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CampaignVariantRevisions::Table.into_iden(),
            CampaignVariants::Table.into_iden(),
            CampaignTargets::Table.into_iden(),
            Campaigns::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
