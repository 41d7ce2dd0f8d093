//! The client's OpenAI-compatible HTTP API: `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/audio/transcriptions` (a `multipart/form-data` form), `GET /v1/models`, plus the
//! stats endpoints.
//!
//! Every request on the port first passes [`crate::guard`] (Host, Origin, Sec-Fetch-Site and
//! Content-Type checks that keep web pages out); a refused one never reaches a proxy.
//!
//! A request body is read with a size limit, parsed as JSON (malformed → 400, never a crash),
//! stripped of Cocoon's extra fields (`max_coefficient`, `timeout`, `enable_debug`,
//! `request_guid`), validated against the same whitelist the worker applies (unknown field →
//! 400 naming it), wrapped into `http.request` and sent as `client.runQueryEx` over a ready proxy
//! link. The `http.request` (`POST`, `HTTP/1.0`, as upstream 9060ce5 builds it) carries the
//! validated body and two headers, `Content-Type: application/json` and its `Content-Length`:
//! none of the app's headers (cookies, credentials, other API keys, client addresses, user
//! agent, origin) travel to the proxy and worker, which use none. An encrypted body (v1 field
//! encryption) is not validated, only forwarded with the network key it names.
//! A transcription form is read with the same size limit, stripped of Cocoon's extra fields
//! (sent as text fields), checked with `cocoon_engine::multipart` (unknown field → 400 naming
//! it) and forwarded in its canonical form with its own `Content-Type` (boundary included) in
//! place of `application/json`; forms are never encrypted (upstream encrypts JSON only).
//! The answer streams back chunk by chunk when the app asked for a stream (SSE or JSON lines),
//! else it is collected whole; hyper frames it (we never copy an upstream
//! `Content-Length`). Dropping the response (app disconnect) cancels the request at the proxy
//! and, through it, at the worker. Every error is OpenAI-shaped JSON with a meaningful status;
//! a stream that fails midway gets an SSE error event and then ends abnormally (no final empty
//! chunk), so an app can tell a cut stream from a complete one.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cocoon_engine::multipart::{parse_form, validate_transcription};
use cocoon_engine::validate::{validate_request, ValidationError, ValidationLimits};
use cocoon_engine::{is_hop_by_hop_header, Endpoint};
use cocoon_node::errors;
use cocoon_node::time::{format_unix, unix_now_f64};
use cocoon_proto::messages::{
    encode, ClientRunQueryEx, HttpHeader, HttpRequest, HttpResponse, TokensUsed,
};
use futures::stream::{self, StreamExt};
use rand::RngCore;
use serde_json::Value;
use tracing::{debug, warn};

use crate::config::SealedMode;
use crate::link::{Events, Link, ProxyEvent};
use crate::sealing::VerifiedWorker;
use crate::Shared;
use cocoon_engine::usage_cost::{self, Framing};

/// The path of the one endpoint whose body is a `multipart/form-data` form.
pub(crate) const TRANSCRIPTIONS: &str = "/v1/audio/transcriptions";

/// Cocoon's extra request fields, read and removed (a form carries them as text fields).
const EXTRA_FIELDS: [&str; 4] = ["max_coefficient", "timeout", "enable_debug", "request_guid"];

/// Everything the client's HTTP port serves (the API, stats and admin actions), behind
/// [`crate::guard`].
pub(crate) fn app(shared: Arc<Shared>) -> Router {
    router(shared.clone())
        .merge(crate::payments::admin::router(shared.clone()))
        .merge(crate::keys::router(shared.clone()))
        .layer(axum::middleware::from_fn_with_state(
            shared,
            crate::guard::guard,
        ))
}

/// Routes of the client's HTTP API and stats, behind the bearer-token check.
fn router(shared: Arc<Shared>) -> Router {
    let stats = cocoon_node::stats::router(Arc::new(crate::stats::StatsView(shared.clone())));
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/responses", post(crate::responses::responses))
        .route(TRANSCRIPTIONS, post(transcriptions))
        .route("/v1/models", get(models))
        .route("/v1/cocoon/receipts/{id}", get(receipt))
        .route("/v1/cocoon/receipts/{id}/proof", get(receipt_proof))
        .fallback(not_found)
        .with_state(shared.clone())
        .merge(stats)
        .layer(axum::middleware::from_fn_with_state(shared, auth))
}

/// Bearer-token check, when one is configured; with API keys on, `crate::keys::authorize`.
async fn auth(
    State(shared): State<Arc<Shared>>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    match crate::keys::authorize(&shared, &mut req) {
        crate::keys::Auth::Off => {}
        crate::keys::Auth::Pass => return next.run(req).await,
        crate::keys::Auth::Refuse(r) => return r,
    }
    if let Some(token) = shared.cfg.bearer_token.as_deref().filter(|t| !t.is_empty()) {
        let ok = bearer(&req).is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token",
                Some("invalid_api_key"),
            );
        }
    }
    next.run(req).await
}

/// The token of an `Authorization: Bearer ...` header, if the request has one.
pub(crate) fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Whether two tokens are equal, in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /v1/cocoon/receipts/{id}`: the verified receipt of a sealed request (its id is the
/// `X-Cocoon-Receipt-Id` header of the answer), as JSON (`cocoon receipt verify` reads it).
async fn receipt(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match shared.receipts.get(&id.to_ascii_lowercase()) {
        Some(r) => axum::Json(r).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            "no receipt with this id (ids are 64 hex digits; receipts exist for sealed requests)",
            Some("receipt_not_found"),
        ),
    }
}

/// How long the proxy has to answer `client.getReceiptProofV3`.
const PROOF_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /v1/cocoon/receipts/{id}/proof`: asks the proxy that countersigned the receipt for its
/// inclusion proof in a closed anchoring period, checks it, keeps it in the receipt document
/// (`"proof"`, for `cocoon receipt verify`) and returns it.
async fn receipt_proof(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let id = id.to_ascii_lowercase();
    let Some(mut doc) = shared.receipts.get(&id) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "no receipt with this id",
            Some("receipt_not_found"),
        );
    };
    let receipt_id = doc["receipt"]["id"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    let Some(receipt_id) = receipt_id else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the kept receipt has no id",
            None,
        );
    };
    let proxy = doc["proxy"].as_str().unwrap_or_default().to_string();
    let Some(link) = shared
        .pool
        .ready_links()
        .into_iter()
        .find(|l| l.addr == proxy)
    else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the proxy that countersigned this receipt is not connected",
            Some("proxy_unavailable"),
        );
    };
    let answer = match crate::link::receipt_proof(&link, receipt_id, PROOF_TIMEOUT).await {
        Ok(a) => a,
        // Not closed yet (the message says when it closes), unknown, or unreachable.
        Err(why) => {
            return error_response(
                StatusCode::CONFLICT,
                &format!("the proxy gave no proof: {why}"),
                Some("proof_unavailable"),
            )
        }
    };
    let proof = match crate::receipts::proof_json(&doc, &answer) {
        Ok(p) => p,
        Err(e) => {
            warn!(proxy = %proxy, error = %e, "receipt proof refused");
            return error_response(StatusCode::BAD_GATEWAY, &e.to_string(), Some("bad_proof"));
        }
    };
    doc["proof"] = proof.clone();
    if let Err(e) = shared.receipts.put(&id, &doc) {
        warn!(error = %e, "cannot keep a receipt's proof");
    }
    axum::Json(proof).into_response()
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "unknown endpoint; this API serves /v1/chat/completions, /v1/completions, \
         /v1/responses, /v1/audio/transcriptions and /v1/models",
        Some("unknown_url"),
    )
}

