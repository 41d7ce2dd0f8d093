//! The proxy role: accepts workers and clients, routes each client request to a worker, relays
//! the answer stream without buffering, and accounts usage per client and per worker.
//!
//! Two attested listeners: the worker port demands worker evidence (policy `peer_policy`), the
//! client port accepts clients without evidence by default (they run outside TEEs). Each
//! connection has one task ([`client_conn`], [`worker_conn`]) that reads its session and hands
//! what happened to the I/O-free [`proxy_core::ProxyCore`] under a short lock; the core's
//! effects (messages, deadlines, endings) are carried out after unlocking ([`relay`]), the
//! money through one interface whether payments are on or off ([`accounting`]).
//!
//! Every admitted request ends exactly once (`ProxyCore::settle`): answered, failed by the
//! worker, cut at its reservation, cancelled by the client, timed out, or failed because a peer
//! disconnected. Its reservation is released and what was delivered is charged, never more
//! than the reservation ([`rules`]); the answer that acknowledges a charge goes out once the
//! charge is durable.
//!
//! With `key_manager` set, one more task ([`key_fetch`]) keeps the network keys that requests
//! sealed with COCOON's field encryption are routed with: fetched from the key manager every
//! 5-10 s, kept while it is unreachable until they expire.

mod accounting;
mod admin;
pub mod anchor;
mod client_conn;
pub mod config;
mod key_fetch;
mod outbox;
mod payments;
pub mod proxy_core;
mod relay;
pub mod rules;
pub mod state;
mod stats;
#[cfg(test)]
mod test_chain;
mod worker_conn;
mod worker_evidence;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use cocoon_node::net::{self, AcceptStats, ListenConfig};
use cocoon_proto::session::{Session, SessionConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, info_span, warn, Instrument};

pub use config::{ClientEntry, ProxyConfig, ReceiptsConfig};
use state::{ClientAccount, ProxyState};

