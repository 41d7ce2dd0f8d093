//! Hostile peers against real processes (docs/SECURITY.md): a client that speaks the whole
//! protocol — PoW, RA-TLS with the dev attestation, Cocoon framing, TL — and misbehaves on
//! command, plus raw sockets that never finish a handshake. Every test asserts both that the
//! attack fails and that honest peers kept being served with the books balanced.
//!
//! What lives here: [`HostileClient`] (which also reads its answers, [`ClientAnswer`], for the
//! hostile-worker tests) and the client attacks that need real proxy processes. Hostile workers
//! live in `hostile_worker.rs`; attacks on one role's rules without sockets are tested beside
//! that role's code (e.g. `crates/proxy/src/client_conn/tests.rs`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use cocoon_node::net::{self, AttestedSession, DialConfig};
use cocoon_node::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
use cocoon_proto::messages::{
    encode, ClientAuthorizationWithProxy, ClientAuthorizeWithProxyShort, ClientConnectToProxy,
    ClientConnectedToProxy, ClientParams, ClientRunQueryEx, HttpHeader, HttpRequest, HttpResponse,
    ProxyToClientMessage,
};
use cocoon_proto::session::{Inbound, InboundMessage, QueryError, Session, SessionConfig};
use cocoon_proxy::ClientEntry;
use cocoon_testkit::eventually;
use sha2::{Digest, Sha256};

use crate::harness::Net;

/// How long a hostile client waits for the proxy's answer to one query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A client session to a real proxy that does what a test tells it, right or wrong.
pub struct HostileClient {
    session: Session,
    inbound: Inbound,
}

impl HostileClient {
    /// Dials a proxy port (PoW, RA-TLS) presenting `evidence` (the worker port demands it).
    pub async fn dial(port: u16, evidence: EvidenceChoice) -> Result<Self, net::NetError> {
        let att = AttestationConfig::dev(evidence, PeerPolicyChoice::InsecureSoftware);
        let identity = att.identity().expect("identity");
        let tls = cocoon_ratls::client_config(&identity, att.verifier().expect("verifier"))
            .expect("tls config");
        let cfg = DialConfig {
            max_pow_difficulty: 28,
            tls,
            connect_timeout: Duration::from_secs(5),
            pow_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            session: SessionConfig::dialer(),
        };
        let AttestedSession {
            session, inbound, ..
        } = net::dial(&format!("127.0.0.1:{port}"), &cfg).await?;
        Ok(Self { session, inbound })
    }

    /// `client.connectToProxy` naming `owner` (any owner: that is the attack surface).
    pub async fn connect(&self, owner: &str) -> Result<ClientConnectedToProxy, QueryError> {
        let answer = self
            .session
            .query(
                encode(&ClientConnectToProxy {
                    params: ClientParams {
                        flags: 0,
                        client_owner_address: owner.into(),
                        is_test: Some(true),
                        min_proto_version: Some(0),
                        max_proto_version: Some(2),
                    },
                    min_config_version: 0,
                }),
                QUERY_TIMEOUT,
            )
            .await?;
        Ok(cocoon_tl::from_bytes(&answer).expect("client.connectedToProxy"))
    }

    /// `client.authorizeWithProxyShort` with `secret`; true when the proxy accepted it.
    pub async fn authorize(&self, secret: &str) -> Result<bool, QueryError> {
        let answer = self
            .session
            .query(
                encode(&ClientAuthorizeWithProxyShort {
                    data: Bytes::from(secret.as_bytes().to_vec()),
                }),
                QUERY_TIMEOUT,
            )
            .await?;
        let a: ClientAuthorizationWithProxy =
            cocoon_tl::from_bytes(&answer).expect("client.authorizationWithProxy");
        Ok(matches!(a, ClientAuthorizationWithProxy::Success(_)))
    }

    /// Sends one chat completion of at most `max_tokens` as `client.runQueryEx`; returns its
    /// request id.
    pub async fn run_query(&self, model: &str, stream: bool, max_tokens: i32) -> [u8; 32] {
        self.run_query_sealed(model, stream, max_tokens, None).await
    }

