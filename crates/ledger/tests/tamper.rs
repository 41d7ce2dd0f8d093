//! Edits made to the file behind the ledger's back (plain SQL, no re-signing) must stop `open` and name the row.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use cocoon_ledger::{inspect, Ledger, LedgerError};
use common::*;
use rusqlite::{params, Connection};

async fn filled(dir: &TempDir) -> [u8; 32] {
    let (ledger, _) = open(&dir.db()).await;
    ledger
        .add_usage(vec![
            delta(&worker(1), 100),
            delta(&worker(2), 200),
            delta(&client(3), 300),
        ])
        .await
        .unwrap();
    ledger.begin_anchor([7u8; 32]).await.unwrap();
    let pk = ledger.public_key();
    ledger.close().await.unwrap();
    pk
}

fn edit(dir: &TempDir, sql: &str, p: impl rusqlite::Params) -> usize {
    let conn = Connection::open(dir.db()).unwrap();
    conn.execute(sql, p).unwrap()
}

#[tokio::test]
async fn raised_counter_is_tampered_and_names_the_account() {
    let dir = TempDir::new("tamper-counter");
    let pk = filled(&dir).await;
    let n = edit(
        &dir,
        "UPDATE accounts SET committed_db = committed_db + 1 WHERE owner = ?1 AND party = 1",
        params![worker(2).owner],
    );
    assert_eq!(n, 1);
    let err = Ledger::open(config(&dir.db())).await.err().unwrap();
    match &err {
        LedgerError::Tampered { table, key, .. } => {
            assert_eq!(*table, "accounts");
            assert_eq!(key, &worker(2).to_string());
        }
        other => panic!("expected Tampered, got {other}"),
    }
    // The inspector reports the same row.
    let path = dir.db();
    let err = tokio::task::spawn_blocking(move || inspect(&path, pk))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains(&worker(2).owner), "{err}");
}

#[tokio::test]
async fn flipped_signature_byte_is_tampered() {
    let dir = TempDir::new("tamper-sig");
    filled(&dir).await;
    let conn = Connection::open(dir.db()).unwrap();
    let mut sig: Vec<u8> = conn
        .query_row(
            "SELECT sig FROM accounts WHERE owner = ?1",
            params![client(3).owner],
            |r| r.get(0),
        )
        .unwrap();
    sig[10] ^= 0x01;
    conn.execute(
        "UPDATE accounts SET sig = ?1 WHERE owner = ?2",
        params![sig, client(3).owner],
    )
    .unwrap();
    drop(conn);
    let err = Ledger::open(config(&dir.db())).await.err().unwrap();
    assert!(
        matches!(&err, LedgerError::Tampered { key, .. } if key == &client(3).to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn row_moved_to_another_key_is_tampered() {
    let dir = TempDir::new("tamper-swap");
    filled(&dir).await;
    // Give worker 1 the (validly signed) values of worker 2.
    edit(
        &dir,
        "UPDATE accounts SET committed_db = (SELECT committed_db FROM accounts WHERE owner = ?2 AND party = 1),
                             sig = (SELECT sig FROM accounts WHERE owner = ?2 AND party = 1)
         WHERE owner = ?1 AND party = 1",
        params![worker(1).owner, worker(2).owner],
    );
    let err = Ledger::open(config(&dir.db())).await.err().unwrap();
    assert!(
        matches!(&err, LedgerError::Tampered { key, .. } if key == &worker(1).to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn deleted_account_row_is_noticed() {
    let dir = TempDir::new("tamper-delete");
    filled(&dir).await;
    edit(
        &dir,
        "DELETE FROM anchor_snapshots WHERE owner = ?1",
        params![worker(1).owner],
    );
    edit(
        &dir,
        "DELETE FROM accounts WHERE owner = ?1",
        params![worker(1).owner],
    );
    let err = Ledger::open(config(&dir.db())).await.err().unwrap();
    assert!(matches!(err, LedgerError::Inconsistent { .. }), "{err}");
}

#[tokio::test]
async fn tampered_anchor_and_meta_rows_are_named() {
    let dir = TempDir::new("tamper-anchor");
    filled(&dir).await;
    edit(&dir, "UPDATE anchors SET status = 1", params![]);
    let err = Ledger::open(config(&dir.db())).await.err().unwrap();
    assert!(
        matches!(
            &err,
            LedgerError::Tampered {
                table: "anchors",
                ..
            }
        ),
        "{err}"
    );

    let dir = TempDir::new("tamper-snap");
    filled(&dir).await;
    edit(
        &dir,
        "UPDATE anchor_snapshots SET committed_db = 1 WHERE owner = ?1",
        params![client(3).owner],
    );
    let err = Ledger::open(config(&dir.db())).await.err().unwrap();
    assert!(
        matches!(
            &err,
            LedgerError::Tampered {
                table: "anchor_snapshots",
                ..
            }
        ),
        "{err}"
    );

    let dir = TempDir::new("tamper-meta");
    filled(&dir).await;
    edit(
        &dir,
        "UPDATE meta SET value = X'0000000000000001' WHERE key = 'db_seqno'",
        params![],
    );
    let err = Ledger::open(config(&dir.db())).await.err().unwrap();
    assert!(
        matches!(&err, LedgerError::Tampered { table: "meta", key, .. } if key == "db_seqno"),
        "{err}"
    );
}

#[tokio::test]
async fn older_signed_meta_with_newer_rows_is_inconsistent() {
    let dir = TempDir::new("tamper-oldmeta");
    let (ledger, _) = open(&dir.db()).await;
    ledger.add_usage(vec![delta(&worker(1), 1)]).await.unwrap();
    ledger.close().await.unwrap();
    // Keep the validly signed meta row of seqno 1.
    let conn = Connection::open(dir.db()).unwrap();
    let (value, sig): (Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT value, sig FROM meta WHERE key = 'db_seqno'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    drop(conn);
    let (ledger, _) = open(&dir.db()).await;
    ledger.add_usage(vec![delta(&worker(1), 1)]).await.unwrap();
    ledger.close().await.unwrap();
    edit(
        &dir,
        "UPDATE meta SET value = ?1, sig = ?2 WHERE key = 'db_seqno'",
        params![value, sig],
    );
    let err = Ledger::open(config(&dir.db())).await.err().unwrap();
    assert!(
        matches!(
            err,
            LedgerError::Inconsistent {
                table: "accounts",
                ..
            }
        ),
        "{err}"
    );
}
