//! Our four Cocoon contracts as the nodes see them: the compiled codes (embedded from
//! `contracts/build/*.boc`, hash-checked against `contracts/build/hashes.json` in a test), init data
//! builders in exactly the layouts of `contracts/src` (docs/CONTRACTS.md), contract addresses, builders of
//! every message body the nodes send, and parsers of the storage, get-method results and of what the proxy
//! contract receives (reports, save-state markers).
//!
//! What must not live here: signing (see `payments`), wallets (see `wallet`) or any I/O.
//! Every builder writes `op:uint32 query_id:uint64 ...` as the contracts read it; parsers are strict
//! (trailing data is an error) because the contracts are too.

use num_bigint::{BigInt, Sign};
use tycho_types::cell::{Cell, CellBuilder, CellSlice, HashBytes};
use tycho_types::dict::Dict;
use tycho_types::num::Tokens;

use crate::address::TonAddress;
use crate::cells::{self, load_addr, store_addr, CellError, MAX_BOC_BYTES};
use crate::chain::StackEntry;

/// Code BOCs as committed by the contracts build.
pub const ROOT_CODE_BOC: &[u8] = include_bytes!("../../../contracts/build/root.boc");
/// Proxy contract code BOC.
pub const PROXY_CODE_BOC: &[u8] = include_bytes!("../../../contracts/build/proxy.boc");
/// Client contract code BOC.
pub const CLIENT_CODE_BOC: &[u8] = include_bytes!("../../../contracts/build/client.boc");
/// Worker contract code BOC.
pub const WORKER_CODE_BOC: &[u8] = include_bytes!("../../../contracts/build/worker.boc");

/// Which contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContractKind {
    Root,
    Proxy,
    Client,
    Worker,
}

impl ContractKind {
    /// All four, in a fixed order.
    pub const ALL: [ContractKind; 4] = [Self::Root, Self::Proxy, Self::Client, Self::Worker];

    /// Name used in `contracts/build/hashes.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Proxy => "proxy",
            Self::Client => "client",
            Self::Worker => "worker",
        }
    }

    fn boc(self) -> &'static [u8] {
        match self {
            Self::Root => ROOT_CODE_BOC,
            Self::Proxy => PROXY_CODE_BOC,
            Self::Client => CLIENT_CODE_BOC,
            Self::Worker => WORKER_CODE_BOC,
        }
    }

    /// The code cell.
    pub fn code(self) -> Result<Cell, CellError> {
        cells::decode_boc(self.boc(), MAX_BOC_BYTES)
    }
}

/// Op codes (docs/CONTRACTS.md; the reference's numbers).
pub mod op {
    pub const EXCESSES: u32 = 0x2565934c;
    pub const PAYOUT: u32 = 0xc59a7cd3;
    pub const DO_NOT_PROCESS: u32 = 0x9a1247c0;
    pub const PROXY_SAVE_STATE: u32 = 0x53109c0f;

    pub const ROOT_ADD_WORKER_TYPE: u32 = 0xe34b1c60;
    pub const ROOT_DEL_WORKER_TYPE: u32 = 0x8d94a79a;
    pub const ROOT_ADD_MODEL_TYPE: u32 = 0xc146134d;
    pub const ROOT_DEL_MODEL_TYPE: u32 = 0x92b11c18;
    pub const ROOT_ADD_PROXY_TYPE: u32 = 0x71860e80;
    pub const ROOT_DEL_PROXY_TYPE: u32 = 0x3c41d0b2;
    pub const ROOT_REGISTER_PROXY: u32 = 0x927c7cb5;
    pub const ROOT_UNREGISTER_PROXY: u32 = 0x6d49eaf2;
    pub const ROOT_UPDATE_PROXY: u32 = 0x9c7924ba;
    pub const ROOT_CHANGE_FEES: u32 = 0xc52ed8d4;
    pub const ROOT_CHANGE_PARAMS: u32 = 0x022fa189;
    pub const ROOT_UPGRADE_CONTRACTS: u32 = 0xa2370f61;
    pub const ROOT_UPGRADE_CODE: u32 = 0x11aefd51;
    pub const ROOT_RESET: u32 = 0x563c1d96;
    pub const ROOT_UPGRADE_FULL: u32 = 0x4f7c5789;
    pub const ROOT_CHANGE_OWNER: u32 = 0xc4a1ae54;
    /// Struct version 4+ (C++ `Opcodes.hpp` at 9060ce5; cocoon-contracts edafcb2).
    pub const ROOT_CHANGE_KEY_MANAGER: u32 = 0xb01c0fe9;
    pub const ROOT_ADD_PUBLIC_KEY: u32 = 0x6e5a646a;
    pub const ROOT_ADD_PUBLIC_KEY_SIGNED: u32 = 0x9e0e1821;
    /// Ours (contracts/README.md): no public upstream op removes a key or writes the verified keys.
    pub const ROOT_DEL_PUBLIC_KEY: u32 = 0x2f543655;
    pub const ROOT_ADD_VERIFIED_KEY: u32 = 0xb5877180;
    pub const ROOT_DEL_VERIFIED_KEY: u32 = 0x121b56bc;

    pub const WORKER_PROXY_REQUEST: u32 = 0x4d725d2c;
    pub const WORKER_PROXY_PAYOUT_REQUEST: u32 = 0x08e7d036;
    pub const CLIENT_PROXY_REQUEST: u32 = 0x65448ff4;
    pub const CLIENT_PROXY_TOP_UP: u32 = 0x5cfc6b87;
    pub const CLIENT_PROXY_REGISTER: u32 = 0xa35cb580;
    pub const CLIENT_PROXY_REFUND_GRANTED: u32 = 0xc68ebc7b;
    pub const CLIENT_PROXY_REFUND_FORCE: u32 = 0xf4c354c9;

    pub const EXT_PROXY_PAYOUT_REQUEST: u32 = 0x7610e6eb;
    pub const EXT_PROXY_INCREASE_STAKE: u32 = 0x9713f187;
    pub const OWNER_PROXY_CLOSE: u32 = 0xb51d5a01;
    pub const PROXY_CLOSE_SIGNED: u32 = 0x636a4391;
    pub const PROXY_CLOSE_COMPLETE_SIGNED: u32 = 0xe511abc7;

    pub const WORKER_PAYOUT_SIGNED: u32 = 0xa040ad28;
    pub const WORKER_LAST_PAYOUT_SIGNED: u32 = 0xf5f26a36;
    pub const OWNER_WORKER_REGISTER: u32 = 0x26ed7f65;

    pub const EXT_CLIENT_TOP_UP: u32 = 0xf172e6c2;
    pub const CLIENT_CHARGE_SIGNED: u32 = 0xbb63ff93;
    pub const CLIENT_GRANT_REFUND_SIGNED: u32 = 0xefd711e1;
    pub const OWNER_CLIENT_REGISTER: u32 = 0xc45f9f3b;
    pub const OWNER_CLIENT_CHANGE_SECRET_HASH: u32 = 0xa9357034;
    pub const OWNER_CLIENT_CHANGE_SECRET_HASH_AND_TOP_UP: u32 = 0x8473b408;
    pub const OWNER_CLIENT_REQUEST_REFUND: u32 = 0xfafa6cc1;
    pub const OWNER_CLIENT_INCREASE_STAKE: u32 = 0x6a1f6a60;
    pub const OWNER_CLIENT_WITHDRAW: u32 = 0xda068e78;
}

/// Contract states (`uint2`).
pub mod state {
    pub const NORMAL: u8 = 0;
    pub const CLOSING: u8 = 1;
    pub const CLOSED: u8 = 2;
}

/// The params struct version new roots are created at (and `CocoonParams::default()` carries).
pub const PARAMS_STRUCT_VERSION: u8 = 5;
/// The params struct versions read and written: 3, 4 and 5 share the params cell; the version also says
/// which cells the root storage has (4: the key manager, 5: the verified keys). 0..2 (fewer fields) are
/// refused with [`CellError::UnsupportedStructVersion`], as is anything above 5.
pub const PARAMS_STRUCT_VERSIONS: std::ops::RangeInclusive<u8> = 3..=5;
/// Minimum value attached to paid operations (0.1 TON).
pub const COMMISSION_ESTIMATE: u128 = 100_000_000;

