//! The worker's TOML config (`worker.toml`): every key documented with its default.
//!
//! Only parsing and validation live here; building engines and sessions happens in `lib.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cocoon_node::discovery::DiscoveryConfig;
use cocoon_node::{
    AttestationConfig, ConfigError, EvidenceChoice, PeerPolicyChoice, PricingConfig,
};
use cocoon_onchain::ChainConfig;
use serde::{Deserialize, Serialize};

/// Which inference engine serves the worker's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// Deterministic in-process mock (benchmarks, tests).
    Mock,
    /// Any OpenAI-compatible HTTP server (vLLM, SGLang, llama-server, Ollama).
    Openai,
    /// The embedded llama.cpp engine serving a local GGUF file (builds with the `llama`
    /// feature, on by default in the `cocoon` binary).
    Llama,
}

/// `[engine]`: which engine, and its settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// `mock` or `openai`. Default: `openai`.
    pub kind: EngineKind,
    /// Base URL of the OpenAI-compatible upstream (kind = openai). Default: `http://127.0.0.1:8000`.
    pub url: String,
    /// Bearer token for the upstream, if it needs one. Default: none.
    pub api_key: Option<String>,
    /// Path probed for liveness (kind = openai). Default: `/v1/models`.
    pub health_path: String,
    /// Ask the upstream for usage with every streamed chunk (kind = openai;
    /// `stream_options.continuous_usage_stats`): the worker's progress reports then carry the
    /// engine's own counts instead of its estimate (prompt words + one token per chunk). vLLM
    /// accepts it; servers that refuse unknown fields (OpenAI's own API, some others) would
    /// answer every streamed request with a 400, so it is off unless the engine is known to
    /// take it. The embedded llama engine reports usage on every chunk without it.
    /// Default: false.
    pub continuous_usage_stats: bool,
    /// Llama: the GGUF file. Default: the default model in the models dir
    /// (`cocoon model fetch` puts it there).
    pub model_path: Option<std::path::PathBuf>,
    /// Llama: KV cells in total, split over the slots. Default: 4096.
    pub context_size: u32,
    /// Llama: requests generated at once (continuous batching). Default: 4.
    pub slots: u32,
    /// Llama: CPU threads; 0 = all available cores. Default: 0.
    pub threads: u32,
    /// Llama: requests waiting for a slot before new ones get a 503. Default: 64.
    pub queue: usize,
    /// Mock: completion tokens per answer. Default: 16.
    pub mock_completion_tokens: u32,
    /// Mock: tokens per streamed chunk. Default: 1.
    pub mock_chunk_tokens: u32,
    /// Mock: delay between chunks. Default: 0s.
    #[serde(with = "humantime_serde")]
    pub mock_token_delay: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            kind: EngineKind::Openai,
            url: "http://127.0.0.1:8000".into(),
            api_key: None,
            health_path: "/v1/models".into(),
            continuous_usage_stats: false,
            model_path: None,
            context_size: 4096,
            slots: 4,
            threads: 0,
            queue: 64,
            mock_completion_tokens: 16,
            mock_chunk_tokens: 1,
            mock_token_delay: Duration::ZERO,
        }
    }
}

