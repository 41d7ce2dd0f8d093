//! The usage log: a small preallocated file beside the database (`<db>.usage-log`) where a batch
//! of usage becomes durable with one write and one `fdatasync`, without SQLite's per-commit work
//! (a signed row per changed account, the signed seqno, WAL frames). The writer copies what the
//! log holds into SQLite later, in large transactions ([`crate::writer`]), and starts the log
//! over; opening the ledger copies whatever the log still holds first.
//!
//! A record is one batch of usage: its db seqno, time, and each changed account's new
//! `committed_db` (absolute values, so copying a record twice is harmless), signed with the
//! ledger's key over the canonical row encoding (table `usage_log`), so the host can no more edit
//! it than a row. Records are written from the start of the file after each copy; reading stops at
//! the first record that does not parse or verify (a torn last write, or what an older round left
//! behind), and only records continuing the database's seqno one by one are applied. The file
//! never grows: its size is fixed when it is created, so `fdatasync` writes data only.
//!
//! What must not live here: deciding when to copy into SQLite, or any SQL.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::LedgerError;
use crate::sign::{RowBytes, Signer, Verifier};
use crate::types::{AccountKey, Party, MAX_OWNER_LEN};

/// Size of a new log file; a full log is copied into SQLite and started over.
pub(crate) const LOG_BYTES: u64 = 4 << 20;
const MAGIC: &[u8; 4] = b"CUL1";
const SIG_LEN: usize = 64;
/// Most accounts one record may name (a batch touches at most this many; larger ones use SQLite).
pub(crate) const MAX_RECORD_ACCOUNTS: usize = 4096;

/// The path of the usage log of the database at `db`.
pub(crate) fn log_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".usage-log");
    PathBuf::from(name)
}

/// One batch of usage as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRecord {
    pub(crate) seqno: u64,
    pub(crate) unix: u64,
    /// Each changed account and its `committed_db` after the batch.
    pub(crate) accounts: Vec<(AccountKey, u64)>,
}

impl LogRecord {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24 + self.accounts.len() * 64);
        b.extend_from_slice(&self.seqno.to_be_bytes());
        b.extend_from_slice(&self.unix.to_be_bytes());
        b.extend_from_slice(&(self.accounts.len() as u32).to_be_bytes());
        for (key, db) in &self.accounts {
            b.push(key.party.code());
            // Owners are bounded by MAX_OWNER_LEN (checked by the ledger's handle).
            b.extend_from_slice(&(key.owner.len() as u16).to_be_bytes());
            b.extend_from_slice(key.owner.as_bytes());
            b.extend_from_slice(&db.to_be_bytes());
        }
        b
    }

    fn parse_body(b: &[u8]) -> Option<LogRecord> {
        let mut r = Cursor { b, at: 0 };
        let seqno = r.u64()?;
        let unix = r.u64()?;
        let n = r.u32()? as usize;
        if n > MAX_RECORD_ACCOUNTS {
            return None;
        }
        let mut accounts = Vec::with_capacity(n);
        for _ in 0..n {
            let party = Party::from_code(i64::from(r.u8()?))?;
            let len = r.u16()? as usize;
            if len == 0 || len > MAX_OWNER_LEN {
                return None;
            }
            let owner = std::str::from_utf8(r.take(len)?).ok()?.to_string();
            accounts.push((AccountKey { party, owner }, r.u64()?));
        }
        (r.at == b.len()).then_some(LogRecord {
            seqno,
            unix,
            accounts,
        })
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    RowBytes::new("usage_log").bytes(body).finish()
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// The open log, written by the writer thread only.
pub(crate) struct UsageLog {
    file: File,
    /// Where the next record goes.
    offset: u64,
    size: u64,
    /// `fdatasync` after each append (off only for the no-durability baseline).
    sync: bool,
}

impl UsageLog {
    /// Opens the log at `path`, creating it at [`LOG_BYTES`] of zeros if it is missing or
    /// smaller (so appends never change its size). The next record goes at the start: call
    /// this only after what the log held was copied into SQLite ([`read_records`]).
    pub(crate) fn open(path: &Path, sync: bool) -> Result<Self, LedgerError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        if len < LOG_BYTES {
            // Real blocks, not a sparse hole: a write into a hole would change metadata and make
            // every fdatasync a full fsync.
            let zeros = vec![0u8; 1 << 20];
            let mut at = len;
            while at < LOG_BYTES {
                let n = (LOG_BYTES - at).min(zeros.len() as u64);
                file.write_all_at(&zeros[..n as usize], at)?;
                at += n;
            }
            file.sync_all()?;
        }
        let size = file.metadata()?.len();
        let log = UsageLog {
            file,
            offset: 0,
            size,
            sync,
        };
        // What an older round left at the start must not read as a continuation: mark the start.
        log.file.write_all_at(&[0u8; 8], 0)?;
        if sync {
            log.file.sync_data()?;
        }
        Ok(log)
    }

    /// Appends `rec` signed by `signer` and makes it durable. `Ok(false)`: no room left (copy the
    /// log into SQLite, [`UsageLog::restart`], and append again).
    pub(crate) fn append(&mut self, rec: &LogRecord, signer: &Signer) -> Result<bool, LedgerError> {
        let body = rec.body();
        let sig = signer.sign(&signed_bytes(&body));
        let mut out = Vec::with_capacity(8 + body.len() + SIG_LEN + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&sig);
        // The record after this one must not read as valid until it is written: end with zeros
        // (they land in the next record's magic).
        out.extend_from_slice(&[0u8; 8]);
        let end = self.offset + out.len() as u64;
        if end > self.size {
            return Ok(false);
        }
        self.file.write_all_at(&out, self.offset)?;
        if self.sync {
            self.file.sync_data()?;
        }
        self.offset = end - 8;
        Ok(true)
    }

    /// Starts writing from the start again (everything logged is now in SQLite).
    pub(crate) fn restart(&mut self) -> Result<(), LedgerError> {
        self.file.write_all_at(&[0u8; 8], 0)?;
        self.offset = 0;
        Ok(())
    }

    /// Whether anything was appended since the last restart.
    pub(crate) fn is_empty(&self) -> bool {
        self.offset == 0
    }
}

