//! SQLite storage: schema, connection settings, loading and verifying every row, and the signed row writers.
//!
//! This module is the only one that speaks SQL. It is synchronous and must only run on the writer thread or
//! inside `spawn_blocking`, never on the async runtime. It knows nothing about batching or channels.
//!
//! Schema (version [`SCHEMA_VERSION`], also in `PRAGMA user_version` and the signed `meta.schema_version`):
//! - `meta(key, value, sig)`: `schema_version`, `public_key`, `db_seqno`, `accounts_count`, `pruned_below`;
//!   numbers as 8-byte big-endian blobs.
//! - `accounts(party, owner, sc_address, committed_db, committed_chain, onchain_tokens, onchain_balance,
//!   onchain_stake, onchain_state, updated_unix, row_seqno, sig)`, primary key (party, owner); the u128
//!   amounts are decimal text so the `sqlite3` CLI shows them.
//! - `anchors(seqno, session_hash, status, created_unix, sig)`.
//! - `anchor_snapshots(seqno, party, owner, committed_db, sig)`: the values a pending anchor will commit.
//!
//! Consistency checks on load, beyond signatures: the number of account rows equals the signed
//! `accounts_count` (a deleted row is noticed, since rows cannot be forged); no row is newer than the signed
//! `db_seqno`; `committed_chain ≤ committed_db`; snapshot rows belong to a pending anchor and never exceed
//! the account's `committed_db`. What signatures cannot catch: a mix of rows from different old copies
//! that each passed these checks (see the crate docs; chain markers and counterparties catch that).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::types::FromSql;
use rusqlite::{params, Connection, OpenFlags, Row};

use crate::error::LedgerError;
use crate::sign::{RowBytes, Signer, Verifier};
use crate::types::{
    AccountKey, AccountRecord, AnchorStatus, Party, SyncMode, MAX_ACCOUNTS, MAX_OWNER_LEN,
    MAX_PENDING_ANCHORS, MAX_RESOLVED_ANCHORS, MAX_SC_ADDRESS_LEN,
};

/// The schema this build reads and writes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

const T_META: &str = "meta";
const T_ACCOUNTS: &str = "accounts";
const T_ANCHORS: &str = "anchors";
const T_SNAPSHOTS: &str = "anchor_snapshots";

pub(crate) const META_SCHEMA: &str = "schema_version";
pub(crate) const META_PUBKEY: &str = "public_key";
pub(crate) const META_SEQNO: &str = "db_seqno";
pub(crate) const META_COUNT: &str = "accounts_count";
pub(crate) const META_PRUNED: &str = "pruned_below";

const SCHEMA_SQL: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, sig BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE accounts (
    party INTEGER NOT NULL, owner TEXT NOT NULL, sc_address TEXT NOT NULL,
    committed_db INTEGER NOT NULL, committed_chain INTEGER NOT NULL, onchain_tokens INTEGER NOT NULL,
    onchain_balance TEXT NOT NULL, onchain_stake TEXT NOT NULL, onchain_state INTEGER NOT NULL,
    updated_unix INTEGER NOT NULL, row_seqno INTEGER NOT NULL, sig BLOB NOT NULL,
    PRIMARY KEY (party, owner)) WITHOUT ROWID;
CREATE TABLE anchors (seqno INTEGER PRIMARY KEY NOT NULL, session_hash BLOB NOT NULL, status INTEGER NOT NULL,
    created_unix INTEGER NOT NULL, sig BLOB NOT NULL);
CREATE TABLE anchor_snapshots (seqno INTEGER NOT NULL, party INTEGER NOT NULL, owner TEXT NOT NULL,
    committed_db INTEGER NOT NULL, sig BLOB NOT NULL, PRIMARY KEY (seqno, party, owner)) WITHOUT ROWID;
";

/// One anchor row as held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AnchorRow {
    pub(crate) hash: [u8; 32],
    pub(crate) status: AnchorStatus,
    pub(crate) created_unix: u64,
}

