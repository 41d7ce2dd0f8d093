//! The proxy's payments (docs/PAYMENTS.md): its proxy contract, the signed ledger, signed payments
//! for clients and workers, long authorization by on-chain nonce, rollback detection, and the
//! chain agent that anchors, charges and pays out ([`agent`]).
//!
//! What lives here: the [`Payments`] handle the connection tasks call (addresses, auth, recording
//! usage durably, payment messages) and its start-up. What must not: the request path (it reaches
//! [`Payments::record`] and the payment statuses through `accounting.rs`) or message layouts
//! (crates/ton).

pub(crate) mod agent;
pub(crate) mod book;
pub(crate) mod long_auth;
pub(crate) mod winddown;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cocoon_ledger::{AccountKey, Ledger, LedgerConfig, LedgerError, Party, UsageDelta};
use cocoon_onchain::cursor::TxCursor;
use cocoon_onchain::registry::Registry;
use cocoon_onchain::{signed, OnchainError, RegistryWatch, WalletSender};
use cocoon_proto::messages::{ProxySignedPayment, ProxySignedPaymentData};
use cocoon_ton::chain::AccountStatus;
use cocoon_ton::contracts::{ClientData, Network, ProxyOp};
use cocoon_ton::payments::{ProxySigner, SignedKind};
use cocoon_ton::wallet::Transfer;
use cocoon_ton::{Chain, TonAddress, TxInfo};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ProxyConfig;
use book::{Book, ClientBook, ClientOnchain, Signed, WorkerBook};
use long_auth::{Begin, Busy, LongAuth, Source};

/// How long a long authorization waits for the client's on-chain nonce.
pub(crate) const LONG_AUTH_TIMEOUT: Duration = Duration::from_secs(300);

/// Why payments could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PaymentsError {
    #[error("chain: {0}")]
    Onchain(#[from] OnchainError),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("payment key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Settings the chain agent uses (from the proxy config).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub poll: Duration,
    pub anchor_interval: Duration,
    pub min_client_charge: u128,
    pub min_worker_payout: u128,
    pub min_owner_withdraw: u128,
    pub attach: u128,
}

/// Why a long authorization did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LongAuthError {
    /// The nonce did not come from the owner's contract in time (or came from another
    /// contract, or the wait gave its place to another source's).
    #[error("no owner_client_register with this nonce reached the proxy contract within {}s", LONG_AUTH_TIMEOUT.as_secs())]
    NotSeen,
    /// The wait could not start: the bounds of the long-auth table.
    #[error("{0}")]
    Busy(Busy),
    /// The client's session closed while it waited.
    #[error("session closed")]
    Closed,
}

/// Ends a long-authorization wait when dropped, whatever ended it (answer, timeout, the
/// session closing, the connection task being dropped): an entry lives no longer than its wait.
struct WaitGuard<'a> {
    auth: &'a Mutex<LongAuth>,
    nonce: u64,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut a) = self.auth.lock() {
            a.end(self.nonce);
        }
    }
}

/// Everything payments need at run time, shared by the connection tasks and the agent.
pub(crate) struct Payments {
    pub settings: Settings,
    pub signer: ProxySigner,
    pub public_key: [u8; 32],
    pub sender: Arc<WalletSender>,
    pub chain: Arc<dyn Chain>,
    pub registry: RegistryWatch,
    pub network: Network,
    pub root: TonAddress,
    pub owner: TonAddress,
    pub proxy_sc: TonAddress,
    pub ledger: Ledger,
    pub book: Mutex<Book>,
    auth: Mutex<LongAuth>,
    halted: Mutex<Option<String>>,
    /// Earlier proxy contracts being closed (root params changed since they were made).
    pub winddown: winddown::WindDown,
    /// Set when the root's params changed: new requests are refused while the proxy drains,
    /// then `restart` fires and the proxy starts again under a new contract.
    pub migrating: std::sync::atomic::AtomicBool,
    pub restart: CancellationToken,
}

