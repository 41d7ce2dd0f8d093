//! [`accept`] and [`connect`]: run an RA-TLS handshake over any byte stream under a deadline and
//! return the TLS stream with the verified [`AttestedPeer`].
//!
//! Socket options (TCP_NODELAY, keepalive) are the caller's business; the PoW pre-handshake, if
//! any, happens on the stream before it is handed here.
//!
//! TLS 1.3 caveat for clients: the client finishes its handshake before the server has judged the
//! client's certificate, so `connect` can succeed and the first read then fails with the server's
//! alert (an `io::Error` wrapping `rustls::Error::AlertReceived`). The application protocol's
//! first exchange (`tcp.connect`/`tcp.connected`) is where a client learns it was admitted.

use std::time::Duration;

use cocoon_attest::AttestedPeer;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{RaTlsClientConfig, RaTlsServerConfig};
use crate::error::{CertError, RaTlsError};

/// The name the client sends as SNI. RA-TLS certificates are self-signed and never checked
/// against it; Cocoon's client uses "127.0.0.1", which rustls would not send as SNI at all.
const SERVER_NAME: &str = "localhost";

/// Accepts an RA-TLS connection: mutual handshake, peer verified by the configured policy.
pub async fn accept<S>(
    cfg: RaTlsServerConfig,
    io: S,
    timeout: Duration,
) -> Result<(tokio_rustls::server::TlsStream<S>, AttestedPeer), RaTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg.tls.clone());
    let stream = tokio::time::timeout(timeout, acceptor.accept(io))
        .await
        .map_err(|_| RaTlsError::Timeout(timeout))?
        .map_err(handshake_error)?;
    let peer = cfg
        .peers
        .attested_peer(stream.get_ref().1.peer_certificates())?;
    Ok((stream, peer))
}

/// Connects over an established stream: mutual handshake, server verified by the configured
/// policy. See the module docs for when the server's verdict on *our* certificate arrives.
pub async fn connect<S>(
    cfg: RaTlsClientConfig,
    io: S,
    timeout: Duration,
) -> Result<(tokio_rustls::client::TlsStream<S>, AttestedPeer), RaTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| RaTlsError::Config(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(cfg.tls.clone());
    let stream = tokio::time::timeout(timeout, connector.connect(name, io))
        .await
        .map_err(|_| RaTlsError::Timeout(timeout))?
        .map_err(handshake_error)?;
    let peer = cfg
        .peers
        .attested_peer(stream.get_ref().1.peer_certificates())?;
    Ok((stream, peer))
}

/// Recovers the typed reason from tokio-rustls' `io::Error`: our own certificate verdict, another
/// TLS failure (e.g. the peer's alert), or a transport error.
pub(crate) fn handshake_error(e: std::io::Error) -> RaTlsError {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return RaTlsError::Io(e);
    };
    if let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = tls {
        if let Some(cert) = other.0.downcast_ref::<CertError>() {
            return RaTlsError::PeerCertificate(cert.clone());
        }
    }
    RaTlsError::Tls(tls.clone())
}
