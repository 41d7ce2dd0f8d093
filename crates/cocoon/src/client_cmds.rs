//! `cocoon client <action>`: the client's account and money commands (docs/PAYMENTS.md), and
//! `keys` (per-app API keys, `client_keys_cmds`). They
//! read the role's config (`--config FILE` or `--data-dir DIR` of a dev network), print amounts
//! in TON and tokens, and take `--json` for scripts.
//!
//! All of them act from the config's wallet directly on chain (`cocoon_client::payments::owner`),
//! so they work when the proxy is gone. `balance` also asks the running client's `/jsonstats`
//! for the proxies' counts (pending usage); without a running client it shows chain-only data
//! and says so. Contracts are found through the running client and the wallet's own history.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use cocoon_client::payments::account::state_name;
use cocoon_client::payments::owner::{
    self, CloseOutcome, KnownContract, OwnerAccess, StatsHint, WithdrawOutcome,
};
use cocoon_client::ClientConfig;
use cocoon_ton::TonAddress;
use serde_json::json;

use crate::chain_cmds::format_ton;

/// What `cocoon client` can do besides running.
#[derive(Subcommand, Debug)]
pub enum ClientAction {
    /// Per proxy: on-chain balance, stake, tokens used, charged (on chain) and pending (the
    /// proxy's count not yet charged), in TON and tokens.
    Balance(ClientCmdArgs),
    /// Withdraw everything above the stake from our client contract(s) back to the wallet.
    Withdraw(ClientCmdArgs),
    /// Close our client contract(s): the first call starts closing (money above the stake comes
    /// back at once) and prints when the rest can be forced back; a second call after that time
    /// forces the refund (paid from the proxy's stake, works without the proxy).
    Close(ClientCmdArgs),
    /// Per-app API keys (docs/KEYS.md): create, list, show, revoke. They edit the config's
    /// `[keys] db` file directly; a running client picks changes up within a second.
    Keys(crate::client_keys_cmds::KeysCmd),
}

/// Options of every `cocoon client` action.
#[derive(Args, Debug)]
pub struct ClientCmdArgs {
    /// The client (its config has the `[chain]` section), and the output format.
    #[command(flatten)]
    pub target: crate::ActionTarget,
    /// Only this client contract (address); default: every one of ours.
    #[arg(long)]
    pub contract: Option<String>,
}

pub async fn run(action: ClientAction) -> Result<()> {
    match action {
        ClientAction::Balance(a) => balance(a).await,
        ClientAction::Withdraw(a) => withdraw(a).await,
        ClientAction::Close(a) => close(a).await,
        ClientAction::Keys(k) => crate::client_keys_cmds::run(k),
    }
}

/// The config, with a relative wallet file resolved against the config's folder when it is
/// not found from the current directory (dev data dirs hold it next to client.toml).
fn load_config(a: &ClientCmdArgs) -> Result<ClientConfig> {
    let Some(path) = a.target.config_path("client.toml") else {
        bail!("give --config FILE or --data-dir DIR (a `cocoon dev` network's)");
    };
    let mut cfg: ClientConfig = cocoon_node::config::load_toml(&path)?;
    let w = &cfg.chain.wallet_mnemonic_file;
    if w.is_relative() && !w.exists() {
        if let Some(dir) = path.parent() {
            cfg.chain.wallet_mnemonic_file = dir.join(w);
        }
    }
    Ok(cfg)
}

