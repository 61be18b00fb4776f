//! `neurobatch token create|list|revoke`: API tokens for reviewers, admins
//! and services (PACS hooks). A new token is printed once, on stdout's last
//! line; the job store keeps only its SHA-256.

use chrono::Utc;
use neurobatch_core::db::JobStore;
use neurobatch_core::domain::Role;

use super::ConfigArgs;
use super::daemon;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a token and print it (once).
    Create {
        /// reviewer (works the review queue), admin (also jobs and figures) or service (submits studies).
        #[arg(long, value_parser = ["reviewer", "admin", "service"])]
        role: String,
        /// A unique name: who or what holds the token (shown in the audit log).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List the tokens (names, roles, when made and revoked; never the tokens).
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Revoke a token by name: it stops authenticating at once.
    Revoke {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn run(cmd: &Command) -> anyhow::Result<()> {
    let config = match cmd {
        Command::Create { config, .. } | Command::List { config } | Command::Revoke { config, .. } => config.load()?,
    };
    daemon::runtime()?.block_on(async {
        let store = JobStore::connect_config(&config.database).await?;
        store.migrate().await?;
        let result = match cmd {
            Command::Create { role, name, .. } => {
                let role: Role = role.parse()?;
                anyhow::ensure!(
                    !name.trim().is_empty() && name.len() <= 200 && !name.chars().any(char::is_control),
                    "--name: 1 to 200 printable characters"
                );
                let token = scheduler::new_token();
                let made = store.create_token(name, role, &scheduler::token_sha256(&token), Utc::now()).await;
                match made {
                    Ok(t) => {
                        eprintln!("token `{}` ({}) created; it is shown once:", t.name, t.role.as_str());
                        println!("{token}");
                        Ok(())
                    }
                    Err(e) => Err(anyhow::anyhow!("token `{name}`: {e} (is the name already used?)")),
                }
            }
            Command::List { .. } => {
                for t in store.tokens().await? {
                    let revoked = t.revoked_at.map_or(String::new(), |r| format!("  revoked {}", r.to_rfc3339()));
                    println!("{}\t{}\tcreated {}{revoked}", t.name, t.role.as_str(), t.created_at.to_rfc3339());
                }
                Ok(())
            }
            Command::Revoke { name, .. } => {
                anyhow::ensure!(store.revoke_token(name, Utc::now()).await?, "no live token named `{name}`");
                println!("token `{name}` revoked");
                Ok(())
            }
        };
        store.close().await;
        result
    })
}
