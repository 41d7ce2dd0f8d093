//! Receipts of sealed requests on the client: checking the one the proxy relays, keeping it,
//! and serving it to the app (`GET /v1/cocoon/receipts/{id}`).
//!
//! A receipt (`cocoon_sealed::Receipt`) is the worker's signed statement about one request,
//! countersigned by the proxy with the price and the charge. It is accepted only when both
//! signatures verify, the worker is one of the candidates this client verified and sealed the
//! request to (its image and model hashes as verified), the proxy's key is the one this link's
//! RA-TLS session proved, the request hash is the envelope's, the answer hash is the transcript
//! of the pieces the client opened, and the proxy charged no more than the worker's usage at
//! the stated price. A proxy that charges more than its receipts is refused from then on
//! ([`crate::link::Pool::refuse`]).
//!
//! The app's receipt id is the hex request hash (known before the answer starts, so it can go
//! into a response header). Receipts are kept as one JSON file each in `[privacy]
//! receipts_dir` (atomic writes, the oldest deleted past `max_receipts`), or in memory when no
//! directory is set. Files hold hashes, keys, numbers and signatures, never prompts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;

use cocoon_sealed::receipt::Receipt;
use serde_json::Value;

use crate::sealing::VerifiedWorker;

/// The format of the receipt documents the client keeps and serves: `{"format", "receipt_id",
/// "proxy", "model", "worker_certificate", "proxy_certificate" (base64 DER), "receipt" (the
/// receipt's own JSON, `cocoon_sealed::receipt::Receipt::to_json`)}`.
pub const CLIENT_RECEIPT_FORMAT: &str = "cocoon-client-receipt-v1";

/// What a receipt must match.
pub(crate) struct Expected<'a> {
    pub request_hash: [u8; 32],
    pub answer_hash: [u8; 32],
    pub candidates: &'a [VerifiedWorker],
    pub proxy_key: [u8; 32],
}

/// Why a receipt was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReceiptError {
    #[error("receipt is malformed or its signatures do not verify: {0}")]
    Invalid(String),
    #[error("receipt names a worker this request was not sealed to")]
    UnknownWorker,
    #[error("receipt's {0} does not match what the client verified")]
    Mismatch(&'static str),
    #[error("proxy charged {charge} nanoton, more than the worker's usage at its price ({bound})")]
    Overcharge { charge: u64, bound: u64 },
}

/// Checks a relayed receipt against what the client knows (see the module docs); returns it
/// with the worker that signed it.
pub(crate) fn check<'a>(
    bytes: &[u8],
    want: &Expected<'a>,
) -> Result<(Receipt, &'a VerifiedWorker), ReceiptError> {
    let r = Receipt::from_bytes(bytes).map_err(|e| ReceiptError::Invalid(e.to_string()))?;
    r.verify()
        .map_err(|e| ReceiptError::Invalid(e.to_string()))?;
    let s = &r.worker.statement;
    let worker = want
        .candidates
        .iter()
        .find(|c| c.worker_key == s.worker_key)
        .ok_or(ReceiptError::UnknownWorker)?;
    if s.image_hash != worker.image_hash.unwrap_or([0; 32]) {
        return Err(ReceiptError::Mismatch("image hash"));
    }
    if s.model_hash != worker.model_hash {
        return Err(ReceiptError::Mismatch("model hash"));
    }
    if s.request_hash != want.request_hash {
        return Err(ReceiptError::Mismatch("request hash"));
    }
    if s.answer_hash != want.answer_hash {
        return Err(ReceiptError::Mismatch("answer hash"));
    }
    if r.proxy.proxy_key != want.proxy_key {
        return Err(ReceiptError::Mismatch("proxy key"));
    }
    let bound = s.usage.total_tokens.saturating_mul(r.proxy.price_per_token);
    if r.proxy.charge > bound {
        return Err(ReceiptError::Overcharge {
            charge: r.proxy.charge,
            bound,
        });
    }
    Ok((r, worker))
}

