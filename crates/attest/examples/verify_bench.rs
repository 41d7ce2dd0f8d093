//! Quote verification benchmark (issue "Hardware attestation"): what one verification of a peer's
//! evidence costs, cold and through the verdict cache, printed as a markdown table.
//!
//! ```text
//! cargo run --release -p cocoon-attest --example verify_bench [-- --secs 3]
//! ```
//!
//! Inputs are the real samples the crate's tests use (tests/data/README.md has their provenance),
//! verified at a fixed time inside each one's validity window, never at the wall clock:
//! - **TDX, cold**: `DcapVerifier::verify_detailed` with `max_cache_ttl = 0`, so every call misses
//!   the verdict cache and runs the whole path: SHA-256 of the quote, cache lookup, collateral
//!   lookup, dcap-qvl (quote signature, QE report, PCK chain to Intel's root, CRLs, TCB info and
//!   QE identity signatures) and our checks (collateral expiry, TCB status, pinned root key id,
//!   DEBUG off). The only difference from production is the zero TTL.
//! - **TDX, cached**: the same call on a verifier with the default config (10 000 entries, TTL up to
//!   1 h) after one warm-up call: SHA-256 of the quote + the `TtlLru` hit + a clone of the verdict,
//!   which is what the RA-TLS verifier pays for a peer it has seen (it reaches this through
//!   `Policy::tdx` → `QuoteVerifier::verify_quote`, measured as its own row).
//! - **SHA-256 of the quote**: the cache key alone, the floor of any cache keyed by quote hash.
//! - **SEV-SNP, cold**: `SnpVerifier::verify_uncached` on the Milan report + VCEK (VCEK → ASK → ARK
//!   RSA-PSS checks, report ECDSA P-384 signature, hwID and DEBUG checks); **cached**:
//!   `SnpVerifier::verify_evidence`, through the verdict cache (SHA-256 of report + VCEK PEM, TTL bounded
//!   by the chain's expiry and 1 h), what later handshakes with the same certificate pay.
//! - **Insecure software** (reference): `Policy::insecure_software(Dev).verify` on a fake quote
//!   bound to the claims, the dev network's whole attestation cost.
//!
//! Each row runs for `--secs` seconds (at least `MIN_ITERS` calls). The mean is total wall time /
//! calls; p50 / p99 come from per-call timings (an `Instant` pair adds a few tens of ns, which only
//! matters for the cached row). Nothing here is a test: timings never gate anything.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cocoon_attest::{
    parse_collateral, AttestationProvider, CollateralKey, CollateralStore, DcapConfig,
    DcapVerifier, EvidenceVerifier, InsecureSoftwareTdx, NetworkKind, OwnedEvidence, Policy,
    QuoteVerifier, SevSnpEvidence, SnpVerifier, UserClaims,
};
use hdrhistogram::Histogram;
use sha2::{Digest, Sha256};

const TDX_QUOTE: &[u8] = include_bytes!("../tests/data/tdx_quote");
const TDX_COLLATERAL: &[u8] = include_bytes!("../tests/data/tdx_quote_collateral.json");
const SNP_REPORT_HEX: &str = include_str!("../tests/data/sev/report_milan.hex");
const SNP_VCEK: &[u8] = include_bytes!("../tests/data/sev/vcek_milan.der");

/// 2025-06-25T00:00:00Z, inside the TDX sample collateral's window (as in tests/tdx_dcap.rs).
const TDX_NOW: u64 = 1_750_809_600;
/// 2024-01-01T00:00:00Z, inside the Milan VCEK's validity (as in tests/sev_snp.rs).
const SNP_NOW: u64 = 1_704_067_200;
/// Fewest calls per row, whatever `--secs` says.
const MIN_ITERS: u64 = 20;

type BoxError = Box<dyn std::error::Error>;

