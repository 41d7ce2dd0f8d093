//! Starts real `cocoon` processes (key manager, proxy, workers, client, mock engine) on
//! 127.0.0.1 with free ports and fast settings, and cleans them up on drop: [`Net::builder`] configures a network
//! through the same [`NetworkPlan`] as `cocoon dev` (crates/cocoon/src/devnet.rs) and starts it.
//! Generic fixtures (temp dirs, free ports, `eventually`, `post_chat`) live in crates/testkit;
//! what is here is about running `cocoon` processes and reading their books.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cocoon_devnet::{NetworkPlan, PlannedClient, Ports, Purpose};
use cocoon_key_manager::KeyManagerConfig;
use cocoon_proxy::{ClientEntry, ProxyConfig};
use cocoon_testkit::{chat_body, chat_request, eventually, free_port, TempDir};
use cocoon_worker::{EngineConfig, EngineKind, WorkerConfig};

pub const SECRET: &str = "e2e-secret";
pub const OWNER: &str = "e2e-client";

/// One spawned process, killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// The process id (e.g. to read `/proc/<pid>/…`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn<S: AsRef<OsStr>>(dir: &Path, name: &str, args: &[S]) -> Proc {
    spawn_env(dir, name, args, &[])
}

/// [`spawn`] with more environment variables (e.g. libfaketime's, to skew its clock).
pub fn spawn_env<S: AsRef<OsStr>>(
    dir: &Path,
    name: &str,
    args: &[S],
    env: &[(String, String)],
) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn cocoon");
    Proc {
        name: name.into(),
        child,
        log,
    }
}

/// The arguments of a `cocoon mock-engine` on 127.0.0.1:`port` answering `tokens` tokens, one
/// every `delay_ms`.
pub fn mock_engine_args(port: u16, tokens: u32, delay_ms: u64) -> [String; 7] {
    [
        "mock-engine".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--tokens".into(),
        tokens.to_string(),
        "--delay-ms".into(),
        delay_ms.to_string(),
    ]
}

/// A change a test makes to every worker's config.
pub type EditWorker = std::sync::Arc<dyn Fn(&mut WorkerConfig) + Send + Sync>;

/// Options of a test network, as [`Net::builder`] set them.
#[derive(Clone)]
pub struct NetOpts {
    pub workers: usize,
    pub worker_coefficients: Vec<u32>,
    pub mock_tokens: u32,
    pub mock_delay_ms: u64,
    /// Per-worker mock delay per token (ms), overriding `mock_delay_ms` for the first workers.
    pub worker_delays_ms: Vec<u64>,
    /// Point every worker at this OpenAI-compatible URL (a test's own fake engine).
    pub engine_url: Option<String>,
    /// Use an external `cocoon mock-engine` (per worker) instead of the in-process mock.
    pub external_engine: bool,
    pub client_credit: Option<u64>,
    pub max_active_requests: u32,
    /// Model name the workers advertise.
    pub model: String,
    /// More clients the proxy knows (e.g. the reference client of the captures).
    pub extra_clients: Vec<ClientEntry>,
    /// Number of proxies; every worker and the client connect to all of them.
    pub proxies: usize,
    /// The proxy's `allowed_worker_images`.
    pub allowed_worker_images: Vec<String>,
    /// Workers to wait for at start (default: all).
    pub expect_workers: Option<usize>,
    /// Serve this GGUF with the embedded llama.cpp engine instead of the mock.
    pub llama_model: Option<PathBuf>,
    /// Changes to the proxies' config beyond these options (e.g. a hostile-peer test's limits).
    pub edit_proxy: Option<fn(&mut ProxyConfig)>,
    pub edit_client: Option<fn(&mut cocoon_client::ClientConfig)>,
    /// A change to every worker's config beyond these options (may capture test paths).
    pub edit_worker: Option<EditWorker>,
    /// Start a key manager (serving upstream's test key) and point the proxies at it.
    pub key_manager: bool,
    /// A change to the key manager's config beyond these options.
    pub edit_key_manager: Option<fn(&mut KeyManagerConfig)>,
}

impl Default for NetOpts {
    fn default() -> Self {
        Self {
            workers: 1,
            worker_coefficients: Vec::new(),
            mock_tokens: 8,
            mock_delay_ms: 0,
            worker_delays_ms: Vec::new(),
            engine_url: None,
            external_engine: false,
            client_credit: None,
            max_active_requests: 16,
            model: "mock".into(),
            extra_clients: Vec::new(),
            proxies: 1,
            allowed_worker_images: Vec::new(),
            expect_workers: None,
            llama_model: None,
            edit_proxy: None,
            edit_client: None,
            edit_worker: None,
            key_manager: true,
            edit_key_manager: None,
        }
    }
}

