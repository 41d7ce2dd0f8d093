//! SEV-SNP verification on a real Milan report and VCEK from the `sev` crate's test data, chained
//! to AMD's pinned Milan root (see tests/data/README.md).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_attest::{
    check_snp_policy, AttestError, EvidenceKind, EvidenceVerifier, Policy, SnpEvidence, SnpReport,
    SnpVerifier, UserClaims, SNP_POLICY_DEBUG,
};

const REPORT_HEX: &str = include_str!("data/sev/report_milan.hex");
const VCEK: &[u8] = include_bytes!("data/sev/vcek_milan.der");

fn report() -> Vec<u8> {
    hex::decode(REPORT_HEX.trim()).unwrap()
}

/// Inside the VCEK's validity (2024-01-01).
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_704_067_200)
}

fn bundle(report: Vec<u8>) -> Vec<u8> {
    SnpEvidence {
        report,
        vek_der: VCEK.to_vec(),
        intermediate_der: None,
    }
    .encode()
}

#[test]
fn real_milan_report_verifies_to_the_pinned_root() {
    let b = bundle(report());
    assert_eq!(EvidenceKind::of_quote(&b), EvidenceKind::SevSnp);
    let v = SnpVerifier::new()
        .unwrap()
        .verify_evidence(&b, now())
        .unwrap();
    assert!(v.root.contains("ARK-Milan"), "{}", v.root);
    assert_eq!(v.report.version, 2);
    assert!(!v.report.debug_allowed());
    assert!(hex::encode(v.report.measurement).starts_with("7a1e5c266c0108db"));
}

#[test]
fn tampered_report_is_refused() {
    for pos in [0x50 + 3, 0x90 + 1, 0x2A0 + 5] {
        let mut r = report();
        r[pos] ^= 0x01;
        let err = SnpVerifier::new()
            .unwrap()
            .verify_evidence(&bundle(r), now())
            .unwrap_err();
        assert!(
            matches!(err, AttestError::QuoteVerification(_)),
            "byte {pos}: {err}"
        );
    }
}

#[test]
fn debug_policy_flip_breaks_signature_and_policy_refuses_debug() {
    let mut r = report();
    r[0x08 + 2] |= 0x08; // policy bit 19
    assert!(SnpVerifier::new()
        .unwrap()
        .verify_evidence(&bundle(r.clone()), now())
        .is_err());
    let parsed = SnpReport::parse(&r).unwrap();
    assert!(parsed.policy & SNP_POLICY_DEBUG != 0);
    let err = check_snp_policy(&parsed).unwrap_err();
    assert!(err.to_string().contains("DEBUG"), "{err}");
}

#[test]
fn expired_or_not_yet_valid_chain_is_refused() {
    let v = SnpVerifier::new().unwrap();
    let far = UNIX_EPOCH + Duration::from_secs(4_200_000_000); // 2103
    let err = v.verify_evidence(&bundle(report()), far).unwrap_err();
    assert!(err.to_string().contains("pinned AMD root"), "{err}");
    let early = UNIX_EPOCH + Duration::from_secs(1_000_000_000); // 2001
    assert!(v.verify_evidence(&bundle(report()), early).is_err());
}

#[test]
fn vek_that_is_not_amd_signed_is_refused() {
    // A truncated VCEK does not parse, so nothing can chain.
    let b = SnpEvidence {
        report: report(),
        vek_der: VCEK[..VCEK.len() - 1].to_vec(),
        intermediate_der: None,
    }
    .encode();
    assert!(SnpVerifier::new()
        .unwrap()
        .verify_evidence(&b, now())
        .is_err());
}

#[test]
fn bundle_codec_bounds() {
    let b = bundle(report());
    let d = SnpEvidence::decode(&b).unwrap();
    assert_eq!(d.vek_der, VCEK);
    assert!(SnpEvidence::decode(&b[..b.len() - 1]).is_err());
    assert!(SnpEvidence::decode(b"CSNP").is_err());
    assert!(SnpEvidence::decode(b"XXXX").is_err());
    let mut huge = b"CSNP".to_vec();
    huge.extend_from_slice(&(u32::MAX).to_le_bytes());
    assert!(SnpEvidence::decode(&huge).is_err());
    assert!(SnpReport::parse(&report()[..100]).is_err());
}

#[test]
fn policy_binds_snp_report_data_to_claims() {
    let pol = Policy::any().with_snp_verifier(Arc::new(SnpVerifier::new().unwrap()));
    assert!(pol.verifies(EvidenceKind::SevSnp));
    // The sample report is bound to someone else's key.
    assert_eq!(
        pol.verify(Some(&bundle(report())), &UserClaims::new([1; 32]), now())
            .unwrap_err(),
        AttestError::QuoteClaimsMismatch
    );
    // A TDX-only policy does not accept SEV-SNP evidence.
    let strict = Policy::insecure_software(cocoon_attest::NetworkKind::Dev).unwrap();
    assert_eq!(
        strict
            .verify(Some(&bundle(report())), &UserClaims::new([1; 32]), now())
            .unwrap_err(),
        AttestError::KindNotAccepted {
            kind: EvidenceKind::SevSnp
        }
    );
}

#[test]
fn image_hash_is_domain_separated_from_tdx() {
    let r = SnpReport::parse(&report()).unwrap();
    let mut m = cocoon_attest::TdMeasurements::ZERO;
    m.mrtd = r.measurement;
    assert_ne!(r.image_hash(), m.image_hash());
}

#[test]
fn verdicts_are_cached_until_the_chain_or_the_ttl_expires() {
    let v = SnpVerifier::new().unwrap();
    let b = bundle(report());
    let first = v.verify_evidence(&b, now()).unwrap();
    assert_eq!(v.cached_verdicts(), 1);
    let again = v
        .verify_evidence(&b, now() + Duration::from_secs(60))
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(v.cached_verdicts(), 1);
    // Past the TTL the bundle is verified again (and still passes inside its validity).
    let later = now() + cocoon_attest::SNP_MAX_CACHE_TTL + Duration::from_secs(1);
    assert!(v.verify_evidence(&b, later).is_ok());
    // Past the chain's expiry a cached verdict is never served: the chain check refuses it.
    let far = UNIX_EPOCH + Duration::from_secs(4_200_000_000);
    assert!(v.verify_evidence(&b, far).is_err());
    // A different (tampered) bundle is its own entry and is refused.
    let mut r = report();
    r[0x50] ^= 1;
    assert!(v.verify_evidence(&bundle(r), now()).is_err());
}
