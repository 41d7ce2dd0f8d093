//! The core driven without sockets or clock: every ending of a request happens exactly once,
//! releases what it reserved, charges the client what the worker is credited, and is never
//! more than the reservation.

use cocoon_proto::version::Negotiated;
use std::time::Duration;

use bytes::Bytes;
use cocoon_proto::messages::{encode, HttpHeader, HttpResponse, ProxyToClientMessage, TokensUsed};
use proptest::prelude::*;

use super::*;
use crate::state::{ClientAccount, WorkerEntry};

const CLIENT: u64 = 1;
const WORKER: u64 = 2;
const OTHER_WORKER: u64 = 3;

fn rules() -> CoreRules {
    CoreRules {
        pricing: PricingConfig::default(),
        min_request_timeout: Duration::from_secs(5),
        max_request_timeout: Duration::from_secs(3600),
        default_max_tokens: 1000,
        max_requests_per_client: 100,
    }
}

/// What the proxy agrees with a cocoon-rs peer.
const OURS: Negotiated = Negotiated::with_extensions(4);

fn worker(conn: u64, proto: Negotiated) -> WorkerEntry {
    WorkerEntry::new(conn, &format!("w{conn}"), "mock", 1000, 64, proto)
}

/// A core knowing client `c` (credit `credit`) and the workers on `workers`.
fn core_with(credit: u64, workers: &[u64], worker_proto: Negotiated) -> ProxyCore {
    let mut state = ProxyState::default();
    state.clients.insert(
        "c".into(),
        ClientAccount {
            owner: "c".into(),
            credit,
            ..Default::default()
        },
    );
    for w in workers {
        state.workers.insert(*w, worker(*w, worker_proto));
    }
    ProxyCore::new(state, rules(), [9; 32])
}

fn t0() -> Now {
    Now {
        mono: tokio::time::Instant::now(),
        unix: 1_700_000_000.0,
    }
}

fn later(now: Now, secs: u64) -> Now {
    Now {
        mono: now.mono + Duration::from_secs(secs),
        unix: now.unix + secs as f64,
    }
}

const BODY: &str = r#"{"model":"mock","stream":true,"max_tokens":100,"messages":[]}"#;

fn request(client_id: u8, timeout: f64) -> NewRequest {
    NewRequest {
        client_conn: CLIENT,
        client_owner: "c".into(),
        client_proto: OURS,
        model_name: "mock".into(),
        query: crate::rules::tests::query(BODY),
        max_coefficient: 4000,
        max_tokens: 100,
        timeout,
        request_id: [client_id; 32],
        sealed_to: None,
        receipt_signer: None,
    }
}

/// Admits a request and returns the proxy's id for it and the worker it went to.
fn admit(core: &mut ProxyCore, client_id: u8, now: Now) -> ([u8; 32], u64) {
    let effects = core.handle_client_request(request(client_id, 60.0), None, now);
    let mut armed = None;
    let mut run = None;
    for e in &effects {
        match e {
            Effect::ArmTimer { id, after } => armed = Some((*id, *after)),
            Effect::RunOnWorker {
                worker_conn, msg, ..
            } => run = Some((msg.request_id, *worker_conn)),
            _ => {}
        }
    }
    let (id, worker_conn) = run.unwrap_or_else(|| panic!("not admitted: {effects:?}"));
    assert_eq!(armed, Some((id, Duration::from_secs(60))), "deadline armed");
    (id, worker_conn)
}

fn content(text: &str) -> Bytes {
    Bytes::from(format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n"
    ))
}

fn fin(total: i64) -> ProxyQueryFinalInfo {
    ProxyQueryFinalInfo {
        flags: 0,
        tokens_used: TokensUsed {
            total_tokens_used: total,
            ..Default::default()
        },
        worker_debug: None,
        worker_start_time: None,
        worker_end_time: None,
    }
}

fn head(final_info: Option<ProxyQueryFinalInfo>) -> WorkerAnswer {
    WorkerAnswer::Head {
        answer: encode(&HttpResponse {
            http_version: "HTTP/1.1".into(),
            status_code: 200,
            reason: "OK".into(),
            headers: vec![HttpHeader {
                name: "Content-Type".into(),
                value: "text/event-stream".into(),
            }],
            payload: Bytes::new(),
        }),
        final_info,
    }
}

