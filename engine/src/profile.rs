//! Tuning profiles: a TOML file that says which cores run shards, sets every named limit of
//! a job ([`Limits`]) and the librdkafka properties of every Kafka source and sink.
//!
//! ```toml
//! cores = [1, 2, 3]          # optional; default: every core runs a shard
//! pin = false                # optional; default true: shards pinned to their cores
//! [limits]                   # optional; every key optional, default Limits::default()
//! batch_rows_max = 4096
//! [kafka]                    # optional; librdkafka properties, `properties.X` of a table wins
//! fetch.wait.max.ms = 10
//! [checkpoint]               # optional; used by jobs that checkpoint
//! interval_ms = 1000
//! io_uring_depth = 32
//! ```
//! Unknown keys are errors naming the key and the file; every value is range checked
//! (`tuning/README.md` lists keys, defaults and ranges).

use std::collections::BTreeMap;
use std::path::Path;

use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::checkpoint::CheckpointTuning;
use crate::error::{EngineError, Result};
use crate::job::{available_cores, JobOptions};
use crate::limits::Limits;
use spillway_state::StoreOptions;

/// Largest profile file read (a profile is a few dozen lines).
pub const PROFILE_BYTES_MAX: u64 = 1 << 20;
/// Most cores a profile may list.
pub const PROFILE_CORES_MAX: usize = 4096;
/// Most `[kafka]` properties a profile may set.
pub const PROFILE_KAFKA_PROPERTIES_MAX: usize = 256;

/// A checked tuning profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The cores that run shards, in order (None: every core this process may run on).
    pub cores: Option<Vec<usize>>,
    /// The limits of every job run with this profile.
    pub limits: Limits,
    /// librdkafka properties (without the `properties.` prefix) given to every Kafka
    /// source and sink whose table does not set them itself.
    pub kafka: BTreeMap<String, String>,
    /// Checkpoint directory, interval and state store options.
    pub checkpoint: CheckpointTuning,
    /// Whether shards are pinned to their cores (`pin`, default true).
    pub pin: bool,
}

impl Default for Profile {
    /// No profile: every core runs a pinned shard, default limits, no Kafka properties.
    fn default() -> Self {
        Profile {
            cores: None,
            limits: Limits::default(),
            kafka: BTreeMap::new(),
            checkpoint: CheckpointTuning::default(),
            pin: true,
        }
    }
}

/// The file as written: every key optional, unknown keys rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    cores: Option<Vec<usize>>,
    pin: Option<bool>,
    limits: Option<LimitsFile>,
    kafka: Option<toml::Table>,
    checkpoint: Option<CheckpointFile>,
}

/// The `[checkpoint]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    dir: Option<std::path::PathBuf>,
    interval_ms: Option<u64>,
    io_uring_depth: Option<u32>,
    write_chunk_bytes: Option<usize>,
    segment_bytes_max: Option<u64>,
    state_bytes_max: Option<u64>,
    checkpoints_retained: Option<usize>,
}

impl CheckpointFile {
    fn apply(self, origin: &str) -> Result<CheckpointTuning> {
        let d = StoreOptions::default();
        let tuning = CheckpointTuning {
            dir: self.dir,
            interval: self.interval_ms.map(std::time::Duration::from_millis),
            store: StoreOptions {
                io_depth_max: self.io_uring_depth.unwrap_or(d.io_depth_max),
                write_chunk_bytes: self.write_chunk_bytes.unwrap_or(d.write_chunk_bytes),
                segment_bytes_max: self.segment_bytes_max.unwrap_or(d.segment_bytes_max),
                state_bytes_max: self.state_bytes_max.unwrap_or(d.state_bytes_max),
                checkpoints_retained_max: self
                    .checkpoints_retained
                    .unwrap_or(d.checkpoints_retained_max),
                ..d
            },
        };
        tuning.validate().map_err(|e| match e {
            EngineError::Config(m) => {
                EngineError::Config(format!("tuning profile {origin}: [checkpoint] {m}"))
            }
            other => other,
        })?;
        Ok(tuning)
    }
}

