//! The sealed answer stream: [`AnswerSealer`] (worker) seals piece after piece, [`AnswerOpener`]
//! (client) opens them in order, and both keep the transcript hash a receipt signs. Piece
//! layout and key schedule are in the crate doc.
//!
//! What must not live here: the request envelope, receipts, and key material in `Debug` or
//! errors (both types implement `Debug` by hand and print only counters and public hashes).
//! A failed `open_piece` changes nothing, so a forged piece injected into the stream neither
//! advances nor poisons the opener; the genuine piece still opens after it.

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::{self, TAG_LEN};
use crate::padding::{self, Padding, LEN_PREFIX, PIECE_MIN_BUCKET};
use crate::{SealError, MAX_ENVELOPE_LEN};

/// HKDF `info` prefix of the answer key (the stream nonce follows).
const ANSWER_INFO: &[u8] = b"cocoon-rs sealed answer v1";
/// Length of the stream nonce piece 0 carries.
pub(crate) const STREAM_NONCE_LEN: usize = 32;
/// Flags byte: more pieces follow.
const FLAG_MORE: u8 = 0x00;
/// Flags byte: this is the last piece.
const FLAG_LAST: u8 = 0x01;

/// Worker side of the answer stream: piece i sealed under a key derived from the request's
/// content key (HKDF with a distinct label, salted with the envelope hash, bound to a fresh
/// stream nonce sent in piece 0), nonce = i, associated data binds i and whether it is the last
/// piece. Nobody without the content key (the proxy) can open, reorder, drop or forge pieces; a
/// stream cut before the last piece is detectable.
pub struct AnswerSealer {
    key: Zeroizing<[u8; 32]>,
    stream_nonce: [u8; STREAM_NONCE_LEN],
    next: u64,
    finished: bool,
    transcript: [u8; 32],
    padding: Padding,
}

/// Client side of the answer stream, from [`crate::seal_request`].
pub struct AnswerOpener {
    content_key: Zeroizing<[u8; 32]>,
    request_hash: [u8; 32],
    /// The answer key, once piece 0 (which carries the stream nonce) has opened.
    key: Option<Zeroizing<[u8; 32]>>,
    next: u64,
    finished: bool,
    transcript: [u8; 32],
}

/// One opened answer piece.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenedPiece {
    /// The piece's plaintext, padding removed.
    pub data: Vec<u8>,
    /// Whether this was the last piece of the stream.
    pub last: bool,
}

// === impl AnswerSealer ===

impl AnswerSealer {
    pub(crate) fn new_with_rng(
        content_key: &[u8; 32],
        request_hash: [u8; 32],
        rng: &mut (impl rand::CryptoRng + ?Sized),
    ) -> Result<Self, SealError> {
        let mut stream_nonce = [0u8; STREAM_NONCE_LEN];
        rng.fill_bytes(&mut stream_nonce);
        Ok(Self {
            key: answer_key(content_key, &request_hash, &stream_nonce)?,
            stream_nonce,
            next: 0,
            finished: false,
            transcript: [0; 32],
            padding: Padding::None,
        })
    }

    /// The padding of the pieces sealed from now on ([`Padding::None`] until set).
    pub fn set_padding(&mut self, padding: Padding) {
        self.padding = padding;
    }

    /// Seals the next piece. After a `last` piece, further calls fail
    /// ([`SealError::StreamFinished`]); a piece that would exceed [`MAX_ENVELOPE_LEN`] is
    /// [`SealError::TooLarge`] (nothing is consumed then).
    pub fn seal_piece(&mut self, data: &[u8], last: bool) -> Result<Vec<u8>, SealError> {
        if self.finished {
            return Err(SealError::StreamFinished);
        }
        let i = self.next;
        let next = i.checked_add(1).ok_or(SealError::CounterExhausted)?;
        let too_large = SealError::TooLarge { len: data.len() };
        let padded_len = self
            .padding
            .padded_len(data.len(), PIECE_MIN_BUCKET)
            .ok_or_else(|| too_large.clone())?;
        let head_len = 1 + if i == 0 { STREAM_NONCE_LEN } else { 0 };
        let total = head_len + padded_len + TAG_LEN;
        if total > MAX_ENVELOPE_LEN {
            return Err(SealError::TooLarge { len: total });
        }
        let flags = if last { FLAG_LAST } else { FLAG_MORE };

        let mut sealed = padding::pad(data, padded_len, TAG_LEN)?;
        crypto::aead_seal(
            &self.key,
            &piece_nonce(i),
            &piece_aad(flags, i),
            &mut sealed,
        )?;
        let mut piece = Vec::with_capacity(total);
        piece.push(flags);
        if i == 0 {
            piece.extend_from_slice(&self.stream_nonce);
        }
        piece.extend_from_slice(&sealed);

        self.transcript = crypto::sha256(&[&self.transcript, &piece]);
        self.next = next;
        self.finished = last;
        Ok(piece)
    }

