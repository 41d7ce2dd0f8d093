//! `HttpChain` against TON HTTP API v2 responses shaped as toncenter's servers write them
//! (`tests/data/`: written from the sources of `toncenter/ton-http-api` and its C++ successor and
//! tonlib's schema, not captured: there is no internet here), served by a tiny axum server on
//! 127.0.0.1:0. Checks request shapes (method, path, query, body, X-API-Key), the parsing of every
//! response, paging, chain time, and the error paths (API error, rate limit, oversized body,
//! timeout).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use cocoon_ton::chain::AccountStatus;
use cocoon_ton::contracts::{ContractKind, RootData};
use cocoon_ton::http::{HttpChain, HttpChainConfig};
use cocoon_ton::{Chain, ChainError, StackEntry, TonAddress};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[derive(Default)]
struct Seen {
    requests: Vec<(String, Option<String>, Value, Option<String>)>,
}

type S = Arc<Mutex<Seen>>;

fn record(s: &S, path: &str, q: Option<String>, body: Value, h: &HeaderMap) {
    let key = h.get("x-api-key").map(|v| v.to_str().unwrap().to_string());
    s.lock()
        .unwrap()
        .requests
        .push((path.to_string(), q, body, key));
}

async fn serve(router: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    format!("http://{addr}")
}

