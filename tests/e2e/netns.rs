//! The network on separate hosts, paying on chain: every node in its own Linux network
//! namespace with its own address in 10.77.0.0/24, made by `scripts/netns/net.sh` (the local TON
//! chain, 2 proxies, 4 workers each with a mock engine on its namespace's own loopback, 2
//! clients), linked by veth to a bridge in a namespace of its own. The root namespace is not on
//! that bridge, so the only traffic is between these namespaces; requests are sent by `curl` run
//! inside a client's namespace to the client's HTTP API on that namespace's 127.0.0.1, and the
//! test reads the chain from a thread that joined a namespace (`in_namespace`).
//!
//! Payments are on: `cocoon dev --setup-only` (run inside the chain's namespace) makes the chain
//! state, the root, and funded wallets for the first proxy, the first client and the 4 workers;
//! the test adds funded wallets for the second proxy and client, and edits the dev configs for
//! the namespaces' addresses.
//!
//! Needs root and `ip netns`: when `net.sh check` says no (exit 77) the test prints a SKIP line
//! and passes. Namespaces are removed on every exit path of the test (a guard's `Drop`, after
//! its processes are killed); leftovers of a run that was itself killed are removed by the next
//! run (`net.sh gc`: namespaces `cn<PID>-*` whose PID is gone, and what still runs in them).
//!
//! Scenarios, one network, in order (one network keeps the cost at one start-up of 15 processes):
//! 1. every client answers chat completions, spread over the workers;
//! 2. a worker is partitioned (its bridge port set down) with requests in flight: every request
//!    ends by its deadline (no hang), those on other workers are answered, and new requests are
//!    answered by the others;
//! 3. a proxy is killed with -9: in-flight requests end, clients fail over to the other proxy
//!    and keep answering within a bound; then it is restarted on its ledger.
//!
//! The money invariant is checked after each phase, once the proxies have settled on chain
//! (`Money`): each proxy's books balance (every request ended once, charge = worker fee +
//! commission, usage adds up); each proxy's ledger equals the chain (every client's tokens
//! charged, every worker's paid); across hosts, what the clients counted equals what the
//! proxies charged (after the kill: at least, and at most one answer more per request the kill
//! cut); and on-chain money is conserved over the phase (Σ balances before = after + fees).
//!
//! Bounds are generous upper limits that tell a hang from a slow machine, not performance claims.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cocoon_testkit::TempDir;
use cocoon_ton::http::{HttpChain, HttpChainConfig};
use cocoon_ton::TonAddress;
use serde_json::Value;

use crate::harness::{check_books, copy_config, mock_engine_args, Proc};
use crate::paying::{fees_since, ledger_equals_chain, money};

/// The chain's node and its API (on every address of its namespace).
const CHAIN: (&str, &str) = ("ch", "10.77.0.5");
const CHAIN_PORT: u16 = 8081;
const PROXIES: [(&str, &str); 2] = [("p0", "10.77.0.11"), ("p1", "10.77.0.12")];
const WORKERS: [(&str, &str); 4] = [
    ("w0", "10.77.0.21"),
    ("w1", "10.77.0.22"),
    ("w2", "10.77.0.23"),
    ("w3", "10.77.0.24"),
];
const CLIENTS: [&str; 2] = ["c0", "c1"];
/// Ports: the same in every namespace (each has its own stack).
const WORKER_PORT: u16 = 11001;
const CLIENT_PORT: u16 = 11002;
const STATS_PORT: u16 = 11000;
const WORKER_STATS_PORT: u16 = 12000;
const ENGINE_PORT: u16 = 8000;
const HTTP_PORT: u16 = 10000;
/// Mock engine: 20 chunks 100 ms apart, so a request is in flight for about 2 s.
const MOCK_TOKENS: u32 = 20;
const MOCK_DELAY_MS: u64 = 100;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/netns/net.sh")
}

/// Runs `net.sh CMD PREFIX`, returning its exit code.
fn net_sh(cmd: &str, prefix: &str) -> i32 {
    Command::new("bash")
        .arg(script())
        .args([cmd, prefix])
        .stdin(Stdio::null())
        .status()
        .map_or(-1, |s| s.code().unwrap_or(-1))
}

