//! `cocoon chain`, `cocoon wallet …` and `cocoon root …`: run the local TON chain, manage a standard
//! wallet (v4r2) and administer the root contract, all against any TON HTTP API v2 endpoint (`--chain`,
//! default the local chain on 127.0.0.1:8081).
//!
//! What lives here: argument types and thin async commands that print what changed. What must not: any
//! cell layout or signing logic (that is `cocoon-ton`), or chain execution (`cocoon-localnet`).
//! Mnemonics live only in the file given by `--mnemonic-file` (created 0600, never printed or logged).
//! Every write waits until the wallet's seqno moves (bounded), then re-reads and prints the new state.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use cocoon_onchain::{Registry, WalletSender};
use cocoon_ton::chain::{AccountStatus, Chain};
use cocoon_ton::contracts::{CocoonParams, Network, RootOp, RootState};
use cocoon_ton::http::{HttpChain, HttpChainConfig};
use cocoon_ton::wallet::{Phrase, Transfer, Wallet};
use cocoon_ton::TonAddress;
use tokio_util::sync::CancellationToken;

/// Default chain endpoint (the local chain).
pub const DEFAULT_CHAIN: &str = "http://127.0.0.1:8081";
/// How long a write may take to show up on chain.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);
/// Value attached to root owner operations (the rest comes back as excesses).
const ROOT_OP_VALUE: u128 = 200_000_000;

// === cocoon chain ===

/// `cocoon chain`: run the local TON chain.
#[derive(Args, Debug)]
pub struct ChainArgs {
    /// Persist the chain here (snapshot + input log); omit for an in-memory chain.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address (TON HTTP API v2 subset + dev faucet).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
}

/// Runs the local chain until `shutdown`.
pub async fn chain(args: ChainArgs, shutdown: CancellationToken) -> Result<()> {
    let cfg = cocoon_localnet::LocalnetConfig {
        data_dir: args.data_dir,
        listen: args.listen,
    };
    cocoon_localnet::run(cfg, shutdown).await?;
    Ok(())
}

// === shared options ===

/// Where the chain is.
#[derive(Args, Debug, Clone)]
pub struct ChainOpts {
    /// TON HTTP API v2 base URL (`/api/v2` is appended when missing).
    #[arg(long = "chain", env = "COCOON_CHAIN", default_value = DEFAULT_CHAIN, global = true)]
    pub url: String,
    /// Optional X-API-Key for the endpoint.
    #[arg(
        long,
        env = "COCOON_CHAIN_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub api_key: Option<String>,
}

impl ChainOpts {
    fn connect(&self) -> Result<HttpChain> {
        let mut cfg = HttpChainConfig::new(&self.url);
        cfg.api_key = self.api_key.clone();
        Ok(HttpChain::new(cfg)?)
    }
}

/// The wallet's mnemonic file.
#[derive(Args, Debug, Clone)]
pub struct WalletOpts {
    /// File holding the 24-word mnemonic.
    #[arg(
        long,
        env = "COCOON_MNEMONIC_FILE",
        default_value = "cocoon-wallet.mnemonic",
        global = true
    )]
    pub mnemonic_file: PathBuf,
}

impl WalletOpts {
    async fn load(&self) -> Result<Wallet> {
        let path = self.mnemonic_file.clone();
        tokio::task::spawn_blocking(move || -> Result<Wallet> {
            let meta =
                std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            cocoon_onchain::config::check_private(&path, &meta).map_err(anyhow::Error::msg)?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            // Key derivation is ~100k PBKDF2 rounds: keep it off the runtime threads.
            Ok(Wallet::from_phrase(&Phrase::parse(text.trim())?)?)
        })
        .await?
    }
}

// === cocoon wallet ===

/// `cocoon wallet …`.
#[derive(Args, Debug)]
pub struct WalletArgs {
    #[command(subcommand)]
    pub cmd: WalletCmd,
}

