//! The sealed request: [`seal_request`] (client), [`read_header`] (proxy, no keys),
//! [`open_request`] (worker), [`envelope_hash`] (everyone). The byte layout and key schedule are
//! in the crate doc; the constants below are their single source.
//!
//! What must not live here: the answer stream (see `answer`), receipts, and any key or
//! plaintext byte in an error. Parsing is bounded: the length is checked against
//! [`MAX_ENVELOPE_LEN`] before anything else, the recipient count against [`MAX_RECIPIENTS`]
//! before any slot is read, and no allocation depends on a length field.

use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::answer::{AnswerOpener, AnswerSealer};
use crate::crypto::{self, HpkeRng, TAG_LEN};
use crate::keys::{Kem, Recipient, SealingKeyPair};
use crate::padding::{self, Padding, LEN_PREFIX, REQUEST_MIN_BUCKET};
use crate::{SealError, MAX_ENVELOPE_LEN, MAX_RECIPIENTS};

type HpkeKdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ChaCha20Poly1305;
type EncappedKey = <Kem as hpke::Kem>::EncappedKey;

/// First bytes of every envelope.
const MAGIC: [u8; 4] = *b"CSLD";
/// The only envelope version this crate writes and reads.
const VERSION: u8 = 1;
/// magic ‖ version ‖ max_tokens ‖ n.
const PREFIX_LEN: usize = 4 + 1 + 8 + 1;
/// Offset of the slot count.
const COUNT_AT: usize = PREFIX_LEN - 1;
/// worker_key ‖ sealing_key ‖ enc ‖ wrapped.
const SLOT_LEN: usize = 32 + 32 + 32 + WRAPPED_LEN;
/// The part of a slot the wraps are bound to: everything but `wrapped`.
const SLOT_PUBLIC_LEN: usize = 32 + 32 + 32;
/// HPKE ciphertext of the 32-byte content key.
const WRAPPED_LEN: usize = 32 + TAG_LEN;
/// The `body_len` field.
const BODY_LEN_FIELD: usize = 4;
/// Smallest body: an empty plaintext's length prefix and the tag.
const MIN_BODY_LEN: usize = LEN_PREFIX + TAG_LEN;
/// HPKE `info` of every slot wrap.
const HPKE_INFO: &[u8] = b"cocoon-rs sealed request v1";
/// HKDF `info` of the body key.
const BODY_INFO: &[u8] = b"cocoon-rs sealed body v1";
/// The body key is used once, so the body's nonce is fixed.
const BODY_NONCE: [u8; 12] = [0; 12];

/// What anyone (the proxy) can read from an envelope without keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// Clear bound the proxy reserves for; authenticated, so changing it breaks opening.
    pub max_tokens: u64,
    /// The recipients' worker keys, in the order sealed.
    pub recipients: Vec<[u8; 32]>,
}

/// A parsed envelope, borrowing from it.
struct Parsed<'a> {
    max_tokens: u64,
    slots: Vec<Slot<'a>>,
    header: &'a [u8],
    body: &'a [u8],
}

/// One recipient slot as it sits in the envelope.
struct Slot<'a> {
    worker_key: &'a [u8; 32],
    sealing_key: &'a [u8; 32],
    enc: &'a [u8; 32],
    wrapped: &'a [u8],
}

// === functions ===

/// Seals `plaintext` (the caller passes TL-serialized http.request bytes; the crate does not
/// care) to each recipient, with randomness from `rand::rng()`.
///
/// Returns the envelope and the opener the client uses for the answer. `max_tokens` is a clear
/// bound the proxy reserves for; it is authenticated (bound as AEAD associated data), so
/// changing it breaks opening. Refuses 0 or more than [`MAX_RECIPIENTS`] recipients, two
/// recipients with one worker key, a low-order sealing key, and a plaintext whose envelope
/// would exceed [`MAX_ENVELOPE_LEN`].
pub fn seal_request(
    plaintext: &[u8],
    max_tokens: u64,
    recipients: &[Recipient],
    padding: Padding,
) -> Result<(Vec<u8>, AnswerOpener), SealError> {
    seal_request_with_rng(plaintext, max_tokens, recipients, padding, &mut rand::rng())
}