fn part(text: &str, progress: u64, final_info: Option<ProxyQueryFinalInfo>) -> WorkerAnswer {
    WorkerAnswer::Part {
        answer: content(text),
        progress: Some(progress),
        final_info,
    }
}

/// The endings among `effects`.
fn endings(effects: &[Effect]) -> Vec<&Ending> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Ended(e) => Some(&**e),
            _ => None,
        })
        .collect()
}

fn sent_to(effects: &[Effect], conn: u64) -> Vec<&Bytes> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg } if *to == conn => Some(msg),
            _ => None,
        })
        .collect()
}

/// The money adds up: what clients were charged is what workers earned, and with nothing
/// running nothing is reserved or counted as running.
fn assert_books_balance(core: &ProxyCore) {
    let st = &core.state;
    let charged: u64 = st.clients.values().map(|a| a.charged).sum();
    let earned: u64 = st.worker_earned.values().sum();
    assert_eq!(charged, earned, "clients charged vs workers earned");
    for a in st.clients.values() {
        let reserved: u64 = st
            .requests
            .values()
            .filter(|r| r.client_owner == a.owner)
            .map(|r| r.reserved)
            .sum();
        assert_eq!(a.reserved, reserved, "client {} reservation", a.owner);
        let running = st
            .requests
            .values()
            .filter(|r| r.client_owner == a.owner)
            .count();
        assert_eq!(a.running as usize, running, "client {} running", a.owner);
    }
    for w in st.workers.values() {
        let running = st
            .requests
            .values()
            .filter(|r| r.worker_conn == w.conn_id)
            .count();
        assert_eq!(w.running as usize, running, "worker {} running", w.conn_id);
    }
}

/// Every way a request can end, after its head and three content parts were relayed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    FinalPart,
    WorkerErrorWithStatement,
    WorkerErrorSilent,
    Cancel,
    Timeout,
    ClientGone,
    WorkerGone,
    WorkerLost,
    Cut,
}

const ALL_ENDS: [End; 9] = [
    End::FinalPart,
    End::WorkerErrorWithStatement,
    End::WorkerErrorSilent,
    End::Cancel,
    End::Timeout,
    End::ClientGone,
    End::WorkerGone,
    End::WorkerLost,
    End::Cut,
];

fn end(core: &mut ProxyCore, id: [u8; 32], how: End, now: Now) -> Vec<Effect> {
    match how {
        End::FinalPart => core.handle_worker_answer(WORKER, id, part("!", 42, Some(fin(42))), now),
        End::WorkerErrorWithStatement => core.handle_worker_answer(
            WORKER,
            id,
            WorkerAnswer::Error {
                code: 500,
                message: "engine failed".into(),
                final_info: Some(fin(30)),
            },
            now,
        ),
        End::WorkerErrorSilent => core.handle_worker_answer(
            WORKER,
            id,
            WorkerAnswer::Error {
                code: 500,
                message: "engine failed".into(),
                final_info: None,
            },
            now,
        ),
        End::Cancel => core.handle_cancel(CLIENT, [1; 32], now),
        End::Timeout => core.handle_timeout(id, now),
        End::ClientGone => core.handle_client_gone(CLIENT, now),
        End::WorkerGone => core.handle_worker_gone(WORKER, now),
        End::WorkerLost => core.handle_worker_lost(id, now),
        // Progress far past the reservation.
        End::Cut => core.handle_worker_answer(WORKER, id, part("x", 1_000_000, None), now),
    }
}