/// The API key a request was authenticated with, if any.
pub(crate) type KeyExt = Option<axum::Extension<crate::keys::Authed>>;

async fn chat(State(shared): State<Arc<Shared>>, key: KeyExt, body: Body) -> Response {
    inference(shared, Endpoint::ChatCompletions, key, body).await
}

async fn completions(State(shared): State<Arc<Shared>>, key: KeyExt, body: Body) -> Response {
    inference(shared, Endpoint::Completions, key, body).await
}

async fn transcriptions(
    State(shared): State<Arc<Shared>>,
    key: KeyExt,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = unix_now_f64();
    shared.stats.requests.inc();
    let raw = match read_body(&shared, body).await {
        Ok(raw) => raw,
        Err(refused) => return refused,
    };
    match prepare_form(&shared, &headers, &raw) {
        Ok(prepared) => {
            let key = key.map(|k| k.0);
            dispatch(
                shared,
                Endpoint::AudioTranscriptions,
                prepared,
                key,
                started,
            )
            .await
        }
        Err(refused) => {
            shared.stats.rejected.inc();
            refused.response()
        }
    }
}

/// An OpenAI-shaped error response.
pub(crate) fn error_response(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    let body = errors::openai_error_json(status.as_u16(), message, code);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Cocoon's extra request fields, read and removed from the body.
struct Extras {
    max_coefficient: u32,
    timeout: Duration,
    max_tokens: u64,
}

fn take_extras(
    shared: &Shared,
    obj: &mut serde_json::Map<String, Value>,
) -> Result<Extras, String> {
    let cfg = &shared.cfg;
    let max_coefficient = match obj.remove("max_coefficient") {
        None | Some(Value::Null) => cfg.default_max_coefficient,
        Some(v) => v
            .as_u64()
            .filter(|c| *c <= 1_000_000_000)
            .ok_or("max_coefficient must be a non-negative integer")? as u32,
    };
    let timeout = match obj.remove("timeout") {
        None | Some(Value::Null) => cfg.default_timeout,
        Some(v) => {
            let secs = v
                .as_f64()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or("timeout must be a positive number of seconds")?;
            Duration::from_secs_f64(secs.min(cfg.max_timeout.as_secs_f64()))
        }
    };
    obj.remove("enable_debug");
    obj.remove("request_guid");
    let max_tokens = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_u64))
        .unwrap_or(cfg.default_max_tokens);
    Ok(Extras {
        max_coefficient,
        timeout,
        max_tokens,
    })
}

/// Reads, checks and sends one JSON inference request (also what `/v1/responses` sends after
/// translating its request).
pub(crate) async fn inference(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    key: KeyExt,
    body: Body,
) -> Response {
    let started = unix_now_f64();
    shared.stats.requests.inc();
    let raw = match read_body(&shared, body).await {
        Ok(raw) => raw,
        Err(refused) => return refused,
    };
    match prepare_json(&shared, endpoint, &raw) {
        Ok(prepared) => dispatch(shared, endpoint, prepared, key.map(|k| k.0), started).await,
        Err(refused) => {
            shared.stats.rejected.inc();
            refused.response()
        }
    }
}

/// A request checked and ready for a proxy.
struct Prepared {
    /// The model it asks for (routing).
    model: String,
    /// The body to forward: validated, or sealed and forwarded unread.
    body: Bytes,
    /// The body's `Content-Type`: JSON, or a form's with its boundary.
    content_type: String,
    /// The network key an encrypted body is sealed to.
    sealed_to: Option<[u8; 32]>,
    extras: Extras,
    /// The app asked for a stream.
    wants_stream: bool,
}

/// Reads the app's body up to `max_body_bytes` (413 beyond).
async fn read_body(shared: &Shared, body: Body) -> Result<Bytes, Response> {
    match axum::body::to_bytes(body, shared.cfg.max_body_bytes).await {
        Ok(raw) => {
            shared.stats.bytes_in.inc_by(raw.len() as u64);
            Ok(raw)
        }
        Err(_) => {
            shared.stats.rejected.inc();
            Err(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body exceeds {} bytes", shared.cfg.max_body_bytes),
                Some("body_too_large"),
            ))
        }
    }
}

fn validation_limits(shared: &Shared) -> ValidationLimits {
    ValidationLimits {
        max_body_bytes: shared.cfg.max_body_bytes,
        ..ValidationLimits::default()
    }
}

/// Why a request was refused before it left; [`Rejected::response`] is the app's answer.
#[derive(Debug)]
enum Rejected {
    /// The body failed validation (OpenAI-shaped, with its own status).
    Invalid(ValidationError),
    /// Refused for another reason.
    Other {
        status: StatusCode,
        message: String,
        code: Option<&'static str>,
    },
}

impl Rejected {
    fn bad_request(message: impl Into<String>, code: &'static str) -> Self {
        Self::Other {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            code: Some(code),
        }
    }

    fn response(self) -> Response {
        match self {
            Self::Invalid(e) => {
                let status =
                    StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
                (
                    status,
                    [(header::CONTENT_TYPE, "application/json")],
                    e.to_openai_json().to_string(),
                )
                    .into_response()
            }
            Self::Other {
                status,
                message,
                code,
            } => error_response(status, &message, code),
        }
    }
}

