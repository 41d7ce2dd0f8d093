//! Hostile workers against a real proxy process (docs/SECURITY.md): [`HostileWorker`] speaks
//! the whole worker protocol — PoW, RA-TLS with the dev attestation (software evidence, as the
//! proxy's worker port demands), Cocoon framing, TL, the worker handshake of
//! `crates/worker/src/proxy_link.rs` — and answers the proxy's `proxy.runQueryEx` as each test
//! tells it: honestly (a head `proxy.queryAnswerEx` with an `http.response`, parts
//! `proxy.queryAnswerPartV3` with progress, a final part with `proxy.queryFinalInfo`) or not.
//!
//! Every test runs a harness network (a real proxy, an honest real worker serving `mock`, the
//! real client) plus hostile worker connections serving their own model names, so which worker
//! a request reaches is decided by its model and never by chance. Requests to a hostile worker
//! come from `alice`, a protocol-level client ([`HostileClient`], behaving) whose account and
//! answers the test reads exactly. Each test asserts that the attack fails, that the honest
//! client kept being served, and that the books balance.
//!
//! What does not live here: hostile clients (`hostile.rs`), and attacks on the proxy's rules
//! without sockets (`crates/proxy/src/client_conn/tests.rs`, `worker_conn/tests.rs`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use cocoon_node::errors;
use cocoon_node::net::{self, AttestedSession, DialConfig};
use cocoon_node::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
use cocoon_proto::messages::{
    encode, HttpHeader, HttpResponse, ProxyQueryAnswerErrorEx, ProxyQueryAnswerEx,
    ProxyQueryAnswerPartV3, ProxyQueryFinalInfo, ProxyRunQueryEx, ProxyToWorkerMessage, TokensUsed,
    WorkerCompareBalanceWithProxy, WorkerCompareBalanceWithProxyResult, WorkerConnectToProxy,
    WorkerConnectedToProxy, WorkerParams, WorkerPaymentStatus, WorkerProxyHandshakeComplete,
    WorkerProxyHandshakeCompleted, WorkerUpdatePaymentStatus,
};
use cocoon_proto::session::{Inbound, InboundMessage, QueryError, Session, SessionConfig};
use cocoon_testkit::{chat_request, eventually};

use crate::harness::Net;
use crate::hostile::{entry, honest_client_is_served, ClientAnswer, HostileClient};

/// How long a hostile worker waits for the proxy's answer to one handshake query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol a hostile worker speaks: upstream's latest, with the cocoon-rs extensions (whose
/// parts carry the usage delivered so far).
const PROTO: i32 = cocoon_proto::version::PROTO_MAX;

/// How soon a client must hear that its worker failed it (the proxy ends a request the moment
/// its worker's connection ends; anything near a request timeout would be a hang).
const PROMPTLY: Duration = Duration::from_secs(3);

/// A worker statement far above any reservation (H2).
const ABSURD_USAGE: i64 = 5_000_000_000_000;

/// The client account that sends requests to hostile workers.
const ALICE: &str = "alice";
const ALICE_SECRET: &str = "alice-secret";

/// A worker connection to a real proxy that does what a test tells it, right or wrong.
pub struct HostileWorker {
    session: Session,
    inbound: Inbound,
    /// `proxy.cancelQueryV3` ids received so far.
    pub cancelled: Vec<[u8; 32]>,
}

impl HostileWorker {
    /// Dials a proxy's worker port (PoW, RA-TLS with software evidence), frames capped at
    /// Cocoon's 16 MiB.
    pub async fn dial(port: u16) -> Result<Self, net::NetError> {
        Self::dial_with_frame_limit(port, SessionConfig::dialer().max_frame_len).await
    }

    /// [`HostileWorker::dial`] with our side's frame cap at `max_frame_len` (above the proxy's,
    /// to send it a frame it must refuse).
    pub async fn dial_with_frame_limit(
        port: u16,
        max_frame_len: usize,
    ) -> Result<Self, net::NetError> {
        let att = AttestationConfig::dev(
            EvidenceChoice::InsecureSoftware,
            PeerPolicyChoice::InsecureSoftware,
        );
        let identity = att.identity().expect("identity");
        let tls = cocoon_ratls::client_config(&identity, att.verifier().expect("verifier"))
            .expect("tls config");
        let cfg = DialConfig {
            max_pow_difficulty: 28,
            tls,
            connect_timeout: Duration::from_secs(5),
            pow_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            session: SessionConfig {
                max_frame_len,
                ..SessionConfig::dialer()
            },
        };
        let AttestedSession {
            session, inbound, ..
        } = net::dial(&format!("127.0.0.1:{port}"), &cfg).await?;
        Ok(Self {
            session,
            inbound,
            cancelled: Vec::new(),
        })
    }

