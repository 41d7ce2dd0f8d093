//! Differential test: replays `contracts/tests/scenario-full-cycle.json` (recorded on @ton/sandbox 0.41.0
//! with its default mainnet config) on our ledger and asserts the same exit codes, gas, fees, balances and
//! data hashes on the five Cocoon contracts. The scenario covers every root op, including the struct-5 ones
//! (key manager, registered public keys owner-added and key-manager-signed, verified keys). The sandbox's wallet (treasury) accounts are not deployed here,
//! so their own transactions are not compared (the scenario says they are "listed for completeness only").

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use cocoon_localnet::ledger::{internal_message, Ledger};
use cocoon_ton::cells::{decode_boc_base64, state_init, MAX_BOC_BYTES};
use cocoon_ton::chain::AccountStatus;
use cocoon_ton::contracts::{
    parse_bool_result, parse_root_data, parse_u32_result, u256_arg, ClientData, ProxyData,
    RootCurParams, RootData, VerifiedKeyKind, WorkerData,
};
use cocoon_ton::TonAddress;
use serde_json::Value;

const SCENARIO: &str = include_str!("../../../contracts/tests/scenario-full-cycle.json");
const CONTRACTS: [&str; 5] = ["root", "proxy", "client", "client2", "worker"];

fn addr(v: &Value) -> TonAddress {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn full_cycle_matches_sandbox() {
    let s: Value = serde_json::from_str(SCENARIO).unwrap();
    let start = s["startTime"].as_u64().unwrap() as u32;
    let accounts = s["accounts"].as_object().unwrap();
    let name_of = |a: &TonAddress| {
        accounts
            .iter()
            .find(|(_, v)| addr(v) == *a)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| a.to_raw())
    };
    let mut ledger = Ledger::with_default_config(start).unwrap();
    let mut mismatches = Vec::new();
    let mut compared = 0;

    for step in s["steps"].as_array().unwrap() {
        let name = step["name"].as_str().unwrap();
        let now = step["now"].as_u64().unwrap() as u32;
        let m = &step["message"];
        let body = decode_boc_base64(m["body"].as_str().unwrap(), MAX_BOC_BYTES).unwrap();
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
        let ours = ledger.execute_internal(msg, now).unwrap();

        let ours: Vec<_> = ours
            .iter()
            .filter(|t| CONTRACTS.contains(&name_of(&t.account).as_str()))
            .collect();
        let theirs: Vec<&Value> = step["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| CONTRACTS.contains(&t["account"].as_str().unwrap()))
            .collect();
        if ours.len() != theirs.len() {
            mismatches.push(format!(
                "{name}: {} txs on contracts here, {} on sandbox",
                ours.len(),
                theirs.len()
            ));
            continue;
        }
        for (o, t) in ours.iter().zip(theirs) {
            let who = t["account"].as_str().unwrap();
            let exp_exit = t["exitCode"].as_i64().map(|c| c as i32);
            let exp_gas = t["gasUsed"].as_u64().unwrap_or(0);
            let exp_fees: u128 = t["totalFees"].as_str().unwrap().parse().unwrap();
            let exp_skipped = t["computeSkipped"].as_bool().unwrap();
            let got = (
                name_of(&o.account),
                o.exit_code,
                o.gas_used,
                o.total_fees,
                o.compute_skipped,
            );
            let exp = (who.to_string(), exp_exit, exp_gas, exp_fees, exp_skipped);
            if got != exp {
                mismatches.push(format!("{name}: tx here {got:?} != sandbox {exp:?}"));
            }
            compared += 1;
        }
        for c in CONTRACTS {
            let exp = &step["after"][c];
            let a = addr(&s["accounts"][c]);
            let st = ledger.account_state(&a).unwrap();
            if exp.is_null() {
                if st.status == AccountStatus::Active {
                    mismatches.push(format!("{name}: {c} exists here, not on sandbox"));
                }
                continue;
            }
            let bal: u128 = exp["balance"].as_str().unwrap().parse().unwrap();
            let data_hash = st
                .data
                .as_ref()
                .map(|d| hex::encode(d.repr_hash().0))
                .unwrap_or_default();
            if st.balance != bal || data_hash != exp["dataHash"].as_str().unwrap() {
                mismatches.push(format!(
                    "{name}: {c} balance/data here {}/{} != sandbox {}/{}",
                    st.balance, data_hash, bal, exp["dataHash"]
                ));
            }
        }
    }
    check_getters(&ledger, &s);
    eprintln!(
        "compared {compared} transactions, {} mismatches",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(compared >= 50, "compared only {compared} transactions");
}

/// Every get-method parser against the real contracts, in the scenario's final state.
fn check_getters(ledger: &Ledger, s: &Value) {
    let a = |n: &str| addr(&s["accounts"][n]);
    let pk: [u8; 32] = hex::decode(s["proxyPublicKey"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let now = 1_760_001_000;
    let run = |who: &str, m: &str, args| {
        let r = ledger.run_get_method(&a(who), m, args, now).unwrap();
        assert!(r.success(), "{who}.{m} exit {}", r.exit_code);
        r.stack
    };

    let root = RootData::from_stack(&run("root", RootData::METHOD, vec![])).unwrap();
    assert_eq!(
        root.owner,
        a("rootOwner"),
        "the scenario's change_owner keeps the same owner"
    );
    assert!(root.version > 0);
    let cur = RootCurParams::from_stack(&run("root", RootCurParams::METHOD, vec![])).unwrap();
    assert_eq!(cur.params_version, root.params_version);
    assert_eq!(
        parse_u32_result(&run("root", "last_proxy_seqno", vec![])).unwrap(),
        root.last_proxy_seqno
    );
    assert!(!parse_bool_result(&run(
        "root",
        "model_hash_is_valid",
        vec![u256_arg(&[0x77; 32])]
    ))
    .unwrap());

    // Struct version 5: the root's data as our executor left it is the sandbox's, and parses.
    let key = |b: u8| {
        let mut k = [0u8; 32];
        k[31] = b;
        k
    };
    let data = ledger.account_state(&a("root")).unwrap().data.unwrap();
    let expected = decode_boc_base64(s["rootDataFinal"].as_str().unwrap(), MAX_BOC_BYTES).unwrap();
    assert_eq!(data, expected, "root data after the scenario");
    let st = parse_root_data(&data).unwrap();
    assert_eq!(st.params.struct_version, 5);
    let keys: Vec<_> = st.registered_keys().iter().map(|k| k.public_key).collect();
    assert_eq!(
        keys,
        vec![key(0xe2)],
        "owner-added 0xe1 deleted, signed 0xe2 kept"
    );
    assert!(st.has_verified_key(VerifiedKeyKind::Proxy, &key(0xf1)));
    assert!(!st.has_verified_key(VerifiedKeyKind::Worker, &key(0xf2)));
    assert!(st.has_verified_key(VerifiedKeyKind::KeyManager, &key(0xf3)));
    for (k, listed) in [(0xe2, true), (0xe1, false)] {
        let r = parse_bool_result(&run("root", "public_key_is_valid", vec![u256_arg(&key(k))]));
        assert_eq!(r.unwrap(), listed, "public_key_is_valid({k:#x})");
    }

    let proxy = ProxyData::from_stack(&run("proxy", ProxyData::METHOD, vec![])).unwrap();
    assert_eq!(
        (proxy.owner, proxy.root, proxy.proxy_public_key),
        (a("proxyOwner"), a("root"), pk)
    );
    assert_eq!(proxy.state, cocoon_ton::contracts::state::CLOSED);

    let client = ClientData::from_stack(&run("client", ClientData::METHOD, vec![])).unwrap();
    assert_eq!(
        (client.owner, client.proxy, client.proxy_public_key),
        (a("clientOwner"), a("proxy"), pk)
    );
    assert!(client.tokens_used > 0);
    let client2 = ClientData::from_stack(&run("client2", ClientData::METHOD, vec![])).unwrap();
    assert_eq!(client2.owner, a("stranger"));

    let worker = WorkerData::from_stack(&run("worker", WorkerData::METHOD, vec![])).unwrap();
    assert_eq!(
        (worker.owner, worker.proxy, worker.proxy_public_key),
        (a("workerOwner"), a("proxy"), pk)
    );
    assert!(worker.tokens > 0);
}
