//! RA-TLS handshake benchmark (issue "Hardware attestation"): attested sessions per second over
//! 127.0.0.1 with proof of work off and on, printed as a markdown table.
//!
//! ```text
//! cargo run --release -p cocoon-ratls --example handshake_bench \
//!     [-- --dialers 8 --secs 5 --pow-secs 15 --pow-difficulty 20]
//! ```
//!
//! It goes through the path the roles use, not a shortcut: `cocoon_node::net::serve` (accept loop,
//! TCP_NODELAY, a task per handshake, `max_pending_handshakes` = 64 like the proxy's default) and
//! `cocoon_node::net::dial` (TCP connect → `cocoon.powSimple` solved on a blocking thread →
//! RA-TLS 1.3 with mutual certificates checked by the evidence policy → `tcp.connect` /
//! `tcp.connected`), with TLS configs from `cocoon_node::rotation::NodeAttestation` (the rotating
//! identity slot the roles present). That is why this crate's examples depend on cocoon-node; the
//! library does not.
//!
//! One process, one multi-thread tokio runtime (as many workers as cores): the accept loop and
//! `--dialers` concurrent dialers, each dialing, dropping the session and dialing again until the
//! run's time is up. A dial counts when `dial` returns a session; its latency is `dial`'s wall
//! time (so with many dialers it includes waiting for the CPU). Handshakes/s = completed dials /
//! time until the last dialer finished its last dial (dials in flight at the deadline are allowed
//! to finish, so slow PoW runs are not cut short). Four cases:
//! - evidence **insecure-software** (dev network): both sides present `InsecureSoftwareTdx`
//!   evidence and both verify the other's with `Policy::insecure_software(Dev)`, like a worker
//!   dialing a proxy on the dev network;
//! - evidence **none**: both sides present no evidence and accept with `Policy::any()`;
//!
//! each with PoW difficulty 0 (off: the challenge is still exchanged, nonce 0 answers it) and
//! `--pow-difficulty` (default 20, the proxy's default). PoW runs last `--pow-secs` because each
//! handshake takes ~2^20 SHA-256 hashes; the expected solve time on one core is measured first
//! (hash rate × 2^difficulty) so the PoW rows can be read against it.
//!
//! Hardware TDX is not here: no TD can produce a quote on this machine, and the sample quote is
//! bound to another key. Its cost per handshake is two `Policy::verify` calls on the server
//! certificate (rustls' verifier, then the verdict handed to the caller) and two on the client's;
//! see `cocoon-attest`'s `verify_bench` for what each costs cold and cached.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cocoon_node::config::{AttestationConfig, EvidenceChoice, PeerPolicyChoice};
use cocoon_node::net::{self, AcceptStats, DialConfig, ListenConfig};
use cocoon_node::rotation::NodeAttestation;
use cocoon_proto::session::SessionConfig;
use hdrhistogram::Histogram;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    dialers: usize,
    secs: f64,
    pow_secs: f64,
    pow_difficulty: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        dialers: 8,
        secs: 5.0,
        pow_secs: 15.0,
        pow_difficulty: cocoon_proto::pow::DEFAULT_DIFFICULTY,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let secs = || {
            val.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
                .ok_or_else(|| format!("{flag}: {val:?} is not in (0, 600]"))
        };
        match flag.as_str() {
            "--dialers" => {
                a.dialers = val
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| format!("--dialers: {val:?} is not in 1..=1024"))?;
            }
            "--secs" => a.secs = secs()?,
            "--pow-secs" => a.pow_secs = secs()?,
            "--pow-difficulty" => {
                a.pow_difficulty = val
                    .parse::<u32>()
                    .ok()
                    .filter(|d| *d <= cocoon_proto::pow::MAX_ACCEPTED_DIFFICULTY)
                    .ok_or_else(|| {
                        format!(
                            "--pow-difficulty: {val:?} is not in 0..={}",
                            cocoon_proto::pow::MAX_ACCEPTED_DIFFICULTY
                        )
                    })?;
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

#[derive(Clone, Copy)]
enum Evidence {
    InsecureSoftware,
    None,
}

impl Evidence {
    fn label(self) -> &'static str {
        match self {
            Evidence::InsecureSoftware => "insecure-software (dev)",
            Evidence::None => "none",
        }
    }

    fn config(self) -> AttestationConfig {
        match self {
            Evidence::InsecureSoftware => AttestationConfig::dev(
                EvidenceChoice::InsecureSoftware,
                PeerPolicyChoice::InsecureSoftware,
            ),
            Evidence::None => AttestationConfig::dev(EvidenceChoice::None, PeerPolicyChoice::Any),
        }
    }
}

