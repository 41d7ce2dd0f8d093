//! Client connections driven over in-memory sessions (no sockets): a hostile client that tries
//! to switch its identity, per-owner queries and pages before authorization, the long-auth
//! table's bounds and the authorization deadline; and what requests are charged (settlement):
//! early endings charged what was delivered, worker statements capped at the reservation, the
//! reservation following the body, the durable usage surviving a restart, minimum deadlines.
//!
//! Each test speaks the client protocol with `cocoon_proto` sessions on a `tokio::io::duplex`
//! pair and runs [`super::run`] as the proxy does for an accepted connection. Payments-on tests
//! use [`Payments::for_tests`] over a chain on which no client contract is deployed.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cocoon_node::errors;
use cocoon_node::net::AttestedSession;
use cocoon_proto::messages::{
    encode, ClientAuthorizationWithProxy, ClientAuthorizeWithProxyLong,
    ClientAuthorizeWithProxyShort, ClientConnectToProxy, ClientConnectedToProxy, ClientParams,
    ClientPaymentStatus, ClientProxyConnectionAuth, ClientRefundAnswer, ClientRequestRefund,
    ClientRunQueryEx, ClientUpdatePaymentStatus, ProxySignedPayment, ProxyToWorkerMessage,
};
use cocoon_proto::session::{
    establish, Inbound, InboundMessage, QueryError, Session, SessionConfig,
};
use cocoon_ton::TonAddress;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{ClientEntry, ProxyConfig};
use crate::payments::long_auth::MAX_PER_SOURCE;
use crate::payments::Payments;
use crate::state::WorkerEntry;
use crate::test_chain::EmptyChain;
use crate::Shared;

const WORKER_CONN: u64 = 1_000_000;
const CREDIT: u64 = 1_000_000;

fn entry(owner: &str, secret: &str) -> ClientEntry {
    ClientEntry {
        owner_address: owner.into(),
        secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        token_credit: Some(CREDIT),
    }
}

/// A dev proxy that knows `alice` and `mallory` (payments off).
fn config() -> ProxyConfig {
    let mut cfg = ProxyConfig::default();
    cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
    cfg.clients = vec![
        entry("alice", "alice-secret"),
        entry("mallory", "mallory-secret"),
    ];
    cfg
}

fn shared(cfg: ProxyConfig) -> Arc<Shared> {
    Arc::new(Shared::new(cfg, [7; 32], None))
}

async fn session_pair() -> ((Session, Inbound), (Session, Inbound)) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (dialer, acceptor) = tokio::join!(
        establish(a, SessionConfig::dialer()),
        establish(b, SessionConfig::acceptor())
    );
    (dialer.expect("dialer"), acceptor.expect("acceptor"))
}

/// The test's end of one client connection; the proxy's end runs [`super::run`].
struct Client {
    session: Session,
    inbound: Inbound,
    task: tokio::task::JoinHandle<()>,
}

async fn client(shared: &Arc<Shared>, remote: &str) -> Client {
    let ((session, inbound), (ps, pi)) = session_pair().await;
    let conn = AttestedSession {
        session: ps,
        inbound: pi,
        peer: cocoon_attest::AttestedPeer::unattested([9; 32]),
        remote: remote.parse().expect("address"),
    };
    let task = tokio::spawn(super::run(shared.clone(), conn, CancellationToken::new()));
    Client {
        session,
        inbound,
        task,
    }
}

impl Client {
    async fn ask<A: cocoon_tl::TlRead>(
        &self,
        q: &impl cocoon_tl::TlWrite,
    ) -> Result<A, QueryError> {
        let answer = self
            .session
            .query(encode(q), Duration::from_secs(10))
            .await?;
        Ok(cocoon_tl::from_bytes(&answer).expect("decodable answer"))
    }

    async fn connect(&self, owner: &str) -> Result<ClientConnectedToProxy, QueryError> {
        self.ask(&ClientConnectToProxy {
            params: ClientParams {
                flags: cocoon_proto::version::EXTENSIONS_FLAG,
                client_owner_address: owner.into(),
                is_test: Some(true),
                min_proto_version: Some(crate::PROTO_MIN),
                max_proto_version: Some(crate::PROTO_MAX),
            },
            min_config_version: 0,
        })
        .await
    }

    async fn authorize(&self, secret: &str) -> ClientAuthorizationWithProxy {
        self.ask(&ClientAuthorizeWithProxyShort {
            data: Bytes::from(secret.to_string()),
        })
        .await
        .expect("short auth answered")
    }

    async fn run_query(&self, id: u8) {
        let q = ClientRunQueryEx {
            model_name: "mock".into(),
            query: Bytes::from_static(b"{}"),
            max_coefficient: 1_000_000,
            max_tokens: 100,
            timeout: 60.0,
            request_id: [id; 32],
            min_config_version: 0,
            flags: 0,
            enable_debug: None,
            public_key: Some([0; 32]),
        };
        // A closed session refuses the send; the assertions look at what the proxy did.
        let _ = self.session.send(encode(&q)).await;
    }

    async fn closed_within(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.session.closed())
            .await
            .is_ok()
    }
}

/// A worker serving `mock`, registered as the proxy's worker connection would register it.
/// Returns the worker's end, where the requests the proxy starts arrive.
async fn worker(shared: &Arc<Shared>) -> (Session, Inbound, Inbound) {
    let ((ws, wi), (ps, pi)) = session_pair().await;
    if let Ok(mut s) = shared.sessions.lock() {
        s.insert(WORKER_CONN, ps);
    }
    {
        let mut core = shared.core();
        let st = &mut core.state;
        st.workers.insert(
            WORKER_CONN,
            WorkerEntry::new(
                WORKER_CONN,
                "worker",
                "mock",
                1000,
                100,
                cocoon_proto::version::Negotiated::with_extensions(4),
            ),
        );
    }
    (ws, wi, pi)
}

