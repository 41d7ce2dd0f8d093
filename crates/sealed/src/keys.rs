//! A worker's HPKE key pair ([`SealingKeyPair`], X25519) and a candidate worker as a client
//! sees it ([`Recipient`]).
//!
//! What must not live here: sealing or opening (see `envelope`), and the secret half of a key
//! in any `Debug`, `Display` or error output (`Debug` shows the public half as hex).

use std::fmt;

use hpke::{Deserializable, Kem as _, Serializable};
use zeroize::Zeroizing;

use crate::SealError;

/// The HPKE KEM of the sealed path: DHKEM(X25519, HKDF-SHA256).
pub(crate) type Kem = hpke::kem::X25519HkdfSha256;
pub(crate) type HpkePrivateKey = <Kem as hpke::Kem>::PrivateKey;
pub(crate) type HpkePublicKey = <Kem as hpke::Kem>::PublicKey;

/// A worker's HPKE key pair (X25519). Secret zeroized on drop, never printed (Debug shows only
/// the public half as hex).
#[derive(Clone)]
pub struct SealingKeyPair {
    // x25519-dalek's StaticSecret, zeroized on drop (hpke enables its `zeroize` feature).
    secret: HpkePrivateKey,
    public: [u8; 32],
}

/// One candidate worker: its identity (the Ed25519 key of its RA-TLS certificate, which its
/// attestation commits to) and its HPKE public key (bound in that certificate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// Ed25519 public key of the worker's RA-TLS certificate.
    pub worker_key: [u8; 32],
    /// The worker's X25519 HPKE public key ([`SealingKeyPair::public`]).
    pub sealing_key: [u8; 32],
}

// === impl SealingKeyPair ===

impl SealingKeyPair {
    /// A fresh key pair from the operating system's RNG (through `rand::rng()`).
    pub fn generate() -> Self {
        Self::generate_with_rng(&mut rand::rng())
    }

    /// A fresh key pair from `rng`: 32 random bytes taken as the secret ([`Self::from_secret`]).
    pub fn generate_with_rng(rng: &mut (impl rand::CryptoRng + ?Sized)) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(secret.as_mut_slice());
        Self::from_secret(*secret)
    }

    /// The key pair of a stored X25519 secret (RFC 7748 scalar bytes; clamped here, so every
    /// 32-byte value is a valid secret). The caller's copy is not zeroized by this call.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let mut secret = Zeroizing::new(secret);
        let sk = match HpkePrivateKey::from_bytes(secret.as_slice()) {
            Ok(sk) => sk,
            // from_bytes fails only on a length other than 32, which the type rules out.
            Err(_) => unreachable!("X25519 private key of 32 bytes"),
        };
        let public = Kem::sk_to_pk(&sk).to_bytes().into();
        zeroize::Zeroize::zeroize(&mut *secret);
        Self { secret: sk, public }
    }

    /// The public half, what a worker's RA-TLS certificate binds and clients seal to.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The secret half (clamped), for storing it; [`Self::from_secret`] takes it back.
    pub fn secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes().into())
    }

    pub(crate) fn hpke_secret(&self) -> &HpkePrivateKey {
        &self.secret
    }
}

impl fmt::Debug for SealingKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKeyPair")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

// === impl Recipient ===

impl Recipient {
    /// The HPKE public key to seal to.
    pub(crate) fn hpke_public(&self) -> Result<HpkePublicKey, SealError> {
        HpkePublicKey::from_bytes(&self.sealing_key).map_err(|_| SealError::BadRecipientKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_secret_round_trips_and_debug_hides_secret() {
        let kp = SealingKeyPair::from_secret([7u8; 32]);
        let again = SealingKeyPair::from_secret(*kp.secret());
        assert_eq!(kp.public(), again.public());
        let dbg = format!("{kp:?}");
        assert!(dbg.contains(&hex::encode(kp.public())));
        assert!(!dbg.contains(&hex::encode(*kp.secret())));
        assert!(!dbg.contains(&hex::encode([7u8; 32])));
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            SealingKeyPair::generate().public(),
            SealingKeyPair::generate().public()
        );
    }

    #[test]
    fn public_is_rfc7748_x25519_base_multiplication() {
        // RFC 7748 §6.1: Alice's private key and public key.
        let sk = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .unwrap();
        let pk = hex::decode("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
            .unwrap();
        let kp = SealingKeyPair::from_secret(sk.try_into().unwrap());
        assert_eq!(kp.public().as_slice(), pk.as_slice());
    }
}
