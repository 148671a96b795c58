//! Whether a job runs in group mode, what it needs, and the per-partition jobs it runs.

use std::path::{Path, PathBuf};

use spillway_connectors::kafka_options::{KafkaSourceOptions, PartitionAssignment};

use crate::catalog::TableDef;
use crate::checkpoint::config::DIR_KEYS;
use crate::checkpoint::CheckpointConfig;
use crate::connector_registry;
use crate::error::{EngineError, Result};
use crate::plan::{Pipeline, Program};

/// `SET 'checkpoint.storage'`: where a job in group mode keeps its partitions' checkpoints.
pub const STORAGE_KEY: &str = "checkpoint.storage";
/// `SET 'checkpoint.state-topic'`: the state topic's name (default `<group id>-state`).
pub const STATE_TOPIC_KEY: &str = "checkpoint.state-topic";

/// Where the checkpoints of a job in group mode live, so that a partition's new owner finds
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateStorage {
    /// A compacted Kafka topic (the default): `checkpoint.dir` is each process's local working
    /// copy.
    KafkaTopic(String),
    /// `checkpoint.dir` itself, a directory every process mounts.
    SharedDirectory,
}

/// A job in group mode (`'scan.partition-assignment' = 'group'` on its Kafka source).
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// The whole program: each job instance runs a copy with its own directories.
    pub program: Program,
    /// The source table's name.
    pub source_table: String,
    /// The source table's parsed Kafka options (group id, topic, properties).
    pub source: KafkaSourceOptions,
    /// The repartition topic, and the partition count the table asks for (None: the
    /// source topic's).
    pub repartition_topic: String,
    pub repartition_partitions: Option<i32>,
    /// The job's checkpoints: instance `r` keeps its own under `dir/partition-<r>`.
    pub checkpoint: CheckpointConfig,
    pub storage: StateStorage,
}

impl GroupPlan {
    /// The consumer group of the job instances' membership on the repartition topic.
    pub fn aggregate_group_id(&self) -> String {
        format!("{}-aggregate", self.source.group_id)
    }

