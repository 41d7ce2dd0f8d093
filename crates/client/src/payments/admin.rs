//! Admin actions on the client's HTTP port (docs/PAYMENTS.md "Admin actions"): POST only, with
//! `Authorization: Bearer <admin_token>`; an empty `admin_token` turns them off (404), as does a
//! client without payments. These routes sit outside the API's `bearer_token` check: they have
//! their own token.
//!
//! - `POST /admin/top-up`: top up our contract at every ready proxy by one stake now.
//! - `POST /admin/charge`: submit every proxy's newest signed charge now (when it moves the
//!   contract forward).
//!
//! What must not live here: anything reachable by GET, or the money rules.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cocoon_onchain::amount::format_ton;
use cocoon_ton::contracts::{state, ClientOp};
use tracing::info;

use super::contract::{self, OP_EXTRA};
use super::Payments;
use crate::http::{bearer, constant_time_eq};
use crate::Shared;

/// The admin routes (to be merged into the HTTP router).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/top-up", post(top_up))
        .route("/admin/charge", post(charge))
        .with_state(shared)
}

/// The payments, if the request may act: admin on, payments on, token right.
fn allowed(shared: &Shared, req: &Request) -> Result<Arc<Payments>, (StatusCode, &'static str)> {
    let token = shared.cfg.admin_token.as_str();
    let Some(p) = shared.payments.clone().filter(|_| !token.is_empty()) else {
        return Err((StatusCode::NOT_FOUND, "admin actions are off"));
    };
    let given = bearer(req).unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Err((StatusCode::UNAUTHORIZED, "missing or wrong admin token"));
    }
    Ok(p)
}

async fn top_up(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let p = match allowed(&shared, &req) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let mut done = Vec::new();
    for a in p.accounts() {
        let Some(c) = a.numbers().contract.filter(|c| c.state == state::NORMAL) else {
            continue;
        };
        let amount = if c.stake > 0 { c.stake } else { a.min_stake };
        let t = match contract::op_transfer(
            &a.client_contract,
            &ClientOp::TopUp {
                amount,
                send_excesses_to: p.owner(),
            },
            amount.saturating_add(OP_EXTRA),
            None,
        ) {
            Ok(t) => t,
            Err(e) => return internal(e.to_string()),
        };
        info!(proxy = %a.proxy, amount = %format_ton(amount), "admin top-up");
        let r = p.sender.send(vec![t]).await;
        done.push(serde_json::json!({
            "proxy": a.proxy, "contract": a.client_contract.to_bounceable(),
            "amount_ton": format_ton(amount), "error": r.err().map(|e| e.to_string()),
        }));
    }
    Json(serde_json::json!({ "top_ups": done })).into_response()
}

async fn charge(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let p = match allowed(&shared, &req) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let mut done = Vec::new();
    for a in p.accounts() {
        let n = a.numbers();
        let used = n.contract.as_ref().map_or(0, |c| c.tokens_used);
        let Some(charge) = n.charge.as_ref().filter(|_| n.charge_tokens > used) else {
            continue;
        };
        let t = match contract::charge_transfer(&a.client_contract, charge, &p.owner()) {
            Ok(t) => t,
            Err(e) => return internal(e.to_string()),
        };
        info!(proxy = %a.proxy, tokens = n.charge_tokens, "admin charge submission");
        let r = p.sender.send(vec![t]).await;
        done.push(serde_json::json!({
            "proxy": a.proxy, "contract": a.client_contract.to_bounceable(),
            "tokens": n.charge_tokens, "error": r.err().map(|e| e.to_string()),
        }));
    }
    Json(serde_json::json!({ "charges": done })).into_response()
}

fn internal(e: String) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
