//! TON account addresses: `TonAddress { workchain, hash }` with the raw (`0:<64 hex>`) and user-friendly
//! (36 bytes `flags | workchain | hash | crc16-xmodem`, base64url or standard base64) text forms.
//!
//! What lives here: parsing/formatting and conversion to tycho's `StdAddr`. What must not: anything about
//! cells or messages (see `cells` and `contracts`). Anycast addresses and non-standard (var) addresses are
//! not supported: Cocoon contracts only use `addr_std` in workchain 0 (and -1 for masterchain wallets).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use tycho_types::cell::HashBytes;
use tycho_types::models::StdAddr;

/// Tag of a bounceable user-friendly address.
const TAG_BOUNCEABLE: u8 = 0x11;
/// Tag of a non-bounceable user-friendly address.
const TAG_NON_BOUNCEABLE: u8 = 0x51;
/// Bit added to the tag for testnet-only addresses.
const TAG_TESTNET: u8 = 0x80;

/// A standard internal address (`addr_std` without anycast).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TonAddress {
    /// Workchain id: 0 (basechain) or -1 (masterchain).
    pub workchain: i8,
    /// Account id: the representation hash of the account's StateInit.
    pub hash: [u8; 32],
}

/// Flags carried by the user-friendly form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FriendlyFlags {
    /// `true`: bounceable (`EQ..`/`Ef..`), `false`: non-bounceable (`UQ..`/`Uf..`).
    pub bounceable: bool,
    /// Testnet-only flag.
    pub testnet: bool,
    /// Standard base64 (`+/`) instead of base64url (`-_`).
    pub std_base64: bool,
}

/// Why an address string did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    #[error("address has wrong length {0}")]
    Length(usize),
    #[error("bad workchain in raw address")]
    Workchain,
    #[error("bad hex in raw address")]
    Hex,
    #[error("bad base64 in user-friendly address")]
    Base64,
    #[error("unknown user-friendly address tag {0:#04x}")]
    Tag(u8),
    #[error("address checksum mismatch")]
    Checksum,
}

impl TonAddress {
    /// Builds an address from its parts.
    pub const fn new(workchain: i8, hash: [u8; 32]) -> Self {
        Self { workchain, hash }
    }

    /// Raw form, `wc:hex` (lowercase).
    pub fn to_raw(&self) -> String {
        format!("{}:{}", self.workchain, hex::encode(self.hash))
    }

    /// User-friendly form with the given flags.
    pub fn to_friendly(&self, flags: FriendlyFlags) -> String {
        let mut buf = [0u8; 36];
        let mut tag = if flags.bounceable {
            TAG_BOUNCEABLE
        } else {
            TAG_NON_BOUNCEABLE
        };
        if flags.testnet {
            tag |= TAG_TESTNET;
        }
        buf[0] = tag;
        buf[1] = self.workchain as u8;
        buf[2..34].copy_from_slice(&self.hash);
        let crc = crc16_xmodem(&buf[..34]);
        buf[34..].copy_from_slice(&crc.to_be_bytes());
        if flags.std_base64 {
            STANDARD.encode(buf)
        } else {
            URL_SAFE.encode(buf)
        }
    }

    /// Bounceable base64url form, as wallets show contracts (`EQ...`).
    pub fn to_bounceable(&self) -> String {
        self.to_friendly(FriendlyFlags {
            bounceable: true,
            ..Default::default()
        })
    }

    /// Non-bounceable base64url form, as wallets show wallets (`UQ...`).
    pub fn to_non_bounceable(&self) -> String {
        self.to_friendly(FriendlyFlags::default())
    }

    /// Parses the raw form `wc:hex64`.
    pub fn parse_raw(s: &str) -> Result<Self, AddressError> {
        let (wc, h) = s.split_once(':').ok_or(AddressError::Length(s.len()))?;
        let workchain: i8 = wc.parse().map_err(|_| AddressError::Workchain)?;
        if h.len() != 64 {
            return Err(AddressError::Length(s.len()));
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(h, &mut hash).map_err(|_| AddressError::Hex)?;
        Ok(Self { workchain, hash })
    }

    /// Parses a user-friendly form (either alphabet); returns the address and its flags.
    pub fn parse_friendly(s: &str) -> Result<(Self, FriendlyFlags), AddressError> {
        if s.len() != 48 {
            return Err(AddressError::Length(s.len()));
        }
        let std_base64 = s.contains(['+', '/']);
        let bytes = if std_base64 {
            STANDARD.decode(s)
        } else {
            URL_SAFE.decode(s)
        }
        .map_err(|_| AddressError::Base64)?;
        let buf: [u8; 36] = bytes
            .try_into()
            .map_err(|v: Vec<u8>| AddressError::Length(v.len()))?;
        let crc = u16::from_be_bytes([buf[34], buf[35]]);
        if crc != crc16_xmodem(&buf[..34]) {
            return Err(AddressError::Checksum);
        }
        let tag = buf[0];
        let testnet = tag & TAG_TESTNET != 0;
        let bounceable = match tag & !TAG_TESTNET {
            TAG_BOUNCEABLE => true,
            TAG_NON_BOUNCEABLE => false,
            _ => return Err(AddressError::Tag(tag)),
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&buf[2..34]);
        Ok((
            Self {
                workchain: buf[1] as i8,
                hash,
            },
            FriendlyFlags {
                bounceable,
                testnet,
                std_base64,
            },
        ))
    }

    /// tycho's representation.
    pub fn to_std(&self) -> StdAddr {
        StdAddr::new(self.workchain, HashBytes(self.hash))
    }

    /// From tycho's representation (anycast is dropped: we never produce it).
    pub fn from_std(a: &StdAddr) -> Self {
        Self {
            workchain: a.workchain,
            hash: a.address.0,
        }
    }
}

impl FromStr for TonAddress {
    type Err = AddressError;

