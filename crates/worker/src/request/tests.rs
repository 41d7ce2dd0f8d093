//! Request tasks driven over an in-memory session (no sockets) against scripted engines: usage
//! progress while a stream is delivered, and requests priced below the worker's coefficient.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cocoon_engine::{Engine, EngineError, EngineRequest, EngineResponse};
use cocoon_proto::messages::{encode, HttpRequest, ProxyQueryAnswerPartV3, WorkerToProxyMessage};
use cocoon_proto::session::{establish, Inbound, InboundMessage, SessionConfig};
use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::WorkerConfig;
use crate::{Shared, WorkerStats};

/// Streams `content_chunks` content deltas without usage, then (if `final_usage`) one usage
/// chunk, then `[DONE]` — or, with `break_off`, an engine error instead of usage and `[DONE]`.
/// Counts the requests that reached it.
#[derive(Debug, Default)]
struct Scripted {
    content_chunks: usize,
    final_usage: Option<(u64, u64)>,
    break_off: bool,
    /// Answer with this status and an OpenAI error body instead of a stream.
    error_status: Option<u16>,
    started: AtomicUsize,
}

#[async_trait::async_trait]
impl Engine for Scripted {
    async fn start(&self, _req: EngineRequest) -> Result<EngineResponse, EngineError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        if let Some(status) = self.error_status {
            let body =
                serde_json::json!({"error": {"message": "overloaded", "type": "server_error"}});
            return Ok(EngineResponse {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: stream::iter([Ok(Bytes::from(body.to_string()))]).boxed(),
            });
        }
        let mut chunks: Vec<Result<Bytes, EngineError>> = (0..self.content_chunks)
            .map(|i| {
                let ev = serde_json::json!({"choices": [{"index": 0, "delta": {"content": format!("w{i} ")}}]});
                Ok(Bytes::from(format!("data: {ev}\n\n")))
            })
            .collect();
        if self.break_off {
            chunks.push(Err(EngineError::Transport("engine went away".into())));
        } else {
            if let Some((prompt, completion)) = self.final_usage {
                let ev = serde_json::json!({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}});
                chunks.push(Ok(Bytes::from(format!("data: {ev}\n\n"))));
            }
            chunks.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
        }
        Ok(EngineResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: stream::iter(chunks).boxed(),
        })
    }

    async fn health(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

fn shared(engine: Arc<Scripted>) -> Arc<Shared> {
    let mut cfg = WorkerConfig::default();
    cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
    Arc::new(Shared::new(cfg, engine, Arc::new(WorkerStats::new()), None))
}

/// The prompt has 5 words: its floor is 5 tokens.
const PROMPT: &str = "tell me about the sea";
const FLOOR: i64 = 5;

/// Runs one streamed chat request on protocol 3 with `coefficient` to its end; returns every
/// message the proxy's end received, in order.
async fn run_one(sh: &Arc<Shared>, coefficient: i64) -> Vec<WorkerToProxyMessage> {
    let body = serde_json::json!({
        "model": "mock",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": true,
    });
    let query = encode(&HttpRequest {
        method: "POST".into(),
        url: "/v1/chat/completions".into(),
        http_version: "HTTP/1.1".into(),
        headers: Vec::new(),
        payload: Bytes::from(body.to_string()),
    });
    run_query(sh, query, coefficient, None).await
}

/// Runs one request (`query`, a serialized `http.request`) on protocol 3 to its end; returns
/// every message the proxy's end received, in order.
async fn run_query(
    sh: &Arc<Shared>,
    query: Bytes,
    coefficient: i64,
    private_key: Option<[u8; 32]>,
) -> Vec<WorkerToProxyMessage> {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (w, p) = tokio::join!(
        establish(a, SessionConfig::dialer()),
        establish(b, SessionConfig::acceptor())
    );
    let (session, _inbound) = w.expect("worker session");
    let (_proxy, mut proxy_in): (_, Inbound) = p.expect("proxy session");
    run(RequestCtx {
        shared: sh.clone(),
        session,
        proto: crate::WITH_EXTENSIONS,
        request_id: [3; 32],
        private_key,
        query,
        coefficient,
        timeout: 30.0,
        cancel: CancellationToken::new(),
        running: Arc::default(),
        pricing: sh.link_pricing(None),
        sealed: None,
    })
    .await;
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), proxy_in.recv()).await
    {
        if let InboundMessage::Packet(data) = m {
            out.push(cocoon_tl::from_bytes(&data).expect("a worker message"));
        }
    }
    out
}