/// `CocoonParams` (src/common/params.tolk), without the code refs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CocoonParams {
    /// The root's storage version (3, 4 or 5). Proxy, client and worker contracts carry the root's
    /// number in their copy of the params, so it is part of their addresses.
    pub struct_version: u8,
    pub params_version: u32,
    pub unique_id: u32,
    pub is_test: bool,
    pub price_per_token: u128,
    pub worker_fee_per_token: u128,
    pub prompt_mult: u32,
    pub cached_mult: u32,
    pub completion_mult: u32,
    pub reasoning_mult: u32,
    pub proxy_delay_before_close: u32,
    pub client_delay_before_close: u32,
    pub min_proxy_stake: u128,
    pub min_client_stake: u128,
}

impl Default for CocoonParams {
    /// The reference fake-TON numbers (notes §4.1, the contract tests' `defaultParams`).
    fn default() -> Self {
        Self {
            struct_version: PARAMS_STRUCT_VERSION,
            params_version: 1,
            unique_id: 13,
            is_test: true,
            price_per_token: 2000,
            worker_fee_per_token: 1000,
            prompt_mult: 10000,
            cached_mult: 10000,
            completion_mult: 10000,
            reasoning_mult: 10000,
            proxy_delay_before_close: 600,
            client_delay_before_close: 300,
            min_proxy_stake: 1_000_000_000,
            min_client_stake: 1_000_000_000,
        }
    }
}

/// The three code refs a params cell may carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamsCodes {
    pub proxy: Option<Cell>,
    pub worker: Option<Cell>,
    pub client: Option<Cell>,
}

impl ParamsCodes {
    /// What the root keeps: all three of our codes.
    pub fn for_root() -> Result<Self, CellError> {
        Ok(Self {
            proxy: Some(ContractKind::Proxy.code()?),
            worker: Some(ContractKind::Worker.code()?),
            client: Some(ContractKind::Client.code()?),
        })
    }

    /// What a proxy keeps (mask 6): worker and client code.
    pub fn for_proxy() -> Result<Self, CellError> {
        Ok(Self {
            proxy: None,
            ..Self::for_root()?
        })
    }
}

fn store_tokens(b: &mut CellBuilder, v: u128) -> Result<(), CellError> {
    cells::store(b, &Tokens::new(v))
}

fn load_tokens(s: &mut CellSlice<'_>) -> Result<u128, CellError> {
    let t: Tokens = cells::load(s)?;
    Ok(t.into_inner())
}

fn store_maybe_ref(b: &mut CellBuilder, c: &Option<Cell>) -> Result<(), CellError> {
    match c {
        Some(c) => {
            b.store_bit_one()?;
            b.store_reference(c.clone())?;
        }
        None => b.store_bit_zero()?,
    }
    Ok(())
}

fn load_maybe_ref(s: &mut CellSlice<'_>) -> Result<Option<Cell>, CellError> {
    Ok(if s.load_bit()? {
        Some(s.load_reference_cloned()?)
    } else {
        None
    })
}

impl CocoonParams {
    /// Serializes with the given codes (root: all three, proxy: worker+client, client/worker: none).
    pub fn to_cell(&self, codes: &ParamsCodes) -> Result<Cell, CellError> {
        if !PARAMS_STRUCT_VERSIONS.contains(&self.struct_version) {
            return Err(CellError::UnsupportedStructVersion(self.struct_version));
        }
        let mut b = CellBuilder::new();
        b.store_u8(self.struct_version)?;
        b.store_u32(self.params_version)?;
        b.store_u32(self.unique_id)?;
        b.store_bit(self.is_test)?;
        store_tokens(&mut b, self.price_per_token)?;
        store_tokens(&mut b, self.worker_fee_per_token)?;
        for v in [
            self.prompt_mult,
            self.cached_mult,
            self.completion_mult,
            self.reasoning_mult,
            self.proxy_delay_before_close,
            self.client_delay_before_close,
        ] {
            b.store_u32(v)?;
        }
        store_tokens(&mut b, self.min_proxy_stake)?;
        store_tokens(&mut b, self.min_client_stake)?;
        store_maybe_ref(&mut b, &codes.proxy)?;
        store_maybe_ref(&mut b, &codes.worker)?;
        store_maybe_ref(&mut b, &codes.client)?;
        Ok(b.build()?)
    }

    /// Parses a params cell (struct versions 3 to 5, strict).
    pub fn from_cell(cell: &Cell) -> Result<(Self, ParamsCodes), CellError> {
        let mut s = cell.as_slice()?;
        let struct_version = s.load_u8()?;
        if !PARAMS_STRUCT_VERSIONS.contains(&struct_version) {
            return Err(CellError::UnsupportedStructVersion(struct_version));
        }
        let p = Self {
            struct_version,
            params_version: s.load_u32()?,
            unique_id: s.load_u32()?,
            is_test: s.load_bit()?,
            price_per_token: load_tokens(&mut s)?,
            worker_fee_per_token: load_tokens(&mut s)?,
            prompt_mult: s.load_u32()?,
            cached_mult: s.load_u32()?,
            completion_mult: s.load_u32()?,
            reasoning_mult: s.load_u32()?,
            proxy_delay_before_close: s.load_u32()?,
            client_delay_before_close: s.load_u32()?,
            min_proxy_stake: load_tokens(&mut s)?,
            min_client_stake: load_tokens(&mut s)?,
        };
        let codes = ParamsCodes {
            proxy: load_maybe_ref(&mut s)?,
            worker: load_maybe_ref(&mut s)?,
            client: load_maybe_ref(&mut s)?,
        };
        cells::expect_end(&s)?;
        Ok((p, codes))
    }
}

// === init data ===

/// Root init data: `owner version:uint32 ^registry ^params`, then by `params.struct_version`
/// `^keyManager` (4+) and `^verifiedKeys` (5); registry, keys and key manager empty.
pub fn root_data(
    owner: &TonAddress,
    params: &CocoonParams,
    codes: &ParamsCodes,
) -> Result<Cell, CellError> {
    let mut reg = CellBuilder::new();
    reg.store_bit_zero()?; // proxy hashes
    reg.store_bit_zero()?; // registered proxies
    reg.store_u32(0)?; // last proxy seqno
    reg.store_bit_zero()?; // worker hashes
    reg.store_bit_zero()?; // model hashes
    let mut b = CellBuilder::new();
    store_addr(&mut b, owner)?;
    b.store_u32(0)?;
    b.store_reference(reg.build()?)?;
    b.store_reference(params.to_cell(codes)?)?;
    if params.struct_version >= 4 {
        b.store_reference(KeyManager::default().to_cell()?)?;
    }
    if params.struct_version >= 5 {
        b.store_reference(VerifiedKeys::default().to_cell()?)?;
    }
    Ok(b.build()?)
}

/// Moves root data of struct version 3 or 4 to 5, for `upgrade_full` (contracts/README.md): the same
/// owner and registry cell, `version + 1`, the params at struct version 5 with `params_version + 1` (the
/// params cell changes, so do the proxy/client/worker addresses derived from it), the key-manager cell
/// kept (4) or empty (3), empty verified keys. Data already at 5 is refused.
pub fn migrate_root_data(data: &Cell) -> Result<Cell, CellError> {
    let mut s = data.as_slice()?;
    let owner = load_addr(&mut s)?;
    let version = s.load_u32()?;
    let registry = s.load_reference_cloned()?;
    let (mut params, codes) = CocoonParams::from_cell(&s.load_reference_cloned()?)?;
    if params.struct_version >= 5 {
        return Err(CellError::Unexpected(
            "the root is already at struct version 5",
        ));
    }
    let key_manager = if params.struct_version >= 4 {
        let c = s.load_reference_cloned()?;
        KeyManager::from_cell(&c)?; // validate before carrying it over
        c
    } else {
        KeyManager::default().to_cell()?
    };
    cells::expect_end(&s)?;
    params.struct_version = 5;
    params.params_version = params.params_version.wrapping_add(1);
    let mut b = CellBuilder::new();
    store_addr(&mut b, &owner)?;
    b.store_u32(version.wrapping_add(1))?;
    b.store_reference(registry)?;
    b.store_reference(params.to_cell(&codes)?)?;
    b.store_reference(key_manager)?;
    b.store_reference(VerifiedKeys::default().to_cell()?)?;
    Ok(b.build()?)
}

