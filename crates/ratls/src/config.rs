//! rustls configurations for RA-TLS: [`server_config`] / [`client_config`] and the
//! [`RaTlsServerConfig`] / [`RaTlsClientConfig`] they return.
//!
//! Settings (Cocoon's `create_ssl_ctx`): TLS 1.3 only; cipher suites TLS13_AES_128_GCM_SHA256 and
//! TLS13_AES_256_GCM_SHA384 only (ring provider); mutual authentication always; no session
//! tickets, no session cache, no resumption, so every connection runs the full RA check. Our
//! certificate is installed through resolvers holding a hand-built `CertifiedKey` (trap #2).
//!
//! Why wrapper types instead of bare `Arc<rustls::ServerConfig>`: after the handshake the caller
//! must get the *verified* [`AttestedPeer`](cocoon_attest::AttestedPeer), and rustls keeps its
//! verifier private, so the evidence verifier (and the clock the verifier used) travel next to the
//! rustls config. The rustls config is still reachable for callers that need it.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use cocoon_attest::{AttestedPeer, EvidenceVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::time_provider::{DefaultTimeProvider, TimeProvider};
use rustls::SignatureScheme;

use crate::error::{CertError, RaTlsError};
use crate::identity::RaTlsIdentity;
use crate::inspect;
use crate::reload::IdentitySlot;
use crate::verifier::{to_system_time, PeerVerifier};

/// Options for [`server_config_with`] / [`client_config_with`].
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// The clock certificates are checked against; `None` = the system clock. Tests and nodes with
    /// a chain-synced clock set it.
    pub time_provider: Option<Arc<dyn TimeProvider>>,
}

/// A server-side RA-TLS configuration. Cheap to clone.
#[derive(Clone)]
pub struct RaTlsServerConfig {
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) peers: PeerCheck,
}

/// A client-side RA-TLS configuration. Cheap to clone.
#[derive(Clone)]
pub struct RaTlsClientConfig {
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) peers: PeerCheck,
}

impl RaTlsServerConfig {
    /// The underlying rustls configuration.
    pub fn rustls_config(&self) -> &Arc<rustls::ServerConfig> {
        &self.tls
    }
}

impl RaTlsClientConfig {
    /// The underlying rustls configuration.
    pub fn rustls_config(&self) -> &Arc<rustls::ClientConfig> {
        &self.tls
    }
}

impl fmt::Debug for RaTlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaTlsServerConfig")
            .field("verifier", &self.peers.evidence)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RaTlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaTlsClientConfig")
            .field("verifier", &self.peers.evidence)
            .finish_non_exhaustive()
    }
}

/// What the handshake functions need to produce the verified peer after rustls is done.
#[derive(Clone, Debug)]
pub(crate) struct PeerCheck {
    evidence: Arc<dyn EvidenceVerifier>,
    clock: Arc<dyn TimeProvider>,
}

impl PeerCheck {
    /// Re-runs the full verification on the certificate rustls accepted, with the same policy and
    /// clock, to hand the caller the verified result. (rustls has no per-connection slot to stash
    /// the verifier's result in; a hardware verifier caches its expensive part.)
    pub(crate) fn attested_peer(
        &self,
        certs: Option<&[CertificateDer<'static>]>,
    ) -> Result<AttestedPeer, RaTlsError> {
        let certs = certs.ok_or(RaTlsError::NoPeerCertificate)?;
        let [cert] = certs else {
            return Err(RaTlsError::PeerCertificate(CertError::ChainNotAllowed {
                count: certs.len(),
            }));
        };
        let now = self.now()?;
        inspect::verify_peer_cert(cert, &*self.evidence, now).map_err(RaTlsError::PeerCertificate)
    }

    fn now(&self) -> Result<SystemTime, RaTlsError> {
        self.clock
            .current_time()
            .map(to_system_time)
            .ok_or(RaTlsError::NoClock)
    }
}

/// The ring provider restricted to the two AES-GCM TLS 1.3 suites Cocoon uses.
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::{TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384};
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384];
    Arc::new(provider)
}

