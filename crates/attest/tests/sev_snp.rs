//! SEV-SNP verification in Cocoon 9060ce5's certificate layout (report data `.100`, raw report
//! `.101`, VCEK PEM `.102`) on a real Milan report and its real VCEK from the `sev` crate's test
//! data, chained to AMD's pinned Milan root (see tests/data/README.md). The report is bound to a
//! key nobody here holds, so a policy can only get as far as the binding check; everything before
//! it (chain, signature, hwID, DEBUG) runs on real AMD data.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_attest::{
    check_snp_policy, sev_image_hash, vcek_pem, AttestError, Evidence, EvidenceKind,
    EvidenceVerifier, NetworkKind, Policy, SevSnpEvidence, SnpReport, SnpVerifier, UserClaims,
    SNP_POLICY_DEBUG,
};

const REPORT_HEX: &str = include_str!("data/sev/report_milan.hex");
const VCEK: &[u8] = include_bytes!("data/sev/vcek_milan.der");
/// Cocoon's fake SEV-SNP certificate's "VCEK" (self-signed P-384), from
/// testdata/cocoon-9060ce5/ra-tls/fake_tee_cert.pem, extension 1.3.6.1.4.1.12345.102.
const FAKE_VCEK_PEM: &str = "-----BEGIN CERTIFICATE-----
MIICjTCCAhMCEQDmXHQLaFumNWxm45P4xwg6MAoGCCqGSM49BAMDMGAxCzAJBgNV
BAYTAkFFMQ4wDAYDVQQIDAVEVUJBSTEaMBgGA1UECgwRVERMaWIgRGV2ZWxvcG1l
bnQxETAPBgNVBAsMCFNlY3VyaXR5MRIwEAYDVQQDDAlsb2NhbGhvc3QwHhcNMjYx
MjA3MTIzMDI2WhcNMjYxMjA4MTIzMDI2WjBgMQswCQYDVQQGEwJBRTEOMAwGA1UE
CAwFRFVCQUkxGjAYBgNVBAoMEVRETGliIERldmVsb3BtZW50MREwDwYDVQQLDAhT
ZWN1cml0eTESMBAGA1UEAwwJbG9jYWxob3N0MHYwEAYHKoZIzj0CAQYFK4EEACID
YgAEx7hu46UkCOERq8A2IzjnAc0nsGiQYCy7KVh7K9AWb1niau4s+GCmTGYlBN7q
v86aI2uVnufOjHkRlEoP0u0rC7UgSj865fbV2OPiQuJTMqMI759K1bnx57i2KFYH
7AWOo4GVMIGSMAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQDAgeAMCAGA1UdJQEB
/wQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAdBgNVHQ4EFgQU8jeZF2gu0toFl3aK
MeMRVjLmJxswMQYDVR0RBCowKIIJbG9jYWxob3N0ggkxMjcuMC4wLjGHEAAAAAAA
AAAAAAAAAAAAAAEwCgYIKoZIzj0EAwMDaAAwZQIxAJbVx0i7MkarDBtb6/c2hsfC
r2yohECKlPRoyIKKZWDhhaorARLsn2uvUIxtYVOCpQIwEBUkmKxuv0gTuDE90CqW
JEmAyQQC+835iKzKzZdDWp1gXMbQUZxBtiTBL7vP2QKJ
-----END CERTIFICATE-----
";

fn report() -> Vec<u8> {
    hex::decode(REPORT_HEX.trim()).unwrap()
}

fn pem() -> Vec<u8> {
    vcek_pem(VCEK).unwrap()
}

/// Inside the VCEK's validity (2024-01-01).
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_704_067_200)
}

/// The real report's own REPORT_DATA (what `.100` carries when the report is honest).
fn report_data_of(report: &[u8]) -> Vec<u8> {
    report[0x50..0x90].to_vec()
}

fn ev<'a>(report_data: &'a [u8], report: &'a [u8], vcek_pem: &'a [u8]) -> SevSnpEvidence<'a> {
    SevSnpEvidence {
        report_data,
        report,
        vcek_pem,
    }
}

fn verifier() -> SnpVerifier {
    SnpVerifier::new().unwrap()
}

#[test]
fn real_milan_report_in_cocoons_layout_verifies_to_the_pinned_root() {
    let (r, p) = (report(), pem());
    let rd = report_data_of(&r);
    let e = ev(&rd, &r, &p);
    assert_eq!(Evidence::SevSnp(e).kind(), EvidenceKind::SevSnp);
    let v = verifier().verify_evidence(&e, now()).unwrap();
    assert!(v.root.contains("ARK-Milan"), "{}", v.root);
    assert_eq!(v.report.version, 2);
    assert!(!v.report.debug_allowed());
    assert!(hex::encode(v.report.measurement).starts_with("7a1e5c266c0108db"));
    // Cocoon's image hash of this guest.
    assert_eq!(v.report.image_hash(), sev_image_hash(&v.report.measurement));
}

