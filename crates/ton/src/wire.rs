//! JSON shapes of the TON HTTP API v2 (toncenter) subset we use, in both directions, so that the client
//! (`http::HttpChain`) and the local chain's server (`cocoon-localnet`) agree by construction and the
//! toncenter-shaped fixtures (`tests/data/`, written from toncenter's server sources) test both.
//!
//! What lives here: conversions between our chain types and `serde_json::Value`. What must not: HTTP.
//! Every number the API sends as a string is parsed with bounds; unknown fields are ignored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use num_bigint::{BigInt, Sign};
use serde_json::{json, Value};
use tycho_types::cell::Cell;

use crate::address::TonAddress;
use crate::cells::{self, MAX_BOC_BYTES};
use crate::chain::{
    AccountState, AccountStatus, ChainError, GetMethodResult, MsgInfo, StackEntry, TxInfo,
};

/// Most stack entries we accept in a get-method result.
pub const MAX_STACK: usize = 256;

fn bad(what: &str) -> ChainError {
    ChainError::Decode(what.to_string())
}

fn num_str<T: std::str::FromStr>(v: &Value, what: &str) -> Result<T, ChainError> {
    match v {
        Value::String(s) => s.parse().map_err(|_| bad(what)),
        Value::Number(n) => n.to_string().parse().map_err(|_| bad(what)),
        _ => Err(bad(what)),
    }
}

fn b64_hash(v: &Value, what: &str) -> Result<[u8; 32], ChainError> {
    b64_hash_str(v.as_str().ok_or_else(|| bad(what))?, what)
}

fn b64_hash_str(s: &str, what: &str) -> Result<[u8; 32], ChainError> {
    let bytes = STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .map_err(|_| bad(what))?;
    bytes.try_into().map_err(|_| bad(what))
}

/// A transaction hash as a getTransactions query carries it: 64 hex digits or base64 (standard
/// or URL-safe), as toncenter's servers accept.
pub fn parse_tx_hash(s: &str) -> Result<[u8; 32], ChainError> {
    if s.len() == 64 {
        let mut out = [0u8; 32];
        return hex::decode_to_slice(s, &mut out)
            .map(|()| out)
            .map_err(|_| bad("hash"));
    }
    b64_hash_str(s, "hash")
}

fn opt_boc(v: Option<&Value>) -> Result<Option<Cell>, ChainError> {
    match v.and_then(Value::as_str) {
        None | Some("") => Ok(None),
        Some(s) => Ok(Some(cells::decode_boc_base64(s, MAX_BOC_BYTES)?)),
    }
}

fn opt_addr(v: Option<&Value>) -> Result<Option<TonAddress>, ChainError> {
    match v.and_then(Value::as_str) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| bad("address")),
    }
}

// === integers ===

/// `"0x2a"` / `"-0x2a"` / decimal -> BigInt (at most 257 bits, as on the TVM stack).
pub fn parse_int(s: &str) -> Result<BigInt, ChainError> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.len() > 80 {
        return Err(bad("integer too long"));
    }
    let v = match rest.strip_prefix("0x") {
        Some(h) => BigInt::parse_bytes(h.as_bytes(), 16),
        None => BigInt::parse_bytes(rest.as_bytes(), 10),
    }
    .ok_or_else(|| bad("integer"))?;
    Ok(if neg { -v } else { v })
}

/// BigInt -> toncenter's `"0x.."` form.
pub fn format_int(v: &BigInt) -> String {
    let (sign, mag) = (v.sign(), v.magnitude());
    let hex = mag.to_str_radix(16);
    if sign == Sign::Minus {
        format!("-0x{hex}")
    } else {
        format!("0x{hex}")
    }
}

// === stack ===

