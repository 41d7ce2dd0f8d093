//! The nodes follow the root contract on the local chain without restarts: proxies found in the
//! root (and dropped when they leave it), price multipliers from the root's params, and the
//! stale-root guard (no new work while a node cannot read the root, work again once it can).
//! Real processes on 127.0.0.1 (`cocoon dev --setup-only`, then each node; tests/e2e/paying.rs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cocoon_testkit::{chat_request, eventually, free_port, TempDir};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::paying::SplitNet;

/// GET `url`'s JSON.
async fn json(url: &str) -> Option<Value> {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// One chat completion: its JSON body, or the status and body of the refusal.
async fn chat(http: &reqwest::Client, base: &str) -> Result<Value, (u16, Value)> {
    let resp = chat_request(http, base)
        .json(&serde_json::json!({
            "model": "mock",
            "messages": [{"role": "user", "content": "count to three"}],
        }))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| (0, Value::String(e.to_string())))?;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status == 200 && v["usage"].is_object() {
        Ok(v)
    } else {
        Err((status, v))
    }
}

/// The addresses a node's discovery links to, with readiness (`/jsonstats` `discovery`).
fn links(stats: &Value) -> Vec<(String, bool)> {
    stats["discovery"]["links"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|l| {
                    (
                        l["addr"].as_str().unwrap_or("").to_string(),
                        l["ready"] == true,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn queries(proxy_stats: &Value, what: &str) -> u64 {
    proxy_stats["queries"][what].as_u64().unwrap_or(0)
}

/// A proxy's registered description: its worker and client ports on 127.0.0.1.
fn description(workers: u16, clients: u16) -> String {
    format!("127.0.0.1:{workers} 127.0.0.1:{clients}")
}

/// Puts `[proxy_discovery] source = "root"` (and no static list) into a client or worker config.
fn discover_from_root(links: i64) -> impl Fn(&mut toml::Table) {
    move |t: &mut toml::Table| {
        t.insert("proxies".into(), toml::Value::Array(Vec::new()));
        let mut d = toml::Table::new();
        d.insert("source".into(), "root".into());
        d.insert("links".into(), toml::Value::Integer(links));
        d.insert("replace_unready_after".into(), "5s".into());
        t.insert("proxy_discovery".into(), d.into());
    }
}

/// `cocoon <args>`, must succeed.
fn cocoon(args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(args)
        .output()
        .expect("run cocoon");
    assert!(
        out.status.success(),
        "cocoon {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A second proxy for the network: its own wallet (funded), payment key, ledger and ports.
/// Returns (config path, worker port, client port, stats port).
fn second_proxy(net: &SplitNet) -> (String, u16, u16, u16) {
    let (w, c, s) = (free_port(), free_port(), free_port());
    let wallet = net.dir.join("proxy-1.mnemonic");
    let wallet_s = wallet.to_str().expect("utf-8").to_string();
    cocoon(&["wallet", "new", "--mnemonic-file", &wallet_s]);
    cocoon(&[
        "wallet",
        "faucet",
        "--mnemonic-file",
        &wallet_s,
        "--chain",
        &net.chain_url(),
        "--amount",
        "100",
    ]);
    std::fs::copy(net.dir.join("proxy.toml"), net.dir.join("proxy-1.toml")).expect("copy");
    let dir = net.dir.clone();
    net.edit_config("proxy-1.toml", |t| {
        let at = |p: u16| toml::Value::String(format!("127.0.0.1:{p}"));
        t.insert("worker_listen".into(), at(w));
        t.insert("client_listen".into(), at(c));
        t.insert("stats_listen".into(), at(s));
        let file = |n: &str| toml::Value::String(dir.join(n).to_str().expect("utf-8").into());
        t.insert("payment_key_file".into(), file("proxy-1-payment.key"));
        t.insert("ledger_path".into(), file("proxy-1-ledger.sqlite"));
        let mut receipts = toml::map::Map::new();
        receipts.insert("dir".into(), file("proxy-1-receipts"));
        t.insert("receipts".into(), toml::Value::Table(receipts));
        if let Some(toml::Value::Table(chain)) = t.get_mut("chain") {
            chain.insert("wallet_mnemonic_file".into(), file("proxy-1.mnemonic"));
        }
    });
    let path = net
        .dir
        .join("proxy-1.toml")
        .to_str()
        .expect("utf-8")
        .to_string();
    (path, w, c, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_and_workers_follow_the_proxies_registered_in_the_root_without_restarts() {
    let tmp = TempDir::new("root-discovery");
    // 16 tokens at 250 ms: a request runs about 4 s, long enough to be in flight when its
    // proxy leaves the root.
    let mut net = SplitNet::prepare_with(tmp.path(), &["--mock-delay-ms", "250"]).await;
    let o = net.offset;
    net.edit_config("client.toml", discover_from_root(2));
    net.edit_config("worker-0.toml", discover_from_root(2));
    let (p0_workers, p0_clients) = (11001 + o, 11002 + o);
    let p0_stats = format!("http://127.0.0.1:{}/jsonstats", 11000 + o);
    net.root_op("add-proxy", &[&description(p0_workers, p0_clients)]);
    // Neither the client nor the worker names a proxy: both find proxy 0 in the root.
    net.start_nodes().await;
    let client_stats = format!("{}/jsonstats", net.client_url());
    let worker_stats = format!("http://127.0.0.1:{}/jsonstats", 12000 + o);
    let c = json(&client_stats).await.expect("client stats");
    assert_eq!(
        links(&c),
        vec![(format!("127.0.0.1:{p0_clients}"), true)],
        "{}",
        c["discovery"]
    );
    let w = json(&worker_stats).await.expect("worker stats");
    assert_eq!(links(&w), vec![(format!("127.0.0.1:{p0_workers}"), true)]);
    let http = reqwest::Client::new();
    let base = net.client_url();
    chat(&http, &base).await.expect("served through proxy 0");

    // A second proxy registered later is picked up by both.
    let (p1_config, p1_workers, p1_clients, p1_stats_port) = second_proxy(&net);
    let p1_stats = format!("http://127.0.0.1:{p1_stats_port}/jsonstats");
    net.start_args("proxy-1", &["proxy", "--config", &p1_config]);
    net.root_op("add-proxy", &[&description(p1_workers, p1_clients)]);
    let both = eventually(Duration::from_secs(90), || async {
        let (Some(c), Some(w), Some(p1)) = (
            json(&client_stats).await,
            json(&worker_stats).await,
            json(&p1_stats).await,
        ) else {
            return false;
        };
        let ready = |l: Vec<(String, bool)>| l.len() == 2 && l.iter().all(|(_, r)| *r);
        ready(links(&c))
            && ready(links(&w))
            && p1["workers"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| w["enabled"] == true))
    })
    .await;
    if !both {
        net.dump_logs();
        panic!(
            "the second proxy was not picked up: client {:?}, worker {:?}",
            json(&client_stats).await.map(|c| c["discovery"].clone()),
            json(&worker_stats).await.map(|w| w["discovery"].clone())
        );
    }
    let served_by_p1 = eventually(Duration::from_secs(60), || async {
        chat(&http, &base).await.is_ok()
            && json(&p1_stats)
                .await
                .is_some_and(|s| queries(&s, "succeeded") >= 1)
    })
    .await;
    assert!(served_by_p1, "no request went through the second proxy");

    // Requests in flight on both proxies; then proxy 0 leaves the root.
    let in_flight: Vec<_> = (0..4)
        .map(|_| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move { chat(&http, &base).await })
        })
        .collect();
    let started = eventually(Duration::from_secs(10), || async {
        json(&p0_stats)
            .await
            .is_some_and(|s| queries(&s, "running") >= 1)
    })
    .await;
    assert!(started, "no request in flight on proxy 0");
    let reg = net.registry().await;
    let seqno = reg
        .state
        .proxies
        .iter()
        .find(|(_, d)| *d == description(p0_workers, p0_clients))
        .map(|(s, _)| *s)
        .expect("proxy 0 registered");
    net.root_op("remove-proxy", &[&seqno.to_string()]);
    let p0_client_addr = format!("127.0.0.1:{p0_clients}");
    let p0_worker_addr = format!("127.0.0.1:{p0_workers}");
    let running_when_dropped = std::sync::Mutex::new(0);
    let dropped = eventually(Duration::from_secs(30), || async {
        let (Some(c), Some(w)) = (json(&client_stats).await, json(&worker_stats).await) else {
            return false;
        };
        let gone = !links(&c).iter().any(|(a, _)| *a == p0_client_addr)
            && !links(&w).iter().any(|(a, _)| *a == p0_worker_addr);
        if gone {
            let running = json(&p0_stats).await.map_or(0, |s| queries(&s, "running"));
            *running_when_dropped.lock().expect("lock") = running;
        }
        gone
    })
    .await;
    assert!(dropped, "proxy 0 is still linked after leaving the root");
    assert!(
        *running_when_dropped.lock().expect("lock") >= 1,
        "the requests on proxy 0 ended before it was let go; the test proves nothing"
    );
    // Nothing in flight was dropped.
    for r in in_flight {
        let r = r.await.expect("request task");
        assert!(r.is_ok(), "a request in flight failed: {r:?}");
    }
    // New requests go to proxy 1 only.
    let before = json(&p0_stats).await.expect("proxy 0 stats");
    let p1_before = queries(&json(&p1_stats).await.expect("p1"), "total");
    let next: Vec<_> = (0..3)
        .map(|_| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move { chat(&http, &base).await })
        })
        .collect();
    for r in next {
        assert!(r.await.expect("task").is_ok());
    }
    let after = json(&p0_stats).await.expect("proxy 0 stats");
    assert_eq!(
        queries(&after, "total"),
        queries(&before, "total"),
        "proxy 0 got new work after leaving the root"
    );
    assert_eq!(
        queries(&json(&p1_stats).await.expect("p1"), "total"),
        p1_before + 3
    );
    // Both links to proxy 0 closed once drained; no process was restarted.
    let closed = eventually(Duration::from_secs(20), || async {
        json(&p0_stats).await.is_some_and(|s| {
            s["workers"].as_array().is_some_and(Vec::is_empty)
                && s["connections"]["clients_connected"].as_u64() == Some(0)
        })
    })
    .await;
    assert!(
        closed,
        "links to proxy 0 stayed open: {:?}",
        json(&p0_stats).await
    );
    assert_eq!(net.procs.len(), 5, "chain, proxy, worker, client, proxy-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn root_multipliers_change_what_a_request_costs_without_restarts() {
    use cocoon_engine::pricing::{adjust, cost, PriceMultipliers};
    use cocoon_engine::usage::RawUsage;
    let tmp = TempDir::new("root-multipliers");
    let mut net = SplitNet::prepare(tmp.path()).await;
    net.start_nodes().await;
    let http = reqwest::Client::new();
    let base = net.client_url();
    let price = net.registry().await.state.params.price_per_token as u64;
    // What the worker's cost fields and the proxy's charge must be for `usage` at `m`.
    let expect = |usage: &Value, m: &PriceMultipliers| {
        let a = adjust(RawUsage::from_usage_json(usage), 1000, m);
        (
            a.total,
            cost(a.prompt + a.cached, price),
            cost(a.completion + a.reasoning, price),
        )
    };
    let one = PriceMultipliers::default();
    let r = chat(&http, &base).await.expect("first request");
    let u0 = r["usage"].clone();
    let (t0, prompt_cost0, completion_cost0) = expect(&u0, &one);
    assert_eq!(u0["prompt_total_cost"].as_u64(), Some(prompt_cost0), "{u0}");
    assert_eq!(u0["completion_total_cost"].as_u64(), Some(completion_cost0));
    let charged = |want: u64| {
        let net = &net;
        async move {
            eventually(Duration::from_secs(30), || async {
                net.proxy_status().is_some_and(|s| {
                    s["payments"]["clients"][0]["tokens_db"].as_u64() == Some(want)
                })
            })
            .await
        }
    };
    assert!(charged(t0).await, "first charge: {:?}", net.proxy_status());
    let old_proxy = net.proxy_status().expect("status")["payments"]["proxy_contract"].clone();

    // The root owner changes the multipliers: prompt ×2, completion ×3.
    net.root_op(
        "set-multipliers",
        &["--prompt", "20000", "--completion", "30000"],
    );
    let new_params = net.registry().await.state.params.clone();
    assert_eq!(
        (new_params.prompt_mult, new_params.completion_mult),
        (20_000, 30_000)
    );
    let moved = eventually(Duration::from_secs(60), || async {
        net.proxy_status()
            .is_some_and(|s| s["payments"]["proxy_contract"] != old_proxy)
    })
    .await;
    if !moved {
        net.dump_logs();
        panic!("the proxy did not move to the new params");
    }
    assert!(net.wait_ready().await, "network not ready after the change");
    let served = std::sync::Mutex::new(None);
    let ok = eventually(Duration::from_secs(60), || async {
        let r = chat(&http, &base).await.ok();
        let done = r.is_some();
        *served.lock().expect("lock") = r;
        done
    })
    .await;
    if !ok {
        net.dump_logs();
        panic!("no answer under the new multipliers");
    }
    let u1 = served.lock().expect("lock").take().expect("served")["usage"].clone();
    let m = PriceMultipliers {
        prompt: 20_000,
        cached: 10_000,
        completion: 30_000,
        reasoning: 10_000,
    };
    let (t1, prompt_cost1, completion_cost1) = expect(&u1, &m);
    // The same request (the mock answers alike) costs more: the worker's cost fields...
    assert_eq!(u1["prompt_tokens"], u0["prompt_tokens"]);
    assert_eq!(u1["completion_tokens"], u0["completion_tokens"]);
    assert_eq!(u1["prompt_total_cost"].as_u64(), Some(prompt_cost1), "{u1}");
    assert_eq!(u1["completion_total_cost"].as_u64(), Some(completion_cost1));
    assert_eq!(
        u1["total_cost"].as_u64(),
        Some(prompt_cost1 + completion_cost1)
    );
    let p = u0["prompt_tokens"].as_u64().expect("prompt");
    let c = u0["completion_tokens"].as_u64().expect("completion");
    assert_eq!(
        t1,
        2 * p + 3 * c,
        "no cached or reasoning tokens from the mock"
    );
    assert!(t1 > t0);
    // ...and the proxy's charge (the client's account at the proxy's new contract).
    assert!(
        charged(t1).await,
        "charge at new multipliers: {:?}",
        net.proxy_status()
    );
    let stats = json(&format!(
        "http://127.0.0.1:{}/jsonstats",
        11000 + net.offset
    ))
    .await
    .expect("proxy stats");
    assert_eq!(stats["pricing"]["prompt_multiplier"], 20_000);
    assert_eq!(stats["pricing"]["completion_multiplier"], 30_000);
    // The worker's [pricing] (×1) disagrees with the root: the root won, and it said so once
    // for these params however many requests ran.
    chat(&http, &base).await.expect("another request");
    let warned = std::fs::read_dir(&net.logs)
        .expect("logs")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("worker"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .map(|log| {
            log.lines()
                .filter(|l| {
                    l.contains("differs from the root contract's params")
                        && l.contains(&format!("params_version={}", new_params.params_version))
                })
                .count()
        })
        .sum::<usize>();
    assert_eq!(warned, 1, "one warning for the new params");
}

/// A TCP relay in front of the chain API that the test can cut: while cut, new connections are
/// closed at once and open ones dropped (the chain is unreachable for whoever uses it).
struct Relay {
    url: String,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (cut, _) = watch::channel(false);
        let cut_rx = cut.subscribe();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                if *cut_rx.borrow() {
                    continue; // dropped: closed at once
                }
                let mut cut = cut_rx.clone();
                conns.spawn(async move {
                    let Ok(mut out) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Relay { url, cut, task }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_root_view_goes_stale_takes_no_new_work_until_a_read_succeeds() {
    let tmp = TempDir::new("root-stale");
    let mut net = SplitNet::prepare(tmp.path()).await;
    let upstream: SocketAddr = net
        .chain_url()
        .trim_start_matches("http://")
        .parse()
        .expect("chain address");
    // Each node reads the chain through its own relay, with a 2 s bound (4 polls).
    let mut relays = Vec::new();
    for file in ["proxy.toml", "worker-0.toml", "client.toml"] {
        let relay = Relay::start(upstream).await;
        let url = relay.url.clone();
        net.edit_config(file, |t| {
            if let Some(toml::Value::Table(chain)) = t.get_mut("chain") {
                chain.insert("api_url".into(), url.into());
                chain.insert("root_stale_after".into(), "2s".into());
            }
        });
        relays.push(Arc::new(relay));
    }
    let [proxy_relay, worker_relay, client_relay] = [&relays[0], &relays[1], &relays[2]];
    net.start_nodes().await;
    let http = reqwest::Client::new();
    let base = net.client_url();
    chat(&http, &base).await.expect("served while fresh");
    let o = net.offset;
    let proxy_stats = format!("http://127.0.0.1:{}/jsonstats", 11000 + o);
    let worker_stats = format!("http://127.0.0.1:{}/jsonstats", 12000 + o);
    let client_stats = format!("{base}/jsonstats");
    let refused_with = |want: &'static str| {
        let (http, base) = (&http, &base);
        async move {
            let last = std::sync::Mutex::new(None);
            let ok = eventually(Duration::from_secs(30), || async {
                let r = chat(http, base).await;
                let hit = matches!(&r, Err((503, v)) if v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(want)));
                *last.lock().expect("lock") = Some(r);
                hit
            })
            .await;
            assert!(
                ok,
                "not refused with {want:?}: {:?}",
                last.lock().expect("lock")
            );
        }
    };
    let served_again = |what: &'static str| {
        let (http, base) = (&http, &base);
        async move {
            let ok = eventually(Duration::from_secs(30), || async {
                chat(http, base).await.is_ok()
            })
            .await;
            assert!(ok, "not served again after {what}");
        }
    };
    let stale = |url: String| async move { json(&url).await.map(|s| s["root"]["stale"].clone()) };

    // The proxy cannot read the chain: past the bound it refuses new requests, clearly.
    proxy_relay.set_cut(true);
    refused_with("proxy: its view of the root contract is").await;
    assert_eq!(stale(proxy_stats.clone()).await, Some(Value::Bool(true)));
    proxy_relay.set_cut(false);
    served_again("the proxy read the root").await;
    assert_eq!(stale(proxy_stats.clone()).await, Some(Value::Bool(false)));

    // The worker cannot: it tells its proxy it is disabled, so nobody serves the model.
    worker_relay.set_cut(true);
    let disabled = eventually(Duration::from_secs(30), || async {
        json(&proxy_stats).await.is_some_and(|s| {
            s["workers"]
                .as_array()
                .is_some_and(|w| !w.is_empty() && w.iter().all(|w| w["enabled"] == false))
        })
    })
    .await;
    assert!(
        disabled,
        "the worker was not disabled: {:?}",
        json(&proxy_stats).await
    );
    let w = json(&worker_stats).await.expect("worker stats");
    assert_eq!(w["root"]["stale"], true);
    assert_eq!(w["takes_work"], false);
    assert!(matches!(chat(&http, &base).await, Err((503, _))));
    worker_relay.set_cut(false);
    served_again("the worker read the root").await;

    // The client cannot: it answers 503 itself, nothing goes out.
    client_relay.set_cut(true);
    refused_with("client: its view of the root contract is").await;
    let c = json(&client_stats).await.expect("client stats");
    assert_eq!(c["root"]["stale"], true);
    client_relay.set_cut(false);
    served_again("the client read the root").await;
    assert_eq!(stale(client_stats).await, Some(Value::Bool(false)));
    assert_eq!(net.procs.len(), 4, "no node was restarted");
}