/// The `"proof"` member of a receipt document: the proxy's inclusion proof of the receipt's id
/// (`client.receiptProofV3`), checked here against the document's receipt before it is kept:
/// `{"receipt_id", "root", "period_start", "period_end", "tree_size", "index", "path" (hex,
/// deepest sibling first), "anchored", "anchor_tx_lt"}`.
pub(crate) fn proof_json(
    doc: &Value,
    p: &cocoon_proto::messages::ClientReceiptProofV3,
) -> Result<Value, ReceiptError> {
    let invalid = |e: String| ReceiptError::Invalid(e);
    let r = Receipt::from_json(&doc["receipt"]).map_err(|e| invalid(e.to_string()))?;
    let num = |v: i64| u64::try_from(v).map_err(|_| invalid(format!("negative number {v}")));
    let proof = cocoon_sealed::merkle::InclusionProof {
        index: num(p.index)?,
        tree_size: num(p.tree_size)?,
        path: p.path.iter().map(hex::encode).collect(),
    };
    let id = r.id();
    cocoon_sealed::merkle::verify_inclusion(&p.root, &id, &proof)
        .map_err(|e| invalid(format!("the proxy's proof does not verify: {e}")))?;
    Ok(serde_json::json!({
        "receipt_id": hex::encode(id),
        "root": hex::encode(p.root),
        "period_start": num(p.period_start)?,
        "period_end": num(p.period_end)?,
        "tree_size": proof.tree_size,
        "index": proof.index,
        "path": proof.path,
        "anchored": p.anchor_tx_lt.is_some(),
        "anchor_tx_lt": p.anchor_tx_lt,
    }))
}

/// The receipts kept for the app.
pub(crate) struct ReceiptBook {
    dir: Option<PathBuf>,
    max: usize,
    inner: Mutex<Book>,
}

/// Receipts kept in memory as well when a directory is set: the newest, so an app asking right
/// after its answer is served before (or while) the file is written.
const RECENT_IN_MEMORY: usize = 256;

#[derive(Default)]
struct Book {
    /// Ids, oldest first, and the same as a set.
    order: VecDeque<String>,
    index: HashSet<String>,
    /// Without a directory: every receipt; with one: the newest [`RECENT_IN_MEMORY`].
    memory: HashMap<String, Value>,
    memory_order: VecDeque<String>,
}

