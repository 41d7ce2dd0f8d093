//! Turning raw token counts into adjusted (billable) tokens and nanoTON, with integers only.
//!
//! Cocoon computes `trunc(n × coef/1000 × mult/10000)` in `double`, which loses exactness above
//! 2^53 and can differ between platforms. Here every product is taken in `u128` and divided once,
//! truncating: `adjusted = n × coef × mult / (1000 × 10000)`. Results that do not fit in `u64`
//! saturate; nothing here can panic.
//!
//! Categories (cocoon-notes §4.1): non-cached prompt, cached prompt, non-reasoning completion,
//! reasoning. The raw counts include their sub-counts (`prompt` includes `cached`, `completion`
//! includes `reasoning`), so the sub-count is subtracted, saturating. We also clamp the sub-count
//! to its total (`cached <= prompt`, `reasoning <= completion`): an engine reporting more cached
//! than prompt tokens must not bill more tokens than were processed.

use crate::usage::RawUsage;

/// Coefficient meaning 1.0× (a worker's price coefficient is in these units).
pub const COEFFICIENT_ONE: u64 = 1000;
/// Multiplier meaning 1.0× (root-contract price multipliers are in these units).
pub const MULTIPLIER_ONE: u64 = 10_000;

/// Per-category price multipliers from the root contract (`10000` = 1.0×).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceMultipliers {
    /// Non-cached prompt tokens.
    pub prompt: u64,
    /// Cached prompt tokens.
    pub cached: u64,
    /// Non-reasoning completion tokens.
    pub completion: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
}

/// Adjusted token counts per category, and their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdjustedUsage {
    /// Non-cached prompt tokens, adjusted.
    pub prompt: u64,
    /// Cached prompt tokens, adjusted.
    pub cached: u64,
    /// Non-reasoning completion tokens, adjusted.
    pub completion: u64,
    /// Reasoning tokens, adjusted.
    pub reasoning: u64,
    /// Sum of the four (saturating).
    pub total: u64,
}

/// Prices in nanoTON per adjusted token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prices {
    /// What the client pays per adjusted token.
    pub price_per_token: u64,
    /// What the worker earns per adjusted token (the proxy keeps the difference).
    pub worker_fee_per_token: u64,
}

// === impl PriceMultipliers ===

impl Default for PriceMultipliers {
    fn default() -> Self {
        Self {
            prompt: MULTIPLIER_ONE,
            cached: MULTIPLIER_ONE,
            completion: MULTIPLIER_ONE,
            reasoning: MULTIPLIER_ONE,
        }
    }
}

// === impl Prices ===

impl Prices {
    /// What the client is charged for `adjusted_total` tokens.
    pub fn client_cost(&self, adjusted_total: u64) -> u64 {
        cost(adjusted_total, self.price_per_token)
    }

    /// What the worker earns for `adjusted_total` tokens.
    pub fn worker_earnings(&self, adjusted_total: u64) -> u64 {
        cost(adjusted_total, self.worker_fee_per_token)
    }

    /// The proxy's commission (client cost minus worker earnings, never negative).
    pub fn proxy_commission(&self, adjusted_total: u64) -> u64 {
        self.client_cost(adjusted_total)
            .saturating_sub(self.worker_earnings(adjusted_total))
    }
}

/// Adjusts one category: `n × coefficient × multiplier / (1000 × 10000)`, truncating, saturating.
pub fn adjust_tokens(n: u64, coefficient: u64, multiplier: u64) -> u64 {
    // n × coefficient always fits in u128; the third factor may not. If it overflows, the
    // quotient exceeds 2^128 / 10^7 > u64::MAX anyway, so saturating is exact.
    let scale = u128::from(COEFFICIENT_ONE) * u128::from(MULTIPLIER_ONE);
    (u128::from(n) * u128::from(coefficient))
        .checked_mul(u128::from(multiplier))
        .map_or(u64::MAX, |wide| {
            u64::try_from(wide / scale).unwrap_or(u64::MAX)
        })
}

/// Splits `raw` into categories and adjusts each by the worker's `coefficient` (1000 = 1×) and
/// the category multiplier (10000 = 1×); see the module docs.
pub fn adjust(raw: RawUsage, coefficient: u64, m: &PriceMultipliers) -> AdjustedUsage {
    let cached = raw.cached.min(raw.prompt);
    let reasoning = raw.reasoning.min(raw.completion);
    let prompt = adjust_tokens(raw.prompt - cached, coefficient, m.prompt);
    let cached = adjust_tokens(cached, coefficient, m.cached);
    let completion = adjust_tokens(raw.completion - reasoning, coefficient, m.completion);
    let reasoning = adjust_tokens(reasoning, coefficient, m.reasoning);
    AdjustedUsage {
        prompt,
        cached,
        completion,
        reasoning,
        total: prompt
            .saturating_add(cached)
            .saturating_add(completion)
            .saturating_add(reasoning),
    }
}

/// `adjusted_total × price_per_token` in nanoTON, saturating at `u64::MAX`.
pub fn cost(adjusted_total: u64, price_per_token: u64) -> u64 {
    adjusted_total.saturating_mul(price_per_token)
}

