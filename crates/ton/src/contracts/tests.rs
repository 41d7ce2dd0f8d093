//! Tests of the contract layouts against the committed build (`contracts/build/hashes.json`) and the
//! `@ton/sandbox` scenario (`contracts/tests/scenario-full-cycle.json`): code hashes, addresses, init data,
//! and byte-identical message bodies (signed ones included, Ed25519 being deterministic).

use super::*;
use crate::payments::{PaymentPayload, ProxySigner, SignedKind, SignedPayment};
use serde_json::Value;

const SCENARIO: &str = include_str!("../../../../contracts/tests/scenario-full-cycle.json");
const HASHES: &str = include_str!("../../../../contracts/build/hashes.json");

fn scenario() -> Value {
    serde_json::from_str(SCENARIO).unwrap()
}

fn acct(s: &Value, name: &str) -> TonAddress {
    s["accounts"][name].as_str().unwrap().parse().unwrap()
}

/// The contract tests' proxy key: seed = "cocoon-proxy-key" zero-padded to 32 bytes.
pub(crate) fn scenario_signer() -> ProxySigner {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(b"cocoon-proxy-key");
    ProxySigner::from_seed(&seed).unwrap()
}

fn network() -> Network {
    Network {
        params: CocoonParams::default(),
        proxy_public_key: scenario_signer().public_key(),
    }
}

fn boc(v: &Value) -> Cell {
    cells::decode_boc_base64(v.as_str().unwrap(), MAX_BOC_BYTES).unwrap()
}

#[test]
fn code_hashes_match_build() {
    let hashes: Value = serde_json::from_str(HASHES).unwrap();
    for k in ContractKind::ALL {
        let code = k.code().unwrap();
        assert_eq!(
            hex::encode(code.repr_hash().0),
            hashes[k.name()].as_str().unwrap(),
            "{}",
            k.name()
        );
    }
}

#[test]
fn proxy_key_matches_scenario() {
    let s = scenario();
    assert_eq!(
        hex::encode(scenario_signer().public_key()),
        s["proxyPublicKey"].as_str().unwrap()
    );
}

#[test]
fn addresses_and_init_data_match_scenario() {
    let s = scenario();
    let net = network();
    let root = Network::root(&acct(&s, "rootOwner"), &net.params).unwrap();
    assert_eq!(root.address, acct(&s, "root"));
    let proxy = net.proxy(&acct(&s, "proxyOwner"), &root.address).unwrap();
    assert_eq!(proxy.address, acct(&s, "proxy"));
    let client = net
        .client(&acct(&s, "clientOwner"), &proxy.address)
        .unwrap();
    assert_eq!(client.address, acct(&s, "client"));
    let client2 = net.client(&acct(&s, "stranger"), &proxy.address).unwrap();
    assert_eq!(client2.address, acct(&s, "client2"));
    let worker = net
        .worker(&acct(&s, "workerOwner"), &proxy.address)
        .unwrap();
    assert_eq!(worker.address, acct(&s, "worker"));

    // The deploy steps carry exactly our init data.
    let by_dest = [&root, &proxy, &client, &client2, &worker];
    let mut seen = 0;
    for step in s["steps"].as_array().unwrap() {
        let m = &step["message"];
        if m["init"].is_null() {
            continue;
        }
        let dest: TonAddress = m["dest"].as_str().unwrap().parse().unwrap();
        let d = by_dest.iter().find(|d| d.address == dest).unwrap();
        assert_eq!(boc(&m["init"]["data"]), d.data, "{}", step["name"]);
        assert_eq!(boc(&m["init"]["code"]), d.code, "{}", step["name"]);
        seen += 1;
    }
    assert_eq!(seen, 5);
}

#[test]
fn root_state_parses_from_init_data() {
    let s = scenario();
    let net = network();
    let root = Network::root(&acct(&s, "rootOwner"), &net.params).unwrap();
    let st = parse_root_data(&root.data).unwrap();
    assert_eq!(st.owner, acct(&s, "rootOwner"));
    assert_eq!(st.params, net.params);
    assert_eq!(st.codes, ParamsCodes::for_root().unwrap());
    assert!(st.proxies.is_empty() && st.worker_hashes.is_empty());
}

