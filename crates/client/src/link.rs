//! The client's connections to proxies and the pool requests are dispatched over.
//!
//! Each proxy (configured, or found in the root by discovery) gets a task that dials, runs
//! Cocoon's client handshake (short auth by secret) and then routes the proxy's messages to the
//! waiting requests by request id. When a link drops, every request waiting on it gets an error
//! at once (Cocoon's client waits forever) and the task redials with backoff. Requests go to a
//! ready link chosen round-robin, so a dead proxy is skipped (failover). A link that discovery
//! retires (its proxy left the root, or it is being replaced) leaves the pool at once, so it
//! gets no new request, and closes once the requests on it have finished.
//!
//! With payments on (`[chain]`), the handshake's authorization is `payments::auth` (addresses
//! verified, short or on-chain long auth), each link owns its proxy's money loop
//! (`payments::task`, cancelled with the link), and signed charges the proxy sends are kept in
//! the proxy's `payments::account::ProxyAccount`.
//!
//! A request's events travel over an unbounded channel: the link task must never block on one
//! slow app reader, since all requests on the link share it. What bounds a channel is a byte
//! count instead: the bytes delivered but not yet taken by the request ([`Events`]) may not pass
//! [`MAX_QUEUED_RESPONSE_BYTES`] (each event also counts a fixed overhead, so a flood of empty
//! parts is bounded too). An honest worker bounds its answer by `max_tokens`; a proxy that
//! sends more than the cap (or an app that reads too slowly) gets the request failed with an
//! error to the app and cancelled toward the proxy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cocoon_node::backoff::Backoff;
use cocoon_node::discovery::LinkControl;
use cocoon_node::errors;
use cocoon_node::net::{self, AttestedSession, DialConfig};
use cocoon_proto::messages::{
    encode, ClientAuthorizationWithProxy, ClientAuthorizeWithProxyShort, ClientCancelQueryV3,
    ClientConnectToProxy, ClientConnectedToProxy, ClientGetReceiptProofV3,
    ClientGetSealingCandidatesV3, ClientGetWorkerTypesV2, ClientParams, ClientProxyConnectionAuth,
    ClientReceiptProofV3, ClientSealingCandidatesV3, ClientWorkerTypesV2, ProxyToClientMessage,
    TokensUsed,
};
use cocoon_proto::session::{InboundMessage, Session};
use cocoon_proto::version;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::{ClientConfig, PROTO_MAX, PROTO_MIN};

/// What a waiting request hears from its proxy.
#[derive(Debug)]
pub(crate) enum ProxyEvent {
    /// The serialized `http.response` head; `done` when the answer is already complete.
    Head {
        answer: Bytes,
        done: Option<TokensUsed>,
    },
    /// A body chunk; `done` on the last one.
    Part {
        data: Bytes,
        done: Option<TokensUsed>,
    },
    /// The request failed (error code from the network).
    Error { code: i32, message: String },
    /// The request's countersigned receipt (`client.queryReceiptV3`, sealed requests), before
    /// its final answer. Bytes from the network: the request verifies them.
    Receipt(Bytes),
}

/// Most bytes of one response delivered to its request and not yet taken by it (the same cap as a
/// non-streamed answer collected whole in `http.rs`).
pub(crate) const MAX_QUEUED_RESPONSE_BYTES: usize = 64 << 20;

/// What one queued event counts beyond its bytes.
const EVENT_OVERHEAD: usize = 64;

/// Bytes an event counts against [`MAX_QUEUED_RESPONSE_BYTES`].
fn queued_cost(ev: &ProxyEvent) -> usize {
    EVENT_OVERHEAD
        + match ev {
            ProxyEvent::Head { answer, .. } => answer.len(),
            ProxyEvent::Part { data, .. } => data.len(),
            ProxyEvent::Error { message, .. } => message.len(),
            ProxyEvent::Receipt(r) => r.len(),
        }
}

/// The link's side of one waiting request.
struct Pending {
    /// A sealed request: which worker served it is the receipt's to say, not the proxy's.
    sealed: bool,
    tx: mpsc::UnboundedSender<ProxyEvent>,
    /// Bytes sent on `tx` and not yet received (shared with the request's [`Events`]).
    queued: Arc<AtomicUsize>,
}

