//! The key manager role (upstream COCOON 9060ce5's `key-manager-runner`): it owns the network
//! keys that apps encrypt request fields to (`"is_encrypted":"v1"`, crates/field-encryption),
//! generates and rotates them, announces their public halves to the root contract, and serves
//! their private halves to attested proxies and workers, so that a proxy can hand the right one
//! to the worker in `proxy.runQueryEx.private_key`.
//!
//! # Modules
//! - [`config`] reads `key-manager.toml`.
//! - [`core`] holds the rules without I/O: the key schedule (a new key every `rotate_every`, each
//!   valid `key_lifetime`, expired ones dropped), what to serve at a time, what to announce.
//! - [`store`] keeps the keys file and the identity seed under `data_dir` (0600, atomic replace).
//! - [`access`] decides which peer may have which keys (image hashes: the root's lists with the
//!   chain on, config allowlists with it off).
//! - `serve`: one proxy's or worker's session: `keyManager.getProxyPrivateKeys` /
//!   `getWorkerPrivateKeys` (`tcp.query`) → `keyManager.privateKeys`, or a typed error.
//! - `announce`: with the chain on, `root_add_public_key_signed` for each new key until the
//!   root lists it.
//! - `stats`: `/stats`, `/jsonstats`, `/metrics` (public halves only).
//!
//! # Task model
//! [`run`] validates the config, reads its files, makes the first key if none is valid, writes
//! it, and only then binds. It owns every task in one `JoinSet` (certificate rotation, the
//! accept loop, the schedule, the announcer, the stats server, the reaper) plus one set of
//! session tasks; `shutdown` cancels them all and `run` returns once they ended. A key is
//! written to disk before it is ever served, so a restart serves the same keys. Private keys
//! are never logged: logs and stats carry public keys and expiries.

pub mod access;
mod announce;
pub mod config;
pub mod core;
mod serve;
mod stats;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_field_encryption::SecretSeed;
use cocoon_node::net::{self, AcceptStats, ListenConfig};
use cocoon_node::ConfigError;
use cocoon_onchain::{NodeChain, OnchainError};
use cocoon_proto::session::SessionConfig;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

pub use access::{AccessPolicy, Audience, Refusal};
pub use config::KeyManagerConfig;
pub use core::{KeyManagerCore, ScheduleRules, TEST_KEY_PUBLIC, TEST_KEY_SEED};
pub use store::StoreError;

/// Why the key manager could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyManagerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("key files: {0}")]
    Store(#[from] StoreError),
    #[error("chain: {0}")]
    Chain(#[from] OnchainError),
    #[error("cannot bind {what} port {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("identity key: {0}")]
    Identity(String),
    #[error("a blocking task failed: {0}")]
    Join(String),
}

/// State shared by the key manager's tasks.
pub(crate) struct Shared {
    pub cfg: KeyManagerConfig,
    core: Mutex<KeyManagerCore>,
    pub stats: stats::KeyManagerStats,
    pub accept: Arc<AcceptStats>,
    pub policy: AccessPolicy,
    /// The identity key's public half: what the root must list as `key_manager_public_key`.
    pub identity_public: [u8; 32],
    pub chain: Option<NodeChain>,
}

impl Shared {
    /// The core. Its updates are single steps (a key added, keys dropped, a time recorded), so
    /// a panic elsewhere cannot leave it half-changed: a poisoned lock is still usable.
    pub(crate) fn core(&self) -> MutexGuard<'_, KeyManagerCore> {
        self.core.lock().unwrap_or_else(|p| {
            self.core.clear_poison();
            p.into_inner()
        })
    }

    /// The public keys the root lists (chain on), for the stats page.
    pub(crate) fn listed_on_root(&self) -> Option<Vec<[u8; 32]>> {
        self.chain.as_ref().map(|c| {
            c.registry
                .current()
                .state
                .registered_keys()
                .iter()
                .map(|k| k.public_key)
                .collect()
        })
    }
}

