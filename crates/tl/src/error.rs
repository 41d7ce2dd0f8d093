//! The one error type of TL decoding. Encoding cannot fail (it writes into a `Vec<u8>`), so
//! nothing here describes an encoding problem.

/// Why a TL value could not be decoded.
///
/// Every variant carries only numbers (ids, lengths), never payload bytes, so an error can be
/// logged without leaking message content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlError {
    /// The input ended inside a value.
    #[error("unexpected end of input: needed {needed} bytes, {remaining} left")]
    UnexpectedEof { needed: usize, remaining: usize },
    /// A boxed enum met a constructor id it does not list.
    #[error("unknown constructor id {0:#010x}")]
    UnknownConstructor(u32),
    /// A boxed struct met a different constructor id than its own.
    #[error("expected constructor {expected:#010x}, found {found:#010x}")]
    UnexpectedConstructor { expected: u32, found: u32 },
    /// A `Bool` was neither `boolTrue` nor `boolFalse`.
    #[error("invalid Bool constructor {0:#010x}")]
    InvalidBool(u32),
    /// A TL `string` was not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A `bytes`/`string` length or a vector count exceeds what is left of the input; rejected
    /// before anything is allocated.
    #[error("length or count {len} exceeds the {remaining} bytes left")]
    LengthTooLarge { len: u64, remaining: usize },
    /// Values nest deeper than [`crate::MAX_DEPTH`].
    #[error("values nest deeper than {0} levels")]
    TooDeep(u32),
    /// [`crate::from_bytes`] decoded a value but input was left over.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}
