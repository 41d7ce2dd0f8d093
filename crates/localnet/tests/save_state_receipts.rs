//! Our save-state marker with a receipts root after `session_hash` (cocoon-rs' longer body,
//! `cocoon_ton::contracts::ReceiptsAnchor`) on the Tolk proxy contract: replays
//! `contracts/tests/scenario-full-cycle.json` up to its save-state step, then sends the longer
//! body in its place. The contract must accept it as it accepts upstream's (exit 0, the message
//! kept in its transaction list); the gas is printed for docs/CONTRACTS.md.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use cocoon_localnet::ledger::{internal_message, Ledger};
use cocoon_ton::cells::{decode_boc_base64, state_init, MAX_BOC_BYTES};
use cocoon_ton::contracts::{parse_proxy_inbound, ProxyInbound, ProxyOp, ReceiptsAnchor};
use cocoon_ton::TonAddress;
use serde_json::Value;

const SCENARIO: &str = include_str!("../../../contracts/tests/scenario-full-cycle.json");
const SAVE_STATE_STEP: &str = "proxy: save-state marker (do_not_process)";

fn addr(v: &Value) -> TonAddress {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn the_proxy_contract_accepts_a_save_state_marker_with_a_receipts_root() {
    let s: Value = serde_json::from_str(SCENARIO).unwrap();
    let mut ledger = Ledger::with_default_config(s["startTime"].as_u64().unwrap() as u32).unwrap();
    let proxy = addr(&s["accounts"]["proxy"]);
    for step in s["steps"].as_array().unwrap() {
        let m = &step["message"];
        let now = step["now"].as_u64().unwrap() as u32;
        let mut body = decode_boc_base64(m["body"].as_str().unwrap(), MAX_BOC_BYTES).unwrap();
        let ours = step["name"] == SAVE_STATE_STEP;
        if ours {
            let ProxyInbound::SaveState {
                query_id,
                seqno,
                session_hash,
                receipts: None,
            } = parse_proxy_inbound(&body).unwrap()
            else {
                panic!("the scenario's marker is upstream's body");
            };
            let anchor = ReceiptsAnchor {
                root: [0x5a; 32],
                period_start: now - 600,
                period_end: now,
                leaves: 1_000_000,
            };
            body = ProxyOp::SaveState {
                seqno,
                session_hash,
                receipts: Some(anchor),
            }
            .body(query_id)
            .unwrap();
            let ProxyInbound::SaveState { receipts, .. } = parse_proxy_inbound(&body).unwrap()
            else {
                panic!("our marker parses");
            };
            assert_eq!(receipts, Some(anchor));
        }
        let init = (!m["init"].is_null()).then(|| {
            let code =
                decode_boc_base64(m["init"]["code"].as_str().unwrap(), MAX_BOC_BYTES).unwrap();
            let data =
                decode_boc_base64(m["init"]["data"].as_str().unwrap(), MAX_BOC_BYTES).unwrap();
            state_init(code, data)
        });
        let value: u128 = m["value"].as_str().unwrap().parse().unwrap();
        let msg = internal_message(
            &addr(&m["src"]),
            &addr(&m["dest"]),
            value,
            m["bounce"].as_bool().unwrap(),
            init.as_ref(),
            &body,
        )
        .unwrap();
        let txs = ledger.execute_internal(msg, now).unwrap();
        if ours {
            let tx = txs.iter().find(|t| t.account == proxy).unwrap();
            assert_eq!(tx.exit_code, Some(0), "the proxy contract refused it");
            assert!(!tx.compute_skipped);
            let upstream = step["transactions"][0]["gasUsed"].as_u64().unwrap();
            println!(
                "save-state marker with receipts root: gas {} (upstream's body: {upstream})",
                tx.gas_used
            );
            assert_eq!(txs.len(), 1, "a marker causes no further transactions");
            return;
        }
    }
    panic!("the scenario has no step {SAVE_STATE_STEP:?}");
}
