//! The read-only inspector for operators (`cocoon proxy ledger`): opens a ledger file that no proxy is using,
//! verifies every row against a public key (no secret needed) — and the records of its usage log, which
//! it applies on top — and renders a readable report.
//! It never writes: the file is opened read-only.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::LedgerError;
use crate::sign::Verifier;
use crate::state::SharedState;
use crate::store;
use crate::types::Snapshot;
use crate::{usage_log, writer};

/// What [`inspect`] found; `Display` prints a table.
#[derive(Debug, Clone)]
pub struct InspectReport {
    /// The file inspected.
    pub path: PathBuf,
    /// Schema version of the file.
    pub schema_version: i64,
    /// Every row verified, as a snapshot.
    pub snapshot: Snapshot,
    /// Pending anchor snapshot rows (all verified).
    pub snapshot_rows: usize,
}

/// Opens `path` read-only and verifies every signature with `public_key`.
/// Fails with [`LedgerError::Tampered`], [`LedgerError::WrongKey`] or [`LedgerError::Inconsistent`] naming the
/// row at fault. Blocking: call it from a plain thread or `spawn_blocking`, while the proxy is not running
/// (the proxy holds an exclusive lock, so this fails with "database is locked" otherwise).
pub fn inspect(path: &Path, public_key: [u8; 32]) -> Result<InspectReport, LedgerError> {
    let conn = store::open_ro(path)?;
    let verifier = Verifier::new(public_key);
    let mut loaded = store::load(&conn, &verifier)?;
    // Usage the log holds and the file not yet (a proxy that stopped without closing).
    let records = usage_log::continuing(
        usage_log::read_records(&usage_log::log_path(path), &verifier)?,
        loaded.db_seqno,
    );
    writer::apply_log(&mut loaded, &records)?;
    let schema_version = loaded.schema_version;
    let snapshot_rows = loaded.snapshots.values().map(Vec::len).sum();
    let (state, _) = SharedState::from_loaded(loaded);
    Ok(InspectReport {
        path: path.to_path_buf(),
        schema_version,
        snapshot: state.snapshot(),
        snapshot_rows,
    })
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.snapshot;
        writeln!(f, "ledger        {}", self.path.display())?;
        writeln!(f, "schema        {}", self.schema_version)?;
        writeln!(f, "public key    {}", hex::encode(s.public_key))?;
        writeln!(f, "db seqno      {}", s.db_seqno)?;
        writeln!(f, "signatures    all verified")?;
        match s.confirmed_anchor() {
            Some(a) => writeln!(
                f,
                "confirmed     seqno {} hash {}",
                a.seqno,
                hex::encode(a.session_hash)
            )?,
            None => writeln!(f, "confirmed     none")?,
        }
        writeln!(f)?;
        writeln!(f, "accounts ({})", s.accounts.len())?;
        writeln!(
            f,
            "{:<7} {:<50} {:>20} {:>20} {:>20} {:>5} {:>8}",
            "party", "owner", "committed_db", "committed_chain", "onchain_tokens", "state", "seqno"
        )?;
        for a in &s.accounts {
            writeln!(
                f,
                "{:<7} {:<50} {:>20} {:>20} {:>20} {:>5} {:>8}",
                a.key.party.to_string(),
                a.key.owner,
                a.committed_db,
                a.committed_chain,
                a.onchain_tokens,
                a.onchain_state,
                a.row_seqno
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "anchors ({} retained, pruned below seqno {}, {} pending snapshot rows)",
            s.anchors.len(),
            s.pruned_below,
            self.snapshot_rows
        )?;
        writeln!(
            f,
            "{:>10} {:<10} {:>8} {:>12} session_hash",
            "seqno", "status", "entries", "created"
        )?;
        for a in &s.anchors {
            writeln!(
                f,
                "{:>10} {:<10} {:>8} {:>12} {}",
                a.anchor.seqno,
                a.status.to_string(),
                a.entries,
                a.created_unix,
                hex::encode(a.anchor.session_hash)
            )?;
        }
        Ok(())
    }
}
