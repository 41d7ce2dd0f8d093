//! AMD SEV-SNP: the attestation report ([`SnpReport`]), its signature chain
//! (VCEK/VLEK → ASK/ASVK → ARK, AMD roots pinned), our guest-policy checks, the evidence bundle
//! that goes into an RA-TLS certificate, and [`SnpVerifier`], a [`QuoteVerifier`].
//!
//! Written on `ring` + `x509-parser` (already in the tree) rather than the `sev` crate, whose
//! pure-Rust mode pulls `rsa`/`p384`/`x509-cert`; the facts come from AMD's SEV-SNP ABI spec
//! (report layout, table 22) and the `sev` crate's test data.
//! * Report: 0x4A0 bytes; bytes 0..0x2A0 are signed with ECDSA P-384/SHA-384 (signature algo 1);
//!   r and s are 72-byte little-endian fields at 0x2A0 / 0x2E8.
//! * Chain: the VCEK (or VLEK) is an X.509 P-384 key signed by the ASK (ASVK) with RSASSA-PSS
//!   SHA-384, which is signed by the ARK, which must be one of the pinned AMD roots (Milan, Genoa,
//!   Turin, copied from the `sev` crate's built-in certificates, see src/sev_roots/).
//! * Policy: guest POLICY.DEBUG (bit 19) must be 0; the VCEK's hwID must equal CHIP_ID.
//! * Image hash: `SHA-256("cocoon:sev-snp:v1:" ‖ MEASUREMENT)`; the prefix keeps it apart from
//!   every TDX image hash.
//! * Evidence bundle (our format, no Cocoon equivalent): `"CSNP"` ‖ u32le report length ‖
//!   report ‖ u32le VEK DER length ‖ VEK DER ‖ (optional) u32le intermediate length ‖
//!   intermediate DER; without an intermediate the built-in ASKs are tried.
//!
//! Getting a report inside the guest uses configfs-tsm (`provider` = `sev_guest`) through
//! [`ConfigfsTsmSnp`] (the `/dev/sev-guest` ioctl needs `unsafe`, which this workspace forbids);
//! the VCEK must then be provisioned (the host's certificate blob or AMD KDS) and given to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED, RSA_PSS_2048_8192_SHA384};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::cache::{TtlLru, DEFAULT_CACHE_CAPACITY};
use crate::claims::UserClaims;
use crate::error::AttestError;
use crate::evidence::{EvidenceKind, MAX_QUOTE_LEN};
use crate::measurements::TdMeasurements;
use crate::policy::{QuoteVerifier, VerifiedQuote};
use crate::provider::AttestationProvider;

/// Size of an SEV-SNP attestation report.
pub const SNP_REPORT_LEN: usize = 0x4A0;
/// Magic that starts our SEV-SNP evidence bundle.
pub const SNP_EVIDENCE_MAGIC: &[u8; 4] = b"CSNP";
/// Guest policy bit: debugging allowed.
pub const SNP_POLICY_DEBUG: u64 = 1 << 19;
const SIGNED_LEN: usize = 0x2A0;
/// Largest certificate accepted in a bundle.
const MAX_CERT_LEN: usize = 8 * 1024;
/// VCEK extension hwID (1.3.6.1.4.1.3704.1.4), DER content bytes of the OID.
const OID_HWID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x9c, 0x78, 0x01, 0x04];

const BUILTIN_ARKS: &[&str] = &[
    include_str!("sev_roots/milan_ark.pem"),
    include_str!("sev_roots/genoa_ark.pem"),
    include_str!("sev_roots/turin_ark.pem"),
];
const BUILTIN_ASKS: &[&str] = &[
    include_str!("sev_roots/milan_ask.pem"),
    include_str!("sev_roots/genoa_ask.pem"),
    include_str!("sev_roots/turin_ask.pem"),
];

fn bad(reason: impl Into<String>) -> AttestError {
    AttestError::MalformedQuote {
        kind: EvidenceKind::SevSnp,
        reason: reason.into(),
    }
}

fn refused(reason: impl Into<String>) -> AttestError {
    AttestError::QuoteVerification(reason.into())
}

