//! Golden tests against the certificate Cocoon 9060ce5's own `gen-cert --tee fake_tee` wrote on an
//! AMD host (tests/data/fake_sev_*, copied from testdata/cocoon-9060ce5/ra-tls/fake_tee_*): an
//! X.509 v1 certificate with SAN `DNS:localhost, DNS:127.0.0.1, IP:::1` and the three critical
//! SEV-SNP extensions (`.100` = SHA-512 of the key, `.101` = an all-zero report but its
//! REPORT_DATA, `.102` = a self-signed P-384 "VCEK", PEM). It must parse, be recognised as fake
//! SEV-SNP, be accepted as attested only by the insecure-software (`fake_tee`) policy, give
//! exactly Cocoon's image hash (`fake_sev_image_hash.b64`), and work as an identity in a
//! handshake with our side, in both roles, next to our own fake SEV-SNP certificates.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use cocoon_attest::{
    AttestError, EvidenceKind, EvidenceVerifier, ImageHashPattern, InsecureSoftwareSev,
    NetworkKind, Policy, SnpVerifier, TeeFamily, INSECURE_SOFTWARE_SEV_IMAGE_HASH,
};
use cocoon_ratls::{
    accept, client_config_with, connect, inspect_cert, server_config_with, CertError, CertOptions,
    RaTlsError, RaTlsIdentity, TlsOptions,
};
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;

const CERT_PEM: &[u8] = include_bytes!("data/fake_sev_cert.pem");
const KEY_PEM: &[u8] = include_bytes!("data/fake_sev_key.pem");
const IMAGE_HASH_B64: &str = include_str!("data/fake_sev_image_hash.b64");
/// From fake_sev_cert.txt: "ED25519 Public-Key: pub: d3:14:42:83:..."
const REF_KEY_HEX: &str = "d314428395e999b80120214f822b9c5aa7af11492f6a03c070d49444cd72f39e";
/// 2026-12-08T00:00:00Z, inside the certificate's validity (Dec 7 12:30:26 to Dec 8 12:30:26 2026).
const INSIDE_VALIDITY: u64 = 1_796_688_000;
/// notAfter, Dec 8 12:30:26 2026 GMT.
const NOT_AFTER: u64 = 1_796_733_026;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn cert_der() -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(CERT_PEM).expect("reference PEM parses");
    pem.contents
}

fn fake_tee() -> Policy {
    Policy::insecure_software(NetworkKind::Dev).expect("dev allows insecure software")
}

fn want_hash() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(IMAGE_HASH_B64.trim())
        .expect("reference image hash is base64")
}

#[test]
fn reference_cert_has_cocoons_sev_layout() {
    let der = cert_der();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.version().0, 0, "the reference is X.509 v1");
    let oid = |last: u64| {
        x509_parser::der_parser::oid::Oid::from(&[1, 3, 6, 1, 4, 1, 12345, last])
            .unwrap()
            .to_id_string()
    };
    let ext = |last: u64| {
        cert.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid(last))
            .map(|e| (e.critical, e.value.len()))
    };
    assert_eq!(ext(100), Some((true, 64)));
    assert_eq!(ext(101), Some((true, 1184)));
    assert!(matches!(ext(102), Some((true, _))));
    assert_eq!(ext(1), None);
    assert_eq!(ext(2), None);
}

#[test]
fn reference_cert_is_fake_sev_with_cocoons_image_hash() {
    let peer = inspect_cert(&cert_der(), &fake_tee(), at(INSIDE_VALIDITY)).unwrap();
    assert_eq!(peer.kind, EvidenceKind::InsecureSoftwareSev);
    assert_eq!(peer.image_hash.unwrap().to_vec(), want_hash());
    assert_eq!(peer.image_hash, Some(INSECURE_SOFTWARE_SEV_IMAGE_HASH));
    assert_eq!(hex::encode(peer.public_key), REF_KEY_HEX);
    assert!(peer.evidence_digest.is_some());
    // The hash is an `sev@` one: an allowlist written Cocoon's way matches it, a `tdx@` one not.
    let hash = INSECURE_SOFTWARE_SEV_IMAGE_HASH;
    let sev = fake_tee().with_allowed_images(vec![ImageHashPattern::of(TeeFamily::Sev, hash)]);
    assert!(inspect_cert(&cert_der(), &sev, at(INSIDE_VALIDITY)).is_ok());
    let tdx = fake_tee().with_allowed_images(vec![ImageHashPattern::of(TeeFamily::Tdx, hash)]);
    assert!(inspect_cert(&cert_der(), &tdx, at(INSIDE_VALIDITY)).is_err());
}

