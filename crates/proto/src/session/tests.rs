//! Session tests over `tokio::io::duplex`: two real sessions, or one session and a raw framed
//! peer that sends exactly the bytes a test needs.

use std::time::Duration;

use bytes::Bytes;
use cocoon_tl::{from_bytes, to_bytes};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::codec::Framed;

use super::*;
use crate::messages::{TcpConnect, TcpConnected, TcpPacket, TcpPing, TcpPong, TcpQuery};

const LONG: Duration = Duration::from_secs(3600);

async fn pair() -> ((Session, Inbound), (Session, Inbound)) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (da, db) = tokio::join!(
        establish(a, SessionConfig::dialer()),
        establish(b, SessionConfig::acceptor())
    );
    (da.unwrap(), db.unwrap())
}

/// Answers every query with its payload reversed, forwards packets to `packets`.
fn spawn_echo(mut inbound: Inbound, packets: mpsc::Sender<Bytes>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(msg) = inbound.recv().await {
            match msg {
                InboundMessage::Query(q) => {
                    let mut v = q.data.to_vec();
                    v.reverse();
                    q.answer(Bytes::from(v)).await;
                }
                InboundMessage::Packet(p) => {
                    let _ = packets.send(p).await;
                }
            }
        }
    })
}

/// A raw peer that completed the handshake as the acceptor.
async fn raw_acceptor(cfg: SessionConfig) -> (Session, Inbound, Framed<DuplexStream, FrameCodec>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut raw = Framed::new(b, FrameCodec::default());
    let dial = tokio::spawn(establish(a, cfg));
    let hello = match raw.next().await.unwrap().unwrap() {
        Frame::Data(d) => from_bytes::<TcpConnect>(&d).unwrap(),
        Frame::Keepalive => panic!("keepalive"),
    };
    raw.send(Frame::Data(Bytes::from(to_bytes(&TcpConnected {
        id: hello.id,
    }))))
    .await
    .unwrap();
    let (s, i) = dial.await.unwrap().unwrap();
    assert_eq!(s.handshake_id(), hello.id);
    (s, i, raw)
}

/// A raw peer that completed the handshake as the dialer.
async fn raw_dialer(cfg: SessionConfig) -> (Session, Inbound, Framed<DuplexStream, FrameCodec>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut raw = Framed::new(a, FrameCodec::default());
    let accept = tokio::spawn(establish(b, cfg));
    raw.send(Frame::Data(Bytes::from(to_bytes(&TcpConnect { id: 77 }))))
        .await
        .unwrap();
    let answer = match raw.next().await.unwrap().unwrap() {
        Frame::Data(d) => from_bytes::<TcpConnected>(&d).unwrap(),
        Frame::Keepalive => panic!("keepalive"),
    };
    assert_eq!(answer.id, 77);
    let (s, i) = accept.await.unwrap().unwrap();
    (s, i, raw)
}

async fn next_packet(raw: &mut Framed<DuplexStream, FrameCodec>) -> TcpPacket {
    loop {
        match raw.next().await.unwrap().unwrap() {
            Frame::Keepalive => continue,
            Frame::Data(d) => return from_bytes(&d).unwrap(),
        }
    }
}

#[tokio::test]
async fn query_and_answer() {
    let ((a, _ai), (_b, bi)) = pair().await;
    let (ptx, _prx) = mpsc::channel(8);
    spawn_echo(bi, ptx);
    let got = a.query(Bytes::from_static(b"abcd"), LONG).await.unwrap();
    assert_eq!(&got[..], b"dcba");
    assert_ne!(a.id(), _b.id());
    assert_eq!(a.handshake_id(), _b.handshake_id());
}

#[tokio::test]
async fn query_error_is_remote() {
    let ((a, _ai), (_b, mut bi)) = pair().await;
    tokio::spawn(async move {
        if let Some(InboundMessage::Query(q)) = bi.recv().await {
            q.error(7, "nope".into()).await;
        }
        // keep the inbound alive until the test ends
        std::future::pending::<()>().await;
    });
    let err = a.query(Bytes::from_static(b"q"), LONG).await.unwrap_err();
    assert_eq!(
        err,
        QueryError::Remote {
            code: 7,
            message: "nope".into()
        }
    );
}