/// The fields of an SEV-SNP attestation report that cocoon-rs uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpReport {
    /// Report format version (2 or 3).
    pub version: u32,
    /// Guest SVN.
    pub guest_svn: u32,
    /// Guest policy (bit 19 = debug allowed).
    pub policy: u64,
    /// VMPL the report was requested from.
    pub vmpl: u32,
    /// Signature algorithm (1 = ECDSA P-384 with SHA-384).
    pub signature_algo: u32,
    /// Signing key: 0 = VCEK, 1 = VLEK.
    pub signing_key: u8,
    /// Report data (`SHA-512(claims)` for RA-TLS).
    pub report_data: [u8; 64],
    /// Launch measurement.
    pub measurement: [u8; 48],
    /// Host-provided data.
    pub host_data: [u8; 32],
    /// Reported TCB version.
    pub reported_tcb: u64,
    /// Chip id (matches the VCEK hwID).
    pub chip_id: [u8; 64],
    raw: Vec<u8>,
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

impl SnpReport {
    /// Parses a raw report (exactly [`SNP_REPORT_LEN`] bytes).
    pub fn parse(b: &[u8]) -> Result<Self, AttestError> {
        if b.len() != SNP_REPORT_LEN {
            return Err(bad(format!(
                "report is {} bytes, expected {SNP_REPORT_LEN}",
                b.len()
            )));
        }
        let u32_at = |at| u32::from_le_bytes(arr(b, at));
        let u64_at = |at| u64::from_le_bytes(arr(b, at));
        let version = u32_at(0);
        if !(2..=5).contains(&version) {
            return Err(bad(format!("unsupported report version {version}")));
        }
        Ok(Self {
            version,
            guest_svn: u32_at(0x04),
            policy: u64_at(0x08),
            vmpl: u32_at(0x30),
            signature_algo: u32_at(0x34),
            signing_key: ((u32_at(0x48) >> 2) & 0x7) as u8,
            report_data: arr(b, 0x50),
            measurement: arr(b, 0x90),
            host_data: arr(b, 0xC0),
            reported_tcb: u64_at(0x180),
            chip_id: arr(b, 0x1A0),
            raw: b.to_vec(),
        })
    }

    /// Whether the guest policy allows debugging (the host could read guest memory).
    pub fn debug_allowed(&self) -> bool {
        self.policy & SNP_POLICY_DEBUG != 0
    }

    /// Our image hash for SEV-SNP guests (see the module docs).
    pub fn image_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"cocoon:sev-snp:v1:");
        h.update(self.measurement);
        h.finalize().into()
    }

    /// Verifies the report signature with the VEK certificate's P-384 key.
    fn verify_signature(&self, vek: &X509Certificate<'_>) -> Result<(), AttestError> {
        if self.signature_algo != 1 {
            return Err(refused(format!(
                "unsupported SEV-SNP signature algorithm {}",
                self.signature_algo
            )));
        }
        // r and s: 72-byte little-endian fields, of which only 48 bytes can be non-zero.
        let mut fixed = [0u8; 96];
        for (i, at) in [0x2A0usize, 0x2E8].into_iter().enumerate() {
            let field = &self.raw[at..at + 72];
            if field[48..].iter().any(|&x| x != 0) {
                return Err(refused("report signature component out of range"));
            }
            let mut be: Vec<u8> = field[..48].to_vec();
            be.reverse();
            fixed[i * 48..(i + 1) * 48].copy_from_slice(&be);
        }
        let key = vek.public_key().subject_public_key.data.as_ref();
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key)
            .verify(&self.raw[..SIGNED_LEN], &fixed)
            .map_err(|_| refused("SEV-SNP report signature does not verify with the VEK"))
    }
}

/// Our SEV-SNP evidence: report, VEK certificate, optional intermediate (ASK/ASVK).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpEvidence {
    /// Raw report.
    pub report: Vec<u8>,
    /// VCEK or VLEK certificate, DER.
    pub vek_der: Vec<u8>,
    /// ASK or ASVK certificate, DER; `None` = try the built-in ASKs.
    pub intermediate_der: Option<Vec<u8>>,
}