/// `adjusted_total × price_per_token`, or `None` on overflow.
pub fn checked_cost(adjusted_total: u64, price_per_token: u64) -> Option<u64> {
    adjusted_total.checked_mul(price_per_token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(prompt: u64, cached: u64, completion: u64, reasoning: u64) -> RawUsage {
        RawUsage {
            prompt,
            cached,
            completion,
            reasoning,
        }
    }

    #[test]
    fn identity_at_one_x() {
        let a = adjust(raw(34, 11, 100, 10), 1000, &PriceMultipliers::default());
        assert_eq!(
            a,
            AdjustedUsage {
                prompt: 23,
                cached: 11,
                completion: 90,
                reasoning: 10,
                total: 134
            }
        );
    }

    #[test]
    fn known_values() {
        // Cocoon's local-all worker coefficient 0: everything free.
        assert_eq!(
            adjust(raw(34, 11, 100, 10), 0, &PriceMultipliers::default()),
            AdjustedUsage::default()
        );
        // 1.5x coefficient, cached at 0.1x, reasoning at 2x.
        let m = PriceMultipliers {
            prompt: 10_000,
            cached: 1_000,
            completion: 10_000,
            reasoning: 20_000,
        };
        let a = adjust(raw(1000, 400, 301, 101), 1500, &m);
        assert_eq!(a.prompt, 900); // 600 * 1.5
        assert_eq!(a.cached, 60); // 400 * 1.5 * 0.1
        assert_eq!(a.completion, 300); // 200 * 1.5
        assert_eq!(a.reasoning, 303); // 101 * 1.5 * 2 = 303
        assert_eq!(a.total, 900 + 60 + 300 + 303);
        // Truncation per category: 3 tokens at 0.333x -> 0.999 -> 0.
        assert_eq!(adjust_tokens(3, 333, 10_000), 0);
        assert_eq!(adjust_tokens(7, 1001, 10_000), 7); // 7.007
        assert_eq!(adjust_tokens(1, 1000, 9_999), 0);
    }

    #[test]
    fn exact_where_double_is_not() {
        // 2^53 + 1 tokens at 1x: double math would round.
        let n = (1u64 << 53) + 1;
        assert_eq!(adjust_tokens(n, 1000, 10_000), n);
        assert_eq!(adjust_tokens(u64::MAX, 1000, 10_000), u64::MAX);
        assert_eq!(adjust_tokens(u64::MAX, u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn sub_counts_are_clamped() {
        let a = adjust(raw(5, 9, 3, 8), 1000, &PriceMultipliers::default());
        assert_eq!(
            (a.prompt, a.cached, a.completion, a.reasoning),
            (0, 5, 0, 3)
        );
        assert_eq!(a.total, 8);
    }

    #[test]
    fn costs() {
        assert_eq!(cost(134, 2), 268);
        assert_eq!(cost(u64::MAX, 2), u64::MAX);
        assert_eq!(checked_cost(u64::MAX, 2), None);
        assert_eq!(checked_cost(10, 3), Some(30));
        let p = Prices {
            price_per_token: 2,
            worker_fee_per_token: 1,
        };
        assert_eq!(p.client_cost(134), 268);
        assert_eq!(p.worker_earnings(134), 134);
        assert_eq!(p.proxy_commission(134), 134);
        let odd = Prices {
            price_per_token: 1,
            worker_fee_per_token: 5,
        };
        assert_eq!(odd.proxy_commission(10), 0);
    }

    fn arb_raw() -> impl Strategy<Value = RawUsage> {
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(p, c, o, r)| raw(p, c, o, r))
    }

    proptest! {
        #[test]
        fn never_panics_and_total_is_sum(r in arb_raw(), coef in any::<u64>(), m in (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>())) {
            let m = PriceMultipliers { prompt: m.0, cached: m.1, completion: m.2, reasoning: m.3 };
            let a = adjust(r, coef, &m);
            let sum = u128::from(a.prompt) + u128::from(a.cached) + u128::from(a.completion) + u128::from(a.reasoning);
            prop_assert_eq!(u128::from(a.total), sum.min(u128::from(u64::MAX)));
        }

        #[test]
        fn monotone_in_tokens_and_coefficient(
            n in 0u64..1_000_000_000_000, extra in 0u64..1_000_000, coef in 0u64..100_000, dc in 0u64..1000, mult in 0u64..100_000,
        ) {
            prop_assert!(adjust_tokens(n, coef, mult) <= adjust_tokens(n + extra, coef, mult));
            prop_assert!(adjust_tokens(n, coef, mult) <= adjust_tokens(n, coef + dc, mult));
            prop_assert!(adjust_tokens(n, coef, mult) <= adjust_tokens(n, coef, mult + dc));
        }

        #[test]
        fn one_x_is_identity_and_total_bounded(p in 0u64..1u64<<40, c in 0u64..1u64<<40, o in 0u64..1u64<<40, r in 0u64..1u64<<40) {
            let u = raw(p, c, o, r);
            let a = adjust(u, COEFFICIENT_ONE, &PriceMultipliers::default());
            prop_assert_eq!(a.total, p + o);
            // Never more than the raw totals at <= 1x.
            let half = adjust(u, 500, &PriceMultipliers::default());
            prop_assert!(half.total <= p + o);
        }

        #[test]
        fn monotone_in_completion(r in arb_raw(), more in 0u64..1000) {
            let r = raw(r.prompt % (1 << 40), r.cached % (1 << 40), r.completion % (1 << 40), r.reasoning % (1 << 40));
            let bigger = raw(r.prompt, r.cached, r.completion + more, r.reasoning);
            let m = PriceMultipliers::default();
            prop_assert!(adjust(r, 1234, &m).total <= adjust(bigger, 1234, &m).total);
        }
    }
}
