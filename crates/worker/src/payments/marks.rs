//! The high-water rules: the numbers a proxy tells a worker only ever grow.
//!
//! Per proxy contract the worker holds three marks ([`Marks`]): the highest signed payout
//! (`signed`, the proxy's `committed_chain`), `db` (durable in the proxy's ledger) and `max`
//! (everything earned so far). A report ([`Report`]) from `worker.compareBalanceWithProxyResult`,
//! `proxy.workerRequestPayment`, `worker.paymentStatus` or `proxy.runQueryEx` is checked as a
//! whole before anything is raised, in Cocoon's order: a signed payout also raises `db` and
//! `max`, and `db` raises `max`; so a report whose own numbers are out of order (db below its
//! signed payout) is refused too.
//!
//! `signed` and `db` are durable on the proxy's side, so they must never go back, across
//! sessions included: that is the rollback check. `max` is the proxy's in-memory count; a proxy
//! killed and restarted legitimately forgets what it never made durable (those answers were
//! never acknowledged, so that work is not billed). So `max` is checked against what *this
//! session* was told ([`Session`]) — it starts at the handshake's answer — and the all-time
//! `max` is kept for reporting and for `compareBalanceWithProxy`. (Cocoon compares `max` the
//! same way at handshake — `error_code` 1 then an extended compare — and then drops every later
//! message of such a proxy, which loops forever; we do not copy that.)
//!
//! What must not live here: I/O, signatures (the caller verifies a signed payout before its
//! tokens get here) or logging.

use serde::{Deserialize, Serialize};

/// The three numbers held per proxy contract.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    pub signed: u64,
    pub db: u64,
    pub max: u64,
}

/// What one proxy message says; `None` where the message does not carry that number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub signed: Option<u64>,
    pub db: Option<u64>,
    pub max: Option<u64>,
}

/// The `max` a proxy told this session (reset at every handshake), and what each channel last
/// said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Session {
    pub max: u64,
    /// Numbers last seen on the proxy's packet stream, and on answers to our status queries.
    /// The two are handled by different tasks, so only reports on one channel are ordered:
    /// each is checked against its own channel, and both raise the held marks.
    channels: [Option<(Marks, u64)>; 2],
    /// The marks as the handshake left them: where both channels start.
    base: Option<Marks>,
}

/// Where an in-session report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// `proxy.workerRequestPayment`, `proxy.runQueryEx` (one stream, in order).
    Stream,
    /// Answers to our `worker.updatePaymentStatus` (another task, ordered among themselves).
    Status,
}

/// A report that goes backwards (or makes no sense).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Backwards {
    #[error("signed payout went back from {held} to {got} tokens")]
    Signed { held: u64, got: u64 },
    #[error("db_tokens went back from {held} to {got} (or below the signed payout)")]
    Db { held: u64, got: u64 },
    #[error("max_tokens went back from {held} to {got} within one session (or below db)")]
    Max { held: u64, got: u64 },
    #[error("negative {what}: {got}")]
    Negative { what: &'static str, got: i64 },
}

/// A wire `long` as a token count (negative counts are a protocol violation).
pub fn tokens(what: &'static str, v: i64) -> Result<u64, Backwards> {
    u64::try_from(v).map_err(|_| Backwards::Negative { what, got: v })
}

/// What [`Marks::apply`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The signed payout is newer than the held one (keep its BOC).
    pub new_signed: bool,
    /// Any held mark moved (the file needs writing).
    pub changed: bool,
}

impl Marks {
    /// An in-session report on `channel`: it must not go below what that channel said before
    /// (starting from the handshake's numbers), and it raises the held marks.
    pub fn apply_on(
        &mut self,
        session: &mut Session,
        channel: Channel,
        r: Report,
    ) -> Result<Applied, Backwards> {
        let slot = &mut session.channels[channel as usize];
        let base = session.base.unwrap_or(*self);
        let (mut seen, seen_max) = slot.unwrap_or((base, session.max));
        let mut s = Session {
            max: seen_max,
            ..Session::default()
        };
        seen.apply(&mut s, r)?;
        *slot = Some((seen, s.max));
        let before = *self;
        self.signed = self.signed.max(seen.signed);
        self.db = self.db.max(seen.db);
        self.max = self.max.max(seen.max);
        Ok(Applied {
            new_signed: self.signed > before.signed,
            changed: *self != before,
        })
    }