    /// Dials `port` and completes the worker handshake as `owner` serving `model` (coefficient
    /// 1000, protocol 3): the proxy routes requests for `model` here from then on.
    pub async fn join(port: u16, owner: &str, model: &str) -> Self {
        let w = Self::dial(port).await.expect("dial the worker port");
        w.connect_to_proxy(owner, model)
            .await
            .expect("worker.connectToProxy answered");
        w.complete_handshake()
            .await
            .expect("worker handshake completed");
        w
    }

    /// `worker.connectToProxy` as `owner` serving `model` (on a live connection: the attack).
    pub async fn connect_to_proxy(
        &self,
        owner: &str,
        model: &str,
    ) -> Result<WorkerConnectedToProxy, QueryError> {
        let params = WorkerParams {
            flags: cocoon_proto::version::EXTENSIONS_FLAG,
            worker_owner_address: owner.into(),
            model: model.into(),
            coefficient: 1000,
            is_test: Some(true),
            proxy_cnt: Some(1),
            max_active_requests: Some(16),
            min_proto_version: Some(PROTO),
            max_proto_version: Some(PROTO),
            machine_description_json: None,
        };
        let answer = self
            .session
            .query(encode(&WorkerConnectToProxy { params }), QUERY_TIMEOUT)
            .await?;
        Ok(cocoon_tl::from_bytes(&answer).expect("worker.connectedToProxy"))
    }

    /// The rest of our worker's handshake without payments: `compareBalanceWithProxy` with
    /// zeros, then `proxyHandshakeComplete` (enabled).
    pub async fn complete_handshake(&self) -> Result<(), QueryError> {
        let answer = self
            .session
            .query(
                encode(&WorkerCompareBalanceWithProxy {
                    tokens_committed_to_blockchain: 0,
                    tokens_committed_to_db: 0,
                    max_tokens: 0,
                }),
                QUERY_TIMEOUT,
            )
            .await?;
        let compared: WorkerCompareBalanceWithProxyResult =
            cocoon_tl::from_bytes(&answer).expect("worker.compareBalanceWithProxyResult");
        assert_eq!(compared.error_code, 0, "the proxy disputed zero balances");
        self.send_handshake_complete().await
    }

    /// `worker.proxyHandshakeComplete` (a second one on a live connection: the attack).
    pub async fn send_handshake_complete(&self) -> Result<(), QueryError> {
        let answer = self
            .session
            .query(
                encode(&WorkerProxyHandshakeComplete { is_disabled: false }),
                QUERY_TIMEOUT,
            )
            .await?;
        let _: WorkerProxyHandshakeCompleted =
            cocoon_tl::from_bytes(&answer).expect("worker.proxyHandshakeCompleted");
        Ok(())
    }

    /// What the proxy's books say this connection's owner earned (`worker.updatePaymentStatus`
    /// after `connectToProxy`: without payments, `db_tokens` is the owner's earned tokens).
    pub async fn earned(&self) -> i64 {
        let answer = self
            .session
            .query(encode(&WorkerUpdatePaymentStatus), QUERY_TIMEOUT)
            .await
            .expect("worker.updatePaymentStatus answered");
        let status: WorkerPaymentStatus =
            cocoon_tl::from_bytes(&answer).expect("worker.paymentStatus");
        status.db_tokens
    }

