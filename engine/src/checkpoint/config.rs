//! Where and how often a job checkpoints: SQL `SET` keys, run options and their limits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use spillway_state::StoreOptions;

use crate::error::{EngineError, Result};

/// SQL setting of the checkpoint directory (Flink's `state.checkpoints.dir` is accepted too).
pub const DIR_KEYS: &[&str] = &["checkpoint.dir", "state.checkpoints.dir"];
/// SQL setting of the checkpoint interval (Flink's `execution.checkpointing.interval` too).
pub const INTERVAL_KEYS: &[&str] = &["checkpoint.interval", "execution.checkpointing.interval"];

/// Shortest checkpoint interval.
pub const INTERVAL_MS_MIN: u64 = 10;
/// Longest checkpoint interval (one day).
pub const INTERVAL_MS_MAX: u64 = 86_400_000;
/// Interval when only the directory is given.
pub const INTERVAL_MS_DEFAULT: u64 = 1_000;

/// Checkpoint settings of a tuning profile: used when a job checkpoints (the SQL or the run
/// options may still choose the directory and interval).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckpointTuning {
    /// Directory used when neither the SQL nor the run options name one.
    pub dir: Option<PathBuf>,
    /// Interval used when neither the SQL nor the run options give one.
    pub interval: Option<Duration>,
    /// Options of every shard's state store.
    pub store: StoreOptions,
}

/// Fewest checkpoints a shard store keeps: the last committed one stays readable while the
/// next is written.
pub const RETAINED_MIN: usize = 2;

impl CheckpointTuning {
    /// Checks the store options and the interval.
    pub fn validate(&self) -> Result<()> {
        if let Some(i) = self.interval {
            CheckpointConfig::new("check", i)?;
        }
        self.store
            .validate()
            .map_err(|e| EngineError::Config(format!("checkpoint store: {e}")))?;
        if self.store.checkpoints_retained_max < RETAINED_MIN {
            return Err(EngineError::Config(format!(
                "checkpoints_retained = {} is below {RETAINED_MIN}: the last complete \
                 checkpoint must stay while the next is written",
                self.store.checkpoints_retained_max
            )));
        }
        Ok(())
    }
}

/// How a job checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Directory of the job's checkpoints (one sub-directory per generation and shard).
    pub dir: PathBuf,
    /// Time between the start of one checkpoint and the request of the next.
    pub interval: Duration,
    /// Options of every shard's state store (limits, io_uring depth, backend).
    pub store: StoreOptions,
    /// How long a stopping job waits for its final checkpoint before giving up on it.
    pub final_timeout: Duration,
}

impl CheckpointConfig {
    pub fn new(dir: impl Into<PathBuf>, interval: Duration) -> Result<Self> {
        let ms = interval.as_millis() as u64;
        if !(INTERVAL_MS_MIN..=INTERVAL_MS_MAX).contains(&ms) {
            return Err(EngineError::Config(format!(
                "checkpoint interval {ms} ms is out of range [{INTERVAL_MS_MIN}, {INTERVAL_MS_MAX}] ms"
            )));
        }
        let dir = dir.into();
        if dir.as_os_str().is_empty() {
            return Err(EngineError::Config(
                "the checkpoint directory is empty".into(),
            ));
        }
        Ok(CheckpointConfig {
            dir,
            interval,
            store: StoreOptions::default(),
            final_timeout: Duration::from_secs(30),
        })
    }

