//! `cocoon bench`: a small load generator for OpenAI-compatible chat endpoints.
//!
//! It POSTs `/v1/chat/completions` with a fixed prompt from `concurrency` workers until
//! `requests` have been sent, over a keep-alive pool sized to the concurrency with
//! `TCP_NODELAY`, and measures per request: latency (send to last byte), TTFT (time to the first
//! chunk carrying content; for non-streamed requests, the whole latency), inter-chunk gaps
//! (ITL, between consecutive content chunks as they arrive), and completion tokens
//! (`usage.completion_tokens`, else the number of content chunks). Streams are parsed with the
//! engine crate's [`SseParser`](cocoon_engine::sse::SseParser); a stream must end with
//! `data: [DONE]` to count as successful.
//!
//! Bounds: a fixed request count, a total `timeout` for the measured phase (requests not sent
//! in time count as failed, so `ok + failed == requests`), a cap on each response body, and
//! loopback targets only (this is a measuring tool, not a traffic generator for other hosts).
//!
//! [`render_comparison`] prints a markdown table of a run through the network against a run
//! straight at the engine (`--compare DIRECT_URL`), with ratios: the format used in
//! docs/BENCHMARKS.md. Timings are never asserted in tests; only counts are.
//!
//! Layout: `measure` runs one request, `stats` turns samples into percentiles,
//! `render` formats reports.

mod measure;
mod render;
mod stats;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use render::render_comparison;
pub use stats::Percentiles;

use measure::{Failure, Sample};
use stats::Samples;

/// Largest response body read per request.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Longest SSE line accepted from the target.
pub const MAX_SSE_LINE: usize = 1 << 20;
/// Most concurrent workers. Each holds one connection, so the process's descriptor limit
/// (`ulimit -n`) is the practical bound below this one.
pub const MAX_CONCURRENCY: usize = 65_536;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchConfig {
    /// Base URL of the target (loopback only), e.g. `http://127.0.0.1:10000`.
    pub url: String,
    /// `model` sent in each request. Default: `"mock"`.
    pub model: String,
    /// Requests in flight at once (1..=4096). Default: 1.
    pub concurrency: usize,
    /// Measured requests. Default: 100.
    pub requests: usize,
    /// Request SSE streaming (`stream: true` with `include_usage`). Default: true.
    pub stream: bool,
    /// `max_tokens` sent, if any. Default: none.
    pub max_tokens: Option<u32>,
    /// The user message. Default: `"Say hello."`.
    pub prompt: String,
    /// Bound on the measured phase (and on each request). Default: 60 s.
    pub timeout: Duration,
    /// Unmeasured requests sent first (same concurrency) to warm pools and caches. Default: 0.
    pub warmup: usize,
}

/// The outcome of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// The target base URL.
    pub url: String,
    /// Requests that completed with 200 and a complete body.
    pub requests_ok: usize,
    /// Requests that failed or were not sent before the timeout.
    pub requests_failed: usize,
    /// Failure counts by reason (`status 500`, `timeout`, `not sent`, ...).
    pub failures: BTreeMap<String, usize>,
    /// Wall time of the measured phase.
    pub elapsed: Duration,
    /// Successful requests per second.
    pub req_per_s: f64,
    /// Request latency (send to last byte), successful requests.
    pub latency: Percentiles,
    /// Time to the first content chunk, successful requests.
    pub ttft: Percentiles,
    /// Gaps between consecutive content chunks, all successful streamed requests.
    pub itl: Percentiles,
    /// Completion tokens per second over the measured phase.
    pub tokens_per_s: f64,
    /// Completion tokens over successful requests.
    pub completion_tokens: u64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The URL does not parse or is not http.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// The URL's host is not a loopback address or `localhost`.
    #[error("refusing non-loopback target {0} (bench targets loopback only)")]
    NotLoopback(String),
    /// A setting is out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(&'static str),
    /// The HTTP client could not be built.
    #[error("http client")]
    Client(#[source] reqwest::Error),
    /// A worker task died (a bug).
    #[error("bench worker failed: {0}")]
    Worker(String),
}

// === impl BenchConfig ===

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:10000".to_owned(),
            model: "mock".to_owned(),
            concurrency: 1,
            requests: 100,
            stream: true,
            max_tokens: None,
            prompt: "Say hello.".to_owned(),
            timeout: Duration::from_secs(60),
            warmup: 0,
        }
    }
}

