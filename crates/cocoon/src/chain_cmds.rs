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
use cocoon_ton::contracts::{
    edit_root_params, migrate_root_data, parse_root_data, CocoonParams, ContractKind, Network,
    RegisteredKey, RootOp, RootState, VerifiedKeyKind,
};
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
    /// Set the key manager: its Ed25519 public key (it signs key announcements), image hash and
    /// "ip:port" (struct version 4+).
    SetKeyManager {
        #[arg(long)]
        root: TonAddress,
        /// The key manager's public key, 64 hex characters.
        #[arg(long)]
        public_key: String,
        /// The key manager's image hash, 64 hex characters.
        #[arg(long)]
        image_hash: String,
        /// "ip:port" of the key manager; empty for none.
        #[arg(long, default_value = "")]
        address: String,
    },
    /// Register a public key (struct version 4+); the root refuses one that has already expired.
    AddKey {
        #[arg(long)]
        root: TonAddress,
        /// The public key, 64 hex characters.
        key: String,
        /// Key type (upstream's key manager announces type 1).
        #[arg(long = "type", default_value_t = 1)]
        key_type: u8,
        /// Expiry, unix time.
        #[arg(
            long,
            conflicts_with = "valid_for",
            required_unless_present = "valid_for"
        )]
        expire_at: Option<u32>,
        /// Expiry as seconds from the chain's current time.
        #[arg(long)]
        valid_for: Option<u32>,
    },
    /// Remove a registered public key (struct version 4+).
    RemoveKey {
        #[arg(long)]
        root: TonAddress,
        key: String,
    },
    /// Add a verified proxy, worker or key-manager key (struct version 5).
    AddVerifiedKey {
        #[arg(long)]
        root: TonAddress,
        key: String,
        #[arg(long, value_enum)]
        kind: VerifiedKind,
    },
    /// Remove a verified key (struct version 5).
    RemoveVerifiedKey {
        #[arg(long)]
        root: TonAddress,
        key: String,
        #[arg(long, value_enum)]
        kind: VerifiedKind,
    },
    /// Change the token price multipliers (10000 = 1×; those not given stay). The root has no op
    /// for them (nor has Cocoon's): the root's data is rewritten with `upgrade_full`, everything
    /// else kept, version and params_version bumped (nodes move to new contracts, as after
    /// set-params). Do not run other owner operations on the root at the same time.
    SetMultipliers {
        #[arg(long)]
        root: TonAddress,
        /// Non-cached prompt tokens.
        #[arg(long)]
        prompt: Option<u32>,
        /// Cached prompt tokens.
        #[arg(long)]
        cached: Option<u32>,
        /// Non-reasoning completion tokens.
        #[arg(long)]
        completion: Option<u32>,
        /// Reasoning tokens.
        #[arg(long)]
        reasoning: Option<u32>,
    },
    /// Move a root at struct version 3 or 4 to 5 (`upgrade_full` with this build's root code and the
    /// migrated data; bumps params_version, so nodes redeploy their proxy/client/worker contracts).
    Migrate {
        #[arg(long)]
        root: TonAddress,
    },
}

/// Which verified-key set.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifiedKind {
    Proxy,
    Worker,
    KeyManager,
}

