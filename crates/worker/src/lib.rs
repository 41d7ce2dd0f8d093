//! The worker role: serves an inference engine to one or more proxies.
//!
//! A worker dials out to each configured proxy, or with `proxy_discovery.source = "root"` to
//! proxies picked at random among those registered in the root contract and followed as the
//! root changes (`cocoon_node::discovery`) ([`proxy_link`]): PoW, RA-TLS (the proxy's
//! evidence is checked against policy), then Cocoon's worker handshake (`worker.connectToProxy`,
//! `compareBalanceWithProxy`, `proxyHandshakeComplete`), reconnecting with backoff when the link
//! drops. Each `proxy.runQueryEx` becomes a [`request`] task: validate the OpenAI body against a
//! whitelist, call the engine, stream every chunk on as it arrives, count usage from the real
//! SSE/JSON, and finish with the adjusted usage in the final info. Version-3 proxies can cancel a
//! request (`proxy.cancelQueryV3`) and receive usage progress with every part.
//!
//! The engine's liveness is probed periodically; while it fails, the worker tells every proxy
//! it is disabled (`worker.enabledDisabled`). Nothing here logs prompt or completion text.
//!
//! With `[chain]` on, [`payments`] keeps what the worker earned per proxy contract
//! (`payments.json`), checks every proxy's payment numbers, and cashes out; prices and
//! multipliers are the root's (per link, those its proxy contract was checked under); and while
//! the worker's view of the root is older than `root_stale_after` it tells every proxy it is
//! disabled, as for a dead engine, until a read succeeds.

