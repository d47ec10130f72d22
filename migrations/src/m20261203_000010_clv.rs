//! Predicted customer lifetime value: each workspace's last BG/NBD and Gamma-Gamma fit, and
//! per contact what the fit predicts (the `p_alive`, `expected_purchases`,
//! `expected_order_value` and `predicted_clv` traits rules read).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000010_clv"
    }
}

#[derive(Iden)]
enum ClvFits {
    Table,
    WorkspaceId,
    ComputedAt,
    Unit,
    HorizonDays,
    StepDays,
    DiscountRate,
    Customers,
    R,
    Alpha,
    A,
    B,
    BgLogLikelihood,
    RepeatCustomers,
    P,
    Q,
    Gamma,
    GgLogLikelihood,
    ElapsedMs,
}

#[derive(Iden)]
enum ContactPredictions {
    Table,
    ContactId,
    WorkspaceId,
    Frequency,
    Recency,
    Age,
    PAlive,
    ExpectedPurchases,
    ExpectedOrderValue,
    PredictedClv,
    ComputedAt,
}

#[derive(Iden)]
enum Workspaces {
    Table,
    Id,
}

fn big(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

fn double(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).double().not_null().to_owned()
}

fn nullable_double(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).double().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per workspace: the fit behind the current predictions. The Gamma-Gamma
        // columns are NULL when that model could not be fitted (no repeat purchase of value).
        manager
            .create_table(
                Table::create()
                    .table(ClvFits::Table)
                    .col(
                        ColumnDef::new(ClvFits::WorkspaceId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(big(ClvFits::ComputedAt))
                    .col(ColumnDef::new(ClvFits::Unit).string().not_null())
                    .col(double(ClvFits::HorizonDays))
                    .col(double(ClvFits::StepDays))
                    .col(double(ClvFits::DiscountRate))
                    .col(big(ClvFits::Customers))
                    .col(double(ClvFits::R))
                    .col(double(ClvFits::Alpha))
                    .col(double(ClvFits::A))
                    .col(double(ClvFits::B))
                    .col(double(ClvFits::BgLogLikelihood))
                    .col(big(ClvFits::RepeatCustomers))
                    .col(nullable_double(ClvFits::P))
                    .col(nullable_double(ClvFits::Q))
                    .col(nullable_double(ClvFits::Gamma))
                    .col(nullable_double(ClvFits::GgLogLikelihood))
                    .col(big(ClvFits::ElapsedMs))
                    .foreign_key(
                        &mut ForeignKey::create()
                            .from(ClvFits::Table, ClvFits::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?;

        // Derived data rewritten for the whole workspace by every recomputation, so, like
        // contact_traits, no foreign keys: contact ids are never reused and the next
        // recomputation drops the rows of deleted contacts (contact deletion removes them at
        // once as well).
        manager
            .create_table(
                Table::create()
                    .table(ContactPredictions::Table)
                    .col(
                        ColumnDef::new(ContactPredictions::ContactId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(big(ContactPredictions::WorkspaceId))
                    .col(big(ContactPredictions::Frequency))
                    .col(double(ContactPredictions::Recency))
                    .col(double(ContactPredictions::Age))
                    .col(double(ContactPredictions::PAlive))
                    .col(double(ContactPredictions::ExpectedPurchases))
                    .col(nullable_double(ContactPredictions::ExpectedOrderValue))
                    .col(nullable_double(ContactPredictions::PredictedClv))
                    .col(big(ContactPredictions::ComputedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_contact_predictions_workspace")
                    .table(ContactPredictions::Table)
                    .col(ContactPredictions::WorkspaceId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ContactPredictions::Table.into_iden(),
            ClvFits::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
