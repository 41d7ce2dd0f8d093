//! The chain state machine: accounts (`TonAddress -> ShardAccount`), a global logical time, per-account
//! transaction history, and message execution on tycho-executor (real TVM, real signature checks).
//!
//! What lives here: deterministic, synchronous execution. Given the same config, inputs and `now`, it
//! produces the same states and transactions, which is what lets `store` recover by replay. What must not:
//! clocks, files, locks or HTTP (see `node`, `store`, `server`).
//!
//! Message routing: an input (external or injected internal message) runs on its destination, then every
//! internal out-message is delivered in FIFO order (as @ton/sandbox does), bounces included (the executor
//! builds them). External out-messages are dropped. One input may cause at most [`MAX_TXS_PER_INPUT`]
//! transactions, so a ping-pong pair of contracts cannot stall the node.

use std::collections::{BTreeMap, HashMap, VecDeque};

use cocoon_ton::chain::{
    AccountState as ApiAccount, AccountStatus as ApiStatus, GetMethodResult, MsgInfo, StackEntry,
    TxId, TxInfo,
};
use cocoon_ton::TonAddress;
use tycho_executor::{Executor, ExecutorParams, ParsedConfig, TxError};
use tycho_types::cell::{Cell, CellBuilder, CellSlice, HashBytes, Lazy};
use tycho_types::dict::Dict;
use tycho_types::models::{
    AccountState, BlockchainConfig, BlockchainConfigParams, IntAddr, MsgInfo as TyMsgInfo,
    OptionalAccount, OwnedMessage, ShardAccount, WorkchainDescription,
};
use tycho_types::num::Tokens;
use tycho_vm::{OwnedCellSlice, RcStackValue, Stack, VmCaller, VmGetterArgs};

/// The default config: @ton/sandbox 0.41.0 `defaultConfig` (TON mainnet config, masterchain seqno
/// 52956904), written out once as a BOC. Param 12 is rewritten on load (see [`patch_workchains`]).
pub const DEFAULT_CONFIG_BOC: &[u8] = include_bytes!("../data/sandbox-default-config.boc");

/// Most transactions one input may cause.
pub const MAX_TXS_PER_INPUT: usize = 1_000;
/// Most transactions kept per account (oldest dropped first).
pub const MAX_HISTORY_PER_ACCOUNT: usize = 10_000;
/// Most accounts (a dev chain; bounds memory and snapshots).
pub const MAX_ACCOUNTS: usize = 100_000;
/// Config contract address (the masterchain `-1:5555…` as on TON).
const CONFIG_ADDR: HashBytes = HashBytes([0x55; 32]);

/// Ledger errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("not a valid message: {0}")]
    BadMessage(String),
    #[error("expected an {0} message")]
    WrongKind(&'static str),
    #[error("destination is not a standard address")]
    BadAddress,
    #[error("external message was not accepted by the contract")]
    Rejected,
    #[error("executor: {0}")]
    Executor(String),
    #[error("config: {0}")]
    Config(String),
    #[error("account {0} is not active")]
    NotActive(TonAddress),
    #[error("get-method: {0}")]
    Getter(String),
    #[error("too many accounts")]
    Full,
    #[error("cell: {0}")]
    Cell(#[from] tycho_types::error::Error),
}

/// One stored transaction.
#[derive(Clone, Debug)]
pub struct TxRecord {
    pub lt: u64,
    pub hash: [u8; 32],
    pub now: u32,
    /// The raw `Transaction` cell.
    pub cell: Cell,
}

/// What one executed transaction looked like (for callers and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxSummary {
    pub account: TonAddress,
    pub lt: u64,
    pub hash: [u8; 32],
    /// Compute-phase exit code (None when the phase was skipped).
    pub exit_code: Option<i32>,
    pub gas_used: u64,
    pub total_fees: u128,
    pub aborted: bool,
    pub compute_skipped: bool,
    pub in_op: Option<u32>,
    pub out_msgs: usize,
}