mod change_model;
pub mod config;
mod costs;
mod field_encryption;
pub mod payments;
mod proxy_link;
mod request;
mod sealed;
mod stats;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cocoon_engine::mock::{MockConfig, MockEngine};
use cocoon_engine::openai::{OpenAiConfig, OpenAiEngine};
use cocoon_engine::SharedEngine;
use cocoon_node::discovery::shell::{self as discovery, DiscoveryStatus};
use cocoon_node::discovery::{LinkControl, Role};
use cocoon_node::net::DialConfig;
use cocoon_node::PricingConfig;
use cocoon_proto::session::{Session, SessionConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{EngineConfig, EngineKind, WorkerConfig};
pub use stats::WorkerStats;

/// Protocol versions this worker speaks (upstream 9060ce5's workers: 3..=4; we still serve
/// b75d444 proxies at 1..=2). Our own messages are a capability on top
/// (`cocoon_proto::version::EXTENSIONS_FLAG`), not a version. A worker that sends a machine
/// description raises its minimum to 4 (`proxy_link::min_proto`).
pub const PROTO_MIN: i32 = 1;
pub const PROTO_MAX: i32 = cocoon_proto::version::PROTO_MAX;

/// What a worker agrees with a cocoon-rs proxy (tests).
#[cfg(test)]
pub(crate) const WITH_EXTENSIONS: cocoon_proto::version::Negotiated =
    cocoon_proto::version::Negotiated {
        version: PROTO_MAX,
        extensions: true,
    };

/// Why the worker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] cocoon_node::ConfigError),
    #[error("cannot bind stats port {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("engine: {0}")]
    Engine(String),
    #[error("payments: {0}")]
    Payments(#[from] payments::PaymentsError),
}

/// State shared by the proxy links and request tasks.
pub(crate) struct Shared {
    pub cfg: WorkerConfig,
    pub engine: SharedEngine,
    pub stats: Arc<WorkerStats>,
    /// Requests running now, over all proxies.
    pub active: AtomicUsize,
    /// Last liveness verdict of the engine.
    pub engine_ok: AtomicBool,
    /// Whether the view of the root is fresh enough to take work on (always with the chain
    /// off); the health loop keeps it.
    pub root_fresh: AtomicBool,
    /// Live proxy sessions, to broadcast enable/disable.
    pub sessions: Mutex<Vec<(u64, Session)>>,
    pub next_link_id: AtomicU64,
    /// Payments through TON (`[chain]` on), else `None`.
    pub payments: Option<Arc<payments::Payments>>,
    /// The model advertised now: `cfg.model` until a `worker.changeModel` succeeds.
    pub model: Mutex<String>,
    /// Held while a model change hook runs (one at a time).
    pub changing_model: tokio::sync::Mutex<()>,
    /// With `proxy_discovery.source = "root"`: what discovery sees.
    pub discovery: Option<Arc<DiscoveryStatus>>,
    /// The root params version whose prices were last found to differ from `[pricing]` (that
    /// warning is logged once per version).
    pricing_warned: Mutex<Option<u32>>,
    /// The sealing keys this worker's certificates bind (sealed requests open with them).
    pub sealing: Option<Arc<cocoon_node::sealing::SealingKeyRing>>,
    /// Judges this worker's own certificates, for the image hash its receipts state.
    pub own_evidence: Option<Arc<dyn cocoon_attest::EvidenceVerifier>>,
    /// Sealed envelopes opened recently (replays are refused).
    pub replays: sealed::ReplayGuard,
    /// That image hash per certificate key (judged once per certificate).
    own_image_hashes: Mutex<std::collections::HashMap<[u8; 32], [u8; 32]>>,
}

impl Shared {
    /// The state of a worker that has not connected to any proxy yet.
    pub fn new(
        cfg: WorkerConfig,
        engine: SharedEngine,
        stats: Arc<WorkerStats>,
        payments: Option<Arc<payments::Payments>>,
    ) -> Self {
        let model = Mutex::new(cfg.model.clone());
        Shared {
            cfg,
            engine,
            stats,
            active: AtomicUsize::new(0),
            engine_ok: AtomicBool::new(true),
            root_fresh: AtomicBool::new(true),
            sessions: Mutex::new(Vec::new()),
            next_link_id: AtomicU64::new(1),
            payments,
            model,
            changing_model: tokio::sync::Mutex::new(()),
            discovery: None,
            pricing_warned: Mutex::new(None),
            sealing: None,
            own_evidence: None,
            own_image_hashes: Mutex::default(),
            replays: Default::default(),
        }
    }

    /// The image hash `identity`'s certificate proves, as this worker's peer policy judges it
    /// (what a client that verified the certificate saw); zeros when it proves none.
    pub fn own_image_hash(&self, identity: &cocoon_ratls::RaTlsIdentity) -> [u8; 32] {
        let key = identity.public_key();
        if let Some(h) = self
            .own_image_hashes
            .lock()
            .ok()
            .and_then(|m| m.get(&key).copied())
        {
            return h;
        }
        let hash = self
            .own_evidence
            .as_ref()
            .and_then(|v| {
                cocoon_ratls::inspect_cert(identity.cert_der(), &**v, std::time::SystemTime::now())
                    .ok()
            })
            .and_then(|p| p.image_hash)
            .unwrap_or([0; 32]);
        if let Ok(mut m) = self.own_image_hashes.lock() {
            // A few certificates live at once; forget them all rather than grow.
            if m.len() >= 16 {
                m.clear();
            }
            m.insert(key, hash);
        }
        hash
    }

    /// Whether this worker takes new requests: its engine is up and its view of the root is
    /// fresh. What it tells proxies (`worker.enabledDisabled`, the handshake's `is_disabled`).
    pub fn takes_work(&self) -> bool {
        self.engine_ok.load(Ordering::SeqCst) && self.root_fresh.load(Ordering::SeqCst)
    }

    /// The prices of requests on a proxy link: with payments, the root params the link's proxy
    /// contract was checked under (the root wins over `[pricing]`; a difference is logged once
    /// per params version); without, `[pricing]`.
    pub fn link_pricing(&self, pay: Option<&payments::PaymentLink>) -> PricingConfig {
        let Some(link) = pay else {
            return self.cfg.pricing.clone();
        };
        let p = &link.params;
        let root = PricingConfig::from_root(
            p.price_per_token,
            p.worker_fee_per_token,
            [
                p.prompt_mult,
                p.cached_mult,
                p.completion_mult,
                p.reasoning_mult,
            ],
        );
        let differ = self.cfg.pricing.differing_keys(&root);
        if !differ.is_empty() {
            let first = self
                .pricing_warned
                .lock()
                .map(|mut w| w.replace(p.params_version) != Some(p.params_version))
                .unwrap_or(false);
            if first {
                warn!(
                    keys = ?differ,
                    params_version = p.params_version,
                    "[pricing] differs from the root contract's params; the root's are used"
                );
            }
        }
        root
    }

    /// The model this worker serves now.
    pub fn model(&self) -> String {
        self.model
            .lock()
            .map(|m| m.clone())
            .unwrap_or_else(|_| self.cfg.model.clone())
    }

    /// Makes `model` the one served; returns the previous one.
    pub fn set_model(&self, model: String) -> String {
        match self.model.lock() {
            Ok(mut m) => std::mem::replace(&mut *m, model),
            Err(_) => self.cfg.model.clone(),
        }
    }

    /// Closes every proxy link but `keep`: their proxies reconnect and register anew.
    pub fn close_links_except(&self, keep: u64) {
        if let Ok(s) = self.sessions.lock() {
            for (id, session) in s.iter() {
                if *id != keep {
                    session.close();
                }
            }
        }
    }
}

/// Builds the engine named by the config, and the model id to advertise (for the embedded
/// engine: `name@gguf:<sha256 of the file>`, the hash the on-chain registry will list).
/// Loading a model is blocking work: it runs off the async runtime.
pub async fn build_engine(
    cfg: &EngineConfig,
    model: &str,
) -> Result<(SharedEngine, String), WorkerError> {
    let engine: SharedEngine = match cfg.kind {
        EngineKind::Mock => Arc::new(MockEngine::new(MockConfig {
            completion_tokens: cfg.mock_completion_tokens,
            chunk_tokens: cfg.mock_chunk_tokens.max(1),
            token_delay: cfg.mock_token_delay,
            model: config::base_model_name(model).to_string(),
            ..MockConfig::default()
        })),
        EngineKind::Openai => Arc::new(
            OpenAiEngine::new(OpenAiConfig {
                base_url: cfg.url.clone(),
                api_key: cfg.api_key.clone(),
                health_path: cfg.health_path.clone(),
                continuous_usage_stats: cfg.continuous_usage_stats,
                ..OpenAiConfig::default()
            })
            .map_err(|e| WorkerError::Engine(e.to_string()))?,
        ),
        EngineKind::Llama => return build_llama(cfg, model).await,
    };
    Ok((engine, model.to_string()))
}

#[cfg(feature = "llama")]
async fn build_llama(
    cfg: &EngineConfig,
    model: &str,
) -> Result<(SharedEngine, String), WorkerError> {
    use cocoon_engine::llama::{LlamaConfig, LlamaEngine};
    let path = match &cfg.model_path {
        Some(p) => p.clone(),
        None => {
            cocoon_engine::models::default_model_path(&cocoon_engine::models::default_models_dir())
        }
    };
    if !path.exists() {
        return Err(WorkerError::Engine(format!(
            "model file {} not found; run `cocoon model fetch` or set engine.model_path",
            path.display()
        )));
    }
    let llama_cfg = LlamaConfig {
        model_path: path,
        model_name: config::base_model_name(model).to_string(),
        context_size: cfg.context_size,
        slots: cfg.slots.max(1),
        threads: cfg.threads,
        queue: cfg.queue,
        ..LlamaConfig::default()
    };
    let engine = tokio::task::spawn_blocking(move || LlamaEngine::load(llama_cfg))
        .await
        .map_err(|e| WorkerError::Engine(format!("model loading panicked: {e}")))?
        .map_err(|e| WorkerError::Engine(e.to_string()))?;
    let advertised = format!(
        "{}@gguf:{}",
        config::base_model_name(model),
        hex::encode(engine.model_sha256())
    );
    Ok((Arc::new(engine), advertised))
}

#[cfg(not(feature = "llama"))]
async fn build_llama(_: &EngineConfig, _: &str) -> Result<(SharedEngine, String), WorkerError> {
    Err(WorkerError::Engine(
        "engine.kind = \"llama\" needs a build with the `llama` feature (the default for the cocoon binary)".into(),
    ))
}

/// Runs a worker until `shutdown` fires.
pub async fn run(mut cfg: WorkerConfig, shutdown: CancellationToken) -> Result<(), WorkerError> {
    let (engine, advertised) = build_engine(&cfg.engine, &cfg.model).await?;
    cfg.model = advertised;
    run_with_engine(cfg, engine, shutdown).await
}

/// Like [`run`], with an engine supplied by the caller (tests, embedded engines).
pub async fn run_with_engine(
    cfg: WorkerConfig,
    engine: SharedEngine,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    cfg.validate()?;
    // Rotating RA-TLS identity + collateral refresh (`maintain`, below).
    // Every certificate binds a fresh sealing key (sealed requests; Cocoon peers ignore it).
    let att = cocoon_node::rotation::NodeAttestation::with_sealing_keys(&cfg.attestation)?;
    let verifier = att.verifier()?;
    let tls = att.client_config(verifier.clone())?;
    let dial = DialConfig {
        max_pow_difficulty: cfg.max_pow_difficulty,
        tls,
        connect_timeout: cfg.connect_timeout,
        pow_timeout: Duration::from_secs(300),
        handshake_timeout: cfg.handshake_timeout,
        session: SessionConfig::dialer(),
    };
    let stats = Arc::new(WorkerStats::new());
    let payments = if cfg.chain.enabled() {
        Some(payments::Payments::start(&cfg, &shutdown).await?)
    } else {
        None
    };
    let from_root = cfg.proxy_discovery.from_root();
    let mut shared = Shared::new(cfg, engine, stats.clone(), payments);
    shared.discovery = from_root.then(Arc::default);
    shared.sealing = att.sealing_keys().cloned();
    shared.own_evidence = Some(verifier);
    let shared = Arc::new(shared);

    let stats_listener = tokio::net::TcpListener::bind(shared.cfg.stats_listen)
        .await
        .map_err(|source| WorkerError::Bind {
            addr: shared.cfg.stats_listen,
            source,
        })?;
    info!(
        model = %shared.model(),
        proxies = shared.cfg.proxies.len(),
        from_root,
        stats = %shared.cfg.stats_listen,
        "worker starting"
    );

    let mut tasks = JoinSet::new();
    tasks.spawn(att.maintain(shutdown.clone()));
    {
        let router = cocoon_node::stats::router(Arc::new(stats::StatsView(shared.clone()))).merge(
            payments::admin::router(shared.payments.clone(), &shared.cfg.admin_token),
        );
        tasks.spawn(cocoon_node::stats::serve(
            stats_listener,
            router,
            shutdown.clone(),
        ));
    }
    tasks.spawn(health_loop(shared.clone(), shutdown.clone()));
    if let Some(p) = &shared.payments {
        p.spawn(&mut tasks, &shutdown);
    }
    match (&shared.discovery, &shared.payments) {
        (Some(status), Some(p)) => {
            let registry = p.registry().clone();
            let proxies: discovery::ProxyList = Box::new(move |known| {
                let r = registry.current();
                (known != Some(r.state.version)).then(|| (r.state.version, r.state.proxies.clone()))
            });
            let rules = shared
                .cfg
                .proxy_discovery
                .rules(Role::Worker, shared.cfg.attestation.is_test());
            // Each proxy is told its share of our capacity as if `links` proxies had it.
            let proxy_cnt = rules.links;
            let (sh, dial, cancel) = (shared.clone(), dial.clone(), shutdown.clone());
            tasks.spawn(discovery::run(
                rules,
                rand::random(),
                proxies,
                move |h| {
                    proxy_link::run(
                        sh.clone(),
                        h.addr.to_string(),
                        proxy_cnt,
                        dial.clone(),
                        h.control,
                        cancel.clone(),
                    )
                },
                status.clone(),
                discovery::TICK,
                shutdown.clone(),
            ));
        }
        _ => {
            let proxy_cnt = shared.cfg.proxies.len();
            for addr in shared.cfg.proxies.clone() {
                tasks.spawn(proxy_link::run(
                    shared.clone(),
                    addr,
                    proxy_cnt,
                    dial.clone(),
                    LinkControl::fixed(),
                    shutdown.clone(),
                ));
            }
        }
    }
    shutdown.cancelled().await;
    info!("worker shutting down");
    // Give links a moment to fail their requests cleanly, then abort what is left.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
    Ok(())
}

/// Probes the engine and checks the view of the root, and tells every proxy when whether this
/// worker takes work changes (the stale-root guard: a worker whose root is stale is disabled
/// like one whose engine is down).
async fn health_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let ok = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(shared.cfg.health_interval.max(Duration::from_millis(100)) * 5,
                                     shared.engine.health()) => matches!(r, Ok(Ok(()))),
        };
        let before = shared.takes_work();
        let was = shared.engine_ok.swap(ok, Ordering::SeqCst);
        if was != ok {
            if ok {
                info!("engine is up again");
            } else {
                warn!("engine liveness probe failed; disabling on all proxies");
            }
        }
        let root = shared
            .payments
            .as_ref()
            .map(|p| p.registry().freshness(SystemTime::now()));
        let fresh = !root.is_some_and(|f| f.is_stale());
        if shared.root_fresh.swap(fresh, Ordering::SeqCst) != fresh {
            match root.and_then(|f| f.refusal()) {
                Some(why) => warn!(reason = %why, "disabling on all proxies"),
                None => info!("the view of the root is fresh again"),
            }
        }
        let now = shared.takes_work();
        if now != before {
            if now {
                info!("taking requests again; enabling on all proxies");
            }
            proxy_link::broadcast_enabled(&shared, now).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(shared.cfg.health_interval) => {}
        }
    }
}
