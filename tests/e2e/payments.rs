//! Payments end to end on the local chain (docs/PAYMENTS.md): a whole `cocoon dev` network
//! (chain, root, proxy, worker on the mock engine, client), each node paying through its own
//! wallet. Requests are charged exactly as their usage said, anchored, charged on chain and paid
//! out; on-chain money is conserved and equals the proxy's ledger.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cocoon_testkit::{chat_request, eventually, post_chat, TempDir};
use cocoon_ton::{Chain, TonAddress};
use futures::StreamExt;

use crate::paying::{fees_since, ledger_equals_chain, money, DevNet, SplitNet};

fn addr(v: &serde_json::Value) -> TonAddress {
    v.as_str()
        .unwrap_or_else(|| panic!("not an address: {v}"))
        .parse()
        .expect("address")
}

/// Asserts that what left `accounts` since `lts` is exactly what fees burned (after letting the
/// last message cascades land).
async fn assert_conserved(chain: &dyn Chain, accounts: &[TonAddress], before: u128, lts: &[u64]) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, _) = money(chain, accounts).await;
    let fees = fees_since(chain, accounts, lts).await;
    assert_eq!(
        before,
        after + fees,
        "money not conserved: before {before}, after {after}, fees {fees}"
    );
}

/// The client contract's getter.
async fn client_data(chain: &dyn Chain, sc: &TonAddress) -> cocoon_ton::contracts::ClientData {
    use cocoon_ton::contracts::ClientData;
    let r = chain
        .run_get_method(sc, ClientData::METHOD, vec![])
        .await
        .expect("client getter");
    ClientData::from_stack(&r.stack).expect("client data")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_cycle_on_the_local_chain_conserves_money_and_matches_the_ledger() {
    let tmp = TempDir::new("payments");
    let net = DevNet::start(tmp.path()).await;
    let http = reqwest::Client::new();

    // The proxy knows its contracts; the client and worker are known once they connected.
    let st = net.proxy_status();
    let p = &st["payments"];
    assert!(p.is_object(), "payments are off: {st}");
    assert!(p["halted"].is_null(), "halted: {}", p["halted"]);
    let proxy_sc = addr(&p["proxy_contract"]);
    let proxy_wallet = addr(&p["wallet"]);
    let client = &p["clients"][0];
    let worker = &p["workers"][0];
    let (client_owner, client_sc) = (addr(&client["owner"]), addr(&client["contract"]));
    let (worker_owner, worker_sc) = (addr(&worker["owner"]), addr(&worker["contract"]));
    let accounts = [
        proxy_sc,
        proxy_wallet,
        client_owner,
        client_sc,
        worker_owner,
        worker_sc,
    ];
    let (before, lts) = money(net.chain.as_ref(), &accounts).await;
    let charged_before = client["tokens_charged_onchain"].as_u64().unwrap_or(0);

    // N requests: every token of their usage is charged, no more, no less.
    let mut tokens = 0;
    for _ in 0..5 {
        tokens += net.chat(&http).await;
    }
    assert!(tokens > 0);
    let settled = eventually(Duration::from_secs(60), || async {
        let s = net.proxy_status();
        let c = &s["payments"]["clients"][0];
        let w = &s["payments"]["workers"][0];
        c["tokens_db"].as_u64() == Some(charged_before + tokens)
            && c["tokens_charged_onchain"].as_u64() == Some(charged_before + tokens)
            && w["tokens_paid_onchain"].as_u64() == Some(charged_before + tokens)
    })
    .await;
    if !settled {
        net.dump_logs();
        panic!(
            "usage not settled on chain: expected {} tokens, status {}",
            charged_before + tokens,
            net.proxy_status()
        );
    }
    // What left the accounts is exactly what fees burned.
    assert_conserved(net.chain.as_ref(), &accounts, before, &lts).await;
    // On chain equals the ledger: the client contract and the worker contract say the same.
    let c = client_data(net.chain.as_ref(), &client_sc).await;
    assert_eq!(c.tokens_used, charged_before + tokens);
    let w = cocoon_ton::contracts::WorkerData::from_stack(
        &net.chain
            .run_get_method(
                &worker_sc,
                cocoon_ton::contracts::WorkerData::METHOD,
                vec![],
            )
            .await
            .expect("worker getter")
            .stack,
    )
    .expect("worker data");
    assert_eq!(w.tokens, charged_before + tokens);

    // The rest of the cycle: the worker cashes out (the proxy already paid it: nothing due), the
    // client withdraws (nothing above its stake) and closes; the proxy sees the closing contract
    // with nothing running and grants its refund, which closes it and pays its owner.
    net.cli_json(&["worker", "cashout"]);
    net.cli_json(&["client", "withdraw"]);
    net.cli_json(&["client", "close"]);
    let chain = net.chain.clone();
    let closed = eventually(Duration::from_secs(60), || {
        let chain = chain.clone();
        async move {
            contract_state(
                chain.as_ref(),
                &client_sc,
                cocoon_ton::contracts::ClientData::METHOD,
            )
            .await
                == Some(2)
        }
    })
    .await;
    if !closed {
        net.dump_logs();
        panic!(
            "client contract not closed by the proxy's grant-refund: {}",
            net.proxy_status()
        );
    }
    assert_conserved(net.chain.as_ref(), &accounts, before, &lts).await;
    let c = client_data(net.chain.as_ref(), &client_sc).await;
    let ledger_db = net.proxy_status()["payments"]["clients"][0]["tokens_db"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        c.tokens_used, ledger_db,
        "the closed contract's usage equals the ledger"
    );
    assert_eq!(c.balance, 0, "everything was refunded to the owner");
}

async fn chat_once(http: &reqwest::Client, base: &str) -> Result<u64, String> {
    let resp = chat_request(http, base)
        .json(&serde_json::json!({
            "model": "mock",
            "messages": [{"role": "user", "content": "count to three"}],
        }))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {v}"));
    }
    v["usage"]["total_tokens"]
        .as_u64()
        .ok_or_else(|| format!("no usage in {v}"))
}

