//! The canary test of the sealed path (docs/PRIVACY.md): on real processes, requests whose
//! prompts carry random canaries, answered by the mock engine with another canary (it echoes the
//! word after `ECHO:` reversed, `cocoon_engine::mock::echo_of`), must reach the app whole over
//! `X-Cocoon-Path: sealed` while no canary can be found anywhere the proxy keeps bytes: its
//! memory (every readable region of `/proc/<pid>/mem`), its log, and every file it holds open.
//!
//! Two controls keep the scan from passing vacuously: the worker, which opens the requests, must
//! hold the prompt canaries in its memory; and the same proxy, once a second client with
//! `[privacy] sealed = "off"` sent it requests in clear, must hold those canaries.
//!
//! Reading another process's memory needs ptrace access (same uid, and Yama's `ptrace_scope`
//! at most 1 for a parent reading its child): the processes are this test's children. If the
//! memory cannot be read the test fails, it never skips.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cocoon_testkit::{eventually, free_port};

use crate::harness::{copy_config, spawn, Net, Proc};

/// Largest readable region scanned (bigger ones are address-space reservations).
const MAX_REGION: u64 = 1 << 30;
/// Most bytes read from one process.
const MAX_TOTAL: u64 = 4 << 30;
/// Most bytes read from one file.
const MAX_FILE: u64 = 256 << 20;
/// Read size.
const CHUNK: usize = 1 << 20;

/// 32 random hex characters.
fn canary() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// One request's canaries: in the prompt, the word echoed, and what the answer carries.
struct Canaries {
    prompt: String,
    echo: String,
    answer: String,
}

impl Canaries {
    fn new() -> Self {
        let echo = canary();
        Self {
            prompt: canary(),
            answer: echo.chars().rev().collect(),
            echo,
        }
    }

    fn all(&self) -> [&str; 3] {
        [&self.prompt, &self.echo, &self.answer]
    }
}

/// Sends one chat completion carrying `c`; checks the answer echoes it and returns the path the
/// client says it took (`X-Cocoon-Path`).
async fn send(http: &reqwest::Client, base: &str, c: &Canaries, stream: bool) -> String {
    let body = serde_json::json!({
        "model": "mock",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a canary."},
            {"role": "user", "content": format!("secret {} ECHO:{}", c.prompt, c.echo)},
        ],
    });
    let r = cocoon_testkit::post_chat(http, base, &body).await;
    let status = r.status();
    let path = r
        .headers()
        .get("x-cocoon-path")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_string();
    let text = r.text().await.expect("answer body");
    assert!(status.is_success(), "{status}: {text}");
    assert!(
        text.contains(&c.answer),
        "the answer does not echo the canary {}: {text}",
        c.answer
    );
    path
}

/// What a scan of one process's memory read.
#[derive(Debug, Default)]
struct MemScan {
    regions: usize,
    skipped: usize,
    failed: usize,
    bytes: u64,
    /// The needles found (by index).
    found: BTreeSet<usize>,
}

/// Scans every readable region of process `pid` for `needles` (bounded: [`MAX_REGION`],
/// [`MAX_TOTAL`]). Regions mapped read-only from a file (code and constants of the binary and its
/// libraries: the bytes of files built here, not of any traffic) are skipped; regions that cannot
/// be read (e.g. `[vvar]`) are counted as failed. Panics if nothing could be read at all.
fn scan_memory(pid: u32, needles: &[&str]) -> MemScan {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/maps: {e}"));
    let mem = File::open(format!("/proc/{pid}/mem")).unwrap_or_else(|e| {
        panic!(
            "cannot open /proc/{pid}/mem ({e}): this test needs ptrace access to its own child \
             processes (same uid; /proc/sys/kernel/yama/ptrace_scope at most 1)"
        )
    });
    let longest = needles.iter().map(|n| n.len()).max().unwrap_or(1);
    let mut scan = MemScan::default();
    let mut buf = vec![0u8; CHUNK + longest];
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("");
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        let file_backed = path.starts_with('/');
        if !perms.starts_with('r') || (file_backed && !perms[1..].starts_with('w')) {
            scan.skipped += 1;
            continue;
        }
        if end - start > MAX_REGION || scan.bytes + (end - start) > MAX_TOTAL {
            scan.skipped += 1;
            continue;
        }
        // Read in chunks, keeping the last `longest - 1` bytes so no needle is cut in two.
        let mut carry = 0usize;
        let mut at = start;
        let mut ok = false;
        while at < end {
            let want = usize::try_from((end - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            match mem.read_at(&mut buf[carry..carry + want], at) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    ok = true;
                    scan.bytes += n as u64;
                    let window = &buf[..carry + n];
                    for (i, needle) in needles.iter().enumerate() {
                        if memchr::memmem::find(window, needle.as_bytes()).is_some() {
                            scan.found.insert(i);
                        }
                    }
                    let keep = (longest - 1).min(window.len());
                    let from = window.len() - keep;
                    buf.copy_within(from..from + keep, 0);
                    carry = keep;
                    at += n as u64;
                }
            }
        }
        if ok {
            scan.regions += 1;
        } else {
            scan.failed += 1;
        }
    }
    assert!(
        scan.regions > 0 && scan.bytes > 0,
        "read nothing of process {pid}'s memory ({scan:?}): this test needs ptrace access to its \
         own child processes"
    );
    scan
}

