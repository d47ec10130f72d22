//! Triggered campaigns: a campaign that sends to each contact entering a segment, after a
//! delay. `campaign_triggers` holds a campaign's trigger with the last membership row it has
//! read (`entry_cursor`); `trigger_sends` holds one row per entry it read, with the moment its
//! message is due, so pending sends survive any restart and any loss of Redis.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000013_triggers"
    }
}

#[derive(Iden)]
enum CampaignTriggers {
    Table,
    Id,
    WorkspaceId,
    CampaignId,
    SegmentId,
    DelaySecs,
    Condition,
    ReentrySecs,
    IncludeExisting,
    State,
    RunId,
    EntryCursor,
    ArmedAt,
    CreatedAt,
    UpdatedAt,
    StoppedAt,
}

#[derive(Iden)]
enum TriggerSends {
    Table,
    Id,
    WorkspaceId,
    TriggerId,
    CampaignId,
    ContactId,
    MembershipId,
    EnteredAt,
    DueAt,
    State,
    Reason,
    RunId,
    DecidedAt,
    CreatedAt,
}

#[derive(Iden)]
enum Campaigns {
    Table,
    Id,
}

fn big(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

fn big_null(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().null().to_owned()
}

fn id(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One trigger per campaign. `entry_cursor` is the highest `segment_memberships.id` of
        // the segment already read: every membership update of a segment holds that segment's
        // row lock, so its rows commit in id order and nothing below the cursor can appear later.
        manager
            .create_table(
                Table::create()
                    .table(CampaignTriggers::Table)
                    .col(id(CampaignTriggers::Id))
                    .col(big(CampaignTriggers::WorkspaceId))
                    .col(big(CampaignTriggers::CampaignId))
                    .col(big(CampaignTriggers::SegmentId))
                    .col(big(CampaignTriggers::DelaySecs))
                    .col(ColumnDef::new(CampaignTriggers::Condition).text().null())
                    .col(big_null(CampaignTriggers::ReentrySecs))
                    .col(
                        ColumnDef::new(CampaignTriggers::IncludeExisting)
                            .boolean()
                            .not_null(),
                    )
                    .col(ColumnDef::new(CampaignTriggers::State).string().not_null())
                    .col(big_null(CampaignTriggers::RunId))
                    .col(big(CampaignTriggers::EntryCursor))
                    .col(big(CampaignTriggers::ArmedAt))
                    .col(big(CampaignTriggers::CreatedAt))
                    .col(big(CampaignTriggers::UpdatedAt))
                    .col(big_null(CampaignTriggers::StoppedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CampaignTriggers::Table, CampaignTriggers::CampaignId)
                            .to(Campaigns::Table, Campaigns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_campaign_triggers_campaign")
                    .table(CampaignTriggers::Table)
                    .col(CampaignTriggers::CampaignId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // One row per entry read: `pending` until due, then `sent` (its deliveries written),
        // `skipped` (decided at send time: condition not met, paused, ...) or `ignored` (the
        // entry did not count: the contact entered before, or within the cool-down).
        manager
            .create_table(
                Table::create()
                    .table(TriggerSends::Table)
                    .col(id(TriggerSends::Id))
                    .col(big(TriggerSends::WorkspaceId))
                    .col(big(TriggerSends::TriggerId))
                    .col(big(TriggerSends::CampaignId))
                    .col(big(TriggerSends::ContactId))
                    .col(big(TriggerSends::MembershipId))
                    .col(big(TriggerSends::EnteredAt))
                    .col(big(TriggerSends::DueAt))
                    .col(ColumnDef::new(TriggerSends::State).string().not_null())
                    .col(ColumnDef::new(TriggerSends::Reason).text().null())
                    .col(big_null(TriggerSends::RunId))
                    .col(big_null(TriggerSends::DecidedAt))
                    .col(big(TriggerSends::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(TriggerSends::Table, TriggerSends::TriggerId)
                            .to(CampaignTriggers::Table, CampaignTriggers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // An entry is read once, whatever happens.
        manager
            .create_index(
                Index::create()
                    .name("ux_trigger_sends_entry")
                    .table(TriggerSends::Table)
                    .col(TriggerSends::TriggerId)
                    .col(TriggerSends::MembershipId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_trigger_sends_contact")
                    .table(TriggerSends::Table)
                    .col(TriggerSends::TriggerId)
                    .col(TriggerSends::ContactId)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // The scheduler's tick reads the due ones; pending rows are few beside the history.
        db.execute_unprepared(
            "CREATE INDEX ix_trigger_sends_due ON trigger_sends (due_at) WHERE state = 'pending'",
        )
        .await?;
        // New entries of a segment since a trigger's cursor.
        db.execute_unprepared(
            "CREATE INDEX ix_segment_memberships_entries ON segment_memberships (segment_id, id)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_segment_memberships_entries")
            .await?;
        for table in [
            TriggerSends::Table.into_iden(),
            CampaignTriggers::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
