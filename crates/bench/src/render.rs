//! Markdown rendering of bench reports (the table format of docs/BENCHMARKS.md). Pure
//! formatting: no I/O, no measuring.

use std::fmt::Write as _;
use std::time::Duration;

use crate::BenchReport;

/// A markdown table of `through` and, when given, `direct` side by side, with ratios
/// (through/direct for rates) and added milliseconds (through − direct for latencies).
pub fn render_comparison(through: &BenchReport, direct: Option<&BenchReport>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "through: `{}`", through.url);
    if let Some(d) = direct {
        let _ = writeln!(out, "direct:  `{}`", d.url);
    }
    out.push('\n');
    match direct {
        Some(_) => {
            out.push_str("| metric | through | direct | through vs direct |\n");
            out.push_str("|---|---:|---:|---:|\n");
        }
        None => {
            out.push_str("| metric | value |\n");
            out.push_str("|---|---:|\n");
        }
    }

    let mut row = |name: &str, t: String, d: Option<String>, cmp: String| match d {
        Some(d) => {
            let _ = writeln!(out, "| {name} | {t} | {d} | {cmp} |");
        }
        None => {
            let _ = writeln!(out, "| {name} | {t} |");
        }
    };

    row(
        "requests ok / failed",
        format!("{} / {}", through.requests_ok, through.requests_failed),
        direct.map(|d| format!("{} / {}", d.requests_ok, d.requests_failed)),
        String::new(),
    );
    row(
        "elapsed (s)",
        format!("{:.2}", through.elapsed.as_secs_f64()),
        direct.map(|d| format!("{:.2}", d.elapsed.as_secs_f64())),
        String::new(),
    );
    row(
        "req/s",
        format!("{:.1}", through.req_per_s),
        direct.map(|d| format!("{:.1}", d.req_per_s)),
        direct.map_or_else(String::new, |d| ratio(through.req_per_s, d.req_per_s)),
    );
    row(
        "tokens/s",
        format!("{:.1}", through.tokens_per_s),
        direct.map(|d| format!("{:.1}", d.tokens_per_s)),
        direct.map_or_else(String::new, |d| ratio(through.tokens_per_s, d.tokens_per_s)),
    );
    row(
        "completion tokens",
        through.completion_tokens.to_string(),
        direct.map(|d| d.completion_tokens.to_string()),
        String::new(),
    );

    let pct = |r: &BenchReport| {
        [
            ("latency p50 (ms)", r.latency.p50),
            ("latency p90 (ms)", r.latency.p90),
            ("latency p99 (ms)", r.latency.p99),
            ("latency max (ms)", r.latency.max),
            ("TTFT p50 (ms)", r.ttft.p50),
            ("TTFT p90 (ms)", r.ttft.p90),
            ("TTFT p99 (ms)", r.ttft.p99),
            ("ITL p50 (ms)", r.itl.p50),
            ("ITL p99 (ms)", r.itl.p99),
        ]
    };
    let direct_pct = direct.map(pct);
    for (i, (name, t)) in pct(through).into_iter().enumerate() {
        let d = direct_pct.map(|p| p[i].1);
        row(
            name,
            ms(t),
            d.map(ms),
            d.map_or_else(String::new, |d| added_ms(t, d)),
        );
    }

    if !through.failures.is_empty() || direct.is_some_and(|d| !d.failures.is_empty()) {
        out.push('\n');
        for (label, r) in std::iter::once(("through", through)).chain(direct.map(|d| ("direct", d)))
        {
            for (reason, n) in &r.failures {
                let _ = writeln!(out, "- {label}: {n} × {reason}");
            }
        }
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn added_ms(through: Duration, direct: Duration) -> String {
    let delta = (through.as_secs_f64() - direct.as_secs_f64()) * 1000.0;
    format!("{delta:+.2} ms")
}

fn ratio(through: f64, direct: f64) -> String {
    if direct > 0.0 {
        format!("{:.2}×", through / direct)
    } else {
        "n/a".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Percentiles;
    use std::collections::BTreeMap;

    fn report(url: &str, rps: f64, p50_ms: u64) -> BenchReport {
        let p = Percentiles {
            p50: Duration::from_millis(p50_ms),
            p90: Duration::from_millis(p50_ms * 2),
            p99: Duration::from_millis(p50_ms * 3),
            max: Duration::from_millis(p50_ms * 4),
        };
        BenchReport {
            url: url.into(),
            requests_ok: 10,
            requests_failed: 0,
            failures: BTreeMap::new(),
            elapsed: Duration::from_secs(2),
            req_per_s: rps,
            latency: p,
            ttft: p,
            itl: Percentiles::default(),
            tokens_per_s: rps * 16.0,
            completion_tokens: 160,
        }
    }

    #[test]
    fn comparison_has_ratios_and_deltas() {
        let mut t = report("http://127.0.0.1:10000", 80.0, 12);
        t.failures.insert("status 502".into(), 1);
        let d = report("http://127.0.0.1:8000", 100.0, 10);
        let s = render_comparison(&t, Some(&d));
        assert!(s.contains("| req/s | 80.0 | 100.0 | 0.80× |"), "{s}");
        assert!(
            s.contains("| latency p50 (ms) | 12.00 | 10.00 | +2.00 ms |"),
            "{s}"
        );
        assert!(
            s.contains("| TTFT p50 (ms) | 12.00 | 10.00 | +2.00 ms |"),
            "{s}"
        );
        assert!(s.contains("| tokens/s | 1280.0 | 1600.0 | 0.80× |"), "{s}");
        assert!(s.contains("- through: 1 × status 502"), "{s}");
        assert!(s.contains("direct:  `http://127.0.0.1:8000`"));
    }

    #[test]
    fn single_report_and_zero_direct() {
        let t = report("http://127.0.0.1:10000", 80.0, 12);
        let s = render_comparison(&t, None);
        assert!(s.contains("| req/s | 80.0 |\n"), "{s}");
        assert!(!s.contains("direct"));
        let mut d = report("http://127.0.0.1:8000", 0.0, 0);
        d.tokens_per_s = 0.0;
        let s = render_comparison(&t, Some(&d));
        assert!(s.contains("| req/s | 80.0 | 0.0 | n/a |"), "{s}");
    }
}
