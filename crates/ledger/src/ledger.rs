//! The async handle: [`Ledger`]. It validates inputs, sends requests to the writer thread and awaits the
//! answers; it never touches SQLite itself (opening runs in `spawn_blocking`). Rollback checks that need no
//! write ([`Ledger::check_chain_markers`], [`Ledger::check_counterparty`]) read the shared committed state.

use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::error::LedgerError;
use crate::sign::{Signer, Verifier};
use crate::state::{read_state, SharedState};
use crate::store;
use crate::types::{
    AccountKey, Anchor, LedgerConfig, OnchainState, Snapshot, SyncMode, UsageDelta,
    MAX_DELTAS_PER_CALL, MAX_OWNER_LEN, MAX_SC_ADDRESS_LEN,
};
use crate::usage_log::{self, UsageLog};
use crate::writer::{self, Request, UsageReply, Writer};

/// Bounds on the batching knobs, so a bad config cannot make the writer allocate without limit.
const MAX_BATCH_LIMIT: usize = 1 << 20;
const MAX_QUEUE_LIMIT: usize = 1 << 22;
const MAX_BATCH_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// The durable payment ledger. Cheap to clone; all clones share one writer thread. The thread stops when
/// [`Ledger::close`] is awaited or when the last clone is dropped (after finishing what is queued).
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Request>,
    state: Arc<RwLock<SharedState>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn check_deltas(deltas: &[UsageDelta]) -> Result<(), LedgerError> {
    if deltas.len() > MAX_DELTAS_PER_CALL {
        return Err(LedgerError::TooLarge {
            what: "deltas per call",
            limit: MAX_DELTAS_PER_CALL as u64,
        });
    }
    deltas.iter().try_for_each(|d| check_key(&d.key))
}

fn check_key(key: &AccountKey) -> Result<(), LedgerError> {
    if key.owner.is_empty() {
        return Err(LedgerError::InvalidInput("empty owner address".into()));
    }
    if key.owner.len() > MAX_OWNER_LEN {
        return Err(LedgerError::TooLarge {
            what: "owner address bytes",
            limit: MAX_OWNER_LEN as u64,
        });
    }
    Ok(())
}

