//! An OpenAI-compatible HTTP face for [`MockEngine`]: what `cocoon mock-engine --listen ADDR`
//! runs, and the "direct" baseline for benchmarks.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/audio/transcriptions`
//! (a multipart form, its `Content-Type` passed on), `GET /v1/models` (503 while the engine is
//! set unhealthy), `GET /mock/stats` (JSON [`MockStats`](super::MockStats)).
//!
//! Task model: axum owns one task per connection; a response body is the engine's stream, so
//! when a client disconnects mid-stream hyper drops the body and the generation is counted as
//! aborted. `TCP_NODELAY` is set on every accepted socket (without it each small SSE write
//! waits for a delayed ACK: +40 ms per request through two hops, rust-ecosystem.md §5).
//! [`serve_mock`] returns after `shutdown` resolves and open connections have finished.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use super::MockEngine;
use crate::engine::{Endpoint, Engine, EngineRequest};

/// Largest request body the mock accepts.
const MAX_BODY: usize = 4 << 20;
/// The mock has no caller-supplied deadline; a disconnect is what ends abandoned streams.
const REQUEST_DEADLINE: Duration = Duration::from_secs(3600);

#[derive(Clone)]
struct AppState {
    engine: MockEngine,
    next_id: Arc<AtomicU64>,
}

/// Serves `engine` on `listener` until `shutdown` resolves (then drains open connections).
pub async fn serve_mock(
    listener: TcpListener,
    engine: MockEngine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "set TCP_NODELAY failed");
        }
    });
    axum::serve(listener, router(engine))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The mock's routes, for embedding in another server or driving with `tower::ServiceExt`.
pub fn router(engine: MockEngine) -> Router {
    let state = AppState {
        engine,
        next_id: Arc::new(AtomicU64::new(0)),
    };
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/models", get(models))
        .route("/mock/stats", get(stats))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn chat_completions(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    generate(st, Endpoint::ChatCompletions, &headers, body).await
}

async fn completions(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    generate(st, Endpoint::Completions, &headers, body).await
}

async fn transcriptions(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    generate(st, Endpoint::AudioTranscriptions, &headers, body).await
}

async fn generate(st: AppState, endpoint: Endpoint, headers: &HeaderMap, body: Bytes) -> Response {
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| s.len() <= 128)
        .map_or_else(
            || format!("mock-{}", st.next_id.fetch_add(1, Ordering::Relaxed)),
            str::to_owned,
        );
    let content_type = endpoint
        .is_multipart()
        .then(|| headers.get(axum::http::header::CONTENT_TYPE))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let req = EngineRequest {
        endpoint,
        body,
        content_type,
        request_id,
        deadline: tokio::time::Instant::now() + REQUEST_DEADLINE,
    };
    let resp = match st.engine.start(req).await {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut builder = Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    match builder.body(Body::from_stream(resp.body)) {
        Ok(r) => r,
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad engine response head",
        ),
    }
}

async fn models(State(st): State<AppState>) -> Response {
    if !st.engine.is_healthy() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "mock engine set unhealthy");
    }
    Json(json!({
        "object": "list",
        "data": [{
            "id": st.engine.config().model,
            "object": "model",
            "created": 0,
            "owned_by": "cocoon-mock",
        }]
    }))
    .into_response()
}

async fn stats(State(st): State<AppState>) -> Response {
    Json(st.engine.stats()).into_response()
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let body =
        json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}});
    (status, Json(body)).into_response()
}