/// Get-method arguments in the request form: `[["num","0x.."],["tvm.Cell","b64"],["tvm.Slice","b64"]]`.
/// A null argument has no request form on toncenter's servers (the Python one answers 503, the
/// C++ one 542), so it is refused here rather than sent.
pub fn stack_to_request(stack: &[StackEntry]) -> Result<Value, ChainError> {
    stack
        .iter()
        .map(|e| match e {
            StackEntry::Int(v) => Ok(json!(["num", format_int(v)])),
            StackEntry::Cell(c) => Ok(json!(["tvm.Cell", cells::encode_boc_base64(c)])),
            StackEntry::Slice(c) => Ok(json!(["tvm.Slice", cells::encode_boc_base64(c)])),
            StackEntry::Null => Err(ChainError::Unsupported(
                "a null get-method argument (the TON HTTP API has no form for it)",
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// Parses the request form (server side).
pub fn stack_from_request(v: &Value) -> Result<Vec<StackEntry>, ChainError> {
    let arr = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(bad("stack")),
    };
    if arr.len() > MAX_STACK {
        return Err(bad("stack too deep"));
    }
    arr.iter()
        .map(|e| {
            let kind = e
                .get(0)
                .and_then(Value::as_str)
                .ok_or_else(|| bad("stack entry"))?;
            let val = e.get(1).unwrap_or(&Value::Null);
            match kind {
                "num" | "int" => Ok(StackEntry::Int(match val {
                    Value::Number(n) => parse_int(&n.to_string())?,
                    Value::String(s) => parse_int(s)?,
                    _ => return Err(bad("stack number")),
                })),
                "tvm.Cell" | "cell" => Ok(StackEntry::Cell(boc_field(val)?)),
                "tvm.Slice" | "slice" => Ok(StackEntry::Slice(boc_field(val)?)),
                _ => Err(ChainError::Unsupported("stack entry type")),
            }
        })
        .collect()
}

fn boc_field(v: &Value) -> Result<Cell, ChainError> {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Object(_) => v
            .get("bytes")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("cell bytes"))?,
        _ => return Err(bad("cell")),
    };
    Ok(cells::decode_boc_base64(s, MAX_BOC_BYTES)?)
}

/// Result stack in the response form, as toncenter's servers write it: `[["num","0x.."],
/// ["cell",{"bytes":".."}]]`. A slice is tagged `cell` too (so is every slice toncenter
/// returns: an address comes back as a cell), and a null is an empty `tvm.list`.
pub fn stack_to_response(stack: &[StackEntry]) -> Value {
    Value::Array(
        stack
            .iter()
            .map(|e| match e {
                StackEntry::Int(v) => json!(["num", format_int(v)]),
                StackEntry::Cell(c) | StackEntry::Slice(c) => {
                    json!(["cell", {"bytes": cells::encode_boc_base64(c)}])
                }
                StackEntry::Null => json!(["list", {"@type": "tvm.list", "elements": []}]),
            })
            .collect(),
    )
}

/// Parses a `smc.runResult`.
pub fn run_result_from_json(v: &Value) -> Result<GetMethodResult, ChainError> {
    let exit_code: i32 = num_str(v.get("exit_code").unwrap_or(&Value::Null), "exit_code")?;
    let gas_used: u64 = num_str(v.get("gas_used").unwrap_or(&json!(0)), "gas_used")?;
    let arr = v
        .get("stack")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("stack"))?;
    if arr.len() > MAX_STACK {
        return Err(bad("stack too deep"));
    }
    let mut stack = Vec::with_capacity(arr.len());
    for e in arr {
        let kind = e
            .get(0)
            .and_then(Value::as_str)
            .ok_or_else(|| bad("stack entry"))?;
        let val = e.get(1).unwrap_or(&Value::Null);
        stack.push(match kind {
            "num" => StackEntry::Int(parse_int(val.as_str().ok_or_else(|| bad("num"))?)?),
            "cell" => StackEntry::Cell(boc_field(val)?),
            "slice" => StackEntry::Slice(boc_field(val)?),
            "null" => StackEntry::Null,
            "list" | "tuple" => {
                let empty = val
                    .get("elements")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if !empty {
                    return Err(ChainError::Unsupported(
                        "non-empty tuple on the result stack",
                    ));
                }
                StackEntry::Null
            }
            _ => return Err(ChainError::Unsupported("stack entry type")),
        });
    }
    Ok(GetMethodResult {
        exit_code,
        gas_used,
        stack,
    })
}

/// Builds a `smc.runResult`.
pub fn run_result_to_json(r: &GetMethodResult) -> Value {
    json!({"@type": "smc.runResult", "gas_used": r.gas_used, "stack": stack_to_response(&r.stack), "exit_code": r.exit_code})
}

// === account state ===

/// Parses a `raw.fullAccountState` (getAddressInformation).
pub fn account_from_json(v: &Value) -> Result<AccountState, ChainError> {
    let balance: u128 = num_str(v.get("balance").unwrap_or(&json!("0")), "balance")?;
    let status = match v.get("state").and_then(Value::as_str) {
        Some("active") => AccountStatus::Active,
        Some("frozen") => AccountStatus::Frozen,
        Some("uninitialized") | None => AccountStatus::Uninit,
        Some(_) => return Err(bad("state")),
    };
    let code = opt_boc(v.get("code"))?;
    let data = opt_boc(v.get("data"))?;
    let (last_tx_lt, last_tx_hash) = match v.get("last_transaction_id") {
        Some(t) => (
            num_str(t.get("lt").unwrap_or(&json!("0")), "lt")?,
            b64_hash(t.get("hash").unwrap_or(&Value::Null), "hash").unwrap_or([0; 32]),
        ),
        None => (0, [0; 32]),
    };
    Ok(AccountState {
        balance,
        status,
        code,
        data,
        last_tx_lt,
        last_tx_hash,
    })
}

/// Builds a `raw.fullAccountState`.
pub fn account_to_json(a: &AccountState, sync_utime: u32) -> Value {
    let boc = |c: &Option<Cell>| c.as_ref().map(cells::encode_boc_base64).unwrap_or_default();
    json!({
        "@type": "raw.fullAccountState",
        "balance": a.balance.to_string(),
        "code": boc(&a.code),
        "data": boc(&a.data),
        "last_transaction_id": {"@type": "internal.transactionId", "lt": a.last_tx_lt.to_string(), "hash": STANDARD.encode(a.last_tx_hash)},
        "frozen_hash": "",
        "sync_utime": sync_utime,
        "state": match a.status { AccountStatus::Active => "active", AccountStatus::Frozen => "frozen", AccountStatus::Uninit => "uninitialized" },
    })
}

// === transactions ===

fn msg_from_json(v: &Value) -> Result<MsgInfo, ChainError> {
    // A body that does not decode (a third party's exotic cells, say) costs only this message
    // its body: failing the page would stall every reader of the account on it for good.
    let body = v
        .get("msg_data")
        .and_then(|d| opt_boc(d.get("body")).ok())
        .flatten();
    Ok(MsgInfo {
        source: opt_addr(v.get("source"))?,
        destination: opt_addr(v.get("destination"))?,
        value: num_str(v.get("value").unwrap_or(&json!("0")), "value")?,
        fwd_fee: num_str(v.get("fwd_fee").unwrap_or(&json!("0")), "fwd_fee")?,
        body,
    })
}

fn msg_to_json(m: &MsgInfo) -> Value {
    let a = |x: &Option<TonAddress>| x.map(|a| a.to_bounceable()).unwrap_or_default();
    json!({
        "@type": "raw.message",
        "source": a(&m.source),
        "destination": a(&m.destination),
        "value": m.value.to_string(),
        "fwd_fee": m.fwd_fee.to_string(),
        "ihr_fee": "0",
        "msg_data": {"@type": "msg.dataRaw", "body": m.body.as_ref().map(cells::encode_boc_base64).unwrap_or_default(), "init_state": ""},
    })
}

/// Most out-messages a transaction can have (TON's limit is 255).
const MAX_OUT_MSGS: usize = 255;

/// Parses one `raw.transaction`.
pub fn tx_from_json(v: &Value) -> Result<TxInfo, ChainError> {
    let id = v
        .get("transaction_id")
        .ok_or_else(|| bad("transaction_id"))?;
    let lt: u64 = num_str(id.get("lt").unwrap_or(&Value::Null), "lt")?;
    let hash = b64_hash(id.get("hash").unwrap_or(&Value::Null), "hash")?;
    let utime: u32 = num_str(v.get("utime").unwrap_or(&json!(0)), "utime")?;
    let fee: u128 = num_str(v.get("fee").unwrap_or(&json!("0")), "fee")?;
    let in_msg = match v.get("in_msg") {
        Some(m) if !m.is_null() => Some(msg_from_json(m)?),
        _ => None,
    };
    let outs = v
        .get("out_msgs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if outs.len() > MAX_OUT_MSGS {
        return Err(bad("too many out_msgs"));
    }
    let out_msgs = outs
        .iter()
        .map(msg_from_json)
        .collect::<Result<Vec<_>, _>>()?;
    let (exit_code, aborted) = match opt_boc(v.get("data"))? {
        Some(c) => tx_outcome(&c),
        None => (None, None),
    };
    Ok(TxInfo {
        lt,
        hash,
        utime,
        fee,
        in_msg,
        out_msgs,
        exit_code,
        aborted,
    })
}

/// Compute exit code and `aborted` of a raw transaction cell (None when it does not parse as ordinary).
pub fn tx_outcome(c: &Cell) -> (Option<i32>, Option<bool>) {
    use tycho_types::models::{ComputePhase, Transaction, TxInfo as TyTx};
    let Ok(tx) = c.parse::<Transaction>() else {
        return (None, None);
    };
    match tx.load_info() {
        Ok(TyTx::Ordinary(o)) => {
            let code = match &o.compute_phase {
                ComputePhase::Executed(e) => Some(e.exit_code),
                ComputePhase::Skipped(_) => None,
            };
            (code, Some(o.aborted))
        }
        _ => (None, None),
    }
}

/// Builds one `raw.transaction` (the raw transaction BOC goes into `data`).
pub fn tx_to_json(t: &TxInfo, addr: &TonAddress, raw: Option<&Cell>) -> Value {
    json!({
        "@type": "raw.transaction",
        "address": {"@type": "accountAddress", "account_address": addr.to_bounceable()},
        "utime": t.utime,
        "data": raw.map(cells::encode_boc_base64).unwrap_or_default(),
        "transaction_id": {"@type": "internal.transactionId", "lt": t.lt.to_string(), "hash": STANDARD.encode(t.hash)},
        "fee": t.fee.to_string(),
        "storage_fee": "0",
        "other_fee": t.fee.to_string(),
        "in_msg": t.in_msg.as_ref().map(msg_to_json),
        "out_msgs": t.out_msgs.iter().map(msg_to_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ints() {
        assert_eq!(parse_int("0x2a").unwrap(), BigInt::from(42));
        assert_eq!(parse_int("-0x2a").unwrap(), BigInt::from(-42));
        assert_eq!(parse_int("42").unwrap(), BigInt::from(42));
        assert!(parse_int("0xzz").is_err());
        assert!(parse_int(&"1".repeat(100)).is_err());
    }

    proptest! {
        #[test]
        fn int_round_trip(v in any::<i128>()) {
            let b = BigInt::from(v);
            prop_assert_eq!(parse_int(&format_int(&b)).unwrap(), b);
        }
    }

    #[test]
    fn stack_round_trip() {
        let c = tycho_types::cell::CellBuilder::new().build().unwrap();
        let s = vec![
            StackEntry::int(-5),
            StackEntry::Cell(c.clone()),
            StackEntry::Slice(c.clone()),
        ];
        let c2 = c;
        assert_eq!(
            stack_from_request(&stack_to_request(&s).unwrap()).unwrap(),
            s
        );
        let r = GetMethodResult {
            exit_code: 0,
            gas_used: 7,
            stack: s.clone(),
        };
        // Results carry slices as cells, as toncenter does.
        let mut as_cells = r.clone();
        as_cells.stack[2] = StackEntry::Cell(c2);
        assert_eq!(
            run_result_from_json(&run_result_to_json(&r)).unwrap(),
            as_cells
        );
        let with_null = GetMethodResult {
            stack: vec![StackEntry::Null],
            ..r
        };
        assert_eq!(
            run_result_from_json(&run_result_to_json(&with_null)).unwrap(),
            with_null
        );
    }

    #[test]
    fn a_null_argument_is_refused_before_sending() {
        assert!(matches!(
            stack_to_request(&[StackEntry::int(1), StackEntry::Null]),
            Err(ChainError::Unsupported(_))
        ));
        assert!(stack_from_request(&json!([["null", ""]])).is_err());
    }

    #[test]
    fn an_undecodable_message_body_costs_only_that_body() {
        let tx = json!({
            "transaction_id": {"lt": "5", "hash": STANDARD.encode([7u8; 32])},
            "in_msg": {"source": "", "value": "1", "msg_data": {"body": "not a boc"}},
            "out_msgs": [],
        });
        let t = tx_from_json(&tx).unwrap();
        assert_eq!(t.lt, 5);
        assert_eq!(t.in_msg.unwrap().body, None);
    }

    #[test]
    fn the_python_servers_numeric_zero_balance_parses() {
        let a = account_from_json(&json!({"balance": 0, "state": "uninitialized"})).unwrap();
        assert_eq!((a.balance, a.status), (0, AccountStatus::Uninit));
    }

    #[test]
    fn transaction_hashes_parse_as_hex_or_base64() {
        let h = [0xabu8; 32];
        assert_eq!(parse_tx_hash(&hex::encode(h)).unwrap(), h);
        assert_eq!(parse_tx_hash(&STANDARD.encode(h)).unwrap(), h);
        assert!(parse_tx_hash("abc").is_err());
    }
}
