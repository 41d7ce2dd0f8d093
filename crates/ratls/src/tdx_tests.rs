//! Hardware-TDX forgeries through the TLS layer, on dcap-qvl's real sample quote and collateral
//! (crates/attest/tests/data, see its README), and certificate rotation without dropping sessions.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_attest::{
    parse_collateral, AttestError, CollateralKey, CollateralStore, DcapConfig, DcapVerifier,
    EvidenceVerifier, NoEvidence, Policy,
};
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::test_support::{self, handshake, Quote, Spec, TIMEOUT};
use crate::{
    accept, client_config_with, connect, inspect_cert, regenerate, server_config_reloadable,
    server_config_with, CertError, CertOptions, IdentitySlot, RaTlsError, RaTlsIdentity,
    TlsOptions,
};

const QUOTE: &[u8] = include_bytes!("../../attest/tests/data/tdx_quote");
const COLLATERAL: &[u8] = include_bytes!("../../attest/tests/data/tdx_quote_collateral.json");
/// Inside the sample collateral window (2025-06-25T00:00:00Z).
const AT: u64 = 1_750_809_600;
const DAY: Duration = Duration::from_secs(86_400);

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(AT)
}

#[derive(Debug)]
struct FixedClock;
impl TimeProvider for FixedClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(AT)))
    }
}

fn opts() -> TlsOptions {
    TlsOptions {
        time_provider: Some(Arc::new(FixedClock)),
    }
}

fn tdx_policy() -> Arc<dyn EvidenceVerifier> {
    let store = CollateralStore::offline();
    store.insert(
        CollateralKey::for_quote(QUOTE).unwrap(),
        parse_collateral(COLLATERAL).unwrap(),
    );
    Arc::new(Policy::tdx(Arc::new(DcapVerifier::new(
        DcapConfig::default(),
        Arc::new(store),
    ))))
}

fn at_identity() -> RaTlsIdentity {
    RaTlsIdentity::generate_with(
        &NoEvidence,
        &CertOptions {
            now: Some(at()),
            ..CertOptions::new(DAY)
        },
    )
    .unwrap()
}

#[test]
fn replayed_real_quote_in_a_new_cert_is_rejected_at_cert_level() {
    let (cert, _) = test_support::build(&Spec {
        quote: Quote::Raw(QUOTE.to_vec()),
        not_before: at() - Duration::from_secs(60),
        not_after: at() + DAY,
        ..Spec::default()
    });
    let err = inspect_cert(&cert, &*tdx_policy(), at()).unwrap_err();
    assert!(
        matches!(
            err,
            RaTlsError::PeerCertificate(CertError::Attestation(AttestError::QuoteClaimsMismatch))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn replayed_real_quote_in_a_new_cert_is_rejected_in_handshake() {
    // A genuine TDX quote (it passes DCAP) pasted into a certificate with the attacker's key:
    // reportdata != SHA-512(claims), so the server refuses the client.
    let forged = test_support::identity(&Spec {
        quote: Quote::Raw(QUOTE.to_vec()),
        not_before: at() - Duration::from_secs(60),
        not_after: at() + DAY,
        ..Spec::default()
    });
    let out = handshake(
        server_config_with(&at_identity(), tdx_policy(), &opts()).unwrap(),
        client_config_with(&forged, Arc::new(Policy::any()), &opts()).unwrap(),
    )
    .await;
    match &out.server {
        Err(RaTlsError::PeerCertificate(CertError::Attestation(
            AttestError::QuoteClaimsMismatch,
        ))) => {}
        other => panic!("expected a claims mismatch, got {other:?}"),
    }
    assert!(out.client.is_err());
}

#[tokio::test]
async fn tampered_real_quote_is_rejected_in_handshake() {
    let mut q = QUOTE.to_vec();
    q[48 + 136 + 5] ^= 1; // a byte of MRTD
    let forged = test_support::identity(&Spec {
        quote: Quote::Raw(q),
        not_before: at() - Duration::from_secs(60),
        not_after: at() + DAY,
        ..Spec::default()
    });
    let out = handshake(
        server_config_with(&at_identity(), tdx_policy(), &opts()).unwrap(),
        client_config_with(&forged, Arc::new(Policy::any()), &opts()).unwrap(),
    )
    .await;
    match &out.server {
        Err(RaTlsError::PeerCertificate(CertError::Attestation(
            AttestError::QuoteVerification(_),
        ))) => {}
        other => panic!("expected a quote verification failure, got {other:?}"),
    }
}

#[tokio::test]
async fn rotation_keeps_live_sessions_and_new_handshakes_see_the_new_cert() {
    let first = RaTlsIdentity::generate(&NoEvidence, DAY).unwrap();
    let slot = IdentitySlot::new(first.clone());
    let server =
        server_config_reloadable(&slot, Arc::new(Policy::any()), &TlsOptions::default()).unwrap();
    let client_id = RaTlsIdentity::generate(&NoEvidence, DAY).unwrap();
    let client =
        client_config_with(&client_id, Arc::new(Policy::any()), &TlsOptions::default()).unwrap();

    // Session 1 on the first certificate.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (s1, c1) = tokio::join!(
        accept(server.clone(), a, TIMEOUT),
        connect(client.clone(), b, TIMEOUT)
    );
    let (mut s1, _) = s1.unwrap();
    let (mut c1, seen1) = c1.unwrap();
    assert_eq!(seen1.public_key, first.public_key());

    // Rotate (off the runtime, as a node's timer would).
    assert!(!slot.due_for_rotation(SystemTime::now(), Duration::from_secs(3600)));
    assert!(slot.due_for_rotation(SystemTime::now(), 2 * DAY));
    let second = regenerate(Arc::new(NoEvidence), CertOptions::new(DAY))
        .await
        .unwrap();
    let old = slot.replace(second.clone());
    assert_eq!(old.public_key(), first.public_key());

    // Session 1 still works.
    c1.write_all(b"ping").await.unwrap();
    c1.flush().await.unwrap();
    let mut buf = [0u8; 4];
    s1.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    // A new handshake presents the new certificate.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (s2, c2) = tokio::join!(accept(server, a, TIMEOUT), connect(client, b, TIMEOUT));
    assert!(s2.is_ok());
    let (_, seen2) = c2.unwrap();
    assert_eq!(seen2.public_key, second.public_key());
    assert_ne!(seen2.public_key, first.public_key());
}
