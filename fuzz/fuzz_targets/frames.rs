//! The frame decoder over arbitrary bytes, fed in two arbitrary pieces: never panics, never
//! allocates past the frame limit.
#![no_main]

use bytes::BytesMut;
use cocoon_proto::frame::FrameCodec;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let split = data
        .first()
        .map_or(0, |b| *b as usize % (data.len().max(1)));
    let mut codec = FrameCodec::new(1 << 16);
    let mut buf = BytesMut::new();
    for part in [&data[..split], &data[split..]] {
        buf.extend_from_slice(part);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
});