impl Pending {
    fn send(&self, ev: ProxyEvent) {
        // Counted before it is sent, so the receiver never subtracts more than was added.
        self.queued.fetch_add(queued_cost(&ev), Ordering::Relaxed);
        let _ = self.tx.send(ev);
    }
}

/// The request's side: its events, in order, as the link delivered them.
pub(crate) struct Events {
    rx: mpsc::UnboundedReceiver<ProxyEvent>,
    queued: Arc<AtomicUsize>,
}

impl Events {
    /// The next event; `None` once the link forgot the request and nothing is left.
    pub async fn recv(&mut self) -> Option<ProxyEvent> {
        let ev = self.rx.recv().await?;
        self.queued.fetch_sub(queued_cost(&ev), Ordering::Relaxed);
        Some(ev)
    }
}

/// A ready link to one proxy.
pub(crate) struct Link {
    pub addr: String,
    pub session: Session,
    /// The version and capabilities agreed with the proxy.
    pub proto: version::Negotiated,
    pending: Mutex<HashMap<[u8; 32], Pending>>,
    /// Cap on one request's queued bytes ([`MAX_QUEUED_RESPONSE_BYTES`]; smaller in tests).
    max_queued: usize,
    cancels: mpsc::UnboundedSender<[u8; 32]>,
    /// Where `client.queryWorkerInfoV3` is recorded (the client's stats).
    served_by: Arc<crate::served_by::ServedByLog>,
    /// With payments on: this proxy's account (signed charges and numbers it sends).
    account: Option<Arc<crate::payments::account::ProxyAccount>>,
    /// The proxy's RA-TLS key (its receipts' countersignatures must verify under it) and the
    /// certificate that proved it (kept with receipts).
    pub proxy_key: [u8; 32],
    pub proxy_certificate: Option<Arc<[u8]>>,
}

impl Link {
    /// With payments on: this proxy's account.
    pub fn account(&self) -> Option<&Arc<crate::payments::account::ProxyAccount>> {
        self.account.as_ref()
    }

    /// Registers a request before it is sent; events arrive on the returned receiver.
    #[cfg(test)]
    pub fn register(&self, id: [u8; 32]) -> Events {
        self.register_as(id, false)
    }

    /// [`Link::register`], telling whether the request is sealed.
    pub fn register_as(&self, id: [u8; 32], sealed: bool) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        if let Ok(mut p) = self.pending.lock() {
            p.insert(
                id,
                Pending {
                    sealed,
                    tx,
                    queued: queued.clone(),
                },
            );
        }
        Events { rx, queued }
    }

    /// Forgets a request; when it was not finished, asks the proxy to cancel it.
    pub fn release(&self, id: [u8; 32], finished: bool) {
        let was_pending = self
            .pending
            .lock()
            .map(|mut p| p.remove(&id).is_some())
            .unwrap_or(false);
        if was_pending && !finished && self.proto.extensions {
            let _ = self.cancels.send(id);
        }
    }

    /// Hands an event to its request; `last` forgets the request. An event that would take the
    /// request's unread bytes past `max_queued` fails the request instead: the app gets an
    /// error after what is already queued, and the proxy a cancel.
    fn deliver(&self, id: &[u8; 32], ev: ProxyEvent, last: bool) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let Some(p) = pending.get(id) else {
            debug!(request = %hex::encode(&id[..8]), "event for an unknown request dropped");
            return;
        };
        let queued = p.queued.load(Ordering::Relaxed);
        if queued.saturating_add(queued_cost(&ev)) > self.max_queued {
            if let Some(p) = pending.remove(id) {
                p.send(ProxyEvent::Error {
                    code: errors::BAD_GATEWAY,
                    message: format!(
                        "answer too large: more than {} bytes waiting for the app; request \
                         cancelled",
                        self.max_queued
                    ),
                });
            }
            drop(pending);
            warn!(request = %hex::encode(&id[..8]), "answer over its queue cap; request cancelled");
            if self.proto.extensions {
                let _ = self.cancels.send(*id);
            }
            return;
        }
        if last {
            if let Some(p) = pending.remove(id) {
                p.send(ev);
            }
        } else {
            p.send(ev);
        }
    }

    /// Whether no request waits on this link.
    fn idle(&self) -> bool {
        self.pending.lock().map(|p| p.is_empty()).unwrap_or(true)
    }

    fn fail_all(&self, message: &str) {
        let pending: Vec<_> = self
            .pending
            .lock()
            .map(|mut p| p.drain().collect())
            .unwrap_or_default();
        for (_, p) in pending {
            p.send(ProxyEvent::Error {
                code: errors::NOT_READY,
                message: message.to_string(),
            });
        }
    }
}

