//! The RFM score bounds of each workspace's last full trait computation (`rfm_bounds`): for
//! each dimension (`recency` by the last purchase's time, `frequency` by orders, `monetary`
//! by net revenue in cents) and each score given, the highest value that got it. A contact
//! whose purchases change between two full computations is scored against these bounds at
//! ingestion, so a purchase moves its contact's RFM scores at once, without ranking every
//! buyer again.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000031_rfm_bounds"
    }
}

#[derive(Iden)]
enum RfmBounds {
    Table,
    WorkspaceId,
    Dimension,
    Score,
    High,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RfmBounds::Table)
                    .col(
                        ColumnDef::new(RfmBounds::WorkspaceId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(RfmBounds::Dimension).string().not_null())
                    .col(ColumnDef::new(RfmBounds::Score).small_integer().not_null())
                    .col(ColumnDef::new(RfmBounds::High).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(RfmBounds::WorkspaceId)
                            .col(RfmBounds::Dimension)
                            .col(RfmBounds::Score),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RfmBounds::Table).to_owned())
            .await
    }
}
