//! Finding proxies in the root contract (clients and workers with `[proxy_discovery] source =
//! "root"`), as Cocoon's runners do: pick at random among the proxies registered in the root,
//! keep a bounded number of links, and move on.
//!
//! - [`parse_description`]: a registered proxy's description, `"ip:port_for_workers
//!   [ip:port_for_clients]"` (Cocoon's `RootContractConfig::parse_address`, IPv4; we also take a
//!   bracketed IPv6), bounded and checked: host names (no DNS driven by chain data), port 0,
//!   unspecified, multicast and broadcast addresses are refused, and loopback or private ones
//!   outside dev/test networks.
//! - [`DiscoveryCore`] (`core.rs`): the I/O-free state machine. It takes the root's list
//!   (`handle_root`), link readiness (`handle_ready` / `handle_down`) and the time, and says what
//!   to do (`poll`: dial a proxy, retire a link). Its RNG is seeded by the caller, so tests are
//!   deterministic.
//! - [`shell::run`]: the task that feeds the core from the registry and the links, and owns the
//!   link tasks; [`LinkControl`] is what a link task gets (its retire signal and a way to report
//!   readiness).
//!
//! Rules (defaults follow Cocoon's, cocoon-notes §5): `links` proxies at once (1). A proxy without
//! a ready link for `replace_unready_after` (300 s) is replaced by another registered one, when
//! there is another. A proxy that leaves the root (or whose description changed) is retired.
//! `rotate_after` (off by default: Cocoon keeps a working proxy; with payments each proxy costs
//! a client contract and its stake) moves to another proxy after that long, make-before-break:
//! the old link is retired only once the new one is ready. A retired link takes no new requests
//! and closes once those in flight have finished; nothing in flight is dropped.
//!
//! What must not live here: dialing, handshakes or requests (each role's link code).

mod core;
pub mod shell;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

pub use self::core::{Action, DiscoveryCore, Endpoint, RetireReason, Rules};
pub use shell::{LinkControl, LinkHandle};

/// Longest description the root stores (a 7-bit length).
pub const MAX_DESCRIPTION_BYTES: usize = 127;

/// Where a client or worker gets its proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxySource {
    /// The config's `proxies` list.
    Static,
    /// The proxies registered in the root contract (needs `[chain]`).
    Root,
}

/// `[proxy_discovery]` of a client or worker config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// `static`: the `proxies` list, every entry kept linked (the chain-off dev network uses
    /// it). `root`: the proxies registered in the root contract, picked at random and followed
    /// as the root changes; needs `[chain]`, and `proxies` is then not used. Default: `static`.
    pub source: ProxySource,
    /// With `root`: proxies linked at once (Cocoon's `proxy_connections`). A worker tells each
    /// of them `max_active_requests / links` as its capacity. Default: 1.
    pub links: usize,
    /// With `root`: a proxy without a ready link for this long is replaced by another
    /// registered one (kept when it is the only one). Default: 5m (Cocoon's 300 s).
    #[serde(with = "humantime_serde")]
    pub replace_unready_after: Duration,
    /// With `root`: after this long on one proxy, move to another registered one; the new link
    /// is ready before the old one stops taking requests, and requests in flight finish. 0s =
    /// never (Cocoon keeps a working proxy; with payments on, every new proxy costs a client
    /// contract and its stake). Default: 0s.
    #[serde(with = "humantime_serde")]
    pub rotate_after: Duration,
    /// With `root`: most registered proxies considered (those with the lowest seqnos); the rest
    /// are ignored. Default: 256.
    pub max_candidates: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            source: ProxySource::Static,
            links: 1,
            replace_unready_after: Duration::from_secs(300),
            rotate_after: Duration::ZERO,
            max_candidates: 256,
        }
    }
}

/// Most links a node may ask for.
pub const MAX_LINKS: usize = 16;
/// Most candidates a node may consider.
pub const MAX_CANDIDATES: usize = 4096;

// === impl DiscoveryConfig ===

impl DiscoveryConfig {
    /// Whether proxies come from the root.
    pub fn from_root(&self) -> bool {
        self.source == ProxySource::Root
    }

