//! The stats endpoints every role serves: `/stats` (plain text for people), `/jsonstats` (JSON)
//! and `/metrics` (Prometheus text exposition).
//!
//! A role implements [`StatsSource`]: one JSON snapshot (the single source of truth, rendered
//! as text for `/stats`) and a Prometheus registry. Nothing here mutates role state: stats pages
//! are read-only (Cocoon performs on-chain actions behind GET; we do not).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// Serves `router` on the stats listener until `shutdown` (graceful); a failure is logged, the
/// role goes on without its stats port.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let serve = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await });
    if let Err(e) = serve.await {
        tracing::warn!(error = %e, "stats server failed");
    }
}

/// What a role exposes on its stats port.
pub trait StatsSource: Send + Sync + 'static {
    /// A JSON snapshot of the role's counters and peers.
    fn json(&self) -> serde_json::Value;
    /// The Prometheus registry with the role's metrics.
    fn registry(&self) -> &Registry;
}

/// Routes `/stats`, `/jsonstats` and `/metrics` for `source`.
pub fn router(source: Arc<dyn StatsSource>) -> Router {
    Router::new()
        .route("/stats", get(human))
        .route("/jsonstats", get(json))
        .route("/metrics", get(metrics))
        .with_state(source)
}

async fn json(State(src): State<Arc<dyn StatsSource>>) -> Response {
    axum::Json(src.json()).into_response()
}

async fn human(State(src): State<Arc<dyn StatsSource>>) -> Response {
    let mut out = String::new();
    render_text(&src.json(), "", &mut out);
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
}

async fn metrics(State(src): State<Arc<dyn StatsSource>>) -> Response {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, src.registry()).is_err() {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "encoding failed",
        )
            .into_response();
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Renders a JSON value as indented `key: value` lines.
pub fn render_text(v: &serde_json::Value, indent: &str, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                        let _ = writeln!(out, "{indent}{k}:");
                        render_text(v, &format!("{indent}  "), out);
                    }
                    _ => {
                        let _ = writeln!(out, "{indent}{k}: {}", scalar(v));
                    }
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                match v {
                    serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                        let _ = writeln!(out, "{indent}- [{i}]");
                        render_text(v, &format!("{indent}  "), out);
                    }
                    _ => {
                        let _ = writeln!(out, "{indent}- {}", scalar(v));
                    }
                }
            }
        }
        _ => {
            let _ = writeln!(out, "{indent}{}", scalar(v));
        }
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nested_json_as_text() {
        let v = serde_json::json!({"requests": {"total": 3, "ok": 2}, "peers": ["a", {"id": 1}]});
        let mut out = String::new();
        render_text(&v, "", &mut out);
        assert!(out.contains("requests:\n  total: 3\n  ok: 2\n"), "{out}");
        assert!(out.contains("- a"), "{out}");
        assert!(out.contains("  id: 1"), "{out}");
    }
}
