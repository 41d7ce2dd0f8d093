//! Handshake tests over in-memory duplex streams and 127.0.0.1: successful mutual RA-TLS with
//! each policy, every rejection rule with its typed reason, TLS 1.2 refusal, no resumption, and
//! handshake deadlines. Certificate-level rules without a handshake are tested beside `inspect`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cocoon_attest::{
    AttestError, AttestationProvider, EvidenceKind, EvidenceVerifier, InsecureSoftwareTdx,
    NetworkKind, NoEvidence, OwnedEvidence, Policy, QuoteVerifier, UserClaims, VerifiedQuote,
    INSECURE_SOFTWARE_IMAGE_HASH,
};
use rustls::{AlertDescription, HandshakeKind, ProtocolVersion};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::test_support::{self, handshake, Claims, Quote, Spec, TIMEOUT};
use crate::{
    accept, client_config, connect, server_config, CertError, CertOptions, RaTlsError,
    RaTlsIdentity,
};

const DAY: Duration = Duration::from_secs(86_400);

fn any() -> Arc<dyn EvidenceVerifier> {
    Arc::new(Policy::any())
}

fn insecure_policy() -> Arc<dyn EvidenceVerifier> {
    Arc::new(Policy::insecure_software(NetworkKind::Dev).unwrap())
}

fn plain_identity() -> RaTlsIdentity {
    RaTlsIdentity::generate(&NoEvidence, DAY).unwrap()
}

fn insecure_identity() -> RaTlsIdentity {
    RaTlsIdentity::generate(&InsecureSoftwareTdx::new(NetworkKind::Dev).unwrap(), DAY).unwrap()
}

/// The reason the given side refused its peer's certificate.
fn refused(r: &Result<cocoon_attest::AttestedPeer, RaTlsError>) -> CertError {
    match r {
        Err(RaTlsError::PeerCertificate(e)) => e.clone(),
        other => panic!("expected a certificate rejection, got {other:?}"),
    }
}

/// The side whose certificate was refused learns it from the peer's alert (rustls sends
/// `certificate_unknown` for verifier-defined rejections).
fn got_alert(r: &Result<cocoon_attest::AttestedPeer, RaTlsError>) {
    match r {
        Err(RaTlsError::Tls(rustls::Error::AlertReceived(
            AlertDescription::CertificateUnknown,
        ))) => {}
        other => panic!("expected a certificate_unknown alert, got {other:?}"),
    }
}

#[tokio::test]
async fn any_any_mutual_handshake_carries_peer_keys() {
    let (s_id, c_id) = (plain_identity(), plain_identity());
    let out = handshake(
        server_config(&s_id, any()).unwrap(),
        client_config(&c_id, any()).unwrap(),
    )
    .await;
    let seen_by_server = out.server.unwrap();
    let seen_by_client = out.client.unwrap();
    assert_eq!(seen_by_server.public_key, c_id.public_key());
    assert_eq!(seen_by_client.public_key, s_id.public_key());
    assert_eq!(seen_by_server.kind, EvidenceKind::None);
    assert_eq!(seen_by_client.image_hash, None);
}

#[tokio::test]
async fn insecure_software_both_sides_is_attested() {
    let (s_id, c_id) = (insecure_identity(), insecure_identity());
    let out = handshake(
        server_config(&s_id, insecure_policy()).unwrap(),
        client_config(&c_id, insecure_policy()).unwrap(),
    )
    .await;
    for (peer, id) in [(out.server.unwrap(), &c_id), (out.client.unwrap(), &s_id)] {
        assert_eq!(peer.kind, EvidenceKind::InsecureSoftware);
        assert_eq!(peer.public_key, id.public_key());
        assert_eq!(peer.image_hash, Some(INSECURE_SOFTWARE_IMAGE_HASH));
        let quote = id.claims().report_data();
        assert_eq!(peer.evidence_digest, Some(Sha256::digest(quote).into()));
    }
}

#[tokio::test]
async fn any_policy_reports_fake_tdx_peer_as_unattested() {
    let out = handshake(
        server_config(&plain_identity(), any()).unwrap(),
        client_config(&insecure_identity(), any()).unwrap(),
    )
    .await;
    assert_eq!(out.server.unwrap().kind, EvidenceKind::None);
    out.client.unwrap();
}

