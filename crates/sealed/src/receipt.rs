//! Receipts: the worker signs a [`WorkerStatement`] (what it was asked, what it answered, on
//! which model and image, the usage and timing), the proxy countersigns it with a
//! [`ProxyStatement`] (what it billed) into a [`Receipt`]. Both signatures are Ed25519 under the
//! keys of the signers' RA-TLS certificates, domain-separated:
//!
//! - worker: `"cocoon-rs worker receipt v1\0" ‖ statement bytes`
//! - proxy: `"cocoon-rs proxy receipt v1\0" ‖ worker-signed bytes ‖ proxy statement bytes`
//!
//! The fixed byte layouts (crate doc, "Receipts") are canonical: [`Receipt::id`] hashes them and
//! the signatures cover them. The JSON form ([`Receipt::to_json`]) is for people and logs; it
//! converts to the same bytes and back.
//!
//! What must not live here: where keys are kept (the caller's [`Signer`] signs), clocks (times
//! are the caller's), and any judgement of the numbers (a receipt proves who said what; whether
//! the charge is right is the verifier's business).

use ring::signature;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{crypto, SealError};

/// The `"format"` of a receipt's JSON form.
pub const RECEIPT_FORMAT: &str = "cocoon-receipt-v1";
/// Length of [`WorkerStatement::to_bytes`].
pub const WORKER_STATEMENT_LEN: usize = 1 + 4 * 32 + 5 * 8 + 3 * 8 + 32;
/// Length of [`WorkerSigned::to_bytes`].
pub const WORKER_SIGNED_LEN: usize = WORKER_STATEMENT_LEN + 64;
/// Length of [`ProxyStatement::to_bytes`].
pub const PROXY_STATEMENT_LEN: usize = 1 + 8 + 8 + 32;
/// Length of [`Receipt::to_bytes`].
pub const RECEIPT_LEN: usize = WORKER_SIGNED_LEN + PROXY_STATEMENT_LEN + 64;

/// Version byte of both statements.
const STATEMENT_VERSION: u8 = 1;
const WORKER_DOMAIN: &[u8] = b"cocoon-rs worker receipt v1\0";
const PROXY_DOMAIN: &[u8] = b"cocoon-rs proxy receipt v1\0";

/// Token counts of one request, as the worker measured them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Prompt tokens served from cache.
    pub cached_tokens: u64,
    /// Completion tokens, reasoning ones included.
    pub completion_tokens: u64,
    /// Completion tokens spent on reasoning.
    pub reasoning_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
}

/// What the worker signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerStatement {
    /// [`crate::envelope_hash`] of the sealed request (for a cleartext request: SHA-256 of the
    /// request bytes).
    pub request_hash: [u8; 32],
    /// [`crate::AnswerSealer::transcript_hash`].
    pub answer_hash: [u8; 32],
    /// SHA-256 of the worker's full model string.
    pub model_hash: [u8; 32],
    /// The worker's image hash (all zeros when it has no evidence).
    pub image_hash: [u8; 32],
    /// Token counts.
    pub usage: Usage,
    /// The worker's price coefficient.
    pub coefficient: u64,
    /// Unix milliseconds when the work started.
    pub started_ms: u64,
    /// Unix milliseconds when the work ended.
    pub ended_ms: u64,
    /// Ed25519 key of the worker's RA-TLS certificate; the signature verifies under it.
    pub worker_key: [u8; 32],
}

/// What the proxy adds and signs (over the worker statement, its signature and these fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyStatement {
    /// Nanoton per token (base price before coefficient), as the proxy billed.
    pub price_per_token: u64,
    /// Nanoton charged for this request.
    pub charge: u64,
    /// Ed25519 key of the proxy's RA-TLS certificate.
    pub proxy_key: [u8; 32],
}

/// Something that signs with an Ed25519 key it keeps (in memory, in an enclave, elsewhere).
pub trait Signer {
    /// The Ed25519 public key signatures verify under.
    fn public_key(&self) -> [u8; 32];
    /// The Ed25519 signature of `msg`.
    fn sign(&self, msg: &[u8]) -> [u8; 64];
}

/// A worker statement and the worker's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSigned {
    /// What the worker said.
    pub statement: WorkerStatement,
    /// Ed25519 signature under `statement.worker_key`.
    pub signature: [u8; 64],
}

/// A worker-signed statement countersigned by the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The worker's signed statement.
    pub worker: WorkerSigned,
    /// What the proxy billed.
    pub proxy: ProxyStatement,
    /// Ed25519 signature under `proxy.proxy_key`.
    pub proxy_signature: [u8; 64],
}

/// Reads fixed-size fields from a slice whose length was checked.
struct Reader<'a>(&'a [u8]);

