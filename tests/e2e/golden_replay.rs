//! Replays the reference (C++) client's and worker's captured handshakes and messages against
//! our proxy, byte for byte as Cocoon sent them, and checks that every answer is what a Cocoon
//! peer expects: the b75d444 capture (`frames/`, protocol 2) and the 9060ce5 one
//! (`frames-9060ce5/`, protocol 4, a key field in every request, encrypted requests). The 9060ce5
//! proxy's and worker's key queries are replayed against our key manager. Also sends oversized
//! frames inside an established TLS session.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use cocoon_node::net::{self, AttestedSession, DialConfig};
use cocoon_node::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
use cocoon_proto::messages::{
    ClientAuthorizationWithProxy, ClientConnectedToProxy, ClientPaymentStatus,
    ClientProxyConnectionAuth, ClientToProxyMessage, ClientToProxyQuery, ClientWorkerTypesV2,
    KeyManagerPrivateKeys, KeyManagerQuery, ProxyToClientMessage, ProxyToWorkerMessage, TcpPacket,
    WorkerCompareBalanceWithProxyResult, WorkerConnectedToProxy, WorkerPaymentStatus,
    WorkerProxyHandshakeCompleted, WorkerToProxyMessage, WorkerToProxyQuery,
};
use cocoon_proto::session::{InboundMessage, SessionConfig};
use cocoon_proxy::ClientEntry;
use cocoon_testkit::post_chat;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Net;

/// The b75d444 capture.
const B75D444: &str = "frames";
/// The 9060ce5 capture.
const U9060CE5: &str = "frames-9060ce5";

/// The frames one side sent in a capture: (outer constructor name, payload).
fn captured(capture: &str, leg: &str, file: &str) -> Vec<(String, Bytes)> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "proto",
        "tests",
        "data",
        capture,
        leg,
        "frames.json",
    ]
    .iter()
    .collect();
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("frames.json")).expect("json");
    all[file]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .filter(|f| f["kind"] == "frame")
        .map(|f| {
            let payload = hex::decode(f["hex"].as_str().expect("hex")).expect("hex");
            (
                f["ctor"].as_str().unwrap_or("").to_string(),
                Bytes::from(payload),
            )
        })
        .collect()
}

/// The `data` of a captured tcp.query / tcp.packet.
fn inner(payload: &Bytes) -> Option<Bytes> {
    match cocoon_tl::from_bytes::<TcpPacket>(payload).ok()? {
        TcpPacket::Query(q) => Some(q.data),
        TcpPacket::Packet(p) => Some(p.data),
        _ => None,
    }
}