    /// The configuration of a job: the SQL's `SET` keys win over the run options (`base`),
    /// which win over the tuning profile. None when none of them names a directory.
    pub fn from_settings(
        settings: &BTreeMap<String, String>,
        base: Option<&CheckpointConfig>,
        tuning: &CheckpointTuning,
    ) -> Result<Option<CheckpointConfig>> {
        fn find<'k, 'v>(
            settings: &'v BTreeMap<String, String>,
            keys: &[&'k str],
        ) -> Option<(&'k str, &'v String)> {
            keys.iter().find_map(|k| settings.get(*k).map(|v| (*k, v)))
        }
        let find = |keys: &[&'static str]| find(settings, keys);
        let dir = match (find(DIR_KEYS), base, &tuning.dir) {
            (Some((_, d)), _, _) => PathBuf::from(d.trim()),
            (None, Some(b), _) => b.dir.clone(),
            (None, None, Some(d)) => d.clone(),
            (None, None, None) => {
                if let Some((key, _)) = find(INTERVAL_KEYS) {
                    return Err(EngineError::Config(format!(
                        "SET '{key}' needs a checkpoint directory too: SET 'checkpoint.dir' = \
                         '/var/lib/spillway/JOB' (or run with --checkpoint-dir)"
                    )));
                }
                return Ok(None);
            }
        };
        let interval = match (find(INTERVAL_KEYS), base) {
            (Some((key, v)), _) => {
                let ms = spillway_connectors::duration::parse_duration_ms(v).ok_or_else(|| {
                    EngineError::Config(format!(
                        "SET '{key}' = '{v}': not a duration (e.g. '1 s', '500 ms')"
                    ))
                })?;
                Duration::from_millis(ms.max(0) as u64)
            }
            (None, Some(b)) => b.interval,
            (None, None) => tuning
                .interval
                .unwrap_or(Duration::from_millis(INTERVAL_MS_DEFAULT)),
        };
        let mut cfg = CheckpointConfig::new(dir, interval)?;
        cfg.store = tuning.store.clone();
        if let Some(b) = base {
            cfg.final_timeout = b.final_timeout;
        }
        Ok(Some(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sql_settings_and_flink_aliases() {
        let c = CheckpointConfig::from_settings(
            &settings(&[
                ("checkpoint.dir", "/tmp/x"),
                ("checkpoint.interval", "250 ms"),
            ]),
            None,
            &CheckpointTuning::default(),
        )
        .expect("ok")
        .expect("some");
        assert_eq!(c.dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.interval, Duration::from_millis(250));
        let c = CheckpointConfig::from_settings(
            &settings(&[
                ("state.checkpoints.dir", "/tmp/y"),
                ("execution.checkpointing.interval", "2 s"),
            ]),
            None,
            &CheckpointTuning::default(),
        )
        .expect("ok")
        .expect("some");
        assert_eq!(c.interval, Duration::from_secs(2));
        assert!(CheckpointConfig::from_settings(
            &settings(&[]),
            None,
            &CheckpointTuning::default()
        )
        .expect("ok")
        .is_none());
    }

    #[test]
    fn sql_overrides_run_options_and_bad_values_are_named() {
        let base = CheckpointConfig::new("/base", Duration::from_secs(5)).expect("base");
        let c = CheckpointConfig::from_settings(
            &settings(&[("checkpoint.interval", "1 s")]),
            Some(&base),
            &CheckpointTuning::default(),
        )
        .expect("ok")
        .expect("some");
        assert_eq!(c.dir, PathBuf::from("/base"));
        assert_eq!(c.interval, Duration::from_secs(1));
        let e = CheckpointConfig::from_settings(
            &settings(&[("checkpoint.interval", "1 ms")]),
            Some(&base),
            &CheckpointTuning::default(),
        )
        .expect_err("too short")
        .to_string();
        assert!(e.contains("out of range"), "{e}");
        let e = CheckpointConfig::from_settings(
            &settings(&[("checkpoint.interval", "soon")]),
            Some(&base),
            &CheckpointTuning::default(),
        )
        .expect_err("bad")
        .to_string();
        assert!(
            e.contains("checkpoint.interval") && e.contains("soon"),
            "{e}"
        );
        let e = CheckpointConfig::from_settings(
            &settings(&[("checkpoint.interval", "1 s")]),
            None,
            &CheckpointTuning::default(),
        )
        .expect_err("no dir")
        .to_string();
        assert!(e.contains("checkpoint.dir"), "{e}");
    }

    #[test]
    fn profile_tuning_applies_when_nothing_else_says() {
        let tuning = CheckpointTuning {
            dir: Some(PathBuf::from("/profile")),
            interval: Some(Duration::from_millis(300)),
            store: StoreOptions {
                io_depth_max: 8,
                ..StoreOptions::default()
            },
        };
        let c = CheckpointConfig::from_settings(&settings(&[]), None, &tuning)
            .expect("ok")
            .expect("some");
        assert_eq!(
            (c.dir.as_path(), c.interval),
            (Path::new("/profile"), Duration::from_millis(300))
        );
        assert_eq!(c.store.io_depth_max, 8);
        let bad = CheckpointTuning {
            store: StoreOptions {
                checkpoints_retained_max: 1,
                ..StoreOptions::default()
            },
            ..CheckpointTuning::default()
        };
        let e = bad.validate().expect_err("retained 1").to_string();
        assert!(e.contains("checkpoints_retained"), "{e}");
    }
}
