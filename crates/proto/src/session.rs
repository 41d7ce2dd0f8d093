//! The `tcp.*` RPC session over one framed byte stream (in production a TLS stream): handshake,
//! packets, queries with answers, ping/pong, idle timeout. Message types above `tcp.*` are the
//! caller's business; here every payload is opaque `Bytes`.
//!
//! # Flow
//! 1. [`establish`]: the dialer sends `tcp.connect{id random}` and waits for `tcp.connected{id}`;
//!    the acceptor waits for `tcp.connect` and answers `tcp.connected` with the same id. Bounded
//!    by `handshake_timeout`.
//! 2. Afterwards every frame is a boxed `tcp.Packet`. [`Session::send`] writes `tcp.packet`,
//!    [`Session::query`] writes `tcp.query` with a random 64-bit id and waits for
//!    `tcp.queryAnswer` / `tcp.queryError`. Incoming packets and queries come out of
//!    [`Inbound::recv`]; an [`IncomingQuery`] is answered (or failed) exactly once, and one that
//!    is dropped unanswered is failed with code [`CODE_CANCELLED`].
//! 3. `tcp.ping` is answered automatically. The dialer pings after `ping_interval` without
//!    inbound frames; `idle_timeout` without inbound frames closes the session (Cocoon: dialer
//!    10 s / 20 s, acceptor never pings / 60 s). `tcp.connect`/`tcp.connected` after the
//!    handshake are ignored, as Cocoon does.
//!
//! # Task model
//! [`establish`] spawns one task that owns the stream: a reader and a writer run concurrently in
//! it (the stream is `tokio::io::split`), so a peer that stops reading cannot stall our reads.
//!
//! # Bounds (what one peer can make us hold or wait for)
//! - **Outbound**: all writes go through one queue, in order, bounded both in messages
//!   (`send_queue`) and in payload bytes (`max_outbound_bytes`; a payload larger than that
//!   waits until the queue is empty). [`Session::send`], [`Session::query`] and
//!   [`IncomingQuery::answer`] wait for room **at most `write_timeout`**; when that runs out the
//!   peer has not taken our bytes for that long, so the session is closed
//!   ([`CloseReason::WriteTimeout`]) and `send` returns [`SessionError::WriteTimeout`]: a
//!   caller never waits forever on a stalled peer. [`Session::try_send`] never waits: a full
//!   queue is [`SessionError::Full`] and the session stays open. The writer itself closes the
//!   session when the stream accepts no byte for `write_timeout` (a peer that stops reading).
//!   Held at most: `max_outbound_bytes` queued + one write batch (64 KiB) + one frame.
//! - **Inbound**: received messages wait for [`Inbound::recv`] in a queue bounded in messages
//!   (`send_queue`) and in payload bytes (`max_inbound_bytes`). When either is full the reader
//!   stops reading the stream (backpressure on the peer's TCP window) instead of buffering;
//!   held at most: `max_inbound_bytes` queued + the one frame being decoded (`max_frame_len`).
//! - **Control replies** (`tcp.pong`, the dialer's `tcp.ping`, `tcp.queryError` for a query
//!   nobody takes) are queued with a non-waiting try: on a full queue they are dropped, so the
//!   reader never parks on the outbound queue and the idle timer keeps running.
//!
//! The task ends, and the stream is dropped, when: [`Session::close`] is called; the peer closes
//! or the stream fails; a protocol violation happens (bad seqno or length, undecodable
//! `tcp.Packet`; logged with sizes and ids only); the idle timeout or the write deadline fires;
//! or the last [`Session`] clone **and** the [`Inbound`] are both dropped. At that moment every
//! pending query fails with [`QueryError::Closed`] and [`Session::closed`] resolves. On a local
//! close (or all handles dropped) payloads already queued are still flushed, for at most
//! [`CLOSE_FLUSH_TIMEOUT`]. Setting `TCP_NODELAY` is the caller's job.
//!
//! [`Session::id`] is a process-local unique number for logs and maps (never chosen by the
//! peer); [`Session::handshake_id`] is the `tcp.connect` id both ends share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cocoon_tl::{from_bytes, tl_bytes_len, to_bytes, TlError};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::frame::{Frame, FrameCodec, FrameError, DEFAULT_MAX_FRAME_LEN};
use crate::messages::{
    TcpConnect, TcpConnected, TcpPacket, TcpPacketData, TcpPing, TcpPong, TcpQuery, TcpQueryAnswer,
    TcpQueryError,
};

