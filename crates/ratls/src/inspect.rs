//! The RA-TLS certificate checks, shared by both rustls verifiers, by [`inspect_cert`], and by
//! identity loading (which runs the structural part on our own certificate).
//!
//! Order: size bound → DER parse (no trailing bytes) → Ed25519 key and signature algorithms →
//! self-signed and self-signature valid → canonical envelope (the unsigned outer bytes must be the
//! one DER encoding, since x509-parser tolerates altered tag bits there) (ring; webpki cannot be used, it rejects the critical
//! custom extensions) → extensions (no duplicates, no unknown critical ones, claims = key, TDX
//! and SEV-SNP extensions never together, all three SEV-SNP ones or none) → validity at `now` →
//! `EvidenceVerifier::verify_evidence(evidence, claims_from_key, now)`.
//!
//! X.509 v1 certificates that carry extensions (what Cocoon's gen-cert writes) are accepted: the
//! version field carries no security meaning here. Chain length is the caller's business (rustls
//! hands intermediates separately). No I/O and no TLS types other than the signature check.

use std::time::{SystemTime, UNIX_EPOCH};

use cocoon_attest::{AttestedPeer, Evidence, EvidenceVerifier, SevSnpEvidence, UserClaims};
use ring::signature::{UnparsedPublicKey, ED25519};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::AlgorithmIdentifier;

use crate::error::{CertError, RaTlsError};
use crate::ext;

/// What the structural checks extract from a certificate.
#[derive(Debug)]
pub(crate) struct CheckedCert<'a> {
    pub public_key: [u8; 32],
    pub evidence: Option<Evidence<'a>>,
    pub not_before: i64,
    pub not_after: i64,
    /// The cocoon-rs sealing key extension's content, if present.
    pub sealing_key: Option<[u8; 32]>,
}

/// Verifies a peer certificate completely (everything but the chain length) and returns what its
/// evidence proves. This is what the TLS verifiers run; exposed for diagnostics tools and tests.
pub fn inspect_cert(
    der: &[u8],
    verifier: &dyn EvidenceVerifier,
    now: SystemTime,
) -> Result<AttestedPeer, RaTlsError> {
    verify_peer_cert(der, verifier, now).map_err(RaTlsError::PeerCertificate)
}

pub(crate) fn verify_peer_cert(
    der: &[u8],
    verifier: &dyn EvidenceVerifier,
    now: SystemTime,
) -> Result<AttestedPeer, CertError> {
    let cert = check_structure(der)?;
    check_validity(&cert, now)?;
    // Like Cocoon, the claims that count are rebuilt from the key; the claims extension was
    // already required to equal it.
    let claims = UserClaims::new(cert.public_key);
    let mut peer = verifier.verify_evidence(cert.evidence, &claims, now)?;
    if peer.public_key != cert.public_key {
        return Err(CertError::VerifierKeyMismatch);
    }
    peer.sealing_key = cert.sealing_key;
    peer.certificate = Some(std::sync::Arc::from(der));
    peer.not_after = u64::try_from(cert.not_after).ok();
    Ok(peer)
}

/// Everything that does not depend on time or policy.
pub(crate) fn check_structure(der: &[u8]) -> Result<CheckedCert<'_>, CertError> {
    if der.len() > ext::MAX_CERT_LEN {
        return Err(CertError::TooLarge {
            len: der.len(),
            max: ext::MAX_CERT_LEN,
        });
    }
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| CertError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::TrailingData(rest.len()));
    }
    let tbs = &cert.tbs_certificate;

    let public_key = ed25519_key_of(&cert)?;
    require_ed25519_alg(&cert.signature_algorithm)?;
    require_ed25519_alg(&tbs.signature)?;

    if tbs.issuer.as_raw() != tbs.subject.as_raw() {
        return Err(CertError::NotSelfSigned);
    }
    if cert.signature_value.unused_bits != 0 {
        return Err(CertError::BadSelfSignature);
    }
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(tbs.as_ref(), &cert.signature_value.data)
        .map_err(|_| CertError::BadSelfSignature)?;

    check_envelope(der, tbs.as_ref(), &cert.signature_value.data)?;

    let (evidence, sealing_key) = check_extensions(&cert, &public_key)?;
    Ok(CheckedCert {
        public_key,
        evidence,
        sealing_key,
        not_before: tbs.validity.not_before.timestamp(),
        not_after: tbs.validity.not_after.timestamp(),
    })
}

