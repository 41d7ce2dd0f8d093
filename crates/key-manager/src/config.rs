//! The key manager's TOML config (`key-manager.toml`): every key documented with its default.
//!
//! Only parsing and validation live here; the schedule itself is [`crate::core`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cocoon_node::net::AcceptLimits;
use cocoon_node::{AttestationConfig, ConfigError, EvidenceChoice, PeerPolicyChoice};
use cocoon_onchain::ChainConfig;
use serde::{Deserialize, Serialize};

/// The key manager's whole config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyManagerConfig {
    /// Where proxies and workers connect (PoW + RA-TLS, like the proxy's ports); what the root's
    /// `key_manager_address` and the proxies' `key_manager` name. Default: `127.0.0.1:13001`.
    pub rpc_listen: SocketAddr,
    /// Where `/stats`, `/jsonstats` and `/metrics` are served. Default: `127.0.0.1:13000`.
    pub stats_listen: SocketAddr,
    /// Bearer token the stats pages require. Empty: none, and then `stats_listen` must be a
    /// loopback address. The pages show public keys and expiries only, never a private key.
    /// Default: empty.
    pub stats_token: String,
    /// Directory of the key manager's state, created (mode 0700) on first start:
    /// `network-keys.json` (the network keys' private halves, mode 0600, replaced atomically)
    /// and `identity.key` (the Ed25519 seed that signs key announcements to the root, mode 0600).
    /// Default: `key-manager`.
    pub data_dir: PathBuf,
    /// How often a new network key is generated. Default: 1h (upstream's).
    #[serde(with = "humantime_serde")]
    pub rotate_every: Duration,
    /// How long each network key is valid (served, and registered on the root until then).
    /// Must be longer than `rotate_every`, so that keys overlap. Default: 24h (upstream's).
    #[serde(with = "humantime_serde")]
    pub key_lifetime: Duration,
    /// Also serve upstream COCOON's fixed test key (public
    /// `fb67d0fcd338f20e0d4957d9e82adc101d2e3513a448a3ab46052ee1b88c5818`, valid until
    /// 2000000000), so that apps using upstream's test encryption work against this network.
    /// Its private key is public knowledge: refused outside dev/test networks. Upstream's
    /// `add_default_key`. Default: false.
    pub add_default_key: bool,
    /// Proxy image hashes allowed to fetch keys (`keyManager.getProxyPrivateKeys`) when the
    /// chain is off: hex SHA-256, or `tdx@<hex>` / `sev@<hex>` for one TEE family; empty = any
    /// proxy the TLS policy (`[attestation] peer_policy`) accepts. With `[chain]` on, the
    /// root's proxy hashes decide, and this list (when set) must match too. Default: empty.
    pub allowed_proxy_images: Vec<String>,
    /// Worker image hashes allowed to fetch keys (`keyManager.getWorkerPrivateKeys`), as
    /// `allowed_proxy_images`; with `[chain]` on, the root's worker hashes decide. Default: empty.
    pub allowed_worker_images: Vec<String>,
    /// Proof-of-work difficulty demanded before TLS, in leading zero bits. Default: 20.
    pub pow_difficulty: u32,
    /// Bound on PoW + TLS + session setup per connection (the time a stranger has to
    /// authenticate). A session whose peer is allowed to fetch no keys at all is also closed
    /// this long after its handshake (or at its first query, which is refused). Default: 30s
    /// (the proxy's: it covers solving the PoW on a busy machine).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; at the limit a new connection sheds the oldest one that
    /// has not answered its proof of work. Default: 64.
    pub max_pending_handshakes: usize,
    /// Sessions open at once, from all sources; a connection beyond that is closed at once.
    /// Default: 1024.
    pub max_sessions: usize,
    /// Key queries one session may send per minute (proxies ask every 5-10 s, workers every
    /// 60-120 s); a session that sends more is answered with an error and closed. Default: 30.
    pub max_queries_per_minute: u32,
    /// `[accept]`: the proof-of-work deadline and what one source address may hold (sessions,
    /// pending handshakes), as on the proxy's ports.
    pub accept: AcceptLimits,
    /// `[attestation]`: this key manager's evidence, and what proxies and workers must present
    /// (`peer_policy`). Default: `tdx` for both.
    pub attestation: AttestationConfig,
    /// `[chain]`: with an `api_url`, peers' images are checked against the root's registry and
    /// every new key is announced to the root (signed with `identity.key`, whose public key the
    /// root must list: `cocoon root set-key-manager`), paid from this wallet. Empty: no
    /// announcements, config allowlists only.
    pub chain: ChainConfig,
    /// nanoTON attached to each key announcement (the root returns what it does not spend).
    /// Default: 200 000 000.
    pub announce_attach_nanoton: u64,
    /// How long an announced key may take to show on the root before it is sent again.
    /// Default: 60s.
    #[serde(with = "humantime_serde")]
    pub announce_retry: Duration,
}

