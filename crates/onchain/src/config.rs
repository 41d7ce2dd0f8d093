//! The `[chain]` section every node config shares, and loading the node's wallet.
//!
//! An empty `api_url` means payments are off: the node runs on configured credit alone, as
//! before the chain layer (useful for benchmarks with payments off and for tests of other
//! parts). What must not live here: role-specific thresholds (those sit in each role's config).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cocoon_ton::http::{HttpChain, HttpChainConfig};
use cocoon_ton::wallet::{Phrase, Wallet};
use cocoon_ton::{Chain, TonAddress};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{OnchainError, RegistryWatch, WalletSender};

/// `[chain]`: where the node reads TON and which wallet it pays from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// TON HTTP API v2 endpoint (toncenter shape; `cocoon chain` serves one on 127.0.0.1:8081).
    /// Empty: payments off, the node runs on configured credit. Default: empty.
    pub api_url: String,
    /// `X-API-Key` for the endpoint. Default: empty (none).
    pub api_key: String,
    /// The root contract (the network's registry and prices). Default: empty.
    pub root_address: String,
    /// File with the node wallet's 24-word mnemonic. Default: `wallet.mnemonic`.
    pub wallet_mnemonic_file: PathBuf,
    /// How often the chain is polled (root registry, own contracts). Default: 5s.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The stale-root guard: when this node's view of the root contract is older than this (no
    /// successful read, or the API serves an old block), it takes no new work: a worker tells
    /// its proxies it is disabled, a proxy refuses new requests, a client answers 503; the next
    /// successful read resumes. At least twice `poll_interval`, at most 1 day. Default: 5m
    /// (60 polls at the default interval; Cocoon's proxy stops after 2 h).
    #[serde(with = "humantime_serde")]
    pub root_stale_after: Duration,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            api_url: String::new(),
            api_key: String::new(),
            root_address: String::new(),
            wallet_mnemonic_file: PathBuf::from("wallet.mnemonic"),
            poll_interval: Duration::from_secs(5),
            root_stale_after: crate::freshness::DEFAULT_STALE_AFTER,
        }
    }
}

impl ChainConfig {
    /// Whether payments through the chain are on.
    pub fn enabled(&self) -> bool {
        !self.api_url.trim().is_empty()
    }

    /// Checks values that parse but make no sense (only when enabled).
    pub fn validate(&self) -> Result<(), OnchainError> {
        if !self.enabled() {
            return Ok(());
        }
        self.root()?;
        if self.poll_interval < Duration::from_millis(50)
            || self.poll_interval > Duration::from_secs(600)
        {
            return Err(OnchainError::Config(
                "chain.poll_interval must be between 50ms and 10m".into(),
            ));
        }
        if self.root_stale_after < self.poll_interval * 2
            || self.root_stale_after > Duration::from_secs(86_400)
        {
            return Err(OnchainError::Config(format!(
                "chain.root_stale_after must be at least twice poll_interval ({:?}) and at most 1 \
                 day",
                self.poll_interval
            )));
        }
        Ok(())
    }

    /// The root contract address.
    pub fn root(&self) -> Result<TonAddress, OnchainError> {
        self.root_address.trim().parse().map_err(|e| {
            OnchainError::Config(format!(
                "chain.root_address {:?} is not a TON address: {e}",
                self.root_address
            ))
        })
    }

    /// A TON HTTP API client for `api_url`.
    pub fn connect(&self) -> Result<Arc<dyn Chain>, OnchainError> {
        let mut cfg = HttpChainConfig::new(self.api_url.trim());
        if !self.api_key.is_empty() {
            cfg.api_key = Some(self.api_key.clone());
        }
        Ok(Arc::new(HttpChain::new(cfg)?))
    }

    /// Loads the wallet (key derivation is ~100k PBKDF2 rounds: done off the runtime threads).
    pub async fn load_wallet(&self) -> Result<Wallet, OnchainError> {
        load_wallet(self.wallet_mnemonic_file.clone()).await
    }

    /// Everything a node needs on chain: the API client, the root, the node wallet's sender and
    /// the root registry, watched every `poll_interval` until `shutdown`.
    pub async fn open(&self, shutdown: CancellationToken) -> Result<NodeChain, OnchainError> {
        self.validate()?;
        let chain = self.connect()?;
        let root = self.root()?;
        let wallet = self.load_wallet().await?;
        let registry = RegistryWatch::start(
            chain.clone(),
            root,
            self.poll_interval,
            self.root_stale_after,
            shutdown,
        )
        .await?;
        let sender = Arc::new(WalletSender::new(chain.clone(), wallet));
        Ok(NodeChain {
            chain,
            root,
            sender,
            registry,
        })
    }
}

/// A node's view of the chain, as [`ChainConfig::open`] sets it up.
#[derive(Clone)]
pub struct NodeChain {
    pub chain: Arc<dyn Chain>,
    pub root: TonAddress,
    /// The node wallet (its address is the node's default owner address).
    pub sender: Arc<WalletSender>,
    pub registry: RegistryWatch,
}

/// Loads a wallet from a mnemonic file, off the runtime threads.
pub async fn load_wallet(path: PathBuf) -> Result<Wallet, OnchainError> {
    tokio::task::spawn_blocking(move || {
        let meta = std::fs::metadata(&path).map_err(|e| {
            OnchainError::Config(format!("reading wallet mnemonic {}: {e}", path.display()))
        })?;
        if meta.len() > 4096 {
            return Err(OnchainError::Config(format!(
                "{} is too large to be a mnemonic",
                path.display()
            )));
        }
        check_private(&path, &meta).map_err(OnchainError::Config)?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            OnchainError::Config(format!("reading wallet mnemonic {}: {e}", path.display()))
        })?;
        Ok(Wallet::from_phrase(&Phrase::parse(text.trim())?)?)
    })
    .await
    .map_err(|e| OnchainError::Config(format!("wallet loader: {e}")))?
}

/// Refuses a key file that other users may read: whoever reads it can sign as this node (a
/// wallet mnemonic moves its money; a proxy payment key signs charges and payouts). Key files
/// this project creates are `0600`; one that is group- or world-readable was copied or
/// created by hand, and the fix is one `chmod`. Returns the message to show.
pub fn check_private(path: &std::path::Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} holds a key and other users may read it (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mnemonic_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("cocoon-onchain-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("wallet.mnemonic");
        let phrase = Phrase::generate().expect("phrase");
        std::fs::write(&path, phrase.expose()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_wallet(path.clone()).await.expect_err("refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(load_wallet(path).await.is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn disabled_by_default_and_validated_when_on() {
        let c = ChainConfig::default();
        assert!(!c.enabled());
        assert!(c.validate().is_ok());
        let on = ChainConfig {
            api_url: "http://127.0.0.1:8081".into(),
            root_address: "not an address".into(),
            ..ChainConfig::default()
        };
        assert!(on.validate().is_err());
        assert!(on.root().is_err());
        let mut ok = ChainConfig {
            root_address: format!("0:{}", "11".repeat(32)),
            ..on
        };
        assert!(ok.validate().is_ok());
        ok.root_stale_after = ok.poll_interval;
        let e = ok
            .validate()
            .expect_err("a bound of one poll goes stale between reads");
        assert!(e.to_string().contains("root_stale_after"), "{e}");
        ok.root_stale_after = Duration::from_secs(2 * 86_400);
        assert!(ok.validate().is_err());
    }
}
