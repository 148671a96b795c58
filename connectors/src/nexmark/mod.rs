//! Nexmark, the standard streaming benchmark's auction events, as a source and a Kafka
//! writer.
//!
//! One seeded stream of persons, auctions and bids (1 : 3 : 46), generated as the reference
//! generator does but written straight into JSON lines without allocating per event. Our
//! engine reads flat tables, so each `CREATE TABLE ... WITH ('connector' = 'nexmark')`
//! delivers one kind of event of the stream (`'nexmark.table'`), and several tables with the
//! same options see the same stream.
//!
//! Map:
//! - `model.rs`: event kinds, fields, proportions and the id arithmetic.
//! - `rng.rs`: the per-event random sequence (any event from its number alone).
//! - `channels.rs`: the bid channels and their URLs.
//! - `generator.rs`: event `n` of a stream; event times and disorder.
//! - `json.rs`: events as JSON with Flink's Nexmark column names.
//! - `source.rs`: the `nexmark` source connector (options, partitions, rate, resume).
//! - `kafka_writer.rs`: the same events into Kafka topics, for end-to-end runs.

pub mod channels;
pub mod generator;
pub mod json;
pub mod kafka_writer;
pub mod model;
pub mod rng;
pub mod source;

pub use generator::{NexmarkGenerator, StreamConfig};
pub use kafka_writer::{write_to_kafka, KafkaWriteReport, NexmarkTopics};
pub use model::{Event, EventKind};
pub use source::{NexmarkOptions, NexmarkSourceFactory};
