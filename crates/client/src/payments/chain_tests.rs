//! The client's money code paths against an in-process local chain (crates/localnet), with fake
//! proxies answering over real sessions: authorization (short, long with deploy + fund +
//! register, a changed secret, a lying proxy), the money loop topping up and submitting the
//! proxy's signed charge, and the owner's withdraw and close when no proxy node exists at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cocoon_localnet::Localnet;
use cocoon_onchain::signed::sign_boc;
use cocoon_onchain::{Registry, RegistryWatch, WalletSender};
use cocoon_proto::messages::{
    encode, ClientAuthorizationWithProxyFailed, ClientAuthorizationWithProxySuccess,
    ClientConnectedToProxy, ClientPaymentStatus, ClientProxyConnectionAuth,
    ClientProxyConnectionAuthLong, ClientProxyConnectionAuthShort, ClientToProxyQuery, ProxyParams,
    ProxySignedPayment, ProxySignedPaymentData, ProxySignedPaymentEmpty,
};
use cocoon_proto::session::{establish, InboundMessage, Session, SessionConfig};
use cocoon_ton::contracts::{
    parse_proxy_inbound, state, ClientOp, ClientPayload, CocoonParams, Network, ProxyInbound,
    ProxyOp,
};
use cocoon_ton::payments::{ProxySigner, SignedKind};
use cocoon_ton::wallet::{Phrase, Transfer, Wallet};
use cocoon_ton::{Chain, TonAddress};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::account::ProxyAccount;
use super::auth::{authorize, proxy_secret, register, verify_addresses};
use super::contract::{self, DEPLOY_EXTRA, OP_EXTRA};
use super::owner::{self, CloseOutcome, OwnerAccess, WithdrawOutcome};
use super::{task, Payments};
use crate::ClientConfig;

const TON: u128 = 1_000_000_000;

/// A local chain with a funded client wallet and a root (owned by the same wallet, for brevity).
struct World {
    net: Localnet,
    chain: Arc<dyn Chain>,
    phrase: Phrase,
    me: TonAddress,
    registry: Registry,
    params: CocoonParams,
}

/// A proxy contract on that chain.
struct ProxyOnChain {
    network: Network,
    owner: TonAddress,
    contract: TonAddress,
    client_contract: TonAddress,
}

async fn world() -> World {
    let net = Localnet::in_memory().expect("localnet");
    let chain: Arc<dyn Chain> = Arc::new(net.clone());
    let phrase = Phrase::generate().expect("phrase");
    let wallet = Wallet::from_phrase(&phrase).expect("wallet");
    let me = wallet.address();
    net.faucet(me, 100 * TON).await.expect("faucet");
    let params = CocoonParams::default();
    let root = Network::root(&me, &params).expect("root");
    WalletSender::new(chain.clone(), wallet)
        .send(vec![Transfer {
            dest: root.address,
            value: TON,
            bounce: false,
            body: None,
            state_init: Some(root.state_init_cell().expect("init")),
        }])
        .await
        .expect("root deploy");
    let registry = Registry::read(chain.as_ref(), &root.address)
        .await
        .expect("registry");
    World {
        net,
        chain,
        phrase,
        me,
        registry,
        params,
    }
}

impl World {
    /// A sender for our wallet (use one at a time: each keeps its own seqno lock).
    fn sender(&self) -> WalletSender {
        WalletSender::new(
            self.chain.clone(),
            Wallet::from_phrase(&self.phrase).expect("wallet"),
        )
    }

    /// Deploys the contract of proxy `key` (owner `0:bb…`) with `stake` behind forced refunds.
    async fn proxy(&self, key: [u8; 32], owner_byte: u8, stake: u128) -> ProxyOnChain {
        let network = self.registry.network(key);
        let owner: TonAddress = format!("0:{}", hex::encode([owner_byte; 32]))
            .parse()
            .expect("addr");
        let d = network.proxy(&owner, &self.registry.root).expect("proxy");
        self.sender()
            .send(vec![Transfer {
                dest: d.address,
                value: stake + TON,
                bounce: false,
                body: Some(
                    ProxyOp::IncreaseStake {
                        grams: stake,
                        send_excesses_to: self.me,
                    }
                    .body(1)
                    .expect("body"),
                ),
                state_init: Some(d.state_init_cell().expect("init")),
            }])
            .await
            .expect("proxy deploy");
        let client_contract = network
            .client(&self.me, &d.address)
            .expect("client")
            .address;
        ProxyOnChain {
            network,
            owner,
            contract: d.address,
            client_contract,
        }
    }

