//! A hostile proxy against a real client process (docs/SECURITY.md, L5): [`HostileProxy`]
//! listens on 127.0.0.1 as a proxy's client port does — PoW, RA-TLS with the dev attestation
//! (software evidence), Cocoon framing, TL — lets a real `cocoon client` connect and authorize,
//! and then answers its requests as the test tells it: with an endless stream, or never.
//!
//! What lives here: the fake proxy and the attacks on the client that need its real process
//! (its HTTP port, its memory). What does not: attacks on the client's rules without sockets
//! (`crates/client/src/link.rs` tests), hostile clients and workers against a real proxy
//! (`hostile.rs`, `hostile_worker.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cocoon_node::errors;
use cocoon_node::net::{self, AcceptStats, AttestedSession, ListenConfig};
use cocoon_node::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
use cocoon_proto::messages::{
    encode, ClientAuthorizationWithProxy, ClientAuthorizationWithProxySuccess,
    ClientConnectedToProxy, ClientProxyConnectionAuth, ClientProxyConnectionAuthShort,
    ClientQueryAnswerEx, ClientQueryAnswerPartEx, ClientRunQueryEx, ClientSealingCandidatesV3,
    ClientToProxyMessage, ClientToProxyQuery, HttpHeader, HttpResponse, ProxyParams,
    ProxySignedPayment,
};
use cocoon_proto::session::{Inbound, InboundMessage, Session, SessionConfig};
use cocoon_testkit::{chat_request, eventually, free_port};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::harness::{copy_config, spawn, Net, Proc};

/// A fake proxy's client port on 127.0.0.1; sessions that complete the RA-TLS handshake come
/// out of [`HostileProxy::next_session`]. The accept loop stops on drop.
pub struct HostileProxy {
    pub port: u16,
    /// The certificate and key the fake presents (it countersigns receipts with it).
    pub identity: cocoon_ratls::RaTlsIdentity,
    sessions: mpsc::UnboundedReceiver<AttestedSession>,
    _stop: DropGuard,
}

impl HostileProxy {
    /// Listens on a free port of 127.0.0.1 (PoW difficulty 4, software evidence, any client).
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake proxy");
        let port = listener.local_addr().expect("local address").port();
        let att = AttestationConfig::dev(EvidenceChoice::InsecureSoftware, PeerPolicyChoice::Any);
        let identity = att.identity().expect("identity");
        let tls = cocoon_ratls::server_config(&identity, att.verifier().expect("verifier"))
            .expect("tls config");
        let cfg = ListenConfig {
            pow_difficulty: 4,
            tls,
            handshake_timeout: Duration::from_secs(10),
            session: SessionConfig::acceptor(),
            max_pending_handshakes: 16,
        };
        let (tx, sessions) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        tokio::spawn(net::serve(
            listener,
            cfg,
            Arc::new(AcceptStats::default()),
            stop.clone(),
            move |s| {
                let _ = tx.send(s);
            },
        ));
        Self {
            port,
            identity,
            sessions,
            _stop: stop.drop_guard(),
        }
    }

    /// The next session a client opened, within `limit`.
    pub async fn next_session(&mut self, limit: Duration) -> Option<FakeProxySession> {
        let s = tokio::time::timeout(limit, self.sessions.recv())
            .await
            .ok()??;
        Some(FakeProxySession {
            session: s.session,
            inbound: s.inbound,
            proto: 0,
            cancelled: Vec::new(),
            candidates: None,
            last_run: None,
        })
    }
}

/// One client session on the fake proxy.
pub struct FakeProxySession {
    pub(crate) session: Session,
    inbound: Inbound,
    /// The protocol agreed in `client.connectToProxy`.
    proto: i32,
    /// `client.cancelQueryV3` ids received so far.
    pub cancelled: Vec<[u8; 32]>,
    /// What `client.getSealingCandidatesV3` is answered with (`None`: an error, as a Cocoon
    /// proxy would).
    pub candidates: Option<ClientSealingCandidatesV3>,
    /// The last `client.runQueryEx` received, whole.
    pub last_run: Option<ClientRunQueryEx>,
}