impl From<VerifiedKind> for VerifiedKeyKind {
    fn from(k: VerifiedKind) -> Self {
        match k {
            VerifiedKind::Proxy => Self::Proxy,
            VerifiedKind::Worker => Self::Worker,
            VerifiedKind::KeyManager => Self::KeyManager,
        }
    }
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
        RootCmd::SetKeyManager {
            root,
            public_key,
            image_hash,
            address,
        } => {
            // The C++ node refuses the whole root config when this is neither empty nor IPv4 ip:port.
            if !address.is_empty() && address.parse::<std::net::SocketAddrV4>().is_err() {
                bail!("--address must be IPv4 \"ip:port\" or empty, not {address:?}");
            }
            (
                root,
                RootOp::ChangeKeyManager {
                    public_key: parse_hash(&public_key)?,
                    image_hash: parse_hash(&image_hash)?,
                    address,
                },
            )
        }
        RootCmd::AddKey {
            root,
            key,
            key_type,
            expire_at,
            valid_for,
        } => {
            let expire_at = match (expire_at, valid_for) {
                (Some(t), _) => t,
                (None, Some(d)) => chain.time().await?.saturating_add(d),
                (None, None) => bail!("give --expire-at UNIX_TIME or --valid-for SECONDS"),
            };
            (
                root,
                RootOp::AddPublicKey(RegisteredKey {
                    public_key: parse_hash(&key)?,
                    key_type,
                    expire_at,
                }),
            )
        }
        RootCmd::RemoveKey { root, key } => (root, RootOp::DelPublicKey(parse_hash(&key)?)),
        RootCmd::AddVerifiedKey { root, key, kind } => {
            (root, RootOp::AddVerifiedKey(kind.into(), parse_hash(&key)?))
        }
        RootCmd::RemoveVerifiedKey { root, key, kind } => {
            (root, RootOp::DelVerifiedKey(kind.into(), parse_hash(&key)?))
        }
        RootCmd::SetMultipliers {
            root,
            prompt,
            cached,
            completion,
            reasoning,
        } => {
            if [prompt, cached, completion, reasoning]
                .iter()
                .all(Option::is_none)
            {
                bail!("give at least one of --prompt, --cached, --completion, --reasoning");
            }
            let st = chain.account_state(&root).await?;
            let (Some(data), Some(code)) = (st.data, st.code) else {
                bail!("the root has no data or code (not deployed?)");
            };
            let data = edit_root_params(&data, |p| {
                p.prompt_mult = prompt.unwrap_or(p.prompt_mult);
                p.cached_mult = cached.unwrap_or(p.cached_mult);
                p.completion_mult = completion.unwrap_or(p.completion_mult);
                p.reasoning_mult = reasoning.unwrap_or(p.reasoning_mult);
            })?;
            // The root's own code: only the data changes.
            (root, RootOp::UpgradeFull { data, code })
        }
        RootCmd::Migrate { root } => {
            let data = chain
                .account_state(&root)
                .await?
                .data
                .context("the root has no data (not deployed?)")?;
            (
                root,
                RootOp::UpgradeFull {
                    data: migrate_root_data(&data)?,
                    code: ContractKind::Root.code()?,
                },
            )
        }
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
    check_struct_version(&before, &op, chain.time().await?)?;
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

/// Refuses, before sending, what the root would refuse for its struct version (2001) or an already
/// expired key (1000), with a way out.
fn check_struct_version(s: &RootState, op: &RootOp, now: u32) -> Result<()> {
    let v = s.params.struct_version;
    let needs = match op {
        RootOp::ChangeKeyManager { .. } | RootOp::AddPublicKey(_) | RootOp::DelPublicKey(_) => 4,
        RootOp::AddVerifiedKey(..) | RootOp::DelVerifiedKey(..) => 5,
        _ => 0,
    };
    if v < needs {
        bail!("the root is at struct version {v}; this needs {needs}: run `cocoon root migrate --root ...` first");
    }
    if let RootOp::AddPublicKey(k) = op {
        if k.expire_at < now {
            bail!(
                "expiry {} is before the chain's time {now}: the root would refuse the key",
                k.expire_at
            );
        }
    }
    if let RootOp::UpgradeFull { data, .. } = op {
        // A migration (the struct version moves) of a root already at the newest one.
        let to = parse_root_data(data).map_or(v, |n| n.params.struct_version);
        if to != v && v >= 5 {
            bail!("the root is already at struct version {v}");
        }
    }
    Ok(())
}

fn print_root(s: &RootState) {
    print!("{}", root_report(s));
}

/// `cocoon root show`: registry, params, key manager, registered and verified keys.
fn root_report(s: &RootState) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "owner:            {}", s.owner.to_bounceable());
    let _ = writeln!(o, "version:          {}", s.version);
    let _ = writeln!(o, "struct_version:   {}", s.params.struct_version);
    let _ = writeln!(o, "params_version:   {}", s.params.params_version);
    let _ = writeln!(
        o,
        "unique_id:        {} (test network: {})",
        s.params.unique_id, s.params.is_test
    );
    let _ = writeln!(
        o,
        "price/token:      {} nanoTON (worker fee {})",
        s.params.price_per_token, s.params.worker_fee_per_token
    );
    let _ = writeln!(
        o,
        "multipliers:      prompt {}, cached {}, completion {}, reasoning {} (10000 = 1x)",
        s.params.prompt_mult,
        s.params.cached_mult,
        s.params.completion_mult,
        s.params.reasoning_mult
    );
    let _ = writeln!(
        o,
        "close delays:     proxy {}s, client {}s",
        s.params.proxy_delay_before_close, s.params.client_delay_before_close
    );
    let _ = writeln!(
        o,
        "min stakes:       proxy {} TON, client {} TON",
        format_ton(s.params.min_proxy_stake),
        format_ton(s.params.min_client_stake)
    );
    let mut list = |name: &str, v: &[[u8; 32]]| {
        let _ = writeln!(o, "{name} ({}):", v.len());
        for h in v {
            let _ = writeln!(o, "  {}", hex::encode(h));
        }
    };
    list("model hashes", &s.model_hashes);
    list("worker image hashes", &s.worker_hashes);
    list("proxy image hashes", &s.proxy_hashes);
    let _ = writeln!(
        o,
        "proxies ({}, last seqno {}):",
        s.proxies.len(),
        s.last_proxy_seqno
    );
    for (seqno, d) in &s.proxies {
        let _ = writeln!(o, "  #{seqno}: {d}");
    }
    match &s.key_manager {
        None => {
            let _ = writeln!(o, "key manager:      none (struct version 3)");
        }
        Some(k) => {
            let _ = writeln!(o, "key manager:      key {}", hex::encode(k.public_key));
            let _ = writeln!(o, "                  image {}", hex::encode(k.image_hash));
            let addr = if k.address.is_empty() {
                "(none)"
            } else {
                &k.address
            };
            let _ = writeln!(o, "                  address {addr}");
            let _ = writeln!(o, "registered public keys ({}):", k.public_keys.len());
            for r in &k.public_keys {
                let _ = writeln!(
                    o,
                    "  {} type {} expires at {}",
                    hex::encode(r.public_key),
                    r.key_type,
                    r.expire_at
                );
            }
        }
    }
    match &s.verified_keys {
        None => {
            let _ = writeln!(
                o,
                "verified keys:    none (struct version {})",
                s.params.struct_version
            );
        }
        Some(v) => {
            for kind in VerifiedKeyKind::ALL {
                let keys = v.of(kind);
                let _ = writeln!(o, "verified {} keys ({}):", kind.name(), keys.len());
                for k in keys {
                    let _ = writeln!(o, "  {}", hex::encode(k));
                }
            }
        }
    }
    o
}