    /// The next request the proxy sends within `limit`; payment notices and cancels on the way
    /// are recorded or skipped, and the proxy's liveness probes are answered as our worker does
    /// (with an error). `None`: nothing in time, or the session closed.
    pub async fn next_request(&mut self, limit: Duration) -> Option<ProxyRunQueryEx> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inbound.recv())
                .await
                .ok()??;
            let data = match msg {
                InboundMessage::Packet(data) => data,
                InboundMessage::Query(q) => {
                    q.error(errors::PROTOVIOLATION, "worker: unexpected query".into())
                        .await;
                    continue;
                }
            };
            match cocoon_tl::from_bytes(&data).expect("a proxy packet we can decode") {
                ProxyToWorkerMessage::RunQueryEx(q) => return Some(q),
                ProxyToWorkerMessage::CancelQueryV3(c) => self.cancelled.push(c.request_id),
                _ => {}
            }
        }
    }

    /// Sends `msg` as a packet (any bytes: the attack may be that they are not TL).
    pub async fn send_raw(&self, msg: Bytes) {
        // The proxy may close the session while it is still being written: that is the point.
        let _ = self.session.send(msg).await;
    }

    /// The head of a 200 SSE answer for request `id`.
    pub async fn head(&self, id: [u8; 32]) {
        let head = HttpResponse {
            http_version: "HTTP/1.1".into(),
            status_code: 200,
            reason: "OK".into(),
            headers: vec![HttpHeader {
                name: "Content-Type".into(),
                value: "text/event-stream".into(),
            }],
            payload: Bytes::new(),
        };
        self.send_raw(encode(&ProxyQueryAnswerEx {
            request_id: id,
            answer: encode(&head),
            flags: 0,
            final_info: None,
        }))
        .await;
    }

    /// A body part for request `id` stating `progress` tokens delivered so far; final, stating
    /// `stated` tokens in all, when `stated` is given.
    pub async fn part(&self, id: [u8; 32], body: &str, progress: i64, stated: Option<i64>) {
        self.send_raw(encode(&ProxyQueryAnswerPartV3 {
            request_id: id,
            answer: Bytes::from(body.to_string()),
            flags: 0,
            progress: tokens(progress),
            final_info: stated.map(final_info),
        }))
        .await;
    }

    /// Fails request `id` with `code`, stating `stated` tokens delivered when given.
    pub async fn error(&self, id: [u8; 32], code: i32, stated: Option<i64>) {
        self.send_raw(encode(&ProxyQueryAnswerErrorEx {
            request_id: id,
            error_code: code,
            error: "worker: failed on purpose".into(),
            flags: 0,
            final_info: stated.map(final_info),
        }))
        .await;
    }

    /// Answers request `id` as an honest worker would: a head, one SSE part per word (progress
    /// one token each), then `[DONE]` in a final part stating `stated` tokens. Returns the body
    /// sent.
    pub async fn answer_honestly(&self, id: [u8; 32], words: &[&str], stated: i64) -> String {
        self.head(id).await;
        let mut body = String::new();
        for (i, w) in words.iter().enumerate() {
            let part = sse_content(w);
            self.part(id, &part, i as i64 + 1, None).await;
            body.push_str(&part);
        }
        self.part(id, SSE_DONE, words.len() as i64, Some(stated))
            .await;
        body.push_str(SSE_DONE);
        body
    }

    /// Closes this connection from the worker's side.
    pub fn disconnect(&self) {
        self.session.close();
    }

    /// Whether the proxy closed this connection within `limit` (reading and dropping anything
    /// it still sends).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            while self.inbound.recv().await.is_some() {}
        })
        .await
        .is_ok()
    }
}

const SSE_DONE: &str = "data: [DONE]\n\n";

/// One SSE chunk carrying `text` as content, as engines stream it.
fn sse_content(text: &str) -> String {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n")
}

fn tokens(total: i64) -> TokensUsed {
    TokensUsed {
        total_tokens_used: total,
        completion_tokens_used: total,
        ..TokensUsed::default()
    }
}

fn final_info(total: i64) -> ProxyQueryFinalInfo {
    ProxyQueryFinalInfo {
        flags: 0,
        tokens_used: tokens(total),
        worker_debug: None,
        worker_start_time: None,
        worker_end_time: None,
    }
}

/// A network with `alice` among the proxy's clients (one honest real worker serving `mock`).
async fn network(name: &str) -> Net {
    Net::builder()
        .extra_clients(vec![entry(ALICE, ALICE_SECRET)])
        .start(name)
        .await
}

/// `alice`, connected and authorized.
async fn alice(net: &Net) -> HostileClient {
    let alice = HostileClient::dial(net.proxy_client_port, EvidenceChoice::None)
        .await
        .expect("dial the client port");
    alice.connect(ALICE).await.expect("connect");
    assert!(alice.authorize(ALICE_SECRET).await.expect("authorize"));
    alice
}

/// Client `owner`'s entry in the proxy's `/jsonstats`.
async fn account(net: &Net, owner: &str) -> serde_json::Value {
    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    s["clients"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["owner"] == owner).cloned())
        .unwrap_or_else(|| panic!("no account for {owner}: {s}"))
}