/// Protocol versions the proxy speaks (upstream 9060ce5 proxies: 0..=4). Our own messages are a
/// capability on top (`cocoon_proto::version::EXTENSIONS_FLAG`), not a version.
pub const PROTO_MIN: i32 = 0;
pub const PROTO_MAX: i32 = cocoon_proto::version::PROTO_MAX;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    #[error(transparent)]
    Config(#[from] cocoon_node::ConfigError),
    #[error("payments: {0}")]
    Payments(#[from] payments::PaymentsError),
    /// The root's params changed: run the proxy again to serve from its new contract.
    #[error("the root's params changed; the proxy must restart under its new contract")]
    ParamsChanged,
    #[error("cannot open the receipt log in {dir}: {source}")]
    Receipts { dir: String, source: std::io::Error },
    #[error("cannot bind {what} port {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A client known to this proxy.
#[derive(Debug, Clone)]
pub(crate) struct KnownClient {
    pub secret_hash: [u8; 32],
}

/// State shared by all connection tasks.
pub(crate) struct Shared {
    pub cfg: ProxyConfig,
    pub public_key: [u8; 32],
    /// Requests, workers and client accounts: the I/O-free core ([`proxy_core`]).
    core: Mutex<proxy_core::ProxyCore>,
    /// Payments on or off, behind one interface ([`accounting`]).
    pub accounting: accounting::Accounting,
    pub known_clients: HashMap<String, KnownClient>,
    /// Live sessions (clients and workers) by connection id.
    pub sessions: Mutex<HashMap<u64, Session>>,
    /// Each live session's outbox (made on first use, dropped with the session's entry).
    outboxes: Mutex<HashMap<u64, Arc<outbox::Outbox>>>,
    /// Deadline timer of each running request; dropping one cancels it.
    pub timers: Mutex<HashMap<[u8; 32], AbortOnDropHandle<()>>>,
    pub next_conn: AtomicU64,
    pub stats: stats::ProxyStats,
    pub worker_accept: Arc<AcceptStats>,
    pub client_accept: Arc<AcceptStats>,
    /// What each worker connection's RA-TLS proved (told to clients per response).
    pub worker_evidence: worker_evidence::WorkerEvidenceBook,
    /// Payments through TON (`[chain]` configured), else `None`: configured credit only.
    pub payments: Option<Arc<payments::Payments>>,
    /// Background work of connections that outlives a message (probes of suspect workers);
    /// awaited at shutdown. Charges being made durable are the ledger's (its close runs them).
    pub settling: tokio_util::task::TaskTracker,
    /// The key manager the network keys come from (`key_manager` set), for the stats page.
    pub key_manager: Option<Arc<key_fetch::KeyManagerLink>>,
    /// The certificate clients' sessions are presented (receipts are countersigned with the
    /// key of the one a session saw); `None` in tests without TLS.
    pub identity: Option<Arc<cocoon_ratls::IdentitySlot>>,
    /// The log of countersigned receipts ([`anchor`]); `None` in tests that do not open one.
    pub receipts: Option<Arc<anchor::ReceiptLog>>,
}

impl Shared {
    /// The shared state of a proxy run: the configured `[[clients]]` are known with their
    /// credit; `public_key` is what clients and workers are told.
    pub(crate) fn new(
        cfg: ProxyConfig,
        public_key: [u8; 32],
        payments: Option<Arc<payments::Payments>>,
    ) -> Self {
        let mut known_clients = HashMap::new();
        let mut state = ProxyState::default();
        for c in &cfg.clients {
            let mut secret_hash = [0u8; 32];
            // validate() checked the hex.
            if let Ok(bytes) = hex::decode(&c.secret_sha256) {
                if bytes.len() == 32 {
                    secret_hash.copy_from_slice(&bytes);
                }
            }
            known_clients.insert(c.owner_address.clone(), KnownClient { secret_hash });
            state.clients.insert(
                c.owner_address.clone(),
                ClientAccount {
                    owner: c.owner_address.clone(),
                    credit: c.token_credit.unwrap_or(cfg.default_client_credit),
                    ..Default::default()
                },
            );
        }
        let rules = proxy_core::CoreRules::from_config(&cfg);
        // The core's RNG (request ids, tie-breaks) is seeded from the OS once per run.
        let seed: [u8; 32] = rand::random();
        Self {
            public_key,
            core: Mutex::new(proxy_core::ProxyCore::new(state, rules, seed)),
            accounting: accounting::Accounting::new(payments.clone()),
            known_clients,
            sessions: Mutex::new(HashMap::new()),
            outboxes: Mutex::new(HashMap::new()),
            timers: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            stats: stats::ProxyStats::new(),
            worker_accept: Arc::default(),
            client_accept: Arc::default(),
            worker_evidence: Default::default(),
            payments,
            settling: tokio_util::task::TaskTracker::new(),
            key_manager: cfg
                .key_manager_address()
                .map(|a| Arc::new(key_fetch::KeyManagerLink::new(a.to_string()))),
            identity: None,
            receipts: None,
            cfg,
        }
    }

    /// The proxy's core. A panic while it was held (a bug, logged where it happened) poisons
    /// the lock; carrying on with the state beats every later request, timer and stats page
    /// silently giving up on it. Logged once per such panic.
    pub(crate) fn core(&self) -> std::sync::MutexGuard<'_, proxy_core::ProxyCore> {
        self.core.lock().unwrap_or_else(|poisoned| {
            tracing::error!("proxy state used after a panic while it was held: carrying on");
            self.core.clear_poison();
            poisoned.into_inner()
        })
    }

    pub(crate) fn session(&self, conn: u64) -> Option<Session> {
        self.sessions
            .lock()
            .ok()
            .and_then(|s| s.get(&conn).cloned())
    }

    /// Queues `msg` for connection `conn` without waiting (`outbox`); false when the session
    /// is gone or was closed for not reading.
    pub(crate) fn send_to(&self, conn: u64, msg: bytes::Bytes) -> bool {
        let outbox = {
            let Some(session) = self.session(conn) else {
                return false;
            };
            let Ok(mut boxes) = self.outboxes.lock() else {
                return false;
            };
            boxes
                .entry(conn)
                .or_insert_with(|| {
                    Arc::new(outbox::Outbox::new(
                        conn,
                        session,
                        self.cfg.peer_queue_bytes,
                    ))
                })
                .clone()
        };
        match outbox.push(msg) {
            Ok(()) => true,
            Err(outbox::Refused::Stalled) => {
                self.stats.peers_closed_not_reading.inc();
                false
            }
            Err(outbox::Refused::Closed) => false,
        }
    }

    /// Forgets connection `conn`: its session and its outbox (stopping the outbox's writer).
    pub(crate) fn forget_session(&self, conn: u64) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(&conn);
        }
        if let Ok(mut b) = self.outboxes.lock() {
            b.remove(&conn);
        }
    }
}