#[tokio::test]
async fn over_tcp_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (s_id, c_id) = (insecure_identity(), plain_identity());
    let s_cfg = server_config(&s_id, any()).unwrap();
    let c_cfg = client_config(&c_id, insecure_policy()).unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut tls, peer) = accept(s_cfg, tcp, TIMEOUT).await.unwrap();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(&buf).await.unwrap();
        tls.shutdown().await.unwrap();
        peer
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tls, peer) = connect(c_cfg, tcp, TIMEOUT).await.unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    let suite = conn.negotiated_cipher_suite().unwrap().suite();
    assert!(
        [
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        ]
        .contains(&suite),
        "{suite:?}"
    );
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(peer.kind, EvidenceKind::InsecureSoftware);
    assert_eq!(peer.public_key, s_id.public_key());
    assert_eq!(server.await.unwrap().public_key, c_id.public_key());
}

#[tokio::test]
async fn client_claims_not_matching_key_rejected_by_server() {
    let bad = test_support::identity(&Spec {
        claims: Claims::Explicit(vec![7u8; 32]),
        ..Spec::default()
    });
    let out = handshake(
        server_config(&plain_identity(), any()).unwrap(),
        client_config(&bad, any()).unwrap(),
    )
    .await;
    assert_eq!(refused(&out.server), CertError::ClaimsMismatch);
    got_alert(&out.client);
}

#[tokio::test]
async fn server_claims_not_matching_key_rejected_by_client() {
    let bad = test_support::identity(&Spec {
        claims: Claims::Explicit(vec![7u8; 32]),
        ..Spec::default()
    });
    let out = handshake(
        server_config(&bad, any()).unwrap(),
        client_config(&plain_identity(), any()).unwrap(),
    )
    .await;
    assert_eq!(refused(&out.client), CertError::ClaimsMismatch);
    got_alert(&out.server);
}

#[tokio::test]
async fn unknown_critical_extension_rejected() {
    let mut ext = rcgen::CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![0x05, 0x00]);
    ext.set_criticality(true);
    let bad = test_support::identity(&Spec {
        extra: vec![ext],
        ..Spec::default()
    });
    let out = handshake(
        server_config(&plain_identity(), any()).unwrap(),
        client_config(&bad, any()).unwrap(),
    )
    .await;
    assert_eq!(
        refused(&out.server),
        CertError::UnknownCriticalExtension {
            oid: "1.2.3.4".into()
        }
    );
}

#[tokio::test]
async fn unknown_non_critical_extension_is_fine() {
    let ext = rcgen::CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![0x05, 0x00]);
    let ok = test_support::identity(&Spec {
        extra: vec![ext],
        ..Spec::default()
    });
    let out = handshake(
        server_config(&plain_identity(), any()).unwrap(),
        client_config(&ok, any()).unwrap(),
    )
    .await;
    out.server.unwrap();
}

#[tokio::test]
async fn ecdsa_server_cannot_complete_handshake() {
    // An ECDSA server cannot produce the Ed25519 CertificateVerify our client demands, so the
    // handshake dies before its certificate is judged; `inspect`'s tests check the verdict itself.
    let ecdsa = test_support::identity(&Spec {
        alg: &rcgen::PKCS_ECDSA_P256_SHA256,
        ..Spec::default()
    });
    let out = handshake(
        server_config(&ecdsa, any()).unwrap(),
        client_config(&plain_identity(), any()).unwrap(),
    )
    .await;
    assert!(out.client.is_err());
    assert!(
        matches!(
            out.server,
            Err(RaTlsError::Tls(rustls::Error::PeerIncompatible(_)))
        ),
        "{:?}",
        out.server
    );
}

#[tokio::test]
async fn ecdsa_client_is_not_admitted() {
    let ecdsa = test_support::identity(&Spec {
        alg: &rcgen::PKCS_ECDSA_P256_SHA256,
        ..Spec::default()
    });
    let out = handshake(
        server_config(&plain_identity(), any()).unwrap(),
        client_config(&ecdsa, any()).unwrap(),
    )
    .await;
    // The client has no key for the only scheme offered (Ed25519), sends no certificate, and
    // mutual authentication is mandatory.
    assert!(
        matches!(
            out.server,
            Err(RaTlsError::Tls(rustls::Error::NoCertificatesPresented))
        ),
        "{:?}",
        out.server
    );
    assert!(out.client.is_err());
}

#[tokio::test]
async fn chain_of_two_certificates_rejected() {
    let (leaf, key) = test_support::build(&Spec::default());
    let (other, _) = test_support::build(&Spec::default());
    let chained = RaTlsIdentity::unchecked(vec![leaf, other], key);
    let out = handshake(
        server_config(&chained, any()).unwrap(),
        client_config(&plain_identity(), any()).unwrap(),
    )
    .await;
    assert_eq!(
        refused(&out.client),
        CertError::ChainNotAllowed { count: 2 }
    );
}