    /// Checks `r` against the held marks and `session`, then raises both. Nothing changes
    /// when it fails.
    pub fn apply(&mut self, session: &mut Session, r: Report) -> Result<Applied, Backwards> {
        let signed = r.signed.unwrap_or(self.signed);
        if signed < self.signed {
            return Err(Backwards::Signed {
                held: self.signed,
                got: signed,
            });
        }
        let db_floor = self.db.max(signed);
        let db = r.db.unwrap_or(db_floor);
        if db < db_floor {
            return Err(Backwards::Db {
                held: db_floor,
                got: db,
            });
        }
        let max_floor = session.max.max(db);
        let max = r.max.unwrap_or(max_floor);
        if max < max_floor {
            return Err(Backwards::Max {
                held: max_floor,
                got: max,
            });
        }
        let before = *self;
        self.signed = signed;
        self.db = db;
        self.max = self.max.max(max);
        session.max = max;
        session.base = Some(*self);
        Ok(Applied {
            new_signed: signed > before.signed,
            changed: *self != before,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_ordered_separately_but_both_raise_the_marks() {
        let mut m = Marks {
            signed: 0,
            db: 100,
            max: 100,
        };
        let mut s = Session::default();
        let rep = |db| Report {
            signed: None,
            db: Some(db),
            max: Some(db),
        };
        // The handshake agrees on 100.
        m.apply(&mut s, rep(100)).unwrap();
        // A status answer races ahead of packets still in flight on the stream.
        m.apply_on(&mut s, Channel::Status, rep(180)).unwrap();
        assert_eq!(m.db, 180);
        m.apply_on(&mut s, Channel::Stream, rep(120)).unwrap();
        m.apply_on(&mut s, Channel::Stream, rep(150)).unwrap();
        assert_eq!(m.db, 180, "held marks never go down");
        // Within one channel, backwards is still refused.
        assert!(m.apply_on(&mut s, Channel::Stream, rep(140)).is_err());
        assert!(m.apply_on(&mut s, Channel::Status, rep(170)).is_err());
        // And after the next handshake nothing may go below what it established.
        let mut s2 = Session::default();
        m.apply(&mut s2, rep(180)).unwrap();
        assert!(m.apply_on(&mut s2, Channel::Stream, rep(179)).is_err());
    }
    use proptest::prelude::*;

    fn rep(s: u64, d: u64, m: u64) -> Report {
        Report {
            signed: Some(s),
            db: Some(d),
            max: Some(m),
        }
    }

    #[test]
    fn numbers_only_grow() {
        let mut m = Marks::default();
        let mut s = Session::default();
        let a = m.apply(&mut s, rep(10, 20, 30)).unwrap();
        assert!(a.new_signed && a.changed);
        assert_eq!(
            m,
            Marks {
                signed: 10,
                db: 20,
                max: 30
            }
        );
        // Equal numbers are fine and change nothing.
        let a = m.apply(&mut s, rep(10, 20, 30)).unwrap();
        assert!(!a.new_signed && !a.changed);
        // Each one going back is refused, and nothing moves.
        assert_eq!(
            m.apply(&mut s, rep(9, 40, 50)),
            Err(Backwards::Signed { held: 10, got: 9 })
        );
        assert_eq!(
            m.apply(&mut s, rep(11, 19, 50)),
            Err(Backwards::Db { held: 20, got: 19 })
        );
        assert_eq!(
            m.apply(&mut s, rep(11, 21, 29)),
            Err(Backwards::Max { held: 30, got: 29 })
        );
        assert_eq!(
            m,
            Marks {
                signed: 10,
                db: 20,
                max: 30
            }
        );
        assert_eq!(s.max, 30);
    }

    #[test]
    fn partial_reports_check_what_they_carry() {
        let mut m = Marks {
            signed: 5,
            db: 7,
            max: 9,
        };
        let mut s = Session {
            max: 9,
            ..Session::default()
        };
        // runQueryEx carries only the signed payout; it raises db and max with it.
        let only_signed = Report {
            signed: Some(8),
            ..Report::default()
        };
        m.apply(&mut s, only_signed).unwrap();
        assert_eq!(
            m,
            Marks {
                signed: 8,
                db: 8,
                max: 9
            }
        );
        let back = Report {
            signed: Some(4),
            ..Report::default()
        };
        assert!(m.apply(&mut s, back).is_err());
    }

    #[test]
    fn a_report_out_of_order_is_refused() {
        let mut m = Marks::default();
        let mut s = Session::default();
        // db below its own signed payout.
        assert!(matches!(
            m.apply(&mut s, rep(10, 5, 20)),
            Err(Backwards::Db { .. })
        ));
        // max below its own db.
        assert!(matches!(
            m.apply(&mut s, rep(1, 5, 4)),
            Err(Backwards::Max { .. })
        ));
        assert_eq!(m, Marks::default());
    }

    #[test]
    fn max_restarts_per_session_but_the_all_time_max_is_kept() {
        let mut m = Marks {
            signed: 10,
            db: 20,
            max: 100,
        };
        // A restarted proxy forgot non-durable work: its max is back at its db.
        let mut s = Session::default();
        m.apply(&mut s, rep(10, 20, 20)).unwrap();
        assert_eq!(m.max, 100, "the all-time max is kept");
        assert_eq!(s.max, 20);
        // Within the session it must not go back again.
        assert!(m.apply(&mut s, rep(10, 20, 19)).is_err());
        // ... but db must never go back, across sessions either.
        let mut s2 = Session::default();
        assert!(m.apply(&mut s2, rep(10, 19, 50)).is_err());
    }

    #[test]
    fn negative_wire_numbers_are_refused() {
        assert_eq!(tokens("db_tokens", 5), Ok(5));
        assert!(matches!(
            tokens("db_tokens", -1),
            Err(Backwards::Negative { .. })
        ));
    }

    proptest! {
        /// Whatever reports arrive, accepted marks never decrease and stay ordered.
        #[test]
        fn accepted_marks_are_monotone_and_ordered(
            reports in proptest::collection::vec((0u64..50, 0u64..50, 0u64..50, any::<bool>()), 1..40)
        ) {
            let mut m = Marks::default();
            let mut s = Session::default();
            for (a, b, c, new_session) in reports {
                if new_session {
                    s = Session::default();
                }
                let before = m;
                let before_session = s;
                match m.apply(&mut s, rep(a, b, c)) {
                    Ok(_) => {
                        prop_assert!(m.signed >= before.signed && m.db >= before.db && m.max >= before.max);
                        prop_assert!(m.signed <= m.db && m.db <= m.max);
                        prop_assert!(s.max >= before_session.max);
                    }
                    Err(_) => {
                        prop_assert_eq!(m, before);
                        prop_assert_eq!(s, before_session);
                    }
                }
            }
        }
    }
}
