//! Runs a job in group mode in this process: the forwarder (stage A) and the job instances of
//! the repartition partitions the aggregate group gives this process (stage B).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use spillway_connectors::kafka_options::client_config;
use spillway_connectors::repartition_source::RepartitionSourceFactory;
use spillway_connectors::repartition_topic::{ensure_repartition_topic, ensure_state_topic};
use spillway_connectors::state_topic::{StateTopic, StateTopicConfig};

use super::forwarder::{run_forwarder, ForwarderSetup, ForwarderStats};
use super::membership::{lock, InstanceSpawner, Instances, MembershipContext};
use super::plan::{partition_dir_name, GroupPlan, StateStorage};
use crate::checkpoint::committer::CheckpointPublisher;
use crate::error::{EngineError, Result};
use crate::job::{prepare, run_prepared, JobOptions, JobReport, PreparedJob};
use crate::metrics::JobMetrics;

/// How often the runner polls the membership consumer (rebalance callbacks run in the poll)
/// and checks the forwarder and the instances.
const MEMBERSHIP_POLL_MS: u64 = 100;

/// The shortest wait for the state topic (uploads and restores of large state take longer than
/// a connection).
const STATE_TOPIC_TIMEOUT_MIN: Duration = Duration::from_secs(60);

/// Runs `job` (prepared with a group plan) until `opts.stop` is set or a part fails.
pub fn run_group(job: PreparedJob, plan: GroupPlan, opts: &JobOptions) -> Result<JobReport> {
    let started = Instant::now();
    let timeout = Duration::from_millis(plan.source.connect_timeout_ms);
    let source_partitions = job.partitions.len() as i32;
    let table = plan.source_table.clone();
    let repartition_partitions = ensure_repartition_topic(
        &plain_config(&plan, "admin"),
        &plan.repartition_topic,
        plan.repartition_partitions,
        source_partitions,
        timeout,
    )?;
    if let StateStorage::KafkaTopic(topic) = &plan.storage {
        ensure_state_topic(
            &plain_config(&plan, "admin"),
            topic,
            repartition_partitions,
            timeout,
        )?;
    }
    tracing::info!(
        "group mode: group '{}' reads '{}' ({source_partitions} partitions) into '{}' \
         ({repartition_partitions} partitions); job instances join '{}'; checkpoints in {}",
        plan.source.group_id,
        plan.source.common.topic,
        plan.repartition_topic,
        plan.aggregate_group_id(),
        match &plan.storage {
            StateStorage::KafkaTopic(t) => format!("state topic '{t}'"),
            StateStorage::SharedDirectory =>
                format!("shared directory {}", plan.checkpoint.dir.display()),
        }
    );

    let forwarder_stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ForwarderStats::default());
    let setup = ForwarderSetup {
        table: job.source_table.clone(),
        pipeline: job.pipeline.clone(),
        consumer_config: plan.source.consumer_config(&table, "forwarder"),
        producer_config: plain_config(&plan, "forwarder-producer"),
        source_topic: plan.source.common.topic.clone(),
        repartition_topic: plan.repartition_topic.clone(),
        repartition_partitions,
        batch_rows_max: opts.limits.batch_rows_max,
        batch_bytes_max: opts.limits.batch_bytes_max,
        record_bytes_max: plan.source.record_bytes_max,
        stop: forwarder_stop.clone(),
        stats: stats.clone(),
    };
    let forwarder = std::thread::Builder::new()
        .name("spillway-forwarder".into())
        .spawn(move || run_forwarder(setup))
        .map_err(|e| EngineError::io("cannot start the forwarder thread", e))?;

    let spawner = Spawner {
        plan: plan.clone(),
        opts: opts.clone(),
        cores: job.cores.clone(),
        source_partitions,
        timeout,
        state_client: plain_config(&plan, "state"),
    };
    let instances = Arc::new(Mutex::new(Instances::new(Box::new(spawner))));
    let outcome = membership_loop(&plan, opts, &instances, &forwarder);

    // Stop reading first, so nothing new enters the repartition topic; then the instances
    // take their final checkpoints; then the member leaves the group.
    forwarder_stop.store(true, Ordering::Release);
    let forwarder_outcome = match forwarder.join() {
        Ok(r) => r,
        Err(_) => Err(EngineError::Internal(
            "the forwarder thread panicked".into(),
        )),
    };
    // The lock is released before the member leaves: leaving runs the revoke callback, which
    // takes it (finding nothing left to stop).
    lock(&instances).stop_all();
    if let Ok(consumer) = &outcome {
        consumer.unsubscribe();
    }
    let consumer = outcome?;
    drop(consumer);
    forwarder_outcome?;
    let mut instances = lock(&instances);
    if let Some(e) = instances.error.take() {
        return Err(e);
    }
    let shards = instances.reports.drain(..).flat_map(|r| r.shards).collect();
    tracing::info!(
        "group mode: {} rows forwarded, {} time marks, {} rebalances of the aggregate group",
        stats.rows_forwarded.load(Ordering::Relaxed),
        stats.marks_sent.load(Ordering::Relaxed),
        instances.rebalances
    );
    Ok(JobReport {
        shards,
        elapsed: started.elapsed(),
        checkpoints: None,
    })
}

