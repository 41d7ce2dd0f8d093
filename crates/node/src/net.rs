//! Attested sessions: the only way roles open or accept connections.
//!
//! Accept path: TCP accept (nodelay) → PoW challenge (`cocoon.powSimple`) → RA-TLS accept (the
//! peer's certificate is verified against the configured policy) → `tcp.connect` session.
//! Dial path: the mirror image, solving the PoW on a blocking thread.
//!
//! Each accepted connection's handshake runs in its own task owned by the accept loop; a peer that
//! never finishes PoW or TLS is dropped at `handshake_timeout` and the listener keeps serving.
//! Nothing here knows about Cocoon messages above `tcp.*`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cocoon_attest::AttestedPeer;
use cocoon_proto::session::{self, Inbound, Session, SessionConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
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
    /// Handshakes in progress at once; further accepted sockets wait.
    pub max_pending_handshakes: usize,
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
}

impl AcceptStats {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "accepted": self.accepted.load(Ordering::Relaxed),
            "established": self.established.load(Ordering::Relaxed),
            "handshake_failed": self.failed.load(Ordering::Relaxed),
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
/// `on_session`. Returns when cancelled; in-flight handshakes are aborted.
pub async fn serve<F>(
    listener: TcpListener,
    cfg: ListenConfig,
    stats: Arc<AcceptStats>,
    cancel: CancellationToken,
    on_session: F,
) where
    F: Fn(AttestedSession) + Send + Sync + 'static,
{
    let on_session = Arc::new(on_session);
    let permits = Arc::new(Semaphore::new(cfg.max_pending_handshakes.max(1)));
    let mut handshakes = JoinSet::new();
    let local = listener.local_addr().ok();
    info!(?local, "listening");
    let last_refusal_warning = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
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
        let _ = tcp.set_nodelay(true);
        let permit = match permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => break,
        };
        let cfg = cfg.clone();
        let stats = stats.clone();
        let on_session = on_session.clone();
        let last_refusal_warning = last_refusal_warning.clone();
        handshakes.spawn(async move {
            let _permit = permit;
            let result = tokio::time::timeout(cfg.handshake_timeout, handshake(tcp, &cfg)).await;
            match result {
                Ok(Ok((session, inbound, peer))) => {
                    stats.established.fetch_add(1, Ordering::Relaxed);
                    on_session(AttestedSession {
                        session,
                        inbound,
                        peer,
                        remote,
                    });
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

/// True at most once per [`CERT_REFUSAL_WARN_EVERY`] for one listener.
fn warn_due(last: &std::sync::Mutex<Option<std::time::Instant>>) -> bool {
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

async fn handshake(
    mut tcp: TcpStream,
    cfg: &ListenConfig,
) -> Result<(Session, Inbound, AttestedPeer), NetError> {
    cocoon_proto::pow::serve_challenge(&mut tcp, cfg.pow_difficulty, cfg.handshake_timeout).await?;
    let (tls, peer) = cocoon_ratls::accept(cfg.tls.clone(), tcp, cfg.handshake_timeout).await?;
    let (session, inbound) = session::establish(tls, cfg.session.clone()).await?;
    Ok((session, inbound, peer))
}

/// The application-layer image check: with a non-empty allowlist (hex SHA-256 image hashes),
/// a peer must be attested with one of them. Applied after the TLS policy, so an allowlist can
/// change (later: from the root contract) without rebuilding TLS configs.
pub fn check_image(allowed: &[String], peer: &AttestedPeer) -> Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    match peer.image_hash {
        Some(h) => {
            let h = hex::encode(h);
            if allowed.iter().any(|a| a.eq_ignore_ascii_case(&h)) {
                Ok(())
            } else {
                Err(format!("peer image {h} is not in the allowlist"))
            }
        }
        None => Err("peer presented no attested image but an image allowlist is configured".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_allowlist() {
        let mut peer = AttestedPeer::unattested([7; 32]);
        assert!(check_image(&[], &peer).is_ok());
        let allowed = vec!["AB".repeat(32)];
        assert!(
            check_image(&allowed, &peer).is_err(),
            "unattested peer passed an allowlist"
        );
        peer.image_hash = Some([0xab; 32]);
        assert!(check_image(&allowed, &peer).is_ok());
        peer.image_hash = Some([0xcd; 32]);
        assert!(check_image(&allowed, &peer).is_err());
    }

    #[test]
    fn refused_certificates_are_told_apart_from_unreachable_peers() {
        use cocoon_ratls::{CertError, RaTlsError};
        let refused = |c: CertError| NetError::Tls(RaTlsError::PeerCertificate(c));
        let early = refused(CertError::NotYetValid {
            not_before: 200,
            now: 100,
        });
        assert!(early.is_peer_certificate() && early.is_certificate_time());
        assert!(!early.is_unreachable());
        let chain = refused(CertError::ChainNotAllowed { count: 2 });
        assert!(chain.is_peer_certificate() && !chain.is_certificate_time());
        let timeout = NetError::ConnectTimeout("127.0.0.1:1".into());
        assert!(timeout.is_unreachable() && !timeout.is_peer_certificate());
        let no_cert = NetError::Tls(RaTlsError::NoPeerCertificate);
        assert!(!no_cert.is_peer_certificate());
    }

    #[test]
    fn refusal_warnings_are_throttled_per_listener() {
        let last = std::sync::Mutex::new(None);
        assert!(warn_due(&last), "the first refusal warns");
        assert!(!warn_due(&last), "a second one within the period does not");
        *last.lock().expect("lock") =
            Some(std::time::Instant::now() - CERT_REFUSAL_WARN_EVERY - Duration::from_millis(1));
        assert!(warn_due(&last), "after the period it warns again");
    }
}
