//! The key manager's rules, without I/O or a clock: every input comes with the time `now`
//! (unix seconds), randomness comes in as a seed, and what to do comes out (quinn-proto style).
//!
//! - **Schedule** ([`KeyManagerCore::poll_new_key`], [`KeyManagerCore::handle_new_key`],
//!   [`KeyManagerCore::handle_expiry`], or all three in [`KeyManagerCore::tick`]): a new key is
//!   needed when no key was generated within the last `rotate_every` (or none stays valid for
//!   at least `rotate_every` more, e.g. after the clock jumped); each key is valid
//!   `key_lifetime`; expired keys are dropped. So with upstream's defaults (1 h, 24 h) about 24
//!   keys are alive, and a key a proxy learned stays usable for a day.
//! - **Serving** ([`KeyManagerCore::served_keys`]): every unexpired key, the newest first, plus
//!   upstream's fixed test key when configured. Proxies and workers get the same keys.
//! - **Announcing** ([`KeyManagerCore::poll_announce`], [`KeyManagerCore::handle_announce_attempt`]):
//!   each generated, unexpired key the root does not list yet, at most once per
//!   `announce_retry`. The root is the record of what was announced; nothing about it is
//!   persisted here.
//!
//! What must not live here: files, sockets, the chain, logging.

use std::collections::HashMap;

use cocoon_field_encryption::SecretSeed;
use cocoon_proto::messages::KeyManagerPrivateKey;

/// Upstream COCOON's fixed test key (`KeyManagerRunner`, test mode): its seed, base64
/// `BwrYLmEy2rMgZ/tyCv0AYFVaZPkFu+wNwoSQiJUbOmM=`. Public knowledge: served only on dev/test
/// networks (`add_default_key`).
pub const TEST_KEY_SEED: [u8; 32] = [
    0x07, 0x0a, 0xd8, 0x2e, 0x61, 0x32, 0xda, 0xb3, 0x20, 0x67, 0xfb, 0x72, 0x0a, 0xfd, 0x00, 0x60,
    0x55, 0x5a, 0x64, 0xf9, 0x05, 0xbb, 0xec, 0x0d, 0xc2, 0x84, 0x90, 0x88, 0x95, 0x1b, 0x3a, 0x63,
];

/// The public half of [`TEST_KEY_SEED`] (hex
/// `fb67d0fcd338f20e0d4957d9e82adc101d2e3513a448a3ab46052ee1b88c5818`).
pub const TEST_KEY_PUBLIC: [u8; 32] = [
    0xfb, 0x67, 0xd0, 0xfc, 0xd3, 0x38, 0xf2, 0x0e, 0x0d, 0x49, 0x57, 0xd9, 0xe8, 0x2a, 0xdc, 0x10,
    0x1d, 0x2e, 0x35, 0x13, 0xa4, 0x48, 0xa3, 0xab, 0x46, 0x05, 0x2e, 0xe1, 0xb8, 0x8c, 0x58, 0x18,
];

/// When the test key expires (unix seconds), as upstream serves it.
pub const TEST_KEY_VALID_UNTIL: u64 = 2_000_000_000;

/// The `key_type` of network keys on the root (upstream's key manager announces type 1).
pub const NETWORK_KEY_TYPE: u8 = 1;

/// The schedule's parameters, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleRules {
    /// A new key every this many seconds.
    pub rotate_every: u64,
    /// Each key is valid this long after its creation.
    pub key_lifetime: u64,
    /// An announcement that did not show on the root is sent again after this long.
    pub announce_retry: u64,
    /// Serve [`TEST_KEY_SEED`] too.
    pub test_key: bool,
}

impl ScheduleRules {
    /// The rules of a validated config.
    pub fn from_config(cfg: &crate::KeyManagerConfig) -> Self {
        Self {
            rotate_every: cfg.rotate_every.as_secs().max(1),
            key_lifetime: cfg.key_lifetime.as_secs(),
            announce_retry: cfg.announce_retry.as_secs().max(1),
            test_key: cfg.add_default_key,
        }
    }
}