/// Joins the aggregate group and polls it until the stop flag, a failed instance or a
/// failed forwarder; returns the member (still in the group) so that the caller leaves after
/// stopping the instances.
fn membership_loop(
    plan: &GroupPlan,
    opts: &JobOptions,
    instances: &Arc<Mutex<Instances>>,
    forwarder: &JoinHandle<Result<()>>,
) -> Result<BaseConsumer<MembershipContext>> {
    let mut config = plan.source.consumer_config(&plan.source_table, "member");
    config.set("group.id", plan.aggregate_group_id());
    config.set("partition.assignment.strategy", "cooperative-sticky");
    let context = MembershipContext {
        topic: plan.repartition_topic.clone(),
        instances: instances.clone(),
    };
    let consumer: BaseConsumer<MembershipContext> =
        config.create_with_context(context).map_err(|e| {
            EngineError::Config(format!(
                "cannot create the member of group '{}': {e}",
                plan.aggregate_group_id()
            ))
        })?;
    consumer
        .subscribe(&[plan.repartition_topic.as_str()])
        .map_err(|e| {
            EngineError::Config(format!(
                "cannot join group '{}' on '{}': {e}",
                plan.aggregate_group_id(),
                plan.repartition_topic
            ))
        })?;
    loop {
        if opts.stop.load(Ordering::Acquire) {
            return Ok(consumer);
        }
        // Rows never arrive (the partitions are paused); errors are transient broker states
        // that librdkafka retries.
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(MEMBERSHIP_POLL_MS)) {
            tracing::warn!("group '{}': {e}", plan.aggregate_group_id());
        }
        if forwarder.is_finished() {
            // The forwarder ends by itself only with an error (the caller reports it).
            return Ok(consumer);
        }
        let mut i = lock(instances);
        i.reap();
        if let Some(e) = i.error.take() {
            return Err(e);
        }
    }
}

/// librdkafka properties only a consumer takes: a source table's `properties.*` may set them,
/// and the forwarder's producer and the admin client must not get them (librdkafka warns).
const CONSUMER_ONLY_PROPERTIES: &[&str] = &[
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.remote.assignor",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "coordinator.query.interval.ms",
    "auto.offset.reset",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "isolation.level",
    "check.crcs",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.queue.backoff.ms",
    "fetch.error.backoff.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
];

/// A client configuration with the table's servers and properties, without consumer settings.
fn plain_config(plan: &GroupPlan, client_suffix: &str) -> ClientConfig {
    let mut config = client_config(&[], &plan.source.common.properties);
    for key in CONSUMER_ONLY_PROPERTIES {
        config.remove(key);
    }
    config.set("bootstrap.servers", &plan.source.common.bootstrap_servers);
    config.set(
        "client.id",
        format!("spillway-{}-{client_suffix}", plan.source_table),
    );
    config
}

/// Starts job instances: each is the ordinary job on one shard, reading one repartition
/// partition, with its checkpoints and sink files in that partition's directories.
struct Spawner {
    plan: GroupPlan,
    opts: JobOptions,
    cores: Vec<usize>,
    source_partitions: i32,
    timeout: Duration,
    /// Client settings of the state topic's producer and reader.
    state_client: ClientConfig,
}

/// Publishes an instance's checkpoints to its partition of the state topic.
struct TopicPublisher(StateTopic);