// === impl WorkerStatement ===

impl WorkerStatement {
    /// Signs the statement. Refuses a signer whose public key is not `worker_key`
    /// ([`SealError::WrongSigner`]) and a signature that does not verify
    /// ([`SealError::BadSignature`]: a broken signer).
    pub fn sign(self, signer: &dyn Signer) -> Result<WorkerSigned, SealError> {
        if signer.public_key() != self.worker_key {
            return Err(SealError::WrongSigner);
        }
        let signature = signer.sign(&worker_message(&self.to_bytes()));
        let signed = WorkerSigned {
            statement: self,
            signature,
        };
        signed.verify()?;
        Ok(signed)
    }

    /// The statement's canonical bytes ([`WORKER_STATEMENT_LEN`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(WORKER_STATEMENT_LEN);
        b.push(STATEMENT_VERSION);
        b.extend_from_slice(&self.request_hash);
        b.extend_from_slice(&self.answer_hash);
        b.extend_from_slice(&self.model_hash);
        b.extend_from_slice(&self.image_hash);
        let u = &self.usage;
        for v in [
            u.prompt_tokens,
            u.cached_tokens,
            u.completion_tokens,
            u.reasoning_tokens,
            u.total_tokens,
            self.coefficient,
            self.started_ms,
            self.ended_ms,
        ] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&self.worker_key);
        debug_assert_eq!(b.len(), WORKER_STATEMENT_LEN);
        b
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, SealError> {
        r.version()?;
        Ok(Self {
            request_hash: r.arr()?,
            answer_hash: r.arr()?,
            model_hash: r.arr()?,
            image_hash: r.arr()?,
            usage: Usage {
                prompt_tokens: r.u64()?,
                cached_tokens: r.u64()?,
                completion_tokens: r.u64()?,
                reasoning_tokens: r.u64()?,
                total_tokens: r.u64()?,
            },
            coefficient: r.u64()?,
            started_ms: r.u64()?,
            ended_ms: r.u64()?,
            worker_key: r.arr()?,
        })
    }
}

// === impl ProxyStatement ===

impl ProxyStatement {
    /// The statement's canonical bytes ([`PROXY_STATEMENT_LEN`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(PROXY_STATEMENT_LEN);
        b.push(STATEMENT_VERSION);
        b.extend_from_slice(&self.price_per_token.to_be_bytes());
        b.extend_from_slice(&self.charge.to_be_bytes());
        b.extend_from_slice(&self.proxy_key);
        debug_assert_eq!(b.len(), PROXY_STATEMENT_LEN);
        b
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, SealError> {
        r.version()?;
        Ok(Self {
            price_per_token: r.u64()?,
            charge: r.u64()?,
            proxy_key: r.arr()?,
        })
    }
}

// === impl WorkerSigned ===

impl WorkerSigned {
    /// Checks the signature under `statement.worker_key`.
    pub fn verify(&self) -> Result<(), SealError> {
        verify(
            &self.statement.worker_key,
            &worker_message(&self.statement.to_bytes()),
            &self.signature,
        )
    }

    /// Canonical bytes: statement ‖ signature ([`WORKER_SIGNED_LEN`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.statement.to_bytes();
        b.extend_from_slice(&self.signature);
        b
    }

    /// Parses [`Self::to_bytes`]: exactly [`WORKER_SIGNED_LEN`] bytes, version 1. Does not
    /// verify the signature ([`Self::verify`] does).
    pub fn from_bytes(b: &[u8]) -> Result<Self, SealError> {
        let mut r = Reader::exact(b, WORKER_SIGNED_LEN)?;
        Self::read(&mut r)
    }

    /// The proxy's countersignature: verifies the worker's signature first, refuses a signer
    /// whose key is not `proxy.proxy_key`, and checks the signature it made.
    pub fn countersign(
        self,
        proxy: ProxyStatement,
        signer: &dyn Signer,
    ) -> Result<Receipt, SealError> {
        self.verify()?;
        if signer.public_key() != proxy.proxy_key {
            return Err(SealError::WrongSigner);
        }
        let proxy_signature = signer.sign(&proxy_message(&self, &proxy));
        let receipt = Receipt {
            worker: self,
            proxy,
            proxy_signature,
        };
        receipt.verify_proxy()?;
        Ok(receipt)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, SealError> {
        Ok(Self {
            statement: WorkerStatement::read(r)?,
            signature: r.arr()?,
        })
    }
}

// === impl Receipt ===

impl Receipt {
    /// Checks both signatures: the worker's under `worker_key`, the proxy's under `proxy_key`.
    pub fn verify(&self) -> Result<(), SealError> {
        self.worker.verify()?;
        self.verify_proxy()
    }

