//! Deliverability feedback: the suppression list of each workspace and channel, the bounces
//! recorded at send time or reported by a provider, and the provider tokens already seen (so a
//! replayed signed request is refused).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000007_suppression"
    }
}

#[derive(Iden)]
enum Suppressions {
    Table,
    Id,
    WorkspaceId,
    Channel,
    Address,
    Reason,
    Source,
    CreatedAt,
}

#[derive(Iden)]
enum Bounces {
    Table,
    Id,
    WorkspaceId,
    ContactId,
    DeliveryId,
    Kind,
    Code,
    Text,
    Source,
    OccurredAt,
}

#[derive(Iden)]
enum ProviderTokens {
    Table,
    Provider,
    Token,
    SeenAt,
}

#[derive(Iden)]
enum Workspaces {
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

fn workspace_fk(table: impl IntoIden, column: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Workspaces::Table, Workspaces::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // An address (email) or a contact's external id (webhook) that is never sent to,
        // whatever its contact says. Unique per workspace and channel: adding it again keeps
        // the first reason.
        manager
            .create_table(
                Table::create()
                    .table(Suppressions::Table)
                    .col(id(Suppressions::Id))
                    .col(big(Suppressions::WorkspaceId))
                    .col(ColumnDef::new(Suppressions::Channel).string().not_null())
                    .col(ColumnDef::new(Suppressions::Address).string().not_null())
                    .col(ColumnDef::new(Suppressions::Reason).text().not_null())
                    .col(ColumnDef::new(Suppressions::Source).string().not_null())
                    .col(big(Suppressions::CreatedAt))
                    .foreign_key(&mut workspace_fk(
                        Suppressions::Table,
                        Suppressions::WorkspaceId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_suppressions_address")
                    .table(Suppressions::Table)
                    .col(Suppressions::WorkspaceId)
                    .col(Suppressions::Channel)
                    .col(Suppressions::Address)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // Every bounce of a contact's address: hard or soft, the SMTP code and text, where it
        // was learnt (smtp, ses, sendgrid, ...) and the delivery when known. Soft bounces are counted per contact within a
        // window, so the index leads with the contact.
        manager
            .create_table(
                Table::create()
                    .table(Bounces::Table)
                    .col(id(Bounces::Id))
                    .col(big(Bounces::WorkspaceId))
                    .col(big(Bounces::ContactId))
                    .col(ColumnDef::new(Bounces::DeliveryId).big_integer().null())
                    .col(ColumnDef::new(Bounces::Kind).string().not_null())
                    .col(ColumnDef::new(Bounces::Code).integer().null())
                    .col(ColumnDef::new(Bounces::Text).text().not_null())
                    .col(ColumnDef::new(Bounces::Source).string().not_null())
                    .col(big(Bounces::OccurredAt))
                    .foreign_key(&mut workspace_fk(Bounces::Table, Bounces::WorkspaceId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_bounces_contact")
                    .table(Bounces::Table)
                    .col(Bounces::WorkspaceId)
                    .col(Bounces::ContactId)
                    .col(Bounces::Kind)
                    .col(Bounces::OccurredAt)
                    .to_owned(),
            )
            .await?;

        // Tokens of signed provider requests already accepted (Mailgun signs a random token
        // per request): the same token again is a replay.
        manager
            .create_table(
                Table::create()
                    .table(ProviderTokens::Table)
                    .col(ColumnDef::new(ProviderTokens::Provider).string().not_null())
                    .col(ColumnDef::new(ProviderTokens::Token).string().not_null())
                    .col(big(ProviderTokens::SeenAt))
                    .primary_key(
                        Index::create()
                            .col(ProviderTokens::Provider)
                            .col(ProviderTokens::Token),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ProviderTokens::Table.into_iden(),
            Bounces::Table.into_iden(),
            Suppressions::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