/// A number in a stats object (0 when missing).
fn num(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The proxy's whole `/jsonstats`.
async fn proxy_stats(net: &Net) -> serde_json::Value {
    net.json(&format!("{}/jsonstats", net.proxy_stats)).await
}

/// What the proxy's books say `owner` earned as a worker: asked on a fresh connection that
/// names `owner` (the connection it served on may be gone).
async fn earned_by(net: &Net, owner: &str) -> i64 {
    let w = HostileWorker::dial(net.proxy_worker_port)
        .await
        .expect("dial the worker port");
    w.connect_to_proxy(owner, "probe")
        .await
        .expect("worker.connectToProxy answered");
    let earned = w.earned().await;
    w.disconnect();
    earned
}

/// Asserts that `alice` is served by the honest worker: a `mock` request answered 200 with a
/// body, charged.
async fn alice_is_served_by_the_honest_worker(alice: &mut HostileClient) {
    let id = alice.run_query("mock", true, 16).await;
    let a = alice.answer(id, Duration::from_secs(15)).await;
    assert_eq!(a.status, Some(200), "alice's mock request: {a:?}");
    assert!(a.completed && a.error.is_none(), "not completed: {a:?}");
    assert!(a.text().contains("[DONE]"), "incomplete body: {a:?}");
}

/// H2, L3: a worker states a final usage of 5·10¹² tokens for a request reserved for a few
/// hundred, states as much in an error, and reports that much progress mid-stream. The client
/// is charged the reservation each time, never more; the two statements are counted in
/// `usage_over_reservation`; the mid-stream lie cuts the stream (1509); the worker earns what
/// the client paid; the proxy keeps serving everyone and the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_lying_about_usage_charges_at_most_the_reservation_on_a_real_proxy() {
    let net = network("hostile-worker-usage").await;
    let mut liar = HostileWorker::join(net.proxy_worker_port, "liar", "hostile").await;
    let mut alice = alice(&net).await;

    // 1. A final part stating 5e12 tokens.
    let cid = alice.run_query("hostile", true, 100).await;
    let run = liar
        .next_request(Duration::from_secs(10))
        .await
        .expect("the request reaches the hostile worker");
    let reserved = num(&account(&net, ALICE).await["reserved"]);
    assert!(
        reserved > 0 && reserved < 10_000,
        "reservation of a 100-token request: {reserved}"
    );
    liar.head(run.request_id).await;
    liar.part(run.request_id, &sse_content("x"), 1, None).await;
    liar.part(run.request_id, SSE_DONE, ABSURD_USAGE, Some(ABSURD_USAGE))
        .await;
    let a = alice.answer(cid, Duration::from_secs(10)).await;
    assert!(a.completed, "the answer itself is relayed: {a:?}");
    assert_eq!(
        a.charged,
        Some(reserved as i64),
        "charged the reservation: {a:?}"
    );

    // 2. An error stating 5e12 tokens.
    let cid = alice.run_query("hostile", true, 100).await;
    let run = liar
        .next_request(Duration::from_secs(10))
        .await
        .expect("second request");
    liar.head(run.request_id).await;
    liar.error(run.request_id, errors::BAD_GATEWAY, Some(ABSURD_USAGE))
        .await;
    let a = alice.answer(cid, Duration::from_secs(10)).await;
    assert_eq!(a.error.as_ref().map(|e| e.0), Some(errors::BAD_GATEWAY));
    assert_eq!(a.charged, Some(reserved as i64), "{a:?}");

    // 3. Progress of 5e12 tokens on a part that is not final: the stream is cut there.
    let cid = alice.run_query("hostile", true, 100).await;
    let run = liar
        .next_request(Duration::from_secs(10))
        .await
        .expect("third request");
    liar.head(run.request_id).await;
    liar.part(run.request_id, &sse_content("y"), ABSURD_USAGE, None)
        .await;
    let a = alice.answer(cid, Duration::from_secs(10)).await;
    assert_eq!(
        a.error.as_ref().map(|e| e.0),
        Some(errors::RESERVATION_EXCEEDED),
        "the stream is cut: {a:?}"
    );
    assert!(
        !a.text().contains('y'),
        "the part past the reservation was relayed: {a:?}"
    );
    assert!(
        a.charged.is_some_and(|c| c as u64 <= reserved),
        "charged above the reservation: {a:?}"
    );
    let cut_charge = a.charged.unwrap_or_default() as u64;
    let told_by = Instant::now() + Duration::from_secs(5);
    while !liar.cancelled.contains(&run.request_id) && Instant::now() < told_by {
        let _ = liar.next_request(Duration::from_millis(200)).await;
    }
    assert!(
        liar.cancelled.contains(&run.request_id),
        "the worker was not told to stop the cut stream"
    );

    let s = proxy_stats(&net).await;
    assert_eq!(num(&s["usage_over_reservation"]), 2, "{s}");
    let acc = account(&net, ALICE).await;
    let charged = 2 * reserved + cut_charge;
    assert_eq!(num(&acc["charged"]), charged, "alice's account: {acc}");
    assert_eq!(num(&acc["reserved"]), 0, "reservations released: {acc}");
    assert_eq!(
        liar.earned().await,
        charged as i64,
        "the liar earns the same"
    );

    alice_is_served_by_the_honest_worker(&mut alice).await;
    honest_client_is_served(&net, 2).await;
    net.assert_books_balance(&net.proxy_stats).await;
}

