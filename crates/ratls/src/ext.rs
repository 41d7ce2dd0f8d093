//! Object identifiers and size bounds of the RA-TLS certificate format (Cocoon 9060ce5's): the
//! TDX family (`.1` quote, `.2` claims) and SEV-SNP (`.100` report data, `.101` report, `.102`
//! VCEK PEM), which Cocoon refuses to see together in one certificate.
//!
//! OIDs are kept in two forms: arc lists for rcgen (writing) and DER content bytes for comparing
//! with what x509-parser reads, so no OID is ever parsed at runtime. A unit test ties both forms.

/// Cocoon's TDX quote extension, 1.3.6.1.4.1.12345.1 (raw quote bytes in the OCTET STRING).
pub const OID_QUOTE: &[u64] = &[1, 3, 6, 1, 4, 1, 12345, 1];
/// Cocoon's user-claims extension, 1.3.6.1.4.1.12345.2 (the raw 32-byte Ed25519 key).
pub const OID_USER_CLAIMS: &[u64] = &[1, 3, 6, 1, 4, 1, 12345, 2];

/// Cocoon's SEV-SNP report-data extension, 1.3.6.1.4.1.12345.100 (`SHA-512(claims)`, 64 bytes).
pub const OID_SEV_REPORT_DATA: &[u64] = &[1, 3, 6, 1, 4, 1, 12345, 100];
/// Cocoon's SEV-SNP attestation-report extension, 1.3.6.1.4.1.12345.101 (the raw 1184 bytes).
pub const OID_SEV_REPORT: &[u64] = &[1, 3, 6, 1, 4, 1, 12345, 101];
/// Cocoon's SEV-SNP VCEK extension, 1.3.6.1.4.1.12345.102 (the VCEK certificate, PEM).
pub const OID_SEV_VCEK: &[u64] = &[1, 3, 6, 1, 4, 1, 12345, 102];

pub(crate) const DER_QUOTE: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xe0, 0x39, 0x01];
pub(crate) const DER_USER_CLAIMS: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xe0, 0x39, 0x02];
pub(crate) const DER_SEV_REPORT_DATA: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xe0, 0x39, 0x64];
pub(crate) const DER_SEV_REPORT: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xe0, 0x39, 0x65];
pub(crate) const DER_SEV_VCEK: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xe0, 0x39, 0x66];
/// cocoon-rs' sealing-key extension, 1.3.6.1.4.1.12345.200 (non-critical; the worker's raw 32-byte
/// X25519 HPKE public key). Not Cocoon's: its peers ignore a non-critical extension they do not
/// know. The certificate is self-signed by the key the evidence commits to, so a verified
/// certificate proves the sealing key is the attested node's (issue "Confidential by construction").
pub const OID_SEALING_KEY: &[u64] = &[1, 3, 6, 1, 4, 1, 12345, 200];
pub(crate) const DER_SEALING_KEY: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xe0, 0x39, 0x81, 0x48];
/// id-Ed25519, 1.3.101.112 (RFC 8410), both the key and the signature algorithm.
pub(crate) const DER_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Standard extensions that may be critical in a peer certificate (what rcgen and Cocoon emit).
/// Their contents are not enforced: trust comes from the key binding and the quote, not from
/// key-usage bits of a self-signed certificate.
pub(crate) const DER_KNOWN_STANDARD: &[&[u8]] = &[
    &[0x55, 0x1d, 0x0e], // subjectKeyIdentifier
    &[0x55, 0x1d, 0x0f], // keyUsage
    &[0x55, 0x1d, 0x11], // subjectAltName
    &[0x55, 0x1d, 0x13], // basicConstraints
    &[0x55, 0x1d, 0x23], // authorityKeyIdentifier
    &[0x55, 0x1d, 0x25], // extKeyUsage
];

/// Largest peer certificate we parse. A maximal quote (32 KiB) plus the rest fits well inside, and
/// so does SEV-SNP evidence (a 1184-byte report and a VCEK PEM of at most 8 KiB).
pub const MAX_CERT_LEN: usize = 48 * 1024;
/// Most extensions a peer certificate may carry (Cocoon's have 7).
pub(crate) const MAX_EXTENSIONS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::der_parser::oid::Oid;

    #[test]
    fn arc_and_der_forms_agree() {
        assert_eq!(Oid::from(OID_QUOTE).unwrap().as_bytes(), DER_QUOTE);
        assert_eq!(
            Oid::from(OID_USER_CLAIMS).unwrap().as_bytes(),
            DER_USER_CLAIMS
        );
        for (arcs, der) in [
            (OID_SEV_REPORT_DATA, DER_SEV_REPORT_DATA),
            (OID_SEV_REPORT, DER_SEV_REPORT),
            (OID_SEV_VCEK, DER_SEV_VCEK),
            (OID_SEALING_KEY, DER_SEALING_KEY),
        ] {
            assert_eq!(Oid::from(arcs).unwrap().as_bytes(), der);
        }
        assert_eq!(
            Oid::from(&[1, 3, 101, 112]).unwrap().as_bytes(),
            DER_ED25519
        );
        assert_eq!(
            x509_parser::oid_registry::OID_X509_EXT_BASIC_CONSTRAINTS.as_bytes(),
            DER_KNOWN_STANDARD[3]
        );
        assert_eq!(
            x509_parser::oid_registry::OID_X509_EXT_EXTENDED_KEY_USAGE.as_bytes(),
            DER_KNOWN_STANDARD[5]
        );
    }
}
