//! Restoring an old copy of the ledger file: the file alone looks fine, but the chain markers and the
//! counterparties' high-water marks expose it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use cocoon_ledger::LedgerError;
use common::*;

#[tokio::test]
async fn restored_old_copy_is_detected_by_markers_and_counterparties() {
    let dir = TempDir::new("rollback");
    let backup = dir.path().join("backup.db");
    let w = worker(1);
    let mut markers = Vec::new();

    let (ledger, _) = open(&dir.db()).await;
    for round in 0..3u8 {
        ledger.add_usage(vec![delta(&w, 100)]).await.unwrap();
        let a = ledger.begin_anchor([round; 32]).await.unwrap();
        ledger.anchor_seen(a.seqno, a.session_hash).await.unwrap();
        markers.push((a.seqno, a.session_hash));
    }
    ledger.close().await.unwrap();
    copy_db(&dir.db(), &backup);
    let confirmed_in_copy = markers.len();

    // Continue: more usage, more markers on chain; the worker is told the new values.
    let (ledger, _) = open(&dir.db()).await;
    for round in 3..6u8 {
        ledger.add_usage(vec![delta(&w, 100)]).await.unwrap();
        let a = ledger.begin_anchor([round; 32]).await.unwrap();
        ledger.anchor_seen(a.seqno, a.session_hash).await.unwrap();
        markers.push((a.seqno, a.session_hash));
    }
    let told = ledger.account(&w).unwrap();
    assert_eq!((told.committed_db, told.committed_chain), (600, 600));
    ledger
        .check_chain_markers(&markers[confirmed_in_copy - 1..])
        .unwrap();
    ledger
        .check_counterparty(
            &w,
            told.committed_chain,
            told.committed_db,
            told.committed_db,
        )
        .unwrap();
    ledger.close().await.unwrap();

    // The host puts the old copy back. It verifies: every row is validly signed.
    copy_db(&backup, &dir.db());
    let (ledger, snap) = open(&dir.db()).await;
    assert_eq!(snap.account(&w).unwrap().committed_db, 300);

    // The markers since the copy's newest confirmed anchor expose it.
    let since = &markers[confirmed_in_copy - 1..];
    let err = ledger.check_chain_markers(since).unwrap_err();
    match &err {
        LedgerError::RollbackDetected(msg) => assert!(msg.contains("older copy"), "{msg}"),
        other => panic!("expected RollbackDetected, got {other}"),
    }
    // So does the worker that was told more.
    let err = ledger
        .check_counterparty(
            &w,
            told.committed_chain,
            told.committed_db,
            told.committed_db,
        )
        .unwrap_err();
    assert!(matches!(err, LedgerError::RollbackDetected(_)), "{err}");
    // And a marker the old copy never issued, fed live, is refused rather than applied.
    let (s, h) = markers[confirmed_in_copy];
    assert!(matches!(
        ledger.anchor_seen(s, h).await,
        Err(LedgerError::RollbackDetected(_))
    ));

    // Even after the restored copy advanced its seqno past the lost markers, they are "never issued".
    for _ in 0..10 {
        ledger.add_usage(vec![delta(&w, 1)]).await.unwrap();
    }
    assert!(ledger.snapshot().db_seqno > markers.last().unwrap().0);
    let err = ledger.check_chain_markers(since).unwrap_err();
    assert!(
        matches!(&err, LedgerError::RollbackDetected(m) if m.contains("never issued")),
        "{err}"
    );
    ledger.close().await.unwrap();
}
