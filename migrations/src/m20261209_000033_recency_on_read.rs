//! `contact_traits.recency_days` goes: the days since a contact's last purchase change every
//! moment, so storing them made every computation rewrite every buyer's row. Readers compute
//! them from `last_purchase_at` at the moment they read, and a computation writes only the
//! rows whose scores changed.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261209_000033_recency_on_read"
    }
}

#[derive(Iden)]
enum ContactTraits {
    Table,
    RecencyDays,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ContactTraits::Table)
                    .drop_column(ContactTraits::RecencyDays)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Comes back as 0 for every buyer; the code that reads it writes it at its next
        // computation.
        manager
            .alter_table(
                Table::alter()
                    .table(ContactTraits::Table)
                    .add_column(
                        ColumnDef::new(ContactTraits::RecencyDays)
                            .double()
                            .not_null()
                            .default(0.0),
                    )
                    .to_owned(),
            )
            .await
    }
}