/// Everything a verified file holds.
pub(crate) struct Loaded {
    pub(crate) schema_version: i64,
    pub(crate) public_key: [u8; 32],
    pub(crate) db_seqno: u64,
    pub(crate) pruned_below: u64,
    pub(crate) accounts: HashMap<AccountKey, AccountRecord>,
    pub(crate) anchors: BTreeMap<u64, AnchorRow>,
    pub(crate) snapshots: BTreeMap<u64, Vec<(AccountKey, u64)>>,
}

/// Opens (creating if needed) the ledger file for the writer with the durability settings.
///
/// `locking_mode=EXCLUSIVE` makes a second process (a second proxy on the same file, or the inspector while
/// the proxy runs) fail with "database is locked" instead of interleaving writes; it also keeps the WAL index
/// in process memory, so no `-shm` file exists.
pub(crate) fn open_rw(path: &Path, sync: SyncMode) -> Result<Connection, LedgerError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::Setup(format!(
            "journal_mode=WAL refused (got {mode})"
        )));
    }
    let level = match sync {
        SyncMode::Full => 2,
        SyncMode::Off => 0,
    };
    conn.pragma_update(None, "synchronous", level)?;
    let got: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
    if got != level {
        return Err(LedgerError::Setup(format!(
            "synchronous={level} refused (got {got})"
        )));
    }
    Ok(conn)
}

/// Opens the file read-only for the inspector (never creates it).
pub(crate) fn open_ro(path: &Path) -> Result<Connection, LedgerError> {
    if !path.exists() {
        return Err(LedgerError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} does not exist", path.display()),
        )));
    }
    Ok(Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?)
}

/// Creates the schema in an empty file; leaves an existing one alone. Returns true when it created it.
pub(crate) fn init_if_empty(conn: &mut Connection, signer: &Signer) -> Result<bool, LedgerError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |r| r.get(0),
    )?;
    if version != 0 || tables != 0 {
        return Ok(false);
    }
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA_SQL)?;
    put_meta(&tx, signer, META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
    put_meta(&tx, signer, META_PUBKEY, &signer.public_key())?;
    put_meta_u64(&tx, signer, META_SEQNO, 0)?;
    put_meta_u64(&tx, signer, META_COUNT, 0)?;
    put_meta_u64(&tx, signer, META_PRUNED, 0)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(true)
}

// === row writers ===

/// SQLite integers are signed 64-bit; counters above `i64::MAX` are refused (the writer already refuses to
/// grow a counter past it, so this only fires on a bug).
fn sql(v: u64) -> Result<i64, LedgerError> {
    i64::try_from(v)
        .map_err(|_| LedgerError::InvalidInput(format!("{v} exceeds the storable range")))
}

fn meta_bytes(key: &str, value: &[u8]) -> Vec<u8> {
    RowBytes::new(T_META).str(key).bytes(value).finish()
}

pub(crate) fn put_meta(
    conn: &Connection,
    signer: &Signer,
    key: &str,
    value: &[u8],
) -> Result<(), LedgerError> {
    let sig = signer.sign(&meta_bytes(key, value));
    conn.prepare_cached(
        "INSERT INTO meta (key, value, sig) VALUES (?1, ?2, ?3)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, sig = excluded.sig",
    )?
    .execute(params![key, value, sig])?;
    Ok(())
}

pub(crate) fn put_meta_u64(
    conn: &Connection,
    signer: &Signer,
    key: &str,
    value: u64,
) -> Result<(), LedgerError> {
    put_meta(conn, signer, key, &value.to_be_bytes())
}

fn account_bytes(r: &AccountRecord) -> Vec<u8> {
    RowBytes::new(T_ACCOUNTS)
        .u64(u64::from(r.key.party.code()))
        .str(&r.key.owner)
        .str(&r.sc_address)
        .u64(r.committed_db)
        .u64(r.committed_chain)
        .u64(r.onchain_tokens)
        .u128(r.onchain_balance)
        .u128(r.onchain_stake)
        .u64(u64::from(r.onchain_state))
        .u64(r.updated_unix)
        .u64(r.row_seqno)
        .finish()
}

