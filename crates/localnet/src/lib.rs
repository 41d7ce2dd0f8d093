//! cocoon-localnet: a local TON chain for development and tests, on a real TVM (tycho-executor,
//! in-process), serving the same TON HTTP API v2 subset that `cocoon_ton::http::HttpChain` speaks.
//!
//! - [`ledger`]: deterministic execution (accounts, logical time, message routing, bounces, fees,
//!   per-account history) and the config (@ton/sandbox's mainnet config, param 12 patched).
//! - [`store`]: durability in a data dir (fsynced input log + atomic snapshots), recovery after kill -9.
//! - [`node`]: [`Localnet`], the shared handle (clock, locking, `Chain` impl in-process).
//! - [`server`]: the HTTP API ([`serve`]) and [`run`] with [`LocalnetConfig`].

pub mod ledger;
pub mod node;
pub mod server;
pub mod store;

pub use node::{Localnet, NodeError};
pub use server::{run, serve, LocalnetConfig};