/// Rewrites config param 12 from `workchain_v2#a7` (current TON mainnet) to `workchain#a6`, which is
/// the only form tycho 0.3 parses. The fields after the tag are the same.
pub fn patch_workchains(p: &mut BlockchainConfigParams) -> Result<(), LedgerError> {
    let Some(raw) = p.get_raw_cell(12)? else {
        return Ok(());
    };
    let dict: Dict<i32, CellSlice<'_>> = raw.parse()?;
    let mut out = Dict::<i32, WorkchainDescription>::new();
    for e in dict.iter() {
        let (wc, mut v) = e?;
        let tag = v.load_u8()?;
        if tag != 0xa6 && tag != 0xa7 {
            return Err(LedgerError::Config(format!(
                "unknown workchain tag {tag:#x}"
            )));
        }
        let mut b = CellBuilder::new();
        b.store_u8(0xa6)?;
        b.store_slice(v)?;
        out.set(wc, b.build()?.parse::<WorkchainDescription>()?)?;
    }
    p.set_workchains(&out)?;
    Ok(())
}

/// The chain state.
pub struct Ledger {
    params: BlockchainConfigParams,
    parsed: ParsedConfig,
    accounts: BTreeMap<TonAddress, ShardAccount>,
    history: HashMap<TonAddress, VecDeque<TxRecord>>,
    lt: u64,
    /// `now` the parsed storage prices were selected for.
    prices_now: u32,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("accounts", &self.accounts.len())
            .field("lt", &self.lt)
            .finish()
    }
}

/// First logical time handed out (TON-like magnitudes; any positive start works).
pub const START_LT: u64 = 1_000_000;

impl Ledger {
    /// An empty chain with the given config params root (a `ConfigParams` dictionary cell).
    pub fn new(config_root: Cell, now: u32) -> Result<Self, LedgerError> {
        let mut params = BlockchainConfigParams::from_raw(config_root);
        patch_workchains(&mut params)?;
        let parsed = ParsedConfig::parse(
            BlockchainConfig {
                address: CONFIG_ADDR,
                params: params.clone(),
            },
            now,
        )
        .map_err(|e| LedgerError::Config(e.to_string()))?;
        Ok(Self {
            params,
            parsed,
            accounts: BTreeMap::new(),
            history: HashMap::new(),
            lt: START_LT,
            prices_now: now,
        })
    }

    /// An empty chain with [`DEFAULT_CONFIG_BOC`].
    pub fn with_default_config(now: u32) -> Result<Self, LedgerError> {
        let root = tycho_types::boc::Boc::decode(DEFAULT_CONFIG_BOC)
            .map_err(|e| LedgerError::Config(e.to_string()))?;
        Self::new(root, now)
    }

    /// Current global logical time (the next transaction gets at least this).
    pub fn lt(&self) -> u64 {
        self.lt
    }

    /// Executes an inbound external message (a BOC root) and everything it causes.
    pub fn execute_external(&mut self, msg: Cell, now: u32) -> Result<Vec<TxSummary>, LedgerError> {
        let parsed: OwnedMessage = msg
            .parse()
            .map_err(|e| LedgerError::BadMessage(e.to_string()))?;
        let dst = match &parsed.info {
            TyMsgInfo::ExtIn(i) => std_of(&i.dst)?,
            _ => return Err(LedgerError::WrongKind("external inbound")),
        };
        let (first, outs) = match self.run_tx(dst, true, msg, now) {
            Ok(v) => v,
            Err(TxError::Skipped) => return Err(LedgerError::Rejected),
            Err(TxError::Fatal(e)) => return Err(LedgerError::Executor(e.to_string())),
        };
        let mut done = vec![first];
        self.drain(outs, now, &mut done);
        Ok(done)
    }

