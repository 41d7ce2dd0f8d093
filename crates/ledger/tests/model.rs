//! Property test: random sequences of usage, anchors, confirmations and reopens leave the ledger equal to a
//! simple in-memory model of the three-counter rules.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Usage(Vec<(usize, u64)>),
    Begin,
    /// Confirm the n-th issued anchor (modulo the number issued).
    Seen(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0..4usize, 0..1000u64), 1..4).prop_map(Op::Usage),
        2 => Just(Op::Begin),
        2 => (0..8usize).prop_map(Op::Seen),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    db: BTreeMap<usize, u64>,
    chain: BTreeMap<usize, u64>,
    /// Issued anchors: (seqno, hash, snapshot of db).
    anchors: Vec<(u64, [u8; 32], BTreeMap<usize, u64>)>,
    confirmed: Option<u64>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_model(ops in prop::collection::vec(op(), 1..30)) {
        let dir = TempDir::new("model");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut m = Model::default();
            let (mut ledger, _) = open(&dir.db()).await;
            let mut n = 0u8;
            for op in ops {
                match op {
                    Op::Usage(ds) => {
                        let deltas = ds.iter().map(|(a, t)| delta(&worker(*a), *t)).collect();
                        ledger.add_usage(deltas).await.unwrap();
                        for (a, t) in ds {
                            *m.db.entry(a).or_default() += t;
                        }
                    }
                    Op::Begin => {
                        n = n.wrapping_add(1);
                        let a = ledger.begin_anchor([n; 32]).await.unwrap();
                        m.anchors.push((a.seqno, a.session_hash, m.db.clone()));
                    }
                    Op::Seen(i) => {
                        if m.anchors.is_empty() {
                            continue;
                        }
                        let (seqno, hash, snap) = m.anchors[i % m.anchors.len()].clone();
                        ledger.anchor_seen(seqno, hash).await.unwrap();
                        if m.confirmed.is_none_or(|c| seqno > c) {
                            m.confirmed = Some(seqno);
                            for (a, v) in snap {
                                let c = m.chain.entry(a).or_default();
                                *c = (*c).max(v);
                            }
                        }
                    }
                    Op::Reopen => {
                        ledger.close().await.unwrap();
                        ledger = open(&dir.db()).await.0;
                    }
                }
            }
            ledger.close().await.unwrap();
            let (ledger, snap) = open(&dir.db()).await;
            for a in 0..4 {
                let rec = snap.account(&worker(a));
                assert_eq!(rec.map_or(0, |r| r.committed_db), m.db.get(&a).copied().unwrap_or(0), "db of {a}");
                assert_eq!(rec.map_or(0, |r| r.committed_chain), m.chain.get(&a).copied().unwrap_or(0), "chain of {a}");
            }
            assert_eq!(snap.confirmed_anchor().map(|a| a.seqno), m.confirmed);
            let markers: Vec<_> = m.anchors.iter().map(|(s, h, _)| (*s, *h)).collect();
            ledger.check_chain_markers(&markers).unwrap();
            ledger.close().await.unwrap();
        });
    }
}
