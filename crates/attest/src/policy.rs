//! Judging a peer's evidence: the [`EvidenceVerifier`] trait, the configurable [`Policy`], and the
//! [`QuoteVerifier`] seam where hardware TDX (DCAP) verification plugs in; SEV-SNP is verified by
//! our own [`SnpVerifier`].
//!
//! # How [`Policy`] decides
//! 1. No evidence: accepted as [`EvidenceKind::None`] only if the policy accepts unattested peers
//!    ([`Policy::any`]) and has no image allowlist; otherwise refused.
//! 2. A quote over [`MAX_QUOTE_LEN`] is refused.
//! 3. The evidence's kind is read from its shape ([`Evidence::kind`]: a 64-byte quote is fake TDX,
//!    an unsigned SEV-SNP report fake SEV-SNP). If the policy verifies that kind, it is verified;
//!    if not, a policy that accepts unattested peers **ignores** the evidence and reports the peer
//!    as [`EvidenceKind::None`] (exactly Cocoon's `any`, which never looks at it, so Cocoon
//!    `fake_tee` peers still interoperate with an `any` policy), and a policy that requires
//!    evidence refuses it.
//! 4. Verified evidence must bind the claims: report data == `SHA-512(claims)`; for SEV-SNP the
//!    report-data extension must be that hash too (Cocoon checks both).
//! 5. If an image allowlist is set, the image hash must match one of its entries
//!    ([`ImageHashPattern`]: a `tdx@`/`sev@` entry only matches evidence of that family).
//!
//! Cocoon's policy names map to: `any` → [`Policy::any`]; `fake_tee` →
//! [`Policy::insecure_software`] (fake TDX and fake SEV-SNP); `tee` → [`Policy::tee`] (hardware
//! TDX and SEV-SNP). [`Policy::tdx`] and [`Policy::sev_snp`] accept one family only.
//!
//! Decision (brief: "any accepts fake_tdx only if configured to"): `Policy::any()` alone never
//! reports a peer as attested. `Policy::any().with_insecure_software(net)` also *verifies* fake
//! evidence when present (a bad one is then refused, not ignored) while still admitting peers
//! without evidence. `Policy::insecure_software(net)` requires evidence.
//!
//! Not here: caching of hardware verification results (it belongs to the hardware verifiers) and
//! the on-chain image allowlists (the application checks `AttestedPeer::image_hash`).

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::claims::UserClaims;
use crate::error::AttestError;
use crate::evidence::{AttestedPeer, Evidence, EvidenceKind, MAX_QUOTE_LEN};
use crate::image::ImageHashPattern;
use crate::insecure;
use crate::measurements::{TdMeasurements, INSECURE_SOFTWARE_SEV_IMAGE_HASH};
use crate::network::NetworkKind;
use crate::sev_snp::SnpVerifier;

/// Judges a peer's evidence and claims.
pub trait EvidenceVerifier: Send + Sync + std::fmt::Debug {
    /// Verifies `evidence` (what the certificate's extensions carry, if any) against `claims`
    /// (rebuilt from the certificate key) at time `now`, and says what was proven about the peer.
    fn verify_evidence(
        &self,
        evidence: Option<Evidence<'_>>,
        claims: &UserClaims,
        now: SystemTime,
    ) -> Result<AttestedPeer, AttestError>;

    /// [`verify_evidence`](Self::verify_evidence) for a TDX-family quote (extension
    /// `1.3.6.1.4.1.12345.1`), or for no evidence.
    fn verify(
        &self,
        quote: Option<&[u8]>,
        claims: &UserClaims,
        now: SystemTime,
    ) -> Result<AttestedPeer, AttestError> {
        self.verify_evidence(quote.map(Evidence::Quote), claims, now)
    }
}

/// What a quote verifier extracted from a quote it found authentic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// The measured registers.
    pub measurements: TdMeasurements,
    /// The 64-byte report data the quote carries (must equal `SHA-512(claims)`).
    pub report_data: [u8; 64],
}