/// Owns the namespaces and every process in them: kills the processes, then removes the
/// namespaces, on drop (also while a failed assertion unwinds).
struct Topology {
    procs: Vec<Proc>,
    prefix: String,
    dir: TempDir,
    /// Each worker node and its owner (wallet) address.
    workers: Vec<(&'static str, TonAddress)>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.kill9();
        }
        let _ = net_sh("down", &self.prefix);
        if std::thread::panicking() {
            for p in &self.procs {
                let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                eprintln!("----- {} -----", p.name);
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

impl Topology {
    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    fn spawn<S: AsRef<std::ffi::OsStr>>(&mut self, node: &str, name: &str, args: &[S]) {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        // `ip netns exec` execs the program, so the child is the node itself (kill -9 hits it).
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(node),
                env!("CARGO_BIN_EXE_cocoon"),
            ])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn cocoon in a namespace");
        self.procs.push(Proc {
            name: name.into(),
            child,
            log,
        });
    }

    /// SIGKILL by pid (shared borrow, so requests can run meanwhile); reaped on drop.
    fn kill9(&self, name: &str) {
        let pid = self
            .procs
            .iter()
            .find(|p| p.name == name)
            .expect("known process")
            .child
            .id();
        let ok = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -9 {name} ({pid}) failed");
    }

    /// `ip -n PREFIX-sw link set v-NODE up|down`: the node's only link to the others.
    fn link(&self, node: &str, up: bool) {
        let ok = Command::new("ip")
            .args(["-n", &self.ns("sw"), "link", "set", &format!("v-{node}")])
            .arg(if up { "up" } else { "down" })
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip link set v-{node} failed");
    }

    /// GET a JSON document from 127.0.0.1:PORT inside a node's namespace.
    async fn get_json(&self, node: &str, port: u16, path: &str) -> Option<Value> {
        let out = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.ns(node), "curl", "-sS", "-m", "5"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// One chat completion through a client, with Cocoon's `timeout` (seconds) in the body;
    /// curl's own limit `hang_s` only catches hangs. `answered` means a complete
    /// `chat.completion` came back (a 200 head alone is not enough: the head can be relayed
    /// before the worker is cut off).
    async fn chat(&self, client: &str, timeout_s: f64, hang_s: u64) -> Outcome {
        let body = serde_json::json!({
            "model": "mock", "stream": false, "timeout": timeout_s,
            "messages": [{"role": "user", "content": "hello there"}],
        });
        let started = Instant::now();
        let out = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.ns(client), "curl", "-sS", "-m"])
            .arg(hang_s.to_string())
            .args(["-o", "-", "-w", "\n%{http_code}"])
            .args(["-H", "content-type: application/json", "-d"])
            .arg(body.to_string())
            .arg(format!("http://127.0.0.1:{HTTP_PORT}/v1/chat/completions"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = code.trim().parse().unwrap_or(0);
        let parsed = serde_json::from_str::<Value>(body).unwrap_or(Value::Null);
        let answered = status == 200
            && parsed["object"] == "chat.completion"
            && parsed["choices"][0].is_object();
        Outcome {
            status,
            answered,
            usage: parsed["usage"]["total_tokens"].as_u64().unwrap_or(0),
            tail: body
                .chars()
                .rev()
                .take(160)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect(),
            // curl exits 28 when its own limit hit: the request hung.
            hung: out.status.code() == Some(28),
            curl: out.status.code(),
            took: started.elapsed(),
        }
    }

    /// Worker entries a client's `/v1/models` lists (one per worker per proxy).
    async fn listed_workers(&self, client: &str) -> usize {
        self.get_json(client, HTTP_PORT, "/v1/models")
            .await
            .and_then(|v| {
                v["data"].as_array().map(|d| {
                    d.iter()
                        .map(|m| m["workers"].as_array().map_or(0, Vec::len))
                        .sum()
                })
            })
            .unwrap_or(0)
    }

    async fn wait_listed(&self, client: &str, n: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.listed_workers(client).await >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// `workers[]` of a proxy's stats, by worker owner.
    async fn proxy_workers(&self, proxy: &str) -> Vec<Value> {
        self.get_json(proxy, STATS_PORT, "/jsonstats")
            .await
            .and_then(|v| v["workers"].as_array().cloned())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct Outcome {
    status: u16,
    answered: bool,
    /// `usage.total_tokens` of an answer (0 otherwise).
    usage: u64,
    /// The end of the body.
    tail: String,
    /// curl's exit code (0, 18 partial body, 52 empty reply, 56 receive error, 28 its limit).
    curl: Option<i32>,
    hung: bool,
    took: Duration,
}

/// Runs `make()`'s future on a thread of its own that joined the network namespace `ns` (as
/// `ip netns` names it), with a runtime of its own: how the test, in the root namespace, reaches
/// the chain, which only the namespaces can.
async fn in_namespace<T, F, Fut>(ns: String, make: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("namespace file");
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(make())
    });
    tokio::task::spawn_blocking(move || thread.join().expect("namespace thread"))
        .await
        .expect("join")
}

/// Runs `cocoon ARGS` inside a node's namespace to completion; panics with its output on failure.
fn cocoon_in(topo: &Topology, node: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.ns(node),
            env!("CARGO_BIN_EXE_cocoon"),
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run cocoon in a namespace");
    assert!(
        out.status.success(),
        "cocoon {args:?} in {node} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads a dev config, lets `edit` change it, writes it under `name`; returns its path.
fn edit_config(
    topo: &Topology,
    from: &str,
    name: &str,
    edit: impl FnOnce(&mut toml::Table),
) -> String {
    let from = topo.dir.path().join("dev").join(from);
    copy_config(&from, &topo.dir.path().join(name), |cfg| {
        set_chain(cfg, "api_url", format!("http://{}:{CHAIN_PORT}", CHAIN.1));
        edit(cfg);
    })
}

fn set(cfg: &mut toml::Table, key: &str, v: impl Into<toml::Value>) {
    cfg.insert(key.into(), v.into());
}

fn set_chain(cfg: &mut toml::Table, key: &str, v: impl Into<toml::Value>) {
    if let Some(chain) = cfg.get_mut("chain").and_then(toml::Value::as_table_mut) {
        chain.insert(key.into(), v.into());
    }
}

/// A new wallet in the dev data dir, funded from the local chain's faucet.
fn funded_wallet(topo: &Topology, file: &str) {
    let path = topo.dir.path().join("dev").join(file);
    let path = path.to_str().expect("utf8");
    let chain = format!("http://127.0.0.1:{CHAIN_PORT}");
    cocoon_in(topo, CHAIN.0, &["wallet", "new", "--mnemonic-file", path]);
    cocoon_in(
        topo,
        CHAIN.0,
        &[
            "wallet",
            "faucet",
            "--mnemonic-file",
            path,
            "--chain",
            &chain,
            "--amount",
            "100",
        ],
    );
}

/// Makes the namespaces, the chain state and the 15 processes; `None` when namespaces are not
/// permitted.
async fn start() -> Option<Topology> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Unique per test process: concurrent runs (and CI beside a developer) never share names;
    // `gc` removes what runs killed before their cleanup left behind (their pid is gone).
    let prefix = format!("cn{}", std::process::id());
    match net_sh("check", &prefix) {
        0 => {}
        77 => {
            eprintln!(
                "SKIP netns: network namespaces are not permitted here (needs root and `ip netns`)"
            );
            return None;
        }
        rc => panic!("net.sh check failed with {rc}"),
    }
    if !Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!(
            "SKIP netns: curl is not installed (requests are sent with it inside a namespace)"
        );
        return None;
    }
    let _ = net_sh("gc", &prefix);
    let mut topo = Topology {
        procs: Vec::new(),
        prefix: prefix.clone(),
        dir: TempDir::new("netns"),
        workers: Vec::new(),
    };
    assert_eq!(net_sh("up", &prefix), 0, "net.sh up failed");

    // The chain: its state, root, wallets and dev configs made inside its namespace (so the
    // setup's own chain on 127.0.0.1 is private to it), then served on its address.
    let dev = topo.dir.path().join("dev");
    let engine_url = format!("http://127.0.0.1:{ENGINE_PORT}");
    cocoon_in(
        &topo,
        CHAIN.0,
        &[
            "dev",
            "--setup-only",
            "--engine",
            "openai",
            "--engine-url",
            &engine_url,
            "--model",
            "mock",
            "--workers",
            &WORKERS.len().to_string(),
            "--pow-difficulty",
            "4",
            "--data-dir",
            dev.to_str().expect("utf8"),
        ],
    );
    let chain_dir = dev.join("chain");
    let listen = format!("0.0.0.0:{CHAIN_PORT}");
    topo.spawn(
        CHAIN.0,
        "chain",
        &[
            "chain",
            "--data-dir",
            chain_dir.to_str().expect("utf8"),
            "--listen",
            &listen,
        ],
    );
    let start = Instant::now();
    while topo
        .get_json(CHAIN.0, CHAIN_PORT, "/api/v2/getConsensusBlock")
        .await
        .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the chain did not come up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    funded_wallet(&topo, "proxy-1.mnemonic");
    funded_wallet(&topo, "client-1.mnemonic");

    let worker_addrs: Vec<String> = PROXIES
        .iter()
        .map(|(_, ip)| format!("{ip}:{WORKER_PORT}"))
        .collect();
    let client_addrs: Vec<String> = PROXIES
        .iter()
        .map(|(_, ip)| format!("{ip}:{CLIENT_PORT}"))
        .collect();
    for (i, (node, ip)) in PROXIES.into_iter().enumerate() {
        let files = |f: &str| {
            let f = if i == 0 {
                f.to_string()
            } else {
                f.replace("proxy", "proxy-1")
            };
            dev.join(f).to_str().expect("utf8").to_string()
        };
        let path = edit_config(&topo, "proxy.toml", &format!("proxy-{node}.toml"), |c| {
            set(c, "worker_listen", format!("{ip}:{WORKER_PORT}"));
            set(c, "client_listen", format!("{ip}:{CLIENT_PORT}"));
            set(c, "stats_listen", format!("127.0.0.1:{STATS_PORT}"));
            set(c, "handshake_timeout", "3s");
            // Fewer on-chain markers than the dev network's 2 s: each phase's transactions
            // must fit one page of the chain's API to be summed.
            set(c, "anchor_interval", "4s");
            set(c, "payment_key_file", files("proxy-payment.key"));
            set(c, "ledger_path", files("proxy-ledger.sqlite"));
            let mut receipts = toml::Table::new();
            receipts.insert("dir".into(), files("proxy-receipts").into());
            set(c, "receipts", receipts);
            set_chain(c, "wallet_mnemonic_file", files("proxy.mnemonic"));
        });
        topo.spawn(node, node, &["proxy", "--config", &path]);
    }
    for (i, (node, _)) in WORKERS.into_iter().enumerate() {
        let path = edit_config(
            &topo,
            &format!("worker-{i}.toml"),
            &format!("worker-{node}.toml"),
            |c| {
                set(c, "proxies", worker_addrs.clone());
                set(c, "stats_listen", format!("127.0.0.1:{WORKER_STATS_PORT}"));
                set(c, "max_active_requests", 16);
                set(c, "health_interval", "500ms");
            },
        );
        let args = mock_engine_args(ENGINE_PORT, MOCK_TOKENS, MOCK_DELAY_MS);
        topo.spawn(node, &format!("engine-{node}"), &args);
        topo.spawn(node, node, &["worker", "--config", &path]);
    }
    for (i, node) in CLIENTS.into_iter().enumerate() {
        let path = edit_config(&topo, "client.toml", &format!("client-{node}.toml"), |c| {
            set(c, "http_listen", format!("127.0.0.1:{HTTP_PORT}"));
            set(c, "proxies", client_addrs.clone());
            // Sealed to all four workers: each proxy then chooses among every worker, as for
            // a clear request, which the partition phase's bound (a silent worker gets at most
            // one request per proxy) counts on.
            let privacy = c
                .entry("privacy")
                .or_insert_with(|| toml::Table::new().into());
            if let Some(t) = privacy.as_table_mut() {
                t.insert("recipients".into(), 4.into());
            }
            if i > 0 {
                let wallet = dev.join("client-1.mnemonic");
                set_chain(c, "wallet_mnemonic_file", wallet.to_str().expect("utf8"));
            }
        });
        topo.spawn(node, node, &["client", "--config", &path]);
    }
    let all = WORKERS.len() * PROXIES.len();
    for c in CLIENTS {
        assert!(
            topo.wait_listed(c, all, Duration::from_secs(90)).await,
            "client {c} does not list {all} workers (4 workers x 2 proxies)"
        );
    }
    // Each worker's owner (its wallet), as the proxies' stats name it.
    for (w, _) in WORKERS {
        let s = topo
            .get_json(w, WORKER_STATS_PORT, "/jsonstats")
            .await
            .unwrap_or(Value::Null);
        let owner = s["payments"]["owner"]
            .as_str()
            .and_then(|a| a.parse::<TonAddress>().ok())
            .unwrap_or_else(|| panic!("worker {w} stats name no owner: {s}"));
        topo.workers.push((w, owner));
    }
    // A client answers once its contracts are deployed and it is authorized at a proxy.
    for c in CLIENTS {
        let start = Instant::now();
        while !topo.chat(c, 20.0, 40).await.answered {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "client {c} never answered"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Some(topo)
}

/// `n` requests per client at once; outcomes in client order.
async fn burst(topo: &Topology, n: usize, timeout_s: f64, hang_s: u64) -> Vec<Outcome> {
    let futs = CLIENTS
        .iter()
        .flat_map(|c| (0..n).map(move |_| topo.chat(c, timeout_s, hang_s)));
    futures::future::join_all(futs).await
}

/// Whether a proxy's `workers[]` entry is the worker node `worker`.
fn is_worker(topo: &Topology, entry: &Value, worker: &str) -> bool {
    let owner = entry["owner"]
        .as_str()
        .and_then(|a| a.parse::<TonAddress>().ok());
    topo.workers
        .iter()
        .any(|(w, addr)| *w == worker && owner.as_ref() == Some(addr))
}

/// The sum of the counters `fields` of a worker's entries in both proxies' stats.
async fn worker_count(topo: &Topology, worker: &str, fields: &[&str]) -> u64 {
    let mut n = 0;
    for (p, _) in PROXIES {
        for w in topo.proxy_workers(p).await {
            if is_worker(topo, &w, worker) {
                n += fields
                    .iter()
                    .map(|f| w[*f].as_u64().unwrap_or(0))
                    .sum::<u64>();
            }
        }
    }
    n
}

/// Requests a worker has ended (succeeded + failed), summed over both proxies' stats.
async fn ended_on(topo: &Topology, worker: &str) -> u64 {
    worker_count(topo, worker, &["succeeded", "failed"]).await
}

/// Requests a worker has in flight, summed over both proxies' stats.
async fn running_on(topo: &Topology, worker: &str) -> u64 {
    worker_count(topo, worker, &["running"]).await
}

/// A non-streamed request that was cut off ends as an API error — a 5xx status with a JSON
/// error body, delivered whole (curl exit 0) — never as a 200 with a truncated body.
fn assert_clean_errors(outcomes: &[Outcome], what: &str) {
    for o in outcomes.iter().filter(|o| !o.answered) {
        assert!(
            o.status >= 500 && o.curl == Some(0) && o.tail.contains("\"error\""),
            "{what}: a cut request did not end as a clean 5xx JSON error: {o:?}"
        );
    }
}

fn assert_no_hang(outcomes: &[Outcome], deadline_s: f64, what: &str) {
    for o in outcomes {
        assert!(!o.hung, "{what}: a request hung: {outcomes:?}");
        // Generous: a deadline-bound request must not outlive its deadline by 10 s.
        assert!(
            o.took < Duration::from_secs_f64(deadline_s + 10.0),
            "{what}: a request outlived its {deadline_s} s deadline by far: {outcomes:?}"
        );
    }
}

/// The money on chain at a quiet moment: every account money moves between (both proxies'
/// contracts and wallets, the clients' wallets and contracts, the workers' wallets and
/// contracts), their balances and last transactions.
struct Money {
    accounts: Vec<TonAddress>,
    total: u128,
    lts: Vec<u64>,
}

/// A proxy's `/jsonstats` once nothing runs there and its ledger equals the chain: every
/// client's tokens charged on chain and every worker's paid. Panics after 90 s.
async fn settled_stats(topo: &Topology, proxy: &str) -> Value {
    let start = Instant::now();
    loop {
        let s = topo
            .get_json(proxy, STATS_PORT, "/jsonstats")
            .await
            .unwrap_or(Value::Null);
        if s["queries"]["running"].as_u64() == Some(0) && ledger_equals_chain(&s["payments"]) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{proxy}'s ledger never matched the chain: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The accounts of a proxy's payments section.
fn accounts_of(s: &Value) -> Vec<TonAddress> {
    let p = &s["payments"];
    let parse = |v: &Value| v.as_str().and_then(|a| a.parse::<TonAddress>().ok());
    let mut out: Vec<TonAddress> = [&p["proxy_contract"], &p["wallet"]]
        .into_iter()
        .filter_map(parse)
        .collect();
    for list in ["clients", "workers"] {
        for e in p[list].as_array().into_iter().flatten() {
            out.extend(parse(&e["owner"]));
            out.extend(parse(&e["contract"]));
        }
    }
    out
}

async fn chain_money(
    topo: &Topology,
    accounts: Vec<TonAddress>,
    since: Option<Vec<u64>>,
) -> (u128, Vec<u64>, u128) {
    in_namespace(topo.ns("c0"), move || async move {
        let chain = HttpChain::new(HttpChainConfig::new(&format!(
            "http://{}:{CHAIN_PORT}",
            CHAIN.1
        )))
        .expect("chain client");
        let (total, lts) = money(&chain, &accounts).await;
        let fees = match &since {
            Some(since) => fees_since(&chain, &accounts, since).await,
            None => 0,
        };
        (total, lts, fees)
    })
    .await
}

/// The money invariant once every proxy of `proxies` has settled (see the module doc):
/// books, ledger = chain, and money conserved since `before` (its accounts plus any new ones).
/// `counted` is how the clients' own counts must relate to the tokens charged. Returns the
/// snapshot the next phase is checked against.
async fn money_invariant(
    topo: &Topology,
    proxies: &[&str],
    before: Option<&Money>,
    counted: Counted,
) -> Money {
    let mut accounts: Vec<TonAddress> = before.map(|b| b.accounts.clone()).unwrap_or_default();
    let mut charged = 0;
    for p in proxies {
        let s = settled_stats(topo, p).await;
        check_books(&s, None);
        charged += s["payments"]["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["tokens_db"].as_u64().unwrap_or(0))
            .sum::<u64>();
        for a in accounts_of(&s) {
            if !accounts.contains(&a) {
                accounts.push(a);
            }
        }
    }
    let mut client_count = 0;
    for c in CLIENTS {
        let s = topo
            .get_json(c, HTTP_PORT, "/jsonstats")
            .await
            .unwrap_or(Value::Null);
        client_count += s["tokens"]["total"]
            .as_u64()
            .unwrap_or_else(|| panic!("client {c} stats without tokens: {s}"));
    }
    match counted {
        Counted::Exactly => assert_eq!(
            client_count, charged,
            "the clients counted {client_count} tokens, the proxies' ledgers charged {charged}"
        ),
        Counted::AtMostCutMore(cut_tokens) => assert!(
            client_count <= charged && charged <= client_count + cut_tokens,
            "the clients counted {client_count} tokens, the ledgers charged {charged}: more than the {cut_tokens} tokens of the requests the kill cut"
        ),
    }
    let since = before.map(|b| {
        // Accounts new since the snapshot had no transactions before it.
        let mut lts = b.lts.clone();
        lts.resize(accounts.len(), 0);
        lts
    });
    let (total, lts, fees) = chain_money(topo, accounts.clone(), since).await;
    if let Some(b) = before {
        assert_eq!(
            b.total,
            total + fees,
            "on-chain money not conserved: before {}, after {total}, fees {fees}",
            b.total
        );
    }
    eprintln!(
        "money: {} proxies settled, {charged} tokens charged = on chain, clients counted {client_count}, {} accounts hold {total} nanoTON, fees since the last check {fees}",
        proxies.len(),
        accounts.len()
    );
    Money {
        accounts,
        total,
        lts,
    }
}

/// How the clients' counts must relate to the ledgers' charges.
#[derive(Clone, Copy)]
enum Counted {
    Exactly,
    /// A killed proxy may have made a charge durable whose answer never reached its client:
    /// at most this many tokens more.
    AtMostCutMore(u64),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_multi_host_partition_and_proxy_failover() {
    let Some(mut topo) = start().await else {
        return;
    };

    // 1. Every client answers, and the load reaches more than one worker.
    let first = burst(&topo, 4, 20.0, 40).await;
    assert!(
        first.iter().all(|o| o.answered),
        "baseline requests failed: {first:?}"
    );
    let mut serving = 0;
    for (w, _) in WORKERS {
        if ended_on(&topo, w).await > 0 {
            serving += 1;
        }
    }
    assert!(serving >= 2, "all baseline requests went to one worker");
    eprintln!(
        "baseline: {} answered, {serving} workers served",
        first.len()
    );
    // Every mock answer has the same usage.
    let per_request = first[0].usage;
    assert!(
        per_request > 0 && first.iter().all(|o| o.usage == per_request),
        "answers without the same usage: {first:?}"
    );
    let settled = money_invariant(&topo, &["p0", "p1"], None, Counted::Exactly).await;

    // 2. Partition w3 while requests are in flight. Deadline 6 s; a request is ~2 s of work.
    let deadline = 6.0;
    let before = ended_on(&topo, "w3").await;
    let in_flight = burst(&topo, 6, deadline, 40);
    let partition = async {
        // Wait until w3 has something in flight, then cut its only link.
        let start = Instant::now();
        let mut on_w3 = 0;
        while start.elapsed() < Duration::from_secs(3) && on_w3 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            on_w3 = running_on(&topo, "w3").await;
        }
        topo.link("w3", false);
        on_w3
    };
    let (cut, on_w3) = tokio::join!(in_flight, partition);
    assert_no_hang(&cut, deadline, "in flight at the partition");
    // Every request has ended, so the proxies have settled them: those w3 had are counted.
    let cut_w3 = ended_on(&topo, "w3").await - before;
    let cut_ok = cut.iter().filter(|o| o.answered).count() as u64;
    eprintln!(
        "partition: {on_w3} in flight on w3 when cut, {cut_w3} of {} ended on w3, {cut_ok} answered; took {:?}",
        cut.len(),
        cut.iter().map(|o| o.took.as_millis()).collect::<Vec<_>>()
    );
    if let Some(o) = cut.iter().find(|o| !o.answered) {
        eprintln!("a request cut off with w3 ended with: {o:?}");
    }
    assert_clean_errors(&cut, "cut off with w3");
    assert!(
        cut_ok + cut_w3 >= cut.len() as u64,
        "requests on the connected workers failed: {cut:?}"
    );
    // New requests while w3 stays cut off: the others answer. A proxy whose request to w3 hit
    // its deadline without a word from w3 took w3 out of rotation (and probes it), so at most
    // one more request per proxy can still reach w3 — each ending by its deadline.
    let before = ended_on(&topo, "w3").await;
    let mut during = Vec::new();
    for _ in 0..3 {
        during.extend(burst(&topo, 4, deadline, 40).await);
    }
    assert_no_hang(&during, deadline, "sent during the partition");
    let during_w3 = ended_on(&topo, "w3").await - before;
    let during_ok = during.iter().filter(|o| o.answered).count() as u64;
    eprintln!(
        "partitioned: {during_ok}/{} answered, {during_w3} were sent to w3",
        during.len()
    );
    assert!(
        during_ok + during_w3 >= during.len() as u64,
        "requests on the connected workers failed while w3 was cut off: {during:?}"
    );
    assert!(
        during_w3 <= 2,
        "{during_w3} requests were still sent to the silent w3 (at most one per proxy may be)"
    );
    assert!(
        during_ok * 2 >= during.len() as u64,
        "the three connected workers answered too little"
    );
    // Heal the link: w3 serves again (its TCP connections outlive a short partition).
    topo.link("w3", true);
    let before = ended_on(&topo, "w3").await;
    let healed = async {
        let start = Instant::now();
        let mut rounds = 0;
        while start.elapsed() < Duration::from_secs(30) {
            rounds += 1;
            let round = burst(&topo, 4, 20.0, 40).await;
            if ended_on(&topo, "w3").await > before && round.iter().all(|o| o.answered) {
                return Some((rounds, start.elapsed()));
            }
        }
        None
    };
    let rounds = healed.await;
    assert!(
        rounds.is_some(),
        "w3 did not serve again after its link came back"
    );
    // Slow on purpose to be seen: data queued to w3 waits for TCP's retransmission backoff.
    eprintln!("healed: w3 answered again in (burst round, time after link up) {rounds:?}");
    // A request cut by the partition is charged by no one and counted by no one.
    let settled = money_invariant(&topo, &["p0", "p1"], Some(&settled), Counted::Exactly).await;

    // 3. kill -9 p0 with requests in flight; clients fail over to p1.
    let in_flight = burst(&topo, 4, 20.0, 40);
    let kill = async {
        // Wait until p0 relays something, then kill it.
        let start = Instant::now();
        let mut on_p0 = 0;
        while start.elapsed() < Duration::from_secs(3) && on_p0 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            on_p0 = topo
                .get_json("p0", STATS_PORT, "/jsonstats")
                .await
                .and_then(|s| s["queries"]["running"].as_u64())
                .unwrap_or(0);
        }
        topo.kill9("p0");
        (Instant::now(), on_p0)
    };
    let (cut, (killed_at, on_p0)) = tokio::join!(in_flight, kill);
    assert_no_hang(&cut, 20.0, "in flight at the proxy kill");
    eprintln!(
        "proxy kill: {on_p0} in flight on p0; in-flight outcomes (status, answered) {:?}",
        cut.iter()
            .map(|o| (o.status, o.answered))
            .collect::<Vec<_>>()
    );
    if let Some(o) = cut.iter().find(|o| !o.answered) {
        eprintln!("a request cut by the proxy kill ended with: {o:?}");
    }
    assert_clean_errors(&cut, "cut by the proxy kill");
    let cut_ok = cut.iter().filter(|o| o.answered).count() as u64;
    assert!(
        cut_ok + on_p0 >= cut.len() as u64,
        "requests relayed by the surviving proxy failed: {cut:?}"
    );
    // Both clients at once: the first answer after the kill, then every request is answered.
    let recover = |c: &'static str| {
        let topo = &topo;
        async move {
            let mut first_ok = None;
            let mut tries = Vec::new();
            while killed_at.elapsed() < Duration::from_secs(40) {
                let o = topo.chat(c, 10.0, 20).await;
                tries.push((o.status, o.took.as_millis()));
                assert!(!o.hung, "client {c} hung after the proxy died");
                if o.answered {
                    first_ok = Some(killed_at.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            eprintln!("client {c} after the kill: (status, ms) {tries:?}");
            let first_ok = first_ok.unwrap_or_else(|| panic!("client {c} never recovered"));
            for _ in 0..5 {
                let o = topo.chat(c, 10.0, 20).await;
                assert!(o.answered, "client {c} after failover: {o:?}");
            }
            first_ok
        }
    };
    let recovered = futures::future::join_all(CLIENTS.map(recover)).await;
    eprintln!("proxy kill: first answer after the kill per client {recovered:?}");
    let s = topo
        .get_json("p1", STATS_PORT, "/jsonstats")
        .await
        .expect("p1 stats");
    assert!(
        s["queries"]["succeeded"].as_u64().unwrap_or(0) >= 10,
        "the surviving proxy served too little: {s}"
    );
    // p0 comes back on its ledger; once both proxies settled, nothing was charged twice, the
    // ledgers equal the chain, and money was conserved across the kill. A request p0 made
    // durable but whose answer the kill cut may be charged without the client counting it.
    let p0_config = topo.dir.path().join("proxy-p0.toml");
    topo.spawn(
        "p0",
        "p0-restarted",
        &["proxy", "--config", p0_config.to_str().expect("utf8")],
    );
    let cut_tokens = cut.iter().filter(|o| !o.answered).count() as u64 * per_request;
    money_invariant(
        &topo,
        &["p0", "p1"],
        Some(&settled),
        Counted::AtMostCutMore(cut_tokens),
    )
    .await;
}
