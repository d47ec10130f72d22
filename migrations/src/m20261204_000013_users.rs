//! People who use the dashboard: their accounts (email, argon2id password hash, role), their
//! server-side sessions (only a hash of each session token is kept) and the one-time links
//! that invite them or reset their password (only a hash of each link's token is kept).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000013_users"
    }
}

#[derive(Iden)]
enum Users {
    Table,
    Id,
    WorkspaceId,
    Email,
    Name,
    Role,
    PasswordHash,
    CreatedAt,
    LastLoginAt,
    DeactivatedAt,
}

#[derive(Iden)]
enum UserSessions {
    Table,
    Id,
    UserId,
    TokenHash,
    CsrfToken,
    UserAgent,
    Address,
    CreatedAt,
    LastSeenAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(Iden)]
enum UserLinks {
    Table,
    Id,
    UserId,
    Purpose,
    TokenHash,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    UsedAt,
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

fn big_null(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().null().to_owned()
}

fn user_fk(table: impl IntoIden, column: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Users::Table, Users::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One account per email address (stored lower-case), whatever the workspace: a person
        // logs in with their address alone. No password hash until the invitation is accepted.
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id(Users::Id))
                    .col(big(Users::WorkspaceId))
                    .col(ColumnDef::new(Users::Email).string().not_null())
                    .col(ColumnDef::new(Users::Name).string().not_null())
                    .col(ColumnDef::new(Users::Role).string().not_null())
                    .col(ColumnDef::new(Users::PasswordHash).text().null())
                    .col(big(Users::CreatedAt))
                    .col(big_null(Users::LastLoginAt))
                    .col(big_null(Users::DeactivatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Users::Table, Users::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_users_email")
                    .table(Users::Table)
                    .col(Users::Email)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // A logged-in browser. The cookie carries a random token; only its SHA-256 is here, so
        // a copy of the table logs nobody in. The CSRF token is the session's synchronizer
        // token, put in every form.
        manager
            .create_table(
                Table::create()
                    .table(UserSessions::Table)
                    .col(id(UserSessions::Id))
                    .col(big(UserSessions::UserId))
                    .col(ColumnDef::new(UserSessions::TokenHash).string().not_null())
                    .col(ColumnDef::new(UserSessions::CsrfToken).string().not_null())
                    .col(ColumnDef::new(UserSessions::UserAgent).text().not_null())
                    .col(ColumnDef::new(UserSessions::Address).string().not_null())
                    .col(big(UserSessions::CreatedAt))
                    .col(big(UserSessions::LastSeenAt))
                    .col(big(UserSessions::ExpiresAt))
                    .col(big_null(UserSessions::RevokedAt))
                    .foreign_key(&mut user_fk(UserSessions::Table, UserSessions::UserId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_user_sessions_token")
                    .table(UserSessions::Table)
                    .col(UserSessions::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_user_sessions_user")
                    .table(UserSessions::Table)
                    .col(UserSessions::UserId)
                    .to_owned(),
            )
            .await?;

        // Invitation and password-reset links: each works once (used_at is set by
        // compare-and-set) and until expires_at.
        manager
            .create_table(
                Table::create()
                    .table(UserLinks::Table)
                    .col(id(UserLinks::Id))
                    .col(big(UserLinks::UserId))
                    .col(ColumnDef::new(UserLinks::Purpose).string().not_null())
                    .col(ColumnDef::new(UserLinks::TokenHash).string().not_null())
                    .col(big_null(UserLinks::CreatedBy))
                    .col(big(UserLinks::CreatedAt))
                    .col(big(UserLinks::ExpiresAt))
                    .col(big_null(UserLinks::UsedAt))
                    .foreign_key(&mut user_fk(UserLinks::Table, UserLinks::UserId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_user_links_token")
                    .table(UserLinks::Table)
                    .col(UserLinks::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UserLinks::Table.into_iden(),
            UserSessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
