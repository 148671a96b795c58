//! Row-for-row comparison of result rows (JSON objects), with a readable diff.
//!
//! Both sides are sorted by the given key fields and then compared field by field: strings,
//! booleans and integers exactly, floats with a relative tolerance of 1e-9 (partial sums are
//! merged in a different order on different shard counts). On a mismatch the first
//! [`DIFF_ROWS_MAX`] differences are printed.

use std::cmp::Ordering;
use std::path::Path;

use serde_json::Value;

/// Differences shown when rows do not match.
pub const DIFF_ROWS_MAX: usize = 10;
/// Relative tolerance of float comparison.
pub const FLOAT_TOLERANCE_REL: f64 = 1e-9;
/// Absolute tolerance of float comparison near zero.
const FLOAT_TOLERANCE_ABS: f64 = 1e-12;

/// Reads a JSON-lines file (what the filesystem sink writes) into values. A missing file is
/// an error; so is a line that is not JSON.
pub fn read_json_lines(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the results {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("{} line {}: not JSON ({e}): {l}", path.display(), n + 1))
        })
        .collect()
}

/// Whether two JSON values are equal, floats within the tolerance.
pub fn values_match(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_f64(), y.as_f64()) {
                (Some(f), Some(g)) => floats_match(f, g),
                _ => x == y,
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_match(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_match(v, w)))
        }
        _ => a == b,
    }
}

fn floats_match(f: f64, g: f64) -> bool {
    if f == g {
        return true;
    }
    let diff = (f - g).abs();
    diff <= FLOAT_TOLERANCE_ABS || diff <= FLOAT_TOLERANCE_REL * f.abs().max(g.abs())
}

/// The sort key of a row: the values of `key_fields`, in order.
fn sort_key<'v>(row: &'v Value, key_fields: &[&str]) -> Vec<Option<&'v Value>> {
    key_fields.iter().map(|k| row.get(*k)).collect()
}

fn rank(v: Option<&Value>) -> u8 {
    match v {
        None => 0,
        Some(Value::Null) => 1,
        Some(Value::Bool(_)) => 2,
        Some(Value::Number(_)) => 3,
        Some(Value::String(_)) => 4,
        Some(Value::Array(_)) => 5,
        Some(Value::Object(_)) => 6,
    }
}

fn cmp_value(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => x
                .as_f64()
                .unwrap_or(f64::NAN)
                .total_cmp(&y.as_f64().unwrap_or(f64::NAN)),
        },
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(x @ (Value::Array(_) | Value::Object(_))), Some(y)) => {
            x.to_string().cmp(&y.to_string())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn cmp_keys(a: &[Option<&Value>], b: &[Option<&Value>]) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| cmp_value(*x, *y))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Sorts rows by `key_fields` (then by their text, for rows with equal keys).
pub fn sort_rows(rows: &mut [Value], key_fields: &[&str]) {
    rows.sort_by(|a, b| {
        cmp_keys(&sort_key(a, key_fields), &sort_key(b, key_fields))
            .then_with(|| a.to_string().cmp(&b.to_string()))
    });
}

/// Compares result rows with expected rows, in any order. `Ok(())` when they match;
/// otherwise a report with the row counts and the first differences.
pub fn compare_rows(
    actual: &[Value],
    expected: &[Value],
    key_fields: &[&str],
) -> Result<(), String> {
    let mut a = actual.to_vec();
    let mut e = expected.to_vec();
    sort_rows(&mut a, key_fields);
    sort_rows(&mut e, key_fields);
    let mut diffs = Vec::new();
    let mut differing = 0usize;
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < e.len() {
        let order = match (a.get(i), e.get(j)) {
            (Some(x), Some(y)) => cmp_keys(&sort_key(x, key_fields), &sort_key(y, key_fields)),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        let diff = match order {
            Ordering::Equal => {
                let d = (!values_match(&a[i], &e[j]))
                    .then(|| format!("  differs:\n    engine: {}\n    oracle: {}", a[i], e[j]));
                i += 1;
                j += 1;
                d
            }
            Ordering::Less => {
                i += 1;
                Some(format!("  extra row from the engine: {}", a[i - 1]))
            }
            Ordering::Greater => {
                j += 1;
                Some(format!("  missing row (oracle has it): {}", e[j - 1]))
            }
        };
        if let Some(d) = diff {
            differing += 1;
            if diffs.len() < DIFF_ROWS_MAX {
                diffs.push(d);
            }
        }
    }
    if differing == 0 {
        return Ok(());
    }
    Err(format!(
        "results differ from the oracle: engine {} rows, oracle {} rows, {differing} differences \
         (rows sorted by {key_fields:?}); the first {}:\n{}",
        a.len(),
        e.len(),
        diffs.len(),
        diffs.join("\n")
    ))
}

/// Panics with a readable diff unless `actual` and `expected` hold the same rows.
#[track_caller]
pub fn assert_rows_match(actual: &[Value], expected: &[Value], key_fields: &[&str]) {
    if let Err(report) = compare_rows(actual, expected, key_fields) {
        panic!("{report}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_does_not_matter_and_floats_have_a_tolerance() {
        let a = vec![
            json!({"k": "b", "n": 2, "x": 0.1 + 0.2}),
            json!({"k": "a", "n": 1, "x": 1.0}),
        ];
        let e = vec![
            json!({"k": "a", "n": 1, "x": 1.0}),
            json!({"k": "b", "n": 2, "x": 0.3}),
        ];
        assert_eq!(compare_rows(&a, &e, &["k"]), Ok(()));
    }

    #[test]
    fn integers_and_strings_must_be_exact() {
        let e = vec![json!({"k": "a", "n": 1})];
        assert!(compare_rows(&[json!({"k": "a", "n": 2})], &e, &["k"]).is_err());
        assert!(compare_rows(&[json!({"k": "a", "n": 1.0000001})], &e, &["k"]).is_err());
        assert!(compare_rows(&[json!({"k": "A", "n": 1})], &e, &["k"]).is_err());
        assert!(compare_rows(&[json!({"k": "a", "n": 1, "z": 0})], &e, &["k"]).is_err());
    }

    #[test]
    fn report_names_missing_extra_and_differing_rows() {
        let a = vec![json!({"k": 1, "v": 10}), json!({"k": 3, "v": 30})];
        let e = vec![json!({"k": 1, "v": 11}), json!({"k": 2, "v": 20})];
        let report = compare_rows(&a, &e, &["k"]).expect_err("differs");
        assert!(report.contains("3 differences"), "{report}");
        assert!(
            report.contains("extra row from the engine: {\"k\":3"),
            "{report}"
        );
        assert!(
            report.contains("missing row (oracle has it): {\"k\":2"),
            "{report}"
        );
        assert!(report.contains("engine: {\"k\":1,\"v\":10}"), "{report}");
    }

    #[test]
    fn duplicates_count() {
        let row = json!({"k": 1});
        assert!(compare_rows(
            &[row.clone(), row.clone()],
            std::slice::from_ref(&row),
            &["k"]
        )
        .is_err());
    }

    #[test]
    fn diff_is_capped() {
        let a: Vec<Value> = (0..50).map(|k| json!({"k": k, "v": 0})).collect();
        let e: Vec<Value> = (0..50).map(|k| json!({"k": k, "v": 1})).collect();
        let report = compare_rows(&a, &e, &["k"]).expect_err("differs");
        assert!(report.contains("50 differences"), "{report}");
        assert_eq!(report.matches("differs:").count(), DIFF_ROWS_MAX);
    }
}
