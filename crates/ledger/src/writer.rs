//! The single writer thread: group commit of everything queued into one durable write.
//!
//! Callers (the async [`crate::Ledger`] methods) send a [`Request`] with a oneshot over a bounded channel.
//! The thread blocks for the first request, drains whatever else is queued (up to `max_batch`), waits
//! `max_batch_delay` once to gather more, then applies the batch in order to an overlay of the shared state,
//! makes it durable, publishes the overlay to the shared state and only then answers. A batch of usage
//! alone (the request path's only write) becomes durable as one signed record of the usage log
//! ([`crate::usage_log`]: one write, one `fdatasync`) and is copied into SQLite later, many batches in
//! one transaction (when the log has held data for [`SAVE_EVERY`], fills up, before any other kind of
//! request, and at close); any other batch writes every changed row once (deltas to the same account are
//! coalesced) in one SQLite transaction and one fsync, after what the log holds. A request that is invalid on its own (overflow, too many
//! accounts) is answered with its error and leaves no trace; a failed commit fails the whole batch and stops
//! the writer, because after an I/O error the file's state is unknown until it is reopened and re-verified.
//!
//! Seqno rule: a transaction gets `db_seqno + 1`; an anchor takes the current seqno and seals it, so any
//! later write in the same batch moves to the next seqno. Hence an anchor at seqno S covers exactly the
//! deltas acknowledged with seqno ≤ S. Nothing here is async and nothing here may run on the runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::LedgerError;
use crate::sign::Signer;
use crate::state::{read_state, write_state, SharedState};
use crate::store::{self, AnchorRow, Loaded};
use crate::types::{
    AccountKey, AccountRecord, Anchor, AnchorStatus, OnchainState, UsageDelta, MAX_ACCOUNTS,
    MAX_PENDING_ANCHORS, MAX_RESOLVED_ANCHORS,
};
use crate::usage_log::{LogRecord, UsageLog, MAX_RECORD_ACCOUNTS};

/// What the writer does with the answer to a request for usage.
pub(crate) enum UsageReply {
    /// Send it to the awaiting caller.
    Send(oneshot::Sender<Result<u64, LedgerError>>),
    /// Run this on the writer thread (a caller that acts as soon as the usage is durable, without
    /// a wake-up of its own in between: [`crate::Ledger::add_usage_then`]).
    Then(Box<dyn FnOnce(Result<u64, LedgerError>) + Send>),
}

impl UsageReply {
    pub(crate) fn answer(self, r: Result<u64, LedgerError>) {
        match self {
            UsageReply::Send(tx) => {
                let _ = tx.send(r);
            }
            UsageReply::Then(then) => {
                // A panic in the caller's code must not stop the writer (and with it the ledger).
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| then(r))).is_err() {
                    tracing::error!("a ledger continuation panicked; the ledger goes on");
                }
            }
        }
    }
}