/// What start-up hands the agent: the cursor over the proxy contract, already read up to now.
pub(crate) struct Startup {
    pub payments: Arc<Payments>,
    pub cursor: TxCursor,
    pub backlog: Vec<TxInfo>,
}

/// Reads (or creates, 0600) the 32-byte payment key seed.
fn load_or_create_seed(path: &Path) -> Result<[u8; 32], PaymentsError> {
    let err = |reason: String| PaymentsError::Key {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            // Whoever reads this file signs charges and payouts as this proxy.
            cocoon_onchain::config::check_private(path, &meta).map_err(err)?;
            if meta.len() != 32 {
                return Err(err(format!("expected 32 bytes, found {}", meta.len())));
            }
            let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| err(format!("expected 32 bytes, found {}", bytes.len())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write as _;
            let seed: [u8; 32] = rand::random();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
            f.write_all(&seed).map_err(|e| err(e.to_string()))?;
            f.sync_all().map_err(|e| err(e.to_string()))?;
            info!(path = %path.display(), "created a new payment key");
            Ok(seed)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// The ledger key of a party at a proxy contract: `<proxy contract>/<owner>`, so that each
/// proxy contract (one per root params version) has its own counters — a new contract's client
/// and worker contracts start from zero while the old ones are wound down.
pub(crate) fn ledger_key(party: Party, proxy_sc: &TonAddress, owner_key: &str) -> AccountKey {
    AccountKey::new(party, format!("{}/{owner_key}", proxy_sc.to_bounceable()))
}

/// The inverse of [`ledger_key`]'s owner text: `(proxy contract, owner)`.
pub(crate) fn split_ledger_owner(text: &str) -> Option<(TonAddress, TonAddress)> {
    let (sc, owner) = text.split_once('/')?;
    Some((sc.parse().ok()?, owner.parse().ok()?))
}

impl Payments {
    /// Connects to the chain, deploys the proxy contract if needed, opens and checks the ledger.
    /// `shutdown` is the token of this run of the proxy: cancelling it (a params change) ends
    /// the run.
    /// A ledger that the chain proves old does not fail start-up: the proxy starts halted, so its
    /// stats say why and an operator can inspect it (`cocoon proxy ledger`).
    pub(crate) async fn start(
        cfg: &ProxyConfig,
        shutdown: &CancellationToken,
    ) -> Result<Startup, PaymentsError> {
        let cocoon_onchain::NodeChain {
            chain,
            root,
            sender,
            registry,
        } = cfg.chain.open(shutdown.child_token()).await?;
        let key_path = cfg.payment_key_file.clone();
        let seed = tokio::task::spawn_blocking(move || load_or_create_seed(&key_path))
            .await
            .map_err(|e| PaymentsError::Other(e.to_string()))??;
        let signer = ProxySigner::from_seed(&seed)
            .map_err(|e| PaymentsError::Other(format!("payment key: {e}")))?;
        let public_key = signer.public_key();
        let owner = if cfg.owner_address.trim().is_empty() {
            sender.address()
        } else {
            cfg.owner_address.trim().parse().map_err(|e| {
                PaymentsError::Other(format!("owner_address is not a TON address: {e}"))
            })?
        };
        let reg = registry.current();
        let network = reg.network(public_key);
        let proxy = network
            .proxy(&owner, &root)
            .map_err(|e| PaymentsError::Other(e.to_string()))?;
        let proxy_sc = proxy.address;
        deploy_if_needed(&sender, &reg, &proxy, chain.as_ref()).await?;

        let mut ledger_cfg = LedgerConfig::new(cfg.ledger_path.clone(), seed);
        // Commit as soon as the writer is free: requests arriving during an fsync form the next
        // batch anyway (group commit), and a lone request does not wait for company.
        ledger_cfg.max_batch_delay = Duration::ZERO;
        let (ledger, snapshot) = Ledger::open(ledger_cfg).await?;
        let (book, old_generations) = book_from_ledger(&snapshot.accounts, &network, &proxy_sc)?;

        // Rollback check against the markers on chain.
        let mut cursor = TxCursor::new(proxy_sc, None);
        let backlog = cursor.poll(chain.as_ref()).await?;
        let markers: Vec<(u64, [u8; 32])> = backlog
            .iter()
            .filter_map(|tx| agent::own_marker(tx, &sender.address()))
            .collect();
        let winddown = winddown::WindDown::load(&cfg.ledger_path, &old_generations)
            .map_err(PaymentsError::Other)?;
        if !old_generations.is_empty() {
            info!(
                contracts = old_generations.len(),
                "winding down the proxy contracts of earlier root params"
            );
        }
        let mut halted = None;
        if let Err(e) = ledger.check_chain_markers(&markers) {
            let msg = format!(
                "{e}. The proxy refuses to serve; inspect the file with `cocoon proxy ledger` and restore the newest copy"
            );
            warn!(reason = %msg, "proxy halted");
            halted = Some(msg);
        }
        let payments = Arc::new(Payments {
            settings: Settings {
                poll: cfg.chain.poll_interval,
                anchor_interval: cfg.anchor_interval,
                min_client_charge: u128::from(cfg.min_client_charge_nanoton),
                min_worker_payout: u128::from(cfg.min_worker_payout_nanoton),
                min_owner_withdraw: u128::from(cfg.min_owner_withdraw_nanoton),
                attach: u128::from(cfg.onchain_attach_nanoton),
            },
            signer,
            public_key,
            sender,
            chain,
            registry,
            network,
            root,
            owner,
            proxy_sc,
            ledger,
            book: Mutex::new(book),
            auth: Mutex::new(LongAuth::default()),
            halted: Mutex::new(halted),
            winddown,
            migrating: std::sync::atomic::AtomicBool::new(false),
            restart: shutdown.clone(),
        });
        payments.resign_all();
        info!(
            proxy_contract = %payments.proxy_sc.to_bounceable(),
            wallet = %payments.sender.address().to_bounceable(),
            key = %hex::encode(payments.public_key),
            accounts = snapshot.accounts.len(),
            db_seqno = snapshot.db_seqno,
            "payments on"
        );
        Ok(Startup {
            payments,
            cursor,
            backlog,
        })
    }

    /// Why the proxy refuses to serve, if it does.
    pub(crate) fn halted(&self) -> Option<String> {
        self.halted.lock().ok().and_then(|h| h.clone())
    }

    /// Stops serving for good (until an operator intervenes): a rollback was detected.
    pub(crate) fn halt(&self, reason: String) {
        if let Ok(mut h) = self.halted.lock() {
            if h.is_none() {
                warn!(%reason, "proxy halted");
                *h = Some(reason);
            }
        }
    }

    /// Price and worker fee per adjusted token, nanoTON.
    pub(crate) fn prices(&self) -> (u128, u128) {
        let p = &self.network.params;
        (p.price_per_token, p.worker_fee_per_token)
    }

    /// The client contract of an owner at this proxy.
    pub(crate) fn client_sc(&self, owner: &TonAddress) -> Result<TonAddress, String> {
        self.network
            .client(owner, &self.proxy_sc)
            .map(|d| d.address)
            .map_err(|e| e.to_string())
    }

    /// The worker contract of an owner at this proxy.
    pub(crate) fn worker_sc(&self, owner: &TonAddress) -> Result<TonAddress, String> {
        self.network
            .worker(owner, &self.proxy_sc)
            .map(|d| d.address)
            .map_err(|e| e.to_string())
    }

    /// What this proxy knows of a client's contract, for `client.connectToProxy`: its page's
    /// report when that holds a secret hash, else one read of the contract (`None`: not active).
    /// Creates no page: pages are made only for authorized clients ([`Self::admit_client`]).
    pub(crate) async fn lookup_client(
        &self,
        owner: &TonAddress,
    ) -> Result<Option<ClientOnchain>, String> {
        let sc = self.client_sc(owner)?;
        let known = self.book.lock().ok().and_then(|b| {
            b.clients
                .get(&owner.to_bounceable())
                .and_then(|c| c.onchain.clone())
        });
        match known {
            Some(o) if o.secret_hash != [0; 32] => Ok(Some(o)),
            _ => self.read_client_contract(&sc).await,
        }
    }

    /// An authorized client: makes sure it has a page, keeps the newer of the page's report and
    /// `seen`, and returns the client's credit.
    pub(crate) fn admit_client(
        &self,
        owner: &TonAddress,
        seen: Option<ClientOnchain>,
    ) -> Result<u64, String> {
        let sc = self.client_sc(owner)?;
        let (price, _) = self.prices();
        let mut b = self.book.lock().map_err(|_| "book poisoned".to_string())?;
        let page = b
            .clients
            .entry(owner.to_bounceable())
            .or_insert_with(|| ClientBook {
                sc,
                db: 0,
                chain: 0,
                onchain: None,
                signed: None,
                charging_since: None,
            });
        if let Some(o) = seen {
            if page.onchain.as_ref().is_none_or(|old| o.lt >= old.lt) {
                page.onchain = Some(o);
            }
        }
        Ok(page
            .onchain
            .as_ref()
            .map(|o| book::client_credit(o, price))
            .unwrap_or(0))
    }

    async fn read_client_contract(&self, sc: &TonAddress) -> Result<Option<ClientOnchain>, String> {
        let st = self
            .chain
            .account_state(sc)
            .await
            .map_err(|e| e.to_string())?;
        if st.status != AccountStatus::Active {
            return Ok(None);
        }
        let r = self
            .chain
            .run_get_method(sc, ClientData::METHOD, vec![])
            .await
            .map_err(|e| e.to_string())?;
        if !r.success() {
            return Err(format!(
                "client contract getter failed with exit code {}",
                r.exit_code
            ));
        }
        let d = ClientData::from_stack(&r.stack).map_err(|e| e.to_string())?;
        Ok(Some(ClientOnchain {
            state: d.state,
            balance: d.balance,
            stake: d.stake,
            tokens_used: d.tokens_used,
            secret_hash: d.secret_hash,
            lt: st.last_tx_lt,
        }))
    }

    /// The secret hash on the client's contract: from the newer of its page's report and
    /// `looked_up` (what `client.connectToProxy` found), by logical time.
    pub(crate) fn client_secret_hash(
        &self,
        owner_key: &str,
        looked_up: Option<&ClientOnchain>,
    ) -> Option<[u8; 32]> {
        let page = self
            .book
            .lock()
            .ok()
            .and_then(|b| b.clients.get(owner_key).and_then(|c| c.onchain.clone()));
        match (page, looked_up) {
            (Some(p), Some(l)) if l.lt > p.lt => Some(l.secret_hash),
            (Some(p), _) => Some(p.secret_hash),
            (None, l) => l.map(|l| l.secret_hash),
        }
    }

    /// Waits until the client's contract forwards `nonce` to our contract (long auth), at most
    /// [`LONG_AUTH_TIMEOUT`] and no longer than `session_closed` takes to resolve. `source` is
    /// the client session's address (the table's per-source bound, see [`long_auth`]).
    pub(crate) async fn wait_register(
        &self,
        owner_key: &str,
        nonce: u64,
        source: Source,
        session_closed: impl Future<Output = ()>,
    ) -> Result<(), LongAuthError> {
        let rx = {
            let Ok(mut a) = self.auth.lock() else {
                return Err(LongAuthError::NotSeen);
            };
            match a.begin(owner_key, nonce, source, Instant::now()) {
                Begin::Seen(true) => return Ok(()),
                Begin::Seen(false) => return Err(LongAuthError::NotSeen),
                Begin::Busy(b) => return Err(LongAuthError::Busy(b)),
                Begin::Wait(rx) => rx,
            }
        };
        let _guard = WaitGuard {
            auth: &self.auth,
            nonce,
        };
        tokio::select! {
            r = tokio::time::timeout(LONG_AUTH_TIMEOUT, rx) => match r {
                Ok(Ok(())) => Ok(()),
                _ => Err(LongAuthError::NotSeen),
            },
            () = session_closed => Err(LongAuthError::Closed),
        }
    }

    /// Long authorizations waiting now.
    pub(crate) fn long_auth_waiting(&self) -> usize {
        self.auth.lock().map(|a| a.waiting()).unwrap_or(0)
    }

    /// The agent saw `nonce` come from `owner`'s client contract.
    pub(crate) fn nonce_seen(&self, owner_key: &str, nonce: u64) {
        if let Ok(mut a) = self.auth.lock() {
            a.seen(owner_key, nonce, Instant::now());
        }
    }

    /// Adds the usage of finished requests, durably: returns once it is fsynced. Updates the
    /// durable counters of the book. (The request path uses [`Payments::record_then`].)
    #[cfg(test)]
    pub(crate) async fn record(
        &self,
        client: &str,
        worker: &str,
        tokens: u64,
    ) -> Result<(), LedgerError> {
        if tokens == 0 {
            return Ok(());
        }
        let pages = self.usage_pages(client, worker);
        self.ledger.add_usage(usage_deltas(&pages, tokens)).await?;
        self.mirror_pages(&pages);
        Ok(())
    }

    /// [`Payments::record`] for a caller that acts as soon as the charge is durable: `then` runs
    /// once with the outcome, on the ledger's writer thread right after the commit (the book
    /// already mirrored), or here at once (nothing to record, or refused). It must not block.
    pub(crate) async fn record_then(
        self: &Arc<Self>,
        client: &str,
        worker: &str,
        tokens: u64,
        then: impl FnOnce(Result<(), LedgerError>) + Send + 'static,
    ) {
        if tokens == 0 {
            then(Ok(()));
            return;
        }
        let pages = self.usage_pages(client, worker);
        let deltas = usage_deltas(&pages, tokens);
        let me = self.clone();
        self.ledger
            .add_usage_then(deltas, move |r| {
                if r.is_ok() {
                    me.mirror_pages(&pages);
                }
                then(r.map(|_| ()));
            })
            .await;
    }

    /// The client's and the worker's ledger pages of a charge.
    fn usage_pages(&self, client: &str, worker: &str) -> [(Party, String, AccountKey); 2] {
        [(Party::Client, client), (Party::Worker, worker)].map(|(party, owner)| {
            let key = ledger_key(party, &self.proxy_sc, owner);
            (party, owner.to_string(), key)
        })
    }

    /// Copies the ledger's committed counters of `pages` into the book. The ledger published
    /// the commit before answering: its counters (which include ours) are copied rather than
    /// `tokens` added — see `Book::mirror`.
    fn mirror_pages(&self, pages: &[(Party, String, AccountKey)]) {
        let committed: Vec<_> = pages
            .iter()
            .filter_map(|(party, owner, key)| {
                let r = self.ledger.account(key)?;
                Some((*party, owner.as_str(), r.committed_db, r.committed_chain))
            })
            .collect();
        if let Ok(mut b) = self.book.lock() {
            for (party, owner, db, chain) in committed {
                b.mirror(party, owner, db, chain);
            }
        }
    }

    /// Registers a worker page on connect, checking its claims against the ledger (rollback).
    pub(crate) fn worker_on_connect(
        &self,
        owner: &TonAddress,
        told_chain: u64,
        told_db: u64,
        told_max: u64,
    ) -> Result<(), String> {
        let sc = self.worker_sc(owner)?;
        let k = owner.to_bounceable();
        let (db, chain) = {
            let mut b = self.book.lock().map_err(|_| "book poisoned".to_string())?;
            let page = b.workers.entry(k.clone()).or_insert_with(|| WorkerBook {
                owner: *owner,
                sc,
                db: 0,
                chain: 0,
                onchain_tokens: 0,
                onchain_lt: 0,
                signed: None,
                paying_since: None,
            });
            (page.db, page.chain)
        };
        book::worker_claims_ok(db, chain, told_chain, told_db, told_max)?;
        self.ledger
            .check_counterparty(
                &ledger_key(Party::Worker, &self.proxy_sc, &k),
                told_chain,
                told_db,
                told_max,
            )
            .map_err(|e| e.to_string())
    }

    /// The signed payment and counters to tell a client: (signed, db, max).
    pub(crate) fn client_status(&self, owner_key: &str) -> (ProxySignedPayment, u64) {
        let b = self.book.lock().ok();
        let page = b.as_ref().and_then(|b| b.clients.get(owner_key));
        (
            wire(page.and_then(|p| p.signed.as_ref())),
            page.map(|p| p.db).unwrap_or(0),
        )
    }

    /// The signed payment and counters to tell a worker: (signed, db).
    pub(crate) fn worker_status(&self, owner_key: &str) -> (ProxySignedPayment, u64) {
        let b = self.book.lock().ok();
        let page = b.as_ref().and_then(|b| b.workers.get(owner_key));
        (
            wire(page.and_then(|p| p.signed.as_ref())),
            page.map(|p| p.db).unwrap_or(0),
        )
    }

    /// Re-signs every page whose anchored amount moved past its signed payment.
    pub(crate) fn resign_all(&self) {
        let wallet = self.sender.address();
        let Ok(mut b) = self.book.lock() else { return };
        for c in b.clients.values_mut() {
            if c.chain > 0 && c.signed.as_ref().is_none_or(|s| s.tokens < c.chain) {
                match signed::sign_boc(&self.signer, SignedKind::Charge, c.chain, &c.sc, &wallet) {
                    Ok(boc) => {
                        c.signed = Some(Signed {
                            tokens: c.chain,
                            boc: Bytes::from(boc),
                        })
                    }
                    Err(e) => warn!(error = %e, "signing a charge failed"),
                }
            }
        }
        for w in b.workers.values_mut() {
            if w.chain > 0 && w.signed.as_ref().is_none_or(|s| s.tokens < w.chain) {
                match signed::sign_boc(&self.signer, SignedKind::Payout, w.chain, &w.sc, &wallet) {
                    Ok(boc) => {
                        w.signed = Some(Signed {
                            tokens: w.chain,
                            boc: Bytes::from(boc),
                        })
                    }
                    Err(e) => warn!(error = %e, "signing a payout failed"),
                }
            }
        }
    }

    /// Payments over `chain` for unit tests: a fresh ledger in `dir`, the reference params,
    /// no proxy contract deployed and no agent running.
    #[cfg(test)]
    pub(crate) async fn for_tests(chain: Arc<dyn Chain>, dir: &Path) -> Arc<Self> {
        use cocoon_ton::contracts::{CocoonParams, ParamsCodes, RootState};
        use cocoon_ton::wallet::{Phrase, Wallet};
        // Key derivation takes ~100k PBKDF2 rounds: once per test binary.
        static WALLET: std::sync::OnceLock<Wallet> = std::sync::OnceLock::new();
        const PHRASE: &str = "fancy carpet hello mandate penalty trial consider property top vicious exit rebuild tragic profit urban major total month holiday sudden rib gather media vicious";
        let wallet = WALLET
            .get_or_init(|| {
                Wallet::from_phrase(&Phrase::parse(PHRASE).expect("phrase")).expect("wallet")
            })
            .clone();
        let seed = [5u8; 32];
        let signer = ProxySigner::from_seed(&seed).expect("signer");
        let public_key = signer.public_key();
        let root = TonAddress::new(0, [1; 32]);
        let owner = TonAddress::new(0, [2; 32]);
        let registry = Registry {
            root,
            state: Arc::new(RootState {
                owner,
                version: 0,
                proxy_hashes: Vec::new(),
                proxies: Vec::new(),
                last_proxy_seqno: 0,
                worker_hashes: Vec::new(),
                model_hashes: Vec::new(),
                params: CocoonParams::default(),
                codes: ParamsCodes::default(),
                key_manager: None,
                verified_keys: None,
            }),
        };
        let network = registry.network(public_key);
        let proxy_sc = network.proxy(&owner, &root).expect("proxy").address;
        let ledger_path = dir.join("ledger.sqlite");
        // A ledger already in `dir` is reopened, as a restarted proxy reopens its own.
        let (ledger, snapshot) = Ledger::open(LedgerConfig::new(ledger_path.clone(), seed))
            .await
            .expect("ledger");
        let (book, _) = book_from_ledger(&snapshot.accounts, &network, &proxy_sc).expect("book");
        Arc::new(Self {
            settings: Settings {
                poll: Duration::from_secs(1),
                anchor_interval: Duration::from_secs(30),
                min_client_charge: 1,
                min_worker_payout: 1,
                min_owner_withdraw: 1,
                attach: 1,
            },
            signer,
            public_key,
            sender: Arc::new(WalletSender::new(chain.clone(), wallet)),
            chain,
            registry: RegistryWatch::fixed(registry),
            network,
            root,
            owner,
            proxy_sc,
            ledger,
            book: Mutex::new(book),
            auth: Mutex::new(LongAuth::default()),
            halted: Mutex::new(None),
            winddown: winddown::WindDown::load(&ledger_path, &Default::default())
                .expect("winddown"),
            migrating: std::sync::atomic::AtomicBool::new(false),
            restart: CancellationToken::new(),
        })
    }

    /// A JSON view for `/jsonstats` and `cocoon proxy status`.
    pub(crate) fn status_json(&self) -> serde_json::Value {
        let (price, fee) = self.prices();
        let b = self.book.lock().ok();
        let mut clients = Vec::new();
        let mut workers = Vec::new();
        if let Some(b) = b.as_ref() {
            for (k, c) in &b.clients {
                let o = c.onchain.clone().unwrap_or_default();
                clients.push(serde_json::json!({
                    "owner": k, "contract": c.sc.to_bounceable(),
                    "tokens_db": c.db, "tokens_anchored": c.chain,
                    "tokens_charged_onchain": o.tokens_used,
                    "balance_nanoton": o.balance.to_string(), "stake_nanoton": o.stake.to_string(),
                    "state": o.state, "credit_tokens": book::client_credit(&o, price),
                    "signed_tokens": c.signed.as_ref().map(|s| s.tokens).unwrap_or(0),
                }));
            }
            for (k, w) in &b.workers {
                workers.push(serde_json::json!({
                    "owner": k, "contract": w.sc.to_bounceable(),
                    "tokens_db": w.db, "tokens_anchored": w.chain,
                    "tokens_paid_onchain": w.onchain_tokens,
                    "earned_nanoton": book::worth(w.db, fee).to_string(),
                    "signed_tokens": w.signed.as_ref().map(|s| s.tokens).unwrap_or(0),
                }));
            }
        }
        clients.sort_by(|a, b| a["owner"].as_str().cmp(&b["owner"].as_str()));
        workers.sort_by(|a, b| a["owner"].as_str().cmp(&b["owner"].as_str()));
        let snap = self.ledger.snapshot();
        serde_json::json!({
            "halted": self.halted(),
            "root": self.root.to_bounceable(),
            "proxy_contract": self.proxy_sc.to_bounceable(),
            "owner": self.owner.to_bounceable(),
            "wallet": self.sender.address().to_bounceable(),
            "public_key": hex::encode(self.public_key),
            "price_per_token_nanoton": price.to_string(),
            "worker_fee_per_token_nanoton": fee.to_string(),
            "ledger_seqno": snap.db_seqno,
            "params_version": self.network.params.params_version,
            "migrating": self.migrating.load(std::sync::atomic::Ordering::Relaxed),
            "old_contracts": self.winddown.status_json(),
            "anchor": snap.confirmed_anchor().map(|a| a.seqno),
            "long_auth_waiting": self.long_auth_waiting(),
            "clients": clients,
            "workers": workers,
        })
    }
}

/// The book of this proxy contract from the ledger's accounts (a restart starts from what is
/// durable), and the earlier proxy contracts the ledger still holds accounts of (wound down).
fn book_from_ledger(
    accounts: &[cocoon_ledger::AccountRecord],
    network: &Network,
    proxy_sc: &TonAddress,
) -> Result<(Book, std::collections::BTreeSet<TonAddress>), PaymentsError> {
    let mut book = Book::default();
    let mut old_generations = std::collections::BTreeSet::new();
    for r in accounts {
        let Some((sc_of, owner)) = split_ledger_owner(&r.key.owner) else {
            warn!(owner = %r.key.owner, "ledger account with an unreadable owner; skipped");
            continue;
        };
        if sc_of != *proxy_sc {
            old_generations.insert(sc_of);
            continue;
        }
        match r.key.party {
            Party::Client => {
                let sc = network
                    .client(&owner, proxy_sc)
                    .map_err(|e| PaymentsError::Other(e.to_string()))?
                    .address;
                book.clients.insert(
                    owner.to_bounceable(),
                    ClientBook {
                        sc,
                        db: r.committed_db,
                        chain: r.committed_chain,
                        onchain: (r.onchain_state != 0
                            || r.onchain_balance != 0
                            || r.onchain_stake != 0
                            || r.onchain_tokens != 0)
                            .then_some(ClientOnchain {
                                state: r.onchain_state,
                                balance: r.onchain_balance,
                                stake: r.onchain_stake,
                                tokens_used: r.onchain_tokens,
                                secret_hash: [0; 32],
                                lt: 0,
                            }),
                        signed: None,
                        charging_since: None,
                    },
                );
            }
            Party::Worker => {
                let sc = network
                    .worker(&owner, proxy_sc)
                    .map_err(|e| PaymentsError::Other(e.to_string()))?
                    .address;
                book.workers.insert(
                    owner.to_bounceable(),
                    WorkerBook {
                        owner,
                        sc,
                        db: r.committed_db,
                        chain: r.committed_chain,
                        onchain_tokens: r.onchain_tokens,
                        onchain_lt: 0,
                        signed: None,
                        paying_since: None,
                    },
                );
            }
        }
    }

    Ok((book, old_generations))
}

/// One delta of `tokens` per page.
fn usage_deltas(pages: &[(Party, String, AccountKey)], tokens: u64) -> Vec<UsageDelta> {
    pages
        .iter()
        .map(|(_, _, key)| UsageDelta {
            key: key.clone(),
            tokens,
        })
        .collect()
}

/// The wire form of a signed payment.
pub(crate) fn wire(s: Option<&Signed>) -> ProxySignedPayment {
    match s {
        Some(s) => ProxySignedPayment::Signed(ProxySignedPaymentData {
            data: s.boc.clone(),
        }),
        None => ProxySignedPayment::empty(),
    }
}

/// Deploys the proxy contract with the minimum stake when it is not active yet.
async fn deploy_if_needed(
    sender: &WalletSender,
    reg: &Registry,
    proxy: &cocoon_ton::contracts::Deployable,
    chain: &dyn Chain,
) -> Result<(), PaymentsError> {
    let st = chain
        .account_state(&proxy.address)
        .await
        .map_err(OnchainError::from)?;
    if st.status == AccountStatus::Active {
        return Ok(());
    }
    let stake = reg.state.params.min_proxy_stake;
    info!(
        contract = %proxy.address.to_bounceable(),
        stake_nanoton = %stake,
        "deploying the proxy contract"
    );
    let body = ProxyOp::IncreaseStake {
        grams: stake,
        send_excesses_to: sender.address(),
    }
    .body(0)
    .map_err(OnchainError::from)?;
    sender
        .send(vec![Transfer {
            dest: proxy.address,
            value: stake + 300_000_000,
            bounce: false,
            body: Some(body),
            state_init: Some(proxy.state_init_cell().map_err(OnchainError::from)?),
        }])
        .await?;
    cocoon_onchain::sender::wait_active(chain, &proxy.address, Duration::from_secs(60)).await?;
    Ok(())
}

#[cfg(test)]
mod key_file_tests {
    use super::load_or_create_seed;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_payment_key_is_created_private_and_refused_when_others_may_read_it() {
        let dir = std::env::temp_dir().join(format!("cocoon-proxy-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("payment.key");
        let _ = std::fs::remove_file(&path);
        let seed = load_or_create_seed(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_seed(&path).expect("read back"), seed);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = load_or_create_seed(&path).expect_err("group-readable key accepted");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, [1u8; 31]).expect("write");
        assert!(load_or_create_seed(&path).is_err(), "a short key accepted");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