/// Worker answers for ids it was not given: a worker sends heads, parts, final parts and errors
/// carrying random ids, alice's own client-side request id, and the proxy's id of a request
/// running on another worker (which it cannot learn in the wild: the test hands it over, the
/// worst case). Nothing of it reaches alice or is charged; the victim's request completes with
/// the victim's body and charge; the thief earns nothing; the honest client, served meanwhile,
/// and the books are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cannot_answer_or_settle_requests_it_was_not_given_on_a_real_proxy() {
    let net = network("hostile-worker-ids").await;
    let mut victim = HostileWorker::join(net.proxy_worker_port, "victim", "victim").await;
    let thief = HostileWorker::join(net.proxy_worker_port, "thief", "hostile").await;
    let mut alice = alice(&net).await;

    let cid = alice.run_query("victim", true, 100).await;
    let run = victim
        .next_request(Duration::from_secs(10))
        .await
        .expect("the request reaches the victim");
    let not_given: [[u8; 32]; 4] = [run.request_id, cid, rand::random(), rand::random()];
    let attack = async {
        for _ in 0..5 {
            for id in not_given {
                thief.head(id).await;
                thief.part(id, &sse_content("stolen"), 1, None).await;
                thief.part(id, SSE_DONE, 50, Some(50)).await;
                thief.error(id, errors::BAD_GATEWAY, Some(50)).await;
            }
        }
    };
    tokio::join!(attack, honest_client_is_served(&net, 4));
    if let Some(m) = alice.next_message(Duration::from_millis(500)).await {
        panic!("a message reached alice from a worker her request never went to: {m:?}");
    }

    let body = victim
        .answer_honestly(run.request_id, &["honest", "answer"], 7)
        .await;
    let a = alice.answer(cid, Duration::from_secs(10)).await;
    assert_eq!(a.status, Some(200), "{a:?}");
    assert!(a.completed, "{a:?}");
    assert_eq!(a.text(), body, "the body is the victim's, whole");
    assert_eq!(a.charged, Some(7), "charged the victim's statement: {a:?}");
    assert_eq!(num(&account(&net, ALICE).await["charged"]), 7);
    assert_eq!(thief.earned().await, 0, "the thief earned something");
    assert_eq!(victim.earned().await, 7);
    let log = std::fs::read_to_string(&net.proxy.log).unwrap_or_default();
    assert!(
        log.contains("not its own"),
        "the proxy did not log the answers for another worker's request"
    );

    alice_is_served_by_the_honest_worker(&mut alice).await;
    honest_client_is_served(&net, 2).await;
    net.assert_books_balance(&net.proxy_stats).await;
}