/// A JSON request: parsed, stripped of Cocoon's extra fields, validated (or, encrypted,
/// forwarded unread to the key it names).
fn prepare_json(shared: &Shared, endpoint: Endpoint, raw: &[u8]) -> Result<Prepared, Rejected> {
    let mut json: Value = serde_json::from_slice(raw).map_err(|e| {
        Rejected::bad_request(
            format!("request body is not valid JSON: {e}"),
            "invalid_json",
        )
    })?;
    let Some(obj) = json.as_object_mut() else {
        return Err(Rejected::bad_request(
            "request body must be a JSON object",
            "invalid_json",
        ));
    };
    let extras = take_extras(shared, obj).map_err(|e| Rejected::bad_request(e, "invalid_value"))?;
    let stripped = serde_json::to_vec(&json).map_err(|e| Rejected::Other {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("cannot re-encode request: {e}"),
        code: None,
    })?;
    // The app asked for a stream (`stream` stays in clear in an encrypted body too): its answer
    // is forwarded part by part whatever its content type (an engine may stream JSON lines).
    let wants_stream = json.get("stream").and_then(Value::as_bool).unwrap_or(false);
    // An encrypted body (v1 field encryption) cannot be validated here: only the attested
    // worker holding the network key can read it. It goes as it is, to the key it names.
    let (model, body, sealed_to) = if cocoon_field_encryption::is_encrypted(&json) {
        sealed_request(&json, stripped).map_err(|m| Rejected::bad_request(m, "invalid_value"))?
    } else {
        let v = validate_request(endpoint, &stripped, None, &validation_limits(shared))
            .map_err(Rejected::Invalid)?;
        (v.model, v.body, None)
    };
    Ok(Prepared {
        model,
        body,
        content_type: "application/json".into(),
        sealed_to,
        extras,
        wants_stream,
    })
}

/// A transcription form: parsed, stripped of Cocoon's extra fields (text fields, read as JSON
/// values where they parse), checked, and re-encoded canonically.
fn prepare_form(shared: &Shared, headers: &HeaderMap, raw: &[u8]) -> Result<Prepared, Rejected> {
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let content_type = types.next().map(|v| v.to_str().unwrap_or_default());
    if types.next().is_some() {
        return Err(Rejected::bad_request(
            "the request has more than one Content-Type",
            "invalid_multipart",
        ));
    }
    let mut form =
        parse_form(content_type, raw, &validation_limits(shared)).map_err(Rejected::Invalid)?;
    let mut extras = serde_json::Map::new();
    for name in EXTRA_FIELDS {
        if let Some(text) = form.take_text(name).map_err(Rejected::Invalid)? {
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            extras.insert(name.to_owned(), value);
        }
    }
    let extras =
        take_extras(shared, &mut extras).map_err(|e| Rejected::bad_request(e, "invalid_value"))?;
    let v = validate_transcription(form, false).map_err(Rejected::Invalid)?;
    let Some(content_type) = v.content_type else {
        return Err(Rejected::Other {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "a checked form has no content type".into(),
            code: None,
        });
    };
    Ok(Prepared {
        model: v.model,
        body: v.body,
        content_type,
        sealed_to: None,
        extras,
        wants_stream: v.stream,
    })
}

/// Sends a prepared request to a proxy and answers the app with what comes back. A request
/// that fails before anything reached the app (the worker lost or refused, the proxy lost, no
/// worker free, the proxy's deadline before the head) is tried once more, on another proxy
/// when there is one, within the request's own deadline ([`retry_reason`]); the answer then
/// says so in `X-Cocoon-Retries` and `X-Cocoon-Retry-Reason`. Nothing is sent to the app before
/// a head arrives, so a retry never repeats a byte the app already has; the failed attempt's
/// charge is what its proxy settles for it (nothing, when its worker relayed nothing).
async fn dispatch(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    prepared: Prepared,
    key: Option<crate::keys::Authed>,
    started: f64,
) -> Response {
    // The app's API key: model list, limits and budget (keys off or admin token: no ticket).
    // Held across a retry; released (nothing charged) when the request fails.
    let mut ticket = match crate::keys::admit(
        &shared,
        key.as_ref(),
        &prepared.model,
        prepared.extras.max_tokens,
    ) {
        Ok(t) => t,
        Err(refused) => {
            shared.stats.rejected.inc();
            return crate::keys::refusal_response(&refused);
        }
    };
    // The stale-root guard: no new request while our view of the root is too old.
    if let Some(why) = shared.refusing() {
        shared.stats.failed.inc();
        return error_response(StatusCode::SERVICE_UNAVAILABLE, &why, Some("root_stale"));
    }
    let is_test = shared.cfg.attestation.is_test();
    let mode = shared.cfg.privacy.mode(is_test);
    if prepared.sealed_to.is_some() && mode == SealedMode::Required {
        // v1 field encryption hands the key to every proxy: not sealed in our sense.
        shared.stats.failed.inc();
        shared.stats.sealing_unavailable.inc();
        return error_response(
            StatusCode::BAD_REQUEST,
            "this client seals every request ([privacy] sealed = \"required\"); a v1 \
             field-encrypted body is readable by proxies: send it in clear and the client seals it",
            Some("sealing_required"),
        );
    }
    let deadline = tokio::time::Instant::now() + prepared.extras.timeout;
    let mut retried: Option<&'static str> = None;
    let mut avoid: Option<String> = None;
    loop {
        let link = match avoid.as_deref() {
            Some(addr) => shared.pool.pick_other(addr),
            None => shared.pool.pick(),
        };
        let Some(link) = link else {
            shared.stats.failed.inc();
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "no proxy connection is ready",
                Some("no_proxy"),
            );
        };
        let may_retry = retried.is_none();
        match attempt(
            &shared, endpoint, &prepared, &link, deadline, mode, may_retry,
        )
        .await
        {
            Attempted::Head(arrived) => {
                let Arrived {
                    answer,
                    done,
                    events,
                    mut guard,
                } = *arrived;
                guard.ticket = ticket.take();
                let shape = AnswerShape {
                    deadline,
                    started,
                    wants_stream: prepared.wants_stream,
                    field_encrypted: prepared.sealed_to.is_some(),
                    retried,
                };
                return respond(shared, answer, done, events, guard, shape).await;
            }
            Attempted::Failed { response, retry } => {
                let other_proxy = shared.pool.has_other(&link.addr);
                let time_left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let again = retried.is_none()
                    && time_left >= MIN_RETRY_TIME
                    && retry.is_some_and(|r| r.same_proxy || other_proxy);
                match retry {
                    Some(r) if again => {
                        debug!(reason = r.reason, proxy = %link.addr, "retrying a request that failed before its head");
                        shared.stats.retried.inc();
                        retried = Some(r.reason);
                        avoid = Some(link.addr.clone());
                    }
                    _ => {
                        shared.stats.failed.inc();
                        return response;
                    }
                }
            }
        }
    }
}

/// Least time left in a request's deadline for a retry to be worth sending.
const MIN_RETRY_TIME: Duration = Duration::from_secs(1);

/// Why a failed attempt may be tried again, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Retry {
    /// Named in `X-Cocoon-Retry-Reason`.
    reason: &'static str,
    /// Worth trying through the same proxy (it picks another worker); otherwise only through
    /// another one.
    same_proxy: bool,
}