#[tokio::test]
async fn packets_both_ways() {
    let ((a, ai), (b, bi)) = pair().await;
    let (atx, mut arx) = mpsc::channel(8);
    let (btx, mut brx) = mpsc::channel(8);
    spawn_echo(ai, atx);
    spawn_echo(bi, btx);
    a.send(Bytes::from_static(b"to b")).await.unwrap();
    b.send(Bytes::from_static(b"to a")).await.unwrap();
    assert_eq!(&brx.recv().await.unwrap()[..], b"to b");
    assert_eq!(&arx.recv().await.unwrap()[..], b"to a");
    // A large packet crosses the small duplex buffer in pieces.
    let big = Bytes::from(vec![5u8; 300_000]);
    a.send(big.clone()).await.unwrap();
    assert_eq!(brx.recv().await.unwrap(), big);
}

#[tokio::test]
async fn many_concurrent_queries() {
    let ((a, _ai), (_b, bi)) = pair().await;
    let (ptx, _prx) = mpsc::channel(8);
    spawn_echo(bi, ptx);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..300u32 {
        let a = a.clone();
        set.spawn(async move {
            let q = Bytes::from(i.to_be_bytes().to_vec());
            let got = a.query(q, LONG).await.unwrap();
            let mut want = i.to_be_bytes();
            want.reverse();
            assert_eq!(&got[..], &want[..]);
        });
    }
    let mut done = 0;
    while let Some(r) = set.join_next().await {
        r.unwrap();
        done += 1;
    }
    assert_eq!(done, 300);
}

#[tokio::test(start_paused = true)]
async fn peer_close_fails_pending_queries_at_once() {
    let ((a, _ai), (b, mut bi)) = pair().await;
    let asker = {
        let a = a.clone();
        tokio::spawn(async move { a.query(Bytes::from_static(b"q"), LONG).await })
    };
    // The acceptor holds the query without answering, then closes.
    let held = match bi.recv().await.unwrap() {
        InboundMessage::Query(q) => q,
        InboundMessage::Packet(_) => panic!("expected a query"),
    };
    b.close();
    assert_eq!(asker.await.unwrap(), Err(QueryError::Closed));
    a.closed().await;
    // Not an idle timeout or ping failure: the close itself ended it.
    assert_eq!(a.close_reason(), Some(CloseReason::PeerClosed));
    assert_eq!(b.close_reason(), Some(CloseReason::Local));
    drop(held);
    assert!(a.send(Bytes::from_static(b"x")).await.is_err());
    assert_eq!(
        a.query(Bytes::from_static(b"q"), LONG).await,
        Err(QueryError::Closed)
    );
}

#[tokio::test(start_paused = true)]
async fn local_close_fails_pending_queries() {
    let ((a, _ai), (_b, _bi)) = pair().await;
    let asker = {
        let a = a.clone();
        tokio::spawn(async move { a.query(Bytes::from_static(b"q"), LONG).await })
    };
    tokio::task::yield_now().await;
    a.close();
    assert_eq!(asker.await.unwrap(), Err(QueryError::Closed));
    assert!(a.is_closed());
    assert_eq!(a.close_reason(), Some(CloseReason::Local));
}