/// The worker's whole config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Proxies to serve, as `host:port` of their worker port, all kept linked. Not used with
    /// `proxy_discovery.source = "root"`. Default: `["127.0.0.1:11001"]`.
    pub proxies: Vec<String>,
    /// TON address that receives this worker's earnings. Default: empty (dev networks only).
    pub owner_address: String,
    /// Model name advertised to proxies: a base name, optionally `name@commit:hash` (Cocoon's
    /// form; clients address the base name). Default: `mock`.
    pub model: String,
    /// Price coefficient, 1000 = 1.0× the network price. Default: 1000.
    pub coefficient: u32,
    /// Requests served at once over all proxies; beyond this, requests are refused. Default: 60.
    pub max_active_requests: u32,
    /// `max_tokens` injected when a request has none (the client reserves for the same
    /// amount). Default: 1000.
    pub default_max_tokens: u64,
    /// Largest request body accepted, in bytes. Default: 4 MiB.
    pub max_request_bytes: usize,
    /// Largest non-streamed response body buffered to add costs, in bytes. Default: 16 MiB.
    pub max_response_bytes: usize,
    /// Where `/stats`, `/jsonstats` and `/metrics` are served. Default: `127.0.0.1:12000`.
    pub stats_listen: SocketAddr,
    /// Highest proof-of-work difficulty accepted from a proxy. Default: 28.
    pub max_pow_difficulty: u32,
    /// TCP connect timeout. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on the TLS and protocol handshakes. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How often the engine's liveness is probed. Default: 2s.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Longest request deadline honoured, whatever the proxy asks. Default: 1h.
    #[serde(with = "humantime_serde")]
    pub max_request_timeout: Duration,
    /// Image hashes proxies must be attested with: hex SHA-256, or Cocoon's `tdx@<hex>` /
    /// `sev@<hex>`, which match only that TEE family; empty = any image the TLS policy accepts.
    /// Default: empty. (The root contract's list replaces this.)
    pub allowed_proxy_images: Vec<String>,
    /// Where `payments.json` (what this worker holds per proxy contract) lives. A relative path
    /// is relative to the worker's working directory. Default: `.`.
    pub data_dir: PathBuf,
    /// Cash out automatically once a proxy's signed but unpaid earnings reach this many nanoTON
    /// (`cocoon worker cashout` ignores it). Default: 1 000 000 000 (1 TON).
    pub min_cashout: u64,
    /// Bearer token for `POST /admin/*` on the stats port (`/admin/cashout`); empty = admin
    /// actions off. Default: empty.
    pub admin_token: String,
    /// Program run when a proxy's operator asks this worker to serve another model
    /// (`worker.changeModel`; `cocoon proxy change-model`), with the new model name as its only
    /// argument. Exit status 0 = switched: the worker then advertises the new name. It must
    /// switch the engine itself (restart vLLM, swap the GGUF, ...). Default: none (such requests
    /// are refused).
    pub change_model_hook: Option<PathBuf>,
    /// Longest a model change hook may run before it is killed and the change refused.
    /// Default: 10m.
    #[serde(with = "humantime_serde")]
    pub change_model_timeout: Duration,
    /// A JSON object describing this machine (GPU, memory, region, ...), shown in the proxies'
    /// stats. Sending it needs proxies at protocol 4 (upstream 9060ce5 or ours), so a worker
    /// with one refuses older proxies. Default: empty (not sent).
    pub machine_description_json: String,
    /// `[proxy_discovery]`: the `proxies` list (`static`, the default) or the proxies
    /// registered in the root contract (`root`, needs `[chain]`): how many, and when to move on.
    pub proxy_discovery: DiscoveryConfig,
    /// `[pricing]`: the prices of the cost fields and of the usage told to proxies. With
    /// `[chain]` on, the root's params are used instead (each proxy link at the params its
    /// contract was checked under) and these only serve to warn, once, where they differ.
    pub pricing: PricingConfig,
    /// `[attestation]`: evidence presented and demanded of proxies.
    pub attestation: AttestationConfig,
    /// `[engine]`: the inference engine.
    pub engine: EngineConfig,
    /// `[chain]`: payments through TON (docs/PAYMENTS.md): the worker wallet that cashes out, and
    /// the root whose params give the contract addresses. Empty `api_url`: payments off.
    pub chain: ChainConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            proxies: vec!["127.0.0.1:11001".into()],
            owner_address: String::new(),
            model: "mock".into(),
            coefficient: 1000,
            max_active_requests: 60,
            default_max_tokens: 1000,
            max_request_bytes: 4 << 20,
            max_response_bytes: 16 << 20,
            stats_listen: SocketAddr::from(([127, 0, 0, 1], 12000)),
            max_pow_difficulty: 28,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            health_interval: Duration::from_secs(2),
            max_request_timeout: Duration::from_secs(3600),
            allowed_proxy_images: Vec::new(),
            data_dir: PathBuf::from("."),
            min_cashout: 1_000_000_000,
            admin_token: String::new(),
            change_model_hook: None,
            change_model_timeout: Duration::from_secs(600),
            machine_description_json: String::new(),
            proxy_discovery: DiscoveryConfig::default(),
            pricing: PricingConfig::default(),
            attestation: AttestationConfig {
                evidence: EvidenceChoice::Tdx,
                peer_policy: PeerPolicyChoice::Tdx,
                ..AttestationConfig::default()
            },
            engine: EngineConfig::default(),
            chain: ChainConfig::default(),
        }
    }
}

