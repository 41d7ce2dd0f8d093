//! One request on the worker, from `proxy.runQueryEx` to the final part.
//!
//! Order of events: admission (max active) → decode `http.request` → validate the OpenAI body
//! (JSON: whitelist, `include_usage` forced, `max_tokens` cap; a transcription's multipart form:
//! `cocoon_engine::multipart`, re-encoded canonically with its `Content-Type`) → engine → `proxy.queryAnswerEx` with the
//! response head → one part per engine chunk, forwarded as soon as it arrives (usage progress
//! with each part on protocol 3) → a final part carrying the adjusted usage, or an error carrying
//! the usage of what was delivered. Cancellation (proxy message, link loss) and the deadline stop
//! the engine by dropping its body stream.
//!
//! Progress (protocol 3) says what has been delivered as it is delivered, so a request cut off
//! by its client, the proxy's deadline or a lost link is still paid for what it streamed: the
//! engine's usage where it reported one (the embedded engine reports it on every chunk; vLLM does
//! with `[engine] continuous_usage_stats`), else the prompt's floor
//! ([`cocoon_engine::ValidatedRequest::prompt_tokens_floor`]) plus one completion token per
//! content-carrying chunk relayed. It never goes down, even when the engine's final report is
//! below the estimate; the final part's `final_info` is the engine's own final usage.
//!
//! A request priced below this worker's configured coefficient is refused before the engine is
//! called: the proxy sets the coefficient the usage is adjusted with, and must not set it lower.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cocoon_engine::multipart::validate_multipart;
use cocoon_engine::pricing::{adjust, AdjustedUsage};
use cocoon_engine::usage::{body_kind_from_content_type, BodyKind, RawUsage, UsageCounter};
use cocoon_engine::validate::{
    codes, validate_request, ValidatedRequest, ValidationError, ValidationLimits,
};
use cocoon_engine::{is_hop_by_hop_header, Endpoint, EngineRequest};
use cocoon_node::errors;
use cocoon_node::time::{format_unix, unix_now_f64};
use cocoon_proto::messages::tl_long;
use cocoon_proto::messages::{
    encode, HttpHeader, HttpRequest, HttpResponse, ProxyQueryAnswerErrorEx, ProxyQueryAnswerEx,
    ProxyQueryAnswerPartEx, ProxyQueryAnswerPartV3, ProxyQueryFinalInfo, TokensUsed,
};
use cocoon_proto::session::Session;
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::config::base_model_name;
use crate::costs::{CostAnnotator, CostPricing};
use crate::proxy_link::RunningMap;
use crate::Shared;

/// Everything a request task needs.
pub(crate) struct RequestCtx {
    pub shared: Arc<Shared>,
    pub session: Session,
    /// The version and capabilities agreed with this proxy.
    pub proto: cocoon_proto::version::Negotiated,
    pub request_id: [u8; 32],
    /// The network key for an encrypted request (`proxy.runQueryEx.private_key`, protocol >= 3;
    /// all zeros or absent: none).
    pub private_key: Option<[u8; 32]>,
    pub query: Bytes,
    pub coefficient: i64,
    pub timeout: f64,
    pub cancel: CancellationToken,
    pub running: RunningMap,
    /// The prices of this request (the root's with the chain on; `Shared::link_pricing`).
    pub pricing: cocoon_node::PricingConfig,
    /// A sealed request's answer side (`crate::sealed`): every part sealed, a receipt signed.
    pub sealed: Option<crate::sealed::SealedAnswer>,
}

/// How a request ended.
enum Ending {
    Completed,
    Failed { code: i32, message: String },
}

/// Decrements the active count and forgets the request, however the task ends.
struct ActiveGuard {
    shared: Arc<Shared>,
    running: RunningMap,
    request_id: [u8; 32],
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut m) = self.running.lock() {
            m.remove(&self.request_id);
        }
    }
}

pub(crate) async fn run(ctx: RequestCtx) {
    let span = info_span!("request", id = %hex::encode(&ctx.request_id[..8]));
    run_inner(ctx).instrument(span).await
}

