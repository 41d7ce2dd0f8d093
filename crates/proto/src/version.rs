//! Protocol versions and their negotiation. Both handshakes carry a version range (`client.params`
//! / `worker.params` min..max, `proxy.params.proto_version`); each side then uses
//! `min(local_max, remote_max)` if that is still within both minimums, as Cocoon does.
//!
//! - 0: legacy answers (`*.queryAnswer`, `*.queryAnswerPart`, usage on every message).
//! - 1: `*.runQueryEx` / `*.queryAnswer*Ex` with `final_info` (usage only at the end).
//! - 2: timing fields in `final_info` (flags bit 1).
//! - 3 (cocoon-rs only): `client.cancelQueryV3`, `proxy.cancelQueryV3`, and
//!   `proxy.queryAnswerPartV3` carrying cumulative usage in every part, and
//!   `client.queryWorkerInfoV3` (the worker that served a request). Never sent to a peer
//!   that negotiated less than 3.

/// Lowest version this implementation speaks.
pub const PROTO_MIN: i32 = 0;
/// Highest version this implementation speaks.
pub const PROTO_MAX: i32 = 3;

/// First version with the `…Ex` messages and `final_info`.
pub const PROTO_EX: i32 = 1;
/// First version with timing fields in `final_info`.
pub const PROTO_TIMINGS: i32 = 2;
/// First version with cancellation and per-part usage (cocoon-rs).
pub const PROTO_V3: i32 = 3;

/// The version both sides use: `min(local_max, remote_max)` if it is at least both minimums,
/// `None` when the ranges do not overlap that way.
pub fn negotiate(local_min: i32, local_max: i32, remote_min: i32, remote_max: i32) -> Option<i32> {
    let v = local_max.min(remote_max);
    (v >= local_min && v >= remote_min).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_lower_maximum() {
        assert_eq!(negotiate(0, 3, 1, 2), Some(2));
        assert_eq!(negotiate(1, 2, 0, 3), Some(2));
        assert_eq!(
            negotiate(PROTO_MIN, PROTO_MAX, PROTO_MIN, PROTO_MAX),
            Some(3)
        );
    }

    #[test]
    fn refuses_disjoint_ranges() {
        assert_eq!(negotiate(3, 3, 0, 2), None);
        assert_eq!(negotiate(0, 1, 2, 3), None);
    }

    #[test]
    fn a_single_remote_version() {
        // Cocoon's proxy announces one version; treat it as min = max.
        assert_eq!(negotiate(1, 3, 2, 2), Some(2));
        assert_eq!(negotiate(1, 3, 0, 0), None);
    }
}
