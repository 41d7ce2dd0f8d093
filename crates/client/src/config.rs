//! The client's TOML config (`client.toml`): every key documented with its default.

use std::net::SocketAddr;
use std::time::Duration;

use cocoon_node::{AttestationConfig, ConfigError, EvidenceChoice, PeerPolicyChoice};
use cocoon_onchain::ChainConfig;
use serde::{Deserialize, Serialize};

/// The client's whole config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// OpenAI-compatible HTTP API (and `/stats`, `/jsonstats`, `/metrics`). Default:
    /// `127.0.0.1:10000`. Binding anything but loopback requires `bearer_token`.
    pub http_listen: SocketAddr,
    /// If set, every HTTP request must carry `Authorization: Bearer <token>`. Default: none.
    pub bearer_token: Option<String>,
    /// Proxies to use, as `host:port` of their client port. Default: `["127.0.0.1:11002"]`.
    pub proxies: Vec<String>,
    /// This client's owner address, presented to proxies. Default: empty.
    pub owner_address: String,
    /// The secret string for short auth with proxies (they store its SHA-256). Default: empty.
    pub secret: String,
    /// Tokens reserved for a request without `max_tokens` (workers cap generation at the same
    /// default). Default: 1000.
    pub default_max_tokens: u64,
    /// Highest worker coefficient paid when a request has no `max_coefficient`
    /// (1000 = 1.0×). Default: 4000.
    pub default_max_coefficient: u32,
    /// Request timeout when a request has no `timeout`. Default: 120s.
    #[serde(with = "humantime_serde")]
    pub default_timeout: Duration,
    /// Longest `timeout` a request may ask for. Default: 1h.
    #[serde(with = "humantime_serde")]
    pub max_timeout: Duration,
    /// Largest request body accepted, in bytes. Default: 4 MiB.
    pub max_body_bytes: usize,
    /// Deadline for `/v1/models` discovery queries. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub models_timeout: Duration,
    /// Highest proof-of-work difficulty accepted from a proxy. Default: 28.
    pub max_pow_difficulty: u32,
    /// TCP connect timeout. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on the TLS and protocol handshakes. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Hex SHA-256 image hashes proxies must be attested with; empty = any image the TLS
    /// policy accepts. Default: empty. (The root contract's list replaces this.)
    pub allowed_proxy_images: Vec<String>,
    /// With payments on: how many stakes (`min_client_stake` of the root) to deposit when this
    /// client first deploys its contract at a proxy; later top-ups add one stake each. Default: 1.
    pub top_up_stakes: u32,
    /// Token for `POST /admin/<action>` on the HTTP port (`Authorization: Bearer <token>`);
    /// empty = admin endpoints off. Default: empty.
    pub admin_token: String,
    /// `[attestation]`: evidence presented (clients: `none`) and demanded of proxies.
    pub attestation: AttestationConfig,
    /// `[chain]`: TON endpoint, root contract and wallet. With `api_url` set, payments are on:
    /// the wallet's address is this client's owner (`owner_address` must be empty or equal), its
    /// client contract at each proxy is deployed, funded and topped up from the wallet, and
    /// `secret` must be set. Default: off.
    pub chain: ChainConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 10000)),
            bearer_token: None,
            proxies: vec!["127.0.0.1:11002".into()],
            owner_address: String::new(),
            secret: String::new(),
            default_max_tokens: 1000,
            default_max_coefficient: 4000,
            default_timeout: Duration::from_secs(120),
            max_timeout: Duration::from_secs(3600),
            max_body_bytes: 4 << 20,
            models_timeout: Duration::from_secs(10),
            max_pow_difficulty: 28,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            allowed_proxy_images: Vec::new(),
            attestation: AttestationConfig {
                evidence: EvidenceChoice::None,
                peer_policy: PeerPolicyChoice::Tdx,
                ..AttestationConfig::default()
            },
            top_up_stakes: 1,
            admin_token: String::new(),
            chain: ChainConfig::default(),
        }
    }
}

impl ClientConfig {
    /// Checks values that parse but make no sense or are unsafe.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.proxies.is_empty() {
            return Err(ConfigError::Invalid("client: `proxies` is empty".into()));
        }
        if !self.http_listen.ip().is_loopback()
            && self.bearer_token.as_deref().is_none_or(str::is_empty)
        {
            return Err(ConfigError::Invalid(format!(
                "client: http_listen {} is not loopback; set `bearer_token` so strangers cannot \
                 spend this client's money",
                self.http_listen
            )));
        }
        if self.chain.enabled() {
            self.chain
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("client: {e}")))?;
            if self.secret.is_empty() {
                return Err(ConfigError::Invalid(
                    "client: with [chain] on, `secret` must be set (proxies know us by its SHA-256)"
                        .into(),
                ));
            }
            if self.top_up_stakes == 0 || self.top_up_stakes > 1000 {
                return Err(ConfigError::Invalid(
                    "client: `top_up_stakes` must be between 1 and 1000".into(),
                ));
            }
        }
        if self.attestation.peer_policy == PeerPolicyChoice::Any && !self.attestation.is_test() {
            return Err(ConfigError::Invalid(
                "client: peer_policy = \"any\" would send prompts to unattested proxies; only \
                 allowed on dev/test networks"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_token() {
        let mut cfg = ClientConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        cfg.http_listen = "0.0.0.0:10000".parse().expect("addr");
        assert!(cfg.validate().is_err());
        cfg.bearer_token = Some("t".into());
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn strict_by_default() {
        let cfg: ClientConfig = toml::from_str("").expect("parse");
        assert_eq!(cfg.attestation.peer_policy, PeerPolicyChoice::Tdx);
        let mut any = cfg.clone();
        any.attestation.peer_policy = PeerPolicyChoice::Any;
        assert!(
            any.validate().is_err(),
            "unattested proxies on main must be refused"
        );
    }

    #[test]
    fn chain_on_needs_a_valid_root_and_a_secret() {
        let mut cfg = ClientConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        assert!(cfg.validate().is_ok(), "payments off by default");
        cfg.chain.api_url = "http://127.0.0.1:8081".into();
        cfg.chain.root_address = format!("0:{}", "11".repeat(32));
        assert!(
            cfg.validate().is_err(),
            "an empty secret is public knowledge"
        );
        cfg.secret = "s3cret-s3cret".into();
        assert!(cfg.validate().is_ok());
        cfg.top_up_stakes = 0;
        assert!(cfg.validate().is_err());
        cfg.top_up_stakes = 1;
        cfg.chain.root_address = "nope".into();
        assert!(cfg.validate().is_err());
        // The [chain] table round-trips through TOML after the other keys.
        let text = toml::to_string(&ClientConfig::default()).expect("serialize");
        let back: ClientConfig = toml::from_str(&text).expect("parse");
        assert_eq!(back.chain, ClientConfig::default().chain);
        assert_eq!(back.top_up_stakes, 1);
    }

    #[test]
    fn every_key_is_documented() {
        // Regenerate with `python3 scripts/gen-config-docs.py` after changing the struct.
        let doc = include_str!("../../../docs/CONFIGURATION.md");
        let v = toml::Value::try_from(ClientConfig::default()).expect("serialize");
        for key in v.as_table().expect("table").keys() {
            let shown = format!("`{key}`");
            assert!(
                doc.contains(&shown),
                "{shown} is missing from docs/CONFIGURATION.md"
            );
        }
    }
}