/// How long a local close may spend flushing already queued payloads.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// TON's `ErrorCode::cancelled`: sent for an incoming query dropped without an answer.
pub const CODE_CANCELLED: i32 = 653;

/// TON's `ErrorCode::notready`: sent when nobody receives incoming queries any more.
pub const CODE_NOT_READY: i32 = 651;

/// TON's `ErrorCode::protoviolation`.
pub const CODE_PROTOVIOLATION: i32 = 621;

/// Bytes `tcp.query` / `tcp.queryAnswer` add around a payload besides its TL length prefix.
const QUERY_OVERHEAD: usize = 12;

/// The writer batches queued payloads into one write up to this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// Source of [`Session::id`].
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Opened the connection: sends `tcp.connect`, pings when idle.
    Dialer,
    /// Accepted the connection: answers `tcp.connect`, never pings.
    Acceptor,
}

/// Default bound on payload bytes queued in each direction of one session (4 MiB), besides the
/// one frame being decoded or written (`max_frame_len`).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 << 20;

/// Default [`SessionConfig::write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// Session parameters. Start from [`SessionConfig::dialer`] or [`SessionConfig::acceptor`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub side: Side,
    /// Largest frame payload read or written. Default: 16 MiB (Cocoon's limit).
    pub max_frame_len: usize,
    /// Dialer only: ping after this long without inbound frames. Default: 10 s.
    pub ping_interval: Duration,
    /// Close after this long without inbound frames. Default: dialer 20 s, acceptor 60 s.
    pub idle_timeout: Duration,
    /// Bound on the `tcp.connect` exchange. Default: 10 s.
    pub handshake_timeout: Duration,
    /// Capacity (in messages) of the outbound queue and of the inbound queue. Default: 256.
    pub send_queue: usize,
    /// Payload bytes the outbound queue holds at most; senders wait (at most `write_timeout`)
    /// for room. A payload larger than this waits for an empty queue. Default: 4 MiB.
    pub max_outbound_bytes: usize,
    /// Payload bytes of received messages not yet taken by [`Inbound::recv`]; at the bound the
    /// reader stops reading the stream until the owner takes messages. Default: 4 MiB.
    pub max_inbound_bytes: usize,
    /// A peer that takes none of our bytes for this long is closed
    /// ([`CloseReason::WriteTimeout`]); it also bounds how long a sender waits for room in the
    /// outbound queue. Default: 20 s.
    pub write_timeout: Duration,
}

/// Why [`establish`] or [`Session::send`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The `tcp.connect` exchange took longer than `handshake_timeout`.
    #[error("session handshake timed out")]
    HandshakeTimeout,
    /// The stream ended before the handshake finished.
    #[error("peer closed the connection during the session handshake")]
    HandshakeEof,
    /// `tcp.connected` carried another id than our `tcp.connect`.
    #[error("tcp.connected answered another connection id")]
    HandshakeIdMismatch,
    /// Framing failed (includes I/O errors).
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    /// The handshake packet did not decode as expected.
    #[error("handshake packet: {0}")]
    Tl(#[from] TlError),
    /// The payload cannot fit in one frame.
    #[error("message of {len} bytes does not fit in a frame of at most {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The session is closed.
    #[error("session closed")]
    Closed,
    /// [`Session::try_send`]: the outbound queue is full right now (the session stays open).
    #[error("outbound queue full")]
    Full,
    /// The outbound queue had no room for `write_timeout`: the peer is not reading, and the
    /// session was closed.
    #[error("peer took no data for the write timeout; session closed")]
    WriteTimeout,
}

/// Why a [`Session::query`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The peer answered `tcp.queryError`.
    #[error("remote error {code}: {message}")]
    Remote { code: i32, message: String },
    /// No answer within the caller's timeout.
    #[error("query timed out")]
    Timeout,
    /// The session closed before the answer arrived.
    #[error("session closed")]
    Closed,
    /// The query cannot fit in one frame.
    #[error("query of {len} bytes does not fit in a frame")]
    TooLarge { len: usize },
}

