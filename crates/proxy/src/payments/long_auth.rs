//! Long-authorization bookkeeping (payments on), free of I/O: the nonces client sessions wait
//! for on chain, and nonces the chain agent saw before their session asked.
//!
//! Bounds, so that unauthenticated sessions cannot fill the table and lock genuine clients out:
//! - a waiting entry belongs to one live client session: its nonce is drawn by the proxy when
//!   the session connects, so a session has at most one entry, and the entry is removed when
//!   that session's wait ends for any reason — seen, timed out, session closed, task dropped
//!   ([`Payments::wait_register`](super::Payments::wait_register) holds a guard that calls
//!   [`LongAuth::end`]);
//! - at most [`MAX_PER_SOURCE`] entries per source address ([`Source`]);
//! - when the table holds [`MAX_WAITING`] entries, a newcomer takes the place of the oldest entry
//!   of the source holding the most entries, if that source holds more than the newcomer's would
//!   with it, so a full table locks out only sources that already hold about as many entries as
//!   anyone (filling it then takes [`MAX_WAITING`] distinct sources).
//!
//! Nonces seen on chain first are kept [`SEEN_TTL`]; when [`MAX_SEEN`] are kept, the oldest
//! gives way (each one cost its sender a transaction).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Bound on long authorizations waiting at once.
pub(crate) const MAX_WAITING: usize = 10_000;
/// Bound on long authorizations waiting at once from one [`Source`].
pub(crate) const MAX_PER_SOURCE: usize = 16;
/// Bound on nonces seen on chain before their session asked.
pub(crate) const MAX_SEEN: usize = 10_000;
/// How long a nonce seen on chain before its query arrives is remembered.
pub(crate) const SEEN_TTL: Duration = Duration::from_secs(600);

/// Where a client session comes from, for the per-source bound: its IPv4 address (also when
/// IPv4-mapped), or the /64 prefix of its IPv6 address (one host usually holds a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl Source {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !u128::from(u64::MAX);
                    Self(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

/// Why a long authorization could not even start waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Busy {
    /// [`MAX_PER_SOURCE`] are waiting from this source.
    Source,
    /// The table is full and no source holds more entries than this one would.
    Full,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Source => write!(
                f,
                "too many long authorizations are waiting from this address ({MAX_PER_SOURCE})"
            ),
            Self::Full => write!(f, "too many long authorizations are waiting; retry later"),
        }
    }
}

/// What [`LongAuth::begin`] decided.
#[derive(Debug)]
pub(crate) enum Begin {
    /// The nonce already came on chain: from this owner's contract (`true`) or another's.
    Seen(bool),
    /// Wait on this: it resolves when the nonce comes from the owner's contract, and fails when
    /// the entry is evicted.
    Wait(oneshot::Receiver<()>),
    /// Not admitted.
    Busy(Busy),
}

struct Waiting {
    owner: String,
    source: Source,
    /// Admission order (smaller = older).
    seq: u64,
    tx: oneshot::Sender<()>,
}

/// Nonces awaited and nonces already seen on chain.
#[derive(Default)]
pub(crate) struct LongAuth {
    waiting: HashMap<u64, Waiting>,
    per_source: HashMap<Source, usize>,
    seen: HashMap<u64, (String, Instant)>,
    next_seq: u64,
}

