//! Validated, fixed-capacity identifiers that copy like integers.
//!
//! Every identifier is stored inline (no heap) so that trade records, map keys and wire frames
//! stay compact and cheap to hash. The allowed alphabet is printable ASCII without spaces,
//! commas or quotes, so an identifier can never break a CSV line, a FIX field or a log line.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} {value:?} is longer than {max} bytes")]
    TooLong { kind: &'static str, value: String, max: usize },
    #[error("{kind} {value:?} has a character outside [A-Za-z0-9._:/-]")]
    BadCharacter { kind: &'static str, value: String },
}

/// Bytes allowed in identifiers: letters, digits and `. _ : / -`.
pub const fn is_ident_byte(byte: u8) -> bool {
    IDENT_BYTES[byte as usize]
}

/// `is_ident_byte` as comparisons, for loops over whole inline strings that the compiler turns
/// into vector instructions (a table is a load per byte, which it cannot).
#[inline]
const fn is_ident_byte_by_ranges(byte: u8) -> bool {
    let letter = (byte | 0x20).wrapping_sub(b'a') < 26;
    let digit = byte.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (byte == b'.')
        | (byte == b'_')
        | (byte == b':')
        | (byte == b'/')
        | (byte == b'-')
}

/// `is_ident_byte` as a table: one load per byte where the range tests were several branches
/// (every identifier of every decoded trade goes through it).
const IDENT_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-');
        byte += 1;
    }
    table
};