/// All links, ready or not.
#[derive(Default)]
pub(crate) struct Pool {
    ready: Mutex<Vec<Arc<Link>>>,
    next: AtomicUsize,
    /// Proxies (addresses) caught charging more than their receipts: never picked again by
    /// this process.
    refused: Mutex<std::collections::BTreeSet<String>>,
}

impl Pool {
    /// A ready link, round-robin, skipping refused proxies.
    pub fn pick(&self) -> Option<Arc<Link>> {
        self.pick_avoiding(None)
    }

    /// A ready link other than the one to `avoid` (round-robin, skipping refused proxies), or
    /// any ready one when there is no other: where a failed request is tried again.
    pub fn pick_other(&self, avoid: &str) -> Option<Arc<Link>> {
        self.pick_avoiding(Some(avoid)).or_else(|| self.pick())
    }

    fn pick_avoiding(&self, avoid: Option<&str>) -> Option<Arc<Link>> {
        let refused = self.refused.lock().ok()?.clone();
        let ready: Vec<_> = self
            .ready
            .lock()
            .ok()?
            .iter()
            .filter(|l| !refused.contains(&l.addr) && avoid != Some(l.addr.as_str()))
            .cloned()
            .collect();
        if ready.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % ready.len();
        Some(ready[i].clone())
    }

    /// Whether a ready, not refused link to a proxy other than `addr` exists.
    pub fn has_other(&self, addr: &str) -> bool {
        let refused = self.refused.lock().map(|r| r.clone()).unwrap_or_default();
        self.ready.lock().is_ok_and(|r| {
            r.iter()
                .any(|l| l.addr != addr && !refused.contains(&l.addr))
        })
    }

    /// Stops using the proxy at `addr` (it charged more than its receipts).
    pub fn refuse(&self, addr: &str) {
        if let Ok(mut r) = self.refused.lock() {
            r.insert(addr.to_string());
        }
    }

    /// The refused proxies (stats).
    pub fn refused(&self) -> Vec<String> {
        self.refused
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn ready_links(&self) -> Vec<Arc<Link>> {
        self.ready.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn add(&self, link: Arc<Link>) {
        if let Ok(mut r) = self.ready.lock() {
            r.push(link);
        }
    }

    fn remove(&self, link: &Arc<Link>) {
        if let Ok(mut r) = self.ready.lock() {
            r.retain(|l| !Arc::ptr_eq(l, link));
        }
    }
}

/// Keeps one proxy link up until shutdown, or until `control` retires it (then it takes no new
/// request and ends once those on it have finished).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    cfg: Arc<ClientConfig>,
    addr: String,
    dial: DialConfig,
    pool: Arc<Pool>,
    stats: Arc<crate::stats::ClientStats>,
    payments: Option<Arc<crate::payments::Payments>>,
    control: LinkControl,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let span = info_span!("proxy", addr = %addr);
    async move {
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = control.retired() => break,
                r = net::dial(&addr, &dial) => r,
            };
            match attempt {
                Ok(conn) => match handshake(&cfg, &addr, &conn, payments.as_deref()).await {
                    Ok((proto, account)) => {
                        backoff.reset();
                        info!(
                            proto = proto.version,
                            extensions = proto.extensions,
                            "proxy link ready"
                        );
                        stats.proxy_up(&addr, true);
                        control.ready();
                        // The money loop lives as long as this link.
                        let money = shutdown.child_token();
                        let _money_guard = money.clone().drop_guard();
                        if let (Some(p), Some(a)) = (&payments, &account) {
                            crate::payments::task::spawn(
                                p.clone(),
                                a.clone(),
                                conn.session.clone(),
                                money,
                            );
                        }
                        let drain = cfg.max_timeout + Duration::from_secs(5);
                        let end = Ending {
                            shutdown: &shutdown,
                            control: &control,
                            drain,
                        };
                        serve(&addr, conn, proto, account, &pool, &stats, end).await;
                        stats.proxy_up(&addr, false);
                        control.down();
                        info!("proxy link closed");
                    }
                    Err(e) => {
                        warn!(error = %e, "proxy handshake failed");
                        conn.session.close();
                    }
                },
                Err(e) => net::log_dial_failure(&e),
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = control.retired() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        if control.is_retired() {
            stats.proxy_gone(&addr);
            info!("proxy link retired");
        }
    }
    .instrument(span)
    .await
}

/// What ends a served link: shutdown, or retirement (then the link drains for at most `drain`:
/// every request on it has its own deadline, at most `max_timeout`).
struct Ending<'a> {
    shutdown: &'a CancellationToken,
    control: &'a LinkControl,
    drain: Duration,
}

