//! Tests of API keys: the pure core (each refusal, windows, budget periods, tickets), the
//! SQLite file, and the HTTP API with keys on (over a real socket, with an in-memory proxy).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use cocoon_proto::messages::{ClientRunQueryEx, HttpHeader, HttpResponse, TokensUsed};
use cocoon_proto::session::InboundMessage;

use super::*;
use crate::link::tests::deliver;
use crate::link::ProxyEvent;

const T0: u64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z, in ms

fn record(name: &str) -> KeyRecord {
    KeyRecord {
        id: format!("ck_{name}"),
        name: name.into(),
        models: Vec::new(),
        budget: None,
        limits: Limits::default(),
        expires_at: None,
        created_at: T0 / 1000,
        revoked: false,
    }
}

fn ring_of(r: KeyRecord) -> (KeyRing, Arc<KeyState>) {
    let id = r.id.clone();
    let ring = KeyRing::build(vec![(r, [7; 32], Spend::default())], None);
    let k = ring.by_id(&id).expect("key").clone();
    (ring, k)
}

fn refused(r: Result<Ticket, Refusal>) -> Refusal {
    r.expect_err("refused")
}

#[test]
fn revoked_and_expired_keys_are_401() {
    let mut r = record("a");
    r.revoked = true;
    let (ring, k) = ring_of(r);
    let e = refused(ring.admit(&k, "m", 1, 0, T0));
    assert_eq!(e.status, StatusCode::UNAUTHORIZED);
    assert!(e.message.contains("revoked"), "{}", e.message);
    let mut r = record("b");
    r.expires_at = Some(T0 / 1000 + 10);
    let (ring, k) = ring_of(r);
    assert!(ring.admit(&k, "m", 1, 0, T0 + 9_000).is_ok());
    let e = refused(ring.admit(&k, "m", 1, 0, T0 + 10_000));
    assert_eq!(
        (e.status, e.code),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );
    assert!(e.message.contains("expired"));
    assert_eq!(k.lock().refused[Reason::Expired as usize], 1);
}

#[test]
fn a_model_off_the_list_is_403() {
    let mut r = record("a");
    r.models = vec!["llama".into()];
    let (ring, k) = ring_of(r);
    assert!(ring.admit(&k, "llama", 1, 0, T0).is_ok());
    let e = refused(ring.admit(&k, "qwen", 1, 0, T0));
    assert_eq!(
        (e.status, e.code),
        (StatusCode::FORBIDDEN, "model_not_allowed")
    );
    assert!(e.message.contains("qwen"));
}

#[test]
fn requests_per_minute_refuse_with_retry_after_and_refill() {
    let mut r = record("myapp");
    r.limits.requests_per_minute = 2;
    let (ring, k) = ring_of(r);
    assert!(ring.admit(&k, "m", 1, 0, T0).is_ok());
    assert!(ring.admit(&k, "m", 1, 0, T0).is_ok());
    let e = refused(ring.admit(&k, "m", 1, 0, T0 + 1));
    assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        e.message,
        "key 'myapp' is over its limit of 2 requests per minute"
    );
    // One request comes back every 30 s.
    assert_eq!(e.retry_after, Some(30));
    let e = refused(ring.admit(&k, "m", 1, 0, T0 + 29_500));
    assert_eq!(e.retry_after, Some(1));
    assert!(ring.admit(&k, "m", 1, 0, T0 + 30_000).is_ok());
    assert_eq!(k.lock().refused[Reason::Rpm as usize], 2);
}

#[test]
fn tokens_per_minute_count_what_was_used() {
    let mut r = record("a");
    r.limits.tokens_per_minute = 120;
    let (ring, k) = ring_of(r);
    let mut t = ring.admit(&k, "m", 100, 0, T0).expect("first");
    let e = refused(ring.admit(&k, "m", 100, 0, T0));
    assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(e.message.contains("120 tokens per minute"));
    // 80 missing at 2 tokens per second.
    assert_eq!(e.retry_after, Some(40));
    // It used only 10: 90 of the 100 come back.
    t.settle(10, 0, T0);
    assert!(ring.admit(&k, "m", 100, 0, T0).is_ok());
    // A request above the whole allowance passes on a full bucket.
    let (ring, k) = ring_of({
        let mut r = record("b");
        r.limits.tokens_per_minute = 50;
        r
    });
    assert!(ring.admit(&k, "m", 1000, 0, T0).is_ok());
}