/// C2, H2 (replay): a worker re-sends its final part twice, then a content part, a head and an
/// error stating more, all for a request that already ended. The client receives one answer and
/// one payment notice and is charged the one statement; the worker earns it once; the worker's
/// next request is served as usual; the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_replaying_its_final_answer_is_charged_once_on_a_real_proxy() {
    let net = network("hostile-worker-replay").await;
    let mut w = HostileWorker::join(net.proxy_worker_port, "replayer", "hostile").await;
    let mut alice = alice(&net).await;

    let cid = alice.run_query("hostile", true, 100).await;
    let run = w
        .next_request(Duration::from_secs(10))
        .await
        .expect("the request reaches the hostile worker");
    let id = run.request_id;
    let body = w.answer_honestly(id, &["one", "two", "three"], 9).await;
    for _ in 0..2 {
        w.part(id, SSE_DONE, 9, Some(9)).await;
    }
    w.part(id, &sse_content("late"), 10, None).await;
    w.head(id).await;
    w.error(id, errors::BAD_GATEWAY, Some(500)).await;

    let mut a = alice.answer(cid, Duration::from_secs(10)).await;
    assert!(a.completed, "{a:?}");
    assert_eq!(a.charged, Some(9), "{a:?}");
    // Whatever else comes for this request in the next second.
    while let Some(m) = alice.next_message(Duration::from_secs(1)).await {
        a.take(cid, m);
    }
    assert_eq!(a.after_end, 0, "a replay was relayed: {a:?}");
    assert_eq!(a.notices, 1, "more than one payment notice: {a:?}");
    assert_eq!(a.text(), body, "the body is the one answer: {a:?}");
    assert_eq!(num(&account(&net, ALICE).await["charged"]), 9);
    assert_eq!(w.earned().await, 9, "the worker earned the statement once");

    // The same worker's next request is served as usual.
    let cid = alice.run_query("hostile", true, 100).await;
    let run = w
        .next_request(Duration::from_secs(10))
        .await
        .expect("the next request");
    w.answer_honestly(run.request_id, &["again"], 4).await;
    let a = alice.answer(cid, Duration::from_secs(10)).await;
    assert!(a.completed && a.charged == Some(4), "{a:?}");
    assert_eq!(num(&account(&net, ALICE).await["charged"]), 13);

    honest_client_is_served(&net, 2).await;
    net.assert_books_balance(&net.proxy_stats).await;
}

/// Where a worker stops serving a request.
#[derive(Clone, Copy, Debug)]
enum Leaves {
    BeforeAnswering,
    AfterTheHead,
    AfterSomeParts,
}

/// C2 (worker lost): a worker disconnects before answering, after the head, and after some
/// parts. Each time the client hears an error (1502) within seconds, not at its timeout; is
/// charged what it received (nothing without content, at most the reservation after parts) and
/// the worker's owner earns exactly that; the proxy forgets the worker, so new requests go to
/// the honest worker; an app behind the real client whose stream is cut the same way gets a
/// prompt error event; the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_leaving_at_any_step_fails_its_request_at_once_and_settles_it_on_a_real_proxy() {
    let net = network("hostile-worker-leaves").await;
    let mut alice = alice(&net).await;
    for (i, step) in [
        Leaves::BeforeAnswering,
        Leaves::AfterTheHead,
        Leaves::AfterSomeParts,
    ]
    .into_iter()
    .enumerate()
    {
        let owner = format!("leaver-{i}");
        let mut w = HostileWorker::join(net.proxy_worker_port, &owner, "hostile").await;
        let cid = alice.run_query("hostile", true, 100).await;
        let run = w
            .next_request(Duration::from_secs(10))
            .await
            .expect("the request reaches the hostile worker");
        let id = run.request_id;
        let reserved = num(&account(&net, ALICE).await["reserved"]) as i64;
        let pieces = match step {
            Leaves::BeforeAnswering => 0,
            Leaves::AfterTheHead => {
                w.head(id).await;
                1
            }
            Leaves::AfterSomeParts => {
                w.head(id).await;
                for k in 0..3 {
                    w.part(id, &sse_content(&format!("p{k}")), k + 1, None)
                        .await;
                }
                4
            }
        };
        // The client has everything sent before the worker goes.
        let mut seen = ClientAnswer::default();
        while usize::from(seen.status.is_some()) + seen.parts < pieces {
            let m = alice
                .next_message(Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("{step:?}: what the worker sent was not relayed"));
            seen.take(cid, m);
        }
        let left = Instant::now();
        w.disconnect();
        let rest = alice.answer(cid, Duration::from_secs(15)).await;
        let took = left.elapsed();
        assert_eq!(
            rest.error.as_ref().map(|e| e.0),
            Some(errors::BAD_GATEWAY),
            "{step:?}: {rest:?}"
        );
        assert!(took < PROMPTLY, "{step:?}: the client heard after {took:?}");
        let charged = rest.charged.expect("a payment notice");
        match step {
            Leaves::AfterSomeParts => assert!(
                charged > 0 && charged <= reserved,
                "{step:?}: charged {charged}, reserved {reserved}"
            ),
            _ => assert_eq!(charged, 0, "{step:?}: charged with no content delivered"),
        }
        assert_eq!(
            earned_by(&net, &owner).await,
            charged,
            "{step:?}: the worker did not earn what the client paid"
        );
        eprintln!("{step:?}: the client heard in {took:?}, charged {charged} of {reserved}");
    }

    // The proxy forgot every hostile worker: `hostile` has no worker, `mock` its honest one.
    let only_the_honest_worker = eventually(Duration::from_secs(5), || {
        let net = &net;
        async move {
            let s = proxy_stats(net).await;
            let models: Vec<_> = s["workers"]
                .as_array()
                .map(|ws| ws.iter().map(|w| w["model"].to_string()).collect())
                .unwrap_or_default();
            models == ["\"mock\""]
        }
    })
    .await;
    assert!(
        only_the_honest_worker,
        "workers left: {}",
        proxy_stats(&net).await["workers"]
    );
    let cid = alice.run_query("hostile", true, 100).await;
    let a = alice.answer(cid, PROMPTLY).await;
    assert_eq!(
        a.error.as_ref().map(|e| e.0),
        Some(errors::UNKNOWN_MODEL),
        "{a:?}"
    );
    alice_is_served_by_the_honest_worker(&mut alice).await;

    // An app behind the real client, whose stream the worker cuts after one part.
    let mut w = HostileWorker::join(net.proxy_worker_port, "leaver-app", "hostile").await;
    let http = reqwest::Client::new();
    let app = async {
        let started = Instant::now();
        let body = serde_json::json!({
            "model": "hostile", "stream": true,
            "messages": [{"role": "user", "content": "hello there"}],
        });
        let mut r = chat_request(&http, &net.base)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the client answers");
        let mut got = Vec::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            got.extend_from_slice(&chunk);
        }
        (
            String::from_utf8_lossy(&got).into_owned(),
            started.elapsed(),
        )
    };
    let cut = async {
        let run = w
            .next_request(Duration::from_secs(10))
            .await
            .expect("the app's request reaches the hostile worker");
        w.head(run.request_id).await;
        w.part(run.request_id, &sse_content("cut"), 1, None).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        w.disconnect();
    };
    let ((body, took), ()) = tokio::join!(app, cut);
    assert!(
        body.contains("cut") && body.contains("error"),
        "the app did not get the part and then an error: {body}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the app heard after {took:?}"
    );

    honest_client_is_served(&net, 2).await;
    net.assert_books_balance(&net.proxy_stats).await;
}

