//! Every dispatch enum decoded from arbitrary bytes: never panics, and whatever decodes
//! re-encodes to canonical bytes that decode and re-encode to the same bytes.
//!
//! The oracle compares encodings, not values: a `double` field (e.g. `timeout`) may carry NaN,
//! which is never equal to itself (the first libFuzzer run reported exactly that as a "changed
//! value"; the receivers treat a non-finite timeout as absent). The first decode may also accept
//! non-canonical input (non-zero TL padding), so the input bytes are not compared either.
#![no_main]

use bytes::Bytes;
use cocoon_proto::messages::{
    AnyMessage, ClientToProxyMessage, ClientToProxyQuery, ProxyToClientMessage,
    ProxyToWorkerMessage, TcpPacket, WorkerToProxyMessage, WorkerToProxyQuery,
};
use libfuzzer_sys::fuzz_target;

fn roundtrip<T: cocoon_tl::TlRead + cocoon_tl::TlWrite>(data: &Bytes) {
    if let Ok(v) = cocoon_tl::from_bytes::<T>(data) {
        let again = Bytes::from(cocoon_tl::to_bytes(&v));
        let back = cocoon_tl::from_bytes::<T>(&again).expect("re-encoded value must decode");
        assert!(
            cocoon_tl::to_bytes(&back) == again,
            "the encoding is not a fixed point"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let data = Bytes::copy_from_slice(data);
    roundtrip::<TcpPacket>(&data);
    roundtrip::<ClientToProxyMessage>(&data);
    roundtrip::<ProxyToClientMessage>(&data);
    roundtrip::<ProxyToWorkerMessage>(&data);
    roundtrip::<WorkerToProxyMessage>(&data);
    roundtrip::<ClientToProxyQuery>(&data);
    roundtrip::<WorkerToProxyQuery>(&data);
    roundtrip::<AnyMessage>(&data);
});
