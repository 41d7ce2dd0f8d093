//! `Localnet`: the shared handle of a running local chain. It owns the [`Ledger`] behind a lock, the
//! optional durable [`Store`], and the clock; it implements `cocoon_ton::Chain` in-process, and the HTTP
//! server (`server`) is a thin layer over it.
//!
//! Execution is CPU work (TVM), so every call runs on `spawn_blocking`; the lock is a std mutex held only
//! inside those closures. Inputs are executed, then logged (fsync), then acknowledged: if logging fails the
//! node refuses further writes (`Poisoned`) because memory is ahead of disk; a restart recovers from disk.
//!
//! Clock: `now` is the system time plus a test-controlled offset, never moving backwards; tests can also
//! pin it (`set_time`). What must not live here: TVM details (`ledger`) or file formats (`store`).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cocoon_ton::cells::{decode_boc, MAX_BOC_BYTES};
use cocoon_ton::chain::{
    AccountState, Chain, ChainError, GetMethodResult, StackEntry, TxId, TxInfo,
};
use cocoon_ton::TonAddress;
use tycho_types::cell::Cell;

use crate::ledger::{internal_message, tx_info, Ledger, LedgerError, TxSummary};
use crate::store::{input_cell, InputKind, Store, StoreError};

/// Largest external message we accept (TON's own limit is 64 KiB).
pub const MAX_EXTERNAL_BOC: usize = 64 * 1024;
/// Address the dev faucet sends from (`-1:fff…f`, outside any contract's range).
pub const FAUCET_ADDRESS: TonAddress = TonAddress::new(-1, [0xff; 32]);
/// Largest single faucet grant (1M TON).
pub const MAX_FAUCET: u128 = 1_000_000 * 1_000_000_000;

/// Errors of the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("malformed BOC: {0}")]
    BadBoc(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("node stopped accepting writes after a storage failure; restart it")]
    Poisoned,
    #[error("faucet amount must be 1..={MAX_FAUCET} nanoTON")]
    FaucetAmount,
    #[error("background task failed: {0}")]
    Join(String),
    #[error("cannot locate transaction with lt {lt} of this account")]
    UnknownTransaction { lt: u64 },
}

struct Inner {
    ledger: Ledger,
    store: Option<Store>,
    /// Added to the system clock.
    offset: u64,
    /// Pinned time (tests).
    pinned: Option<u32>,
    /// Last `now` handed out (time never goes back).
    last_now: u32,
    poisoned: bool,
}

impl Inner {
    fn now(&mut self) -> u32 {
        let t = match self.pinned {
            Some(t) => t,
            None => {
                let sys = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                u32::try_from(sys.saturating_add(self.offset)).unwrap_or(u32::MAX)
            }
        };
        self.last_now = self.last_now.max(t);
        self.last_now
    }

    fn input(&mut self, kind: InputKind, msg: Cell) -> Result<Vec<TxSummary>, NodeError> {
        if self.poisoned {
            return Err(NodeError::Poisoned);
        }
        let now = self.now();
        let txs = match kind {
            InputKind::Ext => self.ledger.execute_external(msg.clone(), now)?,
            InputKind::Int => self.ledger.execute_internal(msg.clone(), now)?,
        };
        if let Some(store) = &mut self.store {
            let r = store.append(now, kind, &msg).and_then(|_| {
                if store.snapshot_due() {
                    store.snapshot(&self.ledger, now)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = r {
                self.poisoned = true;
                return Err(e.into());
            }
        }
        Ok(txs)
    }
}

/// A local chain. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Localnet {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Localnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Localnet")
    }
}

impl Localnet {
    /// A fresh in-memory chain (nothing persisted) with the default config.
    pub fn in_memory() -> Result<Self, NodeError> {
        let inner = Inner {
            ledger: Ledger::with_default_config(0)?,
            store: None,
            offset: 0,
            pinned: None,
            last_now: 0,
            poisoned: false,
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// Opens (or creates) a persistent chain in `dir`, recovering snapshot + log. Blocking: call it from
    /// `spawn_blocking` (or before starting the runtime).
    pub fn open(dir: &Path) -> Result<Self, NodeError> {
        let rec = Store::open(dir)?;
        let mut ledger = Ledger::with_default_config(0)?;
        let mut last_now = 0;
        if let Some((accounts, history, lt, now)) = rec.snapshot {
            ledger.restore(accounts, history, lt);
            last_now = now;
        }
        let replayed = rec.replay.len();
        for input in rec.replay {
            let msg = input_cell(&input)?;
            let r = match input.kind {
                InputKind::Ext => ledger.execute_external(msg, input.now),
                InputKind::Int => ledger.execute_internal(msg, input.now),
            };
            if let Err(e) = r {
                // Deterministic execution should reproduce the original outcome; say so if it did not.
                tracing::warn!(seq = input.seq, error = %e, "replayed input failed");
            }
            last_now = last_now.max(input.now);
        }
        tracing::info!(replayed, lt = ledger.lt(), "local chain recovered");
        let inner = Inner {
            ledger,
            store: Some(rec.store),
            offset: 0,
            pinned: None,
            last_now,
            poisoned: false,
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the ledger half-updated in a way we could detect;
        // keep serving (the poisoned flag guards storage failures, not panics).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, NodeError> + Send + 'static,
    ) -> Result<T, NodeError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&mut me.lock()))
            .await
            .map_err(|e| NodeError::Join(e.to_string()))?
    }

