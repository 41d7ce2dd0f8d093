//! Golden vectors: Cocoon's own traffic, captured from the C++ reference in local-all mode at two
//! upstream commits (see the capture READMEs in the shared test data): `tests/data/frames/`
//! (b75d444) and `tests/data/frames-9060ce5/` (9060ce5, with the key manager's legs). Every
//! frame of every capture is decoded with our codec, its `tcp.Packet` and inner message are
//! decoded to typed values (unknown ids fail the test), nested `http.request`/`http.response`
//! are decoded too, and everything is re-encoded and compared byte for byte with the capture.

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

/// One upstream commit's capture: its folder, legs and how many connection files it has.
struct CaptureSet {
    folder: &'static str,
    dirs: &'static [&'static str],
    files: usize,
}

const B75D444: CaptureSet = CaptureSet {
    folder: "frames",
    dirs: &[
        "client-router",
        "router-proxy-clientport",
        "worker-router",
        "router-proxy-workerport",
    ],
    files: 12,
};

const U9060CE5: CaptureSet = CaptureSet {
    folder: "frames-9060ce5",
    dirs: &[
        "client-router",
        "router-proxy-clientport",
        "worker-router",
        "router-proxy-workerport",
        "proxy-router",
        "router-keymanager",
    ],
    files: 16,
};

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
    captures_of(&B75D444)
}

