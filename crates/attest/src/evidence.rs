//! Evidence kinds, the evidence a certificate carries ([`Evidence`], borrowed; [`OwnedEvidence`],
//! what a provider makes), their size bounds, and [`AttestedPeer`], the result of judging a peer.
//!
//! Cocoon (upstream 9060ce5) has two evidence layouts, told apart by certificate extensions:
//! * TDX family, extension `1.3.6.1.4.1.12345.1`: a DCAP quote, or Cocoon's fake TDX "quote"
//!   (the 64-byte report data) — [`Evidence::Quote`];
//! * SEV-SNP, extensions `.100` (report data), `.101` (the raw 1184-byte attestation report) and
//!   `.102` (the VCEK certificate, PEM) — [`Evidence::SevSnp`]. Cocoon's fake SEV-SNP uses the
//!   same layout with an all-zero, unsigned report and a self-signed "VCEK".
//!
//! Only plain data lives here; producing evidence is `provider`/`insecure`/`configfs`/`sev_snp`,
//! judging it is `policy`.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::image::TeeFamily;

/// Largest quote accepted anywhere (Cocoon's limit: 32 KiB; real DCAP quotes are 5-10 KB).
pub const MAX_QUOTE_LEN: usize = 32 * 1024;
/// Largest VCEK certificate (PEM) accepted in SEV-SNP evidence. AMD's VCEKs are about 1.4 KB of
/// DER (1.9 KB of PEM); Cocoon's fake one is 0.9 KB.
pub const MAX_VCEK_PEM_LEN: usize = 8 * 1024;
/// Offset of the 72-byte little-endian `r`, then `s`, in an SEV-SNP report: the signature.
const SNP_SIGNATURE_AT: usize = 0x2A0;

/// What kind of evidence backs a peer's claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EvidenceKind {
    /// No evidence (Cocoon's `any` policy / `--tee none`).
    None,
    /// Cocoon's fake TDX (`fake_tdx`, `fake_tee` on Intel): software-made, forgeable, for dev and
    /// test networks only.
    #[serde(alias = "fake_tdx")]
    InsecureSoftware,
    /// A hardware Intel TDX quote (verified with DCAP, `DcapVerifier`).
    Tdx,
    /// A hardware AMD SEV-SNP report with its VCEK (verified by `SnpVerifier`).
    SevSnp,
    /// Cocoon's fake SEV-SNP (`fake_tee` on AMD): an unsigned report and a self-signed "VCEK";
    /// forgeable, for dev and test networks only.
    #[serde(alias = "fake_sev")]
    InsecureSoftwareSev,
}

impl EvidenceKind {
    /// Which kind a raw TDX-family quote claims to be, judged by its shape only (nothing is
    /// verified).
    ///
    /// Cocoon's fake quote is exactly the 64-byte report data; any real DCAP quote is far longer
    /// (a 48-byte header plus a 584-byte TD report body at least), so length tells them apart.
    pub fn of_quote(quote: &[u8]) -> Self {
        if quote.len() == crate::insecure::INSECURE_SOFTWARE_QUOTE_LEN {
            EvidenceKind::InsecureSoftware
        } else {
            EvidenceKind::Tdx
        }
    }

    /// The TEE family this kind of evidence belongs to (`None` for no evidence). Fake evidence
    /// belongs to the family it imitates, as in Cocoon, whose image hashes carry `tdx@`/`sev@`.
    pub fn tee_family(self) -> Option<TeeFamily> {
        match self {
            EvidenceKind::None => None,
            EvidenceKind::InsecureSoftware | EvidenceKind::Tdx => Some(TeeFamily::Tdx),
            EvidenceKind::SevSnp | EvidenceKind::InsecureSoftwareSev => Some(TeeFamily::Sev),
        }
    }

    /// Whether this kind is forgeable software evidence (fake TDX or fake SEV-SNP).
    pub fn is_insecure_software(self) -> bool {
        matches!(
            self,
            EvidenceKind::InsecureSoftware | EvidenceKind::InsecureSoftwareSev
        )
    }
}