impl BenchConfig {
    fn check(&self) -> Result<String, BenchError> {
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(BenchError::InvalidConfig("concurrency must be 1..=65536"));
        }
        if self.requests == 0 {
            return Err(BenchError::InvalidConfig("requests must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(BenchError::InvalidConfig("timeout must be positive"));
        }
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| BenchError::InvalidUrl(format!("{}: {e}", self.url)))?;
        if url.scheme() != "http" {
            return Err(BenchError::InvalidUrl(format!(
                "{}: only http:// is supported",
                self.url
            )));
        }
        // IPv6 hosts come bracketed (`[::1]`).
        let host = url.host_str().unwrap_or("");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(BenchError::NotLoopback(self.url.clone()));
        }
        Ok(format!(
            "{}/v1/chat/completions",
            self.url.trim_end_matches('/')
        ))
    }

    fn request_body(&self) -> Bytes {
        let mut body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": self.prompt}],
            "stream": self.stream,
        });
        if self.stream {
            body["stream_options"] = serde_json::json!({"include_usage": true});
        }
        if let Some(m) = self.max_tokens {
            body["max_tokens"] = m.into();
        }
        Bytes::from(body.to_string())
    }
}

/// Runs the benchmark described by `cfg`.
pub async fn run(cfg: &BenchConfig) -> Result<BenchReport, BenchError> {
    let endpoint = cfg.check()?;
    // reqwest is built without a default TLS provider (the workspace enables `rustls-no-provider`
    // for HTTPS to PCCS and TON APIs with ring); install ring once per process. Idempotent.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .pool_max_idle_per_host(cfg.concurrency)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(BenchError::Client)?;
    let job = Arc::new(Job {
        client,
        endpoint,
        body: cfg.request_body(),
        stream: cfg.stream,
    });

    if cfg.warmup > 0 {
        let deadline = Instant::now() + cfg.timeout;
        let _ = phase(&job, cfg.concurrency, cfg.warmup, deadline).await?;
    }

    let started = Instant::now();
    let outcomes = phase(&job, cfg.concurrency, cfg.requests, started + cfg.timeout).await?;
    let elapsed = started.elapsed();

    let mut samples = Samples::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut ok = 0;
    let mut tokens = 0u64;
    for outcome in &outcomes {
        match outcome {
            Ok(s) => {
                ok += 1;
                tokens = tokens.saturating_add(s.completion_tokens);
                samples.add(s);
            }
            Err(f) => *failures.entry(f.to_string()).or_default() += 1,
        }
    }
    let not_sent = cfg.requests.saturating_sub(outcomes.len());
    if not_sent > 0 {
        *failures.entry(Failure::NotSent.to_string()).or_default() += not_sent;
    }
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    tracing::info!(url = %cfg.url, ok, failed = cfg.requests - ok, ?elapsed, "bench finished");
    Ok(BenchReport {
        url: cfg.url.clone(),
        requests_ok: ok,
        requests_failed: cfg.requests - ok,
        failures,
        elapsed,
        req_per_s: ok as f64 / secs,
        latency: samples.latency.percentiles(),
        ttft: samples.ttft.percentiles(),
        itl: samples.itl.percentiles(),
        tokens_per_s: tokens as f64 / secs,
        completion_tokens: tokens,
    })
}

/// Runs `cfg` against its URL, then the same load against `direct_url` (the engine without
/// the network in between), for [`render_comparison`].
pub async fn run_comparison(
    cfg: &BenchConfig,
    direct_url: &str,
) -> Result<(BenchReport, BenchReport), BenchError> {
    let through = run(cfg).await?;
    let direct_cfg = BenchConfig {
        url: direct_url.to_owned(),
        ..cfg.clone()
    };
    let direct = run(&direct_cfg).await?;
    Ok((through, direct))
}

/// Shared by all workers of a run.
struct Job {
    client: reqwest::Client,
    endpoint: String,
    body: Bytes,
    stream: bool,
}

/// Sends `count` requests from `concurrency` workers, stopping at `deadline`. Returns one
/// outcome per request actually sent.
async fn phase(
    job: &Arc<Job>,
    concurrency: usize,
    count: usize,
    deadline: Instant,
) -> Result<Vec<Result<Sample, Failure>>, BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    // The set owns the workers: returning early (or being dropped) aborts them.
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let job = job.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                if Instant::now() >= deadline {
                    break;
                }
                let outcome = tokio::time::timeout_at(deadline, measure::one(&job, deadline))
                    .await
                    .unwrap_or(Err(Failure::Timeout));
                out.push(outcome);
            }
            out
        });
    }
    let mut outcomes = Vec::with_capacity(count);
    while let Some(done) = workers.join_next().await {
        outcomes.extend(done.map_err(|e| BenchError::Worker(e.to_string()))?);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests;
