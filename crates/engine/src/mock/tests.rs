//! Tests for the mock engine and its HTTP server (127.0.0.1:0 only): shapes, counts, cancellation,
//! deadline, disconnects.

use super::*;
use crate::sse::SseParser;
use crate::usage::{body_kind_from_content_type, RawUsage, UsageCounter, UsageLimits};
use futures::TryStreamExt;

fn req(endpoint: Endpoint, body: Value) -> EngineRequest {
    EngineRequest {
        endpoint,
        body: Bytes::from(body.to_string()),
        content_type: None,
        request_id: "t".into(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(60),
    }
}

async fn collect(resp: EngineResponse) -> Vec<u8> {
    let chunks: Vec<Bytes> = resp.body.try_collect().await.unwrap();
    chunks.concat()
}

fn hello_chat() -> Value {
    json!({"model": "x", "messages": [{"role": "user", "content": "hello"}]})
}

#[tokio::test]
async fn non_stream_chat_shape_and_usage() {
    let e = MockEngine::new(MockConfig::default());
    let resp = e
        .start(req(Endpoint::ChatCompletions, hello_chat()))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_type(), Some("application/json"));
    let v: Value = serde_json::from_slice(&collect(resp).await).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "mock");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], completion_text(16));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // "hello" = 5 bytes -> ceil(5/4) = 2, + 4 for one message.
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert_eq!(v["usage"]["total_tokens"], 22);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
    assert_eq!(
        e.stats(),
        MockStats {
            started: 1,
            completed: 1,
            aborted: 0,
            rejected: 0,
            completion_tokens: 16
        }
    );
}

