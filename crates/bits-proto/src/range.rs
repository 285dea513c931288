//! `Content-Range: bytes F-L/T` on Fragment packets.

use crate::headers::{trim_ows, trim_ows_start};
use std::fmt;

/// An inclusive byte range `first..=last` of a file of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentRange {
    /// Offset of the first byte in the fragment.
    pub first: u64,
    /// Offset of the last byte in the fragment (inclusive).
    pub last: u64,
    /// Size of the whole file.
    pub total: u64,
}

/// Why a `Content-Range` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The value does not start with the `bytes` unit.
    #[error("Content-Range must start with the unit 'bytes'")]
    MissingUnit,
    /// A part of `F-L/T` is missing or is not a decimal number.
    #[error("Content-Range must be 'bytes F-L/T' with decimal F, L and T")]
    Malformed,
    /// A number does not fit in 64 bits.
    #[error("Content-Range number does not fit in 64 bits")]
    Overflow,
    /// `L < F`.
    #[error("Content-Range last byte is before its first byte")]
    LastBeforeFirst,
    /// `T <= L`.
    #[error("Content-Range total length must be greater than its last byte")]
    TotalNotAfterLast,
    /// `Content-Length` differs from `L-F+1`.
    #[error("Content-Length {content_length} does not match the range length {range_length}")]
    LengthMismatch {
        /// What `Content-Length` said.
        content_length: u64,
        /// `L-F+1`.
        range_length: u64,
    },
}

impl ContentRange {
    /// Builds a range, checking the same invariants as [`ContentRange::parse`].
    pub fn new(first: u64, last: u64, total: u64) -> Result<Self, RangeError> {
        if last < first {
            return Err(RangeError::LastBeforeFirst);
        }
        if total <= last {
            return Err(RangeError::TotalNotAfterLast);
        }
        Ok(ContentRange { first, last, total })
    }

    /// Parses `bytes F-L/T`; the unit is case-insensitive, white space around the
    /// parts is tolerated, anything else (a missing part, trailing garbage, signs,
    /// `*`) is refused.
    pub fn parse(value: &[u8]) -> Result<Self, RangeError> {
        let value = trim_ows(value);
        let rest = match value.get(..5) {
            Some(unit) if unit.eq_ignore_ascii_case(b"bytes") => &value[5..],
            _ => return Err(RangeError::MissingUnit),
        };
        // The unit must be followed by white space or '=' (some clients send "bytes=").
        let rest = match rest.first() {
            Some(b' ' | b'\t' | b'=') => trim_ows_start(&rest[1..]),
            _ => return Err(RangeError::Malformed),
        };
        let dash = rest
            .iter()
            .position(|&b| b == b'-')
            .ok_or(RangeError::Malformed)?;
        let slash = rest
            .iter()
            .position(|&b| b == b'/')
            .ok_or(RangeError::Malformed)?;
        if slash < dash {
            return Err(RangeError::Malformed);
        }
        let first = parse_decimal(&rest[..dash])?;
        let last = parse_decimal(&rest[dash + 1..slash])?;
        let total = parse_decimal(&rest[slash + 1..])?;
        Self::new(first, last, total)
    }

    /// Number of bytes in the fragment (`L-F+1`).
    ///
    /// The fields are public, so a value built by hand may break `F <= L < T`; the
    /// arithmetic saturates instead of panicking on such a value (a parsed or
    /// [`ContentRange::new`] value never needs it).
    pub fn len(&self) -> u64 {
        self.last.saturating_sub(self.first).saturating_add(1)
    }

    /// A range always holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether this fragment carries the file's last byte.
    pub fn is_final(&self) -> bool {
        self.last.checked_add(1) == Some(self.total)
    }

    /// Checks `Content-Length == L-F+1`.
    pub fn check_length(&self, content_length: u64) -> Result<(), RangeError> {
        if content_length == self.len() {
            Ok(())
        } else {
            Err(RangeError::LengthMismatch {
                content_length,
                range_length: self.len(),
            })
        }
    }
}

impl fmt::Display for ContentRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes {}-{}/{}", self.first, self.last, self.total)
    }
}