    /// The program job instance `partition` runs: checkpoints in `dir/partition-<r>`, and
    /// every filesystem sink (results, late rows) under `path/partition-<r>`, so that the
    /// instance's files follow its partition from process to process.
    pub fn instance_program(&self, partition: i32) -> Program {
        let mut program = self.program.clone();
        let sub = partition_dir_name(partition);
        for key in DIR_KEYS {
            program.settings.remove(*key);
        }
        program.settings.insert(
            DIR_KEYS[0].to_string(),
            self.checkpoint.dir.join(&sub).display().to_string(),
        );
        let sinks = filesystem_sinks(&program);
        for (name, table) in program.tables.iter_mut() {
            if sinks.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                if let Some(path) = table.options.get_mut("path") {
                    *path = Path::new(path.as_str()).join(&sub).display().to_string();
                }
            }
        }
        program
    }

    /// The locks instance `partition` holds while it runs, in the order it takes them: one
    /// beside its checkpoint directory (`partition-<r>.lock`: shared or local, and outside the
    /// directory a restore replaces), and one in each filesystem sink's partition directory
    /// (`.lock`), which other processes write too.
    pub fn lock_paths(&self, partition: i32) -> Vec<PathBuf> {
        let sub = partition_dir_name(partition);
        let mut out = vec![self.checkpoint.dir.join(format!("{sub}.lock"))];
        for sink in filesystem_sinks(&self.program) {
            if let Some(path) = self.program.table(&sink).and_then(|t| t.option("path")) {
                out.push(Path::new(path).join(&sub).join(".lock"));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The names of the program's filesystem sink tables (results and late rows).
fn filesystem_sinks(program: &Program) -> Vec<String> {
    program
        .pipelines
        .iter()
        .flat_map(|p| std::iter::once(p.sink.clone()).chain(p.late.late_sink.clone()))
        .filter(|s| {
            program
                .table(s)
                .is_some_and(|t| t.connector() == "filesystem")
        })
        .collect()
}

/// The directory name of repartition partition `partition`'s checkpoints and sink files.
pub fn partition_dir_name(partition: i32) -> String {
    format!("partition-{partition}")
}

/// An error when a job that does not run in group mode has settings only group mode reads.
pub fn refuse_group_settings(program: &Program) -> Result<()> {
    for key in [STORAGE_KEY, STATE_TOPIC_KEY] {
        if program.settings.contains_key(key) {
            return Err(EngineError::Config(format!(
                "SET '{key}' applies to group mode only (a Kafka source with \
                 'scan.partition-assignment' = 'group'); this job keeps its checkpoints in \
                 'checkpoint.dir'"
            )));
        }
    }
    Ok(())
}

/// The group plan of a job whose source says `'scan.partition-assignment' = 'group'` (None
/// for every other job), after checking that the job can run that way.
pub fn plan_group(
    program: &Program,
    pipeline: &Pipeline,
    source_table: &TableDef,
    sink_table: &TableDef,
    checkpoint: Option<&CheckpointConfig>,
) -> Result<Option<GroupPlan>> {
    if source_table.connector() != "kafka" {
        return Ok(None);
    }
    let options = connector_registry::connector_options(source_table)?;
    let source = KafkaSourceOptions::parse(&source_table.name, &options)?;
    let PartitionAssignment::Group {
        repartition_topic,
        repartition_partitions,
    } = source.assignment.clone()
    else {
        return Ok(None);
    };
    let refuse = |why: &str| {
        Err(EngineError::Config(format!(
            "table '{}' has 'scan.partition-assignment' = 'group': {why}",
            source_table.name
        )))
    };
    let Some(checkpoint) = checkpoint else {
        return refuse(
            "group mode needs checkpoints (SET 'checkpoint.dir' = '/var/lib/spillway/JOB'): a \
             partition's state moves with it from process to process through its checkpoints, \
             kept in the state topic (a local working copy in the directory) or, with SET \
             'checkpoint.storage' = 'shared-directory', in the directory itself",
        );
    };
    let storage = match program
        .settings
        .get(STORAGE_KEY)
        .map(|v| v.to_ascii_lowercase())
    {
        None => StateStorage::KafkaTopic(String::new()),
        Some(v) if v == "kafka" => StateStorage::KafkaTopic(String::new()),
        Some(v) if v == "shared-directory" => StateStorage::SharedDirectory,
        Some(v) => {
            return Err(EngineError::Config(format!(
                "SET '{STORAGE_KEY}' = '{v}': expected 'kafka' (a compacted state topic, the \
                 default) or 'shared-directory' (checkpoint.dir on storage every process mounts)"
            )))
        }
    };
    let storage = match storage {
        StateStorage::KafkaTopic(_) => StateStorage::KafkaTopic(
            program
                .settings
                .get(STATE_TOPIC_KEY)
                .cloned()
                .unwrap_or_else(|| format!("{}-state", source.group_id)),
        ),
        StateStorage::SharedDirectory => {
            if program.settings.contains_key(STATE_TOPIC_KEY) {
                return Err(EngineError::Config(format!(
                    "SET '{STATE_TOPIC_KEY}' names a state topic, but SET '{STORAGE_KEY}' = \
                     'shared-directory' keeps checkpoints in the directory"
                )));
            }
            StateStorage::SharedDirectory
        }
    };
    if pipeline.aggregation.is_none() {
        return refuse(
            "group mode shares windowed aggregations (GROUP BY); a query without one keeps no \
             state: run one process per disjoint set of partitions instead",
        );
    }
    if pipeline.stream_join.is_some() {
        return refuse("joins of two streams do not run in group mode yet");
    }
    if pipeline.join.is_some() {
        return refuse("joins with dimension tables do not run in group mode yet");
    }
    let exactly_once_kafka = sink_table.connector() == "kafka"
        && sink_table
            .option("sink.delivery-guarantee")
            .is_some_and(|g| g.eq_ignore_ascii_case("exactly-once"));
    if exactly_once_kafka {
        return refuse(
            "an exactly-once Kafka sink is not supported in group mode yet (its transactions \
             commit the source's offsets, which group mode keeps in its checkpoints); use the \
             filesystem sink, which is exactly-once per partition, or an at-least-once or \
             upsert-kafka sink",
        );
    }
    Ok(Some(GroupPlan {
        program: program.clone(),
        source_table: source_table.name.clone(),
        source,
        repartition_topic,
        repartition_partitions,
        checkpoint: checkpoint.clone(),
        storage,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::config::CheckpointTuning;

    fn sql(extra: &str, settings: &str, sink: &str) -> String {
        format!(
            "CREATE TABLE t (k STRING, v BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'events',
                   'properties.bootstrap.servers' = '127.0.0.1:9',
                   'properties.group.id' = 'g', 'scan.startup.mode' = 'group-offsets',
                   'scan.partition-assignment' = 'group' {extra});
             CREATE TABLE out (k STRING, n BIGINT) WITH ({sink});
             {settings}
             INSERT INTO out SELECT k, COUNT(*) FROM t GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND);"
        )
    }

    fn plan(text: &str) -> Result<Option<GroupPlan>> {
        let program = crate::sql::parse_program(text)?;
        let p = &program.pipelines[0];
        let cp =
            CheckpointConfig::from_settings(&program.settings, None, &CheckpointTuning::default())?;
        plan_group(
            &program,
            p,
            program.table(&p.source).unwrap(),
            program.table(&p.sink).unwrap(),
            cp.as_ref(),
        )
    }

    const FILE_SINK: &str = "'connector' = 'filesystem', 'path' = '/data/out'";

    #[test]
    fn instances_get_their_own_checkpoint_and_sink_directories() {
        let g = plan(&sql("", "SET 'checkpoint.dir' = '/shared/job';", FILE_SINK))
            .unwrap()
            .expect("group mode");
        assert_eq!(g.repartition_topic, "g-repartition");
        assert_eq!(g.aggregate_group_id(), "g-aggregate");
        let p = g.instance_program(3);
        assert_eq!(p.settings["checkpoint.dir"], "/shared/job/partition-3");
        assert_eq!(g.storage, StateStorage::KafkaTopic("g-state".into()));
        assert_eq!(
            g.lock_paths(3),
            vec![
                PathBuf::from("/data/out/partition-3/.lock"),
                PathBuf::from("/shared/job/partition-3.lock")
            ]
        );
        assert_eq!(
            p.table("out").unwrap().option("path"),
            Some("/data/out/partition-3")
        );
        // The source table is untouched.
        assert_eq!(p.table("t").unwrap().option("topic"), Some("events"));
    }

    #[test]
    fn group_mode_without_checkpoints_or_aggregation_is_refused() {
        let e = plan(&sql("", "", FILE_SINK)).unwrap_err().to_string();
        assert!(e.contains("needs checkpoints"), "{e}");
        let e = plan(&sql(
            "",
            "SET 'checkpoint.dir' = '/j'; SET 'checkpoint.storage' = 'nfs';",
            FILE_SINK,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("'kafka'") && e.contains("'shared-directory'"),
            "{e}"
        );
        let shared = plan(&sql(
            "",
            "SET 'checkpoint.dir' = '/j'; SET 'checkpoint.storage' = 'shared-directory';",
            FILE_SINK,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(shared.storage, StateStorage::SharedDirectory);
        let named = plan(&sql(
            "",
            "SET 'checkpoint.dir' = '/j'; SET 'checkpoint.state-topic' = 'jobs-state';",
            FILE_SINK,
        ))
        .unwrap()
        .unwrap();
        assert_eq!(named.storage, StateStorage::KafkaTopic("jobs-state".into()));
        let text = sql("", "SET 'checkpoint.dir' = '/shared/job';", FILE_SINK).replace(
            "SELECT k, COUNT(*) FROM t GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND)",
            "SELECT k, v FROM t",
        );
        let e = plan(&text).unwrap_err().to_string();
        assert!(e.contains("windowed aggregations"), "{e}");
        let eo = "'connector' = 'kafka', 'topic' = 'o', 'properties.bootstrap.servers' = 'h:1', \
                  'sink.delivery-guarantee' = 'exactly-once'";
        let e = plan(&sql("", "SET 'checkpoint.dir' = '/shared/job';", eo))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly-once Kafka sink"), "{e}");
    }

    #[test]
    fn static_assignment_is_not_group_mode() {
        let text = sql("", "SET 'checkpoint.dir' = '/j';", FILE_SINK).replace(
            "'scan.partition-assignment' = 'group'",
            "'scan.partition-assignment' = 'static'",
        );
        assert!(plan(&text).unwrap().is_none());
        let program = crate::sql::parse_program(&text).unwrap();
        refuse_group_settings(&program).unwrap();
        let with_topic =
            crate::sql::parse_program(&format!("{text} SET 'checkpoint.state-topic' = 's';"))
                .unwrap();
        let e = refuse_group_settings(&with_topic).unwrap_err().to_string();
        assert!(e.contains("group mode only"), "{e}");
    }
}
