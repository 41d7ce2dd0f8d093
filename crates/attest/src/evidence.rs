//! Evidence kinds, the quote size bound, and [`AttestedPeer`], the result of judging a peer.
//!
//! Only plain data lives here; producing evidence is `provider`/`insecure`, judging it is `policy`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest quote accepted anywhere (Cocoon's limit: 32 KiB; real DCAP quotes are 5-10 KB).
pub const MAX_QUOTE_LEN: usize = 32 * 1024;

/// What kind of evidence backs a peer's claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EvidenceKind {
    /// No evidence (Cocoon's `any` policy / `--tdx none`).
    None,
    /// Cocoon's `fake_tdx`: software-made, forgeable, for dev and test networks only.
    #[serde(alias = "fake_tdx")]
    InsecureSoftware,
    /// A hardware Intel TDX quote (verified with DCAP, `DcapVerifier`).
    Tdx,
    /// An AMD SEV-SNP evidence bundle (`SnpEvidence`, verified by `SnpVerifier`).
    SevSnp,
}

impl EvidenceKind {
    /// Which kind a raw quote claims to be, judged by its shape only (nothing is verified).
    ///
    /// Cocoon's fake quote is exactly the 64-byte report data; any real DCAP quote is far longer
    /// (a 48-byte header plus a 584-byte TD report body at least), so length tells them apart.
    ///
    /// Our SEV-SNP bundles start with `"CSNP"`; a DCAP quote starts with its version (4 or 5,
    /// little-endian u16), so the magic never collides with one.
    pub fn of_quote(quote: &[u8]) -> Self {
        if quote.len() == crate::insecure::INSECURE_SOFTWARE_QUOTE_LEN {
            EvidenceKind::InsecureSoftware
        } else if quote.starts_with(crate::sev_snp::SNP_EVIDENCE_MAGIC) {
            EvidenceKind::SevSnp
        } else {
            EvidenceKind::Tdx
        }
    }
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EvidenceKind::None => "no",
            EvidenceKind::InsecureSoftware => "insecure software (fake TDX)",
            EvidenceKind::Tdx => "TDX",
            EvidenceKind::SevSnp => "SEV-SNP",
        })
    }
}

/// What the application layer learns about a verified peer.
///
/// `kind == EvidenceKind::None` means "not attested": the peer proved only that it holds the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedPeer {
    /// Kind of evidence that was verified (`None` when none was).
    pub kind: EvidenceKind,
    /// The peer's Ed25519 key (its certificate key, which is also its claims).
    pub public_key: [u8; 32],
    /// Image hash from the verified measurements; `None` without verified evidence.
    pub image_hash: Option<[u8; 32]>,
    /// SHA-256 of the verified quote (a cache key and an audit id); `None` without evidence.
    pub evidence_digest: Option<[u8; 32]>,
}

impl AttestedPeer {
    /// A peer that proved key possession only.
    pub fn unattested(public_key: [u8; 32]) -> Self {
        Self {
            kind: EvidenceKind::None,
            public_key,
            image_hash: None,
            evidence_digest: None,
        }
    }

    /// Whether any evidence was verified.
    pub fn is_attested(&self) -> bool {
        self.kind != EvidenceKind::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_shape_decides_kind() {
        assert_eq!(
            EvidenceKind::of_quote(&[0u8; 64]),
            EvidenceKind::InsecureSoftware
        );
        assert_eq!(EvidenceKind::of_quote(&[0u8; 63]), EvidenceKind::Tdx);
        assert_eq!(EvidenceKind::of_quote(&[0u8; 5000]), EvidenceKind::Tdx);
        let mut snp = b"CSNP".to_vec();
        snp.extend_from_slice(&[0u8; 100]);
        assert_eq!(EvidenceKind::of_quote(&snp), EvidenceKind::SevSnp);
    }

    #[test]
    fn serde_names_and_cocoon_alias() {
        assert_eq!(
            serde_json::to_string(&EvidenceKind::InsecureSoftware).unwrap(),
            "\"insecure_software\""
        );
        let k: EvidenceKind = serde_json::from_str("\"fake_tdx\"").unwrap();
        assert_eq!(k, EvidenceKind::InsecureSoftware);
        let k: EvidenceKind = serde_json::from_str("\"tdx\"").unwrap();
        assert_eq!(k, EvidenceKind::Tdx);
    }

    #[test]
    fn unattested_peer_is_not_attested() {
        let p = AttestedPeer::unattested([1; 32]);
        assert!(!p.is_attested());
        assert_eq!(p.image_hash, None);
    }
}