/// How a worker breaks the framing or the TL.
#[derive(Clone, Copy, Debug)]
enum Malformed {
    /// A packet whose bytes are no TL constructor.
    Undecodable,
    /// A frame above the proxy's 16 MiB limit.
    Oversized,
}

/// Protocol violation / M7 (bytes): a worker serving a request sends a packet that is no TL
/// message, another a frame above the proxy's 16 MiB limit. Each connection is closed at once;
/// the request it was serving fails within seconds and is settled (charged what was relayed,
/// within the reservation, and earned the same); the undecodable packet counts as a worker
/// protocol violation; everyone else keeps being served and the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sending_garbage_or_an_oversized_frame_is_dropped_and_its_request_settled_on_a_real_proxy(
) {
    let net = network("hostile-worker-malformed").await;
    let mut alice = alice(&net).await;
    for attack in [Malformed::Undecodable, Malformed::Oversized] {
        let owner = format!("{attack:?}").to_lowercase();
        let mut w = match attack {
            Malformed::Undecodable => {
                HostileWorker::join(net.proxy_worker_port, &owner, "hostile").await
            }
            Malformed::Oversized => {
                let w = HostileWorker::dial_with_frame_limit(net.proxy_worker_port, 64 << 20)
                    .await
                    .expect("dial the worker port");
                w.connect_to_proxy(&owner, "hostile")
                    .await
                    .expect("connect");
                w.complete_handshake().await.expect("handshake");
                w
            }
        };
        let cid = alice.run_query("hostile", true, 100).await;
        let run = w
            .next_request(Duration::from_secs(10))
            .await
            .expect("the request reaches the hostile worker");
        let reserved = num(&account(&net, ALICE).await["reserved"]) as i64;
        w.head(run.request_id).await;
        w.part(run.request_id, &sse_content("a"), 1, None).await;
        let mut seen = ClientAnswer::default();
        while seen.parts < 1 {
            let m = alice
                .next_message(Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("{attack:?}: what the worker sent was not relayed"));
            seen.take(cid, m);
        }
        let sent = Instant::now();
        match attack {
            Malformed::Undecodable => {
                w.send_raw(Bytes::from_static(b"\xde\xad\xbe\xefnot a TL constructor"))
                    .await
            }
            Malformed::Oversized => w.send_raw(Bytes::from(vec![0u8; (16 << 20) + 1024])).await,
        }
        let rest = alice.answer(cid, Duration::from_secs(15)).await;
        let took = sent.elapsed();
        assert_eq!(
            rest.error.as_ref().map(|e| e.0),
            Some(errors::BAD_GATEWAY),
            "{attack:?}: {rest:?}"
        );
        assert!(
            took < PROMPTLY,
            "{attack:?}: the client heard after {took:?}"
        );
        assert!(
            w.closed_within(Duration::from_secs(5)).await,
            "{attack:?}: the proxy kept the connection"
        );
        let charged = rest.charged.expect("a payment notice");
        assert!(
            charged > 0 && charged <= reserved,
            "{attack:?}: charged {charged}, reserved {reserved}"
        );
        assert_eq!(earned_by(&net, &owner).await, charged, "{attack:?}");
    }
    let s = proxy_stats(&net).await;
    assert_eq!(
        num(&s["connections"]["worker_protocol_violations"]),
        1,
        "the undecodable packet is a protocol violation: {s}"
    );

    alice_is_served_by_the_honest_worker(&mut alice).await;
    honest_client_is_served(&net, 2).await;
    net.assert_books_balance(&net.proxy_stats).await;
}