/// Dials a proxy port as a peer presenting `evidence` (the worker port demands it).
async fn dial(port: u16, evidence: EvidenceChoice) -> AttestedSession {
    let att = AttestationConfig::dev(evidence, PeerPolicyChoice::InsecureSoftware);
    let identity = att.identity().expect("identity");
    let tls =
        cocoon_ratls::client_config(&identity, att.verifier().expect("verifier")).expect("tls");
    let cfg = DialConfig {
        max_pow_difficulty: 28,
        tls,
        connect_timeout: Duration::from_secs(5),
        pow_timeout: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(5),
        session: SessionConfig::dialer(),
    };
    net::dial(&format!("127.0.0.1:{port}"), &cfg)
        .await
        .expect("dial proxy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_9060ce5_key_queries_replay_against_our_key_manager() {
    let net = Net::builder().start("replay-key-manager").await;
    let cfg: cocoon_key_manager::KeyManagerConfig = toml::from_str(
        &std::fs::read_to_string(net.key_manager_config()).expect("key manager config"),
    )
    .expect("toml");
    // conn000: upstream's proxy (getProxyPrivateKeys), conn001: its worker
    // (getWorkerPrivateKeys); each captured answer holds upstream's test key.
    for conn in ["conn000", "conn001"] {
        let sent = captured(U9060CE5, "router-keymanager", &format!("{conn}.c2s.bin"));
        let answered = captured(U9060CE5, "router-keymanager", &format!("{conn}.s2c.bin"));
        let want: Vec<KeyManagerPrivateKeys> = answered
            .iter()
            .filter(|(ctor, _)| ctor == "tcp_queryAnswer")
            .filter_map(|(_, p)| match cocoon_tl::from_bytes::<TcpPacket>(p).ok()? {
                TcpPacket::QueryAnswer(a) => cocoon_tl::from_bytes(&a.data).ok(),
                _ => None,
            })
            .collect();
        assert!(!want.is_empty(), "{conn}: no captured answer");
        let AttestedSession { session, .. } =
            dial(cfg.rpc_listen.port(), EvidenceChoice::InsecureSoftware).await;
        // Upstream asks every 5-10 s (60-120 s for workers); a few of them are enough here.
        let queries: Vec<Bytes> = sent
            .iter()
            .filter(|(ctor, _)| ctor == "tcp_query")
            .filter_map(|(_, p)| inner(p))
            .take(3)
            .collect();
        assert!(!queries.is_empty(), "{conn}: no captured query");
        for q in queries {
            let _: KeyManagerQuery = cocoon_tl::from_bytes(&q).expect("a key query");
            let answer = session
                .query(q, Duration::from_secs(10))
                .await
                .expect("answered");
            let ours: KeyManagerPrivateKeys =
                cocoon_tl::from_bytes(&answer).expect("keyManager.privateKeys");
            for k in &want[0].keys {
                assert!(
                    ours.keys.contains(k),
                    "{conn}: upstream's key (valid until {}) not served",
                    k.valid_until_utime
                );
            }
            assert!(ours.keys.len() > want[0].keys.len(), "no key of our own");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_client_session_replays_against_our_proxy() {
    // The b75d444 client speaks 1..=2: we must settle on 2, its newest.
    replay_client(B75D444, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_9060ce5_client_session_replays_against_our_proxy() {
    // The 9060ce5 client speaks 1..=4 and sets no extensions bit.
    replay_client(U9060CE5, 4).await;
}

/// Replays the client leg of `capture`; our proxy must agree on `proto` and end every request.
async fn replay_client(capture: &str, proto: i32) {
    let frames = captured(capture, "router-proxy-clientport", "conn000.c2s.bin");
    // Learn the reference client's identity from its own messages.
    let mut owner = String::new();
    let mut secret_hash = String::new();
    let mut model = String::new();
    for (_, payload) in &frames {
        let Some(data) = inner(payload) else { continue };
        if let Ok(q) = cocoon_tl::from_bytes::<ClientToProxyQuery>(&data) {
            match q {
                ClientToProxyQuery::ConnectToProxy(c) => owner = c.params.client_owner_address,
                ClientToProxyQuery::AuthorizeWithProxyShort(a) => {
                    secret_hash = hex::encode(Sha256::digest(&a.data))
                }
                _ => {}
            }
        }
        if let Ok(ClientToProxyMessage::RunQueryEx(r)) =
            cocoon_tl::from_bytes::<ClientToProxyMessage>(&data)
        {
            model = r.model_name;
        }
    }
    assert!(!owner.is_empty() && !secret_hash.is_empty() && !model.is_empty());
    let net = Net::builder()
        .model(model.clone())
        .extra_clients(vec![ClientEntry {
            owner_address: owner,
            secret_sha256: secret_hash,
            token_credit: None,
        }])
        .start(&format!("replay-client-{capture}"))
        .await;

    let AttestedSession {
        session,
        mut inbound,
        ..
    } = dial(net.proxy_client_port, EvidenceChoice::None).await;
    let mut answered_requests = 0;
    let mut pending_requests: HashMap<[u8; 32], bool> = HashMap::new();
    for (ctor, payload) in frames.iter().skip(1) {
        // Pings and pongs carry no message; the session answers its own.
        let Some(data) = inner(payload) else { continue };
        match ctor.as_str() {
            "tcp_query" => {
                let q: ClientToProxyQuery = cocoon_tl::from_bytes(&data).expect("query");
                let answer = session
                    .query(data, Duration::from_secs(10))
                    .await
                    .expect("answer");
                match q {
                    ClientToProxyQuery::ConnectToProxy(_) => {
                        let a: ClientConnectedToProxy =
                            cocoon_tl::from_bytes(&answer).expect("connectedToProxy");
                        assert_eq!(a.params.proto_version, Some(proto));
                        assert_eq!(
                            a.params.flags & cocoon_proto::version::EXTENSIONS_FLAG,
                            0,
                            "the extensions bit offered to a peer that did not set it"
                        );
                        assert!(matches!(a.auth, ClientProxyConnectionAuth::Short(_)));
                    }
                    ClientToProxyQuery::AuthorizeWithProxyShort(_) => {
                        let a: ClientAuthorizationWithProxy =
                            cocoon_tl::from_bytes(&answer).expect("authorization");
                        assert!(
                            matches!(a, ClientAuthorizationWithProxy::Success(_)),
                            "reference secret refused"
                        );
                    }
                    ClientToProxyQuery::UpdatePaymentStatus(_) => {
                        let _: ClientPaymentStatus =
                            cocoon_tl::from_bytes(&answer).expect("paymentStatus");
                    }
                    ClientToProxyQuery::GetWorkerTypesV2(_) => {
                        let a: ClientWorkerTypesV2 =
                            cocoon_tl::from_bytes(&answer).expect("workerTypesV2");
                        assert!(
                            a.types.iter().any(|t| t.name == model),
                            "model missing from worker types"
                        );
                    }
                    other => panic!("unexpected captured query {other:?}"),
                }
            }
            "tcp_packet" => {
                if let Ok(ClientToProxyMessage::RunQueryEx(r)) =
                    cocoon_tl::from_bytes::<ClientToProxyMessage>(&data)
                {
                    pending_requests.insert(r.request_id, false);
                }
                session.send(data).await.expect("send");
                // Each captured request must end: answered (final part) or failed, never silent.
                let ended = tokio::time::timeout(Duration::from_secs(10), async {
                    loop {
                        let Some(InboundMessage::Packet(p)) = inbound.recv().await else {
                            return false;
                        };
                        let msg: ProxyToClientMessage =
                            cocoon_tl::from_bytes(&p).expect("proxy message");
                        let done = match msg {
                            ProxyToClientMessage::QueryAnswerPartEx(m) => {
                                m.final_info.is_some().then_some(m.request_id)
                            }
                            ProxyToClientMessage::QueryAnswerEx(m) => {
                                m.final_info.is_some().then_some(m.request_id)
                            }
                            ProxyToClientMessage::QueryAnswerErrorEx(m) => Some(m.request_id),
                            ProxyToClientMessage::QueryAnswerError(_) => {
                                panic!("legacy error shape sent to a v2 client")
                            }
                            ProxyToClientMessage::QueryWorkerInfoV3(_) => {
                                panic!("an extension message sent to an upstream client")
                            }
                            _ => None,
                        };
                        if let Some(id) = done {
                            pending_requests.insert(id, true);
                            return true;
                        }
                    }
                })
                .await
                .expect("a replayed request got no ending");
                assert!(ended);
                answered_requests += 1;
            }
            other => panic!("unexpected outer constructor {other}"),
        }
    }
    assert!(
        answered_requests >= 3,
        "only {answered_requests} captured requests replayed"
    );
    assert!(pending_requests.values().all(|done| *done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_worker_session_replays_against_our_proxy() {
    replay_worker(B75D444, 2, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_9060ce5_worker_session_replays_against_our_proxy() {
    // The 9060ce5 worker speaks 3..=4: at 3 and above every proxy.runQueryEx must carry the
    // 32-byte key (the "32 trailing bytes" collision the issue describes, seen from our side).
    replay_worker(U9060CE5, 4, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_9060ce5_worker_capped_at_protocol_3_replays_against_our_proxy() {
    // The same worker announcing 3..=3 (its handshake re-encoded with that one change): at 3 the
    // key field is already there.
    replay_worker(U9060CE5, 3, Some(3)).await;
}

/// Replays the worker leg of `capture` (our proxy must agree on `proto`), then serves an app
/// request through it with the captured answer. `max_proto`: announce this maximum instead of
/// the captured one (the only byte change to the capture).
async fn replay_worker(capture: &str, proto: i32, max_proto: Option<i32>) {
    let frames = captured(capture, "router-proxy-workerport", "conn000.c2s.bin");
    let mut model = String::new();
    for (_, payload) in &frames {
        if let Some(data) = inner(payload) {
            if let Ok(WorkerToProxyQuery::ConnectToProxy(c)) =
                cocoon_tl::from_bytes::<WorkerToProxyQuery>(&data)
            {
                model = c.params.model;
            }
        }
    }
    let base = model.split('@').next().expect("model").to_string();
    // A network whose only worker is the replayed reference worker.
    let net = Net::builder()
        .workers(0)
        .start(&format!("replay-worker-{capture}"))
        .await;
    let AttestedSession {
        session,
        mut inbound,
        ..
    } = dial(net.proxy_worker_port, EvidenceChoice::InsecureSoftware).await;
    let mut answers_of_worker: Vec<Bytes> = Vec::new();
    for (ctor, payload) in frames.iter().skip(1) {
        // Pings and pongs carry no message; the session answers its own.
        let Some(mut data) = inner(payload) else {
            continue;
        };
        if ctor == "tcp_query" {
            let mut q: WorkerToProxyQuery = cocoon_tl::from_bytes(&data).expect("query");
            if let (Some(max), WorkerToProxyQuery::ConnectToProxy(c)) = (max_proto, &mut q) {
                c.params.max_proto_version = Some(max);
                data = Bytes::from(cocoon_tl::to_bytes(&q));
            }
            let answer = session
                .query(data, Duration::from_secs(10))
                .await
                .expect("answer");
            match q {
                WorkerToProxyQuery::ConnectToProxy(_) => {
                    let a: WorkerConnectedToProxy =
                        cocoon_tl::from_bytes(&answer).expect("connected");
                    assert_eq!(a.params.proto_version, Some(proto));
                    assert_eq!(a.params.flags & cocoon_proto::version::EXTENSIONS_FLAG, 0);
                }
                WorkerToProxyQuery::CompareBalanceWithProxy(_) => {
                    let a: WorkerCompareBalanceWithProxyResult =
                        cocoon_tl::from_bytes(&answer).expect("compare");
                    assert_eq!(a.error_code, 0);
                }
                WorkerToProxyQuery::ProxyHandshakeComplete(_) => {
                    let _: WorkerProxyHandshakeCompleted =
                        cocoon_tl::from_bytes(&answer).expect("completed");
                }
                WorkerToProxyQuery::UpdatePaymentStatus(_) => {
                    let _: WorkerPaymentStatus = cocoon_tl::from_bytes(&answer).expect("status");
                }
                other => panic!("unexpected captured query {other:?}"),
            }
        } else if ctor == "tcp_packet" {
            answers_of_worker.push(data);
        }
    }
    net.wait_workers(1, Duration::from_secs(10)).await;

    // An app request through our client reaches the replayed worker; it answers with the
    // reference worker's captured first answer (request id rewritten), which must reach the app.
    let first_answer: Vec<WorkerToProxyMessage> = answers_of_worker
        .iter()
        .filter_map(|d| cocoon_tl::from_bytes::<WorkerToProxyMessage>(d).ok())
        .collect();
    let head_index = first_answer
        .iter()
        .position(|m| matches!(m, WorkerToProxyMessage::QueryAnswerEx(_)))
        .expect("captured head");
    let base_url = net.base.clone();
    let app = tokio::spawn(async move {
        post_chat(
            &reqwest::Client::new(),
            &base_url,
            &serde_json::json!({"model": base, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .text()
        .await
        .expect("body")
    });
    let request_id = loop {
        let Some(InboundMessage::Packet(p)) =
            tokio::time::timeout(Duration::from_secs(10), inbound.recv())
                .await
                .expect("no request reached the worker")
        else {
            panic!("session closed");
        };
        if let Ok(ProxyToWorkerMessage::RunQueryEx(r)) =
            cocoon_tl::from_bytes::<ProxyToWorkerMessage>(&p)
        {
            // From protocol 3 the key is always there, all zeros for a request in clear.
            let key = (proto >= 3).then_some([0u8; 32]);
            assert_eq!(r.private_key, key, "key field at protocol {proto}");
            assert_eq!(r.flags & 2 != 0, proto >= 3);
            break r.request_id;
        }
    };
    let mut expected_body = Vec::new();
    for msg in &first_answer[head_index..] {
        let mut msg = msg.clone();
        let last = match &mut msg {
            WorkerToProxyMessage::QueryAnswerEx(m) => {
                m.request_id = request_id;
                m.final_info.is_some()
            }
            WorkerToProxyMessage::QueryAnswerPartEx(m) => {
                m.request_id = request_id;
                expected_body.extend_from_slice(&m.answer);
                m.final_info.is_some()
            }
            _ => continue,
        };
        session
            .send(Bytes::from(cocoon_tl::to_bytes(&msg)))
            .await
            .expect("send");
        if last {
            break;
        }
    }
    let body = tokio::time::timeout(Duration::from_secs(10), app)
        .await
        .expect("app hung")
        .expect("join");
    // The client adds `usage.cost` (TON) and `usage.cost_nanoton` beside the worker's own cost
    // fields; everything else reaches the app as the reference worker sent it.
    let mut got: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
    let want: serde_json::Value = serde_json::from_slice(&expected_body).expect("JSON");
    if let Some(usage) = got
        .get_mut("usage")
        .and_then(serde_json::Value::as_object_mut)
    {
        let nanoton = usage.remove("cost_nanoton");
        let ton = usage.remove("cost");
        assert_eq!(nanoton.as_ref(), usage.get("total_cost"), "{body}");
        assert!(ton.is_some_and(|t| t.is_string()), "{body}");
    }
    assert_eq!(
        got, want,
        "the reference worker's answer did not reach the app intact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_garbage_frames_inside_tls_close_only_that_session() {
    let net = Net::builder().start("frames").await;
    for port in [net.proxy_client_port, net.proxy_worker_port] {
        for attack in [
            // A frame header announcing 32 MiB (limit 16 MiB).
            [(32u32 << 20).to_le_bytes(), 0i32.to_le_bytes()].concat(),
            // A well-sized frame with a wrong seqno.
            [
                12u32.to_le_bytes().to_vec(),
                7i32.to_le_bytes().to_vec(),
                vec![0u8; 12],
            ]
            .concat(),
            // Garbage.
            vec![0xAB; 64],
        ] {
            let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            cocoon_proto::pow::answer_challenge(&mut tcp, 28, Duration::from_secs(30))
                .await
                .expect("pow");
            let att = AttestationConfig::dev(
                EvidenceChoice::InsecureSoftware,
                PeerPolicyChoice::InsecureSoftware,
            );
            let identity = att.identity().expect("identity");
            let tls = cocoon_ratls::client_config(&identity, att.verifier().expect("verifier"))
                .expect("tls");
            let (mut stream, _) = cocoon_ratls::connect(tls, tcp, Duration::from_secs(5))
                .await
                .expect("tls");
            stream.write_all(&attack).await.expect("write");
            stream.flush().await.expect("flush");
            let mut buf = [0u8; 64];
            let closed = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return true,
                        Ok(_) => continue,
                    }
                }
            })
            .await
            .expect("the proxy kept a misbehaving session open");
            assert!(closed);
        }
    }
    // Everyone else is still served.
    let resp = post_chat(
        &reqwest::Client::new(),
        &net.base,
        &cocoon_testkit::chat_body(false),
    )
    .await;
    assert_eq!(resp.status(), 200);
}
