//! Worker evidence for clients: what the proxy tells a client about the worker that served its
//! request (issue 6, "evidence up to the app").
//!
//! For each worker connection the proxy keeps what RA-TLS verified ([`AttestedPeer`]: evidence
//! kind, image hash, evidence digest, key); the model hash is SHA-256 of the worker's full model
//! string (`name@commit:verity_hash`), exactly how the root contract's `model_hashes` are
//! computed, so an app can check it against the chain. Two ways out:
//! - HTTP headers added to the `http.response` head for every client ([`headers`]):
//!   `X-Cocoon-Worker-Image-Hash`, `X-Cocoon-Worker-Model-Hash`, `X-Cocoon-Worker-Evidence`,
//!   `X-Cocoon-Worker-Evidence-Digest`; a value the proxy does not know is omitted, never made up;
//! - `client.queryWorkerInfoV3` for clients on protocol 3, sent right before the final answer
//!   ([`info_v3`]).
//!
//! Only data and formatting live here; what is sent when is the core's (`proxy_core`), which
//! keeps each registered worker's evidence. Lock order: this book's lock is never held while
//! taking the proxy core's lock (the stats page takes core → book).

use std::collections::HashMap;
use std::sync::Mutex;

use cocoon_attest::{AttestedPeer, EvidenceKind};
use cocoon_proto::messages::{ClientQueryWorkerInfoV3, HttpHeader};
use sha2::{Digest, Sha256};

pub(crate) use cocoon_node::worker_headers::{
    is_evidence_header, HEADER_EVIDENCE, HEADER_EVIDENCE_DIGEST, HEADER_IMAGE_HASH,
    HEADER_MODEL_HASH,
};

/// What is known about the worker that served a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WorkerEvidence {
    pub kind: EvidenceKind,
    pub public_key: [u8; 32],
    pub image_hash: Option<[u8; 32]>,
    pub evidence_digest: Option<[u8; 32]>,
    /// SHA-256 of the full model string; `None` before the worker's handshake named a model.
    pub model_hash: Option<[u8; 32]>,
    /// The worker's DER certificate, handed to clients that seal requests (they verify it
    /// themselves), and the sealing key it binds.
    pub certificate: Option<std::sync::Arc<[u8]>>,
    pub sealing_key: Option<[u8; 32]>,
}

impl WorkerEvidence {
    fn from_peer(peer: &AttestedPeer) -> Self {
        Self {
            kind: peer.kind,
            public_key: peer.public_key,
            image_hash: peer.image_hash,
            evidence_digest: peer.evidence_digest,
            model_hash: None,
            certificate: peer.certificate.clone(),
            sealing_key: peer.sealing_key,
        }
    }
}

/// The attested peer of every live worker connection, by connection id.
#[derive(Default)]
pub(crate) struct WorkerEvidenceBook {
    by_conn: Mutex<HashMap<u64, WorkerEvidence>>,
}

impl WorkerEvidenceBook {
    /// A worker connected (after RA-TLS): remember what its certificate proved.
    pub fn connected(&self, conn: u64, peer: &AttestedPeer) {
        if let Ok(mut m) = self.by_conn.lock() {
            m.insert(conn, WorkerEvidence::from_peer(peer));
        }
    }

    /// The worker connection ended.
    pub fn gone(&self, conn: u64) {
        if let Ok(mut m) = self.by_conn.lock() {
            m.remove(&conn);
        }
    }

    /// What the connection's certificate proved (no model hash).
    pub fn peer(&self, conn: u64) -> Option<WorkerEvidence> {
        self.by_conn.lock().ok()?.get(&conn).cloned()
    }
}

/// `SHA-256(model)`: how Cocoon's root contract identifies a model (`model_hashes`).
pub(crate) fn model_hash(model: &str) -> [u8; 32] {
    Sha256::digest(model.as_bytes()).into()
}

