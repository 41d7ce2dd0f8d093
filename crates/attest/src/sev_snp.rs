//! AMD SEV-SNP in Cocoon 9060ce5's RA-TLS format: the attestation report ([`SnpReport`]), its
//! signature chain (VCEK → ASK → ARK, AMD roots pinned), our guest-policy checks,
//! [`SnpVerifier`], and the hardware provider [`ConfigfsTsmSnp`].
//!
//! Written on `ring` + `x509-parser` (already in the tree) rather than the `sev` crate, whose
//! pure-Rust mode pulls `rsa`/`p384`/`x509-cert`; the facts come from AMD's SEV-SNP ABI spec
//! (report layout, table 23), AMD's VCEK specification (hwID extension), and Cocoon's
//! `tee/cocoon/sev/` (certificate layout, image hash, checks) read for facts only.
//! * Certificate layout (Cocoon's, see [`SevSnpEvidence`]): `.100` = `SHA-512(claims)`,
//!   `.101` = the raw report, whose `REPORT_DATA` must equal that hash, `.102` = the VCEK, PEM.
//! * Report: 0x4A0 bytes; bytes 0..0x2A0 are signed with ECDSA P-384/SHA-384 (signature algo 1);
//!   r and s are 72-byte little-endian fields at 0x2A0 / 0x2E8.
//! * Chain: the VCEK is an X.509 P-384 key signed by the ASK with RSASSA-PSS SHA-384, which is
//!   signed by the ARK, which must be one of the pinned AMD roots (Milan, Genoa, Turin, copied
//!   from the `sev` crate's built-in certificates, see src/sev_roots/). Cocoon instead loads
//!   `/etc/tee/sev/<product>.cert_chain.pem` and checks AMD's CRLs; we pin the same roots and do
//!   not check CRLs.
//! * Policy: guest POLICY.DEBUG (bit 19) must be 0 (Cocoon does not check it); a VCEK's hwID
//!   (1.3.6.1.4.1.3704.1.4, 8 to 64 bytes) must be the start of the report's CHIP_ID (as Cocoon).
//! * Image hash: Cocoon's `SHA-256(MEASUREMENT ‖ 0^64)` ([`crate::sev_image_hash`]).
//!
//! Getting a report inside the guest uses configfs-tsm (`provider` = `sev_guest`) through
//! [`ConfigfsTsmSnp`] (the `/dev/sev-guest` ioctl Cocoon uses needs `unsafe`, which this
//! workspace forbids); the VCEK must be provisioned (AMD KDS or the host; Cocoon's images keep it
//! in [`DEFAULT_SEV_VCEK_PATH`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED, RSA_PSS_2048_8192_SHA384};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::cache::{TtlLru, DEFAULT_CACHE_CAPACITY};
use crate::claims::UserClaims;
use crate::error::AttestError;
use crate::evidence::{Evidence, EvidenceKind, OwnedEvidence, SevSnpEvidence, MAX_VCEK_PEM_LEN};
use crate::measurements::sev_image_hash;
use crate::provider::AttestationProvider;

/// Size of an SEV-SNP attestation report.
pub const SNP_REPORT_LEN: usize = 0x4A0;
/// Guest policy bit: debugging allowed.
pub const SNP_POLICY_DEBUG: u64 = 1 << 19;
/// Where Cocoon's SEV images keep the guest's VCEK (PEM).
pub const DEFAULT_SEV_VCEK_PATH: &str = "/etc/tee/sev/vcek.pem";
/// The `provider` value of the SEV-SNP guest driver in configfs-tsm.
const SEV_PROVIDER: &str = "sev_guest";
const SIGNED_LEN: usize = 0x2A0;
/// Largest certificate (DER) accepted anywhere in a chain.
const MAX_CERT_LEN: usize = 8 * 1024;
/// VCEK extension hwID (1.3.6.1.4.1.3704.1.4), DER content bytes of the OID.
const OID_HWID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x9c, 0x78, 0x01, 0x04];
/// hwID lengths AMD uses: 64 bytes up to Genoa, 8 bytes from Turin on.
const HWID_LEN: std::ops::RangeInclusive<usize> = 8..=64;

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
    /// Report format version (2 to 5).
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
    /// Chip id (starts with the VCEK's hwID).
    pub chip_id: [u8; 64],
    raw: Vec<u8>,
}