impl FakeProxySession {
    /// Serves the client's handshake queries (connect: the highest protocol it offers;
    /// authorization: success; anything else: an error) until its first request, which it
    /// returns (`client.runQueryEx` request id). `None`: the session closed or `limit` passed.
    pub async fn next_request(&mut self, limit: Duration) -> Option<[u8; 32]> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inbound.recv())
                .await
                .ok()??;
            match msg {
                InboundMessage::Query(q) => {
                    let answer = match cocoon_tl::from_bytes::<ClientToProxyQuery>(&q.data) {
                        Ok(ClientToProxyQuery::ConnectToProxy(c)) => {
                            self.proto = c.params.max_proto_version.unwrap_or(0);
                            let flags = c.params.flags & cocoon_proto::version::EXTENSIONS_FLAG;
                            Some(encode(&connected(self.proto, flags)))
                        }
                        Ok(ClientToProxyQuery::GetSealingCandidatesV3(_)) => {
                            self.candidates.as_ref().map(encode)
                        }
                        Ok(ClientToProxyQuery::AuthorizeWithProxyShort(_)) => {
                            Some(encode(&ClientAuthorizationWithProxy::Success(
                                ClientAuthorizationWithProxySuccess {
                                    signed_payment: ProxySignedPayment::empty(),
                                    tokens_committed_to_db: 0,
                                    max_tokens: 0,
                                },
                            )))
                        }
                        _ => None,
                    };
                    match answer {
                        Some(a) => q.answer(a).await,
                        None => {
                            q.error(errors::PROTOVIOLATION, "fake proxy: not served".into())
                                .await
                        }
                    }
                }
                InboundMessage::Packet(data) => match cocoon_tl::from_bytes(&data) {
                    Ok(ClientToProxyMessage::RunQueryEx(q)) => {
                        let id = q.request_id;
                        self.last_run = Some(q);
                        return Some(id);
                    }
                    Ok(ClientToProxyMessage::CancelQueryV3(c)) => self.cancelled.push(c.request_id),
                    _ => {}
                },
            }
        }
    }

    /// Answers request `id` with the head of a 200 SSE stream.
    pub async fn head(&self, id: [u8; 32]) {
        self.head_typed(id, "text/event-stream").await
    }

    /// Answers request `id` with the head of a 200 answer of `content_type`.
    pub async fn head_typed(&self, id: [u8; 32], content_type: &str) {
        let head = HttpResponse {
            http_version: "HTTP/1.1".into(),
            status_code: 200,
            reason: "OK".into(),
            headers: vec![HttpHeader {
                name: "Content-Type".into(),
                value: content_type.into(),
            }],
            payload: Bytes::new(),
        };
        let _ = self
            .session
            .send(encode(&ClientQueryAnswerEx {
                request_id: id,
                answer: encode(&head),
                flags: 0,
                final_info: None,
            }))
            .await;
    }

    /// Sends request `id` body parts of `part_bytes` each, without end, until the session
    /// closes, the client cancels `id`, or `max_bytes` went out. Returns the body bytes sent.
    pub async fn stream_endlessly(
        &mut self,
        id: [u8; 32],
        part_bytes: usize,
        max_bytes: u64,
    ) -> u64 {
        let filler = "x".repeat(part_bytes.saturating_sub(64));
        let chunk = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{filler}\"}}}}]}}\n\n"
        );
        let part = encode(&ClientQueryAnswerPartEx {
            request_id: id,
            answer: Bytes::from(chunk.clone()),
            flags: 0,
            final_info: None,
        });
        let mut sent = 0u64;
        while sent < max_bytes && !self.cancelled.contains(&id) {
            if self.session.send(part.clone()).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
            // Take the client's cancel as soon as it comes.
            while let Ok(Some(InboundMessage::Packet(data))) =
                tokio::time::timeout(Duration::ZERO, self.inbound.recv()).await
            {
                if let Ok(ClientToProxyMessage::CancelQueryV3(c)) = cocoon_tl::from_bytes(&data) {
                    self.cancelled.push(c.request_id);
                }
            }
        }
        sent
    }
}

/// The fake proxy's answer to `client.connectToProxy`: protocol `proto`, short authorization,
/// the extensions bit as the client offered it (the fake poses as a cocoon-rs proxy).
fn connected(proto: i32, flags: u32) -> ClientConnectedToProxy {
    ClientConnectedToProxy {
        params: ProxyParams {
            flags,
            proxy_public_key: [7; 32],
            proxy_owner_address: String::new(),
            proxy_sc_address: String::new(),
            is_test: Some(true),
            proto_version: Some(proto),
        },
        client_sc_address: String::new(),
        auth: ClientProxyConnectionAuth::Short(ClientProxyConnectionAuthShort {
            secret_hash: [0; 32],
            nonce: 0,
        }),
        signed_payment: ProxySignedPayment::empty(),
    }
}

/// A real `cocoon client` (the harness's config) connected to `fake` only; returns the process
/// and its HTTP base URL once its link to the fake proxy is ready.
pub(crate) async fn client_of(net: &Net, fake: &HostileProxy, name: &str) -> (Proc, String) {
    client_of_with(net, fake, name, |_| {}).await
}

