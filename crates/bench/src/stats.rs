//! Latency histograms (HdrHistogram, microsecond resolution, 3 significant digits) and the
//! percentiles reported from them. No I/O here.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::measure::Sample;

/// Highest recordable value: one hour in microseconds (larger values saturate).
const MAX_MICROS: u64 = 3_600_000_000;

/// Summary of one distribution. All zero when there were no samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest value.
    pub max: Duration,
}

/// One distribution being recorded.
pub(crate) struct Dist {
    hist: Option<Histogram<u64>>,
}

/// The three distributions of a run.
pub(crate) struct Samples {
    pub(crate) latency: Dist,
    pub(crate) ttft: Dist,
    pub(crate) itl: Dist,
}

// === impl Dist ===

impl Dist {
    fn new() -> Self {
        // Bounds are constants known to be valid; if construction ever failed the
        // distribution would just report zeros.
        Self {
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).ok(),
        }
    }

    pub(crate) fn record(&mut self, d: Duration) {
        if let Some(h) = &mut self.hist {
            let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            h.saturating_record(us.clamp(1, MAX_MICROS));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.hist.as_ref().map_or(0, Histogram::len)
    }

    pub(crate) fn percentiles(&self) -> Percentiles {
        match &self.hist {
            Some(h) if !h.is_empty() => {
                let q = |x: f64| Duration::from_micros(h.value_at_quantile(x));
                Percentiles {
                    p50: q(0.5),
                    p90: q(0.9),
                    p99: q(0.99),
                    max: Duration::from_micros(h.max()),
                }
            }
            _ => Percentiles::default(),
        }
    }
}

// === impl Samples ===

impl Samples {
    pub(crate) fn new() -> Self {
        Self {
            latency: Dist::new(),
            ttft: Dist::new(),
            itl: Dist::new(),
        }
    }

    pub(crate) fn add(&mut self, s: &Sample) {
        self.latency.record(s.latency);
        if let Some(t) = s.ttft {
            self.ttft.record(t);
        }
        for g in &s.gaps {
            self.itl.record(*g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_zero() {
        assert_eq!(Dist::new().percentiles(), Percentiles::default());
    }

    #[test]
    fn known_distribution() {
        let mut d = Dist::new();
        for ms in 1..=100u64 {
            d.record(Duration::from_millis(ms));
        }
        let p = d.percentiles();
        assert_eq!(d.len(), 100);
        // 3 significant digits: values are within 0.1 % of the exact ones.
        let close = |got: Duration, want_ms: u64| {
            let want = Duration::from_millis(want_ms).as_micros() as f64;
            ((got.as_micros() as f64) - want).abs() <= want * 0.001 + 1.0
        };
        assert!(close(p.p50, 50), "{p:?}");
        assert!(close(p.p90, 90), "{p:?}");
        assert!(close(p.p99, 99), "{p:?}");
        assert!(close(p.max, 100), "{p:?}");
    }

    #[test]
    fn extremes_saturate() {
        let mut d = Dist::new();
        d.record(Duration::ZERO);
        d.record(Duration::from_secs(10 * 3600));
        assert_eq!(d.len(), 2);
        assert!(d.percentiles().max >= Duration::from_secs(3599));
    }

    #[test]
    fn samples_route_to_distributions() {
        let mut s = Samples::new();
        s.add(&Sample {
            latency: Duration::from_millis(10),
            ttft: Some(Duration::from_millis(2)),
            gaps: vec![Duration::from_millis(1); 3],
            completion_tokens: 4,
        });
        s.add(&Sample {
            latency: Duration::from_millis(10),
            ttft: None,
            gaps: vec![],
            completion_tokens: 0,
        });
        assert_eq!((s.latency.len(), s.ttft.len(), s.itl.len()), (2, 1, 3));
    }
}