/// Checks the authenticity of a hardware TDX quote: signature chain to the vendor root, TCB
/// status, collateral freshness, TD attributes. `DcapVerifier` (dcap-qvl, pinned Intel root key
/// id, attestation cache with TTL) implements it and is installed with [`Policy::tdx`] /
/// [`Policy::with_tdx_verifier`]. It must not check the report-data binding or the image
/// allowlist: [`Policy`] does that for every kind.
pub trait QuoteVerifier: Send + Sync + std::fmt::Debug {
    /// Verifies an (untrusted, at most [`MAX_QUOTE_LEN`] bytes) quote at time `now`.
    fn verify_quote(&self, quote: &[u8], now: SystemTime) -> Result<VerifiedQuote, AttestError>;
}

/// What verifying evidence of one kind established: its report data and its image hash.
type Verified = ([u8; 64], [u8; 32]);

/// Named policy kinds (Cocoon's router policy types, plus one-family hardware policies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicyKind {
    /// Accept peers with or without evidence; report them unattested (Cocoon's `any`).
    Any,
    /// Require fake TDX or fake SEV-SNP evidence (Cocoon's `fake_tee`, formerly `fake_tdx`); dev
    /// and test networks only.
    #[serde(alias = "fake_tee", alias = "fake_tdx")]
    InsecureSoftware,
    /// Require hardware TDX evidence; build it with [`Policy::tdx`].
    Tdx,
    /// Require hardware SEV-SNP evidence ([`Policy::sev_snp`]).
    SevSnp,
    /// Require hardware TDX or SEV-SNP evidence (Cocoon's `tee`); build it with [`Policy::tee`].
    Tee,
}

/// Which evidence kinds are accepted (plus an optional image allowlist). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Peers without (verified) evidence are admitted as unattested.
    allow_unattested: bool,
    /// Verify fake TDX and fake SEV-SNP evidence; only ever `Dev` or `Test`.
    insecure_software: Option<NetworkKind>,
    /// Verify hardware TDX quotes with this verifier.
    tdx: Option<Arc<dyn QuoteVerifier>>,
    /// Verify hardware SEV-SNP evidence with this verifier.
    snp: Option<Arc<SnpVerifier>>,
    /// Empty means any image.
    allowed_images: Vec<ImageHashPattern>,
}

impl Policy {
    fn none_accepted(allow_unattested: bool) -> Self {
        Self {
            allow_unattested,
            insecure_software: None,
            tdx: None,
            snp: None,
            allowed_images: Vec::new(),
        }
    }

    /// Accepts a peer with no evidence (Cocoon's `any`; what proxies use for clients). Any
    /// evidence the peer presents is ignored and the peer is reported as [`EvidenceKind::None`].
    pub fn any() -> Self {
        Self::none_accepted(true)
    }

    /// Requires fake TDX or fake SEV-SNP evidence bound to the claims (Cocoon's `fake_tee`).
    /// Refused on the main network.
    pub fn insecure_software(network: NetworkKind) -> Result<Self, AttestError> {
        Self::none_accepted(false).with_insecure_software(network)
    }

    /// Requires hardware TDX evidence, checked by `verifier`.
    pub fn tdx(verifier: Arc<dyn QuoteVerifier>) -> Self {
        Self::none_accepted(false).with_tdx_verifier(verifier)
    }

    /// Requires hardware SEV-SNP evidence, checked by `verifier`.
    pub fn sev_snp(verifier: Arc<SnpVerifier>) -> Self {
        Self::none_accepted(false).with_snp_verifier(verifier)
    }

    /// Requires hardware TDX or SEV-SNP evidence (Cocoon's `tee`).
    pub fn tee(tdx: Arc<dyn QuoteVerifier>, snp: Arc<SnpVerifier>) -> Self {
        Self::tdx(tdx).with_snp_verifier(snp)
    }

