//! The one place that knows how a local Cocoon network is configured: N proxies, N workers, a
//! client and (unless left out) a key manager on 127.0.0.1, on dev attestation (software
//! evidence, which nothing outside the dev network accepts). A [`NetworkPlan`] says what the
//! network is; [`NetworkPlan::configs`] turns it into the nodes' [`ProxyConfig`]s,
//! [`WorkerConfig`]s, [`ClientConfig`] and [`KeyManagerConfig`]. The key manager also serves
//! upstream COCOON's fixed test key (`add_default_key`: dev networks only), so apps using
//! upstream's test encryption work against the network.
//!
//! Both `cocoon dev` (crates/cocoon/src/dev.rs, [`Purpose::Dev`]) and the e2e tests'
//! `Net::builder()` (tests/e2e/harness.rs, [`Purpose::Test`]) build their configs here. It is
//! the library target `cocoon_devnet` of the `cocoon` package, not a module of
//! crates/testkit: the tests of the `cocoon` package can use this library, and crates/testkit
//! stays free of role crates so that crates/engine may dev-depend on it without a cycle.
//!
//! Only config values live here: no files are written (each caller writes its own TOML), no
//! process is started, no chain is touched, no port is probed ([`Ports::Pick`] takes the
//! caller's picker).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cocoon_client::config::{KeysConfig, PrivacyConfig};
use cocoon_client::ClientConfig;
use cocoon_key_manager::KeyManagerConfig;
use cocoon_node::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
use cocoon_onchain::ChainConfig;
use cocoon_proxy::{ClientEntry, ProxyConfig, ReceiptsConfig};
use cocoon_worker::{EngineConfig, WorkerConfig};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A local network to configure.
#[derive(Clone, Debug)]
pub struct NetworkPlan {
    /// Proxies; every worker and the client connect to all of them. At least one is planned.
    pub proxies: usize,
    pub workers: usize,
    /// The model name the workers advertise.
    pub model: String,
    /// Every worker's engine section.
    pub engine: EngineConfig,
    pub ports: Ports,
    /// The proxies' proof-of-work difficulty.
    pub pow_difficulty: u32,
    /// The client, as the proxies know it.
    pub client: PlannedClient,
    /// More clients the proxies know (e.g. the reference client of recorded captures).
    pub extra_clients: Vec<ClientEntry>,
    /// Plan a key manager, and point every proxy at it.
    pub key_manager: bool,
    pub purpose: Purpose,
}

/// The network's client: its owner address, its secret, and the credit the proxies give it
/// (`None`: the proxy's default).
#[derive(Clone, Debug)]
pub struct PlannedClient {
    pub owner: String,
    pub secret: String,
    pub token_credit: Option<u64>,
}

/// Where the nodes listen, all on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub enum Ports {
    /// `cocoon dev`'s fixed ports plus `offset`: the client's HTTP API on 10000; proxy `i`'s
    /// stats, worker and client ports on 11000, 11001 and 11002 (plus 10 `i`); worker `i`'s
    /// stats on 12000 (plus 10 `i`); the key manager's stats and RPC ports on 13000 and 13001
    /// (upstream's); the local chain on 8081.
    Dev { offset: u16 },
    /// Each port from the picker (a test's free-port function).
    Pick(fn() -> u16),
}

impl Ports {
    /// The local chain's API address of a dev network.
    pub fn dev_chain(offset: u16) -> SocketAddr {
        loopback(8081 + offset)
    }

    fn port(&self, dev_port: u16) -> u16 {
        match *self {
            Ports::Dev { offset } => dev_port + offset,
            Ports::Pick(pick) => pick(),
        }
    }
}

/// What the network is for, which decides what the nodes keep and how fast they check.
#[derive(Clone, Debug)]
pub enum Purpose {
    /// `cocoon dev`: nodes keep their state (payment key, ledger, worker data) in files, pay
    /// through the local chain if there is one, anchor and move money often so a developer can
    /// watch it, and have admin tokens for the `cocoon ... status` commands.
    Dev(DevNodes),
    /// The e2e tests: no state or admin tokens, short handshakes and health checks so faults
    /// show within a test's patience; workers are owned by `e2e-worker-N`.
    Test,
}

/// Where a dev network's nodes keep their state, and the chain they pay through.
#[derive(Clone, Debug)]
pub struct DevNodes {
    /// The proxy's key and ledger and the workers' data dirs go here.
    pub state_dir: PathBuf,
    pub chain: Option<DevChain>,
}

