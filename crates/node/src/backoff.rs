//! Reconnect backoff: exponential from a base delay up to a cap, with jitter so that many nodes
//! restarted together do not redial in lockstep.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff state for one reconnecting target.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt; grows until [`Backoff::reset`].
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let capped = exp.min(self.max);
        // Jitter: 50%..100% of the capped delay.
        let millis = capped.as_millis() as u64;
        let low = millis / 2;
        let jittered = if millis > low {
            rand::rng().random_range(low..=millis)
        } else {
            millis
        };
        Duration::from_millis(jittered)
    }

    /// Called after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(50));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