fn app(s: S, error_send: bool) -> Router {
    Router::new()
        .route(
            "/api/v2/sendBoc",
            post(
                move |State(s): State<S>, h: HeaderMap, Json(b): Json<Value>| async move {
                    record(&s, "sendBoc", None, b, &h);
                    let name = if error_send {
                        "sendBoc_error"
                    } else {
                        "sendBoc"
                    };
                    let code = if error_send {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    (code, Json(fixture(name)))
                },
            ),
        )
        .route(
            "/api/v2/runGetMethod",
            post(
                |State(s): State<S>, h: HeaderMap, Json(b): Json<Value>| async move {
                    record(&s, "runGetMethod", None, b, &h);
                    Json(fixture("runGetMethod"))
                },
            ),
        )
        .route(
            "/api/v2/getAddressInformation",
            get(
                |State(s): State<S>, h: HeaderMap, RawQuery(q): RawQuery| async move {
                    let uninit = q.as_deref().unwrap_or_default().contains("0%3A00");
                    record(&s, "getAddressInformation", q, Value::Null, &h);
                    Json(fixture(if uninit {
                        "getAddressInformation_uninit"
                    } else {
                        "getAddressInformation"
                    }))
                },
            ),
        )
        .route(
            "/api/v2/getTransactions",
            get(
                |State(s): State<S>, h: HeaderMap, RawQuery(q): RawQuery| async move {
                    record(&s, "getTransactions", q, Value::Null, &h);
                    Json(fixture("getTransactions"))
                },
            ),
        )
        .route(
            "/api/v2/getConsensusBlock",
            get(|| async { Json(fixture("getConsensusBlock")) }),
        )
        .with_state(s)
}

fn root_addr() -> TonAddress {
    "0:98ee4ae12cb087e1f94987c9677e51c523fc7043b3425cb004846a568c9f77e7"
        .parse()
        .unwrap()
}

#[tokio::test]
async fn parses_recorded_responses_and_sends_expected_requests() {
    let seen = S::default();
    let url = serve(app(seen.clone(), false)).await;
    let mut cfg = HttpChainConfig::new(&url);
    cfg.api_key = Some("test-key".into());
    let chain = HttpChain::new(cfg).unwrap();

    // getAddressInformation: an active root with its code and data.
    let st = chain.account_state(&root_addr()).await.unwrap();
    assert_eq!(st.status, AccountStatus::Active);
    assert_eq!(st.balance, 999_762_800);
    assert_eq!(st.code.unwrap(), ContractKind::Root.code().unwrap());
    assert_eq!(st.last_tx_lt, 47_000_001_000_003);
    assert_eq!(st.last_tx_hash[..4], [0xde, 0xad, 0xbe, 0xef]);
    let st = chain
        .account_state(&TonAddress::new(0, [0; 32]))
        .await
        .unwrap();
    assert_eq!(
        (st.status, st.balance, st.code.is_none()),
        (AccountStatus::Uninit, 0, true)
    );

    // runGetMethod: get_cocoon_data parsed into RootData.
    let r = chain
        .run_get_method(&root_addr(), RootData::METHOD, vec![StackEntry::int(7)])
        .await
        .unwrap();
    assert_eq!((r.exit_code, r.gas_used), (0, 2979));
    let d = RootData::from_stack(&r.stack).unwrap();
    assert_eq!(
        (d.version, d.unique_id, d.is_test, d.price_per_token),
        (5, 13, true, 2000)
    );
    assert_eq!(
        d.owner,
        "0:60c902d7013650002de746b7fefd8cdc3fb926f453fa9bcecd6ec91922ec4b66"
            .parse()
            .unwrap()
    );

    // getTransactions: newest first, external in-message without a source, out-message parsed.
    let txs = chain.transactions(&root_addr(), None, 10).await.unwrap();
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].lt, 47_000_002_000_001);
    assert_eq!(txs[0].fee, 2_327_731);
    let inm = txs[0].in_msg.as_ref().unwrap();
    assert_eq!(inm.value, 200_000_000);
    assert_eq!(inm.destination, Some(root_addr()));
    assert!(inm.body.is_some());
    assert_eq!(txs[0].out_msgs.len(), 1);
    assert_eq!(txs[0].out_msgs[0].value, 187_405_600);
    assert_eq!(txs[1].in_msg.as_ref().unwrap().source, None);
    // since_lt filters (the fixture ignores to_lt, the client must not).
    let newer = chain
        .transactions(&root_addr(), Some(47_000_001_000_003), 10)
        .await
        .unwrap();
    assert_eq!(newer.len(), 1);

    chain.send_boc(b"\x01\x02").await.unwrap();
    // Chain time is the state's block time (getAddressInformation's sync_utime), not the API
    // server's clock (getConsensusBlock's timestamp, 1_760_000_123.456 here).
    assert_eq!(chain.time().await.unwrap(), 1_760_000_100);

    let seen = seen.lock().unwrap();
    assert!(seen
        .requests
        .iter()
        .all(|r| r.3.as_deref() == Some("test-key")));
    let get = seen
        .requests
        .iter()
        .find(|r| r.0 == "runGetMethod")
        .unwrap();
    assert_eq!(get.2["method"], "get_cocoon_data");
    assert_eq!(get.2["address"], root_addr().to_raw());
    assert_eq!(get.2["stack"], serde_json::json!([["num", "0x7"]]));
    let send = seen.requests.iter().find(|r| r.0 == "sendBoc").unwrap();
    assert_eq!(send.2["boc"], "AQI=");
    let txq = seen
        .requests
        .iter()
        .filter(|r| r.0 == "getTransactions")
        .nth(1)
        .unwrap();
    let q = txq.1.as_deref().unwrap();
    assert!(
        q.contains("limit=10") && q.contains("to_lt=47000001000003"),
        "{q}"
    );
}