#[test]
fn every_ending_settles_once_and_the_client_pays_what_the_worker_earns() {
    for how in ALL_ENDS {
        let mut core = core_with(1_000_000, &[WORKER], OURS);
        let now = t0();
        let (id, _) = admit(&mut core, 1, now);
        let reserved = core.state.requests[&id].reserved;
        let relayed = core.handle_worker_answer(WORKER, id, head(None), later(now, 1));
        assert_eq!(sent_to(&relayed, CLIENT).len(), 1, "{how:?}: head relayed");
        for i in 0..3 {
            // An engine that reports usage only at the end: progress 0.
            let e = core.handle_worker_answer(WORKER, id, part("tok", 0, None), later(now, 1));
            assert_eq!(sent_to(&e, CLIENT).len(), 1, "{how:?}: part {i} relayed");
            assert!(endings(&e).is_empty());
        }
        let delivered = core.state.requests[&id].relayed(&core.rules.pricing);
        assert!(delivered > 3, "{how:?}: the proxy counted what it relayed");

        let effects = end(&mut core, id, how, later(now, 2));
        let ends = endings(&effects);
        assert_eq!(ends.len(), 1, "{how:?}: ended once: {effects:?}");
        let e = ends[0];
        let expected = match how {
            End::FinalPart => 42,
            End::WorkerErrorWithStatement => 30,
            End::Cut => reserved,
            _ => delivered,
        };
        assert_eq!(e.settlement.charged_tokens, expected, "{how:?}: charge");
        assert!(e.settlement.charged_tokens <= reserved, "{how:?}: capped");
        assert_eq!(
            e.worker_owner.as_deref(),
            Some("w2"),
            "{how:?}: worker paid"
        );
        let by = match how {
            End::FinalPart => EndedBy::Answered,
            End::WorkerErrorWithStatement | End::WorkerErrorSilent => EndedBy::WorkerError,
            End::Cancel | End::ClientGone => EndedBy::Proxy(errors::CANCELLED),
            End::Timeout => EndedBy::Proxy(errors::TIMEOUT),
            End::WorkerGone | End::WorkerLost => EndedBy::Proxy(errors::BAD_GATEWAY),
            End::Cut => EndedBy::Proxy(errors::RESERVATION_EXCEEDED),
        };
        assert_eq!(e.by, by, "{how:?}");
        // A client that cancelled (or left) is not told again; every other ending is told,
        // and only once the charge is durable (the reply rides on the ending).
        assert_eq!(
            e.reply.is_empty(),
            by == EndedBy::Proxy(errors::CANCELLED),
            "{how:?}"
        );
        assert!(
            sent_to(&effects, CLIENT).is_empty(),
            "{how:?}: nothing ahead of durability"
        );
        // The proxy's endings stop the worker (protocol 3).
        let cancels = sent_to(&effects, WORKER).len();
        assert_eq!(
            cancels,
            usize::from(matches!(by, EndedBy::Proxy(_))),
            "{how:?}"
        );

        assert!(core.state.requests.is_empty());
        assert!(core.state.by_client.is_empty());
        let account = &core.state.clients["c"];
        assert_eq!((account.reserved, account.running), (0, 0), "{how:?}");
        assert_eq!(account.charged, expected, "{how:?}");
        assert_books_balance(&core);

        // Whatever the worker sends for it afterwards finds no request and changes nothing.
        let late = core.handle_worker_answer(WORKER, id, part("late", 999, Some(fin(999))), now);
        assert!(matches!(
            late.as_slice(),
            [Effect::Ignored {
                why: Ignored::NotRunning,
                ..
            }]
        ));
        assert!(
            core.handle_timeout(id, now).is_empty(),
            "{how:?}: one ending"
        );
        assert_eq!(core.state.clients["c"].charged, expected);
    }
}

