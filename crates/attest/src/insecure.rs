//! Insecure software attestation: Cocoon's `fake_tdx`, bit-compatible.
//!
//! The "quote" is the raw 64-byte report data, `SHA-512(claims)`, and all measurements are zero, so
//! every such peer has the image hash [`INSECURE_SOFTWARE_IMAGE_HASH`](crate::INSECURE_SOFTWARE_IMAGE_HASH).
//! It proves nothing about the peer (anyone can compute it); it exists so the whole attestation path
//! runs in local and test networks without TDX hardware. Both producing it ([`InsecureSoftwareTdx`])
//! and accepting it (`Policy::insecure_software`) are refused on [`NetworkKind::Main`].

use crate::claims::UserClaims;
use crate::error::AttestError;
use crate::evidence::EvidenceKind;
use crate::measurements::TdMeasurements;
use crate::network::NetworkKind;
use crate::policy::VerifiedQuote;
use crate::provider::AttestationProvider;

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

    fn evidence(&self, claims: &UserClaims) -> Result<Option<Vec<u8>>, AttestError> {
        Ok(Some(claims.report_data().to_vec()))
    }
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
        let q = p.evidence(&claims).unwrap().unwrap();
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
}