#[tokio::test(start_paused = true)]
async fn query_timeout() {
    let ((a, _ai), (_b, _bi)) = pair().await;
    // Nobody reads `_bi`, so the query is never answered.
    let err = a
        .query(Bytes::from_static(b"q"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err, QueryError::Timeout);
    assert!(!a.is_closed());
}

#[tokio::test(start_paused = true)]
async fn dialer_pings_then_times_out_when_idle() {
    let (s, _i, mut raw) = raw_acceptor(SessionConfig::dialer()).await;
    // The peer reads but never answers: first a ping, then the idle timeout.
    let ping = next_packet(&mut raw).await;
    assert!(matches!(ping, TcpPacket::Ping(_)), "{ping:?}");
    s.closed().await;
    assert_eq!(s.close_reason(), Some(CloseReason::IdleTimeout));
    // The stream was dropped: the peer sees the end.
    assert!(raw.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn pongs_keep_the_dialer_alive() {
    let (s, _i, mut raw) = raw_acceptor(SessionConfig::dialer()).await;
    for _ in 0..5 {
        match next_packet(&mut raw).await {
            TcpPacket::Ping(p) => raw
                .send(Frame::Data(Bytes::from(to_bytes(&TcpPong { id: p.id }))))
                .await
                .unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Five ping intervals (50 s) passed, well beyond the 20 s idle timeout.
    assert!(!s.is_closed());
}

#[tokio::test(start_paused = true)]
async fn acceptor_never_pings_and_times_out() {
    let (s, _i, mut raw) = raw_dialer(SessionConfig::acceptor()).await;
    s.closed().await;
    assert_eq!(s.close_reason(), Some(CloseReason::IdleTimeout));
    assert!(raw.next().await.is_none(), "no ping before the end");
}

#[tokio::test]
async fn ping_is_answered() {
    let (_s, _i, mut raw) = raw_dialer(SessionConfig::acceptor()).await;
    raw.send(Frame::Data(Bytes::from(to_bytes(&TcpPing { id: 5 }))))
        .await
        .unwrap();
    assert_eq!(
        next_packet(&mut raw).await,
        TcpPacket::Pong(TcpPong { id: 5 })
    );
}

#[tokio::test]
async fn keepalive_frames_are_accepted() {
    let (s, mut i, mut raw) = raw_dialer(SessionConfig::acceptor()).await;
    raw.send(Frame::Keepalive).await.unwrap();
    let packet = crate::messages::TcpPacketData {
        data: Bytes::from_static(b"after keepalive"),
    };
    raw.send(Frame::Data(Bytes::from(to_bytes(&packet))))
        .await
        .unwrap();
    match i.recv().await.unwrap() {
        InboundMessage::Packet(p) => assert_eq!(&p[..], b"after keepalive"),
        other => panic!("{other:?}"),
    }
    assert!(!s.is_closed());
}

#[tokio::test]
async fn unknown_tcp_constructor_closes() {
    let (s, _i, mut raw) = raw_dialer(SessionConfig::acceptor()).await;
    raw.send(Frame::Data(Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8])))
        .await
        .unwrap();
    s.closed().await;
    assert!(matches!(s.close_reason(), Some(CloseReason::Protocol(_))));
}

#[tokio::test]
async fn garbage_bytes_close() {
    let (a, b) = tokio::io::duplex(4096);
    let mut raw = Framed::new(a, FrameCodec::default());
    let accept = tokio::spawn(establish(b, SessionConfig::acceptor()));
    raw.send(Frame::Data(Bytes::from(to_bytes(&TcpConnect { id: 1 }))))
        .await
        .unwrap();
    let _ = raw.next().await;
    let (s, _i) = accept.await.unwrap().unwrap();
    // Length 2: invalid before any payload arrives.
    raw.get_mut()
        .write_all(&[2, 0, 0, 0, 9, 9, 9, 9, 9, 9])
        .await
        .unwrap();
    s.closed().await;
    assert!(matches!(s.close_reason(), Some(CloseReason::Protocol(_))));
}

#[tokio::test]
async fn bad_seqno_closes() {
    let (a, b) = tokio::io::duplex(4096);
    let accept = tokio::spawn(establish(b, SessionConfig::acceptor()));
    let mut a = a;
    // tcp.connect with seqno 0, then a ping with seqno 5.
    let mut bytes = Vec::new();
    for (seq, payload) in [
        (0i32, to_bytes(&TcpConnect { id: 1 })),
        (5i32, to_bytes(&TcpPing { id: 1 })),
    ] {
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&seq.to_le_bytes());
        bytes.extend_from_slice(&payload);
    }
    a.write_all(&bytes).await.unwrap();
    let (s, _i) = accept.await.unwrap().unwrap();
    s.closed().await;
    match s.close_reason() {
        Some(CloseReason::Protocol(e)) => assert!(e.contains("seqno"), "{e}"),
        other => panic!("{other:?}"),
    }
    // The acceptor answered the handshake before closing.
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).await.unwrap();
    assert!(rest.len() >= 8 + 12);
}

#[tokio::test(start_paused = true)]
async fn handshake_timeout_and_mismatch() {
    // A peer that never answers tcp.connect.
    let (a, _b) = tokio::io::duplex(4096);
    let err = establish(a, SessionConfig::dialer()).await.unwrap_err();
    assert!(matches!(err, SessionError::HandshakeTimeout), "{err}");

    // A peer that answers with another id.
    let (a, b) = tokio::io::duplex(4096);
    let mut raw = Framed::new(b, FrameCodec::default());
    let dial = tokio::spawn(establish(a, SessionConfig::dialer()));
    let _ = raw.next().await;
    raw.send(Frame::Data(Bytes::from(to_bytes(&TcpConnected { id: 0 }))))
        .await
        .unwrap();
    let err = dial.await.unwrap().unwrap_err();
    assert!(matches!(err, SessionError::HandshakeIdMismatch), "{err}");

    // A peer that hangs up.
    let (a, b) = tokio::io::duplex(4096);
    drop(b);
    let err = establish(a, SessionConfig::acceptor()).await.unwrap_err();
    assert!(
        matches!(err, SessionError::HandshakeEof | SessionError::Frame(_)),
        "{err}"
    );

    // A dialer that opens with something other than tcp.connect.
    let (a, b) = tokio::io::duplex(4096);
    let mut raw = Framed::new(a, FrameCodec::default());
    raw.send(Frame::Data(Bytes::from(to_bytes(&TcpPing { id: 1 }))))
        .await
        .unwrap();
    let err = establish(b, SessionConfig::acceptor()).await.unwrap_err();
    assert!(matches!(err, SessionError::Tl(_)), "{err}");
}

#[tokio::test]
async fn dropping_all_handles_ends_the_task() {
    let (s, i, mut raw) = raw_dialer(SessionConfig::acceptor()).await;
    let watcher = s.clone();
    drop(s);
    // One clone left: still alive, and packets still arrive while the Inbound exists.
    let packet = crate::messages::TcpPacketData {
        data: Bytes::from_static(b"hi"),
    };
    raw.send(Frame::Data(Bytes::from(to_bytes(&packet))))
        .await
        .unwrap();
    drop(watcher);
    // No Session left, but the Inbound keeps the task (and the delivered packet) alive.
    let mut i = i;
    match i.recv().await.unwrap() {
        InboundMessage::Packet(p) => assert_eq!(&p[..], b"hi"),
        other => panic!("{other:?}"),
    }
    drop(i);
    assert!(
        raw.next().await.is_none(),
        "stream closed once all are gone"
    );
}

#[tokio::test]
async fn queued_packets_are_flushed_on_close() {
    let (s, _i, mut raw) = raw_dialer(SessionConfig::acceptor()).await;
    for n in 0..10u8 {
        s.send(Bytes::from(vec![n; 10])).await.unwrap();
    }
    s.close();
    for n in 0..10u8 {
        match next_packet(&mut raw).await {
            TcpPacket::Packet(p) => assert_eq!(&p.data[..], &[n; 10]),
            other => panic!("{other:?}"),
        }
    }
    assert!(raw.next().await.is_none());
}

#[tokio::test]
async fn dropped_incoming_query_is_failed() {
    let ((a, _ai), (_b, mut bi)) = pair().await;
    tokio::spawn(async move {
        while let Some(msg) = bi.recv().await {
            drop(msg); // never answered
        }
    });
    let err = a.query(Bytes::from_static(b"q"), LONG).await.unwrap_err();
    assert!(
        matches!(
            err,
            QueryError::Remote {
                code: CODE_CANCELLED,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn queries_without_inbound_are_refused() {
    let (_s, i, mut raw) = raw_dialer(SessionConfig::acceptor()).await;
    drop(i);
    let q = TcpQuery {
        id: 9,
        data: Bytes::from_static(b"q"),
    };
    raw.send(Frame::Data(Bytes::from(to_bytes(&q))))
        .await
        .unwrap();
    match next_packet(&mut raw).await {
        TcpPacket::QueryError(e) => {
            assert_eq!(e.id, 9);
            assert_eq!(e.code, CODE_NOT_READY);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn oversized_messages_are_refused_locally() {
    let (a, b) = tokio::io::duplex(4096);
    let mut small = SessionConfig::dialer();
    small.max_frame_len = 64;
    let mut small_b = SessionConfig::acceptor();
    small_b.max_frame_len = 64;
    let (da, db) = tokio::join!(establish(a, small), establish(b, small_b));
    let ((s, _i), (_t, _j)) = (da.unwrap(), db.unwrap());
    let big = Bytes::from(vec![0u8; 100]);
    assert!(matches!(
        s.send(big.clone()).await,
        Err(SessionError::TooLarge { len: 100, max: 64 })
    ));
    assert_eq!(
        s.query(big, LONG).await,
        Err(QueryError::TooLarge { len: 100 })
    );
    // Just under the limit still works.
    s.send(Bytes::from(vec![1u8; 56])).await.unwrap();
    assert!(!s.is_closed());
}

// === bounds: byte caps, write deadline, control replies (security review H3(3), M7) ===

/// Like [`raw_dialer`], over a duplex of `buf` bytes per direction, so a test can make the
/// session's writes (or the peer's) block after a few bytes.
async fn raw_dialer_over(
    cfg: SessionConfig,
    buf: usize,
) -> (Session, Inbound, Framed<DuplexStream, FrameCodec>) {
    let (a, b) = tokio::io::duplex(buf);
    let mut raw = Framed::new(a, FrameCodec::default());
    let accept = tokio::spawn(establish(b, cfg));
    raw.send(Frame::Data(Bytes::from(to_bytes(&TcpConnect { id: 77 }))))
        .await
        .unwrap();
    match next_packet(&mut raw).await {
        TcpPacket::Connected(c) => assert_eq!(c.id, 77),
        other => panic!("{other:?}"),
    }
    let (s, i) = accept.await.unwrap().unwrap();
    (s, i, raw)
}

/// An acceptor config whose idle timer and write deadline never fire unless a test sets them.
fn patient() -> SessionConfig {
    let mut cfg = SessionConfig::acceptor();
    cfg.idle_timeout = LONG;
    cfg.write_timeout = LONG;
    cfg
}

/// `tcp.packet` frames as bytes, encoded with the raw peer's codec (its seqnos continue).
fn raw_packet(raw: &mut Framed<DuplexStream, FrameCodec>, data: Bytes) -> BytesMut {
    let mut out = BytesMut::new();
    let packet = crate::messages::TcpPacketData { data };
    raw.codec_mut()
        .encode(Frame::Data(Bytes::from(to_bytes(&packet))), &mut out)
        .unwrap();
    out
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_is_closed_after_the_write_deadline() {
    let mut cfg = patient();
    cfg.write_timeout = Duration::from_secs(10);
    // The peer never reads: 64 bytes fit in the pipe, then every write blocks.
    let (s, _i, _raw) = raw_dialer_over(cfg, 64).await;
    for _ in 0..3 {
        s.send(Bytes::from(vec![7u8; 600])).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), s.closed())
        .await
        .expect("a peer that reads nothing must be closed at the write deadline");
    assert_eq!(s.close_reason(), Some(CloseReason::WriteTimeout));
    assert!(matches!(
        s.send(Bytes::from_static(b"late")).await,
        Err(SessionError::Closed)
    ));
}

#[tokio::test(start_paused = true)]
async fn send_waits_at_most_the_write_timeout_on_a_peer_that_barely_reads() {
    let mut cfg = patient();
    cfg.write_timeout = Duration::from_secs(10);
    cfg.max_outbound_bytes = 1024;
    let (s, _i, raw) = raw_dialer_over(cfg, 64).await;
    // The peer reads one byte every 5 s: the writer keeps making progress (so its own deadline
    // never fires), but the queue does not drain.
    let mut io = raw.into_inner();
    let trickle = tokio::spawn(async move {
        let mut b = [0u8; 1];
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if io.read(&mut b).await.unwrap_or(0) == 0 {
                return;
            }
        }
    });
    // The first payload is taken by the writer, the second fills the 1 KiB budget.
    s.send(Bytes::from(vec![1u8; 600])).await.unwrap();
    tokio::task::yield_now().await;
    s.send(Bytes::from(vec![2u8; 600])).await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(60), s.send(Bytes::from(vec![3u8; 600])))
        .await
        .expect("send must give up at the write timeout, not wait for the peer");
    assert!(
        matches!(third, Err(SessionError::WriteTimeout)),
        "{third:?}"
    );
    assert!(s.is_closed());
    assert_eq!(s.close_reason(), Some(CloseReason::WriteTimeout));
    trickle.abort();
}

#[tokio::test(start_paused = true)]
async fn queued_outbound_bytes_are_capped() {
    let mut cfg = patient();
    cfg.max_outbound_bytes = 8 * 1024;
    let (s, _i, _raw) = raw_dialer_over(cfg, 64).await;
    // The peer never reads. Count what the session takes before `send` has to wait.
    let mut taken = 0usize;
    while tokio::time::timeout(Duration::from_secs(1), s.send(Bytes::from(vec![5u8; 1024])))
        .await
        .is_ok()
    {
        taken += 1024;
        assert!(taken <= 1 << 20, "the session took a MiB without blocking");
    }
    // The byte budget, plus what the writer took into its batch before blocking.
    assert!(
        taken <= 8 * 1024 + WRITE_BATCH + 2 * 1024,
        "{taken} bytes queued for a peer that reads nothing"
    );
    assert!(
        !s.is_closed(),
        "a full queue alone does not close the session"
    );
    assert!(matches!(
        s.try_send(Bytes::from(vec![5u8; 1024])),
        Err(SessionError::Full)
    ));
    assert!(!s.is_closed(), "try_send on a full queue leaves it open");
}

#[tokio::test(start_paused = true)]
async fn a_peer_pushing_frames_is_held_to_the_inbound_byte_cap() {
    let mut cfg = patient();
    cfg.max_inbound_bytes = 16 * 1024;
    let (_s, mut i, mut raw) = raw_dialer_over(cfg, 1024).await;
    // The owner reads nothing; the peer pushes 1 KiB packets until its writes block.
    let mut wire = BytesMut::new();
    for _ in 0..512 {
        wire.extend_from_slice(&raw_packet(&mut raw, Bytes::from(vec![9u8; 1024])));
    }
    let io = raw.get_mut();
    let mut written = 0usize;
    while written < wire.len() {
        match tokio::time::timeout(Duration::from_secs(1), io.write(&wire[written..])).await {
            Ok(Ok(n)) if n > 0 => written += n,
            Ok(other) => panic!("write failed: {other:?}"),
            Err(_) => break,
        }
    }
    // 16 KiB queued, the frame being decoded and the reader's buffer, the pipe: nowhere near
    // the 256 messages (256 KiB) the queue holds by count.
    assert!(
        written < 48 * 1024,
        "the session read {written} bytes its owner never took"
    );
    assert!(written >= 8 * 1024, "it read only {written} bytes");
    // Taking the messages reopens the window: the rest arrives.
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < 512 {
            match i.recv().await {
                Some(InboundMessage::Packet(p)) => assert_eq!(p.len(), 1024),
                other => panic!("{other:?}"),
            }
            n += 1;
        }
        i
    });
    tokio::time::timeout(Duration::from_secs(60), io.write_all(&wire[written..]))
        .await
        .expect("the reader never resumed")
        .unwrap();
    let _i = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("not every packet arrived")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn pings_on_a_full_outbound_queue_do_not_park_the_read_loop() {
    let mut cfg = patient();
    cfg.send_queue = 4;
    cfg.idle_timeout = Duration::from_secs(30);
    let (s, mut i, mut raw) = raw_dialer_over(cfg, 64).await;
    // The peer does not read: the writer blocks on the first payload, then the queue fills.
    s.send(Bytes::from(vec![1u8; 600])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut queued = 0;
    while s.try_send(Bytes::from(vec![2u8; 600])).is_ok() {
        queued += 1;
        assert!(queued <= 4, "more than send_queue messages queued");
    }
    assert_eq!(queued, 4);
    assert!(matches!(
        s.try_send(Bytes::from_static(b"more")),
        Err(SessionError::Full)
    ));
    // Pings whose pongs cannot be queued, then a packet: the packet must still arrive.
    let ping = Bytes::from(to_bytes(&TcpPing { id: 1 }));
    for _ in 0..3 {
        raw.send(Frame::Data(ping.clone())).await.unwrap();
    }
    let packet = crate::messages::TcpPacketData {
        data: Bytes::from_static(b"after the pings"),
    };
    raw.send(Frame::Data(Bytes::from(to_bytes(&packet))))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), i.recv()).await {
        Ok(Some(InboundMessage::Packet(p))) => assert_eq!(&p[..], b"after the pings"),
        other => panic!("the read loop is parked: {:?}", other.map(|m| m.is_some())),
    }
    // And the idle timer still runs: the silent peer is closed at the idle timeout.
    tokio::time::timeout(Duration::from_secs(120), s.closed())
        .await
        .expect("the idle timer was not polled");
    assert_eq!(s.close_reason(), Some(CloseReason::IdleTimeout));
}

#[tokio::test]
async fn a_close_watch_does_not_keep_the_session_alive() {
    let (s, i, mut raw) = raw_dialer(SessionConfig::acceptor()).await;
    let watch = s.close_watch();
    assert!(!watch.is_closed());
    drop((s, i));
    tokio::time::timeout(Duration::from_secs(10), watch.closed())
        .await
        .expect("the session outlived its handles");
    assert!(raw.next().await.is_none());
}