#[tokio::test]
async fn expired_certificate_rejected() {
    let old = RaTlsIdentity::generate_with(
        &NoEvidence,
        &CertOptions {
            now: Some(SystemTime::now() - 3 * DAY),
            ..CertOptions::new(DAY)
        },
    )
    .unwrap();
    let out = handshake(
        server_config(&plain_identity(), any()).unwrap(),
        client_config(&old, any()).unwrap(),
    )
    .await;
    assert!(matches!(refused(&out.server), CertError::Expired { .. }));
    got_alert(&out.client);
}

#[tokio::test]
async fn not_yet_valid_certificate_rejected() {
    let future = RaTlsIdentity::generate_with(
        &NoEvidence,
        &CertOptions {
            now: Some(SystemTime::now() + 2 * DAY),
            ..CertOptions::new(DAY)
        },
    )
    .unwrap();
    let out = handshake(
        server_config(&future, any()).unwrap(),
        client_config(&plain_identity(), any()).unwrap(),
    )
    .await;
    assert!(matches!(
        refused(&out.client),
        CertError::NotYetValid { .. }
    ));
}

/// Claims to be fake TDX but puts a quote for some other key into the certificate.
#[derive(Debug)]
struct WrongQuote;
impl AttestationProvider for WrongQuote {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::InsecureSoftware
    }
    fn evidence(&self, _claims: &UserClaims) -> Result<Option<OwnedEvidence>, AttestError> {
        Ok(Some(OwnedEvidence::Quote(
            UserClaims::new([1; 32]).report_data().to_vec(),
        )))
    }
}

#[tokio::test]
async fn fake_quote_not_bound_to_key_rejected() {
    let forged = RaTlsIdentity::generate(&WrongQuote, DAY).unwrap();
    let out = handshake(
        server_config(&plain_identity(), insecure_policy()).unwrap(),
        client_config(&forged, any()).unwrap(),
    )
    .await;
    assert_eq!(
        refused(&out.server),
        CertError::Attestation(AttestError::QuoteClaimsMismatch)
    );
    assert!(refused(&out.server)
        .to_string()
        .contains("quote does not match claims"));
}

/// Stands in for a DCAP verifier in a strict hardware-only policy.
#[derive(Debug)]
struct NoHardware;
impl QuoteVerifier for NoHardware {
    fn verify_quote(&self, _q: &[u8], _now: SystemTime) -> Result<VerifiedQuote, AttestError> {
        Err(AttestError::TdxUnavailable("test".into()))
    }
}

#[tokio::test]
async fn insecure_evidence_refused_by_strict_policy() {
    // A strict policy cannot even be built to accept fake TDX on main...
    assert_eq!(
        Policy::insecure_software(NetworkKind::Main).unwrap_err(),
        AttestError::InsecureOnMain
    );
    // ...and a hardware-only policy refuses fake TDX evidence.
    let strict: Arc<dyn EvidenceVerifier> = Arc::new(Policy::tdx(Arc::new(NoHardware)));
    let out = handshake(
        server_config(&plain_identity(), strict).unwrap(),
        client_config(&insecure_identity(), any()).unwrap(),
    )
    .await;
    assert_eq!(
        refused(&out.server),
        CertError::Attestation(AttestError::KindNotAccepted {
            kind: EvidenceKind::InsecureSoftware
        })
    );
}

#[tokio::test]
async fn missing_evidence_rejected_when_required() {
    let out = handshake(
        server_config(&insecure_identity(), insecure_policy()).unwrap(),
        client_config(&plain_identity(), any()).unwrap(),
    )
    .await;
    assert_eq!(
        refused(&out.server),
        CertError::Attestation(AttestError::EvidenceRequired)
    );
    // The client accepted the server (any), then learnt of its own rejection.
    got_alert(&out.client);
}

#[tokio::test]
async fn certificate_verify_by_another_key_rejected() {
    // The certificate is fine, but the handshake is signed by a different key.
    let (cert, _) = test_support::build(&Spec {
        quote: Quote::Bound,
        ..Spec::default()
    });
    let (_, other_key) = test_support::build(&Spec::default());
    let impostor = RaTlsIdentity::unchecked(vec![cert], other_key);
    let out = handshake(
        server_config(&impostor, insecure_policy()).unwrap(),
        client_config(&plain_identity(), any()).unwrap(),
    )
    .await;
    assert_eq!(refused(&out.client), CertError::BadHandshakeSignature);
}

