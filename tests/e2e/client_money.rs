//! The client's money from its own side (docs/PAYMENTS.md "Client money"): `cocoon client
//! balance` shows exactly the usage the responses reported, an admin top-up needs its token and
//! a POST, and a client whose proxy vanished gets its balance and stake back with `withdraw` and
//! `close` (the forced refund after `client_delay_before_close`), with only the chain running.

use std::time::Duration;

use cocoon_testkit::{eventually, TempDir};

use crate::harness::spawn;
use crate::paying::DevNet;

const TON: u64 = 1_000_000_000;

fn contract(v: &serde_json::Value) -> &serde_json::Value {
    let c = &v["contracts"];
    assert_eq!(
        c.as_array().map(Vec::len),
        Some(1),
        "one client contract: {v}"
    );
    &c[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_whose_proxy_vanished_gets_its_balance_and_stake_back() {
    let tmp = TempDir::new("client-money");
    let mut net = DevNet::start(tmp.path()).await;
    let http = reqwest::Client::new();

    // Usage: what `balance` shows (charged on chain + pending) is exactly the responses' usage.
    let mut tokens = 0;
    for _ in 0..3 {
        tokens += net.chat(&http).await;
    }
    let exact = eventually(Duration::from_secs(30), || async {
        let b = net.cli_json(&["client", "balance"]);
        let c = contract(&b);
        b["client_running"] == true
            && c["tokens_used"].as_u64().unwrap_or(0) + c["pending_tokens"].as_u64().unwrap_or(0)
                == tokens
    })
    .await;
    if !exact {
        net.dump_logs();
        panic!(
            "balance does not show {tokens} tokens: {}",
            net.cli_json(&["client", "balance"])
        );
    }

    // Admin top-up: POST only, and only with the admin token.
    let cfg: toml::Value =
        toml::from_str(&std::fs::read_to_string(net.dir.join("client.toml")).expect("client.toml"))
            .expect("toml");
    let token = cfg["admin_token"]
        .as_str()
        .expect("admin_token")
        .to_string();
    assert!(!token.is_empty(), "cocoon dev sets an admin token");
    let url = format!("{}/admin/top-up", net.client_url());
    let get = http.get(&url).send().await.expect("GET");
    assert_eq!(get.status(), 405, "nothing on chain behind a GET");
    let wrong = http
        .post(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .expect("POST");
    assert_eq!(wrong.status(), 401);
    let ok = http
        .post(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("POST");
    assert!(ok.status().is_success(), "{}", ok.status());
    let topped = eventually(Duration::from_secs(30), || async {
        let b = net.cli_json(&["client", "balance"]);
        contract(&b)["balance_nanoton"].as_u64().unwrap_or(0) > 3 * TON / 2
    })
    .await;
    assert!(topped, "{}", net.cli_json(&["client", "balance"]));

    // The proxy (and the whole network) goes away; only the chain comes back.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &net._proc.child.id().to_string()])
        .status();
    let stopped = eventually(Duration::from_secs(30), || {
        let done = matches!(net._proc.child.try_wait(), Ok(Some(_)));
        async move { done }
    })
    .await;
    assert!(stopped, "cocoon dev did not stop");
    let listen = format!("127.0.0.1:{}", 8081 + net.offset);
    let chain_dir = net.dir.join("chain");
    let _chain = spawn(
        tmp.path(),
        "chain-only",
        &[
            "chain",
            "--data-dir",
            chain_dir.to_str().expect("utf-8"),
            "--listen",
            &listen,
        ],
    );
    let up = eventually(Duration::from_secs(30), || async {
        net.chain.time().await.is_ok()
    })
    .await;
    assert!(up, "the chain did not come back");

    // Chain-only data now; the proxy's pending count is unknown.
    let b = net.cli_json(&["client", "balance"]);
    assert_eq!(b["client_running"], false);
    let c = contract(&b);
    assert_eq!(c["state"], "normal");
    assert!(c["pending_tokens"].is_null());
    let (balance, stake) = (
        c["balance_nanoton"].as_u64().expect("balance"),
        c["stake_nanoton"].as_u64().expect("stake"),
    );
    assert!(balance > stake, "{b}");
    let wallet_before = b["wallet_balance_nanoton"].as_u64().expect("wallet");

    // Withdraw: everything above the stake, at once.
    let w = net.cli_json(&["client", "withdraw"]);
    assert_eq!(
        contract(&w)["withdrawn_nanoton"].as_u64(),
        Some(balance - stake)
    );
    // Close: closing; too early a second time; after the delay the refund is forced.
    let first = net.cli_json(&["client", "close"]);
    let c = contract(&first);
    assert_eq!(c["state"], "closing", "{first}");
    let wait = c["unlock_ts"].as_u64().expect("unlock") - c["now"].as_u64().expect("now") + 2;
    let again = net.cli_json(&["client", "close"]);
    assert_eq!(contract(&again)["state"], "closing", "{again}");
    assert!(contract(&again)["refunded_nanoton"].is_null());
    let adv = http
        .post(format!("http://{listen}/api/v2/advanceTime"))
        .json(&serde_json::json!({ "seconds": wait }))
        .send()
        .await
        .expect("advance time");
    assert!(adv.status().is_success());
    let forced = net.cli_json(&["client", "close"]);
    assert_eq!(contract(&forced)["state"], "closed", "{forced}");
    assert_eq!(contract(&forced)["refunded_nanoton"].as_u64(), Some(stake));

    // The wallet got the balance and the stake back (less a few operations' fees).
    let got_back = eventually(Duration::from_secs(30), || async {
        let b = net.cli_json(&["client", "balance"]);
        let now = b["wallet_balance_nanoton"].as_u64().unwrap_or(0);
        contract(&b)["state"] == "closed" && now + TON / 10 > wallet_before + balance
    })
    .await;
    assert!(got_back, "{}", net.cli_json(&["client", "balance"]));
}