/// Root data with its params changed by `edit`, for `upgrade_full`: the root has no op for the
/// token price multipliers (nor has the reference's), so an owner changes them by rewriting the
/// data. Owner, registry and key cells are kept as they are, the codes too; `version + 1` (nodes
/// notice a registry change by it) and `params_version + 1` (the params cell changes, so do the
/// proxy/client/worker addresses derived from it, as after `change_params`). The struct version
/// may not be changed here.
pub fn edit_root_params(
    data: &Cell,
    edit: impl FnOnce(&mut CocoonParams),
) -> Result<Cell, CellError> {
    let mut s = data.as_slice()?;
    let owner = load_addr(&mut s)?;
    let version = s.load_u32()?;
    let registry = s.load_reference_cloned()?;
    let (mut params, codes) = CocoonParams::from_cell(&s.load_reference_cloned()?)?;
    let mut rest = Vec::new();
    while s.size_refs() > 0 {
        rest.push(s.load_reference_cloned()?);
    }
    cells::expect_end(&s)?;
    let struct_version = params.struct_version;
    edit(&mut params);
    if params.struct_version != struct_version {
        return Err(CellError::Unexpected(
            "edit_root_params does not change the struct version (use migrate)",
        ));
    }
    params.params_version = params.params_version.wrapping_add(1);
    let mut b = CellBuilder::new();
    store_addr(&mut b, &owner)?;
    b.store_u32(version.wrapping_add(1))?;
    b.store_reference(registry)?;
    b.store_reference(params.to_cell(&codes)?)?;
    for c in rest {
        b.store_reference(c)?;
    }
    let data = b.build()?;
    parse_root_data(&data)?; // what nodes will read must parse
    Ok(data)
}

/// Proxy init data (C++ `ProxyContract::init_data_cell`); `params_cell` carries worker+client code.
pub fn proxy_data(
    owner: &TonAddress,
    proxy_public_key: &[u8; 32],
    root: &TonAddress,
    params_cell: Cell,
) -> Result<Cell, CellError> {
    let mut b = CellBuilder::new();
    store_addr(&mut b, owner)?;
    b.store_u256(&HashBytes(*proxy_public_key))?;
    store_addr(&mut b, root)?;
    b.store_small_uint(state::NORMAL, 2)?;
    store_tokens(&mut b, 0)?; // balance
    store_tokens(&mut b, 0)?; // stake
    b.store_u32(0)?; // unlock_ts
    b.store_reference(params_cell)?;
    Ok(b.build()?)
}

/// Client init data; `stake` starts at `min_client_stake`; `params_cell` carries no code.
pub fn client_data(
    owner: &TonAddress,
    proxy: &TonAddress,
    proxy_public_key: &[u8; 32],
    min_client_stake: u128,
    params_cell: Cell,
) -> Result<Cell, CellError> {
    let mut c = CellBuilder::new();
    store_addr(&mut c, owner)?;
    store_addr(&mut c, proxy)?;
    c.store_u256(&HashBytes(*proxy_public_key))?;
    let mut b = CellBuilder::new();
    b.store_small_uint(state::NORMAL, 2)?;
    store_tokens(&mut b, 0)?; // balance
    store_tokens(&mut b, min_client_stake)?;
    b.store_u64(0)?; // tokens_used
    b.store_u32(0)?; // unlock_ts
    b.store_u256(&HashBytes::ZERO)?; // secret hash
    b.store_reference(c.build()?)?;
    b.store_reference(params_cell)?;
    Ok(b.build()?)
}

/// Worker init data; `params_cell` carries no code.
pub fn worker_data(
    owner: &TonAddress,
    proxy: &TonAddress,
    proxy_public_key: &[u8; 32],
    params_cell: Cell,
) -> Result<Cell, CellError> {
    let mut b = CellBuilder::new();
    store_addr(&mut b, owner)?;
    store_addr(&mut b, proxy)?;
    b.store_u256(&HashBytes(*proxy_public_key))?;
    b.store_small_uint(state::NORMAL, 2)?;
    b.store_u64(0)?;
    b.store_reference(params_cell)?;
    Ok(b.build()?)
}

/// A contract ready to deploy: code, data and the address they imply.
#[derive(Clone, Debug)]
pub struct Deployable {
    pub code: Cell,
    pub data: Cell,
    pub address: TonAddress,
}

impl Deployable {
    fn new(kind: ContractKind, data: Cell) -> Result<Self, CellError> {
        let code = kind.code()?;
        let address = cells::contract_address(&code, &data)?;
        Ok(Self {
            code,
            data,
            address,
        })
    }

    /// The StateInit cell to attach to the deploying message.
    pub fn state_init_cell(&self) -> Result<Cell, CellError> {
        cells::state_init_cell(&cells::state_init(self.code.clone(), self.data.clone()))
    }
}

/// Everything one Cocoon network's addresses derive from.
#[derive(Clone, Debug)]
pub struct Network {
    pub params: CocoonParams,
    pub proxy_public_key: [u8; 32],
}

impl Network {
    /// The root contract of `owner` with our codes in its params.
    pub fn root(owner: &TonAddress, params: &CocoonParams) -> Result<Deployable, CellError> {
        Deployable::new(
            ContractKind::Root,
            root_data(owner, params, &ParamsCodes::for_root()?)?,
        )
    }

    /// The proxy contract (one per proxy key x params version).
    pub fn proxy(&self, owner: &TonAddress, root: &TonAddress) -> Result<Deployable, CellError> {
        let params = self.params.to_cell(&ParamsCodes::for_proxy()?)?;
        Deployable::new(
            ContractKind::Proxy,
            proxy_data(owner, &self.proxy_public_key, root, params)?,
        )
    }

    /// The client contract of `owner` at `proxy` (the address the proxy contract recomputes).
    pub fn client(&self, owner: &TonAddress, proxy: &TonAddress) -> Result<Deployable, CellError> {
        let params = self.params.to_cell(&ParamsCodes::default())?;
        let data = client_data(
            owner,
            proxy,
            &self.proxy_public_key,
            self.params.min_client_stake,
            params,
        )?;
        Deployable::new(ContractKind::Client, data)
    }

    /// The worker contract of `owner` at `proxy`.
    pub fn worker(&self, owner: &TonAddress, proxy: &TonAddress) -> Result<Deployable, CellError> {
        let params = self.params.to_cell(&ParamsCodes::default())?;
        Deployable::new(
            ContractKind::Worker,
            worker_data(owner, proxy, &self.proxy_public_key, params)?,
        )
    }
}

// === message bodies ===

fn head(op: u32, query_id: u64) -> Result<CellBuilder, CellError> {
    let mut b = CellBuilder::new();
    b.store_u32(op)?;
    b.store_u64(query_id)?;
    Ok(b)
}

/// Maximum proxy description length (`len:uint7`).
pub const MAX_PROXY_DESCRIPTION: usize = 127;

fn store_proxy_description(b: &mut CellBuilder, text: &str) -> Result<(), CellError> {
    if text.len() > MAX_PROXY_DESCRIPTION || !text.is_ascii() {
        return Err(CellError::Unexpected(
            "proxy description must be ASCII, at most 127 bytes",
        ));
    }
    b.store_bit_zero()?;
    b.store_small_uint(text.len() as u8, 7)?;
    b.store_raw(text.as_bytes(), (text.len() * 8) as u16)?;
    Ok(())
}