/// Why a session ended (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`Session::close`] was called.
    Local,
    /// Every [`Session`] and the [`Inbound`] were dropped.
    Dropped,
    /// The peer closed the stream.
    PeerClosed,
    /// Nothing arrived for `idle_timeout`.
    IdleTimeout,
    /// The peer took none of our bytes for `write_timeout` (the stream accepted nothing, or a
    /// sender found no room in the outbound queue for that long).
    WriteTimeout,
    /// The peer broke the protocol (the text holds sizes/ids, never payloads).
    Protocol(String),
    /// The stream failed.
    Io(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::Dropped => f.write_str("all handles dropped"),
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::WriteTimeout => f.write_str("write timeout (peer not reading)"),
            CloseReason::Protocol(e) => write!(f, "protocol violation: {e}"),
            CloseReason::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

/// A cheap, cloneable handle to an established session.
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle>,
}

/// Receives the peer's packets and queries; `None` once the session is closed and drained.
pub struct Inbound {
    rx: mpsc::Receiver<Queued<InboundMessage>>,
}

/// Resolves when a session closes, without keeping it alive (unlike a [`Session`] clone, it
/// does not count as a handle). From [`Session::close_watch`].
#[derive(Clone)]
pub struct ClosedWatch(CancellationToken);

/// A queued item and the share of its queue's byte budget it holds; the budget comes back when
/// the item leaves the queue (taken by the writer or by [`Inbound::recv`], or dropped).
struct Queued<T> {
    item: T,
    _budget: Option<OwnedSemaphorePermit>,
}

/// The sending end of the outbound queue, shared by the handles, incoming queries and the
/// session task.
#[derive(Clone)]
struct Outbox {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Queued<Bytes>>,
    budget: Arc<Semaphore>,
    /// The budget's size in permits (bytes).
    cap: u32,
    timeout: Duration,
}

/// One message from the peer.
#[derive(Debug)]
pub enum InboundMessage {
    /// A `tcp.packet` payload.
    Packet(Bytes),
    /// A `tcp.query` to answer.
    Query(IncomingQuery),
}

/// A query from the peer. Answer it with [`answer`](Self::answer) or fail it with
/// [`error`](Self::error); dropping it unanswered sends `tcp.queryError` with
/// [`CODE_CANCELLED`].
pub struct IncomingQuery {
    /// The query payload (a boxed TL value).
    pub data: Bytes,
    id: i64,
    out: Outbox,
    max_len: usize,
    answered: bool,
}

/// State shared by the handles, incoming queries and the session task.
struct Shared {
    id: u64,
    handshake_id: i64,
    state: Mutex<State>,
    /// Cancelled once the session is closed (by anyone, for any reason).
    closed: CancellationToken,
    /// Cancelled when the last `Session` clone is dropped.
    handles_gone: CancellationToken,
}

struct State {
    pending: HashMap<i64, oneshot::Sender<Result<Bytes, QueryError>>>,
    closed: bool,
    reason: Option<CloseReason>,
}

/// What all `Session` clones share; dropping it tells the task no handle is left.
struct Handle {
    shared: Arc<Shared>,
    out: Outbox,
    max_len: usize,
}

/// Removes a pending query when its `query` future ends or is dropped.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: i64,
}

// === impl SessionConfig ===

