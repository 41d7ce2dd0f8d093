//! Micro-benchmark of API-key admission (docs/BENCHMARKS.md, "API keys (issue 16)"): the cost
//! per request of finding a key by its secret's hash, `admit` and `settle` (and the ticket's
//! drop), with 10 000 keys, against a plain `HashMap` lookup of the same hashes in the same run.
//!
//! `cargo run -p cocoon-client --example keys_bench [-- N]`
//!
//! Nothing here touches the network or a file.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use cocoon_client::keys::{
    hash_secret, Budget, BudgetUnit, KeyRecord, KeyRing, Limits, Period, Spend,
};

const KEYS: usize = 10_000;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let secrets: Vec<String> = (0..KEYS).map(|i| format!("sk-cocoon-{i:032}")).collect();
    let hashes: Vec<[u8; 32]> = secrets.iter().map(|s| hash_secret(s)).collect();
    let records = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let r = KeyRecord {
                id: format!("ck_{i:012x}"),
                name: format!("app{i}"),
                models: vec!["model-a".into(), "model-b".into()],
                budget: Some(Budget {
                    unit: BudgetUnit::Tokens,
                    period: Period::Month,
                    amount: u64::MAX / 2,
                }),
                limits: Limits {
                    requests_per_minute: 1_000_000,
                    tokens_per_minute: 1_000_000_000,
                    concurrent_requests: 1000,
                },
                expires_at: None,
                created_at: 0,
                revoked: false,
            };
            (r, *h, Spend::default())
        })
        .collect();
    let ring = KeyRing::build(records, None);
    let baseline: HashMap<[u8; 32], u64> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| (*h, i as u64))
        .collect();
    let now0: u64 = 1_700_000_000_000;

    // Baseline: a plain HashMap lookup by the same 32-byte hashes.
    let t = Instant::now();
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(*baseline.get(&hashes[i % KEYS]).unwrap_or(&0));
    }
    black_box(sum);
    let base = t.elapsed().as_secs_f64() / n as f64;

    // Lookup + admit + settle + drop (what a request costs the key core).
    let t = Instant::now();
    for i in 0..n {
        let now = now0 + (i as u64 / 1000);
        let Some(k) = ring.by_hash(&hashes[i % KEYS]) else {
            continue;
        };
        match ring.admit(k, "model-b", 100, 0, now) {
            Ok(mut ticket) => ticket.settle(60, 0, now),
            Err(e) => panic!("refused: {}", e.message),
        }
    }
    let admit = t.elapsed().as_secs_f64() / n as f64;

    // The same plus hashing the secret (what `authenticate` adds per request).
    let t = Instant::now();
    for i in 0..n {
        let now = now0 + (i as u64 / 1000);
        let h = hash_secret(&secrets[i % KEYS]);
        let Some(k) = ring.by_hash(&h) else {
            continue;
        };
        if let Ok(mut ticket) = ring.admit(k, "model-b", 100, 0, now) {
            ticket.settle(60, 0, now);
        }
    }
    let full = t.elapsed().as_secs_f64() / n as f64;

    println!("keys: {KEYS}, requests: {n}");
    println!("baseline HashMap lookup:          {:8.3} µs", base * 1e6);
    println!(
        "lookup + admit + settle + drop:   {:8.3} µs  ({:.1}× baseline)",
        admit * 1e6,
        admit / base
    );
    println!(
        "+ SHA-256 of the secret:          {:8.3} µs  ({:.1}× baseline)",
        full * 1e6,
        full / base
    );
}
