//! What a workspace's last trait computation saw, so that the next one can score the stored
//! purchase traits again and keep the stored interest profiles instead of reading every event
//! anew: `events_seen`, the highest event id when it started (events stored later are caught
//! up by id), `settings`, the trait settings it used (other settings need the full
//! computation), and `full_at`, the moment the last full computation described (a day later
//! the next one is full again). On PostgreSQL `contact_traits` leaves half of each page
//! free, so that rewriting every buyer's scores keeps most new row versions on their page and
//! their indexes untouched (heap-only tuples).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261208_000032_trait_catch_up"
    }
}

#[derive(Iden)]
enum TraitComputations {
    Table,
    EventsSeen,
    Settings,
    FullAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [
            ColumnDef::new(TraitComputations::EventsSeen)
                .big_integer()
                .to_owned(),
            ColumnDef::new(TraitComputations::Settings)
                .string()
                .to_owned(),
            ColumnDef::new(TraitComputations::FullAt)
                .big_integer()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(TraitComputations::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE contact_traits SET (fillfactor = 50)")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE contact_traits RESET (fillfactor)")
                .await?;
        }
        for column in [
            TraitComputations::FullAt,
            TraitComputations::Settings,
            TraitComputations::EventsSeen,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(TraitComputations::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
