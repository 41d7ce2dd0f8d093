//! `POST /v1/responses`: OpenAI's Responses API, stateless, bridged to chat completions
//! ([`cocoon_engine::responses_api`] translates both ways). The translated request goes
//! through the client's own chat path (`crate::http::inference`: validation, sealing, payment,
//! retries, keys); a failed one is returned as its OpenAI-shaped error, a successful one is
//! translated back, whole or event by event.
//!
//! What must not live here: the translation itself, logging of prompts or answers.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cocoon_engine::responses_api::{chat_to_response, refused, to_chat, StreamBridge};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::http::error_response;
use crate::Shared;

/// Most bytes of a non-streamed chat answer collected for translation.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// `POST /v1/responses`.
pub(crate) async fn responses(
    State(shared): State<Arc<Shared>>,
    key: crate::http::KeyExt,
    body: Body,
) -> Response {
    let raw = match axum::body::to_bytes(body, shared.cfg.max_body_bytes).await {
        Ok(raw) => raw,
        Err(_) => {
            shared.stats.rejected.inc();
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body exceeds {} bytes", shared.cfg.max_body_bytes),
                Some("body_too_large"),
            );
        }
    };
    let plan = match serde_json::from_slice::<Value>(&raw)
        .map_err(|e| refused("", format!("request body is not valid JSON: {e}")))
        .and_then(|v| to_chat(&v))
    {
        Ok(plan) => plan,
        Err(r) => {
            shared.stats.rejected.inc();
            let body = json!({"error": {"message": r.message, "type": "invalid_request_error", "param": (!r.param.is_empty()).then_some(r.param), "code": "invalid_value"}});
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response();
        }
    };
    let chat_body = plan.chat.to_string();
    let answer = crate::http::inference(
        shared,
        cocoon_engine::Endpoint::ChatCompletions,
        key,
        Body::from(chat_body),
    )
    .await;
    if !answer.status().is_success() {
        // Already an OpenAI-shaped error.
        return answer;
    }
    let (mut parts, body) = answer.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if plan.stream {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let bridge = StreamBridge::new(plan.echo);
        let chunks = body.into_data_stream();
        let out = stream::unfold(
            (chunks, bridge, false),
            |(mut chunks, mut bridge, done)| async move {
                if done {
                    return None;
                }
                match chunks.next().await {
                    Some(Ok(bytes)) => {
                        let out = bridge.push(&bytes);
                        let over = bridge.is_over();
                        Some((
                            Ok::<Bytes, std::io::Error>(Bytes::from(out)),
                            (chunks, bridge, over),
                        ))
                    }
                    Some(Err(e)) => {
                        let mut out = String::new();
                        bridge.fail(&e.to_string(), &mut out);
                        Some((Ok(Bytes::from(out)), (chunks, bridge, true)))
                    }
                    None => {
                        let mut out = String::new();
                        if !bridge.is_over() {
                            bridge.fail("the answer ended before it was complete", &mut out);
                        }
                        Some((Ok(Bytes::from(out)), (chunks, bridge, true)))
                    }
                }
            },
        )
        .filter(|r| {
            let keep = !matches!(r, Ok(b) if b.is_empty());
            async move { keep }
        });
        return Response::from_parts(parts, Body::from_stream(out));
    }
    let bytes = match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::BAD_GATEWAY,
                &format!("the answer failed: {e}"),
                Some("cocoon_error"),
            )
        }
    };
    let Ok(chat) = serde_json::from_slice::<Value>(&bytes) else {
        return error_response(
            StatusCode::BAD_GATEWAY,
            "the worker's answer is not a chat completion",
            Some("protocol_error"),
        );
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = chat_to_response(&chat, &plan.echo).to_string();
    Response::from_parts(parts, Body::from(body))
}
