//! [`SealError`], the one error type of this crate.
//!
//! What must not live here: any key, plaintext or ciphertext bytes in a variant or its message.
//! A variant says which check failed; sizes and counts are fine (they are on the wire anyway).

use thiserror::Error;

/// Why sealing, opening, parsing, signing or verifying was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SealError {
    /// The input (an envelope, a piece, a plaintext to seal) is larger than the crate accepts
    /// ([`crate::MAX_ENVELOPE_LEN`] once sealed).
    #[error("input too large ({len} bytes)")]
    TooLarge {
        /// Length of the input, or of what it would seal to.
        len: usize,
    },
    /// The input ends before its format says it should.
    #[error("input truncated")]
    Truncated,
    /// The input goes on after its format says it ends.
    #[error("trailing bytes after the end")]
    TrailingBytes,
    /// The envelope does not start with the magic bytes `"CSLD"`.
    #[error("not a sealed envelope (bad magic)")]
    BadMagic,
    /// A version byte this crate does not know.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// Zero recipients, or more than [`crate::MAX_RECIPIENTS`].
    #[error("recipient count {0} is outside 1..=8")]
    BadRecipientCount(usize),
    /// The same worker key appears in two recipient slots.
    #[error("the same worker appears twice among the recipients")]
    DuplicateRecipient,
    /// A length field names fewer bytes than its format's smallest valid value.
    #[error("length field too small")]
    BadLength,
    /// The worker's key is in none of the envelope's slots.
    #[error("this worker is not among the envelope's recipients")]
    NotARecipient,
    /// The worker's slot is sealed to an HPKE key none of the given key pairs has.
    #[error("no held sealing key matches this worker's slot")]
    NoMatchingKey,
    /// A recipient's sealing key is a low-order X25519 point, so nothing can be sealed to it.
    #[error("recipient sealing key is unusable")]
    BadRecipientKey,
    /// Authentication failed: a wrong key, or bytes that were changed, reordered or forged.
    #[error("authentication failed (wrong key or tampered bytes)")]
    OpenFailed,
    /// An authenticated plaintext whose length prefix points past its end or whose padding is
    /// not zero (only a sender with the key can make one: a broken sender).
    #[error("bad length prefix or padding inside the ciphertext")]
    BadPadding,
    /// An answer piece's flags byte is neither `0x00` nor `0x01`.
    #[error("bad answer piece flags {0:#04x}")]
    BadPieceFlags(u8),
    /// A piece after the last piece of the answer stream.
    #[error("the answer stream is already finished")]
    StreamFinished,
    /// The piece counter would overflow (2^64 pieces).
    #[error("piece counter exhausted")]
    CounterExhausted,
    /// The signer's public key is not the key the statement names.
    #[error("signer's public key is not the statement's key")]
    WrongSigner,
    /// An Ed25519 signature does not verify under the key the statement names.
    #[error("signature does not verify")]
    BadSignature,
    /// A receipt's JSON form is missing a field, has one of the wrong type or form, or an
    /// unknown `format`. The text names the field, never its value.
    #[error("bad receipt JSON: {0}")]
    BadJson(String),
    /// The JSON's `"id"` is not the id of the receipt it carries.
    #[error("receipt id does not match its contents")]
    IdMismatch,
    /// A Merkle inclusion proof that does not lead to the root, or is out of bounds.
    #[error("inclusion proof does not verify")]
    BadProof,
    /// A cryptographic primitive failed where it cannot fail on valid input (a bug).
    #[error("internal cryptographic failure")]
    Internal,
}