    /// The policy for a configured kind on a network.
    pub fn from_kind(kind: PolicyKind, network: NetworkKind) -> Result<Self, AttestError> {
        match kind {
            PolicyKind::Any => Ok(Self::any()),
            PolicyKind::InsecureSoftware => Self::insecure_software(network),
            PolicyKind::SevSnp => Ok(Self::sev_snp(Arc::new(SnpVerifier::new()?))),
            // A TDX policy needs a configured verifier (PCCS, pins, cache): build it with
            // `Policy::tdx(Arc::new(DcapVerifier::new(..)))` or `Policy::tee`.
            PolicyKind::Tdx | PolicyKind::Tee => Err(AttestError::TdxUnavailable(
                "a TDX policy needs a DcapVerifier: use Policy::tdx or Policy::tee".into(),
            )),
        }
    }

    /// Also verify fake TDX and fake SEV-SNP evidence (refused on the main network).
    pub fn with_insecure_software(mut self, network: NetworkKind) -> Result<Self, AttestError> {
        if !network.allows_insecure_attestation() {
            return Err(AttestError::InsecureOnMain);
        }
        self.insecure_software = Some(network);
        Ok(self)
    }

    /// Also verify hardware TDX quotes with `verifier`.
    pub fn with_tdx_verifier(mut self, verifier: Arc<dyn QuoteVerifier>) -> Self {
        self.tdx = Some(verifier);
        self
    }

    /// Also verify hardware SEV-SNP evidence with `verifier`.
    pub fn with_snp_verifier(mut self, verifier: Arc<SnpVerifier>) -> Self {
        self.snp = Some(verifier);
        self
    }

    /// Only admit peers whose verified image hash is in `v`, whatever their TEE family (an empty
    /// list means any image).
    pub fn with_allowed_image_hashes(self, v: Vec<[u8; 32]>) -> Self {
        self.with_allowed_images(v.into_iter().map(ImageHashPattern::any).collect())
    }

    /// Only admit peers whose verified evidence matches an entry of `v` (an empty list means any
    /// image); `tdx@`/`sev@` entries match that family only.
    pub fn with_allowed_images(mut self, v: Vec<ImageHashPattern>) -> Self {
        self.allowed_images = v;
        self
    }

    /// Whether a peer must present verified evidence to be admitted.
    pub fn requires_evidence(&self) -> bool {
        !self.allow_unattested || !self.allowed_images.is_empty()
    }

    /// Whether this policy verifies evidence of `kind`.
    pub fn verifies(&self, kind: EvidenceKind) -> bool {
        match kind {
            EvidenceKind::None => false,
            EvidenceKind::InsecureSoftware | EvidenceKind::InsecureSoftwareSev => {
                self.insecure_software.is_some()
            }
            EvidenceKind::Tdx => self.tdx.is_some(),
            EvidenceKind::SevSnp => self.snp.is_some(),
        }
    }

    /// The image allowlist (empty: any image).
    pub fn allowed_images(&self) -> &[ImageHashPattern] {
        &self.allowed_images
    }

    fn unattested(&self, claims: &UserClaims) -> Result<AttestedPeer, AttestError> {
        if !self.allow_unattested {
            return Err(AttestError::EvidenceRequired);
        }
        if !self.allowed_images.is_empty() {
            return Err(AttestError::ImageHashRequired);
        }
        Ok(AttestedPeer::unattested(claims.public_key))
    }

    /// Verifies `evidence` of `kind` if this policy verifies that kind: its report data and
    /// image hash, or `None` when the kind is not verified here.
    fn verify_kind(
        &self,
        evidence: Evidence<'_>,
        kind: EvidenceKind,
        now: SystemTime,
    ) -> Option<Result<Verified, AttestError>> {
        match evidence {
            Evidence::Quote(q) if kind == EvidenceKind::InsecureSoftware => {
                self.insecure_software.map(|_| {
                    insecure::parse_quote(q).map(|v| (v.report_data, v.measurements.image_hash()))
                })
            }
            Evidence::Quote(q) => self.tdx.as_ref().map(|v| {
                v.verify_quote(q, now)
                    .map(|v| (v.report_data, v.measurements.image_hash()))
            }),
            Evidence::SevSnp(ev) if kind == EvidenceKind::InsecureSoftwareSev => {
                self.insecure_software.map(|_| {
                    insecure::parse_fake_sev(&ev).map(|rd| (rd, INSECURE_SOFTWARE_SEV_IMAGE_HASH))
                })
            }
            Evidence::SevSnp(ev) => self.snp.as_ref().map(|v| {
                v.verify_evidence(&ev, now)
                    .map(|v| (v.report.report_data, v.report.image_hash()))
            }),
        }
    }
}

