//! `clarion keys`: API keys are made here, shown once, and stored only as a hash.

use clap::Subcommand;
use clarion_model::{DEFAULT_WORKSPACE, Role};
use clarion_server::{Settings, db, store};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once; store it in your secret manager.
    Create {
        /// admin (everything, including keys), marketer (contacts, events, segments,
        /// campaigns) or viewer (read only).
        #[arg(long)]
        role: Role,
        /// A name that says who or what uses the key.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id or by its shown prefix (e.g. clk_Ab12Cd34).
    Revoke { key: String },
}

pub async fn run(command: KeysCommand, settings: Settings) -> anyhow::Result<()> {
    let db = db::connect(&settings.database).await?;
    db::migrate(&db).await?;
    match command {
        KeysCommand::Create { role, name } => {
            let (key, info) = store::keys::create(&db, DEFAULT_WORKSPACE, &name, role).await?;
            eprintln!(
                "created {} key {:?} (id {}); it is shown only this once:",
                info.role, info.name, info.id
            );
            println!("{key}");
        }
        KeysCommand::List => {
            println!(
                "{:>5}  {:<14} {:<9} {:<25} {:<25} name",
                "id", "prefix", "role", "created", "revoked"
            );
            for key in store::keys::list(&db, DEFAULT_WORKSPACE).await? {
                println!(
                    "{:>5}  {:<14} {:<9} {:<25} {:<25} {}",
                    key.id,
                    key.prefix,
                    key.role,
                    key.created_at,
                    key.revoked_at
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into()),
                    key.name
                );
            }
        }
        KeysCommand::Revoke { key } => {
            match store::keys::revoke(&db, DEFAULT_WORKSPACE, &key).await? {
                0 => anyhow::bail!("no active key has id or prefix {key:?}"),
                n => println!("revoked {n} key(s)"),
            }
        }
    }
    Ok(())
}
