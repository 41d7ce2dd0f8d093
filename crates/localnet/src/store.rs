//! Durable state of the local chain in a data directory:
//!
//! - `inputs.log`: append-only JSON lines, one per accepted input (`{"seq","now","kind","boc"}`), each
//!   fsynced before the input is acknowledged. Execution is deterministic (see `ledger`), so replaying the
//!   inputs with their recorded `now` rebuilds the exact same state.
//! - `snapshot.json`: accounts (ShardAccount BOCs), transaction histories and the logical time as of input
//!   `seq`, written to a temp file, fsynced and renamed (atomic). After a snapshot the log is reset the same
//!   way; entries with `seq <= snapshot.seq` are skipped on replay, so a crash between the two steps is safe.
//!
//! Recovery after kill -9: load the snapshot (if any), replay the log; a torn last line (crash mid-append)
//! is cut off. A malformed line that is not the last is corruption and fails loudly.
//! What must not live here: execution (see `ledger`) or locking (see `node`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cocoon_ton::TonAddress;
use serde::{Deserialize, Serialize};
use tycho_types::boc::Boc;
use tycho_types::cell::{Cell, CellBuilder};
use tycho_types::models::ShardAccount;

use crate::ledger::{Ledger, TxRecord};

/// Snapshot after this many logged inputs.
pub const SNAPSHOT_EVERY: u64 = 1_000;
/// Most bytes of one log line we read back (a BOC input is at most 64 KiB, base64 + JSON overhead).
const MAX_LINE: usize = 256 * 1024;

/// Persistence errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Kind of a logged input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// An external inbound message (sendBoc).
    Ext,
    /// An injected internal message (faucet, tests).
    Int,
}

/// One logged input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Input {
    pub seq: u64,
    pub now: u32,
    pub kind: InputKind,
    /// Base64 BOC of the message.
    pub boc: String,
}

/// `(lt, now, Transaction BOC)` in a snapshot.
type StoredTx = (u64, u32, String);

#[derive(Serialize, Deserialize)]
struct Snapshot {
    seq: u64,
    lt: u64,
    now: u32,
    /// `(raw address, ShardAccount BOC)`.
    accounts: Vec<(String, String)>,
    /// `(raw address, [(lt, now, Transaction BOC)])`, oldest first.
    history: Vec<(String, Vec<StoredTx>)>,
}

/// The open data directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    log: File,
    /// Last logged sequence number.
    seq: u64,
    /// Inputs logged since the last snapshot.
    since_snapshot: u64,
}

/// What recovery found, for the node to replay.
pub struct Recovered {
    pub store: Store,
    /// State as of the snapshot (None: start empty).
    pub snapshot: Option<SnapshotParts>,
    /// Inputs after the snapshot, in order.
    pub replay: Vec<Input>,
}

impl Store {
    fn log_path(dir: &Path) -> PathBuf {
        dir.join("inputs.log")
    }

    fn snap_path(dir: &Path) -> PathBuf {
        dir.join("snapshot.json")
    }