async fn run_inner(mut ctx: RequestCtx) {
    let shared = ctx.shared.clone();
    let cfg = &shared.cfg;
    let started = unix_now_f64();
    let started_at = Instant::now();
    shared.stats.requests.inc();
    let active = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = ActiveGuard {
        shared: shared.clone(),
        running: ctx.running.clone(),
        request_id: ctx.request_id,
    };
    if ctx.coefficient < i64::from(cfg.coefficient) {
        shared.stats.rejected.inc();
        warn!(
            offered = ctx.coefficient,
            ours = cfg.coefficient,
            "proxy priced a request below our coefficient; refused"
        );
        send_error(
            &ctx,
            errors::NO_WORKER,
            format!(
                "worker: the proxy priced this request at coefficient {}, below this worker's {}",
                ctx.coefficient, cfg.coefficient
            ),
            None,
            started,
        )
        .await;
        return;
    }
    if active > cfg.max_active_requests as usize {
        shared.stats.rejected.inc();
        send_error(
            &ctx,
            errors::NO_WORKER,
            "worker: too many active queries".into(),
            None,
            started,
        )
        .await;
        return;
    }
    let timeout = if ctx.timeout.is_finite() && ctx.timeout > 0.0 {
        Duration::from_secs_f64(ctx.timeout.min(cfg.max_request_timeout.as_secs_f64()))
    } else {
        cfg.max_request_timeout
    };
    let deadline = started_at + timeout;

    let http: HttpRequest = match cocoon_tl::from_bytes(&ctx.query) {
        Ok(r) => r,
        Err(e) => {
            shared.stats.rejected.inc();
            send_error(
                &ctx,
                errors::PROTOVIOLATION,
                format!("worker: invalid http request: {e}"),
                None,
                started,
            )
            .await;
            return;
        }
    };
    // A sealed request: opened with the key of the certificate it was sealed to; from here on
    // it is the app's request, and its answer is sealed.
    let http = if crate::sealed::is_sealed(&http) {
        let opened = match shared.sealing.as_deref() {
            Some(ring) => crate::sealed::open(
                ring,
                &shared.replays,
                &http.payload,
                &shared.model(),
                |id| shared.own_image_hash(id),
                std::time::SystemTime::now(),
            )
            .map_err(|e| e.to_string()),
            None => Err("this worker takes no sealed requests".to_string()),
        };
        match opened {
            Ok(o) => {
                shared.stats.sealed_requests.inc();
                ctx.sealed = Some(o.answer);
                o.inner
            }
            Err(e) => {
                shared.stats.rejected.inc();
                send_error(
                    &ctx,
                    errors::PROTOVIOLATION,
                    format!("worker: {e}"),
                    None,
                    started,
                )
                .await;
                return;
            }
        }
    } else {
        http
    };
    let ctx = ctx;
    let path = http.url.split('?').next().unwrap_or("");
    let Some(endpoint) = Endpoint::from_path(path) else {
        shared.stats.rejected.inc();
        let body = errors::openai_error_json(
            404,
            &format!("unsupported endpoint {path}"),
            Some("unsupported_endpoint"),
        );
        send_http_answer(&ctx, 404, body, started).await;
        return;
    };
    let (validated, sealer) = match prepare(&http, endpoint, ctx.private_key, cfg) {
        Ok(x) => x,
        Err(Refused::Error(message)) => {
            shared.stats.rejected.inc();
            send_error(&ctx, errors::PROTOVIOLATION, message, None, started).await;
            return;
        }
        Err(Refused::Invalid(e)) => {
            shared.stats.rejected.inc();
            send_http_answer(&ctx, e.http_status(), e.to_openai_json(), started).await;
            return;
        }
    };
    if base_model_name(&validated.model) != base_model_name(&shared.model()) {
        shared.stats.rejected.inc();
        let body = errors::openai_error_json(
            404,
            &format!("model {} is not served by this worker", validated.model),
            Some("model_not_found"),
        );
        send_http_answer(&ctx, 404, body, started).await;
        return;
    }

    let prompt_floor = validated.prompt_tokens_floor;
    let engine_req = EngineRequest {
        endpoint,
        body: validated.body,
        content_type: validated.content_type,
        request_id: hex::encode(&ctx.request_id[..8]),
        deadline,
    };
    let response = tokio::select! {
        r = shared.engine.start(engine_req) => r,
        _ = ctx.cancel.cancelled() => {
            finish_failed(&ctx, errors::CANCELLED, "worker: cancelled".into(), RawUsage::default(), started).await;
            return;
        }
        _ = tokio::time::sleep_until(deadline) => {
            finish_failed(&ctx, errors::TIMEOUT, "worker: engine did not answer in time".into(), RawUsage::default(), started).await;
            return;
        }
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            finish_failed(
                &ctx,
                errors::BAD_GATEWAY,
                format!("worker: engine failed: {e}"),
                RawUsage::default(),
                started,
            )
            .await;
            return;
        }
    };

    let content_type = response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone());
    let kind = body_kind_from_content_type(content_type.as_deref());
    let mut counter = UsageCounter::new(kind, Default::default());
    // An engine's error answer processed no prompt: only what it reports counts.
    let answered = (200..300).contains(&response.status);
    let mut progress = Progress::new(if answered { prompt_floor } else { 0 });
    let mut annotator = CostAnnotator::new(
        kind,
        CostPricing {
            coefficient: ctx.coefficient.max(0) as u64,
            multipliers: ctx.pricing.multipliers(),
            price_per_token: ctx.pricing.price_per_token,
        },
        cfg.max_response_bytes,
    );
    if let Some(s) = sealer {
        annotator = annotator.sealing(s);
    }
    let head = response_head(response.status, &response.headers, started);
    if send(
        &ctx,
        ProxyQueryAnswerEx {
            request_id: ctx.request_id,
            answer: encode(&head),
            flags: 0,
            final_info: None,
        },
    )
    .await
    .is_err()
    {
        return;
    }

    let mut body = response.body;
    let ending = loop {
        let next = tokio::select! {
            n = body.next() => n,
            _ = ctx.cancel.cancelled() => break Ending::Failed { code: errors::CANCELLED, message: "worker: cancelled".into() },
            _ = tokio::time::sleep_until(deadline) => break Ending::Failed { code: errors::TIMEOUT, message: "worker: deadline passed".into() },
        };
        match next {
            None => break Ending::Completed,
            Some(Err(e)) => {
                break Ending::Failed {
                    code: errors::BAD_GATEWAY,
                    message: format!("worker: engine stream failed: {e}"),
                }
            }
            Some(Ok(chunk)) => {
                counter.observe(&chunk);
                let out = annotator.push(&chunk);
                if out.is_empty() {
                    continue;
                }
                let delivered = progress.update(&counter);
                if send_part(&ctx, out, delivered, None).await.is_err() {
                    break Ending::Failed {
                        code: errors::CANCELLED,
                        message: "link closed".into(),
                    };
                }
            }
        }
    };
    // Stop the engine before anything else if we are not reading it any more.
    drop(body);
    let mut rest = annotator.finish();
    if annotator.sealing_dropped() > 0 {
        debug!(
            units = annotator.sealing_dropped(),
            "parts of an encrypted answer were not JSON and were dropped"
        );
    }
    let ending = match ending {
        Ending::Completed if annotator.sealing_failed() => Ending::Failed {
            code: errors::BAD_GATEWAY,
            message: "worker: a part of the answer is too large to encrypt".into(),
        },
        other => other,
    };
    // A successful answer must also be a complete one: an SSE stream ends with `[DONE]`, a JSON
    // body parses. Otherwise the engine broke off or sent garbage, and the app must see an
    // error — not a 200 with a truncated stream or a body that is not JSON.
    let ending = match ending {
        Ending::Completed if (200..300).contains(&response.status) => {
            let raw = counter.finish();
            match kind {
                BodyKind::Sse if !counter.saw_done() => Ending::Failed {
                    code: errors::BAD_GATEWAY,
                    message: "worker: the engine's stream ended without [DONE]".into(),
                },
                BodyKind::Json if counter.malformed() > 0 && raw.total() == 0 => {
                    rest = Bytes::new(); // never relay the garbage itself
                    Ending::Failed {
                        code: errors::BAD_GATEWAY,
                        message: "worker: the engine's answer is not valid JSON".into(),
                    }
                }
                _ => Ending::Completed,
            }
        }
        other => other,
    };
    match ending {
        Ending::Completed => {
            let raw = counter.finish();
            let adjusted = adjust(
                raw,
                ctx.coefficient.max(0) as u64,
                &ctx.pricing.multipliers(),
            );
            shared.stats.completed(&adjusted, started_at.elapsed());
            let info = final_info(&ctx, adjusted, started);
            let delivered = progress.update(&counter);
            let _ = send_part(&ctx, rest, delivered, Some(info)).await;
        }
        Ending::Failed { code, message } => {
            if !rest.is_empty() {
                let delivered = progress.update(&counter);
                let _ = send_part(&ctx, rest, delivered, None).await;
            }
            let delivered = progress.delivered(&counter);
            finish_failed(&ctx, code, message, delivered, started).await;
        }
    }
}

