//! The client's TOML config (`client.toml`): every key documented with its default.

use std::net::SocketAddr;
use std::time::Duration;

use cocoon_node::discovery::DiscoveryConfig;
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
    /// If set, every HTTP request must carry `Authorization: Bearer <token>` (with API keys on,
    /// a valid key instead also passes on the API, docs/KEYS.md); this token has full,
    /// unlimited access. Default: none.
    pub bearer_token: Option<String>,
    /// Extra `Host` header values (`name` or `name:port`, as the Host header shows them)
    /// accepted on the HTTP port, e.g. behind a reverse proxy. Without them only the bound
    /// address and loopback names with the bound port (any IP with the bound port when bound to
    /// `0.0.0.0`) are accepted, which stops DNS rebinding. Default: empty.
    pub allowed_hosts: Vec<String>,
    /// Extra web origins (`scheme://host[:port]`) whose requests are accepted; any other
    /// `Origin` but the client's own is refused (cross-site requests from web pages). The client
    /// sends no CORS headers, so this is for reverse proxies or tools that forward a browser's
    /// `Origin`, not for pages calling the API directly. Default: empty.
    pub allowed_origins: Vec<String>,
    /// Proxies to use, as `host:port` of their client port, all kept linked (requests go
    /// round-robin over the ready ones). Not used with `proxy_discovery.source = "root"`.
    /// Default: `["127.0.0.1:11002"]`.
    pub proxies: Vec<String>,
    /// This client's owner address, presented to proxies. Default: empty.
    pub owner_address: String,
    /// The secret string for short auth with proxies. Without `[chain]` it is sent as is to
    /// every proxy, whose `[[clients]]` entry holds its SHA-256. With `[chain]` each proxy gets
    /// its own secret derived from this one (`hex(HMAC-SHA256(secret, proxy contract raw
    /// address))`, whose SHA-256 goes on our client contract there), so one proxy cannot
    /// authorize as us at another; the secret must then be at least 32 characters with at
    /// least 8 different ones (e.g. `openssl rand -hex 16`, 128 bits; `cocoon dev` writes 24
    /// random bytes as hex). Default: empty.
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
    /// Image hashes proxies must be attested with: hex SHA-256, or Cocoon's `tdx@<hex>` /
    /// `sev@<hex>`, which match only that TEE family; empty = any image the TLS policy accepts.
    /// Default: empty. (The root contract's list replaces this.)
    pub allowed_proxy_images: Vec<String>,
    /// With payments on: how many stakes (`min_client_stake` of the root) to deposit when this
    /// client first deploys its contract at a proxy; later top-ups add one stake each. Default: 1.
    pub top_up_stakes: u32,
    /// Token for `POST /admin/<action>` on the HTTP port (`Authorization: Bearer <token>`);
    /// empty = admin endpoints off (the `/admin/keys/*` ones then take `bearer_token`). With
    /// API keys on it also passes the API and stats like `bearer_token`. Default: empty.
    pub admin_token: String,
    /// `[proxy_discovery]`: the `proxies` list (`static`, the default) or the proxies
    /// registered in the root contract (`root`, needs `[chain]`): how many, and when to move on.
    pub proxy_discovery: DiscoveryConfig,
    /// `[attestation]`: evidence presented (clients: `none`) and demanded of proxies.
    pub attestation: AttestationConfig,
    /// `[privacy]`: whether requests are sealed to attested workers so the proxy cannot read
    /// them (docs/PRIVACY.md), to how many, padding, worker images, receipts.
    pub privacy: PrivacyConfig,
    /// `[keys]`: per-app API keys with model lists, budgets and rate limits (docs/KEYS.md).
    pub keys: KeysConfig,
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
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
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
            proxy_discovery: DiscoveryConfig::default(),
            privacy: PrivacyConfig::default(),
            keys: KeysConfig::default(),
            chain: ChainConfig::default(),
        }
    }
}

/// Per-app API keys (`[keys]`, docs/KEYS.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// SQLite file holding the API keys (created if missing; `cocoon client keys` edits it,
    /// the running client reloads within a second). Relative paths are from the working
    /// directory. Empty = API keys off. Once the file holds a key, every API request must
    /// carry `bearer_token` (or `admin_token`) or a valid key. Default:
    /// `cocoon-client-keys.sqlite`.
    pub db: String,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            db: "cocoon-client-keys.sqlite".into(),
        }
    }
}