#[tokio::test]
async fn api_error_is_typed() {
    let url = serve(app(S::default(), true)).await;
    let chain = HttpChain::new(HttpChainConfig::new(&url)).unwrap();
    match chain.send_boc(b"x").await {
        Err(ChainError::Api { code, message }) => {
            assert_eq!(code, 500);
            assert!(message.contains("cannot apply external message"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn oversized_and_slow_responses_fail() {
    let big = Router::new().route(
        "/api/v2/getAddressInformation",
        get(|| async { "x".repeat(10_000) }),
    );
    let url = serve(big).await;
    let mut cfg = HttpChainConfig::new(&url);
    cfg.max_response = 1_000;
    let chain = HttpChain::new(cfg).unwrap();
    assert!(matches!(
        chain.time().await,
        Err(ChainError::TooLarge(1_000))
    ));

    let slow = Router::new().route(
        "/api/v2/getAddressInformation",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "never"
        }),
    );
    let url = serve(slow).await;
    let mut cfg = HttpChainConfig::new(&url);
    cfg.timeout = Duration::from_millis(200);
    let chain = HttpChain::new(cfg).unwrap();
    assert!(matches!(chain.time().await, Err(ChainError::Timeout)));

    // Non-JSON error status.
    let down = Router::new().route(
        "/api/v2/getAddressInformation",
        get(|| async { (StatusCode::BAD_GATEWAY, "bad") }),
    );
    let url = serve(down).await;
    let chain = HttpChain::new(HttpChainConfig::new(&url)).unwrap();
    assert!(matches!(chain.time().await, Err(ChainError::Status(502))));
}

/// A server without `sync_utime` (or with 0) leaves chain time to getConsensusBlock, whose 0
/// (the Python server before its first block) is refused rather than taken as 1970.
#[tokio::test]
async fn chain_time_falls_back_to_the_consensus_block_but_never_to_zero() {
    let app = |ts: f64| {
        Router::new()
            .route(
                "/api/v2/getAddressInformation",
                get(|| async {
                    Json(serde_json::json!({"ok": true, "result": {"balance": 0, "state": "uninitialized", "sync_utime": 0}}))
                }),
            )
            .route(
                "/api/v2/getConsensusBlock",
                get(move || async move {
                    Json(serde_json::json!({"ok": true, "result": {"consensus_block": 1, "timestamp": ts}}))
                }),
            )
    };
    let chain = HttpChain::new(HttpChainConfig::new(&serve(app(1_760_000_200.9)).await)).unwrap();
    assert_eq!(chain.time().await.unwrap(), 1_760_000_200);
    let chain = HttpChain::new(HttpChainConfig::new(&serve(app(0.0)).await)).unwrap();
    assert!(matches!(chain.time().await, Err(ChainError::Decode(_))));
}

/// The page after a full page starts at its oldest transaction: `lt` with the hash in hex (both
/// servers take hex or base64, and hex needs no escaping), together with `to_lt`.
#[tokio::test]
async fn the_next_page_is_asked_for_by_lt_and_hash() {
    let seen = S::default();
    let url = serve(app(seen.clone(), false)).await;
    let chain = HttpChain::new(HttpChainConfig::new(&url)).unwrap();
    let from = cocoon_ton::TxId {
        lt: 47_000_002_000_001,
        hash: [0xab; 32],
    };
    let txs = chain
        .transactions_from(&root_addr(), from, Some(47_000_000_000_000), 100)
        .await
        .unwrap();
    assert_eq!(txs.len(), 2);
    let seen = seen.lock().unwrap();
    let q = seen.requests[0].1.as_deref().unwrap();
    assert!(
        q.contains("lt=47000002000001")
            && q.contains(&format!("hash={}", "ab".repeat(32)))
            && q.contains("to_lt=47000000000000")
            && q.contains("limit=100"),
        "{q}"
    );
}

/// toncenter's rate limiter answers 429 with its message in `result`, not `error`.
#[tokio::test]
async fn a_rate_limit_keeps_its_message() {
    let limited = Router::new().route(
        "/api/v2/getAddressInformation",
        get(|| async {
            (
                StatusCode::TOO_MANY_REQUESTS,
                Json(serde_json::json!({"ok": false, "result": "Ratelimit exceed", "code": 429})),
            )
        }),
    );
    let chain = HttpChain::new(HttpChainConfig::new(&serve(limited).await)).unwrap();
    match chain.account_state(&root_addr()).await {
        Err(ChainError::Api { code, message }) => {
            assert_eq!((code, message.as_str()), (429, "Ratelimit exceed"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A null argument has no request form on toncenter: refused before anything is sent.
#[tokio::test]
async fn a_null_argument_is_refused_without_a_request() {
    let seen = S::default();
    let url = serve(app(seen.clone(), false)).await;
    let chain = HttpChain::new(HttpChainConfig::new(&url)).unwrap();
    assert!(matches!(
        chain
            .run_get_method(&root_addr(), "get", vec![StackEntry::Null])
            .await,
        Err(ChainError::Unsupported(_))
    ));
    assert!(seen.lock().unwrap().requests.is_empty());
}
