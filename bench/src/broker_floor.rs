//! `spillway-bench broker-floor`: the latency of the broker path alone, with no engine. The
//! latency harness's open-loop generator sends the same events on the same schedule; a bare
//! librdkafka consumer (the source's settings, `fetch.wait.max.ms` included) reads them and
//! records, per event, the time from its intended send time to its arrival. No engine can
//! deliver a result earlier than its last event arrives, so this is the floor under
//! `spillway-bench latency`'s produce-to-output and watermark-to-result figures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseProducer;
use rdkafka::{Message, Offset, TopicPartitionList};
use spillway_connectors::embedded_kafka::EmbeddedKafka;

use crate::error::{BenchError, Result};
use crate::latency_load::{run_load, DeliveryCounter, EventSchedule};
use crate::latency_stats::{latency_histogram, LatencyStats};

/// Arguments of `spillway-bench broker-floor`.
#[derive(Debug, Clone, Args)]
pub struct BrokerFloorArgs {
    /// Events per second per partition.
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 1)]
    pub partitions: usize,
    /// Arrivals of events sent in the first SECONDS are not measured.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// The consumer's `fetch.wait.max.ms` (the Kafka source's default is 5).
    #[arg(long, default_value_t = 5)]
    pub fetch_wait_max_ms: u64,
    /// The load generator's `linger.ms` (the latency harness's is 1).
    #[arg(long, default_value = "1")]
    pub linger_ms: String,
}

/// The sequence number of an event written by the load generator (its `price` field).
fn sequence_of(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = &text[text.find("\"price\":")? + 8..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

/// Runs the load and the bare consumer; returns the report's text.
pub fn run_broker_floor(args: &BrokerFloorArgs) -> Result<String> {
    if args.partitions == 0 || args.rate == 0 || !args.duration.is_finite() || args.duration <= 0.0
    {
        return Err(BenchError::Config(
            "--partitions, --rate and --duration must be above 0".into(),
        ));
    }
    let kafka = EmbeddedKafka::start(1)?;
    kafka.create_topic("floor", args.partitions as i32)?;
    let bootstrap = kafka.bootstrap_servers();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "spillway-bench-floor")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", args.fetch_wait_max_ms.to_string())
        .create()
        .map_err(|e| BenchError::Config(format!("cannot create the consumer: {e}")))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions as i32 {
        tpl.add_partition_offset("floor", p, Offset::Beginning)
            .map_err(|e| BenchError::Config(format!("assign: {e}")))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| BenchError::Config(format!("assign: {e}")))?;
    let producer: BaseProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", &args.linger_ms)
        .set("acks", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(DeliveryCounter::default())
        .map_err(|e| BenchError::Config(format!("cannot create the producer: {e}")))?;
    let start = Instant::now();
    let schedule = EventSchedule {
        rate_total: args.rate * args.partitions as u64,
        partitions: args.partitions,
        epoch_ms_start: 0,
        seed: 42,
        offset_ns: 200_000_000,
    };
    let warmup_ns = schedule.offset_ns + (args.warmup.max(0.0) * 1e9) as u64;
    let (progress, stop) = (AtomicU64::new(0), AtomicBool::new(false));
    let mut histogram = latency_histogram();
    let mut received = 0u64;
    let outcome = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            run_load(
                &producer,
                "floor",
                &schedule,
                start,
                Duration::from_secs_f64(args.duration),
                &progress,
                &stop,
            )
        });
        let mut quiet_since = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(10)) {
                Some(Ok(m)) => {
                    let now_ns = start.elapsed().as_nanos() as u64;
                    let seq = m.payload().and_then(sequence_of).ok_or_else(|| {
                        BenchError::WrongResult("an event without its sequence".into())
                    })?;
                    let intended = schedule.intended_ns(seq);
                    if intended >= warmup_ns {
                        histogram
                            .saturating_record((now_ns.saturating_sub(intended) / 1_000).max(1));
                    }
                    received += 1;
                    quiet_since = Instant::now();
                }
                Some(Err(e)) => return Err(BenchError::Config(format!("consume: {e}"))),
                None if load.is_finished() && quiet_since.elapsed() > Duration::from_secs(1) => {
                    break;
                }
                None => {}
            }
        }
        stop.store(true, Ordering::Relaxed);
        load.join()
            .map_err(|_| BenchError::WrongResult("the load generator panicked".into()))?
    })?;
    if received != outcome.sent {
        return Err(BenchError::WrongResult(format!(
            "received {received} of {} events (the mock cluster drops records a lagging \
             consumer has not read past 5 MiB per partition)",
            outcome.sent
        )));
    }
    Ok(format!(
        "broker floor: {} events/s per partition, {} partitions, fetch.wait.max.ms={}, \
         linger.ms={}\n  produce_to_consume     {}\n",
        args.rate,
        args.partitions,
        args.fetch_wait_max_ms,
        args.linger_ms,
        LatencyStats::of(&histogram).text()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_read_from_the_price_field() {
        let e = EventSchedule {
            rate_total: 10,
            partitions: 1,
            epoch_ms_start: 0,
            seed: 1,
            offset_ns: 0,
        };
        let mut line = Vec::new();
        e.write_json(12_345, &mut line);
        assert_eq!(sequence_of(&line), Some(12_345));
        assert_eq!(sequence_of(b"{\"symbol\":\"S1\"}"), None);
    }
}