/// `N` bytes of `b` at `at`; the caller has checked `b` is a whole report.
fn arr<const N: usize>(b: &[u8; SNP_REPORT_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = b.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

impl SnpReport {
    /// Parses a raw report (exactly [`SNP_REPORT_LEN`] bytes).
    pub fn parse(b: &[u8]) -> Result<Self, AttestError> {
        let whole: &[u8; SNP_REPORT_LEN] = b.try_into().map_err(|_| {
            bad(format!(
                "report is {} bytes, expected {SNP_REPORT_LEN}",
                b.len()
            ))
        })?;
        let u32_at = |at| u32::from_le_bytes(arr(whole, at));
        let u64_at = |at| u64::from_le_bytes(arr(whole, at));
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
            report_data: arr(whole, 0x50),
            measurement: arr(whole, 0x90),
            host_data: arr(whole, 0xC0),
            reported_tcb: u64_at(0x180),
            chip_id: arr(whole, 0x1A0),
            raw: b.to_vec(),
        })
    }

    /// Whether the guest policy allows debugging (the host could read guest memory).
    pub fn debug_allowed(&self) -> bool {
        self.policy & SNP_POLICY_DEBUG != 0
    }

    /// Cocoon's image hash of this guest: `SHA-256(MEASUREMENT ‖ 0^64)`.
    pub fn image_hash(&self) -> [u8; 32] {
        sev_image_hash(&self.measurement)
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
            let field = self
                .raw
                .get(at..at + 72)
                .ok_or_else(|| bad("report too short for its signature"))?;
            let (low, high) = field.split_at(48);
            if high.iter().any(|&x| x != 0) {
                return Err(refused("report signature component out of range"));
            }
            for (dst, src) in fixed[i * 48..(i + 1) * 48].iter_mut().zip(low.iter().rev()) {
                *dst = *src;
            }
        }
        let key = vek.public_key().subject_public_key.data.as_ref();
        let signed = self
            .raw
            .get(..SIGNED_LEN)
            .ok_or_else(|| bad("report too short"))?;
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key)
            .verify(signed, &fixed)
            .map_err(|_| refused("SEV-SNP report signature does not verify with the VCEK"))
    }
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, AttestError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| bad(format!("built-in certificate: {e}")))?;
    Ok(p.contents)
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, AttestError> {
    if der.len() > MAX_CERT_LEN {
        return Err(bad(format!(
            "certificate is {} bytes, limit {MAX_CERT_LEN}",
            der.len()
        )));
    }
    let (rest, c) = X509Certificate::from_der(der).map_err(|e| bad(format!("certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after certificate"));
    }
    Ok(c)
}

/// The DER of the one PEM `CERTIFICATE` in `pem` (the `.102` extension), bounded by
/// [`MAX_VCEK_PEM_LEN`]; only whitespace may follow it.
pub fn vcek_der_from_pem(pem: &[u8]) -> Result<Vec<u8>, AttestError> {
    if pem.len() > MAX_VCEK_PEM_LEN {
        return Err(bad(format!(
            "VCEK PEM is {} bytes, limit {MAX_VCEK_PEM_LEN}",
            pem.len()
        )));
    }
    let (rest, block) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| bad(format!("VCEK is not PEM: {e}")))?;
    if block.label != "CERTIFICATE" {
        return Err(bad(format!(
            "VCEK PEM block is {:?}, not CERTIFICATE",
            block.label
        )));
    }
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("data after the VCEK PEM block"));
    }
    parse_cert(&block.contents)?;
    Ok(block.contents)
}

