//! The sealed path on the worker: opening a request a client sealed to this worker's attested
//! key (`cocoon-sealed`), holding the request to the completion bound the proxy reserved for,
//! sealing every answer part so only that client can read it, and signing the request's receipt.
//!
//! A sealed request arrives as an `http.request` whose Content-Type is
//! [`cocoon_sealed::SEALED_CONTENT_TYPE`] and whose payload is the envelope. Its slot is found by
//! the Ed25519 key of one of this worker's certificates that has not expired
//! ([`cocoon_node::sealing::SealingKeyRing`]: each certificate binds a fresh X25519 key). The
//! plaintext is the app's `http.request`, TL-serialized; from there the request runs like any
//! other. Its JSON body may not ask for more completion tokens than the envelope's clear bound
//! (the proxy reserved for that bound; a body that asks more, or sets none, is given the bound).
//!
//! Answers: each part's bytes become one sealed piece; the part that carries `final_info` is the
//! last piece (empty if nothing is left). Right before the final message the worker sends
//! `proxy.queryReceiptV3` with its signed statement: the envelope's hash, the transcript hash of
//! the pieces, the model and image hashes, the usage it reports, the coefficient and the times.
//! Errors (`queryAnswerErrorEx`) stay in clear: they are the worker's own short messages, never
//! the app's text. Nothing here logs a plaintext or a key.

use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use cocoon_node::sealing::{IdentitySigner, SealingKeyRing};
use cocoon_proto::messages::{HttpRequest, TokensUsed};
use cocoon_ratls::RaTlsIdentity;
use cocoon_sealed::receipt::{Usage, WorkerStatement};
use cocoon_sealed::{AnswerSealer, Padding};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The inner header a client sets when it wants the answer's pieces padded to buckets (it is
/// inside the envelope: the proxy never sees it).
pub(crate) const PAD_ANSWER_HEADER: &str = "X-Cocoon-Pad-Answer";

/// Why a sealed request could not be opened (the message goes back in clear: no app text).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SealedError {
    #[error("no certificate of this worker is among the request's recipients")]
    NotARecipient,
    #[error("this sealed request was already run here (a replay)")]
    Replayed,
    #[error("cannot open the sealed request: {0}")]
    Open(String),
    #[error("the sealed request is not an http.request: {0}")]
    Inner(String),
}

/// The envelope hashes seen, and when each was seen (oldest first).
type Seen = (
    std::collections::HashSet<[u8; 32]>,
    std::collections::VecDeque<([u8; 32], std::time::Instant)>,
);

/// Envelopes this worker opened recently, by hash: a client seals every request under a fresh
/// key, so the same envelope twice is a proxy replaying it (to make this worker run it again).
/// Bounded: the oldest are forgotten past [`ReplayGuard::MAX`] or [`ReplayGuard::WINDOW`] (a
/// replay after that runs again; it costs the proxy, which pays for it and cannot read it).
#[derive(Default)]
pub(crate) struct ReplayGuard {
    seen: Mutex<Seen>,
}

impl ReplayGuard {
    pub const MAX: usize = 65_536;
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

    /// Records `hash` at `now`; `false` when it was seen within the window.
    pub fn first_time(&self, hash: [u8; 32], now: std::time::Instant) -> bool {
        let Ok(mut g) = self.seen.lock() else {
            return true;
        };
        let (set, order) = &mut *g;
        while let Some((h, at)) = order.front().copied() {
            if order.len() < Self::MAX && now.duration_since(at) < Self::WINDOW {
                break;
            }
            order.pop_front();
            set.remove(&h);
        }
        if !set.insert(hash) {
            return false;
        }
        order.push_back((hash, now));
        true
    }
}

/// Whether an `http.request` is a sealed envelope.
pub(crate) fn is_sealed(http: &HttpRequest) -> bool {
    http.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-type")
            && h.value
                .trim()
                .eq_ignore_ascii_case(cocoon_sealed::SEALED_CONTENT_TYPE)
    })
}

/// An opened sealed request: the app's request and the state that seals its answer.
pub(crate) struct Opened {
    pub inner: HttpRequest,
    pub answer: SealedAnswer,
}

