//! RA-TLS for cocoon-rs: mutually authenticated TLS 1.3 whose certificates carry attestation
//! evidence, wire-compatible with Telegram's Cocoon.
//!
//! # Design
//! Every node holds an [`RaTlsIdentity`]: a fresh Ed25519 key and a self-signed certificate (one
//! day by default) whose **critical** extensions carry its evidence in one of Cocoon 9060ce5's
//! two layouts:
//! * TDX family: `1.3.6.1.4.1.12345.1` = the attestation quote (a DCAP quote or Cocoon's fake
//!   one; absent when the node has no evidence) and `1.3.6.1.4.1.12345.2` = the user claims, i.e.
//!   the raw 32-byte key;
//! * AMD SEV-SNP: `.100` = `SHA-512(key)`, `.101` = the raw 1184-byte attestation report (whose
//!   REPORT_DATA is that hash), `.102` = the VCEK certificate, PEM (Cocoon's fake SEV-SNP: an
//!   unsigned report and a self-signed VCEK).
//!
//! The evidence's report data is `SHA-512(claims)`, which binds the TEE evidence to the TLS key:
//! whoever completes the handshake with that key is the attested TEE. Certificates are reused
//! across connections (no per-connection quote), and there are no session tickets, so every
//! connection re-checks the certificate and its evidence. SAN: `DNS:localhost`, `DNS:127.0.0.1`
//! (Cocoon's clients check the host `127.0.0.1` as a DNS name), `IP:127.0.0.1`, `IP:::1`.
//!
//! A peer certificate is accepted only if: it is the only certificate sent; it is self-signed and
//! its self-signature verifies; its key and signatures are Ed25519; it is within its validity at
//! `now`; it has no critical extension other than the evidence ones and the standard ones; TDX
//! and SEV-SNP extensions are not mixed and SEV-SNP comes with all three; its claims extension
//! (if any) equals its key (Cocoon ignores a mismatching one, we refuse it); and the configured
//! [`EvidenceVerifier`](cocoon_attest::EvidenceVerifier) accepts `(evidence, claims from the
//! key)`. Its verdict, an [`AttestedPeer`](cocoon_attest::AttestedPeer), is returned by
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
//! This crate knows only which extensions carry which part of the evidence; what the parts mean
//! is `cocoon_attest`'s. A provider implements `cocoon_attest::AttestationProvider` and returns
//! `cocoon_attest::OwnedEvidence` (a quote goes into `.1` unchanged, up to 32 KiB; SEV-SNP
//! evidence into `.100`-`.102`), and the verifiers (DCAP through `cocoon_attest::QuoteVerifier`,
//! `cocoon_attest::SnpVerifier`) are installed into a `cocoon_attest::Policy`.
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
mod sev_tests;
#[cfg(test)]
mod tdx_tests;
#[cfg(test)]
mod test_support;

pub use config::{
    client_config, client_config_reloadable, client_config_with, server_config,
    server_config_reloadable, server_config_with, RaTlsClientConfig, RaTlsServerConfig, TlsOptions,
};
pub use error::{CertError, RaTlsError};
pub use ext::{
    MAX_CERT_LEN, OID_QUOTE, OID_SEV_REPORT, OID_SEV_REPORT_DATA, OID_SEV_VCEK, OID_USER_CLAIMS,
};
pub use handshake::{accept, connect};
pub use identity::{CertOptions, RaTlsIdentity};
pub use inspect::inspect_cert;
pub use reload::{regenerate, IdentitySlot};
