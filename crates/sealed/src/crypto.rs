//! Crate-private primitives: SHA-256, HKDF-SHA256, ChaCha20-Poly1305 with an appended tag, and
//! the adapter that lets a `rand` 0.9 RNG drive HPKE (which takes `rand_core` 0.10).
//!
//! What must not live here: byte formats, labels of a particular use (callers pass them), and
//! anything public. Buffers that held plaintext or keys are zeroized by their owners.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use sha2_011::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::SealError;

/// Length of a ChaCha20-Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HKDF-SHA256 (RFC 5869) with one 32-byte output; `info` is the concatenation of `info`.
pub(crate) fn hkdf32(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[&[u8]],
) -> Result<Zeroizing<[u8; 32]>, SealError> {
    let hk = hkdf::Hkdf::<Sha256>::new(salt, ikm);
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand_multi_info(info, okm.as_mut_slice())
        .map_err(|_| SealError::Internal)?;
    Ok(okm)
}

/// Encrypts `buf` in place and appends the tag.
pub(crate) fn aead_seal(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), SealError> {
    let cipher = ChaCha20Poly1305::new(key.into());
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.as_mut_slice().into())
        .map_err(|_| SealError::Internal)?;
    buf.extend_from_slice(tag.as_slice());
    Ok(())
}

/// Opens `sealed` (ciphertext ‖ tag). The plaintext is zeroized when dropped.
pub(crate) fn aead_open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let split = sealed
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(SealError::Truncated)?;
    let (ct, tag) = sealed.split_at(split);
    let tag = Tag::try_from(tag).map_err(|_| SealError::Internal)?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher
        .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.as_mut_slice().into(), &tag)
        .map_err(|_| SealError::OpenFailed)?;
    Ok(buf)
}

/// A `rand` 0.9 cryptographic RNG seen as the `rand_core` 0.10 RNG HPKE takes.
pub(crate) struct HpkeRng<'a, R: ?Sized>(pub(crate) &'a mut R);

// === impl HpkeRng ===

impl<R: rand::CryptoRng + ?Sized> hpke::rand_core::TryRng for HpkeRng<'_, R> {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

// A `rand::CryptoRng` is a cryptographically secure generator, so the adapter is one too.
impl<R: rand::CryptoRng + ?Sized> hpke::rand_core::TryCryptoRng for HpkeRng<'_, R> {}