impl SnpEvidence {
    /// Encodes the bundle.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = SNP_EVIDENCE_MAGIC.to_vec();
        for part in [
            Some(&self.report),
            Some(&self.vek_der),
            self.intermediate_der.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// Decodes a bundle; every length is bounded.
    pub fn decode(b: &[u8]) -> Result<Self, AttestError> {
        if b.len() > MAX_QUOTE_LEN {
            return Err(AttestError::QuoteTooLarge {
                len: b.len(),
                max: MAX_QUOTE_LEN,
            });
        }
        let mut rest = b
            .strip_prefix(SNP_EVIDENCE_MAGIC.as_slice())
            .ok_or_else(|| bad("missing CSNP magic"))?;
        let mut parts = Vec::new();
        while !rest.is_empty() {
            if parts.len() == 3 {
                return Err(bad("trailing data after the evidence parts"));
            }
            let len_bytes: [u8; 4] = rest
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| bad("truncated length"))?;
            let len = u32::from_le_bytes(len_bytes) as usize;
            let max = if parts.is_empty() {
                SNP_REPORT_LEN
            } else {
                MAX_CERT_LEN
            };
            if len > max {
                return Err(bad(format!(
                    "part {} is {len} bytes, limit {max}",
                    parts.len()
                )));
            }
            let part = rest.get(4..4 + len).ok_or_else(|| bad("truncated part"))?;
            parts.push(part.to_vec());
            rest = &rest[4 + len..];
        }
        let mut it = parts.into_iter();
        match (it.next(), it.next(), it.next()) {
            (Some(report), Some(vek_der), intermediate_der) => Ok(Self {
                report,
                vek_der,
                intermediate_der,
            }),
            _ => Err(bad("evidence needs a report and a VEK certificate")),
        }
    }
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, AttestError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| bad(format!("built-in certificate: {e}")))?;
    Ok(p.contents)
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, AttestError> {
    let (rest, c) = X509Certificate::from_der(der).map_err(|e| bad(format!("certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after certificate"));
    }
    Ok(c)
}

/// Checks that `child` is signed by `issuer` with RSASSA-PSS SHA-384 and valid at `now`.
fn check_rsa_pss_signed(
    child: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    now: SystemTime,
    what: &str,
) -> Result<(), AttestError> {
    check_validity(child, now, what)?;
    let key = issuer.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, key)
        .verify(
            child.tbs_certificate.as_ref(),
            child.signature_value.data.as_ref(),
        )
        .map_err(|_| refused(format!("{what} is not signed by its issuer")))
}

fn check_validity(c: &X509Certificate<'_>, now: SystemTime, what: &str) -> Result<(), AttestError> {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let v = c.validity();
    if secs < v.not_before.timestamp() || secs > v.not_after.timestamp() {
        return Err(refused(format!(
            "{what} certificate is not valid at unix {secs}"
        )));
    }
    Ok(())
}

/// Everything SEV-SNP verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpVerdict {
    /// The verified report.
    pub report: SnpReport,
    /// Which pinned AMD root the chain ends in (its subject).
    pub root: String,
}

/// Verifies SEV-SNP evidence bundles against the pinned AMD roots. Verdicts are cached by
/// `SHA-256(bundle)` until the earliest expiry of the certificates in the chain, and never longer
/// than [`SNP_MAX_CACHE_TTL`] (like the TDX verifier), so a repeat handshake costs a hash.
#[derive(Debug, Clone)]
pub struct SnpVerifier {
    arks: Vec<Vec<u8>>,
    asks: Vec<Vec<u8>>,
    cache: Arc<TtlLru<SnpVerdict>>,
}

/// Longest time an SEV-SNP verdict is reused.
pub const SNP_MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

