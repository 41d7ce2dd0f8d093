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
//! All writes go through one bounded queue (`send_queue` payloads) in order; a full queue makes
//! `send`/`query` wait (backpressure). Inbound messages go through a bounded queue of the same
//! size; a slow consumer stops the reader, which pushes back on the peer.
//!
//! The task ends, and the stream is dropped, when: [`Session::close`] is called; the peer closes
//! or the stream fails; a protocol violation happens (bad seqno or length, undecodable
//! `tcp.Packet`; logged with sizes and ids only); the idle timeout fires; or the last
//! [`Session`] clone **and** the [`Inbound`] are both dropped. At that moment every pending
//! query fails with [`QueryError::Closed`] and [`Session::closed`] resolves. On a local close
//! (or all handles dropped) payloads already queued are still flushed, for at most
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
use tokio::sync::{mpsc, oneshot};
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
    rx: mpsc::Receiver<InboundMessage>,
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
    out: mpsc::Sender<Bytes>,
    closed: CancellationToken,
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
    out: mpsc::Sender<Bytes>,
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
            h.out.send(payload).await.map_err(|_| QueryError::Closed)?;
            rx.await.unwrap_or(Err(QueryError::Closed))
        };
        let closable = async {
            tokio::select! {
                r = exchange => r,
                _ = h.shared.closed.cancelled() => Err(QueryError::Closed),
            }
        };
        tokio::time::timeout(timeout, closable)
            .await
            .unwrap_or(Err(QueryError::Timeout))
    }

    /// Sends `data` as `tcp.packet`; waits while the outbound queue is full.
    pub async fn send(&self, data: Bytes) -> Result<(), SessionError> {
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
        let payload = Bytes::from(to_bytes(&TcpPacketData { data }));
        tokio::select! {
            r = h.out.send(payload) => r.map_err(|_| SessionError::Closed),
            _ = h.shared.closed.cancelled() => Err(SessionError::Closed),
        }
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
        self.rx.recv().await
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
    /// a `tcp.queryError`. Does nothing if the session is closed.
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
        tokio::select! {
            _ = self.out.send(payload) => {}
            _ = self.closed.cancelled() => {}
        }
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
            let _ = self.out.try_send(Bytes::from(to_bytes(&msg)));
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
    let task = Task {
        shared: shared.clone(),
        cfg: cfg.clone(),
        out_tx: out_tx.clone(),
        inbound_tx,
    };
    let span = tracing::debug_span!("session", conn = shared.id);
    // Owned by the handles: it ends on close, on any failure, or once every Session clone and
    // the Inbound are gone (see the module docs), so the JoinHandle is not needed.
    tokio::spawn(task.run(reader, wr, wcodec, wbuf, out_rx).instrument(span));
    debug!(conn = shared.id, side = ?cfg.side, "session established");
    let session = Session {
        handle: Arc::new(Handle {
            shared,
            out: out_tx,
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
    /// For pongs and incoming-query errors; not a liveness signal.
    out_tx: mpsc::Sender<Bytes>,
    inbound_tx: mpsc::Sender<InboundMessage>,
}

impl Task {
    async fn run<S>(
        self,
        mut reader: FramedRead<ReadHalf<S>, FrameCodec>,
        mut wr: WriteHalf<S>,
        mut wcodec: FrameCodec,
        mut wbuf: BytesMut,
        mut out_rx: mpsc::Receiver<Bytes>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let reason = tokio::select! {
            r = self.read_loop(&mut reader) => r,
            r = write_loop(&mut wr, &mut wcodec, &mut wbuf, &mut out_rx) => r,
            _ = self.shared.closed.cancelled() => CloseReason::Local,
            _ = self.all_dropped() => CloseReason::Dropped,
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
                    if wcodec.encode(Frame::Data(p), &mut wbuf).is_err() {
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
                    let _ = self.out_tx.try_send(Bytes::from(to_bytes(&ping)));
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
                let pong = Bytes::from(to_bytes(&TcpPong { id: p.id }));
                let _ = self.out_tx.send(pong).await;
            }
            TcpPacket::Pong(_) => {}
            TcpPacket::Packet(p) => {
                // Nobody listening: the packet is dropped, as the owner chose.
                let _ = self.inbound_tx.send(InboundMessage::Packet(p.data)).await;
            }
            TcpPacket::Query(q) => {
                let incoming = IncomingQuery {
                    data: q.data,
                    id: q.id,
                    out: self.out_tx.clone(),
                    closed: self.shared.closed.clone(),
                    max_len: self.cfg.max_frame_len,
                    answered: false,
                };
                if let Err(mpsc::error::SendError(InboundMessage::Query(q))) =
                    self.inbound_tx.send(InboundMessage::Query(incoming)).await
                {
                    let msg = "nobody handles queries on this connection".to_string();
                    q.error(CODE_NOT_READY, msg).await;
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
}

/// Writes queued payloads in order until the stream fails. Everything it holds between polls
/// lives in `buf`, so stopping it never loses a payload already taken from the queue.
async fn write_loop<W: AsyncWrite + Unpin>(
    wr: &mut W,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    out_rx: &mut mpsc::Receiver<Bytes>,
) -> CloseReason {
    loop {
        if buf.is_empty() {
            let Some(first) = out_rx.recv().await else {
                return CloseReason::Local;
            };
            let mut next = Some(first);
            while let Some(p) = next {
                if let Err(e) = codec.encode(Frame::Data(p), buf) {
                    return CloseReason::Protocol(format!("outgoing frame: {e}"));
                }
                next = if buf.len() < WRITE_BATCH {
                    out_rx.try_recv().ok()
                } else {
                    None
                };
            }
        }
        match wr.write_buf(buf).await {
            Ok(0) => return CloseReason::Io("stream refused more bytes".into()),
            Ok(_) => {}
            Err(e) => return CloseReason::Io(e.to_string()),
        }
        if buf.is_empty() {
            if let Err(e) = wr.flush().await {
                return CloseReason::Io(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests;
