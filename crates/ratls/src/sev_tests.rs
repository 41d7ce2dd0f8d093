//! AMD SEV-SNP in Cocoon 9060ce5's certificate layout through the TLS layer: our own fake SEV-SNP
//! certificates, a real Milan report and its real VCEK (crates/attest/tests/data/sev, see its
//! README) inside the `.100`/`.101`/`.102` extensions, and forgeries of every part.
//!
//! The real report is bound to a key nobody here holds, so a certificate carrying it can get
//! through every check but the binding: the tests show the chain, the signature and the hwID pass
//! on real AMD data (the verifier is reached and refuses only the key binding), and that every
//! forged variant is refused outside a fake (`fake_tee`) policy.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_attest::{
    vcek_pem, AttestError, AttestedPeer, Evidence, EvidenceKind, EvidenceVerifier,
    InsecureSoftwareSev, NetworkKind, Policy, SevSnpEvidence, SnpVerifier, UserClaims,
    INSECURE_SOFTWARE_SEV_IMAGE_HASH,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::test_support::{self, handshake, Quote, Sev, Spec};
use crate::{
    client_config_with, ext, inspect_cert, server_config_with, CertError, CertOptions, RaTlsError,
    RaTlsIdentity, TlsOptions,
};

const REPORT_HEX: &str = include_str!("../../attest/tests/data/sev/report_milan.hex");
const VCEK_DER: &[u8] = include_bytes!("../../attest/tests/data/sev/vcek_milan.der");
/// 2024-01-01, inside the Milan VCEK's validity (2023-04-03 .. 2030-04-03).
const AT: u64 = 1_704_067_200;
const DAY: Duration = Duration::from_secs(86_400);

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(AT)
}

fn real_report() -> Vec<u8> {
    hex::decode(REPORT_HEX.trim()).unwrap()
}

fn real_vcek_pem() -> Vec<u8> {
    vcek_pem(VCEK_DER).unwrap()
}

fn snp_policy() -> Policy {
    Policy::sev_snp(Arc::new(SnpVerifier::new().unwrap()))
}

fn fake_tee() -> Policy {
    Policy::insecure_software(NetworkKind::Dev).unwrap()
}

/// A certificate valid around [`AT`] with the given SEV-SNP parts.
fn sev_cert(report: Vec<u8>, vcek_pem: Vec<u8>, bind_report: bool, bind_ext: bool) -> Vec<u8> {
    let (cert, _) = test_support::build(&Spec {
        claims: test_support::Claims::Absent,
        sev: Sev::Parts {
            report,
            vcek_pem,
            bind_report,
            bind_ext,
        },
        not_before: at() - DAY,
        not_after: at() + DAY,
        ..Spec::default()
    });
    cert.to_vec()
}

fn attestation_error(res: Result<AttestedPeer, RaTlsError>) -> AttestError {
    match res {
        Err(RaTlsError::PeerCertificate(CertError::Attestation(e))) => e,
        other => panic!("expected an attestation refusal, got {other:?}"),
    }
}

/// A self-signed P-384 certificate (PEM), like the "VCEK" of Cocoon's fake SEV-SNP.
fn self_signed_vcek() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.self_signed(&key).unwrap().pem().into_bytes()
}

/// SEV-SNP evidence parts as recorded: report data, report, VCEK PEM.
type SevParts = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Records the evidence it is handed and accepts the peer as unattested.
#[derive(Debug, Default)]
struct Recorder(Mutex<Option<SevParts>>);

impl EvidenceVerifier for Recorder {
    fn verify_evidence(
        &self,
        evidence: Option<Evidence<'_>>,
        claims: &UserClaims,
        _now: SystemTime,
    ) -> Result<AttestedPeer, AttestError> {
        if let Some(Evidence::SevSnp(e)) = evidence {
            *self.0.lock().unwrap() = Some((
                e.report_data.to_vec(),
                e.report.to_vec(),
                e.vcek_pem.to_vec(),
            ));
        }
        Ok(AttestedPeer::unattested(claims.public_key))
    }
}

