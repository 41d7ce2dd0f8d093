//! [`RaTlsIdentity`]: our own RA-TLS certificate and Ed25519 key, generated with rcgen or loaded
//! from files (e.g. written by Cocoon's `gen-cert`).
//!
//! The certificate follows Cocoon 9060ce5's: self-signed Ed25519, random 128-bit serial,
//! subject/issuer `C=AE, ST=DUBAI, O=TDLib Development, OU=Security, CN=localhost`, SAN
//! `DNS:localhost`, `DNS:127.0.0.1`, `IP:127.0.0.1`, `IP:::1`, BasicConstraints CA:FALSE,
//! KeyUsage digitalSignature, EKU serverAuth+clientAuth, and critical evidence extensions in one
//! of two layouts:
//! * TDX family (and no evidence): 1.3.6.1.4.1.12345.1 (quote, only when the provider gives one)
//!   and 1.3.6.1.4.1.12345.2 (claims = the key);
//! * SEV-SNP: 1.3.6.1.4.1.12345.100 (`SHA-512(key)`), .101 (the raw report, bound to that hash),
//!   .102 (the VCEK, PEM), and no claims extension (Cocoon refuses TDX and SEV-SNP extensions in
//!   one certificate).
//!
//! notBefore is `now - skew` so peers whose clocks lag a little still accept it; notAfter is
//! `now + validity`.
//!
//! The rustls `CertifiedKey` is built here by hand (trap #2): `with_single_cert` and
//! `with_client_auth_cert` run webpki's `keys_match`, which refuses our critical extensions.
//! Every identity passes the same structural checks a peer will run, so a bad one fails here,
//! not at the peer. The private key never leaves the rustls signing key and is never logged.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_attest::{
    AttestError, AttestationProvider, EvidenceKind, OwnedEvidence, UserClaims, MAX_QUOTE_LEN,
    MAX_VCEK_PEM_LEN, SNP_REPORT_LEN,
};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::error::RaTlsError;
use crate::ext;
use crate::inspect;

/// Options for [`RaTlsIdentity::generate_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertOptions {
    /// notAfter = now + validity. Cocoon: one day.
    pub validity: Duration,
    /// notBefore = now - skew, so peers with slightly slow clocks accept a fresh certificate.
    pub not_before_skew: Duration,
    /// The time to issue at; `None` = the system clock (set it from a synced clock if you have one).
    pub now: Option<SystemTime>,
    /// An X25519 HPKE public key to bind into the certificate (extension
    /// `1.3.6.1.4.1.12345.200`, non-critical): workers put the key clients seal requests to
    /// here, so it rotates with the certificate. `None`: no such extension (Cocoon's layout).
    pub sealing_key: Option<[u8; 32]>,
}

impl CertOptions {
    /// Cocoon's certificate lifetime.
    pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(86_400);
    /// Default clock-skew allowance for notBefore (Cocoon tolerates 30 s of skew to the chain;
    /// twice that leaves room for the peer's own error).
    pub const DEFAULT_SKEW: Duration = Duration::from_secs(60);
    /// Longest validity we issue: a quote must not vouch for a key forever.
    pub const MAX_VALIDITY: Duration = Duration::from_secs(30 * 86_400);

    /// Options with the given validity and default skew, issued now.
    pub fn new(validity: Duration) -> Self {
        Self {
            validity,
            not_before_skew: Self::DEFAULT_SKEW,
            now: None,
            sealing_key: None,
        }
    }
}

impl Default for CertOptions {
    fn default() -> Self {
        Self::new(Self::DEFAULT_VALIDITY)
    }
}

/// Our RA-TLS certificate and key. Cheap to clone.
#[derive(Clone)]
pub struct RaTlsIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    certified: Arc<CertifiedKey>,
    public_key: [u8; 32],
    kind: EvidenceKind,
    not_after: SystemTime,
    sealing_key: Option<[u8; 32]>,
}

impl fmt::Debug for RaTlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaTlsIdentity")
            .field("public_key", &hex::encode(self.inner.public_key))
            .field("kind", &self.inner.kind)
            .field("not_after", &self.inner.not_after)
            .finish_non_exhaustive()
    }
}

