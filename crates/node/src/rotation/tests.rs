//! Rotation through real attested sessions on 127.0.0.1: a session opened before a rotation
//! keeps working past the old certificate's expiry, and new connections get the new one.

use std::sync::Mutex;

use bytes::Bytes;
use cocoon_proto::session::{InboundMessage, SessionConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;

use super::*;
use crate::config::EvidenceChoice;
use crate::net::{self, AcceptStats, AttestedSession, DialConfig, ListenConfig};

#[test]
fn rotation_is_two_thirds_into_the_validity() {
    let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let v = Duration::from_secs(90);
    assert_eq!(
        rotation_time(issued + v, v),
        issued + Duration::from_secs(60)
    );
    let v = Duration::from_secs(86_400);
    assert_eq!(
        rotation_time(issued + v, v),
        issued + Duration::from_secs(57_600)
    );
}

#[test]
fn retries_are_bounded() {
    assert_eq!(retry_delay(Duration::from_secs(86_400)), MAX_RETRY);
    assert_eq!(
        retry_delay(Duration::from_secs(3)),
        Duration::from_millis(300)
    );
    assert_eq!(
        retry_delay(Duration::from_millis(10)),
        Duration::from_millis(100)
    );
}

#[test]
fn only_tdx_verifiers_turn_collateral_refresh_on() {
    let cfg = AttestationConfig::dev(
        EvidenceChoice::InsecureSoftware,
        PeerPolicyChoice::InsecureSoftware,
    );
    let node = NodeAttestation::new(&cfg).expect("node");
    node.verifier().expect("verifier");
    node.verifier_for(PeerPolicyChoice::Any).expect("verifier");
    assert!(!node.uses_tdx.load(Ordering::Relaxed));
    node.verifier_for(PeerPolicyChoice::Tdx)
        .expect("tdx verifier");
    assert!(node.uses_tdx.load(Ordering::Relaxed));
    // No PCCS configured: nothing can be fetched, the loop ends at once.
    assert!(!node.collateral().can_fetch());
}

/// Echoes every packet of `s` back, in a task owned by `set`.
fn echo(set: &Mutex<JoinSet<()>>, s: AttestedSession) {
    let AttestedSession {
        session,
        mut inbound,
        ..
    } = s;
    if let Ok(mut set) = set.lock() {
        set.spawn(async move {
            while let Some(m) = inbound.recv().await {
                if let InboundMessage::Packet(d) = m {
                    let _ = session.send(d).await;
                }
            }
        });
    }
}

async fn roundtrip(s: &mut AttestedSession, what: &'static [u8]) {
    s.session
        .send(Bytes::from_static(what))
        .await
        .expect("send");
    match tokio::time::timeout(Duration::from_secs(10), s.inbound.recv()).await {
        Ok(Some(InboundMessage::Packet(d))) => assert_eq!(&d[..], what),
        other => panic!("no echo: {:?}", other.map(|m| m.is_some())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_session_survives_rotation_and_new_connections_get_the_new_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut server_cfg = AttestationConfig::dev(
        EvidenceChoice::InsecureSoftware,
        PeerPolicyChoice::InsecureSoftware,
    );
    server_cfg.cert_validity = Duration::from_secs(3);
    let server = NodeAttestation::new(&server_cfg).expect("server attestation");
    let first = server.current();
    let client_cfg =
        AttestationConfig::dev(EvidenceChoice::None, PeerPolicyChoice::InsecureSoftware);
    let client = NodeAttestation::new(&client_cfg).expect("client attestation");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let listen = ListenConfig {
        pow_difficulty: 1,
        tls: server
            .server_config(server.verifier_for(PeerPolicyChoice::Any).expect("any"))
            .expect("server tls"),
        handshake_timeout: Duration::from_secs(10),
        session: SessionConfig::acceptor(),
        max_pending_handshakes: 4,
    };
    let echoes = Arc::new(Mutex::new(JoinSet::new()));
    let e = echoes.clone();
    let _serve = AbortOnDropHandle::new(tokio::spawn(net::serve(
        listener,
        listen,
        Arc::new(AcceptStats::default()),
        shutdown.clone(),
        move |s| echo(&e, s),
    )));
    let dial = DialConfig {
        max_pow_difficulty: 8,
        tls: client
            .client_config(client.verifier().expect("verifier"))
            .expect("client tls"),
        connect_timeout: Duration::from_secs(5),
        pow_timeout: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(10),
        session: SessionConfig::dialer(),
    };

    let mut live = net::dial(&addr, &dial).await.expect("first dial");
    assert_eq!(live.peer.public_key, first.public_key());
    roundtrip(&mut live, b"before rotation").await;

    let _maintain = AbortOnDropHandle::new(tokio::spawn(server.maintain(shutdown.clone())));
    // Wait (no timing assertion) until the slot holds a new certificate and the first one has
    // expired.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while server.current().public_key() == first.public_key()
        || SystemTime::now() <= first.not_after()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rotation within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The session opened on the old certificate keeps working past its expiry.
    roundtrip(&mut live, b"after rotation").await;
    // A new connection sees a new certificate (fresh key, fresh serial), valid now.
    let mut fresh = net::dial(&addr, &dial).await.expect("dial after rotation");
    assert_ne!(fresh.peer.public_key, first.public_key());
    roundtrip(&mut fresh, b"new session").await;
    roundtrip(&mut live, b"old session still up").await;
}

/// A PCCS stand-in on 127.0.0.1 that answers 404 to everything and reports each request line.
async fn fake_pccs() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    AbortOnDropHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = AbortOnDropHandle::new(tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let _ = tx.send(text.lines().next().unwrap_or("").to_string());
            let _ = s
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    }));
    (url, rx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintain_refreshes_the_collateral_the_tdx_verifier_reads() {
    let (url, mut requests, _pccs) = fake_pccs().await;
    let mut cfg = AttestationConfig::dev(EvidenceChoice::InsecureSoftware, PeerPolicyChoice::Tdx);
    cfg.pccs_url = Some(url);
    let node = NodeAttestation::new(&cfg).expect("node");
    let _verifier = node.verifier().expect("tdx verifier");
    // What a verification of an uncached platform leaves behind for the refresher.
    node.collateral().want(cocoon_attest::CollateralKey {
        fmspc: "00906ED50000".into(),
        ca: "processor".into(),
    });
    let shutdown = CancellationToken::new();
    let task = AbortOnDropHandle::new(tokio::spawn(node.maintain(shutdown.clone())));
    let first = tokio::time::timeout(Duration::from_secs(20), requests.recv())
        .await
        .expect("the refresher never asked the PCCS")
        .expect("request line");
    assert!(first.starts_with("GET "), "{first}");
    assert!(first.contains("ca=processor"), "{first}");
    // The task ends with the role's token.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("maintain did not stop on shutdown")
        .expect("maintain task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rotated_certificate_binds_a_fresh_held_sealing_key() {
    let mut cfg = AttestationConfig::dev(
        EvidenceChoice::InsecureSoftware,
        PeerPolicyChoice::InsecureSoftware,
    );
    cfg.cert_validity = Duration::from_secs(3);
    // Without a ring: Cocoon's certificate, no key.
    assert_eq!(
        NodeAttestation::new(&cfg)
            .expect("node")
            .current()
            .sealing_key(),
        None
    );
    let node = NodeAttestation::with_sealing_keys(&cfg).expect("node");
    let first = node
        .current()
        .sealing_key()
        .expect("sealing key in the certificate");
    let ring = node.sealing_keys().expect("ring").clone();
    let held = |ring: &crate::sealing::SealingKeyRing| ring.publics(SystemTime::now());
    assert_eq!(held(&ring), vec![first]);
    let bound = ring.held(SystemTime::now());
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].identity.public_key(), node.current().public_key());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(node.maintain(shutdown.clone()));
    // Rotation at 2 s of 3.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let second = node.current().sealing_key().expect("rotated key");
    assert_ne!(first, second);
    // The old certificate still lives on open sessions: its key is still held, newest first.
    assert_eq!(held(&ring), vec![second, first]);
    let bound: Vec<_> = ring
        .held(SystemTime::now())
        .iter()
        .map(|h| h.identity.public_key())
        .collect();
    assert_eq!(bound[0], node.current().public_key());
    assert_eq!(bound.len(), 2);
    shutdown.cancel();
    task.await.expect("maintain ends");
}
