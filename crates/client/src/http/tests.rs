//! Tests of the HTTP API over a real socket, with an in-memory proxy link: what the app sees
//! and what reaches the proxy.

use std::net::SocketAddr;
use std::time::Duration;

use cocoon_proto::messages::{ClientRunQueryEx, HttpRequest};
use cocoon_proto::session::InboundMessage;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::link::tests::{add_to_pool, deliver, test_link, TestLink};
use crate::ClientConfig;

/// A client's HTTP API on a real socket, with one in-memory proxy link (also used by
/// `crate::keys::tests`).
pub(crate) struct Fixture {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub link: Arc<Link>,
    pub proxy: cocoon_proto::session::Inbound,
    _t: (
        cocoon_proto::session::Session,
        tokio::sync::mpsc::UnboundedReceiver<[u8; 32]>,
    ),
}

async fn start() -> Fixture {
    start_with(None).await
}

async fn start_with(payments: Option<Arc<crate::payments::Payments>>) -> Fixture {
    start_client(ClientConfig::default(), payments, None).await
}

/// Serves `cfg` (its `http_listen` replaced by a free port; the sealed path off: these tests
/// script Cocoon's path, the sealed one has its own) with `payments` and `keys`.
pub(crate) async fn start_client(
    cfg: ClientConfig,
    payments: Option<Arc<crate::payments::Payments>>,
    keys: Option<Arc<crate::keys::Keys>>,
) -> Fixture {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cfg = ClientConfig {
        http_listen: addr,
        privacy: crate::config::PrivacyConfig {
            sealed: Some(crate::config::SealedMode::Off),
            ..cfg.privacy
        },
        ..cfg
    };
    let TestLink {
        link,
        cancels,
        proxy_inbound,
        proxy,
        ..
    } = test_link(
        crate::link::tests::WITH_EXTENSIONS,
        crate::link::MAX_QUEUED_RESPONSE_BYTES,
    )
    .await;
    let link = Arc::new(link);
    let shared = Arc::new(Shared {
        cfg: Arc::new(cfg),
        pool: Arc::default(),
        stats: Arc::new(crate::stats::ClientStats::with_keys(keys.clone())),
        payments,
        discovery: None,
        workers: Arc::new(crate::sealing::WorkerVerifier::new(
            Arc::new(cocoon_attest::Policy::any()),
            Vec::new(),
            Duration::from_secs(600),
        )),
        candidates: Default::default(),
        receipts: Arc::new(crate::receipts::ReceiptBook::open(None, 100).expect("book")),
        keys,
    });
    add_to_pool(&shared.pool, link.clone());
    let app = app(shared.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fixture {
        addr,
        shared,
        link,
        proxy: proxy_inbound,
        _t: (proxy, cancels),
    }
}

/// One HTTP/1.1 request (`Connection: close`); the whole raw response as text.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

fn status(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The JSON body of a response framed by `Content-Length`.
fn json_body(raw: &str) -> Value {
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// The next `client.runQueryEx` the proxy receives, if one comes within `wait`.
async fn next_query(
    proxy: &mut cocoon_proto::session::Inbound,
    wait: Duration,
) -> Option<ClientRunQueryEx> {
    match tokio::time::timeout(wait, proxy.recv()).await {
        Ok(Some(InboundMessage::Packet(p))) => Some(cocoon_tl::from_bytes(&p).expect("runQueryEx")),
        _ => None,
    }
}

fn chat_body(stream: bool) -> String {
    json!({"model": "mock", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

#[tokio::test]
async fn requests_from_web_pages_are_refused_before_reaching_the_proxy() {
    let mut f = start().await;
    let own_origin = format!("http://{}", f.addr);
    let port = f.addr.port();
    let rebound = format!("attacker.example:{port}");
    let json_ct = ("Content-Type", "application/json");
    /// Method, path, headers, the status and the error code it must get.
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        // A page's "simple" request: text/plain needs no CORS preflight.
        (
            "POST",
            "/v1/chat/completions",
            vec![
                ("Content-Type", "text/plain"),
                ("Origin", "https://evil.example"),
            ],
            403,
            "forbidden_origin",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![
                ("Content-Type", "text/plain;charset=UTF-8"),
                ("Origin", &own_origin),
            ],
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/v1/completions",
            vec![json_ct, ("Origin", "null")],
            403,
            "forbidden_origin",
        ),
        // DNS rebinding: the page's own name, the client's port.
        (
            "POST",
            "/v1/chat/completions",
            vec![json_ct, ("Host", &rebound)],
            403,
            "forbidden_host",
        ),
        (
            "GET",
            "/jsonstats",
            vec![("Host", &rebound)],
            403,
            "forbidden_host",
        ),
        (
            "GET",
            "/v1/models",
            vec![("Origin", "https://evil.example")],
            403,
            "forbidden_origin",
        ),
        (
            "GET",
            "/stats",
            vec![("Sec-Fetch-Site", "cross-site")],
            403,
            "cross_site_request",
        ),
        (
            "POST",
            "/admin/top-up",
            vec![("Origin", "https://evil.example")],
            403,
            "forbidden_origin",
        ),
    ];
    for (method, path, headers, want, code) in cases {
        let body = if method == "POST" {
            chat_body(false)
        } else {
            String::new()
        };
        let raw = send(f.addr, method, path, &headers, &body).await;
        assert_eq!(status(&raw), want, "{method} {path} {headers:?}: {raw}");
        let v = json_body(&raw);
        assert_eq!(v["error"]["code"], code, "{raw}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    assert!(
        no_more_queries(&mut f).await,
        "a refused request reached the proxy"
    );
    assert_eq!(
        f.shared.stats.requests.get(),
        0,
        "refusals are not requests"
    );
    // Own pages and plain GETs pass.
    let raw = send(f.addr, "GET", "/jsonstats", &[], "").await;
    assert_eq!(status(&raw), 200, "{raw}");
}

#[tokio::test]
async fn curl_without_content_type_still_works_and_only_the_body_type_is_forwarded() {
    let mut f = start().await;
    let own_origin = format!("http://localhost:{}", f.addr.port());
    let leaky = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Origin", own_origin.as_str()),
        ("Cookie", "session=secret"),
        ("Authorization", "Bearer sk-other"),
        ("Proxy-Authorization", "Basic cHJveHk6cHc="),
        ("X-Api-Key", "key"),
        ("X-Forwarded-For", "10.1.2.3"),
        ("User-Agent", "app/1.0"),
        ("Referer", "http://localhost/secret-page"),
        ("OpenAI-Organization", "org-1"),
        ("X-Custom", "x"),
    ];
    // The README's `curl -d '{…}'`: form type, no Origin, no Sec-Fetch-Site.
    let curl = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("User-Agent", "curl/8.5.0"),
        ("Accept", "*/*"),
    ];
    for headers in [&leaky[..], &curl[..], &[]] {
        let addr = f.addr;
        let owned: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let app = tokio::spawn(async move {
            let h: Vec<(&str, &str)> = owned
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            send(addr, "POST", "/v1/chat/completions", &h, &chat_body(false)).await
        });
        let q = next_query(&mut f.proxy, Duration::from_secs(5))
            .await
            .expect("the request reached the proxy");
        let http: HttpRequest = cocoon_tl::from_bytes(&q.query).expect("http.request");
        let names: Vec<(&str, &str)> = http
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        let length = http.payload.len().to_string();
        assert_eq!(
            names,
            [
                ("Content-Type", "application/json"),
                ("Content-Length", length.as_str())
            ],
            "{headers:?}"
        );
        // As upstream 9060ce5's client builds it (crates/proto/tests/data/frames-9060ce5): flags 3
        // (enable_debug false, a key field of zeros at protocol >= 3), POST, HTTP/1.0.
        assert_eq!(
            (http.method.as_str(), http.http_version.as_str()),
            ("POST", "HTTP/1.0")
        );
        assert_eq!(q.flags, 3);
        assert_eq!((q.enable_debug, q.public_key), (Some(false), Some([0; 32])));
        deliver(
            &f.link,
            q.request_id,
            ProxyEvent::Error {
                code: errors::NO_WORKER,
                message: "no worker".into(),
            },
            true,
        );
        let raw = app.await.expect("app");
        assert_eq!(status(&raw), 503, "{raw}");
    }
}

/// Whether the proxy receives no further request within 300 ms (no retry was sent).
async fn no_more_queries(f: &mut Fixture) -> bool {
    next_query(&mut f.proxy, Duration::from_millis(300))
        .await
        .is_none()
}

/// An app's non-streamed chat request, sent in the background; the raw response.
fn app_chat(addr: SocketAddr) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let h = [("Content-Type", "application/json")];
        send(addr, "POST", "/v1/chat/completions", &h, &chat_body(false)).await
    })
}

/// Sends a streamed request, answers it with an SSE head and one part, then `end`; the raw
/// response the app got.
async fn stream_then(f: &mut Fixture, end: ProxyEvent) -> String {
    let addr = f.addr;
    let app = tokio::spawn(async move {
        let h = [("Content-Type", "application/json")];
        send(addr, "POST", "/v1/chat/completions", &h, &chat_body(true)).await
    });
    let q = next_query(&mut f.proxy, Duration::from_secs(5))
        .await
        .expect("query");
    let head = HttpResponse {
        http_version: "HTTP/1.1".into(),
        status_code: 200,
        reason: "OK".into(),
        headers: vec![HttpHeader {
            name: "Content-Type".into(),
            value: "text/event-stream".into(),
        }],
        payload: Bytes::from_static(b"data: {\"n\":1}\n\n"),
    };
    let answer = encode(&head);
    deliver(
        &f.link,
        q.request_id,
        ProxyEvent::Head { answer, done: None },
        false,
    );
    let part = ProxyEvent::Part {
        data: Bytes::from_static(b"data: {\"n\":2}\n\n"),
        done: None,
    };
    deliver(&f.link, q.request_id, part, false);
    deliver(&f.link, q.request_id, end, true);
    app.await.expect("app")
}

#[tokio::test]
async fn a_stream_cut_midway_ends_abnormally_after_its_error_event() {
    let mut f = start().await;
    // Complete: the chunked body ends with its final empty chunk.
    let done = ProxyEvent::Part {
        data: Bytes::from_static(b"data: [DONE]\n\n"),
        done: Some(TokensUsed::default()),
    };
    let raw = stream_then(&mut f, done).await;
    assert!(raw.contains("transfer-encoding: chunked"), "{raw}");
    assert!(raw.ends_with("0\r\n\r\n"), "complete stream: {raw:?}");
    // Cut: the error event is there, the final chunk is not.
    let cut = ProxyEvent::Error {
        code: errors::NOT_READY,
        message: "worker lost".into(),
    };
    let raw = stream_then(&mut f, cut).await;
    assert!(raw.contains("data: {\"n\":2}"), "{raw:?}");
    assert!(
        raw.contains("worker lost"),
        "the error event is kept: {raw:?}"
    );
    assert!(
        !raw.ends_with("0\r\n\r\n"),
        "a cut stream must not end like a complete one: {raw:?}"
    );
}

/// L6: Cocoon's `enable_debug` and `request_guid` are accepted from apps and never forwarded:
/// the body the proxy (and the worker) gets has neither, and the message asks for no debug.
#[tokio::test]
async fn debug_and_guid_fields_are_accepted_and_never_forwarded() {
    let mut f = start().await;
    let addr = f.addr;
    let body = json!({
        "model": "mock", "stream": false, "enable_debug": true, "request_guid": "app-7",
        "messages": [{"role": "user", "content": "hi"}],
    })
    .to_string();
    let app = tokio::spawn(async move {
        let h = [("Content-Type", "application/json")];
        send(addr, "POST", "/v1/chat/completions", &h, &body).await
    });
    let q = next_query(&mut f.proxy, Duration::from_secs(5))
        .await
        .expect("the request reached the proxy");
    // The app's flag is not forwarded; the field is upstream's constant `false`.
    assert_eq!(q.enable_debug, Some(false));
    let http: HttpRequest = cocoon_tl::from_bytes(&q.query).expect("http.request");
    let forwarded: Value = serde_json::from_slice(&http.payload).expect("json body");
    assert!(forwarded.get("enable_debug").is_none(), "{forwarded}");
    assert!(forwarded.get("request_guid").is_none(), "{forwarded}");
    assert_eq!(forwarded["model"], "mock");
    deliver(
        &f.link,
        q.request_id,
        ProxyEvent::Error {
            code: errors::NO_WORKER,
            message: "no worker".into(),
        },
        true,
    );
    let raw = app.await.expect("app");
    assert_eq!(status(&raw), 503, "{raw}");
}

#[tokio::test]
async fn encrypted_requests_pass_unread_with_the_key_they_name() {
    use cocoon_field_encryption::{encrypt_json, Direction, SecretSeed};
    let mut f = start().await;
    let addr = f.addr;
    let network = SecretSeed::from_bytes([5; 32]).public_key();
    let app_seed = SecretSeed::from_bytes([6; 32]);
    // `role` is encrypted too: nothing the client could validate is left readable.
    let sealed = encrypt_json(
        json!({"model": "mock", "max_tokens": 7,
               "messages": [{"role": "user", "content": "a secret prompt"}]}),
        &app_seed,
        &network,
        Direction::ClientToWorker,
        &mut rand::rng(),
    )
    .expect("encrypt")
    .to_string();
    let body = sealed.clone();
    let app = tokio::spawn(async move {
        let h = [("Content-Type", "application/json")];
        send(addr, "POST", "/v1/chat/completions", &h, &body).await
    });
    let q = next_query(&mut f.proxy, Duration::from_secs(5))
        .await
        .expect("the request reached the proxy");
    assert_eq!(
        q.public_key,
        Some(network),
        "the key field names the network key"
    );
    assert_eq!(q.model_name, "mock");
    assert_eq!(q.max_tokens, 7);
    let http: HttpRequest = cocoon_tl::from_bytes(&q.query).expect("http.request");
    assert!(!String::from_utf8_lossy(&http.payload).contains("a secret prompt"));
    let forwarded: Value = serde_json::from_slice(&http.payload).expect("json");
    let original: Value = serde_json::from_str(&sealed).expect("json");
    assert_eq!(forwarded, original, "forwarded as the app sealed it");
    deliver(
        &f.link,
        q.request_id,
        ProxyEvent::Error {
            code: errors::NO_WORKER,
            message: "no worker".into(),
        },
        true,
    );
    assert_eq!(status(&app.await.expect("app")), 503);

    // Without the key it is encrypted to, no proxy could route it: refused here.
    let mut v: Value = serde_json::from_str(&sealed).expect("json");
    v.as_object_mut().map(|o| o.remove("receiver_public_key"));
    let raw = send(addr, "POST", "/v1/chat/completions", &[], &v.to_string()).await;
    assert_eq!(status(&raw), 400, "{raw}");
    assert!(next_query(&mut f.proxy, Duration::from_millis(200))
        .await
        .is_none());
}

#[tokio::test]
async fn a_streamed_json_lines_answer_reaches_the_app_line_by_line() {
    // Upstream's workers stream JSON lines with `Content-Type: application/json`; an app that
    // asked for a stream gets each line as it comes, not one body at the end.
    let mut f = start().await;
    let mut s = TcpStream::connect(f.addr).await.expect("connect");
    let body = chat_body(true);
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        f.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let q = next_query(&mut f.proxy, Duration::from_secs(5))
        .await
        .expect("query");
    let head = HttpResponse {
        http_version: "HTTP/1.1".into(),
        status_code: 200,
        reason: "OK".into(),
        headers: vec![HttpHeader {
            name: "Content-Type".into(),
            value: "application/json".into(),
        }],
        payload: Bytes::new(),
    };
    deliver(
        &f.link,
        q.request_id,
        ProxyEvent::Head {
            answer: encode(&head),
            done: None,
        },
        false,
    );
    let line = |text: &'static str| ProxyEvent::Part {
        data: Bytes::from_static(text.as_bytes()),
        done: None,
    };
    deliver(
        &f.link,
        q.request_id,
        line("{\"delta\":\"Hello\"}\n"),
        false,
    );
    // The first line arrives while the answer is still open.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("{\"delta\":\"Hello\"}") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the first line came before the answer ended")
            .expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    deliver(
        &f.link,
        q.request_id,
        ProxyEvent::Part {
            data: Bytes::from_static(b"{\"delta\":\" world\"}\n"),
            done: Some(TokensUsed::default()),
        },
        true,
    );
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("the answer ended")
        .expect("read");
    let raw = String::from_utf8_lossy(&got);
    assert_eq!(status(&raw), 200, "{raw}");
    assert!(raw.contains("{\"delta\":\" world\"}"), "{raw}");
}

