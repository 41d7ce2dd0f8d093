//! Round trips, group commit under concurrency, the anchor flow and the inspector.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use cocoon_ledger::{inspect, AnchorStatus, Ledger, LedgerError, OnchainState};
use common::*;

#[tokio::test]
async fn round_trip_counters_survive_reopen() {
    let dir = TempDir::new("rt");
    let (ledger, snap) = open(&dir.db()).await;
    assert_eq!(snap.db_seqno, 0);
    assert!(snap.accounts.is_empty());
    let s1 = ledger
        .add_usage(vec![
            delta(&worker(1), 10),
            delta(&client(1), 25),
            delta(&worker(1), 5),
        ])
        .await
        .unwrap();
    let s2 = ledger
        .add_usage(vec![delta(&worker(1), 100)])
        .await
        .unwrap();
    assert!(s2 > s1);
    let seq = ledger
        .upsert_onchain(
            client(1),
            OnchainState {
                sc_address: "0:abc".into(),
                tokens: 7,
                balance: u128::from(u64::MAX) * 3,
                stake: 1_000_000_000,
                state: 1,
            },
        )
        .await
        .unwrap();
    assert!(seq > s2);
    let before = ledger.snapshot();
    ledger.close().await.unwrap();
    assert!(matches!(
        ledger.add_usage(vec![delta(&worker(1), 1)]).await,
        Err(LedgerError::Closed)
    ));

    let (ledger, after) = open(&dir.db()).await;
    assert_eq!(before, after);
    let w = after.account(&worker(1)).unwrap();
    assert_eq!(w.committed_db, 115);
    assert_eq!(w.committed_chain, 0);
    let c = after.account(&client(1)).unwrap();
    assert_eq!(c.committed_db, 25);
    assert_eq!(c.sc_address, "0:abc");
    assert_eq!(c.onchain_balance, u128::from(u64::MAX) * 3);
    assert_eq!(c.onchain_state, 1);
    assert_eq!(after.db_seqno, seq);
    ledger.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_64_tasks_by_1000_deltas_exact_totals() {
    let dir = TempDir::new("gc");
    let (ledger, _) = open(&dir.db()).await;
    let mut tasks = Vec::new();
    for t in 0..64usize {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for i in 0..1000u64 {
                // Each task charges its own account and a shared one, so both coalescing paths run.
                let seq = ledger
                    .add_usage(vec![delta(&worker(t), 1 + i % 3), delta(&client(0), 1)])
                    .await
                    .unwrap();
                assert!(seq >= last, "seqnos seen by one caller never go back");
                last = seq;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let per_task: u64 = (0..1000u64).map(|i| 1 + i % 3).sum();
    let snap = ledger.snapshot();
    assert!(
        snap.db_seqno < 64_000,
        "group commit must batch (seqno {})",
        snap.db_seqno
    );
    ledger.close().await.unwrap();
    let (ledger, snap) = open(&dir.db()).await;
    for t in 0..64 {
        assert_eq!(snap.account(&worker(t)).unwrap().committed_db, per_task);
    }
    assert_eq!(snap.account(&client(0)).unwrap().committed_db, 64_000);
    ledger.close().await.unwrap();
}

#[tokio::test]
async fn anchor_commits_the_value_at_the_anchor_not_later() {
    let dir = TempDir::new("anchor");
    let (ledger, _) = open(&dir.db()).await;
    let w = worker(7);
    let s_before = ledger.add_usage(vec![delta(&w, 40)]).await.unwrap();
    let anchor = ledger.begin_anchor([9u8; 32]).await.unwrap();
    assert!(anchor.seqno >= s_before, "the anchor covers earlier deltas");
    let s_after = ledger.add_usage(vec![delta(&w, 2)]).await.unwrap();
    assert!(s_after > anchor.seqno, "later deltas land after the anchor");
    assert_eq!(ledger.account(&w).unwrap().committed_chain, 0);

    ledger
        .anchor_seen(anchor.seqno, anchor.session_hash)
        .await
        .unwrap();
    let rec = ledger.account(&w).unwrap();
    assert_eq!(rec.committed_chain, 40);
    assert_eq!(rec.committed_db, 42);
    // Idempotent.
    ledger
        .anchor_seen(anchor.seqno, anchor.session_hash)
        .await
        .unwrap();
    // A wrong hash for a known seqno is a rollback signal.
    assert!(matches!(
        ledger.anchor_seen(anchor.seqno, [8u8; 32]).await,
        Err(LedgerError::RollbackDetected(_))
    ));
    // A seqno beyond anything issued, too.
    assert!(matches!(
        ledger.anchor_seen(10_000, [8u8; 32]).await,
        Err(LedgerError::RollbackDetected(_))
    ));
    ledger.close().await.unwrap();

    let (ledger, snap) = open(&dir.db()).await;
    let rec = snap.account(&w).unwrap();
    assert_eq!((rec.committed_db, rec.committed_chain), (42, 40));
    assert_eq!(snap.confirmed_anchor(), Some(anchor));
    ledger.close().await.unwrap();
}

#[tokio::test]
async fn newer_confirmation_supersedes_older_pending_anchors() {
    let dir = TempDir::new("supersede");
    let (ledger, _) = open(&dir.db()).await;
    let w = worker(1);
    ledger.add_usage(vec![delta(&w, 10)]).await.unwrap();
    let a1 = ledger.begin_anchor([1u8; 32]).await.unwrap();
    ledger.add_usage(vec![delta(&w, 10)]).await.unwrap();
    let a2 = ledger.begin_anchor([2u8; 32]).await.unwrap();
    ledger.add_usage(vec![delta(&w, 10)]).await.unwrap();
    let a3 = ledger.begin_anchor([3u8; 32]).await.unwrap();
    assert!(a1.seqno < a2.seqno && a2.seqno < a3.seqno);

    ledger.anchor_seen(a2.seqno, a2.session_hash).await.unwrap();
    assert_eq!(ledger.account(&w).unwrap().committed_chain, 20);
    // The older marker arriving late changes nothing (monotone) and is not an error.
    ledger.anchor_seen(a1.seqno, a1.session_hash).await.unwrap();
    assert_eq!(ledger.account(&w).unwrap().committed_chain, 20);
    let st: Vec<_> = ledger.snapshot().anchors.iter().map(|a| a.status).collect();
    assert_eq!(
        st,
        vec![
            AnchorStatus::Superseded,
            AnchorStatus::Confirmed,
            AnchorStatus::Pending
        ]
    );
    ledger.close().await.unwrap();
    // The pending anchor survives a restart and is still recognised.
    let (ledger, _) = open(&dir.db()).await;
    ledger.anchor_seen(a3.seqno, a3.session_hash).await.unwrap();
    assert_eq!(ledger.account(&w).unwrap().committed_chain, 30);
    ledger
        .check_chain_markers(&[(a2.seqno, a2.session_hash), (a3.seqno, a3.session_hash)])
        .unwrap();
    ledger.close().await.unwrap();
}

#[tokio::test]
async fn inputs_are_bounded() {
    let dir = TempDir::new("bounds");
    let (ledger, _) = open(&dir.db()).await;
    let long = cocoon_ledger::AccountKey::new(cocoon_ledger::Party::Client, "x".repeat(129));
    assert!(matches!(
        ledger.add_usage(vec![delta(&long, 1)]).await,
        Err(LedgerError::TooLarge { .. })
    ));
    let empty = cocoon_ledger::AccountKey::new(cocoon_ledger::Party::Client, "");
    assert!(matches!(
        ledger.add_usage(vec![delta(&empty, 1)]).await,
        Err(LedgerError::InvalidInput(_))
    ));
    let many = vec![delta(&worker(1), 1); cocoon_ledger::types::MAX_DELTAS_PER_CALL + 1];
    assert!(matches!(
        ledger.add_usage(many).await,
        Err(LedgerError::TooLarge { .. })
    ));
    // Overflow of one request fails that request only.
    ledger.add_usage(vec![delta(&worker(2), 5)]).await.unwrap();
    assert!(matches!(
        ledger
            .add_usage(vec![delta(&worker(2), i64::MAX as u64)])
            .await,
        Err(LedgerError::InvalidInput(_))
    ));
    assert_eq!(ledger.account(&worker(2)).unwrap().committed_db, 5);
    ledger.close().await.unwrap();
}

#[tokio::test]
async fn inspector_reads_and_verifies_a_closed_ledger() {
    let dir = TempDir::new("inspect");
    let (ledger, _) = open(&dir.db()).await;
    ledger
        .add_usage(vec![delta(&worker(3), 33), delta(&client(4), 44)])
        .await
        .unwrap();
    let a = ledger.begin_anchor([5u8; 32]).await.unwrap();
    let pk = ledger.public_key();
    ledger.close().await.unwrap();
    let path = dir.db();
    let report = tokio::task::spawn_blocking(move || inspect(&path, pk))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.snapshot.accounts.len(), 2);
    assert_eq!(report.snapshot.db_seqno, a.seqno);
    assert_eq!(report.snapshot_rows, 2);
    let text = report.to_string();
    assert!(text.contains("all verified"), "{text}");
    assert!(text.contains(&worker(3).owner));
    assert!(text.contains("pending"));
    // Another key is refused with a clear error.
    let path = dir.db();
    let err = tokio::task::spawn_blocking(move || inspect(&path, [1u8; 32]))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, LedgerError::WrongKey { .. }), "{err}");
}

