//! The proxy's TOML config (`proxy.toml`): every key documented with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cocoon_onchain::ChainConfig;

use cocoon_node::{
    AttestationConfig, ConfigError, EvidenceChoice, PeerPolicyChoice, PricingConfig,
};
use serde::{Deserialize, Serialize};

/// A client allowed to use this proxy (`[[clients]]`), until clients register on chain.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// The client's owner address, as it presents it in `client.connectToProxy`.
    pub owner_address: String,
    /// Hex SHA-256 of the client's secret string (short auth). The secret itself is never stored.
    pub secret_sha256: String,
    /// Adjusted tokens this client may use; default: `default_client_credit`.
    #[serde(default)]
    pub token_credit: Option<u64>,
}

/// The proxy's whole config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where workers connect. Default: `127.0.0.1:11001`.
    pub worker_listen: SocketAddr,
    /// Where clients connect. Default: `127.0.0.1:11002`.
    pub client_listen: SocketAddr,
    /// Where `/stats`, `/jsonstats` and `/metrics` are served. Default: `127.0.0.1:11000`.
    pub stats_listen: SocketAddr,
    /// TON address of the proxy's owner (receives the commission). Default: empty (dev only).
    pub owner_address: String,
    /// Proof-of-work difficulty demanded before TLS, in leading zero bits. Default: 20.
    pub pow_difficulty: u32,
    /// Bound on PoW + TLS + session setup per connection; also how long a worker whose
    /// payment numbers are above the ledger has to show a payout this proxy signed before its
    /// connection is closed. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once per port; at the limit a new connection sheds the oldest
    /// one that has not answered its proof of work (the accept loop never waits). Default: 64.
    pub max_pending_handshakes: usize,
    /// A client session must be authorized within this long after its handshake, or it is
    /// closed. A client doing long (on-chain) authorization must send
    /// `client.authorizeWithProxyLong` within it (our client sends it once its registration
    /// transaction is confirmed, which it waits for up to 60s); the wait for its nonce on chain
    /// may then take up to 300s. Raise it when clients register on a slow chain. Default: 90s.
    #[serde(with = "humantime_serde")]
    pub client_auth_timeout: Duration,
    /// Bytes the proxy may hold for one peer (client or worker) that it has not yet handed to
    /// the peer's session, on top of the session's own queue: relays and notices never wait on
    /// a peer, and one that lets more than this pile up has stopped reading and is closed
    /// (its requests end as on a disconnect). Default: 16 MiB.
    pub peer_queue_bytes: usize,
    /// `[accept]`: limits on the worker and client ports beyond `max_pending_handshakes`:
    /// the proof-of-work deadline and what one source address may hold (docs/SECURITY.md).
    pub accept: cocoon_node::net::AcceptLimits,
    /// Credit of a `[[clients]]` entry without `token_credit`, in adjusted tokens.
    /// Default: 100 000 000.
    pub default_client_credit: u64,
    /// Requests one client may have in flight. Default: 1000.
    pub max_requests_per_client: u32,
    /// Longest request timeout honoured. Default: 1h.
    #[serde(with = "humantime_serde")]
    pub max_request_timeout: Duration,
    /// Shortest request timeout honoured: a client's smaller `timeout` is raised to it, so a
    /// client cannot make workers look hung with deadlines no worker can meet (a worker is
    /// taken out of rotation only for a deadline of at least this long and at least twice its
    /// mean time to answer, docs/SECURITY.md). At most `max_request_timeout`. Default: 5s.
    #[serde(with = "humantime_serde")]
    pub min_request_timeout: Duration,
    /// Completion tokens reserved for a request whose body sets neither `max_tokens` nor
    /// `max_completion_tokens` (a request is reserved for the larger of its message's
    /// `max_tokens` and its body's limit, or this). Workers generate up to their own
    /// `default_max_tokens` then: keep this at least as high, or a stream with per-part usage is
    /// cut at its reservation and a worker is paid no more than it. Default: 1000.
    pub default_max_tokens: u64,
    /// Full model names (`name@commit:hash` or plain) workers may serve; empty = any.
    /// Default: empty. (The root contract's list replaces this with the chain layer.)
    pub allowed_models: Vec<String>,
    /// Clients allowed to connect (short auth by secret).
    pub clients: Vec<ClientEntry>,
    /// Image hashes workers must be attested with: hex SHA-256, or Cocoon's `tdx@<hex>` /
    /// `sev@<hex>`, which match only that TEE family; empty = any image the TLS policy accepts.
    /// Default: empty. (The root contract's list replaces this.)
    pub allowed_worker_images: Vec<String>,
    /// Evidence demanded of clients. Default: `any` (clients run outside TEEs).
    pub client_peer_policy: PeerPolicyChoice,
    /// `[pricing]`: the network's prices with the chain off. With `[chain]` on, the prices and
    /// multipliers of the root's params (those the proxy contract is made under) are used
    /// instead; a differing value here is overridden and logged once per run.
    pub pricing: PricingConfig,
    /// `[attestation]`: this proxy's evidence, and what workers must present (`peer_policy`).
    pub attestation: AttestationConfig,
    /// `[chain]`: payments through TON (docs/PAYMENTS.md). Empty `api_url`: payments off,
    /// clients come from `[[clients]]` with configured credit.
    pub chain: ChainConfig,
    /// Ed25519 seed (32 bytes) that signs payments and ledger rows; created (mode 0600) on first
    /// start. Its public key is part of the proxy contract's address. Default: `proxy-payment.key`.
    pub payment_key_file: PathBuf,
    /// The SQLite ledger (payments on). Default: `proxy-ledger.sqlite`.
    pub ledger_path: PathBuf,
    /// How often a save-state marker anchors the ledger on chain (payments on). Default: 30s.
    #[serde(with = "humantime_serde")]
    pub anchor_interval: Duration,
    /// Charge a client on chain once this much (nanoTON) is anchored but not charged.
    /// Default: 1 000 000 000 (1 TON).
    pub min_client_charge_nanoton: u64,
    /// Pay a worker once this much (nanoTON) is anchored but not paid. Default: 10 000 000 000.
    pub min_worker_payout_nanoton: u64,
    /// Send the commission to the owner once the proxy contract holds this much. Default:
    /// 10 000 000 000.
    pub min_owner_withdraw_nanoton: u64,
    /// nanoTON attached to each charge or payout message (the rest comes back). Default:
    /// 300 000 000.
    pub onchain_attach_nanoton: u64,
    /// Bearer token for `POST /admin/*` on the stats port; empty = admin actions off. Default:
    /// empty.
    pub admin_token: String,
    /// Bearer token the stats pages (`/stats`, `/jsonstats`, `/metrics`) require. Empty: none,
    /// and then `stats_listen` must be a loopback address, since the pages list every client
    /// owner with its usage and every worker owner. Default: empty.
    pub stats_token: String,
    /// `host:port` of the key manager the network keys come from (its RPC port: PoW + RA-TLS,
    /// evidence as `[attestation] peer_policy` demands, and with `[chain]` on the root's
    /// `key_manager_image_hash` when set). Asked every 5-10 s; keys are kept while it is
    /// unreachable until they expire. Requests sealed to a key the proxy does not hold get
    /// error 602 "unknown public key". Empty: no key manager, so every sealed request is
    /// refused. Default: empty.
    pub key_manager: String,
    /// `[receipts]`: the log of countersigned receipts and its anchoring periods.
    pub receipts: ReceiptsConfig,
}