fn print_root_diff(a: &RootState, b: &RootState) {
    print!("{}", root_diff_report(a, b));
}

/// What an owner operation changed.
fn root_diff_report(a: &RootState, b: &RootState) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "version {} -> {}", a.version, b.version);
    let mut diff = |name: &str, x: &[[u8; 32]], y: &[[u8; 32]]| {
        for h in y.iter().filter(|h| !x.contains(h)) {
            let _ = writeln!(o, "+ {name} {}", hex::encode(h));
        }
        for h in x.iter().filter(|h| !y.contains(h)) {
            let _ = writeln!(o, "- {name} {}", hex::encode(h));
        }
    };
    diff("model", &a.model_hashes, &b.model_hashes);
    diff("worker image", &a.worker_hashes, &b.worker_hashes);
    diff("proxy image", &a.proxy_hashes, &b.proxy_hashes);
    for kind in VerifiedKeyKind::ALL {
        let of = |s: &RootState| {
            s.verified_keys
                .as_ref()
                .map(|v| v.of(kind).to_vec())
                .unwrap_or_default()
        };
        diff(&format!("verified {} key", kind.name()), &of(a), &of(b));
    }
    for p in b.proxies.iter().filter(|p| !a.proxies.contains(p)) {
        let _ = writeln!(o, "+ proxy #{}: {}", p.0, p.1);
    }
    for p in a.proxies.iter().filter(|p| !b.proxies.contains(p)) {
        let _ = writeln!(o, "- proxy #{}: {}", p.0, p.1);
    }
    let (ka, kb) = (a.registered_keys(), b.registered_keys());
    for k in kb.iter().filter(|k| !ka.contains(k)) {
        let _ = writeln!(
            o,
            "+ public key {} type {} expires at {}",
            hex::encode(k.public_key),
            k.key_type,
            k.expire_at
        );
    }
    for k in ka
        .iter()
        .filter(|k| !kb.iter().any(|n| n.public_key == k.public_key))
    {
        let _ = writeln!(o, "- public key {}", hex::encode(k.public_key));
    }
    if let (Some(x), Some(y)) = (&a.key_manager, &b.key_manager) {
        if (x.public_key, x.image_hash, &x.address) != (y.public_key, y.image_hash, &y.address) {
            let _ = writeln!(
                o,
                "key manager: key {} image {} address {:?}\n          -> key {} image {} address {:?}",
                hex::encode(x.public_key),
                hex::encode(x.image_hash),
                x.address,
                hex::encode(y.public_key),
                hex::encode(y.image_hash),
                y.address
            );
        }
    }
    if a.params != b.params {
        let _ = writeln!(o, "params: {:?}\n     -> {:?}", a.params, b.params);
    }
    o
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

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        root: RootArgs,
    }

    fn parse(args: &[&str]) -> Result<RootCmd, clap::Error> {
        use clap::Parser as _;
        let mut v = vec!["cocoon"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| c.root.cmd)
    }

    const ROOT: &str = "0:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn key_subcommands_parse() {
        let k = "ab".repeat(32);
        match parse(&["add-key", "--root", ROOT, &k, "--expire-at", "2000000000"]).unwrap() {
            RootCmd::AddKey {
                key_type: 1,
                expire_at: Some(2_000_000_000),
                valid_for: None,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        match parse(&[
            "add-key",
            "--root",
            ROOT,
            &k,
            "--type",
            "2",
            "--valid-for",
            "60",
        ])
        .unwrap()
        {
            RootCmd::AddKey {
                key_type: 2,
                expire_at: None,
                valid_for: Some(60),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        // An expiry is required, and only one way.
        assert!(parse(&["add-key", "--root", ROOT, &k]).is_err());
        assert!(parse(&[
            "add-key",
            "--root",
            ROOT,
            &k,
            "--expire-at",
            "1",
            "--valid-for",
            "1"
        ])
        .is_err());
        assert!(matches!(
            parse(&["remove-key", "--root", ROOT, &k]).unwrap(),
            RootCmd::RemoveKey { .. }
        ));
        match parse(&[
            "set-key-manager",
            "--root",
            ROOT,
            "--public-key",
            &k,
            "--image-hash",
            &k,
            "--address",
            "127.0.0.1:13001",
        ])
        .unwrap()
        {
            RootCmd::SetKeyManager { address, .. } => assert_eq!(address, "127.0.0.1:13001"),
            other => panic!("{other:?}"),
        }
        for (arg, kind) in [
            ("proxy", VerifiedKind::Proxy),
            ("worker", VerifiedKind::Worker),
            ("key-manager", VerifiedKind::KeyManager),
        ] {
            match parse(&["add-verified-key", "--root", ROOT, &k, "--kind", arg]).unwrap() {
                RootCmd::AddVerifiedKey { kind: got, .. } => assert_eq!(got, kind),
                other => panic!("{other:?}"),
            }
            match parse(&["remove-verified-key", "--root", ROOT, &k, "--kind", arg]).unwrap() {
                RootCmd::RemoveVerifiedKey { kind: got, .. } => assert_eq!(got, kind),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            parse(&["add-verified-key", "--root", ROOT, &k]).is_err(),
            "--kind is required"
        );
        assert!(matches!(
            parse(&["migrate", "--root", ROOT]).unwrap(),
            RootCmd::Migrate { .. }
        ));
        match parse(&[
            "set-multipliers",
            "--root",
            ROOT,
            "--prompt",
            "20000",
            "--reasoning",
            "5000",
        ])
        .unwrap()
        {
            RootCmd::SetMultipliers {
                prompt,
                cached,
                completion,
                reasoning,
                ..
            } => assert_eq!(
                (prompt, cached, completion, reasoning),
                (Some(20_000), None, None, Some(5_000))
            ),
            other => panic!("{other:?}"),
        }
    }

    fn state(struct_version: u8) -> RootState {
        use cocoon_ton::contracts::{KeyManager, ParamsCodes, VerifiedKeys};
        RootState {
            owner: ROOT.parse().unwrap(),
            version: 3,
            proxy_hashes: vec![],
            proxies: vec![],
            last_proxy_seqno: 0,
            worker_hashes: vec![],
            model_hashes: vec![],
            params: CocoonParams {
                struct_version,
                ..CocoonParams::default()
            },
            codes: ParamsCodes::default(),
            key_manager: (struct_version >= 4).then(KeyManager::default),
            verified_keys: (struct_version >= 5).then(VerifiedKeys::default),
        }
    }

    #[test]
    fn key_ops_are_checked_against_the_struct_version_before_sending() {
        let key = RegisteredKey {
            public_key: [1; 32],
            key_type: 1,
            expire_at: 100,
        };
        let add = RootOp::AddPublicKey(key.clone());
        let verified = RootOp::AddVerifiedKey(VerifiedKeyKind::Worker, [2; 32]);
        let e = check_struct_version(&state(3), &add, 50).unwrap_err();
        assert!(e.to_string().contains("cocoon root migrate"), "{e}");
        assert!(check_struct_version(&state(4), &add, 50).is_ok());
        assert!(check_struct_version(&state(4), &verified, 50).is_err());
        assert!(check_struct_version(&state(5), &verified, 50).is_ok());
        let e = check_struct_version(&state(5), &add, 101).unwrap_err();
        assert!(e.to_string().contains("would refuse"), "{e}");
        assert!(check_struct_version(&state(3), &RootOp::AddModelType([0; 32]), 0).is_ok());
    }

    #[test]
    fn show_and_diff_print_the_key_manager_and_the_keys() {
        let a = state(5);
        let mut b = a.clone();
        b.version = 4;
        if let Some(k) = b.key_manager.as_mut() {
            k.public_key = [0xaa; 32];
            k.address = "127.0.0.1:13001".into();
            k.public_keys.push(RegisteredKey {
                public_key: [0xbb; 32],
                key_type: 1,
                expire_at: 2_000_000_000,
            });
        }
        if let Some(v) = b.verified_keys.as_mut() {
            v.worker.push([0xcc; 32]);
        }
        let show = root_report(&b);
        for want in [
            "struct_version:   5",
            &format!("key manager:      key {}", "aa".repeat(32)),
            "address 127.0.0.1:13001",
            "registered public keys (1):",
            &format!("  {} type 1 expires at 2000000000", "bb".repeat(32)),
            "verified worker keys (1):",
            "verified key manager keys (0):",
        ] {
            assert!(show.contains(want), "{want:?} not in\n{show}");
        }
        let diff = root_diff_report(&a, &b);
        assert!(
            diff.contains(&format!("+ public key {}", "bb".repeat(32))),
            "{diff}"
        );
        assert!(
            diff.contains(&format!("+ verified worker key {}", "cc".repeat(32))),
            "{diff}"
        );
        assert!(diff.contains("key manager: key"), "{diff}");
        let back = root_diff_report(&b, &a);
        assert!(
            back.contains(&format!("- public key {}", "bb".repeat(32))),
            "{back}"
        );
        let old = root_report(&state(3));
        assert!(
            old.contains("key manager:      none (struct version 3)"),
            "{old}"
        );
        assert!(
            old.contains("verified keys:    none (struct version 3)"),
            "{old}"
        );
    }
}
