//! Fixtures of networks that pay on the local chain, shared by the payment tests
//! (tests/e2e/payments.rs, tests/e2e/client_money.rs, tests/e2e/netns.rs): [`DevNet`], a whole
//! `cocoon dev --engine mock` network; [`SplitNet`], one prepared by `cocoon dev --setup-only`
//! whose nodes a test starts and kills one by one; and the on-chain money and ledger checks.
//! Tests do not live here; networks without a chain are tests/e2e/harness.rs's `Net`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cocoon_testkit::{eventually, post_chat};
use cocoon_ton::http::{HttpChain, HttpChainConfig};
use cocoon_ton::{Chain, TonAddress};

use crate::harness::{spawn, Proc};

/// A port offset under which every port `cocoon dev` uses is free now.
fn free_offset() -> u16 {
    for _ in 0..200 {
        let o: u16 = 1000 + rand::random::<u16>() % 8000;
        let ports = [8081, 10000, 11000, 11001, 11002, 12000, 13000, 13001];
        if ports
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", p + o)).is_ok())
        {
            return o;
        }
    }
    panic!("no free port offset");
}

/// A client of the local chain of the dev network at port offset `offset`.
fn chain_client(offset: u16) -> Arc<dyn Chain> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("http://{}", cocoon_devnet::Ports::dev_chain(offset));
    Arc::new(HttpChain::new(HttpChainConfig::new(&url)).expect("chain client"))
}

/// A running `cocoon dev --engine mock` network with payments.
pub struct DevNet {
    pub _proc: Proc,
    pub dir: PathBuf,
    pub offset: u16,
    pub chain: Arc<dyn Chain>,
}

impl DevNet {
    pub async fn start(dir: &Path) -> DevNet {
        let offset = free_offset();
        let data = dir.join("net");
        let proc = spawn(
            dir,
            "dev",
            &[
                "dev",
                "--engine",
                "mock",
                "--workers",
                "1",
                "--mock-delay-ms",
                "0",
                "--pow-difficulty",
                "8",
                "--port-offset",
                &offset.to_string(),
                "--data-dir",
                data.to_str().expect("utf-8 path"),
            ],
        );
        let log = proc.log.clone();
        let ready = eventually(Duration::from_secs(240), || {
            let log = log.clone();
            async move {
                std::fs::read_to_string(&log).is_ok_and(|s| s.contains("Cocoon dev network ready"))
            }
        })
        .await;
        if !ready {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for f in ["proxy", "worker-0", "client", "chain", "chain-setup"] {
                let p = data.join("logs").join(format!("{f}.log"));
                eprintln!(
                    "--- {f}\n{}",
                    std::fs::read_to_string(p).unwrap_or_default()
                );
            }
            panic!("dev network not ready:\n{text}");
        }
        let chain = chain_client(offset);
        DevNet {
            _proc: proc,
            dir: data,
            offset,
            chain,
        }
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", 10000 + self.offset)
    }

