//! Insecure software attestation: Cocoon's fake TEEs (`fake_tee`), bit-compatible.
//!
//! * Fake TDX (Cocoon on Intel hosts; `fake_tdx` before 9060ce5): the "quote" is the raw 64-byte
//!   report data, `SHA-512(claims)`, and all measurements are zero, so every such peer has the
//!   image hash [`INSECURE_SOFTWARE_IMAGE_HASH`](crate::INSECURE_SOFTWARE_IMAGE_HASH).
//! * Fake SEV-SNP (Cocoon 9060ce5 on AMD hosts): the SEV-SNP certificate layout with a report that
//!   is all zero but its `REPORT_DATA` (no signature) and a self-signed P-384 "VCEK"; the
//!   measurement counts as zero (as Cocoon's fake verifier reports it), so every such peer has the
//!   image hash [`INSECURE_SOFTWARE_SEV_IMAGE_HASH`](crate::INSECURE_SOFTWARE_SEV_IMAGE_HASH).
//!
//! Both prove nothing about the peer (anyone can make them); they exist so the whole attestation
//! path runs in local and test networks without TEE hardware. Producing them
//! ([`InsecureSoftwareTdx`], [`InsecureSoftwareSev`]) and accepting them
//! (`Policy::insecure_software`) are refused on [`NetworkKind::Main`].

use crate::claims::UserClaims;
use crate::error::AttestError;
use crate::evidence::{EvidenceKind, OwnedEvidence, SevSnpEvidence};
use crate::measurements::TdMeasurements;
use crate::network::NetworkKind;
use crate::policy::VerifiedQuote;
use crate::provider::AttestationProvider;
use crate::sev_snp::SNP_REPORT_LEN;

/// Length of an insecure-software quote: exactly the 64-byte report data.
pub const INSECURE_SOFTWARE_QUOTE_LEN: usize = 64;

/// Cocoon's `fake_tdx` provider. Only constructible on dev and test networks.
#[derive(Debug, Clone)]
pub struct InsecureSoftwareTdx {
    network: NetworkKind,
}

impl InsecureSoftwareTdx {
    /// A provider of forgeable evidence; refuses [`NetworkKind::Main`].
    pub fn new(network: NetworkKind) -> Result<Self, AttestError> {
        if !network.allows_insecure_attestation() {
            return Err(AttestError::InsecureOnMain);
        }
        tracing::warn!(%network, "insecure software attestation (fake TDX) enabled: evidence is forgeable");
        Ok(Self { network })
    }

    /// The network this provider was built for.
    pub fn network(&self) -> NetworkKind {
        self.network
    }
}

impl AttestationProvider for InsecureSoftwareTdx {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::InsecureSoftware
    }

    fn evidence(&self, claims: &UserClaims) -> Result<Option<OwnedEvidence>, AttestError> {
        Ok(Some(OwnedEvidence::Quote(claims.report_data().to_vec())))
    }
}

/// Cocoon's fake SEV-SNP provider (`gen-cert --tee fake_tee` on an AMD host). Only constructible
/// on dev and test networks. Its self-signed P-384 "VCEK" is made once, at construction.
#[derive(Debug, Clone)]
pub struct InsecureSoftwareSev {
    network: NetworkKind,
    vcek_pem: Vec<u8>,
}

impl InsecureSoftwareSev {
    /// A provider of forgeable SEV-SNP evidence; refuses [`NetworkKind::Main`].
    pub fn new(network: NetworkKind) -> Result<Self, AttestError> {
        if !network.allows_insecure_attestation() {
            return Err(AttestError::InsecureOnMain);
        }
        let gen = |e: rcgen::Error| AttestError::Io(format!("fake VCEK generation: {e}"));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(gen)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(gen)?;
        // Cocoon's fake VCEK has its RA-TLS certificate's subject.
        for (t, v) in [
            (rcgen::DnType::CountryName, "AE"),
            (rcgen::DnType::StateOrProvinceName, "DUBAI"),
            (rcgen::DnType::OrganizationName, "TDLib Development"),
            (rcgen::DnType::OrganizationalUnitName, "Security"),
            (rcgen::DnType::CommonName, "localhost"),
        ] {
            params.distinguished_name.push(t, v);
        }
        let cert = params.self_signed(&key).map_err(gen)?;
        tracing::warn!(%network, "insecure software attestation (fake SEV-SNP) enabled: evidence is forgeable");
        Ok(Self {
            network,
            vcek_pem: cert.pem().into_bytes(),
        })
    }

