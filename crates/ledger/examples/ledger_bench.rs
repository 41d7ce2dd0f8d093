//! Ledger throughput benchmark: N tasks each add one delta per "request" in a loop, against a temp dir on
//! this disk, first durable (`synchronous=FULL`), then without fsync (`synchronous=OFF`) as the baseline.
//! First it measures the disk's own floor in the same directory: p50 of one 4 KiB write followed by
//! `fsync` at the end of a growing file, and of one 4 KiB overwrite followed by `fdatasync`.
//!
//! `cargo run -p cocoon-ledger --release --example ledger_bench -- [--tasks 256] [--secs 10] [--accounts N]
//!  [--delay-us 2000] [--dir PATH]`

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cocoon_ledger::{AccountKey, Ledger, LedgerConfig, Party, SyncMode, UsageDelta};
use hdrhistogram::Histogram;

struct Args {
    tasks: usize,
    secs: u64,
    accounts: usize,
    delay_us: u64,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        tasks: 256,
        secs: 10,
        accounts: 0,
        delay_us: 2000,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || val.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--tasks" => a.tasks = num()? as usize,
            "--secs" => a.secs = num()?,
            "--accounts" => a.accounts = num()? as usize,
            "--delay-us" => a.delay_us = num()?,
            "--dir" => a.dir = PathBuf::from(&val),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.accounts == 0 {
        a.accounts = a.tasks;
    }
    Ok(a)
}

struct Result_ {
    requests: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
    seqno: u64,
}

async fn run(args: &Args, sync: SyncMode) -> Result<Result_, Box<dyn std::error::Error>> {
    let dir = args.dir.join(format!(
        "cocoon-ledger-bench-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    let mut cfg = LedgerConfig::new(dir.join("ledger.db"), [1u8; 32]);
    cfg.sync = sync;
    cfg.max_batch_delay = Duration::from_micros(args.delay_us);
    let (ledger, _) = Ledger::open(cfg).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..args.tasks {
        let ledger = ledger.clone();
        let stop = stop.clone();
        let key = AccountKey::new(Party::Worker, format!("0:{:064x}", t % args.accounts));
        handles.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                ledger
                    .add_usage(vec![UsageDelta {
                        key: key.clone(),
                        tokens: 100,
                    }])
                    .await
                    .expect("add_usage");
                let _ = hist.record(t0.elapsed().as_micros() as u64);
                n += 1;
            }
            (n, hist)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut requests = 0;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for h in handles {
        let (n, th) = h.await?;
        requests += n;
        hist.add(th)?;
    }
    let elapsed = started.elapsed();
    let seqno = ledger.snapshot().db_seqno;
    ledger.close().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(Result_ {
        requests,
        elapsed,
        hist,
        seqno,
    })
}

/// p50 and p99 (µs) of `n` rounds of a 4 KiB write and a sync: appended + `fsync` when `append`,
/// else overwritten in place + `fdatasync`.
fn disk_floor(dir: &std::path::Path, append: bool, n: usize) -> std::io::Result<(f64, f64)> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let path = dir.join(format!("fsync-probe-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0x5au8; 4096];
    f.write_all(&vec![0u8; 64 * 4096])?;
    f.sync_all()?;
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        if append {
            f.write_all(&block)?;
            f.sync_all()?;
        } else {
            f.write_all_at(&block, (i % 64) as u64 * 4096)?;
            f.sync_data()?;
        }
        took.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    took.sort_by(f64::total_cmp);
    Ok((took[n / 2], took[n * 99 / 100]))
}

fn report(name: &str, r: &Result_) -> f64 {
    let rps = r.requests as f64 / r.elapsed.as_secs_f64();
    println!(
        "{name:<22} {:>10.0} req/s  {:>9} requests  {:>7} commits  {:>6.1} req/commit  p50 {:>7.2} ms  p99 {:>7.2} ms",
        rps,
        r.requests,
        r.seqno,
        r.requests as f64 / r.seqno.max(1) as f64,
        r.hist.value_at_quantile(0.50) as f64 / 1000.0,
        r.hist.value_at_quantile(0.99) as f64 / 1000.0,
    );
    rps
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    println!(
        "ledger_bench: {} tasks, {} accounts, {} s per mode, batch delay {} us, dir {}",
        args.tasks,
        args.accounts,
        args.secs,
        args.delay_us,
        args.dir.display()
    );
    let (append_p50, append_p99) = disk_floor(&args.dir, true, 2000)?;
    let (over_p50, over_p99) = disk_floor(&args.dir, false, 2000)?;
    println!(
        "disk floor: 4 KiB append + fsync p50 {append_p50:.0} us (p99 {append_p99:.0}); \
         4 KiB overwrite + fdatasync p50 {over_p50:.0} us (p99 {over_p99:.0})"
    );
    let durable = run(&args, SyncMode::Full).await?;
    let d = report("durable (sync=FULL)", &durable);
    let baseline = run(&args, SyncMode::Off).await?;
    let b = report("baseline (sync=OFF)", &baseline);
    println!("durable / baseline = {:.2}", d / b);
    Ok(())
}