impl RaTlsIdentity {
    /// A fresh key and certificate, with the provider's evidence for it, valid from now for
    /// `validity`. Synchronous: without hardware it takes well under a millisecond, but a
    /// hardware provider fetches a quote, so async callers should use `spawn_blocking`.
    pub fn generate(
        provider: &dyn AttestationProvider,
        validity: Duration,
    ) -> Result<Self, RaTlsError> {
        Self::generate_with(provider, &CertOptions::new(validity))
    }

    /// [`generate`](Self::generate) with explicit options.
    pub fn generate_with(
        provider: &dyn AttestationProvider,
        opts: &CertOptions,
    ) -> Result<Self, RaTlsError> {
        if opts.validity.is_zero() || opts.validity > CertOptions::MAX_VALIDITY {
            return Err(RaTlsError::InvalidOptions(format!(
                "validity must be between 1 s and {:?}, got {:?}",
                CertOptions::MAX_VALIDITY,
                opts.validity
            )));
        }
        let now = opts.now.unwrap_or_else(SystemTime::now);
        let not_before = now
            .checked_sub(opts.not_before_skew)
            .ok_or_else(|| RaTlsError::InvalidOptions("notBefore before the epoch".into()))?;
        let not_after = now
            .checked_add(opts.validity)
            .ok_or_else(|| RaTlsError::InvalidOptions("notAfter overflows".into()))?;

        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(gen_err)?;
        let public_key: [u8; 32] = key_pair
            .public_key_raw()
            .try_into()
            .map_err(|_| RaTlsError::CertGeneration("Ed25519 key is not 32 bytes".into()))?;
        let claims = UserClaims::new(public_key);
        let evidence = provider.evidence(&claims).map_err(RaTlsError::Evidence)?;
        let mut evidence_exts = evidence_extensions(evidence, &claims, provider.kind())?;
        if let Some(key) = opts.sealing_key {
            evidence_exts.push(CustomExtension::from_oid_content(
                ext::OID_SEALING_KEY,
                key.to_vec(),
            ));
        }

        let mut params = CertificateParams::default();
        params.not_before = asn1_time(not_before)?.to_datetime();
        params.not_after = asn1_time(not_after)?.to_datetime();
        params.serial_number = Some(random_serial()?);
        params.distinguished_name = cocoon_subject();
        // Cocoon's clients check the host `127.0.0.1` with `X509_VERIFY_PARAM_set1_host`, which
        // matches DNS names only: without `DNS:127.0.0.1` they refuse us ("hostname mismatch").
        // Cocoon's own certificates carry `DNS:localhost, DNS:127.0.0.1, IP:::1`; the IPv4 entry
        // stays for clients that check the address as an IP.
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().map_err(gen_err)?),
            SanType::DnsName("127.0.0.1".try_into().map_err(gen_err)?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.custom_extensions = evidence_exts;

        let cert = params.self_signed(&key_pair).map_err(gen_err)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let identity = Self::assemble(cert.der().clone(), key_der)?;
        tracing::info!(
            public_key = %hex::encode(identity.public_key()),
            kind = %identity.evidence_kind(),
            cert_len = identity.cert_der().len(),
            "generated RA-TLS identity"
        );
        Ok(identity)
    }

