//! Test-only builders for certificates our own generator would never produce (wrong claims,
//! unknown critical extensions, ECDSA keys, CA-issued, expired, chains), and a duplex handshake
//! harness. Compiled only for tests.

use std::time::{Duration, SystemTime};

use cocoon_attest::{AttestedPeer, UserClaims};
use rcgen::{CertificateParams, CustomExtension, DnType, IsCa, KeyPair, SignatureAlgorithm};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::handshake::handshake_error;
use crate::{
    accept, connect, ext, RaTlsClientConfig, RaTlsError, RaTlsIdentity, RaTlsServerConfig,
};

/// What goes into the quote extension.
pub(crate) enum Quote {
    None,
    /// SHA-512 of the certificate's own key (a valid fake-TDX quote).
    Bound,
    Raw(Vec<u8>),
}

/// What goes into the SEV-SNP extensions (.100/.101/.102).
pub(crate) enum Sev {
    None,
    /// `.100` = SHA-512 of the certificate's key (of another key unless `bind_ext`); the
    /// report's REPORT_DATA is set to that hash of our key when `bind_report` (which changes a
    /// signed report's bytes).
    Parts {
        report: Vec<u8>,
        vcek_pem: Vec<u8>,
        bind_report: bool,
        bind_ext: bool,
    },
}

/// What goes into the claims extension.
pub(crate) enum Claims {
    FromKey,
    Explicit(Vec<u8>),
    Absent,
}

pub(crate) struct Spec {
    pub alg: &'static SignatureAlgorithm,
    pub quote: Quote,
    pub claims: Claims,
    pub sev: Sev,
    pub extra: Vec<CustomExtension>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Default for Spec {
    fn default() -> Self {
        let now = SystemTime::now();
        Self {
            alg: &rcgen::PKCS_ED25519,
            quote: Quote::None,
            claims: Claims::FromKey,
            sev: Sev::None,
            extra: Vec::new(),
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(86_400),
        }
    }
}

fn base_params(spec: &Spec, key: &KeyPair) -> CertificateParams {
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.is_ca = IsCa::ExplicitNoCa;
    p.not_before =
        x509_parser::time::ASN1Time::from_timestamp(crate::inspect::unix_secs(spec.not_before))
            .unwrap()
            .to_datetime();
    p.not_after =
        x509_parser::time::ASN1Time::from_timestamp(crate::inspect::unix_secs(spec.not_after))
            .unwrap()
            .to_datetime();
    let raw_key = key.public_key_raw().to_vec();
    let quote = match &spec.quote {
        Quote::None => None,
        Quote::Bound => Some(
            UserClaims::from_bytes(&raw_key)
                .unwrap()
                .report_data()
                .to_vec(),
        ),
        Quote::Raw(q) => Some(q.clone()),
    };
    if let Some(q) = quote {
        let mut e = CustomExtension::from_oid_content(ext::OID_QUOTE, q);
        e.set_criticality(true);
        p.custom_extensions.push(e);
    }
    let claims = match &spec.claims {
        Claims::FromKey => Some(raw_key.clone()),
        Claims::Explicit(c) => Some(c.clone()),
        Claims::Absent => None,
    };
    if let Some(c) = claims {
        let mut e = CustomExtension::from_oid_content(ext::OID_USER_CLAIMS, c);
        e.set_criticality(true);
        p.custom_extensions.push(e);
    }
    if let Sev::Parts {
        report,
        vcek_pem,
        bind_report,
        bind_ext,
    } = &spec.sev
    {
        let hash = UserClaims::from_bytes(&raw_key).unwrap().report_data();
        let mut report = report.clone();
        if *bind_report {
            report[0x50..0x90].copy_from_slice(&hash);
        }
        let ext_hash = if *bind_ext {
            hash
        } else {
            UserClaims::new([0xee; 32]).report_data()
        };
        for (oid, value) in [
            (ext::OID_SEV_REPORT_DATA, ext_hash.to_vec()),
            (ext::OID_SEV_REPORT, report),
            (ext::OID_SEV_VCEK, vcek_pem.clone()),
        ] {
            let mut e = CustomExtension::from_oid_content(oid, value);
            e.set_criticality(true);
            p.custom_extensions.push(e);
        }
    }
    p.custom_extensions.extend(spec.extra.iter().cloned());
    p
}

fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// A self-signed certificate built from `spec`, and its key.
pub(crate) fn build(spec: &Spec) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate_for(spec.alg).unwrap();
    let cert = base_params(spec, &key).self_signed(&key).unwrap();
    (cert.der().clone(), key_der(&key))
}

/// An identity presenting the certificate built from `spec`, skipping our own checks.
pub(crate) fn identity(spec: &Spec) -> RaTlsIdentity {
    let (cert, key) = build(spec);
    RaTlsIdentity::unchecked(vec![cert], key)
}

/// A leaf (valid RA-TLS content) issued by a separate CA key, so issuer != subject.
pub(crate) fn ca_issued() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let spec = Spec::default();
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "some CA");
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let leaf = base_params(&spec, &leaf_key)
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (leaf.der().clone(), key_der(&leaf_key))
}

/// Result of one handshake as seen from each side.
pub(crate) struct Outcome {
    /// What the server concluded about the client.
    pub server: Result<AttestedPeer, RaTlsError>,
    /// What the client concluded about the server, after one echo round trip (so a server-side
    /// rejection of the client shows up here as an error too).
    pub client: Result<AttestedPeer, RaTlsError>,
}

pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a full handshake over an in-memory duplex, plus an echo of one message.
pub(crate) async fn handshake(server: RaTlsServerConfig, client: RaTlsClientConfig) -> Outcome {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server_side = async move {
        let (mut s, peer) = accept(server, a, TIMEOUT).await?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.map_err(handshake_error)?;
        s.write_all(&buf).await.map_err(handshake_error)?;
        s.flush().await.map_err(handshake_error)?;
        Ok::<_, RaTlsError>(peer)
    };
    let client_side = async move { client_round_trip(client, b).await };
    let (server, client) = tokio::join!(server_side, client_side);
    Outcome { server, client }
}

async fn client_round_trip(
    client: RaTlsClientConfig,
    io: DuplexStream,
) -> Result<AttestedPeer, RaTlsError> {
    let (mut c, peer) = connect(client, io, TIMEOUT).await?;
    c.write_all(b"hello").await.map_err(handshake_error)?;
    c.flush().await.map_err(handshake_error)?;
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).await.map_err(handshake_error)?;
    assert_eq!(&buf, b"hello");
    Ok(peer)
}