impl Default for KeyManagerConfig {
    fn default() -> Self {
        Self {
            rpc_listen: SocketAddr::from(([127, 0, 0, 1], 13001)),
            stats_listen: SocketAddr::from(([127, 0, 0, 1], 13000)),
            stats_token: String::new(),
            data_dir: PathBuf::from("key-manager"),
            rotate_every: Duration::from_secs(3600),
            key_lifetime: Duration::from_secs(86_400),
            add_default_key: false,
            allowed_proxy_images: Vec::new(),
            allowed_worker_images: Vec::new(),
            pow_difficulty: cocoon_proto::pow::DEFAULT_DIFFICULTY,
            handshake_timeout: Duration::from_secs(30),
            max_pending_handshakes: 64,
            max_sessions: 1024,
            max_queries_per_minute: 30,
            accept: AcceptLimits::default(),
            attestation: AttestationConfig {
                evidence: EvidenceChoice::Tdx,
                peer_policy: PeerPolicyChoice::Tdx,
                ..AttestationConfig::default()
            },
            chain: ChainConfig::default(),
            announce_attach_nanoton: 200_000_000,
            announce_retry: Duration::from_secs(60),
        }
    }
}

/// Longest `key_lifetime` accepted: keys are announced with a 32-bit expiry and served with a
/// signed 32-bit one.
pub const MAX_KEY_LIFETIME: Duration = Duration::from_secs(366 * 86_400);

/// Most keys alive at once (`key_lifetime / rotate_every`).
pub const MAX_LIVE_KEYS: u64 = 1000;

