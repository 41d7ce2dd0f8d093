//! The proxy's network keys: one task, owned by the proxy's run, keeps a session with the key
//! manager (`key_manager` in the config: PoW + RA-TLS like any peer, its evidence checked
//! against `[attestation] peer_policy` and, with the chain on, the root's
//! `key_manager_image_hash` when that is set), asks `keyManager.getProxyPrivateKeys
//! proto_version=0` every 5-10 s (jittered, as upstream's proxy does), derives each key's public
//! half and hands the pairs to the core ([`crate::proxy_core::ProxyCore::set_network_keys`]),
//! which refuses requests sealed to any other key with 602 "unknown public key".
//!
//! A successful answer replaces the keys held (a key the key manager stopped serving is no
//! longer used); while the key manager cannot be reached or refuses, the keys already held are
//! kept until each expires. An answer with more than [`MAX_KEYS`] keys is refused whole, before
//! any key is derived.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cocoon_field_encryption::SecretSeed;
use cocoon_node::backoff::Backoff;
use cocoon_node::net::{self, AttestedSession, DialConfig};
use cocoon_proto::messages::{encode, KeyManagerGetProxyPrivateKeys, KeyManagerPrivateKeys};
use rand::Rng as _;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::proxy_core::NetworkKey;
use crate::Shared;

/// Most keys accepted in one answer (upstream's key manager holds about 25).
pub const MAX_KEYS: usize = 1024;
/// How long one key query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The query interval: uniformly between these (upstream's proxy: 5-10 s).
const ASK_EVERY_MS: std::ops::RangeInclusive<u64> = 5_000..=10_000;

/// What the stats page shows about the key manager link.
#[derive(Debug, Default, Clone)]
struct LinkStatus {
    connected: bool,
    /// Unix seconds of the last successful fetch.
    last_fetch: Option<u64>,
    last_error: Option<String>,
    fetches: u64,
    failures: u64,
}

/// The proxy's view of its key manager, shared with the stats page.
#[derive(Debug)]
pub(crate) struct KeyManagerLink {
    pub address: String,
    status: Mutex<LinkStatus>,
}

// === impl KeyManagerLink ===

impl KeyManagerLink {
    pub(crate) fn new(address: String) -> Self {
        Self {
            address,
            status: Mutex::new(LinkStatus::default()),
        }
    }