    fn payments(&self, secret: &str, top_up_stakes: u32) -> Payments {
        let cfg = ClientConfig {
            secret: secret.into(),
            top_up_stakes,
            ..ClientConfig::default()
        };
        Payments::new(
            self.chain.clone(),
            Arc::new(self.sender()),
            RegistryWatch::fixed(self.registry.clone()),
            Arc::new(cfg),
        )
    }

    fn account(&self, p: &Payments, proxy: &ProxyOnChain) -> Arc<ProxyAccount> {
        p.account_for(ProxyAccount::new(
            "proxy-1".into(),
            proxy.network.proxy_public_key,
            proxy.owner,
            proxy.contract,
            proxy.client_contract,
            self.params.price_per_token,
            self.params.min_client_stake,
        ))
    }

    async fn wallet_txs(&self) -> usize {
        self.chain
            .transactions(&self.me, None, 100)
            .await
            .expect("txs")
            .len()
    }

    /// Whether the proxy contract got a register report carrying `nonce`.
    async fn nonce_reached_proxy(&self, proxy: &TonAddress, nonce: u64) -> bool {
        nonce_on_chain(self.chain.as_ref(), proxy, nonce).await
    }
}

async fn nonce_on_chain(chain: &dyn Chain, proxy: &TonAddress, nonce: u64) -> bool {
    let txs = chain.transactions(proxy, None, 100).await.expect("txs");
    txs.iter().any(|t| {
        t.in_msg
            .as_ref()
            .and_then(|m| m.body.as_ref())
            .is_some_and(|b| {
                matches!(
                    parse_proxy_inbound(b),
                    Ok(ProxyInbound::ClientReport {
                        payload: Some(ClientPayload::Register { nonce: n }),
                        ..
                    }) if n == nonce
                )
            })
    })
}

/// A session whose other end answers each query with `answer(query)`.
async fn fake_proxy<F>(answer: F) -> (Session, JoinHandle<()>)
where
    F: Fn(ClientToProxyQuery) -> futures::future::BoxFuture<'static, Bytes> + Send + 'static,
{
    let (x, y) = tokio::io::duplex(1 << 16);
    let (s, prx) = tokio::join!(
        establish(x, SessionConfig::dialer()),
        establish(y, SessionConfig::acceptor())
    );
    let (session, _inbound) = s.expect("session");
    let (proxy_session, mut inbound) = prx.expect("session");
    let task = tokio::spawn(async move {
        let _keep = proxy_session;
        while let Some(m) = inbound.recv().await {
            if let InboundMessage::Query(q) = m {
                let query: ClientToProxyQuery =
                    cocoon_tl::from_bytes(&q.data).expect("client query");
                let a = answer(query).await;
                q.answer(a).await;
            }
        }
    });
    (session, task)
}

fn success(db: i64, max: i64) -> Bytes {
    encode(&ClientAuthorizationWithProxySuccess {
        signed_payment: ProxySignedPayment::Empty(ProxySignedPaymentEmpty),
        tokens_committed_to_db: db,
        max_tokens: max,
    })
}

fn failed(why: &str) -> Bytes {
    encode(&ClientAuthorizationWithProxyFailed {
        error_code: 401,
        error: why.into(),
    })
}

fn connected(proxy: &ProxyOnChain, auth: ClientProxyConnectionAuth) -> ClientConnectedToProxy {
    ClientConnectedToProxy {
        params: ProxyParams {
            flags: 0,
            proxy_public_key: proxy.network.proxy_public_key,
            proxy_owner_address: proxy.owner.to_bounceable(),
            proxy_sc_address: proxy.contract.to_bounceable(),
            is_test: None,
            proto_version: None,
        },
        client_sc_address: proxy.client_contract.to_bounceable(),
        auth,
        signed_payment: ProxySignedPayment::Empty(ProxySignedPaymentEmpty),
    }
}

