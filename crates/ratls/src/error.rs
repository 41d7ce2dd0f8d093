//! Error types: [`CertError`] (why a certificate was refused) and [`RaTlsError`] (everything this
//! crate's public functions can fail with). `CertError` is `Clone` because it travels through
//! rustls inside `CertificateError::Other` and is recovered from there after a failed handshake.

use std::time::Duration;

use cocoon_attest::AttestError;

/// Why a certificate (a peer's, or one we were asked to load as our own) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Larger than [`MAX_CERT_LEN`](crate::MAX_CERT_LEN).
    #[error("certificate is {len} bytes, more than the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// Not DER X.509.
    #[error("certificate is not valid DER X.509: {0}")]
    Malformed(String),
    /// Bytes after the certificate.
    #[error("certificate is followed by {0} bytes of trailing data")]
    TrailingData(usize),
    /// More than the one self-signed certificate.
    #[error("peer sent {count} certificates; RA-TLS allows exactly one self-signed certificate")]
    ChainNotAllowed { count: usize },
    /// The subject key is not Ed25519.
    #[error("certificate key is not Ed25519 (key algorithm {oid})")]
    NotEd25519 { oid: String },
    /// The certificate is not signed with Ed25519.
    #[error("certificate signature algorithm is not Ed25519 ({oid})")]
    SignatureAlgorithm { oid: String },
    /// Issuer differs from subject.
    #[error("certificate is not self-signed (issuer differs from subject)")]
    NotSelfSigned,
    /// The self-signature does not verify with the certificate's own key.
    #[error("certificate self-signature is invalid")]
    BadSelfSignature,
    /// `now` is before notBefore.
    #[error("certificate is not yet valid: notBefore {not_before} > now {now} (unix seconds)")]
    NotYetValid { not_before: i64, now: i64 },
    /// `now` is after notAfter.
    #[error("certificate expired: notAfter {not_after} < now {now} (unix seconds)")]
    Expired { not_after: i64, now: i64 },
    /// A critical extension we do not know (fail-safe: we cannot honour it).
    #[error("certificate has an unknown critical extension {oid}")]
    UnknownCriticalExtension { oid: String },
    /// The same extension twice (which one would count?).
    #[error("certificate has extension {oid} more than once")]
    DuplicateExtension { oid: String },
    /// Too many extensions.
    #[error("certificate has {count} extensions, more than the {max} allowed")]
    TooManyExtensions { count: usize, max: usize },
    /// Both TDX-family (`.1` quote, `.2` claims) and SEV-SNP (`.100`-`.102`) extensions.
    #[error(
        "certificate carries both TDX (1.3.6.1.4.1.12345.1/.2) and SEV-SNP (.100-.102) extensions"
    )]
    MixedEvidence,
    /// Some but not all of the three SEV-SNP extensions.
    #[error("certificate has SEV-SNP evidence without extension {missing}")]
    IncompleteSevSnpEvidence { missing: String },
    /// The user-claims extension is not the certificate's own key.
    #[error("user-claims extension does not match the certificate key")]
    ClaimsMismatch,
    /// The evidence verifier refused the quote/claims.
    #[error("attestation rejected: {0}")]
    Attestation(#[from] AttestError),
    /// The evidence verifier reported a different key than the certificate's.
    #[error("evidence verifier reported a key that differs from the certificate key")]
    VerifierKeyMismatch,
    /// The sealing-key extension is not a 32-byte X25519 key.
    #[error("sealing-key extension holds {len} bytes, expected 32")]
    BadSealingKey { len: usize },
    /// The TLS CertificateVerify signature is not a valid Ed25519 signature by the certificate key.
    #[error("handshake signature is invalid")]
    BadHandshakeSignature,
}

/// Errors of identity generation, configuration, and handshakes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaTlsError {
    /// The attestation provider could not produce evidence.
    #[error("attestation provider failed: {0}")]
    Evidence(#[source] AttestError),
    /// The provider's evidence is larger than a certificate may carry.
    #[error("evidence is {len} bytes, more than the {max}-byte limit")]
    EvidenceTooLarge { len: usize, max: usize },
    /// Bad certificate options (zero validity, time overflow, ...).
    #[error("invalid certificate options: {0}")]
    InvalidOptions(String),
    /// rcgen failed to build the certificate.
    #[error("certificate generation failed: {0}")]
    CertGeneration(String),
    /// A certificate/key pair to load as our identity was refused.
    #[error("invalid identity: {0}")]
    InvalidIdentity(String),
    /// Our own certificate would not pass the RA-TLS checks a peer runs.
    #[error("own certificate would be refused by peers: {0}")]
    OwnCertificate(#[source] CertError),
    /// rustls refused the configuration.
    #[error("TLS configuration failed: {0}")]
    Config(String),
    /// We refused the peer's certificate (or, from `inspect_cert`, the given certificate).
    #[error("peer certificate rejected: {0}")]
    PeerCertificate(#[source] CertError),
    /// The peer completed the handshake without a certificate.
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    /// The handshake did not finish in time.
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    /// A TLS protocol failure (including an alert from a peer that refused us).
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] rustls::Error),
    /// The transport failed during the handshake.
    #[error("transport failed during TLS handshake: {0}")]
    Io(#[source] std::io::Error),
    /// The configured clock gave no time.
    #[error("clock unavailable")]
    NoClock,
}
