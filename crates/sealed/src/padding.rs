//! [`Padding`] and the padded plaintext form shared by request bodies and answer pieces:
//! `len` (u32, big-endian) ‖ plaintext ‖ zero bytes.
//!
//! With [`Padding::Buckets`] the padded form is `max(min, next_power_of_two(4 + len))` bytes
//! (`min` = 1024 for requests, 64 for answer pieces), so a ciphertext's length says only which
//! power of two the plaintext falls under. The cost: at most 2× the unpadded form `4 + len`
//! (for small inputs, at most the minimum bucket), plus nothing on the wire, since the length
//! prefix sits inside the ciphertext either way. Opening needs no policy: it reads the prefix.
//!
//! What must not live here: encryption, and plaintext bytes in errors.

use zeroize::Zeroizing;

use crate::SealError;

/// Smallest padded request plaintext (length prefix included) with [`Padding::Buckets`].
pub(crate) const REQUEST_MIN_BUCKET: usize = 1024;
/// Smallest padded answer piece plaintext (length prefix included) with [`Padding::Buckets`].
pub(crate) const PIECE_MIN_BUCKET: usize = 64;
/// Length of the length prefix.
pub(crate) const LEN_PREFIX: usize = 4;

/// Padding policy for plaintexts before sealing.
///
/// `Buckets`: request plaintexts are padded up to the next power of two, at least 1024 bytes;
/// answer pieces up to the next power of two, at least 64 bytes (length prefix included). The
/// true length is inside the ciphertext, so opening returns exactly the original bytes. The
/// overhead is at most 2× (or the minimum bucket for small plaintexts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Padding {
    /// Only the 4-byte length prefix is added.
    #[default]
    None,
    /// Padded to power-of-two buckets (see the type's doc).
    Buckets,
}

// === impl Padding ===

impl Padding {
    /// Length of the padded form of `len` plaintext bytes, or `None` past `u32::MAX`.
    pub(crate) fn padded_len(self, len: usize, min_bucket: usize) -> Option<usize> {
        if u32::try_from(len).is_err() {
            return None;
        }
        let unpadded = len.checked_add(LEN_PREFIX)?;
        match self {
            Padding::None => Some(unpadded),
            Padding::Buckets => Some(unpadded.checked_next_power_of_two()?.max(min_bucket)),
        }
    }
}

/// The padded form of `data`, `extra` spare bytes of capacity reserved (for the AEAD tag).
/// The caller checks `padded_len` first; a length past `u32::MAX` is [`SealError::TooLarge`].
pub(crate) fn pad(
    data: &[u8],
    padded_len: usize,
    extra: usize,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let len = u32::try_from(data.len()).map_err(|_| SealError::TooLarge { len: data.len() })?;
    let mut buf = Zeroizing::new(Vec::with_capacity(padded_len.saturating_add(extra)));
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(data);
    let unpadded = buf.len();
    buf.resize(padded_len.max(unpadded), 0);
    Ok(buf)
}

/// The plaintext inside a padded form: checks the prefix and that the padding is zero.
pub(crate) fn unpad(padded: &[u8]) -> Result<&[u8], SealError> {
    let (prefix, rest) = padded
        .split_first_chunk::<LEN_PREFIX>()
        .ok_or(SealError::BadPadding)?;
    let len = usize::try_from(u32::from_be_bytes(*prefix)).map_err(|_| SealError::BadPadding)?;
    if len > rest.len() {
        return Err(SealError::BadPadding);
    }
    let (data, padding) = rest.split_at(len);
    // Not secret-dependent in a way that matters: the padded length is public, and only the
    // holder of the key can produce non-zero padding.
    if padding.iter().any(|&b| b != 0) {
        return Err(SealError::BadPadding);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_sizes() {
        let b = Padding::Buckets;
        assert_eq!(b.padded_len(0, REQUEST_MIN_BUCKET), Some(1024));
        assert_eq!(b.padded_len(1020, REQUEST_MIN_BUCKET), Some(1024));
        assert_eq!(b.padded_len(1021, REQUEST_MIN_BUCKET), Some(2048));
        assert_eq!(b.padded_len(0, PIECE_MIN_BUCKET), Some(64));
        assert_eq!(b.padded_len(61, PIECE_MIN_BUCKET), Some(128));
        assert_eq!(Padding::None.padded_len(10, 1024), Some(14));
        for len in [0usize, 1, 100, 1000, 5000, 70_000, 1 << 20] {
            let p = b.padded_len(len, REQUEST_MIN_BUCKET).unwrap();
            assert!(p.is_power_of_two());
            assert!(p >= len + 4);
            assert!(p <= (2 * (len + 4)).max(REQUEST_MIN_BUCKET));
        }
    }

    #[test]
    fn pad_unpad_round_trip() {
        for padding in [Padding::None, Padding::Buckets] {
            for len in [0usize, 1, 59, 60, 61, 1000, 3000] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let n = padding.padded_len(len, PIECE_MIN_BUCKET).unwrap();
                let padded = pad(&data, n, 16).unwrap();
                assert_eq!(padded.len(), n);
                assert_eq!(unpad(&padded).unwrap(), data.as_slice());
            }
        }
    }

    #[test]
    fn unpad_refuses_bad_forms() {
        assert_eq!(unpad(&[0, 0, 0]), Err(SealError::BadPadding));
        assert_eq!(unpad(&[0, 0, 0, 2, 1]), Err(SealError::BadPadding));
        assert_eq!(unpad(&[0, 0, 0, 1, 1, 1]), Err(SealError::BadPadding));
        assert_eq!(unpad(&[0, 0, 0, 1, 1, 0]), Ok(&[1u8][..]));
        assert_eq!(unpad(&[0xff, 0xff, 0xff, 0xff]), Err(SealError::BadPadding));
    }
}