/// One request to the writer.
pub(crate) enum Request {
    Usage {
        deltas: Vec<UsageDelta>,
        reply: UsageReply,
    },
    Onchain {
        key: AccountKey,
        state: OnchainState,
        reply: oneshot::Sender<Result<u64, LedgerError>>,
    },
    BeginAnchor {
        hash: [u8; 32],
        reply: oneshot::Sender<Result<Anchor, LedgerError>>,
    },
    AnchorSeen {
        seqno: u64,
        hash: [u8; 32],
        reply: oneshot::Sender<Result<(), LedgerError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// The answer computed for a request, sent only after the commit.
enum Reply {
    Usage(UsageReply, Result<u64, LedgerError>),
    Seqno(
        oneshot::Sender<Result<u64, LedgerError>>,
        Result<u64, LedgerError>,
    ),
    Anchor(
        oneshot::Sender<Result<Anchor, LedgerError>>,
        Result<Anchor, LedgerError>,
    ),
    Unit(
        oneshot::Sender<Result<(), LedgerError>>,
        Result<(), LedgerError>,
    ),
    Close(oneshot::Sender<()>),
}

impl Reply {
    /// Sends the answer, or `err()` in place of a success when the commit failed. A caller that went away
    /// (dropped its future) is not an error: its work is durable anyway.
    fn send(self, failed: Option<&str>) {
        let fail = |msg: &str| LedgerError::CommitFailed(msg.to_string());
        match self {
            Reply::Usage(reply, r) => reply.answer(match (failed, r) {
                (Some(m), Ok(_)) => Err(fail(m)),
                (_, r) => r,
            }),
            Reply::Seqno(tx, r) => {
                let _ = tx.send(match (failed, r) {
                    (Some(m), Ok(_)) => Err(fail(m)),
                    (_, r) => r,
                });
            }
            Reply::Anchor(tx, r) => {
                let _ = tx.send(match (failed, r) {
                    (Some(m), Ok(_)) => Err(fail(m)),
                    (_, r) => r,
                });
            }
            Reply::Unit(tx, r) => {
                let _ = tx.send(match (failed, r) {
                    (Some(m), Ok(_)) => Err(fail(m)),
                    (_, r) => r,
                });
            }
            Reply::Close(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// The thread's owned resources.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) signer: Signer,
    pub(crate) state: Arc<RwLock<SharedState>>,
    /// Snapshot entries of pending anchors (only the writer needs them).
    pub(crate) snapshots: BTreeMap<u64, Vec<(AccountKey, u64)>>,
    pub(crate) max_batch: usize,
    pub(crate) max_batch_delay: Duration,
    /// The usage log (`None`: every batch goes to SQLite).
    pub(crate) log: Option<UsageLog>,
    /// Accounts changed by logged batches and not yet copied into SQLite (their latest records).
    pub(crate) unsaved: HashMap<AccountKey, AccountRecord>,
    /// The newest logged seqno, and when the oldest unsaved batch was logged.
    pub(crate) unsaved_seqno: u64,
    pub(crate) unsaved_since: Option<Instant>,
    /// How many accounts SQLite's signed count holds.
    pub(crate) saved_count: usize,
}

/// How long logged usage may wait before it is copied into SQLite (a copy is one transaction
/// with a signed row per changed account; the longer the wait, the more batches share it).
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(1);

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn drain(rx: &mut mpsc::Receiver<Request>, batch: &mut Vec<Request>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

impl Writer {
    /// Runs until every sender is gone or a `Close` arrives.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            drain(&mut rx, &mut batch, self.max_batch);
            if batch.len() < self.max_batch && !self.max_batch_delay.is_zero() {
                std::thread::sleep(self.max_batch_delay);
                drain(&mut rx, &mut batch, self.max_batch);
            }
            match self.process(batch) {
                Flow::Continue => {}
                Flow::Stop => break,
            }
        }
        // What the log holds goes into SQLite (were this to fail, the log still holds it: the
        // next open copies it).
        if let Err(e) = self.save() {
            tracing::warn!(error = %e, "copying the usage log into the ledger at close failed");
        }
        // Anything still queued is answered with `Closed` when `rx` drops its senders' oneshots.
        rx.close();
        while let Ok(req) = rx.try_recv() {
            reject(req);
        }
        tracing::debug!("ledger writer stopped");
    }

    fn process(&mut self, batch: Vec<Request>) -> Flow {
        let started = std::time::Instant::now();
        let size = batch.len();
        let usage_only =
            self.log.is_some() && batch.iter().all(|r| matches!(r, Request::Usage { .. }));
        if !usage_only {
            // Everything else reads and writes SQLite: it must hold what the log holds first.
            if let Err(e) = self.save() {
                tracing::error!(error = %e, "copying the usage log into the ledger failed; writer stops");
                let failed = e.to_string();
                for req in batch {
                    fail(req, &failed);
                }
                return Flow::Stop;
            }
        }
        let mut replies = Vec::with_capacity(size);
        let mut stop = false;
        let guard = read_state(&self.state);
        let mut ov = Overlay::new(&guard, &self.snapshots);
        for req in batch {
            if stop {
                reject(req);
                continue;
            }
            match req {
                Request::Usage { deltas, reply } => {
                    let r = ov.add_usage(&deltas);
                    replies.push(Reply::Usage(reply, r));
                }
                Request::Onchain { key, state, reply } => {
                    let r = ov.upsert_onchain(key, state);
                    replies.push(Reply::Seqno(reply, r));
                }
                Request::BeginAnchor { hash, reply } => {
                    let r = ov.begin_anchor(hash);
                    replies.push(Reply::Anchor(reply, r));
                }
                Request::AnchorSeen { seqno, hash, reply } => {
                    let r = ov.anchor_seen(seqno, hash);
                    replies.push(Reply::Unit(reply, r));
                }
                Request::Close { reply } => {
                    replies.push(Reply::Close(reply));
                    stop = true;
                }
            }
        }
        let changes = ov.into_changes();
        drop(guard);

        let failed = match changes {
            None => None,
            Some(ch) => match self.make_durable(&ch, usage_only) {
                Ok(()) => {
                    self.publish(ch);
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, batch = size, "ledger commit failed; writer stops");
                    stop = true;
                    Some(e.to_string())
                }
            },
        };
        for r in replies {
            r.send(failed.as_deref());
        }
        tracing::trace!(
            batch = size,
            elapsed_us = started.elapsed().as_micros() as u64,
            "ledger batch"
        );
        // After answering: the copy costs this batch nothing, and a later one at most one wait.
        if !stop && self.save_due() {
            if let Err(e) = self.save() {
                tracing::error!(error = %e, "copying the usage log into the ledger failed; writer stops");
                stop = true;
            }
        }
        if stop {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// Makes a batch's changes durable: in the usage log when `usage_only` (and it fits a
    /// record), else in SQLite.
    fn make_durable(&mut self, ch: &Changes, usage_only: bool) -> Result<(), LedgerError> {
        if usage_only && ch.accounts.len() <= MAX_RECORD_ACCOUNTS {
            self.check(ch)?;
            return self.log_batch(ch);
        }
        self.save()?;
        let count = self.check(ch)?;
        self.write(ch, count)
    }

    /// Appends a batch of usage to the log (copying the log into SQLite first when it is full).
    fn log_batch(&mut self, ch: &Changes) -> Result<(), LedgerError> {
        let rec = LogRecord {
            seqno: ch.db_seqno,
            unix: ch
                .accounts
                .values()
                .map(|r| r.updated_unix)
                .max()
                .unwrap_or_else(now_unix),
            accounts: ch
                .accounts
                .values()
                .map(|r| (r.key.clone(), r.committed_db))
                .collect(),
        };
        let Some(log) = self.log.as_mut() else {
            return Err(LedgerError::Invariant("no usage log".into()));
        };
        if !log.append(&rec, &self.signer)? {
            self.save()?;
            let fits = match self.log.as_mut() {
                Some(log) => log.append(&rec, &self.signer)?,
                None => false,
            };
            if !fits {
                return Err(LedgerError::TooLarge {
                    what: "usage log record bytes",
                    limit: crate::usage_log::LOG_BYTES,
                });
            }
        }
        for rec in ch.accounts.values() {
            self.unsaved.insert(rec.key.clone(), rec.clone());
        }
        self.unsaved_seqno = ch.db_seqno;
        self.unsaved_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    fn save_due(&self) -> bool {
        self.unsaved_since
            .is_some_and(|t| t.elapsed() >= SAVE_EVERY)
    }

    /// Copies what the usage log holds into SQLite (one transaction) and starts the log over.
    fn save(&mut self) -> Result<(), LedgerError> {
        if self.unsaved.is_empty() {
            return Ok(());
        }
        let count = read_state(&self.state).accounts.len();
        let ch = Changes {
            db_seqno: self.unsaved_seqno,
            accounts: std::mem::take(&mut self.unsaved),
            anchors: BTreeMap::new(),
            deleted_anchors: BTreeSet::new(),
            new_snapshots: BTreeMap::new(),
            dropped_snapshots: BTreeSet::new(),
            pruned_below: None,
        };
        self.write(&ch, count)?;
        self.unsaved_since = None;
        Ok(())
    }

    /// Checks a batch against the committed state; returns the account count after it.
    fn check(&self, ch: &Changes) -> Result<usize, LedgerError> {
        let base = read_state(&self.state);
        // Monotonicity is asserted against the committed state, not trusted from the overlay logic.
        for rec in ch.accounts.values() {
            if rec.committed_chain > rec.committed_db {
                return Err(LedgerError::Invariant(format!(
                    "{}: committed_chain {} above committed_db {}",
                    rec.key, rec.committed_chain, rec.committed_db
                )));
            }
            if let Some(old) = base.accounts.get(&rec.key) {
                if rec.committed_db < old.committed_db || rec.committed_chain < old.committed_chain
                {
                    return Err(LedgerError::Invariant(format!(
                        "{}: counters would decrease (db {} -> {}, chain {} -> {})",
                        rec.key,
                        old.committed_db,
                        rec.committed_db,
                        old.committed_chain,
                        rec.committed_chain
                    )));
                }
            }
        }
        if ch.db_seqno <= base.db_seqno {
            return Err(LedgerError::Invariant(format!(
                "db seqno would not advance ({} -> {})",
                base.db_seqno, ch.db_seqno
            )));
        }
        let new_count = base.accounts.len()
            + ch.accounts
                .keys()
                .filter(|k| !base.accounts.contains_key(*k))
                .count();
        Ok(new_count)
    }

    /// Writes a batch's rows to SQLite in one transaction (one fsync), with `count` accounts in
    /// all, then starts the usage log over: everything it held is in SQLite now.
    fn write(&mut self, ch: &Changes, count: usize) -> Result<(), LedgerError> {
        let new_count = count;
        let count_changed = new_count != self.saved_count;
        let tx = self.conn.transaction()?;
        for rec in ch.accounts.values() {
            store::put_account(&tx, &self.signer, rec)?;
        }
        for seqno in &ch.dropped_snapshots {
            store::delete_snapshot(&tx, *seqno)?;
        }
        for seqno in &ch.deleted_anchors {
            store::delete_anchor(&tx, *seqno)?;
        }
        for (seqno, a) in &ch.anchors {
            store::put_anchor(&tx, &self.signer, *seqno, a)?;
        }
        for (seqno, entries) in &ch.new_snapshots {
            for (key, value) in entries {
                store::put_snapshot_entry(&tx, &self.signer, *seqno, key, *value)?;
            }
        }
        store::put_meta_u64(&tx, &self.signer, store::META_SEQNO, ch.db_seqno)?;
        if count_changed {
            store::put_meta_u64(&tx, &self.signer, store::META_COUNT, new_count as u64)?;
        }
        if let Some(p) = ch.pruned_below {
            store::put_meta_u64(&tx, &self.signer, store::META_PRUNED, p)?;
        }
        tx.commit()?;
        self.saved_count = new_count;
        if let Some(log) = self.log.as_mut() {
            if !log.is_empty() {
                log.restart()?;
            }
        }
        Ok(())
    }

    fn publish(&mut self, ch: Changes) {
        for seqno in &ch.dropped_snapshots {
            self.snapshots.remove(seqno);
        }
        let mut st = write_state(&self.state);
        st.db_seqno = ch.db_seqno;
        if let Some(p) = ch.pruned_below {
            st.pruned_below = p;
        }
        for seqno in &ch.deleted_anchors {
            st.anchors.remove(seqno);
        }
        for (seqno, a) in ch.anchors {
            let entries = ch
                .new_snapshots
                .get(&seqno)
                .map(Vec::len)
                .or_else(|| self.snapshots.get(&seqno).map(Vec::len))
                .unwrap_or(0);
            st.anchors.insert(seqno, (a, entries));
        }
        for (key, rec) in ch.accounts {
            st.accounts.insert(key, rec);
        }
        drop(st);
        for (seqno, entries) in ch.new_snapshots {
            self.snapshots.insert(seqno, entries);
        }
    }
}

enum Flow {
    Continue,
    Stop,
}

/// Applies usage-log `records` (those continuing `loaded.db_seqno`: [`crate::usage_log::continuing`])
/// to `loaded` in memory; returns the accounts changed. A record that would lower a counter means
/// the file and the log disagree: refused, naming the account.
pub(crate) fn apply_log(
    loaded: &mut Loaded,
    records: &[LogRecord],
) -> Result<Vec<AccountKey>, LedgerError> {
    let mut changed = BTreeSet::new();
    for rec in records {
        for (key, db) in &rec.accounts {
            if !loaded.accounts.contains_key(key) && loaded.accounts.len() >= MAX_ACCOUNTS {
                return Err(LedgerError::TooLarge {
                    what: "accounts",
                    limit: MAX_ACCOUNTS as u64,
                });
            }
            let r = loaded
                .accounts
                .entry(key.clone())
                .or_insert_with(|| AccountRecord::empty(key.clone()));
            if *db < r.committed_db {
                return Err(LedgerError::Inconsistent {
                    table: "usage_log",
                    key: key.to_string(),
                    reason: format!(
                        "seqno {} lowers committed_db from {} to {db}",
                        rec.seqno, r.committed_db
                    ),
                });
            }
            r.committed_db = *db;
            r.updated_unix = rec.unix;
            r.row_seqno = rec.seqno;
            changed.insert(key.clone());
        }
        loaded.db_seqno = rec.seqno;
    }
    Ok(changed.into_iter().collect())
}

/// At open: copies what the usage log holds (`records`, continuing the file's seqno) into SQLite
/// in one transaction, so the file alone is whole again. Returns how many records were copied.
pub(crate) fn replay_log(
    conn: &mut Connection,
    signer: &Signer,
    loaded: &mut Loaded,
    records: &[LogRecord],
) -> Result<usize, LedgerError> {
    if records.is_empty() {
        return Ok(0);
    }
    let old_count = loaded.accounts.len();
    let changed = apply_log(loaded, records)?;
    let tx = conn.transaction()?;
    for key in &changed {
        if let Some(rec) = loaded.accounts.get(key) {
            store::put_account(&tx, signer, rec)?;
        }
    }
    store::put_meta_u64(&tx, signer, store::META_SEQNO, loaded.db_seqno)?;
    if loaded.accounts.len() != old_count {
        store::put_meta_u64(&tx, signer, store::META_COUNT, loaded.accounts.len() as u64)?;
    }
    tx.commit()?;
    Ok(records.len())
}

/// Answers a request that could not be made durable with `why`.
fn fail(req: Request, why: &str) {
    let err = || LedgerError::CommitFailed(why.to_string());
    match req {
        Request::Usage { reply, .. } => reply.answer(Err(err())),
        Request::Onchain { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Request::BeginAnchor { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Request::AnchorSeen { reply, .. } => {
            let _ = reply.send(Err(err()));
        }
        Request::Close { reply } => {
            let _ = reply.send(());
        }
    }
}

fn reject(req: Request) {
    match req {
        Request::Usage { reply, .. } => reply.answer(Err(LedgerError::Closed)),
        Request::Onchain { reply, .. } => {
            let _ = reply.send(Err(LedgerError::Closed));
        }
        Request::BeginAnchor { reply, .. } => {
            let _ = reply.send(Err(LedgerError::Closed));
        }
        Request::AnchorSeen { reply, .. } => {
            let _ = reply.send(Err(LedgerError::Closed));
        }
        Request::Close { reply } => {
            let _ = reply.send(());
        }
    }
}

/// What one batch changes, ready to write.
struct Changes {
    db_seqno: u64,
    accounts: HashMap<AccountKey, AccountRecord>,
    anchors: BTreeMap<u64, AnchorRow>,
    deleted_anchors: BTreeSet<u64>,
    new_snapshots: BTreeMap<u64, Vec<(AccountKey, u64)>>,
    dropped_snapshots: BTreeSet<u64>,
    pruned_below: Option<u64>,
}

/// The batch's view: committed state underneath, this batch's changes on top.
struct Overlay<'a> {
    base: &'a SharedState,
    base_snapshots: &'a BTreeMap<u64, Vec<(AccountKey, u64)>>,
    seqno: u64,
    sealed: bool,
    changed: bool,
    now: u64,
    accounts: HashMap<AccountKey, AccountRecord>,
    /// How many keys in `accounts` the base does not have.
    new_accounts: usize,
    anchors: BTreeMap<u64, AnchorRow>,
    deleted_anchors: BTreeSet<u64>,
    new_snapshots: BTreeMap<u64, Vec<(AccountKey, u64)>>,
    dropped_snapshots: BTreeSet<u64>,
    pruned_below: Option<u64>,
}

impl<'a> Overlay<'a> {
    fn new(
        base: &'a SharedState,
        base_snapshots: &'a BTreeMap<u64, Vec<(AccountKey, u64)>>,
    ) -> Self {
        Overlay {
            base,
            base_snapshots,
            seqno: base.db_seqno + 1,
            sealed: false,
            changed: false,
            now: now_unix(),
            accounts: HashMap::new(),
            new_accounts: 0,
            anchors: BTreeMap::new(),
            deleted_anchors: BTreeSet::new(),
            new_snapshots: BTreeMap::new(),
            dropped_snapshots: BTreeSet::new(),
            pruned_below: None,
        }
    }

    /// The seqno a write lands in (moving past a sealing anchor).
    fn write_seqno(&mut self) -> u64 {
        if self.sealed {
            self.seqno += 1;
            self.sealed = false;
        }
        self.changed = true;
        self.seqno
    }

    fn account(&self, key: &AccountKey) -> Option<&AccountRecord> {
        self.accounts
            .get(key)
            .or_else(|| self.base.accounts.get(key))
    }

    fn account_count(&self) -> usize {
        self.base.accounts.len() + self.new_accounts
    }

    /// Puts a changed record into the overlay, counting accounts the base does not have.
    fn put(&mut self, rec: AccountRecord) {
        if !self.base.accounts.contains_key(&rec.key) && !self.accounts.contains_key(&rec.key) {
            self.new_accounts += 1;
        }
        self.accounts.insert(rec.key.clone(), rec);
    }

    fn anchor(&self, seqno: u64) -> Option<AnchorRow> {
        if self.deleted_anchors.contains(&seqno) {
            return None;
        }
        self.anchors
            .get(&seqno)
            .copied()
            .or_else(|| self.base.anchors.get(&seqno).map(|(a, _)| *a))
    }

    /// All anchors as this batch sees them, ascending.
    fn all_anchors(&self) -> BTreeMap<u64, AnchorRow> {
        let mut all: BTreeMap<u64, AnchorRow> = self
            .base
            .anchors
            .iter()
            .map(|(s, (a, _))| (*s, *a))
            .collect();
        for s in &self.deleted_anchors {
            all.remove(s);
        }
        for (s, a) in &self.anchors {
            all.insert(*s, *a);
        }
        all
    }

    fn add_usage(&mut self, deltas: &[UsageDelta]) -> Result<u64, LedgerError> {
        // Validate the whole request first so an invalid one leaves no trace.
        let mut updated: HashMap<AccountKey, u64> = HashMap::new();
        let mut new_keys = 0usize;
        for d in deltas {
            let current = match updated.get(&d.key) {
                Some(v) => *v,
                None => match self.account(&d.key) {
                    Some(r) => r.committed_db,
                    None => {
                        new_keys += 1;
                        0
                    }
                },
            };
            let next = current
                .checked_add(d.tokens)
                .filter(|v| i64::try_from(*v).is_ok())
                .ok_or_else(|| {
                    LedgerError::InvalidInput(format!("{}: committed_db would overflow", d.key))
                })?;
            updated.insert(d.key.clone(), next);
        }
        if self.account_count() + new_keys > MAX_ACCOUNTS {
            return Err(LedgerError::TooLarge {
                what: "accounts",
                limit: MAX_ACCOUNTS as u64,
            });
        }
        let seqno = self.write_seqno();
        let now = self.now;
        for (key, value) in updated {
            let mut rec = self
                .account(&key)
                .cloned()
                .unwrap_or_else(|| AccountRecord::empty(key.clone()));
            rec.committed_db = value;
            rec.updated_unix = now;
            rec.row_seqno = seqno;
            self.put(rec);
        }
        Ok(seqno)
    }

    fn upsert_onchain(&mut self, key: AccountKey, st: OnchainState) -> Result<u64, LedgerError> {
        let existing = self.account(&key).cloned();
        if existing.is_none() && self.account_count() + 1 > MAX_ACCOUNTS {
            return Err(LedgerError::TooLarge {
                what: "accounts",
                limit: MAX_ACCOUNTS as u64,
            });
        }
        let seqno = self.write_seqno();
        let mut rec = existing.unwrap_or_else(|| AccountRecord::empty(key.clone()));
        rec.sc_address = st.sc_address;
        rec.onchain_tokens = st.tokens;
        rec.onchain_balance = st.balance;
        rec.onchain_stake = st.stake;
        rec.onchain_state = st.state;
        rec.updated_unix = self.now;
        rec.row_seqno = seqno;
        self.put(rec);
        Ok(seqno)
    }

    fn begin_anchor(&mut self, hash: [u8; 32]) -> Result<Anchor, LedgerError> {
        let all = self.all_anchors();
        let pending = all
            .values()
            .filter(|a| a.status == AnchorStatus::Pending)
            .count();
        if pending >= MAX_PENDING_ANCHORS {
            return Err(LedgerError::TooLarge {
                what: "pending anchors",
                limit: MAX_PENDING_ANCHORS as u64,
            });
        }
        let seqno = self.write_seqno();
        // Only accounts ahead of the chain need an entry: for the others committed_chain already equals
        // committed_db, and committed_chain only ever takes the max.
        let mut entries: Vec<(AccountKey, u64)> = Vec::new();
        for (key, rec) in &self.base.accounts {
            if self.accounts.contains_key(key) {
                continue;
            }
            if rec.committed_db > rec.committed_chain {
                entries.push((key.clone(), rec.committed_db));
            }
        }
        for (key, rec) in &self.accounts {
            if rec.committed_db > rec.committed_chain {
                entries.push((key.clone(), rec.committed_db));
            }
        }
        self.anchors.insert(
            seqno,
            AnchorRow {
                hash,
                status: AnchorStatus::Pending,
                created_unix: self.now,
            },
        );
        self.new_snapshots.insert(seqno, entries);
        self.sealed = true;
        Ok(Anchor {
            seqno,
            session_hash: hash,
        })
    }

    fn anchor_seen(&mut self, seqno: u64, hash: [u8; 32]) -> Result<(), LedgerError> {
        let pruned_below = self.pruned_below.unwrap_or(self.base.pruned_below);
        let Some(row) = self.anchor(seqno) else {
            if seqno < pruned_below {
                // Older than every retained anchor, hence older than a confirmed one: nothing to do, and
                // nothing left to check it against.
                tracing::warn!(
                    seqno,
                    pruned_below,
                    "save-state marker below the pruned anchors"
                );
                return Ok(());
            }
            let newest = self.seqno.max(self.base.db_seqno);
            return Err(LedgerError::RollbackDetected(if seqno > newest {
                format!(
                    "save-state marker seqno {seqno} seen on chain, but this ledger's newest seqno is {newest}: \
                     the ledger file is an older copy"
                )
            } else {
                format!(
                    "save-state marker seqno {seqno} (hash {}) seen on chain was never issued by this ledger",
                    hex::encode(hash)
                )
            }));
        };
        if row.hash != hash {
            return Err(LedgerError::RollbackDetected(format!(
                "save-state marker seqno {seqno} on chain has hash {}, this ledger issued {}",
                hex::encode(hash),
                hex::encode(row.hash)
            )));
        }
        if row.status != AnchorStatus::Pending {
            return Ok(());
        }
        let entries = if let Some(e) = self.new_snapshots.get(&seqno) {
            e.clone()
        } else if self.dropped_snapshots.contains(&seqno) {
            Vec::new()
        } else {
            self.base_snapshots.get(&seqno).cloned().unwrap_or_default()
        };
        // Check before changing anything, so a violation leaves no trace.
        for (key, value) in &entries {
            let db = self.account(key).map_or(0, |r| r.committed_db);
            if *value > db {
                return Err(LedgerError::Invariant(format!(
                    "{key}: anchored value {value} above committed_db {db}"
                )));
            }
        }
        let wseq = self.write_seqno();
        for (key, value) in entries {
            let Some(mut rec) = self.account(&key).cloned() else {
                continue;
            };
            if value > rec.committed_chain {
                rec.committed_chain = value;
                rec.updated_unix = self.now;
                rec.row_seqno = wseq;
                self.put(rec);
            }
        }
        // This anchor is confirmed; every older pending one is superseded; their snapshots go.
        for (s, mut a) in self.all_anchors().range(..=seqno).map(|(s, a)| (*s, *a)) {
            if a.status != AnchorStatus::Pending {
                continue;
            }
            a.status = if s == seqno {
                AnchorStatus::Confirmed
            } else {
                AnchorStatus::Superseded
            };
            self.anchors.insert(s, a);
            self.drop_snapshot(s);
        }
        self.prune();
        Ok(())
    }

    fn drop_snapshot(&mut self, seqno: u64) {
        if self.new_snapshots.remove(&seqno).is_none() {
            self.dropped_snapshots.insert(seqno);
        }
    }

    /// Keeps at most `MAX_RESOLVED_ANCHORS` resolved anchors.
    fn prune(&mut self) {
        let all = self.all_anchors();
        let resolved: Vec<u64> = all
            .iter()
            .filter(|(_, a)| a.status != AnchorStatus::Pending)
            .map(|(s, _)| *s)
            .collect();
        if resolved.len() <= MAX_RESOLVED_ANCHORS {
            return;
        }
        let cut = resolved.len() - MAX_RESOLVED_ANCHORS;
        for s in &resolved[..cut] {
            self.anchors.remove(s);
            self.deleted_anchors.insert(*s);
        }
        if let Some(first_kept) = resolved.get(cut) {
            self.pruned_below = Some(*first_kept);
        }
    }

    fn into_changes(self) -> Option<Changes> {
        if !self.changed {
            return None;
        }
        Some(Changes {
            db_seqno: self.seqno,
            accounts: self.accounts,
            anchors: self.anchors,
            deleted_anchors: self.deleted_anchors,
            new_snapshots: self.new_snapshots,
            dropped_snapshots: self.dropped_snapshots,
            pruned_below: self.pruned_below,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Party;

    fn base() -> SharedState {
        let mut accounts = HashMap::new();
        for (owner, db, chain) in [("a", 10u64, 10u64), ("b", 20, 5)] {
            let key = AccountKey::new(Party::Client, owner);
            let mut rec = AccountRecord::empty(key.clone());
            rec.committed_db = db;
            rec.committed_chain = chain;
            accounts.insert(key, rec);
        }
        SharedState {
            public_key: [0; 32],
            db_seqno: 4,
            pruned_below: 0,
            accounts,
            anchors: BTreeMap::new(),
        }
    }

    fn d(owner: &str, tokens: u64) -> UsageDelta {
        UsageDelta {
            key: AccountKey::new(Party::Client, owner),
            tokens,
        }
    }

    #[test]
    fn anchor_seals_the_seqno_and_snapshots_only_accounts_ahead() {
        let base = base();
        let snaps = BTreeMap::new();
        let mut ov = Overlay::new(&base, &snaps);
        assert_eq!(ov.add_usage(&[d("c", 3)]).unwrap(), 5);
        let a = ov.begin_anchor([1; 32]).unwrap();
        assert_eq!(a.seqno, 5, "the anchor covers the deltas before it");
        assert_eq!(
            ov.add_usage(&[d("a", 1)]).unwrap(),
            6,
            "later deltas move on"
        );
        let mut entries = ov.new_snapshots.get(&5).unwrap().clone();
        entries.sort();
        let owners: Vec<(&str, u64)> = entries
            .iter()
            .map(|(k, v)| (k.owner.as_str(), *v))
            .collect();
        assert_eq!(
            owners,
            vec![("b", 20), ("c", 3)],
            "a was not ahead of the chain"
        );
        let ch = ov.into_changes().unwrap();
        assert_eq!(ch.db_seqno, 6);
    }

    #[test]
    fn invalid_request_leaves_no_trace_and_no_change_means_no_commit() {
        let base = base();
        let snaps = BTreeMap::new();
        let mut ov = Overlay::new(&base, &snaps);
        assert!(ov.add_usage(&[d("a", 1), d("b", u64::MAX)]).is_err());
        assert!(ov.accounts.is_empty());
        assert_eq!(ov.new_accounts, 0);
        assert!(ov.into_changes().is_none());
    }

    #[test]
    fn coalesces_deltas_and_counts_new_accounts_once() {
        let base = base();
        let snaps = BTreeMap::new();
        let mut ov = Overlay::new(&base, &snaps);
        ov.add_usage(&[d("x", 1), d("x", 2)]).unwrap();
        ov.add_usage(&[d("x", 3), d("a", 1)]).unwrap();
        assert_eq!(ov.new_accounts, 1);
        assert_eq!(ov.account_count(), 3);
        let x = ov.account(&AccountKey::new(Party::Client, "x")).unwrap();
        assert_eq!(x.committed_db, 6);
        assert_eq!(
            ov.account(&AccountKey::new(Party::Client, "a"))
                .unwrap()
                .committed_db,
            11
        );
    }

    #[test]
    fn anchor_seen_applies_the_snapshot_and_supersedes_older() {
        let base = base();
        let snaps = BTreeMap::new();
        let mut ov = Overlay::new(&base, &snaps);
        let a1 = ov.begin_anchor([1; 32]).unwrap();
        ov.add_usage(&[d("b", 5)]).unwrap();
        let a2 = ov.begin_anchor([2; 32]).unwrap();
        ov.add_usage(&[d("b", 5)]).unwrap();
        ov.anchor_seen(a2.seqno, [2; 32]).unwrap();
        let b = ov.account(&AccountKey::new(Party::Client, "b")).unwrap();
        assert_eq!((b.committed_db, b.committed_chain), (30, 25));
        assert_eq!(
            ov.anchor(a1.seqno).unwrap().status,
            AnchorStatus::Superseded
        );
        assert_eq!(ov.anchor(a2.seqno).unwrap().status, AnchorStatus::Confirmed);
        assert!(
            ov.new_snapshots.is_empty(),
            "resolved anchors keep no snapshot"
        );
        assert!(matches!(
            ov.anchor_seen(a2.seqno, [3; 32]),
            Err(LedgerError::RollbackDetected(_))
        ));
    }
}