    /// Executes an internal message injected from outside (faucet, tests) and everything it causes.
    pub fn execute_internal(&mut self, msg: Cell, now: u32) -> Result<Vec<TxSummary>, LedgerError> {
        let parsed: OwnedMessage = msg
            .parse()
            .map_err(|e| LedgerError::BadMessage(e.to_string()))?;
        if !matches!(parsed.info, TyMsgInfo::Int(_)) {
            return Err(LedgerError::WrongKind("internal"));
        }
        let mut done = Vec::new();
        self.drain(VecDeque::from([msg]), now, &mut done);
        if done.is_empty() {
            return Err(LedgerError::Executor(
                "internal message was not executed".into(),
            ));
        }
        Ok(done)
    }

    fn drain(&mut self, mut queue: VecDeque<Cell>, now: u32, done: &mut Vec<TxSummary>) {
        while let Some(msg) = queue.pop_front() {
            if done.len() >= MAX_TXS_PER_INPUT {
                tracing::warn!(
                    dropped = queue.len() + 1,
                    "transaction limit per input reached"
                );
                return;
            }
            let dst = match msg.parse::<OwnedMessage>() {
                Ok(OwnedMessage {
                    info: TyMsgInfo::Int(i),
                    ..
                }) => match std_of(&i.dst) {
                    Ok(a) => a,
                    Err(_) => continue,
                },
                // External out-messages leave the chain.
                _ => continue,
            };
            match self.run_tx(dst, false, msg, now) {
                Ok((s, outs)) => {
                    done.push(s);
                    queue.extend(outs);
                }
                Err(e) => {
                    tracing::warn!(account = %dst, error = %e, "internal message not executed")
                }
            }
        }
    }