#[test]
fn our_fake_sev_certificate_has_cocoons_layout() {
    let id =
        RaTlsIdentity::generate(&InsecureSoftwareSev::new(NetworkKind::Dev).unwrap(), DAY).unwrap();
    assert_eq!(id.evidence_kind(), EvidenceKind::InsecureSoftwareSev);
    let (_, c) = X509Certificate::from_der(id.cert_der()).unwrap();
    let ext_of = |der: &[u8]| {
        c.extensions()
            .iter()
            .find(|e| e.oid.as_bytes() == der)
            .map(|e| (e.critical, e.value))
    };
    let hash = id.claims().report_data();
    let (crit, rd) = ext_of(ext::DER_SEV_REPORT_DATA).unwrap();
    assert!(crit);
    assert_eq!(rd, hash);
    let (crit, report) = ext_of(ext::DER_SEV_REPORT).unwrap();
    assert!(crit);
    assert_eq!(report.len(), cocoon_attest::SNP_REPORT_LEN);
    assert_eq!(&report[0x50..0x90], hash.as_slice());
    let (crit, vcek) = ext_of(ext::DER_SEV_VCEK).unwrap();
    assert!(crit);
    assert!(vcek.starts_with(b"-----BEGIN CERTIFICATE-----\n"));
    // Cocoon refuses TDX-family extensions next to SEV-SNP ones: no quote, no claims.
    assert!(ext_of(ext::DER_QUOTE).is_none());
    assert!(ext_of(ext::DER_USER_CLAIMS).is_none());
    let san = c.subject_alternative_name().unwrap().unwrap().value;
    assert!(san
        .general_names
        .contains(&GeneralName::DNSName("127.0.0.1")));

    let peer = inspect_cert(id.cert_der(), &fake_tee(), SystemTime::now()).unwrap();
    assert_eq!(peer.kind, EvidenceKind::InsecureSoftwareSev);
    assert_eq!(peer.image_hash, Some(INSECURE_SOFTWARE_SEV_IMAGE_HASH));
    assert_eq!(peer.public_key, id.public_key());
}

#[test]
fn real_milan_report_and_vcek_travel_intact_and_verify_up_to_the_binding() {
    let (report, pem) = (real_report(), real_vcek_pem());
    let cert = sev_cert(report.clone(), pem.clone(), false, true);

    // What our certificate parser hands a verifier is exactly what went in, and it verifies
    // against AMD's pinned Milan root.
    let rec = Recorder::default();
    inspect_cert(&cert, &rec, at()).unwrap();
    let (rd, got_report, got_pem) = rec.0.lock().unwrap().clone().unwrap();
    assert_eq!(got_report, report);
    assert_eq!(got_pem, pem);
    let verdict = SnpVerifier::new()
        .unwrap()
        .verify_evidence(
            &SevSnpEvidence {
                report_data: &rd,
                report: &got_report,
                vcek_pem: &got_pem,
            },
            at(),
        )
        .unwrap();
    assert!(verdict.root.contains("ARK-Milan"), "{}", verdict.root);

    // Through the policy: chain, signature, hwID and DEBUG pass; the report was made for
    // another key than this certificate's, which is the one refusal left.
    assert_eq!(
        attestation_error(inspect_cert(&cert, &snp_policy(), at())),
        AttestError::QuoteClaimsMismatch
    );
}