    /// Executes a serialized external message (validated: size, BOC, kind) and what it causes.
    pub async fn send_external_boc(&self, boc: Vec<u8>) -> Result<Vec<TxSummary>, NodeError> {
        let msg =
            decode_boc(&boc, MAX_EXTERNAL_BOC).map_err(|e| NodeError::BadBoc(e.to_string()))?;
        self.blocking(move |i| i.input(InputKind::Ext, msg)).await
    }

    /// Executes an injected internal message cell (dev/test: lets any sender be simulated).
    pub async fn send_internal(&self, msg: Cell) -> Result<Vec<TxSummary>, NodeError> {
        self.blocking(move |i| i.input(InputKind::Int, msg)).await
    }

    /// Dev faucet: sends `amount` nanoTON to `to` (non-bounceable, so it also funds undeployed wallets).
    pub async fn faucet(&self, to: TonAddress, amount: u128) -> Result<Vec<TxSummary>, NodeError> {
        if amount == 0 || amount > MAX_FAUCET {
            return Err(NodeError::FaucetAmount);
        }
        let empty = tycho_types::cell::CellBuilder::new()
            .build()
            .map_err(LedgerError::from)?;
        let msg = internal_message(&FAUCET_ADDRESS, &to, amount, false, None, &empty)?;
        self.send_internal(msg).await
    }

    /// Current chain time.
    pub fn now(&self) -> u32 {
        self.lock().now()
    }

    /// Moves the clock forward by `secs`.
    pub fn advance_time(&self, secs: u32) {
        let mut i = self.lock();
        match &mut i.pinned {
            Some(t) => *t = t.saturating_add(secs),
            None => i.offset += u64::from(secs),
        }
    }

    /// Pins the clock at `now` (it still never goes backwards).
    pub fn set_time(&self, now: u32) {
        self.lock().pinned = Some(now);
    }

    /// Writes a snapshot now (e.g. on shutdown). No-op in memory.
    pub async fn snapshot(&self) -> Result<(), NodeError> {
        self.blocking(|i| {
            let now = i.now();
            if let Some(s) = &mut i.store {
                s.snapshot(&i.ledger, now)?;
            }
            Ok(())
        })
        .await
    }

    /// Raw transactions of an account (newest first), for the HTTP layer: the newest page, or
    /// the page starting at `from` (see [`Chain::transactions_from`]).
    pub async fn raw_transactions(
        &self,
        addr: TonAddress,
        from: Option<TxId>,
        since_lt: Option<u64>,
        limit: usize,
    ) -> Result<Vec<crate::ledger::TxRecord>, NodeError> {
        self.blocking(move |i| {
            i.ledger.transactions(&addr, from, since_lt, limit).ok_or(
                NodeError::UnknownTransaction {
                    lt: from.map_or(0, |f| f.lt),
                },
            )
        })
        .await
    }

    /// A page for the [`Chain`] calls (limit clamped to toncenter's 100).
    async fn tx_page(
        &self,
        addr: &TonAddress,
        from: Option<TxId>,
        since_lt: Option<u64>,
        limit: u32,
    ) -> Result<Vec<TxInfo>, ChainError> {
        let recs = self
            .raw_transactions(*addr, from, since_lt, limit.clamp(1, 100) as usize)
            .await
            .map_err(chain_err)?;
        Ok(recs.iter().map(tx_info).collect())
    }
}

fn chain_err(e: NodeError) -> ChainError {
    match e {
        NodeError::BadBoc(m) => ChainError::Api {
            code: 400,
            message: m,
        },
        NodeError::Ledger(LedgerError::NotActive(a)) => ChainError::Api {
            code: 400,
            message: format!("account {a} is not active"),
        },
        NodeError::Ledger(LedgerError::Rejected) => ChainError::Api {
            code: 500,
            message:
                "cannot apply external message to current state: external message was not accepted"
                    .into(),
        },
        other => ChainError::Api {
            code: 500,
            message: other.to_string(),
        },
    }
}

#[async_trait]
impl Chain for Localnet {
    async fn send_boc(&self, boc: &[u8]) -> Result<(), ChainError> {
        self.send_external_boc(boc.to_vec())
            .await
            .map(|_| ())
            .map_err(chain_err)
    }

    async fn run_get_method(
        &self,
        addr: &TonAddress,
        method: &str,
        stack: Vec<StackEntry>,
    ) -> Result<GetMethodResult, ChainError> {
        let (addr, method) = (*addr, method.to_string());
        self.blocking(move |i| {
            let now = i.now();
            Ok(i.ledger.run_get_method(&addr, &method, stack, now)?)
        })
        .await
        .map_err(chain_err)
    }

    async fn account_state(&self, addr: &TonAddress) -> Result<AccountState, ChainError> {
        let addr = *addr;
        self.blocking(move |i| Ok(i.ledger.account_state(&addr)?))
            .await
            .map_err(chain_err)
    }

    async fn transactions(
        &self,
        addr: &TonAddress,
        since_lt: Option<u64>,
        limit: u32,
    ) -> Result<Vec<TxInfo>, ChainError> {
        self.tx_page(addr, None, since_lt, limit).await
    }

    async fn transactions_from(
        &self,
        addr: &TonAddress,
        from: TxId,
        since_lt: Option<u64>,
        limit: u32,
    ) -> Result<Vec<TxInfo>, ChainError> {
        self.tx_page(addr, Some(from), since_lt, limit).await
    }

    async fn time(&self) -> Result<u32, ChainError> {
        Ok(self.now())
    }
}

/// Decodes a BOC with our limit (helper for callers building messages by hand).
pub fn decode_message(boc: &[u8]) -> Result<Cell, NodeError> {
    decode_boc(boc, MAX_BOC_BYTES).map_err(|e| NodeError::BadBoc(e.to_string()))
}