/// [`seal_request`] with the randomness (the content key, HPKE's ephemeral keys) from `rng`.
pub fn seal_request_with_rng(
    plaintext: &[u8],
    max_tokens: u64,
    recipients: &[Recipient],
    padding: Padding,
    rng: &mut (impl rand::CryptoRng + ?Sized),
) -> Result<(Vec<u8>, AnswerOpener), SealError> {
    let n = recipients.len();
    if n == 0 || n > MAX_RECIPIENTS {
        return Err(SealError::BadRecipientCount(n));
    }
    if has_duplicates(recipients.iter().map(|r| &r.worker_key)) {
        return Err(SealError::DuplicateRecipient);
    }
    let too_large = SealError::TooLarge {
        len: plaintext.len(),
    };
    let padded_len = padding
        .padded_len(plaintext.len(), REQUEST_MIN_BUCKET)
        .ok_or_else(|| too_large.clone())?;
    let body_len = padded_len + TAG_LEN;
    let header_len = header_len(n);
    let total = header_len.saturating_add(body_len);
    if total > MAX_ENVELOPE_LEN {
        return Err(SealError::TooLarge { len: total });
    }
    let body_len_field = u32::try_from(body_len).map_err(|_| too_large)?;

    let mut content_key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(content_key.as_mut_slice());

    // Encapsulate to every recipient first: each wrap's AAD holds every slot's `enc`.
    let mut contexts = Vec::with_capacity(n);
    let mut envelope = Vec::with_capacity(total);
    envelope.extend_from_slice(&MAGIC);
    envelope.push(VERSION);
    envelope.extend_from_slice(&max_tokens.to_be_bytes());
    envelope.push(n as u8); // n <= MAX_RECIPIENTS = 8
    for r in recipients {
        let pk = r.hpke_public()?;
        let (enc, ctx) = hpke::setup_sender_with_rng::<HpkeAead, HpkeKdf, Kem>(
            &OpModeS::Base,
            &pk,
            HPKE_INFO,
            &mut HpkeRng(&mut *rng),
        )
        .map_err(|_| SealError::BadRecipientKey)?;
        envelope.extend_from_slice(&r.worker_key);
        envelope.extend_from_slice(&r.sealing_key);
        envelope.extend_from_slice(enc.to_bytes().as_slice());
        envelope.extend_from_slice(&[0u8; WRAPPED_LEN]); // filled in below
        contexts.push(ctx);
    }
    envelope.extend_from_slice(&body_len_field.to_be_bytes());
    debug_assert_eq!(envelope.len(), header_len);

    let aad = wrap_aad(&envelope[..header_len], n);
    for (i, mut ctx) in contexts.into_iter().enumerate() {
        let wrapped = ctx
            .seal(content_key.as_slice(), &aad)
            .map_err(|_| SealError::Internal)?;
        let at = PREFIX_LEN + i * SLOT_LEN + SLOT_PUBLIC_LEN;
        envelope
            .get_mut(at..at + WRAPPED_LEN)
            .filter(|_| wrapped.len() == WRAPPED_LEN)
            .ok_or(SealError::Internal)?
            .copy_from_slice(&wrapped);
    }

    let body_key = crypto::hkdf32(None, content_key.as_slice(), &[BODY_INFO])?;
    let mut body = padding::pad(plaintext, padded_len, TAG_LEN)?;
    crypto::aead_seal(&body_key, &BODY_NONCE, &envelope[..header_len], &mut body)?;
    envelope.extend_from_slice(&body);
    debug_assert_eq!(envelope.len(), total);

    let opener = AnswerOpener::new(content_key, envelope_hash(&envelope));
    Ok((envelope, opener))
}

/// Bounded parse of the clear header: refuses bad magic/version, 0 or > [`MAX_RECIPIENTS`]
/// recipients, duplicate recipients, truncation, trailing bytes (the header states the body's
/// length) and oversize. Says nothing about whether the sealed parts open.
pub fn read_header(envelope: &[u8]) -> Result<RequestHeader, SealError> {
    parse(envelope).map(|p| p.request_header())
}

/// Opens an envelope as the worker whose RA-TLS key is `worker_key`, with randomness (the
/// answer's stream nonce) from `rand::rng()`.
///
/// `keys` may hold several HPKE key pairs (the current one and not-yet-expired previous ones);
/// the one whose public half the worker's slot names is used. Returns the plaintext (padding
/// removed), the header, and the sealer for the answer. Any change to any byte of the envelope
/// (header and other recipients' slots included) makes opening fail.
pub fn open_request(
    envelope: &[u8],
    worker_key: &[u8; 32],
    keys: &[&SealingKeyPair],
) -> Result<(Vec<u8>, RequestHeader, AnswerSealer), SealError> {
    open_request_with_rng(envelope, worker_key, keys, &mut rand::rng())
}

/// [`open_request`] with the answer's stream nonce from `rng`.
pub fn open_request_with_rng(
    envelope: &[u8],
    worker_key: &[u8; 32],
    keys: &[&SealingKeyPair],
    rng: &mut (impl rand::CryptoRng + ?Sized),
) -> Result<(Vec<u8>, RequestHeader, AnswerSealer), SealError> {
    let parsed = parse(envelope)?;
    let slot = parsed
        .slots
        .iter()
        .find(|s| s.worker_key == worker_key)
        .ok_or(SealError::NotARecipient)?;
    let keys = keys
        .iter()
        .find(|k| k.public() == *slot.sealing_key)
        .ok_or(SealError::NoMatchingKey)?;

    let enc = EncappedKey::from_bytes(slot.enc).map_err(|_| SealError::OpenFailed)?;
    let mut ctx = hpke::setup_receiver::<HpkeAead, HpkeKdf, Kem>(
        &OpModeR::Base,
        keys.hpke_secret(),
        &enc,
        HPKE_INFO,
    )
    .map_err(|_| SealError::OpenFailed)?;
    let aad = wrap_aad(parsed.header, parsed.slots.len());
    let unwrapped = Zeroizing::new(
        ctx.open(slot.wrapped, &aad)
            .map_err(|_| SealError::OpenFailed)?,
    );
    let mut content_key = Zeroizing::new([0u8; 32]);
    if unwrapped.len() != content_key.len() {
        return Err(SealError::OpenFailed);
    }
    content_key.copy_from_slice(&unwrapped);

    let body_key = crypto::hkdf32(None, content_key.as_slice(), &[BODY_INFO])?;
    let padded = crypto::aead_open(&body_key, &BODY_NONCE, parsed.header, parsed.body)?;
    let plaintext = padding::unpad(&padded)?.to_vec();

    let sealer = AnswerSealer::new_with_rng(&content_key, envelope_hash(envelope), rng)?;
    Ok((plaintext, parsed.request_header(), sealer))
}