    /// `cocoon <args> --data-dir DIR --json`, parsed.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cocoon"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--json")
            .output()
            .expect("run cocoon");
        assert!(
            out.status.success(),
            "cocoon {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "cocoon {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn proxy_status(&self) -> serde_json::Value {
        self.cli_json(&["proxy", "status"])
    }

    pub fn dump_logs(&self) {
        for f in ["key-manager", "proxy", "worker-0", "client"] {
            let p = self.dir.join("logs").join(format!("{f}.log"));
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- {f} (last lines)");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }

    /// Sends one chat completion; returns its adjusted total tokens (coefficient 1.0).
    pub async fn chat(&self, http: &reqwest::Client) -> u64 {
        let body = serde_json::json!({
            "model": "mock",
            "messages": [{"role": "user", "content": "count to three"}],
        });
        let resp = post_chat(http, &self.client_url(), &body).await;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.expect("json");
        assert!(status.is_success(), "chat failed: {status} {v}");
        v["usage"]["total_tokens"].as_u64().expect("usage")
    }
}

/// Balances of `accounts` now, and the fees of their transactions after `since` (per account lt).
pub async fn money(chain: &dyn Chain, accounts: &[TonAddress]) -> (u128, Vec<u64>) {
    let mut total = 0u128;
    let mut lts = Vec::new();
    for a in accounts {
        let st = chain.account_state(a).await.expect("account");
        total += st.balance;
        lts.push(st.last_tx_lt);
    }
    (total, lts)
}

pub async fn fees_since(chain: &dyn Chain, accounts: &[TonAddress], since: &[u64]) -> u128 {
    let mut fees = 0u128;
    for (a, lt) in accounts.iter().zip(since) {
        let txs = chain
            .transactions(a, Some(*lt), 100)
            .await
            .expect("transactions");
        assert!(txs.len() < 100, "too many transactions to sum in one page");
        // A transaction's fee plus what its internal out-messages still carry as forwarding
        // fees (collected on delivery): together, everything the sender paid beyond the values.
        fees += txs
            .iter()
            .map(|t| t.fee + t.out_msgs.iter().map(|m| m.fwd_fee).sum::<u128>())
            .sum::<u128>();
    }
    fees
}

/// A network prepared by `cocoon dev --setup-only` whose nodes the test starts, kills and
/// restarts one by one.
pub struct SplitNet {
    pub dir: PathBuf,
    pub offset: u16,
    pub chain: Arc<dyn Chain>,
    pub procs: Vec<Proc>,
    /// Where the started nodes log.
    pub logs: PathBuf,
}

impl SplitNet {
    pub async fn prepare(tmp: &Path) -> SplitNet {
        Self::prepare_with(tmp, &["--mock-delay-ms", "0"]).await
    }

    /// [`SplitNet::prepare`] with more `cocoon dev` flags (e.g. the mock engine's pace).
    pub async fn prepare_with(tmp: &Path, dev_flags: &[&str]) -> SplitNet {
        let offset = free_offset();
        let dir = tmp.join("net");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cocoon"))
            .args([
                "dev",
                "--setup-only",
                "--engine",
                "mock",
                "--workers",
                "1",
                "--pow-difficulty",
                "8",
                "--port-offset",
                &offset.to_string(),
            ])
            .args(dev_flags)
            .arg("--data-dir")
            .arg(&dir)
            .output()
            .expect("cocoon dev --setup-only");
        assert!(
            out.status.success(),
            "setup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let chain = chain_client(offset);
        let logs = tmp.join("logs");
        std::fs::create_dir_all(&logs).expect("logs dir");
        let mut net = SplitNet {
            dir,
            offset,
            chain,
            procs: Vec::new(),
            logs,
        };
        net.start("chain");
        let c = net.chain.clone();
        assert!(
            eventually(Duration::from_secs(30), || {
                let c = c.clone();
                async move { c.time().await.is_ok() }
            })
            .await,
            "chain did not come up"
        );
        net
    }

    /// Starts (or restarts) a node: `chain`, `proxy`, `worker` or `client`.
    pub fn start(&mut self, role: &str) {
        self.procs.retain(|p| p.name != role);
        let d = self.dir.to_str().expect("utf-8").to_string();
        let listen = format!("127.0.0.1:{}", 8081 + self.offset);
        let chain_dir = self.dir.join("chain").to_str().expect("utf-8").to_string();
        let args: Vec<&str> = match role {
            "chain" => vec!["chain", "--data-dir", &chain_dir, "--listen", &listen],
            "worker" => vec!["worker", "--data-dir", &d, "--index", "0"],
            other => vec![other, "--data-dir", &d],
        };
        let n = std::fs::read_dir(&self.logs)
            .map(|r| r.count())
            .unwrap_or(0);
        let mut p = spawn(&self.logs, &format!("{role}-{n}"), &args);
        p.name = role.to_string();
        self.procs.push(p);
    }

    /// Starts a node under `name` with its own arguments (e.g. a second proxy's `--config`).
    pub fn start_args(&mut self, name: &str, args: &[&str]) {
        self.procs.retain(|p| p.name != name);
        let n = std::fs::read_dir(&self.logs)
            .map(|r| r.count())
            .unwrap_or(0);
        let mut p = spawn(&self.logs, &format!("{name}-{n}"), args);
        p.name = name.to_string();
        self.procs.push(p);
    }

    /// Rewrites the network's config `file` (e.g. `client.toml`) through `edit`.
    pub fn edit_config(&self, file: &str, edit: impl FnOnce(&mut toml::Table)) {
        let path = self.dir.join(file);
        let mut t: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).expect("config")).expect("toml");
        edit(&mut t);
        std::fs::write(&path, toml::to_string(&t).expect("toml")).expect("write config");
    }

    /// The root's registry now.
    pub async fn registry(&self) -> cocoon_onchain::Registry {
        let root: TonAddress = self.root_address().parse().expect("root address");
        cocoon_onchain::Registry::read(self.chain.as_ref(), &root)
            .await
            .expect("root registry")
    }

    /// Starts the proxy, the worker and the client, and waits until the client lists the
    /// worker (panics with the logs otherwise).
    pub async fn start_nodes(&mut self) {
        for r in ["proxy", "worker", "client"] {
            self.start(r);
        }
        if !self.wait_ready().await {
            self.dump_logs();
            panic!("network not ready");
        }
    }

    pub fn kill9(&mut self, role: &str) {
        if let Some(p) = self.procs.iter_mut().find(|p| p.name == role) {
            p.kill9();
        }
        self.procs.retain(|p| p.name != role);
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", 10000 + self.offset)
    }

    /// Waits until the client lists a worker.
    pub async fn wait_ready(&self) -> bool {
        let url = format!("{}/v1/models", self.client_url());
        eventually(Duration::from_secs(90), || {
            let url = url.clone();
            async move {
                let Ok(r) = reqwest::get(&url).await else {
                    return false;
                };
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    return false;
                };
                v["data"].as_array().is_some_and(|m| {
                    m.iter()
                        .any(|m| m["workers"].as_array().is_some_and(|w| !w.is_empty()))
                })
            }
        })
        .await
    }

    /// The local chain's API URL.
    pub fn chain_url(&self) -> String {
        format!("http://127.0.0.1:{}", 8081 + self.offset)
    }

    /// The root contract the dev network deployed (from the client's `[chain]`).
    pub fn root_address(&self) -> String {
        let cfg: toml::Value = toml::from_str(
            &std::fs::read_to_string(self.dir.join("client.toml")).expect("client.toml"),
        )
        .expect("toml");
        cfg["chain"]["root_address"]
            .as_str()
            .expect("root")
            .to_string()
    }

    /// `cocoon root --mnemonic-file <owner> --chain <url> <op> --root <root> <args>`, must succeed.
    pub fn root_op(&self, op: &str, args: &[&str]) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cocoon"))
            .args(["root", "--mnemonic-file"])
            .arg(self.dir.join("owner.mnemonic"))
            .args([
                "--chain",
                &self.chain_url(),
                op,
                "--root",
                &self.root_address(),
            ])
            .args(args)
            .output()
            .expect("cocoon root");
        assert!(
            out.status.success(),
            "cocoon root {op}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_cocoon"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.dir)
            .output()
            .expect("run cocoon")
    }

    pub fn proxy_status(&self) -> Option<serde_json::Value> {
        let out = self.cli(&["proxy", "status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    pub fn dump_logs(&self) {
        let Ok(rd) = std::fs::read_dir(&self.logs) else {
            return;
        };
        for e in rd.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            eprintln!("--- {}", e.path().display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Whether a proxy's payments section (`/jsonstats`, `cocoon proxy status`) says its ledger
/// equals the chain: not halted, every client's tokens charged on chain and every worker's
/// paid.
pub fn ledger_equals_chain(payments: &serde_json::Value) -> bool {
    let all = |list: &str, onchain: &str| {
        payments[list].as_array().is_some_and(|v| {
            v.iter()
                .all(|e| e["tokens_db"].as_u64() == e[onchain].as_u64())
        })
    };
    payments["halted"].is_null()
        && all("clients", "tokens_charged_onchain")
        && all("workers", "tokens_paid_onchain")
}