fn client_tokens_db(st: &serde_json::Value) -> u64 {
    st["payments"]["clients"][0]["tokens_db"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_kill9_under_load_loses_no_acknowledged_token_and_charges_none_twice() {
    let tmp = TempDir::new("pay-kill");
    let mut net = SplitNet::prepare(tmp.path()).await;
    net.start_nodes().await;
    let http = reqwest::Client::new();
    let base = net.client_url();
    // Every mock answer has the same usage: learn it once.
    let per_request = chat_once(&http, &base).await.expect("first request");
    let mut acknowledged: u64 = per_request;
    let mut attempted: u64 = 1;
    for round in 0..3u64 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut load = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
            load.spawn(async move {
                let (mut ok, mut tried) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tried += 1;
                    if let Ok(t) = chat_once(&http, &base).await {
                        assert_eq!(t, per_request, "mock usage changed");
                        ok += 1;
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                (ok, tried)
            });
        }
        tokio::time::sleep(Duration::from_millis(700 + 400 * round)).await;
        net.kill9("proxy");
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        while let Some(r) = load.join_next().await {
            let (ok, tried) = r.expect("load task");
            acknowledged += ok * per_request;
            attempted += tried;
        }
        net.start("proxy");
        if !net.wait_ready().await {
            net.dump_logs();
            panic!("proxy did not come back after kill -9 (round {round})");
        }
    }
    // Nothing acknowledged is lost; nothing is charged twice (at most the attempts, each once).
    let st = net.proxy_status().expect("status");
    assert!(st["payments"]["halted"].is_null(), "halted: {st}");
    let db = client_tokens_db(&st);
    assert!(
        db >= acknowledged,
        "acknowledged {acknowledged} tokens but the ledger holds {db}"
    );
    assert!(
        db <= attempted * per_request,
        "ledger {db} > every attempt once"
    );
    assert_eq!(
        db % per_request,
        0,
        "a request was charged partially or twice"
    );
    let worker_db = st["payments"]["workers"][0]["tokens_db"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(worker_db, db, "worker and client books differ");
    // And the chain ends up agreeing with the ledger.
    if !wait_settled(&net, db).await {
        net.dump_logs();
        panic!("chain never matched the ledger: {:?}", net.proxy_status());
    }
}

/// The contracts of the (only) client and worker the proxy knows, with the wallets around
/// them: every account money moves between in a dev network.
fn paying_accounts(st: &serde_json::Value) -> [TonAddress; 6] {
    let p = &st["payments"];
    let (client, worker) = (&p["clients"][0], &p["workers"][0]);
    [
        addr(&p["proxy_contract"]),
        addr(&p["wallet"]),
        addr(&client["owner"]),
        addr(&client["contract"]),
        addr(&worker["owner"]),
        addr(&worker["contract"]),
    ]
}

/// Waits until the ledger holds `tokens` for the (only) client and worker, and the chain has
/// charged and paid all of them.
async fn wait_settled(net: &SplitNet, tokens: u64) -> bool {
    eventually(Duration::from_secs(60), || async {
        net.proxy_status().is_some_and(|s| {
            let p = &s["payments"];
            p["clients"][0]["tokens_db"].as_u64() == Some(tokens)
                && p["workers"][0]["tokens_db"].as_u64() == Some(tokens)
                && ledger_equals_chain(p)
        })
    })
    .await
}

/// Waits until the ledger holds the same number of tokens, at least `min`, for the (only) client
/// and worker, and the chain has charged and paid all of them; returns that number.
async fn wait_settled_at_least(net: &SplitNet, min: u64) -> Option<u64> {
    let mut settled = None;
    eventually(Duration::from_secs(60), || {
        let found = net.proxy_status().and_then(|s| {
            let p = &s["payments"];
            let client = p["clients"][0]["tokens_db"].as_u64()?;
            (client >= min
                && p["workers"][0]["tokens_db"].as_u64() == Some(client)
                && ledger_equals_chain(p))
            .then_some(client)
        });
        settled = found;
        async move { found.is_some() }
    })
    .await;
    settled
}

/// A paying network whose mock answers 40 tokens 50 ms apart (~2 s an answer, so a fault or an
/// app leaving lands in the middle of one), after one request charged and paid on chain, with
/// the on-chain money of its six accounts noted.
struct SlowPayingNet {
    net: SplitNet,
    http: reqwest::Client,
    base: String,
    /// Tokens of the requests answered whole so far.
    answered: u64,
    accounts: [TonAddress; 6],
    before: u128,
    lts: Vec<u64>,
}

impl SlowPayingNet {
    async fn start(tmp: &TempDir) -> SlowPayingNet {
        let mut net = SplitNet::prepare_with(
            tmp.path(),
            &["--mock-tokens", "40", "--mock-delay-ms", "50"],
        )
        .await;
        net.start_nodes().await;
        let http = reqwest::Client::new();
        let base = net.client_url();
        let answered = chat_once(&http, &base).await.expect("first request");
        if !wait_settled(&net, answered).await {
            net.dump_logs();
            panic!("first request not settled: {:?}", net.proxy_status());
        }
        let accounts = paying_accounts(&net.proxy_status().expect("status"));
        let (before, lts) = money(net.chain.as_ref(), &accounts).await;
        SlowPayingNet {
            net,
            http,
            base,
            answered,
            accounts,
            before,
            lts,
        }
    }

    /// Waits until at least `min` tokens (`what`) are charged to the client, credited to the
    /// worker and settled on chain; returns the charge.
    async fn charged_at_least(&self, min: u64, what: &str) -> u64 {
        let Some(charged) = wait_settled_at_least(&self.net, min).await else {
            self.net.dump_logs();
            panic!("{what} were not all charged: {:?}", self.net.proxy_status());
        };
        charged
    }

    /// The client contract's usage on chain is `charged`, and on-chain money is conserved since
    /// the start (Σ balances before = after + fees).
    async fn assert_chain_agrees(&self, charged: u64) {
        assert_eq!(
            client_data(self.net.chain.as_ref(), &self.accounts[3])
                .await
                .tokens_used,
            charged,
            "the client contract's usage is what the ledger charged"
        );
        assert_conserved(
            self.net.chain.as_ref(),
            &self.accounts,
            self.before,
            &self.lts,
        )
        .await;
    }
}

/// C2 on a network that pays on chain: apps that leave streamed answers after a few chunks
/// (the cheapest way to be served without paying, before the fix) are charged what they
/// received — more than nothing, at most each request's reservation — the worker is paid the
/// same, the client contract is charged on chain what the ledger holds, and on-chain money is
/// conserved (Σ balances before = after + fees). An honest request afterwards is charged
/// exactly its usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apps_leaving_streams_midway_pay_on_chain_what_they_received_and_money_is_conserved() {
    let tmp = TempDir::new("pay-leave");
    let mut p = SlowPayingNet::start(&tmp).await;
    let (http, base) = (p.http.clone(), p.base.clone());

    let body = serde_json::json!({
        "model": "mock", "stream": true, "max_tokens": 200,
        "messages": [{"role": "user", "content": "count to forty"}],
    });
    for _ in 0..3 {
        let resp = post_chat(&http, &base, &body).await;
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut chunks = 0;
        while chunks < 3 {
            let c = stream.next().await.expect("a chunk").expect("ok");
            chunks += usize::from(String::from_utf8_lossy(&c).contains("\"content\""));
        }
        drop(stream); // the app leaves
    }
    p.answered += chat_once(&http, &base)
        .await
        .expect("an honest request after");
    let answered = p.answered;
    let charged = p
        .charged_at_least(answered + 1, "the streams the apps left")
        .await;
    // Each left stream: its prompt (estimated by the proxy from the request's bytes) and the
    // chunks relayed before the client's cancel arrived, capped at its reservation (200 tokens
    // plus the prompt's bytes).
    let left = charged - answered;
    eprintln!("answered {answered} tokens; the three left streams were charged {left}");
    assert!(
        left > 3 && left <= 3 * 2000,
        "the left streams were charged {left} tokens: not what they delivered"
    );
    p.assert_chain_agrees(charged).await;
}

/// The loopback fault scenarios of `faults.rs` on a network that pays on chain: a worker killed
/// (-9) mid-stream, and one killed in the middle of a non-streamed answer. The app gets an error
/// each time; the stream the kill cut is charged what the app received (more than nothing, at
/// most its reservation) and the worker credited the same, the non-streamed answer that never
/// reached the app nothing; every answered request is charged exactly its usage, to the client,
/// the worker and on chain; and on-chain money is conserved across the faults (Σ balances before
/// = after + fees).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_on_a_paying_network_charge_exactly_the_answered_requests_and_conserve_money() {
    let tmp = TempDir::new("pay-faults");
    let mut p = SlowPayingNet::start(&tmp).await;
    let (http, base) = (p.http.clone(), p.base.clone());

    // 1. kill -9 of the worker after the first streamed chunk: the stream ends without [DONE].
    let body = serde_json::json!({
        "model": "mock", "stream": true,
        "messages": [{"role": "user", "content": "count to forty"}],
    });
    let resp = post_chat(&http, &base, &body).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("a first chunk").expect("ok");
    assert!(!first.is_empty());
    p.net.kill9("worker");
    let tail = tokio::time::timeout(Duration::from_secs(10), async {
        let mut tail = String::new();
        while let Some(Ok(c)) = body.next().await {
            tail.push_str(&String::from_utf8_lossy(&c));
        }
        tail
    })
    .await
    .expect("the cut stream ended within 10 s");
    assert!(
        !tail.contains("[DONE]"),
        "a cut stream looked complete: {tail}"
    );

    // 2. kill -9 of the worker in the middle of a non-streamed answer: a 5xx JSON error.
    p.net.start("worker");
    assert!(p.net.wait_ready().await, "worker did not come back");
    let cut = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move { chat_once(&http, &base).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    p.net.kill9("worker");
    let err = cut
        .await
        .expect("request task")
        .expect_err("a request cut by the worker's death was answered");
    assert!(
        err.starts_with('5') && err.contains("error"),
        "not a 5xx JSON error: {err}"
    );

    // 3. The network pays for what it answers afterwards.
    p.net.start("worker");
    assert!(p.net.wait_ready().await, "worker did not come back");
    for _ in 0..3 {
        p.answered += chat_once(&http, &base)
            .await
            .expect("request after the faults");
    }
    let answered = p.answered;
    let charged = p
        .charged_at_least(answered, &format!("the {answered} answered tokens"))
        .await;
    // The cut stream: its prompt and the chunk(s) it delivered before the kill, capped at its
    // reservation (no `max_tokens` in the body: the proxy's default of 1000, plus the prompt).
    let cut = charged - answered;
    eprintln!("answered {answered} tokens; the cut requests were charged {cut}");
    assert!(
        cut > 0 && cut <= 2000,
        "the cut stream was charged {cut} tokens: not what it delivered"
    );
    let st = p.net.proxy_status().expect("status");
    assert!(st["payments"]["halted"].is_null(), "halted: {st}");
    let client: serde_json::Value = http
        .get(format!("{base}/jsonstats"))
        .send()
        .await
        .expect("client stats")
        .json()
        .await
        .expect("json");
    let counted = client["tokens"]["total"].as_u64().unwrap_or(0);
    assert!(
        counted == answered || counted == charged,
        "the client counted {counted} tokens; answered {answered}, charged {charged}: {client}"
    );
    p.assert_chain_agrees(charged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_copy_of_the_ledger_is_detected_and_refused() {
    let tmp = TempDir::new("pay-rollback");
    let mut net = SplitNet::prepare(tmp.path()).await;
    net.start_nodes().await;
    let http = reqwest::Client::new();
    let base = net.client_url();
    let anchored = |net: &SplitNet| {
        net.proxy_status()
            .and_then(|s| s["payments"]["anchor"].as_u64())
            .unwrap_or(0)
    };
    chat_once(&http, &base).await.expect("request");
    assert!(
        eventually(Duration::from_secs(30), || async { anchored(&net) > 0 }).await,
        "never anchored"
    );
    // Copy the ledger while the proxy is stopped.
    net.kill9("proxy");
    let ledger = net.dir.join("proxy-ledger.sqlite");
    let backup = tmp.path().join("ledger-backup");
    std::fs::create_dir_all(&backup).expect("backup dir");
    for ext in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{ext}", ledger.display()));
        if from.exists() {
            std::fs::copy(&from, backup.join(format!("l{ext}"))).expect("copy");
        }
    }
    net.start("proxy");
    assert!(net.wait_ready().await, "proxy did not restart");
    let first = anchored(&net);
    for _ in 0..3 {
        chat_once(&http, &base).await.expect("request");
    }
    assert!(
        eventually(Duration::from_secs(30), || async { anchored(&net) > first }).await,
        "no newer anchor"
    );
    // Put the old copy back: the chain holds markers it never issued.
    net.kill9("proxy");
    for ext in ["", "-wal", "-shm"] {
        let to = PathBuf::from(format!("{}{ext}", ledger.display()));
        let from = backup.join(format!("l{ext}"));
        let _ = std::fs::remove_file(&to);
        if from.exists() {
            std::fs::copy(&from, &to).expect("restore");
        }
    }
    net.start("proxy");
    let halted = eventually(Duration::from_secs(30), || async {
        net.proxy_status()
            .is_some_and(|s| s["payments"]["halted"].as_str().is_some())
    })
    .await;
    if !halted {
        net.dump_logs();
        panic!("old ledger not detected: {:?}", net.proxy_status());
    }
    let why = net.proxy_status().expect("status")["payments"]["halted"].clone();
    assert!(
        why.as_str().unwrap_or("").contains("rollback"),
        "reason: {why}"
    );
    // It refuses to serve, and the operator can still inspect the file (proxy stopped).
    assert!(chat_once(&http, &base).await.is_err());
    net.kill9("proxy");
    let out = net.cli(&["proxy", "ledger", "--json"]);
    assert!(
        out.status.success(),
        "ledger inspection failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn contract_state(chain: &dyn Chain, addr: &TonAddress, method: &str) -> Option<u8> {
    let r = chain.run_get_method(addr, method, vec![]).await.ok()?;
    if !r.success() {
        return None;
    }
    match method {
        cocoon_ton::contracts::ClientData::METHOD => {
            cocoon_ton::contracts::ClientData::from_stack(&r.stack)
                .ok()
                .map(|d| d.state)
        }
        cocoon_ton::contracts::WorkerData::METHOD => {
            cocoon_ton::contracts::WorkerData::from_stack(&r.stack)
                .ok()
                .map(|d| d.state)
        }
        _ => cocoon_ton::contracts::ProxyData::from_stack(&r.stack)
            .ok()
            .map(|d| d.state),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn root_params_change_moves_the_proxy_to_a_new_contract_and_winds_down_the_old_one() {
    use cocoon_ton::contracts::{ClientData, ProxyData, WorkerData};
    let tmp = TempDir::new("pay-params");
    let mut net = SplitNet::prepare(tmp.path()).await;
    net.start_nodes().await;
    let http = reqwest::Client::new();
    let base = net.client_url();
    let tokens = chat_once(&http, &base).await.expect("request");
    let settled = eventually(Duration::from_secs(30), || async {
        net.proxy_status().is_some_and(|s| {
            s["payments"]["clients"][0]["tokens_charged_onchain"].as_u64() == Some(tokens)
        })
    })
    .await;
    assert!(
        settled,
        "first request not settled: {:?}",
        net.proxy_status()
    );
    let st = net.proxy_status().expect("status");
    let old_proxy = addr(&st["payments"]["proxy_contract"]);
    let old_client = addr(&st["payments"]["clients"][0]["contract"]);
    let old_worker = addr(&st["payments"]["workers"][0]["contract"]);

    // The root owner changes the price: every proxy must move to a new contract.
    net.root_op(
        "set-params",
        &["--price-per-token", "3", "--worker-fee-per-token", "1"],
    );
    let chain_url = net.chain_url();
    let moved = eventually(Duration::from_secs(60), || async {
        net.proxy_status().is_some_and(|s| {
            s["payments"]["proxy_contract"]
                .as_str()
                .is_some_and(|c| c != old_proxy.to_bounceable())
        })
    })
    .await;
    if !moved {
        net.dump_logs();
        panic!(
            "proxy did not move to a new contract: {:?}",
            net.proxy_status()
        );
    }
    assert!(net.wait_ready().await, "network not ready after the move");
    // Requests are served (and priced) under the new params.
    let answered = eventually(Duration::from_secs(60), || async {
        chat_once(&http, &base).await.is_ok()
    })
    .await;
    if !answered {
        net.dump_logs();
        panic!("no answer under the new params");
    }
    let st = net.proxy_status().expect("status");
    assert_eq!(st["payments"]["price_per_token_nanoton"], "3");
    // The old contracts are settled and closed: the client's refunded, the worker paid its last.
    let chain = net.chain.clone();
    let closed = eventually(Duration::from_secs(60), || {
        let chain = chain.clone();
        async move {
            contract_state(chain.as_ref(), &old_client, ClientData::METHOD).await == Some(2)
                && contract_state(chain.as_ref(), &old_worker, WorkerData::METHOD).await == Some(2)
                && contract_state(chain.as_ref(), &old_proxy, ProxyData::METHOD).await == Some(1)
        }
    })
    .await;
    if !closed {
        net.dump_logs();
        panic!("old contracts not wound down: {:?}", net.proxy_status());
    }
    let w = WorkerData::from_stack(
        &net.chain
            .run_get_method(&old_worker, WorkerData::METHOD, vec![])
            .await
            .expect("worker getter")
            .stack,
    )
    .expect("worker data");
    assert_eq!(
        w.tokens, tokens,
        "the worker's last payout is its anchored earnings"
    );
    // After the close delay the old proxy contract completes its close.
    let r = reqwest::Client::new()
        .post(format!("{chain_url}/api/v2/advanceTime"))
        .json(&serde_json::json!({"seconds": 700}))
        .send()
        .await
        .expect("advanceTime");
    assert!(r.status().is_success());
    let done = eventually(Duration::from_secs(60), || {
        let chain = chain.clone();
        async move { contract_state(chain.as_ref(), &old_proxy, ProxyData::METHOD).await == Some(2) }
    })
    .await;
    if !done {
        net.dump_logs();
        panic!("old proxy contract never closed: {:?}", net.proxy_status());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_root_registry_decides_which_workers_serve_and_a_change_applies_without_restarts() {
    let tmp = TempDir::new("pay-registry");
    let mut net = SplitNet::prepare(tmp.path()).await;
    net.start_nodes().await;
    let image = hex::encode(cocoon_attest::INSECURE_SOFTWARE_IMAGE_HASH);
    let worker_image = ["--kind", "worker", image.as_str()];
    // Unregister the worker image, then make the worker reconnect: the proxy refuses it.
    net.root_op("remove-image", &worker_image);
    tokio::time::sleep(Duration::from_secs(2)).await; // the nodes poll the root every 500 ms
    net.kill9("worker");
    net.start("worker");
    let models = format!("{}/v1/models", net.client_url());
    let no_workers = eventually(Duration::from_secs(20), || {
        let models = models.clone();
        async move {
            let Ok(r) = reqwest::get(&models).await else {
                return false;
            };
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            v["data"].as_array().is_some_and(|m| {
                m.iter()
                    .all(|m| m["workers"].as_array().is_none_or(|w| w.is_empty()))
            })
        }
    })
    .await;
    assert!(
        no_workers,
        "a worker with an unregistered image was accepted"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = std::fs::read_dir(&net.logs)
        .expect("logs")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("proxy"))
        .any(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .contains("is not in the root contract's registry")
        });
    assert!(refused, "the proxy did not say why it refused the worker");
    // Register it again: the same processes accept it, nothing restarted.
    net.root_op("add-image", &worker_image);
    assert!(
        net.wait_ready().await,
        "the worker was not accepted after its image was registered again"
    );
    let http = reqwest::Client::new();
    chat_once(&http, &net.client_url())
        .await
        .expect("served again");
}

/// What `cocoon dev` prints is usable as printed, and its logs are plain text: the operator
/// commands of the ready banner run as written (from the directory it was started in) and
/// name the network's own root; neither its output nor the nodes' log files carry colour codes
/// when they are not a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_banner_commands_run_as_printed_and_logs_are_plain_text() {
    let tmp = TempDir::new("dev-banner");
    let net = DevNet::start(tmp.path()).await;
    let out = std::fs::read_to_string(&net._proc.log).expect("dev output");
    let banner = out
        .split("Cocoon dev network ready")
        .nth(1)
        .expect("ready banner");
    let root = banner
        .split("root contract: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("banner names the root contract")
        .to_string();
    let commands: Vec<Vec<&str>> = banner
        .lines()
        .filter(|l| l.contains(" --data-dir "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let names: Vec<String> = commands.iter().map(|c| c[1..3].join(" ")).collect();
    assert_eq!(
        names,
        [
            "root show",
            "client balance",
            "worker earnings",
            "proxy status"
        ],
        "banner:\n{banner}"
    );
    for c in &commands {
        assert_eq!(
            std::fs::canonicalize(c[0]).ok(),
            std::fs::canonicalize(env!("CARGO_BIN_EXE_cocoon")).ok(),
            "the banner names this binary: {c:?}"
        );
        let run = std::process::Command::new(c[0])
            .args(&c[1..])
            .output()
            .expect("run a banner command");
        let text = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{c:?} failed: {text}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        if c[1] == "root" {
            assert!(text.contains("model hashes"), "root show printed: {text}");
        }
    }
    // `root show --data-dir` read the root from the config: the same one as `--root`.
    let by_address = std::process::Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(["root", "show", "--root", &root, "--chain"])
        .arg(format!("http://127.0.0.1:{}", 8081 + net.offset))
        .output()
        .expect("root show --root");
    let by_dir = std::process::Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(["root", "show", "--data-dir"])
        .arg(&net.dir)
        .output()
        .expect("root show --data-dir");
    assert!(by_address.status.success() && by_dir.status.success());
    assert_eq!(by_address.stdout, by_dir.stdout);

    let mut logs = vec![net._proc.log.clone()];
    for e in std::fs::read_dir(net.dir.join("logs")).expect("logs dir") {
        logs.push(e.expect("log entry").path());
    }
    assert!(logs.len() >= 5, "dev output and the nodes' logs: {logs:?}");
    for log in logs {
        let text = std::fs::read(&log).expect("read log");
        assert!(
            !text.is_empty() || log.ends_with("chain-setup.log"),
            "{log:?} is empty"
        );
        assert!(
            !text.contains(&0x1b),
            "{} holds terminal escape codes",
            log.display()
        );
    }
}
