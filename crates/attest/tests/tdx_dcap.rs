//! Hardware TDX verification on real quotes and collateral shipped with dcap-qvl 0.7.1
//! (see tests/data/README.md): accept the good one at a time inside its collateral window, and
//! refuse each forgery or policy violation with a clear reason.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_attest::{
    parse_collateral, AttestError, CollateralKey, CollateralStore, DcapConfig, DcapVerifier,
    EvidenceKind, EvidenceVerifier, Policy, TcbStatus, TdPolicy, UserClaims,
};

const QUOTE: &[u8] = include_bytes!("data/tdx_quote");
const COLLATERAL: &[u8] = include_bytes!("data/tdx_quote_collateral.json");
const OUTDATED: &[u8] = include_bytes!("data/tdx_quote_outdated");
const OUTDATED_COLLATERAL: &[u8] = include_bytes!("data/tdx_quote_outdated_collateral.json");
const SGX_QUOTE: &[u8] = include_bytes!("data/sgx_quote");
const SGX_COLLATERAL: &[u8] = include_bytes!("data/sgx_quote_collateral.json");

/// 2025-06-25T00:00:00Z, inside the sample collateral window (2025-06-19 .. 2025-07-19).
fn good_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_809_600)
}
/// 2026-03-01T00:00:00Z, inside the outdated sample's collateral window (2026-02-18 .. 03-20).
fn outdated_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_772_323_200)
}

/// Offset of the TD report body in a v4 quote (after the 48-byte header).
const BODY: usize = 48;
/// Offsets inside a TD 1.0 report body.
const TD_ATTRIBUTES: usize = BODY + 16 + 48 + 48 + 8;
const REPORT_DATA: usize = BODY + 520;

fn store_with(quote: &[u8], collateral: &[u8]) -> Arc<CollateralStore> {
    let store = CollateralStore::offline();
    store.insert(
        CollateralKey::for_quote(quote).unwrap(),
        parse_collateral(collateral).unwrap(),
    );
    Arc::new(store)
}

fn verifier() -> DcapVerifier {
    DcapVerifier::new(DcapConfig::default(), store_with(QUOTE, COLLATERAL))
}

fn report_data_of(q: &[u8]) -> [u8; 64] {
    q[REPORT_DATA..REPORT_DATA + 64].try_into().unwrap()
}

#[test]
fn good_quote_verifies_with_cocoon_pinned_root() {
    let v = verifier().verify_detailed(QUOTE, good_now()).unwrap();
    assert_eq!(v.tcb_status, "UpToDate");
    assert_eq!(
        hex::encode(v.root_key_id),
        cocoon_attest::COCOON_INTEL_ROOT_KEY_ID
    );
    assert_eq!(v.collateral.fmspc, "B0C06F000000");
    assert!(!v.report.is_debug());
    assert_eq!(v.report.report_data, report_data_of(QUOTE));
    assert!(v.collateral_expires > good_now());
    // MRTD as printed by dcap-qvl's own run on this sample.
    assert!(hex::encode(v.report.measurements.mrtd).starts_with("91eb2b44d141d4ec"));
}

#[test]
fn image_hash_is_cocoons_over_the_quote_registers() {
    let v = verifier().verify_detailed(QUOTE, good_now()).unwrap();
    // Recompute independently from the raw quote bytes: MRTD at body+136, then MRCONFIGID,
    // MROWNER, MROWNERCONFIG, RTMR0..3 (48 bytes each), then 64 zero bytes.
    use sha2::{Digest, Sha256};
    let regs = &QUOTE[BODY + 136..BODY + 136 + 8 * 48];
    let mut h = Sha256::new();
    h.update(regs);
    h.update([0u8; 64]);
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(v.report.image_hash(), want);
}

#[test]
fn policy_tdx_works_end_to_end_and_binds_claims() {
    let pol = Policy::tdx(Arc::new(verifier()));
    // The sample quote is bound to someone else's key, so the policy refuses it for ours...
    let err = pol
        .verify(Some(QUOTE), &UserClaims::new([7; 32]), good_now())
        .unwrap_err();
    assert_eq!(err, AttestError::QuoteClaimsMismatch);
    // ...while the seam itself accepts the quote: the refusal is the binding, not the quote.
    let v = verifier().verify_detailed(QUOTE, good_now()).unwrap();
    assert_ne!(v.report.image_hash(), [0; 32]);
    assert!(pol.verifies(EvidenceKind::Tdx));
}

#[test]
fn outdated_tcb_sample_is_refused_with_a_reason() {
    // dcap-qvl 0.7.1 ships this out-of-date platform as a TCB-override fixture: without an
    // override no TCB level matches it, which is refused like any other non-UpToDate platform.
    let strict = DcapVerifier::new(
        DcapConfig::default(),
        store_with(OUTDATED, OUTDATED_COLLATERAL),
    );
    let err = strict
        .verify_detailed(OUTDATED, outdated_now())
        .unwrap_err();
    assert!(err.to_string().contains("TCB"), "{err}");
}

