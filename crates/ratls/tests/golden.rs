//! Golden tests against the certificate Cocoon's own `gen-cert --tdx fake_tdx` wrote
//! (tests/data, copied from testdata/cocoon-reference/ra-tls): an X.509 **v1** certificate with
//! extensions, which must parse, verify under the insecure-software policy with the reference
//! image hash and key, and serve as a working RA-TLS identity in a handshake with our side.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use cocoon_attest::{
    EvidenceKind, EvidenceVerifier, InsecureSoftwareTdx, NetworkKind, Policy,
    INSECURE_SOFTWARE_IMAGE_HASH,
};
use cocoon_ratls::{
    accept, client_config_with, connect, inspect_cert, server_config_with, CertError, CertOptions,
    RaTlsError, RaTlsIdentity, TlsOptions,
};
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;

const CERT_PEM: &[u8] = include_bytes!("data/fake_tdx_cert.pem");
const KEY_PEM: &[u8] = include_bytes!("data/fake_tdx_key.pem");
const IMAGE_HASH_B64: &str = include_str!("data/fake_tdx_image_hash.b64");
/// From fake_tdx_cert.txt: "ED25519 Public-Key: pub: 76:4b:7d:fa:..."
const REF_KEY_HEX: &str = "764b7dfa552d49061146f31c73e77128449822c46b7cc9de4b1cc080441a67a9";
/// 2026-11-22T12:00:00Z, inside the certificate's validity (Nov 22 00:44:16 to Nov 23 00:44:16 2026).
const INSIDE_VALIDITY: u64 = 1_795_348_800;
/// notAfter, Nov 23 00:44:16 2026 GMT.
const NOT_AFTER: u64 = 1_795_394_656;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn cert_der() -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(CERT_PEM).expect("reference PEM parses");
    pem.contents
}

fn dev_policy() -> Policy {
    Policy::insecure_software(NetworkKind::Dev).expect("dev allows insecure software")
}

#[test]
fn reference_cert_is_v1_with_extensions() {
    let der = cert_der();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.version().0, 0, "the reference is X.509 v1");
    assert_eq!(cert.extensions().len(), 7);
    assert_eq!(cert.validity().not_after.timestamp() as u64, NOT_AFTER);
}

#[test]
fn reference_cert_verifies_with_reference_image_hash_and_key() {
    let peer = inspect_cert(&cert_der(), &dev_policy(), at(INSIDE_VALIDITY)).unwrap();
    let want_hash = base64::engine::general_purpose::STANDARD
        .decode(IMAGE_HASH_B64.trim())
        .unwrap();
    assert_eq!(peer.kind, EvidenceKind::InsecureSoftware);
    assert_eq!(peer.image_hash.unwrap().to_vec(), want_hash);
    assert_eq!(peer.image_hash, Some(INSECURE_SOFTWARE_IMAGE_HASH));
    assert_eq!(hex::encode(peer.public_key), REF_KEY_HEX);
    assert!(peer.evidence_digest.is_some());
}

#[test]
fn reference_cert_under_any_policy_is_unattested() {
    let peer = inspect_cert(&cert_der(), &Policy::any(), at(INSIDE_VALIDITY)).unwrap();
    assert_eq!(peer.kind, EvidenceKind::None);
    assert_eq!(hex::encode(peer.public_key), REF_KEY_HEX);
}

#[test]
fn reference_cert_expires() {
    let err = inspect_cert(&cert_der(), &dev_policy(), at(NOT_AFTER + 1)).unwrap_err();
    assert!(
        matches!(err, RaTlsError::PeerCertificate(CertError::Expired { .. })),
        "{err}"
    );
}

#[test]
fn reference_cert_and_key_load_as_identity() {
    let id = RaTlsIdentity::from_pem(CERT_PEM, KEY_PEM).unwrap();
    assert_eq!(hex::encode(id.public_key()), REF_KEY_HEX);
    assert_eq!(id.evidence_kind(), EvidenceKind::InsecureSoftware);
    assert_eq!(id.not_after(), at(NOT_AFTER));
    assert_eq!(id.cert_der(), cert_der().as_slice());
    // PEM blocks in the wrong places are refused.
    assert!(matches!(
        RaTlsIdentity::from_pem(KEY_PEM, CERT_PEM),
        Err(RaTlsError::InvalidIdentity(_))
    ));
}

#[derive(Debug)]
struct FixedClock(u64);
impl TimeProvider for FixedClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(self.0)))
    }
}

#[tokio::test]
async fn cocoon_identity_handshakes_with_ours() {
    let opts = TlsOptions {
        time_provider: Some(Arc::new(FixedClock(INSIDE_VALIDITY))),
    };
    let cocoon = RaTlsIdentity::from_pem(CERT_PEM, KEY_PEM).unwrap();
    let ours = RaTlsIdentity::generate_with(
        &InsecureSoftwareTdx::new(NetworkKind::Dev).unwrap(),
        &CertOptions {
            now: Some(at(INSIDE_VALIDITY)),
            ..CertOptions::default()
        },
    )
    .unwrap();
    let policy: Arc<dyn EvidenceVerifier> = Arc::new(dev_policy());
    let server = server_config_with(&cocoon, policy.clone(), &opts).unwrap();
    let client = client_config_with(&ours, policy, &opts).unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let timeout = Duration::from_secs(10);
    let (s, c) = tokio::join!(accept(server, a, timeout), connect(client, b, timeout));
    let (_, client_seen_by_server) = s.unwrap();
    let (_, server_seen_by_client) = c.unwrap();
    assert_eq!(hex::encode(server_seen_by_client.public_key), REF_KEY_HEX);
    assert_eq!(
        server_seen_by_client.image_hash,
        Some(INSECURE_SOFTWARE_IMAGE_HASH)
    );
    assert_eq!(client_seen_by_server.public_key, ours.public_key());
    assert_eq!(client_seen_by_server.kind, EvidenceKind::InsecureSoftware);
}