/// The `[limits]` table: one optional key per field of [`Limits`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    batch_rows_max: Option<usize>,
    batch_bytes_max: Option<usize>,
    record_bytes_max: Option<usize>,
    state_bytes_max: Option<usize>,
    state_groups_max: Option<usize>,
    windows_open_max: Option<usize>,
    sessions_open_max: Option<usize>,
    exchange_queue_max: Option<usize>,
    poll_idle_us: Option<u64>,
    idle_timeout_ms_default: Option<i64>,
}

impl LimitsFile {
    fn apply(self, origin: &str) -> Result<Limits> {
        let d = Limits::default();
        let idle = self
            .idle_timeout_ms_default
            .unwrap_or(d.idle_timeout_ms_default);
        if idle < 1 {
            return Err(EngineError::Config(format!(
                "tuning profile {origin}: [limits] idle_timeout_ms_default = {idle} is out of \
                 range [1, 86400000]"
            )));
        }
        let limits = Limits {
            batch_rows_max: self.batch_rows_max.unwrap_or(d.batch_rows_max),
            batch_bytes_max: self.batch_bytes_max.unwrap_or(d.batch_bytes_max),
            record_bytes_max: self.record_bytes_max.unwrap_or(d.record_bytes_max),
            state_bytes_max: self.state_bytes_max.unwrap_or(d.state_bytes_max),
            state_groups_max: self.state_groups_max.unwrap_or(d.state_groups_max),
            windows_open_max: self.windows_open_max.unwrap_or(d.windows_open_max),
            sessions_open_max: self.sessions_open_max.unwrap_or(d.sessions_open_max),
            exchange_queue_max: self.exchange_queue_max.unwrap_or(d.exchange_queue_max),
            poll_idle_us: self.poll_idle_us.unwrap_or(d.poll_idle_us),
            idle_timeout_ms_default: idle,
        };
        limits.validate().map_err(|e| match e {
            EngineError::Config(m) => {
                EngineError::Config(format!("tuning profile {origin}: [limits] {m}"))
            }
            other => other,
        })?;
        Ok(limits)
    }
}

/// Flattens `[kafka]`: `fetch.wait.max.ms = 10` (a dotted key, so nested tables in TOML)
/// and `"fetch.wait.max.ms" = "10"` both give the property `fetch.wait.max.ms` = `10`.
fn flatten_kafka(
    prefix: &str,
    table: toml::Table,
    origin: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<()> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let text = match value {
            toml::Value::Table(inner) => {
                flatten_kafka(&name, inner, origin, out)?;
                continue;
            }
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                return Err(EngineError::Config(format!(
                    "tuning profile {origin}: [kafka] {name} = {other} is not a string, number \
                     or boolean"
                )))
            }
        };
        if name.starts_with("properties.") {
            return Err(EngineError::Config(format!(
                "tuning profile {origin}: [kafka] key '{name}': write librdkafka properties \
                 without the 'properties.' prefix of table options"
            )));
        }
        out.insert(name, text);
    }
    if out.len() > PROFILE_KAFKA_PROPERTIES_MAX {
        return Err(EngineError::Config(format!(
            "tuning profile {origin}: [kafka] sets more than {PROFILE_KAFKA_PROPERTIES_MAX} \
             properties"
        )));
    }
    Ok(())
}

/// Lets librdkafka check the names and values of the `[kafka]` properties.
fn check_kafka(kafka: &BTreeMap<String, String>, origin: &str) -> Result<()> {
    let mut config = ClientConfig::new();
    for (k, v) in kafka {
        config.set(k, v);
    }
    match config.create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(_, desc, key, value)) => Err(EngineError::Config(format!(
            "tuning profile {origin}: [kafka] {key} = '{value}' is rejected by librdkafka: {desc}"
        ))),
        Err(other) => Err(EngineError::Config(format!(
            "tuning profile {origin}: librdkafka rejects the [kafka] properties: {other}"
        ))),
    }
}