impl Ledger {
    /// Opens (or creates) the ledger file, verifies every row's signature and the file's key, and starts the
    /// writer thread. Returns the handle and the state as loaded.
    pub async fn open(cfg: LedgerConfig) -> Result<(Ledger, Snapshot), LedgerError> {
        if cfg.max_batch == 0 || cfg.max_batch > MAX_BATCH_LIMIT {
            return Err(LedgerError::InvalidInput(format!(
                "max_batch must be 1..={MAX_BATCH_LIMIT}"
            )));
        }
        if cfg.queue_capacity == 0 || cfg.queue_capacity > MAX_QUEUE_LIMIT {
            return Err(LedgerError::InvalidInput(format!(
                "queue_capacity must be 1..={MAX_QUEUE_LIMIT}"
            )));
        }
        if cfg.max_batch_delay > MAX_BATCH_DELAY {
            return Err(LedgerError::InvalidInput(
                "max_batch_delay must be at most 1 s".into(),
            ));
        }
        let opened = tokio::task::spawn_blocking(move || {
            let signer = Signer::from_seed(&cfg.signing_seed)?;
            let mut conn = store::open_rw(&cfg.path, cfg.sync)?;
            let created = store::init_if_empty(&mut conn, &signer)?;
            let verifier = Verifier::new(signer.public_key());
            let mut loaded = store::load(&conn, &verifier)?;
            // Usage made durable in the log by a previous run goes into the file first.
            let log_path = usage_log::log_path(&cfg.path);
            let records = usage_log::continuing(
                usage_log::read_records(&log_path, &verifier)?,
                loaded.db_seqno,
            );
            let replayed = writer::replay_log(&mut conn, &signer, &mut loaded, &records)?;
            if replayed > 0 {
                tracing::info!(records = replayed, "usage log copied into the ledger");
            }
            let log = if cfg.usage_log {
                Some(UsageLog::open(&log_path, cfg.sync != SyncMode::Off)?)
            } else {
                None
            };
            Ok::<_, LedgerError>((cfg, signer, conn, created, loaded, log))
        })
        .await
        .map_err(|e| LedgerError::Worker(e.to_string()))??;
        let (cfg, signer, conn, created, loaded, log) = opened;
        let saved_count = loaded.accounts.len();
        tracing::info!(
            created,
            accounts = loaded.accounts.len(),
            db_seqno = loaded.db_seqno,
            anchors = loaded.anchors.len(),
            "ledger opened"
        );
        let (shared, snapshots) = SharedState::from_loaded(loaded);
        let snapshot = shared.snapshot();
        let state = Arc::new(RwLock::new(shared));
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let writer = Writer {
            conn,
            signer,
            state: state.clone(),
            snapshots,
            max_batch: cfg.max_batch,
            max_batch_delay: cfg.max_batch_delay,
            log,
            unsaved: Default::default(),
            unsaved_seqno: 0,
            unsaved_since: None,
            saved_count,
        };
        let thread = std::thread::Builder::new()
            .name("cocoon-ledger-writer".into())
            .spawn(move || writer.run(rx))?;
        let ledger = Ledger {
            inner: Arc::new(Inner {
                tx,
                state,
                thread: Mutex::new(Some(thread)),
            }),
        };
        Ok((ledger, snapshot))
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, LedgerError>>) -> Request,
    ) -> Result<T, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(make(reply))
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Adds usage and returns once it is durable (committed with `synchronous=FULL`). Concurrent calls are
    /// group-committed. Returns the db seqno the deltas landed in. At most [`MAX_DELTAS_PER_CALL`] deltas.
    pub async fn add_usage(&self, deltas: Vec<UsageDelta>) -> Result<u64, LedgerError> {
        check_deltas(&deltas)?;
        self.call(|reply| Request::Usage {
            deltas,
            reply: UsageReply::Send(reply),
        })
        .await
    }

    /// [`Ledger::add_usage`] for a caller that acts as soon as the usage is durable: `then` runs
    /// exactly once with what `add_usage` would return — on the writer thread right after the
    /// commit (no wake-up of the caller in between), or here at once when the input is refused
    /// or the ledger is closed. `then` must be quick and must not block: the writer runs it
    /// before it takes the next batch. Returns when the request is queued.
    pub async fn add_usage_then(
        &self,
        deltas: Vec<UsageDelta>,
        then: impl FnOnce(Result<u64, LedgerError>) + Send + 'static,
    ) {
        if let Err(e) = check_deltas(&deltas) {
            then(Err(e));
            return;
        }
        let req = Request::Usage {
            deltas,
            reply: UsageReply::Then(Box::new(then)),
        };
        if let Err(mpsc::error::SendError(Request::Usage { reply, .. })) =
            self.inner.tx.send(req).await
        {
            reply.answer(Err(LedgerError::Closed));
        }
    }

    /// Records what was last seen on a counterparty's contract (creating the account if needed).
    /// Returns the db seqno of the write.
    pub async fn upsert_onchain(
        &self,
        key: AccountKey,
        state: OnchainState,
    ) -> Result<u64, LedgerError> {
        check_key(&key)?;
        if state.sc_address.len() > MAX_SC_ADDRESS_LEN {
            return Err(LedgerError::TooLarge {
                what: "sc_address bytes",
                limit: MAX_SC_ADDRESS_LEN as u64,
            });
        }
        self.call(|reply| Request::Onchain { key, state, reply })
            .await
    }

    /// Registers a save-state marker about to be sent, durably, with the `committed_db` value of every
    /// account ahead of the chain. Send exactly the returned (seqno, session_hash) on chain.
    pub async fn begin_anchor(&self, session_hash: [u8; 32]) -> Result<Anchor, LedgerError> {
        self.call(|reply| Request::BeginAnchor {
            hash: session_hash,
            reply,
        })
        .await
    }

    /// The marker (seqno, hash) was seen on chain: `committed_chain` takes the anchored values (monotone
    /// max) and older pending anchors are dropped. Idempotent for markers already applied.
    /// A marker this ledger never issued gives [`LedgerError::RollbackDetected`].
    /// Await this before signing payments for the new `committed_chain`.
    pub async fn anchor_seen(&self, seqno: u64, session_hash: [u8; 32]) -> Result<(), LedgerError> {
        self.call(|reply| Request::AnchorSeen {
            seqno,
            hash: session_hash,
            reply,
        })
        .await
    }

    /// Startup check against the proxy contract's save-state markers found on chain (all of them since the
    /// newest confirmed anchor). See [`check_chain_markers`].
    pub fn check_chain_markers(&self, markers: &[(u64, [u8; 32])]) -> Result<(), LedgerError> {
        check_chain_markers(&read_state(&self.inner.state), markers)
    }

    /// High-water-mark check against what a counterparty says it was told. See [`check_counterparty`].
    pub fn check_counterparty(
        &self,
        key: &AccountKey,
        told_chain: u64,
        told_db: u64,
        told_max: u64,
    ) -> Result<(), LedgerError> {
        check_counterparty(
            &read_state(&self.inner.state),
            key,
            told_chain,
            told_db,
            told_max,
        )
    }

    /// A copy of the committed state (all accounts, seqno, anchors). It copies every account: with very many
    /// accounts call it from `spawn_blocking` (status commands), and use [`Ledger::account`] on hot paths.
    pub fn snapshot(&self) -> Snapshot {
        read_state(&self.inner.state).snapshot()
    }

    /// The committed record of one account, if it exists (cheaper than a full snapshot).
    pub fn account(&self, key: &AccountKey) -> Option<crate::types::AccountRecord> {
        read_state(&self.inner.state).accounts.get(key).cloned()
    }

    /// The public key the ledger signs with.
    pub fn public_key(&self) -> [u8; 32] {
        read_state(&self.inner.state).public_key
    }

    /// Stops the writer after everything queued before this call is committed, and waits for the thread
    /// (off the runtime). Later calls on any clone fail with [`LedgerError::Closed`].
    pub async fn close(&self) -> Result<(), LedgerError> {
        let (reply, rx) = oneshot::channel();
        if self.inner.tx.send(Request::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            tokio::task::spawn_blocking(move || h.join())
                .await
                .map_err(|e| LedgerError::Worker(e.to_string()))?
                .map_err(|_| LedgerError::Worker("ledger writer thread panicked".into()))?;
        }
        Ok(())
    }
}

