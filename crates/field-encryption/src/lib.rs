//! COCOON's end-to-end field encryption (`"is_encrypted":"v1"`), byte-compatible with upstream
//! commit 9060ce5 (`runners/helpers/ValidateRequest.cpp`, td's `MessageEncryption`; the scheme is
//! written down in `shared/testdata/cocoon-9060ce5/ENCRYPTION.md`).
//!
//! The application encrypts the string values of its OpenAI request to the network's key
//! ([`encrypt_json`], [`Direction::ClientToWorker`]); client and proxy see ciphertext and only
//! read the fields kept in clear ([`CLEAR_FIELDS`]) and `receiver_public_key`
//! ([`receiver_public_key`]); the worker decrypts with the network's private key
//! ([`decrypt_json`]) and encrypts every answer value back to the app's key
//! ([`Direction::WorkerToClient`]), which the app decrypts.
//!
//! # Modules
//! - `keys`: [`SecretSeed`] (an Ed25519 seed), public keys in their JSON forms, and the
//!   per-message [`shared_secret`] (X25519 of the Ed25519 keys, hashed with nonce and direction).
//! - `field`: one string, [`encrypt_string`] / [`decrypt_string`] (`ENC_` + hex of msg_key and
//!   AES-256-CBC ciphertext, `DEC_` for text left in clear).
//! - `json`: whole messages, the marker and clear fields, and the bounded walk.
//!
//! Everything parsed here is untrusted: inputs are bounded ([`MAX_DEPTH`], [`MAX_FIELDS`]),
//! nothing panics on any input, and no error or `Debug` output carries plaintext or key bytes.
//! This crate does no I/O and no logging. There is no replay protection and no binding of a
//! ciphertext to its field: that is the scheme's, not this crate's (ENCRYPTION.md §4.3).

mod field;
mod json;
mod keys;
#[cfg(test)]
mod test_support;

pub use field::{decrypt_string, encrypt_string, FieldError, DEC_PREFIX, ENC_PREFIX};
pub use json::{
    decrypt_json, encrypt_json, is_encrypted, receiver_public_key, Decrypted, JsonError,
    CLEAR_FIELDS, MARKER_FIELDS, MAX_DEPTH, MAX_FIELDS, VERSION,
};
pub use keys::{parse_public_key, shared_secret, KeyError, SecretSeed, SharedSecret};

/// Which way a message goes; part of the shared secret, so the two directions never share a key
/// even under the same nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The app's request to the worker (`"c"`, upstream's `client_to_worker = true`).
    ClientToWorker,
    /// The worker's answer to the app (`"w"`).
    WorkerToClient,
}

// === impl Direction ===

impl Direction {
    /// The byte hashed into the shared secret: `"c"` or `"w"`.
    pub fn tag(self) -> &'static str {
        match self {
            Direction::ClientToWorker => "c",
            Direction::WorkerToClient => "w",
        }
    }
}
