//! Workspaces, contacts, events, API keys and attribute definitions, with the indexes that
//! ingestion, segment and KPI queries need.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_foundation"
    }
}

#[derive(Iden)]
enum Workspaces {
    Table,
    Id,
    Slug,
    Name,
    CreatedAt,
}

#[derive(Iden)]
enum Contacts {
    Table,
    Id,
    WorkspaceId,
    ExternalId,
    Email,
    EmailDomain,
    Phone,
    FirstName,
    LastName,
    Locale,
    TimeZone,
    Country,
    Region,
    City,
    Attributes,
    EmailStatus,
    WebhookStatus,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum Events {
    Table,
    Id,
    WorkspaceId,
    ContactId,
    Kind,
    OccurredAt,
    Amount,
    Currency,
    Properties,
    IdempotencyKey,
    ReceivedAt,
}

#[derive(Iden)]
enum ApiKeys {
    Table,
    Id,
    WorkspaceId,
    Name,
    Role,
    Prefix,
    KeyHash,
    CreatedAt,
    RevokedAt,
}

#[derive(Iden)]
enum AttributeDefinitions {
    Table,
    WorkspaceId,
    Name,
    AttrType,
    CreatedAt,
}

/// A 64-bit auto-incrementing primary key (`bigserial` on PostgreSQL, the rowid alias
/// `integer primary key` on SQLite).
fn id(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn workspace_fk(table: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, Alias::new("workspace_id"))
        .to(Workspaces::Table, Workspaces::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Workspaces::Table)
                    .col(id(Workspaces::Id))
                    .col(
                        ColumnDef::new(Workspaces::Slug)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Workspaces::Name).string().not_null())
                    .col(
                        ColumnDef::new(Workspaces::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(Workspaces::Table)
                    .columns([
                        Workspaces::Id,
                        Workspaces::Slug,
                        Workspaces::Name,
                        Workspaces::CreatedAt,
                    ])
                    .values_panic([
                        1.into(),
                        "default".into(),
                        "Default workspace".into(),
                        0.into(),
                    ])
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Contacts::Table)
                    .col(id(Contacts::Id))
                    .col(
                        ColumnDef::new(Contacts::WorkspaceId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Contacts::ExternalId).string().not_null())
                    .col(ColumnDef::new(Contacts::Email).string().null())
                    .col(ColumnDef::new(Contacts::EmailDomain).string().null())
                    .col(ColumnDef::new(Contacts::Phone).string().null())
                    .col(ColumnDef::new(Contacts::FirstName).string().null())
                    .col(ColumnDef::new(Contacts::LastName).string().null())
                    .col(ColumnDef::new(Contacts::Locale).string().null())
                    .col(ColumnDef::new(Contacts::TimeZone).string().null())
                    .col(ColumnDef::new(Contacts::Country).string_len(2).null())
                    .col(ColumnDef::new(Contacts::Region).string().null())
                    .col(ColumnDef::new(Contacts::City).string().null())
                    .col(
                        ColumnDef::new(Contacts::Attributes)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Contacts::EmailStatus)
                            .string()
                            .not_null()
                            .default("subscribed"),
                    )
                    .col(
                        ColumnDef::new(Contacts::WebhookStatus)
                            .string()
                            .not_null()
                            .default("subscribed"),
                    )
                    .col(ColumnDef::new(Contacts::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Contacts::UpdatedAt).big_integer().not_null())
                    .foreign_key(&mut workspace_fk(Contacts::Table))
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            (
                "ux_contacts_external_id",
                vec![Contacts::WorkspaceId, Contacts::ExternalId],
                true,
            ),
            (
                "ix_contacts_email",
                vec![Contacts::WorkspaceId, Contacts::Email],
                false,
            ),
            (
                "ix_contacts_country",
                vec![Contacts::WorkspaceId, Contacts::Country],
                false,
            ),
            (
                "ix_contacts_email_domain",
                vec![Contacts::WorkspaceId, Contacts::EmailDomain],
                false,
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(Contacts::Table);
            for column in columns {
                index.col(column);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            // Attribute filters use jsonb containment (`attributes @> ...`), which a GIN index
            // answers; SQLite has no equivalent and scans.
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE INDEX ix_contacts_attributes ON contacts USING GIN (attributes jsonb_path_ops)",
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(id(Events::Id))
                    .col(ColumnDef::new(Events::WorkspaceId).big_integer().not_null())
                    .col(ColumnDef::new(Events::ContactId).big_integer().not_null())
                    .col(ColumnDef::new(Events::Kind).string().not_null())
                    .col(ColumnDef::new(Events::OccurredAt).big_integer().not_null())
                    .col(ColumnDef::new(Events::Amount).double().null())
                    .col(ColumnDef::new(Events::Currency).string_len(3).null())
                    .col(ColumnDef::new(Events::Properties).json_binary().not_null())
                    .col(ColumnDef::new(Events::IdempotencyKey).string().null())
                    .col(ColumnDef::new(Events::ReceivedAt).big_integer().not_null())
                    .foreign_key(&mut workspace_fk(Events::Table))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Events::Table, Events::ContactId)
                            .to(Contacts::Table, Contacts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Rules and KPIs ask "what did this contact do, of this kind, since when" and "who did
        // this kind of thing since when"; idempotency keys are unique per workspace (NULLs are
        // distinct on both databases, so events without a key never collide).
        for (name, columns, unique) in [
            (
                "ux_events_idempotency_key",
                vec![Events::WorkspaceId, Events::IdempotencyKey],
                true,
            ),
            (
                "ix_events_contact_kind_time",
                vec![Events::ContactId, Events::Kind, Events::OccurredAt],
                false,
            ),
            (
                "ix_events_kind_time",
                vec![Events::WorkspaceId, Events::Kind, Events::OccurredAt],
                false,
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(Events::Table);
            for column in columns {
                index.col(column);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(id(ApiKeys::Id))
                    .col(
                        ColumnDef::new(ApiKeys::WorkspaceId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ApiKeys::Name).string().not_null())
                    .col(ColumnDef::new(ApiKeys::Role).string().not_null())
                    .col(ColumnDef::new(ApiKeys::Prefix).string().not_null())
                    .col(
                        ColumnDef::new(ApiKeys::KeyHash)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(ApiKeys::RevokedAt).big_integer().null())
                    .foreign_key(&mut workspace_fk(ApiKeys::Table))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AttributeDefinitions::Table)
                    .col(
                        ColumnDef::new(AttributeDefinitions::WorkspaceId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AttributeDefinitions::Name)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AttributeDefinitions::AttrType)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AttributeDefinitions::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(AttributeDefinitions::WorkspaceId)
                            .col(AttributeDefinitions::Name),
                    )
                    .foreign_key(&mut workspace_fk(AttributeDefinitions::Table))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AttributeDefinitions::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Events::Table.into_iden(),
            Contacts::Table.into_iden(),
            Workspaces::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
