//! `cocoon client keys <create|list|show|revoke>`: the client's per-app API keys (docs/KEYS.md).
//!
//! They open the config's `[keys] db` SQLite file directly, so they work whether the client
//! runs or not; a running client picks the change up within about a second. `create` prints the
//! secret once (it is stored only as a SHA-256). What must not live here: admission rules (in
//! `cocoon_client::keys`), or any secret in a log.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use cocoon_client::keys::{
    parse_expiry, record_json, Budget, BudgetUnit, KeyRecord, Limits, NewKey, Period, Spend, Store,
};
use cocoon_client::ClientConfig;

use crate::chain_cmds::{format_ton, parse_ton};

/// `cocoon client keys …`.
#[derive(Args, Debug)]
pub struct KeysCmd {
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create a key; its secret is printed once and cannot be shown again.
    Create(CreateArgs),
    /// Every key with its limits and spend.
    List(Target),
    /// One key.
    Show(IdArgs),
    /// Revoke a key (requests with it get 401 from then on).
    Revoke(IdArgs),
}

/// Which client, and how to print.
#[derive(Args, Debug)]
pub struct Target {
    #[command(flatten)]
    pub target: crate::ActionTarget,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// The key's id (`ck_…`).
    pub id: String,
    #[command(flatten)]
    pub target: crate::ActionTarget,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum UnitArg {
    Tokens,
    Ton,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PeriodArg {
    Day,
    Month,
    Total,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// A name for the app (1 to 64 characters).
    #[arg(long)]
    pub name: String,
    /// Models the key may use, comma-separated; default: all.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Budget: a number of tokens, or TON (`1.5`) with `--budget-unit ton`; default: none.
    #[arg(long)]
    pub budget: Option<String>,
    #[arg(long, value_enum, default_value = "tokens")]
    pub budget_unit: UnitArg,
    /// When the budget renews (UTC days, calendar months) or never (`total`).
    #[arg(long, value_enum, default_value = "month")]
    pub period: PeriodArg,
    /// Requests per minute; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    pub rpm: u32,
    /// Tokens per minute; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    pub tpm: u64,
    /// Requests at once; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    pub concurrent: u32,
    /// Expiry: a duration from now (`30d`, `12h`) or an RFC 3339 time; default: never.
    #[arg(long)]
    pub expires: Option<String>,
    #[command(flatten)]
    pub target: crate::ActionTarget,
}

pub fn run(cmd: KeysCmd) -> Result<()> {
    match cmd.action {
        KeysAction::Create(a) => create(a),
        KeysAction::List(a) => list(&a.target),
        KeysAction::Show(a) => show(&a),
        KeysAction::Revoke(a) => revoke(&a),
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The keys file of the targeted client: `[keys] db`, relative to the working directory, or
/// next to the config when not found there.
fn open(target: &crate::ActionTarget) -> Result<Store> {
    let Some(path) = target.config_path("client.toml") else {
        bail!("give --config FILE or --data-dir DIR (a `cocoon dev` network's)");
    };
    let cfg: ClientConfig = cocoon_node::config::load_toml(&path)?;
    if cfg.keys.db.is_empty() {
        bail!(
            "API keys are off in {} (`[keys] db` is empty)",
            path.display()
        );
    }
    let mut db = PathBuf::from(&cfg.keys.db);
    if db.is_relative() && !db.exists() {
        if let Some(dir) = path.parent().filter(|d| d.join(&db).exists()) {
            db = dir.join(db);
        }
    }
    Store::open(&db).with_context(|| format!("API keys file {}", db.display()))
}

fn create(a: CreateArgs) -> Result<()> {
    let budget = match &a.budget {
        None => None,
        Some(b) => {
            let (unit, amount) = match a.budget_unit {
                UnitArg::Tokens => (
                    BudgetUnit::Tokens,
                    b.parse::<u64>()
                        .with_context(|| format!("--budget {b:?} is not a number of tokens"))?,
                ),
                UnitArg::Ton => (
                    BudgetUnit::Nanoton,
                    u64::try_from(parse_ton(b)?).context("--budget is too large")?,
                ),
            };
            let period = match a.period {
                PeriodArg::Day => Period::Day,
                PeriodArg::Month => Period::Month,
                PeriodArg::Total => Period::Total,
            };
            Some(Budget {
                unit,
                period,
                amount,
            })
        }
    };
    let now = now_s();
    let expires_at = a
        .expires
        .as_deref()
        .map(|e| parse_expiry(e, now))
        .transpose()?;
    let new = NewKey {
        name: a.name,
        models: a.models.into_iter().filter(|m| !m.is_empty()).collect(),
        budget,
        limits: Limits {
            requests_per_minute: a.rpm,
            tokens_per_minute: a.tpm,
            concurrent_requests: a.concurrent,
        },
        expires_at,
    };
    let mut store = open(&a.target)?;
    let (secret, record) = store.create(&new, now)?;
    if a.target.json {
        let mut v = record_json(&record, &Spend::default());
        v["secret"] = secret.into();
        v["warning"] = "the secret is shown only this once".into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_key(&record, &Spend::default());
        println!("secret:   {secret}");
        eprintln!(
            "Store this secret now: it is kept only as a hash and cannot be shown again. \
             A running client picks the key up within a second."
        );
    }
    Ok(())
}

fn list(target: &crate::ActionTarget) -> Result<()> {
    let store = open(target)?;
    let keys = store.load()?;
    if target.json {
        let v: Vec<_> = keys.iter().map(|(r, _, s)| record_json(r, s)).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "keys": v }))?
        );
        return Ok(());
    }
    if keys.is_empty() {
        println!("no API keys (the API is open to `bearer_token` rules only)");
    }
    for (i, (r, _, s)) in keys.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_key(r, s);
    }
    Ok(())
}