    fn run_tx(
        &mut self,
        dst: TonAddress,
        is_external: bool,
        msg: Cell,
        now: u32,
    ) -> Result<(TxSummary, VecDeque<Cell>), TxError> {
        if !self.accounts.contains_key(&dst) && self.accounts.len() >= MAX_ACCOUNTS {
            return Err(TxError::Fatal(anyhow::anyhow!("too many accounts")));
        }
        let state = match self.accounts.get(&dst) {
            Some(s) => s.clone(),
            None => empty_account()?,
        };
        if self.prices_now != now {
            // The storage prices visible to contracts depend on `now` (config param 18).
            self.parsed
                .update_storage_prices(now)
                .map_err(|e| TxError::Fatal(e.into()))?;
            self.prices_now = now;
        }
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.lt.to_be_bytes());
        let params = ExecutorParams {
            block_unixtime: now,
            block_lt: self.lt,
            rand_seed: HashBytes(seed),
            ..Default::default()
        };
        let in_op = body_op(&msg);
        let out = Executor::new(&params, &self.parsed)
            .with_min_lt(self.lt)
            .begin_ordinary(&dst.to_std(), is_external, msg, &state)?
            .commit()?;
        self.lt = out.transaction_meta.next_lt.max(self.lt + 1);
        let tx_cell = out.transaction.inner().clone();
        let tx = out.transaction.load()?;
        let (exit_code, aborted) = cocoon_ton::wire::tx_outcome(&tx_cell);
        let (gas_used, compute_skipped) = compute_info(&tx);
        let record = TxRecord {
            lt: tx.lt,
            hash: tx_cell.repr_hash().0,
            now,
            cell: tx_cell,
        };
        if out.new_state_meta.exists {
            self.accounts.insert(dst, out.new_state);
        } else {
            self.accounts.remove(&dst);
        }
        let h = self.history.entry(dst).or_default();
        if h.len() >= MAX_HISTORY_PER_ACCOUNT {
            h.pop_front();
        }
        h.push_back(record.clone());
        let outs: VecDeque<Cell> = out
            .transaction_meta
            .out_msgs
            .iter()
            .map(|m| m.inner().clone())
            .collect();
        let summary = TxSummary {
            account: dst,
            lt: record.lt,
            hash: record.hash,
            exit_code,
            gas_used,
            total_fees: out.transaction_meta.total_fees.into_inner(),
            aborted: aborted.unwrap_or(false),
            compute_skipped,
            in_op,
            out_msgs: outs.len(),
        };
        Ok((summary, outs))
    }

    /// The raw shard account, if the account exists.
    pub fn shard_account(&self, addr: &TonAddress) -> Option<&ShardAccount> {
        self.accounts.get(addr)
    }

    /// Balance, status, code, data and last transaction.
    pub fn account_state(&self, addr: &TonAddress) -> Result<ApiAccount, LedgerError> {
        let mut st = ApiAccount {
            balance: 0,
            status: ApiStatus::Uninit,
            code: None,
            data: None,
            last_tx_lt: 0,
            last_tx_hash: [0; 32],
        };
        let Some(sa) = self.accounts.get(addr) else {
            return Ok(st);
        };
        st.last_tx_lt = sa.last_trans_lt;
        st.last_tx_hash = sa.last_trans_hash.0;
        if let Some(acc) = sa.load_account()? {
            st.balance = acc.balance.tokens.into_inner();
            match acc.state {
                AccountState::Active(si) => {
                    st.status = ApiStatus::Active;
                    st.code = si.code;
                    st.data = si.data;
                }
                AccountState::Frozen(_) => st.status = ApiStatus::Frozen,
                AccountState::Uninit => {}
            }
        }
        Ok(st)
    }

    /// Runs a get-method on the current state.
    pub fn run_get_method(
        &self,
        addr: &TonAddress,
        method: &str,
        stack: Vec<StackEntry>,
        now: u32,
    ) -> Result<GetMethodResult, LedgerError> {
        let account = self
            .accounts
            .get(addr)
            .map(|sa| sa.load_account())
            .transpose()?
            .flatten()
            .ok_or(LedgerError::NotActive(*addr))?;
        let caller = VmCaller {
            libraries: Dict::new(),
            behaviour_modifiers: Default::default(),
            config: self.params.clone(),
        };
        let mut args = VmGetterArgs::default();
        args.now = now;
        let input = stack.into_iter().map(to_vm).collect::<Vec<_>>();
        let out = caller
            .call_getter_ext(&account, method, input, &args, None)
            .map_err(|e| match e {
                tycho_vm::VmGetterError::NoCode => LedgerError::NotActive(*addr),
                other => LedgerError::Getter(other.to_string()),
            })?;
        let stack = out
            .stack
            .iter()
            .map(from_vm)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GetMethodResult {
            exit_code: out.exit_code,
            gas_used: out.gas_used,
            stack,
        })
    }

    /// One page of an account's transactions, newest first, back to `since_lt` (exclusive), at
    /// most `limit`: the newest ones, or those from (and including) the transaction `from`.
    /// None when `from` is not one of the account's transactions.
    pub fn transactions(
        &self,
        addr: &TonAddress,
        from: Option<TxId>,
        since_lt: Option<u64>,
        limit: usize,
    ) -> Option<Vec<TxRecord>> {
        let Some(h) = self.history.get(addr) else {
            return from.is_none().then(Vec::new);
        };
        let end = match from {
            None => h.len(),
            Some(f) => h.iter().rposition(|t| t.lt == f.lt && t.hash == f.hash)? + 1,
        };
        Some(
            h.iter()
                .take(end)
                .rev()
                .take_while(|t| since_lt.is_none_or(|s| t.lt > s))
                .take(limit)
                .cloned()
                .collect(),
        )
    }

    /// All accounts (for snapshots).
    pub(crate) fn accounts(&self) -> &BTreeMap<TonAddress, ShardAccount> {
        &self.accounts
    }

    /// All histories (for snapshots).
    pub(crate) fn histories(&self) -> &HashMap<TonAddress, VecDeque<TxRecord>> {
        &self.history
    }

    /// Restores state from a snapshot.
    pub(crate) fn restore(
        &mut self,
        accounts: BTreeMap<TonAddress, ShardAccount>,
        history: HashMap<TonAddress, VecDeque<TxRecord>>,
        lt: u64,
    ) {
        self.accounts = accounts;
        self.history = history;
        self.lt = lt;
    }
}

