//! Cocoon framing (`net/TcpConnection.cpp`): `u32 len LE | i32 seqno LE | payload[len]`.
//!
//! - `4 <= len <= max_len` (default 2^24); `len == 0` is a keepalive. Lengths 1..=3 and above the
//!   maximum are errors, detected from the 4 length bytes alone, before anything is buffered or
//!   allocated for the payload.
//! - Seqnos count every frame, keepalives included, from 0 in each direction; a gap or repeat is
//!   an error. One codec instance tracks both directions (`in_seqno` for decoding, `out_seqno`
//!   for encoding), so use one per connection half or one per connection.
//! - Keepalive decision: Cocoon's reader rejects `len < 4` *including* 0 (its keepalive branch is
//!   unreachable), so we accept a keepalive but never send one; the session pings instead.
//!
//! No TL decoding happens here; frames are opaque `Bytes`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Cocoon's maximum payload length (16 MiB).
pub const DEFAULT_MAX_FRAME_LEN: usize = 1 << 24;

/// Bytes before the payload: length and seqno.
pub const HEADER_LEN: usize = 8;

/// Smallest non-keepalive payload (a TL constructor id).
pub const MIN_FRAME_LEN: usize = 4;

/// One frame.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// A zero-length frame.
    Keepalive,
    /// A payload of 4..=max bytes (a boxed TL value).
    Data(Bytes),
}

impl std::fmt::Debug for Frame {
    // Sizes only: payloads are messages and may hold prompts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Frame::Keepalive => f.write_str("Keepalive"),
            Frame::Data(b) => write!(f, "Data(<{} bytes>)", b.len()),
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A length outside `0 | 4..=max` (read or asked to write).
    #[error("bad frame length {len} (allowed: 0 or {MIN_FRAME_LEN}..={max})")]
    BadLength { len: u64, max: usize },
    /// The peer's seqno is not the next one.
    #[error("bad seqno: expected {expected}, got {got}")]
    BadSeqno { expected: i32, got: i32 },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({0} bytes buffered)")]
    Truncated(usize),
    /// The transport failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// `tokio_util` codec for Cocoon frames.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_len: usize,
    in_seqno: i32,
    out_seqno: i32,
}

// === impl FrameCodec ===