/// The stats port: the stats pages (behind `stats_token` when one is set) and `/admin/*`
/// (behind `admin_token`).
fn stats_router(shared: Arc<Shared>) -> axum::Router {
    cocoon_node::stats::router(Arc::new(stats::StatsView(shared.clone())))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            admin::require_stats_token,
        ))
        .merge(admin::router(shared))
}

/// Runs a proxy until `shutdown` fires.
pub async fn run(cfg: ProxyConfig, shutdown: CancellationToken) -> Result<(), ProxyError> {
    cfg.validate()?;
    // Everything of this run hangs off `shutdown`; payments may end the run early (the root's
    // params changed) without the caller's token being cancelled.
    let outer = shutdown;
    let shutdown = outer.child_token();
    // Rotating RA-TLS identity + collateral refresh (`maintain`, below).
    let att = cocoon_node::rotation::NodeAttestation::new(&cfg.attestation)?;
    let identity = att.current();
    let worker_tls = att.server_config(att.verifier()?)?;
    let client_tls = att.server_config(att.verifier_for(cfg.client_peer_policy)?)?;
    // The key manager must present what workers must (`peer_policy`): it holds the keys
    // prompts are sealed to.
    let key_manager_dial = match cfg.key_manager_address() {
        Some(_) => Some(net::DialConfig {
            max_pow_difficulty: cocoon_proto::pow::MAX_ACCEPTED_DIFFICULTY,
            tls: att.client_config(att.verifier()?)?,
            connect_timeout: std::time::Duration::from_secs(5),
            pow_timeout: std::time::Duration::from_secs(120),
            handshake_timeout: cfg.handshake_timeout,
            session: SessionConfig::dialer(),
        }),
        None => None,
    };

    // Payments first: with the chain on, prices come from the root and the proxy's key must be
    // the payment key (clients derive their contract address from it).
    // Every price (and multiplier) is the root's, as the params the proxy contract is made
    // under; a change of them restarts the run under a new contract (`ParamsChanged`), so they
    // follow the root without a process restart.
    let mut cfg = cfg;
    let startup = if cfg.chain.enabled() {
        let s = payments::Payments::start(&cfg, &shutdown).await?;
        cfg.pricing = root_pricing(&cfg.pricing, &s.payments.network.params);
        Some(s)
    } else {
        None
    };

    let bind = |what: &'static str, addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Bind { what, addr, source })
    };
    let worker_listener = bind("worker", cfg.worker_listen).await?;
    let client_listener = bind("client", cfg.client_listen).await?;
    let stats_listener = bind("stats", cfg.stats_listen).await?;

    // With payments on, the key clients and workers are told is the payment key.
    let public_key = startup
        .as_ref()
        .map(|s| s.payments.public_key)
        .unwrap_or_else(|| identity.public_key());
    let mut shared = Shared::new(
        cfg,
        public_key,
        startup.as_ref().map(|s| s.payments.clone()),
    );
    shared.identity = Some(att.slot().clone());
    let r = &shared.cfg.receipts;
    let (receipt_log, receipt_task) = anchor::ReceiptLog::open(
        &r.dir,
        r.anchor_every,
        r.max_leaves_per_period as usize,
        r.keep_periods as usize,
        shared.payments.is_some(),
    )
    .map_err(|source| ProxyError::Receipts {
        dir: r.dir.display().to_string(),
        source,
    })?;
    shared.receipts = Some(receipt_log.clone());
    let shared = Arc::new(shared);
    info!(
        workers = %shared.cfg.worker_listen,
        clients = %shared.cfg.client_listen,
        stats = %shared.cfg.stats_listen,
        key = %hex::encode(shared.public_key),
        "proxy starting"
    );

    let listen = |tls| ListenConfig {
        pow_difficulty: shared.cfg.pow_difficulty,
        tls,
        handshake_timeout: shared.cfg.handshake_timeout,
        session: SessionConfig::acceptor(),
        max_pending_handshakes: shared.cfg.max_pending_handshakes,
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(att.maintain(shutdown.clone()));
    tasks.spawn(anchor::run(receipt_log, receipt_task, shutdown.clone()));
    if let (Some(link), Some(dial)) = (shared.key_manager.clone(), key_manager_dial) {
        tasks.spawn(key_fetch::run(shared.clone(), link, dial, shutdown.clone()));
    }
    if let Some(s) = startup {
        tasks.spawn(payments::agent::run(
            shared.clone(),
            s.payments,
            s.cursor,
            s.backlog,
            shutdown.clone(),
        ));
    }
    // Connection tasks are owned by this set: shutting down aborts them all.
    let conns = Arc::new(Mutex::new(JoinSet::new()));
    {
        let sh = shared.clone();
        let conns = conns.clone();
        let cancel = shutdown.clone();
        tasks.spawn(net::serve_with_limits(
            worker_listener,
            listen(worker_tls),
            shared.cfg.accept.clone(),
            shared.worker_accept.clone(),
            shutdown.clone(),
            move |s| {
                let span = info_span!("worker_conn", remote = %s.remote);
                if let Ok(mut set) = conns.lock() {
                    set.spawn(worker_conn::run(sh.clone(), s, cancel.clone()).instrument(span));
                }
            },
        ));
    }
    {
        let sh = shared.clone();
        let conns = conns.clone();
        let cancel = shutdown.clone();
        tasks.spawn(net::serve_with_limits(
            client_listener,
            listen(client_tls),
            shared.cfg.accept.clone(),
            shared.client_accept.clone(),
            shutdown.clone(),
            move |s| {
                let span = info_span!("client_conn", remote = %s.remote);
                if let Ok(mut set) = conns.lock() {
                    set.spawn(client_conn::run(sh.clone(), s, cancel.clone()).instrument(span));
                }
            },
        ));
    }
    {
        let router = stats_router(shared.clone());
        tasks.spawn(cocoon_node::stats::serve(
            stats_listener,
            router,
            shutdown.clone(),
        ));
    }
    tasks.spawn(cocoon_node::net::reap_finished(
        conns.clone(),
        shutdown.clone(),
    ));
    shutdown.cancelled().await;
    let restart = !outer.is_cancelled();
    info!(restart, "proxy shutting down");
    tasks.shutdown().await;
    let set = conns.lock().map(|mut s| std::mem::take(&mut *s)).ok();
    if let Some(mut set) = set {
        set.shutdown().await;
    }
    // Let charges in flight become durable and their answers go out, then close the ledger.
    shared.settling.close();
    if tokio::time::timeout(std::time::Duration::from_secs(10), shared.settling.wait())
        .await
        .is_err()
    {
        warn!("settlements still running at shutdown");
    }
    if let Some(p) = shared.payments.as_ref() {
        if let Err(e) = p.ledger.close().await {
            warn!(error = %e, "closing the ledger failed");
        }
    }
    if restart {
        return Err(ProxyError::ParamsChanged);
    }
    Ok(())
}

