//! The receipt log: every receipt the proxy countersigned (its id, `Ending::receipt_id`, once
//! the request's charge is durable) goes into the current anchoring period; at the period's
//! end its RFC 6962 Merkle root (`cocoon_sealed::merkle::root`, over the ids in order) is
//! computed and kept, and (with `[chain]` on) sent to the proxy contract in a save-state marker
//! (`cocoon_ton::contracts::ReceiptsAnchor`); with the chain off the root is kept "not
//! anchored". Clients ask for an inclusion proof of a receipt of a closed period.
//!
//! Two layers:
//!
//! - [`Periods`]: the I/O-free core. Takes the time (unix seconds) as an argument; bounded:
//!   at most `max_leaves` ids per period (further ids are refused, [`AnchorError::PeriodFull`]),
//!   at most `keep` closed periods (the oldest are dropped, their ids forgotten).
//! - [`run`]: the task. Receives ids on a bounded channel ([`ReceiptLog::record`] never
//!   waits), appends each to the period's file (`<dir>/<start>.leaves`, 32 bytes per id),
//!   closes periods on time, fsyncs the file and writes `<dir>/<start>.json` (root, leaves,
//!   start, end, anchored) at close, deletes the files of dropped periods. On start, closed
//!   periods are read back, and a period left open by a stop is closed then.
//!
//! Nothing here sees a prompt or usage: ids are hashes of countersigned receipts. Logs carry
//! counts and period times only.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_sealed::merkle::{self, InclusionProof};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Ids waiting for the task; beyond this [`ReceiptLog::record`] drops them (and counts).
const QUEUE: usize = 65_536;
/// How often the task checks whether the period is over.
const TICK: Duration = Duration::from_secs(1);

/// Why an id was not logged.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    #[error("the receipts period already holds {0} ids")]
    PeriodFull(usize),
    #[error("this receipt id is already logged")]
    Duplicate,
}

/// Why no proof is given.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("unknown receipt id (not countersigned here, or its period was dropped)")]
    Unknown,
    #[error("the receipt's period is not closed yet; it closes at unix time {closes_at}")]
    NotClosed { closes_at: u64 },
}

/// How a closed period was anchored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Anchoring {
    /// `[chain]` is off: the root is kept, not published.
    NotAnchored,
    /// Waiting for a save-state marker to carry it.
    Pending,
    /// Sent in the save-state marker with this query id.
    Sent { query_id: u64 },
    /// That marker seen in the proxy contract's transaction `tx_lt` / `tx_hash` (hex).
    Seen {
        query_id: u64,
        tx_lt: u64,
        tx_hash: String,
    },
}

/// A closed period: what `<start>.json` holds, plus its ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    pub meta: PeriodMeta,
    pub leaves: Vec<[u8; 32]>,
}

/// A period just closed, with the starts of the periods dropped to make room for it.
pub type ClosedNow = (Closed, Vec<u64>);

/// What is recorded per period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodMeta {
    /// Unix seconds.
    pub start: u64,
    pub end: u64,
    pub leaves: u64,
    /// Hex of the Merkle root.
    pub root: String,
    pub anchored: Anchoring,
}

/// An inclusion proof with its period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodProof {
    pub root: [u8; 32],
    pub period_start: u64,
    pub period_end: u64,
    pub proof: InclusionProof,
    /// The logical time of the proxy contract's transaction the root was seen in.
    pub anchor_tx_lt: Option<u64>,
}

/// The I/O-free core (see the module docs).
#[derive(Debug)]
pub struct Periods {
    every: u64,
    max_leaves: usize,
    keep: usize,
    chain: bool,
    open_start: u64,
    open: Vec<[u8; 32]>,
    closed: VecDeque<Closed>,
    /// id → (period start, index) for the open and the kept periods.
    index: HashMap<[u8; 32], (u64, u32)>,
}

// === impl Periods ===

impl Periods {
    /// An empty log whose first period starts at `now`; `chain`: closed periods wait for a
    /// marker ([`Anchoring::Pending`]) rather than being [`Anchoring::NotAnchored`].
    pub fn new(every: Duration, max_leaves: usize, keep: usize, chain: bool, now: u64) -> Self {
        Self {
            every: every.as_secs().max(1),
            max_leaves: max_leaves.max(1),
            keep: keep.max(1),
            chain,
            open_start: now,
            open: Vec::new(),
            closed: VecDeque::new(),
            index: HashMap::new(),
        }
    }