/// Server configuration: presents `identity`, requires a client certificate and judges it with
/// `verifier`.
pub fn server_config(
    identity: &RaTlsIdentity,
    verifier: Arc<dyn EvidenceVerifier>,
) -> Result<RaTlsServerConfig, RaTlsError> {
    server_config_with(identity, verifier, &TlsOptions::default())
}

/// [`server_config`] with options.
pub fn server_config_with(
    identity: &RaTlsIdentity,
    verifier: Arc<dyn EvidenceVerifier>,
    opts: &TlsOptions,
) -> Result<RaTlsServerConfig, RaTlsError> {
    server_config_reloadable(&IdentitySlot::new(identity.clone()), verifier, opts)
}

/// A server configuration presenting whatever identity `slot` holds at each handshake, so a
/// rotated certificate takes effect for new connections without touching live ones.
pub fn server_config_reloadable(
    slot: &Arc<IdentitySlot>,
    verifier: Arc<dyn EvidenceVerifier>,
    opts: &TlsOptions,
) -> Result<RaTlsServerConfig, RaTlsError> {
    let clock = clock(opts);
    let mut cfg = rustls::ServerConfig::builder_with_details(crypto_provider(), clock.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .with_client_cert_verifier(Arc::new(PeerVerifier::new(verifier.clone())))
        .with_cert_resolver(Arc::new(SlotCert(slot.clone())));
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.max_early_data_size = 0;
    Ok(RaTlsServerConfig {
        tls: Arc::new(cfg),
        peers: PeerCheck {
            evidence: verifier,
            clock,
        },
    })
}

/// Client configuration: presents `identity` and judges the server's certificate with `verifier`.
pub fn client_config(
    identity: &RaTlsIdentity,
    verifier: Arc<dyn EvidenceVerifier>,
) -> Result<RaTlsClientConfig, RaTlsError> {
    client_config_with(identity, verifier, &TlsOptions::default())
}

/// [`client_config`] with options.
pub fn client_config_with(
    identity: &RaTlsIdentity,
    verifier: Arc<dyn EvidenceVerifier>,
    opts: &TlsOptions,
) -> Result<RaTlsClientConfig, RaTlsError> {
    client_config_reloadable(&IdentitySlot::new(identity.clone()), verifier, opts)
}

/// A client configuration presenting whatever identity `slot` holds at each handshake.
pub fn client_config_reloadable(
    slot: &Arc<IdentitySlot>,
    verifier: Arc<dyn EvidenceVerifier>,
    opts: &TlsOptions,
) -> Result<RaTlsClientConfig, RaTlsError> {
    let clock = clock(opts);
    let mut cfg = rustls::ClientConfig::builder_with_details(crypto_provider(), clock.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier::new(verifier.clone())))
        .with_client_cert_resolver(Arc::new(SlotCert(slot.clone())));
    cfg.resumption = Resumption::disabled();
    cfg.enable_early_data = false;
    Ok(RaTlsClientConfig {
        tls: Arc::new(cfg),
        peers: PeerCheck {
            evidence: verifier,
            clock,
        },
    })
}

fn clock(opts: &TlsOptions) -> Arc<dyn TimeProvider> {
    opts.time_provider
        .clone()
        .unwrap_or_else(|| Arc::new(DefaultTimeProvider))
}

fn config_err(e: rustls::Error) -> RaTlsError {
    RaTlsError::Config(e.to_string())
}

/// Presents the slot's current identity (no SNI-based selection: RA-TLS names are meaningless).
#[derive(Debug)]
struct SlotCert(Arc<IdentitySlot>);

impl ResolvesServerCert for SlotCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified_key())
    }
}

impl ResolvesClientCert for SlotCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