pub(crate) fn put_account(
    conn: &Connection,
    signer: &Signer,
    r: &AccountRecord,
) -> Result<(), LedgerError> {
    let sig = signer.sign(&account_bytes(r));
    conn.prepare_cached(
        "INSERT INTO accounts (party, owner, sc_address, committed_db, committed_chain, onchain_tokens,
             onchain_balance, onchain_stake, onchain_state, updated_unix, row_seqno, sig)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(party, owner) DO UPDATE SET sc_address = excluded.sc_address,
             committed_db = excluded.committed_db, committed_chain = excluded.committed_chain,
             onchain_tokens = excluded.onchain_tokens, onchain_balance = excluded.onchain_balance,
             onchain_stake = excluded.onchain_stake, onchain_state = excluded.onchain_state,
             updated_unix = excluded.updated_unix, row_seqno = excluded.row_seqno, sig = excluded.sig",
    )?
    .execute(params![
        r.key.party.code(),
        r.key.owner,
        r.sc_address,
        sql(r.committed_db)?,
        sql(r.committed_chain)?,
        sql(r.onchain_tokens)?,
        r.onchain_balance.to_string(),
        r.onchain_stake.to_string(),
        r.onchain_state,
        sql(r.updated_unix)?,
        sql(r.row_seqno)?,
        sig
    ])?;
    Ok(())
}

fn anchor_bytes(seqno: u64, a: &AnchorRow) -> Vec<u8> {
    RowBytes::new(T_ANCHORS)
        .u64(seqno)
        .bytes(&a.hash)
        .u64(u64::from(a.status.code()))
        .u64(a.created_unix)
        .finish()
}

pub(crate) fn put_anchor(
    conn: &Connection,
    signer: &Signer,
    seqno: u64,
    a: &AnchorRow,
) -> Result<(), LedgerError> {
    let sig = signer.sign(&anchor_bytes(seqno, a));
    conn.prepare_cached(
        "INSERT INTO anchors (seqno, session_hash, status, created_unix, sig) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(seqno) DO UPDATE SET session_hash = excluded.session_hash, status = excluded.status,
             created_unix = excluded.created_unix, sig = excluded.sig",
    )?
    .execute(params![
        sql(seqno)?,
        &a.hash[..],
        a.status.code(),
        sql(a.created_unix)?,
        sig
    ])?;
    Ok(())
}

pub(crate) fn delete_anchor(conn: &Connection, seqno: u64) -> Result<(), LedgerError> {
    conn.prepare_cached("DELETE FROM anchors WHERE seqno = ?1")?
        .execute(params![sql(seqno)?])?;
    Ok(())
}

fn snapshot_bytes(seqno: u64, key: &AccountKey, value: u64) -> Vec<u8> {
    RowBytes::new(T_SNAPSHOTS)
        .u64(seqno)
        .u64(u64::from(key.party.code()))
        .str(&key.owner)
        .u64(value)
        .finish()
}