/// The receipt log (`[receipts]`): every countersigned receipt's id joins the current period;
/// at its end the period's Merkle root is kept and, with `[chain]` on, sent to the proxy
/// contract in a save-state marker (docs/PRIVACY.md, "Receipts").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptsConfig {
    /// Length of an anchoring period. Default: 10m.
    #[serde(with = "humantime_serde")]
    pub anchor_every: Duration,
    /// Directory of the periods' files (`<start>.leaves`: 32 bytes per receipt id;
    /// `<start>.json`: root, leaves, start, end, anchoring). Default: `proxy-receipts`.
    pub dir: PathBuf,
    /// Receipt ids one period may hold; further ones are not logged (counted). Default:
    /// 1 000 000.
    pub max_leaves_per_period: u32,
    /// Closed periods kept (the oldest are deleted; proofs of their receipts are no longer
    /// served). Memory: about 80 bytes per kept id. Default: 144 (a day of 10-minute periods).
    pub keep_periods: u32,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        Self {
            anchor_every: Duration::from_secs(600),
            dir: PathBuf::from("proxy-receipts"),
            max_leaves_per_period: 1_000_000,
            keep_periods: 144,
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            worker_listen: SocketAddr::from(([127, 0, 0, 1], 11001)),
            client_listen: SocketAddr::from(([127, 0, 0, 1], 11002)),
            stats_listen: SocketAddr::from(([127, 0, 0, 1], 11000)),
            owner_address: String::new(),
            pow_difficulty: cocoon_proto::pow::DEFAULT_DIFFICULTY,
            handshake_timeout: Duration::from_secs(30),
            max_pending_handshakes: 64,
            client_auth_timeout: Duration::from_secs(90),
            accept: cocoon_node::net::AcceptLimits::default(),
            peer_queue_bytes: crate::outbox::OUTBOX_CAP,
            default_client_credit: 100_000_000,
            max_requests_per_client: 1000,
            max_request_timeout: Duration::from_secs(3600),
            min_request_timeout: Duration::from_secs(5),
            default_max_tokens: 1000,
            allowed_models: Vec::new(),
            clients: Vec::new(),
            allowed_worker_images: Vec::new(),
            client_peer_policy: PeerPolicyChoice::Any,
            pricing: PricingConfig::default(),
            attestation: AttestationConfig {
                evidence: EvidenceChoice::Tdx,
                peer_policy: PeerPolicyChoice::Tdx,
                ..AttestationConfig::default()
            },
            chain: ChainConfig::default(),
            payment_key_file: PathBuf::from("proxy-payment.key"),
            ledger_path: PathBuf::from("proxy-ledger.sqlite"),
            anchor_interval: Duration::from_secs(30),
            min_client_charge_nanoton: 1_000_000_000,
            min_worker_payout_nanoton: 10_000_000_000,
            min_owner_withdraw_nanoton: 10_000_000_000,
            onchain_attach_nanoton: 300_000_000,
            admin_token: String::new(),
            stats_token: String::new(),
            key_manager: String::new(),
            receipts: ReceiptsConfig::default(),
        }
    }
}

