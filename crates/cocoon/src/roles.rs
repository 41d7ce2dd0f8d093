//! The role subcommands: find and load the config, apply flag overrides, run the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use cocoon_client::ClientConfig;
use cocoon_key_manager::KeyManagerConfig;
use cocoon_proxy::ProxyConfig;
use cocoon_worker::{EngineKind, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// Options every role shares.
#[derive(Args, Clone)]
pub struct CommonArgs {
    /// Config file (TOML). Every key is optional; see docs/CONFIGURATION.md.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data dir of a `cocoon dev` network: use that network's config for this role.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Log at debug level (RUST_LOG overrides).
    #[arg(long, short)]
    pub verbose: bool,
}

fn load<T: serde::de::DeserializeOwned + Default>(path: Option<PathBuf>) -> Result<T> {
    match path {
        Some(p) => Ok(cocoon_node::config::load_toml(&p)?),
        None => Ok(T::default()),
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ClientArgs {
    /// Money and account commands; without one, the client runs.
    #[command(subcommand)]
    pub action: Option<crate::client_cmds::ClientAction>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Override `http_listen`.
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Override `proxies` (repeatable).
    #[arg(long = "proxy")]
    pub proxies: Vec<String>,
}

pub async fn client(a: ClientArgs, shutdown: CancellationToken) -> Result<()> {
    let path = crate::config_path(&a.common.config, &a.common.data_dir, "client.toml");
    let mut cfg: ClientConfig = load(path)?;
    if let Some(l) = a.http_listen {
        cfg.http_listen = l;
    }
    if !a.proxies.is_empty() {
        cfg.proxies = a.proxies;
    }
    cocoon_client::run(cfg, shutdown).await.context("client")
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProxyArgs {
    /// Status and ledger commands; without one, the proxy runs.
    #[command(subcommand)]
    pub action: Option<crate::proxy_cmds::ProxyAction>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Override `worker_listen`.
    #[arg(long)]
    pub worker_listen: Option<SocketAddr>,
    /// Override `client_listen`.
    #[arg(long)]
    pub client_listen: Option<SocketAddr>,
    /// Override `stats_listen`.
    #[arg(long)]
    pub stats_listen: Option<SocketAddr>,
}

pub async fn proxy(a: ProxyArgs, shutdown: CancellationToken) -> Result<()> {
    let path = crate::config_path(&a.common.config, &a.common.data_dir, "proxy.toml");
    let mut cfg: ProxyConfig = load(path)?;
    if let Some(l) = a.worker_listen {
        cfg.worker_listen = l;
    }
    if let Some(l) = a.client_listen {
        cfg.client_listen = l;
    }
    if let Some(l) = a.stats_listen {
        cfg.stats_listen = l;
    }
    loop {
        match cocoon_proxy::run(cfg.clone(), shutdown.clone()).await {
            // The root's params changed: start again under the new proxy contract (the old
            // one is wound down by the new run).
            Err(cocoon_proxy::ProxyError::ParamsChanged) if !shutdown.is_cancelled() => {
                tracing::info!("restarting the proxy under the root's new params");
            }
            r => return r.context("proxy"),
        }
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WorkerArgs {
    /// Earnings commands; without one, the worker runs.
    #[command(subcommand)]
    pub action: Option<crate::worker_cmds::WorkerAction>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// With `--data-dir`: which of the dev network's workers (worker-N.toml).
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Override the engine: `mock` or `openai`.
    #[arg(long)]
    pub engine: Option<String>,
    /// Override the OpenAI-compatible upstream URL (implies `--engine openai`).
    #[arg(long)]
    pub engine_url: Option<String>,
    /// Override the advertised model name.
    #[arg(long)]
    pub model: Option<String>,
    /// Override the price coefficient (1000 = 1.0×).
    #[arg(long)]
    pub coefficient: Option<u32>,
    /// Override `stats_listen`.
    #[arg(long)]
    pub stats_listen: Option<SocketAddr>,
    /// Override `proxies` (repeatable).
    #[arg(long = "proxy")]
    pub proxies: Vec<String>,
}

pub async fn worker(a: WorkerArgs, shutdown: CancellationToken) -> Result<()> {
    let file = format!("worker-{}.toml", a.index);
    let path = crate::config_path(&a.common.config, &a.common.data_dir, &file);
    let mut cfg: WorkerConfig = load(path)?;
    if let Some(e) = a.engine.as_deref() {
        cfg.engine.kind = match e {
            "mock" => EngineKind::Mock,
            "openai" => EngineKind::Openai,
            other => bail!("unknown engine {other:?}; expected mock or openai"),
        };
    }
    if let Some(u) = a.engine_url {
        cfg.engine.kind = EngineKind::Openai;
        cfg.engine.url = u;
    }
    if let Some(m) = a.model {
        cfg.model = m;
    }
    if let Some(c) = a.coefficient {
        cfg.coefficient = c;
    }
    if let Some(l) = a.stats_listen {
        cfg.stats_listen = l;
    }
    if !a.proxies.is_empty() {
        cfg.proxies = a.proxies;
    }
    cocoon_worker::run(cfg, shutdown).await.context("worker")
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct KeyManagerArgs {
    /// Operator commands; without one, the key manager runs.
    #[command(subcommand)]
    pub action: Option<crate::key_manager_cmds::KeyManagerAction>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Override `rpc_listen`.
    #[arg(long)]
    pub rpc_listen: Option<SocketAddr>,
    /// Override `stats_listen`.
    #[arg(long)]
    pub stats_listen: Option<SocketAddr>,
}

pub async fn key_manager(a: KeyManagerArgs, shutdown: CancellationToken) -> Result<()> {
    let path = crate::config_path(&a.common.config, &a.common.data_dir, "key-manager.toml");
    let mut cfg: KeyManagerConfig = load(path)?;
    if let Some(l) = a.rpc_listen {
        cfg.rpc_listen = l;
    }
    if let Some(l) = a.stats_listen {
        cfg.stats_listen = l;
    }
    cocoon_key_manager::run(cfg, shutdown)
        .await
        .context("key manager")
}

#[derive(Args)]
pub struct MockEngineArgs {
    /// Address to serve on (loopback recommended).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Completion tokens per answer.
    #[arg(long, default_value_t = 16)]
    pub tokens: u32,
    /// Tokens per streamed chunk.
    #[arg(long, default_value_t = 1)]
    pub chunk_tokens: u32,
    /// Delay between chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Model name reported.
    #[arg(long, default_value = "mock")]
    pub model: String,
}

pub async fn mock_engine(a: MockEngineArgs, shutdown: CancellationToken) -> Result<()> {
    let engine = cocoon_engine::mock::MockEngine::new(cocoon_engine::mock::MockConfig {
        completion_tokens: a.tokens,
        chunk_tokens: a.chunk_tokens.max(1),
        token_delay: Duration::from_millis(a.delay_ms),
        model: a.model,
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("bind {}", a.listen))?;
    eprintln!("mock engine serving OpenAI API on http://{}", a.listen);
    cocoon_engine::mock::server::serve_mock(
        listener,
        engine,
        async move { shutdown.cancelled().await },
    )
    .await
    .context("mock engine")
}

#[derive(Args)]
pub struct BenchArgs {
    /// Base URL of the endpoint under test, e.g. http://127.0.0.1:10000.
    #[arg(long, default_value = "http://127.0.0.1:10000")]
    pub url: String,
    /// Model to ask for.
    #[arg(long, default_value = "mock")]
    pub model: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Requests in total (after warm-up).
    #[arg(long, default_value_t = 100)]
    pub requests: usize,
    /// Stream the answers (SSE).
    #[arg(long)]
    pub stream: bool,
    /// Also run the same load directly against this baseline URL and compare.
    #[arg(long)]
    pub compare: Option<String>,
    /// `max_tokens` of each request.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// The prompt sent.
    #[arg(long, default_value = "Say hello.")]
    pub prompt: String,
    /// Warm-up requests, not measured.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Per-run time limit, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

pub async fn bench(a: BenchArgs) -> Result<()> {
    let mk = |url: String| cocoon_bench::BenchConfig {
        url,
        model: a.model.clone(),
        concurrency: a.concurrency.max(1),
        requests: a.requests.max(1),
        stream: a.stream,
        max_tokens: a.max_tokens,
        prompt: a.prompt.clone(),
        timeout: Duration::from_secs(a.timeout_secs),
        warmup: a.warmup,
    };
    // Baseline first, then through the network, in the same process and run.
    let direct = match &a.compare {
        Some(u) => {
            eprintln!(
                "bench: baseline {u} (c={}, n={})",
                a.concurrency, a.requests
            );
            Some(
                cocoon_bench::run(&mk(u.clone()))
                    .await
                    .context("baseline run")?,
            )
        }
        None => None,
    };
    eprintln!("bench: {} (c={}, n={})", a.url, a.concurrency, a.requests);
    let through = cocoon_bench::run(&mk(a.url.clone()))
        .await
        .context("bench run")?;
    println!(
        "{}",
        cocoon_bench::render_comparison(&through, direct.as_ref())
    );
    Ok(())
}