/// Inline ASCII string of at most `N` bytes. The unused tail is always zero, so the derived
/// `Eq`, `Ord` and `Hash` agree with string equality and order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InlineStr<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> InlineStr<N> {
    fn new_checked(kind: &'static str, value: &str) -> Result<Self, IdentError> {
        Self::from_bytes_checked(kind, value.as_bytes())
    }

    /// As `new_checked`, from bytes: the identifier alphabet is ASCII, so bytes that pass are
    /// valid UTF-8 without a separate check. Inlined: the decoders call it for every
    /// identifier, and the errors are built out of line.
    #[inline]
    fn from_bytes_checked(kind: &'static str, value: &[u8]) -> Result<Self, IdentError> {
        const { assert!(N <= u8::MAX as usize, "invariant: inline string length fits a u8") };
        if value.is_empty() || value.len() > N || !value.iter().all(|&byte| is_ident_byte(byte)) {
            return Err(Self::refusal(kind, value));
        }
        let mut bytes = [0u8; N];
        bytes[..value.len()].copy_from_slice(value);
        Ok(Self { bytes, len: value.len() as u8 })
    }

    /// As `from_bytes_checked(&buffer[..len])`, where `buffer` goes on past the identifier (a
    /// decoder's unread bytes; `len` at most `buffer.len()`). When `buffer` holds `N` bytes, it
    /// copies a fixed `N`, zeroes those past `len` and checks them all in one loop the compiler
    /// unrolls into vector instructions: a copy of exactly `len` bytes is a call to `memmove`,
    /// whose small stores the next read of the identifier (a wider one) stalls on. That was
    /// half the time of decoding a trade batch (docs/benchmarks.md, eighteenth session).
    #[inline(always)]
    fn from_prefix_checked(
        kind: &'static str,
        buffer: &[u8],
        len: usize,
    ) -> Result<Self, IdentError> {
        const { assert!(N <= u8::MAX as usize, "invariant: inline string length fits a u8") };
        let value = &buffer[..len.min(buffer.len())];
        let Some(window) = buffer.first_chunk::<N>() else {
            return Self::from_bytes_checked(kind, value);
        };
        if len == 0 || len > N {
            return Err(Self::refusal(kind, value));
        }
        // Byte-wide lane numbers, so that `at < len` is one byte comparison a lane.
        let lanes: [u8; N] = std::array::from_fn(|at| at as u8);
        let len8 = len as u8;
        let mut bytes = [0u8; N];
        let mut bad = false;
        for ((out, &byte), &at) in bytes.iter_mut().zip(window).zip(&lanes) {
            let keep = at < len8;
            *out = if keep { byte } else { 0 };
            bad |= keep & !is_ident_byte_by_ranges(byte);
        }
        if bad {
            return Err(Self::refusal(kind, value));
        }
        Ok(Self { bytes, len: len as u8 })
    }

    /// Why `from_bytes_checked` refuses `value`.
    #[cold]
    #[inline(never)]
    fn refusal(kind: &'static str, value: &[u8]) -> IdentError {
        let text = || String::from_utf8_lossy(value).into_owned();
        if value.is_empty() {
            IdentError::Empty { kind }
        } else if value.len() > N {
            IdentError::TooLong { kind, value: text(), max: N }
        } else {
            IdentError::BadCharacter { kind, value: text() }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    fn as_str(&self) -> &str {
        // Constructed only from validated ASCII, so this cannot fail; fall back to "" rather
        // than panic should that invariant ever be broken by a future change.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $max:expr, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(InlineStr<{ $max }>);

        impl $name {
            /// Longest accepted value, in bytes.
            pub const LEN_MAX: usize = $max;

            /// Validates `value` (non-empty, at most `LEN_MAX` bytes, `[A-Za-z0-9._:/-]`).
            pub fn new_checked(value: &str) -> Result<Self, IdentError> {
                InlineStr::new_checked($kind, value).map(Self)
            }

            /// `new_checked` from bytes, as a binary decoder has them: the same rules, and
            /// bytes that pass are ASCII, so no separate UTF-8 check.
            #[inline]
            pub fn from_bytes(value: &[u8]) -> Result<Self, IdentError> {
                InlineStr::from_bytes_checked($kind, value).map(Self)
            }

            /// `from_bytes(&buffer[..len])`, where `buffer` is a decoder's unread bytes and
            /// goes on past the identifier (`len` at most `buffer.len()`): the same result,
            /// without a copy of `len` bytes (`InlineStr::from_prefix_checked`).
            #[inline]
            pub fn from_prefix(buffer: &[u8], len: usize) -> Result<Self, IdentError> {
                InlineStr::from_prefix_checked($kind, buffer, len).map(Self)
            }

            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdentError;
            fn from_str(value: &str) -> Result<Self, IdentError> {
                Self::new_checked(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                // Binary formats take the bytes: bincode writes a string and a byte string
                // identically (length, then bytes), and this skips a UTF-8 check per field.
                if serializer.is_human_readable() {
                    serializer.serialize_str(self.as_str())
                } else {
                    serializer.serialize_bytes(self.0.as_bytes())
                }
            }
        }

        impl crate::canon::Canon for $name {
            #[inline]
            fn canon(&self, out: &mut Vec<u8>) {
                crate::canon::bytes(self.0.as_bytes(), out);
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                // A visitor rather than `String` or `Cow<str>` (which serde always makes owned):
                // decoding from a byte slice then validates in place, with no allocation.
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($kind)
                    }
                    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<$name, E> {
                        $name::new_checked(value).map_err(E::custom)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, value: &[u8]) -> Result<$name, E> {
                        $name::from_bytes(value).map_err(E::custom)
                    }
                }
                if deserializer.is_human_readable() {
                    deserializer.deserialize_str(Visitor)
                } else {
                    deserializer.deserialize_bytes(Visitor)
                }
            }
        }
    };
}