/// The name used in headers, stats and `client.queryWorkerInfoV3`.
pub(crate) fn kind_name(kind: EvidenceKind) -> &'static str {
    kind.name()
}

/// The `X-Cocoon-Worker-*` headers for `ev` (`None`: no headers at all).
pub(crate) fn headers(ev: Option<&WorkerEvidence>) -> Vec<HttpHeader> {
    let Some(ev) = ev else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(4);
    let mut push = |name: &str, value: String| {
        out.push(HttpHeader {
            name: name.into(),
            value,
        })
    };
    if let Some(h) = ev.image_hash {
        push(HEADER_IMAGE_HASH, hex::encode(h));
    }
    if let Some(h) = ev.model_hash {
        push(HEADER_MODEL_HASH, hex::encode(h));
    }
    push(HEADER_EVIDENCE, kind_name(ev.kind).into());
    if let Some(h) = ev.evidence_digest {
        push(HEADER_EVIDENCE_DIGEST, hex::encode(h));
    }
    out
}

/// Puts the proxy's evidence headers into a response's headers. Any header of those names
/// already there (set by the worker) is dropped first: only the proxy's word counts. The
/// worker's `X-Cocoon-Worker-Start/End` timings stay.
pub(crate) fn merge_into(response_headers: &mut Vec<HttpHeader>, evidence: Vec<HttpHeader>) {
    response_headers.retain(|h| !is_evidence_header(&h.name));
    response_headers.extend(evidence);
}

/// `client.queryWorkerInfoV3` for `client_request_id`; `None` when the model is unknown (the
/// message's model hash is mandatory, and we never invent one).
pub(crate) fn info_v3(
    ev: &WorkerEvidence,
    client_request_id: [u8; 32],
) -> Option<ClientQueryWorkerInfoV3> {
    Some(ClientQueryWorkerInfoV3::new(
        client_request_id,
        kind_name(ev.kind).into(),
        ev.model_hash?,
        ev.image_hash,
        ev.evidence_digest,
    ))
}