impl EvidenceVerifier for Policy {
    fn verify_evidence(
        &self,
        evidence: Option<Evidence<'_>>,
        claims: &UserClaims,
        now: SystemTime,
    ) -> Result<AttestedPeer, AttestError> {
        let Some(evidence) = evidence else {
            return self.unattested(claims);
        };
        if let Evidence::Quote(quote) = evidence {
            if quote.len() > MAX_QUOTE_LEN {
                return Err(AttestError::QuoteTooLarge {
                    len: quote.len(),
                    max: MAX_QUOTE_LEN,
                });
            }
        }
        let kind = evidence.kind();
        let Some(verified) = self.verify_kind(evidence, kind, now) else {
            if self.allow_unattested {
                tracing::debug!(%kind, "policy does not verify this evidence kind; peer treated as unattested");
                return self.unattested(claims);
            }
            return Err(AttestError::KindNotAccepted { kind });
        };
        let (report_data, image_hash) = verified?;
        let expected = claims.report_data();
        if report_data != expected {
            return Err(AttestError::QuoteClaimsMismatch);
        }
        if let Evidence::SevSnp(ev) = evidence {
            if ev.report_data != expected.as_slice() {
                return Err(AttestError::SevReportDataMismatch);
            }
        }
        if !self.allowed_images.is_empty()
            && !self
                .allowed_images
                .iter()
                .any(|p| p.matches(kind, &image_hash))
        {
            return Err(AttestError::ImageHashNotAllowed { hash: image_hash });
        }
        Ok(AttestedPeer {
            kind,
            public_key: claims.public_key,
            image_hash: Some(image_hash),
            evidence_digest: Some(evidence.digest()),
            sealing_key: None,
            certificate: None,
            not_after: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{OwnedEvidence, SevSnpEvidence};
    use crate::image::TeeFamily;
    use crate::insecure::InsecureSoftwareSev;
    use crate::measurements::{sev_image_hash, INSECURE_SOFTWARE_IMAGE_HASH};
    use crate::provider::AttestationProvider;
    use crate::sev_snp::test_vek::TestVek;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000)
    }

    fn claims() -> UserClaims {
        UserClaims::new([0x42; 32])
    }

    /// A stand-in for the future DCAP verifier: accepts any quote starting with "TDX" and reports
    /// fixed measurements with the report data taken from bytes 3..67.
    #[derive(Debug)]
    struct StubTdx;
    const STUB_MRTD: [u8; 48] = [0xaa; 48];
    impl QuoteVerifier for StubTdx {
        fn verify_quote(&self, q: &[u8], _now: SystemTime) -> Result<VerifiedQuote, AttestError> {
            if q.len() < 67 || &q[..3] != b"TDX" {
                return Err(AttestError::QuoteVerification("bad stub quote".into()));
            }
            let mut m = TdMeasurements::ZERO;
            m.mrtd = STUB_MRTD;
            Ok(VerifiedQuote {
                measurements: m,
                report_data: q[3..67].try_into().unwrap(),
            })
        }
    }

    fn stub_quote(c: &UserClaims) -> Vec<u8> {
        let mut q = b"TDX".to_vec();
        q.extend_from_slice(&c.report_data());
        q.extend_from_slice(&[0u8; 100]);
        q
    }

    #[test]
    fn any_accepts_missing_evidence_as_unattested() {
        let p = Policy::any().verify(None, &claims(), now()).unwrap();
        assert_eq!(p, AttestedPeer::unattested(claims().public_key));
        assert!(!Policy::any().requires_evidence());
    }

    #[test]
    fn any_ignores_fake_quotes_even_bad_ones() {
        let good = claims().report_data();
        let p = Policy::any().verify(Some(&good), &claims(), now()).unwrap();
        assert_eq!(p.kind, EvidenceKind::None);
        assert_eq!(p.image_hash, None);
        let p = Policy::any()
            .verify(Some(&[0u8; 64]), &claims(), now())
            .unwrap();
        assert_eq!(p.kind, EvidenceKind::None);
    }

    #[test]
    fn any_with_insecure_software_verifies_present_quotes() {
        let pol = Policy::any()
            .with_insecure_software(NetworkKind::Dev)
            .unwrap();
        let good = claims().report_data();
        let p = pol.verify(Some(&good), &claims(), now()).unwrap();
        assert_eq!(p.kind, EvidenceKind::InsecureSoftware);
        assert_eq!(
            pol.verify(Some(&[0u8; 64]), &claims(), now()).unwrap_err(),
            AttestError::QuoteClaimsMismatch
        );
        assert_eq!(
            pol.verify(None, &claims(), now()).unwrap().kind,
            EvidenceKind::None
        );
        assert_eq!(
            Policy::any()
                .with_insecure_software(NetworkKind::Main)
                .unwrap_err(),
            AttestError::InsecureOnMain
        );
    }

    #[test]
    fn insecure_software_accepts_bound_quote() {
        let pol = Policy::insecure_software(NetworkKind::Dev).unwrap();
        let q = claims().report_data();
        let p = pol.verify(Some(&q), &claims(), now()).unwrap();
        assert_eq!(p.kind, EvidenceKind::InsecureSoftware);
        assert_eq!(p.public_key, claims().public_key);
        assert_eq!(p.image_hash, Some(INSECURE_SOFTWARE_IMAGE_HASH));
        assert_eq!(p.evidence_digest, Some(Sha256::digest(q).into()));
        assert!(p.is_attested());
    }

    #[test]
    fn insecure_software_rejects_unbound_quote() {
        let pol = Policy::insecure_software(NetworkKind::Test).unwrap();
        let other = UserClaims::new([1; 32]).report_data();
        let err = pol.verify(Some(&other), &claims(), now()).unwrap_err();
        assert_eq!(err, AttestError::QuoteClaimsMismatch);
        assert!(err.to_string().contains("quote does not match claims"));
    }

    #[test]
    fn insecure_software_requires_evidence() {
        let pol = Policy::insecure_software(NetworkKind::Dev).unwrap();
        assert!(pol.requires_evidence());
        assert_eq!(
            pol.verify(None, &claims(), now()).unwrap_err(),
            AttestError::EvidenceRequired
        );
    }

    #[test]
    fn insecure_software_refused_on_main() {
        assert_eq!(
            Policy::insecure_software(NetworkKind::Main).unwrap_err(),
            AttestError::InsecureOnMain
        );
        assert_eq!(
            Policy::from_kind(PolicyKind::InsecureSoftware, NetworkKind::Main).unwrap_err(),
            AttestError::InsecureOnMain
        );
    }

    #[test]
    fn insecure_policy_refuses_tdx_shaped_quotes() {
        let pol = Policy::insecure_software(NetworkKind::Dev).unwrap();
        let err = pol
            .verify(Some(&stub_quote(&claims())), &claims(), now())
            .unwrap_err();
        assert_eq!(
            err,
            AttestError::KindNotAccepted {
                kind: EvidenceKind::Tdx
            }
        );
    }

    #[test]
    fn strict_tdx_policy_refuses_insecure_software_evidence() {
        let pol = Policy::tdx(Arc::new(StubTdx));
        let fake = claims().report_data();
        let err = pol.verify(Some(&fake), &claims(), now()).unwrap_err();
        assert_eq!(
            err,
            AttestError::KindNotAccepted {
                kind: EvidenceKind::InsecureSoftware
            }
        );
        assert_eq!(
            err.to_string(),
            "insecure software (fake TDX) evidence is not accepted by this policy"
        );
        assert_eq!(
            pol.verify(None, &claims(), now()).unwrap_err(),
            AttestError::EvidenceRequired
        );
    }

    #[test]
    fn tdx_seam_binds_claims_and_checks_allowlist() {
        let c = claims();
        let expected_hash = {
            let mut m = TdMeasurements::ZERO;
            m.mrtd = STUB_MRTD;
            m.image_hash()
        };
        let pol = Policy::tdx(Arc::new(StubTdx));
        let p = pol.verify(Some(&stub_quote(&c)), &c, now()).unwrap();
        assert_eq!(p.kind, EvidenceKind::Tdx);
        assert_eq!(p.image_hash, Some(expected_hash));

        let other = UserClaims::new([3; 32]);
        assert_eq!(
            pol.verify(Some(&stub_quote(&other)), &c, now())
                .unwrap_err(),
            AttestError::QuoteClaimsMismatch
        );
        assert!(matches!(
            pol.verify(
                Some(b"XYZ-not-a-quote-but-long-enough-to-not-be-64-bytes"),
                &c,
                now()
            ),
            Err(AttestError::QuoteVerification(_))
        ));

        let pinned = pol.clone().with_allowed_image_hashes(vec![[0; 32]]);
        assert_eq!(
            pinned.verify(Some(&stub_quote(&c)), &c, now()).unwrap_err(),
            AttestError::ImageHashNotAllowed {
                hash: expected_hash
            }
        );
        let pinned = pol.with_allowed_image_hashes(vec![expected_hash]);
        assert!(pinned.verify(Some(&stub_quote(&c)), &c, now()).is_ok());
    }

    #[test]
    fn image_allowlist_on_insecure_software() {
        let c = claims();
        let q = c.report_data();
        let ok = Policy::insecure_software(NetworkKind::Dev)
            .unwrap()
            .with_allowed_image_hashes(vec![INSECURE_SOFTWARE_IMAGE_HASH]);
        assert!(ok.verify(Some(&q), &c, now()).is_ok());
        let bad = Policy::insecure_software(NetworkKind::Dev)
            .unwrap()
            .with_allowed_image_hashes(vec![[1; 32]]);
        let err = bad.verify(Some(&q), &c, now()).unwrap_err();
        assert!(err
            .to_string()
            .contains(&hex::encode(INSECURE_SOFTWARE_IMAGE_HASH)));
    }

    #[test]
    fn any_with_allowlist_refuses_unattested_peers() {
        let pol = Policy::any().with_allowed_image_hashes(vec![INSECURE_SOFTWARE_IMAGE_HASH]);
        assert!(pol.requires_evidence());
        assert_eq!(
            pol.verify(None, &claims(), now()).unwrap_err(),
            AttestError::ImageHashRequired
        );
        // An ignored (unverified) quote does not satisfy the allowlist either.
        assert_eq!(
            pol.verify(Some(&claims().report_data()), &claims(), now())
                .unwrap_err(),
            AttestError::ImageHashRequired
        );
    }

    #[test]
    fn oversized_quote_is_refused_before_parsing() {
        let big = vec![0u8; MAX_QUOTE_LEN + 1];
        for pol in [
            Policy::any(),
            Policy::insecure_software(NetworkKind::Dev).unwrap(),
        ] {
            assert_eq!(
                pol.verify(Some(&big), &claims(), now()).unwrap_err(),
                AttestError::QuoteTooLarge {
                    len: MAX_QUOTE_LEN + 1,
                    max: MAX_QUOTE_LEN
                }
            );
        }
    }

    #[test]
    fn policy_kind_config_names() {
        let k: PolicyKind = serde_json::from_str("\"fake_tdx\"").unwrap();
        assert_eq!(k, PolicyKind::InsecureSoftware);
        let k: PolicyKind = serde_json::from_str("\"any\"").unwrap();
        assert_eq!(k, PolicyKind::Any);
        assert!(Policy::from_kind(PolicyKind::Any, NetworkKind::Main).is_ok());
        assert!(matches!(
            Policy::from_kind(PolicyKind::Tdx, NetworkKind::Main),
            Err(AttestError::TdxUnavailable(_))
        ));
        assert!(
            Policy::from_kind(PolicyKind::InsecureSoftware, NetworkKind::Dev)
                .unwrap()
                .verifies(EvidenceKind::InsecureSoftware)
        );
    }

    proptest! {
        /// Only the exact report data of the claims passes the insecure-software policy.
        #[test]
        fn insecure_policy_accepts_only_the_bound_quote(
            key in any::<[u8; 32]>(),
            q in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let c = UserClaims::new(key);
            let pol = Policy::insecure_software(NetworkKind::Dev).unwrap();
            let res = pol.verify(Some(&q), &c, now());
            prop_assert_eq!(res.is_ok(), q == c.report_data().to_vec());
        }
    }

    fn fake_sev(c: &UserClaims) -> OwnedEvidence {
        InsecureSoftwareSev::new(NetworkKind::Dev)
            .unwrap()
            .evidence(c)
            .unwrap()
            .unwrap()
    }

    /// `ev` with its SEV-SNP parts replaced by `f`.
    fn sev_with(
        ev: &OwnedEvidence,
        f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>, &mut [u8; 64]),
    ) -> OwnedEvidence {
        let mut ev = ev.clone();
        if let OwnedEvidence::SevSnp {
            report_data,
            report,
            vcek_pem,
        } = &mut ev
        {
            f(report, vcek_pem, report_data);
        }
        ev
    }

