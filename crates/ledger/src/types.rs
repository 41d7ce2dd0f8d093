//! Plain data types of the ledger's public API: configuration, account keys and records, usage deltas,
//! anchors and the in-memory snapshot.
//!
//! Everything here is plain integers, strings and byte arrays on purpose: the ledger is I/O-separated from
//! the network, so no TON or protocol types may appear in this module; the proxy maps its own types to these.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Longest accepted owner address text (a TON address in any textual form fits comfortably).
pub const MAX_OWNER_LEN: usize = 128;
/// Longest accepted contract address text.
pub const MAX_SC_ADDRESS_LEN: usize = 128;
/// Most accounts a ledger file may hold; opening a bigger file or creating one more account fails.
pub const MAX_ACCOUNTS: usize = 1_000_000;
/// Most deltas accepted in one `add_usage` call.
pub const MAX_DELTAS_PER_CALL: usize = 65_536;
/// Most anchors registered but not yet seen on chain. Cocoon sends a new marker only when the previous one
/// was seen, so more than a handful pending means the chain monitor is broken; refusing is safer than growing.
pub const MAX_PENDING_ANCHORS: usize = 1_024;
/// Resolved (confirmed or superseded) anchors kept for checking markers found on chain; older ones are pruned
/// and markers below the pruning point can no longer be checked (they are older than a confirmed anchor).
pub const MAX_RESOLVED_ANCHORS: usize = 10_000;

/// How SQLite syncs commits. Only [`SyncMode::Full`] gives "durable before acknowledged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `synchronous=FULL`: every commit is fsynced before callers are answered. The only production mode.
    #[default]
    Full,
    /// `synchronous=OFF`: no fsync at all. For the benchmark baseline only; a crash of the machine may lose
    /// acknowledged usage.
    Off,
}

/// Where the ledger lives and how it signs and batches.
#[derive(Clone)]
pub struct LedgerConfig {
    /// The SQLite database file (its directory must exist; `-wal` sits beside it).
    pub path: PathBuf,
    /// Ed25519 seed of the proxy key that signs every row. Never logged (`Debug` redacts it).
    pub signing_seed: [u8; 32],
    /// Most requests the writer takes into one transaction (default 4096).
    pub max_batch: usize,
    /// How long the writer waits after the first queued request to gather a batch (default 2 ms).
    pub max_batch_delay: Duration,
    /// Capacity of the request channel to the writer; callers wait (backpressure) when it is full.
    pub queue_capacity: usize,
    /// Durability mode (default [`SyncMode::Full`]).
    pub sync: SyncMode,
    /// Make batches of usage durable in the usage log (`<path>.usage-log`, one `fdatasync` each)
    /// and copy them into SQLite about once a second, instead of one SQLite transaction per batch
    /// (default true). A log left by a previous run is copied at open either way.
    pub usage_log: bool,
}

impl LedgerConfig {
    /// A configuration with the defaults: batches of up to 4096 requests, 2 ms gathering delay,
    /// a queue of 65 536 requests, `synchronous=FULL`.
    pub fn new(path: impl Into<PathBuf>, signing_seed: [u8; 32]) -> Self {
        LedgerConfig {
            path: path.into(),
            signing_seed,
            max_batch: 4096,
            max_batch_delay: Duration::from_millis(2),
            queue_capacity: 65_536,
            sync: SyncMode::Full,
            usage_log: true,
        }
    }
}

impl fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerConfig")
            .field("path", &self.path)
            .field("signing_seed", &"<redacted>")
            .field("max_batch", &self.max_batch)
            .field("max_batch_delay", &self.max_batch_delay)
            .field("usage_log", &self.usage_log)
            .field("queue_capacity", &self.queue_capacity)
            .field("sync", &self.sync)
            .finish()
    }
}

/// Which side of the proxy an account belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// A client (pays per token).
    Client,
    /// A worker (earns per token).
    Worker,
}

impl Party {
    /// The stored code: 0 for clients, 1 for workers.
    pub fn code(self) -> u8 {
        match self {
            Party::Client => 0,
            Party::Worker => 1,
        }
    }

    /// The inverse of [`Party::code`].
    pub fn from_code(code: i64) -> Option<Party> {
        match code {
            0 => Some(Party::Client),
            1 => Some(Party::Worker),
            _ => None,
        }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Party::Client => "client",
            Party::Worker => "worker",
        })
    }
}

/// One counterparty: its side and its owner address text (at most [`MAX_OWNER_LEN`] bytes, not empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey {
    /// Client or worker.
    pub party: Party,
    /// The owner's TON address, as text.
    pub owner: String,
}

impl AccountKey {
    /// A key for `party` and `owner`.
    pub fn new(party: Party, owner: impl Into<String>) -> Self {
        AccountKey {
            party,
            owner: owner.into(),
        }
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.party, self.owner)
    }
}