    /// The network this provider was built for.
    pub fn network(&self) -> NetworkKind {
        self.network
    }
}

impl AttestationProvider for InsecureSoftwareSev {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::InsecureSoftwareSev
    }

    fn evidence(&self, claims: &UserClaims) -> Result<Option<OwnedEvidence>, AttestError> {
        let report_data = claims.report_data();
        let mut report = vec![0u8; SNP_REPORT_LEN];
        report[SNP_REPORT_DATA_AT..SNP_REPORT_DATA_AT + 64].copy_from_slice(&report_data);
        Ok(Some(OwnedEvidence::SevSnp {
            report_data,
            report,
            vcek_pem: self.vcek_pem.clone(),
        }))
    }
}

/// Offset of `REPORT_DATA` in an SEV-SNP report.
const SNP_REPORT_DATA_AT: usize = 0x50;

/// Reads fake SEV-SNP evidence (Cocoon's `FakeRATLSInterface`, which checks nothing and reports
/// a zero measurement): the report must have the report size and its `REPORT_DATA` is returned;
/// the report-data extension must be 64 bytes and the "VCEK" a PEM certificate. The binding to
/// claims is checked by the policy.
pub(crate) fn parse_fake_sev(ev: &SevSnpEvidence<'_>) -> Result<[u8; 64], AttestError> {
    let bad = |reason: String| AttestError::MalformedQuote {
        kind: EvidenceKind::InsecureSoftwareSev,
        reason,
    };
    if ev.report.len() != SNP_REPORT_LEN {
        return Err(bad(format!(
            "report is {} bytes, expected {SNP_REPORT_LEN}",
            ev.report.len()
        )));
    }
    if ev.report_data.len() != 64 {
        return Err(bad(format!(
            "report-data extension is {} bytes, expected 64",
            ev.report_data.len()
        )));
    }
    crate::sev_snp::vcek_der_from_pem(ev.vcek_pem).map_err(|e| bad(format!("VCEK: {e}")))?;
    let mut report_data = [0u8; 64];
    if let Some(src) = ev.report.get(SNP_REPORT_DATA_AT..SNP_REPORT_DATA_AT + 64) {
        report_data.copy_from_slice(src);
    }
    Ok(report_data)
}