/// Payments over an in-process local chain, reading the root through `registry`.
fn payments_with(registry: cocoon_onchain::RegistryWatch) -> Arc<crate::payments::Payments> {
    use cocoon_ton::wallet::{Phrase, Wallet};
    let chain: Arc<dyn cocoon_ton::Chain> =
        Arc::new(cocoon_localnet::Localnet::in_memory().expect("localnet"));
    let wallet = Wallet::from_phrase(&Phrase::generate().expect("phrase")).expect("wallet");
    Arc::new(crate::payments::Payments::new(
        chain.clone(),
        Arc::new(cocoon_onchain::WalletSender::new(chain, wallet)),
        registry,
        Arc::new(ClientConfig::default()),
    ))
}

#[tokio::test]
async fn a_stale_view_of_the_root_answers_503_until_a_read_succeeds() {
    use cocoon_ton::contracts::{CocoonParams, ParamsCodes, RootState};
    let owner: cocoon_ton::TonAddress = format!("0:{}", "11".repeat(32)).parse().expect("addr");
    let watch = cocoon_onchain::RegistryWatch::fixed(cocoon_onchain::Registry {
        root: owner,
        state: Arc::new(RootState {
            owner,
            version: 1,
            proxy_hashes: Vec::new(),
            proxies: Vec::new(),
            last_proxy_seqno: 0,
            worker_hashes: Vec::new(),
            model_hashes: Vec::new(),
            params: CocoonParams::default(),
            codes: ParamsCodes::default(),
            key_manager: None,
            verified_keys: None,
        }),
    });
    let mut f = start_with(Some(payments_with(watch.clone()))).await;
    // Last read ten minutes ago, the default bound is five.
    let old = std::time::SystemTime::now() - Duration::from_secs(600);
    watch.set_view_time(Some(old));
    let raw = send(
        f.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        &chat_body(false),
    )
    .await;
    assert_eq!(status(&raw), 503, "{raw}");
    let v = json_body(&raw);
    assert_eq!(v["error"]["code"], "root_stale", "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("view of the root contract") && msg.contains("600s old"),
        "{msg}"
    );
    assert!(
        next_query(&mut f.proxy, Duration::from_millis(200))
            .await
            .is_none(),
        "nothing reaches the proxy"
    );
    let stats = send(f.addr, "GET", "/jsonstats", &[], "").await;
    assert_eq!(json_body(&stats)["root"]["stale"], true, "{stats}");
    // A successful read: requests go out again.
    watch.set_view_time(Some(std::time::SystemTime::now()));
    let addr = f.addr;
    let req = tokio::spawn(async move {
        send(addr, "POST", "/v1/chat/completions", &[], &chat_body(false)).await
    });
    assert!(next_query(&mut f.proxy, Duration::from_secs(5))
        .await
        .is_some());
    req.abort();
}

