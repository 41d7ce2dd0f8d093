//! Every Cocoon message as a plain Rust type, one per TL constructor, named CamelCase with the
//! namespace as prefix (`client.runQueryEx` → [`ClientRunQueryEx`]). Each type carries its
//! schema line in `#[tl(schema = "...")]`, so its id is computed at compile time and its fields
//! are checked against the line; `tests/schema_ids.rs` checks every line against
//! `schema/cocoon_api.tl` / `schema/cocoon_ext.tl` and Cocoon's generated ids.
//!
//! Boxed vs bare follows Cocoon's schema: a field typed with a lower-case constructor name
//! (`params:proxy.params`, `tokens_used:tokensUsed`, `(vector http.header)`) is bare, so those
//! structs have no `boxed`; everything sent on its own (and every enum member) is boxed.
//! `Debug` prints `bytes` fields as lengths and hides secrets, so messages may be logged.
//!
//! Name clashes: the `tcp.packet` struct is [`TcpPacketData`] (the enum of all `tcp.*` is
//! [`TcpPacket`]); `proxy.signedPayment` is [`ProxySignedPaymentData`]; the `client.Refund` enum
//! is [`ClientRefundAnswer`].
//!
//! The dispatch enums ([`ClientToProxyMessage`] …) group what may arrive at one point of one
//! role, named by direction; answers to queries are decoded by the caller as the specific type.
//! No I/O and no protocol state live here.

mod client;
mod common;
mod dispatch;
mod http;
mod proxy;
mod tcp;
mod worker;

pub use client::*;
pub use common::*;
pub use dispatch::*;
pub use http::*;
pub use proxy::*;
pub use tcp::*;
pub use worker::*;

/// A token count as TL's `long`: saturated at `i64::MAX` instead of wrapping to a negative
/// number (which a receiver would clamp to 0: an absurd count billed as nothing).
pub fn tl_long(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Serializes a message for sending (the boxed form for boxed types).
pub fn encode<T: cocoon_tl::TlWrite>(message: &T) -> bytes::Bytes {
    bytes::Bytes::from(cocoon_tl::to_bytes(message))
}

impl ProxySignedPayment {
    /// `proxy.signedPaymentEmpty`: no signed payment to hand over (yet).
    pub fn empty() -> Self {
        ProxySignedPayment::Empty(ProxySignedPaymentEmpty)
    }
}

#[cfg(test)]
mod tl_long_tests {
    #[test]
    fn token_counts_saturate_instead_of_turning_negative() {
        assert_eq!(super::tl_long(0), 0);
        assert_eq!(super::tl_long(i64::MAX as u64), i64::MAX);
        assert_eq!(super::tl_long(u64::MAX), i64::MAX);
    }
}
