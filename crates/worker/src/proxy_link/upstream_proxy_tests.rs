//! Our worker behind an upstream 9060ce5 proxy: the `proxy.runQueryEx` packets upstream's proxy
//! sent its worker in the capture (`crates/proto/tests/data/frames-9060ce5`), fed byte for byte
//! into our link code. At protocol 3+ they carry a 32-byte key (zeros, or the network key for an
//! encrypted request); our worker used to close the link on them ("32 trailing bytes").

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cocoon_engine::mock::{MockConfig, MockEngine};
use cocoon_node::net::AttestedSession;
use cocoon_proto::messages::{
    ProxyRunQueryEx, ProxyToWorkerMessage, TcpPacket, WorkerToProxyMessage,
};
use cocoon_proto::session::{establish, Inbound, InboundMessage, SessionConfig};
use cocoon_proto::version::Negotiated;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::{proxy_link, Shared, WorkerStats};

/// The `proxy.runQueryEx` payloads upstream's proxy sent, in order.
fn captured_requests() -> Vec<Bytes> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/tests/data/frames-9060ce5/router-proxy-workerport/frames.json"
    );
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("frames.json")).expect("json");
    all["conn000.s2c.bin"]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .filter(|f| f["inner"] == "proxy_runQueryEx")
        .map(|f| {
            let payload = Bytes::from(hex::decode(f["hex"].as_str().expect("hex")).expect("hex"));
            match cocoon_tl::from_bytes::<TcpPacket>(&payload).expect("tcp") {
                TcpPacket::Packet(p) => p.data,
                other => panic!("not a packet: {other:?}"),
            }
        })
        .collect()
}

/// Every message the proxy's end gets for request `id` until its final part or error.
async fn answers(proxy_in: &mut Inbound, id: [u8; 32]) -> Vec<WorkerToProxyMessage> {
    let mut out = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), proxy_in.recv())
            .await
            .expect("an answer in time")
            .expect("the worker kept the link");
        let InboundMessage::Packet(p) = m else {
            continue;
        };
        let msg: WorkerToProxyMessage = cocoon_tl::from_bytes(&p).expect("decodable");
        let (mine, last) = match &msg {
            WorkerToProxyMessage::QueryAnswerEx(a) => (a.request_id == id, a.final_info.is_some()),
            WorkerToProxyMessage::QueryAnswerPartEx(a) => {
                (a.request_id == id, a.final_info.is_some())
            }
            WorkerToProxyMessage::QueryAnswerErrorEx(a) => (a.request_id == id, true),
            _ => (false, false),
        };
        if mine {
            out.push(msg);
            if last {
                return out;
            }
        }
    }
}

#[tokio::test]
async fn requests_from_an_upstream_proxy_at_protocol_4_are_answered_encrypted_ones_sealed() {
    let mut cfg = WorkerConfig::default();
    cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
    cfg.model = "Qwen/Qwen3-8B@abc123def456".into();
    // The capture's worker had coefficient 0; its proxy priced every request at 0.
    cfg.coefficient = 0;
    let sh = Arc::new(Shared::new(
        cfg,
        Arc::new(MockEngine::new(MockConfig::default())),
        Arc::new(WorkerStats::new()),
        None,
    ));
    let (a, b) = tokio::io::duplex(1 << 20);
    let (w, p) = tokio::join!(
        establish(a, SessionConfig::dialer()),
        establish(b, SessionConfig::acceptor())
    );
    let (session, inbound) = w.expect("worker session");
    let (proxy, mut proxy_in) = p.expect("proxy session");
    let conn = AttestedSession {
        session,
        inbound,
        peer: cocoon_attest::AttestedPeer::unattested([9; 32]),
        remote: "127.0.0.1:1".parse().expect("address"),
    };
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn({
        let sh = sh.clone();
        let shutdown = shutdown.clone();
        // What upstream's proxy (0..4) agrees with us: 4, no extensions.
        async move {
            let control = cocoon_node::discovery::LinkControl::fixed();
            proxy_link::serve(
                &sh,
                conn,
                Negotiated::upstream(4),
                None,
                &shutdown,
                &control,
            )
            .await
        }
    });
    let requests = captured_requests();
    assert!(requests.len() >= 6, "{} requests", requests.len());
    let (mut clear, mut sealed, mut refused, mut bad_requests) = (0, 0, 0, 0);
    for data in requests {
        let q: ProxyRunQueryEx = match cocoon_tl::from_bytes::<ProxyToWorkerMessage>(&data) {
            Ok(ProxyToWorkerMessage::RunQueryEx(q)) => q,
            other => panic!("not a runQueryEx: {other:?}"),
        };
        assert_eq!(q.flags & 2, 2, "the key field is there");
        let encrypted = q.private_key != Some([0; 32]);
        proxy.send(data).await.expect("send");
        let got = answers(&mut proxy_in, q.request_id).await;
        let body: Vec<u8> = got
            .iter()
            .flat_map(|m| match m {
                WorkerToProxyMessage::QueryAnswerPartEx(a) => a.answer.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        let text = String::from_utf8_lossy(&body);
        match got.last() {
            Some(WorkerToProxyMessage::QueryAnswerPartEx(_)) => {
                let WorkerToProxyMessage::QueryAnswerEx(head) = &got[0] else {
                    panic!("no head first: {got:?}");
                };
                let head: cocoon_proto::messages::HttpResponse =
                    cocoon_tl::from_bytes(&head.answer).expect("http.response");
                if head.status_code == 400 {
                    bad_requests += 1;
                    continue;
                }
                if encrypted {
                    sealed += 1;
                    assert!(text.contains("\"is_encrypted\":\"v1\""), "{text}");
                } else {
                    clear += 1;
                }
            }
            // The capture's requests with an unknown field or model are refused, as upstream.
            Some(WorkerToProxyMessage::QueryAnswerErrorEx(e)) => {
                refused += 1;
                assert!(!e.error.is_empty())
            }
            other => panic!("unexpected ending {other:?}"),
        }
    }
    assert!(clear >= 2 && sealed >= 2, "clear {clear}, sealed {sealed}");
    // req4's unknown field `foo` is refused: upstream's worker with an error, ours with the
    // OpenAI-shaped 400 answer an app can read.
    assert!(
        refused + bad_requests >= 1,
        "refused {refused}, 400s {bad_requests}"
    );
    assert!(!serving.is_finished(), "the link is still up");
    shutdown.cancel();
    let _ = serving.await;
}