/// A transcription form as an app sends it (text-only content, so it fits `send`), with its
/// Content-Type.
fn transcription_form(extra: &[(&str, &str)]) -> (String, String) {
    use cocoon_engine::multipart::{Form, FormPart};
    let mut parts = vec![
        FormPart::text("model", "mock"),
        FormPart::file(
            "file",
            "Private Meeting.wav",
            "audio/wav",
            &b"RIFF....WAVEfmt audio"[..],
        ),
    ];
    parts.extend(extra.iter().map(|(k, v)| FormPart::text(k, *v)));
    let (ct, body) = Form::new(parts).encode().expect("encodes");
    (ct, String::from_utf8(body.to_vec()).expect("ascii form"))
}

#[tokio::test]
async fn a_transcription_form_is_checked_and_forwarded_with_only_its_type_and_length() {
    let mut f = start().await;
    let addr = f.addr;
    let (ct, body) = transcription_form(&[
        ("max_coefficient", "2500"),
        ("timeout", "40"),
        ("request_guid", "app-9"),
        ("stream", "false"),
    ]);
    let app = tokio::spawn(async move {
        let h = [
            ("Content-Type", ct.as_str()),
            ("Cookie", "session=secret"),
            ("Authorization", "Bearer sk-other"),
            ("User-Agent", "OpenAI/Python 1.0"),
            ("X-Stainless-Lang", "python"),
        ];
        send(addr, "POST", "/v1/audio/transcriptions", &h, &body).await
    });
    let q = next_query(&mut f.proxy, Duration::from_secs(5))
        .await
        .expect("the request reached the proxy");
    assert_eq!(q.model_name, "mock");
    assert_eq!(q.max_coefficient, 2500);
    // What is left of the request's 40 s when it is sent, a little earlier.
    assert!(
        q.timeout <= 40.0 * 0.95 && q.timeout > 40.0 * 0.95 - 1.0,
        "{}",
        q.timeout
    );
    let http: HttpRequest = cocoon_tl::from_bytes(&q.query).expect("http.request");
    assert_eq!(http.url, "/v1/audio/transcriptions");
    let names: Vec<&str> = http.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["Content-Type", "Content-Length"]);
    let forwarded_ct = &http.headers[0].value;
    assert!(
        forwarded_ct.starts_with("multipart/form-data; boundary=cocoon-"),
        "{forwarded_ct}"
    );
    assert_eq!(http.headers[1].value, http.payload.len().to_string());
    // The canonical form: the checked fields only, Cocoon's extras gone, the app's file name
    // reduced to its extension.
    let form = cocoon_engine::multipart::parse_form(
        Some(forwarded_ct),
        &http.payload,
        &ValidationLimits::default(),
    )
    .expect("a form");
    let names: Vec<&str> = form.parts().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["model", "stream", "file"]);
    assert_eq!(form.parts()[2].filename.as_deref(), Some("audio.wav"));
    let text = String::from_utf8_lossy(&http.payload);
    for leak in [
        "Private Meeting",
        "app-9",
        "secret",
        "sk-other",
        "Stainless",
    ] {
        assert!(!text.contains(leak), "{leak} travelled");
    }
    deliver(
        &f.link,
        q.request_id,
        ProxyEvent::Error {
            code: errors::NO_WORKER,
            message: "no worker".into(),
        },
        true,
    );
    assert_eq!(status(&app.await.expect("app")), 503);
}

