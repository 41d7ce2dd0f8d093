//! The ledger's error type. One enum for the whole crate because every operation can meet the same storage
//! failures; variants carry the row or value at fault. Nothing here may carry key material.

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// SQLite failed (I/O error, disk full, locked by another process, ...).
    #[error("ledger database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A filesystem operation failed.
    #[error("ledger file: {0}")]
    Io(#[from] std::io::Error),
    /// A row's signature does not match its contents: the file was edited outside the ledger.
    #[error("ledger row tampered: table {table}, key {key}: {reason}")]
    Tampered {
        /// The table holding the row.
        table: &'static str,
        /// The row's primary key, readable.
        key: String,
        /// What did not match.
        reason: String,
    },
    /// The file is signed by another key.
    #[error("ledger belongs to another proxy key: file key {found}, configured key {expected}")]
    WrongKey {
        /// The configured public key, hex.
        expected: String,
        /// The public key stored in the file, hex.
        found: String,
    },
    /// Evidence that the ledger file is an old copy (or lost data): chain markers or a counterparty know more.
    #[error("ledger rollback detected: {0}")]
    RollbackDetected(String),
    /// The batch holding this request could not be committed (I/O error, disk full); nothing of it is
    /// durable and the writer has stopped: reopen the ledger.
    #[error("ledger commit failed: {0}")]
    CommitFailed(String),
    /// The writer has stopped (the ledger was closed).
    #[error("ledger is closed")]
    Closed,
    /// An input or the file exceeds a bound.
    #[error("ledger limit exceeded: {what} (limit {limit})")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// The bound.
        limit: u64,
    },
    /// An argument is malformed (empty owner, counter overflow, ...).
    #[error("invalid ledger input: {0}")]
    InvalidInput(String),
    /// The file was written by an unknown schema version.
    #[error("ledger schema version {found} is not supported (this build reads {supported})")]
    UnsupportedSchema {
        /// The version in the file.
        found: i64,
        /// The version this build reads and writes.
        supported: i64,
    },
    /// A correctly signed row is inconsistent with the rest of the file (e.g. a row newer than the file's seqno).
    #[error("ledger inconsistent: table {table}, key {key}: {reason}")]
    Inconsistent {
        /// The table holding the row.
        table: &'static str,
        /// The row's primary key, readable.
        key: String,
        /// What is inconsistent.
        reason: String,
    },
    /// An internal invariant broke (a counter would decrease). This is a bug; the batch is not committed.
    #[error("ledger invariant violated: {0}")]
    Invariant(String),
    /// SQLite refused a setting the ledger depends on.
    #[error("ledger setup: {0}")]
    Setup(String),
    /// A blocking task or the writer thread panicked.
    #[error("ledger worker failed: {0}")]
    Worker(String),
}