    /// When the open period closes.
    pub fn closes_at(&self) -> u64 {
        self.open_start.saturating_add(self.every)
    }

    /// Start of the open period.
    pub fn open_start(&self) -> u64 {
        self.open_start
    }

    /// Adds a closed period read back at start (oldest first); returns the starts of periods
    /// dropped to stay within `keep`.
    pub fn restore(&mut self, c: Closed) -> Vec<u64> {
        for (i, id) in c.leaves.iter().enumerate() {
            self.index
                .insert(*id, (c.meta.start, u32::try_from(i).unwrap_or(u32::MAX)));
        }
        self.open_start = self.open_start.max(c.meta.end);
        self.closed.push_back(c);
        self.prune()
    }

    /// Logs `id` at `now`, closing the open period first when it is over (returned, with the
    /// starts of dropped periods).
    pub fn push(&mut self, id: [u8; 32], now: u64) -> (Option<ClosedNow>, Result<(), AnchorError>) {
        let closed = self.close_if_due(now);
        if self.index.contains_key(&id) {
            return (closed, Err(AnchorError::Duplicate));
        }
        if self.open.len() >= self.max_leaves {
            return (closed, Err(AnchorError::PeriodFull(self.open.len())));
        }
        let i = u32::try_from(self.open.len()).unwrap_or(u32::MAX);
        self.index.insert(id, (self.open_start, i));
        self.open.push(id);
        (closed, Ok(()))
    }

    /// Closes the open period when `now` is past its end. An empty period is not kept: the
    /// next one just starts.
    pub fn close_if_due(&mut self, now: u64) -> Option<ClosedNow> {
        if now < self.closes_at() {
            return None;
        }
        let start = self.open_start;
        self.open_start = now;
        if self.open.is_empty() {
            return None;
        }
        let leaves = std::mem::take(&mut self.open);
        let c = Closed {
            meta: PeriodMeta {
                start,
                end: now,
                leaves: leaves.len() as u64,
                root: hex::encode(merkle::root(&leaves)),
                anchored: if self.chain {
                    Anchoring::Pending
                } else {
                    Anchoring::NotAnchored
                },
            },
            leaves,
        };
        self.closed.push_back(c.clone());
        let dropped = self.prune();
        Some((c, dropped))
    }

    fn prune(&mut self) -> Vec<u64> {
        let mut dropped = Vec::new();
        while self.closed.len() > self.keep {
            if let Some(old) = self.closed.pop_front() {
                for id in &old.leaves {
                    self.index.remove(id);
                }
                dropped.push(old.meta.start);
            }
        }
        dropped
    }

    /// The oldest closed period whose marker was not seen on chain yet (a marker that was
    /// sent but never seen is sent again with the next one).
    pub fn pending(&self) -> Option<&PeriodMeta> {
        self.closed
            .iter()
            .map(|c| &c.meta)
            .find(|m| matches!(m.anchored, Anchoring::Pending | Anchoring::Sent { .. }))
    }

    /// Records how the period starting at `start` was anchored; its meta, to be written.
    pub fn set_anchoring(&mut self, start: u64, a: Anchoring) -> Option<PeriodMeta> {
        let c = self.closed.iter_mut().find(|c| c.meta.start == start)?;
        c.meta.anchored = a;
        Some(c.meta.clone())
    }

    /// The inclusion proof of `id`.
    pub fn proof(&self, id: &[u8; 32]) -> Result<PeriodProof, ProofError> {
        let (start, i) = *self.index.get(id).ok_or(ProofError::Unknown)?;
        if start == self.open_start && self.open.get(i as usize) == Some(id) {
            return Err(ProofError::NotClosed {
                closes_at: self.closes_at(),
            });
        }
        let c = self
            .closed
            .iter()
            .find(|c| c.meta.start == start)
            .ok_or(ProofError::Unknown)?;
        let proof = merkle::inclusion_proof(&c.leaves, i as usize).ok_or(ProofError::Unknown)?;
        let mut root = [0u8; 32];
        hex::decode_to_slice(&c.meta.root, &mut root).map_err(|_| ProofError::Unknown)?;
        Ok(PeriodProof {
            root,
            period_start: c.meta.start,
            period_end: c.meta.end,
            proof,
            anchor_tx_lt: match c.meta.anchored {
                Anchoring::Seen { tx_lt, .. } => Some(tx_lt),
                _ => None,
            },
        })
    }
}