#[test]
fn outdated_tcb_status_is_refused_by_default_and_accepted_by_name() {
    let strict = DcapConfig::default();
    let err = strict.check_tcb_status(TcbStatus::OutOfDate).unwrap_err();
    assert_eq!(
        err.to_string(),
        "TCB status OutOfDate is not accepted (accepted: UpToDate)"
    );
    assert!(strict.check_tcb_status(TcbStatus::UpToDate).is_ok());
    let lenient = DcapConfig::default()
        .accept_tcb_statuses(&["OutOfDate", "SWHardeningNeeded"])
        .unwrap();
    assert!(lenient.check_tcb_status(TcbStatus::OutOfDate).is_ok());
    assert!(lenient
        .check_tcb_status(TcbStatus::SWHardeningNeeded)
        .is_ok());
    assert!(lenient
        .check_tcb_status(TcbStatus::ConfigurationNeeded)
        .is_err());
    // Revoked is refused even when named.
    let revoked = DcapConfig::default()
        .accept_tcb_statuses(&["Revoked"])
        .unwrap();
    assert!(revoked.check_tcb_status(TcbStatus::Revoked).is_err());
}

#[test]
fn unknown_tcb_status_name_is_a_config_error() {
    assert_eq!(
        DcapConfig::default()
            .accept_tcb_statuses(&["Fine"])
            .unwrap_err(),
        AttestError::UnknownTcbStatus("Fine".into())
    );
    assert_eq!(
        cocoon_attest::parse_tcb_status("UpToDate").unwrap(),
        TcbStatus::UpToDate
    );
    for n in cocoon_attest::TCB_STATUS_NAMES {
        assert_eq!(cocoon_attest::parse_tcb_status(n).unwrap().to_string(), *n);
    }
}

#[test]
fn expired_collateral_is_refused() {
    let later = UNIX_EPOCH + Duration::from_secs(1_760_000_000); // 2025-10, after 07-19
    let err = verifier().verify_detailed(QUOTE, later).unwrap_err();
    assert!(
        matches!(
            err,
            AttestError::QuoteVerification(_) | AttestError::CollateralUnavailable(_)
        ),
        "{err}"
    );
    assert!(err.to_string().to_lowercase().contains("expired"), "{err}");
}

#[test]
fn tampered_byte_is_refused() {
    // A byte of RTMR3, of the report data, and of the quote signature (after the 584-byte body
    // and the 4-byte auth-data length).
    for pos in [
        BODY + 136 + 7 * 48 + 5,
        REPORT_DATA + 3,
        BODY + 584 + 4 + 10,
    ] {
        let mut q = QUOTE.to_vec();
        q[pos] ^= 0x01;
        let err = verifier().verify_detailed(&q, good_now()).unwrap_err();
        assert!(
            matches!(
                err,
                AttestError::QuoteVerification(_) | AttestError::MalformedQuote { .. }
            ),
            "byte {pos}: {err}"
        );
    }
}

#[test]
fn quote_bound_to_another_key_is_refused() {
    // Changing report data to bind our key breaks the quote signature.
    let ours = UserClaims::new([9; 32]);
    let mut q = QUOTE.to_vec();
    q[REPORT_DATA..REPORT_DATA + 64].copy_from_slice(&ours.report_data());
    let pol = Policy::tdx(Arc::new(verifier()));
    let err = pol.verify(Some(&q), &ours, good_now()).unwrap_err();
    assert!(matches!(err, AttestError::QuoteVerification(_)), "{err}");
    // The genuine quote presented with another key is a binding mismatch.
    assert_eq!(
        pol.verify(Some(QUOTE), &ours, good_now()).unwrap_err(),
        AttestError::QuoteClaimsMismatch
    );
}

#[test]
fn debug_td_flip_breaks_the_signature() {
    let mut q = QUOTE.to_vec();
    q[TD_ATTRIBUTES] |= 0x01;
    let err = verifier().verify_detailed(&q, good_now()).unwrap_err();
    assert!(matches!(err, AttestError::QuoteVerification(_)), "{err}");
}

#[test]
fn debug_td_is_refused_by_our_policy_on_parsed_measurements() {
    let mut r = verifier()
        .verify_detailed(QUOTE, good_now())
        .unwrap()
        .report;
    assert!(TdPolicy::default().check(&r).is_ok());
    r.td_attributes[0] |= 0x01;
    let err = TdPolicy::default().check(&r).unwrap_err();
    assert!(matches!(err, AttestError::TdAttributes(_)));
    assert!(err.to_string().contains("DEBUG"));
}

