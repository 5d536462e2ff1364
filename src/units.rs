//! A leaf module: nothing here imports the rest of the crate.
//!
//! Human sizes on the command line (`1GB`, `512MB`, `1048576`), with PostgreSQL's units:
//! kB, MB, GB, TB are powers of 1024, as in postgresql.conf; and counts as people write them
//! ("1 table", "2 tables").

/// Parses a byte count with an optional unit (`B`, `kB`, `MB`, `GB`, `TB`; case-insensitive,
/// optional space). A plain number is bytes, as aiven-db-migrate's byte-valued flags expect.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(format!("\"{text}\" is not a size: expected a number with an optional unit (kB, MB, GB, TB), e.g. 1GB"));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("\"{text}\" is too large"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit \"{other}\" in \"{text}\": use B, kB, MB, GB or TB"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

/// `n` and the noun, plural unless `n` is 1: `count(1, "table")` is "1 table". Every noun
/// pgferry counts takes an "s".
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// [`parse_size`] for sizes that must not be zero (`bench --size`).
pub fn parse_nonzero_size(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err("must be more than 0 bytes".into()),
        n => Ok(n),
    }
}

/// Formats bytes the way people read them (`1.5 GB`), for progress lines and reports.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, want) in [
            ("0", 0),
            ("1048576", 1 << 20),
            ("1GB", 1 << 30),
            ("1 gb", 1 << 30),
            ("512MB", 512 << 20),
            ("8kB", 8192),
            ("2TB", 2 << 40),
            ("10B", 10),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_sizes() {
        for text in [
            "",
            "GB",
            "1PB",
            "-1",
            "1.5GB",
            "99999999999999999999",
            "20000000TB",
        ] {
            assert!(parse_size(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn zero_is_refused_where_it_means_nothing() {
        assert!(parse_nonzero_size("0").is_err());
        assert!(parse_nonzero_size("0MB").is_err());
        assert_eq!(parse_nonzero_size("1kB"), Ok(1024));
    }

    #[test]
    fn counts() {
        assert_eq!(count(1, "table"), "1 table");
        assert_eq!(count(0, "large object"), "0 large objects");
        assert_eq!(count(2, "row"), "2 rows");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1536), "1.5 kB");
        assert_eq!(format_size(3 << 30), "3.0 GB");
    }
}
