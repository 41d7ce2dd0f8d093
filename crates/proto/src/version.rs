//! Protocol versions, their negotiation, and the cocoon-rs extensions bit. Both handshakes carry
//! a version range (`client.params` / `worker.params` min..max, `proxy.params.proto_version`);
//! each side then uses `min(local_max, remote_max)` if that is still within both minimums, as
//! Cocoon does. Versions mean exactly what they mean in upstream COCOON 9060ce5:
//!
//! - 0: legacy answers (`*.queryAnswer`, `*.queryAnswerPart`, usage on every message).
//! - 1: `*.runQueryEx` / `*.queryAnswer*Ex` with `final_info` (usage only at the end).
//! - 2: timing fields in `final_info` (flags bit 1).
//! - 3: `client.runQueryEx.public_key` / `proxy.runQueryEx.private_key` (flags bit 1) on every
//!   request (all zeros in clear); only a worker at >= 3 gets encrypted requests.
//! - 4: `worker.params.machine_description_json` may be sent (by a worker whose minimum is 4).
//!
//! Our own messages (`client.cancelQueryV3`, `proxy.cancelQueryV3`, `proxy.queryAnswerPartV3`,
//! `client.queryWorkerInfoV3`; `schema/cocoon_ext.tl`) are not a version: they are used only
//! when both sides set [`EXTENSIONS_FLAG`] in their params' `flags` (a bit no field of
//! upstream's schema uses, so upstream peers ignore it and never set it), on top of a
//! negotiated version >= [`PROTO_EX`]. Nothing here does I/O.

/// Lowest version this implementation speaks.
pub const PROTO_MIN: i32 = 0;
/// Highest version this implementation speaks (upstream 9060ce5's maximum).
pub const PROTO_MAX: i32 = 4;

/// First version with the `…Ex` messages and `final_info`.
pub const PROTO_EX: i32 = 1;
/// First version with timing fields in `final_info`.
pub const PROTO_TIMINGS: i32 = 2;
/// First version whose `runQueryEx` carries the encryption key field (flags bit 1).
pub const PROTO_KEYS: i32 = 3;
/// First version at which a worker may send `machine_description_json` (`worker.params` bit 2).
pub const PROTO_MACHINE_DESCRIPTION: i32 = 4;

/// `runQueryEx.flags` bit of the key field (`public_key` / `private_key`).
pub const RUN_QUERY_KEY_FLAG: u32 = 1 << 1;
/// `worker.params.flags` bit of `machine_description_json`.
pub const MACHINE_DESCRIPTION_FLAG: u32 = 1 << 2;

/// Bit of `client.params.flags`, `worker.params.flags` and `proxy.params.flags` saying "I speak
/// the cocoon-rs extensions". Upstream's TL reader skips flag bits its schema has no field for,
/// and bit 31 would make the `#` negative, which TL refuses; 30 is the highest usable bit, the
/// one least likely to be given a field by upstream.
pub const EXTENSIONS_FLAG: u32 = 1 << 30;

/// What two peers agreed on in their handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The protocol version, with upstream's meaning.
    pub version: i32,
    /// Both sides set [`EXTENSIONS_FLAG`] and the version has the `…Ex` messages.
    pub extensions: bool,
}

impl Negotiated {
    /// From the agreed version and both sides' `flags`.
    pub fn new(version: i32, local_flags: u32, remote_flags: u32) -> Self {
        Negotiated {
            version,
            extensions: version >= PROTO_EX
                && local_flags & EXTENSIONS_FLAG != 0
                && remote_flags & EXTENSIONS_FLAG != 0,
        }
    }

    /// Agreed `version` with a cocoon-rs peer that also speaks the extensions.
    pub const fn with_extensions(version: i32) -> Self {
        Negotiated {
            version,
            extensions: true,
        }
    }

    /// Agreed `version` with a peer that does not speak the extensions (upstream COCOON).
    pub const fn upstream(version: i32) -> Self {
        Negotiated {
            version,
            extensions: false,
        }
    }

    /// Whether `runQueryEx` carries the key field.
    pub fn has_keys(&self) -> bool {
        self.version >= PROTO_KEYS
    }
}

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
        assert_eq!(negotiate(0, 4, 1, 2), Some(2));
        assert_eq!(negotiate(1, 2, 0, 4), Some(2));
        assert_eq!(
            negotiate(PROTO_MIN, PROTO_MAX, PROTO_MIN, PROTO_MAX),
            Some(4)
        );
    }

    #[test]
    fn refuses_disjoint_ranges() {
        assert_eq!(negotiate(3, 4, 0, 2), None);
        assert_eq!(negotiate(0, 1, 2, 3), None);
    }

    #[test]
    fn a_single_remote_version() {
        // Cocoon's proxy announces one version; treat it as min = max.
        assert_eq!(negotiate(1, 4, 2, 2), Some(2));
        assert_eq!(negotiate(1, 4, 0, 0), None);
    }

    #[test]
    fn upstream_9060ce5_peers_negotiate_4_without_extensions() {
        // Upstream worker 3..4, client 1..4, proxy 0..4; flags 3 (bits 0 and 1) only.
        let v = negotiate(PROTO_MIN, PROTO_MAX, 3, 4);
        assert_eq!(v, Some(4));
        let n = Negotiated::new(4, 3 | EXTENSIONS_FLAG, 3);
        assert!(!n.extensions);
        assert!(n.has_keys());
    }

    #[test]
    fn extensions_need_both_sides_and_the_ex_messages() {
        assert!(Negotiated::new(2, EXTENSIONS_FLAG, EXTENSIONS_FLAG).extensions);
        assert!(!Negotiated::new(2, EXTENSIONS_FLAG, 0).extensions);
        assert!(!Negotiated::new(2, 0, EXTENSIONS_FLAG).extensions);
        assert!(!Negotiated::new(0, EXTENSIONS_FLAG, EXTENSIONS_FLAG).extensions);
        assert!(!Negotiated::new(2, 0, 0).has_keys());
    }

    #[test]
    fn the_extensions_bit_keeps_flags_non_negative() {
        assert!(i32::try_from(EXTENSIONS_FLAG | 7).is_ok());
    }
}
