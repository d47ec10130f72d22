//! Webhook endpoints: named receivers, each with its own Standard Webhooks secret (and, during
//! a rotation, the previous one until the overlap ends), extra headers, a rate limit, a
//! timeout and the running results of its deliveries.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000006_webhook_endpoints"
    }
}

#[derive(Iden)]
enum WebhookEndpoints {
    Table,
    Id,
    WorkspaceId,
    Name,
    Url,
    Secret,
    PreviousSecret,
    PreviousUntil,
    Headers,
    RatePerSecond,
    TimeoutMs,
    Enabled,
    Successes,
    Failures,
    LastError,
    LastStatus,
    LastAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(Iden)]
enum Workspaces {
    Table,
    Id,
}

fn big(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `secret` is the current `whsec_` secret; `previous_secret` signs too until
        // `previous_until` (Unix milliseconds). `headers` is a JSON object of name to value.
        // The counters and `last_*` columns are updated by the delivery workers once per
        // batch.
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(
                        ColumnDef::new(WebhookEndpoints::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(big(WebhookEndpoints::WorkspaceId))
                    .col(ColumnDef::new(WebhookEndpoints::Name).string().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Url).text().not_null())
                    .col(ColumnDef::new(WebhookEndpoints::Secret).text().not_null())
                    .col(
                        ColumnDef::new(WebhookEndpoints::PreviousSecret)
                            .text()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(WebhookEndpoints::PreviousUntil)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(WebhookEndpoints::Headers).text().not_null())
                    .col(big(WebhookEndpoints::RatePerSecond))
                    .col(big(WebhookEndpoints::TimeoutMs))
                    .col(
                        ColumnDef::new(WebhookEndpoints::Enabled)
                            .boolean()
                            .not_null(),
                    )
                    .col(big(WebhookEndpoints::Successes).default(0))
                    .col(big(WebhookEndpoints::Failures).default(0))
                    .col(ColumnDef::new(WebhookEndpoints::LastError).text().null())
                    .col(
                        ColumnDef::new(WebhookEndpoints::LastStatus)
                            .integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(WebhookEndpoints::LastAt)
                            .big_integer()
                            .null(),
                    )
                    .col(big(WebhookEndpoints::CreatedAt))
                    .col(big(WebhookEndpoints::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookEndpoints::Table, WebhookEndpoints::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_webhook_endpoints_workspace_name")
                    .table(WebhookEndpoints::Table)
                    .col(WebhookEndpoints::WorkspaceId)
                    .col(WebhookEndpoints::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookEndpoints::Table).to_owned())
            .await
    }
}