#[tokio::test]
async fn authorization_goes_short_with_the_right_hash_long_otherwise_and_refuses_liars() {
    let w = world().await;
    let proxy = w.proxy([42; 32], 0x44, TON).await;
    // The fake proxy knows the hash on chain and waits for the expected nonce on chain, as the
    // real one does.
    let expected_nonce = Arc::new(AtomicU64::new(0));
    let (chain, contract, client_sc) = (w.chain.clone(), proxy.contract, proxy.client_contract);
    let want = expected_nonce.clone();
    let (session, _task) = fake_proxy(move |q| {
        let (chain, want) = (chain.clone(), want.clone());
        Box::pin(async move {
            match q {
                ClientToProxyQuery::AuthorizeWithProxyShort(a) => {
                    let hash: [u8; 32] = Sha256::digest(&a.data).into();
                    let on_chain = contract::read(chain.as_ref(), &client_sc)
                        .await
                        .expect("read")
                        .map(|c| c.secret_hash);
                    if on_chain == Some(hash) {
                        success(7, 8)
                    } else {
                        failed("wrong secret")
                    }
                }
                ClientToProxyQuery::AuthorizeWithProxyLong(_) => {
                    let n = want.load(Ordering::SeqCst);
                    if nonce_on_chain(chain.as_ref(), &contract, n).await {
                        success(5, 6)
                    } else {
                        failed("no nonce")
                    }
                }
                _ => failed("unexpected"),
            }
        })
    })
    .await;

    // Long: the contract is deployed, funded with our hash, and the nonce reaches the proxy.
    let p = w.payments("first secret", 2);
    expected_nonce.store(99, Ordering::SeqCst);
    let long = connected(
        &proxy,
        ClientProxyConnectionAuth::Long(ClientProxyConnectionAuthLong { nonce: 99 }),
    );
    let a = authorize(&p, "proxy-1", &session, &long)
        .await
        .expect("long auth");
    let n = a.numbers();
    assert_eq!((n.db_tokens, n.max_tokens), (5, 6));
    let c = contract::read(w.chain.as_ref(), &client_sc)
        .await
        .expect("read")
        .expect("deployed");
    // The hash of this proxy's own secret, not of the configured one.
    let first_hash: [u8; 32] =
        Sha256::digest(proxy_secret("first secret", &proxy.contract).as_bytes()).into();
    assert_eq!(c.secret_hash, first_hash);
    assert_ne!(
        c.secret_hash,
        <[u8; 32]>::from(Sha256::digest(b"first secret"))
    );
    assert_eq!(
        c.balance,
        2 * w.params.min_client_stake,
        "top_up_stakes = 2"
    );
    assert!(w.nonce_reached_proxy(&proxy.contract, 99).await);

    // Short with our hash: the secret is sent, nothing goes on chain.
    let txs = w.wallet_txs().await;
    let short = connected(
        &proxy,
        ClientProxyConnectionAuth::Short(ClientProxyConnectionAuthShort {
            secret_hash: first_hash,
            nonce: 100,
        }),
    );
    let a = authorize(&p, "proxy-1", &session, &short)
        .await
        .expect("short auth");
    assert_eq!(a.numbers().max_tokens, 8);
    assert_eq!(
        w.wallet_txs().await,
        txs,
        "short auth sends nothing on chain"
    );

    // A new secret: the advertised hash is the old one, so we set ours and go long with the
    // Short's nonce; the money stays where it was.
    let p2 = w.payments("second secret", 2);
    expected_nonce.store(100, Ordering::SeqCst);
    authorize(&p2, "proxy-1", &session, &short)
        .await
        .expect("re-keyed long auth");
    let c2 = contract::read(w.chain.as_ref(), &client_sc)
        .await
        .expect("read")
        .expect("deployed");
    assert_eq!(
        c2.secret_hash,
        <[u8; 32]>::from(Sha256::digest(
            proxy_secret("second secret", &proxy.contract).as_bytes()
        ))
    );
    assert_eq!(c2.balance, c.balance);

    // A proxy stating someone else's contract is refused before anything goes on chain.
    let txs = w.wallet_txs().await;
    let mut lie = connected(
        &proxy,
        ClientProxyConnectionAuth::Long(ClientProxyConnectionAuthLong { nonce: 101 }),
    );
    lie.client_sc_address = proxy.contract.to_bounceable();
    let e = authorize(&p2, "proxy-1", &session, &lie)
        .await
        .expect_err("a lying proxy");
    assert!(e.contains("refusing"), "{e}");
    assert_eq!(w.wallet_txs().await, txs);
    // A proxy sending a charge signed by another key is refused too.
    let forged = sign_boc(
        &ProxySigner::from_seed(&[1; 32]).expect("key"),
        SignedKind::Charge,
        5,
        &client_sc,
        &proxy.owner,
    )
    .expect("sign");
    let mut bad = short.clone();
    bad.signed_payment = ProxySignedPayment::Signed(ProxySignedPaymentData {
        data: Bytes::from(forged),
    });
    assert!(authorize(&p2, "proxy-1", &session, &bad).await.is_err());
}