/// The worker's evidence as shown on the proxy's stats page.
pub(crate) fn stats_json(book: &WorkerEvidenceBook, conn: u64, model: &str) -> serde_json::Value {
    match book.peer(conn) {
        Some(ev) => serde_json::json!({
            "kind": kind_name(ev.kind),
            "public_key": hex::encode(ev.public_key),
            "image_hash": ev.image_hash.map(hex::encode),
            "evidence_digest": ev.evidence_digest.map(hex::encode),
            "model_hash": hex::encode(model_hash(model)),
        }),
        None => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attested() -> WorkerEvidence {
        let mut peer = AttestedPeer::unattested([9; 32]);
        peer.kind = EvidenceKind::Tdx;
        peer.image_hash = Some([0xab; 32]);
        peer.evidence_digest = Some([0xcd; 32]);
        let mut ev = WorkerEvidence::from_peer(&peer);
        ev.model_hash = Some(model_hash("Qwen/Qwen3-0.6B@abc:def"));
        ev
    }

    fn header<'a>(hs: &'a [HttpHeader], name: &str) -> Option<&'a str> {
        hs.iter().find(|h| h.name == name).map(|h| h.value.as_str())
    }

    #[test]
    fn model_hash_is_sha256_of_the_full_string() {
        // sha256("mock"), as `printf mock | sha256sum` prints it.
        assert_eq!(
            hex::encode(model_hash("mock")),
            "ec864fe99b539704b8872ac591067ef22d836a8d942087f2dba274b301ebe6e5"
        );
        assert_ne!(model_hash("m@1:a"), model_hash("m@1:b"));
    }

    #[test]
    fn headers_carry_every_known_value() {
        let ev = attested();
        let hs = headers(Some(&ev));
        assert_eq!(
            header(&hs, HEADER_IMAGE_HASH),
            Some("ab".repeat(32).as_str())
        );
        assert_eq!(
            header(&hs, HEADER_EVIDENCE_DIGEST),
            Some("cd".repeat(32).as_str())
        );
        assert_eq!(header(&hs, HEADER_EVIDENCE), Some("tdx"));
        let mh = hex::encode(model_hash("Qwen/Qwen3-0.6B@abc:def"));
        assert_eq!(header(&hs, HEADER_MODEL_HASH), Some(mh.as_str()));
    }

    #[test]
    fn unknown_values_are_omitted_not_invented() {
        let ev = WorkerEvidence::from_peer(&AttestedPeer::unattested([1; 32]));
        let hs = headers(Some(&ev));
        assert_eq!(header(&hs, HEADER_EVIDENCE), Some("none"));
        assert_eq!(header(&hs, HEADER_IMAGE_HASH), None);
        assert_eq!(header(&hs, HEADER_EVIDENCE_DIGEST), None);
        assert_eq!(header(&hs, HEADER_MODEL_HASH), None);
        assert!(headers(None).is_empty());
        // No model hash → no v3 info (its model hash is mandatory).
        assert!(info_v3(&ev, [0; 32]).is_none());
    }

    #[test]
    fn v3_info_mirrors_the_headers() {
        let ev = attested();
        let m = info_v3(&ev, [7; 32]).expect("info");
        assert_eq!(m.request_id, [7; 32]);
        assert_eq!(m.evidence_kind, "tdx");
        assert_eq!(m.image_hash, Some([0xab; 32]));
        assert_eq!(m.evidence_digest, Some([0xcd; 32]));
        assert_eq!(Some(m.model_hash), ev.model_hash);
        assert_eq!(m.flags, 0b11);
    }

    #[test]
    fn book_forgets_gone_workers() {
        let book = WorkerEvidenceBook::default();
        book.connected(3, &AttestedPeer::unattested([2; 32]));
        assert_eq!(book.peer(3).map(|e| e.public_key), Some([2; 32]));
        assert_eq!(stats_json(&book, 3, "mock")["kind"], "none");
        book.gone(3);
        assert!(book.peer(3).is_none());
        assert!(stats_json(&book, 3, "mock").is_null());
    }

    #[test]
    fn evidence_headers_are_recognized_in_any_case() {
        assert!(is_evidence_header("x-cocoon-worker-image-hash"));
        assert!(is_evidence_header("X-COCOON-WORKER-EVIDENCE"));
        assert!(!is_evidence_header("X-Cocoon-Worker-Start"));
    }

    #[test]
    fn a_workers_own_evidence_headers_are_replaced() {
        let h = |n: &str, v: &str| HttpHeader {
            name: n.into(),
            value: v.into(),
        };
        let mut resp = vec![
            h("content-type", "application/json"),
            h("x-cocoon-worker-image-hash", "forged"),
            h("X-Cocoon-Worker-Evidence", "tdx"),
            h("X-Cocoon-Worker-Start", "1.0"),
        ];
        let ev = WorkerEvidence::from_peer(&AttestedPeer::unattested([1; 32]));
        merge_into(&mut resp, headers(Some(&ev)));
        assert!(resp.iter().all(|x| x.value != "forged"));
        assert_eq!(header(&resp, HEADER_EVIDENCE), Some("none"));
        assert_eq!(
            resp.iter().filter(|x| is_evidence_header(&x.name)).count(),
            1
        );
        assert_eq!(header(&resp, "X-Cocoon-Worker-Start"), Some("1.0"));
        assert_eq!(header(&resp, "content-type"), Some("application/json"));
    }

    #[test]
    fn kind_names() {
        assert_eq!(kind_name(EvidenceKind::SevSnp), "sev-snp");
        assert_eq!(
            kind_name(EvidenceKind::InsecureSoftware),
            "insecure-software"
        );
        assert_eq!(
            kind_name(EvidenceKind::InsecureSoftwareSev),
            "insecure-software-sev"
        );
    }
}