impl EvidenceKind {
    /// The short name used in headers, stats and `client.queryWorkerInfoV3`: `none`,
    /// `insecure-software`, `tdx`, `sev-snp`, `insecure-software-sev`.
    pub fn name(self) -> &'static str {
        match self {
            EvidenceKind::None => "none",
            EvidenceKind::InsecureSoftware => "insecure-software",
            EvidenceKind::Tdx => "tdx",
            EvidenceKind::SevSnp => "sev-snp",
            EvidenceKind::InsecureSoftwareSev => "insecure-software-sev",
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
            EvidenceKind::InsecureSoftwareSev => "insecure software (fake SEV-SNP)",
        })
    }
}

/// Cocoon's SEV-SNP evidence as found in a certificate (extensions `.100`, `.101`, `.102`).
/// Untrusted: nothing here has been checked, not even the lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevSnpEvidence<'a> {
    /// Extension `1.3.6.1.4.1.12345.100`: must be `SHA-512(claims)` (64 bytes).
    pub report_data: &'a [u8],
    /// Extension `.101`: the raw attestation report (1184 bytes), whose `REPORT_DATA` (0x50)
    /// must equal the same hash.
    pub report: &'a [u8],
    /// Extension `.102`: the VCEK certificate that signed the report, PEM.
    pub vcek_pem: &'a [u8],
}

impl SevSnpEvidence<'_> {
    /// Whether the report carries no signature at all (r = s = 0, which no ECDSA signature can
    /// be): Cocoon's fake SEV-SNP. A short report is not judged here (its parse fails later).
    pub fn is_unsigned(&self) -> bool {
        self.report
            .get(SNP_SIGNATURE_AT..crate::sev_snp::SNP_REPORT_LEN)
            .is_some_and(|sig| sig.iter().all(|&b| b == 0))
    }
}

/// Evidence as found in a peer's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence<'a> {
    /// The TDX-family quote extension `1.3.6.1.4.1.12345.1` (a DCAP quote or the fake one).
    Quote(&'a [u8]),
    /// The SEV-SNP extensions.
    SevSnp(SevSnpEvidence<'a>),
}

impl Evidence<'_> {
    /// Which kind this evidence claims to be, by its shape only: a 64-byte quote is fake TDX,
    /// any other quote TDX; an SEV-SNP report with an all-zero signature is fake SEV-SNP, any
    /// other SEV-SNP.
    pub fn kind(&self) -> EvidenceKind {
        match self {
            Evidence::Quote(q) => EvidenceKind::of_quote(q),
            Evidence::SevSnp(e) if e.is_unsigned() => EvidenceKind::InsecureSoftwareSev,
            Evidence::SevSnp(_) => EvidenceKind::SevSnp,
        }
    }

    /// SHA-256 identifying this evidence (an audit id and a cache key): of the quote, or of the
    /// SEV-SNP report followed by the VCEK PEM.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            Evidence::Quote(q) => Sha256::digest(q).into(),
            Evidence::SevSnp(e) => {
                let mut h = Sha256::new();
                h.update(e.report);
                h.update(e.vcek_pem);
                h.finalize().into()
            }
        }
    }
}

/// Evidence a provider made for our own certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedEvidence {
    /// Goes into the quote extension `1.3.6.1.4.1.12345.1` (next to the claims in `.2`).
    Quote(Vec<u8>),
    /// Goes into the SEV-SNP extensions `.100`/`.101`/`.102` (and no claims extension: Cocoon
    /// refuses TDX and SEV extensions in one certificate).
    SevSnp {
        /// `SHA-512(claims)`.
        report_data: [u8; 64],
        /// The raw attestation report.
        report: Vec<u8>,
        /// The VCEK certificate, PEM.
        vcek_pem: Vec<u8>,
    },
}