#[tokio::test]
async fn long_auth_deploys_and_funds_then_the_money_loop_tops_up_and_charges() {
    let w = world().await;
    let signer = ProxySigner::from_seed(&[42; 32]).expect("key");
    let proxy = w.proxy(signer.public_key(), 0x44, TON).await;
    let params = &w.params;
    let client_sc = proxy.client_contract;
    // The handshake's check passes for these (honest) addresses.
    let stated = connected(
        &proxy,
        ClientProxyConnectionAuth::Long(ClientProxyConnectionAuthLong { nonce: 1 }),
    );
    verify_addresses(
        &proxy.network,
        &w.registry.root,
        &w.me,
        &stated.params,
        &stated.client_sc_address,
    )
    .expect("honest proxy");
    let p = w.payments("a private secret string", 1);
    let account = w.account(&p, &proxy);

    // Long auth's chain part: deploy + fund one stake with our secret hash, register a nonce.
    assert!(contract::read(w.chain.as_ref(), &client_sc)
        .await
        .expect("read")
        .is_none());
    let hash: [u8; 32] = Sha256::digest(b"a private secret string").into();
    register(&p, &proxy.network, &account, hash, -7)
        .await
        .expect("long auth on chain");
    let c = contract::read(w.chain.as_ref(), &client_sc)
        .await
        .expect("read")
        .expect("deployed");
    assert_eq!(c.state, state::NORMAL);
    assert_eq!(c.balance, params.min_client_stake, "funded with one stake");
    assert_eq!(c.stake, params.min_client_stake);
    assert_eq!(c.secret_hash, hash);
    assert_eq!((c.owner, c.proxy), (w.me, proxy.contract));
    // TL long −7 and the contract's uint64 are the same 64 bits.
    assert!(w.nonce_reached_proxy(&proxy.contract, (-7i64) as u64).await);

    // A fake proxy: max 400k tokens used, a charge signed for 300k.
    let charge = sign_boc(
        &signer,
        SignedKind::Charge,
        300_000,
        &client_sc,
        &proxy.owner,
    )
    .expect("sign");
    let (session, _task) = fake_proxy(move |_| {
        let status = ClientPaymentStatus {
            signed_payment: ProxySignedPayment::Signed(ProxySignedPaymentData {
                data: Bytes::from(charge.clone()),
            }),
            db_tokens: 350_000,
            max_tokens: 400_000,
        };
        Box::pin(async move { encode(&status) })
    })
    .await;

    // 400k × 2000 = 0.8 TON unsettled: balance 1 − 0.8 < 0.5 → top up one stake; 0.8 > 0.5 →
    // submit the signed charge (300k tokens = 0.6 TON).
    task::tick(&p, &account, &session).await.expect("tick");
    let c = contract::read(w.chain.as_ref(), &client_sc)
        .await
        .expect("read")
        .expect("deployed");
    assert_eq!(c.tokens_used, 300_000, "our submitted charge landed");
    assert_eq!(c.balance, 2 * TON - 300_000 * params.price_per_token);
    let n = account.numbers();
    assert_eq!(
        (n.db_tokens, n.max_tokens, n.charge_tokens),
        (350_000, 400_000, 300_000)
    );

    // Next round: 100k unsettled (0.2 TON), balance 1.4 TON: nothing to do, nothing sent twice.
    let txs = w.wallet_txs().await;
    task::tick(&p, &account, &session).await.expect("tick");
    let again = contract::read(w.chain.as_ref(), &client_sc)
        .await
        .expect("read")
        .expect("deployed");
    assert_eq!(again, c);
    assert_eq!(w.wallet_txs().await, txs);
    let j = p.json();
    assert_eq!(j["proxies"]["proxy-1"]["tokens_used_on_chain"], 300_000);
    assert_eq!(j["proxies"]["proxy-1"]["contract_state"], "normal");
    assert_eq!(j["proxies"]["proxy-1"]["proxy_max_tokens"], 400_000);
}

