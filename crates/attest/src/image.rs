//! Image-hash allowlist entries with Cocoon's TEE prefixes: [`TeeFamily`] and
//! [`ImageHashPattern`].
//!
//! Cocoon 9060ce5 writes image hashes as `tdx@<hex>` or `sev@<hex>` (router policies); a TDX and
//! an SEV-SNP image can never be confused because a prefixed hash only matches evidence of that
//! family (fake evidence belongs to the family it imitates). An unprefixed hash keeps the meaning
//! it always had here: it matches the image hash of evidence of any kind. (Cocoon's router reads
//! an unprefixed hash as `tdx@`; write the prefix to get exactly that.)

use std::fmt;
use std::str::FromStr;

use crate::error::AttestError;
use crate::evidence::{AttestedPeer, EvidenceKind};

/// A TEE family, as named by Cocoon's image-hash prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TeeFamily {
    /// Intel TDX (and Cocoon's fake TDX): prefix `tdx@`.
    Tdx,
    /// AMD SEV-SNP (and Cocoon's fake SEV-SNP): prefix `sev@`.
    Sev,
}

impl TeeFamily {
    /// The prefix name, without `@`.
    pub fn as_str(self) -> &'static str {
        match self {
            TeeFamily::Tdx => "tdx",
            TeeFamily::Sev => "sev",
        }
    }
}

impl fmt::Display for TeeFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One allowlist entry: an image hash, optionally restricted to one TEE family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageHashPattern {
    /// `None`: evidence of any family with this hash matches.
    pub family: Option<TeeFamily>,
    /// The SHA-256 image hash.
    pub hash: [u8; 32],
}

impl ImageHashPattern {
    /// Matches any family.
    pub fn any(hash: [u8; 32]) -> Self {
        Self { family: None, hash }
    }

    /// Matches only evidence of `family`.
    pub fn of(family: TeeFamily, hash: [u8; 32]) -> Self {
        Self {
            family: Some(family),
            hash,
        }
    }

    /// Whether verified evidence of `kind` with image hash `hash` matches this entry.
    pub fn matches(&self, kind: EvidenceKind, hash: &[u8; 32]) -> bool {
        self.hash == *hash && self.family.is_none_or(|f| kind.tee_family() == Some(f))
    }

    /// Whether `peer` (verified evidence with an image hash) matches this entry.
    pub fn allows(&self, peer: &AttestedPeer) -> bool {
        peer.image_hash.is_some_and(|h| self.matches(peer.kind, &h))
    }
}

impl FromStr for ImageHashPattern {
    type Err = AttestError;

    /// `<hex>`, `tdx@<hex>` or `sev@<hex>`: 64 hex digits, either case, surrounding spaces
    /// ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| AttestError::BadImageHash {
            entry: s.chars().take(80).collect(),
            reason: reason.into(),
        };
        let t = s.trim();
        let (family, hex_part) = match t.split_once('@') {
            None => (None, t),
            Some(("tdx", h)) => (Some(TeeFamily::Tdx), h),
            Some(("sev", h)) => (Some(TeeFamily::Sev), h),
            Some(_) => return Err(bad("the prefix must be tdx@ or sev@")),
        };
        if hex_part.len() != 64 {
            return Err(bad("expected 64 hex digits (a SHA-256)"));
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut hash).map_err(|_| bad("not hex"))?;
        Ok(Self { family, hash })
    }
}

impl fmt::Display for ImageHashPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fam) = self.family {
            write!(f, "{fam}@")?;
        }
        f.write_str(&hex::encode(self.hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "5c55c8f4db4010ba9203d83536d0609856af8c847ac039e37e7dde8fbd574b61";

    fn peer(kind: EvidenceKind, hash: [u8; 32]) -> AttestedPeer {
        AttestedPeer {
            kind,
            public_key: [0; 32],
            image_hash: Some(hash),
            evidence_digest: None,
            sealing_key: None,
            certificate: None,
            not_after: None,
        }
    }

    #[test]
    fn parses_prefixed_and_plain_hashes() {
        let plain: ImageHashPattern = H.parse().unwrap();
        assert_eq!(plain.family, None);
        assert_eq!(hex::encode(plain.hash), H);
        let tdx: ImageHashPattern = format!("tdx@{}", H.to_uppercase()).parse().unwrap();
        assert_eq!(tdx, ImageHashPattern::of(TeeFamily::Tdx, plain.hash));
        let sev: ImageHashPattern = format!(" sev@{H} ").parse().unwrap();
        assert_eq!(sev.family, Some(TeeFamily::Sev));
        assert_eq!(sev.to_string(), format!("sev@{H}"));
        assert_eq!(plain.to_string(), H);
    }

    #[test]
    fn refuses_bad_entries() {
        for bad in [
            "",
            "tdx@",
            &format!("amd@{H}"),
            &format!("TDX@{H}"),
            &format!("tdx@sev@{H}"),
            &H[..62],
            &format!("{H}00"),
            &format!("zz{}", &H[2..]),
        ] {
            let err = bad.parse::<ImageHashPattern>().unwrap_err();
            assert!(
                matches!(err, AttestError::BadImageHash { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_prefixed_hash_matches_only_its_family() {
        let h = [0xab; 32];
        let tdx = ImageHashPattern::of(TeeFamily::Tdx, h);
        let sev = ImageHashPattern::of(TeeFamily::Sev, h);
        let any = ImageHashPattern::any(h);
        for (kind, is_tdx) in [
            (EvidenceKind::Tdx, true),
            (EvidenceKind::InsecureSoftware, true),
            (EvidenceKind::SevSnp, false),
            (EvidenceKind::InsecureSoftwareSev, false),
        ] {
            let p = peer(kind, h);
            assert_eq!(tdx.allows(&p), is_tdx, "{kind}");
            assert_eq!(sev.allows(&p), !is_tdx, "{kind}");
            assert!(any.allows(&p), "{kind}");
            assert!(!any.allows(&peer(kind, [0xcd; 32])));
        }
        assert!(!any.allows(&AttestedPeer::unattested([0; 32])));
        assert!(!tdx.matches(EvidenceKind::None, &h));
    }
}