#[tokio::test]
async fn bad_transcription_forms_never_reach_the_proxy() {
    let mut f = start().await;
    let (ct, good) = transcription_form(&[]);
    // Each form has its own boundary.
    let (ct1, unknown) = transcription_form(&[("max_tokens", "9")]);
    let (ct2, bad_extra) = transcription_form(&[("max_coefficient", "lots")]);
    let (ct3, twice) = transcription_form(&[("timeout", "5"), ("timeout", "6")]);
    let huge = "x".repeat(f.shared.cfg.max_body_bytes + 1);
    /// Headers, body, the status and the error code it must get.
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("Content-Type", &ct1)],
            &unknown,
            400,
            "unknown_parameter",
        ),
        (
            vec![("Content-Type", &ct2)],
            &bad_extra,
            400,
            "invalid_value",
        ),
        (vec![("Content-Type", &ct3)], &twice, 400, "duplicate_key"),
        (
            vec![("Content-Type", "multipart/form-data")],
            &good,
            400,
            "invalid_multipart",
        ),
        (
            vec![("Content-Type", "multipart/form-data; boundary=elsewhere")],
            &good,
            400,
            "invalid_multipart",
        ),
        (vec![], &good, 415, "unsupported_media_type"),
        (
            vec![("Content-Type", "application/json")],
            "{}",
            415,
            "unsupported_media_type",
        ),
        (vec![("Content-Type", &ct)], &huge, 413, "body_too_large"),
    ];
    for (headers, body, want, code) in cases {
        let raw = send(f.addr, "POST", "/v1/audio/transcriptions", &headers, body).await;
        assert_eq!(status(&raw), want, "{headers:?}: {raw}");
        assert_eq!(json_body(&raw)["error"]["code"], code, "{raw}");
    }
    // A form on a JSON route is what a cross-site page would send.
    let raw = send(
        f.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", &ct)],
        &good,
    )
    .await;
    assert_eq!(status(&raw), 415, "{raw}");
    assert!(no_more_queries(&mut f).await);
}

