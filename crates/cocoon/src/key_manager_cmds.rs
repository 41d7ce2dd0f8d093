//! `cocoon key-manager <action>`: the key manager operator's commands. `identity` prints the
//! public key the root must list as its key manager (`cocoon root set-key-manager
//! --public-key ...`), creating the identity file (0600) if this is the first start. Each takes
//! `--config FILE` or `--data-dir DIR` (dev network: DIR/key-manager.toml) and `--json`.

use anyhow::{Context, Result};
use clap::Subcommand;
use cocoon_key_manager::KeyManagerConfig;

/// Which key manager (`--config FILE` or `--data-dir DIR` with DIR/key-manager.toml), and `--json`.
pub type Target = crate::ActionTarget;

/// What `cocoon key-manager` can do besides running.
#[derive(Subcommand, Debug)]
pub enum KeyManagerAction {
    /// Print the identity public key that signs key announcements (creating it on first use):
    /// register it with `cocoon root set-key-manager --public-key KEY`.
    Identity(Target),
}

pub async fn run(action: KeyManagerAction) -> Result<()> {
    match action {
        KeyManagerAction::Identity(t) => identity(t).await,
    }
}

async fn identity(t: Target) -> Result<()> {
    let cfg: KeyManagerConfig = match t.config_path("key-manager.toml") {
        Some(p) => cocoon_node::config::load_toml(&p)?,
        None => KeyManagerConfig::default(),
    };
    let path = cfg.identity_file();
    let public = tokio::task::spawn_blocking(move || {
        cocoon_key_manager::store::load_or_create_identity(&path).map(|s| s.public_key())
    })
    .await?
    .context("identity key")?;
    if t.json {
        println!(
            "{}",
            serde_json::json!({
                "identity_public_key": hex::encode(public),
                "file": cfg.identity_file(),
            })
        );
    } else {
        println!("{}", hex::encode(public));
    }
    Ok(())
}