/// Whether a proxy's error, received before the answer's head, may be retried (a worker's 503
/// head, its engine at capacity, is retried too: `attempt`): the worker was lost or its
/// connection broke, the proxy's deadline passed before any head (another worker
/// may be faster), or the proxy had no worker free or refused for load (then only through
/// another proxy: asking the same one again at once would only add load). Errors that another
/// attempt would meet again (a bad request, an unknown model, credit) are not retried.
fn retry_reason(code: i32) -> Option<Retry> {
    let (reason, same_proxy) = match code {
        errors::BAD_GATEWAY => ("worker_lost", true),
        errors::NOT_READY => ("not_ready", true),
        errors::TIMEOUT => ("timeout_before_head", true),
        errors::NO_WORKER => ("no_worker", false),
        errors::TOO_MANY_REQUESTS => ("overloaded", false),
        _ => return None,
    };
    Some(Retry { reason, same_proxy })
}

/// The outcome of one attempt at a request, up to its head.
enum Attempted {
    /// The head arrived: the app's answer starts here.
    Head(Box<Arrived>),
    /// Nothing reached the app: the error it gets, unless the attempt is retried.
    Failed {
        response: Response,
        retry: Option<Retry>,
    },
}

/// An attempt whose head arrived.
struct Arrived {
    answer: Bytes,
    done: Option<TokensUsed>,
    events: Answer,
    guard: RequestGuard,
}

impl Attempted {
    fn failed(status: StatusCode, message: &str, code: &str, retry: Option<Retry>) -> Self {
        Self::Failed {
            response: error_response(status, message, Some(code)),
            retry,
        }
    }
}

/// One attempt at a request through `link`: sealed when the mode and a verified worker allow,
/// sent, and waited for up to its head (or the deadline).
async fn attempt(
    shared: &Arc<Shared>,
    endpoint: Endpoint,
    prepared: &Prepared,
    link: &Arc<Link>,
    deadline: tokio::time::Instant,
    mode: SealedMode,
    may_retry: bool,
) -> Attempted {
    let Prepared {
        model,
        body,
        content_type,
        sealed_to,
        extras,
        wants_stream: _,
    } = prepared;
    let is_test = shared.cfg.attestation.is_test();
    let time_left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let lost = Retry {
        reason: "proxy_lost",
        same_proxy: false,
    };
    let plan = if sealed_to.is_none() && mode != SealedMode::Off {
        match plan_sealing(shared, link, model, time_left).await {
            Ok(plan) => Some(plan),
            Err(why) if mode == SealedMode::Required => {
                shared.stats.sealing_unavailable.inc();
                return Attempted::failed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "no verified worker to seal this request to ({why}); [privacy] sealed = \
                         \"required\" refuses to send it readable by the proxy"
                    ),
                    "sealing_unavailable",
                    None,
                );
            }
            Err(why) => {
                debug!(%why, "request goes readable by the proxy");
                None
            }
        }
    } else {
        None
    };
    if sealed_to.is_some() && !link.proto.has_keys() {
        return Attempted::failed(
            StatusCode::BAD_GATEWAY,
            &format!(
                "the proxy speaks protocol {}; encrypted requests need {}",
                link.proto.version,
                cocoon_proto::version::PROTO_KEYS
            ),
            "proxy_too_old",
            None,
        );
    }
    let mut request_id = [0u8; 32];
    rand::rng().fill_bytes(&mut request_id);
    let http = HttpRequest {
        method: "POST".into(),
        url: endpoint.path().into(),
        http_version: "HTTP/1.0".into(),
        headers: forwarded_headers(content_type, body.len()),
        payload: body.clone(),
    };
    // Sealed: the app's http.request becomes the envelope's plaintext; the proxy sees only a
    // fixed URL, the envelope and its clear header.
    let (http, sealed) = match plan {
        None => {
            shared.stats.clear.inc();
            (http, None)
        }
        Some(plan) => match seal(
            shared,
            http,
            extras.max_tokens,
            plan,
            is_test,
            link.proxy_key,
            request_id,
        ) {
            Ok(x) => {
                shared.stats.sealed.inc();
                x
            }
            Err(why) => {
                return Attempted::Failed {
                    response: error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("cannot seal the request: {why}"),
                        None,
                    ),
                    retry: None,
                }
            }
        },
    };
    let query = encode(&http);
    if let Some(account) = link.account() {
        // What this request may cost at most: the proxy's later notice is counted up to it.
        let bound = crate::payments::account::charge_bound(
            extras.max_tokens,
            query.len() as u64,
            u64::from(extras.max_coefficient),
        );
        account.expect_charge(request_id, bound);
    }
    let msg = ClientRunQueryEx {
        model_name: model.clone(),
        query,
        max_coefficient: extras.max_coefficient as i32,
        max_tokens: extras.max_tokens.min(i32::MAX as u64) as i32,
        // The proxy's deadline: what is left of ours (a retry has less), a little earlier.
        timeout: time_left.as_secs_f64() * 0.95,
        request_id,
        min_config_version: 0,
        flags: 0,
        // As upstream 9060ce5's client: always present, false (our proxies ignore it).
        enable_debug: Some(false),
        // Protocol >= 3 carries the key on every request; all zeros: this request is in clear.
        public_key: link
            .proto
            .has_keys()
            .then_some(sealed_to.unwrap_or([0; 32])),
    };
    let mut events = Answer {
        events: link.register_as(request_id, sealed.is_some()),
        sealed,
        shared: shared.clone(),
        link: link.clone(),
    };
    let mut guard = RequestGuard {
        link: link.clone(),
        id: request_id,
        finished: false,
        ticket: None,
    };
    if link.session.send(encode(&msg)).await.is_err() {
        return Attempted::failed(
            StatusCode::BAD_GATEWAY,
            "proxy connection lost",
            "proxy_lost",
            Some(lost),
        );
    }
    let first = match tokio::time::timeout_at(deadline, events.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => {
            return Attempted::failed(
                StatusCode::BAD_GATEWAY,
                "proxy connection lost",
                "proxy_lost",
                Some(lost),
            )
        }
        Err(_) => {
            shared.stats.timed_out.inc();
            return Attempted::failed(
                StatusCode::GATEWAY_TIMEOUT,
                "no answer before the request's timeout",
                "timeout",
                None,
            );
        }
    };
    match first {
        ProxyEvent::Error { code, message } => {
            if events.sealed.is_some() {
                // The candidates may be gone or busy: ask the proxy again next time.
                shared.candidates.forget(&link.addr, model);
            }
            guard.finished = true;
            let status = StatusCode::from_u16(errors::http_status(code))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Attempted::failed(status, &message, "cocoon_error", retry_reason(code))
        }
        ProxyEvent::Part { .. } | ProxyEvent::Receipt(_) => Attempted::failed(
            StatusCode::BAD_GATEWAY,
            "proxy sent a body before the response head",
            "protocol_error",
            None,
        ),
        ProxyEvent::Head { answer, done } => {
            // The worker's engine at capacity (its queue full: a 503 head, before any token)
            // is a refusal like a proxy's: another worker may be free. Its own answer goes to
            // the app when there is no retry left.
            let overloaded = may_retry
                && cocoon_tl::from_bytes::<HttpResponse>(&answer)
                    .is_ok_and(|h| h.status_code == 503);
            if overloaded {
                // Ended already, or cancelled at the proxy when the guard drops.
                guard.finished = done.is_some();
                return Attempted::failed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the worker is at capacity",
                    "worker_overloaded",
                    Some(Retry {
                        reason: "worker_overloaded",
                        same_proxy: true,
                    }),
                );
            }
            Attempted::Head(Box::new(Arrived {
                answer,
                done,
                events,
                guard,
            }))
        }
    }
}

