//! Peers dying and coming back.

use std::time::{Duration, Instant};

use cocoon_testkit::{chat_body, chat_request, post_chat};
use futures::StreamExt;
use serde_json::Value;

use crate::harness::{spawn, Net};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_stream_fails_the_request_quickly() {
    let mut net = Net::builder()
        .mock_tokens(400)
        .mock_delay_ms(50)
        .start("killw")
        .await;
    let resp = post_chat(&reqwest::Client::new(), &net.base, &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let _ = stream.next().await.expect("first chunk").expect("ok");
    let killed_at = Instant::now();
    net.workers[0].kill9();
    // The stream must end (with an error event or a broken transfer) promptly, not hang.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut tail = String::new();
        while let Some(c) = stream.next().await {
            match c {
                Ok(b) => tail.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => return (true, tail),
            }
        }
        (false, tail)
    })
    .await
    .expect("stream hung after the worker died");
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let (broken, tail) = ended;
    assert!(
        broken || tail.contains("\"error\""),
        "stream ended cleanly without an error: {tail}"
    );
    assert!(
        !tail.contains("[DONE]"),
        "a cut stream must not claim completion"
    );
    net.assert_books_balance(&net.proxy_stats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_restart_reconnects_clients_and_workers() {
    let mut net = Net::builder().start("restartp").await;
    let http = reqwest::Client::new();
    let ok = post_chat(&http, &net.base, &chat_body(false)).await;
    assert_eq!(ok.status(), 200);
    net.proxy.kill9();
    // While the proxy is down the client answers with an error, not a hang.
    let down = tokio::time::timeout(
        Duration::from_secs(10),
        chat_request(&http, &net.base)
            .json(&chat_body(false))
            .send(),
    )
    .await
    .expect("client hung while the proxy was down")
    .expect("req");
    assert!(down.status().is_server_error(), "{}", down.status());
    let cfg = net.proxy_config();
    net.proxy = spawn(
        net.dir.path(),
        "proxy-2",
        &["proxy", "--config", cfg.to_str().expect("utf8")],
    );
    net.wait_workers(1, Duration::from_secs(30)).await;
    let again = post_chat(&http, &net.base, &chat_body(false)).await;
    assert_eq!(again.status(), 200);
    let v: Value = again.json().await.expect("json");
    assert_eq!(v["object"], "chat.completion");
    net.assert_books_balance(&net.proxy_stats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_fails_over_when_a_proxy_dies() {
    let mut net = Net::builder().proxies(2).start("failover").await;
    // Both proxies know the worker (the client lists it once per proxy).
    net.wait_workers(2, Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    net.proxy.kill9();
    // Every request after the kill is answered by the surviving proxy; at most the link
    // discovery of the first one may fail fast (never hang).
    let mut ok = 0;
    for _ in 0..10 {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            chat_request(&http, &net.base)
                .json(&chat_body(false))
                .send(),
        )
        .await
        .expect("client hung after a proxy died")
        .expect("req");
        if r.status() == 200 {
            let _ = r.text().await;
            ok += 1;
        }
    }
    assert!(ok >= 9, "only {ok}/10 requests served after failover");
    let (_, stats) = &net.more_proxies[0];
    let s = net.json(&format!("{stats}/jsonstats")).await;
    assert!(s["queries"]["succeeded"].as_u64().expect("n") >= 9, "{s}");
    net.assert_books_balance(stats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_down_disables_the_worker_until_it_is_back() {
    let mut net = Net::builder().external_engine().start("liveness").await;
    let http = reqwest::Client::new();
    let engine_url = net.engine_urls[0].clone();
    let listen = engine_url.trim_start_matches("http://").to_string();
    net.engines[0].kill9();
    // The worker's liveness probe notices and tells the proxy: no worker is offered any more.
    let base = net.base.clone();
    let gone = cocoon_testkit::eventually(Duration::from_secs(10), || {
        let url = format!("{base}/v1/models");
        async move {
            let v: Value = reqwest::get(url)
                .await
                .expect("models")
                .json()
                .await
                .expect("json");
            v["data"].as_array().is_some_and(|d| d.is_empty())
        }
    })
    .await;
    assert!(gone, "a worker with a dead engine is still offered");
    let r = post_chat(&http, &net.base, &chat_body(false)).await;
    assert!(matches!(r.status().as_u16(), 404 | 503), "{}", r.status());
    // The engine comes back: the worker enables itself again.
    net.engines[0] = spawn(
        net.dir.path(),
        "engine-0b",
        &["mock-engine", "--listen", &listen],
    );
    net.wait_workers(1, Duration::from_secs(15)).await;
    let r = post_chat(&http, &net.base, &chat_body(false)).await;
    assert_eq!(r.status(), 200);
    net.assert_books_balance(&net.proxy_stats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_applies_its_worker_image_allowlist() {
    // The dev network's software attestation yields Cocoon's fake_tdx image hash.
    let fake_tdx = "5c55c8f4db4010ba9203d83536d0609856af8c847ac039e37e7dde8fbd574b61".to_string();
    let ok = Net::builder()
        .allowed_worker_images(vec![fake_tdx])
        .start("images-ok")
        .await;
    let r = post_chat(&reqwest::Client::new(), &ok.base, &chat_body(false)).await;
    assert_eq!(r.status(), 200);
    drop(ok);
    let refused = Net::builder()
        .allowed_worker_images(vec!["00".repeat(32)])
        .expect_workers(0)
        .start("images-refused")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = refused
        .json(&format!("{}/jsonstats", refused.proxy_stats))
        .await;
    assert_eq!(
        stats["workers"].as_array().map(Vec::len),
        Some(0),
        "{stats}"
    );
    let log = std::fs::read_to_string(&refused.proxy.log).expect("log");
    assert!(
        log.contains("not in the allowlist"),
        "the refusal must say why"
    );
    refused.assert_books_balance(&refused.proxy_stats).await;
}

/// A slow worker: selection (least (running + 1) × mean duration) moves the load to the fast one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selection_moves_load_away_from_a_slow_worker() {
    let net = Net::builder()
        .workers(2)
        .mock_tokens(8)
        // Worker 0 answers in ~16 ms, worker 1 in ~480 ms.
        .worker_delays_ms(vec![2, 60])
        .start("slow-worker")
        .await;
    // 48 requests, 4 at a time.
    for _ in 0..12 {
        let results = net.chat_wave(4, false).await;
        assert!(results.iter().all(|r| matches!(r, Ok(200))), "{results:?}");
    }
    let served = |i: usize| {
        let url = format!("{}/jsonstats", net.worker_stats[i]);
        let net = &net;
        async move {
            net.json(&url).await["requests"]["succeeded"]
                .as_u64()
                .unwrap_or(0)
        }
    };
    let (fast, slow) = (served(0).await, served(1).await);
    eprintln!("slow worker: the fast one served {fast}, the slow one {slow}");
    assert_eq!(fast + slow, 48);
    assert!(
        fast >= 3 * slow,
        "the fast worker served {fast}, the slow one {slow}: load did not move away from the slow worker"
    );
    net.assert_books_balance(&net.proxy_stats).await;
}

/// A fake OpenAI-compatible engine on 127.0.0.1 that lists model `mock` but answers chat
/// completions badly: `garbage` (a 200 whose body is not JSON), `stop` (an SSE stream that
/// stops after two chunks, without usage or `[DONE]`) or `stall` (never answers). Returns its URL; the task ends with the
/// test's runtime.
async fn bad_engine(mode: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head (and whatever body came with it; it is not needed).
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.len() > 1 << 20 {
                        return;
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                if mode == "stall" && !head.starts_with("GET") {
                    // Takes the request and never answers: its worker stalls before its first
                    // byte (until the test kills it).
                    let _ = sock.read(&mut chunk).await;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                let reply: Vec<u8> = if head.starts_with("GET") {
                    let body = r#"{"object":"list","data":[{"id":"mock","object":"model"}]}"#;
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
                } else if mode == "garbage" {
                    let body = "this is not JSON at all";
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
                } else {
                    let c = |t: &str| {
                        format!("data: {{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mock\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{t}\"}},\"finish_reason\":null}}]}}\n\n")
                    };
                    format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n{}{}", c("one"), c("two")).into_bytes()
                };
                let _ = sock.write_all(&reply).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

/// An engine that answers garbage: the app gets a clean 5xx JSON error quickly, nothing is
/// charged, and the network keeps serving (the next request is handled the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_answering_garbage_gives_a_clean_error_and_no_charge() {
    let url = bad_engine("garbage").await;
    let net = Net::builder().engine_url(url).start("garbage-engine").await;
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let r = chat_request(&http, &net.base)
            .json(&chat_body(false))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("answered");
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.expect("a JSON body");
        assert!(
            status >= 500,
            "garbage from the engine must not be a success: {status} {body}"
        );
        assert!(body["error"]["message"].is_string(), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert_eq!(
        s["tokens_charged"], 0,
        "nothing was delivered, nothing is charged: {s}"
    );
    net.assert_books_balance(&net.proxy_stats).await;
}

/// An engine that stops mid-stream (no usage, no `[DONE]`): the app's SSE stream ends with an
/// error event promptly, never with `[DONE]`; the two delivered chunks arrive first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_stopping_mid_stream_ends_the_stream_with_an_error() {
    let url = bad_engine("stop").await;
    let net = Net::builder()
        .engine_url(url)
        .start("stopping-engine")
        .await;
    let started = std::time::Instant::now();
    let r = chat_request(&reqwest::Client::new(), &net.base)
        .json(&chat_body(true))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("answered");
    // Read chunk by chunk: the body ends with a transfer error, and `text()` would drop what
    // came before it.
    let mut stream = r.bytes_stream();
    let (mut text, mut broken) = (String::new(), false);
    while let Some(c) = stream.next().await {
        match c {
            Ok(b) => text.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        broken,
        "a cut stream must end abnormally, not like a complete one: {text}"
    );
    assert!(
        !text.contains("data: [DONE]"),
        "a cut stream must not look complete: {text}"
    );
    assert!(
        text.contains("one") && text.contains("two"),
        "delivered chunks first: {text}"
    );
    assert!(
        text.contains("\"error\""),
        "the stream ends with an error event: {text}"
    );
    net.assert_books_balance(&net.proxy_stats).await;
}

/// A worker that dies before the first byte of its answer: the client tries the request once
/// more, the other worker answers it, the app gets a 200 that says it was retried, and only
/// the answered attempt is charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_its_first_byte_is_retried_on_the_other_worker() {
    let url = bad_engine("stall").await;
    let first = std::sync::atomic::AtomicBool::new(true);
    let mut net = Net::builder()
        .workers(2)
        .mock_tokens(8)
        .edit_worker(move |w| {
            // Worker 0 serves from the stalling engine, worker 1 from the built-in mock.
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                w.engine.kind = cocoon_worker::EngineKind::Openai;
                w.engine.url = url.clone();
            }
        })
        .start("retry-before-head")
        .await;
    let http = reqwest::Client::new();
    // Four at once: the proxy spreads them over both workers, so some wait on the staller.
    let sends = (0..4).map(|i| {
        let http = http.clone();
        let base = net.base.clone();
        async move {
            let r = chat_request(&http, &base)
                .json(&chat_body(i % 2 == 0))
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .expect("answered");
            let retried = r.headers().get("x-cocoon-retries").is_some();
            let reason = r
                .headers()
                .get("x-cocoon-retry-reason")
                .map(|v| v.to_str().unwrap_or("").to_string());
            let status = r.status().as_u16();
            let body = r.text().await.expect("body");
            (status, retried, reason, body)
        }
    });
    let all = futures::future::join_all(sends);
    let proxy = net.proxy_stats.clone();
    let kill = async move {
        // Let the requests reach their workers, then kill the one that never answers.
        let stuck = cocoon_testkit::eventually(Duration::from_secs(10), || {
            let url = format!("{proxy}/jsonstats");
            async move {
                let s: Value = reqwest::get(url)
                    .await
                    .expect("stats")
                    .json()
                    .await
                    .expect("json");
                s["queries"]["running"].as_u64().unwrap_or(0) >= 1
            }
        })
        .await;
        assert!(stuck, "no request is waiting on a worker");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (answers, ()) = tokio::join!(all, kill_after(kill, &mut net));
    let mut retried = 0;
    for (status, was_retried, reason, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(
            body.contains("[DONE]") || body.contains("\"choices\""),
            "a complete answer: {body}"
        );
        if *was_retried {
            retried += 1;
            assert_eq!(reason.as_deref(), Some("worker_lost"));
        }
    }
    assert!(retried >= 1, "no request was retried: {answers:?}");
    let c = net.json(&format!("{}/jsonstats", net.base)).await;
    assert_eq!(c["requests"]["retried"], retried, "{c}");
    assert_eq!(c["requests"]["succeeded"], 4, "{c}");
    // Charged once: the proxy charged exactly the tokens of the four answers it delivered;
    // the failed attempts cost nothing.
    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert_eq!(s["queries"]["succeeded"], 4, "{s}");
    assert_eq!(
        s["tokens_charged"], c["tokens"]["total"],
        "the proxy charged more than the answers' usage: {s} {c}"
    );
    net.assert_books_balance(&net.proxy_stats).await;
}

/// Runs `wait`, then kills worker 0.
async fn kill_after(wait: impl std::future::Future<Output = ()>, net: &mut Net) {
    wait.await;
    net.workers[0].kill9();
}