impl WorkerConfig {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        cocoon_node::net::parse_image_allowlist(
            "worker: allowed_proxy_images",
            &self.allowed_proxy_images,
        )?;
        self.proxy_discovery
            .validate("worker", self.chain.enabled())?;
        if self.proxies.is_empty() && !self.proxy_discovery.from_root() {
            return Err(ConfigError::Invalid(
                "worker: `proxies` is empty (or set proxy_discovery.source = \"root\" to find \
                 proxies in the root contract)"
                    .into(),
            ));
        }
        if self.model.is_empty() {
            return Err(ConfigError::Invalid("worker: `model` is empty".into()));
        }
        if self.coefficient >= 1_000_000_000 {
            return Err(ConfigError::Invalid(
                "worker: `coefficient` must be below 1e9".into(),
            ));
        }
        if self.max_active_requests == 0 {
            return Err(ConfigError::Invalid(
                "worker: `max_active_requests` must be at least 1".into(),
            ));
        }
        // With payments on, an empty owner means the wallet's own address (docs/PAYMENTS.md).
        if !self.attestation.is_test() && self.owner_address.is_empty() && !self.chain.enabled() {
            return Err(ConfigError::Invalid(
                "worker: `owner_address` is required outside dev/test networks".into(),
            ));
        }
        if !crate::change_model::valid_model_name(&self.model) {
            return Err(ConfigError::Invalid(format!(
                "worker: `model` {:?} must be printable ASCII without spaces, at most {} bytes",
                self.model,
                crate::change_model::MAX_MODEL_NAME_BYTES
            )));
        }
        self.check_machine_description()?;
        self.check_attestation()?;
        if self.chain.enabled() {
            self.chain
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("worker: {e}")))?;
            let o = self.owner_address.trim();
            if !o.is_empty() && o.parse::<cocoon_ton::TonAddress>().is_err() {
                return Err(ConfigError::Invalid(format!(
                    "worker: `owner_address` {o:?} is not a TON address (payments are on)"
                )));
            }
        }
        self.pricing.validate()
    }

    /// `machine_description_json`: empty, or one JSON object of at most
    /// [`MAX_MACHINE_DESCRIPTION_BYTES`].
    fn check_machine_description(&self) -> Result<(), ConfigError> {
        let d = self.machine_description_json.trim();
        if d.is_empty() {
            return Ok(());
        }
        if d.len() > MAX_MACHINE_DESCRIPTION_BYTES {
            return Err(ConfigError::Invalid(format!(
                "worker: `machine_description_json` is over {MAX_MACHINE_DESCRIPTION_BYTES} bytes"
            )));
        }
        match serde_json::from_str::<serde_json::Value>(d) {
            Ok(serde_json::Value::Object(_)) => Ok(()),
            _ => Err(ConfigError::Invalid(
                "worker: `machine_description_json` must be a JSON object".into(),
            )),
        }
    }

    /// Outside dev/test networks, refuses serving unattested proxies (`peer_policy = "any"`)
    /// and every forgeable (software) attestation choice ([`AttestationConfig::forgeable_choice`]).
    fn check_attestation(&self) -> Result<(), ConfigError> {
        match self
            .attestation
            .forgeable_choice("proxies (prompts come from them)")
        {
            Some(what) => Err(ConfigError::Invalid(format!(
                "worker: {what} is only allowed on dev/test networks ([attestation] network)"
            ))),
            None => Ok(()),
        }
    }

    /// The model's base name: what clients ask for (text before `@`).
    pub fn model_base_name(&self) -> &str {
        base_model_name(&self.model)
    }
}

/// Largest `machine_description_json` a worker sends (a proxy refuses larger ones).
pub const MAX_MACHINE_DESCRIPTION_BYTES: usize = 4096;

/// The base name of a Cocoon model id `name@commit:hash`.
pub fn base_model_name(model: &str) -> &str {
    model.split('@').next().unwrap_or(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_from_empty_toml() {
        let cfg: WorkerConfig = toml::from_str("").expect("parse");
        assert_eq!(cfg.max_active_requests, 60);
        assert_eq!(cfg.coefficient, 1000);
        assert_eq!(cfg.engine.kind, EngineKind::Openai);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<WorkerConfig>("modle = \"x\"").is_err());
    }

    #[test]
    fn base_name_strips_commit_and_hash() {
        assert_eq!(base_model_name("Qwen/Qwen3-8B@abc:def"), "Qwen/Qwen3-8B");
        assert_eq!(base_model_name("mock"), "mock");
    }

    #[test]
    fn validate_catches_nonsense() {
        let mut cfg = WorkerConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        assert!(cfg.validate().is_ok());
        cfg.max_active_requests = 0;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn unattested_or_forgeable_proxies_are_refused_outside_dev_and_test() {
        let main = WorkerConfig {
            owner_address: "owner".into(),
            ..WorkerConfig::default()
        };
        assert!(main.validate().is_ok(), "tdx on main is fine");
        let refused = |edit: &dyn Fn(&mut WorkerConfig)| {
            let mut cfg = main.clone();
            edit(&mut cfg);
            let e = cfg.validate().expect_err("must be refused on main");
            assert!(e.to_string().contains("dev/test"), "{e}");
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
    }

    #[test]
    fn every_key_is_documented() {
        // Regenerate with `python3 scripts/gen-config-docs.py` after changing the struct.
        let doc = include_str!("../../../docs/CONFIGURATION.md");
        let v = toml::Value::try_from(WorkerConfig::default()).expect("serialize");
        for key in v.as_table().expect("table").keys() {
            let shown = format!("`{key}`");
            assert!(
                doc.contains(&shown),
                "{shown} is missing from docs/CONFIGURATION.md"
            );
        }
    }
}