/// SHA-256 of the envelope bytes (what receipts call the request hash).
pub fn envelope_hash(envelope: &[u8]) -> [u8; 32] {
    crypto::sha256(&[envelope])
}

/// Header length for `n` slots.
fn header_len(n: usize) -> usize {
    PREFIX_LEN + n * SLOT_LEN + BODY_LEN_FIELD
}

/// The header with every slot's `wrapped` field left out: what each wrap is bound to.
/// `header` is a whole, parsed (or just written) header of `n` slots.
fn wrap_aad(header: &[u8], n: usize) -> Vec<u8> {
    let mut aad = Vec::with_capacity(PREFIX_LEN + n * SLOT_PUBLIC_LEN + BODY_LEN_FIELD);
    aad.extend_from_slice(&header[..PREFIX_LEN]);
    for slot in header[PREFIX_LEN..PREFIX_LEN + n * SLOT_LEN].chunks_exact(SLOT_LEN) {
        aad.extend_from_slice(&slot[..SLOT_PUBLIC_LEN]);
    }
    aad.extend_from_slice(&header[PREFIX_LEN + n * SLOT_LEN..]);
    aad
}

/// Bounded parse of a whole envelope.
fn parse(envelope: &[u8]) -> Result<Parsed<'_>, SealError> {
    if envelope.len() > MAX_ENVELOPE_LEN {
        return Err(SealError::TooLarge {
            len: envelope.len(),
        });
    }
    let magic_seen = &envelope[..envelope.len().min(MAGIC.len())];
    if !MAGIC.starts_with(magic_seen) {
        return Err(SealError::BadMagic);
    }
    let Some((prefix, rest)) = envelope.split_first_chunk::<PREFIX_LEN>() else {
        return Err(SealError::Truncated);
    };
    if prefix[4] != VERSION {
        return Err(SealError::UnsupportedVersion(prefix[4]));
    }
    let mut max_tokens = [0u8; 8];
    max_tokens.copy_from_slice(&prefix[5..13]);
    let max_tokens = u64::from_be_bytes(max_tokens);
    let n = usize::from(prefix[COUNT_AT]);
    if n == 0 || n > MAX_RECIPIENTS {
        return Err(SealError::BadRecipientCount(n));
    }

    let slots_len = n * SLOT_LEN;
    if rest.len() < slots_len + BODY_LEN_FIELD {
        return Err(SealError::Truncated);
    }
    let (slot_bytes, rest) = rest.split_at(slots_len);
    let mut slots = Vec::with_capacity(n);
    for s in slot_bytes.chunks_exact(SLOT_LEN) {
        let (worker_key, s) = split32(s)?;
        let (sealing_key, s) = split32(s)?;
        let (enc, wrapped) = split32(s)?;
        slots.push(Slot {
            worker_key,
            sealing_key,
            enc,
            wrapped,
        });
    }
    if has_duplicates(slots.iter().map(|s| s.worker_key)) {
        return Err(SealError::DuplicateRecipient);
    }

    let (body_len, body) = rest
        .split_first_chunk::<BODY_LEN_FIELD>()
        .ok_or(SealError::Truncated)?;
    let body_len =
        usize::try_from(u32::from_be_bytes(*body_len)).map_err(|_| SealError::BadLength)?;
    if body_len < MIN_BODY_LEN {
        return Err(SealError::BadLength);
    }
    if body.len() < body_len {
        return Err(SealError::Truncated);
    }
    if body.len() > body_len {
        return Err(SealError::TrailingBytes);
    }
    let header = &envelope[..header_len(n)];
    Ok(Parsed {
        max_tokens,
        slots,
        header,
        body,
    })
}

fn split32(b: &[u8]) -> Result<(&[u8; 32], &[u8]), SealError> {
    b.split_first_chunk::<32>().ok_or(SealError::Truncated)
}

/// Whether any two keys are equal (at most [`MAX_RECIPIENTS`] of them: quadratic is fine).
fn has_duplicates<'a>(keys: impl Iterator<Item = &'a [u8; 32]> + Clone) -> bool {
    keys.clone()
        .enumerate()
        .any(|(i, a)| keys.clone().skip(i + 1).any(|b| a == b))
}

// === impl Parsed ===

impl Parsed<'_> {
    fn request_header(&self) -> RequestHeader {
        RequestHeader {
            max_tokens: self.max_tokens,
            recipients: self.slots.iter().map(|s| *s.worker_key).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
