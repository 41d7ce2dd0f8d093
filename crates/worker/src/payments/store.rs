//! `payments.json`: what the worker holds per proxy contract, and writing it safely.
//!
//! One [`ProxyRecord`] per proxy contract the worker has earned at: the addresses (so a cash-out
//! works when the proxy is gone or the root's params changed), the highest signed payout with its
//! BOC, the highest `db_tokens` / `max_tokens` the proxy ever reported, and the last on-chain
//! token count read from the worker contract.
//!
//! Reading is strict: a missing file is an empty book (first start), but a file that is
//! truncated, unparsable, of another version, or whose signed payout does not verify is an
//! error — never silently zero, since zero would let a rolled-back proxy pass the handshake.
//! Writing is atomic: a temp file in the same directory, fsync, rename, fsync of the directory.
//! Both are blocking and run off the async runtime (the caller uses `spawn_blocking`).
//!
//! What must not live here: the high-water rules (`marks`) or anything that talks to the chain.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use cocoon_onchain::signed::{check_boc, MAX_SIGNED_BOC};
use cocoon_ton::cells::decode_boc;
use cocoon_ton::payments::SignedKind;
use cocoon_ton::TonAddress;
use serde::{Deserialize, Serialize};

use super::marks::Marks;

/// The file's name inside the worker's `data_dir`.
pub const FILE_NAME: &str = "payments.json";
/// The only format version written or read.
pub const FORMAT_VERSION: u32 = 1;
/// Largest `payments.json` read (a record is ~2 KiB; this allows thousands of proxy contracts).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Largest worker-contract StateInit BOC accepted from the file.
pub const MAX_STATE_INIT_BOC: usize = 64 << 10;
/// Most proxy contracts kept in one file.
pub const MAX_RECORDS: usize = 4096;

/// Why `payments.json` could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes: not a payments file")]
    TooLarge { path: PathBuf },
    #[error("{path} is corrupt (truncated or not JSON: {reason}); refusing to start with zero balances — restore it from a backup or move it away knowingly")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: format version {got}, this build reads {FORMAT_VERSION}")]
    Version { path: PathBuf, got: u32 },
    #[error("{path}: record for proxy contract {proxy}: {reason}")]
    BadRecord {
        path: PathBuf,
        proxy: String,
        reason: String,
    },
}

/// Everything the worker keeps about one proxy contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyRecord {
    /// The proxy contract (bounceable user-friendly form); the book's key.
    pub proxy_contract: String,
    /// The proxy's payment key (hex), which signs the payouts.
    pub proxy_public_key: String,
    /// The proxy's owner address (bounceable).
    pub proxy_owner: String,
    /// Our worker contract at this proxy contract (bounceable).
    pub worker_contract: String,
    /// Its StateInit (standard BOC, base64), attached to every cash-out so the first one deploys it.
    pub worker_state_init: String,
    /// nanoTON per token the worker contract pays (from the params it was created with).
    pub worker_fee_per_token: u128,
    /// Root params version those params came from.
    pub params_version: u32,
    /// The highest signed payout received (standard BOC of the signed body, base64); none yet = null.
    pub signed_payout: Option<String>,
    /// Its tokens (0 when there is none).
    pub signed_tokens: u64,
    /// Highest `db_tokens` the proxy reported.
    pub db_tokens: u64,
    /// Highest `max_tokens` the proxy reported.
    pub max_tokens: u64,
    /// Tokens the worker contract had processed at the last read (0 = undeployed or never read).
    pub on_chain_tokens: u64,
}

impl ProxyRecord {
    /// The held high-water marks.
    pub fn marks(&self) -> Marks {
        Marks {
            signed: self.signed_tokens,
            db: self.db_tokens,
            max: self.max_tokens,
        }
    }

    /// The proxy key as bytes.
    pub fn proxy_key(&self) -> Result<[u8; 32], String> {
        let v = hex::decode(&self.proxy_public_key).map_err(|e| format!("proxy key: {e}"))?;
        v.try_into()
            .map_err(|_| "proxy key is not 32 bytes".to_string())
    }

    /// The worker contract address.
    pub fn worker_address(&self) -> Result<TonAddress, String> {
        self.worker_contract
            .parse()
            .map_err(|e| format!("worker contract {:?}: {e}", self.worker_contract))
    }

