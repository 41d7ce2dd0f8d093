//! The one error type of this crate. Every variant names the reason a peer or a configuration was
//! refused, because these messages end up in logs and in handshake failures that operators read.
//! I/O failures (configfs-tsm, the collateral cache, PCCS) are carried as text so the type stays
//! `Clone + PartialEq` and travels through rustls.

use crate::evidence::EvidenceKind;

/// Why evidence could not be produced, a policy could not be built, or a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// User claims are not exactly one 32-byte Ed25519 key.
    #[error("user claims must be exactly {expected} bytes (an Ed25519 key), got {got}")]
    ClaimsLength { expected: usize, got: usize },
    /// Insecure software attestation was asked for on the main network.
    #[error("insecure software attestation refused on main network")]
    InsecureOnMain,
    /// The peer presented no quote but the policy requires evidence.
    #[error("peer presented no attestation evidence, but the policy requires it")]
    EvidenceRequired,
    /// The quote is larger than any real one can be.
    #[error("attestation quote is {len} bytes, more than the {max}-byte limit")]
    QuoteTooLarge { len: usize, max: usize },
    /// The quote's report data is not `SHA-512(claims)`: it was made for another key.
    #[error("quote does not match claims (report data is not SHA-512 of the peer's key)")]
    QuoteClaimsMismatch,
    /// The SEV-SNP report-data extension (`1.3.6.1.4.1.12345.100`) is not `SHA-512(claims)`.
    #[error("SEV-SNP report-data extension is not SHA-512 of the peer's key")]
    SevReportDataMismatch,
    /// The policy does not accept this kind of evidence.
    #[error("{kind} evidence is not accepted by this policy")]
    KindNotAccepted { kind: EvidenceKind },
    /// The measured image is not in the policy's allowlist.
    #[error("image hash {} is not in the policy allowlist", hex::encode(.hash))]
    ImageHashNotAllowed { hash: [u8; 32] },
    /// The policy has an image allowlist but the peer has no verified evidence to check it with.
    #[error("policy requires an allowed image hash, but the peer has no verified evidence")]
    ImageHashRequired,
    /// The quote cannot be parsed as evidence of its kind.
    #[error("malformed {kind} quote: {reason}")]
    MalformedQuote { kind: EvidenceKind, reason: String },
    /// A hardware verifier (DCAP) rejected the quote.
    #[error("quote verification failed: {0}")]
    QuoteVerification(String),
    /// Hardware TDX is not available (not built yet, or no TDX on this machine).
    #[error("hardware TDX attestation is not available: {0}")]
    TdxUnavailable(String),
    /// Hardware SEV-SNP evidence cannot be produced here (no configfs-tsm `sev_guest`, no VCEK).
    #[error("hardware SEV-SNP attestation is not available: {0}")]
    SevUnavailable(String),
    /// TD_ATTRIBUTES are not acceptable (DEBUG or another TD-under-debug bit set).
    #[error("TD attributes refused: {0}")]
    TdAttributes(String),
    /// XFAM is not in the policy's allowlist.
    #[error("TD XFAM {xfam:#018x} is not in the policy allowlist")]
    XfamNotAllowed { xfam: u64 },
    /// The TDX module measurement is not in the policy's allowlist.
    #[error("TDX module measurement MRSEAM {mr_seam} is not in the policy allowlist")]
    MrSeamNotAllowed { mr_seam: String },
    /// The platform's TCB status is not one the policy accepts.
    #[error("TCB status {status} is not accepted (accepted: {accepted})")]
    TcbStatusNotAllowed { status: String, accepted: String },
    /// A TCB status name in configuration is not one Intel defines.
    #[error("unknown TCB status name {0:?}")]
    UnknownTcbStatus(String),
    /// The quote chains to a root whose key id is not pinned.
    #[error("collateral root key id {root_key_id} is not pinned")]
    RootKeyIdNotAllowed { root_key_id: String },
    /// No usable (fresh) collateral for the quote's platform.
    #[error("TDX collateral unavailable: {0}")]
    CollateralUnavailable(String),
    /// An image-hash allowlist entry is not `<hex>`, `tdx@<hex>` or `sev@<hex>`.
    #[error("invalid image hash {entry:?}: {reason}")]
    BadImageHash { entry: String, reason: String },
    /// Talking to the TEE (configfs-tsm) or reading a provisioned file (the VCEK) failed.
    #[error("attestation device I/O failed: {0}")]
    Io(String),
}