#[test]
fn xfam_and_mrseam_pins_apply_to_real_quote() {
    let real = verifier()
        .verify_detailed(QUOTE, good_now())
        .unwrap()
        .report;
    let cfg = DcapConfig {
        td_policy: TdPolicy {
            allowed_xfam: vec![[0; 8]],
            allowed_mr_seam: vec![],
        },
        ..DcapConfig::default()
    };
    let err = DcapVerifier::new(cfg, store_with(QUOTE, COLLATERAL))
        .verify_detailed(QUOTE, good_now())
        .unwrap_err();
    assert!(matches!(err, AttestError::XfamNotAllowed { .. }), "{err}");
    let cfg = DcapConfig {
        td_policy: TdPolicy {
            allowed_xfam: vec![real.xfam],
            allowed_mr_seam: vec![real.mr_seam],
        },
        ..DcapConfig::default()
    };
    assert!(DcapVerifier::new(cfg, store_with(QUOTE, COLLATERAL))
        .verify_detailed(QUOTE, good_now())
        .is_ok());
}

#[test]
fn other_root_key_id_pin_refuses() {
    let cfg = DcapConfig::default()
        .with_root_key_ids(&[hex::encode([1u8; 48])])
        .unwrap();
    let err = DcapVerifier::new(cfg, store_with(QUOTE, COLLATERAL))
        .verify_detailed(QUOTE, good_now())
        .unwrap_err();
    assert!(
        matches!(err, AttestError::RootKeyIdNotAllowed { .. }),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains(cocoon_attest::COCOON_INTEL_ROOT_KEY_ID));
    assert!(DcapConfig::default().with_root_key_ids(&["abcd"]).is_err());
}

#[test]
fn sgx_quote_is_refused() {
    let v = DcapVerifier::new(DcapConfig::default(), store_with(SGX_QUOTE, SGX_COLLATERAL));
    let now = UNIX_EPOCH + Duration::from_secs(1_750_809_600);
    assert!(v.verify_detailed(SGX_QUOTE, now).is_err());
}

#[test]
fn missing_collateral_without_pccs_is_a_clear_error() {
    let v = DcapVerifier::new(DcapConfig::default(), Arc::new(CollateralStore::offline()));
    let err = v.verify_detailed(QUOTE, good_now()).unwrap_err();
    assert!(
        matches!(err, AttestError::CollateralUnavailable(_)),
        "{err}"
    );
    assert!(err.to_string().contains("B0C06F000000"), "{err}");
}

#[test]
fn verdicts_are_cached_until_ttl() {
    let cfg = DcapConfig {
        max_cache_ttl: Duration::from_secs(600),
        ..DcapConfig::default()
    };
    let v = DcapVerifier::new(cfg, store_with(QUOTE, COLLATERAL));
    v.verify_detailed(QUOTE, good_now()).unwrap();
    assert_eq!(v.cached_verdicts(), 1);
    // A hit inside the TTL returns the same verdict.
    let again = v
        .verify_detailed(QUOTE, good_now() + Duration::from_secs(60))
        .unwrap();
    assert_eq!(again.tcb_status, "UpToDate");
    // After the collateral expired the cached verdict is not reused: verification runs again
    // and fails.
    let later = UNIX_EPOCH + Duration::from_secs(1_760_000_000);
    assert!(v.verify_detailed(QUOTE, later).is_err());
}

/// Stands in for a genuine quote bound to our key (only TDX hardware can make one): the real
/// sample's DCAP-verified measurements, with the report data replaced by our binding.
#[derive(Debug)]
struct BoundToUs(DcapVerifier, UserClaims);
impl cocoon_attest::QuoteVerifier for BoundToUs {
    fn verify_quote(
        &self,
        q: &[u8],
        now: SystemTime,
    ) -> Result<cocoon_attest::VerifiedQuote, AttestError> {
        let mut v = self.0.verify_quote(q, now)?;
        v.report_data = self.1.report_data();
        Ok(v)
    }
}

#[test]
fn image_hash_not_in_allowlist_is_refused_with_the_hash() {
    let ours = UserClaims::new([5; 32]);
    let real_image = verifier()
        .verify_detailed(QUOTE, good_now())
        .unwrap()
        .report
        .image_hash();
    let pol = Policy::tdx(Arc::new(BoundToUs(verifier(), ours)))
        .with_allowed_image_hashes(vec![[0xab; 32]]);
    let err = pol.verify(Some(QUOTE), &ours, good_now()).unwrap_err();
    assert_eq!(err, AttestError::ImageHashNotAllowed { hash: real_image });
    assert!(err.to_string().contains(&hex::encode(real_image)));
    let ok = Policy::tdx(Arc::new(BoundToUs(verifier(), ours)))
        .with_allowed_image_hashes(vec![real_image])
        .verify(Some(QUOTE), &ours, good_now())
        .unwrap();
    assert_eq!(ok.kind, EvidenceKind::Tdx);
    assert_eq!(ok.image_hash, Some(real_image));
}
