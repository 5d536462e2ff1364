//! Leaf: a position in the write-ahead log ([`Lsn`]), as the replication protocol carries it
//! and as the state store keeps it (`pg_lsn` columns). A leaf so that the state store
//! ([`crate::state`]) can hold positions without importing [`crate::replication`].

use std::fmt;
use std::str::FromStr;

/// A position in the write-ahead log. PostgreSQL prints it as two hexadecimal halves, `16/B374D848`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`, which the server reads as "no position" (e.g. "start where the slot is").
    pub const INVALID: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN \"{0}\" (expected two hexadecimal numbers as in 16/B374D848)")]
pub struct LsnParseError(String);

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Lsn, LsnParseError> {
        let bad = || LsnParseError(s.to_owned());
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        // from_str_radix accepts a leading '+', PostgreSQL does not.
        let hex = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                None
            } else {
                u32::from_str_radix(part, 16).ok()
            }
        };
        let hi = hex(hi).ok_or_else(bad)?;
        let lo = hex(lo).ok_or_else(bad)?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Lsn {
        Lsn(value)
    }
}
