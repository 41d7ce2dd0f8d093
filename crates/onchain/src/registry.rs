//! The root contract's registry as the nodes use it: prices and params, allowed proxy and worker
//! image hashes, allowed model hashes, registered proxies. Read from the root's raw data (as the
//! C++ node does) and cross-checked with its getter; [`RegistryWatch`] re-reads it every poll so
//! a registry change applies without restarting anything, and keeps the time its view was last
//! current so a node can refuse work on a stale one ([`crate::freshness`]).
//!
//! What must not live here: the TLS-level checks (crates/ratls, crates/attest) — these are the
//! application-layer allowlists on top of them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cocoon_ton::contracts::{parse_root_data, Network, RootData, RootState};
use cocoon_ton::{Chain, TonAddress};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::freshness::{self, Freshness, RootView};
use crate::OnchainError;

/// How many times a read whose storage and getter disagree is tried (see [`Registry::read`]).
pub const READ_ATTEMPTS: u32 = 3;

/// One read of the root contract.
#[derive(Clone, Debug)]
pub struct Registry {
    pub root: TonAddress,
    pub state: Arc<RootState>,
}

/// SHA-256 of a full model name (`name@commit:hash`), as the root's `model_hashes` hold them.
pub fn model_hash(full_model_name: &str) -> [u8; 32] {
    Sha256::digest(full_model_name.as_bytes()).into()
}

impl Registry {
    /// Reads the registry now. The storage and the getter are two reads: a root changed between
    /// them (its owner registering a key, a proxy, new params) makes them disagree once, so a
    /// disagreement is read again, up to [`READ_ATTEMPTS`] times; an API that keeps contradicting
    /// itself is refused.
    pub async fn read(chain: &dyn Chain, root: &TonAddress) -> Result<Self, OnchainError> {
        let mut attempt = 1;
        loop {
            match Self::read_once(chain, root).await? {
                Some(state) => {
                    return Ok(Self {
                        root: *root,
                        state: Arc::new(state),
                    })
                }
                None if attempt < READ_ATTEMPTS => attempt += 1,
                None => {
                    return Err(OnchainError::Root(
                        "the root's getter and its storage disagree".into(),
                    ))
                }
            }
        }
    }

    /// One read of storage and getter; `None` when they disagree.
    async fn read_once(
        chain: &dyn Chain,
        root: &TonAddress,
    ) -> Result<Option<RootState>, OnchainError> {
        let st = chain.account_state(root).await?;
        let data = st.data.ok_or_else(|| OnchainError::NotActive {
            what: "the root contract",
            address: root.to_bounceable(),
        })?;
        let state = parse_root_data(&data)?;
        let r = chain.run_get_method(root, RootData::METHOD, vec![]).await?;
        if r.success() {
            let g = RootData::from_stack(&r.stack)?;
            if g.version != state.version || g.owner != state.owner {
                debug!(
                    storage = state.version,
                    getter = g.version,
                    "the root changed between two reads; reading again"
                );
                return Ok(None);
            }
        }
        Ok(Some(state))
    }

    /// The address book for a proxy key under these params.
    pub fn network(&self, proxy_public_key: [u8; 32]) -> Network {
        Network {
            params: self.state.params.clone(),
            proxy_public_key,
        }
    }

    /// Whether a proxy image hash is registered.
    pub fn allows_proxy_image(&self, h: &[u8; 32]) -> bool {
        self.state.proxy_hashes.contains(h)
    }

    /// Whether a worker image hash is registered.
    pub fn allows_worker_image(&self, h: &[u8; 32]) -> bool {
        self.state.worker_hashes.contains(h)
    }

    /// Whether a full model name's hash is registered.
    pub fn allows_model(&self, full_model_name: &str) -> bool {
        self.state
            .model_hashes
            .contains(&model_hash(full_model_name))
    }

