//! One string field (ENCRYPTION.md §4.3): td's `MessageEncryption::encrypt_data` /
//! `decrypt_data` with no additional data, and the `ENC_` / `DEC_` text forms upstream puts into
//! JSON.
//!
//! What must not live here: JSON walking, key agreement, and any plaintext or key material in
//! error values (a [`FieldError`] says which check failed and nothing else).

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::keys::SharedSecret;

#[cfg(test)]
mod tests;

/// Why one field did not decrypt. Carries no field content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FieldError {
    /// The string starts with neither `ENC_` nor `DEC_` (upstream: "bad encryption method").
    #[error("bad encryption method (neither ENC_ nor DEC_)")]
    BadMethod,
    /// The text after `ENC_` is not an even number of hex digits.
    #[error("encrypted field is not hex")]
    NotHex,
    /// The decoded ciphertext is shorter than 16 bytes or not a multiple of 16 bytes.
    #[error("encrypted field has a bad length ({len} bytes)")]
    BadLength {
        /// Decoded length in bytes (the ciphertext's size is no secret: it is on the wire).
        len: usize,
    },
    /// The recomputed message key differs from the one sent: wrong key, wrong nonce or direction,
    /// or tampered ciphertext (upstream: "msg_id mismatch").
    #[error("message key mismatch (wrong key or tampered ciphertext)")]
    MsgKeyMismatch,
    /// The authenticated plaintext names a prefix shorter than 16 bytes or longer than itself.
    #[error("invalid prefix size")]
    InvalidPrefixSize,
    /// The plaintext is not UTF-8, so it cannot be a JSON string.
    #[error("decrypted field is not UTF-8")]
    NotUtf8,
}

/// Text before the hex of an encrypted field.
pub const ENC_PREFIX: &str = "ENC_";
/// Text before a field a sender chose to leave in clear.
pub const DEC_PREFIX: &str = "DEC_";

/// td's KDF label for field encryption keys.
const KDF_LABEL: &[u8] = b"tde2e_encrypt_data";
/// `len(additional data)` as little-endian int32, appended to the MAC input; always 0 here.
const NO_ADDITIONAL_DATA: [u8; 4] = [0; 4];
const BLOCK: usize = 16;

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// Encrypts `plaintext` as upstream's `encrypt_string`: `"ENC_" + hex(msg_key ‖ ciphertext)`,
/// with a fresh random prefix of 16 to 31 bytes from `rng`.
pub fn encrypt_string(
    secret: &SharedSecret,
    plaintext: &str,
    rng: &mut (impl rand::CryptoRng + ?Sized),
) -> String {
    let data = encrypt_data(secret, plaintext.as_bytes(), rng);
    let mut out = String::with_capacity(ENC_PREFIX.len() + 2 * data.len());
    out.push_str(ENC_PREFIX);
    out.push_str(&hex::encode(&data));
    out
}

/// Decrypts one JSON string value as upstream's `decrypt_string`: `ENC_…` is decrypted and
/// checked, `DEC_…` is returned without its prefix (sent in clear by choice), anything else is
/// [`FieldError::BadMethod`].
pub fn decrypt_string(secret: &SharedSecret, field: &str) -> Result<String, FieldError> {
    if let Some(hex_text) = field.strip_prefix(ENC_PREFIX) {
        let data = hex::decode(hex_text).map_err(|_| FieldError::NotHex)?;
        let plain = decrypt_data(secret, &data)?;
        String::from_utf8(plain).map_err(|_| FieldError::NotUtf8)
    } else if let Some(clear) = field.strip_prefix(DEC_PREFIX) {
        Ok(clear.to_owned())
    } else {
        Err(FieldError::BadMethod)
    }
}

/// `encrypt_data(data, secret)`: `msg_key ‖ AES-256-CBC(prefix ‖ data)`. The prefix is
/// `P = 16..=31` bytes from `rng` (one `fill_bytes` call of exactly `P` bytes) with byte 0
/// replaced by `P`, so that `P + len(data)` is a multiple of 16.
fn encrypt_data(
    secret: &SharedSecret,
    data: &[u8],
    rng: &mut (impl rand::CryptoRng + ?Sized),
) -> Vec<u8> {
    let prefix_len = prefix_len(data.len());
    let mut plain = Zeroizing::new(vec![0u8; prefix_len + data.len()]);
    rng.fill_bytes(&mut plain[..prefix_len]);
    // prefix_len is 16..=31, so it fits a byte.
    plain[0] = prefix_len as u8;
    plain[prefix_len..].copy_from_slice(data);
    seal(secret, &plain)
}

