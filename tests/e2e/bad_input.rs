//! Bad input at every door: each gets a clear error and the node keeps serving.

use std::time::Duration;

use cocoon_testkit::{chat_body, chat_request};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::Net;

async fn post(net: &Net, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = chat_request(&reqwest::Client::new(), &net.base)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.expect("error bodies are JSON");
    (status, v)
}

async fn still_serves(net: &Net) {
    let (status, v) = post(net, chat_body(false).to_string()).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_huge_and_unknown_model_requests() {
    let net = Net::builder().start("badreq").await;
    let (s, v) = post(&net, "{\"model\": \"mock\", \"messages\": [".to_string()).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let mut body = chat_body(false);
    body["foo"] = json!(1);
    let (s, v) = post(&net, body.to_string()).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"].as_str().expect("msg").contains("foo"),
        "{v}"
    );

    let huge = format!(
        "{{\"model\":\"mock\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
        "a".repeat(5 << 20)
    );
    let (s, _) = post(&net, huge).await;
    assert_eq!(s, 413);

    let (s, v) = post(
        &net,
        json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    )
    .await;
    assert_eq!(s, 404, "{v}");

    let (s, _) = post(&net, "[1,2,3]".to_string()).await;
    assert_eq!(s, 400);
    let (s, _) = post(
        &net,
        json!({"model": "mock", "messages": [], "n": 2}).to_string(),
    )
    .await;
    assert_eq!(s, 400);
    still_serves(&net).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversized_frames_and_silent_peers_on_proxy_ports() {
    let net = Net::builder().start("badwire").await;
    for port in [net.proxy_worker_port, net.proxy_client_port] {
        // Garbage instead of a PoW answer.
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut challenge = [0u8; 24];
        s.read_exact(&mut challenge).await.expect("PoW challenge");
        let _ = s.write_all(&[0xff; 4096]).await;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("proxy kept a garbage peer open");
        assert!(matches!(n, Ok(0) | Err(_)), "proxy answered garbage");
        // An oversized frame header right away.
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let _ = s.read_exact(&mut challenge).await;
        let _ = s.write_all(&u32::MAX.to_le_bytes()).await;
        // A peer that never completes the PoW: the proxy drops it at its handshake timeout (3 s).
        let mut silent = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let _ = silent.read_exact(&mut challenge).await;
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut b = [0u8; 1];
            matches!(silent.read(&mut b).await, Ok(0) | Err(_))
        })
        .await
        .expect("silent peer never dropped");
        assert!(closed);
    }
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert!(
        stats["connections"]["clients"]["handshake_failed"]
            .as_u64()
            .expect("n")
            >= 2,
        "{stats}"
    );
    still_serves(&net).await;
}