/// Reads an insecure-software quote (Cocoon's `FakeTdxInterface::get_data`): the quote is the
/// report data, the measurements are zero. The binding to claims is checked by the policy.
pub(crate) fn parse_quote(quote: &[u8]) -> Result<VerifiedQuote, AttestError> {
    let report_data: [u8; 64] = quote.try_into().map_err(|_| AttestError::MalformedQuote {
        kind: EvidenceKind::InsecureSoftware,
        reason: format!(
            "expected {INSECURE_SOFTWARE_QUOTE_LEN} bytes, got {}",
            quote.len()
        ),
    })?;
    Ok(VerifiedQuote {
        measurements: TdMeasurements::ZERO,
        report_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measurements::INSECURE_SOFTWARE_IMAGE_HASH;

    #[test]
    fn refused_on_main_allowed_on_dev_and_test() {
        assert_eq!(
            InsecureSoftwareTdx::new(NetworkKind::Main).unwrap_err(),
            AttestError::InsecureOnMain
        );
        assert_eq!(
            AttestError::InsecureOnMain.to_string(),
            "insecure software attestation refused on main network"
        );
        assert!(InsecureSoftwareTdx::new(NetworkKind::Dev).is_ok());
        assert!(InsecureSoftwareTdx::new(NetworkKind::Test).is_ok());
    }

    #[test]
    fn evidence_is_the_report_data() {
        let p = InsecureSoftwareTdx::new(NetworkKind::Dev).unwrap();
        let claims = UserClaims::new([9; 32]);
        let Some(OwnedEvidence::Quote(q)) = p.evidence(&claims).unwrap() else {
            panic!("fake TDX evidence is a quote");
        };
        assert_eq!(q, claims.report_data().to_vec());
        assert_eq!(p.kind(), EvidenceKind::InsecureSoftware);
        let v = parse_quote(&q).unwrap();
        assert_eq!(v.report_data, claims.report_data());
        assert_eq!(v.measurements.image_hash(), INSECURE_SOFTWARE_IMAGE_HASH);
    }

    #[test]
    fn wrong_size_quote_is_malformed() {
        let err = parse_quote(&[0u8; 65]).unwrap_err();
        assert!(matches!(err, AttestError::MalformedQuote { .. }), "{err}");
    }

    #[test]
    fn fake_sev_is_cocoons_layout() {
        assert_eq!(
            InsecureSoftwareSev::new(NetworkKind::Main).unwrap_err(),
            AttestError::InsecureOnMain
        );
        let p = InsecureSoftwareSev::new(NetworkKind::Test).unwrap();
        assert_eq!(p.kind(), EvidenceKind::InsecureSoftwareSev);
        let claims = UserClaims::new([5; 32]);
        let owned = p.evidence(&claims).unwrap().unwrap();
        let OwnedEvidence::SevSnp {
            report_data,
            report,
            vcek_pem,
        } = &owned
        else {
            panic!("fake SEV-SNP evidence uses the SEV-SNP layout");
        };
        assert_eq!(*report_data, claims.report_data());
        assert_eq!(report.len(), SNP_REPORT_LEN);
        assert_eq!(&report[0x50..0x90], claims.report_data().as_slice());
        assert!(report[..0x50]
            .iter()
            .chain(&report[0x90..])
            .all(|&b| b == 0));
        assert!(vcek_pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
        let ev = owned.as_evidence();
        assert_eq!(ev.kind(), EvidenceKind::InsecureSoftwareSev);
        let crate::evidence::Evidence::SevSnp(sev) = ev else {
            panic!("SEV-SNP evidence");
        };
        assert_eq!(parse_fake_sev(&sev).unwrap(), claims.report_data());
        // The same VCEK for every certificate of one provider.
        let again = p.evidence(&UserClaims::new([6; 32])).unwrap().unwrap();
        assert!(matches!(again, OwnedEvidence::SevSnp { vcek_pem: v, .. } if &v == vcek_pem));
    }

    #[test]
    fn fake_sev_parse_bounds() {
        let report = vec![0u8; SNP_REPORT_LEN];
        let p = InsecureSoftwareSev::new(NetworkKind::Dev).unwrap();
        let Some(OwnedEvidence::SevSnp { vcek_pem, .. }) =
            p.evidence(&UserClaims::new([1; 32])).unwrap()
        else {
            panic!("SEV-SNP evidence");
        };
        let ok = SevSnpEvidence {
            report_data: &[0; 64],
            report: &report,
            vcek_pem: &vcek_pem,
        };
        assert!(parse_fake_sev(&ok).is_ok());
        for bad in [
            SevSnpEvidence {
                report: &report[1..],
                ..ok
            },
            SevSnpEvidence {
                report_data: &[0; 63],
                ..ok
            },
            SevSnpEvidence {
                vcek_pem: b"garbage",
                ..ok
            },
        ] {
            let err = parse_fake_sev(&bad).unwrap_err();
            assert!(matches!(err, AttestError::MalformedQuote { .. }), "{err}");
        }
    }
}
