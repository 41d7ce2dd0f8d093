//! Judging a peer's evidence: the [`EvidenceVerifier`] trait, the configurable [`Policy`], and the
//! [`QuoteVerifier`] seam where hardware TDX (DCAP) verification plugs in.
//!
//! # How [`Policy`] decides
//! 1. No quote: accepted as [`EvidenceKind::None`] only if the policy accepts unattested peers
//!    ([`Policy::any`]) and has no image allowlist; otherwise refused.
//! 2. A quote over [`MAX_QUOTE_LEN`] is refused.
//! 3. The quote's kind is read from its shape ([`EvidenceKind::of_quote`]). If the policy verifies
//!    that kind, it is verified; if not, a policy that accepts unattested peers **ignores** the
//!    quote and reports the peer as [`EvidenceKind::None`] (exactly Cocoon's `any`, which never
//!    looks at the quote, so Cocoon `fake_tdx` peers still interoperate with an `any` policy), and
//!    a policy that requires evidence refuses it.
//! 4. Verified evidence must bind the claims: report data == `SHA-512(claims)`.
//! 5. If an image allowlist is set, the measured image hash must be in it.
//!
//! Decision (brief: "any accepts fake_tdx only if configured to"): `Policy::any()` alone never
//! reports a peer as attested. `Policy::any().with_insecure_software(net)` also *verifies* fake
//! quotes when present (a bad one is then refused, not ignored) while still admitting peers
//! without evidence. `Policy::insecure_software(net)` requires evidence.
//!
//! Not here: caching of hardware verification results (it belongs to the DCAP verifier) and the
//! on-chain image allowlists (the application checks `AttestedPeer::image_hash`).

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::claims::UserClaims;
use crate::error::AttestError;
use crate::evidence::{AttestedPeer, EvidenceKind, MAX_QUOTE_LEN};
use crate::insecure;
use crate::measurements::TdMeasurements;
use crate::network::NetworkKind;

/// Judges a peer's evidence and claims.
pub trait EvidenceVerifier: Send + Sync + std::fmt::Debug {
    /// Verifies `quote` (the certificate's quote extension, if any) against `claims` (rebuilt from
    /// the certificate key) at time `now`, and says what was proven about the peer.
    fn verify(
        &self,
        quote: Option<&[u8]>,
        claims: &UserClaims,
        now: std::time::SystemTime,
    ) -> Result<AttestedPeer, AttestError>;
}

/// What a quote verifier extracted from a quote it found authentic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// The measured registers.
    pub measurements: TdMeasurements,
    /// The 64-byte report data the quote carries (must equal `SHA-512(claims)`).
    pub report_data: [u8; 64],
}

/// Checks the authenticity of a hardware quote: signature chain to the vendor root, TCB status,
/// collateral freshness, TD attributes. This is the seam for hardware TDX: `DcapVerifier`
/// (dcap-qvl, pinned Intel root key id, attestation cache with TTL) implements it and is installed with [`Policy::tdx`] / [`Policy::with_tdx_verifier`]. It must not check the
/// report-data binding or the image allowlist: [`Policy`] does that for every kind.
pub trait QuoteVerifier: Send + Sync + std::fmt::Debug {
    /// Verifies an (untrusted, at most [`MAX_QUOTE_LEN`] bytes) quote at time `now`.
    fn verify_quote(&self, quote: &[u8], now: SystemTime) -> Result<VerifiedQuote, AttestError>;
}

/// Named policy kinds for configuration files (Cocoon's router policy types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicyKind {
    /// Accept peers with or without evidence; report them unattested (Cocoon's `any`).
    Any,
    /// Require insecure software evidence (Cocoon's `fake_tdx`); dev and test networks only.
    #[serde(alias = "fake_tdx")]
    InsecureSoftware,
    /// Require hardware TDX evidence (Cocoon's `tdx`); build it with [`Policy::tdx`].
    Tdx,
}

/// Which evidence kinds are accepted (plus an optional image allowlist). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Peers without (verified) evidence are admitted as unattested.
    allow_unattested: bool,
    /// Verify insecure-software quotes; only ever `Dev` or `Test`.
    insecure_software: Option<NetworkKind>,
    /// Verify hardware TDX quotes with this verifier.
    tdx: Option<Arc<dyn QuoteVerifier>>,
    /// Verify SEV-SNP evidence with this verifier.
    snp: Option<Arc<dyn QuoteVerifier>>,
    /// Empty means any image.
    allowed_image_hashes: Vec<[u8; 32]>,
}

impl Policy {
    /// Accepts a peer with no evidence (Cocoon's `any`; what proxies use for clients). Any quote
    /// the peer presents is ignored and the peer is reported as [`EvidenceKind::None`].
    pub fn any() -> Self {
        Self {
            allow_unattested: true,
            insecure_software: None,
            tdx: None,
            snp: None,
            allowed_image_hashes: Vec::new(),
        }
    }