struct Outcome {
    evidence: Evidence,
    pow: u32,
    handshakes: u64,
    failed_dials: u64,
    server_failed: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Outcome {
    fn per_sec(&self) -> f64 {
        self.handshakes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One case: a fresh server and client identity, an accept loop, `dialers` dialing until `secs`.
async fn run_case(
    evidence: Evidence,
    pow: u32,
    dialers: usize,
    secs: f64,
) -> Result<Outcome, BoxError> {
    let cfg = evidence.config();
    let server = NodeAttestation::new(&cfg)?;
    let client = NodeAttestation::new(&cfg)?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let stats = Arc::new(AcceptStats::default());
    let listen = ListenConfig {
        pow_difficulty: pow,
        tls: server.server_config(server.verifier()?)?,
        handshake_timeout: Duration::from_secs(30),
        session: SessionConfig::acceptor(),
        max_pending_handshakes: 64,
    };
    // The server side of each session is dropped at once: the dialer has its `tcp.connected`.
    let _serve = AbortOnDropHandle::new(tokio::spawn(net::serve(
        listener,
        listen,
        stats.clone(),
        shutdown.clone(),
        drop,
    )));
    let dial = Arc::new(DialConfig {
        max_pow_difficulty: pow,
        tls: client.client_config(client.verifier()?)?,
        connect_timeout: Duration::from_secs(5),
        pow_timeout: Duration::from_secs(300),
        handshake_timeout: Duration::from_secs(30),
        session: SessionConfig::dialer(),
    });

    // Warm-up: one dial, which must succeed, so configuration errors surface before timing.
    net::dial(&addr, &dial).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(dialers);
    for _ in 0..dialers {
        let (addr, dial, stop) = (addr.clone(), dial.clone(), stop.clone());
        tasks.push(AbortOnDropHandle::new(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                match net::dial(&addr, &dial).await {
                    Ok(session) => {
                        hist.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
                        drop(session);
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("dial failed: {e}");
                    }
                }
            }
            Ok::<_, BoxError>((hist, failed))
        })));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    let mut failed_dials = 0;
    for t in tasks {
        let (hist, failed) = t.await??;
        all.add(&hist)?;
        failed_dials += failed;
    }
    let elapsed = started.elapsed();
    Ok(Outcome {
        evidence,
        pow,
        handshakes: all.len(),
        failed_dials,
        server_failed: stats.failed.load(Ordering::Relaxed),
        elapsed,
        p50: Duration::from_nanos(all.value_at_quantile(0.50)),
        p99: Duration::from_nanos(all.value_at_quantile(0.99)),
    })
}

/// Expected single-core PoW solve time at `difficulty`: measured SHA-256 checks per second, times
/// the 2^difficulty checks a solve takes on average.
fn expected_solve(difficulty: u32) -> (f64, Duration) {
    const CHECKS: u64 = 1 << 20;
    let salt = [0x5a_u8; 16];
    let t0 = Instant::now();
    let mut hits = 0u64;
    for nonce in 0..CHECKS {
        // Difficulty 64 is (almost) never met, so every nonce costs one full check.
        hits += u64::from(cocoon_proto::pow::check(
            &salt,
            64,
            std::hint::black_box(nonce),
        ));
    }
    std::hint::black_box(hits);
    let rate = CHECKS as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    let expected = Duration::from_secs_f64(2f64.powi(difficulty as i32) / rate);
    (rate, expected)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    // rustls needs a process-wide provider for anything built without explicit details.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (rate, solve) = expected_solve(args.pow_difficulty);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for evidence in [Evidence::InsecureSoftware, Evidence::None] {
        for (pow, secs) in [(0, args.secs), (args.pow_difficulty, args.pow_secs)] {
            let out = rt.block_on(run_case(evidence, pow, args.dialers, secs))?;
            eprintln!(
                "done: evidence {}, PoW {}: {} handshakes in {:.1} s",
                out.evidence.label(),
                out.pow,
                out.handshakes,
                out.elapsed.as_secs_f64()
            );
            rows.push(out);
        }
    }
    // Let the runtime's blocking solvers and session tasks wind down before printing.
    rt.shutdown_timeout(Duration::from_secs(5));

    println!(
        "### RA-TLS handshakes over 127.0.0.1: {} concurrent dialers, one accept loop, one process",
        args.dialers
    );
    println!();
    println!(
        "| evidence | PoW bits | handshakes | seconds | handshakes/s | p50 dial | p99 dial | failed |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {} | {} | {} |",
            r.evidence.label(),
            r.pow,
            r.handshakes,
            r.elapsed.as_secs_f64(),
            r.per_sec(),
            ms(r.p50),
            ms(r.p99),
            r.failed_dials + r.server_failed
        );
    }
    println!();
    for pair in rows.chunks(2) {
        if let [off, on] = pair {
            println!(
                "- {}: PoW {} / PoW off = {:.3}× handshakes/s ({:.1} vs {:.1}); p50 dial {} vs {}.",
                off.evidence.label(),
                on.pow,
                on.per_sec() / off.per_sec().max(1e-9),
                on.per_sec(),
                off.per_sec(),
                ms(on.p50),
                ms(off.p50)
            );
        }
    }
    if let [ins, _, none, _] = rows.as_slice() {
        println!(
            "- PoW off: insecure-software / none = {:.2}× handshakes/s.",
            ins.per_sec() / none.per_sec().max(1e-9)
        );
    }
    println!(
        "- PoW {} solve, one core, expected: {} (2^{} SHA-256 checks at {:.2} M/s, measured here).",
        args.pow_difficulty,
        ms(solve),
        args.pow_difficulty,
        rate / 1e6
    );
    Ok(())
}
