//! `cocoon worker <action>`: the worker's account and money commands (docs/PAYMENTS.md). They
//! read the role's config (`--config FILE` or `--data-dir DIR` of a dev network, with
//! `--index N` for its `worker-N.toml`), print amounts in TON and tokens, and take `--json` for
//! scripts.
//!
//! - `earnings`: per proxy contract, what the worker holds in `payments.json` (committed in the
//!   proxy's db, signed for payout, the highest max) and what its worker contract has paid out,
//!   read from the chain when `[chain]` is on (else the last known value).
//! - `cashout`: submits every proxy's held signed payout from the worker wallet now, whatever
//!   `min_cashout` says. Needs neither the proxy nor a running worker.
//!
//! Neither command writes `payments.json` (the running worker is its only writer, so a command
//! can never overwrite newer marks). What must not live here: payment rules (crates/worker).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use cocoon_onchain::amount::format_ton;
use cocoon_onchain::WalletSender;
use cocoon_ton::Chain;
use cocoon_worker::payments::{self, cashout, store};
use cocoon_worker::WorkerConfig;

/// What `cocoon worker` can do besides running.
#[derive(Subcommand, Debug)]
pub enum WorkerAction {
    /// Earnings per proxy: committed, signed, paid out and pending (tokens and TON).
    Earnings(PayArgs),
    /// Cash out every proxy's signed earnings now from the worker wallet (ignores min_cashout;
    /// works when the proxy is gone).
    Cashout(PayArgs),
}

/// Where the worker's config is, and the output format.
#[derive(Args, Debug)]
pub struct PayArgs {
    /// The worker (with `--data-dir`: its `worker-N.toml`), and the output format.
    #[command(flatten)]
    pub target: crate::ActionTarget,
    /// With `--data-dir`: which worker.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
}

pub async fn run(action: WorkerAction) -> Result<()> {
    match action {
        WorkerAction::Earnings(a) => earnings(a).await,
        WorkerAction::Cashout(a) => cashout_now(a).await,
    }
}

fn load_config(a: &PayArgs) -> Result<WorkerConfig> {
    let file = format!("worker-{}.toml", a.index);
    match a.target.config_path(&file) {
        Some(p) => {
            cocoon_node::config::load_toml(&p).with_context(|| format!("loading {}", p.display()))
        }
        None => bail!("give the worker's config: --config FILE, or --data-dir DIR [--index N]"),
    }
}

async fn load_book(cfg: &WorkerConfig) -> Result<(PathBuf, store::Book)> {
    let path = payments::file_path(cfg);
    let p = path.clone();
    let book = tokio::task::spawn_blocking(move || store::load(&p)).await??;
    Ok((path, book))
}

/// Reads every record's worker contract; `None` per record where the chain did not answer.
async fn read_chain(chain: &dyn Chain, book: &mut store::Book) -> Vec<Option<String>> {
    let mut errors = Vec::with_capacity(book.len());
    for rec in book.values_mut() {
        let r = match rec.worker_address() {
            Ok(a) => cashout::read_contract(chain, &a)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match r {
            Ok(oc) => {
                rec.on_chain_tokens = oc.tokens;
                errors.push(None);
            }
            Err(e) => errors.push(Some(e)),
        }
    }
    errors
}

fn line(label: &str, tokens: u64, rec: &store::ProxyRecord) -> String {
    format!(
        "  {label:<18} {tokens:>14} tokens  {:>16} TON",
        format_ton(rec.nano(tokens))
    )
}

async fn earnings(a: PayArgs) -> Result<()> {
    let cfg = load_config(&a)?;
    let (path, mut book) = load_book(&cfg).await?;
    let chain_errors = if cfg.chain.enabled() {
        let chain = cfg.chain.connect()?;
        read_chain(chain.as_ref(), &mut book).await
    } else {
        vec![Some("payments are off ([chain] api_url empty)".to_string()); book.len()]
    };
    if a.target.json {
        let proxies: Vec<serde_json::Value> = book
            .values()
            .zip(&chain_errors)
            .map(|(r, e)| {
                let mut v = payments::record_json(r);
                v["proxy_contract"] = r.proxy_contract.clone().into();
                v["on_chain_read"] = e.is_none().into();
                if let Some(e) = e {
                    v["on_chain_error"] = e.clone().into();
                }
                v
            })
            .collect();
        let out = serde_json::json!({ "file": path.display().to_string(), "proxies": proxies });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if book.is_empty() {
        println!(
            "no earnings yet ({} has no proxy contracts)",
            path.display()
        );
        return Ok(());
    }
    let mut total_signed = 0u128;
    let mut total_paid = 0u128;
    for (r, e) in book.values().zip(&chain_errors) {
        println!("proxy contract {}", r.proxy_contract);
        println!("  worker contract    {}", r.worker_contract);
        println!("{}", line("committed (db)", r.db_tokens, r));
        println!("{}", line("signed", r.signed_tokens, r));
        println!("{}", line("paid out", r.on_chain_tokens, r));
        println!("{}", line("pending", r.pending_tokens(), r));
        println!("{}", line("max known", r.max_tokens, r));
        if let Some(e) = e {
            println!("  (paid out is the last known value: {e})");
        }
        total_signed += r.nano(r.signed_tokens);
        total_paid += r.nano(r.on_chain_tokens);
    }
    println!(
        "total: {} TON signed, {} TON paid out, {} TON pending",
        format_ton(total_signed),
        format_ton(total_paid),
        format_ton(total_signed.saturating_sub(total_paid))
    );
    Ok(())
}

async fn cashout_now(a: PayArgs) -> Result<()> {
    let cfg = load_config(&a)?;
    if !cfg.chain.enabled() {
        bail!("payments are off for this worker: its config has no [chain] api_url");
    }
    let (_, mut book) = load_book(&cfg).await?;
    let chain = cfg.chain.connect()?;
    let wallet = cfg.chain.load_wallet().await?;
    let sender = WalletSender::new(chain.clone(), wallet);
    let errors = read_chain(chain.as_ref(), &mut book).await;
    let mut results = Vec::new();
    for (rec, err) in book.values().zip(errors) {
        let (outcome, detail) = if let Some(e) = err {
            ("failed", format!("reading the worker contract: {e}"))
        } else if rec.pending_tokens() == 0 {
            ("skipped", "nothing signed beyond what is paid".to_string())
        } else {
            match cashout::submit(&sender, rec).await {
                Ok(()) => ("sent", format!("{} tokens", rec.pending_tokens())),
                Err(e) => ("failed", e.to_string()),
            }
        };
        results.push(serde_json::json!({
            "proxy_contract": rec.proxy_contract,
            "worker_contract": rec.worker_contract,
            "pending_tokens": rec.pending_tokens(),
            "pending_ton": format_ton(rec.nano(rec.pending_tokens())),
            "outcome": outcome,
            "detail": detail,
        }));
    }
    if a.target.json {
        let out = serde_json::json!({
            "wallet": sender.address().to_bounceable(),
            "cashouts": results,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if results.is_empty() {
        println!("nothing to cash out: no proxy contracts in payments.json");
    } else {
        for r in &results {
            println!(
                "{}  {}: {} ({} TON)",
                r["proxy_contract"].as_str().unwrap_or(""),
                r["outcome"].as_str().unwrap_or(""),
                r["detail"].as_str().unwrap_or(""),
                r["pending_ton"].as_str().unwrap_or(""),
            );
        }
    }
    if results.iter().any(|r| r["outcome"] == "failed") {
        bail!("some cash-outs failed");
    }
    Ok(())
}
