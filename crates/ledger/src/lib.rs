//! `cocoon-ledger`: the proxy's durable, signed, rollback-evident payment ledger.
//!
//! Per counterparty (client or worker, keyed by owner address) the proxy keeps Cocoon's three monotone
//! counters of adjusted tokens: `max` (in the proxy's memory, not here), `committed_db` (durable, here) and
//! `committed_chain` (the `committed_db` value anchored by the newest save-state marker seen on chain, here).
//! Signed payments are issued only for `committed_chain`. This crate is I/O-separated from the network: no
//! TON or protocol types; plain integers, strings and byte arrays that the proxy maps to.
//!
//! Modules:
//! - [`types`]: config, keys, records, deltas, anchors, snapshots and the input bounds.
//! - [`error`]: the error type, [`LedgerError`].
//! - `ledger`: the async [`Ledger`] handle and the pure rollback checks.
//! - `writer`: the dedicated writer thread (group commit: one durable write per batch).
//! - `usage_log`: the signed log where a batch of usage becomes durable with one `fdatasync`,
//!   copied into SQLite in large transactions.
//! - `store`: SQLite schema, settings (WAL, `synchronous=FULL`, exclusive lock), signed rows, verified load.
//! - `sign`: canonical row encoding and Ed25519.
//! - `state`: the committed in-memory state shared by the handles.
//! - [`inspect()`]: the read-only operator report.
//!
//! Rollback evidence, in layers: (1) every row is signed, over its table name and primary key, so the host
//! cannot forge or move values; a deleted account row is caught by the signed account count, and a row newer
//! than the signed seqno by the seqno check. (2) A whole old copy of the file passes those checks; it is
//! caught by [`Ledger::check_chain_markers`] (the chain holds markers the copy never issued) and by
//! [`Ledger::check_counterparty`] (a worker or client was told more). (3) A mix of old signed rows with
//! a consistent signed count and seqno is not detectable from the file alone (no global state digest yet);
//! layers (2) catch it for any account a counterparty or marker speaks for.
//!
//! Decisions written down here: Ed25519 is ring's (RFC 8032; same keys as ed25519-dalek's
//! `SigningKey::from_bytes`), since ring is the workspace's crypto and ed25519-dalek is not a workspace
//! dependency. Anchor snapshots store only accounts with `committed_db > committed_chain`, so a marker
//! costs O(active accounts), not O(all accounts). Anchors survive restarts, so a marker sent by a previous
//! process is still recognised when it lands. `told_max` is compared with `committed_db` (durable before
//! acknowledged). A failed commit stops the writer (reopen to re-verify the file).

pub mod error;
mod inspect;
mod ledger;
mod sign;
mod state;
mod store;
pub mod types;
mod usage_log;
mod writer;

pub use error::LedgerError;
pub use inspect::{inspect, InspectReport};
pub use ledger::Ledger;
pub use types::{
    AccountKey, AccountRecord, Anchor, AnchorStatus, AnchorView, LedgerConfig, OnchainState, Party,
    Snapshot, SyncMode, UsageDelta,
};
#[doc(hidden)]
pub use usage_log::fuzzing;
