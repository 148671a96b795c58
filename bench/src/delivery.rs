//! Delivery reports of the benchmarks' producers, and waiting for them without
//! `BaseProducer::flush()` (which waits in 100 ms steps in rdkafka 0.39).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use crate::error::{BenchError, Result};

/// Counts the producer's delivery reports.
#[derive(Default)]
pub struct DeliveryCounter {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub first_error: std::sync::OnceLock<String>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                let _ = self.first_error.set(e.to_string());
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Polls the producer until nothing is in flight (at most `wait_ms_max`), then fails if any
/// record was not delivered, or, when `sent` is given, if fewer than `sent` were.
pub fn wait_for_deliveries(
    producer: &BaseProducer<DeliveryCounter>,
    what: &str,
    sent: Option<u64>,
    wait_ms_max: u64,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_millis(wait_ms_max);
    while producer.in_flight_count() > 0 {
        if Instant::now() > deadline {
            return Err(BenchError::Kafka(format!(
                "{} {what} still undelivered after {wait_ms_max} ms",
                producer.in_flight_count()
            )));
        }
        producer.poll(Duration::from_millis(1));
    }
    let ctx = producer.context();
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(BenchError::Kafka(format!(
            "{failed} {what} were not delivered to the broker; first error: {}",
            ctx.first_error.get().map(String::as_str).unwrap_or("?")
        )));
    }
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    if let Some(sent) = sent {
        if delivered != sent {
            return Err(BenchError::Kafka(format!(
                "{delivered} {what} delivered, {sent} sent"
            )));
        }
    }
    Ok(())
}
