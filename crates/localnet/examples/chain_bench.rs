//! Local chain benchmark: throughput and latency of `cocoon-localnet` on one core, printed as markdown.
//!
//! ```text
//! cargo run --release -p cocoon-localnet --example chain_bench [-- --secs 3 --dir /path/on/the/disk]
//! ```
//!
//! What it measures (every number is wall time on this machine, one input at a time, nothing in parallel):
//! - (a) wallet v4r2 transfers: signed external messages (real CHKSIGNU in the wallet's code), one
//!   0.001 TON transfer each to a fixed address, so each input is 2 transactions (wallet, destination). Messages are signed before the clock starts; only execution (and logging) is timed.
//! - (b) signed charges: `ext_client_charge_signed` on the scenario's client contract, deployed by
//!   replaying `contracts/tests/scenario-full-cycle.json` up to its first charge. Each charge is an injected
//!   internal message from the scenario's relayer carrying a proxy-signed envelope (`ProxySigner`, the
//!   scenario's proxy key) with cumulative tokens 1, 2, 3, ...; it causes 3 transactions (client, the
//!   1-nanoTON report at the proxy, the excesses at the relayer). Every charge must exit 0.
//! - (c) get-method latency p50/p99: the client's, the root's and the wallet's getters.
//! - (d) the full-cycle scenario (40 injected messages, about 100 transactions) replayed from an empty chain.
//! - (e) the disk's floor: append 1 KiB + `fdatasync` in the data dir, what each persistent input waits for
//!   (the persistent numbers move with it: the disk is shared with whatever else runs on the machine).
//!
//! Three paths: `Ledger` (the synchronous executor, no node around it), `Localnet` in memory (the node:
//! mutex + `spawn_blocking` on a current-thread runtime, as the HTTP server and in-process users see it),
//! and `Localnet` persistent (every input appended to the log and fsynced before it is acknowledged, a
//! snapshot every `SNAPSHOT_EVERY` inputs, in a temp dir on the disk of `--dir`).
//!
//! Each measurement runs until its time budget (`--secs`) is spent or its count cap is reached, so the
//! whole program stays bounded (about a minute at the default). It changes nothing in the library.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use cocoon_localnet::ledger::{internal_message, Ledger, TxSummary};
use cocoon_localnet::node::FAUCET_ADDRESS;
use cocoon_localnet::Localnet;
use cocoon_ton::cells::{decode_boc_base64, encode_boc, state_init, MAX_BOC_BYTES};
use cocoon_ton::contracts::{ClientData, RootData};
use cocoon_ton::payments::{PaymentPayload, ProxySigner, SignedKind};
use cocoon_ton::wallet::{Phrase, Transfer, Wallet};
use cocoon_ton::{Chain, StackEntry, TonAddress};
use serde_json::Value;
use tycho_types::cell::{Cell, CellBuilder};

const SCENARIO: &str = include_str!("../../../contracts/tests/scenario-full-cycle.json");
/// The proxy key seed of the contracts' sandbox fixture (`proxyKeys()` in tests/lib/cocoon.mjs: the text
/// zero-padded to 32 bytes); the scenario's client trusts its public key.
const PROXY_SEED_TEXT: &[u8] = b"cocoon-proxy-key";
const PHRASE: &str = "fancy carpet hello mandate penalty trial consider property top vicious exit rebuild tragic profit urban major total month holiday sudden rib gather media vicious";
const TON: u128 = 1_000_000_000;
/// Chain time for the wallet runs (fixed, so runs are comparable).
const NOW: u32 = 1_760_000_000;
/// Messages are signed in batches of this size between timed runs.
const BATCH: usize = 500;
/// Count caps (the time budget usually stops first).
const MAX_INPUTS: usize = 200_000;
const MAX_GETS: usize = 20_000;
const MAX_CYCLES: usize = 200;

struct Args {
    secs: f64,
    dir: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        secs: 3.0,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| anyhow!("{k} needs a value"))?;
        match k.as_str() {
            "--secs" => {
                a.secs = v.parse().context("--secs")?;
                if !(0.1..=600.0).contains(&a.secs) {
                    bail!("--secs must be 0.1..=600");
                }
            }
            "--dir" => a.dir = PathBuf::from(v),
            other => bail!("unknown argument {other} (use --secs N, --dir PATH)"),
        }
    }
    Ok(a)
}