/// Owner operations on the root contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootOp {
    AddWorkerType([u8; 32]),
    DelWorkerType([u8; 32]),
    AddModelType([u8; 32]),
    DelModelType([u8; 32]),
    AddProxyType([u8; 32]),
    DelProxyType([u8; 32]),
    /// `"ip:port_workers [ip:port_clients]"`, ASCII, at most 127 bytes.
    RegisterProxy(String),
    UnregisterProxy(u32),
    UpdateProxy(u32, String),
    ChangeFees {
        price_per_token: u128,
        worker_fee_per_token: u128,
    },
    ChangeParams {
        price_per_token: u128,
        worker_fee_per_token: u128,
        proxy_delay_before_close: u32,
        client_delay_before_close: u32,
        min_proxy_stake: u128,
        min_client_stake: u128,
    },
    UpgradeContracts {
        proxy_code: Cell,
        worker_code: Cell,
        client_code: Cell,
    },
    UpgradeCode(Cell),
    Reset,
    UpgradeFull {
        data: Cell,
        code: Cell,
    },
    ChangeOwner(TonAddress),
    /// Struct version 4+: the key manager's key, image hash and address (`"ip:port"` or empty).
    ChangeKeyManager {
        public_key: [u8; 32],
        image_hash: [u8; 32],
        address: String,
    },
    /// Struct version 4+: register a public key (refused if already expired).
    AddPublicKey(RegisteredKey),
    /// Struct version 4+: remove a registered public key (ours).
    DelPublicKey([u8; 32]),
    /// Struct version 5: add a verified key (ours).
    AddVerifiedKey(VerifiedKeyKind, [u8; 32]),
    /// Struct version 5: remove a verified key (ours).
    DelVerifiedKey(VerifiedKeyKind, [u8; 32]),
}

impl RootOp {
    /// The message body.
    pub fn body(&self, query_id: u64) -> Result<Cell, CellError> {
        let hash_op = |op: u32, h: &[u8; 32]| -> Result<Cell, CellError> {
            let mut b = head(op, query_id)?;
            b.store_u256(&HashBytes(*h))?;
            Ok(b.build()?)
        };
        match self {
            Self::AddWorkerType(h) => hash_op(op::ROOT_ADD_WORKER_TYPE, h),
            Self::DelWorkerType(h) => hash_op(op::ROOT_DEL_WORKER_TYPE, h),
            Self::AddModelType(h) => hash_op(op::ROOT_ADD_MODEL_TYPE, h),
            Self::DelModelType(h) => hash_op(op::ROOT_DEL_MODEL_TYPE, h),
            Self::AddProxyType(h) => hash_op(op::ROOT_ADD_PROXY_TYPE, h),
            Self::DelProxyType(h) => hash_op(op::ROOT_DEL_PROXY_TYPE, h),
            Self::RegisterProxy(t) => {
                let mut b = head(op::ROOT_REGISTER_PROXY, query_id)?;
                store_proxy_description(&mut b, t)?;
                Ok(b.build()?)
            }
            Self::UnregisterProxy(seqno) => {
                let mut b = head(op::ROOT_UNREGISTER_PROXY, query_id)?;
                b.store_u32(*seqno)?;
                Ok(b.build()?)
            }
            Self::UpdateProxy(seqno, t) => {
                let mut b = head(op::ROOT_UPDATE_PROXY, query_id)?;
                b.store_u32(*seqno)?;
                store_proxy_description(&mut b, t)?;
                Ok(b.build()?)
            }
            Self::ChangeFees {
                price_per_token,
                worker_fee_per_token,
            } => {
                let mut b = head(op::ROOT_CHANGE_FEES, query_id)?;
                store_tokens(&mut b, *price_per_token)?;
                store_tokens(&mut b, *worker_fee_per_token)?;
                Ok(b.build()?)
            }
            Self::ChangeParams {
                price_per_token,
                worker_fee_per_token,
                proxy_delay_before_close,
                client_delay_before_close,
                min_proxy_stake,
                min_client_stake,
            } => {
                let mut b = head(op::ROOT_CHANGE_PARAMS, query_id)?;
                store_tokens(&mut b, *price_per_token)?;
                store_tokens(&mut b, *worker_fee_per_token)?;
                b.store_u32(*proxy_delay_before_close)?;
                b.store_u32(*client_delay_before_close)?;
                store_tokens(&mut b, *min_proxy_stake)?;
                store_tokens(&mut b, *min_client_stake)?;
                Ok(b.build()?)
            }
            Self::UpgradeContracts {
                proxy_code,
                worker_code,
                client_code,
            } => {
                let mut b = head(op::ROOT_UPGRADE_CONTRACTS, query_id)?;
                b.store_reference(proxy_code.clone())?;
                b.store_reference(worker_code.clone())?;
                b.store_reference(client_code.clone())?;
                Ok(b.build()?)
            }
            Self::UpgradeCode(code) => {
                let mut b = head(op::ROOT_UPGRADE_CODE, query_id)?;
                b.store_reference(code.clone())?;
                Ok(b.build()?)
            }
            Self::Reset => Ok(head(op::ROOT_RESET, query_id)?.build()?),
            Self::UpgradeFull { data, code } => {
                let mut b = head(op::ROOT_UPGRADE_FULL, query_id)?;
                b.store_reference(data.clone())?;
                b.store_reference(code.clone())?;
                Ok(b.build()?)
            }
            Self::ChangeOwner(a) => {
                let mut b = head(op::ROOT_CHANGE_OWNER, query_id)?;
                store_addr(&mut b, a)?;
                Ok(b.build()?)
            }
            Self::ChangeKeyManager {
                public_key,
                image_hash,
                address,
            } => {
                let mut b = head(op::ROOT_CHANGE_KEY_MANAGER, query_id)?;
                b.store_u256(&HashBytes(*public_key))?;
                b.store_u256(&HashBytes(*image_hash))?;
                store_proxy_description(&mut b, address)?;
                Ok(b.build()?)
            }
            Self::AddPublicKey(k) => {
                let mut b = head(op::ROOT_ADD_PUBLIC_KEY, query_id)?;
                k.store_entry(&mut b)?;
                Ok(b.build()?)
            }
            Self::DelPublicKey(k) => hash_op(op::ROOT_DEL_PUBLIC_KEY, k),
            Self::AddVerifiedKey(kind, k) | Self::DelVerifiedKey(kind, k) => {
                let code = match self {
                    Self::AddVerifiedKey(..) => op::ROOT_ADD_VERIFIED_KEY,
                    _ => op::ROOT_DEL_VERIFIED_KEY,
                };
                let mut b = head(code, query_id)?;
                b.store_u8(*kind as u8)?;
                b.store_u256(&HashBytes(*k))?;
                Ok(b.build()?)
            }
        }
    }
}

/// `root_add_public_key_signed` (anyone may send it; the root checks the key manager's signature):
/// `op query_id send_excesses_to:MsgAddress signature:bits512 ^(op query_id public_key:bits256
/// key_type:uint8 valid_until:uint32)`, the signature over the payload cell's hash (C++
/// `KeyManagerRunner::generate_key` + `BaseRunner::sign_and_wrap_message`).
pub fn add_public_key_signed_body(
    query_id: u64,
    key: &RegisteredKey,
    send_excesses_to: &TonAddress,
    key_manager: &crate::payments::ProxySigner,
) -> Result<Cell, CellError> {
    let mut p = head(op::ROOT_ADD_PUBLIC_KEY_SIGNED, query_id)?;
    key.store_entry(&mut p)?;
    let payload = p.build()?;
    let signature = key_manager.sign_cell(&payload);
    let mut b = head(op::ROOT_ADD_PUBLIC_KEY_SIGNED, query_id)?;
    store_addr(&mut b, send_excesses_to)?;
    b.store_raw(&signature, 512)?;
    b.store_reference(payload)?;
    Ok(b.build()?)
}