impl CheckpointPublisher for TopicPublisher {
    fn publish(&mut self, dir: &std::path::Path, epoch: u64) -> Result<()> {
        let stats = self.0.publish(dir, epoch)?;
        tracing::debug!(
            "checkpoint {epoch}: {} chunks ({} bytes) to the state topic, {} tombstones",
            stats.chunks,
            stats.bytes,
            stats.tombstones
        );
        Ok(())
    }
}

impl InstanceSpawner for Spawner {
    fn spawn(
        &self,
        partition: i32,
        slot: usize,
    ) -> Result<(Arc<AtomicBool>, JoinHandle<Result<JobReport>>)> {
        let program = self.plan.instance_program(partition);
        let source = RepartitionSourceFactory::new(
            &self.plan.source_table,
            self.plan
                .source
                .consumer_config(&self.plan.source_table, &format!("partition-{partition}")),
            &self.plan.repartition_topic,
            partition,
            &self.plan.source.common.topic,
            self.source_partitions,
            self.plan.source.record_bytes_max,
            self.timeout,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let core = self.cores[slot % self.cores.len().max(1)];
        // The instance's shard shows in the job's metrics as shard number `partition`.
        let metrics = self
            .opts
            .metrics
            .as_ref()
            .map(|m| ChildMetrics(m.clone(), m.child(partition.max(0) as usize)));
        let mut opts = JobOptions {
            shards: Some(1),
            cores: Some(vec![core]),
            stop: stop.clone(),
            source_override: Some(Arc::new(source)),
            metrics: metrics.as_ref().map(|m| m.1.clone()),
            ..self.opts.clone()
        };
        let lock_paths = self.plan.lock_paths(partition);
        let state_topic = match &self.plan.storage {
            StateStorage::KafkaTopic(topic) => Some(StateTopicConfig {
                client: self.state_client.clone(),
                topic: topic.clone(),
                partition,
                timeout: self.timeout.max(STATE_TOPIC_TIMEOUT_MIN),
            }),
            StateStorage::SharedDirectory => None,
        };
        let local_dir = self.plan.checkpoint.dir.join(partition_dir_name(partition));
        let thread = std::thread::Builder::new()
            .name(format!("spillway-partition-{partition}"))
            .spawn(move || {
                let _metrics = metrics;
                let started = Instant::now();
                let mut locks = Vec::with_capacity(lock_paths.len());
                for path in &lock_paths {
                    match super::partition_lock::acquire(path, &opts.stop)? {
                        Some(lock) => locks.push(lock),
                        // Stopped (revoked) before the previous owner let go.
                        None => {
                            return Ok(JobReport {
                                shards: Vec::new(),
                                elapsed: started.elapsed(),
                                checkpoints: None,
                            })
                        }
                    }
                }
                if let Some(config) = state_topic {
                    let topic = config.topic.clone();
                    let mut state = StateTopic::connect(config)?;
                    let restored = match state.restore(&local_dir, &opts.stop) {
                        Ok(r) => r,
                        // Revoked while restoring: the revoke callback waits for this thread.
                        Err(spillway_connectors::ConnectorError::Stopped(_)) => {
                            return Ok(JobReport {
                                shards: Vec::new(),
                                elapsed: started.elapsed(),
                                checkpoints: None,
                            })
                        }
                        Err(e) => return Err(e.into()),
                    };
                    tracing::info!(
                        "partition {partition}: restored {} from state topic '{topic}' ({} \
                         files, {} bytes, {} records read, {} tombstones) in {:?}",
                        restored
                            .epoch
                            .map_or("no checkpoint".into(), |e| format!("checkpoint {e}")),
                        restored.files,
                        restored.bytes,
                        restored.records,
                        restored.tombstones,
                        started.elapsed()
                    );
                    opts.checkpoint_publisher = Some(Arc::new(Mutex::new(TopicPublisher(state))));
                }
                prepare(&program, &opts).and_then(|job| run_prepared(job, &opts))
            })
            .map_err(|e| EngineError::io("cannot start a job instance thread", e))?;
        Ok((stop, thread))
    }
}

/// A job instance's metric blocks inside the job's: removed when the instance ends.
struct ChildMetrics(Arc<JobMetrics>, Arc<JobMetrics>);

impl Drop for ChildMetrics {
    fn drop(&mut self) {
        self.0.remove_child(&self.1);
    }
}