    /// Accepts the raw or any user-friendly form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Self::parse_raw(s)
        } else {
            Self::parse_friendly(s).map(|(a, _)| a)
        }
    }
}

impl fmt::Display for TonAddress {
    /// Raw form: it is unambiguous and what logs and the HTTP API accept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_raw())
    }
}

impl fmt::Debug for TonAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TonAddress({})", self.to_raw())
    }
}

impl serde::Serialize for TonAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_raw())
    }
}

impl<'de> serde::Deserialize<'de> for TonAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// CRC-16/XMODEM (poly 0x1021, init 0), the checksum of user-friendly addresses.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Printed by the wallet-v4r2 experiment (rust-ecosystem.md §9).
    const GOLDEN: &str = "EQCDM_QGggZ3qMa_f3lRPk4_qLDnLTqdi6OkMAV2NB9r5TG3";

    #[test]
    fn crc16_check_value() {
        // The standard check value of CRC-16/XMODEM.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
    }

    #[test]
    fn golden_friendly_round_trip() {
        let (a, f) = TonAddress::parse_friendly(GOLDEN).unwrap();
        assert_eq!(a.workchain, 0);
        assert!(f.bounceable && !f.testnet && !f.std_base64);
        assert_eq!(a.to_bounceable(), GOLDEN);
        assert!(a.to_non_bounceable().starts_with("UQ"));
        let raw = a.to_raw();
        assert_eq!(TonAddress::parse_raw(&raw).unwrap(), a);
        assert_eq!(raw.parse::<TonAddress>().unwrap(), a);
    }

    #[test]
    fn matches_tonlib_core_formatter() {
        let ours = TonAddress::parse_friendly(GOLDEN).unwrap().0;
        let theirs = tonlib_core::TonAddress::from_base64_url(GOLDEN).unwrap();
        assert_eq!(theirs.to_hex(), ours.to_raw());
        for (nb, tn) in [(false, false), (true, false), (false, true), (true, true)] {
            let f = FriendlyFlags {
                bounceable: !nb,
                testnet: tn,
                std_base64: false,
            };
            assert_eq!(ours.to_friendly(f), theirs.to_base64_url_flags(nb, tn));
            let f = FriendlyFlags {
                std_base64: true,
                ..f
            };
            assert_eq!(ours.to_friendly(f), theirs.to_base64_std_flags(nb, tn));
        }
    }

    #[test]
    fn rejects_bad_input() {
        let mut bad = GOLDEN.to_string();
        bad.replace_range(10..11, if &GOLDEN[10..11] == "A" { "B" } else { "A" });
        assert_eq!(
            TonAddress::parse_friendly(&bad),
            Err(AddressError::Checksum)
        );
        assert!(matches!(
            TonAddress::parse_friendly("EQ"),
            Err(AddressError::Length(2))
        ));
        assert_eq!(TonAddress::parse_raw("x:00"), Err(AddressError::Workchain));
        assert!(TonAddress::parse_raw(&format!("0:{}", "zz".repeat(32))).is_err());
        assert!(TonAddress::parse_raw("0:abcd").is_err());
    }

    proptest! {
        #[test]
        fn round_trips(wc in prop_oneof![Just(0i8), Just(-1i8)], hash in any::<[u8; 32]>(),
                       b in any::<bool>(), t in any::<bool>(), s in any::<bool>()) {
            let a = TonAddress::new(wc, hash);
            let f = FriendlyFlags { bounceable: b, testnet: t, std_base64: s };
            let text = a.to_friendly(f);
            let (pa, pf) = TonAddress::parse_friendly(&text).unwrap();
            // The alphabet is only detectable when a `+`/`/` or `-`/`_` occurs, so compare the rest.
            prop_assert_eq!(pa, a);
            prop_assert_eq!((pf.bounceable, pf.testnet), (b, t));
            prop_assert_eq!(TonAddress::parse_raw(&a.to_raw()).unwrap(), a);
            prop_assert_eq!(TonAddress::from_std(&a.to_std()), a);
        }
    }
}