#[test]
fn the_receipt_id_goes_before_the_done_event_or_at_the_end() {
    let id = "ab".repeat(32);
    let with = |s: &str| {
        String::from_utf8(with_receipt_comment(s.as_bytes(), &id).to_vec()).expect("utf8")
    };
    assert_eq!(
        with("data: {}\n\ndata: [DONE]\n\n"),
        format!("data: {{}}\n\n: cocoon-receipt-id {id}\n\ndata: [DONE]\n\n")
    );
    assert_eq!(
        with("data: [DONE]"),
        format!(": cocoon-receipt-id {id}\n\ndata: [DONE]")
    );
    assert_eq!(
        with("data: {}\n\n"),
        format!("data: {{}}\n\n: cocoon-receipt-id {id}\n\n")
    );
    assert_eq!(with(""), format!(": cocoon-receipt-id {id}\n\n"));
    assert!(ends_with_done(b"data: [DONE]\n\n"));
    assert!(!ends_with_done(b"data: [DONE]x"));
}

/// A scripted answer: head + body in one, with usage carrying Cocoon's cost.
fn whole_answer() -> ProxyEvent {
    let head = HttpResponse {
        http_version: "HTTP/1.1".into(),
        status_code: 200,
        reason: "OK".into(),
        headers: vec![HttpHeader {
            name: "Content-Type".into(),
            value: "application/json".into(),
        }],
        payload: Bytes::from_static(
            br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"total_tokens":3,"total_cost":1500000}}"#,
        ),
    };
    ProxyEvent::Head {
        answer: encode(&head),
        done: Some(TokensUsed::default()),
    }
}