/// The root params' prices and multipliers; where `[pricing]` says otherwise the root wins, and
/// the difference is logged (once per run, that is once per params version).
fn root_pricing(
    configured: &cocoon_node::PricingConfig,
    params: &cocoon_ton::contracts::CocoonParams,
) -> cocoon_node::PricingConfig {
    let p = params;
    let root = cocoon_node::PricingConfig::from_root(
        p.price_per_token,
        p.worker_fee_per_token,
        [
            p.prompt_mult,
            p.cached_mult,
            p.completion_mult,
            p.reasoning_mult,
        ],
    );
    let differ = configured.differing_keys(&root);
    if !differ.is_empty() {
        warn!(
            keys = ?differ,
            params_version = p.params_version,
            "[pricing] differs from the root contract's params; the root's are used"
        );
    }
    root
}

#[cfg(test)]
mod stats_port_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The status line of `GET path` on a stats port serving `shared`, with `token` if any.
    async fn status_of(shared: Arc<Shared>, path: &str, token: Option<&str>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, stats_router(shared)).await;
        });
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        server.abort();
        let text = String::from_utf8_lossy(&answer);
        text.lines().next().unwrap_or("").to_string()
    }

    fn shared_with(token: &str) -> Arc<Shared> {
        let mut cfg = ProxyConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        cfg.stats_token = token.into();
        Arc::new(Shared::new(cfg, [7; 32], None))
    }

    #[tokio::test]
    async fn with_a_stats_token_the_pages_need_it() {
        for path in ["/jsonstats", "/stats", "/metrics"] {
            let open = status_of(shared_with(""), path, None).await;
            assert!(
                open.contains(" 200"),
                "{path} without a token configured: {open}"
            );
            let refused = status_of(shared_with("t0ken"), path, None).await;
            assert!(
                refused.contains(" 401"),
                "{path} without the token: {refused}"
            );
            let wrong = status_of(shared_with("t0ken"), path, Some("other")).await;
            assert!(wrong.contains(" 401"), "{path} with a wrong token: {wrong}");
            let ok = status_of(shared_with("t0ken"), path, Some("t0ken")).await;
            assert!(ok.contains(" 200"), "{path} with the token: {ok}");
        }
    }

    #[test]
    fn prices_and_multipliers_are_the_roots() {
        let params = cocoon_ton::contracts::CocoonParams {
            price_per_token: 30,
            worker_fee_per_token: 20,
            prompt_mult: 15_000,
            cached_mult: 5_000,
            completion_mult: 40_000,
            reasoning_mult: 80_000,
            ..Default::default()
        };
        let p = root_pricing(&cocoon_node::PricingConfig::default(), &params);
        assert_eq!((p.price_per_token, p.worker_fee_per_token), (30, 20));
        let m = p.multipliers();
        assert_eq!(
            (m.prompt, m.cached, m.completion, m.reasoning),
            (15_000, 5_000, 40_000, 80_000)
        );
        // The reservation covers the largest multiplier.
        assert_eq!(crate::state::reservation(100, 0, 1000, &p), 800);
    }

    #[test]
    fn the_stats_port_off_loopback_needs_a_token() {
        let mut cfg = ProxyConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        assert!(cfg.validate().is_ok());
        cfg.stats_listen = "0.0.0.0:11000".parse().expect("addr");
        let e = cfg.validate().expect_err("public stats without a token");
        assert!(e.to_string().contains("stats_token"), "{e}");
        cfg.stats_token = "t0ken".into();
        assert!(cfg.validate().is_ok());
    }
}