/// `msg_key ‖ AES-256-CBC(plain)` for a plaintext that already carries its prefix and is
/// block-aligned (the callers build it so; debug builds assert it).
fn seal(secret: &SharedSecret, plain: &[u8]) -> Vec<u8> {
    debug_assert_eq!(
        plain.len() % BLOCK,
        0,
        "field plaintext must be block-aligned"
    );
    let keys = Keys::derive(secret);
    let msg_key = keys.msg_key(plain);
    let (aes_key, iv) = keys.cipher(&msg_key);

    let mut out = Vec::with_capacity(BLOCK + plain.len());
    out.extend_from_slice(&msg_key);
    out.extend_from_slice(plain);
    let mut cbc = Aes256CbcEnc::new(aes_key.as_ref().into(), (&iv).into());
    for block in out[BLOCK..].chunks_exact_mut(BLOCK) {
        cbc.encrypt_block_mut(GenericArray::from_mut_slice(block));
    }
    out
}

/// `decrypt_data(data, secret)`: the checks of td's `MessageEncryption::decrypt_data`, in its
/// order (length, message key, prefix size).
fn decrypt_data(secret: &SharedSecret, data: &[u8]) -> Result<Vec<u8>, FieldError> {
    if data.len() < BLOCK || data.len() % BLOCK != 0 {
        return Err(FieldError::BadLength { len: data.len() });
    }
    let (msg_key, ciphertext) = data.split_at(BLOCK);
    let mut sent_key = [0u8; BLOCK];
    sent_key.copy_from_slice(msg_key);

    let keys = Keys::derive(secret);
    let (aes_key, iv) = keys.cipher(&sent_key);
    let mut plain = Zeroizing::new(ciphertext.to_vec());
    let mut cbc = Aes256CbcDec::new(aes_key.as_ref().into(), (&iv).into());
    for block in plain.chunks_exact_mut(BLOCK) {
        cbc.decrypt_block_mut(GenericArray::from_mut_slice(block));
    }

    if !bool::from(keys.msg_key(&plain).ct_eq(&sent_key)) {
        return Err(FieldError::MsgKeyMismatch);
    }
    let prefix_len = usize::from(*plain.first().ok_or(FieldError::InvalidPrefixSize)?);
    if prefix_len < 16 || prefix_len > plain.len() {
        return Err(FieldError::InvalidPrefixSize);
    }
    Ok(plain[prefix_len..].to_vec())
}

/// `P = ((16 + 15 + n) & !15) − n`: the smallest prefix of at least 16 bytes that makes the
/// plaintext block-aligned.
fn prefix_len(n: usize) -> usize {
    ((BLOCK + (BLOCK - 1) + n) & !(BLOCK - 1)) - n
}

/// `HMAC-SHA512(secret, "tde2e_encrypt_data")` split into the encryption and MAC keys.
struct Keys {
    enc_key: Zeroizing<[u8; 32]>,
    mac_key: Zeroizing<[u8; 32]>,
}

// === impl Keys ===

impl Keys {
    fn derive(secret: &SharedSecret) -> Self {
        let large = hmac_sha512(secret.as_bytes(), KDF_LABEL);
        let mut enc_key = Zeroizing::new([0u8; 32]);
        let mut mac_key = Zeroizing::new([0u8; 32]);
        enc_key.copy_from_slice(&large[..32]);
        mac_key.copy_from_slice(&large[32..]);
        Self { enc_key, mac_key }
    }

    /// `HMAC-SHA256(mac_key, plain ‖ 00 00 00 00)[0..16]`.
    fn msg_key(&self, plain: &[u8]) -> [u8; BLOCK] {
        let mut mac = new_hmac::<Hmac<Sha256>>(self.mac_key.as_ref());
        mac.update(plain);
        mac.update(&NO_ADDITIONAL_DATA);
        let full = mac.finalize().into_bytes();
        let mut msg_key = [0u8; BLOCK];
        msg_key.copy_from_slice(&full[..BLOCK]);
        msg_key
    }

    /// `H = HMAC-SHA512(enc_key, msg_key)`: AES key `H[0..32]`, IV `H[32..48]`.
    fn cipher(&self, msg_key: &[u8; BLOCK]) -> (Zeroizing<[u8; 32]>, [u8; BLOCK]) {
        let h = hmac_sha512(self.enc_key.as_ref(), msg_key);
        let mut aes_key = Zeroizing::new([0u8; 32]);
        let mut iv = [0u8; BLOCK];
        aes_key.copy_from_slice(&h[..32]);
        iv.copy_from_slice(&h[32..48]);
        (aes_key, iv)
    }
}

fn hmac_sha512(key: &[u8], msg: &[u8]) -> Zeroizing<[u8; 64]> {
    let mut mac = new_hmac::<Hmac<Sha512>>(key);
    mac.update(msg);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

fn new_hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8]) -> M {
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; new_from_slice only fails for fixed-size-key MACs.
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}