    /// Checks a peer's image hash against one of the lists, with a reason fit for a log line.
    pub fn check_image(&self, kind: ImageKind, image: Option<&[u8; 32]>) -> Result<(), String> {
        let Some(h) = image else {
            return Err(format!(
                "the {} presented no attested image; the root's registry requires one",
                kind.name()
            ));
        };
        let ok = match kind {
            ImageKind::Proxy => self.allows_proxy_image(h),
            ImageKind::Worker => self.allows_worker_image(h),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} image {} is not in the root contract's registry (version {})",
                kind.name(),
                hex::encode(h),
                self.state.version
            ))
        }
    }
}

/// Which image list a check uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Proxy,
    Worker,
}

impl ImageKind {
    fn name(self) -> &'static str {
        match self {
            Self::Proxy => "proxy",
            Self::Worker => "worker",
        }
    }
}

/// The registry, re-read every poll by a task owned by the given cancellation token.
#[derive(Clone, Debug)]
pub struct RegistryWatch {
    rx: watch::Receiver<Registry>,
    /// When the view was last current (`None`: fixed), and how old it may get.
    view: Arc<Mutex<RootView>>,
    /// For [`RegistryWatch::fixed`]: the sender lives as long as the watch.
    _fixed: Option<Arc<watch::Sender<Registry>>>,
}

/// One read of the root and the chain's time for it: the registry and its view time
/// ([`freshness::view_time`]). The chain's time is read first, so the state read after it is at
/// least that new.
async fn read_timed(
    chain: &dyn Chain,
    root: &TonAddress,
) -> Result<(Registry, SystemTime), OnchainError> {
    let started = SystemTime::now();
    let chain_time = chain.time().await?;
    let r = Registry::read(chain, root).await?;
    Ok((r, freshness::view_time(started, chain_time)))
}