/// The durable state of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Whose account this is.
    pub key: AccountKey,
    /// The counterparty's contract address (empty until the proxy learns it).
    pub sc_address: String,
    /// Adjusted tokens durably accounted (monotone).
    pub committed_db: u64,
    /// Adjusted tokens covered by a save-state marker seen on chain (monotone, ≤ `committed_db`);
    /// signed payments are issued only for this value.
    pub committed_chain: u64,
    /// Last `tokensUsed` (client) or `tokens` (worker) seen on the contract.
    pub onchain_tokens: u64,
    /// Last balance seen on the contract, nanoTON.
    pub onchain_balance: u128,
    /// Last stake seen on the contract, nanoTON.
    pub onchain_stake: u128,
    /// Last contract state seen (0 normal, 1 closing, 2 closed).
    pub onchain_state: u8,
    /// Unix time of the last change of this record.
    pub updated_unix: u64,
    /// The db seqno of the transaction that last wrote this record.
    pub row_seqno: u64,
}

impl AccountRecord {
    /// A fresh, all-zero record for `key`.
    pub fn empty(key: AccountKey) -> Self {
        AccountRecord {
            key,
            sc_address: String::new(),
            committed_db: 0,
            committed_chain: 0,
            onchain_tokens: 0,
            onchain_balance: 0,
            onchain_stake: 0,
            onchain_state: 0,
            updated_unix: 0,
            row_seqno: 0,
        }
    }
}

/// Usage of one finished request (or several, summed) for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    /// The account to charge (client) or credit (worker).
    pub key: AccountKey,
    /// Adjusted tokens to add.
    pub tokens: u64,
}

/// What the proxy last saw on a counterparty's contract.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OnchainState {
    /// The contract address (at most [`MAX_SC_ADDRESS_LEN`] bytes).
    pub sc_address: String,
    /// `tokensUsed` (client) or `tokens` (worker).
    pub tokens: u64,
    /// Balance, nanoTON.
    pub balance: u128,
    /// Stake, nanoTON.
    pub stake: u128,
    /// Contract state (0 normal, 1 closing, 2 closed).
    pub state: u8,
}

/// A save-state marker registered by [`crate::Ledger::begin_anchor`]: send exactly these values on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The db seqno the marker anchors: it covers every delta acknowledged with a seqno ≤ this one.
    pub seqno: u64,
    /// The random session hash sent with the marker.
    pub session_hash: [u8; 32],
}

/// Where an anchor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorStatus {
    /// Registered, not yet seen on chain.
    Pending,
    /// Seen on chain; its snapshot became `committed_chain`.
    Confirmed,
    /// A newer anchor was confirmed first; this one no longer matters.
    Superseded,
}

impl AnchorStatus {
    /// The stored code.
    pub fn code(self) -> u8 {
        match self {
            AnchorStatus::Pending => 0,
            AnchorStatus::Confirmed => 1,
            AnchorStatus::Superseded => 2,
        }
    }

    /// The inverse of [`AnchorStatus::code`].
    pub fn from_code(code: i64) -> Option<AnchorStatus> {
        match code {
            0 => Some(AnchorStatus::Pending),
            1 => Some(AnchorStatus::Confirmed),
            2 => Some(AnchorStatus::Superseded),
            _ => None,
        }
    }
}

impl fmt::Display for AnchorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnchorStatus::Pending => "pending",
            AnchorStatus::Confirmed => "confirmed",
            AnchorStatus::Superseded => "superseded",
        })
    }
}

/// One anchor as shown in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorView {
    /// The marker.
    pub anchor: Anchor,
    /// Where it stands.
    pub status: AnchorStatus,
    /// Unix time it was registered.
    pub created_unix: u64,
    /// How many account values it anchors (only pending anchors keep theirs).
    pub entries: usize,
}

/// The in-memory view of the ledger (for status commands and checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The proxy public key the ledger is signed with.
    pub public_key: [u8; 32],
    /// The seqno of the newest committed transaction.
    pub db_seqno: u64,
    /// Anchors below this seqno were pruned and cannot be checked any more.
    pub pruned_below: u64,
    /// All accounts, sorted by key.
    pub accounts: Vec<AccountRecord>,
    /// Retained anchors, oldest first.
    pub anchors: Vec<AnchorView>,
}

impl Snapshot {
    /// The account with `key`, if any.
    pub fn account(&self, key: &AccountKey) -> Option<&AccountRecord> {
        self.accounts
            .binary_search_by(|r| r.key.cmp(key))
            .ok()
            .and_then(|i| self.accounts.get(i))
    }

    /// The newest confirmed anchor, if any.
    pub fn confirmed_anchor(&self) -> Option<Anchor> {
        self.anchors
            .iter()
            .rev()
            .find(|a| a.status == AnchorStatus::Confirmed)
            .map(|a| a.anchor)
    }
}