/// Why a request body was refused before the engine.
#[derive(Debug)]
enum Refused {
    /// Not a request this worker can open: an error answer (`proxy.queryAnswerErrorEx`).
    Error(String),
    /// A body that fails validation: an OpenAI error answer with its HTTP status.
    Invalid(ValidationError),
}

/// Opens and validates the body of `http` for `endpoint`. A JSON body is opened first when
/// encrypted (v1 field encryption; its answer is then sealed with the returned sealer) and goes
/// through the whitelist with this worker's max-token cap. A multipart form
/// (`/v1/audio/transcriptions`) is never encrypted (upstream encrypts JSON fields only, so a key
/// with one is refused as upstream refuses a key with a clear body); it is checked with the
/// `Content-Type` of the `http.request`, which must be given once, and the engine gets its
/// canonical form (asking for usage when it streams).
fn prepare(
    http: &HttpRequest,
    endpoint: Endpoint,
    key: Option<[u8; 32]>,
    cfg: &crate::config::WorkerConfig,
) -> Result<(ValidatedRequest, Option<crate::field_encryption::Sealer>), Refused> {
    let limits = ValidationLimits {
        max_body_bytes: cfg.max_request_bytes,
        ..ValidationLimits::default()
    };
    if endpoint.is_multipart() {
        if key.is_some_and(|k| k != [0; 32]) {
            return Err(Refused::Error(format!(
                "worker: {}",
                crate::field_encryption::OpenError::KeyForClearRequest
            )));
        }
        let mut types = http
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-type"));
        let content_type = types.next().map(|h| h.value.as_str());
        if types.next().is_some() {
            return Err(Refused::Invalid(ValidationError {
                message: "the request has more than one Content-Type".into(),
                param: None,
                code: codes::INVALID_MULTIPART,
            }));
        }
        return validate_multipart(endpoint, content_type, &http.payload, true, &limits)
            .map(|v| (v, None))
            .map_err(Refused::Invalid);
    }
    // An encrypted request (v1 field encryption) is opened here; its answer is sealed later.
    let (payload, sealer) = match crate::field_encryption::open_request(&http.payload, key) {
        Ok(crate::field_encryption::Opened::Clear) => (http.payload.clone(), None),
        Ok(crate::field_encryption::Opened::Sealed { body, sealer }) => (body, Some(sealer)),
        Err(e) => return Err(Refused::Error(format!("worker: {e}"))),
    };
    validate_request(endpoint, &payload, Some(cfg.default_max_tokens), &limits)
        .map(|v| (v, sealer))
        .map_err(Refused::Invalid)
}

