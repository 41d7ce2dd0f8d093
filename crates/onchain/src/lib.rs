//! cocoon-onchain: what the Cocoon nodes do on TON, shared by the client, proxy and worker roles and
//! the `cocoon` binary's commands.
//!
//! - [`config`]: the `[chain]` section of a node config (API URL, root address, wallet file) and
//!   loading the node's wallet off the runtime threads.
//! - [`amount`]: nanoTON ⇄ "1.5" TON text.
//! - [`sender`]: [`sender::WalletSender`], one node wallet's outgoing messages, serialized and
//!   confirmed by seqno.
//! - [`cursor`]: [`cursor::TxCursor`], new transactions of an account, oldest first, exactly once.
//! - [`signed`]: signed payments as `proxy.signedPayment` bytes: sign, decode, check.
//! - [`registry`]: the root contract's registry (prices, allowed images and models, proxies),
//!   read once or watched, and the allowlist checks built on it.
//! - [`freshness`]: how old a node's view of the root is, and the stale-root guard's verdict.
//!
//! What must not live here: role logic (who pays whom and when belongs to each role), message
//! layouts (crates/ton) or any transport (the [`cocoon_ton::Chain`] implementation is given).

pub mod amount;
pub mod config;
pub mod cursor;
pub mod freshness;
pub mod registry;
pub mod sender;
pub mod signed;

pub use config::{ChainConfig, NodeChain};
pub use registry::{Registry, RegistryWatch};
pub use sender::WalletSender;

/// Why an on-chain step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnchainError {
    #[error("chain: {0}")]
    Chain(#[from] cocoon_ton::ChainError),
    #[error("cell: {0}")]
    Cell(#[from] cocoon_ton::cells::CellError),
    #[error("wallet: {0}")]
    Wallet(#[from] cocoon_ton::wallet::WalletError),
    #[error("{0}")]
    Config(String),
    #[error("wallet {address} has no TON: fund it first (on a dev chain: `cocoon wallet faucet --address {address}`)")]
    Unfunded { address: String },
    #[error("wallet {address} holds {have} nanoTON, less than the {need} nanoTON this needs")]
    Insufficient {
        address: String,
        have: u128,
        need: u128,
    },
    #[error("not confirmed within {0:?}: the wallet's seqno did not move")]
    NotConfirmed(std::time::Duration),
    #[error("{what} is not an active contract at {address}")]
    NotActive { what: &'static str, address: String },
    #[error("root contract: {0}")]
    Root(String),
}