/// Unsigned operations on the proxy contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyOp {
    /// Anyone: pay the earned commission to the owner.
    PayoutRequest { send_excesses_to: TonAddress },
    /// Anyone: `stake += grams` (attach at least `grams + 0.1 TON`).
    IncreaseStake {
        grams: u128,
        send_excesses_to: TonAddress,
    },
    /// Owner: start closing.
    OwnerClose { send_excesses_to: TonAddress },
    /// Owner text command `"c"` (close) or `"w"` (withdraw commission).
    Text(char),
    /// The proxy node's DB anchor: `do_not_process qid proxy_save_state seqno:int32
    /// session_hash:uint256`, followed, when `receipts` is set, by a receipts period's Merkle
    /// root ([`ReceiptsAnchor`]; upstream's nodes write and read the shorter body).
    SaveState {
        seqno: i32,
        session_hash: [u8; 32],
        receipts: Option<ReceiptsAnchor>,
    },
}

/// A closed receipts period anchored in a save-state marker, after `session_hash`:
/// `receipts_root:uint256 period_start:uint32 period_end:uint32 leaves:uint32` (352 bits; the
/// whole marker body is 768 bits, one cell). `receipts_root` is the RFC 6962 Merkle root over
/// the period's receipt ids in order; times are unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptsAnchor {
    pub root: [u8; 32],
    pub period_start: u32,
    pub period_end: u32,
    pub leaves: u32,
}

impl ReceiptsAnchor {
    /// Bits the anchor takes after `session_hash`.
    pub const BITS: u16 = 256 + 3 * 32;
}

impl ProxyOp {
    /// The message body (`query_id` is ignored for text commands).
    pub fn body(&self, query_id: u64) -> Result<Cell, CellError> {
        let mut b;
        match self {
            Self::PayoutRequest { send_excesses_to } => {
                b = head(op::EXT_PROXY_PAYOUT_REQUEST, query_id)?;
                store_addr(&mut b, send_excesses_to)?;
            }
            Self::IncreaseStake {
                grams,
                send_excesses_to,
            } => {
                b = head(op::EXT_PROXY_INCREASE_STAKE, query_id)?;
                store_tokens(&mut b, *grams)?;
                store_addr(&mut b, send_excesses_to)?;
            }
            Self::OwnerClose { send_excesses_to } => {
                b = head(op::OWNER_PROXY_CLOSE, query_id)?;
                store_addr(&mut b, send_excesses_to)?;
            }
            Self::Text(c) => return text_body(&c.to_string()),
            Self::SaveState {
                seqno,
                session_hash,
                receipts,
            } => {
                b = head(op::DO_NOT_PROCESS, query_id)?;
                b.store_u32(op::PROXY_SAVE_STATE)?;
                b.store_u32(*seqno as u32)?;
                b.store_u256(&HashBytes(*session_hash))?;
                if let Some(r) = receipts {
                    b.store_u256(&HashBytes(r.root))?;
                    b.store_u32(r.period_start)?;
                    b.store_u32(r.period_end)?;
                    b.store_u32(r.leaves)?;
                }
            }
        }
        Ok(b.build()?)
    }
}

/// A text-comment body (`op = 0` then ASCII), short enough for one cell.
pub fn text_body(text: &str) -> Result<Cell, CellError> {
    if text.len() > 123 {
        return Err(CellError::Unexpected("text longer than one cell"));
    }
    let mut b = CellBuilder::new();
    b.store_u32(0)?;
    b.store_raw(text.as_bytes(), (text.len() * 8) as u16)?;
    Ok(b.build()?)
}

/// Operations on a client contract (owner ops and the anyone-may top-up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp {
    /// Anyone: top up by `amount` (attach `amount + 0.1 TON`).
    TopUp {
        amount: u128,
        send_excesses_to: TonAddress,
    },
    /// Owner: set the secret hash and top up.
    ChangeSecretHashAndTopUp {
        amount: u128,
        secret_hash: [u8; 32],
        send_excesses_to: TonAddress,
    },
    /// Owner: report a nonce to the proxy (registration).
    Register {
        nonce: u64,
        send_excesses_to: TonAddress,
    },
    /// Owner: set the secret hash.
    ChangeSecretHash {
        secret_hash: [u8; 32],
        send_excesses_to: TonAddress,
    },
    /// Owner: raise the stake.
    IncreaseStake {
        new_stake: u128,
        send_excesses_to: TonAddress,
    },
    /// Owner: withdraw everything above the stake.
    Withdraw { send_excesses_to: TonAddress },
    /// Owner: start closing / force the refund after the delay.
    RequestRefund { send_excesses_to: TonAddress },
}

impl ClientOp {
    /// The message body.
    pub fn body(&self, query_id: u64) -> Result<Cell, CellError> {
        let mut b;
        let excess;
        match self {
            Self::TopUp {
                amount,
                send_excesses_to,
            } => {
                b = head(op::EXT_CLIENT_TOP_UP, query_id)?;
                store_tokens(&mut b, *amount)?;
                excess = send_excesses_to;
            }
            Self::ChangeSecretHashAndTopUp {
                amount,
                secret_hash,
                send_excesses_to,
            } => {
                b = head(op::OWNER_CLIENT_CHANGE_SECRET_HASH_AND_TOP_UP, query_id)?;
                store_tokens(&mut b, *amount)?;
                b.store_u256(&HashBytes(*secret_hash))?;
                excess = send_excesses_to;
            }
            Self::Register {
                nonce,
                send_excesses_to,
            } => {
                b = head(op::OWNER_CLIENT_REGISTER, query_id)?;
                b.store_u64(*nonce)?;
                excess = send_excesses_to;
            }
            Self::ChangeSecretHash {
                secret_hash,
                send_excesses_to,
            } => {
                b = head(op::OWNER_CLIENT_CHANGE_SECRET_HASH, query_id)?;
                b.store_u256(&HashBytes(*secret_hash))?;
                excess = send_excesses_to;
            }
            Self::IncreaseStake {
                new_stake,
                send_excesses_to,
            } => {
                b = head(op::OWNER_CLIENT_INCREASE_STAKE, query_id)?;
                store_tokens(&mut b, *new_stake)?;
                excess = send_excesses_to;
            }
            Self::Withdraw { send_excesses_to } => {
                b = head(op::OWNER_CLIENT_WITHDRAW, query_id)?;
                excess = send_excesses_to;
            }
            Self::RequestRefund { send_excesses_to } => {
                b = head(op::OWNER_CLIENT_REQUEST_REFUND, query_id)?;
                excess = send_excesses_to;
            }
        }
        store_addr(&mut b, excess)?;
        Ok(b.build()?)
    }
}

/// Owner registration on a worker contract (payload-less report to the proxy).
pub fn worker_register_body(
    query_id: u64,
    send_excesses_to: &TonAddress,
) -> Result<Cell, CellError> {
    let mut b = head(op::OWNER_WORKER_REGISTER, query_id)?;
    store_addr(&mut b, send_excesses_to)?;
    Ok(b.build()?)
}

// === parsers: what arrives at the proxy contract ===

/// `ClientStateData` carried in client reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientStateData {
    pub state: u8,
    pub balance: u128,
    pub stake: u128,
    pub tokens_used: u64,
    pub secret_hash: [u8; 32],
}

/// The payload of a client report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientPayload {
    TopUp {
        coins: u128,
        send_excesses_to: TonAddress,
    },
    Register {
        nonce: u64,
    },
    RefundGranted {
        coins: u128,
        send_excesses_to: TonAddress,
    },
    RefundForce {
        coins: u128,
        send_excesses_to: TonAddress,
    },
}

