//! cocoon-ton: the TON layer the Cocoon nodes use.
//!
//! - [`address`]: `TonAddress` (raw and user-friendly forms).
//! - [`cells`]: bounded BOC codec, StateInit and contract addresses (over tycho-types).
//! - [`contracts`]: our compiled contract codes, their init data, every message the nodes send and the
//!   parsers of every get-method result.
//! - [`payments`]: proxy-signed payment cells (notes §4.4): sign and verify.
//! - [`wallet`]: TON mnemonic keys and wallet v4r2 external transfers (tonlib-core).
//! - [`chain`]: the small `Chain` trait nodes use, and [`http::HttpChain`], its TON HTTP API v2 client.
//!
//! Nothing here keeps state between calls or spawns tasks; the local chain lives in `cocoon-localnet`.

pub mod address;
pub mod cells;
pub mod chain;
pub mod contracts;
pub mod http;
pub mod payments;
pub mod wallet;
pub mod wire;

pub use address::TonAddress;
pub use chain::{AccountState, Chain, ChainError, GetMethodResult, StackEntry, TxId, TxInfo};
pub use tycho_types::cell::Cell;