/// The usage a request has delivered so far, as its parts report it (see the module docs).
#[derive(Debug)]
struct Progress {
    /// What the prompt is at least, until the engine says.
    prompt_floor: u64,
    /// The highest usage reported so far (progress never goes down).
    last: RawUsage,
    /// Whether any part went out (nothing relayed, nothing estimated).
    relayed: bool,
}

impl Progress {
    fn new(prompt_floor: u64) -> Self {
        Self {
            prompt_floor,
            last: RawUsage::default(),
            relayed: false,
        }
    }

    /// The usage to report with a part that is about to go out.
    fn update(&mut self, counter: &UsageCounter) -> RawUsage {
        self.relayed = true;
        let seen = counter.current();
        let now = RawUsage {
            prompt: if seen.prompt > 0 {
                seen.prompt
            } else {
                self.prompt_floor
            },
            completion: seen.completion.max(counter.completion_chunks()),
            ..seen
        };
        self.last = self.last.max(now);
        self.last
    }

    /// What an interrupted request delivered: what its parts reported (and the engine's usage
    /// if it came later), or only the engine's usage when no part went out.
    fn delivered(&self, counter: &UsageCounter) -> RawUsage {
        if self.relayed {
            self.last.max(counter.current())
        } else {
            counter.current()
        }
    }
}