/// The unsigned envelope of an Ed25519 certificate (outer SEQUENCE, signatureAlgorithm, signature
/// BIT STRING) has exactly one DER encoding, but x509-parser tolerates altered tag class bits
/// there. Rebuild it around the signed TBS bytes and require byte equality, so no two distinct
/// byte strings pass as the same certificate (a certificate hash then identifies it).
fn check_envelope(der: &[u8], tbs: &[u8], signature: &[u8]) -> Result<(), CertError> {
    // AlgorithmIdentifier { id-Ed25519 } (RFC 8410: no parameters), BIT STRING, 0 unused bits.
    const ALG_AND_SIG_HEADER: [u8; 10] =
        [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x41, 0x00];
    let content_len = tbs.len() + ALG_AND_SIG_HEADER.len() + signature.len();
    let mut want = Vec::with_capacity(content_len + 4);
    want.push(0x30);
    match content_len {
        n if n < 0x80 => want.push(n as u8),
        n if n < 0x100 => want.extend_from_slice(&[0x81, n as u8]),
        n if n < 0x1_0000 => want.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        _ => return Err(CertError::Malformed("certificate too long".into())),
    }
    want.extend_from_slice(tbs);
    want.extend_from_slice(&ALG_AND_SIG_HEADER);
    want.extend_from_slice(signature);
    if signature.len() != 64 || want != der {
        return Err(CertError::Malformed(
            "non-canonical DER around the signed part".into(),
        ));
    }
    Ok(())
}

/// Evidence extensions (if any) and the sealing key (if any) of a certificate.
type Extensions<'a> = (Option<Evidence<'a>>, Option<[u8; 32]>);

/// Returns the evidence extensions and the sealing key, if any; checks everything else about
/// extensions.
fn check_extensions<'a>(
    cert: &X509Certificate<'a>,
    public_key: &[u8; 32],
) -> Result<Extensions<'a>, CertError> {
    let exts = cert.tbs_certificate.extensions();
    if exts.len() > ext::MAX_EXTENSIONS {
        return Err(CertError::TooManyExtensions {
            count: exts.len(),
            max: ext::MAX_EXTENSIONS,
        });
    }
    let mut quote = None;
    let mut has_claims = false;
    let (mut sev_report_data, mut sev_report, mut sev_vcek) = (None, None, None);
    let mut sealing_key = None;
    for (i, e) in exts.iter().enumerate() {
        let oid = e.oid.as_bytes();
        if exts[..i].iter().any(|prev| prev.oid.as_bytes() == oid) {
            return Err(CertError::DuplicateExtension {
                oid: e.oid.to_id_string(),
            });
        }
        if oid == ext::DER_QUOTE {
            quote = Some(e.value);
        } else if oid == ext::DER_USER_CLAIMS {
            let claims = UserClaims::from_bytes(e.value).map_err(|_| CertError::ClaimsMismatch)?;
            if &claims.public_key != public_key {
                return Err(CertError::ClaimsMismatch);
            }
            has_claims = true;
        } else if oid == ext::DER_SEV_REPORT_DATA {
            sev_report_data = Some(e.value);
        } else if oid == ext::DER_SEV_REPORT {
            sev_report = Some(e.value);
        } else if oid == ext::DER_SEV_VCEK {
            sev_vcek = Some(e.value);
        } else if oid == ext::DER_SEALING_KEY {
            let key: [u8; 32] = e
                .value
                .try_into()
                .map_err(|_| CertError::BadSealingKey { len: e.value.len() })?;
            sealing_key = Some(key);
        } else if e.critical && !ext::DER_KNOWN_STANDARD.contains(&oid) {
            return Err(CertError::UnknownCriticalExtension {
                oid: e.oid.to_id_string(),
            });
        }
    }
    let has_sev = sev_report_data.is_some() || sev_report.is_some() || sev_vcek.is_some();
    if !has_sev {
        return Ok((quote.map(Evidence::Quote), sealing_key));
    }
    // Like Cocoon (`TDX and SEV extensions are mutually exclusive`): the claims extension is a
    // TDX-family one, so an SEV-SNP certificate must not carry it either.
    if quote.is_some() || has_claims {
        return Err(CertError::MixedEvidence);
    }
    let missing = |oid: &[u64]| CertError::IncompleteSevSnpEvidence {
        missing: oid.iter().map(u64::to_string).collect::<Vec<_>>().join("."),
    };
    let evidence = Evidence::SevSnp(SevSnpEvidence {
        report_data: sev_report_data.ok_or_else(|| missing(ext::OID_SEV_REPORT_DATA))?,
        report: sev_report.ok_or_else(|| missing(ext::OID_SEV_REPORT))?,
        vcek_pem: sev_vcek.ok_or_else(|| missing(ext::OID_SEV_VCEK))?,
    });
    Ok((Some(evidence), sealing_key))
}