/// The API view of a stored transaction.
pub fn tx_info(r: &TxRecord) -> TxInfo {
    use tycho_types::models::Transaction;
    let (exit_code, aborted) = cocoon_ton::wire::tx_outcome(&r.cell);
    let mut info = TxInfo {
        lt: r.lt,
        hash: r.hash,
        utime: r.now,
        fee: 0,
        in_msg: None,
        out_msgs: Vec::new(),
        exit_code,
        aborted,
    };
    if let Ok(tx) = r.cell.parse::<Transaction>() {
        info.fee = tx.total_fees.tokens.into_inner();
        info.in_msg = tx.in_msg.as_ref().and_then(msg_info);
        for e in tx.out_msgs.values().flatten() {
            if let Some(m) = msg_info(&e) {
                info.out_msgs.push(m);
            }
        }
    }
    info
}

fn msg_info(c: &Cell) -> Option<MsgInfo> {
    let m: OwnedMessage = c.parse().ok()?;
    let body = CellSlice::apply(&m.body)
        .ok()
        .and_then(|s| CellBuilder::build_from(s).ok());
    let body = body.filter(|b| b.bit_len() > 0 || b.reference_count() > 0);
    let addr = |a: &IntAddr| std_of(a).ok();
    Some(match &m.info {
        TyMsgInfo::Int(i) => MsgInfo {
            source: addr(&i.src),
            destination: addr(&i.dst),
            value: i.value.tokens.into_inner(),
            fwd_fee: i.fwd_fee.into_inner(),
            body,
        },
        TyMsgInfo::ExtIn(i) => MsgInfo {
            source: None,
            destination: addr(&i.dst),
            value: 0,
            fwd_fee: 0,
            body,
        },
        TyMsgInfo::ExtOut(i) => MsgInfo {
            source: addr(&i.src),
            destination: None,
            value: 0,
            fwd_fee: 0,
            body,
        },
    })
}

fn std_of(a: &IntAddr) -> Result<TonAddress, LedgerError> {
    match a {
        IntAddr::Std(s) if s.anycast.is_none() => Ok(TonAddress::from_std(s)),
        _ => Err(LedgerError::BadAddress),
    }
}

fn empty_account() -> Result<ShardAccount, TxError> {
    Ok(ShardAccount {
        account: Lazy::new(&OptionalAccount::EMPTY)?,
        last_trans_hash: HashBytes::ZERO,
        last_trans_lt: 0,
    })
}

fn body_op(msg: &Cell) -> Option<u32> {
    let m: OwnedMessage = msg.parse().ok()?;
    let mut s = CellSlice::apply(&m.body).ok()?;
    s.load_u32().ok()
}

fn compute_info(tx: &tycho_types::models::Transaction) -> (u64, bool) {
    use tycho_types::models::{ComputePhase, TxInfo as TyTx};
    match tx.load_info() {
        Ok(TyTx::Ordinary(o)) => match o.compute_phase {
            ComputePhase::Executed(e) => (e.gas_used.into_inner(), false),
            ComputePhase::Skipped(_) => (0, true),
        },
        _ => (0, false),
    }
}

fn to_vm(e: StackEntry) -> RcStackValue {
    match e {
        StackEntry::Int(v) => RcStackValue::new_dyn_value(v),
        StackEntry::Cell(c) => RcStackValue::new_dyn_value(c),
        StackEntry::Slice(c) => RcStackValue::new_dyn_value(OwnedCellSlice::new_allow_exotic(c)),
        StackEntry::Null => Stack::make_null(),
    }
}

