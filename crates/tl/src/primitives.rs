//! `TlRead`/`TlWrite` for the built-in TL types: `int`, `#`, `long`, `double`, `Bool`, `int128`,
//! `int256`, `bytes`, `string`, `(vector T)`. Message types are derived, not written here.
//!
//! `Bool` is boxed (`boolTrue#997275b5` / `boolFalse#bc799737`); a vector is bare (a `u32` count,
//! then the elements, each boxed or bare as its own type decides).

use bytes::Bytes;

use crate::{tl_bytes_len, write_tl_bytes, TlError, TlRead, TlReader, TlWrite};

/// Constructor id of `boolTrue = Bool`.
pub const BOOL_TRUE: u32 = 0x9972_75b5;
/// Constructor id of `boolFalse = Bool`.
pub const BOOL_FALSE: u32 = 0xbc79_9737;

/// Vectors start with capacity for at most this many elements; the rest grows as elements
/// actually decode, so a count that passes the input-size check still cannot force a large
/// allocation of big elements up front.
const MAX_PREALLOC: usize = 1024;

macro_rules! int_impl {
    ($t:ty, $read:ident, $n:expr) => {
        impl TlWrite for $t {
            fn write_to(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn encoded_len(&self) -> usize {
                $n
            }
        }
        impl TlRead for $t {
            const MIN_ENCODED_LEN: usize = $n;
            fn read_from(r: &mut TlReader) -> Result<Self, TlError> {
                r.$read()
            }
        }
    };
}

int_impl!(i32, read_i32, 4);
int_impl!(u32, read_u32, 4);
int_impl!(i64, read_i64, 8);
int_impl!(u64, read_u64, 8);
int_impl!(f64, read_f64, 8);

impl TlWrite for bool {
    fn write_to(&self, out: &mut Vec<u8>) {
        let id = if *self { BOOL_TRUE } else { BOOL_FALSE };
        out.extend_from_slice(&id.to_le_bytes());
    }
    fn encoded_len(&self) -> usize {
        4
    }
}

impl TlRead for bool {
    const MIN_ENCODED_LEN: usize = 4;
    fn read_from(r: &mut TlReader) -> Result<Self, TlError> {
        match r.read_u32()? {
            BOOL_TRUE => Ok(true),
            BOOL_FALSE => Ok(false),
            other => Err(TlError::InvalidBool(other)),
        }
    }
}

/// `int128` is `[u8; 16]`, `int256` is `[u8; 32]`: raw bytes in wire order.
impl<const N: usize> TlWrite for [u8; N] {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn encoded_len(&self) -> usize {
        N
    }
}

impl<const N: usize> TlRead for [u8; N] {
    const MIN_ENCODED_LEN: usize = N;
    fn read_from(r: &mut TlReader) -> Result<Self, TlError> {
        r.read_array()
    }
}

impl TlWrite for Bytes {
    fn write_to(&self, out: &mut Vec<u8>) {
        write_tl_bytes(out, self);
    }
    fn encoded_len(&self) -> usize {
        tl_bytes_len(self.len())
    }
}

impl TlRead for Bytes {
    const MIN_ENCODED_LEN: usize = 4;
    fn read_from(r: &mut TlReader) -> Result<Self, TlError> {
        r.read_tl_bytes()
    }
}

impl TlWrite for String {
    fn write_to(&self, out: &mut Vec<u8>) {
        write_tl_bytes(out, self.as_bytes());
    }
    fn encoded_len(&self) -> usize {
        tl_bytes_len(self.len())
    }
}

impl TlRead for String {
    const MIN_ENCODED_LEN: usize = 4;
    fn read_from(r: &mut TlReader) -> Result<Self, TlError> {
        let raw = r.read_tl_bytes()?;
        String::from_utf8(raw.to_vec()).map_err(|_| TlError::InvalidUtf8)
    }
}

impl<T: TlWrite> TlWrite for Vec<T> {
    fn write_to(&self, out: &mut Vec<u8>) {
        // A Vec longer than u32::MAX cannot exist in a frame of at most 2^24 bytes; saturate
        // rather than wrap so such a value can never be silently misread as a short vector.
        let count = u32::try_from(self.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for item in self {
            item.write_to(out);
        }
    }
    fn encoded_len(&self) -> usize {
        4 + self.iter().map(TlWrite::encoded_len).sum::<usize>()
    }
}

impl<T: TlRead> TlRead for Vec<T> {
    const MIN_ENCODED_LEN: usize = 4;
    fn read_from(r: &mut TlReader) -> Result<Self, TlError> {
        r.nested(|r| {
            let count = r.read_count(T::MIN_ENCODED_LEN)?;
            let mut out = Vec::with_capacity(count.min(MAX_PREALLOC));
            for _ in 0..count {
                out.push(T::read_from(r)?);
            }
            Ok(out)
        })
    }
}

impl<T: TlWrite + ?Sized> TlWrite for &T {
    fn write_to(&self, out: &mut Vec<u8>) {
        (**self).write_to(out);
    }
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
}

impl<T: TlWrite + ?Sized> TlWrite for Box<T> {
    fn write_to(&self, out: &mut Vec<u8>) {
        (**self).write_to(out);
    }
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
}

impl<T: TlRead> TlRead for Box<T> {
    const MIN_ENCODED_LEN: usize = T::MIN_ENCODED_LEN;
    fn read_from(r: &mut TlReader) -> Result<Self, TlError> {
        T::read_from(r).map(Box::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{from_bytes, to_bytes};
    use proptest::prelude::*;

    fn roundtrip<T: TlWrite + TlRead + PartialEq + std::fmt::Debug>(v: &T) {
        let b = to_bytes(v);
        assert_eq!(b.len(), v.encoded_len());
        let back: T = from_bytes(&Bytes::from(b)).unwrap();
        assert_eq!(&back, v);
    }

    #[test]
    fn ints_are_little_endian() {
        assert_eq!(to_bytes(&0x0102_0304i32), vec![4, 3, 2, 1]);
        assert_eq!(to_bytes(&-1i64), vec![0xff; 8]);
        assert_eq!(to_bytes(&1.0f64), 1.0f64.to_le_bytes().to_vec());
    }

    #[test]
    fn bool_is_boxed() {
        assert_eq!(to_bytes(&true), vec![0xb5, 0x75, 0x72, 0x99]);
        assert_eq!(to_bytes(&false), vec![0x37, 0x97, 0x79, 0xbc]);
        let bad = Bytes::from_static(&[1, 2, 3, 4]);
        assert_eq!(
            from_bytes::<bool>(&bad),
            Err(TlError::InvalidBool(0x0403_0201))
        );
    }

    #[test]
    fn string_rejects_invalid_utf8() {
        let b = Bytes::from_static(&[2, 0xff, 0xfe, 0]);
        assert_eq!(from_bytes::<String>(&b), Err(TlError::InvalidUtf8));
        assert_eq!(
            from_bytes::<Bytes>(&b).unwrap(),
            Bytes::from_static(&[0xff, 0xfe])
        );
    }

    #[test]
    fn vector_is_bare_count_then_elements() {
        let v = vec![1i32, 2];
        assert_eq!(to_bytes(&v), vec![2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
        roundtrip(&v);
        roundtrip(&vec![[7u8; 32], [9u8; 32]]);
        roundtrip(&vec![String::from("a"), String::new()]);
    }

    #[test]
    fn vector_count_is_checked_against_element_size() {
        // Claims 2 int256 elements but only 36 bytes follow: refused before decoding any.
        let mut raw = vec![2, 0, 0, 0];
        raw.extend_from_slice(&[0u8; 36]);
        assert!(matches!(
            from_bytes::<Vec<[u8; 32]>>(&Bytes::from(raw)),
            Err(TlError::LengthTooLarge { len: 2, .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let b = Bytes::from_static(&[1, 0, 0, 0, 0]);
        assert_eq!(from_bytes::<i32>(&b), Err(TlError::TrailingBytes(1)));
    }

    proptest! {
        #[test]
        fn bytes_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let v = Bytes::from(data);
            let enc = to_bytes(&v);
            prop_assert_eq!(enc.len() % 4, 0);
            prop_assert_eq!(enc.len(), v.encoded_len());
            prop_assert_eq!(from_bytes::<Bytes>(&Bytes::from(enc)).unwrap(), v);
        }

        #[test]
        fn string_roundtrip(s in ".{0,300}") {
            roundtrip(&s);
        }

        #[test]
        fn nested_vectors_roundtrip(v in proptest::collection::vec(
            proptest::collection::vec(any::<i64>(), 0..5), 0..5)) {
            roundtrip(&v);
        }

        #[test]
        fn scalars_roundtrip(a in any::<i32>(), b in any::<i64>(), c in any::<u64>(),
                             d in any::<bool>(), e in -1e300f64..1e300) {
            roundtrip(&a);
            roundtrip(&b);
            roundtrip(&c);
            roundtrip(&d);
            roundtrip(&e);
        }

        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let b = Bytes::from(data);
            let _ = from_bytes::<Vec<Vec<String>>>(&b);
            let _ = from_bytes::<Vec<Bytes>>(&b);
            let _ = from_bytes::<Vec<bool>>(&b);
        }
    }
}