/// One row of the output table.
struct Row {
    what: String,
    path: &'static str,
    n: usize,
    result: String,
}

/// Which of the three paths a full-cycle run uses.
enum Mode {
    Ledger,
    Memory,
    Persistent(PathBuf),
}

/// Where inputs go: the three paths share one driver.
enum Target {
    Ledger(Box<Ledger>),
    Node {
        net: Localnet,
        rt: tokio::runtime::Runtime,
    },
}

impl Target {
    fn ledger() -> anyhow::Result<Self> {
        Ok(Self::Ledger(Box::new(Ledger::with_default_config(NOW)?)))
    }

    fn node(persistent: Option<&PathBuf>) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let net = match persistent {
            Some(dir) => Localnet::open(dir)?,
            None => Localnet::in_memory()?,
        };
        Ok(Self::Node { net, rt })
    }

    fn external(&mut self, msg: Cell, now: u32) -> anyhow::Result<Vec<TxSummary>> {
        Ok(match self {
            Self::Ledger(l) => l.execute_external(msg, now)?,
            Self::Node { net, rt } => {
                net.set_time(now);
                rt.block_on(net.send_external_boc(encode_boc(&msg)))?
            }
        })
    }

    fn internal(&mut self, msg: Cell, now: u32) -> anyhow::Result<Vec<TxSummary>> {
        Ok(match self {
            Self::Ledger(l) => l.execute_internal(msg, now)?,
            Self::Node { net, rt } => {
                net.set_time(now);
                rt.block_on(net.send_internal(msg))?
            }
        })
    }

    fn get(&self, addr: &TonAddress, method: &str, now: u32) -> anyhow::Result<Vec<StackEntry>> {
        let r = match self {
            Self::Ledger(l) => l.run_get_method(addr, method, vec![], now)?,
            Self::Node { net, rt } => rt.block_on(net.run_get_method(addr, method, vec![]))?,
        };
        if !r.success() {
            bail!("{method} exited {}", r.exit_code);
        }
        Ok(r.stack)
    }
}

fn addr(v: &Value) -> anyhow::Result<TonAddress> {
    v.as_str()
        .ok_or_else(|| anyhow!("address is not a string"))?
        .parse()
        .map_err(|e| anyhow!("bad address: {e:?}"))
}

fn field<'a>(v: &'a Value, k: &str) -> anyhow::Result<&'a str> {
    v[k].as_str()
        .ok_or_else(|| anyhow!("missing string field {k}"))
}

/// One scenario step as (message cell, now, expected exit codes on the Cocoon contracts).
struct Step {
    name: String,
    now: u32,
    msg: Cell,
}

fn scenario_steps(s: &Value) -> anyhow::Result<Vec<Step>> {
    let steps = s["steps"]
        .as_array()
        .ok_or_else(|| anyhow!("scenario has no steps"))?;
    steps
        .iter()
        .map(|step| {
            let m = &step["message"];
            let body = decode_boc_base64(field(m, "body")?, MAX_BOC_BYTES)?;
            let init = if m["init"].is_null() {
                None
            } else {
                let code = decode_boc_base64(field(&m["init"], "code")?, MAX_BOC_BYTES)?;
                let data = decode_boc_base64(field(&m["init"], "data")?, MAX_BOC_BYTES)?;
                Some(state_init(code, data))
            };
            let value: u128 = field(m, "value")?.parse()?;
            let bounce = m["bounce"].as_bool().unwrap_or(true);
            let msg = internal_message(
                &addr(&m["src"])?,
                &addr(&m["dest"])?,
                value,
                bounce,
                init.as_ref(),
                &body,
            )?;
            let now = step["now"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| anyhow!("bad now"))?;
            Ok(Step {
                name: field(step, "name")?.to_string(),
                now,
                msg,
            })
        })
        .collect()
}

