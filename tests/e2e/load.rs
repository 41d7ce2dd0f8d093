//! Load one proxy holds: many streams at once, each costing the proxy a bounded amount of memory
//! and no file descriptor of its own (streams are multiplexed over the attested sessions).
//!
//! Memory is a bound that tells a leak or a per-stream buffer blow-up apart from allocator noise;
//! the measured figures and the peak a release build holds are in docs/BENCHMARKS.md
//! (`scripts/bench-stress.sh`, parts 3 and 5).

use std::time::{Duration, Instant};

use cocoon_testkit::{chat_body, chat_request};

use crate::harness::Net;

/// Streams held at once: below the proxy's default 1 000 requests per client.
const STREAMS: usize = 800;
/// Generous bound on the proxy's resident memory per active stream (measured: 4–7 KiB).
const MAX_KIB_PER_STREAM: u64 = 64;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_holds_800_concurrent_streams_with_bounded_memory_and_no_fd_per_stream() {
    // Each stream lasts ~12 s (12 chunks a second apart), so all of them are open at once.
    let net = Net::builder()
        .workers(2)
        .mock_tokens(12)
        .mock_delay_ms(1000)
        .max_active_requests(1000)
        .start("streams")
        .await;
    let pid = net.proxy.child.id();
    let (rss0, fds0) = (rss_kib(pid), open_fds(pid));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client");
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..STREAMS {
        let (http, base) = (http.clone(), net.base.clone());
        streams.spawn(async move {
            let r = chat_request(&http, &base)
                .json(&chat_body(true))
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            let body = r.text().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.trim_end().ends_with("data: [DONE]")))
        });
    }
    // Sample the proxy until it holds every stream at once.
    let stats = format!("{}/jsonstats", net.proxy_stats);
    let started = Instant::now();
    let (mut peak, mut at_peak) = (0u64, (rss0, fds0));
    while started.elapsed() < Duration::from_secs(60) {
        let running = net.json(&stats).await["queries"]["running"]
            .as_u64()
            .unwrap_or(0);
        if running > peak {
            peak = running;
            at_peak = (rss_kib(pid), open_fds(pid));
        }
        if running == STREAMS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let held_after = started.elapsed();
    let mut ok = 0;
    while let Some(r) = streams.join_next().await {
        match r.expect("stream task") {
            Ok((200, true)) => ok += 1,
            other => panic!("a stream did not complete: {other:?}"),
        }
    }
    let (rss1, fds1) = at_peak;
    let per_stream = rss1.saturating_sub(rss0) / STREAMS as u64;
    eprintln!(
        "proxy held {peak} streams at once ({held_after:?} after the first was sent): RSS {rss0} -> {rss1} KiB ({per_stream} KiB per stream), fds {fds0} -> {fds1}; {ok} completed with [DONE]"
    );
    assert_eq!(
        peak, STREAMS as u64,
        "the proxy never held every stream at once"
    );
    assert_eq!(ok, STREAMS);
    assert!(
        per_stream <= MAX_KIB_PER_STREAM,
        "the proxy's memory grew by {per_stream} KiB per stream ({rss0} -> {rss1} KiB)"
    );
    assert!(
        fds1 <= fds0 + 8,
        "the proxy opened descriptors per stream: {fds0} -> {fds1}"
    );
    net.assert_books_balance(&net.proxy_stats).await;
}

/// `Max open files` (soft, hard) of a running process, from /proc.
fn open_files_limit(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut v = line["Max open files".len()..].split_whitespace();
    Some((v.next()?.to_string(), v.next()?.to_string()))
}

/// Started with the common default soft limit of 256 open files, the binary raises its own soft
/// limit to the hard one: a proxy is not held to a few hundred connections by its environment.
#[test]
fn the_binary_raises_its_open_files_limit_to_the_hard_limit() {
    let port = cocoon_testkit::free_port();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 256 && exec {} mock-engine --listen 127.0.0.1:{port}",
            env!("CARGO_BIN_EXE_cocoon")
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let started = Instant::now();
    let mut seen = None;
    while started.elapsed() < Duration::from_secs(20) {
        // Once the listener is up, main() has long since raised the limit.
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            seen = open_files_limit(pid);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let (soft, hard) = seen.expect("the mock engine never listened");
    assert_ne!(soft, "256", "the soft limit was left at 256");
    if hard == "unlimited" {
        assert_eq!(soft, (1u64 << 20).to_string());
    } else {
        assert_eq!(soft, hard, "soft limit {soft}, hard {hard}");
    }
}
