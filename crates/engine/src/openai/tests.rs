//! Tests for the OpenAI upstream adapter against the mock server on 127.0.0.1:0.

use super::*;
use crate::engine::Endpoint;
use crate::mock::server::serve_mock;
use crate::mock::{MockConfig, MockEngine};
use crate::usage::{body_kind_from_content_type, RawUsage, UsageCounter, UsageLimits};
use bytes::Bytes;
use futures::TryStreamExt;
use serde_json::{json, Value};

struct Mock {
    engine: MockEngine,
    base: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn mock(cfg: MockConfig) -> Mock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let engine = MockEngine::new(cfg);
    let task = tokio::spawn(serve_mock(listener, engine.clone(), std::future::pending()));
    Mock { engine, base, task }
}

fn engine_for(base: &str) -> OpenAiEngine {
    OpenAiEngine::new(OpenAiConfig {
        base_url: format!("{base}/"),
        ..OpenAiConfig::default()
    })
    .unwrap()
}

fn chat_req(stream: bool, secs: u64) -> EngineRequest {
    let mut body =
        json!({"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8});
    if stream {
        body["stream"] = true.into();
        body["stream_options"] = json!({"include_usage": true});
    }
    EngineRequest {
        endpoint: Endpoint::ChatCompletions,
        body: Bytes::from(body.to_string()),
        content_type: None,
        request_id: "r1".into(),
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(secs),
    }
}

#[tokio::test]
async fn non_stream_round_trip() {
    let m = mock(MockConfig::default()).await;
    let e = engine_for(&m.base);
    let resp = e.start(chat_req(false, 30)).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_type(), Some("application/json"));
    assert!(resp.headers.iter().all(|(k, _)| !is_hop_by_hop_header(k)));
    let body: Vec<Bytes> = resp.body.try_collect().await.unwrap();
    let v: Value = serde_json::from_slice(&body.concat()).unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(m.engine.stats().completed, 1);
}

#[tokio::test]
async fn stream_round_trip_counts_usage() {
    let m = mock(MockConfig {
        prompt_tokens: Some(11),
        cached_tokens: 3,
        ..MockConfig::default()
    })
    .await;
    let e = engine_for(&m.base);
    let resp = e.start(chat_req(true, 30)).await.unwrap();
    let mut counter = UsageCounter::new(
        body_kind_from_content_type(resp.content_type()),
        UsageLimits::default(),
    );
    let mut chunks = 0;
    let mut body = resp.body;
    while let Some(c) = body.try_next().await.unwrap() {
        counter.observe(&c);
        chunks += 1;
    }
    assert!(chunks >= 1);
    assert_eq!(
        counter.finish(),
        RawUsage {
            prompt: 11,
            cached: 3,
            completion: 8,
            reasoning: 0
        }
    );
    assert_eq!(counter.completion_chunks(), 8);
    assert!(counter.saw_done());
}

#[tokio::test]
async fn non_2xx_is_passed_through() {
    let m = mock(MockConfig::default()).await;
    let e = engine_for(&m.base);
    let mut r = chat_req(false, 30);
    r.body = Bytes::from_static(b"{\"model\":\"m\"}");
    let resp = e.start(r).await.unwrap();
    assert_eq!(resp.status, 400);
    let body: Vec<Bytes> = resp.body.try_collect().await.unwrap();
    let v: Value = serde_json::from_slice(&body.concat()).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn dropping_the_body_aborts_upstream() {
    let m = mock(MockConfig {
        completion_tokens: 100_000,
        token_delay: std::time::Duration::from_millis(2),
        ..MockConfig::default()
    })
    .await;
    let e = engine_for(&m.base);
    let mut r = chat_req(true, 30);
    r.body = Bytes::from(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true})
            .to_string(),
    );
    let mut resp = e.start(r).await.unwrap();
    let first = resp.body.try_next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(resp);
    let engine = m.engine.clone();
    // The bound only stops a hung test; no timing is asserted.
    let aborted = cocoon_testkit::eventually(std::time::Duration::from_secs(10), || {
        std::future::ready(engine.stats().aborted == 1)
    })
    .await;
    assert!(aborted, "the engine never counted the abort");
    assert_eq!(engine.stats().completed, 0);
}

#[tokio::test]
async fn deadline_becomes_timeout() {
    let m = mock(MockConfig {
        completion_tokens: 1000,
        token_delay: std::time::Duration::from_millis(50),
        ..MockConfig::default()
    })
    .await;
    let e = engine_for(&m.base);
    // Already expired: refused without a request.
    let mut r = chat_req(true, 0);
    r.deadline = tokio::time::Instant::now();
    assert!(matches!(e.start(r).await, Err(EngineError::Timeout)));
    assert_eq!(m.engine.stats().started, 0);
    // Expires mid-body (1000 tokens x 50 ms is far beyond 300 ms).
    let mut r = chat_req(true, 0);
    r.body = Bytes::from(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true})
            .to_string(),
    );
    r.deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
    let outcome = match e.start(r).await {
        Err(err) => err,
        Ok(resp) => resp
            .body
            .try_collect::<Vec<Bytes>>()
            .await
            .expect_err("body must time out"),
    };
    assert!(matches!(outcome, EngineError::Timeout), "{outcome:?}");
}