pub(crate) fn put_snapshot_entry(
    conn: &Connection,
    signer: &Signer,
    seqno: u64,
    key: &AccountKey,
    value: u64,
) -> Result<(), LedgerError> {
    let sig = signer.sign(&snapshot_bytes(seqno, key, value));
    conn.prepare_cached(
        "INSERT INTO anchor_snapshots (seqno, party, owner, committed_db, sig) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![sql(seqno)?, key.party.code(), key.owner, sql(value)?, sig])?;
    Ok(())
}

pub(crate) fn delete_snapshot(conn: &Connection, seqno: u64) -> Result<(), LedgerError> {
    conn.prepare_cached("DELETE FROM anchor_snapshots WHERE seqno = ?1")?
        .execute(params![sql(seqno)?])?;
    Ok(())
}

// === loading ===

/// Reads column `idx`; a value of the wrong type is reported as tampering of that row.
fn col<T: FromSql>(
    row: &Row<'_>,
    idx: usize,
    table: &'static str,
    key: &str,
) -> Result<T, LedgerError> {
    row.get(idx).map_err(|e| LedgerError::Tampered {
        table,
        key: key.to_string(),
        reason: format!("column {idx} unreadable: {e}"),
    })
}

/// Reads a non-negative integer column.
fn col_u64(row: &Row<'_>, idx: usize, table: &'static str, key: &str) -> Result<u64, LedgerError> {
    let v: i64 = col(row, idx, table, key)?;
    u64::try_from(v).map_err(|_| tampered(table, key, format!("column {idx} is negative")))
}

fn tampered(table: &'static str, key: &str, reason: impl Into<String>) -> LedgerError {
    LedgerError::Tampered {
        table,
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn inconsistent(table: &'static str, key: &str, reason: impl Into<String>) -> LedgerError {
    LedgerError::Inconsistent {
        table,
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn check_sig(
    verifier: &Verifier,
    table: &'static str,
    key: &str,
    bytes: &[u8],
    sig: &[u8],
) -> Result<(), LedgerError> {
    if verifier.verify(bytes, sig) {
        Ok(())
    } else {
        Err(tampered(table, key, "signature does not match the row"))
    }
}

fn read_party(row: &Row<'_>, idx: usize, table: &'static str) -> Result<Party, LedgerError> {
    let code: i64 = col(row, idx, table, "?")?;
    Party::from_code(code).ok_or_else(|| tampered(table, "?", format!("unknown party {code}")))
}

fn read_owner(row: &Row<'_>, idx: usize, table: &'static str) -> Result<String, LedgerError> {
    let owner: String = col(row, idx, table, "?")?;
    if owner.is_empty() || owner.len() > MAX_OWNER_LEN {
        return Err(tampered(table, &owner, "owner length out of bounds"));
    }
    Ok(owner)
}

fn meta_u64(meta: &HashMap<String, Vec<u8>>, key: &str) -> Result<u64, LedgerError> {
    let v = meta
        .get(key)
        .ok_or_else(|| tampered(T_META, key, "row missing"))?;
    let bytes: [u8; 8] = v
        .as_slice()
        .try_into()
        .map_err(|_| tampered(T_META, key, "value is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Loads and verifies the whole file with `verifier`'s public key.
pub(crate) fn load(conn: &Connection, verifier: &Verifier) -> Result<Loaded, LedgerError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != SCHEMA_VERSION {
        return Err(LedgerError::UnsupportedSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }

    // meta: the public key first, so a file of another proxy says so instead of "tampered".
    let mut meta: HashMap<String, (Vec<u8>, Vec<u8>)> = HashMap::new();
    {
        let mut stmt = conn.prepare("SELECT key, value, sig FROM meta")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let key: String = col(row, 0, T_META, "?")?;
            let value: Vec<u8> = col(row, 1, T_META, &key)?;
            let sig: Vec<u8> = col(row, 2, T_META, &key)?;
            if meta.len() >= 64 {
                return Err(tampered(T_META, &key, "too many meta rows"));
            }
            meta.insert(key, (value, sig));
        }
    }
    let stored_pk = meta
        .get(META_PUBKEY)
        .ok_or_else(|| tampered(T_META, META_PUBKEY, "row missing"))?;
    if stored_pk.0.as_slice() != verifier.public_key().as_slice() {
        return Err(LedgerError::WrongKey {
            expected: hex::encode(verifier.public_key()),
            found: hex::encode(&stored_pk.0),
        });
    }
    for (key, (value, sig)) in &meta {
        check_sig(verifier, T_META, key, &meta_bytes(key, value), sig)?;
    }
    let meta: HashMap<String, Vec<u8>> = meta.into_iter().map(|(k, (v, _))| (k, v)).collect();
    let schema = meta_u64(&meta, META_SCHEMA)?;
    if i64::try_from(schema).ok() != Some(SCHEMA_VERSION) {
        return Err(inconsistent(
            T_META,
            META_SCHEMA,
            format!("signed schema version {schema} differs from user_version {version}"),
        ));
    }
    let db_seqno = meta_u64(&meta, META_SEQNO)?;
    let count = meta_u64(&meta, META_COUNT)?;
    let pruned_below = meta_u64(&meta, META_PRUNED)?;

    let rows: i64 = conn.query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))?;
    if usize::try_from(rows).map_or(true, |n| n > MAX_ACCOUNTS) {
        return Err(LedgerError::TooLarge {
            what: "accounts in the ledger file",
            limit: MAX_ACCOUNTS as u64,
        });
    }
    let accounts = load_accounts(conn, verifier, db_seqno)?;
    if accounts.len() as u64 != count {
        return Err(inconsistent(
            T_ACCOUNTS,
            "*",
            format!(
                "signed meta says {count} accounts, file holds {} (rows deleted or restored)",
                accounts.len()
            ),
        ));
    }
    let anchors = load_anchors(conn, verifier, db_seqno)?;
    let snapshots = load_snapshots(conn, verifier, &anchors, &accounts)?;
    Ok(Loaded {
        schema_version: version,
        public_key: verifier.public_key(),
        db_seqno,
        pruned_below,
        accounts,
        anchors,
        snapshots,
    })
}

fn parse_u128(s: &str, key: &str) -> Result<u128, LedgerError> {
    s.parse()
        .map_err(|_| tampered(T_ACCOUNTS, key, "amount is not a decimal number"))
}

fn load_accounts(
    conn: &Connection,
    verifier: &Verifier,
    db_seqno: u64,
) -> Result<HashMap<AccountKey, AccountRecord>, LedgerError> {
    let mut out = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT party, owner, sc_address, committed_db, committed_chain, onchain_tokens, onchain_balance,
                onchain_stake, onchain_state, updated_unix, row_seqno, sig FROM accounts",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let party = read_party(row, 0, T_ACCOUNTS)?;
        let owner = read_owner(row, 1, T_ACCOUNTS)?;
        let key = AccountKey::new(party, owner);
        let name = key.to_string();
        let sc_address: String = col(row, 2, T_ACCOUNTS, &name)?;
        if sc_address.len() > MAX_SC_ADDRESS_LEN {
            return Err(tampered(T_ACCOUNTS, &name, "sc_address too long"));
        }
        let balance: String = col(row, 6, T_ACCOUNTS, &name)?;
        let stake: String = col(row, 7, T_ACCOUNTS, &name)?;
        let rec = AccountRecord {
            sc_address,
            committed_db: col_u64(row, 3, T_ACCOUNTS, &name)?,
            committed_chain: col_u64(row, 4, T_ACCOUNTS, &name)?,
            onchain_tokens: col_u64(row, 5, T_ACCOUNTS, &name)?,
            onchain_balance: parse_u128(&balance, &name)?,
            onchain_stake: parse_u128(&stake, &name)?,
            onchain_state: col(row, 8, T_ACCOUNTS, &name)?,
            updated_unix: col_u64(row, 9, T_ACCOUNTS, &name)?,
            row_seqno: col_u64(row, 10, T_ACCOUNTS, &name)?,
            key: key.clone(),
        };
        let sig: Vec<u8> = col(row, 11, T_ACCOUNTS, &name)?;
        check_sig(verifier, T_ACCOUNTS, &name, &account_bytes(&rec), &sig)?;
        if rec.row_seqno > db_seqno {
            return Err(inconsistent(
                T_ACCOUNTS,
                &name,
                format!(
                    "row written at seqno {} but the file's seqno is {db_seqno} (meta restored from an older copy)",
                    rec.row_seqno
                ),
            ));
        }
        if rec.committed_chain > rec.committed_db {
            return Err(inconsistent(
                T_ACCOUNTS,
                &name,
                "committed_chain above committed_db",
            ));
        }
        out.insert(key, rec);
    }
    Ok(out)
}

fn load_anchors(
    conn: &Connection,
    verifier: &Verifier,
    db_seqno: u64,
) -> Result<BTreeMap<u64, AnchorRow>, LedgerError> {
    let limit = MAX_PENDING_ANCHORS + MAX_RESOLVED_ANCHORS + 1;
    let mut out = BTreeMap::new();
    let mut stmt =
        conn.prepare("SELECT seqno, session_hash, status, created_unix, sig FROM anchors")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let seqno: u64 = col_u64(row, 0, T_ANCHORS, "?")?;
        let name = seqno.to_string();
        let hash: Vec<u8> = col(row, 1, T_ANCHORS, &name)?;
        let hash: [u8; 32] = hash
            .as_slice()
            .try_into()
            .map_err(|_| tampered(T_ANCHORS, &name, "session hash is not 32 bytes"))?;
        let code: i64 = col(row, 2, T_ANCHORS, &name)?;
        let status = AnchorStatus::from_code(code)
            .ok_or_else(|| tampered(T_ANCHORS, &name, format!("unknown status {code}")))?;
        let a = AnchorRow {
            hash,
            status,
            created_unix: col_u64(row, 3, T_ANCHORS, &name)?,
        };
        let sig: Vec<u8> = col(row, 4, T_ANCHORS, &name)?;
        check_sig(verifier, T_ANCHORS, &name, &anchor_bytes(seqno, &a), &sig)?;
        if seqno > db_seqno {
            return Err(inconsistent(
                T_ANCHORS,
                &name,
                format!("anchor above the file's seqno {db_seqno}"),
            ));
        }
        if out.len() >= limit {
            return Err(LedgerError::TooLarge {
                what: "anchors in the ledger file",
                limit: limit as u64,
            });
        }
        out.insert(seqno, a);
    }
    Ok(out)
}

fn load_snapshots(
    conn: &Connection,
    verifier: &Verifier,
    anchors: &BTreeMap<u64, AnchorRow>,
    accounts: &HashMap<AccountKey, AccountRecord>,
) -> Result<BTreeMap<u64, Vec<(AccountKey, u64)>>, LedgerError> {
    let pending = anchors
        .values()
        .filter(|a| a.status == AnchorStatus::Pending)
        .count();
    // Each pending anchor holds at most one entry per account.
    let limit = pending.saturating_mul(accounts.len());
    let mut total = 0usize;
    let mut out: BTreeMap<u64, Vec<(AccountKey, u64)>> = BTreeMap::new();
    let mut stmt =
        conn.prepare("SELECT seqno, party, owner, committed_db, sig FROM anchor_snapshots")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let seqno: u64 = col_u64(row, 0, T_SNAPSHOTS, "?")?;
        let party = read_party(row, 1, T_SNAPSHOTS)?;
        let owner = read_owner(row, 2, T_SNAPSHOTS)?;
        let key = AccountKey::new(party, owner);
        let name = format!("{seqno}/{key}");
        let value: u64 = col_u64(row, 3, T_SNAPSHOTS, &name)?;
        let sig: Vec<u8> = col(row, 4, T_SNAPSHOTS, &name)?;
        check_sig(
            verifier,
            T_SNAPSHOTS,
            &name,
            &snapshot_bytes(seqno, &key, value),
            &sig,
        )?;
        if anchors.get(&seqno).map(|a| a.status) != Some(AnchorStatus::Pending) {
            return Err(inconsistent(
                T_SNAPSHOTS,
                &name,
                "entry without a pending anchor",
            ));
        }
        let db = accounts.get(&key).map_or(0, |r| r.committed_db);
        if value > db {
            return Err(inconsistent(
                T_SNAPSHOTS,
                &name,
                format!("anchored value {value} above the account's committed_db {db}"),
            ));
        }
        total += 1;
        if total > limit {
            return Err(LedgerError::TooLarge {
                what: "anchor snapshot rows",
                limit: limit as u64,
            });
        }
        out.entry(seqno).or_default().push((key, value));
    }
    Ok(out)
}