#[tokio::test]
async fn a_deploy_with_only_two_tenths_of_a_ton_extra_is_refused_by_the_contract() {
    // Why contract::DEPLOY_EXTRA is 0.3 TON: 0.2 leaves the fresh contract under its floor.
    let w = world().await;
    let network = w.registry.network([1; 32]);
    let sender = w.sender();
    let mut balances = Vec::new();
    for (extra, proxy_byte) in [(OP_EXTRA, 0x55), (DEPLOY_EXTRA, 0x66)] {
        let proxy: TonAddress = format!("0:{}", hex::encode([proxy_byte; 32]))
            .parse()
            .expect("addr");
        let d = network.client(&w.me, &proxy).expect("client");
        let t = contract::op_transfer(
            &d.address,
            &ClientOp::ChangeSecretHashAndTopUp {
                amount: TON,
                secret_hash: [9; 32],
                send_excesses_to: w.me,
            },
            TON + extra,
            Some(d.state_init_cell().expect("init")),
        )
        .expect("transfer");
        sender.send(vec![t]).await.expect("sent");
        let b = contract::read(w.chain.as_ref(), &d.address)
            .await
            .expect("read")
            .map_or(0, |c| c.balance);
        balances.push(b);
    }
    assert_eq!(balances, vec![0, TON]);
}

#[tokio::test]
async fn the_owner_withdraws_and_closes_without_any_proxy_node() {
    // Only contracts on chain: no proxy node ever answers. The client still gets its money back.
    let w = world().await;
    let proxy = w.proxy([77; 32], 0x45, 2 * TON).await;
    let client_sc = proxy.client_contract;
    let p = w.payments("another private secret", 3);
    let account = w.account(&p, &proxy);
    register(&p, &proxy.network, &account, [1; 32], 5)
        .await
        .expect("deploy + fund 3 stakes");
    drop(p);

    let access = OwnerAccess {
        chain: w.chain.clone(),
        sender: w.sender(),
        registry: w.registry.clone(),
    };
    let find = || async {
        let found = owner::find_contracts(&access, &[]).await.expect("find");
        assert_eq!(found.len(), 1, "found from the wallet's own history");
        found.into_iter().next().expect("one")
    };
    let c = find().await;
    assert_eq!(c.address, client_sc);
    assert_eq!(c.params.price_per_token, w.params.price_per_token);
    assert_eq!(c.data.balance, 3 * TON);
    assert_eq!(c.balance().pending, None, "pending is the proxy's to know");

    // Withdraw: everything above the stake comes back.
    let before = access.sender.balance().await.expect("balance");
    let out = owner::withdraw(&access, &c).await.expect("withdraw");
    assert_eq!(out, WithdrawOutcome::Sent { amount: 2 * TON });
    let after = access.sender.balance().await.expect("balance");
    assert!(after > before + 2 * TON - TON / 2, "{before} → {after}");
    let c = find().await;
    assert_eq!(c.data.balance, TON);
    assert!(matches!(
        owner::withdraw(&access, &c).await.expect("withdraw"),
        WithdrawOutcome::Nothing(_)
    ));

    // Close: closing now; a second close before the delay is refused here, not sent.
    let first = owner::close(&access, &c).await.expect("close");
    let CloseOutcome::Closing { unlock_ts, now } = first else {
        panic!("{first:?}");
    };
    assert!(unlock_ts >= now + w.params.client_delay_before_close);
    let c = find().await;
    assert_eq!(c.data.state, state::CLOSING);
    assert!(matches!(
        owner::close(&access, &c).await.expect("close"),
        CloseOutcome::TooEarly { .. }
    ));
    // After the delay the refund is forced, paid from the proxy's stake.
    w.net.advance_time(w.params.client_delay_before_close + 2);
    let before = access.sender.balance().await.expect("balance");
    let forced = owner::close(&access, &c).await.expect("close");
    assert_eq!(forced, CloseOutcome::Refunded { amount: TON });
    let after = access.sender.balance().await.expect("balance");
    assert!(after > before + TON - TON / 2, "{before} → {after}");
    let c = find().await;
    assert_eq!(c.data.state, state::CLOSED);
    assert_eq!(
        owner::close(&access, &c).await.expect("close"),
        CloseOutcome::AlreadyClosed
    );
}