/// What the proxy node reads from in-messages of its proxy contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyInbound {
    /// A client contract's state report.
    ClientReport {
        query_id: u64,
        owner: TonAddress,
        data: ClientStateData,
        payload: Option<ClientPayload>,
    },
    /// A worker contract's state report (`payout` = worker part, proxy part).
    WorkerReport {
        query_id: u64,
        owner: TonAddress,
        state: u8,
        tokens: u64,
        payout: Option<(u128, u128)>,
    },
    /// A save-state marker (`receipts`: the anchored receipts period, when the body has one).
    SaveState {
        query_id: u64,
        seqno: i32,
        session_hash: [u8; 32],
        receipts: Option<ReceiptsAnchor>,
    },
    /// Anything else (op given; 0 for text or empty bodies).
    Other(u32),
}

/// Parses a proxy contract in-message body.
pub fn parse_proxy_inbound(body: &Cell) -> Result<ProxyInbound, CellError> {
    let mut s = body.as_slice()?;
    if s.size_bits() < 32 {
        return Ok(ProxyInbound::Other(0));
    }
    let op_code = s.load_u32()?;
    match op_code {
        op::CLIENT_PROXY_REQUEST => {
            let query_id = s.load_u64()?;
            let owner = load_addr(&mut s)?;
            let st = s.load_reference_cloned()?;
            let mut ss = st.as_slice()?;
            let data = ClientStateData {
                state: ss.load_small_uint(2)?,
                balance: load_tokens(&mut ss)?,
                stake: load_tokens(&mut ss)?,
                tokens_used: ss.load_u64()?,
                secret_hash: ss.load_u256()?.0,
            };
            let payload = match load_maybe_ref(&mut s)? {
                None => None,
                Some(p) => Some(parse_client_payload(&p)?),
            };
            Ok(ProxyInbound::ClientReport {
                query_id,
                owner,
                data,
                payload,
            })
        }
        op::WORKER_PROXY_REQUEST => {
            let query_id = s.load_u64()?;
            let owner = load_addr(&mut s)?;
            let state = s.load_small_uint(2)?;
            let tokens = s.load_u64()?;
            let payout = match load_maybe_ref(&mut s)? {
                None => None,
                Some(p) => {
                    let mut ps = p.as_slice()?;
                    if ps.load_u32()? != op::WORKER_PROXY_PAYOUT_REQUEST {
                        return Err(CellError::Unexpected("worker payload op"));
                    }
                    Some((load_tokens(&mut ps)?, load_tokens(&mut ps)?))
                }
            };
            Ok(ProxyInbound::WorkerReport {
                query_id,
                owner,
                state,
                tokens,
                payout,
            })
        }
        op::DO_NOT_PROCESS => {
            let query_id = s.load_u64()?;
            if s.size_bits() >= 32 + 32 + 256 && s.load_u32()? == op::PROXY_SAVE_STATE {
                let seqno = s.load_u32()? as i32;
                let session_hash = s.load_u256()?.0;
                // Upstream's body ends here; ours may carry a receipts root.
                let receipts = if s.size_bits() >= ReceiptsAnchor::BITS {
                    Some(ReceiptsAnchor {
                        root: s.load_u256()?.0,
                        period_start: s.load_u32()?,
                        period_end: s.load_u32()?,
                        leaves: s.load_u32()?,
                    })
                } else {
                    None
                };
                return Ok(ProxyInbound::SaveState {
                    query_id,
                    seqno,
                    session_hash,
                    receipts,
                });
            }
            Ok(ProxyInbound::Other(op_code))
        }
        other => Ok(ProxyInbound::Other(other)),
    }
}

fn parse_client_payload(p: &Cell) -> Result<ClientPayload, CellError> {
    let mut s = p.as_slice()?;
    Ok(match s.load_u32()? {
        op::CLIENT_PROXY_TOP_UP => ClientPayload::TopUp {
            coins: load_tokens(&mut s)?,
            send_excesses_to: load_addr(&mut s)?,
        },
        op::CLIENT_PROXY_REGISTER => ClientPayload::Register {
            nonce: s.load_u64()?,
        },
        op::CLIENT_PROXY_REFUND_GRANTED => ClientPayload::RefundGranted {
            coins: load_tokens(&mut s)?,
            send_excesses_to: load_addr(&mut s)?,
        },
        op::CLIENT_PROXY_REFUND_FORCE => ClientPayload::RefundForce {
            coins: load_tokens(&mut s)?,
            send_excesses_to: load_addr(&mut s)?,
        },
        _ => return Err(CellError::Unexpected("client payload op")),
    })
}

// === parsers: storage ===

/// The root's registry and params, read from its raw data like the C++ node does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootState {
    pub owner: TonAddress,
    pub version: u32,
    pub proxy_hashes: Vec<[u8; 32]>,
    /// `(seqno, description)`.
    pub proxies: Vec<(u32, String)>,
    pub last_proxy_seqno: u32,
    pub worker_hashes: Vec<[u8; 32]>,
    pub model_hashes: Vec<[u8; 32]>,
    pub params: CocoonParams,
    pub codes: ParamsCodes,
    /// Struct version 4+ (`None` below): the key manager and the registered public keys.
    pub key_manager: Option<KeyManager>,
    /// Struct version 5 (`None` below): the verified keys.
    pub verified_keys: Option<VerifiedKeys>,
}

impl RootState {
    /// The registered public keys (none before struct version 4).
    pub fn registered_keys(&self) -> &[RegisteredKey] {
        self.key_manager
            .as_ref()
            .map_or(&[], |k| k.public_keys.as_slice())
    }

    /// Whether `key` is a verified key of `kind` (never before struct version 5).
    pub fn has_verified_key(&self, kind: VerifiedKeyKind, key: &[u8; 32]) -> bool {
        self.verified_keys
            .as_ref()
            .is_some_and(|v| v.of(kind).contains(key))
    }
}

/// A public key registered on the root (`rootConfig.registeredPublicKey`): the key manager announces its
/// keys (type 1 in upstream's key manager), the owner may add or remove any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredKey {
    pub public_key: [u8; 32],
    pub key_type: u8,
    /// Unix time; the root refuses keys already expired and drops expired ones on every add.
    pub expire_at: u32,
}

impl RegisteredKey {
    /// `public_key:bits256 key_type:uint8 expire_at:uint32` (op bodies and the signed payload).
    fn store_entry(&self, b: &mut CellBuilder) -> Result<(), CellError> {
        b.store_u256(&HashBytes(self.public_key))?;
        b.store_u8(self.key_type)?;
        b.store_u32(self.expire_at)?;
        Ok(())
    }
}

/// The struct-4 key-manager cell:
/// `public_keys:(HashmapE 256 (key_type:uint8 expire_at:uint32)) public_key:bits256 image_hash:bits256
/// address:(0:1 len:7 bytes)` and nothing after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyManager {
    /// Sorted by key.
    pub public_keys: Vec<RegisteredKey>,
    /// The key manager's Ed25519 key (signs `root_add_public_key_signed`); zero = none.
    pub public_key: [u8; 32],
    pub image_hash: [u8; 32],
    /// `"ip:port"`, or empty for none (the C++ node reads an empty one as "no address").
    pub address: String,
}

impl KeyManager {
    /// Parses the cell (strict: trailing data or an entry that is not exactly 40 bits is an error).
    pub fn from_cell(c: &Cell) -> Result<Self, CellError> {
        let mut s = c.as_slice()?;
        let d: Dict<HashBytes, CellSlice<'_>> = Dict::from_raw(load_maybe_ref(&mut s)?);
        let mut public_keys = Vec::new();
        for e in d.iter() {
            if public_keys.len() >= MAX_REGISTRY_ENTRIES {
                return Err(CellError::Unexpected("registered public keys: too many"));
            }
            let (k, mut v) = e?;
            let key_type = v.load_u8()?;
            let expire_at = v.load_u32()?;
            if !v.is_empty() {
                return Err(CellError::Unexpected(
                    "registered public key: trailing data",
                ));
            }
            public_keys.push(RegisteredKey {
                public_key: k.0,
                key_type,
                expire_at,
            });
        }
        let public_key = s.load_u256()?.0;
        let image_hash = s.load_u256()?.0;
        let address = load_net_addr(&mut s)?;
        cells::expect_end(&s)?;
        Ok(Self {
            public_keys,
            public_key,
            image_hash,
            address,
        })
    }