fn captures_of(set: &CaptureSet) -> Vec<Capture> {
    let data_dir = || {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(set.folder)
    };
    let mut out = Vec::new();
    for dir in set.dirs {
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
    assert_eq!(out.len(), set.files, "{}", set.folder);
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

/// Who talks on a capture's connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leg {
    Client,
    Worker,
    /// A proxy or worker asking the key manager for keys.
    KeyManager,
}

fn leg(c: &Capture) -> Leg {
    match c.dir {
        "proxy-router" | "router-keymanager" => Leg::KeyManager,
        // The worker's second connection goes to the key manager (capture README).
        "worker-router" if c.file.starts_with("conn001") => Leg::KeyManager,
        d if d.contains("worker") => Leg::Worker,
        _ => Leg::Client,
    }
}

/// Decodes and re-encodes every frame of `set`; returns the frame count and the names seen.
fn check_every_frame(set: &CaptureSet) -> (usize, BTreeSet<&'static str>) {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for c in captures_of(set) {
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
    (total, seen)
}

#[test]
fn every_frame_decodes_and_reencodes_identically() {
    let (total, seen) = check_every_frame(&B75D444);
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
    if leg(c) == Leg::KeyManager {
        match (up, kind) {
            (true, Kind::Query) => {
                let _: KeyManagerQuery = exact(data, what);
            }
            (false, Kind::Answer) => {
                let _: KeyManagerPrivateKeys = exact(data, what);
            }
            _ => panic!("{what}: unexpected {name} on a key-manager leg"),
        }
        return name;
    }
    match (leg(c) == Leg::Worker, up, kind) {
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
                ClientToProxyMessage::CancelQueryV3(_) => {
                    panic!("{what}: an extension in a Cocoon capture")
                }
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
        (true, false, Kind::Query) => {
            let _: ProxyToWorkerQuery = exact(data, what);
        }
        (true, true, Kind::Answer) => {
            // The worker answers the proxy's worker.changeModel.
            let _: WorkerChangedModel = exact(data, what);
        }
        (false, false, Kind::Query) | (false, true, Kind::Answer) => {
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

#[test]
fn every_9060ce5_frame_decodes_and_reencodes_identically() {
    let (total, seen) = check_every_frame(&U9060CE5);
    assert!(total >= 450, "{total} frames");
    for name in [
        "client.connectToProxy",
        "client.connectedToProxy",
        "client.runQueryEx",
        "client.queryAnswerEx",
        "client.queryAnswerPartEx",
        "client.queryAnswerErrorEx",
        "client.workerTypesV2",
        "proxy.clientRequestPayment",
        "worker.connectToProxy",
        "worker.connectedToProxy",
        "proxy.runQueryEx",
        "proxy.queryAnswerEx",
        "proxy.queryAnswerPartEx",
        "proxy.queryAnswerErrorEx",
        "proxy.workerRequestPayment",
        "worker.changeModel",
        "worker.changedModel",
        "keyManager.getProxyPrivateKeys",
        "keyManager.getWorkerPrivateKeys",
        "keyManager.privateKeys",
    ] {
        assert!(seen.contains(name), "{name} not seen");
    }
    // 9060ce5 sends only …ErrorEx to Ex clients (b75d444 sent the legacy error, which hung).
    assert!(!seen.contains("client.queryAnswerError"));
}

/// The inner messages of one 9060ce5 capture file, in order (tcp.packet / tcp.query payloads
/// and query answers), with the tcp.query id where there is one.
fn inner_messages(dir: &str, file: &str) -> Vec<(Option<i64>, Bytes)> {
    let c = captures_of(&U9060CE5)
        .into_iter()
        .find(|c| c.dir == dir && c.file == file)
        .unwrap();
    decode_frames(&c.bin[c.start..], 4096)
        .into_iter()
        .filter_map(|f| {
            let Frame::Data(p) = f else { return None };
            match from_bytes::<TcpPacket>(&p).unwrap() {
                TcpPacket::Packet(p) => Some((None, p.data)),
                TcpPacket::Query(q) => Some((Some(q.id), q.data)),
                TcpPacket::QueryAnswer(a) => Some((Some(a.id), a.data)),
                _ => None,
            }
        })
        .collect()
}

const NETWORK_TEST_PUBLIC_KEY: &str =
    "fb67d0fcd338f20e0d4957d9e82adc101d2e3513a448a3ab46052ee1b88c5818";

#[test]
fn upstream_9060ce5_client_speaks_protocol_4_with_a_key_in_every_request() {
    let up = inner_messages("client-router", "conn000.c2s.bin");
    let hello: ClientConnectToProxy = from_bytes(&up[0].1).unwrap();
    assert_eq!(hello.params.flags, 3);
    assert_eq!(hello.params.min_proto_version, Some(1));
    assert_eq!(hello.params.max_proto_version, Some(4));
    let down = inner_messages("client-router", "conn000.s2c.bin");
    let welcome: ClientConnectedToProxy = from_bytes(&down[0].1).unwrap();
    assert_eq!(welcome.params.proto_version, Some(4));
    assert_eq!(
        welcome.params.flags & cocoon_proto::version::EXTENSIONS_FLAG,
        0
    );

    let runs: Vec<ClientRunQueryEx> = up
        .iter()
        .filter_map(|(_, d)| match from_bytes::<ClientToProxyMessage>(d) {
            Ok(ClientToProxyMessage::RunQueryEx(q)) => Some(q),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), 9, "req1-5 and req7-10 reach the wire");
    let mut encrypted = 0;
    for q in &runs {
        assert_eq!(q.flags, 3, "bit 1 set at protocol >= 3, key or not");
        let key = q.public_key.unwrap();
        let req: HttpRequest = from_bytes(&q.query).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.http_version, "HTTP/1.0");
        assert!(req
            .headers
            .iter()
            .all(|h| !h.name.eq_ignore_ascii_case("host")));
        let body: Value = serde_json::from_slice(&req.payload).unwrap();
        if body.get("is_encrypted").is_some() {
            encrypted += 1;
            let named = body["receiver_public_key"].as_str().unwrap();
            assert_eq!(hex::encode(key), named.to_lowercase());
        } else {
            assert_eq!(key, [0; 32]);
        }
    }
    assert_eq!(encrypted, 4, "req7-10");
    assert!(runs
        .iter()
        .any(|q| hex::encode(q.public_key.unwrap()) == NETWORK_TEST_PUBLIC_KEY));
}

#[test]
fn upstream_9060ce5_worker_and_proxy_exchange_keys_and_model_changes() {
    let up = inner_messages("worker-router", "conn000.c2s.bin");
    let hello: WorkerConnectToProxy = from_bytes(&up[0].1).unwrap();
    let p = &hello.params;
    assert_eq!(
        p.flags, 3,
        "machine_description_json is never sent by 9060ce5"
    );
    assert_eq!(
        (p.min_proto_version, p.max_proto_version),
        (Some(3), Some(4))
    );
    assert_eq!(p.machine_description_json, None);

    let down = inner_messages("worker-router", "conn000.s2c.bin");
    let welcome: WorkerConnectedToProxy = from_bytes(&down[0].1).unwrap();
    assert_eq!(welcome.params.proto_version, Some(4));
    let mut keys = BTreeSet::new();
    let mut changes = Vec::new();
    for (id, d) in &down {
        match from_bytes::<ProxyToWorkerMessage>(d) {
            Ok(ProxyToWorkerMessage::RunQueryEx(q)) => {
                assert_eq!(q.flags, 3);
                keys.insert(hex::encode(q.private_key.unwrap()));
            }
            _ => {
                if let Ok(ProxyToWorkerQuery::ChangeModel(m)) = from_bytes(d) {
                    changes.push((id.unwrap(), m.new_model));
                }
            }
        }
    }
    // Zeros in clear; the network private key (in clear, inside RA-TLS) for encrypted ones.
    assert_eq!(
        keys,
        BTreeSet::from([
            hex::encode([0u8; 32]),
            "070ad82e6132dab32067fb720afd0060555a64f905bbec0dc2849088951b3a63".to_string()
        ])
    );
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].1, "fail");
    // The first change is answered with worker.changedModel under the query's id.
    let answered: Vec<_> = up
        .iter()
        .filter(|(id, d)| *id == Some(changes[0].0) && from_bytes::<WorkerChangedModel>(d).is_ok())
        .collect();
    assert_eq!(answered.len(), 1);
}

#[test]
fn upstream_9060ce5_key_manager_serves_the_test_key() {
    let up = inner_messages("proxy-router", "conn000.c2s.bin");
    let ask: KeyManagerQuery = from_bytes(&up[0].1).unwrap();
    assert_eq!(
        ask,
        KeyManagerQuery::GetProxyPrivateKeys(KeyManagerGetProxyPrivateKeys { proto_version: 0 })
    );
    let down = inner_messages("proxy-router", "conn000.s2c.bin");
    let keys: KeyManagerPrivateKeys = from_bytes(&down[0].1).unwrap();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].valid_until_utime, 2_000_000_000);
    assert_eq!(
        hex::encode(keys.keys[0].private_key),
        "070ad82e6132dab32067fb720afd0060555a64f905bbec0dc2849088951b3a63"
    );
    let worker_ask: KeyManagerQuery =
        from_bytes(&inner_messages("worker-router", "conn001.c2s.bin")[0].1).unwrap();
    assert!(matches!(
        worker_ask,
        KeyManagerQuery::GetWorkerPrivateKeys(KeyManagerGetWorkerPrivateKeys { proto_version: 0 })
    ));
}
