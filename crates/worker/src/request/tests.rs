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
    let (a, b) = tokio::io::duplex(1 << 20);
    let (w, p) = tokio::join!(
        establish(a, SessionConfig::dialer()),
        establish(b, SessionConfig::acceptor())
    );
    let (session, _inbound) = w.expect("worker session");
    let (_proxy, mut proxy_in): (_, Inbound) = p.expect("proxy session");
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
    run(RequestCtx {
        shared: sh.clone(),
        session,
        proto: crate::WITH_EXTENSIONS,
        request_id: [3; 32],
        private_key: None,
        query,
        coefficient,
        timeout: 30.0,
        cancel: CancellationToken::new(),
        running: Arc::default(),
        pricing: sh.link_pricing(None),
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