/// Parses a non-empty run of ASCII digits (white space around it allowed).
pub(crate) fn parse_decimal(part: &[u8]) -> Result<u64, RangeError> {
    let part = trim_ows(part);
    if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
        return Err(RangeError::Malformed);
    }
    part.iter().try_fold(0u64, |acc, &digit| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(digit - b'0')))
            .ok_or(RangeError::Overflow)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ContentRange, RangeError> {
        ContentRange::parse(s.as_bytes())
    }

    #[test]
    fn parses_the_canonical_form() {
        assert_eq!(parse("bytes 0-99/1000"), ContentRange::new(0, 99, 1000));
        assert_eq!(parse("bytes 128-212/213").unwrap().len(), 85);
    }

    #[test]
    fn unit_is_case_insensitive() {
        assert!(parse("Bytes 0-0/1").is_ok());
        assert!(parse("BYTES 0-0/1").is_ok());
    }

    #[test]
    fn tolerates_white_space_and_an_equals_sign() {
        assert_eq!(parse("  bytes  5 - 9 / 10 "), ContentRange::new(5, 9, 10));
        assert_eq!(parse("bytes=5-9/10"), ContentRange::new(5, 9, 10));
    }

    #[test]
    fn rejects_a_missing_unit() {
        assert_eq!(parse("0-9/10"), Err(RangeError::MissingUnit));
        assert_eq!(parse("byte 0-9/10"), Err(RangeError::MissingUnit));
        assert_eq!(parse("bytes0-9/10"), Err(RangeError::Malformed));
    }

    #[test]
    fn rejects_missing_parts() {
        for bad in [
            "bytes -9/10",
            "bytes 0-/10",
            "bytes 0-9/",
            "bytes 0-9",
            "bytes 0/10",
            "bytes */10",
            "bytes 0-9/*",
            "bytes ",
        ] {
            assert_eq!(parse(bad), Err(RangeError::Malformed), "{bad}");
        }
    }

    #[test]
    fn rejects_trailing_garbage_and_signs() {
        for bad in [
            "bytes 0-9/10x",
            "bytes 0-9/10/11",
            "bytes +0-9/10",
            "bytes 0-9-1/10",
        ] {
            assert_eq!(parse(bad), Err(RangeError::Malformed), "{bad}");
        }
    }

    #[test]
    fn rejects_last_before_first() {
        assert_eq!(parse("bytes 10-9/100"), Err(RangeError::LastBeforeFirst));
    }

    #[test]
    fn rejects_total_not_after_last() {
        assert_eq!(parse("bytes 0-9/9"), Err(RangeError::TotalNotAfterLast));
        assert_eq!(parse("bytes 0-9/5"), Err(RangeError::TotalNotAfterLast));
    }

    #[test]
    fn rejects_numbers_that_overflow() {
        assert_eq!(
            parse("bytes 0-9/18446744073709551616"),
            Err(RangeError::Overflow)
        );
        assert!(parse("bytes 0-9/18446744073709551615").is_ok());
    }

    #[test]
    fn checks_content_length_against_the_range() {
        let range = parse("bytes 10-19/100").unwrap();
        assert_eq!(range.check_length(10), Ok(()));
        assert_eq!(
            range.check_length(11),
            Err(RangeError::LengthMismatch {
                content_length: 11,
                range_length: 10
            })
        );
    }

    #[test]
    fn knows_the_final_fragment() {
        assert!(parse("bytes 90-99/100").unwrap().is_final());
        assert!(!parse("bytes 80-89/100").unwrap().is_final());
    }

    #[test]
    fn hand_built_ranges_that_break_the_invariants_do_not_panic() {
        let backwards = ContentRange {
            first: 9,
            last: 0,
            total: 0,
        };
        assert_eq!(backwards.len(), 1);
        assert!(!backwards.is_final());
        let huge = ContentRange {
            first: 0,
            last: u64::MAX,
            total: u64::MAX,
        };
        assert_eq!(huge.len(), u64::MAX);
        assert!(!huge.is_final());
    }

    #[test]
    fn line_breaks_are_not_trimmed_as_white_space() {
        assert_eq!(parse("bytes 0-9/10\r\n"), Err(RangeError::Malformed));
    }

    #[test]
    fn displays_the_canonical_form() {
        assert_eq!(
            ContentRange::new(1, 2, 3).unwrap().to_string(),
            "bytes 1-2/3"
        );
    }
}