#[test]
fn policy_gets_to_the_key_binding_on_real_data() {
    // Every check before the binding passes (chain, signature, hwID, DEBUG), so the one refusal
    // left is that the report was made for another key than the certificate's.
    let (r, p) = (report(), pem());
    let claims = UserClaims::new([1; 32]);
    let rd = claims.report_data();
    let pol = Policy::sev_snp(Arc::new(verifier()));
    assert_eq!(
        pol.verify_evidence(Some(Evidence::SevSnp(ev(&rd, &r, &p))), &claims, now())
            .unwrap_err(),
        AttestError::QuoteClaimsMismatch
    );
    // The same under Cocoon's `tee` shape (TDX or SEV-SNP) is not possible without a DCAP
    // verifier; a fake-only policy refuses real SEV-SNP outright, and `any` ignores it.
    let fake = Policy::insecure_software(NetworkKind::Dev).unwrap();
    assert_eq!(
        fake.verify_evidence(Some(Evidence::SevSnp(ev(&rd, &r, &p))), &claims, now())
            .unwrap_err(),
        AttestError::KindNotAccepted {
            kind: EvidenceKind::SevSnp
        }
    );
    let any = Policy::any()
        .verify_evidence(Some(Evidence::SevSnp(ev(&rd, &r, &p))), &claims, now())
        .unwrap();
    assert!(!any.is_attested());
}

#[test]
fn tampered_report_is_refused() {
    for pos in [0x50 + 3, 0x90 + 1, 0x1A0 + 2, 0x2A0 + 5] {
        let mut r = report();
        r[pos] ^= 0x01;
        let rd = report_data_of(&r);
        let p = pem();
        let err = verifier()
            .verify_evidence(&ev(&rd, &r, &p), now())
            .unwrap_err();
        assert!(
            matches!(err, AttestError::QuoteVerification(_)),
            "byte {pos:#x}: {err}"
        );
    }
}

#[test]
fn debug_policy_flip_breaks_signature_and_policy_refuses_debug() {
    let mut r = report();
    r[0x08 + 2] |= 0x08; // policy bit 19
    let (rd, p) = (report_data_of(&r), pem());
    assert!(verifier().verify_evidence(&ev(&rd, &r, &p), now()).is_err());
    let parsed = SnpReport::parse(&r).unwrap();
    assert!(parsed.policy & SNP_POLICY_DEBUG != 0);
    let err = check_snp_policy(&parsed).unwrap_err();
    assert!(err.to_string().contains("DEBUG"), "{err}");
}

#[test]
fn expired_or_not_yet_valid_chain_is_refused() {
    let (r, p) = (report(), pem());
    let rd = report_data_of(&r);
    let v = verifier();
    let far = UNIX_EPOCH + Duration::from_secs(4_200_000_000); // 2103
    let err = v.verify_evidence(&ev(&rd, &r, &p), far).unwrap_err();
    assert!(err.to_string().contains("pinned AMD root"), "{err}");
    let early = UNIX_EPOCH + Duration::from_secs(1_000_000_000); // 2001
    assert!(v.verify_evidence(&ev(&rd, &r, &p), early).is_err());
}

#[test]
fn vcek_not_chained_to_amd_is_refused() {
    let (r, rd) = (report(), report_data_of(&report()));
    // Cocoon's fake VCEK (self-signed P-384) under a real report.
    let err = verifier()
        .verify_evidence(&ev(&rd, &r, FAKE_VCEK_PEM.as_bytes()), now())
        .unwrap_err();
    assert!(err.to_string().contains("pinned AMD root"), "{err}");
    // AMD's Milan ASK is an AMD certificate, but not a VCEK: it is not signed by an ASK.
    let ask = include_str!("../src/sev_roots/milan_ask.pem");
    let err = verifier()
        .verify_evidence(&ev(&rd, &r, ask.as_bytes()), now())
        .unwrap_err();
    assert!(err.to_string().contains("pinned AMD root"), "{err}");
    // A truncated VCEK does not even parse.
    let p = vcek_pem(VCEK).unwrap();
    let mut cut = p.clone();
    cut.truncate(p.len() - 40);
    assert!(verifier()
        .verify_evidence(&ev(&rd, &r, &cut), now())
        .is_err());
}

#[test]
fn cocoons_wire_forms_only() {
    let (r, rd) = (report(), report_data_of(&report()));
    // `.102` is PEM on the wire: a DER VCEK is refused.
    assert!(matches!(
        verifier().verify_evidence(&ev(&rd, &r, VCEK), now()),
        Err(AttestError::MalformedQuote { .. })
    ));
    // The report must be exactly 1184 bytes.
    let p = pem();
    assert!(verifier()
        .verify_evidence(&ev(&rd, &r[..100], &p), now())
        .is_err());
    let mut long = r.clone();
    long.push(0);
    assert!(verifier()
        .verify_evidence(&ev(&rd, &long, &p), now())
        .is_err());
    assert!(SnpReport::parse(&report()[..100]).is_err());
}

#[test]
fn verdicts_are_cached_until_the_chain_or_the_ttl_expires() {
    let v = verifier();
    let (r, p) = (report(), pem());
    let rd = report_data_of(&r);
    let e = ev(&rd, &r, &p);
    let first = v.verify_evidence(&e, now()).unwrap();
    assert_eq!(v.cached_verdicts(), 1);
    let again = v
        .verify_evidence(&e, now() + Duration::from_secs(60))
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(v.cached_verdicts(), 1);
    // Past the TTL the evidence is verified again (and still passes inside its validity).
    let later = now() + cocoon_attest::SNP_MAX_CACHE_TTL + Duration::from_secs(1);
    assert!(v.verify_evidence(&e, later).is_ok());
    // Past the chain's expiry a cached verdict is never served: the chain check refuses it.
    let far = UNIX_EPOCH + Duration::from_secs(4_200_000_000);
    assert!(v.verify_evidence(&e, far).is_err());
    // A tampered report is its own entry and is refused.
    let mut t = report();
    t[0x50] ^= 1;
    assert!(v.verify_evidence(&ev(&rd, &t, &p), now()).is_err());
}