    /// SHA-256 chain over every sealed piece so far (h_0 = 32 zero bytes,
    /// h_{i+1} = SHA-256(h_i ‖ sealed_piece_i)); the client computes the same from what it
    /// received. This is the receipt's answer hash.
    pub fn transcript_hash(&self) -> [u8; 32] {
        self.transcript
    }

    /// How many pieces have been sealed.
    pub fn pieces(&self) -> u64 {
        self.next
    }

    /// Whether the last piece has been sealed.
    pub fn finished(&self) -> bool {
        self.finished
    }
}

impl fmt::Debug for AnswerSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerSealer")
            .field("pieces", &self.next)
            .field("finished", &self.finished)
            .field("padding", &self.padding)
            .finish_non_exhaustive()
    }
}

// === impl AnswerOpener ===

impl AnswerOpener {
    pub(crate) fn new(content_key: Zeroizing<[u8; 32]>, request_hash: [u8; 32]) -> Self {
        Self {
            content_key,
            request_hash,
            key: None,
            next: 0,
            finished: false,
            transcript: [0; 32],
        }
    }

    /// Opens the next piece. Pieces must come in the order sealed; a reordered, dropped,
    /// duplicated, re-flagged or forged piece is [`SealError::OpenFailed`], anything after the
    /// last piece [`SealError::StreamFinished`]. On any error the opener is unchanged.
    pub fn open_piece(&mut self, piece: &[u8]) -> Result<OpenedPiece, SealError> {
        if self.finished {
            return Err(SealError::StreamFinished);
        }
        if piece.len() > MAX_ENVELOPE_LEN {
            return Err(SealError::TooLarge { len: piece.len() });
        }
        let i = self.next;
        let next = i.checked_add(1).ok_or(SealError::CounterExhausted)?;
        let (&flags, rest) = piece.split_first().ok_or(SealError::Truncated)?;
        let last = match flags {
            FLAG_MORE => false,
            FLAG_LAST => true,
            other => return Err(SealError::BadPieceFlags(other)),
        };
        let (key, sealed) = match &self.key {
            Some(key) => (key.clone(), rest),
            None => {
                let (nonce, sealed) = rest
                    .split_first_chunk::<STREAM_NONCE_LEN>()
                    .ok_or(SealError::Truncated)?;
                let key = answer_key(&self.content_key, &self.request_hash, nonce)?;
                (key, sealed)
            }
        };
        if sealed.len() < LEN_PREFIX + TAG_LEN {
            return Err(SealError::Truncated);
        }
        let padded = crypto::aead_open(&key, &piece_nonce(i), &piece_aad(flags, i), sealed)?;
        let data = padding::unpad(&padded)?.to_vec();

        if self.key.is_none() {
            self.key = Some(key);
        }
        self.transcript = crypto::sha256(&[&self.transcript, piece]);
        self.next = next;
        self.finished = last;
        Ok(OpenedPiece { data, last })
    }

    /// Whether the last piece was opened. A stream that ends while this is `false` was cut.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The same chain as [`AnswerSealer::transcript_hash`], over the pieces opened so far.
    pub fn transcript_hash(&self) -> [u8; 32] {
        self.transcript
    }

    /// [`crate::envelope_hash`] of the envelope this opener came from.
    pub fn request_hash(&self) -> [u8; 32] {
        self.request_hash
    }

    /// How many pieces have been opened.
    pub fn pieces(&self) -> u64 {
        self.next
    }
}

impl fmt::Debug for AnswerOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerOpener")
            .field("request_hash", &hex::encode(self.request_hash))
            .field("pieces", &self.next)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

// === impl OpenedPiece ===

impl fmt::Debug for OpenedPiece {
    // The data is plaintext: its length only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedPiece")
            .field("len", &self.data.len())
            .field("last", &self.last)
            .finish()
    }
}

// === functions ===

/// HKDF-SHA256(salt = request hash, IKM = content key, info = label ‖ stream nonce).
fn answer_key(
    content_key: &[u8; 32],
    request_hash: &[u8; 32],
    stream_nonce: &[u8; STREAM_NONCE_LEN],
) -> Result<Zeroizing<[u8; 32]>, SealError> {
    crypto::hkdf32(
        Some(request_hash),
        content_key,
        &[ANSWER_INFO, stream_nonce],
    )
}

/// `0u32 ‖ i` (u64), big-endian.
fn piece_nonce(i: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&i.to_be_bytes());
    n
}

/// `flags ‖ i` (u64), big-endian.
fn piece_aad(flags: u8, i: u64) -> [u8; 9] {
    let mut a = [0u8; 9];
    a[0] = flags;
    a[1..].copy_from_slice(&i.to_be_bytes());
    a
}