    fn update(&self, f: impl FnOnce(&mut LinkStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    pub(crate) fn status_json(&self) -> serde_json::Value {
        let s = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        serde_json::json!({
            "address": self.address,
            "connected": s.connected,
            "last_fetch": s.last_fetch,
            "last_error": s.last_error,
            "fetches": s.fetches,
            "failures": s.failures,
        })
    }
}

/// Why one fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FetchError {
    #[error("query: {0}")]
    Query(#[from] cocoon_proto::session::QueryError),
    #[error("answer is not keyManager.privateKeys: {0}")]
    Decode(#[from] cocoon_tl::TlError),
    #[error("answer holds {0} keys, more than {MAX_KEYS}")]
    TooMany(usize),
}

/// Unix seconds now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The keys of an answer that are still valid at `now`, each with its public half, once each.
pub(crate) fn keys_from(
    answer: &KeyManagerPrivateKeys,
    now: u64,
) -> Result<Vec<NetworkKey>, FetchError> {
    if answer.keys.len() > MAX_KEYS {
        return Err(FetchError::TooMany(answer.keys.len()));
    }
    let mut out: Vec<NetworkKey> = Vec::with_capacity(answer.keys.len());
    for k in &answer.keys {
        let Ok(valid_until) = u32::try_from(k.valid_until_utime) else {
            continue;
        };
        if u64::from(valid_until) <= now {
            continue;
        }
        let seed = SecretSeed::from_bytes(k.private_key);
        let public = seed.public_key();
        if out.iter().any(|h| h.public == public) {
            continue;
        }
        out.push(NetworkKey {
            public,
            seed: k.private_key,
            valid_until,
        });
    }
    Ok(out)
}

/// Hands `keys` to the core (never across an await).
fn apply(shared: &Shared, keys: &[NetworkKey]) {
    shared.core().set_network_keys(keys.to_vec());
}

/// With the chain on and the root naming a key manager image, the key manager must run it.
fn check_key_manager(shared: &Shared, conn: &AttestedSession) -> Result<(), String> {
    let Some(p) = shared.payments.as_ref() else {
        return Ok(());
    };
    let reg = p.registry.current();
    let Some(want) = reg
        .state
        .key_manager
        .as_ref()
        .map(|k| k.image_hash)
        .filter(|h| *h != [0; 32])
    else {
        return Ok(());
    };
    match conn.peer.image_hash {
        Some(h) if h == want => Ok(()),
        other => Err(format!(
            "the key manager runs image {}, the root's key_manager_image_hash is {}",
            other.map_or("none".into(), hex::encode),
            hex::encode(want)
        )),
    }
}

/// Keeps the proxy's network keys fresh until `shutdown`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    link: Arc<KeyManagerLink>,
    dial: DialConfig,
    shutdown: CancellationToken,
) {
    let span = info_span!("key_manager", addr = %link.address);
    async move {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut held: Vec<NetworkKey> = Vec::new();
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = net::dial(&link.address, &dial) => r,
            };
            match attempt {
                Ok(conn) => match check_key_manager(&shared, &conn) {
                    Ok(()) => {
                        link.update(|s| s.connected = true);
                        info!("connected to the key manager");
                        let done =
                            serve(&shared, &link, &conn, &mut held, &mut backoff, &shutdown).await;
                        conn.session.close();
                        link.update(|s| s.connected = false);
                        if done {
                            return;
                        }
                    }
                    Err(why) => {
                        warn!(%why, "key manager refused");
                        link.update(|s| s.last_error = Some(why));
                        conn.session.close();
                    }
                },
                Err(e) => {
                    net::log_dial_failure(&e);
                    link.update(|s| s.last_error = Some(e.to_string()));
                }
            }
            // Unreachable: keep what we have until it expires.
            let now = unix_now();
            let before = held.len();
            held.retain(|k| u64::from(k.valid_until) > now);
            if held.len() != before {
                apply(&shared, &held);
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
    .instrument(span)
    .await
}

/// Asks for keys on one session until it fails or closes; true on shutdown.
async fn serve(
    shared: &Shared,
    link: &KeyManagerLink,
    conn: &AttestedSession,
    held: &mut Vec<NetworkKey>,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        let ask = conn.session.query(
            encode(&KeyManagerGetProxyPrivateKeys { proto_version: 0 }),
            QUERY_TIMEOUT,
        );
        let answer = tokio::select! {
            _ = shutdown.cancelled() => return true,
            a = ask => a,
        };
        let fetched = answer
            .map_err(FetchError::from)
            .and_then(|a| Ok(cocoon_tl::from_bytes::<KeyManagerPrivateKeys>(&a)?))
            .and_then(|a| keys_from(&a, unix_now()));
        match fetched {
            Ok(keys) => {
                backoff.reset();
                if public_halves(&keys) != public_halves(held) {
                    info!(
                        keys = keys.len(),
                        public_keys = ?public_halves(&keys).iter().map(hex::encode).collect::<Vec<_>>(),
                        "network keys from the key manager"
                    );
                }
                *held = keys;
                apply(shared, held);
                link.update(|s| {
                    s.last_fetch = Some(unix_now());
                    s.last_error = None;
                    s.fetches += 1;
                });
            }
            Err(e) => {
                warn!(error = %e, "fetching network keys failed");
                link.update(|s| {
                    s.last_error = Some(e.to_string());
                    s.failures += 1;
                });
                return false;
            }
        }
        let wait = Duration::from_millis(rand::rng().random_range(ASK_EVERY_MS));
        tokio::select! {
            _ = shutdown.cancelled() => return true,
            _ = conn.session.closed() => {
                debug!("key manager session closed");
                return false;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn public_halves(keys: &[NetworkKey]) -> Vec<[u8; 32]> {
    let mut v: Vec<_> = keys.iter().map(|k| k.public).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use cocoon_proto::messages::KeyManagerPrivateKey;

    use super::*;

    fn key(seed: u8, valid_until: i32) -> KeyManagerPrivateKey {
        KeyManagerPrivateKey {
            valid_until_utime: valid_until,
            private_key: [seed; 32],
        }
    }

    #[test]
    fn an_answer_gives_its_valid_keys_with_their_public_halves_once() {
        let answer = KeyManagerPrivateKeys {
            keys: vec![
                key(1, 2_000),
                key(2, 500),
                key(3, -5),
                key(1, 3_000),
                key(4, 1_001),
            ],
        };
        let keys = keys_from(&answer, 1_000).expect("keys");
        let got: Vec<_> = keys.iter().map(|k| (k.seed[0], k.valid_until)).collect();
        assert_eq!(got, [(1, 2_000), (4, 1_001)]);
        assert_eq!(keys[0].public, SecretSeed::from_bytes([1; 32]).public_key());
    }

    #[test]
    fn a_flood_of_keys_is_refused_before_any_is_derived() {
        let answer = KeyManagerPrivateKeys {
            keys: vec![key(1, i32::MAX); MAX_KEYS + 1],
        };
        assert!(matches!(
            keys_from(&answer, 0),
            Err(FetchError::TooMany(n)) if n == MAX_KEYS + 1
        ));
    }
}
