//! The engine's options of a dimension table: `dimension.rows-max`, `dimension.bytes-max`,
//! `dimension.startup-timeout`. They are not passed to the connector.

use std::collections::BTreeMap;

use super::dimension_table::DimensionLimits;
use crate::catalog::TableDef;
use crate::error::{EngineError, Result};

/// Default of `dimension.rows-max` (rows, or versions of a temporal table, per shard).
pub const ROWS_MAX_DEFAULT: usize = 10_000_000;
/// Default of `dimension.bytes-max` (per shard: each shard holds the whole table).
pub const BYTES_MAX_DEFAULT: usize = 1 << 30;
/// Default of `dimension.startup-timeout`.
pub const STARTUP_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Prefix of the engine's own dimension options.
const PREFIX: &str = "dimension.";
/// Other table options the engine reads itself (not the connector's).
const ENGINE_OPTIONS: &[&str] = &["scan.watermark.idle-timeout"];

/// The engine's options of one dimension table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionOptions {
    pub limits: DimensionLimits,
    /// `dimension.startup-timeout`: how long a shard may take to catch up at start.
    pub startup_timeout_ms: u64,
}

impl DimensionOptions {
    /// Parses the table's `dimension.*` options; an unknown one or a bad value is an error
    /// naming the table, the option and the value.
    pub fn parse(table: &TableDef) -> Result<Self> {
        let mut parsed = DimensionOptions {
            limits: DimensionLimits {
                rows_max: ROWS_MAX_DEFAULT,
                bytes_max: BYTES_MAX_DEFAULT,
            },
            startup_timeout_ms: STARTUP_TIMEOUT_MS_DEFAULT,
        };
        for (key, value) in &table.options {
            let Some(name) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let bad = |what: &str| {
                EngineError::Config(format!(
                    "table '{}': option '{key}' = '{value}' is not {what}",
                    table.name
                ))
            };
            match name {
                "rows-max" => {
                    parsed.limits.rows_max = value
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("a positive number of rows"))?
                }
                "bytes-max" => {
                    parsed.limits.bytes_max = parse_bytes(value)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("a byte count (e.g. '512 MiB', '2 GiB', '1000000')"))?
                }
                "startup-timeout" => {
                    parsed.startup_timeout_ms =
                        spillway_connectors::duration::parse_duration_ms(value)
                            .filter(|ms| *ms > 0)
                            .map(|ms| ms as u64)
                            .ok_or_else(|| bad("a duration (e.g. '60 s', '5 min')"))?
                }
                _ => {
                    return Err(EngineError::Config(format!(
                        "table '{}': unknown option '{key}' (dimension options: dimension.rows-max, dimension.bytes-max, dimension.startup-timeout)",
                        table.name
                    )))
                }
            }
        }
        Ok(parsed)
    }
}

/// `'1000'`, `'64 KiB'`, `'512 MiB'`, `'2 GiB'` (also KB/MB/GB as powers of 1024).
fn parse_bytes(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" | "kb" | "k" => 10,
        "mib" | "mb" | "m" => 20,
        "gib" | "gb" | "g" => 30,
        _ => return None,
    };
    number.checked_mul(1usize << shift)
}

/// The table's options without the engine's own, for the changelog connector.
pub fn connector_options(table: &TableDef) -> BTreeMap<String, String> {
    table
        .options
        .iter()
        .filter(|(k, _)| !k.starts_with(PREFIX) && !ENGINE_OPTIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Pos;

    fn table(options: &[(&str, &str)]) -> TableDef {
        TableDef {
            name: "securities".into(),
            columns: Vec::new(),
            watermark: None,
            primary_key: vec![0],
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pos: Pos::default(),
        }
    }

    #[test]
    fn defaults_values_and_errors() {
        let d = DimensionOptions::parse(&table(&[("connector", "filesystem")])).expect("ok");
        assert_eq!(d.limits.rows_max, ROWS_MAX_DEFAULT);
        assert_eq!(d.limits.bytes_max, BYTES_MAX_DEFAULT);
        assert_eq!(d.startup_timeout_ms, STARTUP_TIMEOUT_MS_DEFAULT);
        let d = DimensionOptions::parse(&table(&[
            ("dimension.rows-max", "1000"),
            ("dimension.bytes-max", "64 MiB"),
            ("dimension.startup-timeout", "5 s"),
        ]))
        .expect("ok");
        assert_eq!(d.limits.rows_max, 1000);
        assert_eq!(d.limits.bytes_max, 64 << 20);
        assert_eq!(d.startup_timeout_ms, 5000);
        for (k, v, expected) in [
            ("dimension.rows-max", "0", "positive number"),
            ("dimension.bytes-max", "12 parsecs", "byte count"),
            ("dimension.startup-timeout", "soon", "duration"),
            ("dimension.row-max", "1", "unknown option"),
        ] {
            let e = DimensionOptions::parse(&table(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected) && e.contains("securities"), "{k}: {e}");
        }
    }

    #[test]
    fn connector_options_drop_the_engine_ones() {
        let t = table(&[
            ("connector", "upsert-kafka"),
            ("dimension.rows-max", "5"),
            ("scan.watermark.idle-timeout", "1 s"),
            ("topic", "t"),
        ]);
        let o = connector_options(&t);
        assert_eq!(o.keys().collect::<Vec<_>>(), vec!["connector", "topic"]);
    }
}