    #[test]
    fn fake_sev_is_verified_by_the_fake_policy_only() {
        let c = claims();
        let ev = fake_sev(&c);
        let pol = Policy::insecure_software(NetworkKind::Dev).unwrap();
        let p = pol
            .verify_evidence(Some(ev.as_evidence()), &c, now())
            .unwrap();
        assert_eq!(p.kind, EvidenceKind::InsecureSoftwareSev);
        assert_eq!(p.image_hash, Some(INSECURE_SOFTWARE_SEV_IMAGE_HASH));
        assert_eq!(p.evidence_digest, Some(ev.as_evidence().digest()));

        // `any` ignores it; a hardware policy refuses it.
        let p = Policy::any()
            .verify_evidence(Some(ev.as_evidence()), &c, now())
            .unwrap();
        assert_eq!(p.kind, EvidenceKind::None);
        let strict = Policy::sev_snp(Arc::new(SnpVerifier::new().unwrap()));
        assert_eq!(
            strict
                .verify_evidence(Some(ev.as_evidence()), &c, now())
                .unwrap_err(),
            AttestError::KindNotAccepted {
                kind: EvidenceKind::InsecureSoftwareSev
            }
        );
    }

    #[test]
    fn fake_sev_must_bind_both_report_data_fields() {
        let c = claims();
        let pol = Policy::insecure_software(NetworkKind::Test).unwrap();
        let other = UserClaims::new([1; 32]).report_data();
        let wrong_ext = sev_with(&fake_sev(&c), |_, _, rd| *rd = other);
        assert_eq!(
            pol.verify_evidence(Some(wrong_ext.as_evidence()), &c, now())
                .unwrap_err(),
            AttestError::SevReportDataMismatch
        );
        let wrong_report = sev_with(&fake_sev(&c), |r, _, _| {
            r[0x50..0x90].copy_from_slice(&other);
        });
        assert_eq!(
            pol.verify_evidence(Some(wrong_report.as_evidence()), &c, now())
                .unwrap_err(),
            AttestError::QuoteClaimsMismatch
        );
        let no_vcek = sev_with(&fake_sev(&c), |_, v, _| v.clear());
        assert!(matches!(
            pol.verify_evidence(Some(no_vcek.as_evidence()), &c, now()),
            Err(AttestError::MalformedQuote { .. })
        ));
    }