#[test]
fn reference_cert_is_refused_by_hardware_policies_and_ignored_by_any() {
    let snp = Policy::sev_snp(Arc::new(SnpVerifier::new().unwrap()));
    let err = inspect_cert(&cert_der(), &snp, at(INSIDE_VALIDITY)).unwrap_err();
    assert!(
        matches!(
            err,
            RaTlsError::PeerCertificate(CertError::Attestation(AttestError::KindNotAccepted {
                kind: EvidenceKind::InsecureSoftwareSev
            }))
        ),
        "{err}"
    );
    let peer = inspect_cert(&cert_der(), &Policy::any(), at(INSIDE_VALIDITY)).unwrap();
    assert_eq!(peer.kind, EvidenceKind::None);
    assert_eq!(hex::encode(peer.public_key), REF_KEY_HEX);
}

#[test]
fn reference_cert_expires() {
    let err = inspect_cert(&cert_der(), &fake_tee(), at(NOT_AFTER + 1)).unwrap_err();
    assert!(
        matches!(err, RaTlsError::PeerCertificate(CertError::Expired { .. })),
        "{err}"
    );
}

#[test]
fn reference_cert_and_key_load_as_identity() {
    let id = RaTlsIdentity::from_pem(CERT_PEM, KEY_PEM).unwrap();
    assert_eq!(hex::encode(id.public_key()), REF_KEY_HEX);
    assert_eq!(id.evidence_kind(), EvidenceKind::InsecureSoftwareSev);
    assert_eq!(id.not_after(), at(NOT_AFTER));
    assert_eq!(id.cert_der(), cert_der().as_slice());
}

#[derive(Debug)]
struct FixedClock(u64);
impl TimeProvider for FixedClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(self.0)))
    }
}

#[tokio::test]
async fn cocoon_fake_sev_identity_handshakes_with_our_fake_sev() {
    let opts = TlsOptions {
        time_provider: Some(Arc::new(FixedClock(INSIDE_VALIDITY))),
    };
    let cocoon = RaTlsIdentity::from_pem(CERT_PEM, KEY_PEM).unwrap();
    let ours = RaTlsIdentity::generate_with(
        &InsecureSoftwareSev::new(NetworkKind::Dev).unwrap(),
        &CertOptions {
            now: Some(at(INSIDE_VALIDITY)),
            ..CertOptions::default()
        },
    )
    .unwrap();
    assert_eq!(ours.evidence_kind(), EvidenceKind::InsecureSoftwareSev);
    let policy: Arc<dyn EvidenceVerifier> = Arc::new(fake_tee());
    for cocoon_serves in [true, false] {
        let (server_id, client_id) = if cocoon_serves {
            (&cocoon, &ours)
        } else {
            (&ours, &cocoon)
        };
        let server = server_config_with(server_id, policy.clone(), &opts).unwrap();
        let client = client_config_with(client_id, policy.clone(), &opts).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let timeout = Duration::from_secs(10);
        let (s, c) = tokio::join!(accept(server, a, timeout), connect(client, b, timeout));
        let (_, client_seen) = s.unwrap();
        let (_, server_seen) = c.unwrap();
        assert_eq!(server_seen.public_key, server_id.public_key());
        assert_eq!(client_seen.public_key, client_id.public_key());
        for seen in [&server_seen, &client_seen] {
            assert_eq!(seen.kind, EvidenceKind::InsecureSoftwareSev);
            assert_eq!(seen.image_hash, Some(INSECURE_SOFTWARE_SEV_IMAGE_HASH));
        }
    }
}