/// What a sealed request needs: the verified workers to seal to.
struct SealPlan {
    recipients: Vec<VerifiedWorker>,
}

/// Asks the proxy for candidates and keeps the first `[privacy] recipients` this client verifies
/// itself ([`crate::sealing`]).
async fn plan_sealing(
    shared: &Shared,
    link: &Link,
    model: &str,
    timeout: Duration,
) -> Result<SealPlan, String> {
    let want = shared.cfg.privacy.recipients;
    let now = std::time::SystemTime::now();
    if let Some(recipients) = shared.candidates.get(
        &link.addr,
        model,
        tokio::time::Instant::now().into_std(),
        now,
    ) {
        return Ok(SealPlan { recipients });
    }
    let offered = crate::link::sealing_candidates(
        link,
        model,
        cocoon_sealed::MAX_RECIPIENTS,
        timeout.min(CANDIDATES_TIMEOUT),
    )
    .await?;
    let registry = shared.payments.as_ref().map(|p| p.registry.current());
    let mut recipients: Vec<VerifiedWorker> = Vec::new();
    let mut last_refusal = None;
    for c in offered
        .candidates
        .iter()
        .take(cocoon_sealed::MAX_RECIPIENTS)
    {
        match shared
            .workers
            .verify(&c.certificate, &c.model, model, registry.as_ref(), now)
        {
            Ok(w) if !recipients.iter().any(|r| r.worker_key == w.worker_key) => {
                recipients.push(w);
                if recipients.len() == want {
                    break;
                }
            }
            Ok(_) => {}
            Err(why) => {
                debug!(%why, "candidate worker refused");
                last_refusal = Some(why);
            }
        }
    }
    if recipients.is_empty() {
        return Err(match last_refusal {
            Some(why) => format!("every candidate was refused, last: {why}"),
            None => format!("the proxy offers no sealed-capable worker for {model}"),
        });
    }
    shared.candidates.put(
        &link.addr,
        model,
        tokio::time::Instant::now().into_std(),
        recipients.clone(),
    );
    Ok(SealPlan { recipients })
}

/// Deadline of the candidates query.
const CANDIDATES_TIMEOUT: Duration = Duration::from_secs(10);

/// Seals `inner` (the app's request) to the plan's workers: the outer `http.request` for the
/// proxy, and the state that opens the answer.
fn seal(
    shared: &Shared,
    mut inner: HttpRequest,
    max_tokens: u64,
    plan: SealPlan,
    is_test: bool,
    proxy_key: [u8; 32],
    request_id: [u8; 32],
) -> Result<(HttpRequest, Option<SealedAnswer>), String> {
    let pad = shared.cfg.privacy.padding(is_test);
    if pad {
        inner.headers.push(HttpHeader {
            name: "X-Cocoon-Pad-Answer".into(),
            value: "buckets".into(),
        });
    }
    let to: Vec<cocoon_sealed::Recipient> = plan
        .recipients
        .iter()
        .map(|w| cocoon_sealed::Recipient {
            worker_key: w.worker_key,
            sealing_key: w.sealing_key,
        })
        .collect();
    let padding = if pad {
        cocoon_sealed::Padding::Buckets
    } else {
        cocoon_sealed::Padding::None
    };
    let (envelope, opener) = cocoon_sealed::seal_request(&encode(&inner), max_tokens, &to, padding)
        .map_err(|e| e.to_string())?;
    let outer = HttpRequest {
        method: "POST".into(),
        url: SEALED_URL.into(),
        http_version: "HTTP/1.0".into(),
        headers: forwarded_headers(cocoon_sealed::SEALED_CONTENT_TYPE, envelope.len()),
        payload: Bytes::from(envelope),
    };
    Ok((
        outer,
        Some(SealedAnswer {
            request_id,
            receipt_id: hex::encode(opener.request_hash()),
            opener,
            candidates: plan.recipients,
            proxy_key,
            receipt: None,
            done: false,
        }),
    ))
}

/// The URL of every sealed request as the proxy sees it (the app's is inside the envelope).
const SEALED_URL: &str = "/v1/sealed";

/// The answer side of a sealed request: opens each piece, checks and keeps the receipt.
struct SealedAnswer {
    /// The client's id of the request.
    request_id: [u8; 32],
    opener: cocoon_sealed::AnswerOpener,
    candidates: Vec<VerifiedWorker>,
    proxy_key: [u8; 32],
    /// The receipt as relayed, checked when the answer is complete.
    receipt: Option<Bytes>,
    /// The app's receipt id (hex request hash).
    receipt_id: String,
    /// The last piece was opened.
    done: bool,
}

/// A request's events as the app's answer needs them: for a sealed request, parts opened (a
/// piece that does not open, or an answer that ends before its last piece, is an error) and the
/// receipt checked at the end; otherwise as the link delivered them.
struct Answer {
    events: Events,
    sealed: Option<SealedAnswer>,
    shared: Arc<Shared>,
    link: Arc<Link>,
}