pub(crate) fn check_validity(cert: &CheckedCert<'_>, now: SystemTime) -> Result<(), CertError> {
    let now = unix_secs(now);
    if now < cert.not_before {
        return Err(CertError::NotYetValid {
            not_before: cert.not_before,
            now,
        });
    }
    if now > cert.not_after {
        return Err(CertError::Expired {
            not_after: cert.not_after,
            now,
        });
    }
    Ok(())
}

/// Checks a TLS 1.3 CertificateVerify signature (Ed25519 only) by the certificate's key.
/// rustls' own `verify_tls13_signature` cannot be used: it parses the certificate with webpki,
/// which refuses our critical extensions.
pub(crate) fn verify_ed25519_signature(
    cert_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), CertError> {
    if cert_der.len() > ext::MAX_CERT_LEN {
        return Err(CertError::TooLarge {
            len: cert_der.len(),
            max: ext::MAX_CERT_LEN,
        });
    }
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| CertError::Malformed(e.to_string()))?;
    let key = ed25519_key_of(&cert)?;
    UnparsedPublicKey::new(&ED25519, key)
        .verify(message, signature)
        .map_err(|_| CertError::BadHandshakeSignature)
}

fn require_ed25519_alg(alg: &AlgorithmIdentifier<'_>) -> Result<(), CertError> {
    // RFC 8410: the parameters field must be absent.
    if alg.algorithm.as_bytes() != ext::DER_ED25519 || alg.parameters.is_some() {
        return Err(CertError::SignatureAlgorithm {
            oid: alg.algorithm.to_id_string(),
        });
    }
    Ok(())
}

fn ed25519_key_of(cert: &X509Certificate<'_>) -> Result<[u8; 32], CertError> {
    let spki = &cert.tbs_certificate.subject_pki;
    let not_ed25519 = || CertError::NotEd25519 {
        oid: spki.algorithm.algorithm.to_id_string(),
    };
    if spki.algorithm.algorithm.as_bytes() != ext::DER_ED25519
        || spki.algorithm.parameters.is_some()
        || spki.subject_public_key.unused_bits != 0
    {
        return Err(not_ed25519());
    }
    spki.subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| not_ed25519())
}

