//! Attestation seam of cocoon-rs: what a node claims about itself, what evidence backs the claim,
//! and how a peer's evidence is judged.
//!
//! This crate is transport-free: it knows nothing about TLS or the RA-TLS certificate (X.509 only
//! for AMD's VCEK chain). `cocoon-ratls` puts the evidence produced here into certificate
//! extensions and hands what it finds in a peer's certificate back to an [`EvidenceVerifier`].
//!
//! # Model (Cocoon-compatible)
//! * [`UserClaims`] are what a node binds to its attestation. As in Cocoon they are just the raw
//!   32-byte Ed25519 key of its RA-TLS certificate; the attestation's 64-byte `reportdata` is
//!   `SHA-512(claims)` ([`UserClaims::report_data`]).
//! * An [`AttestationProvider`] turns claims into [`OwnedEvidence`], in one of Cocoon 9060ce5's
//!   two certificate layouts: a quote (extension `1.3.6.1.4.1.12345.1`, next to the claims in
//!   `.2`) or SEV-SNP evidence (`.100` report data, `.101` report, `.102` VCEK PEM):
//!   - [`NoEvidence`]: none at all (Cocoon's `--tee none`, what clients outside a TEE use);
//!   - [`InsecureSoftwareTdx`] / [`InsecureSoftwareSev`]: Cocoon's `fake_tee` on Intel / AMD
//!     hosts (fake TDX: the quote is the 64-byte reportdata; fake SEV-SNP: an unsigned report and
//!     a self-signed VCEK; every measurement zero). Anyone can forge them, so they refuse to exist
//!     on [`NetworkKind::Main`];
//!   - [`ConfigfsTsmTdx`]: hardware TDX quotes through Linux configfs-tsm, inside a TD;
//!   - [`ConfigfsTsmSnp`]: hardware AMD SEV-SNP reports (configfs-tsm) with the guest's VCEK.
//! * An [`EvidenceVerifier`] judges a peer's `(evidence?, claims)` and returns an
//!   [`AttestedPeer`]. [`Policy`] is the configurable one (Cocoon's `any` / `fake_tee` / `tee`,
//!   plus TDX-only and SEV-SNP-only); hardware TDX verification ([`DcapVerifier`], `dcap-qvl`,
//!   collateral from a PCCS via [`CollateralStore`], verdicts cached in a [`TtlLru`]) plugs into
//!   it through the [`QuoteVerifier`] trait, SEV-SNP is [`SnpVerifier`] (pinned AMD roots), so
//!   the report-data binding and the image-hash allowlist ([`ImageHashPattern`], with Cocoon's
//!   `tdx@`/`sev@` prefixes) stay in one place for every evidence kind. [`TdPolicy`] adds what
//!   Cocoon's image hash misses (DEBUG must be off; XFAM / MRSEAM pins); SEV-SNP guests with
//!   DEBUG allowed are refused too.
//! * Image hashes are Cocoon's: TDX [`image_hash_from_measurements`]
//!   `SHA-256(MRTD‖MRCONFIGID‖MROWNER‖MROWNERCONFIG‖RTMR0..3‖0^64)`, SEV-SNP [`sev_image_hash`]
//!   `SHA-256(MEASUREMENT‖0^64)`.
//!
//! I/O here is limited to the TEE interface (configfs-tsm), the collateral disk cache and PCCS
//! HTTP. What must not live here: sockets, TLS, certificate parsing, chain access, or any policy that
//! needs on-chain data (the application compares [`AttestedPeer::image_hash`] with the root
//! contract's allowlists, as Cocoon does).

mod cache;
mod claims;
mod collateral;
mod configfs;
mod dcap;
mod error;
mod evidence;
mod image;
mod insecure;
mod measurements;
mod network;
mod policy;
mod provider;
mod sev_snp;
mod tdx_report;

pub use cache::{TtlLru, DEFAULT_CACHE_CAPACITY};
pub use claims::UserClaims;
pub use collateral::{parse_collateral, CollateralKey, CollateralStore, Lookup};
pub use configfs::{ConfigfsTsmTdx, DEFAULT_TSM_REPORT_ROOT};
pub use dcap::{
    parse_root_key_id, parse_tcb_status, DcapConfig, DcapVerifier, TdxVerdict,
    COCOON_INTEL_ROOT_KEY_ID, TCB_STATUS_NAMES,
};
/// dcap-qvl types that appear in this crate's API.
pub use dcap_qvl::{tcb_info::TcbStatus, QuoteCollateralV3};
pub use error::AttestError;
pub use evidence::{
    AttestedPeer, Evidence, EvidenceKind, OwnedEvidence, SevSnpEvidence, MAX_QUOTE_LEN,
    MAX_VCEK_PEM_LEN,
};
pub use image::{ImageHashPattern, TeeFamily};
pub use insecure::{InsecureSoftwareSev, InsecureSoftwareTdx, INSECURE_SOFTWARE_QUOTE_LEN};
pub use measurements::{
    image_hash_from_measurements, sev_image_hash, TdMeasurements, INSECURE_SOFTWARE_IMAGE_HASH,
    INSECURE_SOFTWARE_SEV_IMAGE_HASH, MEASUREMENT_LEN,
};
pub use network::NetworkKind;
pub use policy::{EvidenceVerifier, Policy, PolicyKind, QuoteVerifier, VerifiedQuote};
pub use provider::{provider_for, AttestationProvider, NoEvidence};
pub use sev_snp::{
    check_snp_policy, vcek_der_from_pem, vcek_pem, ConfigfsTsmSnp, SnpReport, SnpVerdict,
    SnpVerifier, DEFAULT_SEV_VCEK_PATH, SNP_MAX_CACHE_TTL, SNP_POLICY_DEBUG, SNP_REPORT_LEN,
};
pub use tdx_report::{TdPolicy, TdReport, TD_ATTR_DEBUG};
