//! An [`Engine`] that forwards to an OpenAI-compatible HTTP server (vLLM, SGLang, llama-server,
//! Ollama, or [`crate::mock::server`]).
//!
//! The body is POSTed unchanged to `base_url + endpoint path`, as `application/json` or, for a
//! multipart form, with the request's own `Content-Type` (its boundary included); an engine that
//! does not serve the endpoint answers for itself (vLLM without an audio model: 404), and that
//! answer is passed through like any other. The response head is returned as
//! soon as it arrives and the body is streamed (`bytes_stream()`), never buffered. The request's
//! deadline becomes reqwest's whole-request timeout (head and body). Dropping the body stream
//! drops the reqwest response, which closes the upstream connection: the inference servers
//! treat that as an abort and stop generating (Cocoon had no such path). `health()` is
//! `GET health_path` with a short timeout and requires 200, like Cocoon's uplink monitor.
//!
//! With [`OpenAiConfig::continuous_usage_stats`] a streaming body also asks for usage with every
//! chunk (vLLM's `stream_options.continuous_usage_stats`), so the worker's progress reports
//! carry the engine's own counts while the answer streams.
//!
//! Proxies from the environment are ignored (`no_proxy`): the engine is a local peer and must
//! not be redirected by an inherited `HTTP_PROXY`. `TCP_NODELAY` is on.

use std::time::Duration;

use futures::StreamExt;

use crate::engine::{is_hop_by_hop_header, Engine, EngineError, EngineRequest, EngineResponse};

/// Settings for [`OpenAiEngine`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAiConfig {
    /// Base URL without a trailing path. Default: `http://127.0.0.1:8000` (Cocoon's engine port).
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` when set. Default: none.
    pub api_key: Option<String>,
    /// TCP connect timeout. Default: 5 s.
    pub connect_timeout: Duration,
    /// Path probed by `health()`. Default: `/v1/models`.
    pub health_path: String,
    /// Whole-probe timeout of `health()`. Default: 10 s (Cocoon's uplink monitor).
    pub health_timeout: Duration,
    /// Most idle keep-alive connections kept to the engine. Default: 100 (Cocoon's pool size).
    pub max_idle_connections: usize,
    /// Ask for usage with every streamed chunk (`stream_options.continuous_usage_stats`, see
    /// [`crate::validate::request_continuous_usage`]): vLLM accepts it; servers that refuse
    /// unknown fields would answer 400. Default: false.
    pub continuous_usage_stats: bool,
}

/// The OpenAI-compatible upstream adapter; cheap to clone (shares the connection pool).
#[derive(Clone, Debug)]
pub struct OpenAiEngine {
    cfg: OpenAiConfig,
    base: String,
    client: reqwest::Client,
}

// === impl OpenAiConfig ===

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8000".to_owned(),
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            health_path: "/v1/models".to_owned(),
            health_timeout: Duration::from_secs(10),
            max_idle_connections: 100,
            continuous_usage_stats: false,
        }
    }
}

// === impl OpenAiEngine ===

impl OpenAiEngine {
    /// Builds the adapter; fails if the base URL is not an `http(s)` URL or the HTTP client
    /// cannot be built.
    pub fn new(cfg: OpenAiConfig) -> Result<Self, EngineError> {
        let base = cfg.base_url.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| EngineError::Config(format!("invalid base_url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EngineError::Config("base_url must be http(s)".into()));
        }
        // reqwest is built without a default TLS provider (the workspace enables `rustls-no-provider`
        // for HTTPS to PCCS and TON APIs with ring); install ring once per process. Idempotent.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .no_proxy()
            .pool_max_idle_per_host(cfg.max_idle_connections)
            .build()
            .map_err(|e| EngineError::Config(format!("http client: {e}")))?;
        Ok(Self { cfg, base, client })
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    fn authorize(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cfg.api_key {
            Some(key) => rb.bearer_auth(key),
            None => rb,
        }
    }
}

fn classify(e: reqwest::Error) -> EngineError {
    if e.is_timeout() {
        EngineError::Timeout
    } else if e.is_connect() {
        EngineError::Unreachable(Box::new(e))
    } else {
        EngineError::Transport(Box::new(e))
    }
}

#[async_trait::async_trait]
impl Engine for OpenAiEngine {
    async fn start(&self, req: EngineRequest) -> Result<EngineResponse, EngineError> {
        let remaining = req
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Err(EngineError::Timeout);
        }
        let url = format!("{}{}", self.base, req.endpoint.path());
        let content_type = req.content_type.as_deref().unwrap_or("application/json");
        // Continuous usage is a JSON option (`stream_options`): a form goes as it is.
        let body = if self.cfg.continuous_usage_stats && req.content_type.is_none() {
            crate::validate::request_continuous_usage(&req.body).unwrap_or(req.body)
        } else {
            req.body
        };
        let rb = self
            .client
            .post(url)
            .timeout(remaining)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header("x-request-id", req.request_id.as_str())
            .body(body);
        let resp = self.authorize(rb).send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter(|(k, _)| !is_hop_by_hop_header(k.as_str()))
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        tracing::debug!(request_id = %req.request_id, status, "engine response head");
        Ok(EngineResponse {
            status,
            headers,
            body: resp.bytes_stream().map(|r| r.map_err(classify)).boxed(),
        })
    }

    async fn health(&self) -> Result<(), EngineError> {
        let url = format!("{}{}", self.base, self.cfg.health_path);
        let rb = self.client.get(url).timeout(self.cfg.health_timeout);
        let resp = self.authorize(rb).send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        if status == 200 {
            Ok(())
        } else {
            Err(EngineError::UnhealthyStatus { status })
        }
    }
}

#[cfg(test)]
mod tests;