    /// Requires insecure software evidence bound to the claims. Refused on the main network.
    pub fn insecure_software(network: NetworkKind) -> Result<Self, AttestError> {
        Self {
            allow_unattested: false,
            insecure_software: None,
            tdx: None,
            snp: None,
            allowed_image_hashes: Vec::new(),
        }
        .with_insecure_software(network)
    }

    /// Requires hardware TDX evidence, checked by `verifier`.
    pub fn tdx(verifier: Arc<dyn QuoteVerifier>) -> Self {
        Self {
            allow_unattested: false,
            insecure_software: None,
            tdx: Some(verifier),
            snp: None,
            allowed_image_hashes: Vec::new(),
        }
    }

    /// The policy for a configured kind on a network.
    pub fn from_kind(kind: PolicyKind, network: NetworkKind) -> Result<Self, AttestError> {
        match kind {
            PolicyKind::Any => Ok(Self::any()),
            PolicyKind::InsecureSoftware => Self::insecure_software(network),
            // A TDX policy needs a configured verifier (PCCS, pins, cache): build it with
            // `Policy::tdx(Arc::new(DcapVerifier::new(..)))`.
            PolicyKind::Tdx => Err(AttestError::TdxUnavailable(
                "a TDX policy needs a DcapVerifier: use Policy::tdx".into(),
            )),
        }
    }

    /// Also verify insecure software quotes (refused on the main network).
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

    /// Also verify SEV-SNP evidence with `verifier` (e.g. `SnpVerifier`).
    pub fn with_snp_verifier(mut self, verifier: Arc<dyn QuoteVerifier>) -> Self {
        self.snp = Some(verifier);
        self
    }

    /// Only admit peers whose verified image hash is in `v` (an empty list means any image).
    pub fn with_allowed_image_hashes(mut self, v: Vec<[u8; 32]>) -> Self {
        self.allowed_image_hashes = v;
        self
    }

    /// Whether a peer must present verified evidence to be admitted.
    pub fn requires_evidence(&self) -> bool {
        !self.allow_unattested || !self.allowed_image_hashes.is_empty()
    }

    /// Whether this policy verifies evidence of `kind`.
    pub fn verifies(&self, kind: EvidenceKind) -> bool {
        match kind {
            EvidenceKind::None => false,
            EvidenceKind::InsecureSoftware => self.insecure_software.is_some(),
            EvidenceKind::Tdx => self.tdx.is_some(),
            EvidenceKind::SevSnp => self.snp.is_some(),
        }
    }

    /// The image allowlist (empty: any image).
    pub fn allowed_image_hashes(&self) -> &[[u8; 32]] {
        &self.allowed_image_hashes
    }

    fn unattested(&self, claims: &UserClaims) -> Result<AttestedPeer, AttestError> {
        if !self.allow_unattested {
            return Err(AttestError::EvidenceRequired);
        }
        if !self.allowed_image_hashes.is_empty() {
            return Err(AttestError::ImageHashRequired);
        }
        Ok(AttestedPeer::unattested(claims.public_key))
    }
}

impl EvidenceVerifier for Policy {
    fn verify(
        &self,
        quote: Option<&[u8]>,
        claims: &UserClaims,
        now: SystemTime,
    ) -> Result<AttestedPeer, AttestError> {
        let Some(quote) = quote else {
            return self.unattested(claims);
        };
        if quote.len() > MAX_QUOTE_LEN {
            return Err(AttestError::QuoteTooLarge {
                len: quote.len(),
                max: MAX_QUOTE_LEN,
            });
        }
        let kind = EvidenceKind::of_quote(quote);
        let hardware = match kind {
            EvidenceKind::Tdx => self.tdx.as_ref(),
            EvidenceKind::SevSnp => self.snp.as_ref(),
            _ => None,
        };
        let verified = match (kind, hardware) {
            (EvidenceKind::InsecureSoftware, _) if self.insecure_software.is_some() => {
                insecure::parse_quote(quote)?
            }
            (_, Some(hw)) => hw.verify_quote(quote, now)?,
            _ if self.allow_unattested => {
                tracing::debug!(%kind, len = quote.len(), "policy does not verify this evidence kind; peer treated as unattested");
                return self.unattested(claims);
            }
            _ => return Err(AttestError::KindNotAccepted { kind }),
        };
        if verified.report_data != claims.report_data() {
            return Err(AttestError::QuoteClaimsMismatch);
        }
        let image_hash = verified.measurements.image_hash();
        if !self.allowed_image_hashes.is_empty() && !self.allowed_image_hashes.contains(&image_hash)
        {
            return Err(AttestError::ImageHashNotAllowed { hash: image_hash });
        }
        Ok(AttestedPeer {
            kind,
            public_key: claims.public_key,
            image_hash: Some(image_hash),
            evidence_digest: Some(Sha256::digest(quote).into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measurements::INSECURE_SOFTWARE_IMAGE_HASH;
    use proptest::prelude::*;

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
}
