//! Sender identities (a from-address or a whole domain, with its DKIM key, reply-to and
//! return-path) and the installation's secrets that Clarion makes itself (the tracking-link
//! key used while no `tracking.signing_keys` are configured).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000005_senders"
    }
}

#[derive(Iden)]
enum SenderIdentities {
    Table,
    Id,
    WorkspaceId,
    Address,
    ReplyTo,
    ReturnPath,
    DkimSelector,
    DkimAlgorithm,
    DkimPrivateKey,
    DkimDnsValue,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum InstallationSecrets {
    Table,
    Name,
    Value,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `address` is a mailbox address (`news@shop.example`) or a domain (`shop.example`),
        // in lower case. The private key is stored as written (PEM or base64 seed) and never
        // leaves the database through the API; `dkim_dns_value` is the TXT record to publish.
        manager
            .create_table(
                Table::create()
                    .table(SenderIdentities::Table)
                    .col(
                        ColumnDef::new(SenderIdentities::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SenderIdentities::WorkspaceId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SenderIdentities::Address)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SenderIdentities::ReplyTo).string().null())
                    .col(ColumnDef::new(SenderIdentities::ReturnPath).string().null())
                    .col(
                        ColumnDef::new(SenderIdentities::DkimSelector)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SenderIdentities::DkimAlgorithm)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SenderIdentities::DkimPrivateKey)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SenderIdentities::DkimDnsValue)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SenderIdentities::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SenderIdentities::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_sender_identities_workspace_address")
                    .table(SenderIdentities::Table)
                    .col(SenderIdentities::WorkspaceId)
                    .col(SenderIdentities::Address)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // One row per secret, written once (the first process to start wins) and read by
        // every process after.
        manager
            .create_table(
                Table::create()
                    .table(InstallationSecrets::Table)
                    .col(
                        ColumnDef::new(InstallationSecrets::Name)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(InstallationSecrets::Value).text().not_null())
                    .col(
                        ColumnDef::new(InstallationSecrets::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            InstallationSecrets::Table.into_iden(),
            SenderIdentities::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
