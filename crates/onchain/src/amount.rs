//! TON amounts as people write them: "1.5" ⇄ 1 500 000 000 nanoTON. Integer arithmetic only.

/// nanoTON in one TON.
pub const NANO: u128 = 1_000_000_000;

/// Why an amount did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad TON amount {0:?}: expected digits with at most 9 decimals, e.g. 1.5")]
pub struct AmountError(pub String);

/// "1.5" TON → 1 500 000 000 nanoTON (at most 9 decimals, no sign, bounded).
pub fn parse_ton(s: &str) -> Result<u128, AmountError> {
    let bad = || AmountError(s.chars().take(40).collect());
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty()) || frac.len() > 9 || int.len() > 20 {
        return Err(bad());
    }
    let digits = |d: &str| d.chars().all(|c| c.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return Err(bad());
    }
    let i: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let f: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    i.checked_mul(NANO)
        .and_then(|v| v.checked_add(f))
        .ok_or_else(bad)
}

/// nanoTON → "1.5".
pub fn format_ton(n: u128) -> String {
    let (i, f) = (n / NANO, n % NANO);
    if f == 0 {
        i.to_string()
    } else {
        format!("{i}.{}", format!("{f:09}").trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip_and_reject_garbage() {
        assert_eq!(parse_ton("1.5").unwrap(), 1_500_000_000);
        assert_eq!(parse_ton("0.000000001").unwrap(), 1);
        assert_eq!(parse_ton("2").unwrap(), 2_000_000_000);
        assert_eq!(parse_ton(".5").unwrap(), 500_000_000);
        for bad in [
            "-1",
            "1.0000000001",
            "",
            ".",
            "1e9",
            "1,5",
            "999999999999999999999",
        ] {
            assert!(parse_ton(bad).is_err(), "{bad}");
        }
        assert_eq!(format_ton(1_500_000_000), "1.5");
        assert_eq!(format_ton(1), "0.000000001");
        assert_eq!(format_ton(3_000_000_000), "3");
        assert_eq!(format_ton(0), "0");
        for n in [0u128, 1, 999, 1_000_000_000, 123_456_789_012] {
            assert_eq!(parse_ton(&format_ton(n)).unwrap(), n);
        }
    }
}