impl FrameCodec {
    /// A codec accepting payloads up to `max_len` bytes, both seqnos at 0.
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            in_seqno: 0,
            out_seqno: 0,
        }
    }

    /// The largest payload accepted or written.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    fn check_len(&self, len: u64) -> Result<usize, FrameError> {
        let ok = len == 0 || (len >= MIN_FRAME_LEN as u64 && len <= self.max_len as u64);
        if ok {
            // `len <= max_len: usize`, so it fits.
            Ok(len as usize)
        } else {
            Err(FrameError::BadLength {
                len,
                max: self.max_len,
            })
        }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(len_bytes) = src.get(..4) else {
            return Ok(None);
        };
        let mut raw = [0u8; 4];
        raw.copy_from_slice(len_bytes);
        let len = self.check_len(u64::from(u32::from_le_bytes(raw)))?;
        let total = HEADER_LEN + len;
        if src.len() < total {
            // Bounded by max_len + 8, checked above.
            src.reserve(total - src.len());
            return Ok(None);
        }
        let mut header = src.split_to(HEADER_LEN);
        header.advance(4);
        let got = header.get_i32_le();
        if got != self.in_seqno {
            return Err(FrameError::BadSeqno {
                expected: self.in_seqno,
                got,
            });
        }
        self.in_seqno = self.in_seqno.wrapping_add(1);
        let payload = src.split_to(len).freeze();
        Ok(Some(if len == 0 {
            Frame::Keepalive
        } else {
            Frame::Data(payload)
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated(src.len())),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let payload = match item {
            Frame::Keepalive => Bytes::new(),
            Frame::Data(b) => {
                if b.is_empty() {
                    // An empty Data would read back as a keepalive; refuse the ambiguity.
                    return Err(FrameError::BadLength {
                        len: 0,
                        max: self.max_len,
                    });
                }
                b
            }
        };
        let len = self.check_len(payload.len() as u64)?;
        dst.reserve(HEADER_LEN + len);
        // `len <= max_len`; a max above u32::MAX would be a configuration error we clamp.
        dst.put_u32_le(u32::try_from(len).unwrap_or(u32::MAX));
        dst.put_i32_le(self.out_seqno);
        dst.extend_from_slice(&payload);
        self.out_seqno = self.out_seqno.wrapping_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_all(frames: &[Frame]) -> BytesMut {
        let mut codec = FrameCodec::default();
        let mut out = BytesMut::new();
        for f in frames {
            codec.encode(f.clone(), &mut out).unwrap();
        }
        out
    }

    /// Feeds `data` to a decoder in the given chunk sizes; returns frames or the first error.
    fn decode_chunked(data: &[u8], chunks: &[usize], max: usize) -> Result<Vec<Frame>, String> {
        let mut codec = FrameCodec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut sizes = chunks.iter().copied().cycle();
        while pos < data.len() {
            let n = sizes.next().unwrap_or(1).max(1).min(data.len() - pos);
            buf.extend_from_slice(&data[pos..pos + n]);
            pos += n;
            while let Some(f) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
                out.push(f);
            }
        }
        if let Some(f) = codec.decode_eof(&mut buf).map_err(|e| e.to_string())? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn layout() {
        let out = encode_all(&[
            Frame::Data(Bytes::from_static(&[1, 2, 3, 4])),
            Frame::Keepalive,
        ]);
        assert_eq!(
            &out[..],
            &[4, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 1, 0, 0, 0]
        );
    }

    #[test]
    fn short_and_long_lengths_rejected_from_the_header() {
        for len in [1u32, 2, 3, 101] {
            let mut codec = FrameCodec::new(100);
            // Only the length field: the error comes before any payload arrives.
            let mut buf = BytesMut::from(&len.to_le_bytes()[..]);
            assert!(matches!(
                codec.decode(&mut buf),
                Err(FrameError::BadLength { .. })
            ));
        }
        let mut codec = FrameCodec::new(100);
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        assert!(codec.decode(&mut buf).is_err());
        assert!(buf.capacity() < 1024, "nothing reserved for a bad length");
    }

    #[test]
    fn bad_seqno_is_an_error() {
        let mut data = encode_all(&[Frame::Data(Bytes::from_static(b"abcd"))]);
        data[4] = 5; // seqno 5 instead of 0
        let err = FrameCodec::default().decode(&mut data).unwrap_err();
        assert!(matches!(
            err,
            FrameError::BadSeqno {
                expected: 0,
                got: 5
            }
        ));
    }

    #[test]
    fn encoder_refuses_bad_lengths() {
        let mut codec = FrameCodec::new(8);
        let mut out = BytesMut::new();
        for bad in [&b"abc"[..], &b""[..], &[0u8; 9][..]] {
            assert!(codec
                .encode(Frame::Data(Bytes::copy_from_slice(bad)), &mut out)
                .is_err());
        }
        assert!(out.is_empty());
        // A refused frame does not consume a seqno.
        codec
            .encode(Frame::Data(Bytes::from_static(b"abcd")), &mut out)
            .unwrap();
        assert_eq!(&out[4..8], &[0, 0, 0, 0]);
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let data = encode_all(&[Frame::Data(Bytes::from_static(b"abcdefgh"))]);
        let err = decode_chunked(&data[..data.len() - 1], &[3], 100).unwrap_err();
        assert!(err.contains("ended inside a frame"), "{err}");
    }

    fn frame_strategy() -> impl Strategy<Value = Frame> {
        prop_oneof![
            1 => Just(Frame::Keepalive),
            8 => proptest::collection::vec(any::<u8>(), 4..300)
                .prop_map(|v| Frame::Data(Bytes::from(v))),
        ]
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_frames(
            frames in proptest::collection::vec(frame_strategy(), 0..20),
            chunks in proptest::collection::vec(1usize..64, 1..10),
        ) {
            let data = encode_all(&frames);
            let whole = decode_chunked(&data, &[data.len().max(1)], DEFAULT_MAX_FRAME_LEN).unwrap();
            prop_assert_eq!(&whole, &frames);
            let split = decode_chunked(&data, &chunks, DEFAULT_MAX_FRAME_LEN).unwrap();
            prop_assert_eq!(&split, &frames);
        }

        #[test]
        fn random_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            chunks in proptest::collection::vec(1usize..64, 1..5),
        ) {
            let _ = decode_chunked(&data, &chunks, 1024);
        }
    }
}
