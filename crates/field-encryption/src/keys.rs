//! Keys and the per-message shared secret (ENCRYPTION.md §1, §4.1): the Ed25519 seed that is a
//! COCOON private key ([`SecretSeed`]), public keys as JSON carries them ([`parse_public_key`]),
//! and `secret = SHA-256(X25519(own, peer) ‖ nonce_str ‖ dir)` ([`shared_secret`]).
//!
//! What must not live here: anything about JSON walking or field ciphertext, and no key material
//! in `Debug`, `Display` or error text (errors say which check failed, never a key's bytes).

use std::fmt;

use base64::Engine as _;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use crate::Direction;

#[cfg(test)]
mod tests;

/// Why a public key or a key agreement was refused. Carries no key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 32 raw bytes, 64 hex digits or 44 base64 characters (padded, standard alphabet)
    /// decoding to 32 bytes: the three forms upstream's `parse_public_key` takes.
    #[error("public key is not 32 raw bytes, 64 hex digits or 44 base64 characters")]
    BadFormat,
    /// The 32 bytes are not the encoding of a point on Ed25519, so they are no Ed25519 public
    /// key (see [`shared_secret`] for how this differs from upstream).
    #[error("public key is not a point on Ed25519")]
    NotOnCurve,
    /// X25519 gave all zeros: the peer key is of small order. OpenSSL's X25519 derive, which
    /// upstream uses, refuses this too.
    #[error("key agreement gave an all-zero result (peer public key of small order)")]
    ZeroSharedSecret,
}

/// A COCOON private key: the 32-byte Ed25519 seed (td's `Ed25519::PrivateKey`). Zeroed on drop;
/// `Debug` prints no bytes.
#[derive(Clone)]
pub struct SecretSeed([u8; 32]);

/// The 32-byte key of one message in one direction, from [`shared_secret`]. Zeroed on drop;
/// `Debug` prints no bytes.
#[derive(Clone)]
pub struct SharedSecret([u8; 32]);

// === impl SecretSeed ===

impl SecretSeed {
    /// Wraps a seed. Every 32-byte value is a valid Ed25519 seed.
    pub fn from_bytes(seed: [u8; 32]) -> Self {
        Self(seed)
    }

    /// A fresh seed from `rng` (an app's sender key pair is any seed it chooses).
    pub fn generate(rng: &mut (impl rand::CryptoRng + ?Sized)) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self(seed)
    }

    /// The seed's bytes, for storing it.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The standard Ed25519 public key of this seed (RFC 8032 §5.1.5).
    pub fn public_key(&self) -> [u8; 32] {
        let scalar = self.clamped_scalar();
        EdwardsPoint::mul_base_clamped(*scalar)
            .compress()
            .to_bytes()
    }

    /// `SHA-512(seed)[0..32]`, the Ed25519 secret scalar before clamping. Both Ed25519 and
    /// X25519 (`mul_*_clamped`) clamp it themselves, as RFC 7748 and OpenSSL do.
    fn clamped_scalar(&self) -> Zeroizing<[u8; 32]> {
        let mut h: [u8; 64] = Sha512::digest(self.0).into();
        let mut scalar = Zeroizing::new([0u8; 32]);
        scalar.copy_from_slice(&h[..32]);
        h.zeroize();
        scalar
    }
}

impl Drop for SecretSeed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretSeed(<redacted>)")
    }
}

// === impl SharedSecret ===

impl SharedSecret {
    /// Wraps 32 secret bytes (for tests against recorded secrets, and for callers that keep a
    /// secret elsewhere).
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        Self(secret)
    }

    /// The secret's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for SharedSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

// === functions ===

/// Reads a public key in any form upstream accepts in `sender_public_key` /
/// `receiver_public_key`: 32 bytes taken as they are, 64 hex digits (either case), or 44
/// characters of padded standard base64. Anything else is [`KeyError::BadFormat`].
pub fn parse_public_key(s: &str) -> Result<[u8; 32], KeyError> {
    let mut key = [0u8; 32];
    match s.len() {
        32 => key.copy_from_slice(s.as_bytes()),
        64 => hex::decode_to_slice(s, &mut key).map_err(|_| KeyError::BadFormat)?,
        44 => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| KeyError::BadFormat)?;
            key = bytes.try_into().map_err(|_| KeyError::BadFormat)?;
        }
        _ => return Err(KeyError::BadFormat),
    }
    Ok(key)
}

/// The key of one message in one direction (ENCRYPTION.md §4.1):
///
/// `SHA-256( X25519(clamp(SHA-512(own)[0..32]), u(peer)) ‖ nonce_str ‖ dir )`
///
/// where `u(peer)` is the Montgomery form of the peer's Ed25519 public key, `nonce_str` is the
/// `encryption_nonce` string exactly as sent (its ASCII bytes, not base64-decoded) and `dir` is
/// `"c"` or `"w"`.
///
/// **Differs from upstream on purpose:** upstream computes `u = (1 + y) / (1 − y)` from the bytes
/// without checking that they encode a curve point, so it also "agrees" with 32 bytes that are
/// no Ed25519 public key (a point on the twist). This function decompresses the peer key first
/// and refuses such bytes with [`KeyError::NotOnCurve`]; every real Ed25519 public key
/// decompresses, so only forged keys are affected. For keys that decompress, the result is
/// upstream's (the sign bit is ignored, as upstream ignores it). An all-zero X25519 output
/// (a small-order peer key, the all-zero key among them) is [`KeyError::ZeroSharedSecret`].
pub fn shared_secret(
    own: &SecretSeed,
    peer_public: &[u8; 32],
    nonce_str: &str,
    dir: Direction,
) -> Result<SharedSecret, KeyError> {
    let x = x25519(own, peer_public)?;
    let digest = Sha256::new()
        .chain_update(x.as_slice())
        .chain_update(nonce_str.as_bytes())
        .chain_update(dir.tag().as_bytes())
        .finalize();
    Ok(SharedSecret(digest.into()))
}

/// X25519 between `own` and the Montgomery form of the Ed25519 key `peer_public`
/// (td's `Ed25519::compute_shared_secret`).
fn x25519(own: &SecretSeed, peer_public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let peer = CompressedEdwardsY(*peer_public)
        .decompress()
        .ok_or(KeyError::NotOnCurve)?
        .to_montgomery();
    let shared = Zeroizing::new(peer.mul_clamped(*own.clamped_scalar()).to_bytes());
    if bool::from(shared.ct_eq(&[0u8; 32])) {
        return Err(KeyError::ZeroSharedSecret);
    }
    Ok(shared)
}