    /// [`run_query`](Self::run_query), claiming with `sealed_to` (`runQueryEx.public_key`,
    /// flags bit 1) that the body is encrypted to that network key. The body itself is in clear:
    /// what the proxy does with the key is the point.
    pub async fn run_query_sealed(
        &self,
        model: &str,
        stream: bool,
        max_tokens: i32,
        sealed_to: Option<[u8; 32]>,
    ) -> [u8; 32] {
        let body = serde_json::json!({
            "model": model, "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hello there"}],
        });
        let request_id: [u8; 32] = rand::random();
        let query = encode(&HttpRequest {
            method: "POST".into(),
            url: "/v1/chat/completions".into(),
            http_version: "HTTP/1.1".into(),
            headers: vec![HttpHeader {
                name: "Content-Type".into(),
                value: "application/json".into(),
            }],
            payload: Bytes::from(body.to_string()),
        });
        let _ = self
            .session
            .send(encode(&ClientRunQueryEx {
                model_name: model.into(),
                query,
                max_coefficient: 4000,
                max_tokens,
                timeout: 30.0,
                request_id,
                min_config_version: 0,
                flags: if sealed_to.is_some() { 2 } else { 0 },
                enable_debug: None,
                public_key: sealed_to,
            }))
            .await;
        request_id
    }

    /// The next packet the proxy sends this client within `limit`, decoded; `None` when nothing
    /// came in time or the session closed. (A proxy sends clients no queries.)
    pub async fn next_message(&mut self, limit: Duration) -> Option<ProxyToClientMessage> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inbound.recv())
                .await
                .ok()??;
            if let InboundMessage::Packet(data) = msg {
                let decoded = cocoon_tl::from_bytes(&data).expect("a proxy packet we can decode");
                return Some(decoded);
            }
        }
    }

    /// Reads what the proxy sends for `request_id` until its answer ended and its payment
    /// notice came, or `limit` passed (messages for other requests are dropped).
    pub async fn answer(&mut self, request_id: [u8; 32], limit: Duration) -> ClientAnswer {
        let deadline = tokio::time::Instant::now() + limit;
        let mut a = ClientAnswer::default();
        while !(a.ended() && a.charged.is_some()) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(msg) = self.next_message(left).await else {
                break;
            };
            a.take(request_id, msg);
        }
        a
    }

    /// Whether the proxy closed this session within `limit` (reading and dropping anything it
    /// still sends).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            while self.inbound.recv().await.is_some() {}
        })
        .await
        .is_ok()
    }
}

/// What a client received for one request, as [`HostileClient::answer`] read it.
#[derive(Debug, Default)]
pub struct ClientAnswer {
    /// The HTTP status of the head, when a head came.
    pub status: Option<i32>,
    /// The body: the head's payload and every part, in order.
    pub body: Vec<u8>,
    /// Body parts received (not counting the head).
    pub parts: usize,
    /// The usage stated in the final piece (head, part or error), when one came.
    pub final_tokens: Option<i64>,
    /// The error the request ended with (code, message).
    pub error: Option<(i32, String)>,
    /// Whether a final head or part came (an answered request).
    pub completed: bool,
    /// Tokens charged, from the proxy's payment notice (`request_tokens`).
    pub charged: Option<i64>,
    /// Payment notices received for it.
    pub notices: usize,
    /// Pieces that came after the request had ended (a relayed replay).
    pub after_end: usize,
}