/// Seconds since the Unix epoch, negative before it (so an absurd clock fails validity checks
/// instead of panicking).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cocoon_attest::{AttestError, EvidenceKind, NetworkKind, Policy};
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{self, Claims, Quote, Spec};

    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn inspect_any(der: &[u8]) -> Result<AttestedPeer, CertError> {
        verify_peer_cert(der, &Policy::any(), now())
    }

    #[test]
    fn well_formed_cert_passes() {
        let (cert, _) = test_support::build(&Spec {
            quote: Quote::Bound,
            ..Spec::default()
        });
        let pol = Policy::insecure_software(NetworkKind::Dev).unwrap();
        let peer = inspect_cert(&cert, &pol, now()).unwrap();
        assert_eq!(peer.kind, EvidenceKind::InsecureSoftware);
    }

    #[test]
    fn ecdsa_key_refused_as_not_ed25519() {
        let (cert, _) = test_support::build(&Spec {
            alg: &rcgen::PKCS_ECDSA_P256_SHA256,
            ..Spec::default()
        });
        let err = inspect_any(&cert).unwrap_err();
        assert!(matches!(err, CertError::NotEd25519 { .. }), "{err}");
        assert!(err.to_string().contains("not Ed25519"));
    }

    #[test]
    fn ca_issued_cert_refused_as_not_self_signed() {
        let (cert, _) = test_support::ca_issued();
        assert_eq!(inspect_any(&cert).unwrap_err(), CertError::NotSelfSigned);
    }

    #[test]
    fn tampered_signature_refused() {
        let (cert, _) = test_support::build(&Spec::default());
        let mut der = cert.to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert_eq!(inspect_any(&der).unwrap_err(), CertError::BadSelfSignature);
    }

    #[test]
    fn absent_claims_extension_is_rebuilt_from_key() {
        let (cert, _) = test_support::build(&Spec {
            claims: Claims::Absent,
            ..Spec::default()
        });
        assert!(inspect_any(&cert).is_ok());
    }

    #[test]
    fn claims_of_wrong_length_refused() {
        let (cert, _) = test_support::build(&Spec {
            claims: Claims::Explicit(vec![1; 31]),
            ..Spec::default()
        });
        assert_eq!(inspect_any(&cert).unwrap_err(), CertError::ClaimsMismatch);
    }

    #[test]
    fn duplicate_extension_refused() {
        let mut dup = rcgen::CustomExtension::from_oid_content(crate::ext::OID_QUOTE, vec![0; 64]);
        dup.set_criticality(true);
        let (cert, _) = test_support::build(&Spec {
            quote: Quote::Raw(vec![0; 64]),
            extra: vec![dup],
            ..Spec::default()
        });
        assert!(matches!(
            inspect_any(&cert).unwrap_err(),
            CertError::DuplicateExtension { .. }
        ));
    }

    #[test]
    fn sealing_key_of_wrong_length_refused_and_duplicate_refused() {
        for len in [0usize, 31, 33, 64] {
            let e = rcgen::CustomExtension::from_oid_content(ext::OID_SEALING_KEY, vec![1; len]);
            let (cert, _) = test_support::build(&Spec {
                extra: vec![e],
                ..Spec::default()
            });
            assert_eq!(
                inspect_any(&cert).unwrap_err(),
                CertError::BadSealingKey { len }
            );
        }
        let one = || rcgen::CustomExtension::from_oid_content(ext::OID_SEALING_KEY, vec![1; 32]);
        let (cert, _) = test_support::build(&Spec {
            extra: vec![one(), one()],
            ..Spec::default()
        });
        assert!(matches!(
            inspect_any(&cert).unwrap_err(),
            CertError::DuplicateExtension { .. }
        ));
        let (cert, _) = test_support::build(&Spec {
            extra: vec![one()],
            ..Spec::default()
        });
        assert_eq!(inspect_any(&cert).unwrap().sealing_key, Some([1; 32]));
    }

    #[test]
    fn oversized_quote_refused() {
        let big = vec![0u8; cocoon_attest::MAX_QUOTE_LEN + 1];
        let (cert, _) = test_support::build(&Spec {
            quote: Quote::Raw(big),
            ..Spec::default()
        });
        assert!(matches!(
            inspect_any(&cert).unwrap_err(),
            CertError::Attestation(AttestError::QuoteTooLarge { .. })
        ));
    }

    #[test]
    fn validity_is_checked_at_the_given_time() {
        let start = SystemTime::now();
        let (cert, _) = test_support::build(&Spec {
            not_before: start,
            not_after: start + Duration::from_secs(100),
            ..Spec::default()
        });
        let pol = Policy::any();
        assert!(verify_peer_cert(&cert, &pol, start + Duration::from_secs(50)).is_ok());
        assert!(matches!(
            verify_peer_cert(&cert, &pol, start + Duration::from_secs(200)),
            Err(CertError::Expired { .. })
        ));
        assert!(matches!(
            verify_peer_cert(&cert, &pol, start - Duration::from_secs(10)),
            Err(CertError::NotYetValid { .. })
        ));
    }

    #[test]
    fn trailing_bytes_and_size_limit() {
        let (cert, _) = test_support::build(&Spec::default());
        let mut der = cert.to_vec();
        der.extend_from_slice(&[0, 0]);
        assert_eq!(inspect_any(&der).unwrap_err(), CertError::TrailingData(2));
        let huge = vec![0x30; crate::ext::MAX_CERT_LEN + 1];
        assert!(matches!(
            inspect_any(&huge).unwrap_err(),
            CertError::TooLarge { .. }
        ));
    }

    #[test]
    fn unsigned_envelope_tag_changes_are_refused() {
        // x509-parser alone accepted these (found by the mutation property test): the outer
        // SEQUENCE tag, the signatureAlgorithm SEQUENCE and OID tags, the BIT STRING tag.
        let (cert, _) = test_support::build(&Spec {
            quote: Quote::Bound,
            ..Spec::default()
        });
        let pol = Policy::insecure_software(NetworkKind::Dev).unwrap();
        let tail = cert.len() - 74;
        for (i, flip) in [
            (0, 0x40u8),
            (tail, 0x80),
            (tail + 2, 0x01),
            (tail + 7, 0x40),
        ] {
            let mut der = cert.to_vec();
            der[i] ^= flip;
            let err = verify_peer_cert(&der, &pol, now()).unwrap_err();
            assert!(
                matches!(err, CertError::Malformed(_)),
                "byte {i} ^ {flip:#x}: {err}"
            );
        }
    }

    #[test]
    fn unix_secs_handles_pre_epoch_times() {
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_secs(5)), 5);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any single-byte change to a valid certificate is refused (and never panics).
        #[test]
        fn every_single_byte_mutation_is_refused(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let (cert, _) = test_support::build(&Spec { quote: Quote::Bound, ..Spec::default() });
            let pol = Policy::insecure_software(NetworkKind::Dev).unwrap();
            prop_assert!(verify_peer_cert(&cert, &pol, now()).is_ok());
            let mut der = cert.to_vec();
            let i = pos.index(der.len());
            der[i] ^= flip;
            prop_assert!(verify_peer_cert(&der, &pol, now()).is_err(), "byte {} ^ {:#x} accepted", i, flip);
        }

        /// Arbitrary bytes never pass and never panic.
        #[test]
        fn garbage_is_refused(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
            prop_assert!(inspect_any(&b).is_err());
        }
    }
}
