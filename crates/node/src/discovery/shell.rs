//! The discovery task: feeds [`DiscoveryCore`] from the root's registry and the links' reports,
//! carries out its actions, and owns the link tasks it starts (a `JoinSet`; they end on their
//! own when retired or at shutdown, and what is left is aborted).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{info, warn};

use super::{Action, DiscoveryCore, RetireReason, Rules};

/// What a link task gets from whoever started it: a signal to let go (no new requests, close
/// once those in flight are done) and a way to say when it is ready or down.
#[derive(Clone, Debug)]
pub struct LinkControl {
    id: u64,
    retire: CancellationToken,
    events: Option<mpsc::UnboundedSender<(u64, bool)>>,
}

/// A link the discovery task asks a role to run.
#[derive(Debug)]
pub struct LinkHandle {
    /// The proxy's address for this node's role.
    pub addr: SocketAddr,
    /// Its seqno in the root.
    pub seqno: u32,
    pub control: LinkControl,
}

// === impl LinkControl ===

impl LinkControl {
    /// A link of a static `proxies` list: never retired, reports go nowhere.
    pub fn fixed() -> Self {
        Self {
            id: 0,
            retire: CancellationToken::new(),
            events: None,
        }
    }

    /// A link let go when `retire` fires, reporting nowhere (tests, or a caller that manages
    /// its own links).
    pub fn new(retire: CancellationToken) -> Self {
        Self {
            id: 0,
            retire,
            events: None,
        }
    }

    /// The link finished its handshake and takes requests.
    pub fn ready(&self) {
        if let Some(tx) = &self.events {
            let _ = tx.send((self.id, true));
        }
    }

    /// The link's connection is gone (it redials unless retired).
    pub fn down(&self) {
        if let Some(tx) = &self.events {
            let _ = tx.send((self.id, false));
        }
    }

    /// Resolves when the link is to be let go.
    pub fn retired(&self) -> WaitForCancellationFuture<'_> {
        self.retire.cancelled()
    }

    pub fn is_retired(&self) -> bool {
        self.retire.is_cancelled()
    }
}

/// The discovery section of a node's `/jsonstats` (the core's view, refreshed every tick).
#[derive(Debug, Default)]
pub struct DiscoveryStatus(Mutex<serde_json::Value>);

impl DiscoveryStatus {
    pub fn json(&self) -> serde_json::Value {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn set(&self, v: serde_json::Value) {
        if let Ok(mut s) = self.0.lock() {
            *s = v;
        }
    }
}

/// How often a role's discovery looks at the registry and its links (the registry itself is read
/// every `[chain] poll_interval`).
pub const TICK: Duration = Duration::from_millis(250);

/// The root's registered proxies as a role reads them: called every tick with the version
/// already taken; `Some((version, entries))` when the root is at another version.
pub type ProxyList = Box<dyn FnMut(Option<u32>) -> Option<(u32, Vec<(u32, String)>)> + Send>;

/// Runs discovery until `shutdown`: every `tick` (and on each link report) the core is told
/// what changed and its actions are carried out; `spawn` makes the task of each new link, which
/// must end by itself once retired or at `shutdown`.
pub async fn run<F, Fut>(
    rules: Rules,
    seed: [u8; 32],
    mut proxies: ProxyList,
    mut spawn: F,
    status: Arc<DiscoveryStatus>,
    tick: Duration,
    shutdown: CancellationToken,
) where
    F: FnMut(LinkHandle) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut core = DiscoveryCore::new(rules, seed);
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, bool)>();
    let mut links: JoinSet<()> = JoinSet::new();
    let mut retire: std::collections::HashMap<u64, CancellationToken> =
        std::collections::HashMap::new();
    let mut ticker = tokio::time::interval(tick.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned_empty = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some((id, up)) = rx.recv() => {
                let now = tokio::time::Instant::now().into_std();
                if up { core.handle_ready(id, now) } else { core.handle_down(id, now) }
            }
            Some(_) = links.join_next(), if !links.is_empty() => {}
            _ = ticker.tick() => {}
        }
        if let Some((version, entries)) = proxies(core.root_version()) {
            core.handle_root(version, &entries);
        }
        let now = tokio::time::Instant::now().into_std();
        for action in core.poll(now) {
            match action {
                Action::Dial { id, endpoint } => {
                    info!(proxy = %endpoint.addr, seqno = endpoint.seqno, "linking to a proxy registered in the root");
                    let token = CancellationToken::new();
                    retire.insert(id, token.clone());
                    let control = LinkControl {
                        id,
                        retire: token,
                        events: Some(tx.clone()),
                    };
                    links.spawn(spawn(LinkHandle {
                        addr: endpoint.addr,
                        seqno: endpoint.seqno,
                        control,
                    }));
                }
                Action::Retire { id, reason } => {
                    let why = match reason {
                        RetireReason::LeftRoot => "it left the root",
                        RetireReason::Unready => "no ready link for replace_unready_after",
                        RetireReason::Rotated => "rotate_after passed; its replacement is ready",
                    };
                    info!(
                        link = id,
                        reason = why,
                        "letting a proxy go: no new requests, those in flight finish"
                    );
                    if let Some(t) = retire.remove(&id) {
                        t.cancel();
                    }
                }
            }
        }
        let empty = core.links().is_empty();
        if empty && !warned_empty {
            warn!("no usable proxy is registered in the root; waiting for one");
        }
        warned_empty = empty;
        status.set(core.json(now));
    }
    // The links see `shutdown` too; give them a moment to fail their requests cleanly.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while links.join_next().await.is_some() {}
    })
    .await;
    links.shutdown().await;
}
