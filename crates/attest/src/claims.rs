//! [`UserClaims`]: the data a node binds to its attestation, and its report-data hash.
//!
//! Cocoon's claims are only the raw 32-byte Ed25519 public key of the RA-TLS certificate
//! (`UserClaims::serialize` = the key bytes), and `reportdata = SHA-512(claims)`. Extending the
//! claims (e.g. with an OHTTP key) would change that byte layout and break interop, so any future
//! field must come behind a new extension, not here.

use sha2::{Digest, Sha512};

use crate::error::AttestError;

/// What a node claims about itself inside its attestation: its RA-TLS public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserClaims {
    /// Raw Ed25519 public key of the certificate (32 bytes).
    pub public_key: [u8; 32],
}

impl UserClaims {
    /// Length of the serialized claims.
    pub const LEN: usize = 32;

    /// Claims for the given Ed25519 public key.
    pub fn new(public_key: [u8; 32]) -> Self {
        Self { public_key }
    }

    /// Serialized claims, as carried in the certificate extension `1.3.6.1.4.1.12345.2`.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.public_key.to_vec()
    }

    /// Parses serialized claims; anything but exactly 32 bytes is refused.
    pub fn from_bytes(b: &[u8]) -> Result<Self, AttestError> {
        let public_key: [u8; 32] = b.try_into().map_err(|_| AttestError::ClaimsLength {
            expected: Self::LEN,
            got: b.len(),
        })?;
        Ok(Self { public_key })
    }

    /// The 64-byte report data an attestation for these claims must carry: `SHA-512(to_bytes())`.
    pub fn report_data(&self) -> [u8; 64] {
        Sha512::digest(self.public_key).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The key of Cocoon's reference `fake_tdx` certificate and its quote extension, which Cocoon
    /// computed as SHA-512 of the claims (testdata/cocoon-reference/ra-tls/fake_tdx_cert.*).
    const REF_KEY: &str = "764b7dfa552d49061146f31c73e77128449822c46b7cc9de4b1cc080441a67a9";
    const REF_QUOTE: &str = "133831b36e3e3977ef86ae8c977374424a88597666fb953464e0f2c0fc16cc06\
                             ffeb2b0429e527f8b156401755b48906d65a7ac1d5f8e91f8d9d4e7006c521fd";

    fn hex_arr<const N: usize>(s: &str) -> [u8; N] {
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(clean).unwrap().try_into().unwrap()
    }

    #[test]
    fn report_data_matches_cocoon_reference_cert() {
        let claims = UserClaims::new(hex_arr(REF_KEY));
        assert_eq!(claims.report_data(), hex_arr::<64>(REF_QUOTE));
    }

    #[test]
    fn bytes_are_the_raw_key() {
        let claims = UserClaims::new([7u8; 32]);
        assert_eq!(claims.to_bytes(), vec![7u8; 32]);
    }

    #[test]
    fn wrong_length_is_refused_with_reason() {
        let err = UserClaims::from_bytes(&[0u8; 33]).unwrap_err();
        assert_eq!(
            err,
            AttestError::ClaimsLength {
                expected: 32,
                got: 33
            }
        );
        assert!(err.to_string().contains("exactly 32 bytes"));
    }

    proptest! {
        #[test]
        fn roundtrip(key in any::<[u8; 32]>()) {
            let c = UserClaims::new(key);
            prop_assert_eq!(UserClaims::from_bytes(&c.to_bytes()).unwrap(), c);
        }

        #[test]
        fn any_other_length_is_refused(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assume!(b.len() != 32);
            prop_assert!(UserClaims::from_bytes(&b).is_err());
        }
    }
}
