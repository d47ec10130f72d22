//! Stored segments, their memberships with entry and exit times, and the traits computed per
//! contact (RFM, CLV, interest profiles) that rules may use, with the time of each
//! workspace's last trait computation.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000002_segments"
    }
}

#[derive(Iden)]
enum Segments {
    Table,
    Id,
    WorkspaceId,
    Slug,
    Name,
    Description,
    Category,
    Kind,
    Rule,
    MemberCount,
    ComputedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum SegmentMemberships {
    Table,
    Id,
    SegmentId,
    ContactId,
    EnteredAt,
    ExitedAt,
}

#[derive(Iden)]
enum ContactTraits {
    Table,
    ContactId,
    WorkspaceId,
    Orders,
    Revenue,
    FirstPurchaseAt,
    LastPurchaseAt,
    RecencyDays,
    RfmRecency,
    RfmFrequency,
    RfmMonetary,
    RfmSegment,
    Clv,
    ComputedAt,
}

#[derive(Iden)]
enum ContactInterests {
    Table,
    ContactId,
    WorkspaceId,
    Category,
    Score,
}

#[derive(Iden)]
enum TraitComputations {
    Table,
    WorkspaceId,
    ComputedAt,
    Contacts,
    InterestContacts,
    ElapsedMs,
}

#[derive(Iden)]
enum Workspaces {
    Table,
    Id,
}

fn workspace_fk(table: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, Alias::new("workspace_id"))
        .to(Workspaces::Table, Workspaces::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn big(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `rule` holds the rule's JSON form (NULL for a static segment, whose members are
        // uploaded); `member_count` and `computed_at` are those of the last materialization.
        manager
            .create_table(
                Table::create()
                    .table(Segments::Table)
                    .col(
                        ColumnDef::new(Segments::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(big(Segments::WorkspaceId))
                    .col(ColumnDef::new(Segments::Slug).string().not_null())
                    .col(ColumnDef::new(Segments::Name).string().not_null())
                    .col(ColumnDef::new(Segments::Description).text().not_null())
                    .col(ColumnDef::new(Segments::Category).string().not_null())
                    .col(ColumnDef::new(Segments::Kind).string().not_null())
                    .col(ColumnDef::new(Segments::Rule).text().null())
                    .col(
                        ColumnDef::new(Segments::MemberCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Segments::ComputedAt).big_integer().null())
                    .col(big(Segments::CreatedAt))
                    .col(big(Segments::UpdatedAt))
                    .foreign_key(&mut workspace_fk(Segments::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_segments_slug")
                    .table(Segments::Table)
                    .col(Segments::WorkspaceId)
                    .col(Segments::Slug)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // One row per stay in a segment: `exited_at` is NULL while the contact is a member.
        // Size over time, entries and exits per day, and churn per segment all read it.
        // No foreign keys: materializing a segment writes up to one row per contact, and a
        // per-row check of two keys cost a third of that time; deleting a segment or a
        // contact deletes its memberships explicitly.
        manager
            .create_table(
                Table::create()
                    .table(SegmentMemberships::Table)
                    .col(
                        ColumnDef::new(SegmentMemberships::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(big(SegmentMemberships::SegmentId))
                    .col(big(SegmentMemberships::ContactId))
                    .col(big(SegmentMemberships::EnteredAt))
                    .col(
                        ColumnDef::new(SegmentMemberships::ExitedAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // A contact is a current member at most once; both databases support partial indexes
        // with this syntax, which sea-query does not build.
        db.execute_unprepared(
            "CREATE UNIQUE INDEX ux_segment_memberships_current \
             ON segment_memberships (segment_id, contact_id) WHERE exited_at IS NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX ix_segment_memberships_contact \
             ON segment_memberships (contact_id) WHERE exited_at IS NULL",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_segment_memberships_history")
                    .table(SegmentMemberships::Table)
                    .col(SegmentMemberships::SegmentId)
                    .col(SegmentMemberships::EnteredAt)
                    .to_owned(),
            )
            .await?;

        // Computed per contact from its purchase events by the trait recomputation; a contact
        // without purchases has no row. This table and contact_interests are derived data that
        // every recomputation rewrites for the whole workspace, so they have no foreign keys: a
        // check per written row cost 13 s of 33 s for 835,000 rows on PostgreSQL. Contact ids are
        // never reused (bigserial, AUTOINCREMENT), so the rows of a deleted contact match no
        // contact, and the next recomputation removes them.
        manager
            .create_table(
                Table::create()
                    .table(ContactTraits::Table)
                    .col(
                        ColumnDef::new(ContactTraits::ContactId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(big(ContactTraits::WorkspaceId))
                    .col(big(ContactTraits::Orders))
                    .col(ColumnDef::new(ContactTraits::Revenue).double().not_null())
                    .col(big(ContactTraits::FirstPurchaseAt))
                    .col(big(ContactTraits::LastPurchaseAt))
                    .col(
                        ColumnDef::new(ContactTraits::RecencyDays)
                            .double()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContactTraits::RfmRecency)
                            .small_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContactTraits::RfmFrequency)
                            .small_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContactTraits::RfmMonetary)
                            .small_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContactTraits::RfmSegment)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ContactTraits::Clv).double().not_null())
                    .col(big(ContactTraits::ComputedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_contact_traits_rfm_segment")
                    .table(ContactTraits::Table)
                    .col(ContactTraits::WorkspaceId)
                    .col(ContactTraits::RfmSegment)
                    .to_owned(),
            )
            .await?;

        // Decayed, weighted interest per product category, normalised per contact: a contact's
        // scores are shares that add up to 1.
        manager
            .create_table(
                Table::create()
                    .table(ContactInterests::Table)
                    .col(big(ContactInterests::ContactId))
                    .col(big(ContactInterests::WorkspaceId))
                    .col(
                        ColumnDef::new(ContactInterests::Category)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ContactInterests::Score).double().not_null())
                    .primary_key(
                        Index::create()
                            .col(ContactInterests::ContactId)
                            .col(ContactInterests::Category),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_contact_interests_category")
                    .table(ContactInterests::Table)
                    .col(ContactInterests::WorkspaceId)
                    .col(ContactInterests::Category)
                    .col(ContactInterests::Score)
                    .to_owned(),
            )
            .await?;

        // The last trait computation of each workspace, so that a contact without traits can
        // be told apart from traits that were never computed.
        manager
            .create_table(
                Table::create()
                    .table(TraitComputations::Table)
                    .col(
                        ColumnDef::new(TraitComputations::WorkspaceId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(big(TraitComputations::ComputedAt))
                    .col(big(TraitComputations::Contacts))
                    .col(big(TraitComputations::InterestContacts))
                    .col(big(TraitComputations::ElapsedMs))
                    .foreign_key(&mut workspace_fk(TraitComputations::Table))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            TraitComputations::Table.into_iden(),
            ContactInterests::Table.into_iden(),
            ContactTraits::Table.into_iden(),
            SegmentMemberships::Table.into_iden(),
            Segments::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
