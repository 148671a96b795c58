//! Parsing and formatting of `TIMESTAMP(3)` values (milliseconds since the epoch, UTC).
//!
//! Accepted input forms (hand-parsed, allocation-free; this is on the decode hot path):
//! - `2024-01-02T03:04:05Z`, `2024-01-02T03:04:05.123Z` (ISO-8601 / RFC 3339),
//! - `2024-01-02 03:04:05`, `2024-01-02 03:04:05.123` (Flink's SQL form),
//! - a fraction of 1 to 9 digits (truncated to milliseconds),
//! - an optional `Z` or `+hh:mm` / `-hh:mm` offset (converted to UTC; no offset means UTC),
//! - `2024-01-02` alone (midnight UTC).
//!
//! Output is always `yyyy-MM-dd HH:mm:ss.SSS` in UTC.

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Longest fraction of a second accepted (nanoseconds).
const FRACTION_DIGITS_MAX: usize = 9;

/// Parses a timestamp string into milliseconds since the epoch (UTC), or `None` when `s` is
/// not one of the accepted forms or names an impossible date or time.
pub fn parse_timestamp_ms(s: &[u8]) -> Option<i64> {
    // yyyy-MM-dd
    if s.len() < 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let year = i64::from(digits4(s, 0)?);
    let month = digits2(s, 5)?;
    let day = digits2(s, 8)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if s.len() == 10 {
        return Some(days * MS_PER_DAY);
    }

    // [T ]HH:mm:ss
    if s.len() < 19 || !matches!(s[10], b'T' | b't' | b' ') || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let hour = digits2(s, 11)?;
    let minute = digits2(s, 14)?;
    let second = digits2(s, 17)?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut ms = days * MS_PER_DAY
        + i64::from(hour) * MS_PER_HOUR
        + i64::from(minute) * MS_PER_MINUTE
        + i64::from(second) * MS_PER_SECOND;

    // [.f{1,9}]
    let mut i = 19;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let fraction_start = i;
        let mut fraction_ms: i64 = 0;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - fraction_start < 3 {
                fraction_ms = fraction_ms * 10 + i64::from(s[i] - b'0');
            }
            i += 1;
        }
        let fraction_len = i - fraction_start;
        if fraction_len == 0 || fraction_len > FRACTION_DIGITS_MAX {
            return None;
        }
        for _ in fraction_len..3 {
            fraction_ms *= 10;
        }
        ms += fraction_ms;
    }

    // [Z | +hh:mm | -hh:mm]
    match s.len() - i {
        0 => Some(ms),
        1 if matches!(s[i], b'Z' | b'z') => Some(ms),
        6 if matches!(s[i], b'+' | b'-') && s[i + 3] == b':' => {
            let offset_hours = digits2(s, i + 1)?;
            let offset_minutes = digits2(s, i + 4)?;
            if offset_hours > 23 || offset_minutes > 59 {
                return None;
            }
            let offset_ms =
                i64::from(offset_hours) * MS_PER_HOUR + i64::from(offset_minutes) * MS_PER_MINUTE;
            // Local time = UTC + offset, so UTC = local time - offset.
            Some(if s[i] == b'+' {
                ms - offset_ms
            } else {
                ms + offset_ms
            })
        }
        _ => None,
    }
}

/// Appends `ms` (milliseconds since the epoch) as `yyyy-MM-dd HH:mm:ss.SSS` in UTC.
///
/// Years outside 0000..=9999 (only reachable with extreme values) are written with a sign
/// (`-0001`, `+10000`), which [`parse_timestamp_ms`] does not read back.
pub fn format_timestamp_ms(ms: i64, out: &mut Vec<u8>) {
    let days = ms.div_euclid(MS_PER_DAY);
    let ms_of_day = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);

    if (0..=9999).contains(&year) {
        push_digits4(out, year as u32);
    } else {
        out.push(if year < 0 { b'-' } else { b'+' });
        let magnitude = year.unsigned_abs();
        if magnitude < 10_000 {
            push_digits4(out, magnitude as u32);
        } else {
            let mut buffer = itoa::Buffer::new();
            out.extend_from_slice(buffer.format(magnitude).as_bytes());
        }
    }
    let hour = (ms_of_day / MS_PER_HOUR) as u32;
    let minute = (ms_of_day % MS_PER_HOUR / MS_PER_MINUTE) as u32;
    let second = (ms_of_day % MS_PER_MINUTE / MS_PER_SECOND) as u32;
    let milli = (ms_of_day % MS_PER_SECOND) as u32;
    let tail = [
        b'-',
        digit(month / 10),
        digit(month % 10),
        b'-',
        digit(day / 10),
        digit(day % 10),
        b' ',
        digit(hour / 10),
        digit(hour % 10),
        b':',
        digit(minute / 10),
        digit(minute % 10),
        b':',
        digit(second / 10),
        digit(second % 10),
        b'.',
        digit(milli / 100),
        digit(milli / 10 % 10),
        digit(milli % 10),
    ];
    out.extend_from_slice(&tail);
}