identifier!(
    /// A client firm of keel: the unit of isolation (journal, state, quotas, credentials).
    TenantId, 32, "tenant id"
);
identifier!(
    /// A clearing or executing firm inside a tenant (the tenant's own entities and give-up peers).
    FirmId, 16, "firm id"
);
identifier!(
    /// A trading account held by a firm.
    AccountId, 24, "account id"
);
identifier!(
    /// A listed contract in the instrument master (`ESZ6`, `ESZ6-C6000`).
    InstrumentId, 24, "instrument id"
);
identifier!(
    /// An exchange (MIC or short code: `CME`, `XEUR`, `ICE`).
    ExchangeId, 12, "exchange id"
);
identifier!(
    /// An exchange product code (`ES`, `FGBL`): the family of listed contract months.
    ProductId, 16, "product id"
);
identifier!(
    /// The client's idempotency key for one trade report (FIX TradeReportID, tag 571).
    ReportId, 32, "report id"
);
identifier!(
    /// An average-price group: fills booked together and allocated at their average price.
    GroupId, 24, "average-price group id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_validate_their_input() {
        let long = "A".repeat(33);
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("ACC-1", Ok("ACC-1")),
            ("a.b_c:d/e-f", Ok("a.b_c:d/e-f")),
            ("", Err("report id is empty")),
            ("has space", Err("outside")),
            ("comma,", Err("outside")),
            ("é", Err("outside")),
            (&long, Err("longer than 32 bytes")),
        ];
        for (input, expected) in cases {
            let got = ReportId::new_checked(input);
            match (expected, got) {
                (Ok(want), Ok(id)) => assert_eq!(id.as_str(), *want),
                (Err(fragment), Err(error)) => {
                    assert!(error.to_string().contains(fragment), "{input:?}: {error}")
                }
                (expected, got) => panic!("{input:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn order_and_equality_follow_the_string() {
        let a = AccountId::new_checked("A").unwrap();
        let ab = AccountId::new_checked("AB").unwrap();
        let b = AccountId::new_checked("B").unwrap();
        assert!(a < ab && ab < b);
        assert_eq!(a, AccountId::new_checked("A").unwrap());
    }

    #[test]
    fn serde_round_trips_and_rejects_invalid() {
        let id = InstrumentId::new_checked("ESZ6-C6000").unwrap();
        let bytes = bincode::serialize(&id).unwrap();
        assert_eq!(bincode::deserialize::<InstrumentId>(&bytes).unwrap(), id);
        // Binary formats carry the bytes: the same encoding as the string (length, bytes).
        assert_eq!(bytes, bincode::serialize("ESZ6-C6000").unwrap());
        let table: [(&[u8], &str); 4] = [
            (b"no spaces", "outside"),
            (b"", "is empty"),
            (&[0xff, 0x41], "outside"),
            (&[b'A'; 25], "longer than 24"),
        ];
        for (input, error) in table {
            // A `Vec<u8>` encodes as a byte string does in bincode: length, then bytes.
            let bad = bincode::serialize(&input.to_vec()).unwrap();
            let got = bincode::deserialize::<InstrumentId>(&bad).unwrap_err().to_string();
            assert!(got.contains(error), "{input:?}: {got}");
        }
        // Text formats carry the string.
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"ESZ6-C6000\"");
    }

    /// The comparisons and the table allow the same bytes, all 256 of them.
    #[test]
    fn the_byte_check_by_ranges_is_the_table() {
        for byte in 0..=u8::MAX {
            assert_eq!(is_ident_byte_by_ranges(byte), is_ident_byte(byte), "byte {byte:#04x}");
        }
    }

    /// `from_prefix` gives what `from_bytes` gives for the identifier's bytes, whatever
    /// follows them, on both of its paths (a buffer of `LEN_MAX` bytes or more, and a shorter
    /// one), the refusals included; a value equal to `from_bytes`'s has its tail zeroed.
    #[test]
    fn from_prefix_is_from_bytes_of_the_prefix() {
        let long = [b'A'; 25];
        let cases: &[(&[u8], usize)] = &[
            (b"ACC-1", 5),
            (b"ACC-1 and bytes that are not in the alphabet, well past 24", 5),
            (b"ACC-1\xff\x00", 5),
            (b"A", 1),
            (b"ABCDEFGHIJKLMNOPQRSTUVWX and more", 24),
            (b"ABCDEFGHIJKLMNOPQRSTUVWX", 24),
            (&long, 25),
            (b"", 0),
            (b"followed by more than twenty-four bytes", 0),
            (b"AC C-1 and more than twenty-four bytes after it", 5),
            (b"ACC-\xe9 and more than twenty-four bytes after it", 5),
            (b",ACC-1 and more than twenty-four bytes after it", 6),
            (b"ACC,", 4),
            (b"a.b_c:d/e-f", 11),
        ];
        for &(buffer, len) in cases {
            let expected = AccountId::from_bytes(&buffer[..len]);
            assert_eq!(AccountId::from_prefix(buffer, len), expected, "{buffer:?} up to {len}");
        }
        // Every length with every kind of byte at its last place, in a buffer of garbage.
        for len in 1..=AccountId::LEN_MAX {
            for byte in 0..=u8::MAX {
                let mut buffer = [0xffu8; 40];
                buffer[..len].fill(b'x');
                buffer[len - 1] = byte;
                let expected = AccountId::from_bytes(&buffer[..len]);
                assert_eq!(AccountId::from_prefix(&buffer, len), expected, "{len} {byte:#04x}");
            }
        }
    }
}
