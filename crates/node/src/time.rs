//! Wall-clock helpers for the `X-Cocoon-*` timing headers and final-info timestamps.
//!
//! Only unix time as `f64` seconds lives here; deadlines use `tokio::time::Instant`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch as a float, as Cocoon puts into `X-Cocoon-*-Start/End` and
/// `queryFinalInfo` timing fields.
pub fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Formats a unix time like Cocoon's headers (microsecond precision).
pub fn format_unix(t: f64) -> String {
    format!("{t:.6}")
}
