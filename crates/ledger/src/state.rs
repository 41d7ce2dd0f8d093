//! The shared in-memory state: the committed accounts and anchors, read by the async handles (snapshots,
//! counterparty and chain-marker checks) and replaced only by the writer thread after a commit.
//!
//! It holds committed data only: the writer publishes a batch after its fsync and before answering, so
//! whatever a reader sees is durable. Locks are held for map lookups or copies, never across I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::store::{AnchorRow, Loaded};
use crate::types::{AccountKey, AccountRecord, Anchor, AnchorView, Snapshot};

/// Committed state.
pub(crate) struct SharedState {
    pub(crate) public_key: [u8; 32],
    pub(crate) db_seqno: u64,
    pub(crate) pruned_below: u64,
    pub(crate) accounts: HashMap<AccountKey, AccountRecord>,
    /// Anchor rows with the number of snapshot entries they hold.
    pub(crate) anchors: BTreeMap<u64, (AnchorRow, usize)>,
}

impl SharedState {
    /// Builds the state from a verified file; returns the pending snapshots separately (writer-only).
    pub(crate) fn from_loaded(l: Loaded) -> (SharedState, BTreeMap<u64, Vec<(AccountKey, u64)>>) {
        let anchors = l
            .anchors
            .iter()
            .map(|(s, a)| (*s, (*a, l.snapshots.get(s).map_or(0, Vec::len))))
            .collect();
        (
            SharedState {
                public_key: l.public_key,
                db_seqno: l.db_seqno,
                pruned_below: l.pruned_below,
                accounts: l.accounts,
                anchors,
            },
            l.snapshots,
        )
    }

    /// A copy for callers: accounts sorted by key, anchors oldest first.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut accounts: Vec<AccountRecord> = self.accounts.values().cloned().collect();
        accounts.sort_by(|a, b| a.key.cmp(&b.key));
        let anchors = self
            .anchors
            .iter()
            .map(|(s, (a, entries))| AnchorView {
                anchor: Anchor {
                    seqno: *s,
                    session_hash: a.hash,
                },
                status: a.status,
                created_unix: a.created_unix,
                entries: *entries,
            })
            .collect();
        Snapshot {
            public_key: self.public_key,
            db_seqno: self.db_seqno,
            pruned_below: self.pruned_below,
            accounts,
            anchors,
        }
    }
}

/// Read access. A poisoned lock still holds consistent data (the writer publishes with plain inserts that
/// cannot panic halfway through a record), so poisoning is ignored rather than propagated as a panic.
pub(crate) fn read_state(l: &RwLock<SharedState>) -> RwLockReadGuard<'_, SharedState> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write access (writer thread only).
pub(crate) fn write_state(l: &RwLock<SharedState>) -> RwLockWriteGuard<'_, SharedState> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
