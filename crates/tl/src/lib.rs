//! Binary TL as Cocoon and TON use it: the codec traits, the built-in types, the schema id rule,
//! and (re-exported from `cocoon-tl-derive`) the derive macros that make each message a plain
//! Rust type. No Cocoon message is defined here; those live in `cocoon-proto`.
//!
//! - [`TlWrite`] / [`TlRead`]: encode into a `Vec<u8>` (cannot fail) / decode from a
//!   [`TlReader`] over `bytes::Bytes` (so `bytes` fields are zero-copy slices of the input).
//! - Boxed types (whose encoding starts with their 32-bit constructor id) implement [`TlBoxed`];
//!   every struct that knows its TL constructor implements [`TlConstructor`]; boxed enums that
//!   dispatch on the id implement [`TlEnum`].
//! - Type mapping: `int`=`i32`, `#`=`u32`, `long`=`i64`, `double`=`f64`, `Bool`=`bool`,
//!   `int128`=`[u8; 16]`, `int256`=`[u8; 32]`, `bytes`=`Bytes`, `string`=`String` (UTF-8
//!   checked), `(vector T)`=`Vec<T>`, `flags.N?T`=`Option<T>`, `flags.N?true`=`bool`.
//! - Decoding is bounded: lengths and counts are checked against the remaining input before
//!   allocating, nesting is capped at [`MAX_DEPTH`], and no input makes it panic.
//!
//! # Derive
//! ```
//! use cocoon_tl::{TlRead, TlWrite, TlBoxed};
//!
//! #[derive(Debug, PartialEq, TlRead, TlWrite)]
//! #[tl(boxed, schema = "tcp.ping id:long = tcp.Packet")]
//! struct TcpPing { id: i64 }
//!
//! assert_eq!(TcpPing::ID, 0xbbe9627c);
//! let bytes = cocoon_tl::to_bytes(&TcpPing { id: 1 });
//! assert_eq!(&bytes[..4], &0xbbe9627cu32.to_le_bytes());
//! let back: TcpPing = cocoon_tl::from_bytes(&bytes.into()).unwrap();
//! assert_eq!(back, TcpPing { id: 1 });
//! ```
//! Container attributes: `boxed`; `schema = "<combinator>"` (id computed at compile time, and the
//! field names and flag attributes are checked against it) or `id = 0x...` (with optional
//! `name = "..."`). Field attributes: `flags` (the `#` word), `flag = N` on an `Option<T>`,
//! `flag = N, flag_true` on a `bool`, `redact` (hidden by `TlDebug`). Enums: every variant wraps
//! one boxed struct; decoding dispatches on the leading id. On encode the flags word is the
//! stored value with the bits owned by optional fields replaced by which of them are present.
//! `#[derive(TlDebug)]` writes a `Debug` that prints `bytes` fields as their length only.

// Derived code names `::cocoon_tl`; this lets the crate's own tests use the derives.
extern crate self as cocoon_tl;

mod error;
mod primitives;
mod reader;
mod schema;

pub use bytes::Bytes;
pub use cocoon_tl_derive::{TlDebug, TlRead, TlWrite};
pub use error::TlError;
pub use primitives::{BOOL_FALSE, BOOL_TRUE};
pub use reader::{tl_bytes_len, write_tl_bytes, TlReader, MAX_DEPTH};
pub use schema::{constructor_id, normalize_combinator, parse_schema, SchemaEntry};

/// Encodes a TL value. Boxed types write their constructor id as part of `write_to`.
pub trait TlWrite {
    /// Appends the encoding of `self` to `out`.
    fn write_to(&self, out: &mut Vec<u8>);
    /// The exact number of bytes `write_to` appends.
    fn encoded_len(&self) -> usize;
}

/// Decodes a TL value.
pub trait TlRead: Sized {
    /// A lower bound on the encoded size of any value, used to refuse vector counts the input
    /// cannot possibly hold. Zero is always correct, merely less strict.
    const MIN_ENCODED_LEN: usize = 0;
    /// Reads one value, advancing `r` past it.
    fn read_from(r: &mut TlReader) -> Result<Self, TlError>;
}

/// A type whose encoding starts with its 32-bit constructor id.
pub trait TlBoxed {
    /// The constructor id.
    const ID: u32;
}

/// A struct generated for one TL constructor (boxed or bare).
pub trait TlConstructor {
    /// The constructor id (written first when the type is boxed).
    const CONSTRUCTOR_ID: u32;
    /// The TL name, e.g. `tcp.ping` (empty when the type was declared with a bare `id`).
    const TL_NAME: &'static str;
    /// Whether `write_to` starts with the id.
    const BOXED: bool;
}

/// A boxed enum: one variant per constructor, dispatched on the leading id.
pub trait TlEnum {
    /// The ids of all variants, in declaration order.
    const CONSTRUCTOR_IDS: &'static [u32];
    /// The id of this value's constructor.
    fn constructor_id(&self) -> u32;
    /// The TL name of this value's constructor (for logs: names, never contents).
    fn tl_name(&self) -> &'static str;
    /// Whether `id` is one of this enum's constructors.
    fn accepts(id: u32) -> bool {
        Self::CONSTRUCTOR_IDS.contains(&id)
    }
}

/// Encodes `v` into a fresh buffer of exactly `v.encoded_len()` bytes.
pub fn to_bytes<T: TlWrite + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.encoded_len());
    v.write_to(&mut out);
    out
}

/// Decodes a `T` that must span all of `b` (trailing bytes are an error).
pub fn from_bytes<T: TlRead>(b: &Bytes) -> Result<T, TlError> {
    let mut r = TlReader::new(b.clone());
    let v = T::read_from(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// The leading constructor id of an encoded boxed value, if there are at least 4 bytes.
pub fn peek_constructor(b: &[u8]) -> Option<u32> {
    let id: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(id))
}

/// Support code for derived impls; not a public API.
#[doc(hidden)]
pub mod __private {
    use super::TlWrite;

    /// Writes the default value where a flag bit shared with a present field forces this absent
    /// field onto the wire.
    pub fn write_default<T: TlWrite + Default>(_: &Option<T>, out: &mut Vec<u8>) {
        T::default().write_to(out);
    }

    /// Length of what [`write_default`] writes.
    pub fn default_len<T: TlWrite + Default>(_: &Option<T>) -> usize {
        T::default().encoded_len()
    }

    /// Debug stand-in for a `bytes` field: its length, never its content.
    pub struct BytesLen(pub usize);

    impl core::fmt::Debug for BytesLen {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "<{} bytes>", self.0)
        }
    }

    /// Debug stand-in for a `redact` field.
    pub struct Redacted;

    impl core::fmt::Debug for Redacted {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("<redacted>")
        }
    }
}

#[cfg(test)]
mod derive_tests;
