//! Frequency caps: per workspace and channel, how many messages of non-transactional
//! campaigns a contact may be sent within a window; and the flag that makes a campaign
//! transactional (exempt from the caps, and not counted by them).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000011_frequency_caps"
    }
}

#[derive(Iden)]
enum FrequencyCaps {
    Table,
    WorkspaceId,
    Channel,
    MaxMessages,
    WindowHours,
    UpdatedAt,
}

#[derive(Iden)]
enum Campaigns {
    Table,
    Transactional,
}

#[derive(Iden)]
enum Workspaces {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // At most one cap per workspace and channel; a channel without a row is not capped.
        manager
            .create_table(
                Table::create()
                    .table(FrequencyCaps::Table)
                    .col(
                        ColumnDef::new(FrequencyCaps::WorkspaceId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(FrequencyCaps::Channel).string().not_null())
                    .col(
                        ColumnDef::new(FrequencyCaps::MaxMessages)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FrequencyCaps::WindowHours)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FrequencyCaps::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(FrequencyCaps::WorkspaceId)
                            .col(FrequencyCaps::Channel),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(FrequencyCaps::Table, FrequencyCaps::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Existing campaigns are marketing campaigns: they count toward the caps.
        manager
            .alter_table(
                Table::alter()
                    .table(Campaigns::Table)
                    .add_column(
                        ColumnDef::new(Campaigns::Transactional)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Campaigns::Table)
                    .drop_column(Campaigns::Transactional)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(FrequencyCaps::Table).to_owned())
            .await?;
        Ok(())
    }
}
