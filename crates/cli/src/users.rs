//! `clarion users`: dashboard accounts from the command line, above all the first admin. An
//! account is created without a password; the one-time link printed here sets it.

use clap::Subcommand;
use clarion_model::{DEFAULT_WORKSPACE, Role};
use clarion_server::{
    Settings,
    accounts::{LinkPurpose, links, users},
    db, store,
};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a dashboard user and print a one-time link that sets their password and logs
    /// them in (the way to get the first admin).
    Create {
        #[arg(long)]
        email: String,
        /// admin (users, API keys, channels, settings), marketer (contacts, segments,
        /// campaigns) or viewer (dashboards and reports).
        #[arg(long)]
        role: Role,
        /// The person's name, shown on the users page.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Print a one-time password-reset link for a user (or a new invitation link when they
    /// never set a password).
    ResetLink {
        #[arg(long)]
        email: String,
    },
    /// List the dashboard's users.
    List,
}

pub async fn run(command: UsersCommand, settings: Settings) -> anyhow::Result<()> {
    let db = db::connect(&settings.database).await?;
    db::migrate(&db).await?;
    let signer =
        links::LinkSigner::new(store::secrets::installation_secret(&db, links::LINK_KEY).await?);
    let base = settings.server.public_url.trim_end_matches('/');
    let dashboard = &settings.dashboard;
    match command {
        UsersCommand::Create { email, role, name } => {
            let user = users::create(&db, DEFAULT_WORKSPACE, &email, &name, role).await?;
            let (token, expires) = links::issue(
                &db,
                &signer,
                user.id,
                LinkPurpose::Invite,
                dashboard.invite_link_lifetime(),
                None,
            )
            .await?;
            eprintln!(
                "created {} user {} (id {}). Open this link to set the password and log in; it works once, until {}:",
                user.role, user.email, user.id, expires
            );
            println!("{base}/password/{token}");
        }
        UsersCommand::ResetLink { email } => {
            let user = users::find_by_email(&db, &email)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user has the email address {email:?}"))?;
            let (purpose, ttl) = if user.has_password {
                (LinkPurpose::Reset, dashboard.reset_link_lifetime())
            } else {
                (LinkPurpose::Invite, dashboard.invite_link_lifetime())
            };
            let (token, expires) = links::issue(&db, &signer, user.id, purpose, ttl, None).await?;
            eprintln!(
                "{} link for {}; it works once, until {}:",
                purpose.as_str(),
                user.email,
                expires
            );
            println!("{base}/password/{token}");
        }
        UsersCommand::List => {
            println!(
                "{:>5}  {:<9} {:<12} {:<25} email",
                "id", "role", "state", "last login"
            );
            for user in users::list(&db, DEFAULT_WORKSPACE).await? {
                let state = if !user.is_active() {
                    "deactivated"
                } else if user.has_password {
                    "active"
                } else {
                    "invited"
                };
                println!(
                    "{:>5}  {:<9} {:<12} {:<25} {}",
                    user.id,
                    user.role.as_str(),
                    state,
                    user.last_login_at
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "never".into()),
                    user.email
                );
            }
        }
    }
    Ok(())
}