/// Opens `envelope` with the first held key whose certificate is one of its recipients.
pub(crate) fn open(
    ring: &SealingKeyRing,
    replays: &ReplayGuard,
    envelope: &[u8],
    model: &str,
    image_hash: impl Fn(&RaTlsIdentity) -> [u8; 32],
    now: SystemTime,
) -> Result<Opened, SealedError> {
    let header =
        cocoon_sealed::read_header(envelope).map_err(|e| SealedError::Open(e.to_string()))?;
    let held = ring.held(now);
    let Some(key) = held
        .iter()
        .find(|k| header.recipients.contains(&k.identity.public_key()))
    else {
        return Err(SealedError::NotARecipient);
    };
    let (plaintext, header, sealer) =
        cocoon_sealed::open_request(envelope, &key.identity.public_key(), &[&key.pair])
            .map_err(|e| SealedError::Open(e.to_string()))?;
    // Only an envelope that opened counts (garbage must not fill the guard).
    let request_hash = cocoon_sealed::envelope_hash(envelope);
    if !replays.first_time(request_hash, std::time::Instant::now()) {
        return Err(SealedError::Replayed);
    }
    let mut inner: HttpRequest = cocoon_tl::from_bytes(&Bytes::from(plaintext))
        .map_err(|e| SealedError::Inner(e.to_string()))?;
    inner.payload = bound_completion(inner.payload, header.max_tokens);
    let pad = inner.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case(PAD_ANSWER_HEADER) && h.value.eq_ignore_ascii_case("buckets")
    });
    inner
        .headers
        .retain(|h| !h.name.eq_ignore_ascii_case(PAD_ANSWER_HEADER));
    let mut sealer = sealer;
    if pad {
        sealer.set_padding(Padding::Buckets);
    }
    Ok(Opened {
        inner,
        answer: SealedAnswer {
            state: Mutex::new(AnswerState {
                sealer,
                last_sent: false,
            }),
            identity: key.identity.clone(),
            request_hash,
            model_hash: Sha256::digest(model.as_bytes()).into(),
            image_hash: image_hash(&key.identity),
        },
    })
}

/// Holds a JSON object body to at most `bound` completion tokens: `max_tokens` and
/// `max_completion_tokens` above the bound (or neither set) become the bound. Anything that is
/// not a JSON object (a transcription form) passes unchanged: it has no such field.
fn bound_completion(body: Bytes, bound: u64) -> Bytes {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    let over = |v: Option<&Value>| v.and_then(Value::as_u64).is_none_or(|n| n > bound);
    let has_any = obj.contains_key("max_tokens") || obj.contains_key("max_completion_tokens");
    let mut changed = false;
    for field in ["max_tokens", "max_completion_tokens"] {
        if obj.contains_key(field) && over(obj.get(field)) {
            obj.insert(field.into(), Value::from(bound));
            changed = true;
        }
    }
    if !has_any {
        obj.insert("max_tokens".into(), Value::from(bound));
        changed = true;
    }
    if !changed {
        return body;
    }
    serde_json::to_vec(&Value::Object(obj)).map_or(body, Bytes::from)
}

struct AnswerState {
    sealer: AnswerSealer,
    last_sent: bool,
}

/// The answer side of one sealed request.
pub(crate) struct SealedAnswer {
    state: Mutex<AnswerState>,
    identity: RaTlsIdentity,
    request_hash: [u8; 32],
    model_hash: [u8; 32],
    image_hash: [u8; 32],
}

impl SealedAnswer {
    /// Seals one part's bytes as the next piece (`last` for the part that ends the answer).
    /// `None` when sealing is impossible (a piece after the last, or too large): the part must
    /// not go out.
    pub fn seal(&self, data: &[u8], last: bool) -> Option<Bytes> {
        let mut st = self.state.lock().ok()?;
        if st.last_sent {
            return None;
        }
        let piece = st.sealer.seal_piece(data, last).ok()?;
        st.last_sent = last;
        Some(Bytes::from(piece))
    }

