//! `INTERVAL 'n' unit` and `TIMESTAMP '...'` literals.

use sqlparser::ast::{DateTimeField, Expr as AstExpr, Interval, Spanned, UnaryOperator, Value};

use super::pos_of;
use crate::error::{EngineError, Pos, Result};

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// The units spillway accepts in intervals, largest first, with their SQL names.
const UNITS_MS: [(&str, i64); 5] = [
    ("DAY", MS_PER_DAY),
    ("HOUR", MS_PER_HOUR),
    ("MINUTE", MS_PER_MINUTE),
    ("SECOND", MS_PER_SECOND),
    ("MILLISECOND", 1),
];

/// The length of `INTERVAL 'n' unit` in milliseconds (`n` may be negative or have a
/// fraction, e.g. `INTERVAL '0.5' SECOND` = 500). `fallback` positions errors whose AST node
/// has no span.
pub(crate) fn interval_ms(interval: &Interval, fallback: Pos) -> Result<i64> {
    let pos = pos_of(interval.value.span(), fallback);
    if interval.last_field.is_some() {
        return Err(EngineError::plan(
            "INTERVAL ... TO ... ranges are not supported; use a single unit, e.g. INTERVAL '90' SECOND",
            pos,
        ));
    }
    let unit_ms = match &interval.leading_field {
        Some(field) => unit_ms(field).ok_or_else(|| {
            EngineError::plan(
                format!("INTERVAL unit {field} is not supported (use MILLISECOND, SECOND, MINUTE, HOUR or DAY)"),
                pos,
            )
        })?,
        None => {
            return Err(EngineError::plan(
                "INTERVAL needs a unit, e.g. INTERVAL '5' SECOND",
                pos,
            ))
        }
    };
    let text = interval_text(&interval.value).ok_or_else(|| {
        EngineError::plan(
            format!(
                "INTERVAL value must be a number in quotes, e.g. INTERVAL '5' SECOND, found {}",
                interval.value
            ),
            pos,
        )
    })?;
    decimal_times(&text, unit_ms).ok_or_else(|| {
        EngineError::plan(
            format!("INTERVAL '{text}' is not a whole number of milliseconds (or is out of range)"),
            pos,
        )
    })
}

/// The value of an interval literal as text: `'5'`, `5`, `-'5'`.
fn interval_text(value: &AstExpr) -> Option<String> {
    match value {
        AstExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => Some(s.trim().to_string()),
            _ => None,
        },
        AstExpr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => interval_text(expr).map(|s| format!("-{s}")),
        _ => None,
    }
}

fn unit_ms(field: &DateTimeField) -> Option<i64> {
    Some(match field {
        DateTimeField::Day | DateTimeField::Days => MS_PER_DAY,
        DateTimeField::Hour | DateTimeField::Hours => MS_PER_HOUR,
        DateTimeField::Minute | DateTimeField::Minutes => MS_PER_MINUTE,
        DateTimeField::Second | DateTimeField::Seconds => MS_PER_SECOND,
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1,
        _ => return None,
    })
}

/// `text` (a decimal number like `-1.25`) times `unit_ms`, exactly; None when it is not a
/// number, not a whole number of milliseconds, or overflows.
fn decimal_times(text: &str, unit_ms: i64) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole
        .chars()
        .chain(fraction.chars())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 18 {
        return None;
    }
    let mut mantissa: i128 = 0;
    for c in whole.chars().chain(fraction.chars()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(c as u8 - b'0'))?;
    }
    let scale = 10i128.checked_pow(fraction.len() as u32)?;
    let total = mantissa.checked_mul(i128::from(unit_ms))?;
    if total % scale != 0 {
        return None;
    }
    let ms = i64::try_from(total / scale).ok()?;
    Some(if negative { -ms } else { ms })
}

/// Renders milliseconds as an interval literal in the largest unit that divides it.
pub fn explain_interval(ms: i64) -> String {
    for (name, unit) in UNITS_MS {
        if ms != 0 && ms % unit == 0 {
            return format!("INTERVAL '{}' {name}", ms / unit);
        }
    }
    format!("INTERVAL '{ms}' MILLISECOND")
}

/// Parses `yyyy-MM-dd HH:mm:ss[.SSS]`, `yyyy-MM-dd`, or ISO-8601 (`T`, `Z`, offsets) into
/// milliseconds since the epoch, UTC. None when the text is not a timestamp.
pub(crate) fn parse_timestamp_ms(text: &str) -> Option<i64> {
    let nanos = arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text.trim()).ok()?;
    Some(nanos.div_euclid(1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_intervals_are_exact() {
        assert_eq!(decimal_times("5", MS_PER_SECOND), Some(5_000));
        assert_eq!(decimal_times("0.5", MS_PER_SECOND), Some(500));
        assert_eq!(decimal_times("1.25", MS_PER_MINUTE), Some(75_000));
        assert_eq!(decimal_times("-2", MS_PER_HOUR), Some(-7_200_000));
        assert_eq!(decimal_times("0.0005", MS_PER_SECOND), None);
        assert_eq!(decimal_times("abc", 1), None);
        assert_eq!(decimal_times("", 1), None);
        assert_eq!(decimal_times(".", 1), None);
        assert_eq!(decimal_times("99999999999999999999", MS_PER_DAY), None);
    }

    #[test]
    fn interval_rendering_picks_the_largest_unit() {
        assert_eq!(explain_interval(1_000), "INTERVAL '1' SECOND");
        assert_eq!(explain_interval(90_000), "INTERVAL '90' SECOND");
        assert_eq!(explain_interval(3_600_000), "INTERVAL '1' HOUR");
        assert_eq!(explain_interval(1), "INTERVAL '1' MILLISECOND");
        assert_eq!(explain_interval(0), "INTERVAL '0' MILLISECOND");
    }

    #[test]
    fn timestamps_parse_in_utc() {
        assert_eq!(parse_timestamp_ms("1970-01-01 00:00:01.500"), Some(1_500));
        assert_eq!(
            parse_timestamp_ms("2024-01-01 00:00:00"),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            parse_timestamp_ms("2024-01-01T00:00:00Z"),
            Some(1_704_067_200_000)
        );
        assert_eq!(parse_timestamp_ms("2024-01-01"), Some(1_704_067_200_000));
        assert_eq!(parse_timestamp_ms("1969-12-31 23:59:59.999"), Some(-1));
        assert_eq!(parse_timestamp_ms("yesterday"), None);
    }

    proptest! {
        #[test]
        fn whole_numbers_scale_exactly(n in -1_000_000i64..1_000_000, unit in prop::sample::select(vec![1i64, MS_PER_SECOND, MS_PER_MINUTE, MS_PER_HOUR, MS_PER_DAY])) {
            prop_assert_eq!(decimal_times(&n.to_string(), unit), Some(n * unit));
        }

        #[test]
        fn rendered_intervals_round_trip(ms in 1i64..10_000_000_000) {
            let text = explain_interval(ms);
            let mut parts = text.split('\'');
            let _ = parts.next();
            let value = parts.next().unwrap_or("");
            let unit_name = parts.next().unwrap_or("").trim();
            let unit = UNITS_MS.iter().find(|(name, _)| *name == unit_name).map(|(_, u)| *u);
            prop_assert_eq!(unit.and_then(|u| decimal_times(value, u)), Some(ms));
        }
    }
}