/// What the dev network's nodes need to pay through the local chain.
#[derive(Clone, Debug)]
pub struct DevChain {
    pub api_url: String,
    pub root: String,
    /// Absolute data dir (wallet files live there).
    pub dir: PathBuf,
}

impl DevChain {
    fn config(&self, wallet: &str) -> ChainConfig {
        ChainConfig {
            api_url: self.api_url.clone(),
            root_address: self.root.clone(),
            wallet_mnemonic_file: self.dir.join(wallet),
            poll_interval: Duration::from_millis(500),
            ..ChainConfig::default()
        }
    }
}

/// The configs a plan turns into: one per proxy (in order), one per worker, the client's, and
/// the key manager's when planned.
#[derive(Clone, Debug)]
pub struct NetworkConfigs {
    pub proxies: Vec<ProxyConfig>,
    pub workers: Vec<WorkerConfig>,
    pub client: ClientConfig,
    pub key_manager: Option<KeyManagerConfig>,
}

/// The dev network's attestation: proxies and workers prove software evidence, the client none;
/// everyone accepts software-attested peers.
fn attestation(evidence: EvidenceChoice) -> AttestationConfig {
    AttestationConfig::dev(evidence, PeerPolicyChoice::InsecureSoftware)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A random admin token (hex of 16 bytes).
fn admin_token() -> String {
    let mut t = [0u8; 16];
    rand::rng().fill_bytes(&mut t);
    hex::encode(t)
}

impl NetworkPlan {
    /// Every node's config. Ports are taken from [`NetworkPlan::ports`]: the key manager's
    /// (stats, RPC) when planned, then proxy by proxy (stats, worker, client port), then
    /// worker by worker, then the client's; admin tokens of a dev network are drawn fresh on
    /// each call (nothing else is random).
    pub fn configs(&self) -> NetworkConfigs {
        let key_manager = self.key_manager.then(|| self.key_manager_config());
        let proxies: Vec<ProxyConfig> = (0..self.proxies.max(1) as u16)
            .map(|i| self.proxy(i, key_manager.as_ref()))
            .collect();
        let workers = (0..self.workers)
            .map(|i| self.worker(i, &proxies))
            .collect();
        let client = self.client(&proxies);
        NetworkConfigs {
            proxies,
            workers,
            client,
            key_manager,
        }
    }

    /// The key manager: dev attestation, upstream's test key served, and with a dev chain its
    /// own wallet (`key-manager.mnemonic`) for announcing keys.
    fn key_manager_config(&self) -> KeyManagerConfig {
        let common = KeyManagerConfig {
            stats_listen: loopback(self.ports.port(13000)),
            rpc_listen: loopback(self.ports.port(13001)),
            pow_difficulty: self.pow_difficulty,
            add_default_key: true,
            attestation: attestation(EvidenceChoice::InsecureSoftware),
            ..KeyManagerConfig::default()
        };
        match &self.purpose {
            Purpose::Dev(dev) => KeyManagerConfig {
                data_dir: dev.state_dir.join("key-manager"),
                chain: dev
                    .chain
                    .as_ref()
                    .map(|c| c.config("key-manager.mnemonic"))
                    .unwrap_or_default(),
                ..common
            },
            // The harness puts `data_dir` in the test's own directory.
            Purpose::Test => KeyManagerConfig {
                handshake_timeout: Duration::from_secs(3),
                ..common
            },
        }
    }

    fn chain(&self) -> Option<&DevChain> {
        match &self.purpose {
            Purpose::Dev(d) => d.chain.as_ref(),
            Purpose::Test => None,
        }
    }

    fn proxy(&self, i: u16, key_manager: Option<&KeyManagerConfig>) -> ProxyConfig {
        // Each proxy its own receipt log (tests run them all in one directory).
        let receipts_dir = if i == 0 {
            PathBuf::from("proxy-receipts")
        } else {
            PathBuf::from(format!("proxy-{i}-receipts"))
        };
        let stats_listen = loopback(self.ports.port(11000 + 10 * i));
        let worker_listen = loopback(self.ports.port(11001 + 10 * i));
        let client_listen = loopback(self.ports.port(11002 + 10 * i));
        let clients = std::iter::once(ClientEntry {
            owner_address: self.client.owner.clone(),
            secret_sha256: hex::encode(Sha256::digest(self.client.secret.as_bytes())),
            token_credit: self.client.token_credit,
        })
        .chain(self.extra_clients.iter().cloned())
        .collect();
        let common = ProxyConfig {
            worker_listen,
            client_listen,
            stats_listen,
            pow_difficulty: self.pow_difficulty,
            clients,
            attestation: attestation(EvidenceChoice::InsecureSoftware),
            key_manager: key_manager
                .map(|k| k.rpc_listen.to_string())
                .unwrap_or_default(),
            ..ProxyConfig::default()
        };
        match &self.purpose {
            Purpose::Dev(dev) => ProxyConfig {
                chain: dev
                    .chain
                    .as_ref()
                    .map(|c| c.config("proxy.mnemonic"))
                    .unwrap_or_default(),
                payment_key_file: dev.state_dir.join("proxy-payment.key"),
                ledger_path: dev.state_dir.join("proxy-ledger.sqlite"),
                // Short periods, so a developer sees roots (and, with a chain, anchors) soon.
                receipts: ReceiptsConfig {
                    dir: dev.state_dir.join(&receipts_dir),
                    anchor_every: Duration::from_secs(5),
                    ..ReceiptsConfig::default()
                },
                // A local chain is free and instant: anchor, charge and pay out often so money
                // moves where a developer can watch it.
                anchor_interval: Duration::from_secs(2),
                min_client_charge_nanoton: 1,
                min_worker_payout_nanoton: 1,
                min_owner_withdraw_nanoton: 1_000,
                admin_token: admin_token(),
                // With a chain, the owner is the proxy's wallet.
                owner_address: if dev.chain.is_some() {
                    String::new()
                } else {
                    "dev-proxy-owner".into()
                },
                ..common
            },
            Purpose::Test => ProxyConfig {
                handshake_timeout: Duration::from_secs(3),
                // Relative; tests/e2e/harness.rs puts it in the test's directory.
                receipts: ReceiptsConfig {
                    dir: receipts_dir,
                    ..ReceiptsConfig::default()
                },
                ..common
            },
        }
    }

    fn worker(&self, i: usize, proxies: &[ProxyConfig]) -> WorkerConfig {
        let common = WorkerConfig {
            proxies: proxies
                .iter()
                .map(|p| p.worker_listen.to_string())
                .collect(),
            model: self.model.clone(),
            stats_listen: loopback(self.ports.port(12000 + 10 * i as u16)),
            attestation: attestation(EvidenceChoice::InsecureSoftware),
            engine: self.engine.clone(),
            ..WorkerConfig::default()
        };
        match &self.purpose {
            Purpose::Dev(dev) => WorkerConfig {
                owner_address: if dev.chain.is_some() {
                    String::new()
                } else {
                    format!("dev-worker-{i}")
                },
                chain: dev
                    .chain
                    .as_ref()
                    .map(|c| c.config(&format!("worker-{i}.mnemonic")))
                    .unwrap_or_default(),
                data_dir: dev.state_dir.join(format!("worker-{i}")),
                min_cashout: 1,
                admin_token: admin_token(),
                ..common
            },
            Purpose::Test => WorkerConfig {
                owner_address: format!("e2e-worker-{i}"),
                health_interval: Duration::from_millis(200),
                ..common
            },
        }
    }

    fn client(&self, proxies: &[ProxyConfig]) -> ClientConfig {
        let chain = self.chain();
        let common = ClientConfig {
            http_listen: loopback(self.ports.port(10000)),
            proxies: proxies
                .iter()
                .map(|p| p.client_listen.to_string())
                .collect(),
            // With a chain, the owner is the client's wallet.
            owner_address: if chain.is_some() {
                String::new()
            } else {
                self.client.owner.clone()
            },
            secret: self.client.secret.clone(),
            attestation: attestation(EvidenceChoice::None),
            ..ClientConfig::default()
        };
        match &self.purpose {
            Purpose::Dev(dev) => ClientConfig {
                chain: chain
                    .map(|c| c.config("client.mnemonic"))
                    .unwrap_or_default(),
                admin_token: admin_token(),
                privacy: PrivacyConfig {
                    receipts_dir: dev.state_dir.join("client-receipts").display().to_string(),
                    ..PrivacyConfig::default()
                },
                keys: KeysConfig {
                    db: dev
                        .state_dir
                        .join("client-keys.sqlite")
                        .display()
                        .to_string(),
                },
                ..common
            },
            // Tests keep receipts in memory unless they say otherwise.
            Purpose::Test => ClientConfig {
                privacy: PrivacyConfig {
                    receipts_dir: String::new(),
                    ..PrivacyConfig::default()
                },
                // Tests run without API keys unless they set a file.
                keys: KeysConfig { db: String::new() },
                ..common
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(purpose: Purpose, ports: Ports) -> NetworkPlan {
        NetworkPlan {
            proxies: 2,
            workers: 3,
            model: "mock".into(),
            engine: EngineConfig::default(),
            ports,
            pow_difficulty: 4,
            client: PlannedClient {
                owner: "c".into(),
                secret: "s".into(),
                token_credit: Some(7),
            },
            extra_clients: Vec::new(),
            key_manager: true,
            purpose,
        }
    }

    #[test]
    fn every_worker_and_the_client_reach_every_proxy() {
        let c = plan(Purpose::Test, Ports::Dev { offset: 5 }).configs();
        assert_eq!(c.proxies.len(), 2);
        assert_eq!(c.workers.len(), 3);
        assert_eq!(c.proxies[1].stats_listen, loopback(11015));
        assert_eq!(c.workers[2].stats_listen, loopback(12025));
        assert_eq!(c.workers[0].proxies, ["127.0.0.1:11006", "127.0.0.1:11016"]);
        assert_eq!(c.client.proxies, ["127.0.0.1:11007", "127.0.0.1:11017"]);
        assert_eq!(c.client.http_listen, loopback(10005));
        let entry = &c.proxies[0].clients[0];
        assert_eq!(entry.owner_address, "c");
        assert_eq!(entry.token_credit, Some(7));
        assert_eq!(entry.secret_sha256, hex::encode(Sha256::digest(b"s")));
        let km = c.key_manager.as_ref().expect("a key manager");
        assert_eq!(km.stats_listen, loopback(13005));
        assert_eq!(km.rpc_listen, loopback(13006));
        assert!(
            km.add_default_key,
            "the dev network serves upstream's test key"
        );
        assert!(km.validate().is_ok());
        assert!(c.proxies.iter().all(|p| p.key_manager == "127.0.0.1:13006"));
        let mut without = plan(Purpose::Test, Ports::Dev { offset: 5 });
        without.key_manager = false;
        let c = without.configs();
        assert!(c.key_manager.is_none());
        assert!(c.proxies.iter().all(|p| p.key_manager.is_empty()));
    }

    #[test]
    fn a_dev_network_with_a_chain_pays_through_wallets() {
        let dir = PathBuf::from("/data");
        let dev = Purpose::Dev(DevNodes {
            state_dir: dir.clone(),
            chain: Some(DevChain {
                api_url: "http://127.0.0.1:8081".into(),
                root: "root".into(),
                dir,
            }),
        });
        let c = plan(dev, Ports::Dev { offset: 0 }).configs();
        assert_eq!(c.proxies[0].owner_address, "");
        assert_eq!(
            c.workers[1].chain.wallet_mnemonic_file,
            PathBuf::from("/data/worker-1.mnemonic")
        );
        assert_eq!(c.workers[1].data_dir, PathBuf::from("/data/worker-1"));
        assert_eq!(c.client.owner_address, "");
        assert_eq!(c.client.chain.root_address, "root");
        assert_ne!(c.client.admin_token, c.proxies[0].admin_token);
        let km = c.key_manager.as_ref().expect("a key manager");
        assert_eq!(km.data_dir, PathBuf::from("/data/key-manager"));
        assert_eq!(
            km.chain.wallet_mnemonic_file,
            PathBuf::from("/data/key-manager.mnemonic")
        );
    }

    #[test]
    fn a_dev_networks_configs_are_the_same_on_every_call_but_admin_tokens() {
        let dev = || {
            Purpose::Dev(DevNodes {
                state_dir: PathBuf::from("/data"),
                chain: None,
            })
        };
        let text = |mut c: NetworkConfigs| {
            for p in &mut c.proxies {
                p.admin_token.clear();
            }
            for w in &mut c.workers {
                w.admin_token.clear();
            }
            c.client.admin_token.clear();
            let mut out = String::new();
            for p in &c.proxies {
                out += &toml::to_string(p).expect("proxy");
            }
            for w in &c.workers {
                out += &toml::to_string(w).expect("worker");
            }
            out += &toml::to_string(&c.client).expect("client");
            out += &toml::to_string(&c.key_manager).expect("key manager");
            out
        };
        let a = text(plan(dev(), Ports::Dev { offset: 0 }).configs());
        let b = text(plan(dev(), Ports::Dev { offset: 0 }).configs());
        assert_eq!(a, b);
        assert!(a.contains("add_default_key = true"), "{a}");
        assert!(a.contains("key_manager = \"127.0.0.1:13001\""), "{a}");
    }
}