impl SnpVerifier {
    /// A verifier pinned to AMD's Milan, Genoa and Turin roots.
    pub fn new() -> Result<Self, AttestError> {
        Ok(Self {
            cache: Arc::new(TtlLru::new(DEFAULT_CACHE_CAPACITY)),
            arks: BUILTIN_ARKS
                .iter()
                .map(|p| pem_to_der(p))
                .collect::<Result<_, _>>()?,
            asks: BUILTIN_ASKS
                .iter()
                .map(|p| pem_to_der(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Number of cached verdicts.
    pub fn cached_verdicts(&self) -> usize {
        self.cache.len()
    }

    /// Verification of a bundle at `now`, through the verdict cache.
    pub fn verify_evidence(
        &self,
        bundle: &[u8],
        now: SystemTime,
    ) -> Result<SnpVerdict, AttestError> {
        let digest: [u8; 32] = Sha256::digest(bundle).into();
        if let Some(v) = self.cache.get(&digest, now) {
            return Ok(v);
        }
        let (verdict, chain_expiry) = self.verify_uncached(bundle, now)?;
        let until = chain_expiry.min(now + SNP_MAX_CACHE_TTL);
        self.cache.insert(digest, verdict.clone(), until);
        Ok(verdict)
    }

    /// Full verification, no cache; also returns when the first certificate of the chain expires.
    pub fn verify_uncached(
        &self,
        bundle: &[u8],
        now: SystemTime,
    ) -> Result<(SnpVerdict, SystemTime), AttestError> {
        let ev = SnpEvidence::decode(bundle)?;
        let report = SnpReport::parse(&ev.report)?;
        let vek = parse_cert(&ev.vek_der)?;
        let candidates: Vec<&[u8]> = match &ev.intermediate_der {
            Some(i) => vec![i.as_slice()],
            None => self.asks.iter().map(Vec::as_slice).collect(),
        };
        let mut root = None;
        let not_after = |c: &X509Certificate<'_>| {
            let secs = c.validity().not_after.timestamp().max(0) as u64;
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
        };
        let mut expiry = not_after(&vek);
        'chain: for inter_der in candidates {
            let Ok(inter) = parse_cert(inter_der) else {
                continue;
            };
            if check_rsa_pss_signed(&vek, &inter, now, "VEK").is_err() {
                continue;
            }
            for ark_der in &self.arks {
                let ark = parse_cert(ark_der)?;
                if check_rsa_pss_signed(&inter, &ark, now, "ASK").is_ok()
                    && check_rsa_pss_signed(&ark, &ark, now, "ARK").is_ok()
                {
                    expiry = expiry.min(not_after(&inter)).min(not_after(&ark));
                    root = Some(ark.subject().to_string());
                    break 'chain;
                }
            }
        }
        let root = root
            .ok_or_else(|| refused("VEK does not chain to a pinned AMD root (ARK) at this time"))?;
        report.verify_signature(&vek)?;
        if report.signing_key == 0 {
            // A VCEK is specific to one chip: its hwID extension must be the report's CHIP_ID.
            let hwid = vek
                .extensions()
                .iter()
                .find(|e| e.oid.as_bytes() == OID_HWID)
                .map(|e| e.value);
            if let Some(h) = hwid {
                let h = strip_octet_string(h);
                if h != report.chip_id.as_slice() {
                    return Err(refused("VCEK hwID does not match the report's CHIP_ID"));
                }
            }
        }
        check_snp_policy(&report)?;
        Ok((SnpVerdict { report, root }, expiry))
    }
}

/// Our guest-policy rules for SEV-SNP: debugging must not be allowed.
pub fn check_snp_policy(report: &SnpReport) -> Result<(), AttestError> {
    if report.debug_allowed() {
        return Err(AttestError::TdAttributes(
            "SEV-SNP guest policy allows DEBUG: the host can read this guest".into(),
        ));
    }
    Ok(())
}

/// The hwID extension is sometimes wrapped in an OCTET STRING; accept both forms.
fn strip_octet_string(v: &[u8]) -> &[u8] {
    match v {
        [0x04, len, rest @ ..] if *len as usize == rest.len() => rest,
        _ => v,
    }
}

impl QuoteVerifier for SnpVerifier {
    /// SEV-SNP has no TD registers: the launch measurement goes into MRTD and the rest is zero,
    /// so `Policy`'s binding check works unchanged; `Policy` computes the TDX-style image hash
    /// over that, which differs from [`SnpReport::image_hash`] (use the verdict for allowlists).
    fn verify_quote(&self, quote: &[u8], now: SystemTime) -> Result<VerifiedQuote, AttestError> {
        let v = self.verify_evidence(quote, now)?;
        let mut m = TdMeasurements::ZERO;
        m.mrtd = v.report.measurement;
        Ok(VerifiedQuote {
            measurements: m,
            report_data: v.report.report_data,
        })
    }
}

/// SEV-SNP evidence from inside a guest via configfs-tsm (`provider` = `sev_guest`), bundled
/// with a provisioned VEK certificate.
#[derive(Debug, Clone)]
pub struct ConfigfsTsmSnp {
    root: PathBuf,
    vek_der: Vec<u8>,
    intermediate_der: Option<Vec<u8>>,
}

impl ConfigfsTsmSnp {
    /// A provider on configfs-tsm root `root` with the guest's VEK (and optional ASK/ASVK).
    pub fn new(
        root: impl Into<PathBuf>,
        vek_der: Vec<u8>,
        intermediate_der: Option<Vec<u8>>,
    ) -> Result<Self, AttestError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(AttestError::TdxUnavailable(format!(
                "{} does not exist: not running inside an SEV-SNP guest with configfs-tsm",
                root.display()
            )));
        }
        Ok(Self {
            root,
            vek_der,
            intermediate_der,
        })
    }
}

impl AttestationProvider for ConfigfsTsmSnp {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::SevSnp
    }

    fn evidence(&self, claims: &UserClaims) -> Result<Option<Vec<u8>>, AttestError> {
        let report =
            crate::configfs::quote_from_root(&self.root, &claims.report_data(), "sev_guest")?;
        Ok(Some(
            SnpEvidence {
                report,
                vek_der: self.vek_der.clone(),
                intermediate_der: self.intermediate_der.clone(),
            }
            .encode(),
        ))
    }
}
