//! Attested sessions: the only way roles open or accept connections.
//!
//! Accept path: TCP accept (nodelay) → PoW challenge (`cocoon.powSimple`) → RA-TLS accept (the
//! peer's certificate is verified against the configured policy) → `tcp.connect` session.
//! Dial path: the mirror image, solving the PoW on a blocking thread.
//!
//! Each accepted connection's handshake runs in its own task owned by the accept loop; a peer that
//! does not answer the PoW is dropped at `pow_timeout`, one that never finishes TLS or the session
//! handshake at `handshake_timeout`, and the listener keeps serving.
//! Nothing here knows about Cocoon messages above `tcp.*`.
//!
//! # Idle sockets cannot starve handshakes ([`AcceptLimits`])
//! The accept loop never waits: every connection is accepted at once and either admitted as a
//! pending handshake or closed. A pending handshake that has not answered the PoW challenge
//! within `pow_timeout` (seconds, not `handshake_timeout`) is closed. When
//! `max_pending_handshakes` are pending, a new connection sheds the **oldest pending handshake
//! that has not yet answered its PoW** (`Tracker::admit` says why that one); one source
//! address may hold at most `max_pending_per_source` pending handshakes (same shedding among its
//! own) and `max_sessions_per_source` established sessions.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cocoon_attest::{AttestedPeer, ImageHashPattern};
use cocoon_proto::session::{self, Inbound, Session, SessionConfig};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A ready session with a verified peer.
pub struct AttestedSession {
    pub session: Session,
    pub inbound: Inbound,
    pub peer: AttestedPeer,
    pub remote: SocketAddr,
}

/// Why a dial or an accepted handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {0}: timed out")]
    ConnectTimeout(String),
    #[error("proof of work: {0}")]
    Pow(#[from] cocoon_proto::pow::PowError),
    #[error("RA-TLS: {0}")]
    Tls(#[from] cocoon_ratls::RaTlsError),
    #[error("session: {0}")]
    Session(#[from] cocoon_proto::session::SessionError),
}

impl NetError {
    /// The peer could not be reached (connect refused or timed out): expected while a peer
    /// restarts, and says nothing about the peer itself.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, NetError::Connect { .. } | NetError::ConnectTimeout(_))
    }

    /// We refused the peer's certificate: its attestation, its policy or its validity period.
    pub fn is_peer_certificate(&self) -> bool {
        matches!(
            self,
            NetError::Tls(cocoon_ratls::RaTlsError::PeerCertificate(_))
        )
    }

    /// We refused the peer's certificate for its validity period. Certificates start a minute
    /// before their issuer's clock (`CertOptions::DEFAULT_SKEW`), so this is the usual sign of
    /// two hosts whose clocks are further apart than that.
    pub fn is_certificate_time(&self) -> bool {
        matches!(
            self,
            NetError::Tls(cocoon_ratls::RaTlsError::PeerCertificate(
                cocoon_ratls::CertError::NotYetValid { .. }
                    | cocoon_ratls::CertError::Expired { .. }
            ))
        )
    }
}

/// Logs a failed dial the way every dialer should: an unreachable peer at debug (the dialer
/// retries with backoff, and a restarting peer is routine); a peer that was reached but whose
/// handshake failed (PoW, TLS, attestation refused) at warn, so an operator sees why a link
/// never comes up — with a hint when the clocks look apart. The backoff bounds the rate.
pub fn log_dial_failure(e: &NetError) {
    if e.is_unreachable() {
        debug!(error = %e, "dial failed");
    } else if e.is_certificate_time() {
        warn!(error = %e, "dial failed: {CLOCK_HINT}");
    } else {
        warn!(error = %e, "dial failed");
    }
}

/// What both sides say when a certificate is refused for its validity period.
const CLOCK_HINT: &str =
    "the peer's certificate is outside its validity; are the two hosts' clocks apart?";

/// How often an accept loop warns about peers whose certificate it refused (validity period,
/// attestation, policy); the rest go to debug, so a misconfigured peer cannot flood the log.
const CERT_REFUSAL_WARN_EVERY: Duration = Duration::from_secs(10);

/// How a listener accepts peers.
#[derive(Clone)]
pub struct ListenConfig {
    /// Leading zero bits the dialer must find before we spend a TLS handshake. Default 20.
    pub pow_difficulty: u32,
    pub tls: cocoon_ratls::RaTlsServerConfig,
    /// Bound on PoW + TLS + session handshake per connection.
    pub handshake_timeout: Duration,
    pub session: SessionConfig,
    /// Handshakes in progress at once. At the limit a new connection sheds the oldest pending
    /// handshake that has not answered its PoW yet, or is closed itself if every pending one
    /// has ([`AcceptLimits`]); the accept loop never waits.
    pub max_pending_handshakes: usize,
}

/// Limits of an accept loop beyond [`ListenConfig`]: how long a silent dialer may hold a pending
/// handshake, and how much one source address may hold. [`serve`] uses the defaults;
/// [`serve_with_limits`] takes them, e.g. from a role's config (`#[serde(default)]`: every key
/// optional).
///
/// A *source* is the peer's IPv4 address, or the /64 prefix of its IPv6 address (one host
/// usually holds a whole /64); IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcceptLimits {
    /// Bound on the proof-of-work answer, from the challenge until the dialer's 12-byte answer;
    /// a socket that sends nothing is closed after this instead of after `handshake_timeout`.
    /// Must cover solving at the port's difficulty (about 2^difficulty SHA-256). Default: 5s.
    #[serde(with = "humantime_serde")]
    pub pow_timeout: Duration,
    /// Handshakes one source may have in progress at once on a port; one more sheds that
    /// source's oldest handshake still waiting for its PoW answer (or is closed, if all of them
    /// have answered). Default: 8.
    pub max_pending_per_source: usize,
    /// Established sessions one source may hold on a port; a connection beyond that is closed
    /// at accept. Default: 256.
    pub max_sessions_per_source: usize,
    /// Loopback peers (127.0.0.0/8, ::1) skip the two per-source limits: on one host they are
    /// the operator's own processes (the dev network, benchmarks and tests all dial from
    /// 127.0.0.1, `scripts/bench-stress.sh` holds 1000 sessions). Default: true.
    pub exempt_loopback: bool,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        Self {
            pow_timeout: cocoon_proto::pow::DEFAULT_ANSWER_TIMEOUT,
            max_pending_per_source: 8,
            max_sessions_per_source: 256,
            exempt_loopback: true,
        }
    }
}