/// How often a retired link looks whether its last request is done.
const DRAIN_CHECK: Duration = Duration::from_millis(100);
/// How long a retired link stays open once idle (the proxy's payment notice follows an answer).
const DRAIN_LINGER: Duration = Duration::from_millis(500);

const HANDSHAKE_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// One query on a proxy session, its answer decoded (handshake and payment queries).
pub(crate) async fn query<Q: cocoon_tl::TlWrite, A: cocoon_tl::TlRead>(
    session: &Session,
    q: &Q,
    timeout: Duration,
) -> Result<A, String> {
    let answer = session
        .query(encode(q), timeout)
        .await
        .map_err(|e| format!("query failed: {e}"))?;
    cocoon_tl::from_bytes(&answer).map_err(|e| format!("bad answer: {e}"))
}

/// `client.connectToProxy` then short auth (or, with payments on, the chain-backed
/// authorization of `payments::auth`); returns the negotiated protocol version and, with
/// payments on, the proxy's account.
async fn handshake(
    cfg: &ClientConfig,
    addr: &str,
    conn: &AttestedSession,
    payments: Option<&crate::payments::Payments>,
) -> Result<
    (
        version::Negotiated,
        Option<Arc<crate::payments::account::ProxyAccount>>,
    ),
    String,
> {
    cocoon_node::net::check_image(&cfg.allowed_proxy_images, &conn.peer)?;
    // Strict by default: with the chain on, a proxy must run an image the root registers
    // (read on every connect, so a registry change applies without a restart).
    if let Some(p) = payments {
        p.registry.current().check_image(
            cocoon_onchain::registry::ImageKind::Proxy,
            conn.peer.image_hash.as_ref(),
        )?;
    }
    let connected: ClientConnectedToProxy = query(
        &conn.session,
        &ClientConnectToProxy {
            params: ClientParams {
                flags: version::EXTENSIONS_FLAG,
                client_owner_address: payments
                    .map_or_else(|| cfg.owner_address.clone(), |p| p.owner().to_bounceable()),
                is_test: Some(cfg.attestation.is_test()),
                min_proto_version: Some(PROTO_MIN),
                max_proto_version: Some(PROTO_MAX),
            },
            min_config_version: 0,
        },
        HANDSHAKE_QUERY_TIMEOUT,
    )
    .await?;
    let remote = connected.params.proto_version.unwrap_or(0);
    let proto = version::negotiate(PROTO_MIN, PROTO_MAX, remote, remote).ok_or_else(|| {
        format!("proxy chose protocol {remote}; we speak {PROTO_MIN}..={PROTO_MAX}")
    })?;
    let proto = version::Negotiated::new(proto, version::EXTENSIONS_FLAG, connected.params.flags);
    if let Some(p) = payments {
        let account = crate::payments::auth::authorize(p, addr, &conn.session, &connected).await?;
        return Ok((proto, Some(account)));
    }
    match connected.auth {
        ClientProxyConnectionAuth::Short(_) => {
            let result: ClientAuthorizationWithProxy = query(
                &conn.session,
                &ClientAuthorizeWithProxyShort { data: Bytes::from(cfg.secret.clone().into_bytes()) },
                HANDSHAKE_QUERY_TIMEOUT,
            )
            .await?;
            match result {
                ClientAuthorizationWithProxy::Success(_) => Ok((proto, None)),
                ClientAuthorizationWithProxy::Failed(f) => Err(format!("proxy refused our secret: {} ({})", f.error, f.error_code)),
            }
        }
        ClientProxyConnectionAuth::Long(_) => Err(
            "proxy does not know this client (long, on-chain authorization is needed and not available yet); \
             add the client to the proxy's [[clients]]"
                .into(),
        ),
    }
}