/// The engine a test network's workers serve with.
enum TestEngine<'a> {
    /// The embedded llama.cpp engine serving this GGUF.
    Llama(&'a PathBuf),
    /// A test's own OpenAI-compatible server.
    Url(&'a String),
    /// A `cocoon mock-engine` process per worker.
    External,
    /// The worker's in-process mock.
    Mock,
}

/// Builds a test network: `Net::builder().workers(2).mock_tokens(5).start("name").await`.
#[derive(Clone, Default)]
#[must_use = "a builder does nothing until `start`"]
pub struct NetBuilder {
    opts: NetOpts,
}

impl NetBuilder {
    pub fn workers(mut self, n: usize) -> Self {
        self.opts.workers = n;
        self
    }
    pub fn proxies(mut self, n: usize) -> Self {
        self.opts.proxies = n;
        self
    }
    /// Worker `i`'s price coefficient (default 1000 each).
    pub fn worker_coefficients(mut self, c: Vec<u32>) -> Self {
        self.opts.worker_coefficients = c;
        self
    }
    pub fn mock_tokens(mut self, n: u32) -> Self {
        self.opts.mock_tokens = n;
        self
    }
    pub fn mock_delay_ms(mut self, ms: u64) -> Self {
        self.opts.mock_delay_ms = ms;
        self
    }
    /// Worker `i`'s mock delay per token, overriding [`NetBuilder::mock_delay_ms`].
    pub fn worker_delays_ms(mut self, ms: Vec<u64>) -> Self {
        self.opts.worker_delays_ms = ms;
        self
    }
    /// Every worker serves through this OpenAI-compatible URL (a test's own fake engine).
    pub fn engine_url(mut self, url: impl Into<String>) -> Self {
        self.opts.engine_url = Some(url.into());
        self
    }
    /// Each worker gets its own `cocoon mock-engine` process.
    pub fn external_engine(mut self) -> Self {
        self.opts.external_engine = true;
        self
    }
    /// Serve this GGUF with the embedded llama.cpp engine.
    pub fn llama_model(mut self, path: PathBuf) -> Self {
        self.opts.llama_model = Some(path);
        self
    }
    pub fn client_credit(mut self, tokens: u64) -> Self {
        self.opts.client_credit = Some(tokens);
        self
    }
    pub fn max_active_requests(mut self, n: u32) -> Self {
        self.opts.max_active_requests = n;
        self
    }
    pub fn model(mut self, name: impl Into<String>) -> Self {
        self.opts.model = name.into();
        self
    }
    /// More clients the proxies know (e.g. the reference client of the captures).
    pub fn extra_clients(mut self, clients: Vec<ClientEntry>) -> Self {
        self.opts.extra_clients = clients;
        self
    }
    pub fn allowed_worker_images(mut self, images: Vec<String>) -> Self {
        self.opts.allowed_worker_images = images;
        self
    }
    /// Workers to wait for at start (default: all).
    pub fn expect_workers(mut self, n: usize) -> Self {
        self.opts.expect_workers = Some(n);
        self
    }
    /// A change to every proxy's config beyond these options.
    pub fn edit_proxy(mut self, edit: fn(&mut ProxyConfig)) -> Self {
        self.opts.edit_proxy = Some(edit);
        self
    }

    /// A change to the client's config beyond these options.
    pub fn edit_client(mut self, edit: fn(&mut cocoon_client::ClientConfig)) -> Self {
        self.opts.edit_client = Some(edit);
        self
    }

    /// No key manager: the proxies hold no network keys (every sealed request is refused).
    pub fn without_key_manager(mut self) -> Self {
        self.opts.key_manager = false;
        self
    }

    /// A change to the key manager's config beyond these options.
    pub fn edit_key_manager(mut self, edit: fn(&mut KeyManagerConfig)) -> Self {
        self.opts.edit_key_manager = Some(edit);
        self
    }

    /// A change to every worker's config beyond these options.
    pub fn edit_worker(mut self, edit: impl Fn(&mut WorkerConfig) + Send + Sync + 'static) -> Self {
        self.opts.edit_worker = Some(std::sync::Arc::new(edit));
        self
    }

    /// Which engine the workers serve with (the first option set, in this order).
    fn engine(&self) -> TestEngine<'_> {
        let o = &self.opts;
        match (&o.llama_model, &o.engine_url) {
            (Some(path), _) => TestEngine::Llama(path),
            (None, Some(url)) => TestEngine::Url(url),
            (None, None) if o.external_engine => TestEngine::External,
            (None, None) => TestEngine::Mock,
        }
    }

    /// The plan of this network (free ports, test purpose); per-worker options are applied to
    /// its configs in [`NetBuilder::start`].
    fn plan(&self) -> NetworkPlan {
        let o = &self.opts;
        let mut engine = EngineConfig::default();
        match self.engine() {
            TestEngine::Llama(path) => {
                engine.kind = EngineKind::Llama;
                engine.model_path = Some(path.clone());
                engine.slots = 4;
                engine.context_size = 4096;
            }
            TestEngine::Url(url) => {
                engine.kind = EngineKind::Openai;
                engine.url = url.clone();
            }
            // Each worker's URL is set once its engine has a port.
            TestEngine::External => engine.kind = EngineKind::Openai,
            TestEngine::Mock => {
                engine.kind = EngineKind::Mock;
                engine.mock_completion_tokens = o.mock_tokens;
                engine.mock_token_delay = Duration::from_millis(o.mock_delay_ms);
            }
        }
        NetworkPlan {
            proxies: o.proxies,
            workers: o.workers,
            model: o.model.clone(),
            engine,
            ports: Ports::Pick(free_port),
            pow_difficulty: 4,
            client: PlannedClient {
                owner: OWNER.into(),
                secret: SECRET.into(),
                token_credit: o.client_credit,
            },
            extra_clients: o.extra_clients.clone(),
            key_manager: o.key_manager,
            purpose: Purpose::Test,
        }
    }

    /// Starts the network and waits until the client sees every worker (or
    /// [`NetBuilder::expect_workers`]).
    pub async fn start(self, name: &str) -> Net {
        // The workspace's reqwest has no default TLS provider; tests use ring like the binary.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The load tests hold hundreds of connections in this process, as the binary may.
        let _ = cocoon_node::limits::raise_open_files_limit();
        let dir = TempDir::new(name);
        let opts = self.opts.clone();
        let mut configs = self.plan().configs();

        // The key manager first: proxies fetch their keys as soon as they start.
        let mut key_manager = None;
        if let Some(km) = configs.key_manager.as_mut() {
            km.data_dir = dir.path().join("key-manager");
            if let Some(edit) = opts.edit_key_manager {
                edit(km);
            }
            let path = write(&dir.path().join("key-manager.toml"), km);
            let proc = spawn(
                dir.path(),
                "key-manager",
                &["key-manager", "--config", &path],
            );
            key_manager = Some((proc, format!("http://{}", km.stats_listen)));
        }

        let mut proxies = Vec::new();
        for (i, cfg) in configs.proxies.iter_mut().enumerate() {
            cfg.allowed_worker_images = opts.allowed_worker_images.clone();
            // The receipt log in the test's directory (the processes run in the crate's).
            cfg.receipts.dir = dir.path().join(&cfg.receipts.dir);
            if let Some(edit) = opts.edit_proxy {
                edit(cfg);
            }
            let name = if i == 0 {
                "proxy".to_string()
            } else {
                format!("proxy-{i}")
            };
            let path = write(&dir.path().join(format!("{name}.toml")), cfg);
            let proc = spawn(dir.path(), &name, &["proxy", "--config", &path]);
            proxies.push((proc, format!("http://{}", cfg.stats_listen)));
        }

        let mut workers = Vec::new();
        let mut engines = Vec::new();
        let mut worker_stats = Vec::new();
        let mut engine_urls = Vec::new();
        for (i, w) in configs.workers.iter_mut().enumerate() {
            w.coefficient = opts.worker_coefficients.get(i).copied().unwrap_or(1000);
            w.max_active_requests = opts.max_active_requests;
            match self.engine() {
                TestEngine::Llama(_) => {}
                TestEngine::Url(url) => engine_urls.push(url.clone()),
                TestEngine::External => {
                    let ep = free_port();
                    let url = format!("http://127.0.0.1:{ep}");
                    let args = mock_engine_args(ep, opts.mock_tokens, opts.mock_delay_ms);
                    engines.push(spawn(dir.path(), &format!("engine-{i}"), &args));
                    w.engine.url = url.clone();
                    engine_urls.push(url);
                }
                TestEngine::Mock => {
                    if let Some(ms) = opts.worker_delays_ms.get(i) {
                        w.engine.mock_token_delay = Duration::from_millis(*ms);
                    }
                }
            }
            if let Some(edit) = &opts.edit_worker {
                edit(w);
            }
            let path = write(&dir.path().join(format!("worker-{i}.toml")), w);
            workers.push(spawn(
                dir.path(),
                &format!("worker-{i}"),
                &["worker", "--config", &path],
            ));
            worker_stats.push(format!("http://{}", w.stats_listen));
        }
        if let Some(edit) = opts.edit_client {
            edit(&mut configs.client);
        }
        let path = write(&dir.path().join("client.toml"), &configs.client);
        let client = spawn(dir.path(), "client", &["client", "--config", &path]);
        let first = &configs.proxies[0];
        let mut proxies = proxies.into_iter();
        let (proxy, proxy_stats) = proxies.next().expect("a network has a proxy");
        let net = Net {
            base: format!("http://{}", configs.client.http_listen),
            proxy_stats,
            proxy_worker_port: first.worker_listen.port(),
            proxy_client_port: first.client_listen.port(),
            worker_stats,
            engine_urls,
            proxy,
            more_proxies: proxies.collect(),
            workers,
            engines,
            client,
            key_manager_stats: key_manager.as_ref().map(|(_, s)| s.clone()),
            key_manager: key_manager.map(|(p, _)| p),
            opts,
            client_token: configs.client.bearer_token.clone(),
            dir,
        };
        // The proxy binds its worker and client ports before it serves stats: once stats
        // answer, peers can connect (waiting for 0 workers alone would not ensure it).
        let stats = net.proxy_stats.clone();
        let up = eventually(Duration::from_secs(30), || {
            let url = format!("{stats}/jsonstats");
            async move {
                reqwest::get(url)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        if !up {
            net.dump_logs();
            panic!("proxy did not come up");
        }
        net.wait_workers(
            net.opts.expect_workers.unwrap_or(net.opts.workers),
            Duration::from_secs(30),
        )
        .await;
        net
    }
}

/// A running network.
pub struct Net {
    pub dir: TempDir,
    pub base: String,
    pub proxy_stats: String,
    pub proxy_worker_port: u16,
    pub proxy_client_port: u16,
    pub worker_stats: Vec<String>,
    pub engine_urls: Vec<String>,
    pub proxy: Proc,
    /// Proxies beyond the first (`NetOpts::proxies`), with their stats URLs.
    pub more_proxies: Vec<(Proc, String)>,
    pub workers: Vec<Proc>,
    pub engines: Vec<Proc>,
    pub client: Proc,
    /// The key manager (unless left out) and its stats URL.
    pub key_manager: Option<Proc>,
    pub key_manager_stats: Option<String>,
    pub opts: NetOpts,
    /// The client's bearer token, when the test set one (sent by [`Net::wait_workers`] and
    /// [`Net::json`] to the client).
    pub client_token: Option<String>,
}

/// Writes `v` as TOML at `path`; returns the path as text (for `--config`).
fn write<T: serde::Serialize>(path: &Path, v: &T) -> String {
    std::fs::write(path, toml::to_string_pretty(v).expect("toml")).expect("write config");
    path.to_str().expect("utf-8 path").to_string()
}

impl Net {
    pub fn proxy_config(&self) -> PathBuf {
        self.dir.path().join("proxy.toml")
    }

    pub fn key_manager_config(&self) -> PathBuf {
        self.dir.path().join("key-manager.toml")
    }

    /// A network to configure and start.
    pub fn builder() -> NetBuilder {
        NetBuilder::default()
    }

    /// Waits until `/v1/models` lists `n` workers.
    pub async fn wait_workers(&self, n: usize, limit: Duration) {
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let mut get = http.get(format!("{}/v1/models", self.base));
            if let Some(t) = &self.client_token {
                get = get.bearer_auth(t);
            }
            if let Ok(r) = get.timeout(Duration::from_secs(2)).send().await {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    let count: usize = v["data"]
                        .as_array()
                        .map(|d| {
                            d.iter()
                                .map(|m| m["workers"].as_array().map_or(0, Vec::len))
                                .sum()
                        })
                        .unwrap_or(0);
                    if count >= n {
                        return;
                    }
                }
            }
            if start.elapsed() > limit {
                self.dump_logs();
                panic!("network not ready with {n} workers within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn dump_logs(&self) {
        for p in [&self.proxy, &self.client]
            .into_iter()
            .chain(self.key_manager.iter())
            .chain(self.workers.iter())
            .chain(self.engines.iter())
        {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: String = text
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("----- {} -----\n{tail}", p.name);
        }
    }

    /// Sends `n` chat completions at once and reads each body whole (dropping a response early
    /// would cancel its request); returns each HTTP status.
    pub async fn chat_wave(&self, n: usize, stream: bool) -> Vec<Result<u16, reqwest::Error>> {
        let http = reqwest::Client::new();
        let futs = (0..n).map(|_| {
            let req = chat_request(&http, &self.base).json(&chat_body(stream));
            async move {
                let r = req.send().await?;
                let status = r.status().as_u16();
                r.text().await.map(|_| status)
            }
        });
        futures::future::join_all(futs).await
    }

    /// The money invariant of a network without a chain, at one proxy (`stats` = its stats
    /// URL), once nothing is running, at the harness's prices (2 and 1 nanoTON a token): see
    /// [`check_books`].
    pub async fn assert_books_balance(&self, stats: &str) {
        let url = format!("{stats}/jsonstats");
        let mut s = self.json(&url).await;
        for _ in 0..50 {
            if s["queries"]["running"].as_u64() == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            s = self.json(&url).await;
        }
        check_books(&s, Some(Prices::HARNESS));
    }

    pub async fn json(&self, url: &str) -> serde_json::Value {
        let mut get = reqwest::Client::new().get(url);
        if let (Some(t), true) = (&self.client_token, url.starts_with(&self.base)) {
            get = get.bearer_auth(t);
        }
        get.send().await.expect("GET").json().await.expect("json")
    }
}

/// Writes a copy of the TOML config `from` at `to`, changed by `edit`; returns `to` as text
/// (for `--config`).
pub fn copy_config(from: &Path, to: &Path, edit: impl FnOnce(&mut toml::Table)) -> String {
    let text = std::fs::read_to_string(from).expect("read config");
    let mut cfg: toml::Table = toml::from_str(&text).expect("config toml");
    edit(&mut cfg);
    std::fs::write(to, toml::to_string(&cfg).expect("toml")).expect("write config");
    to.to_str().expect("utf-8 path").to_string()
}

/// Per-token prices in nanoTON: what a client pays, and what a worker earns.
#[derive(Clone, Copy, Debug)]
pub struct Prices {
    pub client: u64,
    pub worker: u64,
}

impl Prices {
    /// The prices of the networks this harness and `tests/e2e/netns.rs` start (the proxy's
    /// defaults without a chain).
    pub const HARNESS: Prices = Prices {
        client: 2,
        worker: 1,
    };
}

/// The money invariant in one proxy's `/jsonstats` (`s`), which must show nothing running:
/// every request ended exactly once (total = succeeded + failed + rejected); what clients were
/// charged equals what workers earned plus the commission, to the nanoTON; at `prices` (when
/// given), clients paid and workers earned exactly their price per charged token; the clients'
/// usage adds up to the tokens charged. Returns the tokens charged.
pub fn check_books(s: &serde_json::Value, prices: Option<Prices>) -> u64 {
    let n = |v: &serde_json::Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("not a number: {v} in {s}"))
    };
    let q = &s["queries"];
    assert_eq!(n(&q["running"]), 0, "requests still running: {s}");
    assert_eq!(
        n(&q["total"]),
        n(&q["succeeded"]) + n(&q["failed"]) + n(&q["rejected"]),
        "a request did not end exactly once: {s}"
    );
    let tokens = n(&s["tokens_charged"]);
    let m = &s["money_nanoton"];
    let (cost, fee, commission) = (
        n(&m["client_cost"]),
        n(&m["worker_fee"]),
        n(&m["commission"]),
    );
    assert_eq!(
        cost,
        fee + commission,
        "client charge != worker fee + commission: {s}"
    );
    if let Some(p) = prices {
        assert_eq!(
            cost,
            p.client * tokens,
            "clients not charged {} nanoTON a token: {s}",
            p.client
        );
        assert_eq!(
            fee,
            p.worker * tokens,
            "workers not credited {} nanoTON a token: {s}",
            p.worker
        );
    }
    // `charged`, not `used`: a restarted paying proxy's `used` includes its ledger's history.
    let used: u64 = s["clients"]
        .as_array()
        .map(|c| c.iter().map(|c| c["charged"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0);
    assert_eq!(
        used, tokens,
        "clients' charges since start do not add up to the tokens charged: {s}"
    );
    tokens
}
