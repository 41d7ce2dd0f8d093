//! End-to-end bench runs against the mock server on 127.0.0.1:0 (counts asserted, never timings).

use super::*;
use cocoon_engine::mock::server::serve_mock;
use cocoon_engine::mock::{MockConfig, MockEngine};

/// A mock engine on 127.0.0.1:0, stopped (aborted) on drop.
struct Mock {
    url: String,
    engine: MockEngine,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn mock(cfg: MockConfig) -> Mock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let engine = MockEngine::new(cfg);
    let task = tokio::spawn(serve_mock(listener, engine.clone(), std::future::pending()));
    Mock { url, engine, task }
}

fn cfg(url: &str, stream: bool) -> BenchConfig {
    BenchConfig {
        url: url.to_owned(),
        model: "mock".into(),
        concurrency: 4,
        requests: 20,
        stream,
        max_tokens: Some(5),
        prompt: "hello".into(),
        timeout: Duration::from_secs(60),
        warmup: 2,
    }
}

#[tokio::test]
async fn streamed_run_counts() {
    let m = mock(MockConfig {
        completion_tokens: 8,
        ..MockConfig::default()
    })
    .await;
    let r = run(&cfg(&m.url, true)).await.unwrap();
    assert_eq!(r.requests_ok, 20, "{:?}", r.failures);
    assert_eq!(r.requests_failed, 0);
    assert!(r.failures.is_empty());
    // max_tokens 5 < 8: every request yields 5 tokens (from the usage chunk).
    assert_eq!(r.completion_tokens, 100);
    // Warmup requests reached the engine but are not in the report.
    let s = m.engine.stats();
    assert_eq!((s.started, s.completed, s.aborted), (22, 22, 0));
    assert!(r.req_per_s > 0.0);
    assert!(r.latency.max >= r.latency.p50);
    assert!(r.ttft.p50 <= r.latency.max);
    assert_eq!(r.url, m.url);
}

#[tokio::test]
async fn non_streamed_run_counts() {
    let m = mock(MockConfig {
        completion_tokens: 3,
        ..MockConfig::default()
    })
    .await;
    let mut c = cfg(&m.url, false);
    c.warmup = 0;
    c.concurrency = 3;
    c.requests = 7;
    let r = run(&c).await.unwrap();
    assert_eq!((r.requests_ok, r.requests_failed), (7, 0));
    assert_eq!(r.completion_tokens, 21);
    assert_eq!(r.itl, Percentiles::default());
    assert_eq!(m.engine.stats().completed, 7);
}

#[tokio::test]
async fn comparison_runs_both() {
    let a = mock(MockConfig::default()).await;
    let b = mock(MockConfig::default()).await;
    let mut c = cfg(&a.url, true);
    c.requests = 6;
    c.warmup = 0;
    let (through, direct) = run_comparison(&c, &b.url).await.unwrap();
    assert_eq!((through.requests_ok, direct.requests_ok), (6, 6));
    assert_eq!(a.engine.stats().completed, 6);
    assert_eq!(b.engine.stats().completed, 6);
    let table = render_comparison(&through, Some(&direct));
    assert!(table.contains("| req/s |"));
    assert!(table.contains(&b.url));
}

#[tokio::test]
async fn unreachable_target_fails_every_request() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let mut c = cfg(&url, true);
    c.warmup = 0;
    c.requests = 5;
    let r = run(&c).await.unwrap();
    assert_eq!((r.requests_ok, r.requests_failed), (0, 5));
    assert_eq!(r.failures.get("connect error"), Some(&5));
    assert_eq!(r.completion_tokens, 0);
}

#[tokio::test]
async fn error_status_and_truncated_stream_are_failures() {
    use axum::routing::post;
    let app = axum::Router::new()
        .route(
            "/bad/v1/chat/completions",
            post(|| async { (axum::http::StatusCode::BAD_GATEWAY, "no") }),
        )
        .route(
            "/cut/v1/chat/completions",
            post(|| async {
                (
                    [("content-type", "text/event-stream")],
                    "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n",
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut c = cfg(&format!("http://{addr}/bad"), true);
    c.warmup = 0;
    c.requests = 3;
    let r = run(&c).await.unwrap();
    assert_eq!(r.failures.get("status 502"), Some(&3));

    c.url = format!("http://{addr}/cut/");
    let r = run(&c).await.unwrap();
    assert_eq!(r.failures.get("stream ended without [DONE]"), Some(&3));
    assert_eq!(r.requests_ok, 0);
    server.abort();
}

#[tokio::test]
async fn total_timeout_bounds_the_run() {
    let m = mock(MockConfig {
        completion_tokens: 10_000,
        token_delay: Duration::from_millis(50),
        ..MockConfig::default()
    })
    .await;
    let mut c = cfg(&m.url, true);
    c.warmup = 0;
    c.concurrency = 2;
    c.requests = 10;
    c.max_tokens = None;
    c.timeout = Duration::from_millis(300);
    let r = run(&c).await.unwrap();
    assert_eq!(r.requests_ok, 0);
    assert_eq!(r.requests_failed, 10);
    assert_eq!(r.failures.get("timeout"), Some(&2));
    assert_eq!(r.failures.get("not sent before the timeout"), Some(&8));
}

#[tokio::test]
async fn config_is_checked() {
    let base = cfg("http://127.0.0.1:1", true);
    for (mutate, want) in [
        (
            Box::new(|c: &mut BenchConfig| c.url = "http://10.0.0.1:80".into())
                as Box<dyn Fn(&mut BenchConfig)>,
            "loopback",
        ),
        (
            Box::new(|c| c.url = "http://example.com".into()),
            "loopback",
        ),
        (Box::new(|c| c.url = "https://127.0.0.1".into()), "http"),
        (Box::new(|c| c.url = "nope".into()), "invalid url"),
        (Box::new(|c| c.concurrency = 0), "concurrency"),
        (Box::new(|c| c.requests = 0), "requests"),
        (Box::new(|c| c.timeout = Duration::ZERO), "timeout"),
    ] {
        let mut c = base.clone();
        mutate(&mut c);
        let e = run(&c).await.unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
    // localhost and [::1] are loopback.
    for url in ["http://localhost:1", "http://[::1]:1"] {
        let mut c = base.clone();
        c.url = url.into();
        assert!(c.check().is_ok(), "{url}");
    }
}

#[test]
fn request_body_shape() {
    let mut c = cfg("http://127.0.0.1:1", true);
    let v: serde_json::Value = serde_json::from_slice(&c.request_body()).unwrap();
    assert_eq!(v["stream"], true);
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(v["max_tokens"], 5);
    assert_eq!(v["messages"][0]["content"], "hello");
    c.stream = false;
    c.max_tokens = None;
    let v: serde_json::Value = serde_json::from_slice(&c.request_body()).unwrap();
    assert_eq!(v["stream"], false);
    assert!(v.get("stream_options").is_none());
    assert!(v.get("max_tokens").is_none());
}
