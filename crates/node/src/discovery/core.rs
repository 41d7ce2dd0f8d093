//! The I/O-free discovery state machine: which registered proxies to link to, and when to let
//! one go. Inputs arrive through `handle_*` with the time; `poll` gives the actions.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{parse_description, Role};

/// Most ignored descriptions remembered for the stats.
const MAX_IGNORED_SHOWN: usize = 16;

/// What the core decides by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub role: Role,
    /// Proxies linked at once.
    pub links: usize,
    /// A link not ready for this long is replaced (when another proxy is registered).
    pub replace_unready_after: Duration,
    /// After this long on one proxy, move to another (`None`: never).
    pub rotate_after: Option<Duration>,
    /// Most registered entries considered (lowest seqnos first).
    pub max_candidates: usize,
    /// Loopback and private addresses are fine (dev/test networks).
    pub allow_local: bool,
}

/// A registered proxy as this node dials it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its seqno in the root's registry.
    pub seqno: u32,
    /// The address for this node's role.
    pub addr: SocketAddr,
}

/// Why a link is let go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetireReason {
    /// The proxy is no longer registered in the root (or its address changed).
    LeftRoot,
    /// No ready link for `replace_unready_after`, and another proxy is registered.
    Unready,
    /// `rotate_after` passed and the replacement is ready.
    Rotated,
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a link (id `id`) to `endpoint`.
    Dial { id: u64, endpoint: Endpoint },
    /// Let link `id` go: no new requests on it; it closes once those in flight have finished.
    Retire { id: u64, reason: RetireReason },
}

/// One link the core keeps.
#[derive(Clone, Debug)]
struct Link {
    endpoint: Endpoint,
    chosen_at: Instant,
    ready: bool,
    /// Since when it has had no ready link (its start, or its last drop).
    unready_since: Instant,
    /// The link replacing this one (rotation), while that one is not ready yet.
    replaced_by: Option<u64>,
}

/// The state machine (module docs of `discovery`).
#[derive(Debug)]
pub struct DiscoveryCore {
    rules: Rules,
    rng: StdRng,
    root_version: Option<u32>,
    /// Usable registered proxies, by seqno, one per address.
    candidates: Vec<Endpoint>,
    /// Registered entries ignored at the last root read: (seqno, why), the first few.
    ignored: Vec<(u32, String)>,
    ignored_count: usize,
    /// Entries beyond `max_candidates` at the last root read.
    beyond_cap: usize,
    links: BTreeMap<u64, Link>,
    /// Addresses recently given up for being unready, and until when they are avoided.
    cooldown: HashMap<SocketAddr, Instant>,
    next_id: u64,
}

// === impl DiscoveryCore ===

impl DiscoveryCore {
    pub fn new(rules: Rules, seed: [u8; 32]) -> Self {
        Self {
            rules,
            rng: StdRng::from_seed(seed),
            root_version: None,
            candidates: Vec::new(),
            ignored: Vec::new(),
            ignored_count: 0,
            beyond_cap: 0,
            links: BTreeMap::new(),
            cooldown: HashMap::new(),
            next_id: 1,
        }
    }

    /// The root version of the last list taken.
    pub fn root_version(&self) -> Option<u32> {
        self.root_version
    }

    /// The root's registered proxies `(seqno, description)` at `version`. Only the first
    /// `max_candidates` by seqno are looked at; unparsable or absurd descriptions are ignored,
    /// and a second entry with an address already listed too.
    pub fn handle_root(&mut self, version: u32, entries: &[(u32, String)]) {
        self.root_version = Some(version);
        let mut sorted: Vec<&(u32, String)> = entries.iter().collect();
        sorted.sort_by_key(|(seqno, _)| *seqno);
        self.beyond_cap = sorted.len().saturating_sub(self.rules.max_candidates);
        sorted.truncate(self.rules.max_candidates);
        self.candidates.clear();
        self.ignored.clear();
        self.ignored_count = 0;
        for (seqno, text) in sorted {
            match parse_description(text, self.rules.allow_local) {
                Ok(d) => {
                    let addr = d.for_role(self.rules.role);
                    if self.candidates.iter().any(|c| c.addr == addr) {
                        self.ignore(*seqno, format!("{addr} is listed under an earlier seqno"));
                    } else {
                        self.candidates.push(Endpoint {
                            seqno: *seqno,
                            addr,
                        });
                    }
                }
                Err(e) => self.ignore(*seqno, e.to_string()),
            }
        }
        let live: Vec<SocketAddr> = self.candidates.iter().map(|c| c.addr).collect();
        self.cooldown.retain(|a, _| live.contains(a));
    }

    fn ignore(&mut self, seqno: u32, why: String) {
        self.ignored_count += 1;
        if self.ignored.len() < MAX_IGNORED_SHOWN {
            self.ignored.push((seqno, why));
        }
    }

    /// Link `id` finished its handshake and takes requests.
    pub fn handle_ready(&mut self, id: u64, _now: Instant) {
        if let Some(l) = self.links.get_mut(&id) {
            l.ready = true;
        }
    }

    /// Link `id` lost its connection (it redials on its own).
    pub fn handle_down(&mut self, id: u64, now: Instant) {
        if let Some(l) = self.links.get_mut(&id) {
            if l.ready {
                l.ready = false;
                l.unready_since = now;
            }
        }
    }