impl KeyManagerConfig {
    /// Checks values that parse but make no sense, and refuses the test key and forgeable
    /// attestation outside dev/test networks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(format!("key manager: {m}")));
        cocoon_node::net::parse_image_allowlist(
            "key manager: allowed_proxy_images",
            &self.allowed_proxy_images,
        )?;
        cocoon_node::net::parse_image_allowlist(
            "key manager: allowed_worker_images",
            &self.allowed_worker_images,
        )?;
        if self.rotate_every < Duration::from_secs(1) {
            return invalid("rotate_every must be at least 1s".into());
        }
        if self.key_lifetime <= self.rotate_every {
            return invalid(
                "key_lifetime must be longer than rotate_every (keys must overlap)".into(),
            );
        }
        if self.key_lifetime > MAX_KEY_LIFETIME {
            return invalid("key_lifetime must be at most 366 days".into());
        }
        if self.key_lifetime.as_secs() / self.rotate_every.as_secs().max(1) > MAX_LIVE_KEYS {
            return invalid(format!(
                "key_lifetime / rotate_every must be at most {MAX_LIVE_KEYS} keys"
            ));
        }
        if self.add_default_key && !self.attestation.is_test() {
            return invalid(
                "add_default_key serves a key whose private half is public: only allowed on \
                 dev/test networks ([attestation] network)"
                    .into(),
            );
        }
        if self.pow_difficulty > cocoon_proto::pow::MAX_ACCEPTED_DIFFICULTY {
            return invalid(format!(
                "pow_difficulty {} is above what dialers accept ({})",
                self.pow_difficulty,
                cocoon_proto::pow::MAX_ACCEPTED_DIFFICULTY
            ));
        }
        if self.handshake_timeout.is_zero() || self.handshake_timeout > Duration::from_secs(300) {
            return invalid("handshake_timeout must be above 0 and at most 5m".into());
        }
        if self.max_sessions == 0 || self.max_pending_handshakes == 0 {
            return invalid("max_sessions and max_pending_handshakes must be at least 1".into());
        }
        if self.max_queries_per_minute == 0 {
            return invalid("max_queries_per_minute must be at least 1".into());
        }
        if self.stats_token.is_empty() && !self.stats_listen.ip().is_loopback() {
            return invalid(format!(
                "stats_listen {} is not a loopback address: set stats_token",
                self.stats_listen
            ));
        }
        if self.announce_retry < Duration::from_secs(1) {
            return invalid("announce_retry must be at least 1s".into());
        }
        self.chain
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("key manager: {e}")))?;
        // Proxies and workers hand the keys to whatever attested them: the key manager must
        // demand hardware evidence of them, and present its own, outside dev/test.
        if let Some(what) = self
            .attestation
            .forgeable_choice("proxies and workers (they receive the network's private keys)")
        {
            return invalid(format!(
                "{what} is only allowed on dev/test networks ([attestation] network)"
            ));
        }
        Ok(())
    }

    /// The file holding the network keys.
    pub fn keys_file(&self) -> PathBuf {
        self.data_dir.join(crate::store::KEYS_FILE)
    }

    /// The file holding the identity seed that signs announcements.
    pub fn identity_file(&self) -> PathBuf {
        self.data_dir.join(crate::store::IDENTITY_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> KeyManagerConfig {
        let mut cfg = KeyManagerConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        cfg
    }

    #[test]
    fn defaults_are_upstreams_schedule_and_validate() {
        let cfg: KeyManagerConfig = toml::from_str("").expect("parse");
        assert_eq!(cfg.rotate_every, Duration::from_secs(3600));
        assert_eq!(cfg.key_lifetime, Duration::from_secs(86_400));
        assert!(!cfg.add_default_key);
        assert!(cfg.validate().is_ok(), "tdx on main is fine");
        let cfg: KeyManagerConfig =
            toml::from_str("rotate_every = \"10m\"\nkey_lifetime = \"2h\"").expect("parse");
        assert_eq!(cfg.rotate_every, Duration::from_secs(600));
        assert!(toml::from_str::<KeyManagerConfig>("no_such_key = 1").is_err());
    }

    #[test]
    fn the_test_key_is_refused_outside_dev_and_test() {
        let mut cfg = KeyManagerConfig {
            add_default_key: true,
            ..KeyManagerConfig::default()
        };
        let e = cfg.validate().expect_err("main");
        assert!(e.to_string().contains("add_default_key"), "{e}");
        for network in [
            cocoon_attest::NetworkKind::Dev,
            cocoon_attest::NetworkKind::Test,
        ] {
            cfg.attestation.network = network;
            assert!(cfg.validate().is_ok(), "{network:?}");
        }
    }

    #[test]
    fn forgeable_attestation_is_refused_on_main() {
        for edit in [
            (|c: &mut KeyManagerConfig| c.attestation.peer_policy = PeerPolicyChoice::Any)
                as fn(&mut KeyManagerConfig),
            |c| c.attestation.peer_policy = PeerPolicyChoice::InsecureSoftware,
            |c| c.attestation.evidence = EvidenceChoice::InsecureSoftware,
        ] {
            let mut cfg = KeyManagerConfig::default();
            edit(&mut cfg);
            let e = cfg.validate().expect_err("main");
            assert!(e.to_string().contains("dev/test"), "{e}");
            cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
            assert!(cfg.validate().is_ok());
        }
    }

    #[test]
    fn nonsense_values_are_refused() {
        let bad: [fn(&mut KeyManagerConfig); 8] = [
            |c| c.key_lifetime = c.rotate_every,
            |c| c.rotate_every = Duration::ZERO,
            |c| c.key_lifetime = Duration::from_secs(400 * 86_400),
            |c| {
                c.rotate_every = Duration::from_secs(1);
                c.key_lifetime = Duration::from_secs(5000);
            },
            |c| c.allowed_proxy_images = vec!["not hex".into()],
            |c| c.stats_listen = "0.0.0.0:13000".parse().expect("addr"),
            |c| c.max_queries_per_minute = 0,
            |c| c.pow_difficulty = 40,
        ];
        for (i, edit) in bad.iter().enumerate() {
            let mut cfg = dev();
            edit(&mut cfg);
            assert!(cfg.validate().is_err(), "case {i} accepted");
        }
        let mut cfg = dev();
        cfg.stats_listen = "0.0.0.0:13000".parse().expect("addr");
        cfg.stats_token = "t0ken".into();
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn every_key_is_documented() {
        // Regenerate with `python3 scripts/gen-config-docs.py` after changing the struct.
        let doc = include_str!("../../../docs/CONFIGURATION.md");
        let v = toml::Value::try_from(KeyManagerConfig::default()).expect("serialize");
        for key in v.as_table().expect("table").keys() {
            let shown = format!("`{key}`");
            assert!(
                doc.contains(&shown),
                "{shown} is missing from docs/CONFIGURATION.md"
            );
        }
    }
}