/// Every record of the log at `path` that parses and verifies with `verifier`, in file order,
/// up to the first that does not (none when the file is missing).
pub(crate) fn read_records(
    path: &Path,
    verifier: &Verifier,
) -> Result<Vec<LogRecord>, LedgerError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    }
    Ok(records_in(&bytes, verifier))
}

/// The records at the start of `bytes` (a log file's contents, which the host controls) that
/// parse and verify, up to the first that does not. Never panics on any input.
pub(crate) fn records_in(bytes: &[u8], verifier: &Verifier) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut r = Cursor { b: bytes, at: 0 };
    while let Some(magic) = r.take(4) {
        if magic != MAGIC {
            break;
        }
        let Some(len) = r.u32() else { break };
        let Some(body) = r.take(len as usize) else {
            break;
        };
        let Some(sig) = r.take(SIG_LEN) else { break };
        if !verifier.verify(&signed_bytes(body), sig) {
            break;
        }
        let Some(rec) = LogRecord::parse_body(body) else {
            break;
        };
        out.push(rec);
    }
    out
}

/// Entry points for the fuzz targets (`fuzz/fuzz_targets/usage_log.rs`): the log's parsers on
/// arbitrary bytes. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Parses `data` as a whole log (framing and signature checks, with a fixed key) and as one
    /// record body; a body that parses must encode back to the same bytes. Returns how many
    /// records verified.
    pub fn usage_log(data: &[u8]) -> usize {
        if let Some(rec) = LogRecord::parse_body(data) {
            assert_eq!(
                rec.body(),
                data,
                "a parsed record body re-encodes differently"
            );
        }
        records_in(data, &Verifier::new([7; 32])).len()
    }
}