    /// The signed payout BOC bytes, if any.
    pub fn signed_payout_bytes(&self) -> Result<Option<Vec<u8>>, String> {
        self.signed_payout
            .as_deref()
            .map(|s| {
                B64.decode(s)
                    .map_err(|e| format!("signed payout base64: {e}"))
            })
            .transpose()
    }

    /// The worker contract's StateInit cell.
    pub fn state_init_cell(&self) -> Result<tycho_types::cell::Cell, String> {
        let bytes = B64
            .decode(&self.worker_state_init)
            .map_err(|e| format!("state init base64: {e}"))?;
        decode_boc(&bytes, MAX_STATE_INIT_BOC).map_err(|e| format!("state init: {e}"))
    }

    /// Tokens signed but not yet processed on chain.
    pub fn pending_tokens(&self) -> u64 {
        self.signed_tokens.saturating_sub(self.on_chain_tokens)
    }

    /// `tokens` in nanoTON at this contract's worker fee.
    pub fn nano(&self, tokens: u64) -> u128 {
        u128::from(tokens).saturating_mul(self.worker_fee_per_token)
    }

    /// Checks everything that can be checked offline: addresses parse, marks are ordered, the
    /// signed payout verifies with the proxy key for our contract and carries `signed_tokens`.
    pub fn validate(&self) -> Result<(), String> {
        let key = self.proxy_key()?;
        let worker = self.worker_address()?;
        self.proxy_contract
            .parse::<TonAddress>()
            .map_err(|e| format!("proxy contract: {e}"))?;
        self.state_init_cell()?;
        if self.db_tokens < self.signed_tokens || self.max_tokens < self.db_tokens {
            return Err(format!(
                "marks out of order (signed {} db {} max {})",
                self.signed_tokens, self.db_tokens, self.max_tokens
            ));
        }
        match self.signed_payout_bytes()? {
            None if self.signed_tokens != 0 => Err(format!(
                "{} signed tokens without a signed payout",
                self.signed_tokens
            )),
            None => Ok(()),
            Some(bytes) => {
                if bytes.len() > MAX_SIGNED_BOC {
                    return Err("signed payout too large".into());
                }
                let p = check_boc(&bytes, &key, SignedKind::Payout, &worker)
                    .map_err(|e| format!("signed payout: {e}"))?;
                if p.payload.new_tokens != self.signed_tokens {
                    return Err(format!(
                        "signed payout is for {} tokens, the record says {}",
                        p.payload.new_tokens, self.signed_tokens
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    version: u32,
    proxies: Vec<ProxyRecord>,
}

/// All records, by proxy contract (bounceable form).
pub type Book = BTreeMap<String, ProxyRecord>;

/// Reads `path`: a missing file is an empty book; anything unreadable is an error.
pub fn load(path: &Path) -> Result<Book, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Book::new()),
        Err(e) => return Err(io(e)),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(StoreError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    parse(path, &bytes)
}

/// Parses file bytes (`path` names the file in errors).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Book, StoreError> {
    let body: FileBody = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if body.version != FORMAT_VERSION {
        return Err(StoreError::Version {
            path: path.to_path_buf(),
            got: body.version,
        });
    }
    if body.proxies.len() > MAX_RECORDS {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("more than {MAX_RECORDS} records"),
        });
    }
    let mut book = Book::new();
    for r in body.proxies {
        let bad = |reason: String| StoreError::BadRecord {
            path: path.to_path_buf(),
            proxy: r.proxy_contract.clone(),
            reason,
        };
        r.validate().map_err(bad)?;
        if book.contains_key(&r.proxy_contract) {
            return Err(bad("listed twice".into()));
        }
        book.insert(r.proxy_contract.clone(), r);
    }
    Ok(book)
}

/// Serializes a book.
pub fn render(book: &Book) -> Vec<u8> {
    let body = FileBody {
        version: FORMAT_VERSION,
        proxies: book.values().cloned().collect(),
    };
    // A Vec of plain structs cannot fail to serialize; fall back to an empty object defensively.
    let mut out = serde_json::to_vec_pretty(&body).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| FILE_NAME.into());
    // Unique per process and write, so two writers never share a temp file.
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Writes a book to `path` atomically.
pub fn save(path: &Path, book: &Book) -> Result<(), StoreError> {
    write_atomic(path, &render(book))
}
