//! One interface between the request path and the money: whether the proxy may accept
//! requests, how a settled request's charge becomes durable, and what clients and workers are
//! told of their payments — the same calls with payments on (the chain: the SQLite ledger,
//! signed charges and payouts, `payments.rs`) and off (configured credit, counted in memory).
//! The request path (`relay.rs`, `proxy_core.rs`) asks it and never which one it is.
//!
//! What must not live here: the chain-specific handshakes (a client's long authorization, a
//! worker's balance comparison); those stay with their connection (`client_conn.rs`,
//! `worker_conn.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use cocoon_ledger::LedgerError;
use cocoon_proto::messages::{tl_long, ProxySignedPayment};

use crate::payments::Payments;

/// Payments on (`chain`) or off.
pub(crate) struct Accounting {
    chain: Option<Arc<Payments>>,
    /// Held while reading payment numbers and sending them, so each peer sees them in the
    /// order they grew (settlements finish concurrently; workers drop a proxy whose numbers go
    /// backwards). Only payments need it: without them the numbers told are not checked for
    /// order, and the request path takes no global lock.
    notices: std::sync::Mutex<()>,
}

/// What a client is told of its payments: (signed charge, durable tokens, all tokens).
pub(crate) type ClientStatus = (ProxySignedPayment, i64, i64);

/// What a worker is told after a request: (signed payout, durable tokens, max tokens).
pub(crate) type WorkerStatus = (ProxySignedPayment, i64, i64);

/// Why a charge could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("the ledger could not record a charge: {source}")]
pub(crate) struct NotDurable {
    #[source]
    pub source: LedgerError,
    /// Whether the proxy halted over it (a ledger that cannot write), or only this request
    /// fails (an input the ledger refuses, [`crate::rules::ledger_error_halts`]).
    pub halted: bool,
}

impl Accounting {
    pub(crate) fn new(chain: Option<Arc<Payments>>) -> Self {
        Self {
            chain,
            notices: std::sync::Mutex::new(()),
        }
    }

    /// Why the proxy accepts no request now (payments halted, moving to the root's new params,
    /// or its view of the root too old: the stale-root guard), if it does not.
    pub(crate) fn refusing(&self) -> Option<String> {
        let p = self.chain.as_ref()?;
        p.halted()
            .or_else(|| {
                p.migrating
                    .load(Ordering::Relaxed)
                    .then(|| "moving to the root's new params; retry in a few seconds".to_string())
            })
            .or_else(|| p.registry.freshness(SystemTime::now()).refusal())
    }

    /// Makes a charge of `tokens` to `client` earned by `worker` durable, then runs `then` with
    /// the outcome exactly once: at once with payments off; with payments on, on the ledger's
    /// writer thread right after the group commit that holds it (so the answer it releases goes
    /// out without another wake-up). `then` must not block. A ledger that cannot write halts
    /// the proxy: nothing more is accepted that could not be accounted.
    pub(crate) async fn make_durable_then(
        &self,
        client: &str,
        worker: &str,
        tokens: u64,
        then: impl FnOnce(Result<(), NotDurable>) + Send + 'static,
    ) {
        let Some(p) = self.chain.as_ref() else {
            then(Ok(()));
            return;
        };
        let payments = p.clone();
        p.record_then(client, worker, tokens, move |r| {
            then(r.map_err(|source| {
                let halted = crate::rules::ledger_error_halts(&source);
                if halted {
                    payments.halt(format!("the ledger could not record a charge: {source}"));
                }
                NotDurable { source, halted }
            }))
        })
        .await;
    }

    /// The order lock of payment notices (see the field), `None` with payments off. Held only
    /// while reading numbers and queueing messages, which never wait.
    pub(crate) fn notices(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        self.chain.as_ref()?;
        Some(self.notices.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// What to tell a client whose usage this proxy counts as `used` (all tokens).
    pub(crate) fn client_status(&self, owner: &str, used: u64) -> ClientStatus {
        let used = tl_long(used);
        match self.chain.as_ref() {
            Some(p) => {
                let (signed, db) = p.client_status(owner);
                (signed, tl_long(db), used)
            }
            None => (ProxySignedPayment::empty(), used, used),
        }
    }

    /// What to tell a worker whose earnings this proxy counts as `earned` (all tokens). With
    /// payments, only what is durable is ever told (a worker's max may not exceed our db).
    pub(crate) fn worker_status(&self, owner: &str, earned: u64) -> WorkerStatus {
        match self.chain.as_ref() {
            Some(p) => {
                let (signed, db) = p.worker_status(owner);
                (signed, tl_long(db), tl_long(db))
            }
            None => (
                ProxySignedPayment::empty(),
                tl_long(earned),
                tl_long(earned),
            ),
        }
    }

    /// The worker's latest signed payout (sent along with each request, as Cocoon does).
    pub(crate) fn worker_signed(&self, owner: &str) -> ProxySignedPayment {
        match self.chain.as_ref() {
            Some(p) => p.worker_status(owner).0,
            None => ProxySignedPayment::empty(),
        }
    }
}
