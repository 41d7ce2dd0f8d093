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
    /// Bound on PoW + TLS + session setup per connection. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once per port. Default: 64.
    pub max_pending_handshakes: usize,
    /// Credit of a `[[clients]]` entry without `token_credit`, in adjusted tokens.
    /// Default: 100 000 000.
    pub default_client_credit: u64,
    /// Requests one client may have in flight. Default: 1000.
    pub max_requests_per_client: u32,
    /// Longest request timeout honoured. Default: 1h.
    #[serde(with = "humantime_serde")]
    pub max_request_timeout: Duration,
    /// Full model names (`name@commit:hash` or plain) workers may serve; empty = any.
    /// Default: empty. (The root contract's list replaces this with the chain layer.)
    pub allowed_models: Vec<String>,
    /// Clients allowed to connect (short auth by secret).
    pub clients: Vec<ClientEntry>,
    /// Hex SHA-256 image hashes workers must be attested with; empty = any image the TLS
    /// policy accepts. Default: empty. (The root contract's list replaces this.)
    pub allowed_worker_images: Vec<String>,
    /// Evidence demanded of clients. Default: `any` (clients run outside TEEs).
    pub client_peer_policy: PeerPolicyChoice,
    /// `[pricing]`: the network's prices.
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
            default_client_credit: 100_000_000,
            max_requests_per_client: 1000,
            max_request_timeout: Duration::from_secs(3600),
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
        }
    }
}

impl ProxyConfig {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        self.pricing.validate()
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