fn from_vm(v: &RcStackValue) -> Result<StackEntry, LedgerError> {
    if let Some(i) = v.as_int() {
        return Ok(StackEntry::Int(i.clone()));
    }
    if let Some(c) = v.as_cell() {
        return Ok(StackEntry::Cell(c.clone()));
    }
    if let Some(s) = v.as_cell_slice() {
        return Ok(StackEntry::Slice(CellBuilder::build_from(s.apply())?));
    }
    if let Some(b) = v.as_cell_builder() {
        return Ok(StackEntry::Cell(b.clone().build()?));
    }
    if v.raw_ty() == 0 {
        return Ok(StackEntry::Null);
    }
    Err(LedgerError::Getter(
        "unsupported value on the result stack (tuple or continuation)".into(),
    ))
}

/// Builds an internal message cell the way @ton/core's `storeMessage` does (StateInit and body inline
/// when they fit, else in refs), so injected messages match the sandbox's bit for bit.
pub fn internal_message(
    src: &TonAddress,
    dst: &TonAddress,
    value: u128,
    bounce: bool,
    init: Option<&tycho_types::models::StateInit>,
    body: &Cell,
) -> Result<Cell, LedgerError> {
    use tycho_types::cell::Store;
    use tycho_types::models::IntMsgInfo;
    let ctx = <Cell as tycho_types::cell::CellFamily>::empty_context();
    let info = IntMsgInfo {
        ihr_disabled: true,
        bounce,
        bounced: false,
        src: IntAddr::Std(src.to_std()),
        dst: IntAddr::Std(dst.to_std()),
        value: Tokens::new(value).into(),
        extra_flags: Default::default(),
        fwd_fee: Tokens::ZERO,
        created_lt: 0,
        created_at: 0,
    };
    let mut b = CellBuilder::new();
    b.store_bit_zero()?; // int_msg_info$0
    info.store_into(&mut b, ctx)?;
    match init {
        Some(si) => {
            b.store_bit_one()?;
            let mut ib = CellBuilder::new();
            si.store_into(&mut ib, ctx)?;
            let need_ref = (b.spare_capacity_bits() as usize).saturating_sub(2)
                < ib.size_bits() as usize + body.bit_len() as usize;
            if need_ref {
                b.store_bit_one()?;
                b.store_reference(ib.build()?)?;
            } else {
                b.store_bit_zero()?;
                b.store_builder(&ib)?;
            }
        }
        None => b.store_bit_zero()?,
    }
    let need_ref = (b.spare_capacity_bits() as usize).saturating_sub(1) < body.bit_len() as usize
        || b.size_refs() as usize + body.reference_count() as usize > 4;
    if need_ref {
        b.store_bit_one()?;
        b.store_reference(body.clone())?;
    } else {
        b.store_bit_zero()?;
        b.store_slice(body.as_slice()?)?;
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_config_parses_and_patches() {
        let l = Ledger::with_default_config(1_760_000_000).unwrap();
        assert_eq!(l.lt(), START_LT);
        assert!(l.parsed.workchains.contains_key(&0));
    }

    #[test]
    fn rejects_non_external_and_empty_cells() {
        let mut l = Ledger::with_default_config(1).unwrap();
        let empty = CellBuilder::new().build().unwrap();
        assert!(matches!(
            l.execute_external(empty.clone(), 1),
            Err(LedgerError::BadMessage(_))
        ));
        let a = TonAddress::new(0, [1; 32]);
        let int = internal_message(&a, &a, 1, false, None, &empty).unwrap();
        assert!(matches!(
            l.execute_external(int, 1),
            Err(LedgerError::WrongKind(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// Arbitrary bytes never panic the node: they fail to decode or are rejected with an error.
        #[test]
        fn random_input_is_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut l = Ledger::with_default_config(1).unwrap();
            if let Ok(cell) = cocoon_ton::cells::decode_boc(&bytes, 1024) {
                prop_assert!(l.execute_external(cell, 1).is_err());
            }
        }
    }
}