#[test]
fn a_failed_request_gives_its_tokens_per_minute_back() {
    let mut r = record("a");
    r.limits.tokens_per_minute = 100;
    let (ring, k) = ring_of(r);
    drop(ring.admit(&k, "m", 100, 0, T0).expect("first"));
    assert!(ring.admit(&k, "m", 100, 0, T0).is_ok());
}

#[test]
fn concurrency_is_released_on_drop() {
    let mut r = record("a");
    r.limits.concurrent_requests = 1;
    let (ring, k) = ring_of(r);
    let t = ring.admit(&k, "m", 1, 0, T0).expect("first");
    let e = refused(ring.admit(&k, "m", 1, 0, T0));
    assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(e.message.contains("1 concurrent requests"));
    assert_eq!(e.retry_after, Some(1));
    assert_eq!(k.lock().in_flight, 1);
    drop(t);
    assert_eq!(k.lock().in_flight, 0);
    assert!(ring.admit(&k, "m", 1, 0, T0).is_ok());
}

#[test]
fn budget_counts_spend_and_reservations_and_renews_each_day() {
    let mut r = record("a");
    r.budget = Some(Budget {
        unit: BudgetUnit::Tokens,
        period: Period::Day,
        amount: 100,
    });
    let (ring, k) = ring_of(r);
    // A reservation counts while in flight; failing charges nothing.
    let t = ring.admit(&k, "m", 100, 0, T0).expect("first");
    let e = refused(ring.admit(&k, "m", 1, 0, T0));
    assert_eq!(
        (e.status, e.code),
        (StatusCode::PAYMENT_REQUIRED, "insufficient_quota")
    );
    assert!(e.message.contains("100 tokens per day"), "{}", e.message);
    assert!(e.message.contains("2023-11-15T00:00:00Z"), "{}", e.message);
    drop(t);
    assert_eq!(k.lock().spend.total_tokens, 0);
    let mut t = ring.admit(&k, "m", 100, 0, T0).expect("again");
    t.settle(100, 5, T0);
    t.settle(100, 5, T0); // once only
    drop(t);
    {
        let l = k.lock();
        assert_eq!((l.spend.period_tokens, l.spend.total_tokens), (100, 100));
        assert_eq!((l.spend.total_nanoton, l.spend.total_requests), (5, 1));
        assert_eq!((l.reserved_tokens, l.in_flight), (0, 0));
    }
    assert_eq!(
        refused(ring.admit(&k, "m", 1, 0, T0)).code,
        "insufficient_quota"
    );
    // The next UTC day starts afresh; totals stay.
    let next_day = (T0 / 86_400_000 + 1) * 86_400_000;
    assert!(ring.admit(&k, "m", 1, 0, next_day - 1).is_err());
    assert!(ring.admit(&k, "m", 1, 0, next_day).is_ok());
    let l = k.lock();
    assert_eq!((l.spend.period_tokens, l.spend.total_tokens), (0, 100));
}

#[test]
fn a_ton_budget_counts_nanoton() {
    let mut r = record("a");
    r.budget = Some(Budget {
        unit: BudgetUnit::Nanoton,
        period: Period::Total,
        amount: 1_500_000_000,
    });
    let (ring, k) = ring_of(r);
    let mut t = ring.admit(&k, "m", 10, 1_000_000_000, T0).expect("first");
    t.settle(10, 1_500_000_000, T0);
    drop(t);
    let e = refused(ring.admit(&k, "m", 10, 0, T0 + 86_400_000 * 400));
    assert_eq!(e.message, "key 'a' has used its budget of 1.5 TON in total");
}