    /// The signed receipt statement (`WorkerSigned` bytes) for the pieces sealed so far.
    pub fn receipt(
        &self,
        usage: &TokensUsed,
        coefficient: u64,
        started_ms: u64,
        ended_ms: u64,
    ) -> Option<Bytes> {
        let answer_hash = self.state.lock().ok()?.sealer.transcript_hash();
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let statement = WorkerStatement {
            request_hash: self.request_hash,
            answer_hash,
            model_hash: self.model_hash,
            image_hash: self.image_hash,
            usage: Usage {
                prompt_tokens: n(usage.prompt_tokens_used),
                cached_tokens: n(usage.cached_tokens_used),
                completion_tokens: n(usage.completion_tokens_used),
                reasoning_tokens: n(usage.reasoning_tokens_used),
                total_tokens: n(usage.total_tokens_used),
            },
            coefficient,
            started_ms,
            ended_ms,
            worker_key: self.identity.public_key(),
        };
        let signed = statement
            .sign(&IdentitySigner(self.identity.clone()))
            .ok()?;
        Some(Bytes::from(signed.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_attest::NoEvidence;
    use cocoon_proto::messages::{encode, HttpHeader};
    use cocoon_ratls::CertOptions;
    use cocoon_sealed::receipt::WorkerSigned;
    use cocoon_sealed::Recipient;
    use std::time::Duration;

    fn worker(ring: &SealingKeyRing) -> RaTlsIdentity {
        let key = ring.fresh(SystemTime::now() + Duration::from_secs(3600));
        let id = RaTlsIdentity::generate_with(
            &NoEvidence,
            &CertOptions {
                sealing_key: Some(key),
                ..CertOptions::new(Duration::from_secs(3600))
            },
        )
        .unwrap();
        ring.bind(&id);
        id
    }

    fn request(body: &str, pad: bool) -> Vec<u8> {
        let mut headers = vec![HttpHeader {
            name: "Content-Type".into(),
            value: "application/json".into(),
        }];
        if pad {
            headers.push(HttpHeader {
                name: PAD_ANSWER_HEADER.into(),
                value: "buckets".into(),
            });
        }
        encode(&HttpRequest {
            method: "POST".into(),
            url: "/v1/chat/completions".into(),
            http_version: "HTTP/1.1".into(),
            headers,
            payload: Bytes::from(body.to_string()),
        })
        .to_vec()
    }

    fn body_of(o: &Opened) -> Value {
        serde_json::from_slice(&o.inner.payload).unwrap()
    }

    #[test]
    fn the_recipient_opens_answers_and_signs_what_it_sealed() {
        let ring = SealingKeyRing::new();
        let id = worker(&ring);
        let me = Recipient {
            worker_key: id.public_key(),
            sealing_key: id.sealing_key().unwrap(),
        };
        let body = r#"{"model":"m","max_tokens":10,"messages":[]}"#;
        let (envelope, mut opener) =
            cocoon_sealed::seal_request(&request(body, true), 50, &[me], Padding::None).unwrap();
        let opened = open(
            &ring,
            &ReplayGuard::default(),
            &envelope,
            "m@1:2",
            |_| [9; 32],
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(opened.inner.url, "/v1/chat/completions");
        // The pad header is the worker's, not the engine's.
        assert!(opened
            .inner
            .headers
            .iter()
            .all(|h| h.name != PAD_ANSWER_HEADER));
        assert_eq!(body_of(&opened)["max_tokens"], 10);

        let a = opened.answer.seal(b"hello ", false).unwrap();
        let b = opened.answer.seal(b"world", true).unwrap();
        assert!(
            opened.answer.seal(b"more", true).is_none(),
            "nothing after the last piece"
        );
        assert_eq!(opener.open_piece(&a).unwrap().data, b"hello ");
        let last = opener.open_piece(&b).unwrap();
        assert!(last.last);
        assert_eq!(last.data, b"world");

        let usage = TokensUsed {
            prompt_tokens_used: 3,
            cached_tokens_used: 0,
            completion_tokens_used: 2,
            reasoning_tokens_used: 0,
            total_tokens_used: 5,
        };
        let signed = opened.answer.receipt(&usage, 1000, 1, 2).unwrap();
        let signed = WorkerSigned::from_bytes(&signed).unwrap();
        signed.verify().unwrap();
        let s = &signed.statement;
        assert_eq!(s.worker_key, id.public_key());
        assert_eq!(s.request_hash, opener.request_hash());
        assert_eq!(s.answer_hash, opener.transcript_hash());
        assert_eq!(s.model_hash, <[u8; 32]>::from(Sha256::digest(b"m@1:2")));
        assert_eq!(s.image_hash, [9; 32]);
        assert_eq!((s.usage.total_tokens, s.coefficient), (5, 1000));
    }

    #[test]
    fn a_replayed_envelope_is_refused() {
        let ring = SealingKeyRing::new();
        let id = worker(&ring);
        let me = Recipient {
            worker_key: id.public_key(),
            sealing_key: id.sealing_key().unwrap(),
        };
        let guard = ReplayGuard::default();
        let (envelope, _) =
            cocoon_sealed::seal_request(&request("{}", false), 5, &[me], Padding::None).unwrap();
        assert!(open(
            &ring,
            &guard,
            &envelope,
            "m",
            |_| [0; 32],
            SystemTime::now()
        )
        .is_ok());
        assert_eq!(
            open(
                &ring,
                &guard,
                &envelope,
                "m",
                |_| [0; 32],
                SystemTime::now()
            )
            .err(),
            Some(SealedError::Replayed)
        );
        // A fresh envelope of the same request is not a replay.
        let (again, _) =
            cocoon_sealed::seal_request(&request("{}", false), 5, &[me], Padding::None).unwrap();
        assert!(open(&ring, &guard, &again, "m", |_| [0; 32], SystemTime::now()).is_ok());
    }

    #[test]
    fn the_replay_guard_forgets_past_its_window_and_bound() {
        let g = ReplayGuard::default();
        let t = std::time::Instant::now();
        assert!(g.first_time([1; 32], t));
        assert!(!g.first_time([1; 32], t));
        assert!(g.first_time([1; 32], t + ReplayGuard::WINDOW));
        for i in 0..ReplayGuard::MAX as u32 + 10 {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            h[31] = 9;
            g.first_time(h, t + ReplayGuard::WINDOW);
        }
        assert!(g.seen.lock().unwrap().1.len() <= ReplayGuard::MAX);
    }

    #[test]
    fn a_body_is_held_to_the_reserved_bound() {
        let ring = SealingKeyRing::new();
        let id = worker(&ring);
        let me = Recipient {
            worker_key: id.public_key(),
            sealing_key: id.sealing_key().unwrap(),
        };
        for (body, want_tokens, want_completion) in [
            (r#"{"max_tokens":500}"#, Some(50), None),
            (r#"{"max_completion_tokens":7}"#, None, Some(7)),
            (r#"{"max_completion_tokens":70}"#, None, Some(50)),
            (r#"{"max_tokens":-1}"#, Some(50), None),
            (r#"{}"#, Some(50), None),
        ] {
            let (envelope, _) =
                cocoon_sealed::seal_request(&request(body, false), 50, &[me], Padding::None)
                    .unwrap();
            let opened = open(
                &ring,
                &ReplayGuard::default(),
                &envelope,
                "m",
                |_| [0; 32],
                SystemTime::now(),
            )
            .unwrap();
            let v = body_of(&opened);
            assert_eq!(
                v.get("max_tokens").and_then(Value::as_u64),
                want_tokens,
                "{body}"
            );
            assert_eq!(
                v.get("max_completion_tokens").and_then(Value::as_u64),
                want_completion,
                "{body}"
            );
        }
    }

    #[test]
    fn a_request_sealed_to_other_workers_is_refused() {
        let ring = SealingKeyRing::new();
        let _me = worker(&ring);
        let other_ring = SealingKeyRing::new();
        let other = worker(&other_ring);
        let them = Recipient {
            worker_key: other.public_key(),
            sealing_key: other.sealing_key().unwrap(),
        };
        let (envelope, _) =
            cocoon_sealed::seal_request(&request("{}", false), 5, &[them], Padding::None).unwrap();
        assert_eq!(
            open(
                &ring,
                &ReplayGuard::default(),
                &envelope,
                "m",
                |_| [0; 32],
                SystemTime::now()
            )
            .err(),
            Some(SealedError::NotARecipient)
        );
        // A recipient named with another worker's key but our identity: the slot does not open.
        let me = ring.held(SystemTime::now()).remove(0).identity;
        let forged = Recipient {
            worker_key: me.public_key(),
            sealing_key: other.sealing_key().unwrap(),
        };
        let (envelope, _) =
            cocoon_sealed::seal_request(&request("{}", false), 5, &[forged], Padding::None)
                .unwrap();
        assert!(matches!(
            open(
                &ring,
                &ReplayGuard::default(),
                &envelope,
                "m",
                |_| [0; 32],
                SystemTime::now()
            ),
            Err(SealedError::Open(_))
        ));
        assert!(matches!(
            open(
                &ring,
                &ReplayGuard::default(),
                b"garbage",
                "m",
                |_| [0; 32],
                SystemTime::now()
            ),
            Err(SealedError::Open(_))
        ));
    }
}
