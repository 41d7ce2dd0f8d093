//! Accept-path tests. The accept-limit tests run a real listener (PoW + RA-TLS with software
//! evidence) on 127.0.0.1 and real sockets against it, on real time with generous deadlines.

use std::sync::Mutex;

use cocoon_proto::session::SessionConfig;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_util::task::AbortOnDropHandle;

use super::*;
use crate::config::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
use crate::rotation::NodeAttestation;

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
fn image_allowlist_with_cocoon_prefixes() {
    use cocoon_attest::EvidenceKind;
    let hash = "ab".repeat(32);
    let peer = |kind| AttestedPeer {
        kind,
        public_key: [7; 32],
        image_hash: Some([0xab; 32]),
        evidence_digest: None,
        sealing_key: None,
        certificate: None,
        not_after: None,
    };
    let tdx = vec![format!("tdx@{hash}")];
    let sev = vec![format!("sev@{}", hash.to_uppercase())];
    let plain = vec![hash.clone()];
    for (kind, is_tdx) in [
        (EvidenceKind::Tdx, true),
        (EvidenceKind::InsecureSoftware, true),
        (EvidenceKind::SevSnp, false),
        (EvidenceKind::InsecureSoftwareSev, false),
    ] {
        assert_eq!(check_image(&tdx, &peer(kind)).is_ok(), is_tdx, "{kind}");
        assert_eq!(check_image(&sev, &peer(kind)).is_ok(), !is_tdx, "{kind}");
        assert!(check_image(&plain, &peer(kind)).is_ok(), "{kind}");
    }
    // A prefixed entry for the other family does not stop a later matching one.
    let both = vec![format!("sev@{hash}"), format!("tdx@{hash}")];
    assert!(check_image(&both, &peer(EvidenceKind::Tdx)).is_ok());
    // A bad entry refuses (fail closed) and is a config error up front.
    let bad = vec![format!("amd@{hash}")];
    let err = check_image(&bad, &peer(EvidenceKind::Tdx)).unwrap_err();
    assert!(err.contains("tdx@ or sev@"), "{err}");
    assert!(parse_image_allowlist("allowed_worker_images", &bad).is_err());
    let ok = parse_image_allowlist("k", &[format!("tdx@{hash}"), hash]).unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[0].family, Some(cocoon_attest::TeeFamily::Tdx));
    assert_eq!(ok[1].family, None);
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

// === accept limits (security review H4, M7 per source) ===

/// A listener on 127.0.0.1 and what a test needs to drive it.
struct Listener {
    addr: String,
    stats: Arc<AcceptStats>,
    /// Established sessions, held so they stay up until a test drops them.
    sessions: Arc<Mutex<Vec<AttestedSession>>>,
    dial: DialConfig,
    _serve: AbortOnDropHandle<()>,
    _stop: tokio_util::sync::DropGuard,
}

async fn listen(max_pending_handshakes: usize, limits: AcceptLimits) -> Listener {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = NodeAttestation::new(&AttestationConfig::dev(
        EvidenceChoice::InsecureSoftware,
        PeerPolicyChoice::InsecureSoftware,
    ))
    .expect("server attestation");
    let client = NodeAttestation::new(&AttestationConfig::dev(
        EvidenceChoice::None,
        PeerPolicyChoice::InsecureSoftware,
    ))
    .expect("client attestation");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let cfg = ListenConfig {
        pow_difficulty: 1,
        tls: server
            .server_config(server.verifier_for(PeerPolicyChoice::Any).expect("any"))
            .expect("server tls"),
        handshake_timeout: Duration::from_secs(120),
        session: SessionConfig::acceptor(),
        max_pending_handshakes,
    };
    let stats = Arc::new(AcceptStats::default());
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let held = sessions.clone();
    let serve = AbortOnDropHandle::new(tokio::spawn(serve_with_limits(
        listener,
        cfg,
        limits,
        stats.clone(),
        stop.clone(),
        move |s| {
            if let Ok(mut v) = held.lock() {
                v.push(s);
            }
        },
    )));
    let dial = DialConfig {
        max_pow_difficulty: 8,
        tls: client
            .client_config(client.verifier().expect("verifier"))
            .expect("client tls"),
        connect_timeout: Duration::from_secs(5),
        pow_timeout: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(30),
        session: SessionConfig::dialer(),
    };
    Listener {
        addr,
        stats,
        sessions,
        dial,
        _serve: serve,
        _stop: stop.drop_guard(),
    }
}