async fn serve(
    addr: &str,
    conn: AttestedSession,
    proto: version::Negotiated,
    account: Option<Arc<crate::payments::account::ProxyAccount>>,
    pool: &Pool,
    stats: &crate::stats::ClientStats,
    end: Ending<'_>,
) {
    let AttestedSession {
        session,
        mut inbound,
        peer,
        ..
    } = conn;
    let (cancel_tx, mut cancel_rx) = mpsc::unbounded_channel();
    let link = Arc::new(Link {
        addr: addr.to_string(),
        session: session.clone(),
        proto,
        pending: Mutex::new(HashMap::new()),
        max_queued: MAX_QUEUED_RESPONSE_BYTES,
        cancels: cancel_tx,
        served_by: stats.served_by.clone(),
        account,
        proxy_key: peer.public_key,
        proxy_certificate: peer.certificate.clone(),
    });
    pool.add(link.clone());
    let mut draining_until: Option<tokio::time::Instant> = None;
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        if draining_until.is_some() {
            // Idle for a moment: the proxy's payment notice for the last request came too.
            let now = tokio::time::Instant::now();
            idle_since = link.idle().then(|| idle_since.unwrap_or(now));
            if idle_since.is_some_and(|t| now.duration_since(t) >= DRAIN_LINGER) {
                info!("retired proxy link drained");
                break;
            }
        }
        tokio::select! {
            _ = end.shutdown.cancelled() => break,
            _ = end.control.retired(), if draining_until.is_none() => {
                // No new request from now on; those in flight finish here.
                pool.remove(&link);
                draining_until = Some(tokio::time::Instant::now() + end.drain);
                info!("proxy retired: no new requests on this link; finishing those in flight");
            }
            _ = tokio::time::sleep(DRAIN_CHECK), if draining_until.is_some() => {
                if draining_until.is_some_and(|t| tokio::time::Instant::now() >= t) {
                    warn!("retired proxy link still busy after its drain time; closing");
                    break;
                }
            }
            Some(id) = cancel_rx.recv() => {
                let msg = encode(&ClientCancelQueryV3 { request_id: id });
                let _ = session.send(msg).await;
            }
            m = inbound.recv() => match m {
                None => break,
                Some(InboundMessage::Packet(data)) => {
                    if let Err(e) = dispatch(&link, &data) {
                        warn!(error = %e, "undecodable message from proxy; closing link");
                        break;
                    }
                }
                Some(InboundMessage::Query(q)) => q.error(errors::PROTOVIOLATION, "client: unexpected query".into()).await,
            }
        }
    }
    pool.remove(&link);
    session.close();
    link.fail_all("proxy connection lost");
}