/// When requests are sealed (`[privacy] sealed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealedMode {
    /// Every request is sealed to attested workers, or refused (503 `sealing_unavailable`):
    /// nothing the proxy could read ever leaves the client.
    Required,
    /// Sealed when the proxy offers attested workers with sealing keys for the model; otherwise
    /// sent as Cocoon sends it, readable by the proxy. The app sees which (`X-Cocoon-Path`).
    Preferred,
    /// Never sealed (Cocoon's path only).
    Off,
}

/// `[privacy]`: the sealed path (docs/PRIVACY.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// `required`, `preferred` or `off` ([`SealedMode`]). Default: `required` when
    /// `attestation.network = "main"`, `preferred` on dev and test networks.
    pub sealed: Option<SealedMode>,
    /// How many verified candidate workers each request is sealed to (the proxy picks one of
    /// them by load): 1 to 8. Default: 3.
    pub recipients: usize,
    /// Pad sealed requests and answer parts to power-of-two sizes (at most 2× the bytes), so
    /// sizes say less about prompts and answers. Default: on for the main network, off on
    /// dev and test networks.
    pub pad: Option<bool>,
    /// Image hashes workers must be attested with for a request to be sealed to them (hex, or
    /// `tdx@<hex>` / `sev@<hex>`), when `[chain]` is off; empty = any image the attestation
    /// policy (`attestation.peer_policy`) accepts. With `[chain]` on, the root's worker image
    /// and model lists decide. Default: empty.
    pub allowed_worker_images: Vec<String>,
    /// How long a verified worker certificate is trusted before it is checked again (never
    /// past its own expiry). Default: 10m.
    #[serde(with = "humantime_serde")]
    pub verdict_ttl: Duration,
    /// Directory where verified receipts are kept (one JSON file each; created if missing).
    /// Empty = kept in memory only. Default: `cocoon-client-receipts`.
    pub receipts_dir: String,
    /// Most receipts kept; the oldest go first. Default: 10000.
    pub max_receipts: usize,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            sealed: None,
            recipients: 3,
            pad: None,
            allowed_worker_images: Vec::new(),
            verdict_ttl: Duration::from_secs(600),
            receipts_dir: "cocoon-client-receipts".into(),
            max_receipts: 10_000,
        }
    }
}

impl PrivacyConfig {
    /// The sealing mode in force on a main (`is_test = false`) or test network.
    pub fn mode(&self, is_test: bool) -> SealedMode {
        self.sealed.unwrap_or(if is_test {
            SealedMode::Preferred
        } else {
            SealedMode::Required
        })
    }

    /// Whether sealed requests and answers are padded.
    pub fn padding(&self, is_test: bool) -> bool {
        self.pad.unwrap_or(!is_test)
    }
}

