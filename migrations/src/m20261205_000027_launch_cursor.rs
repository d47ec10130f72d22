//! A launch keeps its place in its run: `launch_cursor` says which group and member it wrote
//! last (NULL once the whole audience is written), `launch_beat` when it last wrote a page.
//! A launch whose process died stops beating, and the supervisor finishes it from the cursor
//! instead of sending a partial audience.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000027_launch_cursor"
    }
}

#[derive(Iden)]
enum CampaignRuns {
    Table,
    LaunchCursor,
    LaunchBeat,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            ColumnDef::new(CampaignRuns::LaunchCursor)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(CampaignRuns::LaunchBeat)
                .big_integer()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(CampaignRuns::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [CampaignRuns::LaunchBeat, CampaignRuns::LaunchCursor] {
            manager
                .alter_table(
                    Table::alter()
                        .table(CampaignRuns::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
