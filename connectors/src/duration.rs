//! Parsing of duration options such as `'scan.watermark.idle-timeout' = '30 s'`.
//!
//! Accepted (as Flink's `TimeUtils` does): a non-negative integer followed by an optional unit,
//! with or without spaces between them, case-insensitive:
//! `ms` / `milli` / `millis` / `millisecond(s)`, `s` / `sec(s)` / `second(s)`,
//! `m` / `min(s)` / `minute(s)`, `h` / `hour(s)`, `d` / `day(s)`. A plain integer is milliseconds.

/// Milliseconds per unit for every accepted unit name (lowercase).
const UNITS_MS: &[(&str, i64)] = &[
    ("ms", 1),
    ("milli", 1),
    ("millis", 1),
    ("millisecond", 1),
    ("milliseconds", 1),
    ("s", 1_000),
    ("sec", 1_000),
    ("secs", 1_000),
    ("second", 1_000),
    ("seconds", 1_000),
    ("m", 60_000),
    ("min", 60_000),
    ("mins", 60_000),
    ("minute", 60_000),
    ("minutes", 60_000),
    ("h", 3_600_000),
    ("hour", 3_600_000),
    ("hours", 3_600_000),
    ("d", 86_400_000),
    ("day", 86_400_000),
    ("days", 86_400_000),
];

/// The unit names accepted by [`parse_duration_ms`], for error messages.
pub const DURATION_UNITS_HELP: &str = "ms, s, min, h or d (e.g. '500 ms', '30 s', '2 min'); \
                                        a plain integer is milliseconds";

/// Parses a duration such as `10 s`, `500 ms`, `2 min`, `1 h`, `30s` or `250` (milliseconds)
/// into milliseconds. Returns `None` for anything else: an unknown unit, a negative or
/// fractional number, an empty string, or a value that overflows `i64` milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return None;
    }
    let amount: i64 = text[..digits_end].parse().ok()?;
    let unit = text[digits_end..].trim_start();
    if unit.is_empty() {
        return Some(amount);
    }
    let unit_ms = UNITS_MS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|&(_, ms)| ms)?;
    amount.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_with_and_without_spaces() {
        assert_eq!(parse_duration_ms("10 s"), Some(10_000));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("500 ms"), Some(500));
        assert_eq!(parse_duration_ms("2 min"), Some(120_000));
        assert_eq!(parse_duration_ms("1 h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("1 d"), Some(86_400_000));
        assert_eq!(parse_duration_ms(" 3 Seconds "), Some(3_000));
        assert_eq!(parse_duration_ms("5MIN"), Some(300_000));
    }

    #[test]
    fn plain_integer_is_milliseconds() {
        assert_eq!(parse_duration_ms("250"), Some(250));
        assert_eq!(parse_duration_ms("0"), Some(0));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            " ",
            "s",
            "-5 s",
            "1.5 s",
            "10 parsecs",
            "10 s s",
            "ten s",
            "1 h 2 min",
            "99999999999999999999",
            "9223372036854775807 d",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "input {bad:?}");
        }
    }
}