impl SessionConfig {
    /// Cocoon's dialing side: ping after 10 s of silence, give up after 20 s.
    pub fn dialer() -> Self {
        Self {
            side: Side::Dialer,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(10),
            send_queue: 256,
            max_outbound_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_inbound_bytes: DEFAULT_MAX_QUEUED_BYTES,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }

    /// Cocoon's accepting side: never pings, gives up after 60 s of silence.
    pub fn acceptor() -> Self {
        Self {
            side: Side::Acceptor,
            idle_timeout: Duration::from_secs(60),
            ..Self::dialer()
        }
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the session closed (first reason wins) and fails every pending query at once.
    fn close(&self, reason: CloseReason) {
        let pending = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            st.reason = Some(reason);
            std::mem::take(&mut st.pending)
        };
        for (_, tx) in pending {
            let _ = tx.send(Err(QueryError::Closed));
        }
        self.closed.cancel();
    }

    fn complete(&self, id: i64, result: Result<Bytes, QueryError>) {
        let tx = self.lock().pending.remove(&id);
        match tx {
            Some(tx) => {
                let _ = tx.send(result);
            }
            // Late answers after a timeout are normal; nothing else to do.
            None => debug!(conn = self.id, query = id, "answer to unknown query"),
        }
    }
}

// === impl Outbox ===

/// A byte budget of `bytes` as semaphore permits (at least 1, at most what one acquire takes).
fn budget_permits(bytes: usize) -> u32 {
    let max = Semaphore::MAX_PERMITS.min(u32::MAX as usize);
    u32::try_from(bytes.clamp(1, max)).unwrap_or(u32::MAX)
}

/// What a payload of `len` bytes takes from a budget of `cap`: all of it when larger.
fn budget_cost(len: usize, cap: u32) -> u32 {
    u32::try_from(len).map_or(cap, |l| l.clamp(1, cap))
}

impl Outbox {
    /// Queues `payload`, waiting at most `timeout` for room; on expiry closes the session
    /// ([`CloseReason::WriteTimeout`]).
    async fn push(&self, payload: Bytes) -> Result<(), SessionError> {
        if self.shared.closed.is_cancelled() {
            return Err(SessionError::Closed);
        }
        let cost = budget_cost(payload.len(), self.cap);
        let enqueue = async {
            let permit = self
                .budget
                .clone()
                .acquire_many_owned(cost)
                .await
                .map_err(|_| SessionError::Closed)?;
            let queued = Queued {
                item: payload,
                _budget: Some(permit),
            };
            self.tx.send(queued).await.map_err(|_| SessionError::Closed)
        };
        tokio::select! {
            r = tokio::time::timeout(self.timeout, enqueue) => match r {
                Ok(r) => r,
                Err(_) => {
                    debug!(conn = self.shared.id, "no room in the outbound queue for the write timeout");
                    self.shared.close(CloseReason::WriteTimeout);
                    Err(SessionError::WriteTimeout)
                }
            },
            _ = self.shared.closed.cancelled() => Err(SessionError::Closed),
        }
    }

    /// Queues `payload` if the queue has room now.
    fn try_push(&self, payload: Bytes) -> Result<(), SessionError> {
        if self.shared.closed.is_cancelled() {
            return Err(SessionError::Closed);
        }
        let cost = budget_cost(payload.len(), self.cap);
        let permit = match self.budget.clone().try_acquire_many_owned(cost) {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => return Err(SessionError::Full),
            Err(TryAcquireError::Closed) => return Err(SessionError::Closed),
        };
        let queued = Queued {
            item: payload,
            _budget: Some(permit),
        };
        self.tx.try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SessionError::Full,
            mpsc::error::TrySendError::Closed(_) => SessionError::Closed,
        })
    }

    /// Queues a small control reply (pong, ping, query error) without waiting and outside the
    /// byte budget (it still takes a message slot); dropped when the queue is full.
    fn push_control(&self, payload: Bytes) {
        let queued = Queued {
            item: payload,
            _budget: None,
        };
        if self.tx.try_send(queued).is_err() {
            debug!(
                conn = self.shared.id,
                "outbound queue full: control reply dropped"
            );
        }
    }
}

// === impl Session ===

