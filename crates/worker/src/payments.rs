//! The worker's side of payments (docs/PAYMENTS.md "Worker"): per proxy contract, the worker
//! contract, the highest signed payout and proxy-reported numbers it holds, the rollback check
//! at handshake, the high-water check on every later message, `payments.json`, and cash-outs.
//!
//! - [`marks`]: the high-water rules (pure).
//! - [`store`]: `payments.json` (strict reading, atomic writing).
//! - [`cashout`]: reading a worker contract and submitting a signed payout to it.
//! - [`admin`]: `POST /admin/cashout` on the stats port.
//!
//! Flow on a link (`proxy_link` calls these): after `worker.connectedToProxy`,
//! [`Payments::admit`] recomputes the proxy contract from (proxy owner, proxy key, root params)
//! and our worker contract from (owner, proxy contract) and refuses the proxy on a mismatch;
//! [`Payments::compare_request`] is what we hold; [`Payments::on_compare`] refuses a proxy
//! whose signed payout or `db_tokens` is below ours (rollback), and [`Payments::held_payout`]
//! is the payout shown to such a proxy (the one number of ours it can verify). Afterwards every
//! `proxy.workerRequestPayment`, `worker.paymentStatus` and `proxy.runQueryEx` goes through
//! [`Payments::on_report`]; an error means: drop the connection. A signed payout is kept only
//! after `signed::check_boc` (proxy key, payout kind, our worker contract).
//!
//! Decisions (reported to the lead):
//! - `max_tokens` is checked per session, not across sessions (see [`marks`]).
//! - `proxy.signedPaymentEmpty` counts as a payout of 0 tokens in the handshake's answer (so a
//!   proxy that lost its signatures is refused) and as no information in later messages (a
//!   proxy may leave `runQueryEx` unsigned, as Cocoon's worker tolerates).
//! - `min_cashout` is nanoTON, like the proxy's thresholds.
//! - `payments.json` is written by the running worker only: `cocoon worker cashout` reads it
//!   and never writes it, so it cannot overwrite newer marks.
//! - Cash-outs attach [`cashout::CASHOUT_VALUE`]; after one is sent, that proxy's payout is not
//!   resent until the chain shows it or [`PENDING_FOR`] passes.
//!
//! What must not live here: the wire handshake itself (`proxy_link`), deciding what the proxy
//! signs, or the contracts' message layouts (crates/ton).

pub mod admin;
pub mod cashout;
pub mod marks;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use cocoon_onchain::amount::format_ton;
use cocoon_onchain::signed::{CheckedPayments, SignedError};
use cocoon_onchain::{OnchainError, RegistryWatch, WalletSender};
use cocoon_proto::messages::{
    ProxySignedPayment, WorkerCompareBalanceWithProxy, WorkerCompareBalanceWithProxyResult,
    WorkerConnectedToProxy,
};
use cocoon_ton::cells::encode_boc;
use cocoon_ton::payments::SignedKind;
use cocoon_ton::{Chain, TonAddress};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::WorkerConfig;
use marks::{Backwards, Report, Session};
use store::{Book, ProxyRecord, StoreError};

/// After a cash-out is sent, how long the same proxy's payout is not resent while the chain
/// does not show it yet.
pub const PENDING_FOR: Duration = Duration::from_secs(120);
/// Shortest pause between two writes of `payments.json`.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// Why payments could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PaymentsError {
    #[error(transparent)]
    Onchain(#[from] OnchainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("worker config: {0}")]
    Config(String),
    #[error("payments task: {0}")]
    Join(String),
}