impl AcceptLimits {
    /// The source `remote` counts against, or `None` when it is exempt.
    fn source_of(&self, remote: &SocketAddr) -> Option<IpAddr> {
        let ip = remote.ip().to_canonical();
        if self.exempt_loopback && ip.is_loopback() {
            return None;
        }
        Some(match ip {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        })
    }
}

/// How a dialer connects.
#[derive(Clone)]
pub struct DialConfig {
    /// Highest PoW difficulty we agree to solve (Cocoon: 28).
    pub max_pow_difficulty: u32,
    pub tls: cocoon_ratls::RaTlsClientConfig,
    pub connect_timeout: Duration,
    /// Bound on solving the PoW (difficulty 28 takes minutes on one core).
    pub pow_timeout: Duration,
    pub handshake_timeout: Duration,
    pub session: SessionConfig,
}

/// Counters of the accept path, shown on the role's stats page.
#[derive(Debug, Default)]
pub struct AcceptStats {
    pub accepted: AtomicU64,
    pub established: AtomicU64,
    pub failed: AtomicU64,
    /// Connections closed by the [`AcceptLimits`]: refused at accept or shed while pending.
    pub shed: AtomicU64,
}

impl AcceptStats {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "accepted": self.accepted.load(Ordering::Relaxed),
            "established": self.established.load(Ordering::Relaxed),
            "handshake_failed": self.failed.load(Ordering::Relaxed),
            "handshake_shed": self.shed.load(Ordering::Relaxed),
        })
    }
}

/// Dials `addr`, solves the PoW, runs RA-TLS and the session handshake.
pub async fn dial(addr: &str, cfg: &DialConfig) -> Result<AttestedSession, NetError> {
    let tcp = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| NetError::ConnectTimeout(addr.to_string()))?
        .map_err(|source| NetError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let remote = tcp.peer_addr().map_err(|source| NetError::Connect {
        addr: addr.to_string(),
        source,
    })?;
    let mut tcp = tcp;
    cocoon_proto::pow::answer_challenge(&mut tcp, cfg.max_pow_difficulty, cfg.pow_timeout).await?;
    let (tls, peer) = cocoon_ratls::connect(cfg.tls.clone(), tcp, cfg.handshake_timeout).await?;
    let (session, inbound) = session::establish(tls, cfg.session.clone()).await?;
    Ok(AttestedSession {
        session,
        inbound,
        peer,
        remote,
    })
}