#[tokio::test]
async fn max_tokens_cuts_with_length() {
    let e = MockEngine::new(MockConfig::default());
    let mut body = hello_chat();
    body["max_tokens"] = 5.into();
    let v: Value = serde_json::from_slice(
        &collect(
            e.start(req(Endpoint::ChatCompletions, body.clone()))
                .await
                .unwrap(),
        )
        .await,
    )
    .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        " tok0 tok1 tok2 tok3 tok4"
    );
    // max_completion_tokens wins over max_tokens.
    body["max_completion_tokens"] = 3.into();
    let v: Value = serde_json::from_slice(
        &collect(
            e.start(req(Endpoint::ChatCompletions, body.clone()))
                .await
                .unwrap(),
        )
        .await,
    )
    .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    // A limit at or above the configured count is "stop".
    body["max_completion_tokens"] = 16.into();
    let v: Value = serde_json::from_slice(
        &collect(e.start(req(Endpoint::ChatCompletions, body)).await.unwrap()).await,
    )
    .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn stream_chat_chunks_usage_done() {
    let e = MockEngine::new(MockConfig {
        completion_tokens: 10,
        chunk_tokens: 3,
        cached_tokens: 100,
        reasoning_tokens: 4,
        prompt_tokens: Some(7),
        ..MockConfig::default()
    });
    let mut body = hello_chat();
    body["stream"] = true.into();
    body["stream_options"] = json!({"include_usage": true});
    let resp = e.start(req(Endpoint::ChatCompletions, body)).await.unwrap();
    assert_eq!(resp.content_type(), Some("text/event-stream"));
    let kind = body_kind_from_content_type(resp.content_type());
    let bytes = collect(resp).await;

    let events = SseParser::new(1 << 16).push(&bytes).unwrap();
    // 4 content chunks (3+3+3+1), the finish chunk, the usage chunk, [DONE].
    assert_eq!(events.len(), 7);
    assert_eq!(events[6].data, "[DONE]");
    let frames: Vec<Value> = events[..6]
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(frames[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = frames[..4]
        .iter()
        .map(|f| {
            f["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, completion_text(10));
    assert!(frames
        .iter()
        .all(|f| f["object"] == "chat.completion.chunk"));
    assert_eq!(frames[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(frames[5]["choices"], json!([]));
    // Cached capped at prompt, reasoning reported as configured.
    let mut c = UsageCounter::new(kind, UsageLimits::default());
    c.observe(&bytes);
    assert_eq!(
        c.finish(),
        RawUsage {
            prompt: 7,
            cached: 7,
            completion: 10,
            reasoning: 4
        }
    );
    assert_eq!(c.completion_chunks(), 4);
    assert!(c.saw_done());
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_chunk() {
    let e = MockEngine::new(MockConfig {
        completion_tokens: 2,
        ..MockConfig::default()
    });
    let mut body = hello_chat();
    body["stream"] = true.into();
    let bytes = collect(e.start(req(Endpoint::ChatCompletions, body)).await.unwrap()).await;
    let events = SseParser::new(1 << 16).push(&bytes).unwrap();
    assert_eq!(events.len(), 4);
    assert!(!String::from_utf8(bytes).unwrap().contains("usage"));
}

#[tokio::test]
async fn completions_endpoint() {
    let e = MockEngine::new(MockConfig {
        completion_tokens: 3,
        ..MockConfig::default()
    });
    let body = json!({"model": "x", "prompt": "abcdefghi"});
    let v: Value = serde_json::from_slice(
        &collect(e.start(req(Endpoint::Completions, body)).await.unwrap()).await,
    )
    .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], " tok0 tok1 tok2");
    assert_eq!(v["usage"]["prompt_tokens"], 3); // ceil(9/4)

    let body = json!({"model": "x", "prompt": [1, 2, 3, 4, 5], "stream": true, "stream_options": {"include_usage": true}});
    let bytes = collect(e.start(req(Endpoint::Completions, body)).await.unwrap()).await;
    let events = SseParser::new(1 << 16).push(&bytes).unwrap();
    let first: Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["text"], " tok0");
    let mut c = UsageCounter::new(crate::usage::BodyKind::Sse, UsageLimits::default());
    c.observe(&bytes);
    assert_eq!(c.finish().prompt, 5);
    assert_eq!(c.completion_chunks(), 3);
}

#[test]
fn prompt_token_rule() {
    let msgs = json!([
        {"role": "system", "content": "12345678"},
        {"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": null, "tool_calls": []}
    ]);
    // bytes 8 + 3 = 11 -> 3, + 4 * 3 messages.
    assert_eq!(
        derive_prompt_tokens(Endpoint::ChatCompletions, msgs.as_array().unwrap()),
        15
    );
    assert_eq!(derive_prompt_tokens(Endpoint::Completions, &[json!("")]), 0);
    assert_eq!(
        derive_prompt_tokens(Endpoint::Completions, &[json!(["ab", "abcde"])]),
        2
    );
    assert_eq!(
        derive_prompt_tokens(Endpoint::Completions, &[json!([[1, 2], [3]])]),
        3
    );
}

#[tokio::test]
async fn deterministic_bytes() {
    let e = MockEngine::new(MockConfig::default());
    let mut body = hello_chat();
    body["stream"] = true.into();
    let a = collect(
        e.start(req(Endpoint::ChatCompletions, body.clone()))
            .await
            .unwrap(),
    )
    .await;
    let b = collect(e.start(req(Endpoint::ChatCompletions, body)).await.unwrap()).await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn dropping_body_counts_abort() {
    let e = MockEngine::new(MockConfig {
        completion_tokens: 100,
        ..MockConfig::default()
    });
    let mut body = hello_chat();
    body["stream"] = true.into();
    let mut resp = e.start(req(Endpoint::ChatCompletions, body)).await.unwrap();
    let first = resp.body.try_next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(resp);
    assert_eq!(
        e.stats(),
        MockStats {
            started: 1,
            completed: 0,
            aborted: 1,
            rejected: 0,
            completion_tokens: 0
        }
    );
    // Dropped before polling at all: also an abort.
    let resp = e
        .start(req(Endpoint::ChatCompletions, hello_chat()))
        .await
        .unwrap();
    drop(resp);
    assert_eq!(e.stats().aborted, 2);
    // Clones share counters.
    assert_eq!(e.clone().stats().started, 2);
}

#[tokio::test(start_paused = true)]
async fn deadline_ends_stream_with_timeout() {
    let e = MockEngine::new(MockConfig {
        completion_tokens: 100,
        token_delay: Duration::from_millis(100),
        ..MockConfig::default()
    });
    let mut body = hello_chat();
    body["stream"] = true.into();
    let mut r = req(Endpoint::ChatCompletions, body);
    r.deadline = tokio::time::Instant::now() + Duration::from_millis(350);
    let mut resp = e.start(r).await.unwrap();
    let mut ok = 0;
    let err = loop {
        match resp.body.try_next().await {
            Ok(Some(_)) => ok += 1,
            Ok(None) => panic!("stream ended without timing out"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, EngineError::Timeout));
    assert_eq!(ok, 3);
    assert!(resp.body.try_next().await.unwrap().is_none());
    assert_eq!(e.stats().aborted, 1);
    assert_eq!(e.stats().completed, 0);
}

#[tokio::test]
async fn bad_bodies_are_rejected_with_400() {
    let e = MockEngine::new(MockConfig::default());
    for (endpoint, body) in [
        (Endpoint::ChatCompletions, Bytes::from_static(b"nope")),
        (
            Endpoint::ChatCompletions,
            Bytes::from_static(b"{\"model\":\"m\"}"),
        ),
        (Endpoint::Completions, Bytes::from_static(b"[1]")),
    ] {
        let r = EngineRequest {
            endpoint,
            body,
            content_type: None,
            request_id: "bad".into(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(1),
        };
        let resp = e.start(r).await.unwrap();
        assert_eq!(resp.status, 400);
        let v: Value = serde_json::from_slice(&collect(resp).await).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert_eq!(e.stats().rejected, 3);
    assert_eq!(e.stats().started, 0);
}

#[tokio::test]
async fn health_toggle() {
    let e = MockEngine::new(MockConfig::default());
    assert!(e.health().await.is_ok());
    e.clone().set_healthy(false);
    assert!(matches!(e.health().await, Err(EngineError::Unhealthy(_))));
    e.set_healthy(true);
    assert!(e.health().await.is_ok());
}

mod server {
    use super::*;
    use crate::mock::server::serve_mock;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Running {
        addr: std::net::SocketAddr,
        engine: MockEngine,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start(cfg: MockConfig) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let engine = MockEngine::new(cfg);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_mock(listener, engine.clone(), async move {
            let _ = rx.await;
        }));
        Running {
            addr,
            engine,
            stop: Some(tx),
            task,
        }
    }

    #[tokio::test]
    async fn http_routes() {
        let srv = start(MockConfig {
            completion_tokens: 4,
            ..MockConfig::default()
        })
        .await;
        // The workspace builds reqwest with `rustls-no-provider`: a client panics unless a
        // process-wide provider is installed (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let base = format!("http://{}", srv.addr);

        let models: Value = serde_json::from_slice(
            &http
                .get(format!("{base}/v1/models"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(models["data"][0]["id"], "mock");

        let resp = http
            .post(format!("{base}/v1/chat/completions"))
            .body(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let body = resp.bytes().await.unwrap();
        assert!(body.ends_with(b"data: [DONE]\n\n"));

        let resp = http
            .post(format!("{base}/v1/completions"))
            .body(json!({"model": "m", "prompt": "x"}).to_string())
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(v["choices"][0]["text"], " tok0 tok1 tok2 tok3");

        let resp = http
            .post(format!("{base}/v1/chat/completions"))
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);

        let stats: MockStats = {
            let v: Value = serde_json::from_slice(
                &http
                    .get(format!("{base}/mock/stats"))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap(),
            )
            .unwrap();
            MockStats {
                started: v["started"].as_u64().unwrap(),
                completed: v["completed"].as_u64().unwrap(),
                aborted: v["aborted"].as_u64().unwrap(),
                rejected: v["rejected"].as_u64().unwrap(),
                completion_tokens: v["completion_tokens"].as_u64().unwrap(),
            }
        };
        assert_eq!(stats, srv.engine.stats());
        assert_eq!((stats.started, stats.completed, stats.rejected), (2, 2, 1));

        srv.engine.set_healthy(false);
        let resp = http.get(format!("{base}/v1/models")).send().await.unwrap();
        assert_eq!(resp.status(), 503);
    }

    #[tokio::test]
    async fn client_disconnect_mid_stream_counts_abort() {
        let srv = start(MockConfig {
            completion_tokens: 10_000,
            token_delay: Duration::from_millis(2),
            ..MockConfig::default()
        })
        .await;
        let mut sock = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        let body =
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true})
                .to_string();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(body.as_bytes()).await.unwrap();
        // Read until the first SSE event has arrived.
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(6).any(|w| w == b"data: ") {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"));
        drop(sock);
        let engine = srv.engine.clone();
        // The bound only stops a hung test; no timing is asserted.
        let aborted = cocoon_testkit::eventually(std::time::Duration::from_secs(10), || {
            std::future::ready(engine.stats().aborted == 1)
        })
        .await;
        assert!(aborted, "the engine never counted the abort");
        assert_eq!(engine.stats().completed, 0);
    }

    #[tokio::test]
    async fn graceful_shutdown_returns() {
        let mut srv = start(MockConfig::default()).await;
        // The workspace builds reqwest with `rustls-no-provider`: a client panics unless a
        // process-wide provider is installed (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let resp = http
            .get(format!("http://{}/v1/models", srv.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        drop(http);
        if let Some(tx) = srv.stop.take() {
            let _ = tx.send(());
        }
        let task = &mut srv.task;
        task.await.unwrap().unwrap();
    }
}

mod transcriptions {
    use super::*;
    use crate::multipart::{Form, FormPart};

    fn transcription(extra: &[(&str, &str)]) -> EngineRequest {
        let mut parts = vec![
            FormPart::text("model", "whisper"),
            FormPart::text("prompt", "abcdefgh"),
            FormPart::file("file", "a.wav", "audio/wav", vec![0u8; 30]),
        ];
        parts.extend(extra.iter().map(|(k, v)| FormPart::text(k, *v)));
        let (ct, body) = Form::new(parts).encode().expect("encodes");
        EngineRequest {
            endpoint: Endpoint::AudioTranscriptions,
            body,
            content_type: Some(ct),
            request_id: "t".into(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn non_streamed_is_openai_json_with_token_usage() {
        let e = MockEngine::new(MockConfig {
            completion_tokens: 3,
            ..MockConfig::default()
        });
        let resp = e.start(transcription(&[])).await.expect("starts");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.content_type(), Some("application/json"));
        let raw = collect(resp).await;
        let v: Value = serde_json::from_slice(&raw).expect("json");
        // (30 file bytes + 8 prompt bytes) / 4, rounded up.
        assert_eq!(
            v,
            json!({"text": " tok0 tok1 tok2", "usage": {"type": "tokens", "input_tokens": 10, "output_tokens": 3, "total_tokens": 13}})
        );
        let mut c = UsageCounter::new(crate::usage::BodyKind::Json, UsageLimits::default());
        c.observe(&raw);
        assert_eq!(
            c.finish(),
            RawUsage {
                prompt: 10,
                cached: 0,
                completion: 3,
                reasoning: 0
            }
        );
        assert_eq!(e.stats().completed, 1);
    }

    #[tokio::test]
    async fn streamed_is_vllm_chunks_with_usage_when_asked() {
        let e = MockEngine::new(MockConfig {
            completion_tokens: 4,
            chunk_tokens: 2,
            ..MockConfig::default()
        });
        let resp = e
            .start(transcription(&[
                ("stream", "true"),
                ("stream_include_usage", "true"),
            ]))
            .await
            .expect("starts");
        assert_eq!(resp.content_type(), Some("text/event-stream"));
        let raw = collect(resp).await;
        let mut c = UsageCounter::new(crate::usage::BodyKind::Sse, UsageLimits::default());
        c.observe(&raw);
        assert_eq!(c.finish().total(), 14);
        assert_eq!(c.completion_chunks(), 2);
        assert!(c.saw_done());
        let text = String::from_utf8(raw).expect("utf8");
        assert!(
            text.contains("\"object\":\"transcription.chunk\""),
            "{text}"
        );
        // Without stream_include_usage, no usage chunk.
        let resp = e
            .start(transcription(&[("stream", "true")]))
            .await
            .expect("starts");
        let raw = collect(resp).await;
        assert!(!String::from_utf8_lossy(&raw).contains("usage"));
    }

    #[tokio::test]
    async fn a_form_without_a_file_is_refused() {
        let e = MockEngine::new(MockConfig::default());
        let (ct, body) = Form::new(vec![FormPart::text("model", "m")])
            .encode()
            .expect("encodes");
        for content_type in [Some(ct), None] {
            let r = EngineRequest {
                endpoint: Endpoint::AudioTranscriptions,
                body: body.clone(),
                content_type,
                request_id: "bad".into(),
                deadline: tokio::time::Instant::now() + Duration::from_secs(1),
            };
            let resp = e.start(r).await.expect("answers");
            assert_eq!(resp.status, 400);
        }
        assert_eq!(e.stats().rejected, 2);
    }
}

mod echo {
    use super::*;

    fn chat(content: Value, stream: bool) -> Value {
        json!({"model": "x", "stream": stream, "messages": [
            {"role": "system", "content": "ECHO:notthisone"},
            {"role": "user", "content": content},
        ]})
    }

    #[test]
    fn the_marker_echoes_the_word_after_it_reversed_and_bounded() {
        assert_eq!(echo_of("say ECHO:abc123 please"), " 321cba");
        assert_eq!(echo_of("ECHO:abc-def"), " cba");
        assert_eq!(echo_of("no marker"), "");
        assert_eq!(echo_of("ECHO: spaced"), "");
        let long = "x".repeat(MAX_ECHO + 10);
        assert_eq!(echo_of(&format!("ECHO:{long}")).len(), 1 + MAX_ECHO);
    }

    #[tokio::test]
    async fn a_non_streamed_answer_starts_with_the_echo_of_the_last_message() {
        let e = MockEngine::new(MockConfig::default());
        let body = chat(json!("canary ECHO:deadBEEF0"), false);
        let v: Value = serde_json::from_slice(
            &collect(e.start(req(Endpoint::ChatCompletions, body)).await.unwrap()).await,
        )
        .unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            format!(" 0FEEBdaed{}", completion_text(16))
        );
        // Token counts do not change.
        assert_eq!(v["usage"]["completion_tokens"], 16);
    }

    #[tokio::test]
    async fn a_streamed_answer_carries_the_echo_in_its_first_chunk_only() {
        let e = MockEngine::new(MockConfig {
            completion_tokens: 3,
            ..MockConfig::default()
        });
        let body = chat(json!([{"type": "text", "text": "ECHO:xyz"}]), true);
        let bytes = collect(e.start(req(Endpoint::ChatCompletions, body)).await.unwrap()).await;
        let events = SseParser::new(1 << 16).push(&bytes).unwrap();
        let texts: Vec<String> = events[..3]
            .iter()
            .map(|ev| {
                let f: Value = serde_json::from_str(&ev.data).unwrap();
                f["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(texts, vec![" zyx tok0", " tok1", " tok2"]);
    }

    #[tokio::test]
    async fn without_the_marker_the_bytes_are_those_of_before() {
        // The default answer to "hello", as every other test (and golden captures) expect it.
        let e = MockEngine::new(MockConfig::default());
        let plain = collect(
            e.start(req(Endpoint::ChatCompletions, hello_chat()))
                .await
                .unwrap(),
        )
        .await;
        let expected = json!({"id": "chatcmpl-mock", "object": "chat.completion",
            "created": MOCK_CREATED, "model": "mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": completion_text(16)},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 6, "completion_tokens": 16, "total_tokens": 22,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0}}});
        assert_eq!(plain, expected.to_string().into_bytes());
        // A marker in an earlier message only does not echo either.
        let body = chat(json!("hello"), false);
        let v: Value = serde_json::from_slice(
            &collect(e.start(req(Endpoint::ChatCompletions, body)).await.unwrap()).await,
        )
        .unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], completion_text(16));
    }

    #[tokio::test]
    async fn a_completions_prompt_echoes_too() {
        let e = MockEngine::new(MockConfig {
            completion_tokens: 2,
            ..MockConfig::default()
        });
        let body = json!({"model": "x", "prompt": "ECHO:ab"});
        let v: Value = serde_json::from_slice(
            &collect(e.start(req(Endpoint::Completions, body)).await.unwrap()).await,
        )
        .unwrap();
        assert_eq!(v["choices"][0]["text"], " ba tok0 tok1");
    }
}
