//! Pieces every Cocoon role (client, proxy, worker) shares at run time.
//!
//! - [`config`]: the attestation/network part of each role's TOML config and TOML loading.
//! - [`net`]: dialing and accepting attested sessions: TCP (nodelay) → PoW pre-handshake → RA-TLS →
//!   framed `tcp.*` session. Roles never touch sockets, TLS or PoW directly.
//! - [`stats`]: the `/stats`, `/jsonstats` and `/metrics` HTTP endpoints.
//! - [`backoff`]: reconnect delays.
//! - [`discovery`]: finding proxies in the root contract (clients and workers), I/O-free core
//!   plus the task that runs it.
//! - [`rotation`]: RA-TLS certificate rotation and TDX collateral refresh while a role runs.
//! - [`sealing`]: the X25519 key pairs a worker binds into its certificates (sealed requests).
//! - [`limits`]: process limits a node raises for itself at start (open files).
//!
//! - [`worker_headers`]: the names of the `X-Cocoon-Worker-*` evidence headers.
//!
//! Nothing role-specific lives here: no request handling, no accounting.

pub mod backoff;
pub mod config;
pub mod discovery;
pub mod errors;
pub mod limits;
pub mod net;
pub mod rotation;
pub mod sealing;
pub mod stats;
pub mod time;
pub mod worker_headers;

pub use config::{AttestationConfig, ConfigError, EvidenceChoice, PeerPolicyChoice, PricingConfig};
pub use net::{AttestedSession, DialConfig, ListenConfig, NetError};