    /// SHA-256 of [`Self::to_bytes`]; also the Merkle leaf input.
    pub fn id(&self) -> [u8; 32] {
        crypto::sha256(&[&self.to_bytes()])
    }

    /// Canonical bytes: worker-signed ‖ proxy statement ‖ proxy signature ([`RECEIPT_LEN`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RECEIPT_LEN);
        b.extend_from_slice(&self.worker.to_bytes());
        b.extend_from_slice(&self.proxy.to_bytes());
        b.extend_from_slice(&self.proxy_signature);
        b
    }

    /// Parses [`Self::to_bytes`]: exactly [`RECEIPT_LEN`] bytes, both versions 1. Does not
    /// verify the signatures ([`Self::verify`] does).
    pub fn from_bytes(b: &[u8]) -> Result<Self, SealError> {
        let mut r = Reader::exact(b, RECEIPT_LEN)?;
        Ok(Self {
            worker: WorkerSigned::read(&mut r)?,
            proxy: ProxyStatement::read(&mut r)?,
            proxy_signature: r.arr()?,
        })
    }

    /// The JSON form: every field, hashes, keys and signatures as lowercase hex, numbers as JSON
    /// numbers, plus `"format": "cocoon-receipt-v1"` and `"id"` (hex of [`Self::id`]):
    ///
    /// ```json
    /// {"format": "cocoon-receipt-v1", "id": "…",
    ///  "worker": {"statement": {"request_hash": "…", "answer_hash": "…", "model_hash": "…",
    ///                           "image_hash": "…", "usage": {"prompt_tokens": 0, …},
    ///                           "coefficient": 0, "started_ms": 0, "ended_ms": 0,
    ///                           "worker_key": "…"},
    ///             "signature": "…"},
    ///  "proxy": {"price_per_token": 0, "charge": 0, "proxy_key": "…"},
    ///  "proxy_signature": "…"}
    /// ```
    pub fn to_json(&self) -> Value {
        let json = ReceiptJson::from(self);
        // Plain strings, numbers and objects: serializing cannot fail.
        serde_json::to_value(json).unwrap_or(Value::Null)
    }

    /// Inverse of [`Self::to_json`]: refuses unknown or missing fields, another `"format"`,
    /// hex of the wrong length, and an `"id"` (optional) that is not this receipt's. Does not
    /// verify the signatures.
    pub fn from_json(v: &Value) -> Result<Self, SealError> {
        let json = ReceiptJson::deserialize(v).map_err(|e| SealError::BadJson(json_error(&e)))?;
        if json.format != RECEIPT_FORMAT {
            return Err(SealError::BadJson("unknown \"format\"".into()));
        }
        let s = &json.worker.statement;
        let receipt = Receipt {
            worker: WorkerSigned {
                statement: WorkerStatement {
                    request_hash: from_hex(&s.request_hash, "request_hash")?,
                    answer_hash: from_hex(&s.answer_hash, "answer_hash")?,
                    model_hash: from_hex(&s.model_hash, "model_hash")?,
                    image_hash: from_hex(&s.image_hash, "image_hash")?,
                    usage: Usage {
                        prompt_tokens: s.usage.prompt_tokens,
                        cached_tokens: s.usage.cached_tokens,
                        completion_tokens: s.usage.completion_tokens,
                        reasoning_tokens: s.usage.reasoning_tokens,
                        total_tokens: s.usage.total_tokens,
                    },
                    coefficient: s.coefficient,
                    started_ms: s.started_ms,
                    ended_ms: s.ended_ms,
                    worker_key: from_hex(&s.worker_key, "worker_key")?,
                },
                signature: from_hex(&json.worker.signature, "signature")?,
            },
            proxy: ProxyStatement {
                price_per_token: json.proxy.price_per_token,
                charge: json.proxy.charge,
                proxy_key: from_hex(&json.proxy.proxy_key, "proxy_key")?,
            },
            proxy_signature: from_hex(&json.proxy_signature, "proxy_signature")?,
        };
        if let Some(id) = &json.id {
            if from_hex::<32>(id, "id")? != receipt.id() {
                return Err(SealError::IdMismatch);
            }
        }
        Ok(receipt)
    }

    fn verify_proxy(&self) -> Result<(), SealError> {
        verify(
            &self.proxy.proxy_key,
            &proxy_message(&self.worker, &self.proxy),
            &self.proxy_signature,
        )
    }
}

// === impl Signer for ring's Ed25519KeyPair ===