/// Why a proxy was refused or dropped; the text is the log line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error(
        "proxy told us {what} {told}, but the root's params give {expected}: refusing this proxy"
    )]
    Mismatch {
        what: &'static str,
        told: String,
        expected: String,
    },
    #[error("proxy sent a bad {what} address {value:?}")]
    BadAddress { what: &'static str, value: String },
    #[error("proxy's payment numbers went backwards ({0}): its books were rolled back or it misbehaves; refusing it")]
    Backwards(#[from] Backwards),
    #[error("proxy sent a signed payout we cannot accept: {0}")]
    BadSigned(#[from] SignedError),
    #[error("cannot derive contract addresses: {0}")]
    Derive(String),
    #[error("no payments record for proxy contract {0}")]
    Unknown(String),
}

/// What the worker needs from TON.
pub struct ChainSide {
    pub chain: Arc<dyn Chain>,
    pub sender: Arc<WalletSender>,
    pub registry: RegistryWatch,
    /// The root contract.
    pub root: TonAddress,
    /// Who earns: `owner_address`, or the wallet's address when that is empty.
    pub owner: TonAddress,
}

/// The worker's owner address under `cfg`: `owner_address`, or `wallet`'s address when empty.
pub fn owner_address(cfg: &WorkerConfig, wallet: &TonAddress) -> Result<TonAddress, PaymentsError> {
    let o = cfg.owner_address.trim();
    if o.is_empty() {
        return Ok(*wallet);
    }
    o.parse().map_err(|e| {
        PaymentsError::Config(format!("owner_address {o:?} is not a TON address: {e}"))
    })
}

/// Where `cfg`'s `payments.json` lives.
pub fn file_path(cfg: &WorkerConfig) -> PathBuf {
    cfg.data_dir.join(store::FILE_NAME)
}

/// One proxy link's payment state (after [`Payments::admit`]).
#[derive(Debug)]
pub struct PaymentLink {
    /// The proxy contract (bounceable), the record's key.
    pub proxy_contract: String,
    /// The root params the proxy contract was checked under: this link's prices (the proxy's
    /// contract address is derived from them, so both sides price by the same params).
    pub params: cocoon_ton::contracts::CocoonParams,
    proxy_key: [u8; 32],
    worker: TonAddress,
    session: Mutex<Session>,
}

/// What one cash-out attempt did, per proxy contract.
#[derive(Clone, Debug, Serialize)]
pub struct CashoutReport {
    pub proxy_contract: String,
    pub worker_contract: String,
    pub signed_tokens: u64,
    pub on_chain_tokens: u64,
    pub pending_tokens: u64,
    /// `pending_tokens × worker_fee`, TON text.
    pub pending_ton: String,
    /// `sent`, `skipped` or `failed`.
    pub outcome: &'static str,
    pub detail: String,
}

/// The running worker's payments.
pub struct Payments {
    side: ChainSide,
    path: PathBuf,
    min_cashout: u128,
    poll_interval: Duration,
    book: Mutex<Book>,
    dirty: AtomicBool,
    wake: tokio::sync::Notify,
    write_lock: tokio::sync::Mutex<()>,
    pending: Mutex<HashMap<String, (u64, Instant)>>,
    cash_lock: tokio::sync::Mutex<()>,
    cashouts: AtomicU64,
    cashout_failures: AtomicU64,
    /// Signed payouts already verified (the proxy re-sends its latest with every message).
    checked: CheckedPayments,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments")
            .field("owner", &self.side.owner.to_bounceable())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves whole records (every update is checked first).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn wire(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Payments {
    /// Connects to the chain, loads the wallet and the root registry, reads `payments.json`.
    pub async fn start(
        cfg: &WorkerConfig,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Self>, PaymentsError> {
        let min_cashout = u128::from(cfg.min_cashout);
        let cocoon_onchain::NodeChain {
            chain,
            root,
            sender,
            registry,
        } = cfg.chain.open(shutdown.child_token()).await?;
        let owner = owner_address(cfg, &sender.address())?;
        let path = file_path(cfg);
        let side = ChainSide {
            chain,
            sender,
            registry,
            root,
            owner,
        };
        let me = Self::open(side, path, min_cashout, cfg.chain.poll_interval).await?;
        info!(
            owner = %me.side.owner.to_bounceable(),
            wallet = %me.side.sender.address().to_bounceable(),
            proxies = lock(&me.book).len(),
            file = %me.path.display(),
            "payments on"
        );
        Ok(Arc::new(me))
    }

    /// Builds from parts (tests, embedding): reads `path` off the runtime.
    pub async fn open(
        side: ChainSide,
        path: PathBuf,
        min_cashout: u128,
        poll_interval: Duration,
    ) -> Result<Self, PaymentsError> {
        let p = path.clone();
        let book = tokio::task::spawn_blocking(move || store::load(&p))
            .await
            .map_err(|e| PaymentsError::Join(e.to_string()))??;
        Ok(Self {
            side,
            path,
            min_cashout,
            poll_interval,
            book: Mutex::new(book),
            dirty: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            write_lock: tokio::sync::Mutex::new(()),
            pending: Mutex::new(HashMap::new()),
            cash_lock: tokio::sync::Mutex::new(()),
            cashouts: AtomicU64::new(0),
            cashout_failures: AtomicU64::new(0),
            checked: CheckedPayments::default(),
        })
    }

    /// Who earns.
    pub fn owner(&self) -> &TonAddress {
        &self.side.owner
    }

    /// The root registry, as last read.
    pub fn registry(&self) -> &cocoon_onchain::RegistryWatch {
        &self.side.registry
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A copy of the record for `proxy_contract`.
    pub fn record(&self, proxy_contract: &str) -> Option<ProxyRecord> {
        lock(&self.book).get(proxy_contract).cloned()
    }

    /// Checks the addresses a proxy told us and opens (or creates) its record.
    pub fn admit(&self, c: &WorkerConnectedToProxy) -> Result<Arc<PaymentLink>, Refusal> {
        let parse = |what: &'static str, value: &str| {
            value
                .trim()
                .parse::<TonAddress>()
                .map_err(|_| Refusal::BadAddress {
                    what,
                    value: value.chars().take(80).collect(),
                })
        };
        let proxy_owner = parse("proxy owner", &c.params.proxy_owner_address)?;
        let told_proxy = parse("proxy contract", &c.params.proxy_sc_address)?;
        let told_worker = parse("worker contract", &c.worker_sc_address)?;
        let reg = self.side.registry.current();
        let key = c.params.proxy_public_key;
        let net = reg.network(key);
        let derive = |e: cocoon_ton::cells::CellError| Refusal::Derive(e.to_string());
        let proxy = net.proxy(&proxy_owner, &self.side.root).map_err(derive)?;
        if proxy.address != told_proxy {
            return Err(Refusal::Mismatch {
                what: "proxy contract",
                told: told_proxy.to_bounceable(),
                expected: proxy.address.to_bounceable(),
            });
        }
        let worker = net
            .worker(&self.side.owner, &proxy.address)
            .map_err(derive)?;
        if worker.address != told_worker {
            return Err(Refusal::Mismatch {
                what: "worker contract",
                told: told_worker.to_bounceable(),
                expected: worker.address.to_bounceable(),
            });
        }
        let k = proxy.address.to_bounceable();
        let mut book = lock(&self.book);
        if !book.contains_key(&k) {
            if book.len() >= store::MAX_RECORDS {
                return Err(Refusal::Derive(format!(
                    "payments.json already holds {} proxy contracts",
                    store::MAX_RECORDS
                )));
            }
            let si = worker.state_init_cell().map_err(derive)?;
            book.insert(
                k.clone(),
                ProxyRecord {
                    proxy_contract: k.clone(),
                    proxy_public_key: hex::encode(key),
                    proxy_owner: proxy_owner.to_bounceable(),
                    worker_contract: worker.address.to_bounceable(),
                    worker_state_init: B64.encode(encode_boc(&si)),
                    worker_fee_per_token: reg.state.params.worker_fee_per_token,
                    params_version: reg.state.params.params_version,
                    signed_payout: None,
                    signed_tokens: 0,
                    db_tokens: 0,
                    max_tokens: 0,
                    on_chain_tokens: 0,
                },
            );
            drop(book);
            self.mark_dirty();
        }
        Ok(Arc::new(PaymentLink {
            proxy_contract: k,
            params: reg.state.params.clone(),
            proxy_key: key,
            worker: worker.address,
            session: Mutex::new(Session::default()),
        }))
    }

    /// `worker.compareBalanceWithProxy` with the highest numbers we hold for this proxy contract.
    pub fn compare_request(&self, link: &PaymentLink) -> WorkerCompareBalanceWithProxy {
        let m = lock(&self.book)
            .get(&link.proxy_contract)
            .map(ProxyRecord::marks)
            .unwrap_or_default();
        WorkerCompareBalanceWithProxy {
            tokens_committed_to_blockchain: wire(m.signed),
            tokens_committed_to_db: wire(m.db),
            max_tokens: wire(m.max),
        }
    }

    /// The payout this proxy signed for us that we hold (its BOC; empty when none): the one
    /// number of ours a proxy can check, since it signed it. Sent in
    /// `worker.extendedCompareBalanceWithProxy.other` when the proxy's books know less than we
    /// were told, so a proxy running on an old copy of its ledger can tell (see proxy_link).
    pub fn held_payout(&self, link: &PaymentLink) -> Bytes {
        self.record(&link.proxy_contract)
            .and_then(|r| r.signed_payout_bytes().ok().flatten())
            .map(Bytes::from)
            .unwrap_or_default()
    }

    /// The proxy's answer to the comparison: refused when its signed payout or db is below ours.
    pub fn on_compare(
        &self,
        link: &PaymentLink,
        r: &WorkerCompareBalanceWithProxyResult,
    ) -> Result<(), Refusal> {
        *lock(&link.session) = Session::default();
        let held = self.record(&link.proxy_contract).map(|r| r.marks());
        self.apply(
            link,
            Some(&r.signed_payment),
            Some(r.tokens_committed_to_db),
            Some(r.max_tokens),
            None,
        )?;
        if let Some(held) = held {
            if let Ok(m) = marks::tokens("max_tokens", r.max_tokens) {
                if m < held.max {
                    warn!(
                        proxy_contract = %link.proxy_contract,
                        held = held.max,
                        told = m,
                        "the proxy forgot {} tokens it never made durable (restarted?); they are not billed",
                        held.max - m
                    );
                }
            }
        }
        Ok(())
    }

    /// Checks one later message's numbers against what we hold and raises our marks. An error
    /// means the connection must be dropped. `proxy.signedPaymentEmpty` here carries no
    /// information (Cocoon's worker ignores it in `runQueryEx` too); at the handshake it is 0.
    pub fn on_report(
        &self,
        link: &PaymentLink,
        channel: marks::Channel,
        signed: Option<&ProxySignedPayment>,
        db: Option<i64>,
        max: Option<i64>,
    ) -> Result<(), Refusal> {
        self.apply(link, signed, db, max, Some(channel))
    }

    fn apply(
        &self,
        link: &PaymentLink,
        signed: Option<&ProxySignedPayment>,
        db: Option<i64>,
        max: Option<i64>,
        channel: Option<marks::Channel>,
    ) -> Result<(), Refusal> {
        // At the handshake (no channel) an empty signed payment means 0; later it means "no news".
        let empty_is_zero = channel.is_none();
        let (signed_tokens, boc) = match signed {
            None => (None, None),
            Some(ProxySignedPayment::Empty(_)) => (empty_is_zero.then_some(0), None),
            Some(ProxySignedPayment::Signed(d)) => {
                let p = self.checked.check(
                    &d.data,
                    &link.proxy_key,
                    SignedKind::Payout,
                    &link.worker,
                )?;
                (Some(p.payload.new_tokens), Some(d.data.clone()))
            }
        };
        let report = Report {
            signed: signed_tokens,
            db: db.map(|v| marks::tokens("db_tokens", v)).transpose()?,
            max: max.map(|v| marks::tokens("max_tokens", v)).transpose()?,
        };
        let mut book = lock(&self.book);
        let rec = book
            .get_mut(&link.proxy_contract)
            .ok_or_else(|| Refusal::Unknown(link.proxy_contract.clone()))?;
        let mut m = rec.marks();
        let applied = match channel {
            None => m.apply(&mut lock(&link.session), report)?,
            Some(c) => m.apply_on(&mut lock(&link.session), c, report)?,
        };
        let mut changed = applied.changed;
        if let Some(b) = boc {
            if applied.new_signed || rec.signed_payout.is_none() {
                rec.signed_payout = Some(B64.encode(&b));
                changed = true;
            }
        }
        rec.signed_tokens = m.signed;
        rec.db_tokens = m.db;
        rec.max_tokens = m.max;
        drop(book);
        if changed {
            self.mark_dirty();
        }
        Ok(())
    }

    fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Writes `payments.json` now if anything changed (off the runtime).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _one = self.write_lock.lock().await;
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let snapshot = lock(&self.book).clone();
        let path = self.path.clone();
        let r = tokio::task::spawn_blocking(move || store::save(&path, &snapshot))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        if r.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        r
    }

    /// Starts the writer and the cash-out task, both owned by `shutdown`.
    pub fn spawn(self: &Arc<Self>, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        tasks.spawn(self.clone().writer(shutdown.clone()));
        tasks.spawn(self.clone().cashout_loop(shutdown.clone()));
    }

    async fn writer(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
            }
            if let Err(e) = self.flush().await {
                warn!(error = %e, "writing payments.json failed; retrying");
            }
            // Coalesce: at most one write per WRITE_EVERY, whatever the request rate.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(WRITE_EVERY) => {}
            }
        }
        if let Err(e) = self.flush().await {
            warn!(error = %e, "writing payments.json at shutdown failed");
        }
    }

    async fn cashout_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.cashout_round(false) => {}
            }
        }
    }

    /// Reads every worker contract, then cashes out where `(signed − on_chain) × fee ≥
    /// min_cashout` (or wherever anything is pending, with `force`).
    pub async fn cashout_round(&self, force: bool) -> Vec<CashoutReport> {
        let _one = self.cash_lock.lock().await;
        let records: Vec<ProxyRecord> = lock(&self.book).values().cloned().collect();
        let mut out = Vec::with_capacity(records.len());
        for rec in records {
            let report = self.cash_out_one(rec, force).await;
            if report.outcome == "failed" {
                self.cashout_failures.fetch_add(1, Ordering::Relaxed);
                warn!(proxy_contract = %report.proxy_contract, error = %report.detail, "cash-out failed");
            }
            out.push(report);
        }
        out
    }

    async fn refresh(&self, rec: &mut ProxyRecord) -> Result<cashout::OnChain, String> {
        let addr = rec.worker_address()?;
        let oc = cashout::read_contract(self.side.chain.as_ref(), &addr)
            .await
            .map_err(|e| e.to_string())?;
        rec.on_chain_tokens = oc.tokens;
        let mut book = lock(&self.book);
        if let Some(r) = book.get_mut(&rec.proxy_contract) {
            if r.on_chain_tokens != oc.tokens {
                r.on_chain_tokens = oc.tokens;
                drop(book);
                self.mark_dirty();
            }
        }
        let mut pending = lock(&self.pending);
        if let Some((t, at)) = pending.get(&rec.proxy_contract) {
            if oc.tokens >= *t || at.elapsed() > PENDING_FOR {
                pending.remove(&rec.proxy_contract);
            }
        }
        Ok(oc)
    }

    async fn cash_out_one(&self, mut rec: ProxyRecord, force: bool) -> CashoutReport {
        let report = |rec: &ProxyRecord, outcome, detail: String| CashoutReport {
            proxy_contract: rec.proxy_contract.clone(),
            worker_contract: rec.worker_contract.clone(),
            signed_tokens: rec.signed_tokens,
            on_chain_tokens: rec.on_chain_tokens,
            pending_tokens: rec.pending_tokens(),
            pending_ton: format_ton(rec.nano(rec.pending_tokens())),
            outcome,
            detail,
        };
        let oc = match self.refresh(&mut rec).await {
            Ok(oc) => oc,
            Err(e) => return report(&rec, "failed", format!("reading the worker contract: {e}")),
        };
        if oc.state == cocoon_ton::contracts::state::CLOSED {
            return report(&rec, "skipped", "worker contract is closed".into());
        }
        let pending = rec.pending_tokens();
        if pending == 0 {
            return report(&rec, "skipped", "nothing signed beyond what is paid".into());
        }
        if !force && rec.nano(pending) < self.min_cashout {
            return report(
                &rec,
                "skipped",
                format!("below min_cashout ({} TON)", format_ton(self.min_cashout)),
            );
        }
        if lock(&self.pending).contains_key(&rec.proxy_contract) {
            return report(&rec, "skipped", "a cash-out is already on its way".into());
        }
        match cashout::submit(&self.side.sender, &rec).await {
            Ok(()) => {
                self.cashouts.fetch_add(1, Ordering::Relaxed);
                lock(&self.pending).insert(
                    rec.proxy_contract.clone(),
                    (rec.signed_tokens, Instant::now()),
                );
                info!(
                    proxy_contract = %rec.proxy_contract,
                    tokens = pending,
                    ton = %format_ton(rec.nano(pending)),
                    "cash-out sent"
                );
                let sent = report(&rec, "sent", format!("{pending} tokens"));
                // Best effort: show the new on-chain count if it is already there.
                let _ = self.refresh(&mut rec).await;
                CashoutReport {
                    on_chain_tokens: rec.on_chain_tokens,
                    ..sent
                }
            }
            Err(e) => report(&rec, "failed", e.to_string()),
        }
    }

    /// The stats page's payments section.
    pub fn stats_json(&self) -> serde_json::Value {
        let book = lock(&self.book);
        let proxies: serde_json::Map<String, serde_json::Value> = book
            .values()
            .map(|r| (r.proxy_contract.clone(), record_json(r)))
            .collect();
        serde_json::json!({
            "owner": self.side.owner.to_bounceable(),
            "wallet": self.side.sender.address().to_bounceable(),
            "min_cashout_ton": format_ton(self.min_cashout),
            "cashouts_sent": self.cashouts.load(Ordering::Relaxed),
            "cashouts_failed": self.cashout_failures.load(Ordering::Relaxed),
            "proxies": proxies,
        })
    }
}

/// One record as the stats page and `cocoon worker earnings --json` show it.
pub fn record_json(r: &ProxyRecord) -> serde_json::Value {
    serde_json::json!({
        "worker_contract": r.worker_contract,
        "proxy_public_key": r.proxy_public_key,
        "params_version": r.params_version,
        "worker_fee_per_token": r.worker_fee_per_token.to_string(),
        "signed_tokens": r.signed_tokens,
        "db_tokens": r.db_tokens,
        "max_tokens": r.max_tokens,
        "on_chain_tokens": r.on_chain_tokens,
        "pending_tokens": r.pending_tokens(),
        "earned_ton": format_ton(r.nano(r.signed_tokens)),
        "committed_ton": format_ton(r.nano(r.db_tokens)),
        "paid_out_ton": format_ton(r.nano(r.on_chain_tokens)),
        "pending_ton": format_ton(r.nano(r.pending_tokens())),
    })
}

#[cfg(test)]
mod tests;