    /// Serializes the cell.
    pub fn to_cell(&self) -> Result<Cell, CellError> {
        let mut d: Dict<HashBytes, (u8, u32)> = Dict::new();
        for k in &self.public_keys {
            d.set(HashBytes(k.public_key), (k.key_type, k.expire_at))?;
        }
        let mut b = CellBuilder::new();
        store_maybe_ref(&mut b, &d.into_root())?;
        b.store_u256(&HashBytes(self.public_key))?;
        b.store_u256(&HashBytes(self.image_hash))?;
        store_proxy_description(&mut b, &self.address)?;
        Ok(b.build()?)
    }
}

/// Which verified-key set (the `kind:uint8` of the verified-key ops; the order of the sets in the cell).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerifiedKeyKind {
    Proxy = 0,
    Worker = 1,
    KeyManager = 2,
}

impl VerifiedKeyKind {
    /// All three, in cell order.
    pub const ALL: [VerifiedKeyKind; 3] = [Self::Proxy, Self::Worker, Self::KeyManager];

    /// Lower-case name for output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Proxy => "proxy",
            Self::Worker => "worker",
            Self::KeyManager => "key manager",
        }
    }
}

/// The struct-5 verified-keys cell: three `Maybe ^(HashmapE 256 ())` (proxy, worker, key manager) and
/// nothing after. Each list is sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifiedKeys {
    pub proxy: Vec<[u8; 32]>,
    pub worker: Vec<[u8; 32]>,
    pub key_manager: Vec<[u8; 32]>,
}

impl VerifiedKeys {
    /// The set of one kind.
    pub fn of(&self, kind: VerifiedKeyKind) -> &[[u8; 32]] {
        match kind {
            VerifiedKeyKind::Proxy => &self.proxy,
            VerifiedKeyKind::Worker => &self.worker,
            VerifiedKeyKind::KeyManager => &self.key_manager,
        }
    }

    /// Parses the cell (strict about trailing data; values are not read, as the C++ node does not).
    pub fn from_cell(c: &Cell) -> Result<Self, CellError> {
        let mut s = c.as_slice()?;
        let proxy = hash_set(load_maybe_ref(&mut s)?)?;
        let worker = hash_set(load_maybe_ref(&mut s)?)?;
        let key_manager = hash_set(load_maybe_ref(&mut s)?)?;
        cells::expect_end(&s)?;
        Ok(Self {
            proxy,
            worker,
            key_manager,
        })
    }

    /// Serializes the cell (empty values).
    pub fn to_cell(&self) -> Result<Cell, CellError> {
        let mut b = CellBuilder::new();
        for set in [&self.proxy, &self.worker, &self.key_manager] {
            let mut d: Dict<HashBytes, ()> = Dict::new();
            for k in set {
                d.set(HashBytes(*k), ())?;
            }
            store_maybe_ref(&mut b, &d.into_root())?;
        }
        Ok(b.build()?)
    }
}

/// Bound on registry entries we read (the registry is owner-controlled, but stay finite anyway).
pub const MAX_REGISTRY_ENTRIES: usize = 10_000;

fn hash_set(c: Option<Cell>) -> Result<Vec<[u8; 32]>, CellError> {
    let d: Dict<HashBytes, ()> = Dict::from_raw(c);
    let mut out = Vec::new();
    for k in d.keys() {
        if out.len() >= MAX_REGISTRY_ENTRIES {
            return Err(CellError::Unexpected("registry too large"));
        }
        out.push(k?.0);
    }
    Ok(out)
}

/// `0:1 len:7 bytes` (proxy descriptions, the key manager's address), lossy UTF-8.
fn load_net_addr(s: &mut CellSlice<'_>) -> Result<String, CellError> {
    if s.load_bit()? {
        return Err(CellError::Unexpected("net address type"));
    }
    let len = s.load_small_uint(7)? as usize;
    let mut buf = vec![0u8; len];
    s.load_raw(&mut buf, (len * 8) as u16)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Parses root contract data of struct version 3, 4 or 5 (`RootContractConfig::load_from_state`):
/// `owner version:uint32 ^registry ^params`, then `^keyManager` (4+) and `^verifiedKeys` (5), nothing
/// else. Another struct version is [`CellError::UnsupportedStructVersion`].
pub fn parse_root_data(data: &Cell) -> Result<RootState, CellError> {
    let mut s = data.as_slice()?;
    let owner = load_addr(&mut s)?;
    let version = s.load_u32()?;
    let reg = s.load_reference_cloned()?;
    let params_cell = s.load_reference_cloned()?;
    let (params, codes) = CocoonParams::from_cell(&params_cell)?;
    let needed = match params.struct_version {
        3 => 0,
        4 => 1,
        _ => 2,
    };
    if s.size_refs() < needed {
        return Err(CellError::Unexpected(
            "root storage lacks the cells its params struct version implies",
        ));
    }
    let key_manager = match params.struct_version >= 4 {
        true => Some(KeyManager::from_cell(&s.load_reference_cloned()?)?),
        false => None,
    };
    let verified_keys = match params.struct_version >= 5 {
        true => Some(VerifiedKeys::from_cell(&s.load_reference_cloned()?)?),
        false => None,
    };
    cells::expect_end(&s)?;
    let mut r = reg.as_slice()?;
    let proxy_hashes = hash_set(load_maybe_ref(&mut r)?)?;
    let proxies_cell = load_maybe_ref(&mut r)?;
    let last_proxy_seqno = r.load_u32()?;
    let worker_hashes = hash_set(load_maybe_ref(&mut r)?)?;
    let model_hashes = hash_set(load_maybe_ref(&mut r)?)?;
    cells::expect_end(&r)?;
    let mut proxies = Vec::new();
    let d: Dict<u32, CellSlice<'_>> = Dict::from_raw(proxies_cell);
    for e in d.iter() {
        if proxies.len() >= MAX_REGISTRY_ENTRIES {
            return Err(CellError::Unexpected("registry too large"));
        }
        let (k, mut v) = e?;
        proxies.push((k, load_net_addr(&mut v)?));
    }
    Ok(RootState {
        owner,
        version,
        proxy_hashes,
        proxies,
        last_proxy_seqno,
        worker_hashes,
        model_hashes,
        params,
        codes,
        key_manager,
        verified_keys,
    })
}

/// A proxy contract's storage (what `proxy_data` writes), with its params.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyStorage {
    pub owner: TonAddress,
    pub proxy_public_key: [u8; 32],
    pub root: TonAddress,
    pub state: u8,
    pub balance: u128,
    pub stake: u128,
    pub unlock_ts: u32,
    /// The params the contract was made under (its address depends on them).
    pub params: CocoonParams,
}

/// Parses a proxy contract's data cell (the inverse of [`proxy_data`]).
pub fn parse_proxy_storage(data: &Cell) -> Result<ProxyStorage, CellError> {
    let mut s = data.as_slice()?;
    let owner = load_addr(&mut s)?;
    let proxy_public_key = s.load_u256()?.0;
    let root = load_addr(&mut s)?;
    let state = s.load_small_uint(2)?;
    let balance = load_tokens(&mut s)?;
    let stake = load_tokens(&mut s)?;
    let unlock_ts = s.load_u32()?;
    let params_cell = s.load_reference_cloned()?;
    cells::expect_end(&s)?;
    let (params, _) = CocoonParams::from_cell(&params_cell)?;
    Ok(ProxyStorage {
        owner,
        proxy_public_key,
        root,
        state,
        balance,
        stake,
        unlock_ts,
        params,
    })
}

// === parsers: get-method results ===

/// Reads typed values off a get-method stack, front to back.
struct StackReader<'a> {
    it: std::slice::Iter<'a, StackEntry>,
}

