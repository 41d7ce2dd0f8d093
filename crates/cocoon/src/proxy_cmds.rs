//! `cocoon proxy <action>`: the proxy operator's commands (docs/PAYMENTS.md). `status` reads the
//! running proxy's `/jsonstats`; `ledger` verifies and prints the ledger file of a stopped
//! proxy; `withdraw`, `anchor` and `change-model` are POSTs to the admin endpoints with the
//! config's `admin_token`. Each takes `--config FILE` or `--data-dir DIR` (dev network: DIR/proxy.toml)
//! and `--json`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use cocoon_onchain::amount::format_ton;
use cocoon_proxy::ProxyConfig;

/// Which proxy (`--config FILE` or `--data-dir DIR` with DIR/proxy.toml), and `--json`.
pub type Target = crate::ActionTarget;

fn load(t: &Target) -> Result<ProxyConfig> {
    match t.config_path("proxy.toml") {
        Some(p) => Ok(cocoon_node::config::load_toml(&p)?),
        None => Ok(ProxyConfig::default()),
    }
}

/// What `cocoon proxy` can do besides running.
#[derive(Subcommand, Debug)]
pub enum ProxyAction {
    /// Commission, clients, workers and what is anchored on chain (from the running proxy).
    Status(Target),
    /// Verify every signed row of the ledger file and print it (run it while the proxy is
    /// stopped, e.g. after it halted on a rollback).
    Ledger(Target),
    /// Ask the proxy contract to pay the commission to the owner now.
    Withdraw(Target),
    /// Anchor the ledger on chain now (a save-state marker).
    Anchor(Target),
    /// Ask one worker to serve another model (`worker.changeModel`): the worker runs its
    /// `change_model_hook` and, when it succeeds, is listed with the new model.
    ChangeModel(ChangeModelArgs),
}

/// `cocoon proxy change-model --worker CONN --model NAME`.
#[derive(clap::Args, Debug)]
pub struct ChangeModelArgs {
    #[command(flatten)]
    pub target: Target,
    /// The worker's connection id (`conn` in `cocoon proxy status --json` / `/jsonstats`).
    #[arg(long)]
    pub worker: u64,
    /// The model it should serve (`name@commit:hash` or a bare name).
    #[arg(long)]
    pub model: String,
}

pub async fn run(action: ProxyAction) -> Result<()> {
    match action {
        ProxyAction::Status(t) => status(t).await,
        ProxyAction::Ledger(t) => ledger(t).await,
        ProxyAction::Withdraw(t) => admin(t, "withdraw").await,
        ProxyAction::Anchor(t) => admin(t, "anchor").await,
        ProxyAction::ChangeModel(a) => {
            let body = serde_json::json!({ "worker": a.worker, "model": a.model });
            // The worker's hook may take minutes (it restarts an engine); the proxy waits 15.
            admin_with(
                a.target,
                "change-model",
                Some(body),
                Duration::from_secs(16 * 60),
            )
            .await
        }
    }
}

fn http() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?)
}