/// Accepts peers on `listener` until `cancel` fires, handing each established session to
/// `on_session`, with the default [`AcceptLimits`]. Returns when cancelled; in-flight handshakes
/// are aborted.
pub async fn serve<F>(
    listener: TcpListener,
    cfg: ListenConfig,
    stats: Arc<AcceptStats>,
    cancel: CancellationToken,
    on_session: F,
) where
    F: Fn(AttestedSession) + Send + Sync + 'static,
{
    serve_with_limits(
        listener,
        cfg,
        AcceptLimits::default(),
        stats,
        cancel,
        on_session,
    )
    .await;
}

/// [`serve`] with explicit [`AcceptLimits`].
pub async fn serve_with_limits<F>(
    listener: TcpListener,
    cfg: ListenConfig,
    limits: AcceptLimits,
    stats: Arc<AcceptStats>,
    cancel: CancellationToken,
    on_session: F,
) where
    F: Fn(AttestedSession) + Send + Sync + 'static,
{
    let on_session = Arc::new(on_session);
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    // Handshake tasks, and for sources under a limit the watch that counts their session
    // until it closes; all aborted when the loop ends.
    let mut handshakes = JoinSet::new();
    let local = listener.local_addr().ok();
    info!(?local, "listening");
    let last_refusal_warning = Arc::new(Mutex::new(None::<std::time::Instant>));
    // One warning per period when the limits close connections (the port is likely flooded).
    let last_shed_warning = Arc::new(Mutex::new(None::<std::time::Instant>));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            // Reap finished handshake tasks so the set does not grow.
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => continue,
            r = listener.accept() => r,
        };
        let (tcp, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let source = limits.source_of(&remote);
        let admitted = lock(&tracker).admit(source, &limits, cfg.max_pending_handshakes);
        let (id, shed) = match admitted {
            Ok(a) => a,
            Err(refusal) => {
                stats.shed.fetch_add(1, Ordering::Relaxed);
                if warn_due(&last_shed_warning) {
                    warn!(%remote, reason = refusal.as_str(), "connection refused by the accept limits");
                } else {
                    debug!(%remote, reason = refusal.as_str(), "connection refused by the accept limits");
                }
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let cfg = cfg.clone();
        let pow_timeout = limits.pow_timeout;
        let stats = stats.clone();
        let on_session = on_session.clone();
        let tracker = tracker.clone();
        let last_refusal_warning = last_refusal_warning.clone();
        let last_shed_warning = last_shed_warning.clone();
        handshakes.spawn(async move {
            let slot = PendingSlot {
                tracker: &tracker,
                id,
            };
            let passed_pow = || lock(&tracker).passed_pow(id);
            let work = tokio::time::timeout(
                cfg.handshake_timeout,
                handshake(tcp, &cfg, pow_timeout, passed_pow),
            );
            let result = tokio::select! {
                r = work => r,
                _ = shed.cancelled() => {
                    // A newer connection needed the slot; the socket closes as the task ends.
                    stats.shed.fetch_add(1, Ordering::Relaxed);
                    if warn_due(&last_shed_warning) {
                        warn!(%remote, "pending handshake shed before its PoW answer to make room for a newer connection");
                    } else {
                        debug!(%remote, "pending handshake shed before its PoW answer");
                    }
                    return;
                }
            };
            drop(slot);
            match result {
                Ok(Ok((session, inbound, peer))) => {
                    stats.established.fetch_add(1, Ordering::Relaxed);
                    // Counted against its source until it closes; the watch does not keep the
                    // session alive.
                    let counted = source.map(|ip| {
                        (
                            SessionSlot::open(&tracker, ip),
                            session.close_watch(),
                        )
                    });
                    on_session(AttestedSession {
                        session,
                        inbound,
                        peer,
                        remote,
                    });
                    if let Some((slot, watch)) = counted {
                        watch.closed().await;
                        drop(slot);
                    }
                }
                Ok(Err(e)) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    if e.is_peer_certificate() && warn_due(&last_refusal_warning) {
                        if e.is_certificate_time() {
                            warn!(%remote, error = %e, "handshake refused: {CLOCK_HINT}");
                        } else {
                            warn!(%remote, error = %e, "handshake refused: the peer's certificate was not accepted");
                        }
                    } else {
                        debug!(%remote, error = %e, "handshake failed");
                    }
                }
                Err(_) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    debug!(%remote, "handshake timed out");
                }
            }
        });
    }
    handshakes.shutdown().await;
}