fn show(a: &IdArgs) -> Result<()> {
    let store = open(&a.target)?;
    let Some((r, s)) = store.get(&a.id)? else {
        bail!("no key with id {}", a.id);
    };
    if a.target.json {
        println!("{}", serde_json::to_string_pretty(&record_json(&r, &s))?);
    } else {
        print_key(&r, &s);
    }
    Ok(())
}

fn revoke(a: &IdArgs) -> Result<()> {
    let store = open(&a.target)?;
    if !store.revoke(&a.id)? {
        bail!("no key with id {}", a.id);
    }
    if a.target.json {
        println!("{}", serde_json::json!({ "id": a.id, "revoked": true }));
    } else {
        println!(
            "revoked {} (a running client refuses it within a second)",
            a.id
        );
    }
    Ok(())
}

fn print_key(r: &KeyRecord, s: &Spend) {
    let ton = |n: u64| format_ton(u128::from(n));
    let unlimited = |n: u64| {
        if n == 0 {
            "unlimited".to_string()
        } else {
            n.to_string()
        }
    };
    println!(
        "{}  {}{}",
        r.id,
        r.name,
        if r.revoked { "  (revoked)" } else { "" }
    );
    println!(
        "  models:   {}",
        if r.models.is_empty() {
            "all".to_string()
        } else {
            r.models.join(", ")
        }
    );
    println!(
        "  budget:   {}",
        r.budget
            .as_ref()
            .map_or("none".to_string(), |b| b.describe())
    );
    println!(
        "  limits:   {} requests/min, {} tokens/min, {} at once",
        unlimited(u64::from(r.limits.requests_per_minute)),
        unlimited(r.limits.tokens_per_minute),
        unlimited(u64::from(r.limits.concurrent_requests))
    );
    println!("  created:  {}", cocoon_client::keys::rfc3339(r.created_at));
    println!(
        "  expires:  {}",
        r.expires_at
            .map_or("never".to_string(), cocoon_client::keys::rfc3339)
    );
    println!(
        "  spent:    {} tokens, {} TON this period; {} tokens, {} TON, {} requests in total",
        s.period_tokens,
        ton(s.period_nanoton),
        s.total_tokens,
        ton(s.total_nanoton),
        s.total_requests
    );
}