impl Session {
    /// Sends `data` as `tcp.query` and waits up to `timeout` for the answer.
    pub async fn query(&self, data: Bytes, timeout: Duration) -> Result<Bytes, QueryError> {
        let h = &self.handle;
        let len = data.len();
        if tl_bytes_len(len) + QUERY_OVERHEAD > h.max_len {
            return Err(QueryError::TooLarge { len });
        }
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = h.shared.lock();
            if st.closed {
                return Err(QueryError::Closed);
            }
            let mut id = rand::random::<i64>();
            while st.pending.contains_key(&id) {
                id = rand::random::<i64>();
            }
            st.pending.insert(id, tx);
            id
        };
        let _guard = PendingGuard {
            shared: &h.shared,
            id,
        };
        let payload = Bytes::from(to_bytes(&TcpQuery { id, data }));
        let exchange = async {
            // A stalled peer closes the session here (see the module docs): Closed.
            h.out.push(payload).await.map_err(|_| QueryError::Closed)?;
            rx.await.unwrap_or(Err(QueryError::Closed))
        };
        let closable = async {
            // Biased: an answer that arrived before the session closed is still returned
            // (a peer may answer with an error and close right after).
            tokio::select! {
                biased;
                r = exchange => r,
                _ = h.shared.closed.cancelled() => Err(QueryError::Closed),
            }
        };
        tokio::time::timeout(timeout, closable)
            .await
            .unwrap_or(Err(QueryError::Timeout))
    }

    /// Sends `data` as `tcp.packet`. Waits while the outbound queue is full, but at most
    /// `write_timeout`: then the peer is not reading, the session is closed
    /// ([`CloseReason::WriteTimeout`]) and this returns [`SessionError::WriteTimeout`].
    pub async fn send(&self, data: Bytes) -> Result<(), SessionError> {
        let payload = self.packet(data)?;
        self.handle.out.push(payload).await
    }

    /// Sends `data` as `tcp.packet` if the outbound queue has room now; never waits. A full
    /// queue is [`SessionError::Full`] and leaves the session open (the caller decides: drop,
    /// retry later, or close).
    pub fn try_send(&self, data: Bytes) -> Result<(), SessionError> {
        let payload = self.packet(data)?;
        self.handle.out.try_push(payload)
    }

    /// `data` as an encoded `tcp.packet`, checked against the frame size.
    fn packet(&self, data: Bytes) -> Result<Bytes, SessionError> {
        let h = &self.handle;
        let len = data.len();
        if tl_bytes_len(len) + 4 > h.max_len {
            return Err(SessionError::TooLarge {
                len,
                max: h.max_len,
            });
        }
        if self.is_closed() {
            return Err(SessionError::Closed);
        }
        Ok(Bytes::from(to_bytes(&TcpPacketData { data })))
    }

    /// A watch that resolves when this session closes and does not keep it alive.
    pub fn close_watch(&self) -> ClosedWatch {
        ClosedWatch(self.handle.shared.closed.clone())
    }

    /// Closes the session now: pending queries fail, queued payloads get a short flush.
    pub fn close(&self) {
        self.handle.shared.close(CloseReason::Local);
    }

    /// Resolves once the session is closed.
    pub async fn closed(&self) {
        self.handle.shared.closed.cancelled().await;
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.handle.shared.closed.is_cancelled()
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.handle.shared.lock().reason.clone()
    }

    /// Process-local unique id of this session, for logs.
    pub fn id(&self) -> u64 {
        self.handle.shared.id
    }

    /// The `tcp.connect` id, the same at both ends (chosen by the dialer).
    pub fn handshake_id(&self) -> i64 {
        self.handle.shared.handshake_id
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.handles_gone.cancel();
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.id);
    }
}

// === impl Inbound ===

impl Inbound {
    /// The next packet or query; `None` when the session is closed and nothing is left.
    pub async fn recv(&mut self) -> Option<InboundMessage> {
        // The message's share of the inbound byte budget is returned here.
        self.rx.recv().await.map(|q| q.item)
    }
}

// === impl ClosedWatch ===

impl ClosedWatch {
    /// Resolves once the session is closed.
    pub async fn closed(&self) {
        self.0.cancelled().await;
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.0.is_cancelled()
    }
}

impl std::fmt::Debug for ClosedWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosedWatch")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inbound")
    }
}

// === impl IncomingQuery ===

impl IncomingQuery {
    /// The peer's query id (for logs).
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Answers with `data` (`tcp.queryAnswer`). An answer too large for a frame is replaced by
    /// a `tcp.queryError`. Does nothing if the session is closed. Waits for room in the
    /// outbound queue like [`Session::send`] (at most `write_timeout`, then the session is
    /// closed).
    pub async fn answer(mut self, data: Bytes) {
        self.answered = true;
        if tl_bytes_len(data.len()) + QUERY_OVERHEAD > self.max_len {
            warn!(
                query = self.id,
                len = data.len(),
                "answer too large for a frame"
            );
            let msg = TcpQueryError {
                id: self.id,
                code: CODE_PROTOVIOLATION,
                message: "answer too large".into(),
            };
            self.push(Bytes::from(to_bytes(&msg))).await;
            return;
        }
        let msg = TcpQueryAnswer { id: self.id, data };
        self.push(Bytes::from(to_bytes(&msg))).await;
    }

    /// Fails the query (`tcp.queryError`). Does nothing if the session is closed.
    pub async fn error(mut self, code: i32, message: String) {
        self.answered = true;
        let msg = TcpQueryError {
            id: self.id,
            code,
            message,
        };
        self.push(Bytes::from(to_bytes(&msg))).await;
    }

