//! The client role: an OpenAI-compatible HTTP gateway for apps, speaking Cocoon's protocol to
//! proxies over RA-TLS.
//!
//! [`http`] serves the API on 127.0.0.1:10000 by default, behind [`guard`] (requests from web
//! pages and DNS-rebound names are refused); [`link`] keeps a session to each proxy (Cocoon
//! handshake + short auth) and fails over between them. The proxies are the configured list, or
//! with `proxy_discovery.source = "root"` those registered in the root contract, picked at random
//! and followed as the root changes (`cocoon_node::discovery`). Requests carry
//! a deadline end to end, are cancelled at the worker when the app disconnects (protocol 3), and
//! always end with an answer or an OpenAI-shaped error, never a hang. Prompts and completions
//! are never logged. With `[chain]` on, [`payments`] pays for it all from the client's wallet
//! through its client contract at each proxy (docs/PAYMENTS.md), and the stale-root guard
//! answers 503 while the client's view of the root is older than `root_stale_after`.

pub mod config;
mod guard;
mod http;
pub mod keys;
mod link;
pub mod payments;
mod receipts;
mod responses;
mod sealing;
mod served_by;
mod stats;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cocoon_node::discovery::shell::{self as discovery, DiscoveryStatus};
use cocoon_node::discovery::{LinkControl, Role};
use cocoon_node::net::DialConfig;
use cocoon_proto::session::SessionConfig;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::ClientConfig;
pub use receipts::CLIENT_RECEIPT_FORMAT;

/// Protocol versions this client speaks (upstream 9060ce5's clients: 1..=4). Our own messages
/// are a capability on top (`cocoon_proto::version::EXTENSIONS_FLAG`), not a version.
pub const PROTO_MIN: i32 = 1;
pub const PROTO_MAX: i32 = cocoon_proto::version::PROTO_MAX;

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] cocoon_node::ConfigError),
    #[error("cannot bind HTTP port {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("payments: {0}")]
    Payments(#[from] payments::PaymentsError),
    #[error("cannot open the API keys file {path}: {source}")]
    Keys {
        path: String,
        source: keys::KeysError,
    },
    #[error("cannot open the receipts directory {dir}: {source}")]
    Receipts { dir: String, source: std::io::Error },
}

pub(crate) struct Shared {
    pub cfg: Arc<ClientConfig>,
    pub pool: Arc<link::Pool>,
    pub stats: Arc<stats::ClientStats>,
    /// Present when `[chain]` is on.
    pub payments: Option<Arc<payments::Payments>>,
    /// With `proxy_discovery.source = "root"`: what discovery sees.
    pub discovery: Option<Arc<DiscoveryStatus>>,
    /// The client's own verdicts on workers it seals requests to.
    pub workers: Arc<sealing::WorkerVerifier>,
    /// Candidates verified in the last moments, per proxy and model.
    pub candidates: sealing::CandidateCache,
    /// Receipts of sealed requests, for the app.
    pub receipts: Arc<receipts::ReceiptBook>,
    /// Per-app API keys, when `[keys] db` is set.
    pub keys: Option<Arc<keys::Keys>>,
}

impl Shared {
    /// Why the client takes no new request now: its view of the root is stale (chain on).
    pub(crate) fn refusing(&self) -> Option<String> {
        let p = self.payments.as_ref()?;
        let why = p.registry.freshness(SystemTime::now()).refusal()?;
        Some(format!("client: {why}"))
    }
}