/// The records of `records` that continue `db_seqno` one by one: those at or below it are
/// already in SQLite (a copy finished before the log was started over) and skipped; the first
/// gap ends the run.
pub(crate) fn continuing(records: Vec<LogRecord>, db_seqno: u64) -> Vec<LogRecord> {
    let mut next = db_seqno + 1;
    let mut out = Vec::new();
    for rec in records {
        if rec.seqno < next {
            continue;
        }
        if rec.seqno != next {
            break;
        }
        next += 1;
        out.push(rec);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seqno: u64, tokens: u64) -> LogRecord {
        LogRecord {
            seqno,
            unix: 1_700_000_000,
            accounts: vec![
                (AccountKey::new(Party::Client, "client-a"), tokens),
                (AccountKey::new(Party::Worker, "worker-b"), tokens * 2),
            ],
        }
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "cocoon-usage-log-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    fn rand_suffix() -> u64 {
        use std::time::{SystemTime, UNIX_EPOCH};
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    #[test]
    fn records_read_back_in_order_and_a_restart_hides_the_old_round() {
        let d = dir();
        let path = d.join("l.usage-log");
        let signer = Signer::from_seed(&[3; 32]).expect("signer");
        let verifier = Verifier::new(signer.public_key());
        let mut log = UsageLog::open(&path, true).expect("open");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), LOG_BYTES);
        for s in 1..=3 {
            assert!(log.append(&rec(s, s * 10), &signer).expect("append"));
        }
        assert_eq!(
            read_records(&path, &verifier).expect("read"),
            vec![rec(1, 10), rec(2, 20), rec(3, 30)]
        );
        // Started over: the new first record hides everything after it.
        log.restart().expect("restart");
        assert!(read_records(&path, &verifier).expect("read").is_empty());
        assert!(log.append(&rec(4, 40), &signer).expect("append"));
        assert_eq!(
            read_records(&path, &verifier).expect("read"),
            vec![rec(4, 40)]
        );
        // Reopening starts over too, and the size never changes.
        drop(log);
        let _log = UsageLog::open(&path, true).expect("reopen");
        assert!(read_records(&path, &verifier).expect("read").is_empty());
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), LOG_BYTES);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_or_forged_record_ends_the_log() {
        let d = dir();
        let path = d.join("l.usage-log");
        let signer = Signer::from_seed(&[3; 32]).expect("signer");
        let verifier = Verifier::new(signer.public_key());
        let mut log = UsageLog::open(&path, false).expect("open");
        for s in 1..=3 {
            assert!(log.append(&rec(s, s), &signer).expect("append"));
        }
        let mut bytes = std::fs::read(&path).expect("read");
        // A byte of the second record's body changed: its signature no longer holds.
        let first_len = 8 + rec(1, 1).body().len() + SIG_LEN;
        bytes[first_len + 8 + 20] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(
            read_records(&path, &verifier).expect("read"),
            vec![rec(1, 1)]
        );
        // Another key's log verifies nothing.
        let other = Verifier::new(Signer::from_seed(&[4; 32]).expect("s").public_key());
        assert!(read_records(&path, &other).expect("read").is_empty());
        // A missing file holds nothing.
        assert!(read_records(&d.join("none"), &verifier)
            .expect("read")
            .is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_log_says_so_instead_of_growing() {
        let d = dir();
        let path = d.join("l.usage-log");
        let signer = Signer::from_seed(&[3; 32]).expect("signer");
        let mut log = UsageLog::open(&path, false).expect("open");
        let mut n = 0u64;
        while log.append(&rec(n + 1, n), &signer).expect("append") {
            n += 1;
        }
        assert!(n > 1000, "a 4 MiB log holds many batches ({n})");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), LOG_BYTES);
        let _ = std::fs::remove_dir_all(&d);
    }

    proptest::proptest! {
        /// Any record encodes and parses back to itself, and a log of signed records reads back
        /// whole.
        #[test]
        fn records_round_trip(
            seqno in proptest::prelude::any::<u64>(),
            unix in proptest::prelude::any::<u64>(),
            accounts in proptest::collection::vec(
                (proptest::prelude::any::<bool>(), "[a-z0-9:_-]{1,128}", proptest::prelude::any::<u64>()),
                0..20,
            ),
        ) {
            let rec = LogRecord {
                seqno,
                unix,
                accounts: accounts
                    .into_iter()
                    .map(|(w, owner, db)| {
                        let party = if w { Party::Worker } else { Party::Client };
                        (AccountKey::new(party, owner), db)
                    })
                    .collect(),
            };
            proptest::prop_assert_eq!(LogRecord::parse_body(&rec.body()), Some(rec.clone()));
            let signer = Signer::from_seed(&[5; 32]).expect("signer");
            let body = rec.body();
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&body);
            bytes.extend_from_slice(&signer.sign(&signed_bytes(&body)));
            let verifier = Verifier::new(signer.public_key());
            proptest::prop_assert_eq!(records_in(&bytes, &verifier), vec![rec]);
            // Cut anywhere, the record is not read.
            let cut = bytes.len() / 2;
            proptest::prop_assert!(records_in(&bytes[..cut], &verifier).is_empty());
        }
    }

    #[test]
    fn only_records_continuing_the_database_are_applied() {
        let recs = vec![rec(3, 0), rec(4, 0), rec(5, 0), rec(7, 0)];
        let seqnos = |v: Vec<LogRecord>| v.into_iter().map(|r| r.seqno).collect::<Vec<_>>();
        assert_eq!(seqnos(continuing(recs.clone(), 3)), vec![4, 5]);
        assert_eq!(seqnos(continuing(recs.clone(), 2)), vec![3, 4, 5]);
        assert!(continuing(recs.clone(), 5).is_empty());
        assert!(continuing(recs, 0).is_empty(), "a gap right away");
    }
}