#[derive(Subcommand, Debug)]
pub enum WalletCmd {
    /// Create a new mnemonic file (refuses to overwrite) and print the wallet address.
    New(WalletOpts),
    /// Print the wallet's addresses and public key.
    Show(WalletOpts),
    /// Print the balance and status of the wallet (or of `--address`).
    Balance {
        #[command(flatten)]
        wallet: WalletOpts,
        #[command(flatten)]
        chain: ChainOpts,
        /// Any address instead of the wallet's.
        #[arg(long)]
        address: Option<TonAddress>,
    },
    /// Send TON (deploys the wallet on its first transfer).
    Send {
        #[command(flatten)]
        wallet: WalletOpts,
        #[command(flatten)]
        chain: ChainOpts,
        /// Destination address.
        #[arg(long)]
        to: TonAddress,
        /// Amount in TON, e.g. `1.5`.
        #[arg(long)]
        amount: String,
        /// Bounce if the destination fails (off by default: safe for undeployed wallets).
        #[arg(long)]
        bounce: bool,
    },
    /// Dev chains only: mint TON to the wallet (or `--address`) through the local chain's faucet.
    Faucet {
        #[command(flatten)]
        wallet: WalletOpts,
        #[command(flatten)]
        chain: ChainOpts,
        #[arg(long)]
        address: Option<TonAddress>,
        /// Amount in TON.
        #[arg(long, default_value = "100")]
        amount: String,
    },
}

/// Runs a `cocoon wallet` command.
pub async fn wallet(args: WalletArgs) -> Result<()> {
    match args.cmd {
        WalletCmd::New(w) => {
            let path = w.mnemonic_file.clone();
            let wallet = tokio::task::spawn_blocking(move || -> Result<Wallet> {
                let phrase = Phrase::generate()?;
                write_secret_file(&path, phrase.expose())?;
                Ok(Wallet::from_phrase(&phrase)?)
            })
            .await??;
            println!("mnemonic written to {}", w.mnemonic_file.display());
            print_wallet(&wallet);
        }
        WalletCmd::Show(w) => print_wallet(&w.load().await?),
        WalletCmd::Balance {
            wallet,
            chain,
            address,
        } => {
            let addr = match address {
                Some(a) => a,
                None => wallet.load().await?.address(),
            };
            let st = chain.connect()?.account_state(&addr).await?;
            println!(
                "{} {:?} {} TON",
                addr.to_bounceable(),
                st.status,
                format_ton(st.balance)
            );
        }
        WalletCmd::Send {
            wallet,
            chain,
            to,
            amount,
            bounce,
        } => {
            let w = wallet.load().await?;
            let c = chain.connect()?;
            let value = parse_ton(&amount)?;
            let t = Transfer {
                dest: to,
                value,
                bounce,
                body: None,
                state_init: None,
            };
            let before = c.account_state(&to).await?.balance;
            send_from_wallet(&c, &w, vec![t]).await?;
            let after = c.account_state(&to).await?.balance;
            println!(
                "sent {} TON to {}: balance {} -> {} TON",
                amount,
                to.to_bounceable(),
                format_ton(before),
                format_ton(after)
            );
        }
        WalletCmd::Faucet {
            wallet,
            chain,
            address,
            amount,
        } => {
            let addr = match address {
                Some(a) => a,
                None => wallet.load().await?.address(),
            };
            let value = parse_ton(&amount)?;
            // HttpChain::new also installs the TLS crypto provider reqwest needs.
            let c = chain.connect()?;
            let url = format!("{}/faucet", HttpChainConfig::new(&chain.url).base_url);
            let resp: serde_json::Value = reqwest::Client::new()
                .post(url)
                .json(&serde_json::json!({"address": addr.to_raw(), "amount": value.to_string()}))
                .send()
                .await?
                .json()
                .await?;
            if resp["ok"] != true {
                bail!("faucet refused: {}", resp["error"]);
            }
            let st = c.account_state(&addr).await?;
            println!(
                "{} now has {} TON",
                addr.to_bounceable(),
                format_ton(st.balance)
            );
        }
    }
    Ok(())
}

fn print_wallet(w: &Wallet) {
    let a = w.address();
    println!("address (raw):            {}", a.to_raw());
    println!("address (bounceable):     {}", a.to_bounceable());
    println!("address (non-bounceable): {}", a.to_non_bounceable());
    println!("public key:               {}", hex::encode(w.public_key()));
}