    /// Loads a certificate and its PKCS#8 Ed25519 key (DER), e.g. from Cocoon's `gen-cert`.
    /// The certificate must pass the structural RA-TLS checks and the key must match it.
    pub fn from_der(cert_der: &[u8], pkcs8_key_der: &[u8]) -> Result<Self, RaTlsError> {
        Self::assemble(
            CertificateDer::from(cert_der.to_vec()),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8_key_der.to_vec())),
        )
    }

    /// [`from_der`](Self::from_der) from PEM text (`CERTIFICATE` and `PRIVATE KEY` blocks).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, RaTlsError> {
        let cert = pem_block(cert_pem, "CERTIFICATE")?;
        let key = pem_block(key_pem, "PRIVATE KEY")?;
        Self::from_der(&cert, &key)
    }

    fn assemble(
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, RaTlsError> {
        let checked = inspect::check_structure(&cert).map_err(RaTlsError::OwnCertificate)?;
        let public_key = checked.public_key;
        let kind = checked.evidence.map_or(EvidenceKind::None, |e| e.kind());
        let sealing_key = checked.sealing_key;
        let not_after = u64::try_from(checked.not_after)
            .ok()
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
            .ok_or_else(|| RaTlsError::InvalidIdentity("notAfter before the epoch".into()))?;

        // The key must be the certificate's: otherwise every handshake would fail at the peer.
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.secret_der())
            .map_err(|e| RaTlsError::InvalidIdentity(format!("not a PKCS#8 Ed25519 key: {e}")))?;
        if ring::signature::KeyPair::public_key(&pair).as_ref() != public_key.as_slice() {
            return Err(RaTlsError::InvalidIdentity(
                "private key does not match the certificate".into(),
            ));
        }
        let signing_key = crate::config::crypto_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| RaTlsError::InvalidIdentity(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                certified: Arc::new(CertifiedKey::new(vec![cert], signing_key)),
                public_key,
                kind,
                not_after,
                sealing_key,
            }),
        })
    }

    /// A test-only identity that skips every check, to present broken certificates to peers.
    #[cfg(test)]
    pub(crate) fn unchecked(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        let signing_key = crate::config::crypto_provider()
            .key_provider
            .load_private_key(key)
            .unwrap();
        Self {
            inner: Arc::new(Inner {
                certified: Arc::new(CertifiedKey::new(chain, signing_key)),
                public_key: [0; 32],
                kind: EvidenceKind::None,
                not_after: UNIX_EPOCH,
                sealing_key: None,
            }),
        }
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        self.inner
            .certified
            .cert
            .first()
            .map_or(&[][..], |c| c.as_ref())
    }

    /// Our Ed25519 public key (also our user claims).
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.public_key
    }

    /// Our user claims.
    pub fn claims(&self) -> UserClaims {
        UserClaims::new(self.inner.public_key)
    }

    /// Kind of evidence in the certificate (judged by its shape, `Evidence::kind`).
    pub fn evidence_kind(&self) -> EvidenceKind {
        self.inner.kind
    }

    /// End of validity; rotate before this.
    pub fn not_after(&self) -> SystemTime {
        self.inner.not_after
    }

    /// The HPKE public key bound in the certificate, if any ([`CertOptions::sealing_key`]).
    pub fn sealing_key(&self) -> Option<[u8; 32]> {
        self.inner.sealing_key
    }

    /// Signs `msg` with the certificate's Ed25519 key (which the evidence commits to): what a
    /// node's receipts are signed with. Callers domain-separate their messages.
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; 64], RaTlsError> {
        let signer = self
            .inner
            .certified
            .key
            .choose_scheme(&[rustls::SignatureScheme::ED25519])
            .ok_or_else(|| RaTlsError::InvalidIdentity("the key cannot sign Ed25519".into()))?;
        let sig = signer
            .sign(msg)
            .map_err(|e| RaTlsError::InvalidIdentity(format!("signing failed: {e}")))?;
        sig.try_into()
            .map_err(|_| RaTlsError::InvalidIdentity("Ed25519 signature is not 64 bytes".into()))
    }

    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        self.inner.certified.clone()
    }
}

/// The critical evidence extensions for `evidence` (see the module docs), its bounds checked.
fn evidence_extensions(
    evidence: Option<OwnedEvidence>,
    claims: &UserClaims,
    kind: EvidenceKind,
) -> Result<Vec<CustomExtension>, RaTlsError> {
    let malformed = |reason: &str| {
        RaTlsError::Evidence(AttestError::MalformedQuote {
            kind,
            reason: reason.into(),
        })
    };
    let claims_ext = critical(ext::OID_USER_CLAIMS, claims.to_bytes());
    match evidence {
        None => Ok(vec![claims_ext]),
        Some(OwnedEvidence::Quote(q)) => {
            if q.len() > MAX_QUOTE_LEN {
                return Err(RaTlsError::EvidenceTooLarge {
                    len: q.len(),
                    max: MAX_QUOTE_LEN,
                });
            }
            if q.is_empty() {
                return Err(malformed("the provider returned an empty quote"));
            }
            Ok(vec![critical(ext::OID_QUOTE, q), claims_ext])
        }
        Some(OwnedEvidence::SevSnp {
            report_data,
            report,
            vcek_pem,
        }) => {
            if vcek_pem.len() > MAX_VCEK_PEM_LEN {
                return Err(RaTlsError::EvidenceTooLarge {
                    len: vcek_pem.len(),
                    max: MAX_VCEK_PEM_LEN,
                });
            }
            if vcek_pem.is_empty() {
                return Err(malformed("the provider returned no VCEK"));
            }
            if report.len() != SNP_REPORT_LEN {
                return Err(malformed("the SEV-SNP report is not 1184 bytes"));
            }
            let expected = claims.report_data();
            if report_data != expected || report.get(0x50..0x90) != Some(expected.as_slice()) {
                return Err(malformed("the SEV-SNP evidence is not bound to our key"));
            }
            Ok(vec![
                critical(ext::OID_SEV_REPORT_DATA, report_data.to_vec()),
                critical(ext::OID_SEV_REPORT, report),
                critical(ext::OID_SEV_VCEK, vcek_pem),
            ])
        }
    }
}