/// One generated network key.
#[derive(Clone)]
pub struct NetworkKey {
    pub seed: SecretSeed,
    /// `seed`'s Ed25519 public key.
    pub public: [u8; 32],
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; the key is served while `now < valid_until`.
    pub valid_until: u64,
}

impl std::fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        f.debug_struct("NetworkKey")
            .field("public", &hex::encode(self.public))
            .field("created_at", &self.created_at)
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

impl NetworkKey {
    /// A key made from `seed` at `now`, valid for `lifetime` seconds.
    pub fn new(seed: SecretSeed, now: u64, lifetime: u64) -> Self {
        Self {
            public: seed.public_key(),
            seed,
            created_at: now,
            valid_until: now.saturating_add(lifetime),
        }
    }
}

/// A key's public half, for stats, logs and announcements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeyInfo {
    pub public: [u8; 32],
    pub valid_until: u64,
    /// Upstream's fixed test key (never announced).
    pub test: bool,
}

/// What one [`KeyManagerCore::tick`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// The key generated, if one was.
    pub added: Option<PublicKeyInfo>,
    /// The keys dropped for having expired.
    pub dropped: Vec<PublicKeyInfo>,
}

impl Tick {
    /// Whether the stored keys changed (then they must be written before being served).
    pub fn changed(&self) -> bool {
        self.added.is_some() || !self.dropped.is_empty()
    }
}

/// A key to announce to the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub public: [u8; 32],
    pub key_type: u8,
    /// Unix seconds, saturated to 32 bits.
    pub expire_at: u32,
}

/// The key manager's state: its keys and when each was last announced.
#[derive(Clone, Debug)]
pub struct KeyManagerCore {
    rules: ScheduleRules,
    /// Oldest first.
    keys: Vec<NetworkKey>,
    /// When each key's announcement was last sent (attempts, failed or not).
    announced_at: HashMap<[u8; 32], u64>,
}

// === impl KeyManagerCore ===

impl KeyManagerCore {
    /// A core over the keys read from disk (any order; duplicates by public key are dropped).
    pub fn new(rules: ScheduleRules, mut keys: Vec<NetworkKey>) -> Self {
        keys.sort_by_key(|k| (k.created_at, k.public));
        keys.dedup_by_key(|k| k.public);
        Self {
            rules,
            keys,
            announced_at: HashMap::new(),
        }
    }

    pub fn rules(&self) -> &ScheduleRules {
        &self.rules
    }

    /// The generated keys, oldest first (what is persisted).
    pub fn keys(&self) -> &[NetworkKey] {
        &self.keys
    }

    /// Whether a new key must be generated at `now`: no key was generated within the last
    /// `rotate_every` and stays valid at least `rotate_every` more. A key from the future
    /// (the clock went back) counts as fresh while it stays valid long enough.
    pub fn poll_new_key(&self, now: u64) -> bool {
        let r = &self.rules;
        !self.keys.iter().any(|k| {
            now < k.created_at.saturating_add(r.rotate_every)
                && k.valid_until >= now.saturating_add(r.rotate_every)
        })
    }

    /// Adds a key generated from `seed` at `now`; returns its public half.
    pub fn handle_new_key(&mut self, seed: SecretSeed, now: u64) -> PublicKeyInfo {
        let key = NetworkKey::new(seed, now, self.rules.key_lifetime);
        let info = PublicKeyInfo {
            public: key.public,
            valid_until: key.valid_until,
            test: false,
        };
        self.keys.retain(|k| k.public != key.public);
        self.keys.push(key);
        self.keys.sort_by_key(|k| (k.created_at, k.public));
        info
    }

    /// Drops the keys expired at `now`; returns them.
    pub fn handle_expiry(&mut self, now: u64) -> Vec<PublicKeyInfo> {
        let mut dropped = Vec::new();
        self.keys.retain(|k| {
            let keep = k.valid_until > now;
            if !keep {
                dropped.push(PublicKeyInfo {
                    public: k.public,
                    valid_until: k.valid_until,
                    test: false,
                });
            }
            keep
        });
        let live: std::collections::HashSet<_> = self.keys.iter().map(|k| k.public).collect();
        self.announced_at.retain(|p, _| live.contains(p));
        dropped
    }