impl Answer {
    async fn recv(&mut self) -> Option<ProxyEvent> {
        loop {
            let ev = self.events.recv().await?;
            let Some(s) = self.sealed.as_mut() else {
                if matches!(ev, ProxyEvent::Receipt(_)) {
                    continue;
                }
                return Some(ev);
            };
            return Some(match ev {
                ProxyEvent::Receipt(r) => {
                    if s.receipt.is_none() && r.len() <= MAX_RECEIPT_BYTES {
                        s.receipt = Some(r);
                    }
                    continue;
                }
                ProxyEvent::Error { code, message } => ProxyEvent::Error { code, message },
                ProxyEvent::Head { answer, done } => {
                    // The worker's head carries no body; a head that ends the answer or carries
                    // bytes did not come from a worker that sealed it.
                    let empty = cocoon_tl::from_bytes::<HttpResponse>(&answer)
                        .is_ok_and(|h| h.payload.is_empty());
                    if done.is_some() || !empty {
                        sealed_broken("the answer's head is not a sealed answer's")
                    } else {
                        ProxyEvent::Head { answer, done }
                    }
                }
                ProxyEvent::Part { data, done } => {
                    if s.done {
                        sealed_broken("a piece arrived after the last one")
                    } else {
                        match s.opener.open_piece(&data) {
                            Err(e) => sealed_broken(&format!("a piece did not open: {e}")),
                            Ok(piece) => {
                                s.done = piece.last;
                                match (piece.last, done.is_some()) {
                                    (true, false) | (false, true) => sealed_broken(
                                        "the answer's last piece and its end disagree",
                                    ),
                                    _ => {
                                        if piece.last {
                                            self.finish_receipt();
                                        }
                                        ProxyEvent::Part {
                                            data: Bytes::from(piece.data),
                                            done,
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            });
        }
    }

    /// The sealed answer is complete: check its receipt, keep it, refuse a proxy that charged
    /// more than the worker's usage.
    fn finish_receipt(&mut self) {
        let Some(s) = self.sealed.as_mut() else {
            return;
        };
        let stats = &self.shared.stats;
        let Some(bytes) = s.receipt.take() else {
            stats.receipts_refused.inc();
            warn!(proxy = %self.link.addr, "sealed answer came without a receipt");
            return;
        };
        let want = crate::receipts::Expected {
            request_hash: s.opener.request_hash(),
            answer_hash: s.opener.transcript_hash(),
            candidates: &s.candidates,
            proxy_key: s.proxy_key,
        };
        match crate::receipts::check(&bytes, &want) {
            Ok((receipt, worker)) => {
                stats.receipts_ok.inc();
                // Served by the worker that signed, as this client verified it.
                stats.served_by.record(
                    &cocoon_proto::messages::ClientQueryWorkerInfoV3::new(
                        s.request_id,
                        worker.kind.name().to_string(),
                        worker.model_hash,
                        worker.image_hash,
                        worker.evidence_digest,
                    ),
                    unix_now_f64() as i64,
                );
                let b64 = |b: &[u8]| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(b)
                };
                // The receipt with what this client verified around it (the certificates, so
                // `cocoon receipt verify` can check the evidence again offline).
                let json = serde_json::json!({
                    "format": crate::receipts::CLIENT_RECEIPT_FORMAT,
                    "receipt_id": s.receipt_id,
                    "proxy": self.link.addr,
                    "model": worker.model,
                    "worker_certificate": b64(&worker.certificate),
                    "proxy_certificate": self.link.proxy_certificate.as_deref().map(b64),
                    "receipt": receipt.to_json(),
                });
                // Indexed now (the app may ask for it at once), written off the runtime.
                match self.shared.receipts.remember(&s.receipt_id, &json) {
                    Ok(evicted) => {
                        let book = self.shared.receipts.clone();
                        let id = s.receipt_id.clone();
                        tokio::task::spawn_blocking(move || {
                            if let Err(e) = book.write(&id, &json, &evicted) {
                                warn!(error = %e, "cannot write a receipt");
                            }
                        });
                    }
                    Err(e) => warn!(error = %e, "cannot keep a receipt"),
                }
            }
            Err(e @ crate::receipts::ReceiptError::Overcharge { .. }) => {
                stats.receipts_refused.inc();
                stats.overcharges.inc();
                warn!(proxy = %self.link.addr, error = %e, "proxy charged more than the worker's receipt; refusing this proxy");
                self.shared.pool.refuse(&self.link.addr);
            }
            Err(e) => {
                stats.receipts_refused.inc();
                warn!(proxy = %self.link.addr, error = %e, "receipt refused");
            }
        }
    }

    /// Headers that tell the app which path its request took, and for a sealed one the
    /// client's own verdict on the workers it was sealed to.
    fn path_headers(&self) -> Vec<(&'static str, String)> {
        let Some(s) = &self.sealed else {
            return vec![("X-Cocoon-Path", "clear".into())];
        };
        let mut out = vec![
            ("X-Cocoon-Path", "sealed".to_string()),
            ("X-Cocoon-Receipt-Id", s.receipt_id.clone()),
            ("X-Cocoon-Worker-Verified-By", "client".to_string()),
        ];
        // What every candidate shares is what the serving one has (the receipt names it).
        let all = |f: &dyn Fn(&VerifiedWorker) -> Option<String>| {
            let first = s.candidates.first().and_then(f)?;
            s.candidates
                .iter()
                .all(|c| f(c).as_ref() == Some(&first))
                .then_some(first)
        };
        if let Some(v) = all(&|c| c.image_hash.map(hex::encode)) {
            out.push((cocoon_node::worker_headers::HEADER_IMAGE_HASH, v));
        }
        if let Some(v) = all(&|c| Some(hex::encode(c.model_hash))) {
            out.push((cocoon_node::worker_headers::HEADER_MODEL_HASH, v));
        }
        if let Some(v) = all(&|c| Some(c.kind.name().to_string())) {
            out.push((cocoon_node::worker_headers::HEADER_EVIDENCE, v));
        }
        if let Some(v) = all(&|c| c.evidence_digest.map(hex::encode)) {
            out.push((cocoon_node::worker_headers::HEADER_EVIDENCE_DIGEST, v));
        }
        out
    }
}

/// The last chunk of a sealed SSE answer with the receipt id as an SSE comment (`: ...`, which
/// every SSE reader skips), right before the closing `data: [DONE]` when there is one, so the
/// stream still ends with it.
fn with_receipt_comment(last: &[u8], receipt_id: &str) -> Bytes {
    let comment = format!(": cocoon-receipt-id {receipt_id}\n\n");
    let at = if ends_with_done(last) {
        trimmed_len(last) - SSE_DONE.len()
    } else {
        last.len()
    };
    let mut out = Vec::with_capacity(last.len() + comment.len());
    out.extend_from_slice(&last[..at]);
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&last[at..]);
    Bytes::from(out)
}

const SSE_DONE: &[u8] = b"data: [DONE]";

fn trimmed_len(b: &[u8]) -> usize {
    b.iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1)
}

/// Whether an SSE chunk ends with the stream's closing `data: [DONE]` event.
fn ends_with_done(chunk: &[u8]) -> bool {
    chunk[..trimmed_len(chunk)].ends_with(SSE_DONE)
}

/// Largest receipt kept from the network (a receipt is about 400 bytes).
const MAX_RECEIPT_BYTES: usize = 4096;

fn sealed_broken(why: &str) -> ProxyEvent {
    // The worker sealed it and the proxy relays it: a piece that does not open means one of
    // them misbehaved (or the link broke mid-piece).
    warn!(%why, "sealed answer refused");
    ProxyEvent::Error {
        code: errors::BAD_GATEWAY,
        message: format!("sealed answer refused: {why}"),
    }
}

/// Cancels the request at the proxy if the app goes away before the answer is complete.
struct RequestGuard {
    link: Arc<Link>,
    id: [u8; 32],
    finished: bool,
    /// The API key's hold (`crate::keys`): settled on success, released on drop.
    ticket: Option<crate::keys::Ticket>,
}

impl RequestGuard {
    /// Lets the API key's ticket see the cost an answer's bytes carried (`usage.total_cost`,
    /// as [`usage_cost::annotate`] read it), if any.
    fn observe(&mut self, cost: Option<u64>) {
        if let (Some(t), Some(cost)) = (self.ticket.as_mut(), cost) {
            t.saw_cost(cost);
        }
    }

    /// Charges a successful request's use to its API key.
    fn settle(&mut self, shared: &Shared, tokens: &TokensUsed) {
        if let Some(t) = self.ticket.as_mut() {
            crate::keys::settle(t, shared, tokens);
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.link.release(self.id, self.finished);
    }
}

/// How an answer is to be given to the app.
struct AnswerShape {
    deadline: tokio::time::Instant,
    /// When the client received the request (unix seconds; its timing header).
    started: f64,
    /// The app asked for a stream.
    wants_stream: bool,
    /// A v1 field-encrypted request: its answer is sealed value by value to the app and
    /// passes untouched (no cost fields added beside its sealed ones).
    field_encrypted: bool,
    /// Why the first attempt failed, when this answer comes from a retry.
    retried: Option<&'static str>,
}

async fn respond(
    shared: Arc<Shared>,
    answer: Bytes,
    done: Option<TokensUsed>,
    events: Answer,
    mut guard: RequestGuard,
    shape: AnswerShape,
) -> Response {
    let AnswerShape {
        deadline,
        started,
        wants_stream,
        field_encrypted,
        retried,
    } = shape;
    let head: HttpResponse = match cocoon_tl::from_bytes(&answer) {
        Ok(h) => h,
        Err(e) => {
            shared.stats.failed.inc();
            return error_response(
                StatusCode::BAD_GATEWAY,
                &format!("undecodable response head: {e}"),
                Some("protocol_error"),
            );
        }
    };
    let status = u16::try_from(head.status_code)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = Response::builder().status(status);
    let mut is_sse = false;
    let sealed = events.sealed.is_some();
    for h in &head.headers {
        if is_hop_by_hop_header(&h.name) {
            continue;
        }
        // A sealed request's worker headers are the client's own verdict, not the proxy's word.
        if sealed && cocoon_node::worker_headers::is_evidence_header(&h.name) {
            continue;
        }
        if h.name.eq_ignore_ascii_case("content-type") && h.value.starts_with("text/event-stream") {
            is_sse = true;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_str(&h.value),
        ) {
            builder = builder.header(n, v);
        }
    }
    for (name, value) in events.path_headers() {
        builder = builder.header(name, value);
    }
    if let Some(reason) = retried {
        builder = builder
            .header("X-Cocoon-Retries", "1")
            .header("X-Cocoon-Retry-Reason", reason);
    }
    builder = builder
        .header("X-Cocoon-Client-Start", format_unix(started))
        .header("X-Cocoon-Client-End", format_unix(unix_now_f64()));
    let first = head.payload;
    let framing = if field_encrypted {
        None
    } else if is_sse {
        Some(Framing::Sse)
    } else if wants_stream {
        Some(Framing::JsonLines)
    } else {
        Some(Framing::Json)
    };
    let (first, cost) = with_cost(&first, framing);
    guard.observe(cost);
    if let Some(tokens) = done {
        guard.finished = true;
        shared.stats.finished(true, &tokens);
        guard.settle(&shared, &tokens);
        shared.stats.bytes_out.inc_by(first.len() as u64);
        return builder.body(Body::from(first)).unwrap_or_else(|_| {
            error_response(StatusCode::BAD_GATEWAY, "invalid response head", None)
        });
    }
    if !is_sse && !wants_stream {
        // A non-streamed answer is one JSON document: collect it whole, so that a failure on the
        // way (a proxy or worker lost, the deadline) becomes a JSON error with a 5xx status
        // instead of a 200 with a truncated body. A streamed one that is not SSE (JSON lines)
        // goes part by part like SSE, and a failure midway ends it abnormally.
        return collect_whole(&shared, builder, first, events, guard, deadline, framing).await;
    }
    // Body: the head's payload, then parts until the final one or an error or the deadline.
    struct St {
        events: Answer,
        guard: RequestGuard,
        shared: Arc<Shared>,
        deadline: tokio::time::Instant,
        is_sse: bool,
        framing: Option<Framing>,
        over: bool,
        /// Set after an SSE error event: the next item is the error that aborts the body.
        abort: Option<String>,
        /// A sealed SSE answer's receipt id was written.
        receipt_told: bool,
    }
    let st = St {
        events,
        guard,
        shared: shared.clone(),
        deadline,
        is_sse,
        framing,
        over: false,
        abort: None,
        receipt_told: false,
    };
    let rest = stream::unfold(st, |mut st| async move {
        if let Some(message) = st.abort.take() {
            // An error item makes hyper end the body without its final empty chunk (the
            // connection is closed), so the app sees a truncated stream, not a complete one.
            // hyper drops what it has not written yet when a body fails: wait a little first,
            // so that the error event reaches an app that is reading.
            tokio::time::sleep(ABORT_FLUSH_GRACE).await;
            return Some((Err(std::io::Error::other(message)), st));
        }
        if st.over {
            return None;
        }
        let ev = match tokio::time::timeout_at(st.deadline, st.events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => ProxyEvent::Error {
                code: errors::NOT_READY,
                message: "proxy connection lost".into(),
            },
            Err(_) => {
                st.shared.stats.timed_out.inc();
                ProxyEvent::Error {
                    code: errors::TIMEOUT,
                    message: "request timed out".into(),
                }
            }
        };
        match ev {
            ProxyEvent::Part { data, done } => {
                let (mut data, cost) = with_cost(&data, st.framing);
                st.shared.stats.bytes_out.inc_by(data.len() as u64);
                st.guard.observe(cost);
                // The receipt id closes a sealed SSE stream as a comment, which every SSE reader
                // skips: right before its `data: [DONE]`, or at its very end.
                if let (true, false, Some(s)) =
                    (st.is_sse, st.receipt_told, st.events.sealed.as_ref())
                {
                    if done.is_some() || ends_with_done(&data) {
                        data = with_receipt_comment(&data, &s.receipt_id);
                        st.receipt_told = true;
                    }
                }
                if let Some(tokens) = done {
                    st.guard.finished = true;
                    st.shared.stats.finished(true, &tokens);
                    st.guard.settle(&st.shared, &tokens);
                    st.over = true;
                }
                Some((Ok::<Bytes, std::io::Error>(data), st))
            }
            ProxyEvent::Receipt(_) => Some((Ok(Bytes::new()), st)),
            ProxyEvent::Head { .. } => {
                st.over = true;
                st.shared.stats.finished(false, &TokensUsed::default());
                Some((Err(std::io::Error::other("duplicate response head")), st))
            }
            ProxyEvent::Error { code, message } => {
                debug!(code, "stream failed");
                st.guard.finished = true;
                st.over = true;
                st.shared.stats.finished(false, &TokensUsed::default());
                if st.is_sse {
                    // Tell SSE readers why, then end the stream abnormally (`abort`, above).
                    let ev = serde_json::json!({"error": {"message": message, "type": "server_error", "code": code}});
                    let bytes = Bytes::from(format!("data: {ev}\n\n"));
                    st.abort = Some(message);
                    Some((Ok(bytes), st))
                } else {
                    Some((Err(std::io::Error::other(message)), st))
                }
            }
        }
    });
    let body = stream::once(async move { Ok::<Bytes, std::io::Error>(first) }).filter(|r| {
        let keep = !matches!(r, Ok(b) if b.is_empty());
        async move { keep }
    });
    let body = body.chain(rest.filter(|r| {
        let keep = !matches!(r, Ok(b) if b.is_empty());
        async move { keep }
    }));
    builder
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| error_response(StatusCode::BAD_GATEWAY, "invalid response head", None))
}

/// `data` with `usage.cost` added where it carries Cocoon's `total_cost`, and that cost
/// ([`usage_cost::annotate`]); `None`: left as it is (a field-encrypted answer).
fn with_cost(data: &Bytes, framing: Option<Framing>) -> (Bytes, Option<u64>) {
    match framing {
        Some(f) => usage_cost::annotate(data, f),
        None => (data.clone(), None),
    }
}

/// How long a failed stream's body waits after its SSE error event before it aborts.
const ABORT_FLUSH_GRACE: Duration = Duration::from_millis(100);

/// Most bytes of a non-streamed answer held while it is collected (the same cap as the bytes a
/// streamed answer may queue unread, `link::MAX_QUEUED_RESPONSE_BYTES`).
const MAX_COLLECTED_RESPONSE: usize = crate::link::MAX_QUEUED_RESPONSE_BYTES;

/// Collects a non-streamed answer until its final part, then answers the app in one piece; an
/// error, a lost proxy or the deadline before that answers with a JSON error instead.
async fn collect_whole(
    shared: &Shared,
    builder: axum::http::response::Builder,
    first: Bytes,
    mut events: Answer,
    mut guard: RequestGuard,
    deadline: tokio::time::Instant,
    framing: Option<Framing>,
) -> Response {
    let mut body = bytes::BytesMut::from(&first[..]);
    let fail = |shared: &Shared, code: i32, message: &str| {
        shared.stats.failed.inc();
        shared.stats.finished(false, &TokensUsed::default());
        let status =
            StatusCode::from_u16(errors::http_status(code)).unwrap_or(StatusCode::BAD_GATEWAY);
        error_response(status, message, Some("cocoon_error"))
    };
    loop {
        let ev = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => return fail(shared, errors::NOT_READY, "proxy connection lost"),
            Err(_) => {
                shared.stats.timed_out.inc();
                return fail(shared, errors::TIMEOUT, "request timed out");
            }
        };
        match ev {
            ProxyEvent::Part { data, done } => {
                if body.len() + data.len() > MAX_COLLECTED_RESPONSE {
                    return fail(shared, errors::BAD_GATEWAY, "answer too large");
                }
                body.extend_from_slice(&data);
                if let Some(tokens) = done {
                    guard.finished = true;
                    shared.stats.finished(true, &tokens);
                    let (body, cost) = with_cost(&body.freeze(), framing);
                    guard.observe(cost);
                    guard.settle(shared, &tokens);
                    shared.stats.bytes_out.inc_by(body.len() as u64);
                    return builder.body(Body::from(body)).unwrap_or_else(|_| {
                        error_response(StatusCode::BAD_GATEWAY, "invalid response head", None)
                    });
                }
            }
            ProxyEvent::Head { .. } => {
                return fail(shared, errors::BAD_GATEWAY, "duplicate response head");
            }
            ProxyEvent::Receipt(_) => {}
            ProxyEvent::Error { code, message } => {
                guard.finished = true;
                debug!(code, "answer failed before it was complete");
                return fail(shared, code, &message);
            }
        }
    }
}

/// An encrypted request: its model (a field left in clear), the body as sent, and the network
/// key it is encrypted to (`receiver_public_key`, required here: without it no proxy could
/// route it). Everything else is the worker's to check once it has decrypted the body.
fn sealed_request(
    json: &Value,
    body: Vec<u8>,
) -> Result<(String, Bytes, Option<[u8; 32]>), String> {
    let model = json
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or("an encrypted request needs `model` in clear")?;
    let key = cocoon_field_encryption::receiver_public_key(json)
        .map_err(|e| format!("encrypted request: {e}"))?
        .ok_or(
            "an encrypted request needs `receiver_public_key` (the network key it is encrypted to)",
        )?;
    Ok((model.to_string(), Bytes::from(body), Some(key)))
}

/// The headers of the `http.request` sent to the worker: the body's type and length only. As
/// upstream 9060ce5's client builds it (`POST`, `HTTP/1.0`, `Content-Length` of the
/// re-serialised body), but without copying the caller's own headers: an app's `Authorization`
/// or cookies are not the worker's business, and no one on the way uses them (the worker builds
/// its `EngineRequest` from the body and its type alone). The type is the body's as forwarded:
/// `application/json` whatever the app declared, or a checked form's own
/// `multipart/form-data; boundary=...`, which the worker needs to read it.
fn forwarded_headers(content_type: &str, body_len: usize) -> Vec<HttpHeader> {
    vec![
        HttpHeader {
            name: "Content-Type".into(),
            value: content_type.into(),
        },
        HttpHeader {
            name: "Content-Length".into(),
            value: body_len.to_string(),
        },
    ]
}

/// `GET /v1/models`: the models the proxies' workers serve, with their coefficients and load.
async fn models(State(shared): State<Arc<Shared>>) -> Response {
    let answers = crate::link::worker_types(&shared.pool, shared.cfg.models_timeout).await;
    let mut by_name: std::collections::BTreeMap<String, Vec<Value>> =
        std::collections::BTreeMap::new();
    for a in answers {
        for t in a.types {
            let entry = by_name.entry(t.name).or_default();
            for w in t.workers {
                entry.push(serde_json::json!({
                    "coefficient": w.coefficient,
                    "running_requests": w.active_requests,
                    "max_running_requests": w.max_active_requests,
                }));
            }
        }
    }
    let data: Vec<Value> = by_name
        .into_iter()
        .map(|(id, workers)| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "cocoon", "workers": workers}))
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

#[cfg(test)]
pub(crate) mod tests;