/// A receipt id: 64 lowercase hex digits.
fn valid_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl ReceiptBook {
    /// Opens the book: with a directory, creates it and indexes the receipts already there
    /// (oldest first by modification time; the oldest beyond `max` are deleted).
    pub fn open(dir: Option<PathBuf>, max: usize) -> std::io::Result<Self> {
        let mut book = Book::default();
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)?;
            let mut found = Vec::new();
            for entry in std::fs::read_dir(d)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().to_string();
                let Some(id) = name.strip_suffix(".json") else {
                    continue;
                };
                if !valid_id(id) {
                    continue;
                }
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                found.push((modified, id.to_string()));
            }
            found.sort();
            book.order = found.into_iter().map(|(_, id)| id).collect();
            book.index = book.order.iter().cloned().collect();
        }
        let this = Self {
            dir,
            max,
            inner: Mutex::new(book),
        };
        let evicted = this
            .inner
            .lock()
            .map(|mut b| this.evict(&mut b))
            .unwrap_or_default();
        this.delete_files(&evicted);
        Ok(this)
    }

    /// Drops the oldest past `max`; returns their ids (whose files are to be deleted).
    fn evict(&self, b: &mut Book) -> Vec<String> {
        let mut gone = Vec::new();
        while b.order.len() > self.max {
            let Some(old) = b.order.pop_front() else {
                break;
            };
            b.index.remove(&old);
            b.memory.remove(&old);
            gone.push(old);
        }
        gone
    }

    fn delete_files(&self, ids: &[String]) {
        if let Some(d) = &self.dir {
            for old in ids {
                let _ = std::fs::remove_file(d.join(format!("{old}.json")));
            }
        }
    }

    /// Keeps `receipt` (its JSON form) under `id`: [`ReceiptBook::remember`] then
    /// [`ReceiptBook::write`]. Blocking (file I/O): async callers remember at once and write on
    /// the blocking pool.
    pub fn put(&self, id: &str, receipt: &Value) -> std::io::Result<()> {
        let evicted = self.remember(id, receipt)?;
        self.write(id, receipt, &evicted)
    }

    /// Indexes `receipt` in memory (no I/O); returns the ids it pushed out.
    pub fn remember(&self, id: &str, receipt: &Value) -> std::io::Result<Vec<String>> {
        if !valid_id(id) {
            return Err(std::io::Error::other("bad receipt id"));
        }
        let Ok(mut b) = self.inner.lock() else {
            return Ok(Vec::new());
        };
        if b.index.insert(id.to_string()) {
            b.order.push_back(id.to_string());
        }
        if b.memory.insert(id.to_string(), receipt.clone()).is_none() {
            b.memory_order.push_back(id.to_string());
        }
        if self.dir.is_some() {
            while b.memory_order.len() > RECENT_IN_MEMORY {
                if let Some(old) = b.memory_order.pop_front() {
                    b.memory.remove(&old);
                }
            }
        }
        let evicted = self.evict(&mut b);
        let Book {
            memory,
            memory_order,
            ..
        } = &mut *b;
        memory_order.retain(|x| memory.contains_key(x));
        Ok(evicted)
    }

    /// Writes `receipt`'s file (atomically) and deletes the files of `evicted` (blocking).
    pub fn write(&self, id: &str, receipt: &Value, evicted: &[String]) -> std::io::Result<()> {
        if !valid_id(id) {
            return Err(std::io::Error::other("bad receipt id"));
        }
        if let Some(d) = &self.dir {
            let tmp = d.join(format!(".{id}.tmp"));
            let path = d.join(format!("{id}.json"));
            std::fs::write(&tmp, serde_json::to_vec_pretty(receipt)?)?;
            std::fs::rename(&tmp, &path)?;
        }
        self.delete_files(evicted);
        Ok(())
    }

    /// The receipt kept under `id`, if any (memory first, then its file).
    pub fn get(&self, id: &str) -> Option<Value> {
        if !valid_id(id) {
            return None;
        }
        if let Some(v) = self.inner.lock().ok()?.memory.get(id).cloned() {
            return Some(v);
        }
        let d = self.dir.as_ref()?;
        let bytes = std::fs::read(d.join(format!("{id}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// How many receipts are kept.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|b| b.order.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_attest::EvidenceKind;
    use cocoon_sealed::receipt::{ProxyStatement, Signer, Usage, WorkerStatement};
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use std::time::SystemTime;

    struct Key(Ed25519KeyPair);
    impl Key {
        fn new(seed: u8) -> Self {
            Self(Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap())
        }
    }
    impl Signer for Key {
        fn public_key(&self) -> [u8; 32] {
            KeyPair::public_key(&self.0).as_ref().try_into().unwrap()
        }
        fn sign(&self, msg: &[u8]) -> [u8; 64] {
            self.0.sign(msg).as_ref().try_into().unwrap()
        }
    }

    fn candidate(key: &Key) -> VerifiedWorker {
        VerifiedWorker {
            worker_key: key.public_key(),
            sealing_key: [1; 32],
            kind: EvidenceKind::InsecureSoftware,
            image_hash: Some([2; 32]),
            evidence_digest: None,
            model: "m".into(),
            model_hash: [3; 32],
            until: SystemTime::now(),
            certificate: std::sync::Arc::from(&b"cert"[..]),
        }
    }

    fn receipt(worker: &Key, proxy: &Key, charge: u64) -> Vec<u8> {
        let statement = WorkerStatement {
            request_hash: [4; 32],
            answer_hash: [5; 32],
            model_hash: [3; 32],
            image_hash: [2; 32],
            usage: Usage {
                total_tokens: 10,
                ..Usage::default()
            },
            coefficient: 1000,
            started_ms: 1,
            ended_ms: 2,
            worker_key: worker.public_key(),
        };
        statement
            .sign(worker)
            .unwrap()
            .countersign(
                ProxyStatement {
                    price_per_token: 7,
                    charge,
                    proxy_key: proxy.public_key(),
                },
                proxy,
            )
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn a_receipt_must_match_everything_the_client_verified() {
        let (w, p, stranger) = (Key::new(1), Key::new(2), Key::new(3));
        let cands = [candidate(&w)];
        let want = Expected {
            request_hash: [4; 32],
            answer_hash: [5; 32],
            candidates: &cands,
            proxy_key: p.public_key(),
        };
        let (r, who) = check(&receipt(&w, &p, 70), &want).unwrap();
        assert_eq!(who.worker_key, w.public_key());
        assert_eq!(r.proxy.charge, 70);

        // More than 10 tokens at 7: the proxy overcharged.
        assert_eq!(
            check(&receipt(&w, &p, 71), &want).unwrap_err(),
            ReceiptError::Overcharge {
                charge: 71,
                bound: 70
            }
        );
        // A worker the request was not sealed to.
        assert_eq!(
            check(&receipt(&stranger, &p, 70), &want).unwrap_err(),
            ReceiptError::UnknownWorker
        );
        // Countersigned by another proxy than this link's.
        assert_eq!(
            check(&receipt(&w, &stranger, 70), &want).unwrap_err(),
            ReceiptError::Mismatch("proxy key")
        );
        // Another request's, or another answer's.
        for (field, w2) in [
            (
                "request hash",
                Expected {
                    request_hash: [9; 32],
                    ..want
                },
            ),
            (
                "answer hash",
                Expected {
                    answer_hash: [9; 32],
                    ..want
                },
            ),
        ] {
            assert_eq!(
                check(&receipt(&w, &p, 70), &w2).unwrap_err(),
                ReceiptError::Mismatch(field)
            );
        }
        // A forged byte anywhere.
        let good = receipt(&w, &p, 70);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 1;
            assert!(check(&bad, &want).is_err(), "byte {i}");
        }
        // Image or model not the verified one.
        let mut other = candidate(&w);
        other.image_hash = Some([8; 32]);
        let cands2 = [other];
        assert_eq!(
            check(
                &receipt(&w, &p, 70),
                &Expected {
                    candidates: &cands2,
                    ..want
                }
            )
            .unwrap_err(),
            ReceiptError::Mismatch("image hash")
        );
    }

    #[test]
    fn the_book_keeps_the_newest_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("cocoon-receipts-{}", rand::random::<u64>()));
        let id = |i: u8| hex::encode([i; 32]);
        {
            let book = ReceiptBook::open(Some(dir.clone()), 3).unwrap();
            for i in 0..5u8 {
                book.put(&id(i), &serde_json::json!({"n": i})).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_eq!(book.len(), 3);
            assert!(book.get(&id(0)).is_none());
            assert_eq!(book.get(&id(4)).unwrap()["n"], 4);
        }
        let book = ReceiptBook::open(Some(dir.clone()), 2).unwrap();
        assert_eq!(book.len(), 2);
        assert!(book.get(&id(2)).is_none());
        assert_eq!(book.get(&id(3)).unwrap()["n"], 3);
        // Ids are hex only: no path tricks.
        assert!(book.get("../etc/passwd").is_none());
        assert!(book.put("x", &Value::Null).is_err());
        let _ = std::fs::remove_dir_all(&dir);

        let mem = ReceiptBook::open(None, 1).unwrap();
        mem.put(&id(1), &Value::Null).unwrap();
        mem.put(&id(2), &serde_json::json!(2)).unwrap();
        assert!(mem.get(&id(1)).is_none());
        assert_eq!(mem.get(&id(2)).unwrap(), 2);
    }
}
