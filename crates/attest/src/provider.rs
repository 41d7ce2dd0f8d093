//! The [`AttestationProvider`] trait (who produces evidence for our own certificate), the
//! evidence-free provider [`NoEvidence`], and [`provider_for`], which picks one from config.
//!
//! The insecure software providers live in `insecure`; the hardware TDX provider (configfs-tsm)
//! in `configfs`, the hardware SEV-SNP one in `sev_snp`.

use std::sync::Arc;

use crate::claims::UserClaims;
use crate::error::AttestError;
use crate::evidence::{EvidenceKind, OwnedEvidence};
use crate::insecure::{InsecureSoftwareSev, InsecureSoftwareTdx};
use crate::network::NetworkKind;

/// Produces the evidence a node puts into its RA-TLS certificate.
pub trait AttestationProvider: Send + Sync + std::fmt::Debug {
    /// The kind of evidence this provider produces.
    fn kind(&self) -> EvidenceKind;
    /// Evidence for `claims`: a quote for the extension 1.3.6.1.4.1.12345.1, or SEV-SNP evidence
    /// for the extensions .100/.101/.102; `None` when this provider gives no evidence.
    fn evidence(&self, claims: &UserClaims) -> Result<Option<OwnedEvidence>, AttestError>;
}

/// No evidence at all: the certificate carries only the claims (Cocoon's `--tdx none`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvidence;

impl AttestationProvider for NoEvidence {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::None
    }

    fn evidence(&self, _claims: &UserClaims) -> Result<Option<OwnedEvidence>, AttestError> {
        Ok(None)
    }
}

/// The provider for a configured evidence kind on a network.
///
/// The insecure software kinds fail on [`NetworkKind::Main`]; `Tdx` fails outside a TD (no
/// configfs-tsm); `SevSnp` needs the guest's VCEK and is built with `ConfigfsTsmSnp`.
pub fn provider_for(
    kind: EvidenceKind,
    network: NetworkKind,
) -> Result<Arc<dyn AttestationProvider>, AttestError> {
    match kind {
        EvidenceKind::None => Ok(Arc::new(NoEvidence)),
        EvidenceKind::InsecureSoftware => Ok(Arc::new(InsecureSoftwareTdx::new(network)?)),
        EvidenceKind::InsecureSoftwareSev => Ok(Arc::new(InsecureSoftwareSev::new(network)?)),
        EvidenceKind::Tdx => Ok(Arc::new(crate::configfs::ConfigfsTsmTdx::new()?)),
        // SEV-SNP evidence needs the guest's VCEK, which only the caller can provision.
        EvidenceKind::SevSnp => Err(AttestError::SevUnavailable(
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
        assert_eq!(
            provider_for(EvidenceKind::InsecureSoftwareSev, NetworkKind::Dev)
                .unwrap()
                .kind(),
            EvidenceKind::InsecureSoftwareSev
        );
        assert_eq!(
            provider_for(EvidenceKind::InsecureSoftwareSev, NetworkKind::Main).unwrap_err(),
            AttestError::InsecureOnMain
        );
        assert!(matches!(
            provider_for(EvidenceKind::SevSnp, NetworkKind::Main).unwrap_err(),
            AttestError::SevUnavailable(_)
        ));
    }
}