fn parts(msgs: &[WorkerToProxyMessage]) -> Vec<&ProxyQueryAnswerPartV3> {
    msgs.iter()
        .filter_map(|m| match m {
            WorkerToProxyMessage::QueryAnswerPartV3(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn progress_grows_with_every_content_chunk_before_the_engine_reports_usage() {
    const K: i64 = 6;
    let engine = Arc::new(Scripted {
        content_chunks: K as usize,
        final_usage: Some((9, K as u64 + 1)),
        ..Scripted::default()
    });
    let msgs = run_one(&shared(engine), 1000).await;
    assert!(matches!(
        msgs.first(),
        Some(WorkerToProxyMessage::QueryAnswerEx(_))
    ));
    let parts = parts(&msgs);
    // One part per content chunk, then the usage chunk's, `[DONE]`'s and the final one.
    assert_eq!(parts.len(), K as usize + 3, "{msgs:?}");
    for (k, part) in (1..=K).zip(&parts) {
        let p = &part.progress;
        assert_eq!(
            p.completion_tokens_used, k,
            "after {k} content chunks: one token each"
        );
        assert_eq!(p.prompt_tokens_used, FLOOR, "the prompt's floor");
        assert_eq!(p.total_tokens_used, FLOOR + k);
        assert!(part.final_info.is_none());
    }
    // The engine's usage takes over once it arrives; the final info is the engine's report.
    let last = parts.last().expect("a final part");
    assert_eq!(last.progress.prompt_tokens_used, 9);
    assert_eq!(last.progress.completion_tokens_used, K + 1);
    let info = last.final_info.as_ref().expect("final info");
    assert_eq!(info.tokens_used.prompt_tokens_used, 9);
    assert_eq!(info.tokens_used.completion_tokens_used, K + 1);
    let totals: Vec<i64> = parts.iter().map(|p| p.progress.total_tokens_used).collect();
    assert!(totals.windows(2).all(|w| w[0] <= w[1]), "{totals:?}");
}

#[tokio::test]
async fn progress_never_goes_below_what_was_delivered() {
    // An engine whose final usage is below what it streamed (3 completion tokens for 6 content
    // chunks): progress keeps what was delivered; the final info is the engine's own report.
    let engine = Arc::new(Scripted {
        content_chunks: 6,
        final_usage: Some((2, 3)),
        ..Scripted::default()
    });
    let msgs = run_one(&shared(engine), 1000).await;
    let last = *parts(&msgs).last().expect("a final part");
    assert_eq!(last.progress.completion_tokens_used, 6);
    assert_eq!(last.progress.prompt_tokens_used, FLOOR);
    let info = last.final_info.as_ref().expect("final info");
    assert_eq!(info.tokens_used.completion_tokens_used, 3);
}

#[tokio::test]
async fn a_broken_off_stream_is_charged_what_its_parts_reported() {
    let engine = Arc::new(Scripted {
        content_chunks: 4,
        break_off: true,
        ..Scripted::default()
    });
    let msgs = run_one(&shared(engine), 1000).await;
    let reported = parts(&msgs)
        .last()
        .expect("parts")
        .progress
        .total_tokens_used;
    assert_eq!(reported, FLOOR + 4);
    match msgs.last() {
        Some(WorkerToProxyMessage::QueryAnswerErrorEx(e)) => {
            assert_eq!(e.error_code, errors::BAD_GATEWAY);
            let info = e.final_info.as_ref().expect("final info");
            assert_eq!(info.tokens_used.total_tokens_used, reported);
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_request_priced_below_our_coefficient_is_refused_before_the_engine() {
    let engine = Arc::new(Scripted {
        content_chunks: 2,
        final_usage: Some((5, 2)),
        ..Scripted::default()
    });
    let sh = shared(engine.clone());
    assert_eq!(sh.cfg.coefficient, 1000);
    for cheap in [0, 999, -5] {
        let msgs = run_one(&sh, cheap).await;
        match msgs.as_slice() {
            [WorkerToProxyMessage::QueryAnswerErrorEx(e)] => {
                assert_eq!(e.error_code, errors::NO_WORKER);
                assert!(e.error.contains("below this worker's 1000"), "{}", e.error);
                let info = e.final_info.as_ref().expect("final info");
                assert_eq!(info.tokens_used.total_tokens_used, 0);
            }
            other => panic!("coefficient {cheap}: expected one error, got {other:?}"),
        }
    }
    assert_eq!(
        engine.started.load(Ordering::SeqCst),
        0,
        "the engine never ran"
    );
    assert_eq!(sh.stats.rejected.get(), 3);
    // At or above our coefficient the request runs.
    for fair in [1000, 1500] {
        let msgs = run_one(&sh, fair).await;
        assert!(
            matches!(msgs.last(), Some(WorkerToProxyMessage::QueryAnswerPartV3(p)) if p.final_info.is_some()),
            "coefficient {fair}: {msgs:?}"
        );
    }
    assert_eq!(engine.started.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_engine_error_answer_reports_no_prompt() {
    let engine = Arc::new(Scripted {
        error_status: Some(503),
        ..Scripted::default()
    });
    let msgs = run_one(&shared(engine), 1000).await;
    let parts = parts(&msgs);
    assert!(!parts.is_empty(), "{msgs:?}");
    assert!(
        parts.iter().all(|p| p.progress.total_tokens_used == 0),
        "{msgs:?}"
    );
}

mod transcriptions {
    use std::sync::Mutex;

    use cocoon_engine::multipart::{parse_form, Form, FormPart};
    use cocoon_proto::messages::{HttpHeader, HttpResponse};

    use super::*;

    /// Records what reached it and answers one JSON body.
    #[derive(Debug)]
    struct Recorder {
        answer: serde_json::Value,
        seen: Mutex<Vec<EngineRequest>>,
    }

    #[async_trait::async_trait]
    impl Engine for Recorder {
        async fn start(&self, req: EngineRequest) -> Result<EngineResponse, EngineError> {
            self.seen.lock().expect("lock").push(req);
            Ok(EngineResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: stream::iter([Ok(Bytes::from(self.answer.to_string()))]).boxed(),
            })
        }

        async fn health(&self) -> Result<(), EngineError> {
            Ok(())
        }
    }

    fn recorder(answer: serde_json::Value) -> (Arc<Recorder>, Arc<Shared>) {
        let engine = Arc::new(Recorder {
            answer,
            seen: Mutex::default(),
        });
        let mut cfg = WorkerConfig::default();
        cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
        let sh = Arc::new(Shared::new(
            cfg,
            engine.clone(),
            Arc::new(WorkerStats::new()),
            None,
        ));
        (engine, sh)
    }

    /// A transcription `http.request` as our client builds it, with `extra` text fields.
    fn query(extra: &[(&str, &str)], content_types: &[&str]) -> Bytes {
        let mut parts = vec![
            FormPart::text("model", "mock"),
            FormPart::text("prompt", "two words"),
            FormPart::file("file", "talk.mp3", "audio/mpeg", vec![9u8; 64]),
        ];
        parts.extend(extra.iter().map(|(k, v)| FormPart::text(k, *v)));
        let (ct, body) = Form::new(parts).encode().expect("encodes");
        let mut headers: Vec<HttpHeader> = content_types
            .iter()
            .map(|t| HttpHeader {
                name: "Content-Type".into(),
                value: if t.is_empty() {
                    ct.clone()
                } else {
                    (*t).into()
                },
            })
            .collect();
        headers.push(HttpHeader {
            name: "Content-Length".into(),
            value: body.len().to_string(),
        });
        encode(&HttpRequest {
            method: "POST".into(),
            url: "/v1/audio/transcriptions".into(),
            http_version: "HTTP/1.0".into(),
            headers,
            payload: body,
        })
    }

    /// The answer's status and whole body.
    fn answer(msgs: &[WorkerToProxyMessage]) -> (i32, serde_json::Value) {
        let Some(WorkerToProxyMessage::QueryAnswerEx(head)) = msgs.first() else {
            panic!("expected a head first: {msgs:?}");
        };
        let head: HttpResponse = cocoon_tl::from_bytes(&head.answer).expect("http.response");
        let mut body = head.payload.to_vec();
        for m in msgs {
            match m {
                WorkerToProxyMessage::QueryAnswerPartV3(p) => body.extend_from_slice(&p.answer),
                WorkerToProxyMessage::QueryAnswerPartEx(p) => body.extend_from_slice(&p.answer),
                _ => {}
            }
        }
        (
            head.status_code,
            serde_json::from_slice(&body).expect("a JSON body"),
        )
    }

    #[tokio::test]
    async fn a_form_reaches_the_engine_canonical_and_its_token_usage_is_billed() {
        let (engine, sh) = recorder(serde_json::json!({"text": "hi there",
            "usage": {"type": "tokens", "input_tokens": 40, "output_tokens": 5, "total_tokens": 45}}));
        let msgs = run_query(&sh, query(&[], &[""]), 1000, None).await;
        let (status, body) = answer(&msgs);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["text"], "hi there");
        // Cocoon's cost fields, at 2 nanoTON a token (the default price).
        assert_eq!(body["usage"]["prompt_total_cost"], 80);
        assert_eq!(body["usage"]["completion_total_cost"], 10);
        assert_eq!(body["usage"]["total_cost"], 90);
        let last = *parts(&msgs).last().expect("a final part");
        let info = last.final_info.as_ref().expect("final info");
        assert_eq!(info.tokens_used.prompt_tokens_used, 40);
        assert_eq!(info.tokens_used.completion_tokens_used, 5);
        // What the engine got: the canonical form and its own Content-Type.
        let seen = engine.seen.lock().expect("lock");
        let req = seen.first().expect("the engine ran");
        assert_eq!(req.endpoint, Endpoint::AudioTranscriptions);
        let ct = req.content_type.as_deref().expect("a content type");
        assert!(
            ct.starts_with("multipart/form-data; boundary=cocoon-"),
            "{ct}"
        );
        let form = parse_form(Some(ct), &req.body, &ValidationLimits::default()).expect("parses");
        let file = form.parts().last().expect("file");
        assert_eq!(file.filename.as_deref(), Some("audio.mp3"));
        assert_eq!(form.text("stream_include_usage"), None, "not streaming");
    }

    #[tokio::test]
    async fn a_duration_usage_is_billed_per_second_and_a_stream_asks_for_usage() {
        let (engine, sh) = recorder(serde_json::json!({"text": "hi",
            "usage": {"type": "duration", "seconds": 2.5}}));
        let msgs = run_query(&sh, query(&[("stream", "true")], &[""]), 1000, None).await;
        let (status, body) = answer(&msgs);
        assert_eq!(status, 200, "{body}");
        let info = parts(&msgs)
            .last()
            .and_then(|p| p.final_info.clone())
            .expect("final info");
        let per_second = cocoon_engine::usage::AUDIO_TOKENS_PER_SECOND as i64;
        assert_eq!(info.tokens_used.prompt_tokens_used, 5 * per_second / 2);
        assert_eq!(info.tokens_used.completion_tokens_used, 0);
        assert_eq!(body["usage"]["total_cost"], 2 * 5 * per_second / 2);
        let seen = engine.seen.lock().expect("lock");
        let req = seen.first().expect("the engine ran");
        let form = parse_form(
            req.content_type.as_deref(),
            &req.body,
            &ValidationLimits::default(),
        )
        .expect("parses");
        assert_eq!(form.text("stream"), Some("true"));
        assert_eq!(form.text("stream_include_usage"), Some("true"));
    }

    #[tokio::test]
    async fn bad_forms_never_reach_the_engine() {
        let (engine, sh) = recorder(serde_json::json!({"text": ""}));
        // An unknown field, named.
        let msgs = run_query(&sh, query(&[("max_tokens", "5")], &[""]), 1000, None).await;
        let (status, body) = answer(&msgs);
        assert_eq!(status, 400);
        assert_eq!(body["error"]["param"], "max_tokens");
        // No Content-Type: the form cannot be read.
        let msgs = run_query(&sh, query(&[], &[]), 1000, None).await;
        assert_eq!(answer(&msgs).0, 415);
        // Another boundary than the body's.
        let msgs = run_query(
            &sh,
            query(&[], &["multipart/form-data; boundary=other"]),
            1000,
            None,
        )
        .await;
        assert_eq!(answer(&msgs).1["error"]["code"], "invalid_multipart");
        // Two Content-Types: which one would the engine read?
        let msgs = run_query(&sh, query(&[], &["", "text/plain"]), 1000, None).await;
        assert_eq!(answer(&msgs).0, 400);
        // Forms are never encrypted: a key with one is refused, as with a clear JSON body.
        let msgs = run_query(&sh, query(&[], &[""]), 1000, Some([7; 32])).await;
        match msgs.as_slice() {
            [WorkerToProxyMessage::QueryAnswerErrorEx(e)] => {
                assert_eq!(e.error_code, errors::PROTOVIOLATION);
                assert!(e.error.contains("unencrypted"), "{}", e.error);
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(engine.seen.lock().expect("lock").is_empty());
        assert_eq!(sh.stats.rejected.get(), 5);
    }
}