impl ClientAnswer {
    /// Whether the request ended: answered completely, or with an error.
    pub fn ended(&self) -> bool {
        self.completed || self.error.is_some()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Records `msg` if it is about `request_id`.
    pub fn take(&mut self, request_id: [u8; 32], msg: ProxyToClientMessage) {
        let was_ended = self.ended();
        match msg {
            ProxyToClientMessage::QueryAnswerEx(m) if m.request_id == request_id => {
                match cocoon_tl::from_bytes::<HttpResponse>(&m.answer) {
                    Ok(head) => {
                        self.status = Some(head.status_code);
                        self.body.extend_from_slice(&head.payload);
                    }
                    Err(_) => self.status = Some(-1),
                }
                if let Some(f) = m.final_info {
                    self.final_tokens = Some(f.tokens_used.total_tokens_used);
                    self.completed = true;
                }
            }
            ProxyToClientMessage::QueryAnswerPartEx(m) if m.request_id == request_id => {
                self.parts += 1;
                self.body.extend_from_slice(&m.answer);
                if let Some(f) = m.final_info {
                    self.final_tokens = Some(f.tokens_used.total_tokens_used);
                    self.completed = true;
                }
            }
            ProxyToClientMessage::QueryAnswerErrorEx(m) if m.request_id == request_id => {
                if let Some(f) = m.final_info {
                    self.final_tokens = Some(f.tokens_used.total_tokens_used);
                }
                self.error = Some((m.error_code, m.error));
            }
            ProxyToClientMessage::ClientRequestPayment(p) if p.request_id == request_id => {
                self.charged = Some(p.request_tokens);
                self.notices += 1;
                return;
            }
            _ => return,
        }
        if was_ended {
            self.after_end += 1;
        }
    }
}

/// The proxy's client entries: (owner, used tokens).
pub async fn clients_used(net: &Net) -> Vec<(String, u64)> {
    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    s["clients"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["owner"].as_str().unwrap_or("").to_string(),
                        c["used"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A client entry for the proxy's config: `owner`, authorized by `secret`, with a million tokens.
pub fn entry(owner: &str, secret: &str) -> ClientEntry {
    ClientEntry {
        owner_address: owner.into(),
        secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        token_credit: Some(1_000_000),
    }
}

/// Asserts that the network's own client is served: `n` streamed and `n` plain completions.
pub async fn honest_client_is_served(net: &Net, n: usize) {
    for stream in [true, false] {
        for r in net.chat_wave(n, stream).await {
            assert_eq!(r.ok(), Some(200), "an honest request failed");
        }
    }
}

/// C1: a client authorized as itself names another client in a second `connectToProxy` and
/// tries to run requests on that client's credit. The proxy closes the session; the victim's
/// account is untouched; the honest client keeps being served and the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_switch_to_another_clients_identity_on_a_real_proxy() {
    let net = Net::builder()
        .extra_clients(vec![
            entry("mallory", "mallory-secret"),
            entry("alice", "alice-secret"),
        ])
        .start("hostile-identity")
        .await;
    let mut mallory = HostileClient::dial(net.proxy_client_port, EvidenceChoice::None)
        .await
        .expect("dial");
    mallory
        .connect("mallory")
        .await
        .expect("connect as herself");
    assert!(mallory.authorize("mallory-secret").await.expect("auth"));

    // The switch: refused with an error or by closing the session, never answered.
    match mallory.connect("alice").await {
        Ok(a) => panic!("a second connectToProxy was answered: {a:?}"),
        Err(QueryError::Remote { .. } | QueryError::Closed) => {}
        Err(e) => panic!("unexpected answer to the switch: {e}"),
    }
    for _ in 0..3 {
        mallory.run_query("mock", true, 64).await;
    }
    assert!(
        mallory.closed_within(Duration::from_secs(10)).await,
        "the proxy kept a session that tried to switch identity"
    );

    honest_client_is_served(&net, 4).await;
    let used = clients_used(&net).await;
    assert!(
        used.iter().all(|(o, u)| o != "alice" || *u == 0),
        "the victim was charged: {used:?}"
    );
    assert!(
        used.iter()
            .any(|(o, u)| o == crate::harness::OWNER && *u > 0),
        "the honest client's usage is missing: {used:?}"
    );
    net.assert_books_balance(&net.proxy_stats).await;
}

/// H4: hundreds of TCP connections that never answer the PoW, on both proxy ports, do not keep
/// an honest client or worker from completing a handshake, and the network keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_do_not_keep_honest_peers_out_of_a_real_proxy() {
    let net = Net::builder()
        // The default handshake timeout (30 s), which the idle sockets would hold each slot
        // for if the accept loop waited for a free one (the harness uses 3 s).
        .edit_proxy(|c| c.handshake_timeout = Duration::from_secs(30))
        .start("hostile-idle")
        .await;
    // More than `max_pending_handshakes` (64) on each port, held for the whole test.
    let mut idle = Vec::new();
    for port in [net.proxy_client_port, net.proxy_worker_port] {
        for _ in 0..100 {
            idle.push(
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("idle socket"),
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Well inside the proxy's 30 s handshake timeout, which the idle sockets would have held
    // every slot for.
    let started = Instant::now();
    let client = tokio::time::timeout(
        Duration::from_secs(10),
        HostileClient::dial(net.proxy_client_port, EvidenceChoice::None),
    )
    .await;
    assert!(
        matches!(client, Ok(Ok(_))),
        "an honest client could not connect behind idle sockets"
    );
    let worker = tokio::time::timeout(
        Duration::from_secs(10),
        HostileClient::dial(net.proxy_worker_port, EvidenceChoice::InsecureSoftware),
    )
    .await;
    assert!(
        matches!(worker, Ok(Ok(_))),
        "an honest worker could not connect behind idle sockets"
    );
    eprintln!(
        "two honest handshakes behind 200 idle sockets took {:?}",
        started.elapsed()
    );

    honest_client_is_served(&net, 4).await;
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert!(
        stats.to_string().contains("\"handshake_shed\""),
        "the proxy's stats do not count shed handshakes: {stats}"
    );
    drop(idle);
    net.assert_books_balance(&net.proxy_stats).await;
}

/// H3 / M7: a client that sends requests and never reads its socket costs the proxy bounded
/// memory and nobody else anything: relays to it never wait on it (the proxy's outbox), so the
/// honest client on the same worker is served at once; the silent client's requests all end
/// (delivered into its buffers, or cut when it stalls the proxy's outbox or session write
/// deadline, which closes its session) and the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_up_no_one_else() {
    let net = Net::builder()
        .extra_clients(vec![entry("sloth", "sloth-secret")])
        .mock_tokens(4000)
        .max_active_requests(64)
        // Small enough that this test's answers (~12 MB) overflow it: the stalled client is
        // closed rather than merely buffered for.
        .edit_proxy(|c| c.peer_queue_bytes = 256 << 10)
        .start("hostile-silent")
        .await;
    let mut sloth = HostileClient::dial(net.proxy_client_port, EvidenceChoice::None)
        .await
        .expect("dial");
    sloth.connect("sloth").await.expect("connect");
    assert!(sloth.authorize("sloth-secret").await.expect("auth"));
    // Answers of about 200 KB each (the worker's 1000-token cap), sent to a client that never
    // reads: more than the proxy's outbox and session queue and the socket buffers hold.
    for _ in 0..60 {
        sloth.run_query("mock", true, 4000).await;
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Bounded: before the fix, this worker's relays waited on the silent client's queue and then
    // the worker's link was closed by its own write deadline, failing these.
    let served = tokio::time::timeout(Duration::from_secs(15), honest_client_is_served(&net, 2));
    assert!(
        served.await.is_ok(),
        "the honest client waited behind a client that stopped reading"
    );
    eprintln!(
        "honest requests beside a client that stopped reading took {:?}",
        started.elapsed()
    );
    let ended = eventually(Duration::from_secs(120), || {
        let net = &net;
        async move {
            let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
            s["queries"]["running"].as_u64() == Some(0)
        }
    })
    .await;
    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert!(ended, "requests of the silent client never ended: {s}");
    assert!(
        sloth.closed_within(Duration::from_secs(10)).await,
        "the proxy kept a client that stopped reading past its queue"
    );
    assert!(
        s["connections"]["peers_closed_not_reading"].as_u64() >= Some(1),
        "not counted as a peer that stopped reading: {s}"
    );
    eprintln!(
        "silent client: session closed by the proxy: {}; stats: {}",
        sloth.session.is_closed(),
        serde_json::json!({"queries": s["queries"], "bytes": s["bytes"], "tokens": s["tokens_charged"]})
    );
    honest_client_is_served(&net, 2).await;
    net.assert_books_balance(&net.proxy_stats).await;
}
