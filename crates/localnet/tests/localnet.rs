//! Local chain end to end: contracts deployed and called in-process, a tonlib-core wallet v4r2 driving them
//! with real signature checks (a tampered message is rejected), persistence across restarts (snapshot +
//! log replay, torn log tail), input validation, and `HttpChain` against `serve` on 127.0.0.1:0.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;

use cocoon_localnet::ledger::internal_message;
use cocoon_localnet::{serve, Localnet, NodeError};
use cocoon_ton::cells::encode_boc;
use cocoon_ton::chain::AccountStatus;
use cocoon_ton::contracts::{CocoonParams, Network, RootData, RootOp};
use cocoon_ton::http::{HttpChain, HttpChainConfig};
use cocoon_ton::wallet::{parse_seqno, Phrase, Transfer, Wallet};
use cocoon_ton::{Chain, ChainError, TonAddress};
use tokio_util::sync::CancellationToken;
use tycho_types::cell::{Cell, CellBuilder};

const PHRASE: &str = "fancy carpet hello mandate penalty trial consider property top vicious exit rebuild tragic profit urban major total month holiday sudden rib gather media vicious";
const TON: u128 = 1_000_000_000;

fn wallet() -> Wallet {
    Wallet::from_phrase(&Phrase::parse(PHRASE).unwrap()).unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cocoon-localnet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Wallet deploys itself and the root (owner = wallet) in one external message, then adds a model hash.
async fn wallet_drives_root(chain: &dyn Chain, net: &Localnet, w: &Wallet) -> TonAddress {
    net.faucet(w.address(), 10 * TON).await.unwrap();
    let root = Network::root(&w.address(), &CocoonParams::default()).unwrap();
    let now = net.now();
    let deploy = Transfer {
        dest: root.address,
        value: TON,
        bounce: false,
        body: None,
        state_init: Some(root.state_init_cell().unwrap()),
    };
    let ext = w.external_transfer(0, now + 60, &[deploy], true).unwrap();
    chain.send_boc(&encode_boc(&ext)).await.unwrap();
    let st = chain.account_state(&root.address).await.unwrap();
    assert_eq!(st.status, AccountStatus::Active);

    let seqno = parse_seqno(
        &chain
            .run_get_method(&w.address(), "seqno", vec![])
            .await
            .unwrap()
            .stack,
    )
    .unwrap();
    assert_eq!(seqno, 1);
    let add = Transfer {
        dest: root.address,
        value: TON / 5,
        bounce: true,
        body: Some(RootOp::AddModelType([7; 32]).body(1).unwrap()),
        state_init: None,
    };
    let ext = w.external_transfer(1, now + 60, &[add], false).unwrap();
    chain.send_boc(&encode_boc(&ext)).await.unwrap();
    let r = chain
        .run_get_method(&root.address, RootData::METHOD, vec![])
        .await
        .unwrap();
    assert!(r.success());
    let d = RootData::from_stack(&r.stack).unwrap();
    assert_eq!(d.version, 1, "add_model_type bumps the version");
    assert_eq!(d.owner, w.address());
    root.address
}

#[tokio::test]
async fn wallet_deploys_and_calls_root_in_process() {
    let net = Localnet::in_memory().unwrap();
    let w = wallet();
    let root = wallet_drives_root(&net, &net, &w).await;

    // A tampered signature is rejected by the wallet's real CHKSIGNU and changes nothing.
    let t = Transfer {
        dest: root,
        value: TON,
        bounce: true,
        body: None,
        state_init: None,
    };
    let ext = w.external_transfer(2, net.now() + 60, &[t], false).unwrap();
    let mut bytes = encode_boc(&flip_signature_bit(&ext));
    let before = net.account_state(&w.address()).await.unwrap();
    match net.send_boc(&bytes).await {
        Err(ChainError::Api { message, .. }) => {
            assert!(message.contains("not accepted"), "{message}")
        }
        other => panic!("tampered message accepted: {other:?}"),
    }
    assert_eq!(net.account_state(&w.address()).await.unwrap(), before);
    // An expired message is rejected too (the wallet checks valid_until against chain time).
    let t = Transfer {
        dest: root,
        value: 1,
        bounce: true,
        body: None,
        state_init: None,
    };
    let ext = w
        .external_transfer(2, net.now().saturating_sub(1), &[t], false)
        .unwrap();
    assert!(net.send_boc(&encode_boc(&ext)).await.is_err());

    // Malformed input: a clear error, no panic.
    bytes.truncate(10);
    match net.send_external_boc(bytes).await {
        Err(NodeError::BadBoc(_)) => {}
        other => panic!("{other:?}"),
    }
    // An internal message through sendBoc is refused.
    let empty = CellBuilder::new().build().unwrap();
    let int = internal_message(&w.address(), &root, 1, false, None, &empty).unwrap();
    assert!(net.send_external_boc(encode_boc(&int)).await.is_err());

    // History: newest first, since_lt filters.
    let txs = net.transactions(&root, None, 10).await.unwrap();
    assert_eq!(txs.len(), 2);
    assert!(txs[0].lt > txs[1].lt);
    assert_eq!(txs[0].exit_code, Some(0));
    assert_eq!(
        net.transactions(&root, Some(txs[1].lt), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Flips one bit of the v4 signature (the first 512 bits of the external body).
fn flip_signature_bit(ext: &Cell) -> Cell {
    use tycho_types::models::{Message, OwnedMessage};
    let m: OwnedMessage = ext.parse().unwrap();
    let body = tycho_types::cell::CellSlice::apply(&m.body).unwrap();
    let mut bits = vec![0u8; body.size_bits().div_ceil(8) as usize];
    body.get_raw(0, &mut bits, body.size_bits()).unwrap();
    bits[0] ^= 0x01;
    let mut b = CellBuilder::new();
    b.store_raw(&bits, body.size_bits()).unwrap();
    for i in 0..body.size_refs() {
        b.store_reference(body.get_reference_cloned(i).unwrap())
            .unwrap();
    }
    let new_body = b.build().unwrap();
    let msg = Message {
        info: m.info,
        init: m.init,
        body: new_body.as_slice().unwrap(),
        layout: None,
    };
    CellBuilder::build_from(msg).unwrap()
}

#[tokio::test]
async fn time_can_be_advanced() {
    let net = Localnet::in_memory().unwrap();
    net.set_time(1_000);
    assert_eq!(net.time().await.unwrap(), 1_000);
    net.advance_time(300);
    assert_eq!(net.now(), 1_300);
    net.set_time(1_200); // never backwards
    assert_eq!(net.now(), 1_300);
}

#[tokio::test]
async fn state_survives_restart() {
    let dir = tmpdir("restart");
    let w = wallet();
    let (root, root_state, hist) = {
        let net = tokio::task::spawn_blocking({
            let d = dir.clone();
            move || Localnet::open(&d)
        })
        .await
        .unwrap()
        .unwrap();
        let root = wallet_drives_root(&net, &net, &w).await;
        let st = net.account_state(&root).await.unwrap();
        let h = net.transactions(&w.address(), None, 100).await.unwrap();
        (root, st, h)
        // dropped without a snapshot: only the fsynced log is on disk (as after kill -9)
    };
    // A torn last line (crash mid-append) is cut off on recovery.
    let log = dir.join("inputs.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"{\"seq\":99,\"now\":1,\"ki");
    std::fs::write(&log, &bytes).unwrap();

    let reopen = |d: PathBuf| async move {
        tokio::task::spawn_blocking(move || Localnet::open(&d))
            .await
            .unwrap()
    };
    let net = reopen(dir.clone()).await.unwrap();
    assert_eq!(net.account_state(&root).await.unwrap(), root_state);
    assert_eq!(
        net.transactions(&w.address(), None, 100).await.unwrap(),
        hist
    );
    let seqno = parse_seqno(
        &net.run_get_method(&w.address(), "seqno", vec![])
            .await
            .unwrap()
            .stack,
    )
    .unwrap();
    assert_eq!(seqno, 2);

    // Snapshot, one more input, restart: snapshot + log replay.
    net.snapshot().await.unwrap();
    net.faucet(root, TON).await.unwrap();
    let after = net.account_state(&root).await.unwrap();
    drop(net);
    let net = reopen(dir.clone()).await.unwrap();
    assert_eq!(net.account_state(&root).await.unwrap(), after);
    assert!(after.balance > root_state.balance);
    drop(net);

    // A complete but malformed line is corruption, reported, not silently skipped.
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"not json\n");
    std::fs::write(&log, &bytes).unwrap();
    assert!(matches!(
        reopen(dir.clone()).await,
        Err(NodeError::Store(_))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn http_chain_against_serve() {
    let net = Localnet::in_memory().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, net.clone(), stop.clone()));

    // HttpChain::new installs the TLS crypto provider reqwest needs, so build it first.
    let chain = HttpChain::new(HttpChainConfig::new(&url)).unwrap();
    // Dev faucet over HTTP.
    let w = wallet();
    let http = reqwest::Client::new();
    let r: serde_json::Value = http
        .post(format!("{url}/api/v2/faucet"))
        .json(&serde_json::json!({"address": w.address().to_bounceable(), "amount": "5000000000"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r}");

    let st = chain.account_state(&w.address()).await.unwrap();
    assert_eq!((st.status, st.balance), (AccountStatus::Uninit, 5 * TON));

    // The same wallet+root flow, but through HTTP. (Faucet again inside: that is fine.)
    let root = wallet_drives_root(&chain, &net, &w).await;
    let txs = chain.transactions(&root, None, 10).await.unwrap();
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].exit_code, Some(0));
    assert_eq!(txs[0].in_msg.as_ref().unwrap().source, Some(w.address()));
    assert!(chain.time().await.unwrap() > 0);

    // Paging as toncenter: a page of the newest, then the page from its oldest (lt + hash,
    // inclusive) back to `to_lt` (exclusive), over HTTP and in-process alike.
    let all = chain.transactions(&w.address(), None, 100).await.unwrap();
    assert!(all.len() >= 3, "{}", all.len());
    let since = Some(all[all.len() - 1].lt);
    let first = chain.transactions(&w.address(), since, 1).await.unwrap();
    assert_eq!(first, all[..1]);
    let from = cocoon_ton::TxId {
        lt: first[0].lt,
        hash: first[0].hash,
    };
    for c in [&chain as &dyn Chain, &net] {
        let next = c
            .transactions_from(&w.address(), from, since, 100)
            .await
            .unwrap();
        assert_eq!(next, all[..all.len() - 1]);
    }
    let unknown = cocoon_ton::TxId {
        hash: [9; 32],
        ..from
    };
    assert!(chain
        .transactions_from(&w.address(), unknown, None, 10)
        .await
        .is_err());
    let lone_lt = http
        .get(format!(
            "{url}/api/v2/getTransactions?address={}&lt=5",
            w.address().to_raw()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        lone_lt.status(),
        422,
        "lt without hash is refused as on toncenter"
    );

    // Errors come back typed.
    match chain.send_boc(b"garbage").await {
        Err(ChainError::Api { code: 400, .. }) => {}
        other => panic!("{other:?}"),
    }
    match chain
        .run_get_method(&TonAddress::new(0, [1; 32]), "seqno", vec![])
        .await
    {
        Err(ChainError::Api { code: 400, .. }) => {}
        other => panic!("{other:?}"),
    }
    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn failed_bounceable_message_bounces_back() {
    let net = Localnet::in_memory().unwrap();
    let owner = TonAddress::new(0, [0x11; 32]);
    let stranger = TonAddress::new(0, [0x22; 32]);
    let root = Network::root(&owner, &CocoonParams::default()).unwrap();
    let si = cocoon_ton::cells::state_init(root.code.clone(), root.data.clone());
    let empty = CellBuilder::new().build().unwrap();
    let deploy = internal_message(&owner, &root.address, TON, false, Some(&si), &empty).unwrap();
    net.send_internal(deploy).await.unwrap();

    // A non-owner op fails with 1010 and, being bounceable, comes back to the sender.
    let body = RootOp::Reset.body(5).unwrap();
    let msg = internal_message(&stranger, &root.address, TON, true, None, &body).unwrap();
    let txs = net.send_internal(msg).await.unwrap();
    assert_eq!(txs.len(), 2, "{txs:?}");
    assert_eq!(
        (txs[0].account, txs[0].exit_code),
        (root.address, Some(1010))
    );
    assert_eq!(txs[1].account, stranger);
    let back = net.account_state(&stranger).await.unwrap().balance;
    assert!(back > 0 && back < TON, "bounced value minus fees: {back}");
}

/// A root deployed at struct version 3 (as older networks hold it) runs on our executor, refuses the
/// key-manager ops (2001), moves to 5 with `upgrade_full` + `migrate_root_data`, and then takes them.
#[tokio::test]
async fn struct_3_root_migrates_to_5_and_takes_key_ops() {
    use cocoon_ton::contracts::{
        migrate_root_data, parse_root_data, ContractKind, RegisteredKey, VerifiedKeyKind,
    };
    let net = Localnet::in_memory().unwrap();
    let owner = TonAddress::new(0, [0x11; 32]);
    let p3 = CocoonParams {
        struct_version: 3,
        ..CocoonParams::default()
    };
    let root = Network::root(&owner, &p3).unwrap();
    let si = cocoon_ton::cells::state_init(root.code.clone(), root.data.clone());
    let empty = CellBuilder::new().build().unwrap();
    let deploy = internal_message(&owner, &root.address, TON, false, Some(&si), &empty).unwrap();
    net.send_internal(deploy).await.unwrap();
    let send = |op: RootOp| {
        let body = op.body(7).unwrap();
        internal_message(&owner, &root.address, TON, true, None, &body).unwrap()
    };
    let key_op = RootOp::AddPublicKey(RegisteredKey {
        public_key: [0xe1; 32],
        key_type: 1,
        expire_at: u32::MAX,
    });
    let txs = net.send_internal(send(key_op.clone())).await.unwrap();
    assert_eq!(txs[0].exit_code, Some(2001));
    let txs = net
        .send_internal(send(RootOp::AddModelType([0x42; 32])))
        .await
        .unwrap();
    assert_eq!(txs[0].exit_code, Some(0));

    let data = net
        .account_state(&root.address)
        .await
        .unwrap()
        .data
        .unwrap();
    let before = parse_root_data(&data).unwrap();
    assert_eq!(before.params.struct_version, 3);
    let upgrade = RootOp::UpgradeFull {
        data: migrate_root_data(&data).unwrap(),
        code: ContractKind::Root.code().unwrap(),
    };
    assert_eq!(
        net.send_internal(send(upgrade)).await.unwrap()[0].exit_code,
        Some(0)
    );
    for op in [
        key_op,
        RootOp::AddVerifiedKey(VerifiedKeyKind::KeyManager, [0xf3; 32]),
        RootOp::ChangeKeyManager {
            public_key: [0x4b; 32],
            image_hash: [0x1d; 32],
            address: "127.0.0.1:13001".into(),
        },
    ] {
        assert_eq!(
            net.send_internal(send(op)).await.unwrap()[0].exit_code,
            Some(0)
        );
    }
    let data = net
        .account_state(&root.address)
        .await
        .unwrap()
        .data
        .unwrap();
    let st = parse_root_data(&data).unwrap();
    assert_eq!(st.params.struct_version, 5);
    assert_eq!(st.params.params_version, before.params.params_version + 1);
    assert_eq!(st.model_hashes, vec![[0x42; 32]]);
    assert_eq!(st.registered_keys()[0].public_key, [0xe1; 32]);
    assert!(st.has_verified_key(VerifiedKeyKind::KeyManager, &[0xf3; 32]));
    assert_eq!(st.key_manager.unwrap().address, "127.0.0.1:13001");
}