    async fn push(&self, payload: Bytes) {
        // Closed or stalled (then closed): the peer's own timeout ends its query.
        let _ = self.out.push(payload).await;
    }
}

impl Drop for IncomingQuery {
    fn drop(&mut self) {
        if !self.answered {
            let msg = TcpQueryError {
                id: self.id,
                code: CODE_CANCELLED,
                message: "query dropped without an answer".into(),
            };
            // Best effort: with a full queue the peer's own timeout ends the query.
            self.out.push_control(Bytes::from(to_bytes(&msg)));
        }
    }
}

impl std::fmt::Debug for IncomingQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingQuery")
            .field("id", &self.id)
            .field("len", &self.data.len())
            .finish()
    }
}

// === establish and the session task ===

/// Runs the `tcp.connect` handshake on `io` and starts the session task.
pub async fn establish<S>(io: S, cfg: SessionConfig) -> Result<(Session, Inbound), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(io);
    let mut reader = FramedRead::new(rd, FrameCodec::new(cfg.max_frame_len));
    let mut wcodec = FrameCodec::new(cfg.max_frame_len);
    let mut wbuf = BytesMut::new();

    let handshake = async {
        match cfg.side {
            Side::Dialer => {
                let id = rand::random::<i64>();
                let hello = Bytes::from(to_bytes(&TcpConnect { id }));
                write_now(&mut wr, &mut wcodec, &mut wbuf, hello).await?;
                let answer: TcpConnected = from_bytes(&read_first(&mut reader).await?)?;
                if answer.id != id {
                    return Err(SessionError::HandshakeIdMismatch);
                }
                Ok(id)
            }
            Side::Acceptor => {
                let hello: TcpConnect = from_bytes(&read_first(&mut reader).await?)?;
                let answer = Bytes::from(to_bytes(&TcpConnected { id: hello.id }));
                write_now(&mut wr, &mut wcodec, &mut wbuf, answer).await?;
                Ok(hello.id)
            }
        }
    };
    let handshake_id = tokio::time::timeout(cfg.handshake_timeout, handshake)
        .await
        .map_err(|_| SessionError::HandshakeTimeout)??;

    let queue = cfg.send_queue.max(1);
    let (out_tx, out_rx) = mpsc::channel(queue);
    let (inbound_tx, inbound_rx) = mpsc::channel(queue);
    let out_cap = budget_permits(cfg.max_outbound_bytes);
    let in_cap = budget_permits(cfg.max_inbound_bytes);
    let shared = Arc::new(Shared {
        id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
        handshake_id,
        state: Mutex::new(State {
            pending: HashMap::new(),
            closed: false,
            reason: None,
        }),
        closed: CancellationToken::new(),
        handles_gone: CancellationToken::new(),
    });
    let out = Outbox {
        shared: shared.clone(),
        tx: out_tx,
        budget: Arc::new(Semaphore::new(out_cap as usize)),
        cap: out_cap,
        timeout: cfg.write_timeout,
    };
    let task = Task {
        shared: shared.clone(),
        cfg: cfg.clone(),
        out: out.clone(),
        inbound_tx,
        inbound_budget: Arc::new(Semaphore::new(in_cap as usize)),
        inbound_cap: in_cap,
    };
    let span = tracing::debug_span!("session", conn = shared.id);
    // Owned by the handles: it ends on close, on any failure, or once every Session clone and
    // the Inbound are gone (see the module docs), so the JoinHandle is not needed.
    tokio::spawn(task.run(reader, wr, wcodec, wbuf, out_rx).instrument(span));
    debug!(conn = shared.id, side = ?cfg.side, "session established");
    let session = Session {
        handle: Arc::new(Handle {
            shared,
            out,
            max_len: cfg.max_frame_len,
        }),
    };
    Ok((session, Inbound { rx: inbound_rx }))
}

/// The first data frame (keepalives skipped) of the handshake.
async fn read_first<R: AsyncRead + Unpin>(
    reader: &mut FramedRead<R, FrameCodec>,
) -> Result<Bytes, SessionError> {
    loop {
        match reader.next().await {
            None => return Err(SessionError::HandshakeEof),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Frame::Keepalive)) => continue,
            Some(Ok(Frame::Data(b))) => return Ok(b),
        }
    }
}