/// Routes one proxy message to its request. Both error shapes are understood (Cocoon's client
/// drops the legacy `client.queryAnswerError`, leaving the app hanging).
fn dispatch(link: &Link, data: &Bytes) -> Result<(), cocoon_tl::TlError> {
    let msg: ProxyToClientMessage = cocoon_tl::from_bytes(data)?;
    match msg {
        ProxyToClientMessage::QueryAnswerEx(m) => {
            let done = m.final_info.map(|f| f.tokens_used);
            let last = done.is_some();
            link.deliver(
                &m.request_id,
                ProxyEvent::Head {
                    answer: m.answer,
                    done,
                },
                last,
            );
        }
        ProxyToClientMessage::QueryAnswerPartEx(m) => {
            let done = m.final_info.map(|f| f.tokens_used);
            let last = done.is_some();
            link.deliver(
                &m.request_id,
                ProxyEvent::Part {
                    data: m.answer,
                    done,
                },
                last,
            );
        }
        ProxyToClientMessage::QueryAnswerErrorEx(m) => {
            link.deliver(
                &m.request_id,
                ProxyEvent::Error {
                    code: m.error_code,
                    message: m.error,
                },
                true,
            );
        }
        ProxyToClientMessage::QueryAnswer(m) => {
            let done = m.is_completed.then_some(m.request_tokens_used);
            let last = done.is_some();
            link.deliver(
                &m.request_id,
                ProxyEvent::Head {
                    answer: m.answer,
                    done,
                },
                last,
            );
        }
        ProxyToClientMessage::QueryAnswerPart(m) => {
            let done = m.is_completed.then_some(m.request_tokens_used);
            let last = done.is_some();
            link.deliver(
                &m.request_id,
                ProxyEvent::Part {
                    data: m.answer,
                    done,
                },
                last,
            );
        }
        ProxyToClientMessage::QueryAnswerError(m) => {
            link.deliver(
                &m.request_id,
                ProxyEvent::Error {
                    code: m.error_code,
                    message: m.error,
                },
                true,
            );
        }
        ProxyToClientMessage::QueryAnswerPartError(m) => {
            link.deliver(
                &m.request_id,
                ProxyEvent::Error {
                    code: m.error_code,
                    message: m.error,
                },
                true,
            );
        }
        ProxyToClientMessage::QueryWorkerInfoV3(m) => {
            // Only for a request of ours still waiting for its final answer.
            // (For a sealed request the client records the worker its receipt names instead.)
            let ours = link
                .pending
                .lock()
                .is_ok_and(|p| p.get(&m.request_id).is_some_and(|r| !r.sealed));
            if ours {
                link.served_by
                    .record(&m, cocoon_node::time::unix_now_f64() as i64);
            }
        }
        ProxyToClientMessage::QueryReceiptV3(m) => {
            // Not last: the final answer follows. One receipt per request is all a request
            // reads; more are bounded by the request's queue cap like any event.
            link.deliver(&m.request_id, ProxyEvent::Receipt(m.receipt), false);
        }
        ProxyToClientMessage::ClientRequestPayment(p) => {
            debug!(request = %hex::encode(&p.request_id[..8]), tokens = p.request_tokens, "payment notice");
            if let Some(a) = &link.account {
                a.notice_charge(&p.request_id, p.request_tokens);
                if let Err(e) = a.observe(&p.signed_payment, Some(p.db_tokens), Some(p.max_tokens))
                {
                    warn!(error = %e, "proxy sent a bad signed charge; ignored");
                }
            }
        }
    }
    Ok(())
}

/// Asks the proxy behind `link` for up to `limit` workers serving `model` that a request can be
/// sealed to (`client.getSealingCandidatesV3`; only on links that agreed our extensions).
pub(crate) async fn sealing_candidates(
    link: &Link,
    model: &str,
    limit: usize,
    timeout: Duration,
) -> Result<ClientSealingCandidatesV3, String> {
    if !link.proto.extensions {
        return Err("the proxy does not speak cocoon-rs extensions".into());
    }
    query::<_, ClientSealingCandidatesV3>(
        &link.session,
        &ClientGetSealingCandidatesV3 {
            model: model.to_string(),
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
        },
        timeout,
    )
    .await
}

/// Asks the proxy behind `link` for the inclusion proof of a receipt it countersigned
/// (`client.getReceiptProofV3`; only on links that agreed our extensions).
pub(crate) async fn receipt_proof(
    link: &Link,
    receipt_id: [u8; 32],
    timeout: Duration,
) -> Result<ClientReceiptProofV3, String> {
    if !link.proto.extensions {
        return Err("the proxy does not speak cocoon-rs extensions".into());
    }
    query::<_, ClientReceiptProofV3>(
        &link.session,
        &ClientGetReceiptProofV3 { receipt_id },
        timeout,
    )
    .await
}