impl RegistryWatch {
    /// Reads the registry once (failing if the root can't be read), then keeps it fresh; a view
    /// older than `stale_after` is stale ([`RegistryWatch::freshness`]).
    pub async fn start(
        chain: Arc<dyn Chain>,
        root: TonAddress,
        every: Duration,
        stale_after: Duration,
        shutdown: CancellationToken,
    ) -> Result<Self, OnchainError> {
        let (first, as_of) = read_timed(chain.as_ref(), &root).await?;
        info!(
            version = first.state.version,
            params_version = first.state.params.params_version,
            "root registry read"
        );
        let (tx, rx) = watch::channel(first);
        let view = Arc::new(Mutex::new(RootView {
            as_of: Some(as_of),
            stale_after,
        }));
        let seen = view.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                match read_timed(chain.as_ref(), &root).await {
                    Ok((r, as_of)) => {
                        if let Ok(mut v) = seen.lock() {
                            // Never backwards: a lagging API node behind a load balancer does
                            // not undo what an earlier read saw.
                            v.as_of = v.as_of.max(Some(as_of));
                        }
                        if std::mem::take(&mut failing) {
                            info!("reading the root registry works again");
                        }
                        let changed = tx.borrow().state.version != r.state.version;
                        if changed {
                            info!(
                                version = r.state.version,
                                params_version = r.state.params.params_version,
                                "root registry changed"
                            );
                            tx.send_replace(r);
                        }
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            warn!(error = %e, "reading the root registry failed; keeping the last one")
                        } else {
                            debug!(error = %e, "reading the root registry failed again");
                        }
                    }
                }
            }
        });
        Ok(Self {
            rx,
            view,
            _fixed: None,
        })
    }

    /// A fixed registry (tests, or a node told not to poll): never stale.
    pub fn fixed(r: Registry) -> Self {
        let (tx, rx) = watch::channel(r);
        Self {
            rx,
            view: Arc::new(Mutex::new(RootView {
                as_of: None,
                stale_after: freshness::DEFAULT_STALE_AFTER,
            })),
            _fixed: Some(Arc::new(tx)),
        }
    }

    /// The newest registry.
    pub fn current(&self) -> Registry {
        self.rx.borrow().clone()
    }

    /// Waits for the next change.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// When the view was last current, and its bound.
    pub fn view(&self) -> RootView {
        self.view.lock().map(|v| *v).unwrap_or(RootView {
            as_of: Some(std::time::UNIX_EPOCH),
            stale_after: freshness::DEFAULT_STALE_AFTER,
        })
    }

    /// Whether the view is too old to take work on at `now`.
    pub fn freshness(&self, now: SystemTime) -> Freshness {
        self.view().assess(now)
    }

    /// `/jsonstats` `root` section: the registry's version and the view's freshness at `now`.
    pub fn json(&self, now: SystemTime) -> serde_json::Value {
        let r = self.rx.borrow();
        let mut v = self.freshness(now).json();
        if let Some(o) = v.as_object_mut() {
            o.insert("version".into(), r.state.version.into());
            o.insert(
                "params_version".into(),
                r.state.params.params_version.into(),
            );
            o.insert("proxies_registered".into(), r.state.proxies.len().into());
        }
        v
    }

    /// Tests: moves the view's time (as a read at `as_of` would).
    #[doc(hidden)]
    pub fn set_view_time(&self, as_of: Option<SystemTime>) {
        if let Ok(mut v) = self.view.lock() {
            v.as_of = as_of;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(workers: Vec<[u8; 32]>, models: Vec<[u8; 32]>) -> Registry {
        let owner: TonAddress = format!("0:{}", "11".repeat(32)).parse().unwrap();
        Registry {
            root: owner,
            state: Arc::new(RootState {
                owner,
                version: 9,
                proxy_hashes: vec![[1; 32]],
                proxies: Vec::new(),
                last_proxy_seqno: 0,
                worker_hashes: workers,
                model_hashes: models,
                params: cocoon_ton::contracts::CocoonParams::default(),
                codes: cocoon_ton::contracts::ParamsCodes::default(),
                key_manager: None,
                verified_keys: None,
            }),
        }
    }

    #[test]
    fn allowlists_check_images_and_models_with_clear_reasons() {
        let r = registry(vec![[2; 32]], vec![model_hash("m@gguf:ab")]);
        assert!(r.check_image(ImageKind::Worker, Some(&[2; 32])).is_ok());
        assert!(r.check_image(ImageKind::Proxy, Some(&[1; 32])).is_ok());
        let e = r
            .check_image(ImageKind::Worker, Some(&[1; 32]))
            .unwrap_err();
        assert!(
            e.contains("not in the root contract's registry") && e.contains("version 9"),
            "{e}"
        );
        let e = r.check_image(ImageKind::Proxy, None).unwrap_err();
        assert!(e.contains("no attested image"), "{e}");
        assert!(r.allows_model("m@gguf:ab"));
        assert!(!r.allows_model("m@gguf:cd"));
        assert!(!r.allows_model("m"));
    }

    /// The local chain, with calls that fail while `down` and a clock `lag` seconds behind.
    struct Flaky {
        inner: cocoon_localnet::Localnet,
        down: std::sync::atomic::AtomicBool,
        lag: std::sync::atomic::AtomicU32,
    }

    impl Flaky {
        fn check(&self) -> Result<(), cocoon_ton::ChainError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(cocoon_ton::ChainError::Transport("unreachable".into()));
            }
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl Chain for Flaky {
        async fn send_boc(&self, boc: &[u8]) -> Result<(), cocoon_ton::ChainError> {
            self.check()?;
            self.inner.send_boc(boc).await
        }
        async fn run_get_method(
            &self,
            addr: &TonAddress,
            method: &str,
            stack: Vec<cocoon_ton::StackEntry>,
        ) -> Result<cocoon_ton::chain::GetMethodResult, cocoon_ton::ChainError> {
            self.check()?;
            self.inner.run_get_method(addr, method, stack).await
        }
        async fn account_state(
            &self,
            addr: &TonAddress,
        ) -> Result<cocoon_ton::chain::AccountState, cocoon_ton::ChainError> {
            self.check()?;
            self.inner.account_state(addr).await
        }
        async fn transactions(
            &self,
            addr: &TonAddress,
            since_lt: Option<u64>,
            limit: u32,
        ) -> Result<Vec<cocoon_ton::TxInfo>, cocoon_ton::ChainError> {
            self.check()?;
            self.inner.transactions(addr, since_lt, limit).await
        }
        async fn transactions_from(
            &self,
            addr: &TonAddress,
            from: cocoon_ton::chain::TxId,
            since_lt: Option<u64>,
            limit: u32,
        ) -> Result<Vec<cocoon_ton::TxInfo>, cocoon_ton::ChainError> {
            self.check()?;
            self.inner
                .transactions_from(addr, from, since_lt, limit)
                .await
        }
        async fn time(&self) -> Result<u32, cocoon_ton::ChainError> {
            self.check()?;
            let lag = self.lag.load(std::sync::atomic::Ordering::SeqCst);
            Ok(self.inner.time().await?.saturating_sub(lag))
        }
    }

    /// Waits (real time, bounded) until `f` holds.
    async fn until(what: &str, f: impl Fn() -> bool) {
        let t = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(tokio::time::Instant::now() < t, "never: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_watch_goes_stale_when_the_chain_is_unreachable_or_behind_and_recovers() {
        use cocoon_ton::contracts::{CocoonParams, Network};
        use cocoon_ton::wallet::{Phrase, Transfer, Wallet};
        use std::sync::atomic::Ordering;
        let inner = cocoon_localnet::Localnet::in_memory().expect("localnet");
        let wallet = Wallet::from_phrase(&Phrase::generate().expect("phrase")).expect("wallet");
        inner
            .faucet(wallet.address(), 10_000_000_000)
            .await
            .expect("faucet");
        let root = Network::root(&wallet.address(), &CocoonParams::default()).expect("root");
        let chain = Arc::new(Flaky {
            inner,
            down: false.into(),
            lag: 0.into(),
        });
        crate::WalletSender::new(chain.clone(), wallet)
            .send(vec![Transfer {
                dest: root.address,
                value: 1_000_000_000,
                bounce: false,
                body: None,
                state_init: Some(root.state_init_cell().expect("init")),
            }])
            .await
            .expect("deploy");
        let shutdown = CancellationToken::new();
        let _stop = shutdown.clone().drop_guard();
        let bound = Duration::from_millis(600);
        let w = RegistryWatch::start(
            chain.clone(),
            root.address,
            Duration::from_millis(20),
            bound,
            shutdown,
        )
        .await
        .expect("watch");
        let stale = || w.freshness(SystemTime::now()).is_stale();
        assert!(!stale());
        assert_eq!(w.json(SystemTime::now())["stale"], false);
        // Unreachable: the last registry stays, and past the bound the view is stale.
        chain.down.store(true, Ordering::SeqCst);
        until("stale while unreachable", stale).await;
        let why = w.freshness(SystemTime::now()).refusal().expect("refusal");
        assert!(why.contains("root contract"), "{why}");
        assert_eq!(w.current().state.version, 0, "the last registry is kept");
        // Reachable again: the next read makes it fresh.
        chain.down.store(false, Ordering::SeqCst);
        until("fresh after a read", || !stale()).await;
        // An API that answers but from a block an hour old: stale although every call works.
        chain.lag.store(3600, Ordering::SeqCst);
        until("stale behind", stale).await;
        chain.lag.store(0, Ordering::SeqCst);
        until("fresh again", || !stale()).await;
    }

    #[test]
    fn model_hash_is_sha256_of_the_full_name() {
        assert_eq!(
            hex::encode(model_hash("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