#[tokio::test]
async fn tls12_client_refused() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::verifier::PeerVerifier::new(any())))
        .with_no_client_auth();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = accept(server_config(&plain_identity(), any()).unwrap(), a, TIMEOUT);
    let client = async move {
        tokio_rustls::TlsConnector::from(Arc::new(tls12))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                b,
            )
            .await
    };
    let (server, client) = tokio::join!(server, client);
    match server {
        Err(RaTlsError::Tls(rustls::Error::PeerIncompatible(_))) => {}
        other => panic!("expected a protocol-version refusal, got {other:?}"),
    }
    assert!(client.is_err());
}

#[tokio::test]
async fn second_connection_is_a_full_handshake() {
    let s_cfg = server_config(&plain_identity(), any()).unwrap();
    let c_cfg = client_config(&plain_identity(), any()).unwrap();
    for round in 0..2 {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (server, client) = tokio::join!(
            accept(s_cfg.clone(), a, TIMEOUT),
            connect(c_cfg.clone(), b, TIMEOUT)
        );
        let (mut s, _) = server.unwrap();
        let (mut c, _) = client.unwrap();
        // Give a ticket (if any were sent) the chance to reach the client before the next round.
        s.write_all(b"x").await.unwrap();
        s.flush().await.unwrap();
        let mut one = [0u8; 1];
        c.read_exact(&mut one).await.unwrap();
        assert_eq!(
            c.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full),
            "client, round {round}"
        );
        assert_eq!(
            s.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full),
            "server, round {round}"
        );
    }
}

#[tokio::test]
async fn handshake_times_out_against_a_silent_peer() {
    let (a, _b) = tokio::io::duplex(1024);
    let res = accept(
        server_config(&plain_identity(), any()).unwrap(),
        a,
        Duration::from_millis(50),
    )
    .await;
    assert!(matches!(res, Err(RaTlsError::Timeout(_))), "{res:?}");
}

#[tokio::test]
async fn peer_that_hangs_up_is_an_io_error() {
    let (a, b) = tokio::io::duplex(1024);
    drop(b);
    let res = accept(server_config(&plain_identity(), any()).unwrap(), a, TIMEOUT).await;
    assert!(matches!(res, Err(RaTlsError::Io(_))), "{res:?}");
}

/// The lead spawns handshakes as tasks: the futures must be `Send` for real sockets.
#[test]
fn handshake_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (tcp2, _) = listener.accept().await.unwrap();
        let s = accept(
            server_config(&plain_identity(), any()).unwrap(),
            tcp2,
            TIMEOUT,
        );
        let c = connect(
            client_config(&plain_identity(), any()).unwrap(),
            tcp,
            TIMEOUT,
        );
        assert_send(&s);
        assert_send(&c);
    });
}

/// Clock skew between nodes: a certificate starts `DEFAULT_SKEW` before its issuer's now, so a
/// peer whose clock runs up to that much ahead is accepted; one further ahead is refused with a
/// reason that names both times (the operator sees a clock problem, not a forgery).
#[tokio::test]
async fn clock_skew_within_the_allowance_is_tolerated_and_beyond_it_refused_clearly() {
    let issued_ahead = |secs: u64| {
        RaTlsIdentity::generate_with(
            &NoEvidence,
            &CertOptions {
                now: Some(SystemTime::now() + Duration::from_secs(secs)),
                ..CertOptions::new(DAY)
            },
        )
        .unwrap()
    };
    let allowance = CertOptions::DEFAULT_SKEW.as_secs();
    // Ahead by half the allowance: both sides accept.
    let near = issued_ahead(allowance / 2);
    let out = handshake(
        server_config(&near, any()).unwrap(),
        client_config(&plain_identity(), any()).unwrap(),
    )
    .await;
    assert!(
        out.client.is_ok() && out.server.is_ok(),
        "{:?} {:?}",
        out.client,
        out.server
    );
    // Ahead by five times the allowance: refused as not yet valid.
    let far = issued_ahead(allowance * 5);
    let out = handshake(
        server_config(&far, any()).unwrap(),
        client_config(&plain_identity(), any()).unwrap(),
    )
    .await;
    let err = refused(&out.client);
    assert!(matches!(err, CertError::NotYetValid { .. }), "{err:?}");
    assert!(err.to_string().contains("not yet valid"), "{err}");
}
