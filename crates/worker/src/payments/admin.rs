//! The worker's admin actions on its stats port: `POST /admin/cashout` with
//! `Authorization: Bearer <admin_token>` cashes out every proxy contract now, whatever
//! `min_cashout` says, and answers the per-proxy outcome as JSON.
//!
//! Nothing on chain happens behind a GET. With an empty `admin_token` no admin route exists;
//! with payments off the route answers 409.
//!
//! What must not live here: the cash-out logic itself (`Payments::cashout_round`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::Payments;

#[derive(Clone)]
struct AdminState {
    payments: Option<Arc<Payments>>,
    token: Arc<str>,
}

/// The admin routes (none when `token` is empty).
pub fn router(payments: Option<Arc<Payments>>, token: &str) -> Router {
    if token.is_empty() {
        return Router::new();
    }
    Router::new()
        .route("/admin/cashout", post(cashout))
        .with_state(AdminState {
            payments,
            token: Arc::from(token),
        })
}

/// Compares without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim().as_bytes(), token.as_bytes()))
}

async fn cashout(State(st): State<AdminState>, headers: HeaderMap) -> Response {
    if !authorized(&headers, &st.token) {
        return (StatusCode::UNAUTHORIZED, "admin token required\n").into_response();
    }
    let Some(p) = st.payments else {
        return (
            StatusCode::CONFLICT,
            "payments are off (no [chain] api_url)\n",
        )
            .into_response();
    };
    let reports = p.cashout_round(true).await;
    axum::Json(serde_json::json!({ "cashouts": reports })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "s3cret"));
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(authorized(&h, "s3cret"));
        assert!(!authorized(&h, "s3cre"));
        h.insert("authorization", "Basic s3cret".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
    }
}