fn fmt_rate(n: usize, d: Duration) -> String {
    let per_s = n as f64 / d.as_secs_f64().max(1e-9);
    if per_s >= 100.0 {
        format!("{:.0}", per_s)
    } else {
        format!("{:.1}", per_s)
    }
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1_000.0)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// (a) Wallet v4r2 transfers. Returns (inputs, transactions, elapsed).
fn bench_wallet(t: &mut Target, w: &Wallet, secs: f64) -> anyhow::Result<(usize, usize, Duration)> {
    let dest = TonAddress::new(0, [0x42; 32]);
    let fund = internal_message(
        &FAUCET_ADDRESS,
        &w.address(),
        1_000_000 * TON,
        false,
        None,
        &CellBuilder::new().build()?,
    )?;
    t.internal(fund, NOW)?;
    let transfer = |value| Transfer {
        dest,
        value,
        bounce: false,
        body: None,
        state_init: None,
    };
    // seqno 0 deploys the wallet.
    let deploy = w.external_transfer(0, NOW + 1_000_000, &[transfer(TON)], true)?;
    t.external(deploy, NOW)?;

    let (mut inputs, mut txs, mut elapsed) = (0usize, 0usize, Duration::ZERO);
    let mut seqno = 1u32;
    while elapsed.as_secs_f64() < secs && inputs < MAX_INPUTS {
        let batch = (0..BATCH)
            .map(|i| {
                w.external_transfer(
                    seqno + i as u32,
                    NOW + 1_000_000,
                    &[transfer(TON / 1_000)],
                    false,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        seqno += BATCH as u32;
        let start = Instant::now();
        for m in batch {
            let r = t.external(m, NOW)?;
            if r.first().and_then(|s| s.exit_code) != Some(0) {
                bail!("wallet transfer failed: {:?}", r.first());
            }
            txs += r.len();
            inputs += 1;
            if start.elapsed().as_secs_f64() + elapsed.as_secs_f64() >= secs {
                break;
            }
        }
        elapsed += start.elapsed();
    }
    Ok((inputs, txs, elapsed))
}

/// The scenario's client, deployed by replaying the steps before the first charge.
struct ChargeSetup {
    client: TonAddress,
    relayer: TonAddress,
    root: TonAddress,
    now: u32,
    value: u128,
}

fn deploy_client(t: &mut Target, s: &Value, steps: &[Step]) -> anyhow::Result<ChargeSetup> {
    let first_charge = steps
        .iter()
        .position(|st| st.name.contains("charge_signed"))
        .ok_or_else(|| anyhow!("scenario has no charge step"))?;
    for st in &steps[..first_charge] {
        t.internal(st.msg.clone(), st.now)?;
    }
    let charge = &s["steps"][first_charge]["message"];
    Ok(ChargeSetup {
        client: addr(&s["accounts"]["client"])?,
        relayer: addr(&s["accounts"]["relayer"])?,
        root: addr(&s["accounts"]["root"])?,
        now: steps[first_charge].now,
        value: field(charge, "value")?.parse()?,
    })
}

fn proxy_signer(s: &Value) -> anyhow::Result<ProxySigner> {
    let mut seed = [0u8; 32];
    seed[..PROXY_SEED_TEXT.len()].copy_from_slice(PROXY_SEED_TEXT);
    let signer = ProxySigner::from_seed(&seed)?;
    if hex::encode(signer.public_key()) != field(s, "proxyPublicKey")? {
        bail!("the fixture's proxy seed does not give the scenario's proxy key");
    }
    Ok(signer)
}

/// (b) Signed charges on the deployed client. Returns (inputs, transactions, elapsed).
fn bench_charges(
    t: &mut Target,
    setup: &ChargeSetup,
    signer: &ProxySigner,
    secs: f64,
) -> anyhow::Result<(usize, usize, Duration)> {
    let (mut inputs, mut txs, mut elapsed) = (0usize, 0usize, Duration::ZERO);
    let mut tokens = 0u64;
    while elapsed.as_secs_f64() < secs && inputs < MAX_INPUTS {
        let batch = (0..BATCH)
            .map(|_| {
                tokens += 1;
                let payload = PaymentPayload {
                    kind: SignedKind::Charge,
                    query_id: tokens,
                    new_tokens: tokens,
                    expected_address: setup.client,
                };
                let body = signer.sign(payload, setup.relayer)?.to_body()?;
                Ok(internal_message(
                    &setup.relayer,
                    &setup.client,
                    setup.value,
                    true,
                    None,
                    &body,
                )?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let start = Instant::now();
        for m in batch {
            let r = t.internal(m, setup.now)?;
            if r.first().and_then(|s| s.exit_code) != Some(0) {
                bail!("charge {} failed: {:?}", inputs + 1, r.first());
            }
            txs += r.len();
            inputs += 1;
            if start.elapsed().as_secs_f64() + elapsed.as_secs_f64() >= secs {
                break;
            }
        }
        elapsed += start.elapsed();
    }
    // The contract really counted them.
    let data = ClientData::from_stack(&t.get(&setup.client, ClientData::METHOD, setup.now)?)?;
    if data.tokens_used != inputs as u64 {
        bail!(
            "client counted {} tokens after {inputs} charges",
            data.tokens_used
        );
    }
    Ok((inputs, txs, elapsed))
}

/// (c) Get-method latency: sorted samples.
fn bench_get(
    t: &Target,
    a: &TonAddress,
    method: &str,
    now: u32,
    secs: f64,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline && samples.len() < MAX_GETS {
        let start = Instant::now();
        let stack = t.get(a, method, now)?;
        samples.push(start.elapsed());
        if stack.is_empty() {
            bail!("{method} returned an empty stack");
        }
    }
    samples.sort();
    Ok(samples)
}

/// (d) The full cycle from an empty chain; returns (create, replay) durations of each run.
fn bench_cycle(steps: &[Step], mode: Mode, secs: f64) -> anyhow::Result<Vec<(Duration, Duration)>> {
    let mut runs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let max = if matches!(mode, Mode::Persistent(_)) {
        20
    } else {
        MAX_CYCLES
    };
    while (runs.is_empty() || Instant::now() < deadline) && runs.len() < max {
        let dir = match &mode {
            Mode::Persistent(d) => Some(d.join(format!("cycle-{}", runs.len()))),
            _ => None,
        };
        let t0 = Instant::now();
        let mut t = match (&mode, &dir) {
            (Mode::Ledger, _) => Target::ledger()?,
            (_, d) => Target::node(d.as_ref())?,
        };
        let created = t0.elapsed();
        let t1 = Instant::now();
        let mut txs = 0;
        for st in steps {
            txs += t
                .internal(st.msg.clone(), st.now)
                .with_context(|| st.name.clone())?
                .len();
        }
        let replay = t1.elapsed();
        if txs < 50 {
            bail!("full cycle caused only {txs} transactions");
        }
        runs.push((created, replay));
        drop(t);
        if let Some(d) = dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    Ok(runs)
}

/// Append + fsync latency on the disk of `path`: sorted samples.
fn bench_fsync(path: &std::path::Path, secs: f64) -> anyhow::Result<Vec<Duration>> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| path.display().to_string())?;
    let line = [b'x'; 1024];
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline && samples.len() < MAX_GETS {
        let start = Instant::now();
        f.write_all(&line)?;
        f.sync_data()?;
        samples.push(start.elapsed());
    }
    samples.sort();
    Ok(samples)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let s: Value = serde_json::from_str(SCENARIO)?;
    let steps = scenario_steps(&s)?;
    let signer = proxy_signer(&s)?;
    let wallet = Wallet::from_phrase(&Phrase::parse(PHRASE)?)?;
    let tmp = args
        .dir
        .join(format!("cocoon-chain-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
    eprintln!(
        "chain_bench: budget {}s per measurement, persistent data in {}",
        args.secs,
        tmp.display()
    );

    let mut rows = Vec::new();
    let paths: [(&'static str, Option<PathBuf>); 3] = [
        ("Ledger (in memory)", None),
        ("Localnet (in memory)", None),
        ("Localnet (persistent, fsync)", Some(tmp.join("node"))),
    ];
    for (i, (path, dir)) in paths.iter().enumerate() {
        let fresh = || -> anyhow::Result<Target> {
            if i == 0 {
                Target::ledger()
            } else {
                Target::node(dir.as_ref())
            }
        };
        eprintln!("{path}: wallet transfers");
        let mut t = fresh()?;
        let (n, txs, d) = bench_wallet(&mut t, &wallet, args.secs)?;
        rows.push(Row {
            what: "(a) wallet v4r2 transfers (external, signature checked)".into(),
            path,
            n,
            result: format!(
                "**{} transfers/s** ({} tx/s)",
                fmt_rate(n, d),
                fmt_rate(txs, d)
            ),
        });
        let wallet_addr = wallet.address();
        let wallet_t = t;

        eprintln!("{path}: signed charges");
        if let Some(d) = dir {
            // A second data dir, so the charge run starts from a clean log too.
            let _ = std::fs::remove_dir_all(d.with_extension("charges"));
        }
        let mut t = if i == 2 {
            Target::node(dir.as_ref().map(|d| d.with_extension("charges")).as_ref())?
        } else {
            fresh()?
        };
        let setup = deploy_client(&mut t, &s, &steps)?;
        let (n, txs, d) = bench_charges(&mut t, &setup, &signer, args.secs)?;
        rows.push(Row {
            what: "(b) signed charges on a client contract (proxy signature checked)".into(),
            path,
            n,
            result: format!(
                "**{} charges/s** ({} tx/s)",
                fmt_rate(n, d),
                fmt_rate(txs, d)
            ),
        });

        eprintln!("{path}: get-methods");
        let gets: [(&str, &Target, TonAddress, &str); 3] = [
            ("client", &t, setup.client, ClientData::METHOD),
            ("root", &t, setup.root, RootData::METHOD),
            ("wallet", &wallet_t, wallet_addr, "seqno"),
        ];
        for (who, target, a, method) in gets {
            let samples = bench_get(target, &a, method, setup.now, args.secs / 3.0)?;
            rows.push(Row {
                what: format!("(c) get-method `{method}` ({who})"),
                path,
                n: samples.len(),
                result: format!(
                    "p50 {} / p99 {}",
                    fmt_dur(percentile(&samples, 0.50)),
                    fmt_dur(percentile(&samples, 0.99))
                ),
            });
        }
        drop(t);
        drop(wallet_t);
    }

    for (path, mode) in [
        ("Ledger (in memory)", Mode::Ledger),
        ("Localnet (in memory)", Mode::Memory),
        (
            "Localnet (persistent, fsync)",
            Mode::Persistent(tmp.join("cycles")),
        ),
    ] {
        eprintln!("{path}: full cycle");
        let runs = bench_cycle(&steps, mode, args.secs)?;
        let n = runs.len();
        let created = median(runs.iter().map(|r| r.0).collect());
        let replay = median(runs.iter().map(|r| r.1).collect());
        let total = median(runs.iter().map(|r| r.0 + r.1).collect());
        rows.push(Row {
            what: format!("(d) full-cycle scenario, {} messages", steps.len()),
            path,
            n,
            result: format!(
                "**{}** median wall (new chain {} + replay {})",
                fmt_dur(total),
                fmt_dur(created),
                fmt_dur(replay)
            ),
        });
    }
    // The disk's floor for the persistent path: one small append + fsync, as the input log does.
    eprintln!("disk: append + fsync");
    let samples = bench_fsync(&tmp.join("fsync-probe"), args.secs / 3.0)?;
    rows.push(Row {
        what: "(e) disk floor: append 1 KiB + fsync (what each persistent input waits for)".into(),
        path: "the data dir's disk",
        n: samples.len(),
        result: format!(
            "p50 {} / p99 {}",
            fmt_dur(percentile(&samples, 0.50)),
            fmt_dur(percentile(&samples, 0.99))
        ),
    });
    let _ = std::fs::remove_dir_all(&tmp);

    println!("| measurement | path | n | result |");
    println!("|---|---|---:|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r.what, r.path, r.n, r.result);
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("chain_bench: {e:#}");
        std::process::exit(1);
    }
}