/// Why the accept limits closed a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Its source holds `max_sessions_per_source` sessions.
    SourceSessions,
    /// Its source has `max_pending_per_source` handshakes pending, all past their PoW.
    SourcePending,
    /// `max_pending_handshakes` are pending, all past their PoW.
    Full,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::SourceSessions => "sessions per source",
            Refusal::SourcePending => "pending handshakes per source",
            Refusal::Full => "pending handshakes",
        }
    }
}

/// One pending handshake.
struct Pending {
    /// `None` when exempt from the per-source limits.
    source: Option<IpAddr>,
    /// The dialer answered the PoW challenge correctly.
    passed_pow: bool,
    /// Cancelled to shed it.
    shed: CancellationToken,
}

/// What one source holds on a port.
#[derive(Debug, Default, Clone, Copy)]
struct SourceCount {
    pending: usize,
    sessions: usize,
}

/// The pending handshakes of one accept loop and what each limited source holds.
#[derive(Default)]
struct Tracker {
    next_id: u64,
    /// By admission order: the smallest id is the oldest.
    pending: BTreeMap<u64, Pending>,
    /// Only sources under the limits, only while they hold something.
    sources: HashMap<IpAddr, SourceCount>,
}

fn lock(tracker: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    // Every update is a single insert, remove or counter step: a panic elsewhere cannot leave
    // the table inconsistent, so a poisoned lock is still usable.
    tracker.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Tracker {
    /// Admits a new connection from `source` as a pending handshake (its id and shed token),
    /// shedding an older one if a limit is reached, or refuses it.
    ///
    /// Whom to shed: the **oldest pending handshake that has not yet answered its PoW**.
    /// - Not the newest arrival: an attacker that keeps the table full of idle sockets would
    ///   then have every honest dialer refused for as long as it keeps reopening them (every
    ///   `pow_timeout`). Shedding the oldest gives each new dialer its whole `pow_timeout`, so
    ///   to starve honest dialers an attacker must open connections faster than they answer
    ///   (a flood, which the per-source limit confines to its own sources).
    /// - Not one that has answered: it paid its ~2^difficulty hashes, and the newcomer has paid
    ///   nothing. If every pending handshake has answered, the newcomer is the one closed.
    fn admit(
        &mut self,
        source: Option<IpAddr>,
        limits: &AcceptLimits,
        max_pending: usize,
    ) -> Result<(u64, CancellationToken), Refusal> {
        if let Some(ip) = source {
            let held = self.sources.get(&ip).copied().unwrap_or_default();
            if held.sessions >= limits.max_sessions_per_source.max(1) {
                return Err(Refusal::SourceSessions);
            }
            if held.pending >= limits.max_pending_per_source.max(1)
                && !self.shed_oldest(|p| p.source == Some(ip))
            {
                return Err(Refusal::SourcePending);
            }
        }
        if self.pending.len() >= max_pending.max(1) && !self.shed_oldest(|_| true) {
            return Err(Refusal::Full);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let shed = CancellationToken::new();
        self.pending.insert(
            id,
            Pending {
                source,
                passed_pow: false,
                shed: shed.clone(),
            },
        );
        if let Some(ip) = source {
            self.sources.entry(ip).or_default().pending += 1;
        }
        Ok((id, shed))
    }

    /// Sheds the oldest pending handshake matching `pick` that has not answered its PoW.
    fn shed_oldest(&mut self, pick: impl Fn(&Pending) -> bool) -> bool {
        let victim = self
            .pending
            .iter()
            .find(|(_, p)| !p.passed_pow && pick(p))
            .map(|(id, _)| *id);
        match victim.and_then(|id| self.remove(id)) {
            Some(p) => {
                p.shed.cancel();
                true
            }
            None => false,
        }
    }

    fn passed_pow(&mut self, id: u64) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.passed_pow = true;
        }
    }

    /// Removes a pending handshake (finished, failed or shed).
    fn remove(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(ip) = p.source {
            self.release(ip, |c| c.pending = c.pending.saturating_sub(1));
        }
        Some(p)
    }

    fn release(&mut self, ip: IpAddr, step: impl FnOnce(&mut SourceCount)) {
        if let Some(c) = self.sources.get_mut(&ip) {
            step(c);
            if c.pending == 0 && c.sessions == 0 {
                self.sources.remove(&ip);
            }
        }
    }
}

