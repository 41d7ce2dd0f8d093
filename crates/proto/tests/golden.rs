//! Golden vectors: Cocoon's own traffic (tests/data/frames/, captured from the C++ reference in
//! local-all mode; see the capture README in the shared test data). Every frame of every
//! capture is decoded with our codec, its `tcp.Packet` and inner message are decoded to typed
//! values (unknown ids fail the test), nested `http.request`/`http.response` are decoded too,
//! and everything is re-encoded and compared byte for byte with the capture.

// Test helpers outside #[test] fns unwrap too; a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use cocoon_proto::frame::{Frame, FrameCodec};
use cocoon_proto::messages::*;
use cocoon_tl::{from_bytes, to_bytes, TlEnum, TlRead, TlWrite};
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};

const DIRS: &[&str] = &[
    "client-router",
    "router-proxy-clientport",
    "worker-router",
    "router-proxy-workerport",
];

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/frames")
}

struct Capture {
    dir: &'static str,
    file: String,
    bin: Vec<u8>,
    /// Offset of the first frame, after SOCKS5 and AttestedPeerInfo prefixes.
    start: usize,
    /// The `kind == "frame"` entries of frames.json.
    frames: Vec<Value>,
}

fn captures() -> Vec<Capture> {
    let mut out = Vec::new();
    for dir in DIRS {
        let json: Value = serde_json::from_slice(
            &std::fs::read(data_dir().join(dir).join("frames.json")).unwrap(),
        )
        .unwrap();
        for (file, entry) in json.as_object().unwrap() {
            let bin = std::fs::read(data_dir().join(dir).join(file)).unwrap();
            let all = entry["frames"].as_array().unwrap();
            // Check the prefixes we skip are what the README says they are.
            let socks = hex::decode(entry["socks5_handshake_hex"].as_str().unwrap_or("")).unwrap();
            let mut pos = 0;
            if !socks.is_empty() {
                assert_eq!(socks[0], 5, "{dir}/{file}: SOCKS5 version byte");
                pos = socks.len();
            }
            for info in all.iter().filter(|f| f["kind"] == "attested_peer_info") {
                let off = info["offset"].as_u64().unwrap() as usize;
                let len = info["len"].as_u64().unwrap() as usize;
                assert_eq!(off, pos, "{dir}/{file}: AttestedPeerInfo offset");
                assert_eq!(
                    u32::from_le_bytes(bin[off..off + 4].try_into().unwrap()) as usize,
                    len
                );
                pos = off + 4 + len;
            }
            let frames: Vec<Value> = all
                .iter()
                .filter(|f| f["kind"] == "frame")
                .cloned()
                .collect();
            let start = frames[0]["offset"].as_u64().unwrap() as usize;
            assert_eq!(start, pos, "{dir}/{file}: first frame offset");
            out.push(Capture {
                dir,
                file: file.clone(),
                bin,
                start,
                frames,
            });
        }
    }
    assert_eq!(out.len(), 12);
    out
}

/// Decodes the frames of `data`, feeding it in `chunk`-sized reads.
fn decode_frames(data: &[u8], chunk: usize) -> Vec<Frame> {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            out.push(f);
        }
    }
    assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    out
}

