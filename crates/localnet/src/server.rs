//! The TON HTTP API v2 subset (toncenter shape) over a [`Localnet`], plus dev endpoints:
//!
//! | endpoint | method | notes |
//! |---|---|---|
//! | `/api/v2/sendBoc`, `/api/v2/sendBocReturnHash` | POST `{"boc"}` | executes synchronously; a rejected external is an error |
//! | `/api/v2/runGetMethod` | POST `{"address","method","stack"}` | |
//! | `/api/v2/getAddressInformation`, `/api/v2/getAddressBalance` | GET `?address=` | `sync_utime` = chain time |
//! | `/api/v2/getTransactions` | GET `?address=&limit=&to_lt=[&lt=&hash=]` | newest first, `to_lt` exclusive, `lt`+`hash` start a page (inclusive), limit ≤ 100 |
//! | `/api/v2/getConsensusBlock` | GET | `timestamp` = chain time |
//! | `/api/v2/faucet` (dev) | POST `{"address","amount"}` | mints nanoTON (≤ 1M TON per call) |
//! | `/api/v2/advanceTime` (dev) | POST `{"seconds"}` | moves the chain clock forward |
//!
//! Every response is `{"ok":true,"result":…}` or `{"ok":false,"error":…,"code":…}` with that HTTP status.
//! Bodies are capped ([`MAX_BODY`]); sockets get TCP_NODELAY. What must not live here: execution logic.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cocoon_ton::chain::Chain as _;
use cocoon_ton::{wire, ChainError, TonAddress, TxId};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::ledger::{tx_info, LedgerError};
use crate::node::{Localnet, NodeError};

/// Largest request body.
pub const MAX_BODY: usize = 256 * 1024;
/// Default listen address (Cocoon's local chain port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

/// How to run a local chain.
#[derive(Clone, Debug)]
pub struct LocalnetConfig {
    /// Persist here; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address.
    pub listen: SocketAddr,
}

impl Default for LocalnetConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        }
    }
}

/// Errors of `run`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Opens the chain (recovering from `data_dir`), serves HTTP until `shutdown`, then snapshots.
pub async fn run(cfg: LocalnetConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let net = match cfg.data_dir.clone() {
        Some(dir) => tokio::task::spawn_blocking(move || Localnet::open(&dir))
            .await
            .map_err(|e| NodeError::Join(e.to_string()))??,
        None => Localnet::in_memory()?,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: cfg.listen,
            source,
        })?;
    tracing::info!(addr = %cfg.listen, persistent = cfg.data_dir.is_some(), "local chain listening");
    serve(listener, net.clone(), shutdown)
        .await
        .map_err(RunError::Serve)?;
    net.snapshot().await?;
    Ok(())
}

/// Serves the HTTP API for `net` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    net: Localnet,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|s| {
        let _ = s.set_nodelay(true);
    });
    axum::serve(listener, router(net))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// The router (exposed for embedding).
pub fn router(net: Localnet) -> Router {
    Router::new()
        .route("/api/v2/sendBoc", post(send_boc))
        .route("/api/v2/sendBocReturnHash", post(send_boc_return_hash))
        .route("/api/v2/runGetMethod", post(run_get_method))
        .route("/api/v2/getAddressInformation", get(address_information))
        .route("/api/v2/getAddressBalance", get(address_balance))
        .route("/api/v2/getTransactions", get(transactions))
        .route("/api/v2/getConsensusBlock", get(consensus_block))
        .route("/api/v2/faucet", post(faucet))
        .route("/api/v2/advanceTime", post(advance_time))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(net)
}

/// A toncenter-shaped error.
struct ApiError(u16, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({"ok": false, "error": self.1, "code": self.0})),
        )
            .into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::BadBoc(_) | NodeError::FaucetAmount => ApiError(400, e.to_string()),
            NodeError::Ledger(
                LedgerError::BadMessage(_) | LedgerError::WrongKind(_) | LedgerError::BadAddress,
            ) => ApiError(400, e.to_string()),
            NodeError::Ledger(LedgerError::Rejected) => ApiError(
                500,
                "cannot apply external message to current state: external message was not accepted"
                    .into(),
            ),
            NodeError::Ledger(LedgerError::NotActive(_)) => ApiError(400, e.to_string()),
            NodeError::UnknownTransaction { .. } => ApiError(500, e.to_string()),
            other => ApiError(500, other.to_string()),
        }
    }
}

impl From<ChainError> for ApiError {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::Api { code, message } => {
                ApiError(u16::try_from(code).unwrap_or(500), message)
            }
            other => ApiError(500, other.to_string()),
        }
    }
}

fn ok(v: Value) -> Json<Value> {
    Json(json!({"ok": true, "result": v}))
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError(400, format!("bad JSON: {e}")))
}

fn addr_field(v: &Value, key: &str) -> Result<TonAddress, ApiError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError(400, format!("missing {key}")))?
        .parse()
        .map_err(|e| ApiError(400, format!("bad {key}: {e}")))
}

