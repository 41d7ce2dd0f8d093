//! RA-TLS for cocoon-rs: mutually authenticated TLS 1.3 whose certificates carry attestation
//! evidence, wire-compatible with Telegram's Cocoon.
//!
//! # Design
//! Every node holds an [`RaTlsIdentity`]: a fresh Ed25519 key and a self-signed certificate (one
//! day by default) with two **critical** extensions, `1.3.6.1.4.1.12345.1` = the attestation quote
//! (absent when the node has no evidence) and `1.3.6.1.4.1.12345.2` = the user claims, i.e. the
//! raw 32-byte key. The quote's report data is `SHA-512(claims)`, which binds the TEE evidence to
//! the TLS key: whoever completes the handshake with that key is the attested TD. Certificates are
//! reused across connections (no per-connection quote), and there are no session tickets, so every
//! connection re-checks the certificate and its evidence.
//!
//! A peer certificate is accepted only if: it is the only certificate sent; it is self-signed and
//! its self-signature verifies; its key and signatures are Ed25519; it is within its validity at
//! `now`; it has no critical extension other than the two above and the standard ones; its claims
//! extension (if any) equals its key (Cocoon ignores a mismatching one, we refuse it); and the
//! configured [`EvidenceVerifier`](cocoon_attest::EvidenceVerifier) accepts `(quote, claims from
//! the key)`. Its verdict, an [`AttestedPeer`](cocoon_attest::AttestedPeer), is returned by
//! [`accept`] / [`connect`]; the application compares its image hash with on-chain allowlists.
//!
//! # The two rustls traps (see rust-ecosystem.md §2.1)
//! 1. webpki refuses certificates with unknown critical extensions, so neither the stock verifiers
//!    nor `rustls::crypto::verify_tls13_signature` can be used: [`inspect_cert`]'s checks run in a
//!    custom verifier, and CertificateVerify signatures are checked with ring (Ed25519 only).
//! 2. `with_single_cert` / `with_client_auth_cert` also run webpki (`keys_match`), so our
//!    `CertifiedKey` is built by hand and installed through cert resolvers.
//!
//! # Where hardware attestation plugs in
//! Nothing here knows evidence formats. A hardware TDX provider implements
//! `cocoon_attest::AttestationProvider` (its quote goes into the extension unchanged, up to
//! 32 KiB), and a DCAP verifier implements `cocoon_attest::QuoteVerifier` and is installed into a
//! `cocoon_attest::Policy`; this crate needs no change.
//!
//! Rotation: [`IdentitySlot`] + `*_config_reloadable` swap the presented certificate for new
//! handshakes without touching live sessions; [`regenerate`] builds a fresh identity off the
//! runtime. Not here: TCP, socket options, PoW, the TL protocol, rotation scheduling.

mod config;
mod error;
mod ext;
mod handshake;
mod identity;
mod inspect;
mod reload;
mod verifier;

#[cfg(test)]
mod handshake_tests;
#[cfg(test)]
mod tdx_tests;
#[cfg(test)]
mod test_support;

pub use config::{
    client_config, client_config_reloadable, client_config_with, server_config,
    server_config_reloadable, server_config_with, RaTlsClientConfig, RaTlsServerConfig, TlsOptions,
};
pub use error::{CertError, RaTlsError};
pub use ext::{MAX_CERT_LEN, OID_QUOTE, OID_USER_CLAIMS};
pub use handshake::{accept, connect};
pub use identity::{CertOptions, RaTlsIdentity};
pub use inspect::inspect_cert;
pub use reload::{regenerate, IdentitySlot};