struct Args {
    secs: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { secs: 3.0 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secs" => {
                a.secs = val
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
                    .ok_or_else(|| format!("--secs: {val:?} is not in (0, 600]"))?;
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

/// One measured row.
struct Row {
    name: &'static str,
    calls: u64,
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

/// Calls `f` for `secs` seconds (at least `MIN_ITERS` times); every call must succeed.
fn measure<F>(name: &'static str, secs: f64, mut f: F) -> Result<Row, BoxError>
where
    F: FnMut() -> Result<(), BoxError>,
{
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let budget = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut calls = 0u64;
    while calls < MIN_ITERS || started.elapsed() < budget {
        let t0 = Instant::now();
        f().map_err(|e| format!("{name}: {e}"))?;
        hist.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
        calls += 1;
    }
    let total = started.elapsed();
    Ok(Row {
        name,
        calls,
        mean: total / u32::try_from(calls).unwrap_or(u32::MAX),
        p50: Duration::from_nanos(hist.value_at_quantile(0.50)),
        p99: Duration::from_nanos(hist.value_at_quantile(0.99)),
    })
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn tdx_store() -> Result<Arc<CollateralStore>, BoxError> {
    let store = CollateralStore::offline();
    store.insert(
        CollateralKey::for_quote(TDX_QUOTE)?,
        parse_collateral(TDX_COLLATERAL)?,
    );
    Ok(Arc::new(store))
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let tdx_now = UNIX_EPOCH + Duration::from_secs(TDX_NOW);
    let snp_now = UNIX_EPOCH + Duration::from_secs(SNP_NOW);
    let mut rows = Vec::new();

    // TDX cold: the production path with the cache defeated by a zero TTL.
    let cold = DcapVerifier::new(
        DcapConfig {
            max_cache_ttl: Duration::ZERO,
            ..DcapConfig::default()
        },
        tdx_store()?,
    );
    let first = cold.verify_detailed(TDX_QUOTE, tdx_now)?;
    if first.tcb_status != "UpToDate" {
        return Err(format!("sample quote verified as {}", first.tcb_status).into());
    }
    rows.push(measure(
        "TDX quote, cold (dcap-qvl + our checks)",
        args.secs,
        || {
            cold.verify_detailed(TDX_QUOTE, tdx_now).map(drop)?;
            Ok(())
        },
    )?);

    // TDX cached: the default verifier, warmed once.
    let cached = Arc::new(DcapVerifier::new(DcapConfig::default(), tdx_store()?));
    cached.verify_detailed(TDX_QUOTE, tdx_now)?;
    if cached.cached_verdicts() != 1 {
        return Err("warm-up did not populate the verdict cache".into());
    }
    rows.push(measure(
        "TDX quote, cached (verdict cache hit)",
        args.secs,
        || {
            cached.verify_detailed(TDX_QUOTE, tdx_now).map(drop)?;
            Ok(())
        },
    )?);
    // The same, through the seam `Policy` calls (what each RA-TLS certificate check reaches).
    let seam: Arc<dyn QuoteVerifier> = cached.clone();
    rows.push(measure(
        "TDX quote, cached, via QuoteVerifier (Policy's call)",
        args.secs,
        || {
            seam.verify_quote(TDX_QUOTE, tdx_now).map(drop)?;
            Ok(())
        },
    )?);

    // The floor of any cache keyed by the quote's hash: hashing the 5 006-byte quote.
    rows.push(measure(
        "SHA-256 of the TDX quote alone (cache key)",
        args.secs,
        || {
            std::hint::black_box(Sha256::digest(std::hint::black_box(TDX_QUOTE)));
            Ok(())
        },
    )?);

    // SEV-SNP: cold (no cache) and cached.
    let snp = SnpVerifier::new()?;
    let report = hex::decode(SNP_REPORT_HEX.trim())?;
    let vcek_pem = cocoon_attest::vcek_pem(SNP_VCEK)?;
    let bundle = SevSnpEvidence {
        report_data: &[],
        report: &report,
        vcek_pem: &vcek_pem,
    };
    snp.verify_evidence(&bundle, snp_now)?;
    rows.push(measure("SEV-SNP report, cold", args.secs, || {
        snp.verify_uncached(&bundle, snp_now).map(drop)?;
        Ok(())
    })?);
    rows.push(measure(
        "SEV-SNP report, cached (verdict cache)",
        args.secs,
        || {
            snp.verify_evidence(&bundle, snp_now).map(drop)?;
            Ok(())
        },
    )?);

    // Reference: the dev network's software evidence through the full policy.
    let claims = UserClaims::new([7; 32]);
    let Some(OwnedEvidence::Quote(fake)) =
        InsecureSoftwareTdx::new(NetworkKind::Dev)?.evidence(&claims)?
    else {
        return Err("insecure provider gave no quote".into());
    };
    let policy = Policy::insecure_software(NetworkKind::Dev)?;
    let now = SystemTime::now();
    policy.verify(Some(&fake), &claims, now)?;
    rows.push(measure(
        "insecure-software quote via Policy (reference)",
        args.secs,
        || {
            policy.verify(Some(&fake), &claims, now).map(drop)?;
            Ok(())
        },
    )?);

    print_markdown(&args, &rows);
    Ok(())
}

fn print_markdown(args: &Args, rows: &[Row]) {
    println!(
        "### Quote verification, one call at a time ({} s per row)",
        args.secs
    );
    println!();
    println!("| evidence | calls | mean | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.name,
            r.calls,
            fmt(r.mean),
            fmt(r.p50),
            fmt(r.p99)
        );
    }
    println!();
    if let [cold, cached, ..] = rows {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
        println!(
            "TDX cold / cached: mean {:.0}×, p50 {:.0}× ({} vs {}).",
            ratio(cold.mean, cached.mean),
            ratio(cold.p50, cached.p50),
            fmt(cold.p50),
            fmt(cached.p50)
        );
    }
}