/// Checks markers found on chain against the ledger: a marker with a seqno above anything the ledger knows,
/// or a (seqno, hash) the ledger never issued, means the file is an old copy. Markers below the pruned
/// anchors cannot be checked and are skipped (they predate a confirmed anchor).
pub(crate) fn check_chain_markers(
    st: &SharedState,
    markers: &[(u64, [u8; 32])],
) -> Result<(), LedgerError> {
    let newest = st
        .anchors
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(st.db_seqno);
    for (seqno, hash) in markers {
        if *seqno > newest {
            return Err(LedgerError::RollbackDetected(format!(
                "the chain holds save-state marker seqno {seqno}, but this ledger's newest seqno is {newest}: \
                 the ledger file is an older copy"
            )));
        }
        if *seqno < st.pruned_below {
            continue;
        }
        match st.anchors.get(seqno) {
            Some((a, _)) if a.hash == *hash => {}
            Some((a, _)) => {
                return Err(LedgerError::RollbackDetected(format!(
                    "the chain holds save-state marker seqno {seqno} with hash {}, this ledger issued hash {} \
                     for that seqno: the ledger file is an older copy",
                    hex::encode(hash),
                    hex::encode(a.hash)
                )))
            }
            None => {
                return Err(LedgerError::RollbackDetected(format!(
                    "the chain holds save-state marker seqno {seqno} (hash {}) that this ledger never issued: \
                     the ledger file is an older copy",
                    hex::encode(hash)
                )))
            }
        }
    }
    Ok(())
}