#[tokio::test]
async fn a_contract_holding_the_configured_secrets_hash_moves_to_the_per_proxy_secret() {
    // A contract set up before per-proxy secrets: its hash is sha256(configured secret).
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    let w = world().await;
    let proxy = w.proxy([43; 32], 0x46, TON).await;
    let client_sc = proxy.client_contract;
    let p = w.payments(SECRET, 1);
    let account = w.account(&p, &proxy);
    let old_hash: [u8; 32] = Sha256::digest(SECRET.as_bytes()).into();
    register(&p, &proxy.network, &account, old_hash, 1)
        .await
        .expect("the old deployment");
    let before = contract::read(w.chain.as_ref(), &client_sc)
        .await
        .expect("read")
        .expect("deployed");
    assert_eq!(before.secret_hash, old_hash);

    // A proxy that checks short auths against the hash on chain and long auths by nonce; it
    // keeps every secret it is sent.
    let sent = Arc::new(std::sync::Mutex::new(Vec::<Bytes>::new()));
    let expected_nonce = Arc::new(AtomicU64::new(0));
    let (chain, contract) = (w.chain.clone(), proxy.contract);
    let (kept, want) = (sent.clone(), expected_nonce.clone());
    let (session, _task) = fake_proxy(move |q| {
        let (chain, kept, want) = (chain.clone(), kept.clone(), want.clone());
        Box::pin(async move {
            match q {
                ClientToProxyQuery::AuthorizeWithProxyShort(a) => {
                    kept.lock().expect("kept").push(a.data.clone());
                    let hash: [u8; 32] = Sha256::digest(&a.data).into();
                    let on_chain = contract::read(chain.as_ref(), &client_sc)
                        .await
                        .expect("read")
                        .map(|c| c.secret_hash);
                    if on_chain == Some(hash) {
                        success(1, 1)
                    } else {
                        failed("wrong secret")
                    }
                }
                ClientToProxyQuery::AuthorizeWithProxyLong(_) => {
                    let n = want.load(Ordering::SeqCst);
                    if nonce_on_chain(chain.as_ref(), &contract, n).await {
                        success(1, 1)
                    } else {
                        failed("no nonce")
                    }
                }
                _ => failed("unexpected"),
            }
        })
    })
    .await;

    // The proxy advertises the old hash: it is not ours, so we set ours on chain and go long.
    expected_nonce.store(7, Ordering::SeqCst);
    let old = connected(
        &proxy,
        ClientProxyConnectionAuth::Short(ClientProxyConnectionAuthShort {
            secret_hash: old_hash,
            nonce: 7,
        }),
    );
    authorize(&p, "proxy-1", &session, &old)
        .await
        .expect("migrated by long auth");
    let ours = proxy_secret(SECRET, &proxy.contract);
    let new_hash: [u8; 32] = Sha256::digest(ours.as_bytes()).into();
    let after = contract::read(w.chain.as_ref(), &client_sc)
        .await
        .expect("read")
        .expect("deployed");
    assert_eq!(after.secret_hash, new_hash);
    assert_eq!(
        after.balance, before.balance,
        "the money stays where it was"
    );
    assert!(w.nonce_reached_proxy(&proxy.contract, 7).await);

    // From now on: short, with the derived secret, nothing on chain.
    let txs = w.wallet_txs().await;
    let short = connected(
        &proxy,
        ClientProxyConnectionAuth::Short(ClientProxyConnectionAuthShort {
            secret_hash: new_hash,
            nonce: 8,
        }),
    );
    authorize(&p, "proxy-1", &session, &short)
        .await
        .expect("short auth");
    assert_eq!(w.wallet_txs().await, txs);
    let sent = sent.lock().expect("sent").clone();
    assert_eq!(sent, vec![Bytes::from(ours.into_bytes())]);
    assert!(
        sent.iter().all(|s| s.as_ref() != SECRET.as_bytes()),
        "the configured secret never leaves the client"
    );
}
