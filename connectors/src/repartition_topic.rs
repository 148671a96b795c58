//! The repartition and state topics of a job in group mode: found, or created through the
//! Admin API.
//!
//! Every process of the job calls [`ensure_repartition_topic`] at start; the first creates the
//! topic, the others find it (a creation race ends in "already exists", which is fine).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::error::{ConnectorError, Result};

/// The repartition topic's settings when spillway creates it: rows are read once and never
/// needed after the checkpoints that cover them, so the brokers' retention deletes them.
const REPARTITION_TOPIC_CONFIG: &[(&str, &str)] = &[("cleanup.policy", "delete")];

/// How long the state topic's active segment stays open (10 min). Compaction never touches
/// the active segment, and a new owner reads a partition from its start, so the default
/// (7 days) would let a restore read every checkpoint of a week; this bounds the part not yet
/// compacted to about ten minutes of checkpoints.
pub const STATE_TOPIC_SEGMENT_MS: u64 = 600_000;

/// The state topic's settings when spillway creates it (see [`STATE_TOPIC_SEGMENT_MS`]).
const STATE_TOPIC_CONFIG: &[(&str, &str)] =
    &[("cleanup.policy", "compact"), ("segment.ms", "600000")];

/// Runs a future to completion on this thread. rdkafka's Admin API returns futures that its
/// own background thread completes, so all this needs is to wait for the wake-ups.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => thread::park(),
        }
    }
}

/// The partition count of `topic`, or None when the brokers do not know it.
pub fn topic_partition_count(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| ConnectorError::Kafka(format!("cannot create a metadata client: {e}")))?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
        ConnectorError::Kafka(format!("cannot read the metadata of '{topic}': {e}"))
    })?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// Makes sure the repartition topic exists and returns its partition count. `wanted`: the
/// count the table asks for (`scan.repartition.partitions`), checked against an existing
/// topic; `default_partitions`: the count of a topic this creates when `wanted` is None.
pub fn ensure_repartition_topic(
    config: &ClientConfig,
    topic: &str,
    wanted: Option<i32>,
    default_partitions: i32,
    timeout: Duration,
) -> Result<i32> {
    if let Some(n) = topic_partition_count(config, topic, timeout)? {
        return match wanted {
            Some(w) if w != n => Err(ConnectorError::Kafka(format!(
                "the repartition topic '{topic}' has {n} partitions, but \
                 'scan.repartition.partitions' = '{w}': a job's rows are spread by key over a \
                 fixed partition count, so it cannot change under existing state (use a new \
                 group id and checkpoint directory, or the topic's count)"
            ))),
            _ => Ok(n),
        };
    }
    let partitions = wanted.unwrap_or(default_partitions).max(1);
    let n = create_topic(
        config,
        topic,
        "repartition",
        partitions,
        REPARTITION_TOPIC_CONFIG,
        timeout,
    )?;
    if wanted.is_some_and(|w| w != n) {
        return Err(ConnectorError::Kafka(format!(
            "the repartition topic '{topic}' was created with {n} partitions, not {partitions}"
        )));
    }
    Ok(n)
}

/// Makes sure the compacted state topic exists with `partitions` partitions (one per
/// repartition partition).
pub fn ensure_state_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<()> {
    let n = match topic_partition_count(config, topic, timeout)? {
        Some(n) => n,
        None => create_topic(
            config,
            topic,
            "state",
            partitions,
            STATE_TOPIC_CONFIG,
            timeout,
        )?,
    };
    if n != partitions {
        return Err(ConnectorError::Kafka(format!(
            "the state topic '{topic}' has {n} partitions, but the repartition topic has \
             {partitions}: partition r of the state topic holds repartition partition r's \
             checkpoints (create it with {partitions} partitions and cleanup.policy=compact, \
             segment.ms={STATE_TOPIC_SEGMENT_MS})"
        )));
    }
    Ok(())
}

/// Creates `topic` (a creation race ends in "already exists", which is fine) and returns the
/// partition count it has afterwards.
fn create_topic(
    config: &ClientConfig,
    topic: &str,
    role: &str,
    partitions: i32,
    topic_config: &[(&str, &str)],
    timeout: Duration,
) -> Result<i32> {
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| {
        ConnectorError::Kafka(format!("cannot create an admin client for '{topic}': {e}"))
    })?;
    let new_topic = topic_config.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)),
        |t, (k, v)| t.set(k, v),
    );
    let settings = topic_config
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let created = block_on(admin.create_topics([&new_topic], &options)).map_err(|e| {
        ConnectorError::Kafka(format!(
            "cannot create the {role} topic '{topic}' ({partitions} partitions): {e}; \
             create it with the brokers' tools"
        ))
    })?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(ConnectorError::Kafka(format!(
                    "cannot create the {role} topic '{topic}' ({partitions} partitions): \
                     {code}; create it with the brokers' tools ({settings})"
                )))
            }
        }
    }
    // Another process may have won the race with another count: read back what exists.
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(n) = topic_partition_count(config, topic, timeout)? {
            return Ok(n);
        }
        if std::time::Instant::now() >= deadline {
            return Err(ConnectorError::Kafka(format!(
                "the {role} topic '{topic}' was created but its metadata did not appear \
                 within {timeout:?}"
            )));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded_kafka::EmbeddedKafka;

    fn config(bootstrap: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap);
        c
    }

    #[test]
    fn an_existing_topic_is_found_and_a_different_count_refused() {
        let kafka = EmbeddedKafka::start(1).unwrap();
        kafka.create_topic("g-repartition", 3).unwrap();
        let c = config(&kafka.bootstrap_servers());
        let t = Duration::from_secs(10);
        assert_eq!(
            ensure_repartition_topic(&c, "g-repartition", None, 8, t).unwrap(),
            3
        );
        assert_eq!(
            ensure_repartition_topic(&c, "g-repartition", Some(3), 8, t).unwrap(),
            3
        );
        let e = ensure_repartition_topic(&c, "g-repartition", Some(4), 8, t).unwrap_err();
        assert!(e.to_string().contains("has 3 partitions"), "{e}");
    }

    #[test]
    fn the_state_topic_is_compacted_with_a_bounded_active_segment() {
        let segment = STATE_TOPIC_SEGMENT_MS.to_string();
        assert!(STATE_TOPIC_CONFIG.contains(&("segment.ms", segment.as_str())));
        assert!(STATE_TOPIC_CONFIG.contains(&("cleanup.policy", "compact")));
    }

    #[test]
    fn a_state_topic_needs_one_partition_per_repartition_partition() {
        let kafka = EmbeddedKafka::start(1).unwrap();
        kafka.create_topic("g-state", 3).unwrap();
        let c = config(&kafka.bootstrap_servers());
        let t = Duration::from_secs(10);
        ensure_state_topic(&c, "g-state", 3, t).unwrap();
        let e = ensure_state_topic(&c, "g-state", 4, t).unwrap_err();
        assert!(
            e.to_string().contains("has 3 partitions") && e.to_string().contains("compact"),
            "{e}"
        );
    }
}