fn critical(oid: &[u64], content: Vec<u8>) -> CustomExtension {
    let mut e = CustomExtension::from_oid_content(oid, content);
    e.set_criticality(true);
    e
}

fn cocoon_subject() -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "AE");
    dn.push(DnType::StateOrProvinceName, "DUBAI");
    dn.push(DnType::OrganizationName, "TDLib Development");
    dn.push(DnType::OrganizationalUnitName, "Security");
    dn.push(DnType::CommonName, "localhost");
    dn
}

fn random_serial() -> Result<SerialNumber, RaTlsError> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| RaTlsError::CertGeneration("system RNG failed".into()))?;
    // A positive INTEGER that never needs a sign byte, like Cocoon's 16-byte serials.
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from_slice(&b))
}

/// SystemTime as an X.509 time. Its `to_datetime()` is the `time::OffsetDateTime` rcgen takes,
/// so this crate needs no direct dependency on `time`.
fn asn1_time(t: SystemTime) -> Result<x509_parser::time::ASN1Time, RaTlsError> {
    let secs = inspect::unix_secs(t);
    x509_parser::time::ASN1Time::from_timestamp(secs)
        .map_err(|e| RaTlsError::InvalidOptions(format!("time {secs} not encodable: {e}")))
}

fn pem_block(pem: &[u8], label: &str) -> Result<Vec<u8>, RaTlsError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| RaTlsError::InvalidIdentity(format!("bad PEM: {e}")))?;
    if block.label != label {
        return Err(RaTlsError::InvalidIdentity(format!(
            "expected a PEM {label} block, found {}",
            block.label
        )));
    }
    Ok(block.contents)
}

fn gen_err(e: rcgen::Error) -> RaTlsError {
    RaTlsError::CertGeneration(e.to_string())
}