/// Runs a client until `shutdown` fires.
pub async fn run(cfg: ClientConfig, shutdown: CancellationToken) -> Result<(), ClientError> {
    cfg.validate()?;
    // Rotating RA-TLS identity + collateral refresh (`maintain`, below).
    let att = cocoon_node::rotation::NodeAttestation::new(&cfg.attestation)?;
    let verifier = att.verifier()?;
    let tls = att.client_config(verifier.clone())?;
    // Workers a request is sealed to are judged by the same policy as proxies.
    let workers = Arc::new(sealing::WorkerVerifier::new(
        verifier,
        cfg.privacy.allowed_worker_images.clone(),
        cfg.privacy.verdict_ttl,
    ));
    let receipts_dir =
        (!cfg.privacy.receipts_dir.is_empty()).then(|| cfg.privacy.receipts_dir.clone().into());
    let receipts = Arc::new(
        receipts::ReceiptBook::open(receipts_dir, cfg.privacy.max_receipts).map_err(|source| {
            ClientError::Receipts {
                dir: cfg.privacy.receipts_dir.clone(),
                source,
            }
        })?,
    );
    let keys = if cfg.keys.db.is_empty() {
        None
    } else {
        let path = std::path::PathBuf::from(&cfg.keys.db);
        let k = tokio::task::spawn_blocking(move || keys::Keys::open(&path))
            .await
            .map_err(|e| ClientError::Keys {
                path: cfg.keys.db.clone(),
                source: keys::KeysError::Invalid(e.to_string()),
            })?
            .map_err(|source| ClientError::Keys {
                path: cfg.keys.db.clone(),
                source,
            })?;
        info!(path = %cfg.keys.db, keys = k.ring().len(), "API keys loaded");
        Some(Arc::new(k))
    };
    let dial = DialConfig {
        max_pow_difficulty: cfg.max_pow_difficulty,
        tls,
        connect_timeout: cfg.connect_timeout,
        pow_timeout: Duration::from_secs(300),
        handshake_timeout: cfg.handshake_timeout,
        session: SessionConfig::dialer(),
    };
    let listener = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .map_err(|source| ClientError::Bind {
            addr: cfg.http_listen,
            source,
        })?;
    let cfg = Arc::new(cfg);
    let payments = payments::Payments::start(cfg.clone(), shutdown.clone()).await?;
    let from_root = cfg.proxy_discovery.from_root();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        pool: Arc::default(),
        stats: Arc::new(stats::ClientStats::with_keys(keys.clone())),
        payments,
        discovery: from_root.then(Arc::default),
        workers,
        candidates: Default::default(),
        receipts,
        keys,
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(att.maintain(shutdown.clone()));
    if let Some(k) = shared.keys.clone() {
        tasks.spawn(k.maintain(shutdown.clone()));
    }
    let link = {
        let (shared, dial, shutdown) = (shared.clone(), dial.clone(), shutdown.clone());
        move |addr: String, control: LinkControl| {
            link::run(
                shared.cfg.clone(),
                addr,
                dial.clone(),
                shared.pool.clone(),
                shared.stats.clone(),
                shared.payments.clone(),
                control,
                shutdown.clone(),
            )
        }
    };
    match (&shared.discovery, &shared.payments) {
        (Some(status), Some(p)) => {
            info!(http = %cfg.http_listen, links = cfg.proxy_discovery.links, "client starting; proxies from the root contract");
            let registry = p.registry.clone();
            let proxies: discovery::ProxyList = Box::new(move |known| {
                let r = registry.current();
                (known != Some(r.state.version)).then(|| (r.state.version, r.state.proxies.clone()))
            });
            let rules = cfg
                .proxy_discovery
                .rules(Role::Client, cfg.attestation.is_test());
            tasks.spawn(discovery::run(
                rules,
                rand::random(),
                proxies,
                move |h| link(h.addr.to_string(), h.control),
                status.clone(),
                discovery::TICK,
                shutdown.clone(),
            ));
        }
        _ => {
            info!(http = %cfg.http_listen, proxies = cfg.proxies.len(), "client starting");
            for addr in cfg.proxies.clone() {
                tasks.spawn(link(addr, LinkControl::fixed()));
            }
        }
    }
    let app = http::app(shared.clone());
    let listener = axum::serve::ListenerExt::tap_io(listener, |s| {
        let _ = s.set_nodelay(true);
    });
    let cancel = shutdown.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    tasks.shutdown().await;
    if let Some(k) = shared.keys.clone() {
        // Requests that finished during the graceful shutdown, after the keys task's last flush.
        match tokio::task::spawn_blocking(move || k.flush()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("API keys: flush at shutdown: {e}"),
            Err(e) => tracing::warn!("API keys: flush at shutdown: {e}"),
        }
    }
    served.map_err(ClientError::Serve)
}