#[test]
fn forged_sev_certificates_are_refused() {
    let (report, pem) = (real_report(), real_vcek_pem());
    let refused_by_snp = |cert: &[u8]| attestation_error(inspect_cert(cert, &snp_policy(), at()));

    // A flipped report byte breaks AMD's signature.
    let mut flipped = report.clone();
    flipped[0x90] ^= 1;
    let err = refused_by_snp(&sev_cert(flipped, pem.clone(), false, true));
    assert!(matches!(err, AttestError::QuoteVerification(_)), "{err}");

    // Rebinding the real report to our key is a flipped report too.
    let err = refused_by_snp(&sev_cert(report.clone(), pem.clone(), true, true));
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );

    // A VCEK that does not chain to AMD (self-signed, like Cocoon's fake one).
    let err = refused_by_snp(&sev_cert(report.clone(), self_signed_vcek(), false, true));
    assert!(err.to_string().contains("pinned AMD root"), "{err}");

    // Cocoon's fake shape (unsigned report, self-signed VCEK), bound to the key: fake SEV-SNP,
    // refused by a hardware policy, accepted only by the fake one.
    let zero = vec![0u8; cocoon_attest::SNP_REPORT_LEN];
    let fake = sev_cert(zero.clone(), self_signed_vcek(), true, true);
    assert_eq!(
        refused_by_snp(&fake),
        AttestError::KindNotAccepted {
            kind: EvidenceKind::InsecureSoftwareSev
        }
    );
    let peer = inspect_cert(&fake, &fake_tee(), at()).unwrap();
    assert_eq!(peer.kind, EvidenceKind::InsecureSoftwareSev);

    // ... but even the fake policy wants both report-data fields to be the key's hash.
    let wrong_ext = sev_cert(zero.clone(), self_signed_vcek(), true, false);
    assert_eq!(
        attestation_error(inspect_cert(&wrong_ext, &fake_tee(), at())),
        AttestError::SevReportDataMismatch
    );
    let unbound = sev_cert(zero, self_signed_vcek(), false, true);
    assert_eq!(
        attestation_error(inspect_cert(&unbound, &fake_tee(), at())),
        AttestError::QuoteClaimsMismatch
    );
    // The real report under the fake policy: real SEV-SNP is not what it verifies.
    assert_eq!(
        attestation_error(inspect_cert(
            &sev_cert(report, pem, false, true),
            &fake_tee(),
            at()
        )),
        AttestError::KindNotAccepted {
            kind: EvidenceKind::SevSnp
        }
    );
}

#[test]
fn tdx_and_sev_extensions_never_mix_and_sev_comes_whole() {
    let parts = || Sev::Parts {
        report: vec![0u8; cocoon_attest::SNP_REPORT_LEN],
        vcek_pem: self_signed_vcek(),
        bind_report: true,
        bind_ext: true,
    };
    let build = |spec: Spec| test_support::build(&spec).0.to_vec();
    let with_quote = build(Spec {
        quote: Quote::Bound,
        claims: test_support::Claims::Absent,
        sev: parts(),
        ..Spec::default()
    });
    let with_claims = build(Spec {
        sev: parts(),
        ..Spec::default()
    });
    for cert in [with_quote, with_claims] {
        let err = inspect_cert(&cert, &Policy::any(), SystemTime::now()).unwrap_err();
        assert!(
            matches!(err, RaTlsError::PeerCertificate(CertError::MixedEvidence)),
            "{err}"
        );
    }
    let mut only_report = rcgen::CustomExtension::from_oid_content(
        ext::OID_SEV_REPORT,
        vec![0u8; cocoon_attest::SNP_REPORT_LEN],
    );
    only_report.set_criticality(true);
    let cert = build(Spec {
        claims: test_support::Claims::Absent,
        extra: vec![only_report],
        ..Spec::default()
    });
    let err = inspect_cert(&cert, &Policy::any(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(
            &err,
            RaTlsError::PeerCertificate(CertError::IncompleteSevSnpEvidence { missing })
                if missing == "1.3.6.1.4.1.12345.100"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn fake_sev_handshake_passes_fake_tee_and_fails_hardware_policy() {
    let provider = InsecureSoftwareSev::new(NetworkKind::Test).unwrap();
    let server_id = RaTlsIdentity::generate_with(&provider, &CertOptions::default()).unwrap();
    let client_id = RaTlsIdentity::generate(&cocoon_attest::NoEvidence, DAY).unwrap();
    let opts = TlsOptions::default();

    let out = handshake(
        server_config_with(&server_id, Arc::new(Policy::any()), &opts).unwrap(),
        client_config_with(&client_id, Arc::new(fake_tee()), &opts).unwrap(),
    )
    .await;
    let seen = out.client.unwrap();
    assert_eq!(seen.kind, EvidenceKind::InsecureSoftwareSev);
    assert_eq!(seen.public_key, server_id.public_key());

    let out = handshake(
        server_config_with(&server_id, Arc::new(Policy::any()), &opts).unwrap(),
        client_config_with(&client_id, Arc::new(snp_policy()), &opts).unwrap(),
    )
    .await;
    assert!(out.client.is_err());
}