#[cfg(test)]
mod tests {
    use cocoon_attest::{InsecureSoftwareTdx, NetworkKind, NoEvidence};
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn ext_value<'a>(c: &'a X509Certificate<'_>, der_oid: &[u8]) -> Option<(bool, &'a [u8])> {
        c.extensions()
            .iter()
            .find(|e| e.oid.as_bytes() == der_oid)
            .map(|e| (e.critical, e.value))
    }

    #[test]
    fn sealing_key_is_bound_non_critical_and_read_back_by_peers() {
        let provider = InsecureSoftwareTdx::new(NetworkKind::Dev).unwrap();
        let id = RaTlsIdentity::generate_with(
            &provider,
            &CertOptions {
                sealing_key: Some([0x5a; 32]),
                ..CertOptions::new(DAY)
            },
        )
        .unwrap();
        assert_eq!(id.sealing_key(), Some([0x5a; 32]));
        let (_, c) = X509Certificate::from_der(id.cert_der()).unwrap();
        let (crit, key) = ext_value(&c, ext::DER_SEALING_KEY).unwrap();
        assert!(!crit, "Cocoon peers must be free to ignore it");
        assert_eq!(key, [0x5a; 32]);
        let policy = cocoon_attest::Policy::insecure_software(NetworkKind::Dev).unwrap();
        let peer = crate::inspect_cert(id.cert_der(), &policy, SystemTime::now()).unwrap();
        assert_eq!(peer.sealing_key, Some([0x5a; 32]));
        assert_eq!(peer.certificate.as_deref(), Some(id.cert_der()));
        assert_eq!(peer.public_key, id.public_key());

        // Without one, no extension: Cocoon's layout, and peers read none.
        let plain = RaTlsIdentity::generate(&provider, DAY).unwrap();
        assert_eq!(plain.sealing_key(), None);
        let (_, c) = X509Certificate::from_der(plain.cert_der()).unwrap();
        assert!(ext_value(&c, ext::DER_SEALING_KEY).is_none());
        let peer = crate::inspect_cert(plain.cert_der(), &policy, SystemTime::now()).unwrap();
        assert_eq!(peer.sealing_key, None);
    }

    #[test]
    fn signatures_verify_under_the_certificate_key() {
        let id = RaTlsIdentity::generate(&NoEvidence, DAY).unwrap();
        let sig = id.sign(b"receipt").unwrap();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, id.public_key())
            .verify(b"receipt", &sig)
            .unwrap();
    }

    #[test]
    fn generated_cert_has_cocoon_layout() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_348_800);
        let id = RaTlsIdentity::generate_with(
            &InsecureSoftwareTdx::new(NetworkKind::Dev).unwrap(),
            &CertOptions {
                now: Some(at),
                ..CertOptions::new(DAY)
            },
        )
        .unwrap();
        let (_, c) = X509Certificate::from_der(id.cert_der()).unwrap();
        assert_eq!(
            c.subject().to_string(),
            "C=AE, ST=DUBAI, O=TDLib Development, OU=Security, CN=localhost"
        );
        assert_eq!(c.subject().as_raw(), c.issuer().as_raw());
        assert_eq!(
            c.validity().not_before.timestamp(),
            1_795_348_800 - CertOptions::DEFAULT_SKEW.as_secs() as i64
        );
        assert_eq!(c.validity().not_after.timestamp(), 1_795_348_800 + 86_400);
        assert_eq!(id.not_after(), at + DAY);
        // 16-byte positive serial.
        assert_eq!(c.raw_serial().len(), 16);
        assert_eq!(c.raw_serial()[0] & 0x80, 0);

        let (crit, claims) = ext_value(&c, ext::DER_USER_CLAIMS).unwrap();
        assert!(crit);
        assert_eq!(claims, id.public_key());
        let (crit, quote) = ext_value(&c, ext::DER_QUOTE).unwrap();
        assert!(crit);
        assert_eq!(quote, id.claims().report_data());
        assert_eq!(id.evidence_kind(), EvidenceKind::InsecureSoftware);

        let mut sans = Vec::new();
        let mut eku = None;
        for e in c.extensions() {
            match e.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(s) => {
                    for n in &s.general_names {
                        sans.push(match n {
                            GeneralName::DNSName(d) => d.to_string(),
                            GeneralName::IPAddress(ip) => format!("ip:{}", hex::encode(ip)),
                            other => format!("{other:?}"),
                        });
                    }
                }
                ParsedExtension::ExtendedKeyUsage(k) => eku = Some((k.server_auth, k.client_auth)),
                ParsedExtension::BasicConstraints(bc) => assert!(!bc.ca),
                ParsedExtension::KeyUsage(ku) => assert!(ku.digital_signature()),
                _ => {}
            }
        }
        assert_eq!(
            sans,
            vec![
                "localhost".to_string(),
                "127.0.0.1".into(),
                "ip:7f000001".into(),
                format!("ip:{}", hex::encode(Ipv6Addr::LOCALHOST.octets()))
            ]
        );
        assert_eq!(eku, Some((true, true)));
    }

    #[test]
    fn san_has_127_0_0_1_as_a_dns_name_for_cocoon_clients() {
        // Cocoon's router verifies our host as `127.0.0.1` with X509_VERIFY_PARAM_set1_host,
        // which only matches a DNS entry (README of testdata/cocoon-9060ce5, interop at cd10504).
        let id = RaTlsIdentity::generate(&NoEvidence, DAY).unwrap();
        let (_, c) = X509Certificate::from_der(id.cert_der()).unwrap();
        let san = c.subject_alternative_name().unwrap().unwrap().value;
        let dns: Vec<&str> = san
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(*d),
                _ => None,
            })
            .collect();
        assert_eq!(dns, ["localhost", "127.0.0.1"]);
        assert!(san
            .general_names
            .contains(&GeneralName::IPAddress(&Ipv6Addr::LOCALHOST.octets())));
    }

    #[test]
    fn no_evidence_means_no_quote_extension() {
        let id = RaTlsIdentity::generate(&NoEvidence, DAY).unwrap();
        let (_, c) = X509Certificate::from_der(id.cert_der()).unwrap();
        assert!(ext_value(&c, ext::DER_QUOTE).is_none());
        assert!(ext_value(&c, ext::DER_USER_CLAIMS).is_some());
        assert_eq!(id.evidence_kind(), EvidenceKind::None);
    }

    #[test]
    fn keys_and_serials_are_fresh() {
        let a = RaTlsIdentity::generate(&NoEvidence, DAY).unwrap();
        let b = RaTlsIdentity::generate(&NoEvidence, DAY).unwrap();
        assert_ne!(a.public_key(), b.public_key());
        let (_, ca) = X509Certificate::from_der(a.cert_der()).unwrap();
        let (_, cb) = X509Certificate::from_der(b.cert_der()).unwrap();
        assert_ne!(ca.raw_serial(), cb.raw_serial());
    }

    #[test]
    fn bad_options_refused() {
        assert!(matches!(
            RaTlsIdentity::generate(&NoEvidence, Duration::ZERO),
            Err(RaTlsError::InvalidOptions(_))
        ));
        assert!(matches!(
            RaTlsIdentity::generate(&NoEvidence, CertOptions::MAX_VALIDITY + DAY),
            Err(RaTlsError::InvalidOptions(_))
        ));
    }

    #[derive(Debug)]
    struct Huge;
    impl AttestationProvider for Huge {
        fn kind(&self) -> EvidenceKind {
            EvidenceKind::Tdx
        }
        fn evidence(&self, _c: &UserClaims) -> Result<Option<OwnedEvidence>, AttestError> {
            Ok(Some(OwnedEvidence::Quote(vec![0; MAX_QUOTE_LEN + 1])))
        }
    }

    #[derive(Debug)]
    struct Broken;
    impl AttestationProvider for Broken {
        fn kind(&self) -> EvidenceKind {
            EvidenceKind::Tdx
        }
        fn evidence(&self, _c: &UserClaims) -> Result<Option<OwnedEvidence>, AttestError> {
            Err(AttestError::TdxUnavailable("no TDX here".into()))
        }
    }

    #[test]
    fn provider_failures_surface() {
        assert!(matches!(
            RaTlsIdentity::generate(&Huge, DAY),
            Err(RaTlsError::EvidenceTooLarge { .. })
        ));
        assert!(matches!(
            RaTlsIdentity::generate(&Broken, DAY),
            Err(RaTlsError::Evidence(AttestError::TdxUnavailable(_)))
        ));
    }

    #[test]
    fn loading_refuses_a_key_of_another_certificate() {
        let a = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let id = RaTlsIdentity::generate(&NoEvidence, DAY).unwrap();
        let err = RaTlsIdentity::from_der(id.cert_der(), &a.serialize_der()).unwrap_err();
        assert!(
            matches!(&err, RaTlsError::InvalidIdentity(m) if m.contains("does not match")),
            "{err}"
        );
    }

    #[test]
    fn loading_refuses_a_non_ratls_certificate() {
        let (cert, key) = crate::test_support::build(&crate::test_support::Spec {
            claims: crate::test_support::Claims::Explicit(vec![9; 32]),
            ..Default::default()
        });
        let err = RaTlsIdentity::from_der(&cert, key.secret_der()).unwrap_err();
        assert!(matches!(
            err,
            RaTlsError::OwnCertificate(crate::CertError::ClaimsMismatch)
        ));
    }

    #[test]
    fn debug_does_not_print_the_key_material() {
        let id = RaTlsIdentity::generate(&NoEvidence, DAY).unwrap();
        let s = format!("{id:?}");
        assert!(s.contains(&hex::encode(id.public_key())));
        assert!(!s.to_lowercase().contains("private"));
    }
}