/// Creates `path` with mode 0600 and writes the secret; refuses to overwrite.
fn write_secret_file(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// Sends `transfers` from `w` and waits until the wallet's seqno moves.
async fn send_from_wallet(chain: &HttpChain, w: &Wallet, transfers: Vec<Transfer>) -> Result<()> {
    WalletSender::new(Arc::new(chain.clone()), w.clone())
        .with_confirm_timeout(CONFIRM_TIMEOUT)
        .send(transfers)
        .await?;
    Ok(())
}

// === cocoon root ===

/// `cocoon root …` (owner operations are sent from the wallet in `--mnemonic-file`).
#[derive(Args, Debug)]
pub struct RootArgs {
    #[command(flatten)]
    pub wallet: WalletOpts,
    #[command(flatten)]
    pub chain: ChainOpts,
    #[command(subcommand)]
    pub cmd: RootCmd,
}

/// Network parameters for `root deploy` and `root set-params` (defaults: Cocoon's test config,
/// the same the nodes' `[pricing]` defaults to).
#[derive(Args, Debug, Clone)]
pub struct ParamsArgs {
    /// nanoTON per adjusted token the client pays.
    #[arg(long, default_value_t = 2)]
    pub price_per_token: u128,
    /// nanoTON per adjusted token the worker earns.
    #[arg(long, default_value_t = 1)]
    pub worker_fee_per_token: u128,
    /// Seconds a closing proxy waits.
    #[arg(long, default_value_t = 600)]
    pub proxy_delay_before_close: u32,
    /// Seconds a closing client waits before forcing its refund.
    #[arg(long, default_value_t = 300)]
    pub client_delay_before_close: u32,
    /// Minimum proxy stake, TON.
    #[arg(long, default_value = "1")]
    pub min_proxy_stake: String,
    /// Minimum client stake, TON.
    #[arg(long, default_value = "1")]
    pub min_client_stake: String,
}

#[derive(Subcommand, Debug)]
pub enum RootCmd {
    /// Deploy a root contract owned by the wallet.
    Deploy {
        #[command(flatten)]
        params: ParamsArgs,
        /// Network id stored in the params.
        #[arg(long, default_value_t = 13)]
        unique_id: u32,
        /// Mark the network as production (is_test = false).
        #[arg(long)]
        production: bool,
        /// TON to leave on the root.
        #[arg(long, default_value = "1")]
        value: String,
    },
    /// Print the root's registry and params.
    Show {
        /// The root contract. Default: the `[chain] root_address` of the node config given by
        /// `--config` or found in `--data-dir`.
        #[arg(long, required_unless_present_any = ["data_dir", "config"])]
        root: Option<TonAddress>,
        #[command(flatten)]
        node: NodeConfigOpts,
    },
    /// Allow a model hash.
    AddModel {
        #[arg(long)]
        root: TonAddress,
        hash: String,
    },
    /// Remove a model hash.
    RemoveModel {
        #[arg(long)]
        root: TonAddress,
        hash: String,
    },
    /// Allow an image hash for workers (default) or proxies.
    AddImage {
        #[arg(long)]
        root: TonAddress,
        hash: String,
        #[arg(long, value_enum, default_value = "worker")]
        kind: ImageKind,
    },
    /// Remove an image hash.
    RemoveImage {
        #[arg(long)]
        root: TonAddress,
        hash: String,
        #[arg(long, value_enum, default_value = "worker")]
        kind: ImageKind,
    },
    /// Register a proxy endpoint: "ip:port_for_workers [ip:port_for_clients]".
    AddProxy {
        #[arg(long)]
        root: TonAddress,
        description: String,
    },
    /// Unregister a proxy by its seqno.
    RemoveProxy {
        #[arg(long)]
        root: TonAddress,
        seqno: u32,
    },
    /// Change prices, delays and stakes (bumps params_version).
    SetParams {
        #[arg(long)]
        root: TonAddress,
        #[command(flatten)]
        params: ParamsArgs,
    },
}

/// A node's config to take the chain endpoint and root address from (`cocoon root show`).
#[derive(Args, Debug, Clone)]
pub struct NodeConfigOpts {
    /// A node's config file (TOML; any role): its `[chain]` section is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data dir of a `cocoon dev` network: its proxy's config is used.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The `[chain]` section of a node config, with the file it came from.
struct NodeChain {
    source: String,
    api_url: String,
    api_key: Option<String>,
    root_address: String,
}

impl NodeConfigOpts {
    fn chain_config(&self) -> Result<Option<NodeChain>> {
        let Some(path) = crate::config_path(&self.config, &self.data_dir, "proxy.toml") else {
            return Ok(None);
        };
        /// Every role's config has the same `[chain]` table; the rest is not read here.
        #[derive(serde::Deserialize)]
        struct WithChain {
            #[serde(default)]
            chain: cocoon_onchain::ChainConfig,
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let cfg: WithChain =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if cfg.chain.root_address.trim().is_empty() {
            bail!(
                "{} has no [chain] root_address (a network without the chain: `cocoon dev --no-chain`?)",
                path.display()
            );
        }
        Ok(Some(NodeChain {
            source: path.display().to_string(),
            api_url: cfg.chain.api_url.trim().to_string(),
            api_key: Some(cfg.chain.api_key).filter(|k| !k.is_empty()),
            root_address: cfg.chain.root_address.trim().to_string(),
        }))
    }
}

/// Which image registry.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ImageKind {
    Worker,
    Proxy,
}

/// Runs a `cocoon root` command.
pub async fn root(args: RootArgs) -> Result<()> {
    let chain = args.chain.connect()?;
    let (root, op) = match args.cmd {
        RootCmd::Show { root, node } => {
            let (root, chain) = match node.chain_config()? {
                Some(cfg) => {
                    let root = match root {
                        Some(r) => r,
                        None => cfg.root_address.parse().with_context(|| {
                            format!("root_address {:?} in {}", cfg.root_address, cfg.source)
                        })?,
                    };
                    // The node's endpoint, unless --chain (or COCOON_CHAIN) names another.
                    let opts = if args.chain.url == DEFAULT_CHAIN && !cfg.api_url.is_empty() {
                        ChainOpts {
                            url: cfg.api_url,
                            api_key: args.chain.api_key.clone().or(cfg.api_key),
                        }
                    } else {
                        args.chain.clone()
                    };
                    (root, opts.connect()?)
                }
                None => match root {
                    Some(r) => (r, chain),
                    None => bail!("give --root ADDRESS, --data-dir DIR or --config FILE"),
                },
            };
            print_root(&read_root(&chain, &root).await?);
            return Ok(());
        }
        RootCmd::Deploy {
            params,
            unique_id,
            production,
            value,
        } => {
            let w = args.wallet.load().await?;
            let p = CocoonParams {
                unique_id,
                is_test: !production,
                price_per_token: params.price_per_token,
                worker_fee_per_token: params.worker_fee_per_token,
                proxy_delay_before_close: params.proxy_delay_before_close,
                client_delay_before_close: params.client_delay_before_close,
                min_proxy_stake: parse_ton(&params.min_proxy_stake)?,
                min_client_stake: parse_ton(&params.min_client_stake)?,
                ..CocoonParams::default()
            };
            if p.worker_fee_per_token > p.price_per_token {
                bail!("worker fee per token must not exceed the price per token");
            }
            let d = Network::root(&w.address(), &p)?;
            if chain.account_state(&d.address).await?.status == AccountStatus::Active {
                println!("root already deployed at {}", d.address.to_bounceable());
            } else {
                let t = Transfer {
                    dest: d.address,
                    value: parse_ton(&value)?,
                    bounce: false,
                    body: None,
                    state_init: Some(d.state_init_cell()?),
                };
                send_from_wallet(&chain, &w, vec![t]).await?;
                wait_active(&chain, &d.address).await?;
                println!(
                    "root deployed at {} ({})",
                    d.address.to_bounceable(),
                    d.address.to_raw()
                );
            }
            print_root(&read_root(&chain, &d.address).await?);
            return Ok(());
        }
        RootCmd::AddModel { root, hash } => (root, RootOp::AddModelType(parse_hash(&hash)?)),
        RootCmd::RemoveModel { root, hash } => (root, RootOp::DelModelType(parse_hash(&hash)?)),
        RootCmd::AddImage { root, hash, kind } => (
            root,
            match kind {
                ImageKind::Worker => RootOp::AddWorkerType(parse_hash(&hash)?),
                ImageKind::Proxy => RootOp::AddProxyType(parse_hash(&hash)?),
            },
        ),
        RootCmd::RemoveImage { root, hash, kind } => (
            root,
            match kind {
                ImageKind::Worker => RootOp::DelWorkerType(parse_hash(&hash)?),
                ImageKind::Proxy => RootOp::DelProxyType(parse_hash(&hash)?),
            },
        ),
        RootCmd::AddProxy { root, description } => (root, RootOp::RegisterProxy(description)),
        RootCmd::RemoveProxy { root, seqno } => (root, RootOp::UnregisterProxy(seqno)),
        RootCmd::SetParams { root, params } => (
            root,
            RootOp::ChangeParams {
                price_per_token: params.price_per_token,
                worker_fee_per_token: params.worker_fee_per_token,
                proxy_delay_before_close: params.proxy_delay_before_close,
                client_delay_before_close: params.client_delay_before_close,
                min_proxy_stake: parse_ton(&params.min_proxy_stake)?,
                min_client_stake: parse_ton(&params.min_client_stake)?,
            },
        ),
    };
    let w = args.wallet.load().await?;
    let before = read_root(&chain, &root).await?;
    if before.owner != w.address() {
        bail!(
            "the root's owner is {}, not this wallet ({})",
            before.owner.to_bounceable(),
            w.address().to_bounceable()
        );
    }
    let query_id = u64::from(chain.time().await?) << 16 | u64::from(before.version & 0xffff);
    let t = Transfer {
        dest: root,
        value: ROOT_OP_VALUE,
        bounce: true,
        body: Some(op.body(query_id)?),
        state_init: None,
    };
    send_from_wallet(&chain, &w, vec![t]).await?;
    // The wallet's transaction confirms before the root's: wait for the root's version to move.
    let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
    let after = loop {
        let st = read_root(&chain, &root).await?;
        if st.version != before.version {
            break st;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("root did not apply the operation (version still {}); check the root's transactions", before.version);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    print_root_diff(&before, &after);
    Ok(())
}

async fn wait_active(chain: &HttpChain, addr: &TonAddress) -> Result<()> {
    Ok(cocoon_onchain::sender::wait_active(chain, addr, CONFIRM_TIMEOUT).await?)
}

/// Reads the root's registry from its raw data (as the C++ node does), cross-checked with the
/// getter.
async fn read_root(chain: &HttpChain, root: &TonAddress) -> Result<RootState> {
    Ok((*Registry::read(chain, root).await?.state).clone())
}

fn print_root(s: &RootState) {
    println!("owner:            {}", s.owner.to_bounceable());
    println!("version:          {}", s.version);
    println!("params_version:   {}", s.params.params_version);
    println!(
        "unique_id:        {} (test network: {})",
        s.params.unique_id, s.params.is_test
    );
    println!(
        "price/token:      {} nanoTON (worker fee {})",
        s.params.price_per_token, s.params.worker_fee_per_token
    );
    println!(
        "close delays:     proxy {}s, client {}s",
        s.params.proxy_delay_before_close, s.params.client_delay_before_close
    );
    println!(
        "min stakes:       proxy {} TON, client {} TON",
        format_ton(s.params.min_proxy_stake),
        format_ton(s.params.min_client_stake)
    );
    let list = |name: &str, v: &[[u8; 32]]| {
        println!("{name} ({}):", v.len());
        for h in v {
            println!("  {}", hex::encode(h));
        }
    };
    list("model hashes", &s.model_hashes);
    list("worker image hashes", &s.worker_hashes);
    list("proxy image hashes", &s.proxy_hashes);
    println!(
        "proxies ({}, last seqno {}):",
        s.proxies.len(),
        s.last_proxy_seqno
    );
    for (seqno, d) in &s.proxies {
        println!("  #{seqno}: {d}");
    }
}

fn print_root_diff(a: &RootState, b: &RootState) {
    println!("version {} -> {}", a.version, b.version);
    let diff = |name: &str, x: &[[u8; 32]], y: &[[u8; 32]]| {
        for h in y.iter().filter(|h| !x.contains(h)) {
            println!("+ {name} {}", hex::encode(h));
        }
        for h in x.iter().filter(|h| !y.contains(h)) {
            println!("- {name} {}", hex::encode(h));
        }
    };
    diff("model", &a.model_hashes, &b.model_hashes);
    diff("worker image", &a.worker_hashes, &b.worker_hashes);
    diff("proxy image", &a.proxy_hashes, &b.proxy_hashes);
    for p in b.proxies.iter().filter(|p| !a.proxies.contains(p)) {
        println!("+ proxy #{}: {}", p.0, p.1);
    }
    for p in a.proxies.iter().filter(|p| !b.proxies.contains(p)) {
        println!("- proxy #{}: {}", p.0, p.1);
    }
    if a.params != b.params {
        println!("params: {:?}\n     -> {:?}", a.params, b.params);
    }
}

fn parse_hash(s: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim_start_matches("0x"), &mut out)
        .context("hash must be 64 hex characters")?;
    Ok(out)
}

/// "1.5" TON -> 1_500_000_000 nanoTON (at most 9 decimals, no sign, bounded).
pub fn parse_ton(s: &str) -> Result<u128> {
    Ok(cocoon_onchain::amount::parse_ton(s)?)
}

pub use cocoon_onchain::amount::format_ton;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes() {
        assert_eq!(parse_hash(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_hash("abc").is_err());
    }
}