    /// Hardware SEV-SNP through the policy, signed by a self-made VEK the verifier is told to
    /// trust (the real chain is tested on AMD's data in tests/sev_snp.rs).
    fn trusted_snp(vek: &TestVek) -> Arc<SnpVerifier> {
        Arc::new(
            SnpVerifier::new()
                .unwrap()
                .trusting_vek_for_tests(vek.der.clone()),
        )
    }

    #[test]
    fn hardware_sev_binds_claims_and_checks_prefixed_allowlists() {
        let vek = TestVek::new();
        let c = claims();
        let report = vek.report(&c.report_data(), &[0x11; 48], 0);
        let ev = SevSnpEvidence {
            report_data: &c.report_data(),
            report: &report,
            vcek_pem: &vek.pem,
        };
        let image = sev_image_hash(&[0x11; 48]);
        let pol = Policy::sev_snp(trusted_snp(&vek));
        let p = pol
            .verify_evidence(Some(Evidence::SevSnp(ev)), &c, now())
            .unwrap();
        assert_eq!(p.kind, EvidenceKind::SevSnp);
        assert_eq!(p.image_hash, Some(image));

        for (entry, ok) in [
            (ImageHashPattern::of(TeeFamily::Sev, image), true),
            (ImageHashPattern::any(image), true),
            (ImageHashPattern::of(TeeFamily::Tdx, image), false),
            (ImageHashPattern::of(TeeFamily::Sev, [0; 32]), false),
        ] {
            let res = pol
                .clone()
                .with_allowed_images(vec![entry])
                .verify_evidence(Some(Evidence::SevSnp(ev)), &c, now());
            assert_eq!(res.is_ok(), ok, "{entry}");
        }

        // Cocoon's `tee` takes it too; a TDX-only policy does not.
        let tee = Policy::tee(Arc::new(StubTdx), trusted_snp(&vek));
        assert!(tee
            .verify_evidence(Some(Evidence::SevSnp(ev)), &c, now())
            .is_ok());
        assert!(tee.verify(Some(&stub_quote(&c)), &c, now()).is_ok());
        assert_eq!(
            Policy::tdx(Arc::new(StubTdx))
                .verify_evidence(Some(Evidence::SevSnp(ev)), &c, now())
                .unwrap_err(),
            AttestError::KindNotAccepted {
                kind: EvidenceKind::SevSnp
            }
        );

        // Someone else's report, and a report-data extension for someone else.
        let other = UserClaims::new([9; 32]);
        assert_eq!(
            pol.verify_evidence(Some(Evidence::SevSnp(ev)), &other, now())
                .unwrap_err(),
            AttestError::QuoteClaimsMismatch
        );
        let wrong_ext = SevSnpEvidence {
            report_data: &[0; 64],
            ..ev
        };
        assert_eq!(
            pol.verify_evidence(Some(Evidence::SevSnp(wrong_ext)), &c, now())
                .unwrap_err(),
            AttestError::SevReportDataMismatch
        );
    }

