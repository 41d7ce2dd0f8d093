//! `TlReader`: a bounds-checked cursor over a `Bytes` buffer, plus the TL `bytes` length prefix
//! (both directions). Everything that touches raw input offsets lives here; typed decoding lives in
//! `primitives.rs` and in derived code, which only call these methods.
//!
//! Length prefix (TON's `td::TlStorer`/`TlParser`): a length under 254 takes one byte; up to
//! 2^24 - 1 it is `0xfe` and 3 bytes LE; larger lengths are `0xff` and 7 bytes LE. Then the data,
//! then zero bytes up to a multiple of 4 counted from the first prefix byte.
//!
//! Padding decision: the decoder accepts any padding byte values (TON's parser does not check
//! them either), the encoder always writes zeros. A capture whose padding is non-zero therefore
//! decodes but does not re-encode byte for byte; the golden tests show Cocoon writes zeros.

use bytes::Bytes;

use crate::TlError;

/// The deepest nesting of structs/vectors [`TlReader::nested`] allows.
pub const MAX_DEPTH: u32 = 32;

/// A cursor over TL input. Slices of `bytes` fields share the input buffer (no copy).
#[derive(Debug, Clone)]
pub struct TlReader {
    data: Bytes,
    pos: usize,
    depth: u32,
}

// === impl TlReader ===

impl TlReader {
    /// Starts reading `data` from its first byte.
    pub fn new(data: Bytes) -> Self {
        Self {
            data,
            pos: 0,
            depth: 0,
        }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// True when all input was consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless all input was consumed.
    pub fn finish(&self) -> Result<(), TlError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(TlError::TrailingBytes(n)),
        }
    }

    /// Runs `f` one nesting level deeper; fails with [`TlError::TooDeep`] past [`MAX_DEPTH`].
    /// Derived struct decoders and `Vec` decoding go through here, so no input can drive the
    /// decoder into unbounded recursion.
    pub fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, TlError>,
    ) -> Result<T, TlError> {
        if self.depth >= MAX_DEPTH {
            return Err(TlError::TooDeep(MAX_DEPTH));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    /// Consumes `n` bytes and returns them as a slice of the input (no copy).
    pub fn read_raw(&mut self, n: usize) -> Result<Bytes, TlError> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(TlError::UnexpectedEof {
                needed: n,
                remaining,
            });
        }
        let out = self.data.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    /// Consumes `N` bytes into an array.
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], TlError> {
        let remaining = self.remaining();
        let src = self
            .data
            .get(self.pos..self.pos + N)
            .ok_or(TlError::UnexpectedEof {
                needed: N,
                remaining,
            })?;
        let mut out = [0u8; N];
        out.copy_from_slice(src);
        self.pos += N;
        Ok(out)
    }

    /// Reads a little-endian `u32` (TL `#` and constructor ids).
    pub fn read_u32(&mut self) -> Result<u32, TlError> {
        self.read_array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian `i32` (TL `int`).
    pub fn read_i32(&mut self) -> Result<i32, TlError> {
        self.read_array().map(i32::from_le_bytes)
    }

    /// Reads a little-endian `i64` (TL `long`).
    pub fn read_i64(&mut self) -> Result<i64, TlError> {
        self.read_array().map(i64::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn read_u64(&mut self) -> Result<u64, TlError> {
        self.read_array().map(u64::from_le_bytes)
    }

    /// Reads a little-endian IEEE-754 `f64` (TL `double`), bit for bit.
    pub fn read_f64(&mut self) -> Result<f64, TlError> {
        self.read_array().map(f64::from_le_bytes)
    }

    /// Returns the next `u32` without consuming it (enum dispatch on the constructor id).
    pub fn peek_u32(&self) -> Result<u32, TlError> {
        let remaining = self.remaining();
        let src = self
            .data
            .get(self.pos..self.pos + 4)
            .ok_or(TlError::UnexpectedEof {
                needed: 4,
                remaining,
            })?;
        let mut id = [0u8; 4];
        id.copy_from_slice(src);
        Ok(u32::from_le_bytes(id))
    }

    /// Consumes a constructor id and checks it is `expected`.
    pub fn expect_id(&mut self, expected: u32) -> Result<(), TlError> {
        let found = self.read_u32()?;
        if found == expected {
            Ok(())
        } else {
            Err(TlError::UnexpectedConstructor { expected, found })
        }
    }

    /// Reads a TL `bytes`/`string` body (length prefix, data, padding) as a slice of the input.
    /// The length is checked against the remaining input before anything else happens.
    pub fn read_tl_bytes(&mut self) -> Result<Bytes, TlError> {
        let start = self.pos;
        let first = self.read_array::<1>()?[0];
        let len = match first {
            0..=253 => u64::from(first),
            254 => {
                let b = self.read_array::<3>()?;
                u64::from(u32::from_le_bytes([b[0], b[1], b[2], 0]))
            }
            255 => {
                let b = self.read_array::<7>()?;
                u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], 0])
            }
        };
        let remaining = self.remaining();
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= remaining)
            .ok_or(TlError::LengthTooLarge { len, remaining })?;
        let data = self.read_raw(len)?;
        let consumed = self.pos - start;
        let pad = (4 - consumed % 4) % 4;
        self.read_raw(pad)?;
        Ok(data)
    }

    /// Reads a vector count and checks it against the remaining input: each element takes at
    /// least `min_elem_len` bytes (and a count above the byte count is refused even for
    /// zero-length elements), so a hostile count cannot make the caller allocate.
    pub fn read_count(&mut self, min_elem_len: usize) -> Result<usize, TlError> {
        let count = self.read_u32()?;
        let remaining = self.remaining();
        let needed = u64::from(count).saturating_mul(min_elem_len.max(1) as u64);
        if needed > remaining as u64 {
            return Err(TlError::LengthTooLarge {
                len: u64::from(count),
                remaining,
            });
        }
        // `count <= remaining` here, and `remaining` fits in usize.
        Ok(count as usize)
    }
}

