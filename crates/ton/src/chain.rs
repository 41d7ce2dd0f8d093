//! The one narrow interface nodes use to talk to TON: the [`Chain`] trait and the plain data it returns.
//!
//! What lives here: the trait, its value types and its error. What must not: any transport (the TON HTTP
//! API client is `http::HttpChain`; the local chain implements the same HTTP API in `cocoon-localnet`).
//! Kept small on purpose so a proof-checking liteserver client can slot in later (DESIGN principle 4).

use async_trait::async_trait;
use num_bigint::BigInt;
use tycho_types::cell::Cell;

use crate::address::TonAddress;
use crate::cells::CellError;

/// One TVM stack value as the HTTP API carries it. Tuples are not needed by our get-methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackEntry {
    /// A 257-bit integer.
    Int(BigInt),
    /// A cell.
    Cell(Cell),
    /// A slice (carried as the cell holding exactly its bits and refs).
    Slice(Cell),
    /// `null`.
    Null,
}

impl StackEntry {
    /// Small helper for building argument stacks.
    pub fn int(v: impl Into<BigInt>) -> Self {
        Self::Int(v.into())
    }
}

/// Result of a get-method run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetMethodResult {
    /// TVM exit code (0 or 1 is success).
    pub exit_code: i32,
    /// Gas used.
    pub gas_used: u64,
    /// Result stack, bottom first (the first declared return value first).
    pub stack: Vec<StackEntry>,
}

impl GetMethodResult {
    /// `true` when the getter finished normally.
    pub fn success(&self) -> bool {
        self.exit_code == 0 || self.exit_code == 1
    }
}

/// Account status as the HTTP API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// No account, or an account without code (the API says "uninitialized" for both).
    Uninit,
    /// Deployed.
    Active,
    /// Frozen for unpaid storage.
    Frozen,
}

/// Balance, code and data of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountState {
    /// Balance in nanoTON.
    pub balance: u128,
    /// Status.
    pub status: AccountStatus,
    /// Code cell (active accounts only).
    pub code: Option<Cell>,
    /// Data cell (active accounts only).
    pub data: Option<Cell>,
    /// Logical time and hash of the last transaction (0 and zeros when there is none).
    pub last_tx_lt: u64,
    /// Hash of the last transaction.
    pub last_tx_hash: [u8; 32],
}

/// A message as listed in a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgInfo {
    /// Sender (None for external inbound messages).
    pub source: Option<TonAddress>,
    /// Receiver (None for external outbound messages).
    pub destination: Option<TonAddress>,
    /// Attached nanoTON.
    pub value: u128,
    /// Forwarding fee still carried by an internal message (collected when it is delivered;
    /// the sender's transaction fee holds the rest). 0 for external messages.
    pub fwd_fee: u128,
    /// Body cell. None when the API gave none, when it decoded the body as a text comment
    /// (toncenter turns op-0 bodies into `msg.dataText`), or when the body did not decode.
    pub body: Option<Cell>,
}

/// Names one transaction of an account (toncenter's `lt` + `hash` pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxId {
    /// Logical time.
    pub lt: u64,
    /// Transaction hash.
    pub hash: [u8; 32],
}

/// One transaction of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxInfo {
    /// Logical time.
    pub lt: u64,
    /// Transaction hash.
    pub hash: [u8; 32],
    /// Unix time.
    pub utime: u32,
    /// Fees in nanoTON as the API reports them. On toncenter (tonlib) that is the transaction's
    /// total fees plus the forwarding fees its out-messages still carry; the local chain reports
    /// the transaction's total fees only. Nothing in the nodes reads it.
    pub fee: u128,
    /// Inbound message.
    pub in_msg: Option<MsgInfo>,
    /// Outbound messages.
    pub out_msgs: Vec<MsgInfo>,
    /// Compute-phase exit code, when the raw transaction was given and the phase ran.
    pub exit_code: Option<i32>,
    /// Whether the transaction was aborted, when the raw transaction was given.
    pub aborted: Option<bool>,
}

/// Why a chain call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error("transport: {0}")]
    Transport(String),
    #[error("request timed out")]
    Timeout,
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("API error {code}: {message}")]
    Api { code: i64, message: String },
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed response: {0}")]
    Decode(String),
    #[error("cell: {0}")]
    Cell(#[from] CellError),
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// What nodes need from TON. Object-safe; implementations must be cheap to share behind an `Arc`.
#[async_trait]
pub trait Chain: Send + Sync {
    /// Broadcasts a serialized external message.
    async fn send_boc(&self, boc: &[u8]) -> Result<(), ChainError>;
    /// Runs a get-method on the latest state.
    async fn run_get_method(
        &self,
        addr: &TonAddress,
        method: &str,
        stack: Vec<StackEntry>,
    ) -> Result<GetMethodResult, ChainError>;
    /// Balance, status, code and data.
    async fn account_state(&self, addr: &TonAddress) -> Result<AccountState, ChainError>;
    /// The newest transactions with `lt > since_lt` (any when `None`), newest first, at most
    /// `limit`: with more than `limit` newer ones, the oldest of them are not in this page.
    async fn transactions(
        &self,
        addr: &TonAddress,
        since_lt: Option<u64>,
        limit: u32,
    ) -> Result<Vec<TxInfo>, ChainError>;
    /// The page after a full page: newest first, starting at (and including) `from`, going
    /// back to `since_lt` (exclusive), at most `limit`.
    async fn transactions_from(
        &self,
        addr: &TonAddress,
        from: TxId,
        since_lt: Option<u64>,
        limit: u32,
    ) -> Result<Vec<TxInfo>, ChainError>;
    /// The chain's unix time: that of the latest block the API reads state at, which is what
    /// get-methods see as `now` (and what a contract's next transaction sees, a few seconds on).
    async fn time(&self) -> Result<u32, ChainError>;
}