    #[test]
    fn prefixed_allowlist_on_fake_tdx() {
        let c = claims();
        let q = c.report_data();
        let pol = Policy::insecure_software(NetworkKind::Dev).unwrap();
        let tdx = pol.clone().with_allowed_images(vec![ImageHashPattern::of(
            TeeFamily::Tdx,
            INSECURE_SOFTWARE_IMAGE_HASH,
        )]);
        assert!(tdx.verify(Some(&q), &c, now()).is_ok());
        let sev = pol.with_allowed_images(vec![ImageHashPattern::of(
            TeeFamily::Sev,
            INSECURE_SOFTWARE_IMAGE_HASH,
        )]);
        assert!(matches!(
            sev.verify(Some(&q), &c, now()),
            Err(AttestError::ImageHashNotAllowed { .. })
        ));
    }

    #[test]
    fn cocoon_policy_names() {
        for (name, kind) in [
            ("\"fake_tee\"", PolicyKind::InsecureSoftware),
            ("\"tee\"", PolicyKind::Tee),
            ("\"sev_snp\"", PolicyKind::SevSnp),
        ] {
            assert_eq!(serde_json::from_str::<PolicyKind>(name).unwrap(), kind);
        }
        let sev = Policy::from_kind(PolicyKind::SevSnp, NetworkKind::Main).unwrap();
        assert!(sev.verifies(EvidenceKind::SevSnp));
        assert!(!sev.verifies(EvidenceKind::InsecureSoftwareSev));
        let fake = Policy::from_kind(PolicyKind::InsecureSoftware, NetworkKind::Dev).unwrap();
        assert!(fake.verifies(EvidenceKind::InsecureSoftwareSev));
        assert!(Policy::from_kind(PolicyKind::Tee, NetworkKind::Main).is_err());
    }
}