    /// Checks values that parse but make no sense; `role` names the config in errors,
    /// `chain_on` whether `[chain]` is on.
    pub fn validate(&self, role: &str, chain_on: bool) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("{role}: proxy_discovery.{m}")));
        if self.from_root() && !chain_on {
            return bad(
                "source = \"root\" needs [chain] (the root contract lists the proxies)".into(),
            );
        }
        if self.links == 0 || self.links > MAX_LINKS {
            return bad(format!("links must be between 1 and {MAX_LINKS}"));
        }
        if self.replace_unready_after < Duration::from_secs(1) {
            return bad("replace_unready_after must be at least 1s".into());
        }
        if !self.rotate_after.is_zero() && self.rotate_after < Duration::from_secs(1) {
            return bad("rotate_after must be 0s (never) or at least 1s".into());
        }
        if self.max_candidates == 0 || self.max_candidates > MAX_CANDIDATES {
            return bad(format!(
                "max_candidates must be between 1 and {MAX_CANDIDATES}"
            ));
        }
        Ok(())
    }

    /// The core's rules for `role`; `allow_local`: loopback and private addresses are fine (a
    /// dev or test network).
    pub fn rules(&self, role: Role, allow_local: bool) -> Rules {
        Rules {
            role,
            links: self.links.clamp(1, MAX_LINKS),
            replace_unready_after: self.replace_unready_after,
            rotate_after: (!self.rotate_after.is_zero()).then_some(self.rotate_after),
            max_candidates: self.max_candidates.clamp(1, MAX_CANDIDATES),
            allow_local,
        }
    }
}

/// Which of a description's two addresses a node dials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The first (the proxy's worker port).
    Worker,
    /// The second, or the first when there is one (the proxy's client port).
    Client,
}

/// A registered proxy's two endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Description {
    pub for_workers: SocketAddr,
    pub for_clients: SocketAddr,
}

/// Why a registered proxy's description is ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptionError {
    #[error("longer than {MAX_DESCRIPTION_BYTES} bytes")]
    TooLong,
    #[error("not one or two space-separated `ip:port` addresses")]
    Shape,
    #[error("{0:?} is not an `ip:port` (host names are not resolved)")]
    NotAnAddress(String),
    #[error("{0} is not an address to dial (port 0, unspecified, multicast or broadcast)")]
    Absurd(SocketAddr),
    #[error("{0} is a loopback or private address (allowed on dev/test networks only)")]
    Local(SocketAddr),
}

// === impl Description ===

impl Description {
    /// The address a node in `role` dials.
    pub fn for_role(&self, role: Role) -> SocketAddr {
        match role {
            Role::Worker => self.for_workers,
            Role::Client => self.for_clients,
        }
    }
}

/// Parses a registered proxy's description: `"ip:port_for_workers [ip:port_for_clients]"`.
/// `allow_local`: loopback and private addresses are accepted (dev/test networks).
pub fn parse_description(text: &str, allow_local: bool) -> Result<Description, DescriptionError> {
    if text.len() > MAX_DESCRIPTION_BYTES {
        return Err(DescriptionError::TooLong);
    }
    let mut parts = text.split(' ').filter(|p| !p.is_empty());
    let first = parts.next().ok_or(DescriptionError::Shape)?;
    let second = parts.next();
    if parts.next().is_some() {
        return Err(DescriptionError::Shape);
    }
    let for_workers = parse_endpoint(first, allow_local)?;
    let for_clients = match second {
        Some(s) => parse_endpoint(s, allow_local)?,
        None => for_workers,
    };
    Ok(Description {
        for_workers,
        for_clients,
    })
}

fn parse_endpoint(text: &str, allow_local: bool) -> Result<SocketAddr, DescriptionError> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        DescriptionError::NotAnAddress(text.chars().take(MAX_DESCRIPTION_BYTES).collect())
    })?;
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if addr.port() == 0 || ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(DescriptionError::Absurd(addr));
    }
    if !allow_local && is_local(ip) {
        return Err(DescriptionError::Local(addr));
    }
    Ok(addr)
}

/// Loopback, private (RFC 1918, IPv6 unique local), link-local or shared (CGNAT) addresses:
/// what a public registry should never send a node to.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests;