/// Unix seconds now (0 before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs a key manager until `shutdown` fires.
pub async fn run(
    cfg: KeyManagerConfig,
    shutdown: CancellationToken,
) -> Result<(), KeyManagerError> {
    cfg.validate()?;
    let att = cocoon_node::rotation::NodeAttestation::new(&cfg.attestation)?;
    let tls = att.server_config(att.verifier()?)?;
    let policy = AccessPolicy {
        allowed_proxy: net::parse_image_allowlist(
            "key manager: allowed_proxy_images",
            &cfg.allowed_proxy_images,
        )?,
        allowed_worker: net::parse_image_allowlist(
            "key manager: allowed_worker_images",
            &cfg.allowed_worker_images,
        )?,
        registry: None,
    };

    // Files first: a key manager that cannot keep its keys must not serve any.
    let (identity, stored) = {
        let (dir, keys_file, identity_file) =
            (cfg.data_dir.clone(), cfg.keys_file(), cfg.identity_file());
        tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            store::ensure_dir(&dir)?;
            let identity = store::load_or_create_identity(&identity_file)?;
            Ok((identity, store::load_keys(&keys_file)?))
        })
        .await
        .map_err(|e| KeyManagerError::Join(e.to_string()))??
    };
    let signer = cocoon_ton::payments::ProxySigner::from_seed(identity.as_bytes())
        .map_err(|e| KeyManagerError::Identity(e.to_string()))?;
    let identity_public = identity.public_key();
    drop(identity);

    let chain = if cfg.chain.enabled() {
        Some(cfg.chain.open(shutdown.child_token()).await?)
    } else {
        None
    };
    let policy = AccessPolicy {
        registry: chain.as_ref().map(|c| c.registry.clone()),
        ..policy
    };

    let bind = |what: &'static str, addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| KeyManagerError::Bind { what, addr, source })
    };
    let rpc_listener = bind("rpc", cfg.rpc_listen).await?;
    let stats_listener = bind("stats", cfg.stats_listen).await?;

    let shared = Arc::new(Shared {
        core: Mutex::new(KeyManagerCore::new(
            ScheduleRules::from_config(&cfg),
            stored,
        )),
        stats: stats::KeyManagerStats::new(),
        accept: Arc::default(),
        policy,
        identity_public,
        chain: chain.clone(),
        cfg,
    });
    // The first key (or a fresh one after a long stop) is on disk before anything is served.
    tick_and_store(&shared).await?;
    info!(
        rpc = %shared.cfg.rpc_listen,
        stats = %shared.cfg.stats_listen,
        identity = %hex::encode(identity_public),
        chain = chain.is_some(),
        "key manager starting"
    );
    for k in shared.core().public_keys(unix_now()) {
        info!(
            public_key = %hex::encode(k.public),
            valid_until = k.valid_until,
            test_key = k.test,
            "serving network key"
        );
    }

    let mut tasks = JoinSet::new();
    tasks.spawn(att.maintain(shutdown.clone()));
    tasks.spawn(schedule_loop(shared.clone(), shutdown.clone()).instrument(info_span!("schedule")));
    if let Some(chain) = chain {
        tasks.spawn(
            announce::run(shared.clone(), chain, signer, shutdown.clone())
                .instrument(info_span!("announce")),
        );
    }
    let conns = Arc::new(Mutex::new(JoinSet::new()));
    {
        let sh = shared.clone();
        let conns = conns.clone();
        let cancel = shutdown.clone();
        let slots = Arc::new(Semaphore::new(shared.cfg.max_sessions));
        let listen = ListenConfig {
            pow_difficulty: shared.cfg.pow_difficulty,
            tls,
            handshake_timeout: shared.cfg.handshake_timeout,
            session: SessionConfig::acceptor(),
            max_pending_handshakes: shared.cfg.max_pending_handshakes,
        };
        tasks.spawn(net::serve_with_limits(
            rpc_listener,
            listen,
            shared.cfg.accept.clone(),
            shared.accept.clone(),
            shutdown.clone(),
            move |s| {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    sh.stats.refused_full.inc();
                    warn!(remote = %s.remote, "max_sessions reached: connection closed");
                    s.session.close();
                    return;
                };
                let span = info_span!("session", remote = %s.remote);
                if let Ok(mut set) = conns.lock() {
                    set.spawn(serve::run(sh.clone(), s, slot, cancel.clone()).instrument(span));
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
    info!("key manager shutting down");
    tasks.shutdown().await;
    let set = conns.lock().map(|mut s| std::mem::take(&mut *s)).ok();
    if let Some(mut set) = set {
        set.shutdown().await;
    }
    Ok(())
}

/// Runs the schedule until `shutdown`: wakes when a key is due to be made or dropped (and at
/// least every minute, in case the clock moved), writes the keys, then serves them.
async fn schedule_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let now = unix_now();
        let next = shared.core().next_tick(now);
        let wait = Duration::from_secs(next.saturating_sub(now).clamp(1, 60));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if let Err(e) = tick_and_store(&shared).await {
            // The keys served so far stay valid (they overlap by `key_lifetime - rotate_every`);
            // the next wake-up tries again.
            error!(error = %e, "writing the network keys failed; no new key is served until it works");
        }
    }
}

/// One step of the schedule: the new key set is written to disk first and only then applied,
/// so a key is never served before it is stored.
async fn tick_and_store(shared: &Arc<Shared>) -> Result<(), KeyManagerError> {
    let now = unix_now();
    let seed = SecretSeed::generate(&mut rand::rng());
    // Only this task changes the keys: a tick on a copy and the same tick on the core (same
    // time, same seed) give the same keys.
    let (tick, keys) = {
        let mut next = shared.core().clone();
        let tick = next.tick(now, || seed.clone());
        (tick, next.keys().to_vec())
    };
    if !tick.changed() {
        return Ok(());
    }
    let path = shared.cfg.keys_file();
    tokio::task::spawn_blocking(move || store::save_keys(&path, &keys))
        .await
        .map_err(|e| KeyManagerError::Join(e.to_string()))??;
    let applied = shared.core().tick(now, || seed);
    for k in &applied.dropped {
        info!(public_key = %hex::encode(k.public), valid_until = k.valid_until, "network key expired");
    }
    if let Some(k) = &applied.added {
        shared.stats.keys_generated.inc();
        info!(public_key = %hex::encode(k.public), valid_until = k.valid_until, "network key generated");
    }
    Ok(())
}

/// The stats port: `/stats`, `/jsonstats`, `/metrics`, behind `stats_token` when one is set.
fn stats_router(shared: Arc<Shared>) -> axum::Router {
    let token = Arc::new(shared.cfg.stats_token.clone());
    cocoon_node::stats::router(Arc::new(stats::StatsView(shared))).layer(
        axum::middleware::from_fn_with_state(token, require_stats_token),
    )
}

async fn require_stats_token(
    axum::extract::State(token): axum::extract::State<Arc<String>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use subtle::ConstantTimeEq as _;
    if !token.is_empty() {
        let given = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                "wrong or missing stats token",
            )
                .into_response();
        }
    }
    next.run(request).await
}