    /// What to do now. Every retired id is forgotten at once (the shell lets the link drain).
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.cooldown.retain(|_, until| *until > now);
        // A proxy that left the root (or moved to another address) gets no new work.
        let gone: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| !self.candidates.contains(&l.endpoint))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.retire(id, RetireReason::LeftRoot, &mut out);
        }
        // A proxy we could not link to for long is replaced when another one is registered.
        let unready: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| {
                !l.ready
                    && now.saturating_duration_since(l.unready_since)
                        >= self.rules.replace_unready_after
            })
            .map(|(id, _)| *id)
            .collect();
        for id in unready {
            if self.has_unused_candidate() {
                if let Some(l) = self.links.get(&id) {
                    self.cooldown
                        .insert(l.endpoint.addr, now + self.rules.replace_unready_after);
                }
                self.retire(id, RetireReason::Unready, &mut out);
            }
        }
        // Rotation, make-before-break: the old link goes once its replacement is ready.
        let ids: Vec<u64> = self.links.keys().copied().collect();
        for id in ids {
            let Some(l) = self.links.get(&id) else {
                continue;
            };
            match l.replaced_by {
                Some(new) => match self.links.get(&new) {
                    Some(n) if n.ready => self.retire(id, RetireReason::Rotated, &mut out),
                    Some(_) => {}
                    None => {
                        // The replacement was given up: stay, and try again a lifetime later.
                        if let Some(l) = self.links.get_mut(&id) {
                            l.replaced_by = None;
                            l.chosen_at = now;
                        }
                    }
                },
                None => {
                    let due = self.rules.rotate_after.is_some_and(|r| {
                        l.ready && now.saturating_duration_since(l.chosen_at) >= r
                    });
                    if due {
                        if let Some(endpoint) = self.pick(now) {
                            let new = self.dial(endpoint, now, &mut out);
                            if let Some(l) = self.links.get_mut(&id) {
                                l.replaced_by = Some(new);
                            }
                        }
                    }
                }
            }
        }
        // Keep `links` proxies (a link being replaced no longer counts; its replacement does).
        while self.counted_links() < self.rules.links {
            let Some(endpoint) = self.pick(now) else {
                break;
            };
            self.dial(endpoint, now, &mut out);
        }
        out
    }

    fn counted_links(&self) -> usize {
        self.links
            .values()
            .filter(|l| l.replaced_by.is_none())
            .count()
    }

    fn in_use(&self, addr: SocketAddr) -> bool {
        self.links.values().any(|l| l.endpoint.addr == addr)
    }

    fn has_unused_candidate(&self) -> bool {
        self.candidates.iter().any(|c| !self.in_use(c.addr))
    }

    /// A random registered proxy not linked yet, preferring those not given up recently.
    fn pick(&mut self, now: Instant) -> Option<Endpoint> {
        let unused: Vec<Endpoint> = self
            .candidates
            .iter()
            .filter(|c| !self.in_use(c.addr))
            .copied()
            .collect();
        let rested: Vec<Endpoint> = unused
            .iter()
            .filter(|c| self.cooldown.get(&c.addr).is_none_or(|until| *until <= now))
            .copied()
            .collect();
        let pool = if rested.is_empty() { unused } else { rested };
        if pool.is_empty() {
            return None;
        }
        Some(pool[self.rng.random_range(0..pool.len())])
    }

    fn dial(&mut self, endpoint: Endpoint, now: Instant, out: &mut Vec<Action>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.links.insert(
            id,
            Link {
                endpoint,
                chosen_at: now,
                ready: false,
                unready_since: now,
                replaced_by: None,
            },
        );
        out.push(Action::Dial { id, endpoint });
        id
    }

    fn retire(&mut self, id: u64, reason: RetireReason, out: &mut Vec<Action>) {
        if self.links.remove(&id).is_some() {
            out.push(Action::Retire { id, reason });
        }
    }

    /// The links kept now: (id, endpoint, ready).
    pub fn links(&self) -> Vec<(u64, Endpoint, bool)> {
        self.links
            .iter()
            .map(|(id, l)| (*id, l.endpoint, l.ready))
            .collect()
    }

    /// `/jsonstats` `discovery` section at `now`.
    pub fn json(&self, now: Instant) -> serde_json::Value {
        let links: Vec<serde_json::Value> = self
            .links
            .values()
            .map(|l| {
                serde_json::json!({
                    "addr": l.endpoint.addr.to_string(),
                    "seqno": l.endpoint.seqno,
                    "ready": l.ready,
                    "for_s": now.saturating_duration_since(l.chosen_at).as_secs(),
                    "being_replaced": l.replaced_by.is_some(),
                })
            })
            .collect();
        let ignored: Vec<serde_json::Value> = self
            .ignored
            .iter()
            .map(|(seqno, why)| serde_json::json!({"seqno": seqno, "why": why}))
            .collect();
        serde_json::json!({
            "source": "root",
            "root_version": self.root_version,
            "registered_usable": self.candidates.len(),
            "registered_ignored": self.ignored_count,
            "registered_beyond_cap": self.beyond_cap,
            "ignored": ignored,
            "links": links,
        })
    }
}