    /// Opens (creating) a data dir and reads what is there.
    pub fn open(dir: &Path) -> Result<Recovered, StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let snap_path = Self::snap_path(dir);
        let (snapshot, snap_seq) = match fs::read(&snap_path) {
            Ok(bytes) => {
                let s: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        what: "snapshot",
                        detail: e.to_string(),
                    })?;
                let seq = s.seq;
                (Some(decode_snapshot(s)?), seq)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, 0),
            Err(e) => return Err(io(&snap_path)(e)),
        };
        let log_path = Self::log_path(dir);
        let (replay, good_len) = read_log(&log_path, snap_seq)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        // Cut a torn tail so the next append starts on a fresh line.
        let len = log.metadata().map_err(io(&log_path))?.len();
        if len != good_len {
            tracing::warn!(cut = len - good_len, "dropping a torn last log line");
            log.set_len(good_len).map_err(io(&log_path))?;
            log.sync_all().map_err(io(&log_path))?;
        }
        let seq = replay.last().map_or(snap_seq, |i| i.seq);
        let since_snapshot = replay.len() as u64;
        Ok(Recovered {
            store: Store {
                dir: dir.to_path_buf(),
                log,
                seq,
                since_snapshot,
            },
            snapshot,
            replay,
        })
    }

    /// Appends an input durably (write + fsync) and returns its sequence number.
    pub fn append(&mut self, now: u32, kind: InputKind, msg: &Cell) -> Result<u64, StoreError> {
        let seq = self.seq + 1;
        let input = Input {
            seq,
            now,
            kind,
            boc: Boc::encode_base64(msg),
        };
        let mut line = serde_json::to_vec(&input).map_err(|e| StoreError::Corrupt {
            what: "input",
            detail: e.to_string(),
        })?;
        line.push(b'\n');
        let path = Self::log_path(&self.dir);
        self.log.write_all(&line).map_err(io(&path))?;
        self.log.sync_data().map_err(io(&path))?;
        self.seq = seq;
        self.since_snapshot += 1;
        Ok(seq)
    }

    /// Whether a snapshot is due.
    pub fn snapshot_due(&self) -> bool {
        self.since_snapshot >= SNAPSHOT_EVERY
    }

    /// Writes a snapshot of `ledger` (as of the last appended input) and resets the log.
    pub fn snapshot(&mut self, ledger: &Ledger, now: u32) -> Result<(), StoreError> {
        let snap = Snapshot {
            seq: self.seq,
            lt: ledger.lt(),
            now,
            accounts: ledger
                .accounts()
                .iter()
                .map(|(a, sa)| {
                    let cell = CellBuilder::build_from(sa).map_err(|e| StoreError::Corrupt {
                        what: "account",
                        detail: e.to_string(),
                    })?;
                    Ok((a.to_raw(), Boc::encode_base64(cell)))
                })
                .collect::<Result<_, StoreError>>()?,
            history: ledger
                .histories()
                .iter()
                .map(|(a, h)| {
                    (
                        a.to_raw(),
                        h.iter()
                            .map(|t| (t.lt, t.now, Boc::encode_base64(&t.cell)))
                            .collect(),
                    )
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&snap).map_err(|e| StoreError::Corrupt {
            what: "snapshot",
            detail: e.to_string(),
        })?;
        let path = Self::snap_path(&self.dir);
        write_atomic(&self.dir, &path, &bytes)?;
        // The snapshot covers every logged input: start a fresh log.
        let log_path = Self::log_path(&self.dir);
        write_atomic(&self.dir, &log_path, b"")?;
        self.log = OpenOptions::new()
            .append(true)
            .read(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        self.since_snapshot = 0;
        Ok(())
    }
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    // Make the rename itself durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// Reads log entries after `after_seq`; returns them and the byte length of the well-formed prefix.
fn read_log(path: &Path, after_seq: u64) -> Result<(Vec<Input>, u64), StoreError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io(path)(e)),
    };
    let mut r = BufReader::new(f);
    let mut out = Vec::new();
    let mut good: u64 = 0;
    let mut last_seq = after_seq;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        let complete = buf.last() == Some(&b'\n');
        let parsed = if n > MAX_LINE {
            None
        } else {
            serde_json::from_slice::<Input>(&buf).ok()
        };
        match parsed {
            Some(input) if complete => {
                if input.seq > after_seq {
                    if input.seq != last_seq + 1 {
                        return Err(StoreError::Corrupt {
                            what: "log",
                            detail: format!("gap before seq {}", input.seq),
                        });
                    }
                    last_seq = input.seq;
                    out.push(input);
                }
                good += n as u64;
            }
            _ => {
                // Without a newline, read_until hit EOF mid-line: a torn last append. A complete line
                // that does not parse is corruption.
                if complete {
                    return Err(StoreError::Corrupt {
                        what: "log",
                        detail: format!("bad line at byte {good}"),
                    });
                }
                break;
            }
        }
    }
    Ok((out, good))
}

/// Accounts, histories, logical time and `now` of a snapshot.
pub type SnapshotParts = (
    BTreeMap<TonAddress, ShardAccount>,
    HashMap<TonAddress, VecDeque<TxRecord>>,
    u64,
    u32,
);

fn decode_snapshot(s: Snapshot) -> Result<SnapshotParts, StoreError> {
    let bad = |d: String| StoreError::Corrupt {
        what: "snapshot",
        detail: d,
    };
    let mut accounts = BTreeMap::new();
    for (a, b) in s.accounts {
        let addr = TonAddress::parse_raw(&a).map_err(|e| bad(e.to_string()))?;
        let cell = Boc::decode_base64(&b).map_err(|e| bad(e.to_string()))?;
        let sa: ShardAccount = cell.parse().map_err(|e| bad(e.to_string()))?;
        accounts.insert(addr, sa);
    }
    let mut history = HashMap::new();
    for (a, txs) in s.history {
        let addr = TonAddress::parse_raw(&a).map_err(|e| bad(e.to_string()))?;
        let mut h = VecDeque::with_capacity(txs.len());
        for (lt, now, b) in txs {
            let cell = Boc::decode_base64(&b).map_err(|e| bad(e.to_string()))?;
            h.push_back(TxRecord {
                lt,
                hash: cell.repr_hash().0,
                now,
                cell,
            });
        }
        history.insert(addr, h);
    }
    Ok((accounts, history, s.lt, s.now))
}

/// Decodes a logged input's message.
pub fn input_cell(i: &Input) -> Result<Cell, StoreError> {
    let bytes = STANDARD.decode(&i.boc).map_err(|e| StoreError::Corrupt {
        what: "log",
        detail: e.to_string(),
    })?;
    Boc::decode(bytes).map_err(|e| StoreError::Corrupt {
        what: "log",
        detail: e.to_string(),
    })
}