/// The 1-based line of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl Profile {
    /// Reads, parses and checks the profile at `path`, including that its cores exist on
    /// this host ([`available_cores`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Profile> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let meta = std::fs::metadata(path)
            .map_err(|e| EngineError::io(format!("cannot read tuning profile {origin}"), e))?;
        if meta.len() > PROFILE_BYTES_MAX {
            return Err(EngineError::Config(format!(
                "tuning profile {origin} has {} bytes, more than the {PROFILE_BYTES_MAX} a \
                 profile may have",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::io(format!("cannot read tuning profile {origin}"), e))?;
        let profile = Profile::from_toml_str(&text, &origin)?;
        profile.check_cores(&available_cores(), &origin)?;
        Ok(profile)
    }

    /// Parses and range checks a profile; `origin` (a file name) goes into every error.
    /// Does not check that the cores exist on this host: see [`Profile::check_cores`].
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Profile> {
        let file: ProfileFile = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(", line {}", line_of(text, s.start)))
                .unwrap_or_default();
            EngineError::Config(format!(
                "tuning profile {origin}{at}: {}",
                e.message().trim_end()
            ))
        })?;
        let limits = match file.limits {
            Some(l) => l.apply(origin)?,
            None => Limits::default(),
        };
        let checkpoint = match file.checkpoint {
            Some(c) => c.apply(origin)?,
            None => CheckpointTuning::default(),
        };
        let mut kafka = BTreeMap::new();
        if let Some(table) = file.kafka {
            flatten_kafka("", table, origin, &mut kafka)?;
        }
        check_kafka(&kafka, origin)?;
        if let Some(cores) = &file.cores {
            if cores.is_empty() || cores.len() > PROFILE_CORES_MAX {
                return Err(EngineError::Config(format!(
                    "tuning profile {origin}: cores lists {} cores; list 1 to \
                     {PROFILE_CORES_MAX}, or leave cores out to use every core",
                    cores.len()
                )));
            }
            let mut seen = cores.clone();
            seen.sort_unstable();
            if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
                return Err(EngineError::Config(format!(
                    "tuning profile {origin}: cores lists core {} twice",
                    w[0]
                )));
            }
        }
        Ok(Profile {
            cores: file.cores,
            pin: file.pin.unwrap_or(true),
            limits,
            kafka,
            checkpoint,
        })
    }

    /// Checks that every listed core is one of `available` (this process's cores).
    pub fn check_cores(&self, available: &[usize], origin: &str) -> Result<()> {
        let Some(cores) = &self.cores else {
            return Ok(());
        };
        match cores.iter().find(|c| !available.contains(c)) {
            None => Ok(()),
            Some(c) => Err(EngineError::Config(format!(
                "tuning profile {origin}: cores = {cores:?} lists core {c}, which this host \
                 does not have or this process may not run on (available: {available:?})"
            ))),
        }
    }

    /// Job options that run with this profile (the other options at their defaults).
    pub fn job_options(&self) -> JobOptions {
        let mut opts = JobOptions::default();
        self.apply(&mut opts);
        opts
    }

    /// Sets the cores, pinning, limits and Kafka properties of `opts` from this profile.
    pub fn apply(&self, opts: &mut JobOptions) {
        opts.cores = self.cores.clone();
        opts.limits = self.limits.clone();
        opts.kafka_properties = self.kafka.clone();
        opts.checkpoint_tuning = self.checkpoint.clone();
        opts.pin_cores = self.pin;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match Profile::from_toml_str(text, "test.toml") {
            Ok(p) => panic!("expected an error, got {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn shipped(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tuning")
            .join(name)
    }

    #[test]
    fn empty_profile_is_the_defaults() {
        let p = Profile::from_toml_str("", "empty.toml").unwrap();
        assert_eq!(p, Profile::default());
        assert_eq!(p.limits, Limits::default());
    }

    #[test]
    fn every_limit_is_read() {
        let p = Profile::from_toml_str(
            "cores = [0]\n[limits]\nbatch_rows_max = 7\nbatch_bytes_max = 2048\n\
             record_bytes_max = 100\nstate_bytes_max = 2097152\nstate_groups_max = 9\n\
             windows_open_max = 10\nexchange_queue_max = 11\npoll_idle_us = 12\n\
             idle_timeout_ms_default = 14\n",
            "t.toml",
        )
        .unwrap();
        let want = Limits {
            batch_rows_max: 7,
            batch_bytes_max: 2048,
            record_bytes_max: 100,
            state_bytes_max: 2 << 20,
            state_groups_max: 9,
            windows_open_max: 10,
            sessions_open_max: Limits::default().sessions_open_max,
            exchange_queue_max: 11,
            poll_idle_us: 12,
            idle_timeout_ms_default: 14,
        };
        assert_eq!(p.limits, want);
        assert_eq!(p.cores, Some(vec![0]));
    }

    #[test]
    fn kafka_keys_dotted_or_quoted() {
        let p = Profile::from_toml_str(
            "[kafka]\nfetch.wait.max.ms = 10\n\"linger.ms\" = \"5\"\nenable.idempotence = true\n",
            "t.toml",
        )
        .unwrap();
        let got: Vec<(&str, &str)> = p
            .kafka
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("enable.idempotence", "true"),
                ("fetch.wait.max.ms", "10"),
                ("linger.ms", "5")
            ]
        );
    }

    #[test]
    fn checkpoint_table_is_read_and_checked() {
        let p = Profile::from_toml_str(
            "[checkpoint]\ninterval_ms = 250\nio_uring_depth = 64\ndir = '/var/lib/x'\n",
            "t.toml",
        )
        .expect("profile");
        assert_eq!(
            p.checkpoint.interval,
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(p.checkpoint.store.io_depth_max, 64);
        assert_eq!(p.checkpoint.dir.as_deref(), Some(Path::new("/var/lib/x")));
        let e = err("[checkpoint]\ninterval_ms = 1\n");
        assert!(
            e.contains("t.toml") && e.contains("[checkpoint]") && e.contains("out of range"),
            "{e}"
        );
        let e = err("[checkpoint]\nio_uring_depth = 0\n");
        assert!(e.contains("io_depth_max"), "{e}");
        let e = err("[checkpoint]\ncheckpoints_retained = 1\n");
        assert!(e.contains("checkpoints_retained"), "{e}");
        let e = err("[checkpoint]\nintervall_ms = 5\n");
        assert!(e.contains("intervall_ms"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = err("checkpoint_interval_ms = 5\n");
        assert!(
            e.contains("test.toml") && e.contains("checkpoint_interval_ms"),
            "{e}"
        );
        let e = err("[limits]\nbatch_rows_maximum = 5\n");
        assert!(
            e.contains("batch_rows_maximum") && e.contains("line 2"),
            "{e}"
        );
        let e = err("[io_uring]\nqueue_depth = 5\n");
        assert!(e.contains("io_uring"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_key_value_and_range() {
        let e = err("[limits]\nbatch_rows_max = 0\n");
        assert!(
            e.contains("test.toml")
                && e.contains("batch_rows_max = 0")
                && e.contains("[1, 1048576]"),
            "{e}"
        );
        let e = err("[limits]\npoll_idle_us = 2000000\n");
        assert!(
            e.contains("poll_idle_us = 2000000") && e.contains("[0, 1000000]"),
            "{e}"
        );
        let e = err("[limits]\nidle_timeout_ms_default = -5\n");
        assert!(e.contains("idle_timeout_ms_default = -5"), "{e}");
        let e = err("[limits]\nstate_groups_max = -1\n");
        assert!(e.contains("test.toml") && e.contains("line 2"), "{e}");
        let e = err("[limits]\nbatch_rows_max = \"big\"\n");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_kafka_properties_are_named() {
        let e = err("[kafka]\nfetch.wait.max.mss = 5\n");
        assert!(
            e.contains("fetch.wait.max.mss") && e.contains("test.toml"),
            "{e}"
        );
        let e = err("[kafka]\nlinger.ms = \"soon\"\n");
        assert!(e.contains("linger.ms") && e.contains("soon"), "{e}");
        let e = err("[kafka]\n\"properties.linger.ms\" = 5\n");
        assert!(e.contains("prefix"), "{e}");
        let e = err("[kafka]\nlinger.ms = [1, 2]\n");
        assert!(e.contains("linger.ms"), "{e}");
    }

    #[test]
    fn cores_are_checked() {
        assert!(err("cores = []\n").contains("cores lists 0 cores"));
        assert!(err("cores = [1, 1]\n").contains("core 1 twice"));
        let p = Profile::from_toml_str("cores = [0, 3]\n", "t.toml").unwrap();
        assert!(p.check_cores(&[0, 1, 2, 3], "t.toml").is_ok());
        let e = p.check_cores(&[0, 1], "t.toml").unwrap_err().to_string();
        assert!(e.contains("core 3") && e.contains("t.toml"), "{e}");
        let missing = available_cores().iter().max().copied().unwrap_or(0) + 1;
        let path =
            std::env::temp_dir().join(format!("spillway-missing-core-{}.toml", std::process::id()));
        std::fs::write(&path, format!("cores = [{missing}]\n")).unwrap();
        let e = Profile::load(&path).unwrap_err().to_string();
        let _ = std::fs::remove_file(&path);
        assert!(
            e.contains(&format!("core {missing}")) && e.contains("spillway-missing-core"),
            "{e}"
        );
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let e = Profile::load("/nonexistent/spillway.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/spillway.toml"), "{e}");
    }

    #[test]
    fn shipped_profiles_load() {
        let dev = Profile::load(shipped("dev-2core.toml")).unwrap();
        assert_eq!(dev.cores, None, "the dev profile runs shards on every core");
        assert!(dev.limits.state_bytes_max < Limits::default().state_bytes_max);
        assert!(dev.kafka.contains_key("fetch.wait.max.ms"));
        assert!(
            !dev.pin && !dev.job_options().pin_cores,
            "dev shards share their cores"
        );
        let text = std::fs::read_to_string(shipped("server-16core.toml")).unwrap();
        let server = Profile::from_toml_str(&text, "server-16core.toml").unwrap();
        server
            .check_cores(&(0..16).collect::<Vec<_>>(), "server-16core.toml")
            .unwrap();
        let cores = server.cores.clone().unwrap();
        assert!(
            !cores.contains(&0),
            "core 0 is left to librdkafka and interrupts"
        );
        assert!(server.kafka.contains_key("linger.ms"));
        let opts = server.job_options();
        assert_eq!(opts.cores, Some(cores));
        assert_eq!(opts.limits, server.limits);
        assert_eq!(opts.kafka_properties, server.kafka);
        assert!(
            server.pin && opts.pin_cores,
            "server shards own their cores"
        );
        assert!(err("pin = 1\n").contains("expected a boolean"));
    }

    #[test]
    fn latency_profile_loads_with_fractional_linger() {
        let p = Profile::load(shipped("latency-2core.toml")).unwrap();
        assert!(!p.pin, "2-core shards share their cores with librdkafka");
        assert_eq!(
            p.kafka.get("fetch.wait.max.ms").map(String::as_str),
            Some("0")
        );
        assert_eq!(p.kafka.get("linger.ms").map(String::as_str), Some("0.2"));
        assert_eq!(p.limits.poll_idle_us, Limits::default().poll_idle_us);
        assert!(p.limits.idle_timeout_ms_default < Limits::default().idle_timeout_ms_default);
    }

    #[test]
    fn kafka_properties_merge_and_table_options_win() {
        let program = crate::sql::parse_program(
            "CREATE TABLE k (a BIGINT) WITH ('connector' = 'kafka', 'topic' = 't', \
             'properties.bootstrap.servers' = 'h:1', 'properties.linger.ms' = '50');\n\
             CREATE TABLE f (a BIGINT) WITH ('connector' = 'filesystem', 'path' = 'x.jsonl');\n\
             INSERT INTO f SELECT a FROM k;",
        )
        .unwrap();
        let p =
            Profile::from_toml_str("[kafka]\nlinger.ms = 5\nfetch.wait.max.ms = 10\n", "k.toml")
                .unwrap();
        let table = |name: &str| program.table(name).cloned().unwrap();
        let k = crate::connector_registry::with_kafka_properties(table("k"), &p.kafka);
        assert_eq!(
            k.option("properties.linger.ms"),
            Some("50"),
            "the table's own option wins"
        );
        assert_eq!(k.option("properties.fetch.wait.max.ms"), Some("10"));
        assert_eq!(k.option("properties.bootstrap.servers"), Some("h:1"));
        let f = crate::connector_registry::with_kafka_properties(table("f"), &p.kafka);
        assert_eq!(
            f.options,
            table("f").options,
            "non-Kafka tables are left alone"
        );
    }

    #[test]
    fn a_job_with_batch_rows_max_1_counts_right() {
        use spillway_connectors::memory_source::MemorySourceFactory;
        use spillway_connectors::trades_generator::{symbol_name, TradeGenConfig, TradeGenerator};
        use std::sync::Arc;
        let events = 3_000u64;
        let partitions = 3;
        let mut generator = TradeGenerator::new(TradeGenConfig {
            events_per_second: 1_000,
            disorder_ms: 200,
            symbols: 5,
            ..TradeGenConfig::default()
        });
        let mut buffers = vec![Vec::new(); partitions];
        let mut oracle: BTreeMap<(String, i64), u64> = BTreeMap::new();
        for i in 0..events {
            let t = generator.next();
            let buf = &mut buffers[i as usize % partitions];
            generator.write_json(&t, buf);
            buf.push(b'\n');
            *oracle
                .entry((symbol_name(t.symbol), t.ts_ms.div_euclid(1000)))
                .or_default() += 1;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("stats.jsonl");
        let mut program = crate::sql::parse_program(crate::demo::TRADES_SQL).unwrap();
        for table in program.tables.values_mut() {
            if table.name == "stats" {
                table
                    .options
                    .insert("path".into(), out.display().to_string());
            }
        }
        let profile = Profile::from_toml_str("[limits]\nbatch_rows_max = 1\n", "one.toml").unwrap();
        let mut opts = profile.job_options();
        opts.shards = Some(2);
        opts.pin_cores = false;
        opts.source_override = Some(Arc::new(MemorySourceFactory::new(
            "trades",
            buffers.into_iter().map(Arc::new).collect(),
        )));
        assert_eq!(opts.limits.batch_rows_max, 1);
        let report = crate::job::run_program(&program, &opts).unwrap();
        assert_eq!(report.records_in(), events);
        assert_eq!(report.late_events(), 0);
        let text = std::fs::read_to_string(&out).unwrap();
        let mut got: Vec<u64> = Vec::new();
        for line in text.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            got.push(row["trades"].as_u64().unwrap());
        }
        let mut want: Vec<u64> = oracle.values().copied().collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got.iter().sum::<u64>(), events);
        assert_eq!(got, want, "per (symbol, window) counts match the oracle");
    }

    proptest::proptest! {
        #[test]
        fn batch_rows_in_range_load_and_others_fail(n in 0u64..(1 << 21)) {
            let r = Profile::from_toml_str(&format!("[limits]\nbatch_rows_max = {n}\n"), "p.toml");
            if (1..=(1 << 20)).contains(&n) {
                proptest::prop_assert_eq!(r.unwrap().limits.batch_rows_max as u64, n);
            } else {
                proptest::prop_assert!(r.unwrap_err().to_string().contains("batch_rows_max"));
            }
        }
    }
}