/// The proxy's handle: where ids are recorded and proofs asked.
pub struct ReceiptLog {
    dir: PathBuf,
    periods: Mutex<Periods>,
    ids: mpsc::Sender<[u8; 32]>,
    /// Ids dropped because the queue was full or the log refused them.
    pub dropped: std::sync::atomic::AtomicU64,
}

/// The task's end of the log.
pub struct LogTask {
    dir: PathBuf,
    ids: mpsc::Receiver<[u8; 32]>,
    file: Option<(u64, std::fs::File)>,
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ReceiptLog {
    /// Opens the log in `dir` (created), reading back the periods kept there.
    pub fn open(
        dir: &Path,
        every: Duration,
        max_leaves: usize,
        keep: usize,
        chain: bool,
    ) -> std::io::Result<(Arc<Self>, LogTask)> {
        std::fs::create_dir_all(dir)?;
        let now = unix_now();
        let mut periods = Periods::new(every, max_leaves, keep, chain, now);
        let mut starts: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().to_string();
            if let Some(s) = name.strip_suffix(".leaves").and_then(|s| s.parse().ok()) {
                starts.push(s);
            }
        }
        starts.sort_unstable();
        for start in starts {
            match read_period(dir, start, max_leaves, chain, now) {
                Ok(c) => {
                    for gone in periods.restore(c) {
                        remove_period(dir, gone);
                    }
                }
                Err(e) => {
                    warn!(start, error = %e, "receipts: an unreadable period is skipped")
                }
            }
        }
        // A fresh period after what was read back.
        periods.open_start = now.max(periods.open_start);
        let (tx, rx) = mpsc::channel(QUEUE);
        Ok((
            Arc::new(Self {
                dir: dir.to_path_buf(),
                periods: Mutex::new(periods),
                ids: tx,
                dropped: Default::default(),
            }),
            LogTask {
                dir: dir.to_path_buf(),
                ids: rx,
                file: None,
            },
        ))
    }

    /// Queues a countersigned receipt's id; never waits (a full queue drops it, counted).
    pub fn record(&self, id: [u8; 32]) {
        if self.ids.try_send(id).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The inclusion proof of `id`.
    pub fn proof(&self, id: &[u8; 32]) -> Result<PeriodProof, ProofError> {
        self.core().proof(id)
    }

    /// The oldest closed period waiting for a marker (chain on).
    pub fn pending(&self) -> Option<PeriodMeta> {
        self.core().pending().cloned()
    }

    /// Records that the period starting at `start` went out in a marker with `query_id`.
    pub fn sent(&self, start: u64, query_id: u64) {
        self.set(start, Anchoring::Sent { query_id });
    }

    /// Records that our marker for the period starting at `start` is in the proxy contract's
    /// transaction `lt` (only a period closed here, and not already recorded seen).
    pub fn seen(&self, start: u64, query_id: u64, lt: u64, hash: [u8; 32]) {
        let known =
            self.core().closed.iter().any(|c| {
                c.meta.start == start && !matches!(c.meta.anchored, Anchoring::Seen { .. })
            });
        if known {
            self.set(
                start,
                Anchoring::Seen {
                    query_id,
                    tx_lt: lt,
                    tx_hash: hex::encode(hash),
                },
            );
            info!(start, tx_lt = lt, "receipts root seen on chain");
        }
    }

    fn set(&self, start: u64, a: Anchoring) {
        let meta = self.core().set_anchoring(start, a);
        if let Some(m) = meta {
            if let Err(e) = write_meta(&self.dir, &m) {
                warn!(start, error = %e, "receipts: cannot record a period's anchoring");
            }
        }
    }

    fn core(&self) -> std::sync::MutexGuard<'_, Periods> {
        self.periods.lock().unwrap_or_else(|p| {
            self.periods.clear_poison();
            p.into_inner()
        })
    }
}