/// The files a process keeps bytes in: its log, every regular file it holds open, and the
/// proxy's ledger and payment key where configured and present (relative to its working
/// directory), with SQLite's `-wal` and `-shm` companions.
fn files_of(p: &Proc, config: &Path) -> Vec<PathBuf> {
    let pid = p.pid();
    let mut files = vec![p.log.clone()];
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in dir.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.is_file() {
                    files.push(target);
                }
            }
        }
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    let cfg: toml::Table = std::fs::read_to_string(config)
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default();
    for key in ["ledger_path", "payment_key_file"] {
        if let Some(v) = cfg.get(key).and_then(toml::Value::as_str) {
            for suffix in ["", "-wal", "-shm"] {
                let path = cwd.join(format!("{v}{suffix}"));
                if path.is_file() {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

/// The needles found in `files` (each read up to [`MAX_FILE`]); returns them and the bytes read.
fn scan_files(files: &[PathBuf], needles: &[&str]) -> (BTreeSet<usize>, u64) {
    let mut found = BTreeSet::new();
    let mut bytes = 0;
    for f in files {
        let mut data = Vec::new();
        if let Ok(file) = File::open(f) {
            let _ = file.take(MAX_FILE).read_to_end(&mut data);
        }
        bytes += data.len() as u64;
        for (i, needle) in needles.iter().enumerate() {
            if memchr::memmem::find(&data, needle.as_bytes()).is_some() {
                found.insert(i);
            }
        }
    }
    (found, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_of_a_sealed_request_reaches_the_proxy_and_the_scanner_finds_clear_ones() {
    let net = Net::builder().start("canary").await;
    let http = reqwest::Client::new();

    // Sealed (the harness's test network: `[privacy] sealed` defaults to `preferred`).
    let sealed: Vec<Canaries> = (0..6).map(|_| Canaries::new()).collect();
    for (i, c) in sealed.iter().enumerate() {
        let path = send(&http, &net.base, c, i % 2 == 1).await;
        assert_eq!(path, "sealed", "request {i} was not sealed");
    }
    let needles: Vec<&str> = sealed.iter().flat_map(Canaries::all).collect();

    let proxy_mem = scan_memory(net.proxy.pid(), &needles);
    let proxy_files = files_of(&net.proxy, &net.proxy_config());
    let (in_files, file_bytes) = scan_files(&proxy_files, &needles);
    eprintln!(
        "proxy (pid {}): {} regions, {} bytes of memory read ({} skipped, {} unreadable); {} files, {file_bytes} bytes: {proxy_files:?}",
        net.proxy.pid(),
        proxy_mem.regions,
        proxy_mem.bytes,
        proxy_mem.skipped,
        proxy_mem.failed,
        proxy_files.len()
    );
    let leaked: Vec<&str> = proxy_mem
        .found
        .iter()
        .chain(&in_files)
        .map(|&i| needles[i])
        .collect();
    assert!(
        leaked.is_empty(),
        "the proxy holds canaries of sealed requests: {leaked:?} (memory: {:?}, files: {:?})",
        proxy_mem.found,
        in_files
    );
    assert!(
        proxy_files.contains(&net.proxy.log),
        "the proxy's log was not scanned"
    );

    // Control 1: the worker opened every request, so its memory holds the prompt canaries.
    let worker_mem = scan_memory(net.workers[0].pid(), &needles);
    // `needles` holds each request's three canaries in turn, the prompt's first.
    let prompts_found = (0..sealed.len())
        .filter(|i| worker_mem.found.contains(&(3 * i)))
        .count();
    eprintln!(
        "worker (pid {}): {} bytes read; canaries found {} of {} (prompt canaries {prompts_found} of {})",
        net.workers[0].pid(),
        worker_mem.bytes,
        worker_mem.found.len(),
        needles.len(),
        sealed.len()
    );
    assert!(
        prompts_found > 0,
        "the scanner found no prompt canary in the worker, which decrypts them: {worker_mem:?}"
    );

    // Control 2: a second client on the same network that never seals; the same proxy now
    // relays prompts and answers in clear, and the same scan must find them.
    let listen = format!("127.0.0.1:{}", free_port());
    let config = copy_config(
        &net.dir.path().join("client.toml"),
        &net.dir.path().join("client-clear.toml"),
        |cfg| {
            cfg.insert("http_listen".into(), listen.clone().into());
            if let Some(toml::Value::Table(privacy)) = cfg.get_mut("privacy") {
                privacy.insert("sealed".into(), "off".into());
            }
        },
    );
    let _clear_client = spawn(
        net.dir.path(),
        "client-clear",
        &["client", "--config", &config],
    );
    let base = format!("http://{listen}");
    let up = eventually(Duration::from_secs(20), || {
        let url = format!("{base}/v1/models");
        async move {
            let Ok(r) = reqwest::get(url).await else {
                return false;
            };
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            v["data"].as_array().is_some_and(|d| !d.is_empty())
        }
    })
    .await;
    assert!(up, "the second client did not come up");
    let clear: Vec<Canaries> = (0..6).map(|_| Canaries::new()).collect();
    for (i, c) in clear.iter().enumerate() {
        let path = send(&http, &base, c, i % 2 == 1).await;
        assert_eq!(path, "clear", "request {i} of the `off` client");
    }
    let clear_needles: Vec<&str> = clear.iter().flat_map(Canaries::all).collect();
    let control = scan_memory(net.proxy.pid(), &clear_needles);
    eprintln!(
        "proxy after clear requests: {} bytes read; clear canaries found {} of {}",
        control.bytes,
        control.found.len(),
        clear_needles.len()
    );
    assert!(
        !control.found.is_empty(),
        "the scanner found no canary of a request the proxy relayed in clear: it cannot be trusted"
    );
    // And still none of the sealed ones.
    assert!(scan_memory(net.proxy.pid(), &needles).found.is_empty());
}