/// A VCEK as PEM (what the `.102` extension carries), from a DER or PEM certificate as AMD KDS or
/// a host hands it out. The certificate must parse.
pub fn vcek_pem(cert: &[u8]) -> Result<Vec<u8>, AttestError> {
    let der = if cert.starts_with(b"-----BEGIN") {
        vcek_der_from_pem(cert)?
    } else {
        parse_cert(cert)?;
        cert.to_vec()
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    if pem.len() > MAX_VCEK_PEM_LEN {
        return Err(bad(format!(
            "VCEK PEM would be {} bytes, limit {MAX_VCEK_PEM_LEN}",
            pem.len()
        )));
    }
    Ok(pem.into_bytes())
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
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let v = c.validity();
    if secs < v.not_before.timestamp() || secs > v.not_after.timestamp() {
        return Err(refused(format!(
            "{what} certificate is not valid at unix {secs}"
        )));
    }
    Ok(())
}

fn not_after(c: &X509Certificate<'_>) -> SystemTime {
    let secs = u64::try_from(c.validity().not_after.timestamp()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// Everything SEV-SNP verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpVerdict {
    /// The verified report.
    pub report: SnpReport,
    /// Which pinned AMD root the chain ends in (its subject).
    pub root: String,
}

/// Verifies SEV-SNP evidence (report + VCEK) against the pinned AMD roots. It does not check the
/// binding to a key (`Policy` does, for every kind). Verdicts are cached by
/// [`Evidence::digest`] until the earliest expiry of the certificates in the chain, and never
/// longer than [`SNP_MAX_CACHE_TTL`] (like the TDX verifier), so a repeat handshake costs a hash.
#[derive(Debug, Clone)]
pub struct SnpVerifier {
    arks: Vec<Vec<u8>>,
    asks: Vec<Vec<u8>>,
    cache: Arc<TtlLru<SnpVerdict>>,
    /// Unit tests only: a VEK (DER) treated as chained to a root, to sign reports for fresh keys.
    #[cfg(test)]
    trusted_vek: Option<Vec<u8>>,
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
            #[cfg(test)]
            trusted_vek: None,
        })
    }

    /// Unit tests only: also trust `vek_der` as if AMD had issued it.
    #[cfg(test)]
    pub(crate) fn trusting_vek_for_tests(mut self, vek_der: Vec<u8>) -> Self {
        self.trusted_vek = Some(vek_der);
        self
    }

    /// Number of cached verdicts.
    pub fn cached_verdicts(&self) -> usize {
        self.cache.len()
    }

    /// Verification of `ev`'s report and VCEK at `now`, through the verdict cache.
    pub fn verify_evidence(
        &self,
        ev: &SevSnpEvidence<'_>,
        now: SystemTime,
    ) -> Result<SnpVerdict, AttestError> {
        let digest = Evidence::SevSnp(*ev).digest();
        if let Some(v) = self.cache.get(&digest, now) {
            return Ok(v);
        }
        let (verdict, chain_expiry) = self.verify_uncached(ev, now)?;
        let until = chain_expiry.min(now + SNP_MAX_CACHE_TTL);
        self.cache.insert(digest, verdict.clone(), until);
        Ok(verdict)
    }

    /// Full verification, no cache; also returns when the first certificate of the chain expires.
    pub fn verify_uncached(
        &self,
        ev: &SevSnpEvidence<'_>,
        now: SystemTime,
    ) -> Result<(SnpVerdict, SystemTime), AttestError> {
        let report = SnpReport::parse(ev.report)?;
        let vek_der = vcek_der_from_pem(ev.vcek_pem)?;
        let vek = parse_cert(&vek_der)?;
        let (root, expiry) = self.chain_root(&vek, &vek_der, now)?;
        report.verify_signature(&vek)?;
        if report.signing_key == 0 {
            check_hwid(&vek, &report)?;
        }
        check_snp_policy(&report)?;
        Ok((SnpVerdict { report, root }, expiry))
    }

    /// The pinned root `vek` chains to at `now` (through a built-in ASK), and the chain's
    /// earliest expiry.
    fn chain_root(
        &self,
        vek: &X509Certificate<'_>,
        vek_der: &[u8],
        now: SystemTime,
    ) -> Result<(String, SystemTime), AttestError> {
        #[cfg(test)]
        if self.trusted_vek.as_deref() == Some(vek_der) {
            check_validity(vek, now, "VEK")?;
            return Ok(("test-trusted VEK".into(), not_after(vek)));
        }
        #[cfg(not(test))]
        let _ = vek_der;
        for inter_der in &self.asks {
            let Ok(inter) = parse_cert(inter_der) else {
                continue;
            };
            if check_rsa_pss_signed(vek, &inter, now, "VCEK").is_err() {
                continue;
            }
            for ark_der in &self.arks {
                let ark = parse_cert(ark_der)?;
                if check_rsa_pss_signed(&inter, &ark, now, "ASK").is_ok()
                    && check_rsa_pss_signed(&ark, &ark, now, "ARK").is_ok()
                {
                    let expiry = not_after(vek).min(not_after(&inter)).min(not_after(&ark));
                    return Ok((ark.subject().to_string(), expiry));
                }
            }
        }
        Err(refused(
            "VCEK does not chain to a pinned AMD root (ARK) at this time",
        ))
    }
}

