//! The sealed path: an app's client seals a request so that only one of k attested workers can
//! read it, the proxy routes it without reading it, the worker streams the answer back sealed,
//! and the worker signs a receipt that the proxy countersigns.
//!
//! This crate holds the byte formats and the cryptography, nothing else: no I/O, no clocks
//! (times are arguments), no logging, no async. Everything parsed here is untrusted and bounded
//! ([`MAX_ENVELOPE_LEN`], [`MAX_RECIPIENTS`]); nothing panics on any input; no error, `Debug` or
//! `Display` output carries key or plaintext bytes.
//!
//! # Flow
//! 1. The client knows k candidate workers ([`Recipient`]: the Ed25519 key of each worker's
//!    RA-TLS certificate and the X25519 HPKE key that certificate binds) and calls
//!    [`seal_request`]: a fresh 32-byte content key is HPKE-sealed to every worker, the request
//!    is sealed under a key derived from it. It keeps the returned [`AnswerOpener`].
//! 2. The proxy reads the clear header ([`read_header`]: `max_tokens` to reserve for, the
//!    recipients to route to) and forwards the envelope to one of them.
//! 3. That worker calls [`open_request`] with its RA-TLS key and its HPKE key pairs, runs the
//!    request, and seals each piece of the answer with the returned [`AnswerSealer`].
//! 4. The client opens the pieces in order with its [`AnswerOpener`].
//! 5. The worker signs a [`receipt::WorkerStatement`] (request hash = [`envelope_hash`], answer
//!    hash = [`AnswerSealer::transcript_hash`]); the proxy countersigns it into a
//!    [`receipt::Receipt`]; receipt ids are the leaves of a [`merkle`] tree.
//!
//! # Modules
//! - `keys`: [`SealingKeyPair`] (a worker's X25519 HPKE key pair) and [`Recipient`].
//! - `padding`: [`Padding`] and the length-prefixed, bucketed plaintext form.
//! - `envelope`: [`seal_request`], [`read_header`], [`open_request`], [`envelope_hash`].
//! - `answer`: [`AnswerSealer`], [`AnswerOpener`], the sealed answer stream.
//! - [`receipt`]: worker statements, proxy countersignatures, their bytes and JSON.
//! - [`merkle`]: the RFC 6962 tree over receipt ids, inclusion proofs.
//! - `crypto`: crate-private helpers (AEAD, HKDF, SHA-256, the RNG adapter for HPKE).
//!
//! # Byte formats (version 1)
//!
//! Known-answer vectors of an envelope, its first answer piece and a receipt are in the tests
//! (`known_answer_*`); `tools/check_vector.py` opens and verifies them from this description
//! alone, with an independent RFC 9180 implementation.
//!
//! All integers are big-endian. "‖" is concatenation. SHA-256, HKDF-SHA256 (RFC 5869) and
//! ChaCha20-Poly1305 (RFC 8439, 16-byte tag appended) throughout; HPKE is RFC 9180 mode Base
//! with KEM DHKEM(X25519, HKDF-SHA256), KDF HKDF-SHA256, AEAD ChaCha20-Poly1305.
//!
//! ## Envelope (content type [`SEALED_CONTENT_TYPE`])
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `"CSLD"` (`43 53 4c 44`) |
//! | 4 | 1 | version, `0x01` |
//! | 5 | 8 | `max_tokens` (u64) |
//! | 13 | 1 | `n`, number of recipient slots, 1..=[`MAX_RECIPIENTS`] |
//! | 14 | 144·n | slots, in the order sealed (below) |
//! | 14 + 144·n | 4 | `body_len` (u32), at least 20 |
//! | 18 + 144·n | `body_len` | body: ChaCha20-Poly1305 ciphertext of the padded request |
//!
//! One slot (144 bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 32 | `worker_key`: Ed25519 key of the worker's RA-TLS certificate |
//! | 32 | 32 | `sealing_key`: the worker's X25519 HPKE public key this slot is sealed to |
//! | 64 | 32 | `enc`: the HPKE encapsulated key |
//! | 96 | 48 | `wrapped`: HPKE ciphertext of the 32-byte content key (+16-byte tag) |
//!
//! The **header** is bytes `[0, 18 + 144·n)`, everything before the body. The envelope is
//! exactly `18 + 144·n + body_len` bytes, at most [`MAX_ENVELOPE_LEN`]; worker keys are
//! distinct. The **wrap AAD** is the header with every slot's `wrapped` field left out
//! (`magic ‖ version ‖ max_tokens ‖ n ‖ (worker_key ‖ sealing_key ‖ enc)·n ‖ body_len`); the
//! **body AAD** is the whole header. So changing any byte anywhere, another recipient's slot
//! included, makes opening fail for every recipient.
//!
//! Padded plaintext (request body and answer pieces alike): `len` (u32) ‖ plaintext ‖ zero
//! bytes. Without padding there are no zero bytes; with [`Padding::Buckets`] the whole padded
//! form is `max(min, next_power_of_two(4 + len))` bytes, `min` = 1024 for requests and 64 for
//! answer pieces. Opening refuses a `len` past the end and non-zero padding.
//!
//! ## Answer pieces
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | flags: `0x00` more pieces follow, `0x01` last piece; other values refused |
//! | 1 | 32 | stream nonce, **piece 0 only**: fresh random bytes of this answer stream |
//! | 1 or 33 | rest | ChaCha20-Poly1305 ciphertext of the padded piece |
//!
//! Piece `i` (counted from 0) uses nonce `0u32 ‖ i` (u64) and AAD `flags ‖ i` (u64), so pieces
//! cannot be reordered, dropped, duplicated, re-flagged or forged, and a stream cut before its
//! last piece never reports [`AnswerOpener::finished`]. A piece is at most
//! [`MAX_ENVELOPE_LEN`] bytes. The transcript hash is `h_0 = 0^32`,
//! `h_{i+1} = SHA-256(h_i ‖ piece_i)` over the pieces' bytes as sent.
//!
//! ## Key schedule
//!
//! | key | derivation |
//! |---|---|
//! | content key `K` | 32 fresh random bytes per request |
//! | slot wrap | HPKE Base to `sealing_key`, info `"cocoon-rs sealed request v1"`, AAD = wrap AAD, plaintext `K` |
//! | body key | HKDF-SHA256(salt = none, IKM = `K`, info = `"cocoon-rs sealed body v1"`), nonce `0^12` |
//! | answer key | HKDF-SHA256(salt = SHA-256(envelope), IKM = `K`, info = `"cocoon-rs sealed answer v1" ‖ stream nonce`) |
//!
//! The stream nonce (chosen by the worker, sent in clear in piece 0) makes the answer key unique
//! per answer: a proxy that replays one envelope to the same or another recipient gets answers
//! under different keys, never two streams under one key and the same piece nonces.
//!
//! ## Receipts (see [`receipt`])
//!
//! Worker statement (225 bytes): `0x01` (version) ‖ `request_hash` 32 ‖ `answer_hash` 32 ‖
//! `model_hash` 32 ‖ `image_hash` 32 ‖ usage (`prompt_tokens`, `cached_tokens`,
//! `completion_tokens`, `reasoning_tokens`, `total_tokens`: 5 × u64) ‖ `coefficient` u64 ‖
//! `started_ms` u64 ‖ `ended_ms` u64 ‖ `worker_key` 32.
//!
//! Worker-signed (289 bytes): statement ‖ Ed25519 signature 64, the signature over
//! `"cocoon-rs worker receipt v1\0" ‖ statement`, verifying under `worker_key`.
//!
//! Proxy statement (49 bytes): `0x01` (version) ‖ `price_per_token` u64 ‖ `charge` u64 ‖
//! `proxy_key` 32.
//!
//! Receipt (402 bytes): worker-signed ‖ proxy statement ‖ Ed25519 signature 64, the signature
//! over `"cocoon-rs proxy receipt v1\0" ‖ worker-signed ‖ proxy statement`, verifying under
//! `proxy_key`. A receipt's id is SHA-256 of its 402 bytes; the JSON form is in
//! [`receipt::Receipt::to_json`].
//!
//! ## Merkle tree (see [`merkle`])
//!
//! RFC 6962 §2.1: leaf hash `SHA-256(0x00 ‖ id)`, node `SHA-256(0x01 ‖ left ‖ right)`, the
//! empty tree's root `SHA-256("")`.

mod answer;
mod crypto;
mod envelope;
mod error;
mod keys;
pub mod merkle;
mod padding;
pub mod receipt;

pub use answer::{AnswerOpener, AnswerSealer, OpenedPiece};
pub use envelope::{
    envelope_hash, open_request, open_request_with_rng, read_header, seal_request,
    seal_request_with_rng, RequestHeader,
};
pub use error::SealError;
pub use keys::{Recipient, SealingKeyPair};
pub use padding::Padding;
pub use receipt::{
    ProxyStatement, Receipt, Signer, Usage, WorkerSigned, WorkerStatement, RECEIPT_FORMAT,
};

/// Content type of an http.request / http.response payload that is a sealed envelope.
pub const SEALED_CONTENT_TYPE: &str = "application/x-cocoon-sealed-v1";
/// Most recipients (candidate workers) one request may be sealed to.
pub const MAX_RECIPIENTS: usize = 8;
/// Largest envelope / piece `read_header`, `open_request`, `open_piece` accept.
pub const MAX_ENVELOPE_LEN: usize = 16 * 1024 * 1024;
