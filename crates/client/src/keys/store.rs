//! The API keys' SQLite file: schema (versioned in `meta`), key records, their spend, and the
//! `generation` counter a running client polls to see the CLI's changes.
//!
//! Blocking I/O only (call it from the blocking pool or the CLI). What must not live here:
//! admission rules (`limits.rs`) or anything about HTTP. Secrets are never stored, only their
//! SHA-256.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use super::{
    hash_secret, new_id, new_secret, Budget, BudgetUnit, KeyRecord, KeysError, Limits, NewKey,
    Period, Spend, MAX_KEYS,
};

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    models TEXT NOT NULL,
    budget_unit TEXT,
    budget_period TEXT,
    budget_amount INTEGER,
    rpm INTEGER NOT NULL,
    tpm INTEGER NOT NULL,
    concurrent INTEGER NOT NULL,
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    period_start INTEGER NOT NULL DEFAULT 0,
    period_tokens INTEGER NOT NULL DEFAULT 0,
    period_nanoton INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    total_nanoton INTEGER NOT NULL DEFAULT 0,
    total_requests INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);
";

const COLUMNS: &str = "id, name, hash, models, budget_unit, budget_period, budget_amount, rpm, \
    tpm, concurrent, expires_at, created_at, revoked, period_start, period_tokens, \
    period_nanoton, total_tokens, total_nanoton, total_requests";

/// An open keys file.
pub struct Store {
    conn: Connection,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens the file, creating it and its schema if missing (WAL, 5 s busy timeout).
    pub fn open(path: &Path) -> Result<Self, KeysError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", 1)?;
        conn.execute_batch(SCHEMA_SQL)?;
        let version: i64 = conn.query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )?;
        if version != SCHEMA_VERSION {
            return Err(KeysError::Schema(version));
        }
        Ok(Self { conn })
    }

    /// The change counter: bumped by every create and revoke.
    pub fn generation(&self) -> Result<u64, KeysError> {
        let g: i64 =
            self.conn
                .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                    r.get(0)
                })?;
        Ok(u(g))
    }

    fn bump(&self) -> Result<(), KeysError> {
        self.conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'",
            [],
        )?;
        Ok(())
    }

    fn row(r: &Row<'_>) -> rusqlite::Result<(KeyRecord, Vec<u8>, Spend, String)> {
        let unit: Option<String> = r.get(4)?;
        let period: Option<String> = r.get(5)?;
        let amount: Option<i64> = r.get(6)?;
        let budget = match (unit, period, amount) {
            (Some(unit), Some(period), Some(amount)) => Some((unit, period, u(amount))),
            _ => None,
        };
        let record = KeyRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            models: Vec::new(),
            budget: budget.and_then(|(unit, period, amount)| {
                Some(Budget {
                    unit: BudgetUnit::parse(&unit)?,
                    period: Period::parse(&period)?,
                    amount,
                })
            }),
            limits: Limits {
                requests_per_minute: u32::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
                tokens_per_minute: u(r.get(8)?),
                concurrent_requests: u32::try_from(r.get::<_, i64>(9)?).unwrap_or(0),
            },
            expires_at: r.get::<_, Option<i64>>(10)?.map(u),
            created_at: u(r.get(11)?),
            revoked: r.get::<_, i64>(12)? != 0,
        };
        let spend = Spend {
            period_start: u(r.get(13)?),
            period_tokens: u(r.get(14)?),
            period_nanoton: u(r.get(15)?),
            total_tokens: u(r.get(16)?),
            total_nanoton: u(r.get(17)?),
            total_requests: u(r.get(18)?),
        };
        Ok((record, r.get(2)?, spend, r.get(3)?))
    }

    fn finish(
        (mut record, hash, spend, models): (KeyRecord, Vec<u8>, Spend, String),
    ) -> Result<(KeyRecord, [u8; 32], Spend), KeysError> {
        record.models = serde_json::from_str(&models)
            .map_err(|e| KeysError::Corrupt(format!("key {}: models: {e}", record.id)))?;
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| KeysError::Corrupt(format!("key {}: hash is not 32 bytes", record.id)))?;
        Ok((record, hash, spend))
    }

    /// Every key, with its hash and stored spend, oldest first.
    pub fn load(&self) -> Result<Vec<(KeyRecord, [u8; 32], Spend)>, KeysError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM keys ORDER BY created_at, id LIMIT {}",
            MAX_KEYS
        ))?;
        let rows = st.query_map([], Self::row)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(Self::finish(r?)?);
        }
        Ok(out)
    }

    /// One key by id.
    pub fn get(&self, id: &str) -> Result<Option<(KeyRecord, Spend)>, KeysError> {
        let r = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM keys WHERE id = ?1"),
                [id],
                Self::row,
            )
            .optional()?;
        r.map(|r| Self::finish(r).map(|(rec, _, s)| (rec, s)))
            .transpose()
    }

    /// Creates a key; returns its secret (the only time it exists in clear) and its record.
    pub fn create(&mut self, new: &NewKey, now_s: u64) -> Result<(String, KeyRecord), KeysError> {
        new.validate(now_s)?;
        let tx = self.conn.transaction()?;
        let n: i64 = tx.query_row("SELECT count(*) FROM keys", [], |r| r.get(0))?;
        if u(n) >= MAX_KEYS as u64 {
            return Err(KeysError::Invalid(format!(
                "this file already holds {MAX_KEYS} keys, the most it may"
            )));
        }
        let secret = new_secret();
        let hash = hash_secret(&secret);
        let record = KeyRecord {
            id: new_id(),
            name: new.name.clone(),
            models: new.models.clone(),
            budget: new.budget.clone(),
            limits: new.limits.clone(),
            expires_at: new.expires_at,
            created_at: now_s,
            revoked: false,
        };
        let models =
            serde_json::to_string(&record.models).map_err(|e| KeysError::Invalid(e.to_string()))?;
        let b = record.budget.as_ref();
        tx.execute(
            "INSERT INTO keys (id, name, hash, models, budget_unit, budget_period, budget_amount, \
             rpm, tpm, concurrent, expires_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                record.id,
                record.name,
                hash.as_slice(),
                models,
                b.map(|b| b.unit.name()),
                b.map(|b| b.period.name()),
                b.map(|b| i(b.amount)),
                i64::from(record.limits.requests_per_minute),
                i(record.limits.tokens_per_minute),
                i64::from(record.limits.concurrent_requests),
                record.expires_at.map(i),
                i(now_s),
            ],
        )?;
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'",
            [],
        )?;
        tx.commit()?;
        Ok((secret, record))
    }

    /// Revokes a key; false if there is no such key.
    pub fn revoke(&self, id: &str) -> Result<bool, KeysError> {
        let n = self
            .conn
            .execute("UPDATE keys SET revoked = 1 WHERE id = ?1", [id])?;
        if n > 0 {
            self.bump()?;
        }
        Ok(n > 0)
    }

    /// Writes the spend of the given keys (one transaction); unknown ids are skipped.
    pub fn write_spend(&mut self, spends: &[(String, Spend)]) -> Result<(), KeysError> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "UPDATE keys SET period_start = ?2, period_tokens = ?3, period_nanoton = ?4, \
                 total_tokens = ?5, total_nanoton = ?6, total_requests = ?7 WHERE id = ?1",
            )?;
            for (id, s) in spends {
                st.execute(params![
                    id,
                    i(s.period_start),
                    i(s.period_tokens),
                    i(s.period_nanoton),
                    i(s.total_tokens),
                    i(s.total_nanoton),
                    i(s.total_requests),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
