//! Opens N idle attested sessions to a proxy's client port and holds them, so that
//! `scripts/bench-stress.sh` can read the proxy's memory per idle connection.
//!
//! Each session is the real dial path of a client (`cocoon_node::net::dial`: TCP, PoW, RA-TLS
//! with the client's identity and policy from its `client.toml`, `tcp.connect`). It is *not*
//! authorized (no `client.connectToProxy` / short auth): the proxy holds the socket, the TLS
//! state and the session task, which is the per-connection cost we measure. The dialer pings
//! every 10 s, so the sessions stay up while held.
//!
//! Usage: `idle_conns CLIENT_TOML PROXY_ADDR COUNT HOLD_SECS`. Prints `ready N` once all dials
//! finished (N = sessions up), then holds them for HOLD_SECS and exits.
//! Nothing here is a test; it only measures.

use std::path::PathBuf;
use std::time::Duration;

use cocoon_client::ClientConfig;
use cocoon_node::net::{self, DialConfig};
use cocoon_proto::session::SessionConfig;

/// Dials in flight at once: stays under the proxy's `max_pending_handshakes` (64).
const PARALLEL: usize = 32;
/// Bounds on the arguments.
const MAX_COUNT: usize = 20_000;
const MAX_HOLD_SECS: u64 = 3_600;

#[derive(Debug, thiserror::Error)]
enum IdleError {
    #[error("usage: idle_conns CLIENT_TOML PROXY_ADDR COUNT HOLD_SECS (COUNT <= {MAX_COUNT}, HOLD_SECS <= {MAX_HOLD_SECS})")]
    Usage,
    #[error("config: {0}")]
    Config(#[from] cocoon_node::ConfigError),
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

struct Args {
    config: PathBuf,
    addr: String,
    count: usize,
    hold: Duration,
}

fn parse_args() -> Result<Args, IdleError> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [config, addr, count, hold] = a.as_slice() else {
        return Err(IdleError::Usage);
    };
    let count: usize = count.parse().map_err(|_| IdleError::Usage)?;
    let hold: u64 = hold.parse().map_err(|_| IdleError::Usage)?;
    if count > MAX_COUNT || hold > MAX_HOLD_SECS {
        return Err(IdleError::Usage);
    }
    Ok(Args {
        config: PathBuf::from(config),
        addr: addr.clone(),
        count,
        hold: Duration::from_secs(hold),
    })
}

fn main() -> Result<(), IdleError> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<(), IdleError> {
    let cfg: ClientConfig = cocoon_node::config::load_toml(&args.config)?;
    let att = cocoon_node::rotation::NodeAttestation::new(&cfg.attestation)?;
    let dial = DialConfig {
        max_pow_difficulty: cfg.max_pow_difficulty,
        tls: att.client_config(att.verifier()?)?,
        connect_timeout: cfg.connect_timeout,
        pow_timeout: Duration::from_secs(60),
        handshake_timeout: cfg.handshake_timeout,
        session: SessionConfig::dialer(),
    };
    let started = std::time::Instant::now();
    let mut held = Vec::with_capacity(args.count);
    let mut failed = 0usize;
    let mut remaining = args.count;
    while remaining > 0 {
        let batch = remaining.min(PARALLEL);
        remaining -= batch;
        let dials = (0..batch).map(|_| net::dial(&args.addr, &dial));
        for r in futures::future::join_all(dials).await {
            match r {
                Ok(s) => held.push(s),
                Err(e) => {
                    failed += 1;
                    eprintln!("dial failed: {e}");
                }
            }
        }
    }
    println!(
        "ready {} (failed {failed}, {:.1} s)",
        held.len(),
        started.elapsed().as_secs_f64()
    );
    // Hold until the time is up (the script usually ends us earlier with a signal).
    tokio::time::sleep(args.hold).await;
    let alive = held.iter().filter(|s| !s.session.is_closed()).count();
    println!("released {} ({alive} still open)", held.len());
    for s in &held {
        s.session.close();
    }
    Ok(())
}