impl ClientConfig {
    /// Checks values that parse but make no sense or are unsafe.
    pub fn validate(&self) -> Result<(), ConfigError> {
        cocoon_node::net::parse_image_allowlist(
            "client: allowed_proxy_images",
            &self.allowed_proxy_images,
        )?;
        self.proxy_discovery
            .validate("client", self.chain.enabled())?;
        if self.proxies.is_empty() && !self.proxy_discovery.from_root() {
            return Err(ConfigError::Invalid(
                "client: `proxies` is empty (or set proxy_discovery.source = \"root\" to find \
                 proxies in the root contract)"
                    .into(),
            ));
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
        for h in &self.allowed_hosts {
            let ok = !h.contains('@') && h.parse::<axum::http::uri::Authority>().is_ok();
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "client: allowed_hosts entry {h:?} is not a `name` or `name:port`"
                )));
            }
        }
        for o in &self.allowed_origins {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            let ok = rest.is_some_and(|r| {
                let r = r.strip_suffix('/').unwrap_or(r);
                !r.contains(['/', '@']) && r.parse::<axum::http::uri::Authority>().is_ok()
            });
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "client: allowed_origins entry {o:?} is not an origin like \
                     `https://chat.example.com` (scheme, host, optional port; no path)"
                )));
            }
        }
        if self.chain.enabled() {
            self.chain
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("client: {e}")))?;
            check_secret_strength(&self.secret)?;
            if self.top_up_stakes == 0 || self.top_up_stakes > 1000 {
                return Err(ConfigError::Invalid(
                    "client: `top_up_stakes` must be between 1 and 1000".into(),
                ));
            }
        }
        cocoon_node::net::parse_image_allowlist(
            "client: privacy.allowed_worker_images",
            &self.privacy.allowed_worker_images,
        )?;
        if !(1..=cocoon_sealed::MAX_RECIPIENTS).contains(&self.privacy.recipients) {
            return Err(ConfigError::Invalid(format!(
                "client: privacy.recipients must be between 1 and {}",
                cocoon_sealed::MAX_RECIPIENTS
            )));
        }
        if self.privacy.max_receipts == 0 || self.privacy.max_receipts > 10_000_000 {
            return Err(ConfigError::Invalid(
                "client: privacy.max_receipts must be between 1 and 10000000".into(),
            ));
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

/// Fewest characters of `secret` with `[chain]` on: 32 hex digits are 128 bits.
pub const MIN_SECRET_CHARS: usize = 32;
/// Fewest different characters in it (refuses `aaaa…`-like strings of any length).
pub const MIN_SECRET_DISTINCT: usize = 8;

/// With payments on, the secret's hash is public (on the client contract) and can be attacked
/// offline: it must be long and not trivially repetitive. Nothing about it is echoed.
fn check_secret_strength(secret: &str) -> Result<(), ConfigError> {
    let chars = secret.chars().count();
    let distinct = secret
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if chars < MIN_SECRET_CHARS || distinct < MIN_SECRET_DISTINCT {
        return Err(ConfigError::Invalid(format!(
            "client: with [chain] on, `secret` must be at least {MIN_SECRET_CHARS} characters \
             with at least {MIN_SECRET_DISTINCT} different ones (it has {chars} and {distinct}); \
             its hash is public on each client contract, so a short one can be guessed offline. \
             Generate one, e.g. `openssl rand -hex 16`"
        )));
    }
    Ok(())
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
    fn allowed_hosts_and_origins_must_parse() {
        let mut cfg = ClientConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        cfg.allowed_hosts = vec!["gpu-box.lan:10000".into(), "gpu-box.lan".into()];
        cfg.allowed_origins = vec![
            "https://chat.example.com".into(),
            "http://[::1]:3000/".into(),
        ];
        assert!(cfg.validate().is_ok());
        for bad in ["", "a b", "user@host", "host/path"] {
            let mut c = cfg.clone();
            c.allowed_hosts = vec![bad.into()];
            assert!(c.validate().is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "chat.example.com",
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "*",
        ] {
            let mut c = cfg.clone();
            c.allowed_origins = vec![bad.into()];
            assert!(c.validate().is_err(), "{bad:?}");
        }
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
        for weak in [
            "s3cret-s3cret",
            "0123456789abcdef0123456789abcde",
            &"ab".repeat(40),
            &"abcdefg".repeat(10),
        ] {
            cfg.secret = weak.to_string();
            let e = cfg.validate().expect_err("weak secret");
            assert!(e.to_string().contains("at least 32 characters"), "{e}");
            assert!(!e.to_string().contains(weak), "the secret is never echoed");
        }
        // 16 random bytes as hex (128 bits) is the shortest accepted shape; `cocoon dev`'s 24.
        cfg.secret = "0123456789abcdef0123456789abcdef".into();
        assert!(cfg.validate().is_ok());
        cfg.secret = hex::encode([0x5a, 0x3c, 0x91, 0x07, 0xee, 0x42, 0x18, 0xb6].repeat(3));
        assert!(cfg.validate().is_ok());
        // Without [chain] the secret is what the proxies' [[clients]] entries hash: unchanged.
        let mut off = cfg.clone();
        off.chain = ChainConfig::default();
        off.secret = "e2e-secret".into();
        assert!(off.validate().is_ok());
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