/// Rebuilds every scenario body from its fields with our builders and compares bit for bit.
#[test]
fn bodies_match_scenario() {
    let s = scenario();
    let signer = scenario_signer();
    let mut checked = 0;
    for step in s["steps"].as_array().unwrap() {
        let name = step["name"].as_str().unwrap();
        let body = boc(&step["message"]["body"]);
        let mut sl = body.as_slice().unwrap();
        if sl.size_bits() == 0 {
            continue; // plain deploy
        }
        let op_code = sl.load_u32().unwrap();
        if op_code == 0 {
            let text = &body.data()[4..];
            assert_eq!(
                ProxyOp::Text(text[0] as char).body(0).unwrap(),
                body,
                "{name}"
            );
            checked += 1;
            continue;
        }
        let qid = sl.load_u64().unwrap();
        let h = |sl: &mut CellSlice<'_>| sl.load_u256().unwrap().0;
        let a = |sl: &mut CellSlice<'_>| load_addr(sl).unwrap();
        let t = |sl: &mut CellSlice<'_>| load_tokens(sl).unwrap();
        let rebuilt = match op_code {
            op::ROOT_ADD_WORKER_TYPE => RootOp::AddWorkerType(h(&mut sl)).body(qid),
            op::ROOT_DEL_WORKER_TYPE => RootOp::DelWorkerType(h(&mut sl)).body(qid),
            op::ROOT_ADD_MODEL_TYPE => RootOp::AddModelType(h(&mut sl)).body(qid),
            op::ROOT_DEL_MODEL_TYPE => RootOp::DelModelType(h(&mut sl)).body(qid),
            op::ROOT_ADD_PROXY_TYPE => RootOp::AddProxyType(h(&mut sl)).body(qid),
            op::ROOT_DEL_PROXY_TYPE => RootOp::DelProxyType(h(&mut sl)).body(qid),
            op::ROOT_REGISTER_PROXY | op::ROOT_UPDATE_PROXY => {
                let seqno = (op_code == op::ROOT_UPDATE_PROXY).then(|| sl.load_u32().unwrap());
                assert!(!sl.load_bit().unwrap());
                let len = sl.load_small_uint(7).unwrap() as usize;
                let mut buf = vec![0u8; len];
                sl.load_raw(&mut buf, (len * 8) as u16).unwrap();
                let text = String::from_utf8(buf).unwrap();
                match seqno {
                    Some(n) => RootOp::UpdateProxy(n, text).body(qid),
                    None => RootOp::RegisterProxy(text).body(qid),
                }
            }
            op::ROOT_UNREGISTER_PROXY => RootOp::UnregisterProxy(sl.load_u32().unwrap()).body(qid),
            op::ROOT_CHANGE_FEES => RootOp::ChangeFees {
                price_per_token: t(&mut sl),
                worker_fee_per_token: t(&mut sl),
            }
            .body(qid),
            op::ROOT_CHANGE_PARAMS => RootOp::ChangeParams {
                price_per_token: t(&mut sl),
                worker_fee_per_token: t(&mut sl),
                proxy_delay_before_close: sl.load_u32().unwrap(),
                client_delay_before_close: sl.load_u32().unwrap(),
                min_proxy_stake: t(&mut sl),
                min_client_stake: t(&mut sl),
            }
            .body(qid),
            op::ROOT_UPGRADE_CONTRACTS => RootOp::UpgradeContracts {
                proxy_code: sl.load_reference_cloned().unwrap(),
                worker_code: sl.load_reference_cloned().unwrap(),
                client_code: sl.load_reference_cloned().unwrap(),
            }
            .body(qid),
            op::ROOT_UPGRADE_CODE => {
                RootOp::UpgradeCode(sl.load_reference_cloned().unwrap()).body(qid)
            }
            op::ROOT_CHANGE_OWNER => RootOp::ChangeOwner(a(&mut sl)).body(qid),
            op::EXT_PROXY_INCREASE_STAKE => ProxyOp::IncreaseStake {
                grams: t(&mut sl),
                send_excesses_to: a(&mut sl),
            }
            .body(qid),
            op::EXT_PROXY_PAYOUT_REQUEST => ProxyOp::PayoutRequest {
                send_excesses_to: a(&mut sl),
            }
            .body(qid),
            op::DO_NOT_PROCESS => {
                let ProxyInbound::SaveState {
                    query_id,
                    seqno,
                    session_hash,
                } = parse_proxy_inbound(&body).unwrap()
                else {
                    panic!("{name}: not a save-state marker");
                };
                assert_eq!(query_id, qid);
                sl = body.as_slice().unwrap();
                sl.skip_first(body.bit_len(), 0).unwrap();
                ProxyOp::SaveState {
                    seqno,
                    session_hash,
                }
                .body(qid)
            }
            op::EXT_CLIENT_TOP_UP => ClientOp::TopUp {
                amount: t(&mut sl),
                send_excesses_to: a(&mut sl),
            }
            .body(qid),
            op::OWNER_CLIENT_REGISTER => ClientOp::Register {
                nonce: sl.load_u64().unwrap(),
                send_excesses_to: a(&mut sl),
            }
            .body(qid),
            op::OWNER_CLIENT_CHANGE_SECRET_HASH => ClientOp::ChangeSecretHash {
                secret_hash: h(&mut sl),
                send_excesses_to: a(&mut sl),
            }
            .body(qid),
            op::OWNER_CLIENT_CHANGE_SECRET_HASH_AND_TOP_UP => ClientOp::ChangeSecretHashAndTopUp {
                amount: t(&mut sl),
                secret_hash: h(&mut sl),
                send_excesses_to: a(&mut sl),
            }
            .body(qid),
            op::OWNER_CLIENT_INCREASE_STAKE => ClientOp::IncreaseStake {
                new_stake: t(&mut sl),
                send_excesses_to: a(&mut sl),
            }
            .body(qid),
            op::OWNER_CLIENT_WITHDRAW => ClientOp::Withdraw {
                send_excesses_to: a(&mut sl),
            }
            .body(qid),
            op::OWNER_CLIENT_REQUEST_REFUND => ClientOp::RequestRefund {
                send_excesses_to: a(&mut sl),
            }
            .body(qid),
            op::OWNER_WORKER_REGISTER => worker_register_body(qid, &a(&mut sl)),
            o if SignedKind::from_op(o).is_some() => {
                let parsed = SignedPayment::from_body(&body).unwrap();
                parsed.verify(&signer.public_key()).unwrap();
                let p = PaymentPayload {
                    ..parsed.payload.clone()
                };
                sl = body.as_slice().unwrap();
                sl.skip_first(body.bit_len(), 1).unwrap();
                signer.sign(p, parsed.send_excesses_to).unwrap().to_body()
            }
            other => panic!("{name}: op {other:#x} not covered"),
        }
        .unwrap();
        cells::expect_end(&sl).unwrap_or_else(|_| panic!("{name}: trailing data"));
        assert_eq!(rebuilt, body, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 39);
}

#[test]
fn proxy_inbound_parses_reports() {
    let owner = TonAddress::new(0, [3; 32]);
    // client report with a top-up payload
    let mut st = CellBuilder::new();
    st.store_small_uint(0, 2).unwrap();
    store_tokens(&mut st, 5).unwrap();
    store_tokens(&mut st, 6).unwrap();
    st.store_u64(7).unwrap();
    st.store_u256(&HashBytes([8; 32])).unwrap();
    let mut pl = CellBuilder::new();
    pl.store_u32(op::CLIENT_PROXY_TOP_UP).unwrap();
    store_tokens(&mut pl, 99).unwrap();
    store_addr(&mut pl, &owner).unwrap();
    let mut b = head(op::CLIENT_PROXY_REQUEST, 11).unwrap();
    store_addr(&mut b, &owner).unwrap();
    b.store_reference(st.build().unwrap()).unwrap();
    b.store_bit_one().unwrap();
    b.store_reference(pl.build().unwrap()).unwrap();
    let got = parse_proxy_inbound(&b.build().unwrap()).unwrap();
    assert_eq!(
        got,
        ProxyInbound::ClientReport {
            query_id: 11,
            owner,
            data: ClientStateData {
                state: 0,
                balance: 5,
                stake: 6,
                tokens_used: 7,
                secret_hash: [8; 32]
            },
            payload: Some(ClientPayload::TopUp {
                coins: 99,
                send_excesses_to: owner
            }),
        }
    );
    assert_eq!(
        parse_proxy_inbound(&text_body("w").unwrap()).unwrap(),
        ProxyInbound::Other(0)
    );
}

#[test]
fn getter_parsers() {
    let owner = TonAddress::new(0, [3; 32]);
    let mut b = CellBuilder::new();
    store_addr(&mut b, &owner).unwrap();
    let addr = StackEntry::Slice(b.build().unwrap());
    let stack = vec![
        addr.clone(),
        addr.clone(),
        u256_arg(&[9; 32]),
        StackEntry::int(0),
        StackEntry::int(42),
    ];
    let w = WorkerData::from_stack(&stack).unwrap();
    assert_eq!(w.owner, owner);
    assert_eq!(w.proxy_public_key, [9; 32]);
    assert_eq!(w.tokens, 42);
    assert!(WorkerData::from_stack(&stack[..4]).is_err());
    assert!(parse_bool_result(&[StackEntry::int(-1)]).unwrap());
    assert!(!parse_bool_result(&[StackEntry::int(0)]).unwrap());
}

#[test]
fn proxy_description_is_bounded() {
    assert!(RootOp::RegisterProxy("x".repeat(128)).body(1).is_err());
    assert!(RootOp::RegisterProxy("ü".into()).body(1).is_err());
    assert!(
        RootOp::RegisterProxy("127.0.0.1:11001 127.0.0.1:11002".into())
            .body(1)
            .is_ok()
    );
}

#[test]
fn params_round_trip() {
    let p = CocoonParams {
        price_per_token: 7,
        is_test: false,
        ..CocoonParams::default()
    };
    for codes in [
        ParamsCodes::default(),
        ParamsCodes::for_proxy().unwrap(),
        ParamsCodes::for_root().unwrap(),
    ] {
        let c = p.to_cell(&codes).unwrap();
        assert_eq!(CocoonParams::from_cell(&c).unwrap(), (p.clone(), codes));
    }
}

#[test]
fn proxy_storage_parses_what_proxy_data_writes() {
    let owner: TonAddress = format!("0:{}", "11".repeat(32)).parse().unwrap();
    let root: TonAddress = format!("0:{}", "22".repeat(32)).parse().unwrap();
    let params = CocoonParams {
        params_version: 7,
        price_per_token: 5,
        ..CocoonParams::default()
    };
    let cell = params.to_cell(&ParamsCodes::for_proxy().unwrap()).unwrap();
    let data = proxy_data(&owner, &[3; 32], &root, cell).unwrap();
    let st = parse_proxy_storage(&data).unwrap();
    assert_eq!(st.owner, owner);
    assert_eq!(st.root, root);
    assert_eq!(st.proxy_public_key, [3; 32]);
    assert_eq!(st.params, params);
    assert_eq!((st.state, st.balance, st.stake, st.unlock_ts), (0, 0, 0, 0));
    // A truncated cell is an error, not a panic.
    let mut b = tycho_types::cell::CellBuilder::new();
    b.store_u32(1).unwrap();
    assert!(parse_proxy_storage(&b.build().unwrap()).is_err());
}