fn boc_field(v: &Value) -> Result<Vec<u8>, ApiError> {
    let s = v
        .get("boc")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError(400, "missing boc".into()))?;
    STANDARD
        .decode(s.trim())
        .map_err(|_| ApiError(400, "boc is not base64".into()))
}

async fn send_boc(State(net): State<Localnet>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let boc = boc_field(&parse_json(&body)?)?;
    net.send_external_boc(boc).await?;
    Ok(ok(json!({"@type": "ok"})))
}

async fn send_boc_return_hash(
    State(net): State<Localnet>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let boc = boc_field(&parse_json(&body)?)?;
    let hash = crate::node::decode_message(&boc)?.repr_hash().0;
    net.send_external_boc(boc).await?;
    Ok(ok(
        json!({"@type": "raw.extMessageInfo", "hash": STANDARD.encode(hash)}),
    ))
}

async fn run_get_method(State(net): State<Localnet>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let v = parse_json(&body)?;
    let addr = addr_field(&v, "address")?;
    let method = v
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError(400, "missing method".into()))?;
    if method.is_empty() || method.len() > 128 {
        return Err(ApiError(400, "bad method name".into()));
    }
    let stack = wire::stack_from_request(v.get("stack").unwrap_or(&Value::Null))
        .map_err(|e| ApiError(400, e.to_string()))?;
    let r = net.run_get_method(&addr, method, stack).await?;
    Ok(ok(wire::run_result_to_json(&r)))
}

#[derive(Deserialize)]
struct AddrQuery {
    address: String,
}

fn parse_addr(s: &str) -> Result<TonAddress, ApiError> {
    s.parse()
        .map_err(|e| ApiError(400, format!("bad address: {e}")))
}

async fn address_information(
    State(net): State<Localnet>,
    Query(q): Query<AddrQuery>,
) -> Result<Json<Value>, ApiError> {
    let addr = parse_addr(&q.address)?;
    let st = net.account_state(&addr).await?;
    Ok(ok(wire::account_to_json(&st, net.now())))
}

async fn address_balance(
    State(net): State<Localnet>,
    Query(q): Query<AddrQuery>,
) -> Result<Json<Value>, ApiError> {
    let addr = parse_addr(&q.address)?;
    let st = net.account_state(&addr).await?;
    Ok(ok(json!(st.balance.to_string())))
}

#[derive(Deserialize)]
struct TxQuery {
    address: String,
    limit: Option<u32>,
    lt: Option<u64>,
    hash: Option<String>,
    to_lt: Option<u64>,
}

async fn transactions(
    State(net): State<Localnet>,
    Query(q): Query<TxQuery>,
) -> Result<Json<Value>, ApiError> {
    let addr = parse_addr(&q.address)?;
    let limit = q.limit.unwrap_or(10).clamp(1, 100) as usize;
    let since = q.to_lt.filter(|&lt| lt > 0);
    // As toncenter: `lt` (0 counts as absent) and `hash` start the page and go together.
    let from = match (
        q.lt.filter(|&lt| lt > 0),
        q.hash.as_deref().filter(|h| !h.is_empty()),
    ) {
        (None, None) => None,
        (Some(lt), Some(h)) => Some(TxId {
            lt,
            hash: wire::parse_tx_hash(h).map_err(|_| ApiError(422, "bad hash".into()))?,
        }),
        _ => return Err(ApiError(422, "lt and hash should be used together".into())),
    };
    let recs = net.raw_transactions(addr, from, since, limit).await?;
    let list: Vec<Value> = recs
        .iter()
        .map(|r| wire::tx_to_json(&tx_info(r), &addr, Some(&r.cell)))
        .collect();
    Ok(ok(Value::Array(list)))
}

async fn consensus_block(State(net): State<Localnet>) -> Json<Value> {
    ok(json!({"consensus_block": 1, "timestamp": net.now()}))
}

async fn faucet(State(net): State<Localnet>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let v = parse_json(&body)?;
    let addr = addr_field(&v, "address")?;
    let amount: u128 = match v.get("amount") {
        Some(Value::String(s)) => s.parse().map_err(|_| ApiError(400, "bad amount".into()))?,
        Some(Value::Number(n)) => n
            .as_u64()
            .map(u128::from)
            .ok_or_else(|| ApiError(400, "bad amount".into()))?,
        _ => return Err(ApiError(400, "missing amount".into())),
    };
    let txs = net.faucet(addr, amount).await?;
    Ok(ok(json!({"transactions": txs.len()})))
}

async fn advance_time(State(net): State<Localnet>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let v = parse_json(&body)?;
    let secs = v
        .get("seconds")
        .and_then(Value::as_u64)
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(|| ApiError(400, "bad seconds".into()))?;
    net.advance_time(secs);
    Ok(ok(json!({"now": net.now()})))
}