impl LongAuth {
    /// A session of `source` waits for `nonce` from `owner`'s contract.
    pub(crate) fn begin(&mut self, owner: &str, nonce: u64, source: Source, now: Instant) -> Begin {
        self.seen
            .retain(|_, (_, t)| now.duration_since(*t) < SEEN_TTL);
        if let Some((who, _)) = self.seen.remove(&nonce) {
            return Begin::Seen(who == owner);
        }
        // The proxy draws one nonce per session: an entry under it is this session's own
        // earlier wait (or a 2^-64 collision); either way it gives way.
        self.end(nonce);
        let mine = self.per_source.get(&source).copied().unwrap_or(0);
        if mine >= MAX_PER_SOURCE {
            return Begin::Busy(Busy::Source);
        }
        if self.waiting.len() >= MAX_WAITING {
            let heaviest = self
                .per_source
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(s, n)| (*s, *n));
            match heaviest {
                Some((victim, n)) if n > mine + 1 => self.evict_oldest_of(victim),
                _ => return Begin::Busy(Busy::Full),
            }
        }
        let (tx, rx) = oneshot::channel();
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.waiting.insert(
            nonce,
            Waiting {
                owner: owner.to_string(),
                source,
                seq,
                tx,
            },
        );
        *self.per_source.entry(source).or_default() += 1;
        Begin::Wait(rx)
    }

    /// The wait for `nonce` is over (whatever the outcome): forget it. No-op when unknown.
    pub(crate) fn end(&mut self, nonce: u64) {
        if let Some(w) = self.waiting.remove(&nonce) {
            self.release(w.source);
        }
    }

    /// The chain agent saw `nonce` come from `owner`'s client contract.
    pub(crate) fn seen(&mut self, owner: &str, nonce: u64, now: Instant) {
        match self.waiting.get(&nonce) {
            Some(w) if w.owner == owner => {
                if let Some(w) = self.waiting.remove(&nonce) {
                    self.release(w.source);
                    let _ = w.tx.send(());
                }
            }
            // Someone else's nonce: keep waiting for the right owner.
            Some(_) => {}
            None => {
                if self.seen.len() >= MAX_SEEN {
                    self.seen
                        .retain(|_, (_, t)| now.duration_since(*t) < SEEN_TTL);
                }
                if self.seen.len() >= MAX_SEEN {
                    let oldest = self
                        .seen
                        .iter()
                        .min_by_key(|(_, (_, t))| *t)
                        .map(|(n, _)| *n);
                    if let Some(n) = oldest {
                        self.seen.remove(&n);
                    }
                }
                self.seen.insert(nonce, (owner.to_string(), now));
            }
        }
    }

    /// Long authorizations waiting now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn evict_oldest_of(&mut self, source: Source) {
        let oldest = self
            .waiting
            .iter()
            .filter(|(_, w)| w.source == source)
            .min_by_key(|(_, w)| w.seq)
            .map(|(n, _)| *n);
        // Dropping its sender fails that session's wait.
        if let Some(n) = oldest {
            self.end(n);
        }
    }

    fn release(&mut self, source: Source) {
        if let Some(n) = self.per_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(last: u8) -> Source {
        Source::of(IpAddr::from([10, 0, 0, last]))
    }

    fn wait(b: Begin) -> oneshot::Receiver<()> {
        match b {
            Begin::Wait(rx) => rx,
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    #[test]
    fn a_source_holds_at_most_max_per_source_entries() {
        let mut a = LongAuth::default();
        let now = Instant::now();
        let mut held = Vec::new();
        for n in 0..MAX_PER_SOURCE as u64 {
            held.push(wait(a.begin("o", n, src(1), now)));
        }
        assert!(matches!(
            a.begin("o", 999, src(1), now),
            Begin::Busy(Busy::Source)
        ));
        // Another address is not affected.
        let _rx = wait(a.begin("o", 1000, src(2), now));
        // Ending one frees a place for the first address again.
        a.end(0);
        let _rx = wait(a.begin("o", 999, src(1), now));
        assert_eq!(a.waiting(), MAX_PER_SOURCE + 1);
    }

    #[test]
    fn ended_waits_leave_nothing_behind() {
        let mut a = LongAuth::default();
        let now = Instant::now();
        let _rx = wait(a.begin("o", 7, src(1), now));
        // The same session asking again replaces its entry.
        let _rx = wait(a.begin("o", 7, src(1), now));
        assert_eq!(a.waiting(), 1);
        a.end(7);
        a.end(7);
        assert_eq!(a.waiting(), 0);
        assert!(a.per_source.is_empty(), "per-source counts are released");
    }

    #[test]
    fn a_full_table_evicts_the_heaviest_source_not_a_newcomer() {
        let mut a = LongAuth::default();
        let now = Instant::now();
        // Fill the table from as few sources as the per-source bound allows.
        let mut rxs = Vec::new();
        let mut nonce = 0u64;
        let mut ip = 0u32;
        while a.waiting() < MAX_WAITING {
            let s = Source::of(IpAddr::from((ip / MAX_PER_SOURCE as u32).to_be_bytes()));
            rxs.push((nonce, wait(a.begin("attacker", nonce, s, now))));
            nonce += 1;
            ip += 1;
        }
        // A genuine client from a new address still gets in: the oldest entry of a heaviest
        // source gives way, and that session's wait fails at once.
        let mut genuine = wait(a.begin("genuine", u64::MAX, src(200), now));
        assert_eq!(a.waiting(), MAX_WAITING);
        let evicted = rxs
            .iter_mut()
            .filter_map(|(_, rx)| rx.try_recv().err())
            .filter(|e| *e == oneshot::error::TryRecvError::Closed)
            .count();
        assert_eq!(evicted, 1);
        a.seen("genuine", u64::MAX, now);
        assert_eq!(genuine.try_recv(), Ok(()));
    }

    #[test]
    fn a_full_table_of_single_entry_sources_refuses_more_from_them() {
        let mut a = LongAuth::default();
        let now = Instant::now();
        let mut rxs = Vec::new();
        for n in 0..MAX_WAITING as u64 {
            let s = Source::of(IpAddr::from((n as u32).to_be_bytes()));
            rxs.push(wait(a.begin("o", n, s, now)));
        }
        // Nobody holds more than a newcomer would: no one is evicted.
        let s = Source::of(IpAddr::from([250, 0, 0, 1]));
        assert!(matches!(
            a.begin("o", u64::MAX, s, now),
            Begin::Busy(Busy::Full)
        ));
    }

    #[test]
    fn seen_nonces_are_matched_to_their_owner() {
        let mut a = LongAuth::default();
        let now = Instant::now();
        let mut rx = wait(a.begin("alice", 1, src(1), now));
        // Another owner's contract forwarding the same nonce does not authorize alice.
        a.seen("mallory", 1, now);
        assert!(rx.try_recv().is_err());
        a.seen("alice", 1, now);
        assert_eq!(rx.try_recv(), Ok(()));
        assert_eq!(a.waiting(), 0);
        // Seen before asked.
        a.seen("bob", 2, now);
        assert!(matches!(a.begin("bob", 2, src(1), now), Begin::Seen(true)));
        a.seen("bob", 3, now);
        assert!(matches!(a.begin("eve", 3, src(1), now), Begin::Seen(false)));
    }

    #[test]
    fn ipv6_sources_are_their_64_bit_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(Source::of(mapped), src(1));
    }
}