/// Encoded size of a TL `bytes`/`string` holding `len` data bytes (prefix + data + padding).
pub fn tl_bytes_len(len: usize) -> usize {
    let header = if len < 254 {
        1
    } else if len < (1 << 24) {
        4
    } else {
        8
    };
    (header + len).div_ceil(4) * 4
}

/// Appends `data` as a TL `bytes`/`string`: length prefix, data, zero padding.
pub fn write_tl_bytes(out: &mut Vec<u8>, data: &[u8]) {
    let len = data.len();
    let start = out.len();
    if len < 254 {
        out.push(len as u8);
    } else if len < (1 << 24) {
        out.push(254);
        out.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
    } else {
        out.push(255);
        out.extend_from_slice(&(len as u64).to_le_bytes()[..7]);
    }
    out.extend_from_slice(data);
    let written = out.len() - start;
    out.resize(out.len() + (4 - written % 4) % 4, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_tl_bytes(&mut out, data);
        out
    }

    #[test]
    fn short_bytes_layout() {
        assert_eq!(encoded(b""), vec![0, 0, 0, 0]);
        assert_eq!(encoded(b"abc"), vec![3, b'a', b'b', b'c']);
        assert_eq!(encoded(b"abcd"), vec![4, b'a', b'b', b'c', b'd', 0, 0, 0]);
    }

    #[test]
    fn long_bytes_layout() {
        let data = vec![7u8; 254];
        let out = encoded(&data);
        assert_eq!(&out[..4], &[254, 254, 0, 0]);
        assert_eq!(out.len(), 4 + 256);
        assert_eq!(out.len(), tl_bytes_len(254));
        assert!(out[4 + 254..].iter().all(|&b| b == 0));
    }

    #[test]
    fn lengths_match_encoding() {
        for len in [0usize, 1, 2, 3, 4, 252, 253, 254, 255, 256, 1000, 70_000] {
            assert_eq!(encoded(&vec![1; len]).len(), tl_bytes_len(len), "len {len}");
        }
    }

    #[test]
    fn bytes_roundtrip_is_zero_copy() {
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let buf = Bytes::from(encoded(&data));
        let mut r = TlReader::new(buf.clone());
        let got = r.read_tl_bytes().unwrap();
        assert_eq!(&got[..], &data[..]);
        assert!(r.is_empty());
        // The slice points into the input buffer.
        assert_eq!(got.as_ptr(), buf[4..].as_ptr());
    }

    #[test]
    fn huge_length_is_refused_before_allocation() {
        let mut r = TlReader::new(Bytes::from_static(&[
            255, 255, 255, 255, 255, 255, 255, 0x7f,
        ]));
        assert!(matches!(
            r.read_tl_bytes(),
            Err(TlError::LengthTooLarge { .. })
        ));
        let mut r = TlReader::new(Bytes::from_static(&[254, 0xff, 0xff, 0xff, 1, 2]));
        assert!(matches!(
            r.read_tl_bytes(),
            Err(TlError::LengthTooLarge { .. })
        ));
    }

    #[test]
    fn non_zero_padding_is_accepted() {
        let mut r = TlReader::new(Bytes::from_static(&[1, b'x', 9, 9]));
        assert_eq!(&r.read_tl_bytes().unwrap()[..], b"x");
        assert!(r.is_empty());
    }

    #[test]
    fn missing_padding_is_eof() {
        let mut r = TlReader::new(Bytes::from_static(&[1, b'x']));
        assert!(matches!(
            r.read_tl_bytes(),
            Err(TlError::UnexpectedEof { .. })
        ));
    }

    #[test]
    fn count_bounded_by_input() {
        let mut r = TlReader::new(Bytes::from_static(&[3, 0, 0, 0, 1, 2, 3]));
        assert_eq!(r.clone().read_count(1).unwrap(), 3);
        assert!(matches!(
            r.read_count(4),
            Err(TlError::LengthTooLarge { len: 3, .. })
        ));
        let mut r = TlReader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
        assert!(r.read_count(0).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        fn dive(r: &mut TlReader, n: u32) -> Result<u32, TlError> {
            if n == 0 {
                return Ok(0);
            }
            r.nested(|r| dive(r, n - 1).map(|d| d + 1))
        }
        let mut r = TlReader::new(Bytes::new());
        assert_eq!(dive(&mut r, MAX_DEPTH).unwrap(), MAX_DEPTH);
        assert_eq!(
            dive(&mut r, MAX_DEPTH + 1),
            Err(TlError::TooDeep(MAX_DEPTH))
        );
        // Depth is restored after an error.
        assert_eq!(dive(&mut r, 3).unwrap(), 3);
    }

    #[test]
    fn peek_does_not_consume() {
        let mut r = TlReader::new(Bytes::from_static(&[1, 0, 0, 0]));
        assert_eq!(r.peek_u32().unwrap(), 1);
        assert_eq!(r.read_u32().unwrap(), 1);
        assert!(r.peek_u32().is_err());
    }
}