    /// One step of the schedule at `now`: drop what expired, then generate a key (its seed
    /// from `fresh`) if one is due.
    pub fn tick(&mut self, now: u64, fresh: impl FnOnce() -> SecretSeed) -> Tick {
        let dropped = self.handle_expiry(now);
        let added = self
            .poll_new_key(now)
            .then(|| self.handle_new_key(fresh(), now));
        Tick { added, dropped }
    }

    /// When the schedule next has something to do (a key to generate or to drop), in unix
    /// seconds, at least `now`.
    pub fn next_tick(&self, now: u64) -> u64 {
        let r = &self.rules;
        let rotate = self
            .keys
            .iter()
            .map(|k| {
                k.created_at
                    .saturating_add(r.rotate_every)
                    .min(k.valid_until.saturating_sub(r.rotate_every))
            })
            .max()
            .unwrap_or(now);
        let expiry = self.keys.iter().map(|k| k.valid_until).min();
        expiry.map_or(rotate, |e| e.min(rotate)).max(now)
    }

    /// The keys to hand a proxy or worker at `now`: every unexpired key, the newest first, then
    /// the test key when configured. Expiries above `i32::MAX` are sent as `i32::MAX`.
    pub fn served_keys(&self, now: u64) -> Vec<KeyManagerPrivateKey> {
        let mut out: Vec<_> = self
            .keys
            .iter()
            .rev()
            .filter(|k| k.valid_until > now)
            .map(|k| KeyManagerPrivateKey {
                valid_until_utime: wire_time(k.valid_until),
                private_key: *k.seed.as_bytes(),
            })
            .collect();
        if self.rules.test_key && TEST_KEY_VALID_UNTIL > now {
            out.push(KeyManagerPrivateKey {
                valid_until_utime: wire_time(TEST_KEY_VALID_UNTIL),
                private_key: TEST_KEY_SEED,
            });
        }
        out
    }

    /// The public halves of what [`served_keys`](Self::served_keys) serves at `now`.
    pub fn public_keys(&self, now: u64) -> Vec<PublicKeyInfo> {
        let mut out: Vec<_> = self
            .keys
            .iter()
            .rev()
            .filter(|k| k.valid_until > now)
            .map(|k| PublicKeyInfo {
                public: k.public,
                valid_until: k.valid_until,
                test: false,
            })
            .collect();
        if self.rules.test_key && TEST_KEY_VALID_UNTIL > now {
            out.push(PublicKeyInfo {
                public: TEST_KEY_PUBLIC,
                valid_until: TEST_KEY_VALID_UNTIL,
                test: true,
            });
        }
        out
    }

    /// The keys to announce at `now`, given the public keys the root lists: each generated,
    /// unexpired key the root does not list, unless an announcement of it was sent less than
    /// `announce_retry` ago. The test key is never announced.
    pub fn poll_announce(&self, now: u64, listed: &[[u8; 32]]) -> Vec<Announcement> {
        self.keys
            .iter()
            .filter(|k| k.valid_until > now && !listed.contains(&k.public))
            .filter(|k| {
                self.announced_at
                    .get(&k.public)
                    .is_none_or(|t| now >= t.saturating_add(self.rules.announce_retry))
            })
            .map(|k| Announcement {
                public: k.public,
                key_type: NETWORK_KEY_TYPE,
                expire_at: u32::try_from(k.valid_until).unwrap_or(u32::MAX),
            })
            .collect()
    }

    /// An announcement of `public` was sent (or tried) at `now`.
    pub fn handle_announce_attempt(&mut self, public: [u8; 32], now: u64) {
        if self.keys.iter().any(|k| k.public == public) {
            self.announced_at.insert(public, now);
        }
    }
}

/// A unix time as TL's signed 32-bit `int`, saturated.
fn wire_time(t: u64) -> i32 {
    i32::try_from(t).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests;