/// [`client_of`] with an edit of the client's config.
pub(crate) async fn client_of_with(
    net: &Net,
    fake: &HostileProxy,
    name: &str,
    edit: impl FnOnce(&mut toml::Table),
) -> (Proc, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let proxy = format!("127.0.0.1:{}", fake.port);
    let path = copy_config(
        &net.dir.path().join("client.toml"),
        &net.dir.path().join(format!("{name}.toml")),
        |cfg| {
            cfg.insert("http_listen".into(), http.clone().into());
            cfg.insert(
                "proxies".into(),
                toml::Value::Array(vec![proxy.clone().into()]),
            );
            edit(cfg);
        },
    );
    let proc = spawn(net.dir.path(), name, &["client", "--config", &path]);
    (proc, format!("http://{http}"))
}

/// Waits until the client at `base` reports its link to `proxy` ready.
pub(crate) async fn link_ready(base: &str, proxy: &str) -> bool {
    eventually(Duration::from_secs(20), || async move {
        let Ok(r) = reqwest::get(format!("{base}/jsonstats")).await else {
            return false;
        };
        let s: serde_json::Value = r.json().await.unwrap_or_default();
        s["proxies"][proxy]["ready"].as_bool() == Some(true)
    })
    .await
}

/// Resident memory of process `pid` in bytes (Linux `/proc`), 0 when unreadable.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// L5: a proxy streams an endless answer to a client whose app does not read it. The real
/// client holds at most its 64 MiB cap of unread bytes for the request (its memory stays
/// bounded while the proxy sends several times that), then fails the request and cancels it at
/// the proxy; the app, reading at last, gets the error. A proxy that never answers costs the
/// app its request's timeout and a 504, nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_streaming_without_end_or_never_answering_cannot_hold_a_real_client() {
    let net = Net::builder().start("hostile-proxy").await;
    let mut fake = HostileProxy::start().await;
    let (client, base) = client_of(&net, &fake, "client-of-hostile-proxy").await;
    let mut conn = fake
        .next_session(Duration::from_secs(20))
        .await
        .expect("the client dials the fake proxy");

    // The client's handshake is served by `next_request`, which also takes the app's request.
    let http = reqwest::Client::new();
    let app = async {
        assert!(
            link_ready(&base, &format!("127.0.0.1:{}", fake.port)).await,
            "the client's link to the fake proxy never became ready"
        );
        let body = serde_json::json!({
            "model": "mock", "stream": true,
            "messages": [{"role": "user", "content": "hello there"}],
        });
        chat_request(&http, &base)
            .json(&body)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("the client answers the app")
    };
    let answer_head = async {
        let id = conn.next_request(Duration::from_secs(30)).await;
        let id = id.expect("the app's request reaches the fake proxy");
        conn.head(id).await;
        id
    };
    let (response, id) = tokio::join!(app, answer_head);
    assert_eq!(response.status(), 200, "the head is relayed");
    let rss_before = rss_bytes(client.child.id());

    // The app reads nothing while the fake proxy sends up to 4 × the client's cap.
    let started = Instant::now();
    let sent = conn.stream_endlessly(id, 64 << 10, 256 << 20).await;
    let rss_after = rss_bytes(client.child.id());
    eprintln!(
        "fake proxy sent {} MiB in {:?}; client RSS {} → {} MiB; cancelled: {}",
        sent >> 20,
        started.elapsed(),
        rss_before >> 20,
        rss_after >> 20,
        conn.cancelled.contains(&id)
    );
    assert!(
        conn.cancelled.contains(&id),
        "the client never cancelled an answer its app did not read ({} MiB sent)",
        sent >> 20
    );
    assert!(
        rss_after < rss_before + (160 << 20),
        "the client's memory grew by {} MiB",
        (rss_after.saturating_sub(rss_before)) >> 20
    );
    // The app, reading at last, gets what was buffered and then the error.
    let mut response = response;
    let mut tail = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        tail.extend_from_slice(&chunk);
        if tail.len() > 256 << 10 {
            tail.drain(..tail.len() - (128 << 10));
        }
    }
    let tail = String::from_utf8_lossy(&tail);
    assert!(
        tail.contains("error"),
        "the app was not told its stream failed: …{}",
        &tail[tail.len().saturating_sub(300)..]
    );

    // A proxy that never answers: the app gets a 504 at its request's timeout.
    let started = Instant::now();
    let body = serde_json::json!({
        "model": "mock", "stream": false, "timeout": 2,
        "messages": [{"role": "user", "content": "hello there"}],
    });
    let ignore = async {
        let id = conn.next_request(Duration::from_secs(10)).await;
        assert!(id.is_some(), "the second request reaches the fake proxy");
        // Never answered: keep the session open and silent past the app's timeout.
        tokio::time::sleep(Duration::from_secs(4)).await;
    };
    let (r, ()) = tokio::join!(
        chat_request(&http, &base)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send(),
        ignore
    );
    let status = r.expect("the client answers").status();
    let took = started.elapsed();
    assert_eq!(status, 504, "a request never answered");
    assert!(took < Duration::from_secs(5), "the app waited {took:?}");
    drop(client);
}