/// Runs the log until `shutdown` (then closes nothing: the open period's file is synced and
/// closed at the next start).
pub async fn run(log: Arc<ReceiptLog>, mut task: LogTask, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            id = task.ids.recv() => {
                let Some(id) = id else { break };
                let now = unix_now();
                let (closed, res) = log.core().push(id, now);
                if let Some(c) = closed {
                    task.close(c);
                }
                match res {
                    Ok(()) => {
                        let start = log.core().open_start();
                        if let Err(e) = task.append(start, &id) {
                            warn!(error = %e, "receipts: cannot append an id");
                        }
                    }
                    Err(e) => {
                        log.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        warn!(error = %e, "receipts: an id was not logged");
                    }
                }
            }
            _ = tick.tick() => {
                let closed = log.core().close_if_due(unix_now());
                if let Some(c) = closed {
                    task.close(c);
                }
            }
        }
    }
    if let Some((_, f)) = task.file.take() {
        let _ = f.sync_all();
    }
}

impl LogTask {
    fn append(&mut self, start: u64, id: &[u8; 32]) -> std::io::Result<()> {
        if self.file.as_ref().map(|(s, _)| *s) != Some(start) {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("{start}.leaves")))?;
            self.file = Some((start, f));
        }
        match &mut self.file {
            Some((_, f)) => f.write_all(id),
            None => Ok(()),
        }
    }

    /// A period closed: sync its ids, write its meta, delete dropped periods.
    fn close(&mut self, (c, dropped): ClosedNow) {
        if let Some((s, f)) = self.file.take() {
            if s == c.meta.start {
                if let Err(e) = f.sync_all() {
                    warn!(error = %e, "receipts: cannot sync a period's ids");
                }
            } else {
                self.file = Some((s, f));
            }
        }
        match write_meta(&self.dir, &c.meta) {
            Ok(()) => info!(
                start = c.meta.start,
                end = c.meta.end,
                leaves = c.meta.leaves,
                root = %c.meta.root,
                "receipts period closed"
            ),
            Err(e) => warn!(error = %e, "receipts: cannot write a period's root"),
        }
        for gone in dropped {
            remove_period(&self.dir, gone);
        }
    }
}

fn write_meta(dir: &Path, m: &PeriodMeta) -> std::io::Result<()> {
    let tmp = dir.join(format!("{}.json.tmp", m.start));
    let bytes = serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?;
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, dir.join(format!("{}.json", m.start)))
}

fn remove_period(dir: &Path, start: u64) {
    let _ = std::fs::remove_file(dir.join(format!("{start}.leaves")));
    let _ = std::fs::remove_file(dir.join(format!("{start}.json")));
}

/// Reads a period back: its ids (at most `max_leaves`), and its meta, or for a period a stop
/// left open, a meta made now (closed at `now`).
fn read_period(
    dir: &Path,
    start: u64,
    max_leaves: usize,
    chain: bool,
    now: u64,
) -> std::io::Result<Closed> {
    let path = dir.join(format!("{start}.leaves"));
    let len = std::fs::metadata(&path)?.len();
    if len > (max_leaves as u64).saturating_mul(32) {
        return Err(std::io::Error::other("more ids than a period may hold"));
    }
    let bytes = std::fs::read(&path)?;
    // A torn last write leaves a partial id: ignore it.
    let leaves: Vec<[u8; 32]> = bytes
        .chunks_exact(32)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(c);
            id
        })
        .collect();
    let root = hex::encode(merkle::root(&leaves));
    let meta = match std::fs::read(dir.join(format!("{start}.json"))) {
        Ok(b) if b.len() <= 4096 => {
            let m: PeriodMeta = serde_json::from_slice(&b).map_err(std::io::Error::other)?;
            if m.root != root || m.leaves != leaves.len() as u64 {
                return Err(std::io::Error::other("ids do not match the recorded root"));
            }
            m
        }
        _ => {
            let m = PeriodMeta {
                start,
                end: now.max(start),
                leaves: leaves.len() as u64,
                root,
                anchored: if chain {
                    Anchoring::Pending
                } else {
                    Anchoring::NotAnchored
                },
            };
            write_meta(dir, &m)?;
            m
        }
    };
    Ok(Closed { meta, leaves })
}

#[cfg(test)]
mod tests;