/// Removes its pending handshake from the tracker when the handshake task ends either way.
struct PendingSlot<'a> {
    tracker: &'a Mutex<Tracker>,
    id: u64,
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        lock(self.tracker).remove(self.id);
    }
}

/// Counts one established session against its source while it lives.
struct SessionSlot<'a> {
    tracker: &'a Mutex<Tracker>,
    ip: IpAddr,
}

impl<'a> SessionSlot<'a> {
    fn open(tracker: &'a Mutex<Tracker>, ip: IpAddr) -> Self {
        lock(tracker).sources.entry(ip).or_default().sessions += 1;
        Self { tracker, ip }
    }
}

impl Drop for SessionSlot<'_> {
    fn drop(&mut self) {
        lock(self.tracker).release(self.ip, |c| c.sessions = c.sessions.saturating_sub(1));
    }
}

/// True at most once per [`CERT_REFUSAL_WARN_EVERY`] for one listener.
fn warn_due(last: &Mutex<Option<std::time::Instant>>) -> bool {
    let Ok(mut last) = last.lock() else {
        return false;
    };
    let now = std::time::Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < CERT_REFUSAL_WARN_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

/// The accept side of one connection; `passed_pow` runs once the dialer's PoW answer checked
/// out, which must come within `pow_timeout`.
async fn handshake(
    mut tcp: TcpStream,
    cfg: &ListenConfig,
    pow_timeout: Duration,
    passed_pow: impl FnOnce(),
) -> Result<(Session, Inbound, AttestedPeer), NetError> {
    cocoon_proto::pow::serve_challenge(&mut tcp, cfg.pow_difficulty, pow_timeout).await?;
    passed_pow();
    let (tls, peer) = cocoon_ratls::accept(cfg.tls.clone(), tcp, cfg.handshake_timeout).await?;
    let (session, inbound) = session::establish(tls, cfg.session.clone()).await?;
    Ok((session, inbound, peer))
}

/// The application-layer image check: with a non-empty allowlist, a peer must be attested with
/// an image that matches one of its entries. Entries are hex SHA-256 image hashes, optionally in
/// Cocoon's prefixed form `tdx@<hex>` / `sev@<hex>`, which match only evidence of that TEE
/// family (fake evidence counts as the family it imitates); an unprefixed hash matches any
/// family. Applied after the TLS policy, so an allowlist can change (later: from the root
/// contract) without rebuilding TLS configs. An unparsable entry refuses every peer (roles
/// refuse such a config at start-up with [`parse_image_allowlist`]).
pub fn check_image(allowed: &[String], peer: &AttestedPeer) -> Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    let Some(h) = peer.image_hash else {
        return Err("peer presented no attested image but an image allowlist is configured".into());
    };
    for entry in allowed {
        let pattern: ImageHashPattern =
            entry.parse().map_err(|e| format!("image allowlist: {e}"))?;
        if pattern.allows(peer) {
            return Ok(());
        }
    }
    Err(format!(
        "peer image {} ({} evidence) is not in the allowlist",
        hex::encode(h),
        peer.kind
    ))
}

/// Parses the image allowlist `entries` of config key `key` (see [`check_image`] for the
/// forms), so a typo stops the node at start-up instead of refusing every peer.
pub fn parse_image_allowlist(
    key: &str,
    entries: &[String],
) -> Result<Vec<ImageHashPattern>, crate::config::ConfigError> {
    entries
        .iter()
        .map(|e| {
            e.parse()
                .map_err(|err| crate::config::ConfigError::Invalid(format!("{key}: {err}")))
        })
        .collect()
}

#[cfg(test)]
mod tests;

/// Every 5 s until `shutdown`, takes the finished tasks out of `set`, so a set holding one task
/// per connection does not grow with every connection ever accepted.
pub async fn reap_finished<T: 'static>(
    set: Arc<Mutex<JoinSet<T>>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        if let Ok(mut set) = set.lock() {
            while set.try_join_next().is_some() {}
        }
    }
}