/// Frames and writes one payload immediately (handshake only).
async fn write_now<W: AsyncWrite + Unpin>(
    wr: &mut W,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    payload: Bytes,
) -> Result<(), SessionError> {
    codec.encode(Frame::Data(payload), buf)?;
    wr.write_all_buf(buf).await.map_err(FrameError::from)?;
    wr.flush().await.map_err(FrameError::from)?;
    Ok(())
}

struct Task {
    shared: Arc<Shared>,
    cfg: SessionConfig,
    /// For pongs, pings and incoming-query errors; not a liveness signal.
    out: Outbox,
    inbound_tx: mpsc::Sender<Queued<InboundMessage>>,
    /// Bytes of received payloads not yet taken by [`Inbound::recv`].
    inbound_budget: Arc<Semaphore>,
    inbound_cap: u32,
}

impl Task {
    async fn run<S>(
        self,
        mut reader: FramedRead<ReadHalf<S>, FrameCodec>,
        mut wr: WriteHalf<S>,
        mut wcodec: FrameCodec,
        mut wbuf: BytesMut,
        mut out_rx: mpsc::Receiver<Queued<Bytes>>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let write_timeout = self.cfg.write_timeout;
        let reason = tokio::select! {
            r = self.read_loop(&mut reader) => r,
            r = write_loop(&mut wr, &mut wcodec, &mut wbuf, &mut out_rx, write_timeout) => r,
            _ = self.shared.closed.cancelled() => CloseReason::Local,
            _ = self.all_dropped() => CloseReason::Dropped,
        };
        // A sender that found no room for `write_timeout` closed the session from outside the
        // task: report its reason, and do not try to flush to a peer that does not read.
        let reason = match reason {
            CloseReason::Local => self.shared.lock().reason.clone().unwrap_or(reason),
            other => other,
        };
        let graceful = matches!(reason, CloseReason::Local | CloseReason::Dropped);
        match &reason {
            CloseReason::Protocol(e) => {
                warn!(conn = self.shared.id, error = %e, "closing session: protocol violation")
            }
            other => info!(conn = self.shared.id, reason = %other, "session closed"),
        }
        self.shared.close(reason);
        if graceful {
            let flush = async {
                while let Ok(p) = out_rx.try_recv() {
                    if wcodec.encode(Frame::Data(p.item), &mut wbuf).is_err() {
                        break;
                    }
                }
                wr.write_all_buf(&mut wbuf).await?;
                wr.flush().await?;
                wr.shutdown().await
            };
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, flush).await;
        }
    }

    /// Resolves when no `Session` handle and no `Inbound` is left.
    async fn all_dropped(&self) {
        self.shared.handles_gone.cancelled().await;
        self.inbound_tx.closed().await;
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        reader: &mut FramedRead<R, FrameCodec>,
    ) -> CloseReason {
        let pings = self.cfg.side == Side::Dialer;
        let mut last_rx = Instant::now();
        let mut ping_sent = false;
        loop {
            let next = tokio::select! {
                f = reader.next() => f,
                _ = tokio::time::sleep_until(last_rx + self.cfg.ping_interval),
                    if pings && !ping_sent =>
                {
                    ping_sent = true;
                    let ping = TcpPing { id: rand::random::<i64>() };
                    // A full queue means writes are stuck anyway; the idle timer decides.
                    self.out.push_control(Bytes::from(to_bytes(&ping)));
                    continue;
                }
                _ = tokio::time::sleep_until(last_rx + self.cfg.idle_timeout) => {
                    return CloseReason::IdleTimeout;
                }
            };
            last_rx = Instant::now();
            ping_sent = false;
            match next {
                None => return CloseReason::PeerClosed,
                Some(Err(FrameError::Io(e))) => return CloseReason::Io(e.to_string()),
                Some(Err(e)) => return CloseReason::Protocol(e.to_string()),
                Some(Ok(Frame::Keepalive)) => {}
                Some(Ok(Frame::Data(payload))) => {
                    if let Err(reason) = self.handle_packet(payload).await {
                        return reason;
                    }
                }
            }
        }
    }

    async fn handle_packet(&self, payload: Bytes) -> Result<(), CloseReason> {
        let len = payload.len();
        let packet: TcpPacket = from_bytes(&payload).map_err(|e| {
            CloseReason::Protocol(format!("undecodable tcp packet of {len} bytes: {e}"))
        })?;
        match packet {
            TcpPacket::Ping(p) => {
                // Never wait here: a peer that pings but does not read would park the read loop
                // (and its idle timer) on a full outbound queue. A dropped pong is harmless.
                self.out
                    .push_control(Bytes::from(to_bytes(&TcpPong { id: p.id })));
            }
            TcpPacket::Pong(_) => {}
            TcpPacket::Packet(p) => {
                // Nobody listening: the packet is dropped, as the owner chose.
                let _ = self.deliver(InboundMessage::Packet(p.data), len).await;
            }
            TcpPacket::Query(q) => {
                let incoming = IncomingQuery {
                    data: q.data,
                    id: q.id,
                    out: self.out.clone(),
                    max_len: self.cfg.max_frame_len,
                    answered: false,
                };
                if let Err(InboundMessage::Query(mut q)) =
                    self.deliver(InboundMessage::Query(incoming), len).await
                {
                    q.answered = true;
                    let msg = TcpQueryError {
                        id: q.id,
                        code: CODE_NOT_READY,
                        message: "nobody handles queries on this connection".into(),
                    };
                    self.out.push_control(Bytes::from(to_bytes(&msg)));
                }
            }
            TcpPacket::QueryAnswer(a) => self.shared.complete(a.id, Ok(a.data)),
            TcpPacket::QueryError(e) => self.shared.complete(
                e.id,
                Err(QueryError::Remote {
                    code: e.code,
                    message: e.message,
                }),
            ),
            TcpPacket::Connect(_) | TcpPacket::Connected(_) => {
                debug!(
                    conn = self.shared.id,
                    "ignoring repeated tcp handshake packet"
                );
            }
        }
        Ok(())
    }

    /// Hands `msg` (from a frame of `len` bytes) to the owner: waits for its share of the
    /// inbound byte budget and for a queue slot, reading nothing from the stream meanwhile
    /// (backpressure). Gives the message back when nobody receives any more.
    async fn deliver(&self, msg: InboundMessage, len: usize) -> Result<(), InboundMessage> {
        let cost = budget_cost(len, self.inbound_cap);
        let acquire = self.inbound_budget.clone().acquire_many_owned(cost);
        // The owner may drop the Inbound while we wait: its queued messages (and their budget)
        // are dropped with it, so the acquire then completes.
        let permit = tokio::select! {
            p = acquire => p.ok(),
            _ = self.inbound_tx.closed() => return Err(msg),
        };
        let queued = Queued {
            item: msg,
            _budget: permit,
        };
        self.inbound_tx
            .send(queued)
            .await
            .map_err(|mpsc::error::SendError(q)| q.item)
    }
}

