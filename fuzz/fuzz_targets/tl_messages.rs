//! Every dispatch enum decoded from arbitrary bytes: never panics, and whatever decodes
//! re-encodes to bytes that decode to the same value.
#![no_main]

use bytes::Bytes;
use cocoon_proto::messages::{
    AnyMessage, ClientToProxyMessage, ClientToProxyQuery, ProxyToClientMessage,
    ProxyToWorkerMessage, TcpPacket, WorkerToProxyMessage, WorkerToProxyQuery,
};
use libfuzzer_sys::fuzz_target;

fn roundtrip<T: cocoon_tl::TlRead + cocoon_tl::TlWrite + PartialEq>(data: &Bytes) {
    if let Ok(v) = cocoon_tl::from_bytes::<T>(data) {
        let again = Bytes::from(cocoon_tl::to_bytes(&v));
        let back = cocoon_tl::from_bytes::<T>(&again).expect("re-encoded value must decode");
        assert!(back == v, "round trip changed the value");
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