/// Asks every ready proxy for its workers (Cocoon's `client.getWorkerTypesV2`).
pub(crate) async fn worker_types(pool: &Pool, timeout: Duration) -> Vec<ClientWorkerTypesV2> {
    let links = pool.ready_links();
    let futs = links
        .iter()
        .map(|l| query::<_, ClientWorkerTypesV2>(&l.session, &ClientGetWorkerTypesV2 {}, timeout));
    futures::future::join_all(futs)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cocoon_proto::messages::{ClientQueryAnswerError, ClientQueryAnswerErrorEx};
    use cocoon_proto::session::{establish, Inbound, SessionConfig};

    /// Agreed with a cocoon-rs proxy: upstream's latest version and our extensions.
    pub(crate) const WITH_EXTENSIONS: version::Negotiated = version::Negotiated {
        version: version::PROTO_MAX,
        extensions: true,
    };
    /// Agreed with an upstream proxy: no extensions.
    pub(crate) const UPSTREAM: version::Negotiated = version::Negotiated {
        version: version::PROTO_MAX,
        extensions: false,
    };

    async fn link(proto: version::Negotiated) -> (Link, mpsc::UnboundedReceiver<[u8; 32]>) {
        let t = test_link(proto, MAX_QUEUED_RESPONSE_BYTES).await;
        (t.link, t.cancels)
    }

    /// A link over an in-memory session, and what surrounds it.
    pub(crate) struct TestLink {
        pub link: Link,
        /// The cancels the link asks for.
        pub cancels: mpsc::UnboundedReceiver<[u8; 32]>,
        /// The proxy's end of the session: what the client sends arrives here.
        pub proxy_inbound: Inbound,
        pub proxy: Session,
        _inbound: Inbound,
    }

    /// A link over an in-memory session, with its queue cap.
    pub(crate) async fn test_link(proto: version::Negotiated, max_queued: usize) -> TestLink {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (s, p) = tokio::join!(
            establish(a, SessionConfig::dialer()),
            establish(b, SessionConfig::acceptor())
        );
        let (session, inbound) = s.expect("session");
        let (proxy, proxy_inbound) = p.expect("proxy session");
        let (tx, rx) = mpsc::unbounded_channel();
        let link = Link {
            addr: "test".into(),
            session,
            proto,
            pending: Mutex::new(HashMap::new()),
            max_queued,
            cancels: tx,
            served_by: Arc::default(),
            account: None,
            proxy_key: [0; 32],
            proxy_certificate: None,
        };
        TestLink {
            link,
            cancels: rx,
            proxy_inbound,
            proxy,
            _inbound: inbound,
        }
    }

    /// Delivers an event as `dispatch` would (for tests of the HTTP side).
    pub(crate) fn deliver(link: &Link, id: [u8; 32], ev: ProxyEvent, last: bool) {
        link.deliver(&id, ev, last);
    }

    /// Puts a link in the pool (for tests of the HTTP side).
    pub(crate) fn add_to_pool(pool: &Pool, link: Arc<Link>) {
        pool.add(link);
    }

    fn part(n: usize) -> ProxyEvent {
        ProxyEvent::Part {
            data: Bytes::from(vec![b'x'; n]),
            done: None,
        }
    }

    #[tokio::test]
    async fn unread_bytes_are_capped_and_overflow_fails_and_cancels() {
        let cap = 1000;
        let t = test_link(WITH_EXTENSIONS, cap).await;
        let (link, mut cancels) = (t.link, t.cancels);
        let id = [8; 32];
        let mut rx = link.register(id);
        // Two parts fit (400 + 64 overhead each); the third would pass the cap.
        for _ in 0..3 {
            link.deliver(&id, part(400), false);
        }
        for _ in 0..2 {
            assert!(
                matches!(rx.recv().await, Some(ProxyEvent::Part { data, .. }) if data.len() == 400)
            );
        }
        match rx.recv().await {
            Some(ProxyEvent::Error { code, message }) => {
                assert_eq!(code, errors::BAD_GATEWAY);
                assert!(message.contains("1000 bytes"), "{message}");
            }
            other => panic!("expected the overflow error, got {other:?}"),
        }
        assert!(rx.recv().await.is_none(), "nothing after the error");
        assert_eq!(cancels.recv().await, Some(id), "the proxy is told to stop");
        assert!(link.pending.lock().expect("lock").is_empty());
        // Later events for it are dropped, and the app's release sends no second cancel.
        link.deliver(&id, part(1), false);
        link.release(id, false);
        assert!(cancels.try_recv().is_err());
        // A flood of empty parts is bounded too.
        let mut rx = link.register([9; 32]);
        for _ in 0..100 {
            link.deliver(&[9; 32], part(0), false);
        }
        let mut n = 0;
        while let Some(ProxyEvent::Part { .. }) = rx.recv().await {
            n += 1;
        }
        assert_eq!(n, cap / EVENT_OVERHEAD);
    }

    #[tokio::test]
    async fn the_cap_counts_only_bytes_not_yet_read() {
        let t = test_link(WITH_EXTENSIONS, 1000).await;
        let (link, mut cancels) = (t.link, t.cancels);
        let id = [10; 32];
        let mut rx = link.register(id);
        // 20 × 400 bytes pass through a 1000-byte cap when the reader keeps up.
        for i in 0..20 {
            link.deliver(&id, part(400), false);
            assert!(
                matches!(rx.recv().await, Some(ProxyEvent::Part { .. })),
                "part {i}"
            );
        }
        let last = ProxyEvent::Part {
            data: Bytes::from_static(b"end"),
            done: Some(TokensUsed::default()),
        };
        link.deliver(&id, last, true);
        assert!(matches!(
            rx.recv().await,
            Some(ProxyEvent::Part { done: Some(_), .. })
        ));
        assert!(cancels.try_recv().is_err(), "nothing was cancelled");
    }

    #[tokio::test]
    async fn both_error_shapes_end_the_request() {
        // Cocoon's client drops the legacy shape and leaves the app hanging; we must not.
        let (link, _) = link(UPSTREAM).await;
        let mut legacy = link.register([1; 32]);
        let mut ex = link.register([2; 32]);
        let m = ClientQueryAnswerError {
            error_code: 621,
            error: "unknown model nope".into(),
            request_id: [1; 32],
            request_tokens_used: TokensUsed::default(),
        };
        dispatch(&link, &encode(&ProxyToClientMessage::QueryAnswerError(m))).expect("dispatch");
        let m = ClientQueryAnswerErrorEx {
            request_id: [2; 32],
            error_code: 652,
            error: "timeout".into(),
            flags: 0,
            final_info: None,
        };
        dispatch(&link, &encode(&ProxyToClientMessage::QueryAnswerErrorEx(m))).expect("dispatch");
        assert!(matches!(
            legacy.recv().await,
            Some(ProxyEvent::Error { code: 621, .. })
        ));
        assert!(matches!(
            ex.recv().await,
            Some(ProxyEvent::Error { code: 652, .. })
        ));
        assert!(
            link.pending.lock().expect("lock").is_empty(),
            "finished requests must be forgotten"
        );
    }

    #[tokio::test]
    async fn unfinished_requests_are_cancelled_on_release_and_failed_on_link_loss() {
        let (link, mut cancels) = link(WITH_EXTENSIONS).await;
        let _rx = link.register([3; 32]);
        link.release([3; 32], false);
        assert_eq!(cancels.recv().await, Some([3; 32]));
        let mut rx = link.register([4; 32]);
        link.fail_all("gone");
        assert!(matches!(rx.recv().await, Some(ProxyEvent::Error { .. })));
        // Without the extensions there is no cancel message: nothing is sent.
        let (old, mut none) = super::tests::link(UPSTREAM).await;
        let _rx = old.register([5; 32]);
        old.release([5; 32], false);
        assert!(none.try_recv().is_err());
    }

    #[tokio::test]
    async fn undecodable_messages_are_an_error_not_a_panic() {
        let (link, _) = link(WITH_EXTENSIONS).await;
        assert!(dispatch(&link, &Bytes::from_static(&[1, 2, 3, 4, 5])).is_err());
    }

    #[tokio::test]
    async fn worker_info_is_recorded_for_pending_requests_only() {
        use cocoon_proto::messages::ClientQueryWorkerInfoV3;
        let (link, _) = link(WITH_EXTENSIONS).await;
        let _rx = link.register([6; 32]);
        let info = |id| {
            ClientQueryWorkerInfoV3::new(id, "tdx".into(), [1; 32], Some([2; 32]), Some([3; 32]))
        };
        dispatch(
            &link,
            &encode(&ProxyToClientMessage::QueryWorkerInfoV3(info([6; 32]))),
        )
        .expect("dispatch");
        // Not ours: ignored (a proxy cannot fill our stats with made-up requests).
        dispatch(
            &link,
            &encode(&ProxyToClientMessage::QueryWorkerInfoV3(info([7; 32]))),
        )
        .expect("dispatch");
        let j = link.served_by.json();
        let recent = j["recent"].as_array().expect("recent");
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0]["request"], "06".repeat(8));
        assert_eq!(recent[0]["image_hash"], "02".repeat(32));
        // The info is not the end of the request: it stays pending for its final answer.
        assert!(link.pending.lock().expect("lock").contains_key(&[6; 32]));
    }
}
