//! kill -9 in the middle of a stream of acknowledged usage: nothing acknowledged may be lost.
//!
//! The test binary doubles as the child: `crash_child` runs the writer loop only when
//! `COCOON_LEDGER_CRASH_CHILD` names a database path, printing `ack <task> <total>` after every durable
//! acknowledgement. The parent kills it at a random moment, reopens the file and compares.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CHILD_ENV: &str = "COCOON_LEDGER_CRASH_CHILD";
const TASKS: usize = 8;

#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // normal test run: nothing to do
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (ledger, snap) = open(std::path::Path::new(&path)).await;
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let ledger = ledger.clone();
            let mut total = snap.account(&worker(t)).map_or(0, |r| r.committed_db);
            handles.push(tokio::spawn(async move {
                loop {
                    let tokens = 1 + (total % 7);
                    ledger
                        .add_usage(vec![delta(&worker(t), tokens)])
                        .await
                        .unwrap();
                    total += tokens;
                    println!("ack {t} {total}");
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
}

/// The public key of the test seed, learnt from a throwaway ledger.
fn ring_public_key() -> [u8; 32] {
    let dir = TempDir::new("pk");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (ledger, snap) = open(&dir.db()).await;
        ledger.close().await.unwrap();
        snap.public_key
    })
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for round in 0..5 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(CHILD_ENV, dir.db())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Read acknowledgements on a thread; kill after a random delay once the child is producing.
        let reader = std::thread::spawn(move || {
            let mut acked: HashMap<usize, u64> = HashMap::new();
            let mut lines = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut it = line.split_whitespace();
                if it.next() != Some("ack") {
                    continue;
                }
                // A line cut by the kill may be partial: only whole numbers count.
                let (Some(t), Some(v)) = (it.next(), it.next()) else {
                    continue;
                };
                let (Ok(t), Ok(v)) = (t.parse::<usize>(), v.parse::<u64>()) else {
                    continue;
                };
                let e = acked.entry(t).or_default();
                *e = (*e).max(v);
                lines += 1;
            }
            (acked, lines)
        });
        let wait = Duration::from_millis(300 + u64::from(rand::random::<u16>() % 1200));
        let started = Instant::now();
        while started.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(20));
            if let Ok(Some(status)) = child.try_wait() {
                panic!("child exited early: {status}");
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let (acked, lines) = reader.join().unwrap();

        if round == 0 {
            // The read-only inspector copes with the WAL a crash left behind, and sees the same totals.
            let pk = ring_public_key();
            let report = cocoon_ledger::inspect(&dir.db(), pk).unwrap();
            for (t, total) in &acked {
                let durable = report
                    .snapshot
                    .account(&worker(*t))
                    .map_or(0, |r| r.committed_db);
                assert!(
                    durable >= *total,
                    "inspector: task {t} acknowledged {total}, file has {durable}"
                );
            }
        }
        let snap = rt.block_on(async {
            let (ledger, snap) = open(&dir.db()).await;
            ledger.close().await.unwrap();
            snap
        });
        for (t, total) in &acked {
            let durable = snap.account(&worker(*t)).map_or(0, |r| r.committed_db);
            assert!(
                durable >= *total,
                "round {round}: task {t} acknowledged {total} but only {durable} is durable"
            );
        }
        eprintln!(
            "round {round}: {lines} acknowledgements after {wait:?}, db seqno {}",
            snap.db_seqno
        );
    }
}