/// A VCEK is specific to one chip: its hwID extension must be present and be the start of the
/// report's CHIP_ID (64 bytes up to Genoa; Turin's hwID is 8 bytes).
fn check_hwid(vek: &X509Certificate<'_>, report: &SnpReport) -> Result<(), AttestError> {
    let value = vek
        .extensions()
        .iter()
        .find(|e| e.oid.as_bytes() == OID_HWID)
        .map(|e| strip_octet_string(e.value))
        .ok_or_else(|| refused("VCEK has no hwID extension"))?;
    if !HWID_LEN.contains(&value.len()) || !report.chip_id.starts_with(value) {
        return Err(refused("VCEK hwID does not match the report's CHIP_ID"));
    }
    Ok(())
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

/// The hwID extension is an OCTET STRING inside the extension value; accept a bare one too.
fn strip_octet_string(v: &[u8]) -> &[u8] {
    match v {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => v,
    }
}

/// SEV-SNP evidence from inside a guest via configfs-tsm (`provider` = `sev_guest`), with the
/// guest's provisioned VCEK, in Cocoon's certificate layout.
#[derive(Debug, Clone)]
pub struct ConfigfsTsmSnp {
    root: PathBuf,
    vcek_pem: Vec<u8>,
}

impl ConfigfsTsmSnp {
    /// A provider on configfs-tsm root `root` with the guest's VCEK (DER or PEM).
    pub fn new(root: impl Into<PathBuf>, vcek: &[u8]) -> Result<Self, AttestError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(AttestError::SevUnavailable(format!(
                "{} does not exist: not running inside an SEV-SNP guest with configfs-tsm",
                root.display()
            )));
        }
        Ok(Self {
            root,
            vcek_pem: vcek_pem(vcek)?,
        })
    }

    /// [`new`](Self::new) with the VCEK read from `vcek_path` (e.g. [`DEFAULT_SEV_VCEK_PATH`]).
    pub fn from_vcek_file(root: impl Into<PathBuf>, vcek_path: &Path) -> Result<Self, AttestError> {
        let vcek = crate::configfs::read_bounded(vcek_path, MAX_VCEK_PEM_LEN as u64)
            .map_err(|e| AttestError::SevUnavailable(format!("VCEK: {e}")))?;
        Self::new(root, &vcek)
    }

    /// The VCEK this provider puts into certificates, PEM.
    pub fn vcek_pem(&self) -> &[u8] {
        &self.vcek_pem
    }

    /// Cocoon's SEV-SNP evidence from a report the guest produced for `claims`.
    pub(crate) fn evidence_from_report(
        &self,
        claims: &UserClaims,
        report: Vec<u8>,
    ) -> Result<OwnedEvidence, AttestError> {
        let report_data = claims.report_data();
        let parsed = SnpReport::parse(&report)?;
        if parsed.report_data != report_data {
            return Err(AttestError::Io(
                "configfs-tsm returned an SEV-SNP report for other report data".into(),
            ));
        }
        Ok(OwnedEvidence::SevSnp {
            report_data,
            report,
            vcek_pem: self.vcek_pem.clone(),
        })
    }
}