#[test]
fn calendar_months_and_days() {
    // 2024-02-15T12:00:00Z
    let t = 1_707_998_400;
    assert_eq!(period_start(Period::Month, t), 1_706_745_600); // 2024-02-01
    assert_eq!(period_end(Period::Month, t), 1_709_251_200); // 2024-03-01 (leap year)
    assert_eq!(period_start(Period::Day, t), 1_707_955_200);
    // December rolls into January.
    let dec = 1_702_641_600; // 2023-12-15T12:00:00Z
    assert_eq!(
        rfc3339(period_end(Period::Month, dec)),
        "2024-01-01T00:00:00Z"
    );
    assert_eq!(period_start(Period::Total, dec), 0);
}

#[test]
fn reload_keeps_live_state_of_known_keys() {
    let (ring, k) = ring_of(record("a"));
    let mut t = ring.admit(&k, "m", 5, 0, T0).expect("ok");
    t.settle(5, 0, T0);
    let mut revoked = record("a");
    revoked.revoked = true;
    let ring2 = KeyRing::build(
        vec![
            (revoked, [7; 32], Spend::default()),
            (record("b"), [8; 32], Spend::default()),
        ],
        Some(&ring),
    );
    let k2 = ring2.by_hash(&[7; 32]).expect("a");
    assert!(k2.record.revoked);
    assert_eq!(k2.lock().spend.total_tokens, 5);
    assert_eq!(k2.lock().in_flight, 1);
    drop(t);
    assert_eq!(k2.lock().in_flight, 0);
}

#[test]
fn new_keys_are_checked_and_secrets_look_right() {
    let s = new_secret();
    assert!(s.starts_with(SECRET_PREFIX) && s.len() == SECRET_PREFIX.len() + 32);
    let id = new_id();
    assert!(id.starts_with(ID_PREFIX) && id.len() == 15);
    let ok = NewKey {
        name: "app".into(),
        ..NewKey::default()
    };
    assert!(ok.validate(0).is_ok());
    for bad in [
        NewKey::default(),
        NewKey {
            name: "x".repeat(65),
            ..ok.clone()
        },
        NewKey {
            models: vec!["m".into(); 65],
            ..ok.clone()
        },
        NewKey {
            expires_at: Some(5),
            ..ok.clone()
        },
    ] {
        assert!(bad.validate(10).is_err(), "{bad:?}");
    }
}

// ---- the file ----

struct TempFile(PathBuf);

impl TempFile {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("cocoon-keys-test-{}.sqlite", new_id()));
        Self(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.0.display()));
        }
    }
}

fn new_key(name: &str) -> NewKey {
    NewKey {
        name: name.into(),
        models: vec!["mock".into()],
        budget: Some(Budget {
            unit: BudgetUnit::Tokens,
            period: Period::Month,
            amount: 1000,
        }),
        limits: Limits {
            requests_per_minute: 60,
            tokens_per_minute: 0,
            concurrent_requests: 2,
        },
        expires_at: None,
    }
}

