//! Starts real `cocoon` processes (proxy, workers, client, mock engine) on 127.0.0.1 with free
//! ports and fast settings, and cleans them up on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cocoon_client::ClientConfig;
use cocoon_node::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
use cocoon_proxy::{ClientEntry, ProxyConfig};
use cocoon_worker::{EngineKind, WorkerConfig};
use sha2::{Digest, Sha256};

pub const SECRET: &str = "e2e-secret";
pub const OWNER: &str = "e2e-client";

/// A free port on 127.0.0.1, never the same twice in this test process (the OS may hand a
/// just-released port out again, and tests run in parallel). Ports are released before the
/// nodes bind them; the nodes' reconnect logic covers the rare steal by another process.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut seen = HANDED_OUT.lock().expect("lock");
        if !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One spawned process, killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
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

pub fn spawn(dir: &Path, name: &str, args: &[&str]) -> Proc {
    spawn_env(dir, name, args, &[])
}

/// [`spawn`] with more environment variables (e.g. libfaketime's, to skew its clock).
pub fn spawn_env(dir: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> Proc {
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

/// Options for a test network.
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
        }
    }
}

/// A running network.
pub struct Net {
    pub dir: tempdir::Dir,
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
    pub opts: NetOpts,
}

pub mod tempdir {
    //! A scratch directory removed on drop (unless the test failed: then it is kept for logs).
    use std::path::{Path, PathBuf};
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new(prefix: &str) -> Self {
            let mut p = std::env::temp_dir();
            p.push(format!(
                "cocoon-e2e-{prefix}-{}-{}",
                std::process::id(),
                super::free_port()
            ));
            std::fs::create_dir_all(&p).expect("tempdir");
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.0);
            } else {
                eprintln!("logs kept in {}", self.0.display());
            }
        }
    }
}

fn dev_att(e: EvidenceChoice, p: PeerPolicyChoice) -> AttestationConfig {
    AttestationConfig::dev(e, p)
}

fn write<T: serde::Serialize>(path: &Path, v: &T) {
    std::fs::write(path, toml::to_string_pretty(v).expect("toml")).expect("write config");
}

impl Net {
    pub fn proxy_config(&self) -> PathBuf {
        self.dir.path().join("proxy.toml")
    }