impl AttestationProvider for ConfigfsTsmSnp {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::SevSnp
    }

    fn evidence(&self, claims: &UserClaims) -> Result<Option<OwnedEvidence>, AttestError> {
        let report =
            crate::configfs::quote_from_root(&self.root, &claims.report_data(), SEV_PROVIDER)?;
        self.evidence_from_report(claims, report).map(Some)
    }
}

/// Test helpers: a self-made "VCEK" (P-384, with a hwID) that signs reports for fresh keys, so
/// the accepting path of the real verifier runs in unit tests (with
/// [`SnpVerifier::trusting_vek_for_tests`]).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod test_vek {
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};

    use super::*;

    pub(crate) struct TestVek {
        pub der: Vec<u8>,
        pub pem: Vec<u8>,
        key: EcdsaKeyPair,
    }

    pub(crate) const CHIP_ID: [u8; 64] = [0x5a; 64];

    impl TestVek {
        pub(crate) fn new() -> Self {
            let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "SEV-VCEK (test)");
            let mut hwid = vec![0x04, 64];
            hwid.extend_from_slice(&CHIP_ID);
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 3704, 1, 4],
                    hwid,
                ));
            let cert = params.self_signed(&kp).unwrap();
            let key = EcdsaKeyPair::from_pkcs8(
                &ECDSA_P384_SHA384_FIXED_SIGNING,
                &kp.serialize_der(),
                &SystemRandom::new(),
            )
            .unwrap();
            let der = cert.der().to_vec();
            Self {
                pem: vcek_pem(&der).unwrap(),
                der,
                key,
            }
        }

        /// A signed v2 report with `report_data`, `measurement` and guest `policy`.
        pub(crate) fn report(
            &self,
            report_data: &[u8; 64],
            measurement: &[u8; 48],
            policy: u64,
        ) -> Vec<u8> {
            self.report_for_chip(report_data, measurement, policy, &CHIP_ID)
        }

        /// [`report`](Self::report) from another chip than the VEK's.
        pub(crate) fn report_for_chip(
            &self,
            report_data: &[u8; 64],
            measurement: &[u8; 48],
            policy: u64,
            chip_id: &[u8; 64],
        ) -> Vec<u8> {
            let mut r = vec![0u8; SNP_REPORT_LEN];
            r[0..4].copy_from_slice(&2u32.to_le_bytes());
            r[0x08..0x10].copy_from_slice(&policy.to_le_bytes());
            r[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
            r[0x50..0x90].copy_from_slice(report_data);
            r[0x90..0xC0].copy_from_slice(measurement);
            r[0x1A0..0x1E0].copy_from_slice(chip_id);
            let sig = self
                .key
                .sign(&SystemRandom::new(), &r[..SIGNED_LEN])
                .unwrap();
            let (rr, ss) = sig.as_ref().split_at(48);
            for (i, part) in [rr, ss].into_iter().enumerate() {
                let at = 0x2A0 + i * 72;
                for (dst, src) in r[at..at + 48].iter_mut().zip(part.iter().rev()) {
                    *dst = *src;
                }
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_vek::{TestVek, CHIP_ID};
    use super::*;

    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn ev<'a>(report: &'a [u8], pem: &'a [u8]) -> SevSnpEvidence<'a> {
        SevSnpEvidence {
            report_data: &[],
            report,
            vcek_pem: pem,
        }
    }

    #[test]
    fn a_report_signed_by_a_trusted_vek_verifies() {
        let vek = TestVek::new();
        let v = SnpVerifier::new()
            .unwrap()
            .trusting_vek_for_tests(vek.der.clone());
        let r = vek.report(&[3; 64], &[9; 48], 0x30000);
        let verdict = v.verify_evidence(&ev(&r, &vek.pem), now()).unwrap();
        assert_eq!(verdict.report.report_data, [3; 64]);
        assert_eq!(verdict.report.image_hash(), sev_image_hash(&[9; 48]));
        assert_eq!(verdict.report.chip_id, CHIP_ID);
        // Not trusted without the hook: it chains to no AMD root.
        let err = SnpVerifier::new()
            .unwrap()
            .verify_uncached(&ev(&r, &vek.pem), now())
            .unwrap_err();
        assert!(err.to_string().contains("pinned AMD root"), "{err}");
    }

    #[test]
    fn signature_hwid_and_debug_are_checked() {
        let vek = TestVek::new();
        let v = SnpVerifier::new()
            .unwrap()
            .trusting_vek_for_tests(vek.der.clone());
        let mut r = vek.report(&[3; 64], &[9; 48], 0);
        r[0x90] ^= 1;
        let err = v.verify_uncached(&ev(&r, &vek.pem), now()).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");

        let r = vek.report_for_chip(&[3; 64], &[9; 48], 0, &[0x11; 64]);
        let err = v.verify_uncached(&ev(&r, &vek.pem), now()).unwrap_err();
        assert!(err.to_string().contains("hwID"), "{err}");

        let r = vek.report(&[3; 64], &[9; 48], SNP_POLICY_DEBUG);
        let err = v.verify_uncached(&ev(&r, &vek.pem), now()).unwrap_err();
        assert!(err.to_string().contains("DEBUG"), "{err}");
    }

    #[test]
    fn vcek_pem_round_trip_and_bounds() {
        let vek = TestVek::new();
        assert_eq!(vcek_der_from_pem(&vek.pem).unwrap(), vek.der);
        assert_eq!(vcek_pem(&vek.pem).unwrap(), vek.pem);
        let mut trailing = vek.pem.clone();
        trailing.extend_from_slice(b"\n  \n");
        assert!(vcek_der_from_pem(&trailing).is_ok());
        trailing.extend_from_slice(b"junk");
        assert!(vcek_der_from_pem(&trailing).is_err());
        assert!(
            vcek_der_from_pem(&vek.der).is_err(),
            "DER is not the wire format"
        );
        assert!(vcek_der_from_pem(&vec![b'A'; MAX_VCEK_PEM_LEN + 1]).is_err());
        let key_pem = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(vcek_der_from_pem(key_pem).is_err());
        assert!(vcek_pem(b"not a certificate").is_err());
    }

    #[test]
    fn configfs_provider_checks_the_report_it_got() {
        let vek = TestVek::new();
        let dir = std::env::temp_dir();
        let p = ConfigfsTsmSnp::new(&dir, &vek.der).unwrap();
        assert_eq!(p.vcek_pem(), vek.pem.as_slice());
        assert_eq!(p.kind(), EvidenceKind::SevSnp);
        let claims = UserClaims::new([4; 32]);
        let r = vek.report(&claims.report_data(), &[1; 48], 0);
        let got = p.evidence_from_report(&claims, r.clone()).unwrap();
        assert_eq!(
            got,
            OwnedEvidence::SevSnp {
                report_data: claims.report_data(),
                report: r,
                vcek_pem: vek.pem.clone(),
            }
        );
        let other = vek.report(&[0; 64], &[1; 48], 0);
        assert!(p.evidence_from_report(&claims, other).is_err());
        assert!(p.evidence_from_report(&claims, vec![0; 10]).is_err());
        let err = ConfigfsTsmSnp::new("/nonexistent/tsm", &vek.der).unwrap_err();
        assert!(matches!(err, AttestError::SevUnavailable(_)), "{err}");
        let err =
            ConfigfsTsmSnp::from_vcek_file(&dir, Path::new("/nonexistent/vcek.pem")).unwrap_err();
        assert!(matches!(err, AttestError::SevUnavailable(_)), "{err}");
    }
}