impl<'a> StackReader<'a> {
    fn new(stack: &'a [StackEntry]) -> Self {
        Self { it: stack.iter() }
    }

    fn int(&mut self) -> Result<&'a BigInt, CellError> {
        match self.it.next() {
            Some(StackEntry::Int(v)) => Ok(v),
            _ => Err(CellError::Unexpected("expected an integer on the stack")),
        }
    }

    fn u128(&mut self) -> Result<u128, CellError> {
        u128::try_from(self.int()?).map_err(|_| CellError::Unexpected("integer out of range"))
    }

    fn u64(&mut self) -> Result<u64, CellError> {
        u64::try_from(self.int()?).map_err(|_| CellError::Unexpected("integer out of range"))
    }

    fn u32(&mut self) -> Result<u32, CellError> {
        u32::try_from(self.int()?).map_err(|_| CellError::Unexpected("integer out of range"))
    }

    fn bool(&mut self) -> Result<bool, CellError> {
        Ok(self.int()?.sign() != Sign::NoSign)
    }

    fn u256(&mut self) -> Result<[u8; 32], CellError> {
        let v = self.int()?;
        if v.sign() == Sign::Minus {
            return Err(CellError::Unexpected("negative uint256"));
        }
        let (_, bytes) = v.to_bytes_be();
        if bytes.len() > 32 {
            return Err(CellError::Unexpected("integer out of range"));
        }
        let mut out = [0u8; 32];
        out[32 - bytes.len()..].copy_from_slice(&bytes);
        Ok(out)
    }

    fn addr(&mut self) -> Result<TonAddress, CellError> {
        match self.it.next() {
            Some(StackEntry::Slice(c)) | Some(StackEntry::Cell(c)) => {
                let mut s = c.as_slice()?;
                load_addr(&mut s)
            }
            _ => Err(CellError::Unexpected(
                "expected an address slice on the stack",
            )),
        }
    }
}

/// `get_cocoon_data()` of the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootData {
    pub version: u32,
    pub last_proxy_seqno: u32,
    pub params_version: u32,
    pub unique_id: u32,
    pub is_test: bool,
    pub price_per_token: u128,
    pub worker_fee_per_token: u128,
    pub min_proxy_stake: u128,
    pub min_client_stake: u128,
    pub owner: TonAddress,
}

impl RootData {
    /// Get-method name.
    pub const METHOD: &'static str = "get_cocoon_data";

    /// Parses the result stack.
    pub fn from_stack(stack: &[StackEntry]) -> Result<Self, CellError> {
        let mut r = StackReader::new(stack);
        Ok(Self {
            version: r.u32()?,
            last_proxy_seqno: r.u32()?,
            params_version: r.u32()?,
            unique_id: r.u32()?,
            is_test: r.bool()?,
            price_per_token: r.u128()?,
            worker_fee_per_token: r.u128()?,
            min_proxy_stake: r.u128()?,
            min_client_stake: r.u128()?,
            owner: r.addr()?,
        })
    }
}

/// `get_cur_params()` of the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootCurParams {
    pub params_version: u32,
    pub unique_id: u32,
    pub is_test: bool,
    pub price_per_token: u128,
    pub worker_fee_per_token: u128,
    pub cached_mult: u32,
    pub reasoning_mult: u32,
    pub proxy_delay_before_close: u32,
    pub client_delay_before_close: u32,
    pub min_proxy_stake: u128,
    pub min_client_stake: u128,
    pub proxy_code_hash: [u8; 32],
    pub worker_code_hash: [u8; 32],
    pub client_code_hash: [u8; 32],
}

impl RootCurParams {
    /// Get-method name.
    pub const METHOD: &'static str = "get_cur_params";

    /// Parses the result stack.
    pub fn from_stack(stack: &[StackEntry]) -> Result<Self, CellError> {
        let mut r = StackReader::new(stack);
        Ok(Self {
            params_version: r.u32()?,
            unique_id: r.u32()?,
            is_test: r.bool()?,
            price_per_token: r.u128()?,
            worker_fee_per_token: r.u128()?,
            cached_mult: r.u32()?,
            reasoning_mult: r.u32()?,
            proxy_delay_before_close: r.u32()?,
            client_delay_before_close: r.u32()?,
            min_proxy_stake: r.u128()?,
            min_client_stake: r.u128()?,
            proxy_code_hash: r.u256()?,
            worker_code_hash: r.u256()?,
            client_code_hash: r.u256()?,
        })
    }
}

/// Root hash-check getters (`proxy_hash_is_valid` etc.) return -1 / 0.
pub fn parse_bool_result(stack: &[StackEntry]) -> Result<bool, CellError> {
    StackReader::new(stack).bool()
}

/// `last_proxy_seqno()` and other single-integer getters.
pub fn parse_u32_result(stack: &[StackEntry]) -> Result<u32, CellError> {
    StackReader::new(stack).u32()
}

/// `get_cocoon_proxy_data()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyData {
    pub owner: TonAddress,
    pub proxy_public_key: [u8; 32],
    pub root: TonAddress,
    pub state: u8,
    pub balance: u128,
    pub stake: u128,
    pub unlock_ts: u32,
    pub price_per_token: u128,
    pub worker_fee_per_token: u128,
    pub min_proxy_stake: u128,
    pub min_client_stake: u128,
    pub params_version: u32,
}

impl ProxyData {
    /// Get-method name.
    pub const METHOD: &'static str = "get_cocoon_proxy_data";

    /// Parses the result stack.
    pub fn from_stack(stack: &[StackEntry]) -> Result<Self, CellError> {
        let mut r = StackReader::new(stack);
        Ok(Self {
            owner: r.addr()?,
            proxy_public_key: r.u256()?,
            root: r.addr()?,
            state: r.u32()? as u8,
            balance: r.u128()?,
            stake: r.u128()?,
            unlock_ts: r.u32()?,
            price_per_token: r.u128()?,
            worker_fee_per_token: r.u128()?,
            min_proxy_stake: r.u128()?,
            min_client_stake: r.u128()?,
            params_version: r.u32()?,
        })
    }
}

/// `get_cocoon_client_data()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientData {
    pub owner: TonAddress,
    pub proxy: TonAddress,
    pub proxy_public_key: [u8; 32],
    pub state: u8,
    pub balance: u128,
    pub stake: u128,
    pub tokens_used: u64,
    pub unlock_ts: u32,
    pub secret_hash: [u8; 32],
}

impl ClientData {
    /// Get-method name.
    pub const METHOD: &'static str = "get_cocoon_client_data";

    /// Parses the result stack.
    pub fn from_stack(stack: &[StackEntry]) -> Result<Self, CellError> {
        let mut r = StackReader::new(stack);
        Ok(Self {
            owner: r.addr()?,
            proxy: r.addr()?,
            proxy_public_key: r.u256()?,
            state: r.u32()? as u8,
            balance: r.u128()?,
            stake: r.u128()?,
            tokens_used: r.u64()?,
            unlock_ts: r.u32()?,
            secret_hash: r.u256()?,
        })
    }
}

/// `get_cocoon_worker_data()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerData {
    pub owner: TonAddress,
    pub proxy: TonAddress,
    pub proxy_public_key: [u8; 32],
    pub state: u8,
    pub tokens: u64,
}

impl WorkerData {
    /// Get-method name.
    pub const METHOD: &'static str = "get_cocoon_worker_data";

    /// Parses the result stack.
    pub fn from_stack(stack: &[StackEntry]) -> Result<Self, CellError> {
        let mut r = StackReader::new(stack);
        Ok(Self {
            owner: r.addr()?,
            proxy: r.addr()?,
            proxy_public_key: r.u256()?,
            state: r.u32()? as u8,
            tokens: r.u64()?,
        })
    }
}

/// A uint256 as a get-method argument.
pub fn u256_arg(v: &[u8; 32]) -> StackEntry {
    StackEntry::Int(BigInt::from_bytes_be(Sign::Plus, v))
}

#[cfg(test)]
mod tests;
