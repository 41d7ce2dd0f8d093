//! `POST /admin/*` on the stats port: operator actions that touch the chain. Each needs
//! `Authorization: Bearer <admin_token>` and is refused when no token is configured; nothing on
//! chain ever happens behind a GET (Cocoon's `/request/*` pages do that).
//!
//! Actions: `withdraw` (the proxy contract pays the commission to the owner now), `anchor`
//! (send a save-state marker now), `change-model` (ask one worker to serve another model:
//! `worker.changeModel`, upstream 9060ce5's `/request/change_worker_model`, here behind the
//! token and a POST).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use crate::payments::agent;
use crate::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/withdraw", post(withdraw))
        .route("/admin/anchor", post(anchor))
        .route("/admin/change-model", post(change_model))
        .with_state(shared)
}

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in constant time.
pub(crate) fn bearer_matches(token: &str, headers: &HeaderMap) -> bool {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The stats pages' guard: with a `stats_token` configured, every request must carry it.
pub(crate) async fn require_stats_token(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = &shared.cfg.stats_token;
    if !token.is_empty() && !bearer_matches(token, request.headers()) {
        return reply(StatusCode::UNAUTHORIZED, "wrong or missing stats token");
    }
    next.run(request).await
}

/// Checks the bearer token in constant time; `Err` is the response to send.
pub(crate) fn authorize(token: &str, headers: &HeaderMap) -> Result<(), Box<Response>> {
    if token.is_empty() {
        return Err(Box::new(reply(
            StatusCode::FORBIDDEN,
            "admin actions are off: set admin_token in the config",
        )));
    }
    if bearer_matches(token, headers) {
        Ok(())
    } else {
        Err(Box::new(reply(
            StatusCode::UNAUTHORIZED,
            "wrong or missing admin token",
        )))
    }
}

fn reply(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "ok": status.is_success(), "message": message })),
    )
        .into_response()
}

async fn withdraw(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared.cfg.admin_token, &headers) {
        return *r;
    }
    let Some(p) = shared.payments.as_ref() else {
        return reply(StatusCode::CONFLICT, "payments are off on this proxy");
    };
    match agent::withdraw_now(p).await {
        Ok(()) => reply(StatusCode::OK, "withdrawal requested"),
        Err(e) => reply(StatusCode::BAD_GATEWAY, &e),
    }
}

async fn anchor(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared.cfg.admin_token, &headers) {
        return *r;
    }
    let Some(p) = shared.payments.as_ref() else {
        return reply(StatusCode::CONFLICT, "payments are off on this proxy");
    };
    match agent::anchor_now(p).await {
        Ok(Some(seqno)) => reply(
            StatusCode::OK,
            &format!("marker sent for ledger seqno {seqno}"),
        ),
        Ok(None) => reply(StatusCode::OK, "nothing to anchor"),
        Err(e) => reply(StatusCode::BAD_GATEWAY, &e),
    }
}

/// `POST /admin/change-model` body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeModel {
    /// The worker's connection id (`conn` in `/jsonstats`).
    worker: u64,
    /// The model it should serve (`name@commit:hash` or a bare name).
    model: String,
}

/// How long the proxy waits for a worker's model change hook (the worker bounds it itself by
/// its `change_model_timeout`, 10 minutes by default).
const CHANGE_MODEL_WAIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Longest model name sent (the worker refuses longer ones too).
const MAX_MODEL_NAME_BYTES: usize = 256;

async fn change_model(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorize(&shared.cfg.admin_token, &headers) {
        return *r;
    }
    let req: ChangeModel = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"worker\": <conn id>, \"model\": \"name\"}}: {e}"),
            )
        }
    };
    if req.model.is_empty() || req.model.len() > MAX_MODEL_NAME_BYTES {
        return reply(StatusCode::BAD_REQUEST, "model name is empty or too long");
    }
    let registered = shared.core().state.workers.contains_key(&req.worker);
    let session = shared
        .sessions
        .lock()
        .ok()
        .and_then(|s| s.get(&req.worker).cloned());
    let (true, Some(session)) = (registered, session) else {
        return reply(
            StatusCode::NOT_FOUND,
            &format!("no worker is registered on connection {}", req.worker),
        );
    };
    let ask = cocoon_proto::messages::encode(&cocoon_proto::messages::WorkerChangeModel {
        new_model: req.model.clone(),
    });
    match session.query(ask, CHANGE_MODEL_WAIT).await {
        Ok(answer) => {
            if cocoon_tl::from_bytes::<cocoon_proto::messages::WorkerChangedModel>(&answer).is_err()
            {
                return reply(
                    StatusCode::BAD_GATEWAY,
                    "the worker answered something else",
                );
            }
            if !shared
                .core()
                .handle_worker_model_changed(req.worker, &req.model)
            {
                return reply(
                    StatusCode::GONE,
                    "the worker left before its change was recorded",
                );
            }
            tracing::info!(worker = req.worker, model = %req.model, "worker changed model");
            reply(
                StatusCode::OK,
                &format!("worker {} now serves {}", req.worker, req.model),
            )
        }
        Err(cocoon_proto::session::QueryError::Remote { message, .. }) => reply(
            StatusCode::BAD_GATEWAY,
            &format!("the worker refused: {message}"),
        ),
        Err(e) => reply(
            StatusCode::BAD_GATEWAY,
            &format!("the worker did not answer: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_needs_the_exact_token() {
        let mut h = HeaderMap::new();
        assert!(authorize("", &h).is_err());
        assert!(authorize("s3cret", &h).is_err());
        h.insert(
            axum::http::header::AUTHORIZATION,
            "Bearer s3cret".parse().unwrap(),
        );
        assert!(authorize("s3cret", &h).is_ok());
        assert!(authorize("s3cret2", &h).is_err());
        assert!(authorize("", &h).is_err());
    }
}