#[test]
fn a_final_answer_carries_the_proxys_timings_and_follows_the_worker_info() {
    let mut core = core_with(1_000_000, &[WORKER], OURS);
    core.state.workers.get_mut(&WORKER).expect("w").evidence =
        Some(crate::worker_evidence::WorkerEvidence {
            kind: cocoon_attest::EvidenceKind::InsecureSoftware,
            public_key: [1; 32],
            image_hash: None,
            evidence_digest: None,
            model_hash: Some([5; 32]),
            certificate: None,
            sealing_key: None,
        });
    let now = t0();
    let (id, _) = admit(&mut core, 1, now);
    let effects = core.handle_worker_answer(WORKER, id, head(Some(fin(7))), later(now, 3));
    let e = endings(&effects)[0];
    let msgs: Vec<ProxyToClientMessage> = e
        .reply
        .iter()
        .map(|b| cocoon_tl::from_bytes(b).expect("client message"))
        .collect();
    match msgs.as_slice() {
        [ProxyToClientMessage::QueryWorkerInfoV3(_), ProxyToClientMessage::QueryAnswerEx(a)] => {
            let f = a.final_info.as_ref().expect("final info");
            assert_eq!(f.proxy_start_time, Some(now.unix));
            assert_eq!(f.proxy_end_time, Some(now.unix + 3.0));
            let resp: HttpResponse = cocoon_tl::from_bytes(&a.answer).expect("head");
            assert!(
                resp.headers
                    .iter()
                    .any(|h| h.name == "X-Cocoon-Worker-Model-Hash"
                        && h.value == hex::encode([5; 32]))
            );
        }
        other => panic!("expected the worker info, then the answer: {other:?}"),
    }
    assert_eq!(e.settlement.charged_tokens, 7);
    // The worker's mean time to head and duration come from the times passed in.
    assert_eq!(
        core.state.worker_health[&WORKER].mean_time_to_head,
        Some(Duration::from_secs(3))
    );
    assert!((core.state.workers[&WORKER].avg_seconds - 3.0).abs() < 1e-9);
}

#[test]
fn a_worker_cannot_answer_or_end_another_workers_request() {
    let mut core = core_with(1_000_000, &[WORKER, OTHER_WORKER], OURS);
    let now = t0();
    let (id, serving) = admit(&mut core, 1, now);
    let other = if serving == WORKER {
        OTHER_WORKER
    } else {
        WORKER
    };
    for msg in [head(Some(fin(9))), part("x", 5, Some(fin(5)))] {
        let e = core.handle_worker_answer(other, id, msg, now);
        assert!(matches!(
            e.as_slice(),
            [Effect::Ignored {
                why: Ignored::NotItsRequest,
                ..
            }]
        ));
    }
    // The other worker leaving ends nothing of this one's.
    assert!(endings(&core.handle_worker_gone(other, now)).is_empty());
    assert_eq!(core.state.requests.len(), 1);
    assert_eq!(core.state.requests[&id].progress_total, 0);
}

#[test]
fn duplicates_and_a_refusing_proxy_reserve_nothing() {
    let mut core = core_with(1_000_000, &[WORKER], OURS);
    let now = t0();
    admit(&mut core, 1, now);
    let reserved = core.state.clients["c"].reserved;
    let dup = core.handle_client_request(request(1, 60.0), None, now);
    let halted = core.handle_client_request(request(2, 60.0), Some("halted".into()), now);
    for (effects, code) in [(dup, errors::PROTOVIOLATION), (halted, errors::NO_WORKER)] {
        assert!(effects
            .iter()
            .any(|e| matches!(e, Effect::Count(Count::Rejected))));
        let msgs = sent_to(&effects, CLIENT);
        assert_eq!(msgs.len(), 1);
        match cocoon_tl::from_bytes::<ProxyToClientMessage>(msgs[0]).expect("message") {
            ProxyToClientMessage::QueryAnswerErrorEx(e) => assert_eq!(e.error_code, code),
            other => panic!("expected an error, got {other:?}"),
        }
    }
    assert_eq!(core.state.clients["c"].reserved, reserved);
    assert_eq!(core.state.requests.len(), 1);
}

#[test]
fn a_silent_worker_is_suspected_once_at_the_deadline_and_back_when_alive() {
    let mut core = core_with(1_000_000, &[WORKER], OURS);
    let now = t0();
    let (a, _) = admit(&mut core, 1, now);
    let (b, _) = admit(&mut core, 2, now);
    let first = core.handle_timeout(a, later(now, 60));
    assert!(first
        .iter()
        .any(|e| matches!(e, Effect::Suspect { worker_conn } if *worker_conn == WORKER)));
    assert!(core.state.workers[&WORKER].suspect);
    // Already suspect: no second probe.
    let second = core.handle_timeout(b, later(now, 60));
    assert!(!second.iter().any(|e| matches!(e, Effect::Suspect { .. })));
    // Out of rotation: a new request finds no worker.
    let refused = core.handle_client_request(request(3, 60.0), None, now);
    assert!(refused
        .iter()
        .any(|e| matches!(e, Effect::Count(Count::Rejected))));
    core.handle_worker_alive(WORKER);
    admit(&mut core, 4, now);
}

