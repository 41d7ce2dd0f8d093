//! Thin helpers over tycho-types cells: bounded BOC decode/encode, StateInit from code+data, the
//! contract address that StateInit implies, and conversions between tycho and tonlib-core cells.
//!
//! What lives here: generic cell plumbing only. Contract layouts live in `contracts`, signatures in
//! `payments`. Every decode takes a byte limit so untrusted BOCs cannot make us allocate without bound.

use tycho_types::boc::Boc;
use tycho_types::cell::{Cell, CellBuilder, CellContext, CellFamily, CellSlice, Load, Store};
use tycho_types::dict::Dict;
use tycho_types::models::{StateInit, StdAddr};

use crate::address::TonAddress;

/// Default limit for BOCs we accept from the network or a file (a whole contract code is ~10 KiB;
/// the biggest thing we ever load is a config BOC of ~115 KiB).
pub const MAX_BOC_BYTES: usize = 256 * 1024;

/// Errors of cell building and parsing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CellError {
    #[error("BOC is {size} bytes, limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("bad BOC: {0}")]
    Boc(String),
    #[error("bad base64")]
    Base64,
    #[error("cell layout: {0}")]
    Layout(#[from] tycho_types::error::Error),
    #[error("unexpected value: {0}")]
    Unexpected(&'static str),
    #[error("unsupported params struct version {0} (this build reads 3, 4 and 5)")]
    UnsupportedStructVersion(u8),
    #[error("tonlib-core cell: {0}")]
    Tonlib(String),
}

/// Decodes a single-root BOC of at most `limit` bytes.
pub fn decode_boc(bytes: &[u8], limit: usize) -> Result<Cell, CellError> {
    if bytes.len() > limit {
        return Err(CellError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    Boc::decode(bytes).map_err(|e| CellError::Boc(e.to_string()))
}

/// Decodes a base64 single-root BOC of at most `limit` decoded bytes.
pub fn decode_boc_base64(text: &str, limit: usize) -> Result<Cell, CellError> {
    use base64::Engine as _;
    // 4 base64 chars carry 3 bytes: refuse before allocating.
    if text.len() / 4 * 3 > limit + 3 {
        return Err(CellError::TooLarge {
            size: text.len() / 4 * 3,
            limit,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| CellError::Base64)?;
    decode_boc(&bytes, limit)
}

/// Encodes a cell tree as a BOC (no index, with CRC, like toncenter and the sandbox produce).
pub fn encode_boc(cell: &Cell) -> Vec<u8> {
    Boc::encode(cell)
}

/// Base64 of [`encode_boc`].
pub fn encode_boc_base64(cell: &Cell) -> String {
    Boc::encode_base64(cell)
}

/// The empty cell context for `store_into`/builders.
pub fn ctx() -> &'static dyn CellContext {
    Cell::empty_context()
}

/// Stores any tycho `Store` value (Tokens, StdAddr, ...) into a builder.
pub fn store<T: Store + ?Sized>(b: &mut CellBuilder, v: &T) -> Result<(), CellError> {
    v.store_into(b, ctx())?;
    Ok(())
}

/// Loads any tycho `Load` value from a slice.
pub fn load<'a, T: Load<'a>>(s: &mut CellSlice<'a>) -> Result<T, CellError> {
    Ok(T::load_from(s)?)
}

/// Fails unless the slice is fully consumed (strict parsing, like the contracts do).
pub fn expect_end(s: &CellSlice<'_>) -> Result<(), CellError> {
    if s.size_bits() != 0 || s.size_refs() != 0 {
        return Err(CellError::Unexpected("trailing data"));
    }
    Ok(())
}

/// `StateInit { code, data }` without libraries or special flags.
pub fn state_init(code: Cell, data: Cell) -> StateInit {
    StateInit {
        split_depth: None,
        special: None,
        code: Some(code),
        data: Some(data),
        libraries: Dict::new(),
    }
}

/// The StateInit serialized as a cell.
pub fn state_init_cell(init: &StateInit) -> Result<Cell, CellError> {
    Ok(CellBuilder::build_from(init)?)
}

/// Workchain-0 address of a contract with this code and data (hash of the StateInit cell).
pub fn contract_address(code: &Cell, data: &Cell) -> Result<TonAddress, CellError> {
    let cell = state_init_cell(&state_init(code.clone(), data.clone()))?;
    Ok(TonAddress::new(0, cell.repr_hash().0))
}

/// Writes a `MsgAddressInt` (addr_std, no anycast).
pub fn store_addr(b: &mut CellBuilder, a: &TonAddress) -> Result<(), CellError> {
    store(b, &a.to_std())
}

/// Reads a `MsgAddressInt` that must be addr_std.
pub fn load_addr(s: &mut CellSlice<'_>) -> Result<TonAddress, CellError> {
    let a: StdAddr = load(s)?;
    if a.anycast.is_some() {
        return Err(CellError::Unexpected("anycast address"));
    }
    Ok(TonAddress::from_std(&a))
}

/// tycho cell -> tonlib-core cell (through BOC bytes; cheap for message-sized trees).
pub fn to_tonlib(cell: &Cell) -> Result<tonlib_core::cell::ArcCell, CellError> {
    let boc = encode_boc(cell);
    tonlib_core::cell::BagOfCells::parse(&boc)
        .and_then(|b| b.single_root())
        .map_err(|e| CellError::Tonlib(e.to_string()))
}

/// tonlib-core cell -> tycho cell.
pub fn from_tonlib(cell: &tonlib_core::cell::Cell) -> Result<Cell, CellError> {
    let boc = tonlib_core::cell::BagOfCells::from_root(cell.clone())
        .serialize(true)
        .map_err(|e| CellError::Tonlib(e.to_string()))?;
    decode_boc(&boc, MAX_BOC_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boc_round_trip_and_limit() {
        let mut b = CellBuilder::new();
        b.store_u32(0xdead_beef).unwrap();
        let c = b.build().unwrap();
        let boc = encode_boc(&c);
        assert_eq!(decode_boc(&boc, 1024).unwrap().repr_hash(), c.repr_hash());
        assert!(matches!(
            decode_boc(&boc, 3),
            Err(CellError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_boc(b"not a boc", 1024),
            Err(CellError::Boc(_))
        ));
        let b64 = encode_boc_base64(&c);
        assert_eq!(decode_boc_base64(&b64, 1024).unwrap(), c);
        assert!(matches!(
            decode_boc_base64("!!!!", 1024),
            Err(CellError::Base64)
        ));
    }

    #[test]
    fn tonlib_conversion_keeps_hash() {
        let mut b = CellBuilder::new();
        b.store_u64(42).unwrap();
        b.store_reference(CellBuilder::new().build().unwrap())
            .unwrap();
        let c = b.build().unwrap();
        let t = to_tonlib(&c).unwrap();
        assert_eq!(t.cell_hash().as_slice(), c.repr_hash().as_slice());
        assert_eq!(from_tonlib(&t).unwrap(), c);
    }

    #[test]
    fn address_store_load() {
        let a = TonAddress::new(0, [7; 32]);
        let mut b = CellBuilder::new();
        store_addr(&mut b, &a).unwrap();
        let c = b.build().unwrap();
        let mut s = c.as_slice().unwrap();
        assert_eq!(load_addr(&mut s).unwrap(), a);
        expect_end(&s).unwrap();
    }
}