/// The next request the worker receives within `limit`, if any.
async fn next_request(inbound: &mut Inbound, limit: Duration) -> Option<[u8; 32]> {
    let m = tokio::time::timeout(limit, inbound.recv()).await.ok()??;
    match m {
        InboundMessage::Packet(data) => match cocoon_tl::from_bytes(&data).ok()? {
            ProxyToWorkerMessage::RunQueryEx(q) => Some(q.request_id),
            _ => None,
        },
        InboundMessage::Query(_) => None,
    }
}

fn account(shared: &Shared, owner: &str) -> (u64, u64, u32) {
    let core = shared.core();
    let st = &core.state;
    let a = st.clients.get(owner).expect("account");
    (a.used, a.reserved, a.running)
}

fn remote_error(r: Result<impl std::fmt::Debug, QueryError>) -> i32 {
    match r {
        Err(QueryError::Remote { code, .. }) => code,
        other => panic!("expected a protocol error answer, got {other:?}"),
    }
}

/// A query the proxy answers with a protocol error and then closes the session on. The error
/// frame is flushed before the close, but the querying side may see the close first (its
/// `Session::query` races the answer against the close), so `Closed` counts too.
fn refused_and_closed(r: Result<impl std::fmt::Debug, QueryError>) {
    match r {
        Err(QueryError::Remote { code, .. }) => assert_eq!(code, errors::PROTOVIOLATION),
        Err(QueryError::Closed) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_second_connect_is_refused_so_a_client_cannot_spend_another_clients_credit() {
    let shared = shared(config());
    let (_ws, mut worker_in, _pi) = worker(&shared).await;

    // Mallory authorizes as herself, then names alice on the same session.
    let mallory = client(&shared, "10.0.0.66:1000").await;
    mallory.connect("mallory").await.expect("connect");
    assert!(matches!(
        mallory.authorize("mallory-secret").await,
        ClientAuthorizationWithProxy::Success(_)
    ));
    refused_and_closed(mallory.connect("alice").await);
    // The session is closed: whatever mallory sends next is not served, for anyone.
    mallory.run_query(1).await;
    assert!(mallory.closed_within(Duration::from_secs(5)).await);
    assert_eq!(
        next_request(&mut worker_in, Duration::from_millis(300)).await,
        None,
        "nothing reached the worker for mallory"
    );
    assert_eq!(account(&shared, "alice"), (0, 0, 0), "alice is untouched");
    assert_eq!(account(&shared, "mallory"), (0, 0, 0));

    // Alice on the same proxy is still served, against her own account.
    let alice = client(&shared, "10.0.0.1:1000").await;
    alice.connect("alice").await.expect("connect");
    assert!(matches!(
        alice.authorize("alice-secret").await,
        ClientAuthorizationWithProxy::Success(_)
    ));
    alice.run_query(2).await;
    assert!(next_request(&mut worker_in, Duration::from_secs(5))
        .await
        .is_some());
    let (_, reserved, running) = account(&shared, "alice");
    assert_eq!(running, 1);
    assert!(reserved > 0);
    assert!(!alice.session.is_closed());
}

#[tokio::test]
async fn a_second_connect_before_authorization_is_refused_too() {
    let shared = shared(config());
    let mallory = client(&shared, "10.0.0.66:1000").await;
    mallory.connect("mallory").await.expect("connect");
    refused_and_closed(mallory.connect("alice").await);
    assert!(mallory.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn per_owner_queries_answer_only_authorized_sessions_for_their_own_owner() {
    let shared = shared(config());
    // Naming alice without her secret tells nothing about her.
    let snoop = client(&shared, "10.0.0.66:1000").await;
    snoop.connect("alice").await.expect("connect");
    let status = snoop
        .ask::<ClientPaymentStatus>(&ClientUpdatePaymentStatus)
        .await;
    assert_eq!(remote_error(status), errors::PROTOVIOLATION);
    let refund = snoop.ask::<ClientRefundAnswer>(&ClientRequestRefund).await;
    assert_eq!(remote_error(refund), errors::PROTOVIOLATION);
    assert!(matches!(
        snoop.authorize("mallory-secret").await,
        ClientAuthorizationWithProxy::Failed(_)
    ));
    let status = snoop
        .ask::<ClientPaymentStatus>(&ClientUpdatePaymentStatus)
        .await;
    assert_eq!(remote_error(status), errors::PROTOVIOLATION);

    // Alice herself is answered once authorized.
    let alice = client(&shared, "10.0.0.1:1000").await;
    alice.connect("alice").await.expect("connect");
    assert!(matches!(
        alice.authorize("alice-secret").await,
        ClientAuthorizationWithProxy::Success(_)
    ));
    alice
        .ask::<ClientPaymentStatus>(&ClientUpdatePaymentStatus)
        .await
        .expect("status for alice");
    let refund = alice
        .ask::<ClientRefundAnswer>(&ClientRequestRefund)
        .await
        .expect("refund answer");
    assert!(matches!(refund, ClientRefundAnswer::Rejected(r) if r.active_queries == 0));
}

#[tokio::test]
async fn sessions_not_authorized_in_time_are_closed() {
    let mut cfg = config();
    cfg.client_auth_timeout = Duration::from_millis(300);
    let shared = shared(cfg);
    let idle = client(&shared, "10.0.0.66:1000").await;
    let connected_only = client(&shared, "10.0.0.66:1001").await;
    connected_only.connect("alice").await.expect("connect");
    let alice = client(&shared, "10.0.0.1:1000").await;
    alice.connect("alice").await.expect("connect");
    assert!(matches!(
        alice.authorize("alice-secret").await,
        ClientAuthorizationWithProxy::Success(_)
    ));
    assert!(idle.closed_within(Duration::from_secs(5)).await);
    assert!(connected_only.closed_within(Duration::from_secs(5)).await);
    assert!(idle.task.await.is_ok());
    // An authorized session outlives the deadline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!alice.session.is_closed());
    alice
        .ask::<ClientPaymentStatus>(&ClientUpdatePaymentStatus)
        .await
        .expect("still served");
}

// --- payments on ---

struct PayNet {
    shared: Arc<Shared>,
    pay: Arc<Payments>,
    chain: Arc<EmptyChain>,
    dir: PathBuf,
}

impl Drop for PayNet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn pay_net(name: &str, auth_timeout: Duration) -> PayNet {
    let dir = std::env::temp_dir().join(format!(
        "cocoon-proxy-conn-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let chain = Arc::new(EmptyChain::default());
    let pay = Payments::for_tests(chain.clone(), &dir).await;
    let mut cfg = ProxyConfig::default();
    cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
    cfg.client_auth_timeout = auth_timeout;
    let shared = Arc::new(Shared::new(cfg, pay.public_key, Some(pay.clone())));
    PayNet {
        shared,
        pay,
        chain,
        dir,
    }
}

fn owner(b: u8) -> String {
    TonAddress::new(0, [b; 32]).to_bounceable()
}

fn long_nonce(c: &ClientConnectedToProxy) -> u64 {
    match &c.auth {
        ClientProxyConnectionAuth::Long(l) => l.nonce as u64,
        ClientProxyConnectionAuth::Short(_) => panic!("no contract is deployed: long auth"),
    }
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

impl PayNet {
    fn book_has(&self, owner: &str) -> bool {
        self.pay
            .book
            .lock()
            .expect("book")
            .clients
            .contains_key(owner)
    }

    fn state_has(&self, owner: &str) -> bool {
        self.shared.core().state.clients.contains_key(owner)
    }

    fn reads(&self) -> usize {
        self.chain.reads.load(Ordering::SeqCst)
    }

    /// Starts `client.authorizeWithProxyLong` on `c`; the task ends with its answer.
    fn long_auth(
        c: &Client,
    ) -> tokio::task::JoinHandle<Result<ClientAuthorizationWithProxy, QueryError>> {
        let s = c.session.clone();
        tokio::spawn(async move {
            let a = s
                .query(
                    encode(&ClientAuthorizeWithProxyLong),
                    Duration::from_secs(30),
                )
                .await?;
            Ok(cocoon_tl::from_bytes(&a).expect("decodable answer"))
        })
    }
}

#[tokio::test]
async fn with_payments_connect_reads_the_chain_once_and_tells_and_keeps_nothing() {
    let n = pay_net("connect", Duration::from_secs(30)).await;
    let victim = owner(0x33);
    let snoop = client(&n.shared, "10.0.0.66:1000").await;
    let connected = snoop.connect(&victim).await.expect("connect");
    assert_eq!(connected.signed_payment, ProxySignedPayment::empty());
    assert_eq!(n.reads(), 1, "one contract read for the connect");
    assert!(!n.book_has(&victim), "no book page before authorization");
    assert!(!n.state_has(&victim), "no account before authorization");
    let status = snoop
        .ask::<ClientPaymentStatus>(&ClientUpdatePaymentStatus)
        .await;
    assert_eq!(remote_error(status), errors::PROTOVIOLATION);
    let refund = snoop.ask::<ClientRefundAnswer>(&ClientRequestRefund).await;
    assert_eq!(remote_error(refund), errors::PROTOVIOLATION);
    // Looping connectToProxy to make the proxy read the chain and grow its maps: refused.
    refused_and_closed(snoop.connect(&owner(0x34)).await);
    assert!(snoop.closed_within(Duration::from_secs(5)).await);
    assert_eq!(n.reads(), 1);
    assert!(n.pay.book.lock().expect("book").clients.is_empty());
    assert!(n.shared.core().state.clients.is_empty());
}

#[tokio::test]
async fn with_payments_pages_are_made_when_long_auth_succeeds() {
    let n = pay_net("pages", Duration::from_secs(30)).await;
    let me = owner(0x44);
    let c = client(&n.shared, "10.0.0.1:1000").await;
    let nonce = long_nonce(&c.connect(&me).await.expect("connect"));
    let answer = PayNet::long_auth(&c);
    until("the long auth waits", || n.pay.long_auth_waiting() == 1).await;
    assert!(!n.book_has(&me) && !n.state_has(&me));
    // Another owner's contract forwarding this nonce does not authorize the session.
    n.pay.nonce_seen(&owner(0x45), nonce);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!answer.is_finished());
    n.pay.nonce_seen(&me, nonce);
    let r = answer.await.expect("task").expect("answered");
    assert!(
        matches!(r, ClientAuthorizationWithProxy::Success(_)),
        "{r:?}"
    );
    assert!(n.book_has(&me) && n.state_has(&me));
    assert_eq!(n.pay.long_auth_waiting(), 0);
    c.ask::<ClientPaymentStatus>(&ClientUpdatePaymentStatus)
        .await
        .expect("status once authorized");
}

#[tokio::test]
async fn a_long_auth_entry_lives_only_as_long_as_its_session() {
    // The deadline is short, but a long authorization started in time may run on.
    let n = pay_net("closed", Duration::from_millis(300)).await;
    let c = client(&n.shared, "10.0.0.66:1000").await;
    c.connect(&owner(0x55)).await.expect("connect");
    let answer = PayNet::long_auth(&c);
    until("the long auth waits", || n.pay.long_auth_waiting() == 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(n.pay.long_auth_waiting(), 1);
    assert!(!c.session.is_closed());
    // The client goes away: its entry goes with it, not 300 s later.
    c.session.close();
    until("the entry is gone", || n.pay.long_auth_waiting() == 0).await;
    assert!(answer.await.expect("task").is_err());
    assert!(tokio::time::timeout(Duration::from_secs(5), c.task)
        .await
        .is_ok());
}

#[tokio::test]
async fn one_address_cannot_fill_the_long_auth_table() {
    let n = pay_net("source", Duration::from_secs(30)).await;
    let mut held = Vec::new();
    for i in 0..MAX_PER_SOURCE {
        let c = client(&n.shared, &format!("10.0.0.66:{}", 2000 + i)).await;
        c.connect(&owner(0x60)).await.expect("connect");
        let a = PayNet::long_auth(&c);
        held.push((c, a));
    }
    until("every long auth waits", || {
        n.pay.long_auth_waiting() == MAX_PER_SOURCE
    })
    .await;
    // One more from the same address is refused at once...
    let extra = client(&n.shared, "10.0.0.66:3000").await;
    extra.connect(&owner(0x60)).await.expect("connect");
    let r = PayNet::long_auth(&extra)
        .await
        .expect("task")
        .expect("answered");
    assert!(
        matches!(&r, ClientAuthorizationWithProxy::Failed(f) if f.error_code == 429),
        "{r:?}"
    );
    // ...while a client from elsewhere still gets its long authorization.
    let me = owner(0x61);
    let genuine = client(&n.shared, "10.0.0.1:1000").await;
    let nonce = long_nonce(&genuine.connect(&me).await.expect("connect"));
    let answer = PayNet::long_auth(&genuine);
    until("the genuine long auth waits", || {
        n.pay.long_auth_waiting() == MAX_PER_SOURCE + 1
    })
    .await;
    n.pay.nonce_seen(&me, nonce);
    let r = answer.await.expect("task").expect("answered");
    assert!(
        matches!(r, ClientAuthorizationWithProxy::Success(_)),
        "{r:?}"
    );
    // Closing the address's sessions empties the table.
    for (c, _) in &held {
        c.session.close();
    }
    until("the entries are gone", || n.pay.long_auth_waiting() == 0).await;
}

#[tokio::test]
async fn with_payments_a_known_client_is_told_its_numbers_only_once_authorized() {
    use crate::payments::book::{ClientBook, ClientOnchain, Signed};
    let n = pay_net("known", Duration::from_secs(30)).await;
    let victim = TonAddress::new(0, [0x77; 32]);
    let key = victim.to_bounceable();
    let onchain = ClientOnchain {
        state: 0,
        balance: 1_000_000_000_000,
        stake: 1_000_000_000_000,
        tokens_used: 10,
        secret_hash: Sha256::digest(b"victim-secret").into(),
        lt: 1,
    };
    // The page a restarted proxy has for a client it charged before.
    n.pay.book.lock().expect("book").clients.insert(
        key.clone(),
        ClientBook {
            sc: n.pay.client_sc(&victim).expect("contract"),
            db: 5,
            chain: 5,
            onchain: Some(onchain.clone()),
            signed: Some(Signed {
                tokens: 5,
                boc: Bytes::from_static(b"signed charge"),
            }),
            charging_since: None,
        },
    );
    let snoop = client(&n.shared, "10.0.0.66:1000").await;
    let connected = snoop.connect(&key).await.expect("connect");
    assert!(matches!(
        connected.auth,
        ClientProxyConnectionAuth::Short(_)
    ));
    assert_eq!(connected.signed_payment, ProxySignedPayment::empty());
    assert_eq!(n.reads(), 0, "the page's report answers the connect");
    assert!(matches!(
        snoop.authorize("guess").await,
        ClientAuthorizationWithProxy::Failed(_)
    ));
    let status = snoop
        .ask::<ClientPaymentStatus>(&ClientUpdatePaymentStatus)
        .await;
    assert_eq!(remote_error(status), errors::PROTOVIOLATION);
    assert!(!n.state_has(&key), "no account for a failed authorization");

    // The client itself gets its signed charge and its credit with the authorization.
    let me = client(&n.shared, "10.0.0.1:1000").await;
    me.connect(&key).await.expect("connect");
    match me.authorize("victim-secret").await {
        ClientAuthorizationWithProxy::Success(s) => {
            assert_ne!(s.signed_payment, ProxySignedPayment::empty());
            assert_eq!(s.tokens_committed_to_db, 5);
        }
        other => panic!("expected success, got {other:?}"),
    }
    let (price, _) = n.pay.prices();
    let credit = n.shared.core().state.clients[&key].credit;
    assert_eq!(
        credit,
        crate::payments::book::client_credit(&onchain, price)
    );
}

// --- settlement ---

use cocoon_proto::messages::{
    ClientCancelQueryV3, HttpHeader, HttpResponse, ProxyQueryAnswerEx, ProxyQueryAnswerPartEx,
    ProxyQueryAnswerPartV3, ProxyQueryFinalInfo, ProxyRunQueryEx, ProxyToClientMessage, TokensUsed,
    WorkerConnectToProxy, WorkerConnectedToProxy, WorkerParams, WorkerProxyHandshakeComplete,
    WorkerProxyHandshakeCompleted,
};

/// A serialized `http.request` for `/v1/chat/completions` with `body`.
fn http_query(body: &str) -> Bytes {
    crate::rules::tests::query(body)
}

const STREAM_BODY: &str = r#"{"model":"mock","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;

impl Client {
    /// Connects and authorizes as `owner` with `secret`.
    async fn authorized(shared: &Arc<Shared>, owner: &str, secret: &str) -> Client {
        let c = client(shared, "10.0.0.1:1000").await;
        c.connect(owner).await.expect("connect");
        assert!(matches!(
            c.authorize(secret).await,
            ClientAuthorizationWithProxy::Success(_)
        ));
        c
    }

    async fn send_query(&self, id: u8, query: Bytes, max_tokens: i32, timeout: f64) {
        let q = ClientRunQueryEx {
            model_name: "mock".into(),
            query,
            max_coefficient: 1_000_000,
            max_tokens,
            timeout,
            request_id: [id; 32],
            min_config_version: 0,
            flags: 0,
            enable_debug: None,
            public_key: Some([0; 32]),
        };
        self.session.send(encode(&q)).await.expect("sent");
    }

    /// The next message the proxy sends this client within 5 s.
    async fn next(&mut self) -> ProxyToClientMessage {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.inbound.recv())
                .await
                .expect("a message from the proxy in time")
                .expect("session open");
            if let InboundMessage::Packet(data) = m {
                return cocoon_tl::from_bytes(&data).expect("decodable");
            }
        }
    }
}

/// A worker (ours with the extensions, or a b75d444 one at protocol 2), connected through the proxy's own worker-connection task
/// ([`crate::worker_conn::run`]) after Cocoon's handshake; its answers go through the proxy's
/// real dispatch.
struct TestWorker {
    session: Session,
    inbound: Inbound,
    /// Speaks the cocoon-rs extensions (per-part progress, cancels).
    ours: bool,
    conn: u64,
}

impl TestWorker {
    async fn start(shared: &Arc<Shared>, ours: bool) -> TestWorker {
        let (flags, proto) = if ours {
            (cocoon_proto::version::EXTENSIONS_FLAG, 4)
        } else {
            (0, 2)
        };
        let ((session, inbound), (ps, pi)) = session_pair().await;
        let conn = AttestedSession {
            session: ps,
            inbound: pi,
            peer: cocoon_attest::AttestedPeer::unattested([8; 32]),
            remote: "10.0.1.1:2000".parse().expect("address"),
        };
        tokio::spawn(crate::worker_conn::run(
            shared.clone(),
            conn,
            CancellationToken::new(),
        ));
        let params = WorkerParams {
            flags,
            worker_owner_address: "worker".into(),
            model: "mock".into(),
            coefficient: 1000,
            is_test: Some(true),
            proxy_cnt: Some(1),
            max_active_requests: Some(100),
            min_proto_version: Some(proto),
            max_proto_version: Some(proto),
            machine_description_json: None,
        };
        let answer = session
            .query(
                encode(&WorkerConnectToProxy { params }),
                Duration::from_secs(10),
            )
            .await
            .expect("connected");
        let _: WorkerConnectedToProxy = cocoon_tl::from_bytes(&answer).expect("decodable");
        let answer = session
            .query(
                encode(&WorkerProxyHandshakeComplete { is_disabled: false }),
                Duration::from_secs(10),
            )
            .await
            .expect("registered");
        let _: WorkerProxyHandshakeCompleted = cocoon_tl::from_bytes(&answer).expect("decodable");
        let conn = {
            let core = shared.core();
            let st = &core.state;
            let w = st.workers.values().find(|w| w.owner == "worker");
            w.expect("registered worker").conn_id
        };
        TestWorker {
            session,
            inbound,
            ours,
            conn,
        }
    }

    /// The next message the proxy sends this worker within 5 s.
    async fn next(&mut self) -> ProxyToWorkerMessage {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.inbound.recv())
                .await
                .expect("a message from the proxy in time")
                .expect("session open");
            if let InboundMessage::Packet(data) = m {
                return cocoon_tl::from_bytes(&data).expect("decodable");
            }
        }
    }

    async fn next_run(&mut self) -> ProxyRunQueryEx {
        match self.next().await {
            ProxyToWorkerMessage::RunQueryEx(q) => q,
            _ => panic!("expected a request"),
        }
    }

    async fn send(&self, msg: Bytes) {
        self.session.send(msg).await.expect("sent");
    }

    async fn head(&self, id: [u8; 32], content_type: &str) {
        let head = HttpResponse {
            http_version: "HTTP/1.1".into(),
            status_code: 200,
            reason: "OK".into(),
            headers: vec![HttpHeader {
                name: "Content-Type".into(),
                value: content_type.into(),
            }],
            payload: Bytes::new(),
        };
        self.send(encode(&ProxyQueryAnswerEx {
            request_id: id,
            answer: encode(&head),
            flags: 0,
            final_info: None,
        }))
        .await;
    }

    /// A body part; on protocol 3 with `progress` (what an engine that reports usage only in
    /// its last chunk gives until then: 0).
    async fn part(&self, id: [u8; 32], answer: &str, progress: i64, fin: Option<i64>) {
        let final_info = fin.map(|total| ProxyQueryFinalInfo {
            flags: 0,
            tokens_used: tokens(total),
            worker_debug: None,
            worker_start_time: None,
            worker_end_time: None,
        });
        let answer = Bytes::from(answer.to_string());
        if self.ours {
            self.send(encode(&ProxyQueryAnswerPartV3 {
                request_id: id,
                answer,
                flags: 0,
                progress: tokens(progress),
                final_info,
            }))
            .await;
        } else {
            self.send(encode(&ProxyQueryAnswerPartEx {
                request_id: id,
                answer,
                flags: 0,
                final_info,
            }))
            .await;
        }
    }

    fn earned(&self, shared: &Shared) -> (u64, u64) {
        let core = shared.core();
        let st = &core.state;
        let entry = st.workers.get(&self.conn).map(|w| w.earned_tokens);
        (
            entry.unwrap_or(0),
            st.worker_earned.get("worker").copied().unwrap_or(0),
        )
    }
}

fn tokens(total: i64) -> TokensUsed {
    TokensUsed {
        prompt_tokens_used: 0,
        cached_tokens_used: 0,
        completion_tokens_used: total,
        reasoning_tokens_used: 0,
        total_tokens_used: total,
    }
}

fn sse_content(text: &str) -> String {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n")
}

/// Waits until nothing of `owner` runs any more.
async fn settled(shared: &Shared, owner: &str) {
    until("the request is settled", || account(shared, owner).2 == 0).await;
}

/// Streams K content chunks to `alice` and ends the request from the client's side (`end`):
/// the charge must be the prompt estimate plus K, credited to the worker the same, settled
/// once even when the worker's own final answer comes afterwards.
async fn early_ending_charges_what_was_delivered(ours: bool, disconnect: bool) {
    const K: u64 = 5;
    let shared = shared(config());
    let mut w = TestWorker::start(&shared, ours).await;
    let mut alice = Client::authorized(&shared, "alice", "alice-secret").await;
    let query = http_query(STREAM_BODY);
    let prompt_estimate = query.len() as u64;
    alice.send_query(1, query, 100, 60.0).await;
    let id = w.next_run().await.request_id;
    w.head(id, "text/event-stream").await;
    // A role-only chunk (no content) first, as engines send.
    w.part(
        id,
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
        0,
        None,
    )
    .await;
    for i in 0..K {
        w.part(id, &sse_content(&format!("t{i}")), 0, None).await;
    }
    // The client has everything that was relayed before it goes.
    let mut parts = 0;
    while parts < K + 1 {
        if let ProxyToClientMessage::QueryAnswerPartEx(_) = alice.next().await {
            parts += 1;
        }
    }
    if disconnect {
        alice.session.close();
    } else {
        alice
            .session
            .send(encode(&ClientCancelQueryV3 {
                request_id: [1; 32],
            }))
            .await
            .expect("cancel sent");
    }
    settled(&shared, "alice").await;
    let want = prompt_estimate + K;
    assert_eq!(account(&shared, "alice").0, want, "charged prompt + K");
    assert_eq!(w.earned(&shared), (want, want), "worker credited the same");
    // The worker is told to stop (protocol 3) and what it earned.
    let mut paid = None;
    while paid.is_none() {
        match w.next().await {
            ProxyToWorkerMessage::WorkerRequestPayment(p) => paid = Some(p.request_tokens),
            ProxyToWorkerMessage::CancelQueryV3(_) => assert!(ours),
            _ => {}
        }
    }
    assert_eq!(paid, Some(want as i64));
    // Its late final answer finds no request: nothing is charged twice.
    w.part(id, "data: [DONE]\n\n", 40, Some(40)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(account(&shared, "alice").0, want);
    assert_eq!(w.earned(&shared), (want, want));
    let s = &shared.stats;
    assert_eq!((s.succeeded.get(), s.failed.get()), (0, 1), "ended once");
}

#[tokio::test]
async fn a_stream_cancelled_by_its_client_is_charged_what_it_received() {
    // Protocol 3, the engine reporting usage only in its last chunk (progress 0 until then).
    early_ending_charges_what_was_delivered(true, false).await;
}

#[tokio::test]
async fn a_client_leaving_a_cocoon_workers_stream_pays_what_the_proxy_relayed() {
    // Protocol 2 (Cocoon's workers): no progress at all; the proxy's own count decides.
    early_ending_charges_what_was_delivered(false, true).await;
}

#[tokio::test]
async fn absurd_usage_from_a_worker_is_charged_at_most_the_reservation() {
    let shared = shared(config());
    let mut w = TestWorker::start(&shared, true).await;
    let mut alice = Client::authorized(&shared, "alice", "alice-secret").await;
    let query = http_query(STREAM_BODY);
    let reserved = crate::state::reservation(100, query.len() as u64, 1000, &shared.cfg.pricing);
    alice.send_query(1, query, 100, 60.0).await;
    let id = w.next_run().await.request_id;
    assert_eq!(account(&shared, "alice").1, reserved);
    w.head(id, "text/event-stream").await;
    w.part(id, &sse_content("x"), 0, None).await;
    w.part(
        id,
        "data: [DONE]\n\n",
        5_000_000_000_000,
        Some(5_000_000_000_000),
    )
    .await;
    settled(&shared, "alice").await;
    assert_eq!(
        account(&shared, "alice").0,
        reserved,
        "the reservation, not 5e12"
    );
    assert_eq!(w.earned(&shared), (reserved, reserved));
    assert_eq!(shared.stats.over_reservation.get(), 1);
    let over = shared
        .core()
        .state
        .worker_health
        .get(&w.conn)
        .map(|h| h.over_reservation);
    assert_eq!(over, Some(1), "counted for the worker");
    // The answer itself still reaches the client, with its payment notice.
    let mut paid = None;
    while paid.is_none() {
        if let ProxyToClientMessage::ClientRequestPayment(p) = alice.next().await {
            paid = Some(p.request_tokens);
        }
    }
    assert_eq!(paid, Some(reserved as i64));
}

#[tokio::test]
async fn the_reservation_follows_the_bodys_max_tokens_not_the_message_field() {
    let shared = shared(config());
    let mut w = TestWorker::start(&shared, true).await;
    let alice = Client::authorized(&shared, "alice", "alice-secret").await;
    let query = http_query(
        r#"{"model":"mock","max_tokens":4000,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    let want = crate::state::reservation(4000, query.len() as u64, 1000, &shared.cfg.pricing);
    alice.send_query(1, query, 1, 60.0).await;
    w.next_run().await;
    assert_eq!(
        account(&shared, "alice").1,
        want,
        "reserved for 4000 tokens"
    );
    // A body without a limit is reserved for the configured cap.
    let query = http_query(r#"{"model":"mock","messages":[{"role":"user","content":"hi"}]}"#);
    let cap = crate::state::reservation(
        shared.cfg.default_max_tokens,
        query.len() as u64,
        1000,
        &shared.cfg.pricing,
    );
    alice.send_query(2, query, 1, 60.0).await;
    w.next_run().await;
    assert_eq!(account(&shared, "alice").1, want + cap);
}

#[tokio::test]
async fn a_tiny_client_timeout_does_not_make_the_worker_suspect() {
    let shared = shared(config());
    let mut w = TestWorker::start(&shared, true).await;
    let alice = Client::authorized(&shared, "alice", "alice-secret").await;
    alice
        .send_query(1, http_query(STREAM_BODY), 100, 1e-6)
        .await;
    let run = w.next_run().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let suspect = |sh: &Shared| sh.core().state.workers[&w.conn].suspect;
    assert!(!suspect(&shared), "no worker can answer within 1 µs");
    // The deadline was raised to the proxy's minimum (the worker gets 0.95 of it).
    let min = shared.cfg.min_request_timeout.as_secs_f64();
    assert!(run.timeout >= 0.95 * min - 1e-9, "{}", run.timeout);
    assert_eq!(account(&shared, "alice").2, 1, "still running");
    // The worker answers in time for the raised deadline.
    w.head(run.request_id, "text/event-stream").await;
    w.part(run.request_id, &sse_content("x"), 1, None).await;
    w.part(run.request_id, "data: [DONE]\n\n", 3, Some(3)).await;
    settled(&shared, "alice").await;
    assert_eq!(account(&shared, "alice").0, 3);
    assert!(!suspect(&shared));
    assert_eq!(shared.stats.timed_out.get(), 0);
}

#[tokio::test]
async fn a_restarted_proxy_admits_only_the_credit_its_ledger_has_not_used() {
    use crate::payments::book::ClientOnchain;
    const N: u64 = 4_000;
    const CREDIT_TOKENS: u64 = 10_000;
    let dir = std::env::temp_dir().join(format!(
        "cocoon-proxy-restart-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let me = TonAddress::new(0, [0x71; 32]);
    let key = me.to_bounceable();
    let worker_key = owner(0x72);
    // The proxy's first life: N tokens charged to the client, durable; then it stops.
    let chain = Arc::new(EmptyChain::default());
    let before = Payments::for_tests(chain.clone(), &dir).await;
    before.record(&key, &worker_key, N).await.expect("recorded");
    before.ledger.close().await.expect("closed");
    drop(before);
    // Restarted on the same ledger: the client's page holds N durable tokens.
    let pay = Payments::for_tests(chain, &dir).await;
    let (price, _) = pay.prices();
    {
        let mut b = pay.book.lock().expect("book");
        let page = b.clients.get_mut(&key).expect("the ledger's page");
        assert_eq!(page.db, N);
        // The contract's report, as the chain agent keeps it.
        page.onchain = Some(ClientOnchain {
            state: 0,
            balance: u128::from(CREDIT_TOKENS) * price,
            stake: u128::from(CREDIT_TOKENS) * price,
            tokens_used: 0,
            secret_hash: Sha256::digest(b"my-secret").into(),
            lt: 1,
        });
    }
    let mut cfg = ProxyConfig::default();
    cfg.attestation.network = cocoon_attest::NetworkKind::Dev;
    let shared = Arc::new(Shared::new(cfg, pay.public_key, Some(pay.clone())));
    let (_ws, mut worker_in, _pi) = worker(&shared).await;
    let mut c = Client::authorized(&shared, &key, "my-secret").await;
    {
        let core = shared.core();
        let st = &core.state;
        let a = &st.clients[&key];
        assert_eq!(a.credit, CREDIT_TOKENS);
        assert_eq!(
            a.available(),
            CREDIT_TOKENS - N,
            "credit − N, not the credit"
        );
    }
    // A request that fits the credit but not what is left of it is refused...
    let body = |n: u64| {
        http_query(&format!(
            r#"{{"model":"mock","max_tokens":{n},"messages":[{{"role":"user","content":"hi"}}]}}"#
        ))
    };
    c.send_query(1, body(CREDIT_TOKENS - N), 1, 60.0).await;
    match c.next().await {
        ProxyToClientMessage::QueryAnswerErrorEx(e) => {
            assert_eq!(e.error_code, errors::INSUFFICIENT_CREDIT, "{}", e.error)
        }
        _ => panic!("expected a refusal"),
    }
    assert_eq!(
        next_request(&mut worker_in, Duration::from_millis(200)).await,
        None
    );
    // ...one that fits what is left is served.
    c.send_query(2, body(CREDIT_TOKENS - N - 1_000), 1, 60.0)
        .await;
    assert!(next_request(&mut worker_in, Duration::from_secs(5))
        .await
        .is_some());
    let _ = pay.ledger.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_charge_the_ledger_refuses_fails_its_request_and_the_proxy_goes_on() {
    use crate::payments::book::{ClientBook, ClientOnchain};
    use crate::proxy_core::WorkerAnswer;
    use crate::relay;
    let n = pay_net("refused", Duration::from_secs(30)).await;
    let me = TonAddress::new(0, [0x81; 32]);
    let key = me.to_bounceable();
    let (price, _) = n.pay.prices();
    n.pay.book.lock().expect("book").clients.insert(
        key.clone(),
        ClientBook {
            sc: n.pay.client_sc(&me).expect("contract"),
            db: 0,
            chain: 0,
            onchain: Some(ClientOnchain {
                state: 0,
                balance: 1_000_000 * price,
                stake: 1_000_000 * price,
                tokens_used: 0,
                secret_hash: Sha256::digest(b"my-secret").into(),
                lt: 1,
            }),
            signed: None,
            charging_since: None,
        },
    );
    // The worker's ledger row is one small charge away from its bound.
    n.pay
        .record(&owner(0x82), "worker", i64::MAX as u64 - 10)
        .await
        .expect("recorded");
    let (_ws, mut worker_in, _pi) = worker(&n.shared).await;
    let mut c = Client::authorized(&n.shared, &key, "my-secret").await;
    c.send_query(1, http_query(STREAM_BODY), 100, 60.0).await;
    let id = next_request(&mut worker_in, Duration::from_secs(5))
        .await
        .expect("request");
    let head = HttpResponse {
        http_version: "HTTP/1.1".into(),
        status_code: 200,
        reason: "OK".into(),
        headers: Vec::new(),
        payload: Bytes::new(),
    };
    let head = WorkerAnswer::Head {
        answer: encode(&head),
        final_info: None,
    };
    relay::worker_answer(&n.shared, WORKER_CONN, id, head).await;
    let fin = ProxyQueryFinalInfo {
        flags: 0,
        tokens_used: tokens(50),
        worker_debug: None,
        worker_start_time: None,
        worker_end_time: None,
    };
    let last = WorkerAnswer::Part {
        answer: Bytes::from_static(b"{}"),
        progress: Some(50),
        final_info: Some(fin),
    };
    relay::worker_answer(&n.shared, WORKER_CONN, id, last).await;
    // The request fails to its client...
    loop {
        match c.next().await {
            ProxyToClientMessage::QueryAnswerErrorEx(e) => {
                assert_eq!(e.error_code, errors::ERROR, "{}", e.error);
                break;
            }
            ProxyToClientMessage::QueryAnswerEx(_) => {}
            _ => panic!("expected the head, then an error"),
        }
    }
    // ...and the proxy is not halted: the next request is served.
    assert_eq!(n.pay.halted(), None);
    assert_eq!(n.shared.stats.charges_rejected.get(), 1);
    c.send_query(2, http_query(STREAM_BODY), 100, 60.0).await;
    assert!(next_request(&mut worker_in, Duration::from_secs(5))
        .await
        .is_some());
}

/// L4: a panic while the state lock was held (a bug) poisoned it; the proxy still admits,
/// relays and settles instead of every later request silently giving up on the state.
#[tokio::test]
async fn requests_are_still_served_after_a_panic_poisoned_the_state() {
    let shared = shared(config());
    let mut w = TestWorker::start(&shared, true).await;
    let alice = Client::authorized(&shared, "alice", "alice-secret").await;
    let poisoner = shared.clone();
    let _ = std::thread::spawn(move || {
        let _held = poisoner.core.lock();
        panic!("a bug while holding the proxy state");
    })
    .join();
    assert!(shared.core.is_poisoned());
    alice
        .send_query(1, http_query(STREAM_BODY), 100, 30.0)
        .await;
    let run = tokio::time::timeout(Duration::from_secs(5), w.next_run())
        .await
        .expect("the request never reached the worker");
    w.head(run.request_id, "text/event-stream").await;
    w.part(run.request_id, &sse_content("x"), 1, None).await;
    w.part(run.request_id, "data: [DONE]\n\n", 3, Some(3)).await;
    settled(&shared, "alice").await;
    assert_eq!(account(&shared, "alice").0, 3);
    assert!(!shared.core.is_poisoned());
}

/// The stale-root guard: while the proxy's view of the root is older than `root_stale_after`,
/// a new request is refused with a clear error (nothing reaches a worker); once a read succeeds
/// the next one is served.
#[tokio::test]
async fn with_payments_a_stale_root_refuses_new_requests_until_a_read_succeeds() {
    use crate::payments::book::{ClientBook, ClientOnchain};
    let n = pay_net("stale-root", Duration::from_secs(30)).await;
    let me = TonAddress::new(0, [0x83; 32]);
    let key = me.to_bounceable();
    let (price, _) = n.pay.prices();
    n.pay.book.lock().expect("book").clients.insert(
        key.clone(),
        ClientBook {
            sc: n.pay.client_sc(&me).expect("contract"),
            db: 0,
            chain: 0,
            onchain: Some(ClientOnchain {
                state: 0,
                balance: 1_000_000 * price,
                stake: 1_000_000 * price,
                tokens_used: 0,
                secret_hash: Sha256::digest(b"my-secret").into(),
                lt: 1,
            }),
            signed: None,
            charging_since: None,
        },
    );
    let (_ws, mut worker_in, _pi) = worker(&n.shared).await;
    let mut c = Client::authorized(&n.shared, &key, "my-secret").await;
    assert_eq!(n.shared.accounting.refusing(), None);
    // Last read an hour ago (the default bound is five minutes).
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    n.pay.registry.set_view_time(Some(old));
    c.send_query(1, http_query(STREAM_BODY), 100, 60.0).await;
    loop {
        match c.next().await {
            ProxyToClientMessage::QueryAnswerErrorEx(e) => {
                assert_eq!(e.error_code, errors::NO_WORKER, "{}", e.error);
                assert_eq!(errors::http_status(e.error_code), 503);
                assert!(
                    e.error
                        .starts_with("proxy: its view of the root contract is 3600s old"),
                    "{}",
                    e.error
                );
                break;
            }
            ProxyToClientMessage::QueryAnswerError(e) => {
                assert_eq!(e.error_code, errors::NO_WORKER, "{}", e.error);
                break;
            }
            _ => {}
        }
    }
    assert!(
        next_request(&mut worker_in, Duration::from_millis(200))
            .await
            .is_none(),
        "nothing reached the worker"
    );
    let stats = crate::stats::StatsView(n.shared.clone());
    assert_eq!(
        cocoon_node::stats::StatsSource::json(&stats)["root"]["stale"],
        true
    );
    // A read succeeds: served again.
    n.pay
        .registry
        .set_view_time(Some(std::time::SystemTime::now()));
    c.send_query(2, http_query(STREAM_BODY), 100, 60.0).await;
    assert!(next_request(&mut worker_in, Duration::from_secs(5))
        .await
        .is_some());
}

/// Sealing candidates: only for authorized sessions that speak our extensions; only enabled
/// workers of the model with a certificate binding a sealing key and our extensions; least
/// loaded first; at most 8 whatever the client asks.
#[tokio::test]
async fn sealing_candidates_are_listed_only_to_authorized_sessions_and_bounded() {
    use cocoon_proto::messages::{ClientGetSealingCandidatesV3, ClientSealingCandidatesV3};
    let shared = shared(config());
    {
        let mut core = shared.core();
        for conn in 100..112u64 {
            let mut w = WorkerEntry::new(
                conn,
                "w",
                "mock@1:2",
                1000,
                10,
                cocoon_proto::version::Negotiated::with_extensions(4),
            );
            w.running = (conn - 100) as u32 % 10;
            // 111: no sealing key; 110: another model; 109: Cocoon's protocol only.
            w.evidence = Some(crate::worker_evidence::WorkerEvidence {
                kind: cocoon_attest::EvidenceKind::InsecureSoftware,
                public_key: [conn as u8; 32],
                image_hash: None,
                evidence_digest: None,
                model_hash: None,
                certificate: Some(Arc::from(vec![conn as u8; 3])),
                sealing_key: (conn != 111).then_some([1; 32]),
            });
            if conn == 110 {
                w.model_base = "other".into();
            }
            if conn == 109 {
                w.proto = cocoon_proto::version::Negotiated::upstream(4);
            }
            core.state.workers.insert(conn, w);
        }
    }
    let ask = || ClientGetSealingCandidatesV3 {
        model: "mock".into(),
        limit: 1000,
    };
    let snoop = client(&shared, "10.0.0.66:1000").await;
    snoop.connect("alice").await.expect("connect");
    let refused = snoop.ask::<ClientSealingCandidatesV3>(&ask()).await;
    assert_eq!(remote_error(refused), errors::PROTOVIOLATION);

    let alice = client(&shared, "10.0.0.1:1000").await;
    alice.connect("alice").await.expect("connect");
    assert!(matches!(
        alice.authorize("alice-secret").await,
        ClientAuthorizationWithProxy::Success(_)
    ));
    let got = alice
        .ask::<ClientSealingCandidatesV3>(&ask())
        .await
        .expect("candidates");
    let firsts: Vec<u8> = got.candidates.iter().map(|c| c.certificate[0]).collect();
    assert_eq!(firsts.len(), 8, "{firsts:?}");
    assert!(
        !firsts.iter().any(|c| [109, 110, 111].contains(c)),
        "{firsts:?}"
    );
    // Least loaded first (running = conn - 100).
    assert_eq!(&firsts[..3], &[100, 101, 102]);
    assert!(got.candidates.iter().all(|c| c.model == "mock@1:2"));
}