#[test]
fn the_file_creates_lists_revokes_and_reloads() {
    let f = TempFile::new();
    let keys = Keys::open(&f.0).expect("open");
    assert!(!keys.active());
    // The CLI's connection, beside the running client's.
    let mut cli = Store::open(&f.0).expect("second open");
    let g0 = cli.generation().expect("gen");
    let (secret, rec) = cli.create(&new_key("app"), T0 / 1000).expect("create");
    assert_eq!(cli.generation().expect("gen"), g0 + 1);
    assert!(keys.reload_if_changed().expect("reload"));
    assert!(!keys.reload_if_changed().expect("no change"));
    assert!(keys.active());
    let k = keys.authenticate(&secret, T0).expect("known");
    assert_eq!(k.record, rec);
    assert_eq!(
        keys.authenticate("sk-cocoon-nope", T0)
            .expect_err("unknown")
            .code,
        "invalid_api_key"
    );
    // Spend flows to the file.
    let mut t = keys.ring().admit(&k, "mock", 10, 0, T0).expect("admit");
    t.settle(7, 3, T0);
    drop(t);
    assert_eq!(keys.flush().expect("flush"), 1);
    assert_eq!(keys.flush().expect("nothing new"), 0);
    let (_, spend) = cli.get(&rec.id).expect("get").expect("there");
    assert_eq!((spend.total_tokens, spend.total_nanoton), (7, 3));
    // Revoked by the CLI: the client sees it after a reload, spend kept.
    assert!(cli.revoke(&rec.id).expect("revoke"));
    assert!(!cli.revoke("ck_000000000000").expect("unknown"));
    keys.reload_if_changed().expect("reload");
    let e = keys.authenticate(&secret, T0).expect_err("revoked");
    assert!(e.message.contains("revoked"));
    assert_eq!(
        keys.ring()
            .by_id(&rec.id)
            .expect("k")
            .lock()
            .spend
            .total_tokens,
        7
    );
    // A fresh open reads it all back.
    drop(keys);
    let again = Keys::open(&f.0).expect("reopen");
    let k = again.ring().by_id(&rec.id).expect("k").clone();
    assert!(k.record.revoked);
    assert_eq!(k.lock().spend.total_tokens, 7);
    assert_eq!(k.record.models, vec!["mock".to_string()]);
    assert_eq!(cli.load().expect("load").len(), 1);
    assert!(cli.create(&NewKey::default(), 0).is_err());
}

// ---- HTTP ----

const ADMIN: &str = "admin-secret-token";

/// The HTTP API with a keys file (admin token [`ADMIN`]).
struct Fixture {
    http: crate::http::tests::Fixture,
    _file: TempFile,
}

impl std::ops::Deref for Fixture {
    type Target = crate::http::tests::Fixture;
    fn deref(&self) -> &Self::Target {
        &self.http
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.http
    }
}

async fn start() -> Fixture {
    let file = TempFile::new();
    let keys = Arc::new(Keys::open(&file.0).expect("keys"));
    let cfg = crate::ClientConfig {
        bearer_token: Some(ADMIN.into()),
        ..crate::ClientConfig::default()
    };
    Fixture {
        http: crate::http::tests::start_client(cfg, None, Some(keys)).await,
        _file: file,
    }
}

impl Fixture {
    fn keys(&self) -> &Keys {
        self.shared.keys.as_deref().expect("keys on")
    }

    fn create(&self, new: NewKey) -> (String, KeyRecord) {
        self.keys().create(&new).expect("create")
    }
}

/// A JSON request with `auth` as its bearer token; the raw response.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> String {
    let bearer = auth.map(|a| format!("Bearer {a}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(b) = bearer.as_deref() {
        headers.push(("Authorization", b));
    }
    crate::http::tests::send(addr, method, path, &headers, body).await
}