/// L2: a worker serving a request re-sends `worker.connectToProxy` naming another owner, and
/// another re-sends `worker.proxyHandshakeComplete`. Each is refused and its connection closed
/// (two protocol violations); the running request fails at once and settles with the original
/// owner (who earns what the client paid; the new name earns nothing); everyone else keeps being
/// served and the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_handshake_is_refused_and_the_connection_closed_on_a_real_proxy() {
    let net = network("hostile-worker-rehandshake").await;
    let mut alice = alice(&net).await;
    let mut w = HostileWorker::join(net.proxy_worker_port, "first-owner", "hostile").await;
    let cid = alice.run_query("hostile", true, 100).await;
    let run = w
        .next_request(Duration::from_secs(10))
        .await
        .expect("the request reaches the hostile worker");
    let reserved = num(&account(&net, ALICE).await["reserved"]) as i64;
    w.head(run.request_id).await;
    for k in 0..2 {
        w.part(run.request_id, &sse_content(&format!("p{k}")), k + 1, None)
            .await;
    }
    let mut seen = ClientAnswer::default();
    while seen.parts < 2 {
        let m = alice
            .next_message(Duration::from_secs(5))
            .await
            .expect("what the worker sent is relayed");
        seen.take(cid, m);
    }

    let started = Instant::now();
    match w.connect_to_proxy("thief-owner", "hostile").await {
        Ok(a) => panic!("a second connectToProxy was answered: {a:?}"),
        Err(QueryError::Remote { .. } | QueryError::Closed) => {}
        Err(e) => panic!("unexpected answer to the second connectToProxy: {e}"),
    }
    assert!(
        w.closed_within(Duration::from_secs(5)).await,
        "the proxy kept a connection that re-sent connectToProxy"
    );
    let rest = alice.answer(cid, Duration::from_secs(15)).await;
    assert_eq!(
        rest.error.as_ref().map(|e| e.0),
        Some(errors::BAD_GATEWAY),
        "{rest:?}"
    );
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    let charged = rest.charged.expect("a payment notice");
    assert!(
        charged > 0 && charged <= reserved,
        "{charged} of {reserved}"
    );
    assert_eq!(earned_by(&net, "first-owner").await, charged);
    assert_eq!(earned_by(&net, "thief-owner").await, 0);

    let mut again = HostileWorker::join(net.proxy_worker_port, "second-owner", "hostile").await;
    match again.send_handshake_complete().await {
        Ok(()) => panic!("a second proxyHandshakeComplete was answered"),
        Err(QueryError::Remote { .. } | QueryError::Closed) => {}
        Err(e) => panic!("unexpected answer to the second proxyHandshakeComplete: {e}"),
    }
    assert!(
        again.closed_within(Duration::from_secs(5)).await,
        "the proxy kept a connection that re-sent proxyHandshakeComplete"
    );
    let s = proxy_stats(&net).await;
    assert_eq!(
        num(&s["connections"]["worker_protocol_violations"]),
        2,
        "{s}"
    );

    alice_is_served_by_the_honest_worker(&mut alice).await;
    honest_client_is_served(&net, 2).await;
    net.assert_books_balance(&net.proxy_stats).await;
}