/// Item 3 of issue 16: a worker lost before the head → the request is sent once more (a new
/// request id), the app gets the second attempt's answer with the retry headers, and never a
/// third attempt; an error another attempt would meet again is not retried.
#[tokio::test]
async fn a_request_failing_before_its_head_is_retried_once() {
    let mut f = start().await;
    let addr = f.addr;
    let app = app_chat(addr);
    let first = next_query(&mut f.proxy, Duration::from_secs(5))
        .await
        .expect("first attempt");
    let lost = ProxyEvent::Error {
        code: errors::BAD_GATEWAY,
        message: "proxy: worker disconnected".into(),
    };
    deliver(&f.link, first.request_id, lost, true);
    let second = next_query(&mut f.proxy, Duration::from_secs(5))
        .await
        .expect("the request is tried again");
    assert_ne!(first.request_id, second.request_id, "a new request id");
    assert_eq!(first.query, second.query, "the same request");
    deliver(&f.link, second.request_id, whole_answer(), true);
    let raw = app.await.expect("app");
    assert_eq!(status(&raw), 200, "{raw}");
    let lower = raw.to_ascii_lowercase();
    assert!(lower.contains("x-cocoon-retries: 1"), "{raw}");
    assert!(
        lower.contains("x-cocoon-retry-reason: worker_lost"),
        "{raw}"
    );
    // Cost in the answer, from Cocoon's total_cost.
    let body = json_body(&raw);
    assert_eq!(body["usage"]["cost"], "0.0015", "{body}");
    assert_eq!(body["usage"]["cost_nanoton"], 1_500_000, "{body}");
    assert_eq!(f.shared.stats.retried.get(), 1);

    // Twice lost: the second error is the app's answer; no third attempt.
    let app = app_chat(addr);
    for _ in 0..2 {
        let q = next_query(&mut f.proxy, Duration::from_secs(5))
            .await
            .expect("an attempt");
        let lost = ProxyEvent::Error {
            code: errors::BAD_GATEWAY,
            message: "proxy: worker disconnected".into(),
        };
        deliver(&f.link, q.request_id, lost, true);
    }
    let raw = app.await.expect("app");
    assert_eq!(status(&raw), 502, "{raw}");
    assert!(no_more_queries(&mut f).await, "a third attempt");

    // Not retried: an unknown model would be unknown again; and with one proxy, a proxy with
    // no worker free is not asked again at once.
    for code in [errors::UNKNOWN_MODEL, errors::NO_WORKER] {
        let app = app_chat(addr);
        let q = next_query(&mut f.proxy, Duration::from_secs(5))
            .await
            .expect("the attempt");
        let refused = ProxyEvent::Error {
            code,
            message: "no".into(),
        };
        deliver(&f.link, q.request_id, refused, true);
        let raw = app.await.expect("app");
        assert_ne!(status(&raw), 200, "{raw}");
        assert!(no_more_queries(&mut f).await, "code {code} was retried");
    }
    assert_eq!(f.shared.stats.retried.get(), 2);
}

