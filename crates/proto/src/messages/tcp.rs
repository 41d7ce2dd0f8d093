//! `tcp.*`: the session layer's own packets (see `crate::session`). Roles never build these;
//! the session wraps their messages in `tcp.packet` / `tcp.query` and answers pings itself.

use bytes::Bytes;
use cocoon_tl::{TlDebug, TlRead, TlWrite};

/// `tcp.ping`: liveness probe; the peer answers `tcp.pong` with the same id.
#[derive(Clone, Copy, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "tcp.ping id:long = tcp.Packet")]
pub struct TcpPing {
    pub id: i64,
}

/// `tcp.pong`.
#[derive(Clone, Copy, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "tcp.pong id:long = tcp.Packet")]
pub struct TcpPong {
    pub id: i64,
}

/// `tcp.packet`: a fire-and-forget message. (Named `…Data` because [`TcpPacket`] is the enum
/// of all `tcp.Packet` constructors.)
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "tcp.packet data:bytes = tcp.Packet")]
pub struct TcpPacketData {
    pub data: Bytes,
}

/// `tcp.queryAnswer`: the answer to `tcp.query` with the same id.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "tcp.queryAnswer id:long data:bytes = tcp.Packet")]
pub struct TcpQueryAnswer {
    pub id: i64,
    pub data: Bytes,
}

/// `tcp.queryError`: a failed query.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "tcp.queryError id:long code:int message:string = tcp.Packet"
)]
pub struct TcpQueryError {
    pub id: i64,
    pub code: i32,
    pub message: String,
}

/// `tcp.query`: a request that expects `tcp.queryAnswer` or `tcp.queryError`.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "tcp.query id:long data:bytes = tcp.Packet")]
pub struct TcpQuery {
    pub id: i64,
    pub data: Bytes,
}

/// `tcp.connected`: the acceptor's answer to `tcp.connect`.
#[derive(Clone, Copy, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "tcp.connected id:long = tcp.Packet")]
pub struct TcpConnected {
    pub id: i64,
}

/// `tcp.connect`: the dialer's first frame.
#[derive(Clone, Copy, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(boxed, schema = "tcp.connect id:long = tcp.Packet")]
pub struct TcpConnect {
    pub id: i64,
}

/// `tcp.Packet`: every frame payload after the handshake.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
pub enum TcpPacket {
    Ping(TcpPing),
    Pong(TcpPong),
    Packet(TcpPacketData),
    QueryAnswer(TcpQueryAnswer),
    QueryError(TcpQueryError),
    Query(TcpQuery),
    Connected(TcpConnected),
    Connect(TcpConnect),
}