impl Signer for signature::Ed25519KeyPair {
    fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let pk = signature::KeyPair::public_key(self).as_ref();
        // ring's Ed25519 public keys are always 32 bytes.
        if pk.len() == out.len() {
            out.copy_from_slice(pk);
        }
        out
    }

    fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        let sig = signature::Ed25519KeyPair::sign(self, msg);
        // ring's Ed25519 signatures are always 64 bytes.
        if sig.as_ref().len() == out.len() {
            out.copy_from_slice(sig.as_ref());
        }
        out
    }
}

// === impl Reader ===

impl<'a> Reader<'a> {
    /// A reader over `b`, which must be exactly `len` bytes.
    fn exact(b: &'a [u8], len: usize) -> Result<Self, SealError> {
        match b.len().cmp(&len) {
            std::cmp::Ordering::Less => Err(SealError::Truncated),
            std::cmp::Ordering::Greater => Err(SealError::TrailingBytes),
            std::cmp::Ordering::Equal => Ok(Self(b)),
        }
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], SealError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(SealError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn u64(&mut self) -> Result<u64, SealError> {
        self.arr().map(u64::from_be_bytes)
    }

    fn version(&mut self) -> Result<(), SealError> {
        match self.arr::<1>()? {
            [STATEMENT_VERSION] => Ok(()),
            [v] => Err(SealError::UnsupportedVersion(v)),
        }
    }
}

// === functions ===

fn worker_message(statement: &[u8]) -> Vec<u8> {
    [WORKER_DOMAIN, statement].concat()
}

fn proxy_message(worker: &WorkerSigned, proxy: &ProxyStatement) -> Vec<u8> {
    [PROXY_DOMAIN, &worker.to_bytes(), &proxy.to_bytes()].concat()
}

/// Ed25519 verification with ring.
fn verify(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Result<(), SealError> {
    signature::UnparsedPublicKey::new(&signature::ED25519, key)
        .verify(msg, sig)
        .map_err(|_| SealError::BadSignature)
}

fn from_hex<const N: usize>(s: &str, field: &str) -> Result<[u8; N], SealError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| SealError::BadJson(format!("\"{field}\" is not {} hex digits", 2 * N)))?;
    Ok(out)
}

/// serde's message for a missing or unknown field names only the field; for other errors it
/// may quote the value, so those get a fixed text.
fn json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with("missing field") || msg.starts_with("unknown field") {
        // "unknown field `x`, expected one of …": keep the part before the list.
        msg.split(", expected").next().unwrap_or(&msg).to_owned()
    } else {
        "a field is missing, of the wrong type or out of range".to_owned()
    }
}

// === JSON form ===

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptJson {
    format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    worker: WorkerSignedJson,
    proxy: ProxyJson,
    proxy_signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerSignedJson {
    statement: StatementJson,
    signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementJson {
    request_hash: String,
    answer_hash: String,
    model_hash: String,
    image_hash: String,
    usage: UsageJson,
    coefficient: u64,
    started_ms: u64,
    ended_ms: u64,
    worker_key: String,
}

/// [`Usage`] with unknown fields refused (`Usage` itself stays lenient for other callers).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageJson {
    prompt_tokens: u64,
    cached_tokens: u64,
    completion_tokens: u64,
    reasoning_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxyJson {
    price_per_token: u64,
    charge: u64,
    proxy_key: String,
}

impl From<&Receipt> for ReceiptJson {
    fn from(r: &Receipt) -> Self {
        let s = &r.worker.statement;
        let u = &s.usage;
        ReceiptJson {
            format: RECEIPT_FORMAT.to_owned(),
            id: Some(hex::encode(r.id())),
            worker: WorkerSignedJson {
                statement: StatementJson {
                    request_hash: hex::encode(s.request_hash),
                    answer_hash: hex::encode(s.answer_hash),
                    model_hash: hex::encode(s.model_hash),
                    image_hash: hex::encode(s.image_hash),
                    usage: UsageJson {
                        prompt_tokens: u.prompt_tokens,
                        cached_tokens: u.cached_tokens,
                        completion_tokens: u.completion_tokens,
                        reasoning_tokens: u.reasoning_tokens,
                        total_tokens: u.total_tokens,
                    },
                    coefficient: s.coefficient,
                    started_ms: s.started_ms,
                    ended_ms: s.ended_ms,
                    worker_key: hex::encode(s.worker_key),
                },
                signature: hex::encode(r.worker.signature),
            },
            proxy: ProxyJson {
                price_per_token: r.proxy.price_per_token,
                charge: r.proxy.charge,
                proxy_key: hex::encode(r.proxy.proxy_key),
            },
            proxy_signature: hex::encode(r.proxy_signature),
        }
    }
}

#[cfg(test)]
mod tests;
