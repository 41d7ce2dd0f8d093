//! The [`AttestationProvider`] trait (who produces evidence for our own certificate), the
//! evidence-free provider [`NoEvidence`], and [`provider_for`], which picks one from config.
//!
//! The insecure software provider lives in `insecure`; the hardware TDX provider (configfs-tsm)
//! in `configfs`.

use std::sync::Arc;

use crate::claims::UserClaims;
use crate::error::AttestError;
use crate::evidence::EvidenceKind;
use crate::insecure::InsecureSoftwareTdx;
use crate::network::NetworkKind;

/// Produces the evidence a node puts into its RA-TLS certificate.
pub trait AttestationProvider: Send + Sync + std::fmt::Debug {
    /// The kind of evidence this provider produces.
    fn kind(&self) -> EvidenceKind;
    /// The bytes for the quote extension (1.3.6.1.4.1.12345.1), or None when this provider gives no evidence.
    fn evidence(&self, claims: &UserClaims) -> Result<Option<Vec<u8>>, AttestError>;
}

/// No evidence at all: the certificate carries only the claims (Cocoon's `--tdx none`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvidence;

impl AttestationProvider for NoEvidence {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::None
    }

    fn evidence(&self, _claims: &UserClaims) -> Result<Option<Vec<u8>>, AttestError> {
        Ok(None)
    }
}

/// The provider for a configured evidence kind on a network.
///
/// `InsecureSoftware` fails on [`NetworkKind::Main`]; `Tdx` fails outside a TD (no configfs-tsm).
pub fn provider_for(
    kind: EvidenceKind,
    network: NetworkKind,
) -> Result<Arc<dyn AttestationProvider>, AttestError> {
    match kind {
        EvidenceKind::None => Ok(Arc::new(NoEvidence)),
        EvidenceKind::InsecureSoftware => Ok(Arc::new(InsecureSoftwareTdx::new(network)?)),
        EvidenceKind::Tdx => Ok(Arc::new(crate::configfs::ConfigfsTsmTdx::new()?)),
        // The SEV-SNP bundle needs the guest's VCEK, which only the caller can provision.
        EvidenceKind::SevSnp => Err(AttestError::TdxUnavailable(
            "SEV-SNP evidence needs a provisioned VCEK: build ConfigfsTsmSnp directly".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_evidence_gives_none() {
        assert_eq!(
            NoEvidence.evidence(&UserClaims::new([1; 32])).unwrap(),
            None
        );
        assert_eq!(NoEvidence.kind(), EvidenceKind::None);
    }

    #[test]
    fn provider_for_respects_network_and_kind() {
        assert_eq!(
            provider_for(EvidenceKind::None, NetworkKind::Main)
                .unwrap()
                .kind(),
            EvidenceKind::None
        );
        assert_eq!(
            provider_for(EvidenceKind::InsecureSoftware, NetworkKind::Test)
                .unwrap()
                .kind(),
            EvidenceKind::InsecureSoftware
        );
        assert_eq!(
            provider_for(EvidenceKind::InsecureSoftware, NetworkKind::Main).unwrap_err(),
            AttestError::InsecureOnMain
        );
        assert!(matches!(
            provider_for(EvidenceKind::Tdx, NetworkKind::Main).unwrap_err(),
            AttestError::TdxUnavailable(_)
        ));
    }
}
