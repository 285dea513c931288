//! Byte counts with unit suffixes, for command-line flags: `4096`, `4KiB`, `4k`, `1MiB`,
//! `1.5MiB`, `2GiB`, `10MB` (decimal units for `KB`/`MB`/`GB`, binary for the rest).

/// Parses a byte count. Binary suffixes: `K`, `KiB`, `M`, `MiB`, `G`, `GiB` (any case);
/// decimal: `KB`, `MB`, `GB`; `B` or no suffix: bytes. A fraction is allowed with a suffix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {text:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    if number.is_empty() {
        return Err(format!("{text:?} has no number"));
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| format!("{text:?} does not fit in 64 bits"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size"))?;
    let bytes = value * multiplier as f64;
    if multiplier == 1 || !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is not a whole number of bytes"));
    }
    Ok(bytes.round() as u64)
}

/// `1536` → `1.5 KiB`: for human output.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_numbers_and_every_suffix() {
        for (text, bytes) in [
            ("4096", 4096),
            ("0", 0),
            ("12B", 12),
            ("4KiB", 4096),
            ("4k", 4096),
            ("4 KiB", 4096),
            ("1MiB", 1 << 20),
            ("1m", 1 << 20),
            ("2GiB", 2 << 30),
            ("10KB", 10_000),
            ("3MB", 3_000_000),
            ("1.5MiB", 1_572_864),
            ("0.5k", 512),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "KiB",
            "4 parsecs",
            "1.5",
            "-1",
            "99999999999999999999",
            "20000000000GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_for_humans() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(64 << 20), "64.0 MiB");
    }
}