#[tokio::test]
async fn health_checks() {
    let m = mock(MockConfig::default()).await;
    let e = engine_for(&m.base);
    e.health().await.unwrap();
    m.engine.set_healthy(false);
    assert!(matches!(
        e.health().await,
        Err(EngineError::UnhealthyStatus { status: 503 })
    ));

    // Nothing listening: unreachable.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let e = engine_for(&dead);
    assert!(matches!(e.health().await, Err(EngineError::Unreachable(_))));
    assert!(matches!(
        e.start(chat_req(false, 5)).await,
        Err(EngineError::Unreachable(_))
    ));
}

#[test]
fn config_validation() {
    assert!(OpenAiEngine::new(OpenAiConfig {
        base_url: "not a url".into(),
        ..OpenAiConfig::default()
    })
    .is_err());
    assert!(OpenAiEngine::new(OpenAiConfig {
        base_url: "ftp://127.0.0.1".into(),
        ..OpenAiConfig::default()
    })
    .is_err());
    let e = OpenAiEngine::new(OpenAiConfig::default()).unwrap();
    assert_eq!(e.config().health_path, "/v1/models");
}

/// One HTTP exchange on 127.0.0.1:0: returns the base URL and the request body it receives
/// (answered with an empty SSE stream).
async fn capture_one_request() -> (String, tokio::task::JoinHandle<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let body_at = loop {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "request ended early");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..body_at]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap();
        while buf.len() < body_at + len {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "body ended early");
            buf.extend_from_slice(&chunk[..n]);
        }
        let answer = b"data: [DONE]\n\n";
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            answer.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(answer).await.unwrap();
        buf[body_at..body_at + len].to_vec()
    });
    (base, task)
}

#[tokio::test]
async fn continuous_usage_is_asked_for_only_when_configured() {
    for on in [false, true] {
        let (base, seen) = capture_one_request().await;
        let e = OpenAiEngine::new(OpenAiConfig {
            base_url: base,
            continuous_usage_stats: on,
            ..OpenAiConfig::default()
        })
        .unwrap();
        let resp = e.start(chat_req(true, 30)).await.unwrap();
        let _: Vec<Bytes> = resp.body.try_collect().await.unwrap();
        let body: Value = serde_json::from_slice(&seen.await.unwrap()).unwrap();
        let mut want = json!({"include_usage": true});
        if on {
            want["continuous_usage_stats"] = true.into();
        }
        assert_eq!(body["stream_options"], want, "configured: {on}");
        assert_eq!(body["messages"][0]["content"], "hello");
    }
}

#[tokio::test]
async fn a_form_travels_with_its_content_type_and_an_engine_404_passes_through() {
    use crate::multipart::{Form, FormPart};
    let m = mock(MockConfig {
        completion_tokens: 2,
        ..MockConfig::default()
    })
    .await;
    let (ct, body) = Form::new(vec![
        FormPart::text("model", "whisper"),
        FormPart::file("file", "audio.wav", "audio/wav", vec![1u8; 8]),
    ])
    .encode()
    .expect("encodes");
    let req = |ct: &str| EngineRequest {
        endpoint: Endpoint::AudioTranscriptions,
        body: body.clone(),
        content_type: Some(ct.to_owned()),
        request_id: "a1".into(),
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(30),
    };
    // Continuous usage is asked of JSON bodies only: the form goes unchanged.
    let e = OpenAiEngine::new(OpenAiConfig {
        base_url: m.base.clone(),
        continuous_usage_stats: true,
        ..OpenAiConfig::default()
    })
    .unwrap();
    let resp = e.start(req(&ct)).await.unwrap();
    assert_eq!(resp.status, 200);
    let chunks: Vec<Bytes> = resp.body.try_collect().await.unwrap();
    let v: Value = serde_json::from_slice(&chunks.concat()).unwrap();
    assert_eq!(v["text"], " tok0 tok1");
    assert_eq!(v["usage"]["input_tokens"], 2);
    // The boundary travelled: without it the mock could not read the form.
    let resp = e
        .start(req("multipart/form-data; boundary=wrong"))
        .await
        .unwrap();
    assert_eq!(resp.status, 400);
    // An engine that does not serve the endpoint answers for itself.
    let e = engine_for(&format!("{}/elsewhere", m.base));
    let resp = e.start(req(&ct)).await.unwrap();
    assert_eq!(resp.status, 404);
}