#[tokio::test]
async fn a_file_of_another_proxy_key_is_refused() {
    let dir = TempDir::new("key");
    let (ledger, _) = open(&dir.db()).await;
    ledger.add_usage(vec![delta(&worker(1), 1)]).await.unwrap();
    ledger.close().await.unwrap();
    let mut cfg = config(&dir.db());
    cfg.signing_seed = [43u8; 32];
    let err = Ledger::open(cfg).await.err().unwrap();
    assert!(err.to_string().contains("another proxy key"), "{err}");
}

#[tokio::test]
async fn second_open_of_a_live_file_fails() {
    let dir = TempDir::new("lock");
    let (ledger, _) = open(&dir.db()).await;
    ledger.add_usage(vec![delta(&worker(1), 1)]).await.unwrap();
    assert!(Ledger::open(config(&dir.db())).await.is_err());
    ledger.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anchor_under_concurrency_covers_exactly_the_deltas_at_or_below_its_seqno() {
    let dir = TempDir::new("anchor-conc");
    let (ledger, _) = open(&dir.db()).await;
    let w = worker(9);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let ledger = ledger.clone();
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..200u64 {
                let tokens = 1 + (t * 7 + i) % 11;
                let seq = ledger.add_usage(vec![delta(&w, tokens)]).await.unwrap();
                acks.push((seq, tokens));
            }
            acks
        }));
    }
    let mut anchors = Vec::new();
    for i in 0..5u8 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        anchors.push(ledger.begin_anchor([i; 32]).await.unwrap());
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    // Confirm a middle anchor: committed_chain must be exactly the sum of deltas acknowledged at or below it.
    let a = anchors[2];
    ledger.anchor_seen(a.seqno, a.session_hash).await.unwrap();
    let want: u64 = acks
        .iter()
        .filter(|(s, _)| *s <= a.seqno)
        .map(|(_, t)| t)
        .sum();
    let total: u64 = acks.iter().map(|(_, t)| t).sum();
    let rec = ledger.account(&w).unwrap();
    assert_eq!(rec.committed_chain, want);
    assert_eq!(rec.committed_db, total);
    ledger.close().await.unwrap();
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_writer_and_keeps_the_data() {
    let dir = TempDir::new("drop");
    let (ledger, _) = open(&dir.db()).await;
    ledger.add_usage(vec![delta(&worker(1), 12)]).await.unwrap();
    drop(ledger);
    // The writer finishes and releases its exclusive lock shortly after the last handle goes.
    let mut reopened = None;
    for _ in 0..100 {
        match Ledger::open(config(&dir.db())).await {
            Ok(x) => {
                reopened = Some(x);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    let (ledger, snap) = reopened.expect("reopen after drop");
    assert_eq!(snap.account(&worker(1)).unwrap().committed_db, 12);
    ledger.close().await.unwrap();
}