/// Never after a byte was sent: a stream whose worker is lost after its head is cut, not
/// retried.
#[tokio::test]
async fn a_stream_failing_after_its_head_is_not_retried() {
    let mut f = start().await;
    let cut = ProxyEvent::Error {
        code: errors::BAD_GATEWAY,
        message: "proxy: worker disconnected".into(),
    };
    let raw = stream_then(&mut f, cut).await;
    assert!(raw.contains("worker disconnected"), "{raw}");
    assert!(
        no_more_queries(&mut f).await,
        "retried after bytes reached the app"
    );
    assert_eq!(f.shared.stats.retried.get(), 0);
}

/// A worker whose engine is at capacity answers a 503 head before any token: the request is
/// tried again (the proxy picks another worker), and the second 503, with no retry left, is
/// the app's answer as the worker gave it.
#[tokio::test]
async fn a_workers_503_head_is_retried_once() {
    let mut f = start().await;
    let addr = f.addr;
    let busy = || {
        let head = HttpResponse {
            http_version: "HTTP/1.1".into(),
            status_code: 503,
            reason: "Service Unavailable".into(),
            headers: vec![HttpHeader {
                name: "Content-Type".into(),
                value: "application/json".into(),
            }],
            payload: Bytes::from_static(
                br#"{"error":{"message":"the engine is at capacity; retry later","code":"overloaded"}}"#,
            ),
        };
        ProxyEvent::Head {
            answer: encode(&head),
            done: Some(TokensUsed::default()),
        }
    };
    for second_busy in [false, true] {
        let app = app_chat(addr);
        let q = next_query(&mut f.proxy, Duration::from_secs(5))
            .await
            .expect("first attempt");
        deliver(&f.link, q.request_id, busy(), true);
        let q = next_query(&mut f.proxy, Duration::from_secs(5))
            .await
            .expect("tried again");
        let answer = if second_busy { busy() } else { whole_answer() };
        deliver(&f.link, q.request_id, answer, true);
        let raw = app.await.expect("app");
        let lower = raw.to_ascii_lowercase();
        assert!(
            lower.contains("x-cocoon-retry-reason: worker_overloaded"),
            "{raw}"
        );
        if second_busy {
            assert_eq!(status(&raw), 503, "{raw}");
            assert!(
                raw.contains("at capacity"),
                "the worker's own answer: {raw}"
            );
        } else {
            assert_eq!(status(&raw), 200, "{raw}");
        }
        assert!(no_more_queries(&mut f).await, "a third attempt");
    }
}