impl Listener {
    /// A TCP connection that will never send a byte.
    async fn idle_socket(&self) -> TcpStream {
        TcpStream::connect(&self.addr).await.expect("connect")
    }

    /// Waits (10 s at most) until the listener has accepted `n` connections in all.
    async fn accepted(&self, n: u64) {
        let wait = async {
            while self.stats.accepted.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("the listener never accepted {n} connections"));
    }

    /// A real dial (PoW, RA-TLS, session), within 10 s.
    async fn dial(&self) -> Result<AttestedSession, NetError> {
        match tokio::time::timeout(Duration::from_secs(10), dial(&self.addr, &self.dial)).await {
            Ok(r) => r,
            Err(_) => panic!("a dial did not finish within 10 s"),
        }
    }

    fn shed(&self) -> u64 {
        self.stats.shed.load(Ordering::Relaxed)
    }

    /// Waits (10 s at most) until `n` connections were shed or refused in all (a shed
    /// handshake's task counts itself, a moment after the newer connection was admitted).
    async fn shed_at_least(&self, n: u64) -> bool {
        let wait = async {
            while self.shed() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .is_ok()
    }
}

/// Reads the 24-byte challenge, then waits (10 s at most) for the listener to close the socket.
async fn closed_by_listener(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    let wait = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_beyond_the_pending_limit_do_not_lock_out_a_real_dialer() {
    // The PoW deadline is far away: only shedding can make room.
    let limits = AcceptLimits {
        pow_timeout: Duration::from_secs(120),
        ..AcceptLimits::default()
    };
    let l = listen(4, limits).await;
    let mut idle = Vec::new();
    for _ in 0..4 + 6 {
        idle.push(l.idle_socket().await);
    }
    // Every idle socket was accepted: the loop never waits for a slot.
    l.accepted(10).await;
    let live = l.dial().await.expect("a real dialer got through");
    assert!(!live.session.is_closed());
    assert!(
        l.shed_at_least(7).await,
        "6 idle sockets shed for newer ones, one more for the dialer: {}",
        l.shed()
    );
    assert_eq!(l.stats.established.load(Ordering::Relaxed), 1);
    // The oldest were shed: the first idle socket is closed.
    assert!(closed_by_listener(&mut idle[0]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_at_the_pow_deadline_not_the_handshake_timeout() {
    let limits = AcceptLimits {
        pow_timeout: Duration::from_secs(1),
        ..AcceptLimits::default()
    };
    // handshake_timeout is 120 s; the check waits 10 s at most.
    let l = listen(64, limits).await;
    let mut silent = l.idle_socket().await;
    assert!(
        closed_by_listener(&mut silent).await,
        "a socket that never answered the PoW was still open after 10 s"
    );
    assert_eq!(l.stats.failed.load(Ordering::Relaxed), 1);
    // The listener still serves.
    l.dial().await.expect("dial after the silent socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_holds_at_most_its_pending_handshakes() {
    let limits = AcceptLimits {
        pow_timeout: Duration::from_secs(120),
        max_pending_per_source: 2,
        exempt_loopback: false,
        ..AcceptLimits::default()
    };
    let l = listen(64, limits).await;
    let mut first = l.idle_socket().await;
    l.accepted(1).await;
    let mut second = l.idle_socket().await;
    l.accepted(2).await;
    let third = l.idle_socket().await;
    l.accepted(3).await;
    // Far below the 64 pending in all, but the source's oldest made room for its newest.
    assert!(
        closed_by_listener(&mut first).await,
        "a source held more than 2 pending handshakes"
    );
    assert_eq!(l.shed(), 1);
    // A real dialer from the same source still gets through (shedding another idle one).
    l.dial().await.expect("dial from the same source");
    assert!(
        closed_by_listener(&mut second).await,
        "the dialer shed the next oldest"
    );
    assert_eq!(l.shed(), 2);
    drop(third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_holds_at_most_its_sessions() {
    let limits = AcceptLimits {
        max_sessions_per_source: 1,
        exempt_loopback: false,
        ..AcceptLimits::default()
    };
    let l = listen(64, limits).await;
    let first = l.dial().await.expect("first session");
    assert!(
        l.dial().await.is_err(),
        "a second session from the same source was accepted"
    );
    assert_eq!(l.shed(), 1);
    // Once the first session is gone on the listener's side, the source may connect again.
    first.session.close();
    let wait = async {
        loop {
            let open = l
                .sessions
                .lock()
                .map(|v| v.iter().any(|s| !s.session.is_closed()))
                .unwrap_or(false);
            if !open {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the listener never saw the session close");
    let mut again = None;
    for _ in 0..50 {
        if let Ok(s) = l.dial().await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        again.is_some(),
        "the source stayed locked out after its session closed"
    );
}

#[test]
fn shedding_picks_the_oldest_unanswered_handshake() {
    let limits = AcceptLimits::default();
    let mut t = Tracker::default();
    let ip = |n: u8| Some(IpAddr::from([10, 0, 0, n]));
    let (a, a_shed) = t.admit(ip(1), &limits, 3).expect("a");
    let (b, b_shed) = t.admit(ip(2), &limits, 3).expect("b");
    let (_c, c_shed) = t.admit(ip(3), &limits, 3).expect("c");
    // `a` answered its PoW: the oldest that has not is `b`.
    t.passed_pow(a);
    let (_d, _) = t.admit(ip(4), &limits, 3).expect("d");
    assert!(!a_shed.is_cancelled() && b_shed.is_cancelled() && !c_shed.is_cancelled());
    assert!(t.remove(b).is_none(), "a shed handshake leaves the table");
    // Once every pending handshake has answered, the newcomer is refused instead.
    let ids: Vec<u64> = t.pending.keys().copied().collect();
    for id in ids {
        t.passed_pow(id);
    }
    assert_eq!(t.admit(ip(5), &limits, 3), Err(Refusal::Full));
    // Per source, the same rule within the source.
    let one = AcceptLimits {
        max_pending_per_source: 1,
        ..AcceptLimits::default()
    };
    let mut t = Tracker::default();
    let (_x, x_shed) = t.admit(ip(9), &one, 64).expect("x");
    let (y, _) = t.admit(ip(9), &one, 64).expect("y sheds x");
    assert!(x_shed.is_cancelled());
    t.passed_pow(y);
    assert_eq!(t.admit(ip(9), &one, 64), Err(Refusal::SourcePending));
    assert!(
        t.admit(ip(8), &one, 64).is_ok(),
        "other sources are not affected"
    );
    t.remove(y);
    assert!(t.admit(ip(9), &one, 64).is_ok());
}

#[test]
fn sources_are_ipv4_addresses_or_ipv6_prefixes_and_loopback_is_exempt_by_default() {
    let limits = AcceptLimits::default();
    let at = |s: &str| limits.source_of(&s.parse().expect("addr"));
    assert_eq!(at("127.0.0.1:5"), None);
    assert_eq!(at("[::1]:5"), None);
    assert_eq!(at("[::ffff:127.0.0.1]:5"), None);
    assert_eq!(at("10.1.2.3:5"), Some(IpAddr::from([10, 1, 2, 3])));
    assert_eq!(at("[::ffff:10.1.2.3]:5"), Some(IpAddr::from([10, 1, 2, 3])));
    assert_eq!(
        at("[2001:db8:1:2:aaaa::1]:5"),
        at("[2001:db8:1:2:bbbb::9]:7")
    );
    assert_ne!(at("[2001:db8:1:2::1]:5"), at("[2001:db8:1:3::1]:5"));
    let strict = AcceptLimits {
        exempt_loopback: false,
        ..limits
    };
    assert_eq!(
        strict.source_of(&"127.0.0.1:5".parse().expect("addr")),
        Some(IpAddr::from([127, 0, 0, 1]))
    );
}

#[test]
fn accept_limits_read_from_toml_with_defaults() {
    let l: AcceptLimits =
        toml::from_str("pow_timeout = \"3s\"\nmax_sessions_per_source = 9").expect("parse");
    assert_eq!(l.pow_timeout, Duration::from_secs(3));
    assert_eq!(l.max_sessions_per_source, 9);
    assert_eq!(
        l.max_pending_per_source,
        AcceptLimits::default().max_pending_per_source
    );
    assert!(toml::from_str::<AcceptLimits>("nope = 1").is_err());
}