fn tokens_used(a: &AdjustedUsage) -> TokensUsed {
    TokensUsed {
        prompt_tokens_used: tl_long(a.prompt),
        cached_tokens_used: tl_long(a.cached),
        completion_tokens_used: tl_long(a.completion),
        reasoning_tokens_used: tl_long(a.reasoning),
        total_tokens_used: tl_long(a.total),
    }
}

fn final_info(ctx: &RequestCtx, adjusted: AdjustedUsage, started: f64) -> ProxyQueryFinalInfo {
    let timing = ctx.proto.version >= cocoon_proto::version::PROTO_TIMINGS;
    ProxyQueryFinalInfo {
        flags: 0,
        tokens_used: tokens_used(&adjusted),
        worker_debug: None,
        worker_start_time: timing.then_some(started),
        worker_end_time: timing.then_some(unix_now_f64()),
    }
}

/// The `http.response` head sent before the body: engine headers minus hop-by-hop ones, plus
/// `Transfer-Encoding: chunked` (the body follows in parts) and Cocoon's timing header.
fn response_head(status: u16, headers: &[(String, String)], started: f64) -> HttpResponse {
    let mut out: Vec<HttpHeader> = headers
        .iter()
        .filter(|(k, _)| !is_hop_by_hop_header(k))
        .map(|(k, v)| HttpHeader {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    out.push(HttpHeader {
        name: "Transfer-Encoding".into(),
        value: "chunked".into(),
    });
    out.push(HttpHeader {
        name: "X-Cocoon-Worker-Start".into(),
        value: format_unix(started),
    });
    HttpResponse {
        http_version: "HTTP/1.1".into(),
        status_code: i32::from(status),
        reason: http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_string(),
        headers: out,
        payload: Bytes::new(),
    }
}

async fn send<T: cocoon_tl::TlWrite>(ctx: &RequestCtx, msg: T) -> Result<(), ()> {
    let bytes = encode(&msg);
    ctx.shared.stats.bytes_out.inc_by(bytes.len() as u64);
    ctx.session.send(bytes).await.map_err(|_| ())
}

/// Sends one body part; with our extensions it carries `delivered`, the usage delivered so far.
async fn send_part(
    ctx: &RequestCtx,
    answer: Bytes,
    delivered: RawUsage,
    final_info: Option<ProxyQueryFinalInfo>,
) -> Result<(), ()> {
    let answer = match &ctx.sealed {
        None => answer,
        // A part that cannot be sealed never goes out in clear.
        Some(s) => s.seal(&answer, final_info.is_some()).ok_or(())?,
    };
    if let Some(info) = &final_info {
        send_receipt(ctx, info).await?;
    }
    if ctx.proto.extensions {
        let progress = adjust(
            delivered,
            ctx.coefficient.max(0) as u64,
            &ctx.pricing.multipliers(),
        );
        send(
            ctx,
            ProxyQueryAnswerPartV3 {
                request_id: ctx.request_id,
                answer,
                flags: 0,
                progress: tokens_used(&progress),
                final_info,
            },
        )
        .await
    } else {
        send(
            ctx,
            ProxyQueryAnswerPartEx {
                request_id: ctx.request_id,
                answer,
                flags: 0,
                final_info,
            },
        )
        .await
    }
}

/// Answers with a complete HTTP response (errors produced by the worker itself, in OpenAI shape).
async fn send_http_answer(ctx: &RequestCtx, status: u16, body: serde_json::Value, started: f64) {
    let head = response_head(
        status,
        &[("Content-Type".into(), "application/json".into())],
        started,
    );
    if send(
        ctx,
        ProxyQueryAnswerEx {
            request_id: ctx.request_id,
            answer: encode(&head),
            flags: 0,
            final_info: None,
        },
    )
    .await
    .is_err()
    {
        return;
    }
    let info = final_info(ctx, AdjustedUsage::default(), started);
    let body = Bytes::from(body.to_string());
    if ctx.sealed.is_some() {
        // Sealed like any answer (with its receipt) when the request was sealed.
        let _ = send_part(ctx, body, RawUsage::default(), Some(info)).await;
        return;
    }
    let _ = send(
        ctx,
        ProxyQueryAnswerPartEx {
            request_id: ctx.request_id,
            answer: body,
            flags: 0,
            final_info: Some(info),
        },
    )
    .await;
}

/// A sealed request's receipt (`proxy.queryReceiptV3`), sent right before its final message.
async fn send_receipt(ctx: &RequestCtx, info: &ProxyQueryFinalInfo) -> Result<(), ()> {
    let Some(sealed) = &ctx.sealed else {
        return Ok(());
    };
    if !ctx.proto.extensions {
        return Ok(());
    }
    let ms = |t: f64| (t.max(0.0) * 1000.0) as u64;
    let started = info.worker_start_time.unwrap_or_else(unix_now_f64);
    let ended = info.worker_end_time.unwrap_or_else(unix_now_f64);
    let Some(receipt) = sealed.receipt(
        &info.tokens_used,
        ctx.coefficient.max(0) as u64,
        ms(started),
        ms(ended),
    ) else {
        warn!("could not sign the receipt of a sealed request");
        return Ok(());
    };
    send(
        ctx,
        cocoon_proto::messages::ProxyQueryReceiptV3 {
            request_id: ctx.request_id,
            receipt,
        },
    )
    .await
}

async fn finish_failed(
    ctx: &RequestCtx,
    code: i32,
    message: String,
    delivered: RawUsage,
    started: f64,
) {
    let adjusted = adjust(
        delivered,
        ctx.coefficient.max(0) as u64,
        &ctx.pricing.multipliers(),
    );
    ctx.shared.stats.failed(code, &adjusted);
    debug!(code, "request failed");
    send_error(ctx, code, message, Some(adjusted), started).await;
}

async fn send_error(
    ctx: &RequestCtx,
    code: i32,
    message: String,
    usage: Option<AdjustedUsage>,
    started: f64,
) {
    let info = final_info(ctx, usage.unwrap_or_default(), started);
    if send_receipt(ctx, &info).await.is_err() {
        return;
    }
    let _ = send(
        ctx,
        ProxyQueryAnswerErrorEx {
            request_id: ctx.request_id,
            error_code: code,
            error: message,
            flags: 0,
            final_info: Some(info),
        },
    )
    .await;
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod head_tests {
    use super::*;

    #[test]
    fn head_drops_framing_headers_and_adds_timing() {
        let head = response_head(
            200,
            &[
                ("Content-Length".into(), "353".into()),
                ("Content-Type".into(), "application/json".into()),
                ("Connection".into(), "keep-alive".into()),
            ],
            1.5,
        );
        let names: Vec<_> = head.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["Content-Type", "Transfer-Encoding", "X-Cocoon-Worker-Start"]
        );
        assert_eq!(head.reason, "OK");
    }
}
