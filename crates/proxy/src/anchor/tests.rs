use std::time::Duration;

use cocoon_sealed::merkle;

use super::*;

fn id(i: u32) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&i.to_be_bytes());
    b
}

fn periods(max: usize, keep: usize) -> Periods {
    Periods::new(Duration::from_secs(600), max, keep, false, 1_000)
}

#[test]
fn a_period_closes_on_time_with_the_merkle_root_of_its_ids_in_order() {
    let mut p = periods(10, 5);
    for i in 0..3 {
        let (closed, r) = p.push(id(i), 1_000 + u64::from(i));
        assert!(closed.is_none());
        assert_eq!(r, Ok(()));
    }
    assert_eq!(
        p.proof(&id(1)),
        Err(ProofError::NotClosed { closes_at: 1_600 })
    );
    assert!(p.close_if_due(1_599).is_none());
    let (c, dropped) = p.close_if_due(1_600).expect("closed");
    assert!(dropped.is_empty());
    let leaves = [id(0), id(1), id(2)];
    assert_eq!(c.meta.root, hex::encode(merkle::root(&leaves)));
    assert_eq!((c.meta.start, c.meta.end, c.meta.leaves), (1_000, 1_600, 3));
    assert_eq!(c.meta.anchored, Anchoring::NotAnchored);
    let pr = p.proof(&id(2)).expect("proof");
    assert_eq!(pr.proof.tree_size, 3);
    assert_eq!(pr.proof.index, 2);
    assert_eq!(pr.anchor_tx_lt, None);
    merkle::verify_inclusion(&pr.root, &id(2), &pr.proof).expect("verifies");
    assert_eq!(p.proof(&id(9)), Err(ProofError::Unknown));
}

#[test]
fn a_push_after_the_end_closes_first_and_lands_in_the_next_period() {
    let mut p = periods(10, 5);
    let _ = p.push(id(0), 1_000);
    let (closed, r) = p.push(id(1), 1_700);
    assert_eq!(r, Ok(()));
    assert_eq!(closed.expect("closed").0.leaves, vec![id(0)]);
    assert_eq!(p.open_start(), 1_700);
    assert!(matches!(p.proof(&id(1)), Err(ProofError::NotClosed { .. })));
    assert!(p.proof(&id(0)).is_ok());
}

#[test]
fn bounds_refuse_a_full_period_duplicates_and_drop_the_oldest_periods() {
    let mut p = periods(2, 2);
    assert_eq!(p.push(id(0), 1_000).1, Ok(()));
    assert_eq!(p.push(id(0), 1_000).1, Err(AnchorError::Duplicate));
    assert_eq!(p.push(id(1), 1_000).1, Ok(()));
    assert_eq!(p.push(id(2), 1_000).1, Err(AnchorError::PeriodFull(2)));
    let mut now = 1_000;
    let mut all_dropped = Vec::new();
    for i in 10..13 {
        now += 600;
        let (closed, r) = p.push(id(i), now);
        assert_eq!(r, Ok(()));
        all_dropped.extend(closed.expect("closed").1);
    }
    // Periods 1000, 1600, 2200 closed; two kept.
    assert_eq!(all_dropped, vec![1_000]);
    assert_eq!(p.proof(&id(0)), Err(ProofError::Unknown), "dropped");
    assert!(p.proof(&id(10)).is_ok());
}

#[test]
fn empty_periods_are_not_kept_and_chain_periods_wait_for_a_marker() {
    let mut p = Periods::new(Duration::from_secs(60), 10, 5, true, 0);
    assert!(p.close_if_due(60).is_none());
    assert_eq!(p.open_start(), 60);
    let _ = p.push(id(1), 61);
    let (c, _) = p.close_if_due(200).expect("closed");
    assert_eq!(c.meta.anchored, Anchoring::Pending);
    assert_eq!(p.pending().map(|m| m.start), Some(60));
    p.set_anchoring(60, Anchoring::Sent { query_id: 7 });
    assert_eq!(
        p.pending().map(|m| m.start),
        Some(60),
        "sent, not seen: again"
    );
    assert_eq!(
        p.proof(&id(1)).expect("proof").anchor_tx_lt,
        None,
        "sent, not seen"
    );
    p.set_anchoring(
        60,
        Anchoring::Seen {
            query_id: 7,
            tx_lt: 1,
            tx_hash: String::new(),
        },
    );
    assert_eq!(p.proof(&id(1)).expect("proof").anchor_tx_lt, Some(1));
    assert!(p.pending().is_none());
}

#[tokio::test]
async fn the_log_keeps_ids_on_disk_and_reads_closed_periods_back() {
    let dir = std::env::temp_dir().join(format!("cocoon-anchor-{}", rand::random::<u64>()));
    let (log, task) =
        ReceiptLog::open(&dir, Duration::from_secs(3600), 100, 10, false).expect("open");
    let stop = CancellationToken::new();
    let h = tokio::spawn(run(log.clone(), task, stop.clone()));
    log.record(id(1));
    log.record(id(2));
    let mut tries = 0;
    while std::fs::metadata(dir.join(format!("{}.leaves", log.core().open_start())))
        .map(|m| m.len())
        .unwrap_or(0)
        < 64
    {
        tries += 1;
        assert!(tries < 200, "ids not written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        log.proof(&id(1)),
        Err(ProofError::NotClosed { .. })
    ));
    stop.cancel();
    h.await.expect("task");
    // A restart closes the period the stop left open, with the same ids.
    let (again, _task) =
        ReceiptLog::open(&dir, Duration::from_secs(3600), 100, 10, false).expect("reopen");
    let pr = again.proof(&id(2)).expect("proof after restart");
    assert_eq!(pr.proof.tree_size, 2);
    merkle::verify_inclusion(&pr.root, &id(2), &pr.proof).expect("verifies");
    // A file of more ids than a period may hold is not read.
    let (_, _t) = ReceiptLog::open(&dir, Duration::from_secs(3600), 1, 10, false).expect("open");
    let _ = std::fs::remove_dir_all(&dir);
}