/// Decodes `bytes` as `T`, asserts it re-encodes identically, returns it.
fn exact<T: TlRead + TlWrite>(bytes: &Bytes, what: &str) -> T {
    let v: T = from_bytes(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(v.encoded_len(), bytes.len(), "{what}: encoded_len");
    assert_eq!(to_bytes(&v), bytes.to_vec(), "{what}: re-encoding differs");
    v
}

fn tl_name_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Which side sent a capture file.
fn initiator_sent(c: &Capture) -> bool {
    c.file.ends_with("c2s.bin")
}

fn worker_leg(c: &Capture) -> bool {
    c.dir.contains("worker")
}

#[test]
fn every_frame_decodes_and_reencodes_identically() {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for c in captures() {
        let ctx = format!("{}/{}", c.dir, c.file);
        let body = &c.bin[c.start..];
        let frames = decode_frames(body, body.len());
        // Same frames whatever the read sizes.
        assert_eq!(decode_frames(body, 7), frames, "{ctx}");
        // frames.json stops early on some captures; the .bin files hold more frames, which
        // are checked all the same (only the metadata comparison is limited to the listed ones).
        assert!(frames.len() >= c.frames.len(), "{ctx}: frame count");

        let mut reencoded = BytesMut::new();
        let mut codec = FrameCodec::default();
        for (i, frame) in frames.iter().enumerate() {
            let what = format!("{ctx} frame {i}");
            let meta = c.frames.get(i);
            let Frame::Data(payload) = frame else {
                panic!("{what}: keepalive in capture");
            };
            if let Some(meta) = meta {
                assert_eq!(meta["seqno"].as_u64().unwrap() as usize, i, "{what}");
                assert_eq!(
                    payload.len() as u64,
                    meta["len"].as_u64().unwrap(),
                    "{what}"
                );
                assert_eq!(
                    hex::encode(payload),
                    meta["hex"].as_str().unwrap(),
                    "{what}"
                );
            }

            let packet: TcpPacket = exact(payload, &what);
            if let Some(meta) = meta {
                assert_eq!(
                    tl_name_key(packet.tl_name()),
                    meta["ctor"].as_str().unwrap(),
                    "{what}"
                );
            }
            seen.insert(packet.tl_name());
            let inner = match &packet {
                TcpPacket::Packet(p) => Some((&p.data, Kind::Packet)),
                TcpPacket::Query(q) => Some((&q.data, Kind::Query)),
                TcpPacket::QueryAnswer(a) => Some((&a.data, Kind::Answer)),
                _ => None,
            };
            if let Some((data, kind)) = inner {
                let name = check_inner(&c, data, kind, &what);
                if let Some(meta) = meta {
                    assert_eq!(tl_name_key(name), meta["inner"].as_str().unwrap(), "{what}");
                    assert_eq!(data.len() as u64, meta["inner_len"].as_u64().unwrap());
                }
                seen.insert(name);
            }
            codec
                .encode(Frame::Data(Bytes::from(to_bytes(&packet))), &mut reencoded)
                .unwrap();
            total += 1;
        }
        assert_eq!(&reencoded[..], body, "{ctx}: re-framed capture differs");
    }
    assert_eq!(total, 228);
    // The captures exercise the whole request path, not just the handshake.
    for name in [
        "tcp.connect",
        "tcp.connected",
        "tcp.ping",
        "tcp.pong",
        "client.connectToProxy",
        "client.connectedToProxy",
        "client.authorizeWithProxyShort",
        "client.authorizationWithProxySuccess",
        "client.runQueryEx",
        "client.queryAnswerEx",
        "client.queryAnswerPartEx",
        "client.queryAnswerErrorEx",
        "client.queryAnswerError",
        "client.workerTypesV2",
        "proxy.clientRequestPayment",
        "worker.connectToProxy",
        "worker.connectedToProxy",
        "worker.compareBalanceWithProxyResult",
        "proxy.runQueryEx",
        "proxy.queryAnswerEx",
        "proxy.queryAnswerPartEx",
        "proxy.queryAnswerErrorEx",
        "proxy.workerRequestPayment",
        "worker.paymentStatus",
    ] {
        assert!(seen.contains(name), "{name} not seen");
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Packet,
    Query,
    Answer,
}

/// Decodes an inner message through the dispatch enum of its direction (or as an answer),
/// checks nested HTTP values, and returns its TL name.
fn check_inner(c: &Capture, data: &Bytes, kind: Kind, what: &str) -> &'static str {
    // Every inner value is a known boxed constructor.
    let any: AnyMessage = exact(data, what);
    let name = any.tl_name();
    let up = initiator_sent(c);
    match (worker_leg(c), up, kind) {
        (false, true, Kind::Packet) => {
            let m: ClientToProxyMessage = exact(data, what);
            match m {
                ClientToProxyMessage::RunQueryEx(q) => {
                    let req: HttpRequest = exact(&q.query, what);
                    assert_eq!(req.method, "POST");
                    assert_eq!(q.max_coefficient, 4000);
                    assert!(q.enable_debug.is_some());
                }
                ClientToProxyMessage::RunQuery(q) => {
                    let _: HttpRequest = exact(&q.query, what);
                }
                ClientToProxyMessage::CancelQueryV3(_) => panic!("{what}: v3 in a Cocoon capture"),
            }
        }
        (false, false, Kind::Packet) => {
            let m: ProxyToClientMessage = exact(data, what);
            if let ProxyToClientMessage::QueryAnswerEx(a) = m {
                let resp: HttpResponse = exact(&a.answer, what);
                assert!(resp.status_code >= 200);
            }
        }
        (false, true, Kind::Query) => {
            let _: ClientToProxyQuery = exact(data, what);
        }
        (true, true, Kind::Packet) => {
            let m: WorkerToProxyMessage = exact(data, what);
            if let WorkerToProxyMessage::QueryAnswerEx(a) = m {
                let _: HttpResponse = exact(&a.answer, what);
            }
        }
        (true, false, Kind::Packet) => {
            let m: ProxyToWorkerMessage = exact(data, what);
            if let ProxyToWorkerMessage::RunQueryEx(q) = m {
                let _: HttpRequest = exact(&q.query, what);
            }
        }
        (true, true, Kind::Query) => {
            let _: WorkerToProxyQuery = exact(data, what);
        }
        (_, false, Kind::Query) | (_, true, Kind::Answer) => {
            panic!("{what}: unexpected direction for {name}")
        }
        (_, false, Kind::Answer) => {
            // Answers are decoded by the asker as the specific type; AnyMessage did that.
        }
    }
    name
}

#[test]
fn router_legs_carry_the_same_frames() {
    let caps = captures();
    for (a, b) in [
        ("client-router", "router-proxy-clientport"),
        ("worker-router", "router-proxy-workerport"),
    ] {
        for ca in caps.iter().filter(|c| c.dir == a) {
            let cb = caps
                .iter()
                .find(|c| c.dir == b && c.file == ca.file)
                .unwrap();
            assert_eq!(
                &ca.bin[ca.start..],
                &cb.bin[cb.start..],
                "{a} vs {b}: {}",
                ca.file
            );
        }
    }
}

#[test]
fn decoded_values_match_the_capture_readme() {
    // req1 of client conn000 (README "Decoded example").
    let c = captures()
        .into_iter()
        .find(|c| c.dir == "client-router" && c.file == "conn000.c2s.bin")
        .unwrap();
    let frames = decode_frames(&c.bin[c.start..], 4096);
    let Frame::Data(p) = &frames[5] else { panic!() };
    let TcpPacket::Packet(p) = from_bytes::<TcpPacket>(p).unwrap() else {
        panic!()
    };
    let q: ClientRunQueryEx = from_bytes(&p.data).unwrap();
    assert_eq!(q.model_name, "Qwen/Qwen3-8B");
    assert_eq!(q.max_coefficient, 4000);
    assert_eq!(q.max_tokens, 100);
    assert_eq!(q.timeout, 114.0);
    assert_eq!(q.min_config_version, 3);
    assert_eq!(q.flags, 1);
    assert!(
        q.enable_debug.is_some(),
        "flags bit 0 set: the field is present"
    );
    let req: HttpRequest = from_bytes(&q.query).unwrap();
    assert_eq!(req.url, "/v1/chat/completions");
    assert_eq!(req.http_version, "HTTP/1.1");
    let names: Vec<_> = req.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Host",
            "User-Agent",
            "Accept",
            "Content-Type",
            "Content-Length"
        ]
    );

    // The client's handshake parameters.
    let Frame::Data(p) = &frames[1] else { panic!() };
    let TcpPacket::Query(q) = from_bytes::<TcpPacket>(p).unwrap() else {
        panic!()
    };
    let c2p: ClientConnectToProxy = from_bytes(&q.data).unwrap();
    assert_eq!(c2p.params.flags, 3);
    assert_eq!(c2p.params.is_test, Some(true));
    assert_eq!(c2p.params.min_proto_version, Some(1));
    assert_eq!(c2p.params.max_proto_version, Some(2));
    assert_eq!(c2p.min_config_version, 3);
}

#[test]
fn error_answer_carries_final_info() {
    // req4: client.queryAnswerErrorEx 621 with flags = 1 (README).
    let c = captures()
        .into_iter()
        .find(|c| c.dir == "client-router" && c.file == "conn000.s2c.bin")
        .unwrap();
    let frames = decode_frames(&c.bin[c.start..], 4096);
    let Frame::Data(p) = &frames[18] else {
        panic!()
    };
    let TcpPacket::Packet(p) = from_bytes::<TcpPacket>(p).unwrap() else {
        panic!()
    };
    let ProxyToClientMessage::QueryAnswerErrorEx(e) = from_bytes(&p.data).unwrap() else {
        panic!("expected queryAnswerErrorEx")
    };
    assert_eq!(e.error_code, 621);
    assert!(e.error.contains("unknown option 'foo'"), "{}", e.error);
    assert_eq!(e.flags, 1);
    assert!(e.final_info.is_some());
}
