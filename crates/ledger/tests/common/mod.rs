//! Shared test helpers: a self-removing temporary directory and ledger constructors.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cocoon_ledger::{AccountKey, Ledger, LedgerConfig, Party, Snapshot, UsageDelta};

pub const SEED: [u8; 32] = [42u8; 32];

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cocoon-ledger-{tag}-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("ledger.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn config(path: &Path) -> LedgerConfig {
    LedgerConfig::new(path, SEED)
}

pub async fn open(path: &Path) -> (Ledger, Snapshot) {
    Ledger::open(config(path)).await.unwrap()
}

pub fn worker(n: usize) -> AccountKey {
    AccountKey::new(Party::Worker, format!("0:{n:064x}"))
}

pub fn client(n: usize) -> AccountKey {
    AccountKey::new(Party::Client, format!("0:{n:064x}"))
}

pub fn delta(key: &AccountKey, tokens: u64) -> UsageDelta {
    UsageDelta {
        key: key.clone(),
        tokens,
    }
}

/// Copies the database and its WAL (if any) from `from` to `to`.
pub fn copy_db(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    let wal = |p: &Path| PathBuf::from(format!("{}-wal", p.display()));
    if wal(from).exists() {
        std::fs::copy(wal(from), wal(to)).unwrap();
    } else {
        let _ = std::fs::remove_file(wal(to));
    }
}