impl ProxyConfig {
    /// The key manager's `host:port`, `None` when there is none.
    pub fn key_manager_address(&self) -> Option<&str> {
        let a = self.key_manager.trim();
        (!a.is_empty()).then_some(a)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(a) = self.key_manager_address() {
            let port = a
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse::<u16>().ok());
            if port.is_none_or(|p| p == 0) {
                return Err(ConfigError::Invalid(format!(
                    "proxy: key_manager {a:?} is not \"host:port\""
                )));
            }
        }
        cocoon_node::net::parse_image_allowlist(
            "proxy: allowed_worker_images",
            &self.allowed_worker_images,
        )?;
        for c in &self.clients {
            let ok = c.secret_sha256.len() == 64 && hex::decode(&c.secret_sha256).is_ok();
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "proxy: clients[{}].secret_sha256 must be 64 hex digits",
                    c.owner_address
                )));
            }
        }
        if self.pow_difficulty > cocoon_proto::pow::MAX_ACCEPTED_DIFFICULTY {
            return Err(ConfigError::Invalid(format!(
                "proxy: pow_difficulty {} is above what clients accept ({})",
                self.pow_difficulty,
                cocoon_proto::pow::MAX_ACCEPTED_DIFFICULTY
            )));
        }
        self.chain
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("proxy: {e}")))?;
        if self.chain.enabled()
            && (self.anchor_interval < Duration::from_millis(100)
                || self.anchor_interval > Duration::from_secs(3600))
        {
            return Err(ConfigError::Invalid(
                "proxy: anchor_interval must be between 100ms and 1h".into(),
            ));
        }
        if !self.attestation.is_test() && self.owner_address.is_empty() {
            return Err(ConfigError::Invalid(
                "proxy: `owner_address` is required outside dev/test networks".into(),
            ));
        }
        if self.stats_token.is_empty() && !self.stats_listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "proxy: stats_listen {} is not a loopback address: set stats_token (the stats \
                 pages list every client owner and its usage)",
                self.stats_listen
            )));
        }
        if self.peer_queue_bytes < 64 << 10 {
            return Err(ConfigError::Invalid(
                "proxy: peer_queue_bytes must be at least 64 KiB".into(),
            ));
        }
        if self.client_auth_timeout.is_zero()
            || self.client_auth_timeout > Duration::from_secs(3600)
        {
            return Err(ConfigError::Invalid(
                "proxy: client_auth_timeout must be above 0 and at most 1h".into(),
            ));
        }
        if self.min_request_timeout > self.max_request_timeout {
            return Err(ConfigError::Invalid(
                "proxy: min_request_timeout must be at most max_request_timeout".into(),
            ));
        }
        self.check_attestation()?;
        self.pricing.validate()
    }

    /// Outside dev/test networks, refuses every attestation choice that accepts or presents
    /// forgeable or no evidence where evidence protects clients: workers receive client prompts.
    /// (`client_peer_policy = "any"` stays: clients run outside TEEs.)
    fn check_attestation(&self) -> Result<(), ConfigError> {
        let client_software = !self.attestation.is_test()
            && self.client_peer_policy == PeerPolicyChoice::InsecureSoftware;
        let what = self
            .attestation
            .forgeable_choice("workers (client prompts go to them)")
            .or_else(|| client_software.then(|| "client_peer_policy = \"fake_tee\"".to_string()));
        match what {
            Some(what) => Err(ConfigError::Invalid(format!(
                "proxy: {what} is only allowed on dev/test networks ([attestation] network)"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_clients_parse() {
        let cfg: ProxyConfig = toml::from_str(
            "[[clients]]\nowner_address = \"a\"\nsecret_sha256 = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n",
        )
        .expect("parse");
        assert_eq!(cfg.pow_difficulty, 20);
        assert_eq!(cfg.clients.len(), 1);
        let mut cfg = cfg;
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        assert!(cfg.validate().is_ok());
        cfg.clients[0].secret_sha256 = "zz".into();
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn unattested_or_forgeable_workers_are_refused_outside_dev_and_test() {
        let main = ProxyConfig {
            owner_address: "owner".into(),
            ..ProxyConfig::default()
        };
        assert!(main.validate().is_ok(), "tdx on main is fine");
        let refused = |edit: &dyn Fn(&mut ProxyConfig)| {
            let mut cfg = main.clone();
            edit(&mut cfg);
            let e = cfg.validate().expect_err("must be refused on main");
            assert!(e.to_string().contains("dev/test"), "{e}");
            // The same choice is fine on a dev or test network.
            for network in [
                cocoon_attest::NetworkKind::Dev,
                cocoon_attest::NetworkKind::Test,
            ] {
                cfg.attestation.network = network;
                assert!(cfg.validate().is_ok(), "{network:?}");
            }
        };
        refused(&|c| c.attestation.peer_policy = PeerPolicyChoice::Any);
        refused(&|c| c.attestation.peer_policy = PeerPolicyChoice::InsecureSoftware);
        refused(&|c| c.attestation.evidence = EvidenceChoice::InsecureSoftware);
        refused(&|c| c.client_peer_policy = PeerPolicyChoice::InsecureSoftware);
        // Clients run outside TEEs: accepting them without evidence stays allowed.
        let mut cfg = main.clone();
        cfg.client_peer_policy = PeerPolicyChoice::Any;
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn client_auth_timeout_must_be_positive() {
        let mut cfg = ProxyConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        assert_eq!(cfg.client_auth_timeout, Duration::from_secs(90));
        cfg.client_auth_timeout = Duration::ZERO;
        assert!(cfg.validate().is_err());
        let cfg: ProxyConfig = toml::from_str("client_auth_timeout = \"5s\"").expect("parse");
        assert_eq!(cfg.client_auth_timeout, Duration::from_secs(5));
    }

    #[test]
    fn request_timeout_bounds_must_be_ordered() {
        let mut cfg = ProxyConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        assert_eq!(cfg.min_request_timeout, Duration::from_secs(5));
        assert_eq!(cfg.default_max_tokens, 1000);
        cfg.min_request_timeout = Duration::from_secs(7200);
        assert!(cfg.validate().is_err());
        cfg.min_request_timeout = Duration::ZERO;
        assert!(cfg.validate().is_ok());
        let cfg: ProxyConfig =
            toml::from_str("min_request_timeout = \"2s\"\ndefault_max_tokens = 4096")
                .expect("parse");
        assert_eq!(cfg.min_request_timeout, Duration::from_secs(2));
        assert_eq!(cfg.default_max_tokens, 4096);
    }

    #[test]
    fn the_key_manager_is_host_and_port_or_nothing() {
        let mut cfg = ProxyConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        assert_eq!(cfg.key_manager_address(), None);
        for ok in ["127.0.0.1:13001", "km.example:13001", " [::1]:13001 "] {
            cfg.key_manager = ok.into();
            assert!(cfg.validate().is_ok(), "{ok}");
            assert!(cfg.key_manager_address().is_some());
        }
        for bad in ["127.0.0.1", ":13001", "host:port", "host:0", "host:70000"] {
            cfg.key_manager = bad.into();
            assert!(cfg.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_key_is_documented() {
        // Regenerate with `python3 scripts/gen-config-docs.py` after changing the struct.
        let doc = include_str!("../../../docs/CONFIGURATION.md");
        let v = toml::Value::try_from(ProxyConfig::default()).expect("serialize");
        for key in v.as_table().expect("table").keys() {
            let shown = format!("`{key}`");
            assert!(
                doc.contains(&shown),
                "{shown} is missing from docs/CONFIGURATION.md"
            );
        }
    }
}
