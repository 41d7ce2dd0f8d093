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

/// The contract tests' key-manager key: seed = "cocoon-key-manager" zero-padded to 32 bytes.
fn scenario_key_manager() -> ProxySigner {
    let mut seed = [0u8; 32];
    seed[..18].copy_from_slice(b"cocoon-key-manager");
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
            op::ROOT_CHANGE_KEY_MANAGER => RootOp::ChangeKeyManager {
                public_key: h(&mut sl),
                image_hash: h(&mut sl),
                address: load_net_addr(&mut sl).unwrap(),
            }
            .body(qid),
            op::ROOT_ADD_PUBLIC_KEY => RootOp::AddPublicKey(RegisteredKey {
                public_key: h(&mut sl),
                key_type: sl.load_u8().unwrap(),
                expire_at: sl.load_u32().unwrap(),
            })
            .body(qid),
            op::ROOT_DEL_PUBLIC_KEY => RootOp::DelPublicKey(h(&mut sl)).body(qid),
            op::ROOT_ADD_VERIFIED_KEY | op::ROOT_DEL_VERIFIED_KEY => {
                let kind = VerifiedKeyKind::ALL[sl.load_u8().unwrap() as usize];
                let key = h(&mut sl);
                match op_code {
                    op::ROOT_ADD_VERIFIED_KEY => RootOp::AddVerifiedKey(kind, key),
                    _ => RootOp::DelVerifiedKey(kind, key),
                }
                .body(qid)
            }
            op::ROOT_ADD_PUBLIC_KEY_SIGNED => {
                let excess = a(&mut sl);
                sl.skip_first(512, 0).unwrap();
                let payload = sl.load_reference_cloned().unwrap();
                let mut ps = payload.as_slice().unwrap();
                assert_eq!(ps.load_u32().unwrap(), op_code);
                assert_eq!(ps.load_u64().unwrap(), qid);
                let key = RegisteredKey {
                    public_key: ps.load_u256().unwrap().0,
                    key_type: ps.load_u8().unwrap(),
                    expire_at: ps.load_u32().unwrap(),
                };
                cells::expect_end(&ps).unwrap();
                add_public_key_signed_body(qid, &key, &excess, &scenario_key_manager())
            }
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
                    receipts: None,
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
                    receipts: None,
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
    assert_eq!(checked, 47);
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

// === root storage of struct versions 3, 4 and 5, built by hand to upstream's layout ===
//
// `RootContractConfig::load_from_state` (C++ node at 9060ce5) reads: owner, ^data, ^params (struct_version
// first), version:uint32, then if struct_version >= 4 one more ref: Maybe ^(HashmapE 256 key_type:uint8
// expire_at:uint32), key_manager_public_key:bits256, key_manager_image_hash:bits256, net address
// (0:1 len:7 bytes), nothing after; if >= 5 one more ref: three Maybe ^(HashmapE 256 ()) (proxy, worker,
// key-manager verified keys), nothing after; then nothing else in the root cell. The cells below are
// written with raw builders from that description, not with our serializers.

fn owner_addr() -> TonAddress {
    format!("0:{}", "5a".repeat(32)).parse().unwrap()
}

/// A HashmapE 256 -> `value_bits` (written through tycho's generic dictionary, values as raw bits).
fn raw_dict(entries: &[([u8; 32], Vec<u8>, u16)]) -> Option<Cell> {
    let mut d: Dict<HashBytes, CellSlice<'_>> = Dict::new();
    let values: Vec<Cell> = entries
        .iter()
        .map(|(_, v, bits)| {
            let mut b = CellBuilder::new();
            b.store_raw(v, *bits).unwrap();
            b.build().unwrap()
        })
        .collect();
    for ((k, _, _), v) in entries.iter().zip(&values) {
        d.set(HashBytes(*k), v.as_slice().unwrap()).unwrap();
    }
    d.into_root()
}

fn maybe(b: &mut CellBuilder, c: Option<Cell>) {
    match c {
        Some(c) => {
            b.store_bit_one().unwrap();
            b.store_reference(c).unwrap();
        }
        None => b.store_bit_zero().unwrap(),
    }
}

/// The params cell of struct version `v` (same fields for 3..5), with no code.
fn raw_params(v: u8) -> Cell {
    let mut b = CellBuilder::new();
    b.store_u8(v).unwrap();
    b.store_u32(4).unwrap(); // params_version
    b.store_u32(13).unwrap(); // unique_id
    b.store_bit_one().unwrap(); // is_test
    for coins in [2000u128, 1000] {
        cells::store(&mut b, &Tokens::new(coins)).unwrap();
    }
    for m in [10000u32, 5000, 10000, 20000, 600, 300] {
        b.store_u32(m).unwrap();
    }
    for coins in [1_000_000_000u128, 2_000_000_000] {
        cells::store(&mut b, &Tokens::new(coins)).unwrap();
    }
    for _ in 0..3 {
        b.store_bit_zero().unwrap();
    }
    b.build().unwrap()
}

fn raw_registry() -> Cell {
    let mut proxies: Dict<u32, CellSlice<'_>> = Dict::new();
    let mut v = CellBuilder::new();
    let text = b"127.0.0.1:11001 127.0.0.1:11002";
    v.store_bit_zero().unwrap();
    v.store_small_uint(text.len() as u8, 7).unwrap();
    v.store_raw(text, (text.len() * 8) as u16).unwrap();
    let v = v.build().unwrap();
    proxies.set(1, v.as_slice().unwrap()).unwrap();
    let mut b = CellBuilder::new();
    maybe(&mut b, raw_dict(&[([0xc1; 32], vec![], 0)]));
    maybe(&mut b, proxies.into_root());
    b.store_u32(1).unwrap();
    maybe(&mut b, raw_dict(&[([0xa1; 32], vec![], 0)]));
    maybe(&mut b, None);
    b.build().unwrap()
}

/// The struct-4 key-manager cell: keys (key, type, expire_at), key, image hash, address text.
fn raw_key_manager(keys: &[([u8; 32], u8, u32)], addr: &str) -> Cell {
    let entries: Vec<_> = keys
        .iter()
        .map(|(k, t, e)| {
            let mut v = vec![*t];
            v.extend_from_slice(&e.to_be_bytes());
            (*k, v, 40u16)
        })
        .collect();
    let mut b = CellBuilder::new();
    maybe(&mut b, raw_dict(&entries));
    b.store_raw(&[0x4b; 32], 256).unwrap();
    b.store_raw(&[0x1d; 32], 256).unwrap();
    b.store_bit_zero().unwrap();
    b.store_small_uint(addr.len() as u8, 7).unwrap();
    b.store_raw(addr.as_bytes(), (addr.len() * 8) as u16)
        .unwrap();
    b.build().unwrap()
}

fn raw_verified(proxy: &[[u8; 32]], worker: &[[u8; 32]], km: &[[u8; 32]]) -> Cell {
    let set =
        |keys: &[[u8; 32]]| raw_dict(&keys.iter().map(|k| (*k, vec![], 0)).collect::<Vec<_>>());
    let mut b = CellBuilder::new();
    maybe(&mut b, set(proxy));
    maybe(&mut b, set(worker));
    maybe(&mut b, set(km));
    b.build().unwrap()
}

fn raw_root(params: Cell, extra: &[Cell]) -> Cell {
    let mut b = CellBuilder::new();
    store_addr(&mut b, &owner_addr()).unwrap();
    b.store_u32(77).unwrap();
    b.store_reference(raw_registry()).unwrap();
    b.store_reference(params).unwrap();
    for c in extra {
        b.store_reference(c.clone()).unwrap();
    }
    b.build().unwrap()
}

#[test]
fn root_struct_3_reads_as_before() {
    let st = parse_root_data(&raw_root(raw_params(3), &[])).unwrap();
    assert_eq!(st.owner, owner_addr());
    assert_eq!(st.version, 77);
    assert_eq!(st.params.struct_version, 3);
    assert_eq!(
        (
            st.params.params_version,
            st.params.cached_mult,
            st.params.reasoning_mult
        ),
        (4, 5000, 20000)
    );
    assert_eq!(st.params.min_client_stake, 2_000_000_000);
    assert_eq!(st.proxy_hashes, vec![[0xc1; 32]]);
    assert_eq!(st.worker_hashes, vec![[0xa1; 32]]);
    assert_eq!(
        st.proxies,
        vec![(1, "127.0.0.1:11001 127.0.0.1:11002".to_string())]
    );
    assert_eq!((st.key_manager, st.verified_keys), (None, None));
    // A fourth ref (the key-manager cell) is not part of a struct-3 root.
    let km = raw_key_manager(&[], "");
    assert!(parse_root_data(&raw_root(raw_params(3), &[km])).is_err());
}

#[test]
fn root_struct_4_reads_the_key_manager_cell() {
    let km = raw_key_manager(
        &[
            ([0xfb; 32], 1, 2_000_000_000),
            ([0x02; 32], 7, 1_760_000_000),
        ],
        "127.0.0.1:13001",
    );
    let st = parse_root_data(&raw_root(raw_params(4), &[km])).unwrap();
    assert_eq!(st.params.struct_version, 4);
    let k = st.key_manager.as_ref().unwrap();
    assert_eq!(
        k.public_keys,
        vec![
            RegisteredKey {
                public_key: [0x02; 32],
                key_type: 7,
                expire_at: 1_760_000_000
            },
            RegisteredKey {
                public_key: [0xfb; 32],
                key_type: 1,
                expire_at: 2_000_000_000
            },
        ]
    );
    assert_eq!((k.public_key, k.image_hash), ([0x4b; 32], [0x1d; 32]));
    assert_eq!(k.address, "127.0.0.1:13001");
    assert_eq!(st.registered_keys().len(), 2);
    assert_eq!(st.verified_keys, None);
    assert!(!st.has_verified_key(VerifiedKeyKind::Proxy, &[0xfb; 32]));
    // Our serializer writes exactly upstream's cell.
    assert_eq!(
        k.to_cell().unwrap(),
        raw_key_manager(
            &[
                ([0xfb; 32], 1, 2_000_000_000),
                ([0x02; 32], 7, 1_760_000_000)
            ],
            "127.0.0.1:13001",
        )
    );
    // Missing key-manager cell, or a verified-keys cell that a struct-4 root does not have: refused.
    assert!(parse_root_data(&raw_root(raw_params(4), &[])).is_err());
    let v = raw_verified(&[], &[], &[]);
    let km = raw_key_manager(&[], "");
    assert!(parse_root_data(&raw_root(raw_params(4), &[km, v])).is_err());
}

#[test]
fn root_struct_5_reads_the_verified_keys() {
    let km = raw_key_manager(&[([0xfb; 32], 1, 2_000_000_000)], "");
    let v = raw_verified(&[[1; 32], [2; 32]], &[[3; 32]], &[]);
    let st = parse_root_data(&raw_root(raw_params(5), &[km, v.clone()])).unwrap();
    assert_eq!(st.params.struct_version, 5);
    assert_eq!(st.key_manager.as_ref().unwrap().address, "");
    let vk = st.verified_keys.as_ref().unwrap();
    assert_eq!(vk.proxy, vec![[1; 32], [2; 32]]);
    assert_eq!(vk.worker, vec![[3; 32]]);
    assert!(vk.key_manager.is_empty());
    assert!(st.has_verified_key(VerifiedKeyKind::Proxy, &[2; 32]));
    assert!(st.has_verified_key(VerifiedKeyKind::Worker, &[3; 32]));
    assert!(!st.has_verified_key(VerifiedKeyKind::KeyManager, &[3; 32]));
    assert_eq!(vk.to_cell().unwrap(), v);
    // The verified-keys cell is required at 5.
    let km = raw_key_manager(&[], "");
    assert!(parse_root_data(&raw_root(raw_params(5), &[km])).is_err());
}

#[test]
fn root_struct_versions_outside_3_to_5_are_refused_by_name() {
    for v in [0u8, 1, 2, 6, 255] {
        let km = raw_key_manager(&[], "");
        let vk = raw_verified(&[], &[], &[]);
        let err = parse_root_data(&raw_root(raw_params(v), &[km, vk])).unwrap_err();
        assert!(
            matches!(err, CellError::UnsupportedStructVersion(x) if x == v),
            "{v}: {err}"
        );
    }
    let p = CocoonParams {
        struct_version: 6,
        ..CocoonParams::default()
    };
    assert!(matches!(
        p.to_cell(&ParamsCodes::default()),
        Err(CellError::UnsupportedStructVersion(6))
    ));
}

#[test]
fn root_key_cells_are_parsed_strictly() {
    // A registered key whose value is not exactly key_type:uint8 expire_at:uint32.
    let mut b = CellBuilder::new();
    maybe(&mut b, raw_dict(&[([9; 32], vec![1, 0, 0, 0, 5, 0], 48)]));
    b.store_raw(&[0; 64], 512).unwrap();
    b.store_small_uint(0, 8).unwrap();
    let bad_entry = b.build().unwrap();
    assert!(KeyManager::from_cell(&bad_entry).is_err());
    // Trailing bits after the address.
    let mut b = CellBuilder::new();
    maybe(&mut b, None);
    b.store_raw(&[0; 64], 512).unwrap();
    b.store_small_uint(0, 8).unwrap();
    b.store_bit_one().unwrap();
    assert!(KeyManager::from_cell(&b.build().unwrap()).is_err());
    // Address type bit 1.
    let mut b = CellBuilder::new();
    maybe(&mut b, None);
    b.store_raw(&[0; 64], 512).unwrap();
    b.store_bit_one().unwrap();
    b.store_small_uint(0, 7).unwrap();
    assert!(KeyManager::from_cell(&b.build().unwrap()).is_err());
    // A fourth dictionary in the verified-keys cell.
    let mut b = CellBuilder::new();
    for _ in 0..4 {
        b.store_bit_zero().unwrap();
    }
    assert!(VerifiedKeys::from_cell(&b.build().unwrap()).is_err());
}

#[test]
fn new_roots_are_struct_5_and_round_trip() {
    let d = Network::root(&owner_addr(), &CocoonParams::default()).unwrap();
    let st = parse_root_data(&d.data).unwrap();
    assert_eq!(st.params.struct_version, 5);
    assert_eq!(st.key_manager, Some(KeyManager::default()));
    assert_eq!(st.verified_keys, Some(VerifiedKeys::default()));
    // The empty cells are upstream's empty cells.
    assert_eq!(KeyManager::default().to_cell().unwrap(), {
        let mut b = CellBuilder::new();
        b.store_bit_zero().unwrap();
        b.store_raw(&[0; 64], 512).unwrap();
        b.store_small_uint(0, 8).unwrap();
        b.build().unwrap()
    });
    // A root can still be made at 3 or 4 (what older deployments hold).
    for v in [3u8, 4] {
        let p = CocoonParams {
            struct_version: v,
            ..CocoonParams::default()
        };
        let st = parse_root_data(&Network::root(&owner_addr(), &p).unwrap().data).unwrap();
        assert_eq!(st.params.struct_version, v);
        assert_eq!(st.key_manager.is_some(), v >= 4);
        assert!(st.verified_keys.is_none());
    }
}

#[test]
fn migration_moves_a_root_to_struct_5() {
    for (v, extra) in [
        (3u8, vec![]),
        (4, vec![raw_key_manager(&[([7; 32], 1, 99)], "1.2.3.4:5")]),
    ] {
        let old = raw_root(raw_params(v), &extra);
        let before = parse_root_data(&old).unwrap();
        let new = migrate_root_data(&old).unwrap();
        let after = parse_root_data(&new).unwrap();
        assert_eq!(after.params.struct_version, 5);
        assert_eq!(
            after.params.params_version,
            before.params.params_version + 1
        );
        assert_eq!(after.version, before.version + 1);
        assert_eq!(
            (&after.proxies, &after.worker_hashes, after.owner),
            (&before.proxies, &before.worker_hashes, before.owner)
        );
        assert_eq!(after.verified_keys, Some(VerifiedKeys::default()));
        match v {
            3 => assert_eq!(after.key_manager, Some(KeyManager::default())),
            _ => assert_eq!(after.key_manager, before.key_manager),
        }
        // The registry cell is carried over as is.
        let reg = |c: &Cell| c.as_slice().unwrap().load_reference_cloned().unwrap();
        assert_eq!(reg(&new), reg(&old));
        assert!(migrate_root_data(&new).is_err(), "already at 5");
    }
}

#[test]
fn editing_the_root_params_keeps_everything_else_and_bumps_both_versions() {
    for (v, extra) in [
        (3u8, vec![]),
        (4, vec![raw_key_manager(&[([7; 32], 1, 99)], "1.2.3.4:5")]),
    ] {
        let old = raw_root(raw_params(v), &extra);
        let before = parse_root_data(&old).unwrap();
        let new = edit_root_params(&old, |p| {
            p.prompt_mult = 20_000;
            p.reasoning_mult = 1;
        })
        .unwrap();
        let after = parse_root_data(&new).unwrap();
        assert_eq!(after.version, before.version + 1);
        assert_eq!(
            after.params.params_version,
            before.params.params_version + 1
        );
        assert_eq!(
            (after.params.prompt_mult, after.params.reasoning_mult),
            (20_000, 1)
        );
        assert_eq!(after.params.cached_mult, before.params.cached_mult);
        assert_eq!(after.params.price_per_token, before.params.price_per_token);
        assert_eq!(after.codes, before.codes);
        assert_eq!(after.key_manager, before.key_manager);
        assert_eq!(
            (&after.proxies, &after.worker_hashes, after.owner),
            (&before.proxies, &before.worker_hashes, before.owner)
        );
        let reg = |c: &Cell| c.as_slice().unwrap().load_reference_cloned().unwrap();
        assert_eq!(reg(&new), reg(&old));
        assert!(edit_root_params(&old, |p| p.struct_version = 5).is_err());
    }
}

/// The root's data as our compiled contract wrote it on @ton/sandbox at the end of the scenario (after
/// change_key_manager, add/del public keys, the signed add and the verified-key ops).
#[test]
fn root_state_parses_what_the_contract_wrote() {
    let s = scenario();
    let st = parse_root_data(&boc(&s["rootDataFinal"])).unwrap();
    assert_eq!(st.owner, acct(&s, "rootOwner"));
    assert_eq!(st.params.struct_version, 5);
    let km = st.key_manager.as_ref().unwrap();
    assert_eq!(km.public_key, scenario_key_manager().public_key());
    assert_eq!(km.address, "127.0.0.1:13001");
    let mut image = [0u8; 32];
    image[30..].copy_from_slice(&[0x01, 0xb1]);
    assert_eq!(km.image_hash, image);
    let key = |b: u8| {
        let mut k = [0u8; 32];
        k[31] = b;
        k
    };
    let start = s["startTime"].as_u64().unwrap() as u32;
    // 0xe1 was added by the owner and deleted; 0xe2 came signed by the key manager.
    assert_eq!(
        km.public_keys,
        vec![RegisteredKey {
            public_key: key(0xe2),
            key_type: 1,
            expire_at: start + 86400
        }]
    );
    let vk = st.verified_keys.as_ref().unwrap();
    assert_eq!(
        (vk.proxy.clone(), vk.worker.clone(), vk.key_manager.clone()),
        (vec![key(0xf1)], vec![], vec![key(0xf3)])
    );
    assert_eq!(st.worker_hashes, vec![key(0xa1)]);
}

#[test]
fn save_state_with_a_receipts_root_round_trips_and_upstreams_body_still_parses() {
    let anchor = ReceiptsAnchor {
        root: [0xab; 32],
        period_start: 1_700_000_000,
        period_end: 1_700_000_600,
        leaves: 42,
    };
    let ours = ProxyOp::SaveState {
        seqno: -2,
        session_hash: [7; 32],
        receipts: Some(anchor),
    }
    .body(99)
    .unwrap();
    assert_eq!(
        ours.bit_len(),
        32 + 64 + 32 + 32 + 256 + ReceiptsAnchor::BITS
    );
    assert_eq!(
        parse_proxy_inbound(&ours).unwrap(),
        ProxyInbound::SaveState {
            query_id: 99,
            seqno: -2,
            session_hash: [7; 32],
            receipts: Some(anchor),
        }
    );
    let upstream = ProxyOp::SaveState {
        seqno: 5,
        session_hash: [8; 32],
        receipts: None,
    }
    .body(1)
    .unwrap();
    assert_eq!(upstream.bit_len(), 32 + 64 + 32 + 32 + 256);
    assert_eq!(
        parse_proxy_inbound(&upstream).unwrap(),
        ProxyInbound::SaveState {
            query_id: 1,
            seqno: 5,
            session_hash: [8; 32],
            receipts: None,
        }
    );
}
