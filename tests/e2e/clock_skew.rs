//! Whole processes under a skewed clock: a worker or a client started with libfaketime
//! (`LD_PRELOAD`, `FAKETIME`) beside a proxy on the real clock, all on 127.0.0.1.
//!
//! Certificates start `CertOptions::DEFAULT_SKEW` (60 s) before their issuer's now, deadlines are
//! relative (`tokio::time::Instant`), and payments use the chain's time, so a node whose clock is
//! off by less than the allowance serves as usual, and one off by more is refused at the
//! handshake with a log line that names the cause on the side that refused.
//!
//! Needs libfaketime (Debian's `faketime` package, which `.ci/run` installs); where it is missing
//! the test prints a `SKIP clock_skew:` line and passes. `COCOON_LIBFAKETIME` names the library
//! when it is somewhere else.

use std::path::PathBuf;
use std::time::Duration;

use cocoon_testkit::{chat_body, chat_request, eventually, free_port};

use crate::harness::{copy_config, spawn_env, Net, Proc};

/// libfaketime's shared library, if installed.
fn libfaketime() -> Option<PathBuf> {
    let from_env = std::env::var_os("COCOON_LIBFAKETIME").map(PathBuf::from);
    let known = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ]
    .map(PathBuf::from);
    from_env.into_iter().chain(known).find(|p| p.is_file())
}

/// The environment that runs a process `offset` ahead of the real clock (e.g. "+30s", "-300s").
fn skewed(lib: &std::path::Path, offset: &str) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME".into(), offset.into()),
    ]
}

/// Starts another worker like the network's first, owned by `owner`, with `env`.
fn start_worker(net: &Net, owner: &str, env: &[(String, String)]) -> Proc {
    let dir = net.dir.path();
    let path = copy_config(
        &dir.join("worker-0.toml"),
        &dir.join(format!("{owner}.toml")),
        |cfg| {
            cfg.insert("owner_address".into(), owner.into());
            let stats = format!("127.0.0.1:{}", free_port());
            cfg.insert("stats_listen".into(), stats.into());
        },
    );
    spawn_env(dir, owner, &["worker", "--config", &path], env)
}

/// Starts another client like the network's own on a new HTTP port; returns it and its URL.
fn start_client(net: &Net, name: &str, env: &[(String, String)]) -> (Proc, String) {
    let dir = net.dir.path();
    let port = free_port();
    let path = copy_config(
        &dir.join("client.toml"),
        &dir.join(format!("{name}.toml")),
        |cfg| {
            cfg.insert("http_listen".into(), format!("127.0.0.1:{port}").into());
        },
    );
    let proc = spawn_env(dir, name, &["client", "--config", &path], env);
    (proc, format!("http://127.0.0.1:{port}"))
}

fn log_of(p: &Proc) -> String {
    std::fs::read_to_string(&p.log).unwrap_or_default()
}

/// Requests the proxy has ended on the worker owned by `owner`.
async fn served_by(net: &Net, owner: &str) -> u64 {
    let s = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    s["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["owner"] == owner)
        .map(|w| w["succeeded"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_processes_with_skewed_clocks_serve_within_the_allowance_and_are_refused_clearly_beyond(
) {
    let Some(lib) = libfaketime() else {
        eprintln!("SKIP clock_skew: libfaketime is not installed (Debian package `faketime`)");
        return;
    };
    let net = Net::builder().start("skew").await;
    let http = reqwest::Client::new();

    // A worker 30 s ahead (half the allowance): the proxy accepts it and it serves.
    let near = "e2e-worker-ahead-30s";
    let mut near_proc = start_worker(&net, near, &skewed(&lib, "+30s"));
    net.wait_workers(2, Duration::from_secs(30)).await;
    let served = eventually(Duration::from_secs(30), || async {
        let wave = net.chat_wave(4, false).await;
        assert!(
            wave.iter().all(|r| matches!(r, Ok(200))),
            "a request failed with a worker 30 s ahead: {wave:?}"
        );
        served_by(&net, near).await > 0
    })
    .await;
    if !served {
        net.dump_logs();
        panic!("the worker 30 s ahead never served");
    }

    // A worker 5 minutes ahead: its certificate starts 4 minutes in the proxy's future. The
    // proxy refuses it and says why; it is never offered.
    let far = "e2e-worker-ahead-300s";
    let far_proc = start_worker(&net, far, &skewed(&lib, "+300s"));
    let refused = eventually(Duration::from_secs(30), || async {
        log_of(&net.proxy).contains("not yet valid")
    })
    .await;
    if !refused {
        net.dump_logs();
        panic!(
            "the proxy did not say it refused a certificate from the future; worker log:\n{}",
            log_of(&far_proc)
        );
    }
    let proxy_log = log_of(&net.proxy);
    assert!(
        proxy_log
            .lines()
            .any(|l| l.contains("WARN") && l.contains("not yet valid") && l.contains("clocks")),
        "the refusal is a warning with the likely cause:\n{proxy_log}"
    );
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    let owners: Vec<&str> = stats["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["owner"].as_str())
        .collect();
    assert!(
        !owners.contains(&far),
        "a worker 5 minutes ahead was admitted: {owners:?}"
    );
    assert!(
        log_of(&far_proc).contains("dial failed"),
        "the refused worker logs its failed dials at warn"
    );

    // A client 5 minutes behind: the proxy's certificate is 4 minutes in its future, so it
    // refuses the proxy, says why, and answers its app with a clean error instead of hanging.
    let (late, late_url) = start_client(&net, "client-behind-300s", &skewed(&lib, "-300s"));
    let said = eventually(Duration::from_secs(30), || async {
        log_of(&late).contains("not yet valid")
    })
    .await;
    assert!(
        said,
        "the client 5 minutes behind did not say why: {}",
        log_of(&late)
    );
    assert!(
        log_of(&late).contains("clocks"),
        "the client's warning names the likely cause"
    );
    let r = chat_request(&http, &late_url)
        .json(&chat_body(false))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("the skewed client answers its app");
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.expect("a JSON error body");
    eprintln!("the client 5 minutes behind answered its app: {status} {body}");
    assert!(
        (500..600).contains(&status) && body["error"].is_object(),
        "expected a 5xx JSON error from the client that refuses every proxy: {status} {body}"
    );

    // The rest of the network is unaffected, and its books balance.
    let wave = net.chat_wave(4, true).await;
    assert!(
        wave.iter().all(|r| matches!(r, Ok(200))),
        "the network stopped serving beside skewed peers: {wave:?}"
    );
    near_proc.kill9();
    drop(far_proc);
    drop(late);
    net.assert_books_balance(&net.proxy_stats).await;
}
