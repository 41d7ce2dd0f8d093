//! [`PeerVerifier`]: the one rustls verifier for both directions (server certs seen by clients,
//! client certs seen by servers), running the shared checks of `inspect` plus the evidence policy.
//!
//! Rules: exactly one certificate (no intermediates), all of `inspect::verify_peer_cert`, and
//! CertificateVerify signatures in Ed25519 only, checked with ring (trap #1: rustls'
//! `verify_tls13_signature` goes through webpki, which refuses our critical extensions).
//! Rejections travel through rustls as `CertificateError::Other(CertError)` so the handshake
//! functions can give the caller the typed reason back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_attest::EvidenceVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use crate::error::CertError;
use crate::inspect;

/// Verifies RA-TLS peers for rustls, in either direction.
#[derive(Debug)]
pub(crate) struct PeerVerifier {
    evidence: Arc<dyn EvidenceVerifier>,
}

impl PeerVerifier {
    pub(crate) fn new(evidence: Arc<dyn EvidenceVerifier>) -> Self {
        Self { evidence }
    }

    fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let res = if intermediates.is_empty() {
            inspect::verify_peer_cert(end_entity, &*self.evidence, to_system_time(now)).map(
                |peer| {
                    tracing::debug!(
                        public_key = %hex::encode(peer.public_key),
                        kind = %peer.kind,
                        "RA-TLS peer certificate accepted"
                    );
                },
            )
        } else {
            Err(CertError::ChainNotAllowed {
                count: intermediates.len() + 1,
            })
        };
        // Debug only: the error reaches the dialer, which warns on each failed dial, and the
        // listener, which warns at most once per 10 s (a refused peer can retry at will).
        res.map_err(|e| {
            tracing::debug!(error = %e, "RA-TLS peer certificate rejected");
            to_rustls(e)
        })
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::NoSignatureSchemesInCommon,
            ));
        }
        inspect::verify_ed25519_signature(cert, message, dss.signature())
            .map(|()| HandshakeSignatureValid::assertion())
            .map_err(to_rustls)
    }
}

/// Wraps a certificate error so it survives the trip through rustls.
fn to_rustls(e: CertError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// rustls' `now` (from the config's time provider) as a `SystemTime`.
pub(crate) fn to_system_time(t: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.as_secs())
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not supported by RA-TLS".into())
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The server name is meaningless for self-signed RA-TLS certificates: identity is the
        // key and the evidence, which the application checks.
        self.verify_chain(end_entity, intermediates, now)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify_chain(end_entity, intermediates, now)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