    /// Starts a network and waits until the client sees every worker.
    pub async fn start(name: &str, opts: NetOpts) -> Net {
        // The workspace's reqwest has no default TLS provider; tests use ring like the binary.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The load tests hold hundreds of connections in this process, as the binary may.
        let _ = cocoon_node::limits::raise_open_files_limit();
        let dir = tempdir::Dir::new(name);
        let (pw, pc, ps, ch) = (free_port(), free_port(), free_port(), free_port());
        let mut proxy_cfg = ProxyConfig {
            worker_listen: local(pw),
            client_listen: local(pc),
            stats_listen: local(ps),
            pow_difficulty: 4,
            allowed_worker_images: opts.allowed_worker_images.clone(),
            handshake_timeout: Duration::from_secs(3),
            clients: std::iter::once(ClientEntry {
                owner_address: OWNER.into(),
                secret_sha256: hex::encode(Sha256::digest(SECRET.as_bytes())),
                token_credit: opts.client_credit,
            })
            .chain(opts.extra_clients.iter().cloned())
            .collect(),
            attestation: dev_att(
                EvidenceChoice::InsecureSoftware,
                PeerPolicyChoice::InsecureSoftware,
            ),
            ..ProxyConfig::default()
        };
        if let Some(edit) = opts.edit_proxy {
            edit(&mut proxy_cfg);
        }
        write(&dir.path().join("proxy.toml"), &proxy_cfg);
        let proxy = spawn(
            dir.path(),
            "proxy",
            &[
                "proxy",
                "--config",
                dir.path().join("proxy.toml").to_str().expect("utf8"),
            ],
        );
        let mut worker_ports = vec![pw];
        let mut client_ports = vec![pc];
        let mut more_proxies = Vec::new();
        for i in 1..opts.proxies.max(1) {
            let (w, c, st) = (free_port(), free_port(), free_port());
            let cfg = ProxyConfig {
                worker_listen: local(w),
                client_listen: local(c),
                stats_listen: local(st),
                ..proxy_cfg.clone()
            };
            let path = dir.path().join(format!("proxy-{i}.toml"));
            write(&path, &cfg);
            let name = format!("proxy-{i}");
            let proc = spawn(
                dir.path(),
                &name,
                &["proxy", "--config", path.to_str().expect("utf8")],
            );
            more_proxies.push((proc, format!("http://127.0.0.1:{st}")));
            worker_ports.push(w);
            client_ports.push(c);
        }

        let mut workers = Vec::new();
        let mut engines = Vec::new();
        let mut worker_stats = Vec::new();
        let mut engine_urls = Vec::new();
        for i in 0..opts.workers {
            let ws = free_port();
            let mut w = WorkerConfig {
                proxies: worker_ports.iter().map(|p| local(*p).to_string()).collect(),
                owner_address: format!("e2e-worker-{i}"),
                model: opts.model.clone(),
                coefficient: opts.worker_coefficients.get(i).copied().unwrap_or(1000),
                max_active_requests: opts.max_active_requests,
                stats_listen: local(ws),
                health_interval: Duration::from_millis(200),
                attestation: dev_att(
                    EvidenceChoice::InsecureSoftware,
                    PeerPolicyChoice::InsecureSoftware,
                ),
                ..WorkerConfig::default()
            };
            if let Some(path) = &opts.llama_model {
                w.engine.kind = EngineKind::Llama;
                w.engine.model_path = Some(path.clone());
                w.engine.slots = 4;
                w.engine.context_size = 4096;
            } else if let Some(url) = &opts.engine_url {
                w.engine.kind = EngineKind::Openai;
                w.engine.url = url.clone();
                engine_urls.push(url.clone());
            } else if opts.external_engine {
                let ep = free_port();
                let url = format!("http://127.0.0.1:{ep}");
                let tokens = opts.mock_tokens.to_string();
                let delay = opts.mock_delay_ms.to_string();
                let listen = local(ep).to_string();
                engines.push(spawn(
                    dir.path(),
                    &format!("engine-{i}"),
                    &[
                        "mock-engine",
                        "--listen",
                        &listen,
                        "--tokens",
                        &tokens,
                        "--delay-ms",
                        &delay,
                    ],
                ));
                w.engine.kind = EngineKind::Openai;
                w.engine.url = url.clone();
                engine_urls.push(url);
            } else {
                w.engine.kind = EngineKind::Mock;
                w.engine.mock_completion_tokens = opts.mock_tokens;
                let delay = opts
                    .worker_delays_ms
                    .get(i)
                    .copied()
                    .unwrap_or(opts.mock_delay_ms);
                w.engine.mock_token_delay = Duration::from_millis(delay);
            }
            let path = dir.path().join(format!("worker-{i}.toml"));
            write(&path, &w);
            workers.push(spawn(
                dir.path(),
                &format!("worker-{i}"),
                &["worker", "--config", path.to_str().expect("utf8")],
            ));
            worker_stats.push(format!("http://127.0.0.1:{ws}"));
        }
        let client_cfg = ClientConfig {
            http_listen: local(ch),
            proxies: client_ports.iter().map(|p| local(*p).to_string()).collect(),
            owner_address: OWNER.into(),
            secret: SECRET.into(),
            attestation: dev_att(EvidenceChoice::None, PeerPolicyChoice::InsecureSoftware),
            ..ClientConfig::default()
        };
        write(&dir.path().join("client.toml"), &client_cfg);
        let client = spawn(
            dir.path(),
            "client",
            &[
                "client",
                "--config",
                dir.path().join("client.toml").to_str().expect("utf8"),
            ],
        );
        let net = Net {
            base: format!("http://127.0.0.1:{ch}"),
            proxy_stats: format!("http://127.0.0.1:{ps}"),
            proxy_worker_port: pw,
            proxy_client_port: pc,
            worker_stats,
            engine_urls,
            proxy,
            more_proxies,
            workers,
            engines,
            client,
            opts,
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

    /// Waits until `/v1/models` lists `n` workers.
    pub async fn wait_workers(&self, n: usize, limit: Duration) {
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = http
                .get(format!("{}/v1/models", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
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
            let http = http.clone();
            let url = format!("{}/v1/chat/completions", self.base);
            async move {
                let r = http.post(url).json(&chat_body(stream)).send().await?;
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
        reqwest::get(url)
            .await
            .expect("GET")
            .json()
            .await
            .expect("json")
    }
}

/// Polls `f` until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub fn chat_body(stream: bool) -> serde_json::Value {
    serde_json::json!({"model": "mock", "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
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
