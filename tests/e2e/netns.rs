//! The network on separate hosts: every node in its own Linux network namespace with its own
//! address in 10.77.0.0/24, made by `scripts/netns/net.sh` (2 proxies, 4 workers each with a
//! mock engine on its namespace's own loopback, 2 clients), linked by veth to a bridge in a
//! namespace of its own. The root namespace is not on that bridge, so the only traffic is
//! between these namespaces; requests are sent by `curl` run inside a client's namespace to the
//! client's HTTP API on that namespace's 127.0.0.1.
//!
//! Needs root and `ip netns`: when `net.sh check` says no (exit 77) the test prints a SKIP line
//! and passes. Namespaces are removed on every exit path of the test (a guard's `Drop`, after
//! its processes are killed); leftovers of a run that was itself killed are removed by the next
//! run (`net.sh gc`: namespaces `cn<PID>-*` whose PID is gone, and what still runs in them).
//!
//! Scenarios, one network, in order (one network keeps the cost at one start-up of 14 processes):
//! 1. every client answers chat completions, spread over the workers;
//! 2. a worker is partitioned (its bridge port set down) with requests in flight: every request
//!    ends by its deadline (no hang), those on other workers are answered, and new requests are
//!    answered by the others;
//! 3. a proxy is killed with -9: in-flight requests end, clients fail over to the other proxy
//!    and keep answering within a bound.
//!
//! Bounds are generous upper limits that tell a hang from a slow machine, not performance claims.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cocoon_client::ClientConfig;
use cocoon_node::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
use cocoon_proxy::{ClientEntry, ProxyConfig};
use cocoon_worker::{EngineKind, WorkerConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{tempdir, Proc, OWNER, SECRET};

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
    dir: tempdir::Dir,
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

    fn spawn(&mut self, node: &str, name: &str, args: &[&str]) {
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

    fn write<T: serde::Serialize>(&self, name: &str, v: &T) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, toml::to_string_pretty(v).expect("toml")).expect("write config");
        path.to_str().expect("utf8").to_string()
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
        let answered = status == 200
            && serde_json::from_str::<Value>(body)
                .is_ok_and(|v| v["object"] == "chat.completion" && v["choices"][0].is_object());
        Outcome {
            status,
            answered,
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
    /// The end of the body.
    tail: String,
    /// curl's exit code (0, 18 partial body, 52 empty reply, 56 receive error, 28 its limit).
    curl: Option<i32>,
    hung: bool,
    took: Duration,
}

fn attestation(e: EvidenceChoice) -> AttestationConfig {
    AttestationConfig::dev(e, PeerPolicyChoice::InsecureSoftware)
}

fn worker_owner(w: &str) -> String {
    format!("netns-worker-{w}")
}

/// Makes the namespaces and starts the 14 processes; `None` when namespaces are not permitted.
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
        dir: tempdir::Dir::new("netns"),
    };
    assert_eq!(net_sh("up", &prefix), 0, "net.sh up failed");

    let proxy = ProxyConfig {
        pow_difficulty: 4,
        handshake_timeout: Duration::from_secs(3),
        clients: vec![ClientEntry {
            owner_address: OWNER.into(),
            secret_sha256: hex::encode(Sha256::digest(SECRET.as_bytes())),
            token_credit: None,
        }],
        attestation: attestation(EvidenceChoice::InsecureSoftware),
        ..ProxyConfig::default()
    };
    for (node, ip) in PROXIES {
        let cfg = ProxyConfig {
            worker_listen: format!("{ip}:{WORKER_PORT}").parse().expect("addr"),
            client_listen: format!("{ip}:{CLIENT_PORT}").parse().expect("addr"),
            stats_listen: format!("127.0.0.1:{STATS_PORT}").parse().expect("addr"),
            ..proxy.clone()
        };
        let path = topo.write(&format!("proxy-{node}.toml"), &cfg);
        topo.spawn(node, node, &["proxy", "--config", &path]);
    }
    for (node, _) in WORKERS {
        let mut w = WorkerConfig {
            proxies: PROXIES
                .iter()
                .map(|(_, ip)| format!("{ip}:{WORKER_PORT}"))
                .collect(),
            owner_address: worker_owner(node),
            model: "mock".into(),
            max_active_requests: 16,
            stats_listen: format!("127.0.0.1:{WORKER_STATS_PORT}")
                .parse()
                .expect("addr"),
            health_interval: Duration::from_millis(500),
            attestation: attestation(EvidenceChoice::InsecureSoftware),
            ..WorkerConfig::default()
        };
        w.engine.kind = EngineKind::Openai;
        w.engine.url = format!("http://127.0.0.1:{ENGINE_PORT}");
        let listen = format!("127.0.0.1:{ENGINE_PORT}");
        let (tokens, delay) = (MOCK_TOKENS.to_string(), MOCK_DELAY_MS.to_string());
        topo.spawn(
            node,
            &format!("engine-{node}"),
            &[
                "mock-engine",
                "--listen",
                &listen,
                "--tokens",
                &tokens,
                "--delay-ms",
                &delay,
            ],
        );
        let path = topo.write(&format!("worker-{node}.toml"), &w);
        topo.spawn(node, node, &["worker", "--config", &path]);
    }
    for node in CLIENTS {
        let cfg = ClientConfig {
            http_listen: format!("127.0.0.1:{HTTP_PORT}").parse().expect("addr"),
            proxies: PROXIES
                .iter()
                .map(|(_, ip)| format!("{ip}:{CLIENT_PORT}"))
                .collect(),
            owner_address: OWNER.into(),
            secret: SECRET.into(),
            attestation: attestation(EvidenceChoice::None),
            ..ClientConfig::default()
        };
        let path = topo.write(&format!("client-{node}.toml"), &cfg);
        topo.spawn(node, node, &["client", "--config", &path]);
    }
    let all = WORKERS.len() * PROXIES.len();
    for c in CLIENTS {
        assert!(
            topo.wait_listed(c, all, Duration::from_secs(60)).await,
            "client {c} does not list {all} workers (4 workers x 2 proxies)"
        );
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

/// Requests a worker has ended (succeeded + failed), summed over both proxies' stats.
async fn ended_on(topo: &Topology, worker: &str) -> u64 {
    let mut n = 0;
    for (p, _) in PROXIES {
        n += topo
            .proxy_workers(p)
            .await
            .iter()
            .filter(|w| w["owner"] == worker_owner(worker))
            .map(|w| w["succeeded"].as_u64().unwrap_or(0) + w["failed"].as_u64().unwrap_or(0))
            .sum::<u64>();
    }
    n
}

/// Requests a worker has in flight, summed over both proxies' stats.
async fn running_on(topo: &Topology, worker: &str) -> u64 {
    let mut n = 0;
    for (p, _) in PROXIES {
        n += topo
            .proxy_workers(p)
            .await
            .iter()
            .filter(|w| w["owner"] == worker_owner(worker))
            .map(|w| w["running"].as_u64().unwrap_or(0))
            .sum::<u64>();
    }
    n
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_multi_host_partition_and_proxy_failover() {
    let Some(topo) = start().await else {
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
}