impl OwnedEvidence {
    /// The borrowed form, as a verifier would see it in the certificate.
    pub fn as_evidence(&self) -> Evidence<'_> {
        match self {
            OwnedEvidence::Quote(q) => Evidence::Quote(q),
            OwnedEvidence::SevSnp {
                report_data,
                report,
                vcek_pem,
            } => Evidence::SevSnp(SevSnpEvidence {
                report_data,
                report,
                vcek_pem,
            }),
        }
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
    /// [`Evidence::digest`] of the verified evidence (a cache key and an audit id); `None`
    /// without evidence.
    pub evidence_digest: Option<[u8; 32]>,
    /// The X25519 HPKE key the peer's attested credential binds (cocoon-rs workers: the key
    /// clients seal requests to), set by the transport layer that read the credential.
    pub sealing_key: Option<[u8; 32]>,
    /// The credential the evidence arrived in (cocoon-rs: the DER RA-TLS certificate), kept so
    /// a relay can hand it to a third party who verifies it itself. Set by the transport layer.
    pub certificate: Option<std::sync::Arc<[u8]>>,
    /// End of the credential's validity, unix seconds (set by the transport layer).
    pub not_after: Option<u64>,
}

impl AttestedPeer {
    /// A peer that proved key possession only.
    pub fn unattested(public_key: [u8; 32]) -> Self {
        Self {
            kind: EvidenceKind::None,
            public_key,
            image_hash: None,
            evidence_digest: None,
            sealing_key: None,
            certificate: None,
            not_after: None,
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
        // Our former "CSNP" bundle is gone: such bytes are just a (bad) TDX quote now.
        let mut old = b"CSNP".to_vec();
        old.extend_from_slice(&[0u8; 100]);
        assert_eq!(EvidenceKind::of_quote(&old), EvidenceKind::Tdx);
    }

    #[test]
    fn sev_signature_decides_fake_or_real() {
        let mut report = vec![0u8; crate::sev_snp::SNP_REPORT_LEN];
        let ev = |r: &[u8]| {
            Evidence::SevSnp(SevSnpEvidence {
                report_data: &[],
                report: r,
                vcek_pem: &[],
            })
            .kind()
        };
        assert_eq!(ev(&report), EvidenceKind::InsecureSoftwareSev);
        report[0x50] = 1; // report data does not matter
        assert_eq!(ev(&report), EvidenceKind::InsecureSoftwareSev);
        report[SNP_SIGNATURE_AT + 10] = 1;
        assert_eq!(ev(&report), EvidenceKind::SevSnp);
        // Too short to hold a signature: not fake; the SEV-SNP verifier refuses it.
        assert_eq!(ev(&[0u8; 100]), EvidenceKind::SevSnp);
    }

    #[test]
    fn kinds_belong_to_tee_families() {
        assert_eq!(EvidenceKind::None.tee_family(), None);
        for k in [EvidenceKind::Tdx, EvidenceKind::InsecureSoftware] {
            assert_eq!(k.tee_family(), Some(TeeFamily::Tdx));
        }
        for k in [EvidenceKind::SevSnp, EvidenceKind::InsecureSoftwareSev] {
            assert_eq!(k.tee_family(), Some(TeeFamily::Sev));
        }
        assert!(EvidenceKind::InsecureSoftwareSev.is_insecure_software());
        assert!(!EvidenceKind::SevSnp.is_insecure_software());
    }

    #[test]
    fn digest_covers_report_and_vcek() {
        let a = Evidence::SevSnp(SevSnpEvidence {
            report_data: &[1],
            report: b"r",
            vcek_pem: b"v",
        });
        let b = Evidence::SevSnp(SevSnpEvidence {
            report_data: &[1],
            report: b"r",
            vcek_pem: b"w",
        });
        assert_ne!(a.digest(), b.digest());
        assert_eq!(
            Evidence::Quote(b"q").digest(),
            <[u8; 32]>::from(Sha256::digest(b"q"))
        );
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
        let k: EvidenceKind = serde_json::from_str("\"fake_sev\"").unwrap();
        assert_eq!(k, EvidenceKind::InsecureSoftwareSev);
    }

    #[test]
    fn unattested_peer_is_not_attested() {
        let p = AttestedPeer::unattested([1; 32]);
        assert!(!p.is_attested());
        assert_eq!(p.image_hash, None);
    }
}
