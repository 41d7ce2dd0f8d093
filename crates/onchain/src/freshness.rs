//! How old a node's view of the root contract is, and whether it is too old to take work on
//! (the stale-root guard).
//!
//! The root is the network's registry: which images, models and proxies are allowed and what a
//! token costs. A node that can no longer read it keeps acting on the last registry it saw, so a
//! revocation (an image, a model, a proxy taken off the root) or a price change would never reach
//! it. The same goes for a chain API that answers but serves an old block (lying by staleness or
//! omission). So each node keeps the time its view was last known current and stops taking new
//! work once that is older than `[chain] root_stale_after`; the first successful read resumes it.
//!
//! The view's time of a read is the earlier of the local clock when the read started and the
//! chain's own time for the state it read (the block time a TON HTTP API reports,
//! [`cocoon_ton::Chain::time`]): an API stuck on an old block reports an old time and goes stale
//! even though every call succeeds. A chain ahead of the local clock (the local chain's time
//! travel) counts as now.
//!
//! Everything here is a pure function of its arguments, the current time included; the registry
//! watch ([`crate::registry::RegistryWatch`]) records the view's time and asks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default of `[chain] root_stale_after`: 5 minutes. Cocoon's proxy dies after 7200 s without a
/// root update; two hours of serving a revoked image or an old price is long, while our nodes
/// read the root every `poll_interval` (5 s by default), so 5 minutes is 60 missed reads: enough
/// for an API restart or a burst of rate limiting, short enough that a revocation reaches every
/// node (or stops it) within minutes.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(300);

/// The time a read's view is current as of: the earlier of `read_started` (local) and the chain's
/// time `chain_time` (whole unix seconds, so the state may be up to a second newer) for the state
/// it read.
pub fn view_time(read_started: SystemTime, chain_time: u32) -> SystemTime {
    let chain = UNIX_EPOCH + Duration::from_secs(u64::from(chain_time) + 1);
    read_started.min(chain)
}

/// What a node knows of its root view: when it was last current, and how old it may get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootView {
    /// When the view was last known current; `None` for a fixed registry (never stale).
    pub as_of: Option<SystemTime>,
    /// Older than this, the node takes no new work.
    pub stale_after: Duration,
}

/// The verdict on a root view at some time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// A fixed registry (tests, no chain): nothing to go stale.
    Fixed,
    /// Current enough: `age` old, within `stale_after`.
    Fresh {
        age: Duration,
        stale_after: Duration,
    },
    /// Too old to take new work on.
    Stale {
        age: Duration,
        stale_after: Duration,
    },
}

// === impl RootView ===

impl RootView {
    /// The verdict at `now`. A clock that went backwards counts as age zero.
    pub fn assess(&self, now: SystemTime) -> Freshness {
        let Some(as_of) = self.as_of else {
            return Freshness::Fixed;
        };
        let age = now.duration_since(as_of).unwrap_or(Duration::ZERO);
        let stale_after = self.stale_after;
        if age > stale_after {
            Freshness::Stale { age, stale_after }
        } else {
            Freshness::Fresh { age, stale_after }
        }
    }
}

// === impl Freshness ===

impl Freshness {
    pub fn is_stale(&self) -> bool {
        matches!(self, Self::Stale { .. })
    }

    /// The view's age, when there is a chain to age against.
    pub fn age(&self) -> Option<Duration> {
        match *self {
            Self::Fixed => None,
            Self::Fresh { age, .. } | Self::Stale { age, .. } => Some(age),
        }
    }

    /// Why the node takes no new work, when the view is stale (callers say which node).
    pub fn refusal(&self) -> Option<String> {
        match *self {
            Self::Stale { age, stale_after } => Some(format!(
                "its view of the root contract is {}s old (more than root_stale_after = {}s: \
                 the chain API is unreachable or behind); no new requests until a read succeeds",
                age.as_secs(),
                stale_after.as_secs()
            )),
            _ => None,
        }
    }

    /// `/jsonstats` fields: `stale`, `age_s`, `stale_after_s`.
    pub fn json(&self) -> serde_json::Value {
        let bound = match *self {
            Self::Fixed => None,
            Self::Fresh { stale_after, .. } | Self::Stale { stale_after, .. } => {
                Some(stale_after.as_secs_f64())
            }
        };
        serde_json::json!({
            "stale": self.is_stale(),
            "age_s": self.age().map(|a| a.as_secs_f64()),
            "stale_after_s": bound,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(60);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_view_goes_stale_only_past_the_bound_and_a_read_makes_it_fresh_again() {
        let mut v = RootView {
            as_of: Some(at(1_000)),
            stale_after: BOUND,
        };
        assert!(!v.assess(at(1_000)).is_stale());
        assert!(!v.assess(at(1_060)).is_stale(), "exactly at the bound");
        let s = v.assess(at(1_061));
        assert_eq!(
            s,
            Freshness::Stale {
                age: Duration::from_secs(61),
                stale_after: BOUND
            }
        );
        let why = s.refusal().expect("refused");
        assert!(why.contains("61s old") && why.contains("60s"), "{why}");
        // A successful read moves the view's time; the next verdict is fresh again.
        v.as_of = Some(at(1_100));
        let f = v.assess(at(1_101));
        assert!(!f.is_stale());
        assert!(f.refusal().is_none());
        assert_eq!(f.age(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_chain_behind_the_clock_ages_the_view_and_one_ahead_counts_as_now() {
        // An API stuck on a block two hours old: every call succeeds, the view is still old.
        let started = at(10_000);
        let t = view_time(started, 10_000 - 7_200);
        assert_eq!(
            t,
            at(10_000 - 7_200 + 1),
            "the block's second is covered whole"
        );
        let v = RootView {
            as_of: Some(t),
            stale_after: BOUND,
        };
        assert!(v.assess(started).is_stale());
        // The local chain's time travel (ahead of the clock) does not make a view "future".
        assert_eq!(view_time(started, 20_000), started);
    }

    #[test]
    fn a_clock_going_backwards_is_age_zero_and_a_fixed_registry_never_ages() {
        let v = RootView {
            as_of: Some(at(5_000)),
            stale_after: BOUND,
        };
        assert_eq!(v.assess(at(4_000)).age(), Some(Duration::ZERO));
        let fixed = RootView {
            as_of: None,
            stale_after: BOUND,
        };
        assert_eq!(fixed.assess(at(u32::MAX as u64)), Freshness::Fixed);
        assert_eq!(fixed.assess(at(0)).json()["stale"], false);
        assert!(fixed.assess(at(0)).json()["age_s"].is_null());
    }
}