/// The running client's `/jsonstats`, if it answers.
async fn client_stats(cfg: &ClientConfig) -> Option<serde_json::Value> {
    let mut addr = cfg.http_listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut req = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .ok()?
        .get(format!("http://{addr}/jsonstats"));
    // With API keys on, the stats take either admin token (docs/KEYS.md).
    let token = cfg
        .bearer_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .or(Some(cfg.admin_token.as_str()).filter(|t| !t.is_empty()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.ok()?.error_for_status().ok()?;
    resp.json().await.ok()
}

struct Found {
    access: OwnerAccess,
    contracts: Vec<KnownContract>,
    client_running: bool,
}

async fn find(a: &ClientCmdArgs) -> Result<Found> {
    let cfg = load_config(a)?;
    let access = OwnerAccess::open(&cfg)
        .await
        .context("opening the wallet")?;
    let stats = client_stats(&cfg).await;
    let hints: Vec<StatsHint> = stats
        .as_ref()
        .map(owner::hints_from_stats)
        .unwrap_or_default();
    let mut contracts = owner::find_contracts(&access, &hints)
        .await
        .context("finding our client contracts")?;
    if let Some(only) = &a.contract {
        let only: TonAddress = only
            .parse()
            .with_context(|| format!("--contract {only:?}"))?;
        contracts.retain(|c| c.address == only);
        if contracts.is_empty() {
            bail!(
                "{} is not one of this wallet's client contracts",
                only.to_bounceable()
            );
        }
    }
    Ok(Found {
        access,
        contracts,
        client_running: stats.is_some(),
    })
}

fn n64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

fn proxy_name(c: &KnownContract) -> String {
    c.hint
        .as_ref()
        .map_or_else(|| "(proxy not connected now)".into(), |h| h.proxy.clone())
}

async fn balance(a: ClientCmdArgs) -> Result<()> {
    let f = find(&a).await?;
    let wallet = f.access.owner();
    let wallet_balance = f.access.sender.balance().await.ok();
    if a.target.json {
        let rows: Vec<_> = f
            .contracts
            .iter()
            .map(|c| {
                let b = c.balance();
                json!({
                    "proxy": c.hint.as_ref().map(|h| h.proxy.clone()),
                    "contract": c.address.to_bounceable(),
                    "proxy_contract": c.data.proxy.to_bounceable(),
                    "state": state_name(c.data.state),
                    "balance_nanoton": n64(b.balance),
                    "stake_nanoton": n64(b.stake),
                    "tokens_used": b.used_tokens,
                    "proxy_max_tokens": c.hint.as_ref().map(|h| h.proxy_max_tokens),
                    "signed_charge_tokens": c.hint.as_ref().map(|h| h.signed_charge_tokens),
                    "charged_nanoton": n64(b.charged),
                    "pending_tokens": b.pending_tokens,
                    "pending_nanoton": b.pending.map(n64),
                    "price_per_token_nanoton": n64(c.params.price_per_token),
                    "unlock_ts": c.data.unlock_ts,
                })
            })
            .collect();
        let out = json!({
            "wallet": wallet.to_bounceable(),
            "wallet_balance_nanoton": wallet_balance.map(n64),
            "client_running": f.client_running,
            "contracts": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "wallet {}  balance {} TON",
        wallet.to_bounceable(),
        wallet_balance.map_or_else(|| "?".into(), format_ton)
    );
    if !f.client_running {
        println!(
            "(the client is not running: chain-only data; pending usage is known only to the proxy)"
        );
    }
    if f.contracts.is_empty() {
        println!(
            "no client contracts yet (the client deploys one when it first connects to a proxy)"
        );
    }
    for c in &f.contracts {
        let b = c.balance();
        println!(
            "proxy {}  contract {}  ({})",
            proxy_name(c),
            c.address.to_bounceable(),
            state_name(c.data.state)
        );
        println!(
            "  balance  {} TON   stake {} TON",
            format_ton(b.balance),
            format_ton(b.stake)
        );
        println!(
            "  charged  {} tokens = {} TON (on chain, at {} nanoTON/token)",
            b.used_tokens,
            format_ton(b.charged),
            c.params.price_per_token
        );
        if let Some(h) = &c.hint {
            println!(
                "  used     {} tokens (the proxy's count; {} signed for charging)",
                h.proxy_max_tokens, h.signed_charge_tokens
            );
        }
        match (b.pending_tokens, b.pending) {
            (Some(t), Some(v)) => println!(
                "  pending  {t} tokens = {} TON (used, not yet charged on chain)",
                format_ton(v)
            ),
            _ => println!("  pending  unknown (the running client knows it)"),
        }
    }
    Ok(())
}

async fn withdraw(a: ClientCmdArgs) -> Result<()> {
    let f = find(&a).await?;
    let mut rows = Vec::new();
    for c in &f.contracts {
        let r = owner::withdraw(&f.access, c).await;
        let (line, row) = match r {
            Ok(WithdrawOutcome::Sent { amount }) => (
                format!(
                    "withdrew {} TON (the balance above the stake)",
                    format_ton(amount)
                ),
                json!({"contract": c.address.to_bounceable(), "withdrawn_nanoton": n64(amount)}),
            ),
            Ok(WithdrawOutcome::Nothing(why)) => (
                format!("nothing to withdraw: {why}"),
                json!({"contract": c.address.to_bounceable(), "withdrawn_nanoton": 0, "note": why}),
            ),
            Err(e) => (
                format!("failed: {e}"),
                json!({"contract": c.address.to_bounceable(), "error": e.to_string()}),
            ),
        };
        if !a.target.json {
            println!("{}: {line}", c.address.to_bounceable());
        }
        rows.push(row);
    }
    finish(&a, &f, rows)
}

async fn close(a: ClientCmdArgs) -> Result<()> {
    let f = find(&a).await?;
    let mut rows = Vec::new();
    for c in &f.contracts {
        let addr = c.address.to_bounceable();
        let (line, row) = match owner::close(&f.access, c).await {
            Ok(CloseOutcome::Closing { unlock_ts, now }) => (
                format!(
                    "closing; money above the stake is on its way back. The rest can be forced back \
                     after chain time {unlock_ts} (in {} s): run `cocoon client close` again then",
                    unlock_ts.saturating_sub(now) + 1
                ),
                json!({"contract": addr, "state": "closing", "unlock_ts": unlock_ts, "now": now}),
            ),
            Ok(CloseOutcome::TooEarly { unlock_ts, now }) => (
                format!(
                    "still closing: the forced refund is possible after chain time {unlock_ts} (in {} s)",
                    unlock_ts.saturating_sub(now) + 1
                ),
                json!({"contract": addr, "state": "closing", "unlock_ts": unlock_ts, "now": now}),
            ),
            Ok(CloseOutcome::Refunded { amount }) => (
                format!(
                    "closed; up to {} TON refunded from the proxy's stake",
                    format_ton(amount)
                ),
                json!({"contract": addr, "state": "closed", "refunded_nanoton": n64(amount)}),
            ),
            Ok(CloseOutcome::AlreadyClosed) => (
                "already closed".into(),
                json!({"contract": addr, "state": "closed"}),
            ),
            Err(e) => (
                format!("failed: {e}"),
                json!({"contract": addr, "error": e.to_string()}),
            ),
        };
        if !a.target.json {
            println!("{addr}: {line}");
        }
        rows.push(row);
    }
    finish(&a, &f, rows)
}

fn finish(a: &ClientCmdArgs, f: &Found, rows: Vec<serde_json::Value>) -> Result<()> {
    if a.target.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "wallet": f.access.owner().to_bounceable(),
                "contracts": rows,
            }))?
        );
    } else if rows.is_empty() {
        println!("no client contracts found for this wallet");
    }
    if rows.iter().any(|r| r.get("error").is_some()) {
        bail!("some contracts failed (see above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_wallet_file_is_found_next_to_the_config() {
        let dir = std::env::temp_dir().join(format!("cocoon-client-cmds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("client.toml"),
            "[chain]\nwallet_mnemonic_file = \"client-wallet-for-test.mnemonic\"\n",
        )
        .expect("write");
        let a = ClientCmdArgs {
            target: crate::ActionTarget {
                config: None,
                data_dir: Some(dir.clone()),
                json: false,
            },
            contract: None,
        };
        let cfg = load_config(&a).expect("load");
        assert_eq!(
            cfg.chain.wallet_mnemonic_file,
            dir.join("client-wallet-for-test.mnemonic")
        );
        let none = ClientCmdArgs {
            target: crate::ActionTarget {
                config: None,
                data_dir: None,
                json: false,
            },
            contract: None,
        };
        assert!(load_config(&none).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