/// `ms` formatted as by [`format_timestamp_ms`], as a `String`.
pub fn format_timestamp_string(ms: i64) -> String {
    let mut out = Vec::with_capacity(23);
    format_timestamp_ms(ms, &mut out);
    // Only ASCII digits and separators were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Days since 1970-01-01 of the proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[inline]
fn digit_at(s: &[u8], i: usize) -> Option<u32> {
    let b = *s.get(i)?;
    b.is_ascii_digit().then(|| u32::from(b - b'0'))
}

#[inline]
fn digits2(s: &[u8], i: usize) -> Option<u32> {
    Some(digit_at(s, i)? * 10 + digit_at(s, i + 1)?)
}

#[inline]
fn digits4(s: &[u8], i: usize) -> Option<u32> {
    Some(digits2(s, i)? * 100 + digits2(s, i + 2)?)
}

#[inline]
fn digit(value: u32) -> u8 {
    debug_assert!(value < 10);
    b'0' + value as u8
}

fn push_digits4(out: &mut Vec<u8>, value: u32) {
    debug_assert!(value < 10_000);
    out.extend_from_slice(&[
        digit(value / 1000),
        digit(value / 100 % 10),
        digit(value / 10 % 10),
        digit(value % 10),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    use proptest::prelude::*;

    fn parse(s: &str) -> Option<i64> {
        parse_timestamp_ms(s.as_bytes())
    }

    /// Milliseconds of `s` by chrono (an independent oracle), for strings chrono accepts.
    fn chrono_ms(s: &str) -> i64 {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return t.timestamp_millis();
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
            return t.and_utc().timestamp_millis();
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
            return t.and_utc().timestamp_millis();
        }
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("oracle parses");
        d.and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_millis()
    }

    #[test]
    fn accepted_forms() {
        let base = 1_704_164_645_000; // 2024-01-02T03:04:05Z
        assert_eq!(parse("2024-01-02T03:04:05Z"), Some(base));
        assert_eq!(parse("2024-01-02T03:04:05.123Z"), Some(base + 123));
        assert_eq!(parse("2024-01-02 03:04:05.123"), Some(base + 123));
        assert_eq!(parse("2024-01-02 03:04:05"), Some(base));
        assert_eq!(parse("2024-01-02T03:04:05"), Some(base));
        assert_eq!(parse("2024-01-02"), Some(base - 11_045_000));
        assert_eq!(parse("2024-01-02 03:04:05.1"), Some(base + 100));
        assert_eq!(parse("2024-01-02 03:04:05.12"), Some(base + 120));
        assert_eq!(parse("2024-01-02 03:04:05.123999999"), Some(base + 123));
        assert_eq!(parse("2024-01-02T03:04:05+01:30"), Some(base - 5_400_000));
        assert_eq!(
            parse("2024-01-02T03:04:05.5-02:00"),
            Some(base + 500 + 7_200_000)
        );
        assert_eq!(parse("2024-01-02t03:04:05z"), Some(base));
        assert_eq!(parse("1970-01-01 00:00:00.000"), Some(0));
        assert_eq!(parse("1969-12-31 23:59:59.999"), Some(-1));
        assert_eq!(parse("2000-02-29"), Some(951_782_400_000));
        for s in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.123456789+05:45",
            "1900-03-01 12:00:00.5",
            "0001-01-01",
            "9999-12-31T23:59:59.999-23:59",
        ] {
            assert_eq!(parse(s), Some(chrono_ms(s)), "{s}");
        }
    }

    #[test]
    fn rejected_forms() {
        for s in [
            "",
            "2024",
            "2024-1-02",
            "2024-01-2",
            "2024/01/02",
            "2024-13-01",
            "2024-00-01",
            "2024-01-00",
            "2024-02-30",
            "2023-02-29",
            "1900-02-29",
            "2024-01-02T",
            "2024-01-02X03:04:05",
            "2024-01-02T03:04",
            "2024-01-02T24:00:00",
            "2024-01-02T03:60:00",
            "2024-01-02T03:04:60",
            "2024-01-02T03:04:05.",
            "2024-01-02T03:04:05.1234567890",
            "2024-01-02T03:04:05Zjunk",
            "2024-01-02T03:04:05 ",
            " 2024-01-02T03:04:05",
            "2024-01-02T03:04:05+0100",
            "2024-01-02T03:04:05+01",
            "2024-01-02T03:04:05+24:00",
            "2024-01-02T03:04:05+01:60",
            "2024-01-02T03:04:05.12a",
            "2024-01-02 03:04:05.123 UTC",
            "+2024-01-02",
            "2024-01-02Z",
            "1700000000123",
            "２０２４-01-02",
        ] {
            assert_eq!(parse(s), None, "{s:?} must be rejected");
        }
    }

    #[test]
    fn formats_utc_and_negative_epochs() {
        assert_eq!(format_timestamp_string(0), "1970-01-01 00:00:00.000");
        assert_eq!(
            format_timestamp_string(1_700_000_000_123),
            "2023-11-14 22:13:20.123"
        );
        assert_eq!(format_timestamp_string(-1), "1969-12-31 23:59:59.999");
        assert_eq!(
            format_timestamp_string(-86_400_000),
            "1969-12-31 00:00:00.000"
        );
        assert_eq!(
            format_timestamp_string(951_782_400_007),
            "2000-02-29 00:00:00.007"
        );
        assert_eq!(
            format_timestamp_string(-62_135_596_800_000),
            "0001-01-01 00:00:00.000"
        );
        assert_eq!(
            format_timestamp_string(253_402_300_799_999),
            "9999-12-31 23:59:59.999"
        );
        assert_eq!(
            format_timestamp_string(-62_135_596_800_000 - 366 * MS_PER_DAY),
            "0000-01-01 00:00:00.000"
        );
        assert!(
            format_timestamp_string(-62_135_596_800_000 - 367 * MS_PER_DAY)
                .starts_with("-0001-12-31")
        );
        // Extreme values must not panic and keep the layout after the year.
        assert!(format_timestamp_string(i64::MIN).ends_with(".192"));
        assert!(format_timestamp_string(i64::MAX).starts_with('+'));
        let mut out = b"x".to_vec();
        format_timestamp_ms(0, &mut out);
        assert_eq!(out, b"x1970-01-01 00:00:00.000", "appends, never clears");
    }

    const MS_YEAR_1: i64 = -62_135_596_800_000;
    const MS_YEAR_10000: i64 = 253_402_300_800_000;

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in MS_YEAR_1..MS_YEAR_10000) {
            let s = format_timestamp_string(ms);
            prop_assert_eq!(s.len(), 23);
            prop_assert_eq!(parse(&s), Some(ms));
            prop_assert_eq!(parse(&s.replacen(' ', "T", 1)), Some(ms));
            let oracle = DateTime::from_timestamp_millis(ms).expect("in chrono's range");
            prop_assert_eq!(s, oracle.format("%Y-%m-%d %H:%M:%S%.3f").to_string());
        }

        #[test]
        fn parse_agrees_with_chrono(
            ms in MS_YEAR_1 + MS_PER_DAY..MS_YEAR_10000 - MS_PER_DAY,
            nanos in 0u32..1_000_000,
            offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59i32),
        ) {
            let utc = DateTime::from_timestamp_millis(ms).expect("in range");
            let zone = chrono::FixedOffset::east_opt(offset_minutes * 60).expect("valid offset");
            let local = utc.with_timezone(&zone);
            let fraction = format!("{:03}{:06}", ms.rem_euclid(1000), nanos);
            let text = format!("{}.{}{}", local.format("%Y-%m-%dT%H:%M:%S"), fraction, local.format("%:z"));
            prop_assert_eq!(parse(&text), Some(ms), "{}", text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Some(ms) = parse_timestamp_ms(&bytes) {
                prop_assert!((MS_YEAR_1 - 367 * MS_PER_DAY..MS_YEAR_10000 + MS_PER_DAY).contains(&ms));
            }
        }
    }
}