fn status(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn json_body(raw: &str) -> serde_json::Value {
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

fn code(raw: &str) -> String {
    json_body(raw)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .into()
}

const CHAT: &str =
    r#"{"model":"mock","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;

async fn next_query(proxy: &mut cocoon_proto::session::Inbound) -> Option<ClientRunQueryEx> {
    match tokio::time::timeout(Duration::from_secs(5), proxy.recv()).await {
        Ok(Some(InboundMessage::Packet(p))) => cocoon_tl::from_bytes(&p).ok(),
        _ => None,
    }
}

/// Sends a chat request with `auth`, answers it whole with `usage` (tokens, cost); the raw
/// response.
async fn answered(f: &mut Fixture, auth: &str, tokens: i64, cost: u64) -> String {
    let (addr, auth) = (f.addr, auth.to_string());
    let app =
        tokio::spawn(
            async move { send(addr, "POST", "/v1/chat/completions", Some(&auth), CHAT).await },
        );
    let q = next_query(&mut f.proxy).await.expect("query");
    let payload =
        format!(r#"{{"choices":[],"usage":{{"total_tokens":{tokens},"total_cost":{cost}}}}}"#);
    let head = HttpResponse {
        http_version: "HTTP/1.1".into(),
        status_code: 200,
        reason: "OK".into(),
        headers: vec![HttpHeader {
            name: "Content-Type".into(),
            value: "application/json".into(),
        }],
        payload: payload.into(),
    };
    let done = TokensUsed {
        total_tokens_used: tokens,
        ..TokensUsed::default()
    };
    deliver(
        &f.link,
        q.request_id,
        ProxyEvent::Head {
            answer: cocoon_proto::messages::encode(&head),
            done: Some(done),
        },
        true,
    );
    app.await.expect("app")
}

#[tokio::test]
async fn without_keys_in_the_file_the_admin_token_rules_as_before() {
    let f = start().await;
    let raw = send(f.addr, "POST", "/v1/chat/completions", Some("nope"), CHAT).await;
    assert_eq!(status(&raw), 401, "{raw}");
    assert!(json_body(&raw)["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("bearer token")));
    let raw = send(f.addr, "GET", "/jsonstats", Some(ADMIN), "").await;
    assert_eq!(status(&raw), 200, "{raw}");
}

#[tokio::test]
async fn keys_are_checked_and_charged() {
    let mut f = start().await;
    let (secret, rec) = f.create(NewKey {
        limits: Limits {
            requests_per_minute: 2,
            ..Limits::default()
        },
        ..new_key("myapp")
    });
    // Unknown, missing.
    for auth in [Some("sk-cocoon-unknown"), None] {
        let raw = send(f.addr, "POST", "/v1/chat/completions", auth, CHAT).await;
        assert_eq!(
            (status(&raw), code(&raw).as_str()),
            (401, "invalid_api_key"),
            "{raw}"
        );
    }
    // A key may not read the stats; the admin may.
    let raw = send(f.addr, "GET", "/jsonstats", Some(&secret), "").await;
    assert_eq!(status(&raw), 401, "{raw}");
    // A good request is answered and charged: tokens, and nanoTON from usage.total_cost.
    let raw = answered(&mut f, &secret, 12, 345).await;
    assert_eq!(status(&raw), 200, "{raw}");
    let k = f.keys().ring().by_id(&rec.id).expect("k").clone();
    {
        let l = k.lock();
        assert_eq!((l.spend.total_tokens, l.spend.total_nanoton), (12, 345));
        assert_eq!((l.in_flight, l.reserved_tokens), (0, 0));
    }
    // The admin token still works, unlimited, charged to no key.
    let raw = answered(&mut f, ADMIN, 1, 1).await;
    assert_eq!(status(&raw), 200, "{raw}");
    // A model off the list.
    let other = CHAT.replace("\"mock\"", "\"other\"");
    let raw = send(
        f.addr,
        "POST",
        "/v1/chat/completions",
        Some(&secret),
        &other,
    )
    .await;
    assert_eq!(
        (status(&raw), code(&raw).as_str()),
        (403, "model_not_allowed"),
        "{raw}"
    );
    // Second request of the minute: admitted (no proxy answer needed, it is refused later or
    // times out; use a failing request: the proxy answers an error).
    let (addr, s2) = (f.addr, secret.clone());
    let app =
        tokio::spawn(
            async move { send(addr, "POST", "/v1/chat/completions", Some(&s2), CHAT).await },
        );
    let q = next_query(&mut f.proxy).await.expect("query");
    deliver(
        &f.link,
        q.request_id,
        // Not one the client retries (a lost worker would be tried again).
        ProxyEvent::Error {
            code: cocoon_node::errors::ERROR,
            message: "the worker refused".into(),
        },
        true,
    );
    let raw = app.await.expect("app");
    assert_eq!(status(&raw), 500, "{raw}");
    assert_eq!(
        k.lock().spend.total_tokens,
        12,
        "a failed request charges nothing"
    );
    // Third: over 2 per minute.
    let raw = send(f.addr, "POST", "/v1/chat/completions", Some(&secret), CHAT).await;
    assert_eq!(status(&raw), 429, "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after: "), "{raw}");
    assert!(json_body(&raw)["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("2 requests per minute")));
    // Per-key stats for the admin.
    let raw = send(f.addr, "GET", "/jsonstats", Some(ADMIN), "").await;
    let v = json_body(&raw);
    let row = &v["api_keys"]["keys"][0];
    assert_eq!(row["id"], rec.id.as_str());
    assert_eq!(row["tokens"], 12);
    assert_eq!(row["refused"]["requests_per_minute"], 1);
    let raw = send(f.addr, "GET", "/metrics", Some(ADMIN), "").await;
    assert!(
        raw.contains(&format!(
            "cocoon_client_key_tokens_total{{key=\"{}\"}} 12",
            rec.id
        )),
        "{raw}"
    );
    // Revoked: 401 naming it.
    f.keys().revoke(&rec.id).expect("revoke");
    let raw = send(f.addr, "POST", "/v1/chat/completions", Some(&secret), CHAT).await;
    assert_eq!(status(&raw), 401, "{raw}");
    assert!(raw.contains("revoked"), "{raw}");
}

#[tokio::test]
async fn an_exhausted_budget_is_402() {
    let f = start().await;
    let (secret, rec) = f.create(new_key("small"));
    let k = f.keys().ring().by_id(&rec.id).expect("k").clone();
    let mut t = f
        .keys()
        .ring()
        .admit(&k, "mock", 1, 0, now_ms())
        .expect("admit");
    t.settle(1000, 0, now_ms());
    drop(t);
    let raw = send(f.addr, "POST", "/v1/chat/completions", Some(&secret), CHAT).await;
    assert_eq!(
        (status(&raw), code(&raw).as_str()),
        (402, "insufficient_quota"),
        "{raw}"
    );
    assert!(raw.contains("1000 tokens per month"), "{raw}");
}

#[tokio::test]
async fn the_admin_api_creates_lists_shows_and_revokes() {
    let f = start().await;
    let body = r#"{"name":"web","models":["mock"],"limits":{"requests_per_minute":5},
        "budget":{"unit":"tokens","period":"day","amount":500},"expires_in":"30d"}"#;
    let raw = send(f.addr, "POST", "/admin/keys/create", Some("wrong"), body).await;
    assert_eq!(status(&raw), 401, "{raw}");
    let raw = send(f.addr, "POST", "/admin/keys/create", Some(ADMIN), body).await;
    assert_eq!(status(&raw), 200, "{raw}");
    let v = json_body(&raw);
    let secret = v["secret"].as_str().expect("secret").to_string();
    let id = v["id"].as_str().expect("id").to_string();
    assert!(v["expires_at"].as_u64().is_some());
    // The new key works at once.
    assert!(f.keys().authenticate(&secret, now_ms()).is_ok());
    let raw = send(f.addr, "POST", "/admin/keys/list", Some(ADMIN), "").await;
    let v = json_body(&raw);
    assert_eq!(v["keys"][0]["id"], id.as_str());
    assert!(!raw.contains(&secret), "the secret is never shown again");
    let show = format!(r#"{{"id":"{id}"}}"#);
    let raw = send(f.addr, "POST", "/admin/keys/show", Some(ADMIN), &show).await;
    assert_eq!(json_body(&raw)["budget"]["amount"], 500);
    let raw = send(f.addr, "POST", "/admin/keys/revoke", Some(ADMIN), &show).await;
    assert_eq!(status(&raw), 200, "{raw}");
    assert!(f.keys().authenticate(&secret, now_ms()).is_err());
    let raw = send(
        f.addr,
        "POST",
        "/admin/keys/revoke",
        Some(ADMIN),
        r#"{"id":"ck_x"}"#,
    )
    .await;
    assert_eq!(status(&raw), 404, "{raw}");
    let raw = send(
        f.addr,
        "POST",
        "/admin/keys/create",
        Some(ADMIN),
        r#"{"name":""}"#,
    )
    .await;
    assert_eq!(status(&raw), 400, "{raw}");
    // A misspelt field is refused, not ignored (it would make a key without its limit).
    for body in [
        r#"{"name":"x","limit":{"requests_per_minute":5}}"#,
        r#"{"name":"x","limits":{"requests_per_min":5}}"#,
    ] {
        let raw = send(f.addr, "POST", "/admin/keys/create", Some(ADMIN), body).await;
        assert_eq!(status(&raw), 400, "{body}: {raw}");
    }
    assert_eq!(
        f.keys().ring().iter().count(),
        1,
        "only the first key was made"
    );
}

#[test]
fn expiries_parse_as_durations_or_times() {
    assert_eq!(parse_expiry("30d", 100).expect("d"), 100 + 30 * 86_400);
    assert_eq!(
        parse_expiry("2024-01-01T00:00:00Z", 0).expect("t"),
        1_704_067_200
    );
    assert!(parse_expiry("soon", 0).is_err());
}

#[test]
fn a_ticket_remembers_the_cost_an_answer_reported() {
    let (ring, k) = ring_of(record("a"));
    let mut t = ring.admit(&k, "m", 10, 0, T0).expect("ok");
    assert_eq!(t.seen_cost(), None);
    t.saw_cost(900);
    assert_eq!(t.seen_cost(), Some(900));
}

#[tokio::test]
async fn a_streamed_answer_is_charged_its_reported_cost() {
    let mut f = start().await;
    let (secret, rec) = f.create(NewKey {
        limits: Limits {
            concurrent_requests: 1,
            ..Limits::default()
        },
        ..new_key("streamer")
    });
    let (addr, s2) = (f.addr, secret.clone());
    let body = CHAT.replace("\"max_tokens\"", "\"stream\":true,\"max_tokens\"");
    let app =
        tokio::spawn(
            async move { send(addr, "POST", "/v1/chat/completions", Some(&s2), &body).await },
        );
    let q = next_query(&mut f.proxy).await.expect("query");
    let k = f.keys().ring().by_id(&rec.id).expect("k").clone();
    assert_eq!(k.lock().in_flight, 1);
    let head = HttpResponse {
        http_version: "HTTP/1.1".into(),
        status_code: 200,
        reason: "OK".into(),
        headers: vec![HttpHeader {
            name: "Content-Type".into(),
            value: "text/event-stream".into(),
        }],
        payload: axum::body::Bytes::from_static(b"data: {\"n\":1}\n\n"),
    };
    deliver(
        &f.link,
        q.request_id,
        ProxyEvent::Head {
            answer: cocoon_proto::messages::encode(&head),
            done: None,
        },
        false,
    );
    let usage = ProxyEvent::Part {
        data: axum::body::Bytes::from_static(
            b"data: {\"usage\":{\"total_tokens\":20,\"total_cost\":777}}\n\n",
        ),
        done: None,
    };
    deliver(&f.link, q.request_id, usage, false);
    let end = ProxyEvent::Part {
        data: axum::body::Bytes::from_static(b"data: [DONE]\n\n"),
        done: Some(TokensUsed {
            total_tokens_used: 20,
            ..TokensUsed::default()
        }),
    };
    deliver(&f.link, q.request_id, end, true);
    let raw = app.await.expect("app");
    assert_eq!(status(&raw), 200, "{raw}");
    let l = k.lock();
    assert_eq!((l.spend.total_tokens, l.spend.total_nanoton), (20, 777));
    assert_eq!(l.in_flight, 0);
}

#[test]
fn concurrent_admissions_never_exceed_the_limit() {
    let mut r = record("a");
    r.limits.concurrent_requests = 3;
    let (ring, k) = ring_of(r);
    let ring = Arc::new(ring);
    let max_seen = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (ring, k, max_seen) = (ring.clone(), k.clone(), max_seen.clone());
            std::thread::spawn(move || {
                let mut admitted = 0;
                for _ in 0..2000 {
                    if let Ok(mut t) = ring.admit(&k, "m", 1, 0, T0) {
                        let n = k.lock().in_flight;
                        max_seen.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
                        t.settle(1, 0, T0);
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert!(max_seen.load(std::sync::atomic::Ordering::Relaxed) <= 3);
    let l = k.lock();
    assert_eq!(l.in_flight, 0);
    assert_eq!(l.spend.total_tokens, admitted);
    assert_eq!(l.admitted, admitted);
    assert_eq!(
        l.admitted + l.refused[Reason::Concurrency as usize],
        8 * 2000
    );
}