/// A counterparty reports the highest values it was told: committed to chain, committed to the db, and the
/// running maximum. Any of them above the ledger's durable values means the ledger lost data.
///
/// `told_max` is compared with `committed_db`: the proxy reports usage to counterparties only after
/// `add_usage` made it durable (durable before acknowledged), so nothing it ever told can exceed it.
pub(crate) fn check_counterparty(
    st: &SharedState,
    key: &AccountKey,
    told_chain: u64,
    told_db: u64,
    told_max: u64,
) -> Result<(), LedgerError> {
    let (chain, db) = st
        .accounts
        .get(key)
        .map_or((0, 0), |r| (r.committed_chain, r.committed_db));
    let mut bad = Vec::new();
    if told_chain > chain {
        bad.push(format!("committed_chain {told_chain} > ledger's {chain}"));
    }
    if told_db > db {
        bad.push(format!("committed_db {told_db} > ledger's {db}"));
    }
    if told_max > db {
        bad.push(format!("max {told_max} > ledger's durable {db}"));
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(LedgerError::RollbackDetected(format!(
        "{key} was told more than this ledger holds ({}): the ledger file is an older copy or lost data",
        bad.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AnchorRow;
    use crate::types::{AccountRecord, AnchorStatus, Party};
    use std::collections::{BTreeMap, HashMap};

    fn state() -> SharedState {
        let key = AccountKey::new(Party::Worker, "w1");
        let mut rec = AccountRecord::empty(key.clone());
        rec.committed_db = 100;
        rec.committed_chain = 60;
        let mut accounts = HashMap::new();
        accounts.insert(key, rec);
        let mut anchors = BTreeMap::new();
        for (s, status) in [(3u64, AnchorStatus::Confirmed), (5, AnchorStatus::Pending)] {
            anchors.insert(
                s,
                (
                    AnchorRow {
                        hash: [s as u8; 32],
                        status,
                        created_unix: 0,
                    },
                    0,
                ),
            );
        }
        SharedState {
            public_key: [0; 32],
            db_seqno: 7,
            pruned_below: 2,
            accounts,
            anchors,
        }
    }

    #[test]
    fn markers_known_pass() {
        let st = state();
        check_chain_markers(&st, &[(3, [3; 32]), (5, [5; 32]), (1, [9; 32])]).unwrap();
    }

    #[test]
    fn markers_above_seqno_fail() {
        let err = check_chain_markers(&state(), &[(8, [8; 32])]).unwrap_err();
        assert!(matches!(err, LedgerError::RollbackDetected(m) if m.contains("seqno 8")));
    }

    #[test]
    fn markers_wrong_hash_or_unknown_fail() {
        assert!(matches!(
            check_chain_markers(&state(), &[(5, [6; 32])]),
            Err(LedgerError::RollbackDetected(_))
        ));
        assert!(matches!(
            check_chain_markers(&state(), &[(4, [4; 32])]),
            Err(LedgerError::RollbackDetected(m)) if m.contains("never issued")
        ));
    }

    #[test]
    fn counterparty_checks() {
        let st = state();
        let key = AccountKey::new(Party::Worker, "w1");
        check_counterparty(&st, &key, 60, 100, 100).unwrap();
        check_counterparty(&st, &key, 0, 0, 0).unwrap();
        assert!(check_counterparty(&st, &key, 61, 100, 100).is_err());
        assert!(check_counterparty(&st, &key, 60, 101, 101).is_err());
        assert!(check_counterparty(&st, &key, 60, 100, 101).is_err());
        let unknown = AccountKey::new(Party::Client, "w1");
        check_counterparty(&st, &unknown, 0, 0, 0).unwrap();
        assert!(check_counterparty(&st, &unknown, 0, 1, 1).is_err());
    }
}