async fn status(t: Target) -> Result<()> {
    let cfg = load(&t)?;
    let url = format!("http://{}/jsonstats", cfg.stats_listen);
    let mut get = http()?.get(&url);
    if !cfg.stats_token.is_empty() {
        get = get.bearer_auth(&cfg.stats_token);
    }
    let v: serde_json::Value = get
        .send()
        .await
        .with_context(|| format!("is the proxy running? GET {url}"))?
        .error_for_status()?
        .json()
        .await?;
    if t.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let q = &v["queries"];
    println!(
        "requests: {} answered, {} failed, {} rejected, {} running",
        q["succeeded"], q["failed"], q["rejected"], q["running"]
    );
    let m = &v["money_nanoton"];
    let nano = |x: &serde_json::Value| x.as_u64().map(u128::from).unwrap_or(0);
    println!(
        "since start: clients charged {} TON, workers earned {} TON, commission {} TON ({} tokens)",
        format_ton(nano(&m["client_cost"])),
        format_ton(nano(&m["worker_fee"])),
        format_ton(nano(&m["commission"])),
        v["tokens_charged"]
    );
    let p = &v["payments"];
    if p.is_null() {
        println!("payments: off (no [chain] in the config; clients run on configured credit)");
        return Ok(());
    }
    if let Some(h) = p["halted"].as_str() {
        println!("HALTED: {h}");
    }
    let big = |x: &serde_json::Value| x.as_str().and_then(|s| s.parse::<u128>().ok()).unwrap_or(0);
    println!(
        "proxy contract: {}",
        p["proxy_contract"].as_str().unwrap_or("")
    );
    println!("owner:          {}", p["owner"].as_str().unwrap_or(""));
    println!("wallet:         {}", p["wallet"].as_str().unwrap_or(""));
    println!(
        "prices:         {} nanoTON/token to clients, {} to workers",
        p["price_per_token_nanoton"].as_str().unwrap_or("?"),
        p["worker_fee_per_token_nanoton"].as_str().unwrap_or("?")
    );
    println!(
        "ledger:         seqno {}, anchored on chain up to {}",
        p["ledger_seqno"],
        p["anchor"]
            .as_u64()
            .map_or("nothing yet".into(), |s| format!("seqno {s}"))
    );
    let empty = Vec::new();
    let clients = p["clients"].as_array().unwrap_or(&empty);
    println!("clients ({}):", clients.len());
    for c in clients {
        println!(
            "  {}  used {} tokens (anchored {}, charged on chain {}), balance {} TON, stake {} TON, state {}",
            c["owner"].as_str().unwrap_or(""),
            c["tokens_db"],
            c["tokens_anchored"],
            c["tokens_charged_onchain"],
            format_ton(big(&c["balance_nanoton"])),
            format_ton(big(&c["stake_nanoton"])),
            c["state"]
        );
    }
    let workers = p["workers"].as_array().unwrap_or(&empty);
    println!("workers ({}):", workers.len());
    for w in workers {
        println!(
            "  {}  earned {} tokens = {} TON (anchored {}, paid on chain {})",
            w["owner"].as_str().unwrap_or(""),
            w["tokens_db"],
            format_ton(big(&w["earned_nanoton"])),
            w["tokens_anchored"],
            w["tokens_paid_onchain"]
        );
    }
    Ok(())
}

async fn ledger(t: Target) -> Result<()> {
    let cfg = load(&t)?;
    let key_path = cfg.payment_key_file.clone();
    let ledger_path = cfg.ledger_path.clone();
    let report = tokio::task::spawn_blocking(move || -> Result<cocoon_ledger::InspectReport> {
        let seed: [u8; 32] = std::fs::read(&key_path)
            .with_context(|| format!("reading the payment key {}", key_path.display()))?
            .as_slice()
            .try_into()
            .map_err(|_| anyhow!("{} is not a 32-byte key", key_path.display()))?;
        let public_key = cocoon_ton::payments::ProxySigner::from_seed(&seed)
            .map_err(|e| anyhow!("payment key: {e}"))?
            .public_key();
        cocoon_ledger::inspect(&ledger_path, public_key)
            .with_context(|| format!("ledger {}", ledger_path.display()))
    })
    .await??;
    if t.json {
        let s = &report.snapshot;
        let accounts: Vec<_> = s
            .accounts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "party": a.key.party.to_string(), "owner": a.key.owner,
                    "committed_db": a.committed_db, "committed_chain": a.committed_chain,
                    "onchain_tokens": a.onchain_tokens,
                    "onchain_balance_nanoton": a.onchain_balance.to_string(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "path": report.path, "verified": true, "db_seqno": s.db_seqno,
                "confirmed_anchor": s.confirmed_anchor().map(|a| a.seqno),
                "accounts": accounts,
            }))?
        );
    } else {
        println!("every row's signature verifies\n{report}");
    }
    Ok(())
}

async fn admin(t: Target, action: &str) -> Result<()> {
    admin_with(t, action, None, Duration::from_secs(10)).await
}

/// POSTs `body` (if any) to `/admin/<action>` and prints the proxy's message.
async fn admin_with(
    t: Target,
    action: &str,
    body: Option<serde_json::Value>,
    timeout: Duration,
) -> Result<()> {
    let cfg = load(&t)?;
    if cfg.admin_token.is_empty() {
        bail!("admin_token is not set in the proxy config; admin actions are off");
    }
    let url = format!("http://{}/admin/{action}", cfg.stats_listen);
    let mut post = http()?
        .post(&url)
        .timeout(timeout)
        .bearer_auth(&cfg.admin_token);
    if let Some(b) = body {
        post = post.json(&b);
    }
    let resp = post
        .send()
        .await
        .with_context(|| format!("is the proxy running? POST {url}"))?;
    let ok = resp.status().is_success();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    if t.json {
        println!("{v}");
    } else {
        println!("{}", v["message"].as_str().unwrap_or(""));
    }
    if !ok {
        bail!(
            "the proxy refused: {}",
            v["message"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