#[test]
fn the_same_seed_gives_the_same_request_ids() {
    let ids = |seed| {
        let mut core = core_with(1_000_000, &[WORKER], OURS);
        core.rng = StdRng::from_seed(seed);
        (1..=3)
            .map(|i| admit(&mut core, i, t0()).0)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids([1; 32]), ids([1; 32]));
    assert_ne!(ids([1; 32]), ids([2; 32]));
}

/// One step of a random run.
#[derive(Clone, Debug)]
enum Step {
    Request(u8),
    Head(u8, bool),
    Part(u8, u64, Option<i64>),
    Error(u8, Option<i64>),
    Cancel(u8),
    Timeout(u8),
    ClientGone,
    WorkerGone(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..4).prop_map(Step::Request),
        (0u8..4, any::<bool>()).prop_map(|(i, f)| Step::Head(i, f)),
        (0u8..4, 0u64..400, proptest::option::of(0i64..5000))
            .prop_map(|(i, p, f)| Step::Part(i, p, f)),
        (0u8..4, proptest::option::of(-5i64..5000)).prop_map(|(i, f)| Step::Error(i, f)),
        (0u8..4).prop_map(Step::Cancel),
        (0u8..4).prop_map(Step::Timeout),
        Just(Step::ClientGone),
        any::<bool>().prop_map(Step::WorkerGone),
    ]
}

proptest! {
    /// Whatever peers do, in any order: each request ends at most once, no charge passes its
    /// reservation, and the books balance after every step.
    #[test]
    fn any_sequence_of_events_keeps_the_books_balanced(steps in proptest::collection::vec(step(), 1..60)) {
        let mut core = core_with(5_000, &[WORKER, OTHER_WORKER], OURS);
        let now = t0();
        // Client request id → (proxy id, serving worker), for requests admitted.
        let mut ids: std::collections::HashMap<u8, ([u8; 32], u64)> = Default::default();
        let mut ended: std::collections::HashSet<[u8; 32]> = Default::default();
        for s in steps {
            let worker_of = |i: &u8| ids.get(i).copied();
            let effects = match s {
                Step::Request(i) => {
                    let effects = core.handle_client_request(request(i, 60.0), None, now);
                    for e in &effects {
                        if let Effect::RunOnWorker { worker_conn, msg, .. } = e {
                            ids.insert(i, (msg.request_id, *worker_conn));
                        }
                    }
                    effects
                }
                Step::Head(i, f) => match worker_of(&i) {
                    Some((id, w)) => core.handle_worker_answer(w, id, head(f.then(|| fin(10))), now),
                    None => Vec::new(),
                },
                Step::Part(i, p, f) => match worker_of(&i) {
                    Some((id, w)) => core.handle_worker_answer(w, id, part("t", p, f.map(fin)), now),
                    None => Vec::new(),
                },
                Step::Error(i, f) => match worker_of(&i) {
                    Some((id, w)) => core.handle_worker_answer(
                        w,
                        id,
                        WorkerAnswer::Error { code: 1, message: "e".into(), final_info: f.map(fin) },
                        now,
                    ),
                    None => Vec::new(),
                },
                Step::Cancel(i) => core.handle_cancel(CLIENT, [i; 32], now),
                Step::Timeout(i) => match worker_of(&i) {
                    Some((id, _)) => core.handle_timeout(id, now),
                    None => Vec::new(),
                },
                Step::ClientGone => core.handle_client_gone(CLIENT, now),
                Step::WorkerGone(first) => {
                    core.handle_worker_gone(if first { WORKER } else { OTHER_WORKER }, now)
                }
            };
            for e in endings(&effects) {
                prop_assert!(ended.insert(e.id), "a request ended twice");
                prop_assert!(e.settlement.charged_tokens <= e.req.reserved);
            }
            assert_books_balance(&core);
            prop_assert!(core.state.clients["c"].charged <= 5_000, "charged beyond credit");
        }
    }
}