/// Writes queued payloads in order until the stream fails. Everything it holds between polls
/// lives in `buf`, so stopping it never loses a payload already taken from the queue. A payload
/// gives its share of the byte budget back once it is encoded into `buf`.
///
/// Write deadline: each write or flush that makes no progress for `write_timeout` ends the
/// session with [`CloseReason::WriteTimeout`] (the peer stopped reading and its TCP window, or
/// the TLS buffer in front of it, stayed full).
async fn write_loop<W: AsyncWrite + Unpin>(
    wr: &mut W,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    out_rx: &mut mpsc::Receiver<Queued<Bytes>>,
    write_timeout: Duration,
) -> CloseReason {
    loop {
        if buf.is_empty() {
            let Some(first) = out_rx.recv().await else {
                return CloseReason::Local;
            };
            let mut next = Some(first);
            while let Some(p) = next {
                if let Err(e) = codec.encode(Frame::Data(p.item), buf) {
                    return CloseReason::Protocol(format!("outgoing frame: {e}"));
                }
                next = if buf.len() < WRITE_BATCH {
                    out_rx.try_recv().ok()
                } else {
                    None
                };
            }
        }
        match tokio::time::timeout(write_timeout, wr.write_buf(buf)).await {
            Err(_) => return CloseReason::WriteTimeout,
            Ok(Ok(0)) => return CloseReason::Io("stream refused more bytes".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return CloseReason::Io(e.to_string()),
        }
        if buf.is_empty() {
            match tokio::time::timeout(write_timeout, wr.flush()).await {
                Err(_) => return CloseReason::WriteTimeout,
                Ok(Ok(())) => {}
                Ok(Err(e)) => return CloseReason::Io(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