/// The private key (seed) the proxy hands a worker with each request it sends there.
fn run_key(effects: &[Effect]) -> Option<(u64, Option<[u8; 32]>)> {
    effects.iter().find_map(|e| match e {
        Effect::RunOnWorker {
            worker_conn, msg, ..
        } => Some((*worker_conn, msg.private_key)),
        _ => None,
    })
}

#[test]
fn requests_carry_the_key_field_exactly_to_workers_at_protocol_3_and_above() {
    let now = t0();
    // Upstream 9060ce5 worker (4, no extensions): every request carries the key, zeros in clear.
    let mut core = core_with(1_000_000, &[WORKER], Negotiated::upstream(4));
    let effects = core.handle_client_request(request(1, 60.0), None, now);
    assert_eq!(run_key(&effects), Some((WORKER, Some([0; 32]))));
    // A b75d444 worker (2) would read the 32 bytes as trailing garbage: no key field.
    let mut core = core_with(1_000_000, &[WORKER], Negotiated::upstream(2));
    let effects = core.handle_client_request(request(1, 60.0), None, now);
    assert_eq!(run_key(&effects), Some((WORKER, None)));
}

#[test]
fn encrypted_requests_need_a_held_unexpired_key_and_a_worker_that_takes_it() {
    let now = t0();
    let key = NetworkKey {
        public: [0xfb; 32],
        seed: [0x07; 32],
        valid_until: now.unix as u32 + 3600,
    };
    let sealed = |client_id: u8, to: [u8; 32]| NewRequest {
        sealed_to: Some(to),
        ..request(client_id, 60.0)
    };
    let mut state_workers = core_with(1_000_000, &[WORKER], Negotiated::upstream(2));
    state_workers
        .state
        .workers
        .insert(OTHER_WORKER, worker(OTHER_WORKER, Negotiated::upstream(3)));
    let mut core = state_workers;
    core.set_network_keys(vec![key.clone()]);
    assert_eq!(core.network_keys(), vec![(key.public, key.valid_until)]);
    // Sealed to a key we hold: only the protocol-3 worker can take it, and gets the seed.
    for id in 1..=4 {
        let effects = core.handle_client_request(sealed(id, key.public), None, now);
        assert_eq!(
            run_key(&effects),
            Some((OTHER_WORKER, Some(key.seed))),
            "{id}"
        );
    }
    // Sealed to a key we do not hold, or one that expired: refused with upstream's error.
    let unknown = core.handle_client_request(sealed(9, [0xca; 32]), None, now);
    let expired = core.handle_client_request(sealed(10, key.public), None, later(now, 7200));
    for effects in [unknown, expired] {
        assert!(run_key(&effects).is_none());
        let msgs = sent_to(&effects, CLIENT);
        match cocoon_tl::from_bytes::<ProxyToClientMessage>(msgs[0]).expect("message") {
            ProxyToClientMessage::QueryAnswerErrorEx(e) => {
                assert_eq!(e.error_code, errors::ERROR);
                assert!(e.error.starts_with("unknown public key "), "{}", e.error);
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
    // Nothing was reserved for the refusals.
    assert_eq!(core.state.requests.len(), 4);
}

// --- the sealed path ---

mod sealed {
    use super::*;
    use cocoon_proto::messages::HttpRequest;
    use cocoon_sealed::receipt::{Usage, WorkerStatement};
    use cocoon_sealed::{Padding, Recipient, SealingKeyPair};
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn ed(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("key")
    }

    fn key_of(k: &Ed25519KeyPair) -> [u8; 32] {
        KeyPair::public_key(k).as_ref().try_into().expect("32")
    }

    /// Gives worker `conn` an attested identity with Ed25519 key `key`.
    fn attest(core: &mut ProxyCore, conn: u64, key: [u8; 32]) {
        core.state.workers.get_mut(&conn).expect("w").evidence =
            Some(crate::worker_evidence::WorkerEvidence {
                kind: cocoon_attest::EvidenceKind::InsecureSoftware,
                public_key: key,
                image_hash: Some([4; 32]),
                evidence_digest: None,
                model_hash: Some([5; 32]),
                certificate: None,
                sealing_key: Some([6; 32]),
            });
    }

    /// A sealed `http.request` to the workers with these Ed25519 keys.
    fn sealed_query(to: &[[u8; 32]], max_tokens: u64) -> (Bytes, Vec<u8>) {
        let recipients: Vec<Recipient> = to
            .iter()
            .map(|k| Recipient {
                worker_key: *k,
                sealing_key: SealingKeyPair::generate().public(),
            })
            .collect();
        let (envelope, _) =
            cocoon_sealed::seal_request(b"inner request", max_tokens, &recipients, Padding::None)
                .expect("seal");
        let q = encode(&HttpRequest {
            method: "POST".into(),
            url: "/v1/sealed".into(),
            http_version: "HTTP/1.0".into(),
            headers: vec![HttpHeader {
                name: "Content-Type".into(),
                value: cocoon_sealed::SEALED_CONTENT_TYPE.into(),
            }],
            payload: Bytes::from(envelope.clone()),
        });
        (q, envelope)
    }

    fn sealed_request(client_id: u8, query: Bytes, signer: Option<ReceiptSigner>) -> NewRequest {
        NewRequest {
            query,
            max_tokens: 0,
            receipt_signer: signer,
            ..request(client_id, 60.0)
        }
    }

    fn runs_on(effects: &[Effect]) -> Option<u64> {
        effects.iter().find_map(|e| match e {
            Effect::RunOnWorker { worker_conn, .. } => Some(*worker_conn),
            _ => None,
        })
    }

    fn error_code(effects: &[Effect]) -> Option<i32> {
        effects.iter().find_map(|e| match e {
            Effect::Send { msg, .. } => match cocoon_tl::from_bytes::<ProxyToClientMessage>(msg) {
                Ok(ProxyToClientMessage::QueryAnswerErrorEx(m)) => Some(m.error_code),
                _ => None,
            },
            _ => None,
        })
    }

    #[test]
    fn a_sealed_request_goes_only_to_a_worker_it_was_sealed_to() {
        let (a, b) = (ed(1), ed(2));
        for _ in 0..20 {
            let mut core = core_with(1_000_000, &[WORKER, OTHER_WORKER], OURS);
            attest(&mut core, WORKER, key_of(&a));
            attest(&mut core, OTHER_WORKER, key_of(&b));
            let (q, _) = sealed_query(&[key_of(&b)], 50);
            let effects = core.handle_client_request(sealed_request(1, q, None), None, t0());
            assert_eq!(runs_on(&effects), Some(OTHER_WORKER), "{effects:?}");
        }
        // Sealed to nobody here: refused, not sent to a worker that cannot open it.
        let mut core = core_with(1_000_000, &[WORKER], OURS);
        attest(&mut core, WORKER, key_of(&a));
        let (q, _) = sealed_query(&[key_of(&b)], 50);
        let effects = core.handle_client_request(sealed_request(1, q, None), None, t0());
        assert_eq!(runs_on(&effects), None);
        assert_eq!(error_code(&effects), Some(errors::NO_WORKER));
        // A worker without our extensions never gets one, even when its key matches.
        let mut core = core_with(1_000_000, &[WORKER], Negotiated::upstream(4));
        attest(&mut core, WORKER, key_of(&a));
        let (q, _) = sealed_query(&[key_of(&a)], 50);
        let effects = core.handle_client_request(sealed_request(1, q, None), None, t0());
        assert_eq!(runs_on(&effects), None);
    }

    #[test]
    fn a_malformed_envelope_is_refused_and_the_clear_bound_is_reserved() {
        let a = ed(1);
        let mut core = core_with(1_000_000, &[WORKER], OURS);
        attest(&mut core, WORKER, key_of(&a));
        let (q, _) = sealed_query(&[key_of(&a)], 50);
        // Truncated envelope.
        let mut http: HttpRequest = cocoon_tl::from_bytes(&q).expect("http");
        http.payload = http.payload.slice(..http.payload.len() - 1);
        let effects =
            core.handle_client_request(sealed_request(1, encode(&http), None), None, t0());
        assert_eq!(error_code(&effects), Some(errors::PROTOVIOLATION));
        // A good one reserves for the envelope's bound (50), not the configured cap (1000).
        let effects = core.handle_client_request(sealed_request(2, q.clone(), None), None, t0());
        assert_eq!(runs_on(&effects), Some(WORKER));
        let reserved = core.state.clients["c"].reserved;
        let small = crate::state::reservation(
            50,
            crate::rules::sealed_prompt_bytes(q.len(), 1),
            1000,
            &core.rules.pricing,
        );
        assert_eq!(reserved, small);
    }

    #[test]
    fn the_workers_receipt_is_countersigned_with_the_charge_and_precedes_the_final_answer() {
        let (w, p, stranger) = (ed(1), ed(2), ed(3));
        let mut core = core_with(1_000_000, &[WORKER], OURS);
        attest(&mut core, WORKER, key_of(&w));
        let (q, envelope) = sealed_query(&[key_of(&w)], 50);
        let signer = ReceiptSigner(Arc::new(ed(2)));
        let now = t0();
        let effects = core.handle_client_request(sealed_request(1, q, Some(signer)), None, now);
        let id = effects
            .iter()
            .find_map(|e| match e {
                Effect::RunOnWorker { msg, .. } => Some(msg.request_id),
                _ => None,
            })
            .expect("admitted");
        let statement = |by: &Ed25519KeyPair| WorkerStatement {
            request_hash: cocoon_sealed::envelope_hash(&envelope),
            answer_hash: [1; 32],
            model_hash: [5; 32],
            image_hash: [4; 32],
            usage: Usage {
                total_tokens: 9,
                ..Usage::default()
            },
            coefficient: 1000,
            started_ms: 1,
            ended_ms: 2,
            worker_key: key_of(by),
        };
        // Signed by another key than the worker's attested one: ignored.
        let forged = statement(&stranger)
            .sign(&stranger)
            .expect("sign")
            .to_bytes();
        let e = core.handle_worker_receipt(WORKER, id, &forged);
        assert!(
            matches!(
                e[..],
                [Effect::Ignored {
                    why: Ignored::BadReceipt,
                    ..
                }]
            ),
            "{e:?}"
        );
        // Garbage, and another worker's connection: ignored.
        let e = core.handle_worker_receipt(WORKER, id, b"garbage");
        assert!(matches!(
            e[..],
            [Effect::Ignored {
                why: Ignored::BadReceipt,
                ..
            }]
        ));
        let good = statement(&w).sign(&w).expect("sign").to_bytes();
        let e = core.handle_worker_receipt(OTHER_WORKER, id, &good);
        assert!(matches!(
            e[..],
            [Effect::Ignored {
                why: Ignored::NotItsRequest,
                ..
            }]
        ));
        assert!(core.handle_worker_receipt(WORKER, id, &good).is_empty());
        // A second one is not taken.
        let e = core.handle_worker_receipt(WORKER, id, &good);
        assert!(matches!(
            e[..],
            [Effect::Ignored {
                why: Ignored::BadReceipt,
                ..
            }]
        ));

        core.handle_worker_answer(WORKER, id, head(None), now);
        let effects = core.handle_worker_answer(WORKER, id, part("x", 9, Some(fin(9))), now);
        let ending = endings(&effects)[0];
        let first: ProxyToClientMessage = cocoon_tl::from_bytes(&ending.reply[0]).expect("decodes");
        let ProxyToClientMessage::QueryReceiptV3(r) = first else {
            panic!("the receipt goes first: {first:?}");
        };
        assert_eq!(r.request_id, [1; 32], "the client's own request id");
        let receipt = cocoon_sealed::receipt::Receipt::from_bytes(&r.receipt).expect("receipt");
        receipt.verify().expect("both signatures");
        assert_eq!(receipt.proxy.proxy_key, key_of(&p));
        assert_eq!(receipt.proxy.charge, ending.settlement.client_cost);
        assert_eq!(
            receipt.proxy.price_per_token,
            core.rules.pricing.price_per_token
        );
        assert_eq!(ending.receipt_id, Some(receipt.id()));
        // The answer that ends the request still comes after it.
        assert!(ending.reply.len() >= 2);
    }
}
