//! The `upsert-kafka` sink and row kinds: a row of kind "-D" (`row_kind` column) is a
//! tombstone of its key; "+I" and "+U" are values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{KafkaSinkFactory, ROW_KIND_COLUMN};
use crate::embedded_kafka::test_support::options;
use crate::embedded_kafka::EmbeddedKafka;
use crate::SinkFactory;

/// Reads `n` messages of partition 0 of `topic` from the beginning (10 s at most).
fn consume_all(servers: &str, topic: &str, n: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "row-kind-reader")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let (mut got, deadline) = (Vec::new(), Instant::now() + Duration::from_secs(10));
    while got.len() < n && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            got.push(m.expect("message").detach());
        }
    }
    got
}

#[test]
fn upsert_rows_of_kind_delete_become_tombstones_of_their_key() {
    let kafka = EmbeddedKafka::start(1).expect("kafka");
    let servers = kafka.bootstrap_servers();
    kafka.create_topic("upserts", 1).expect("topic");
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("trades", DataType::Int64, true),
        Field::new(ROW_KIND_COLUMN, DataType::Utf8, true),
    ]));
    let o = options(&servers, "upserts", &[]);
    let factory = KafkaSinkFactory::upsert("s", &o, schema.clone(), &["symbol".to_string()])
        .expect("factory");
    let mut sink = factory.open(0).expect("sink");
    let rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["A", "A", "B", "A"])),
            Arc::new(Int64Array::from(vec![1, 2, 5, 2])),
            Arc::new(StringArray::from(vec!["+I", "+U", "+I", "-D"])),
        ],
    )
    .expect("batch");
    sink.write(&rows).expect("write");
    sink.flush().expect("flush");
    factory.close().expect("close");
    let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = consume_all(&servers, "upserts", 4)
        .iter()
        .map(|m| {
            let key = m.key().unwrap_or_default().to_vec();
            (key, m.payload().map(|p| p.to_vec()))
        })
        .collect();
    assert_eq!(got.len(), 4);
    let values: Vec<Option<String>> = got
        .iter()
        .map(|(_, v)| v.as_ref().map(|v| String::from_utf8_lossy(v).to_string()))
        .collect();
    assert!(
        values[1].as_deref().is_some_and(|v| v.contains("\"+U\"")),
        "{values:?}"
    );
    assert_eq!(values[3], None, "-D is a tombstone: {values:?}");
    assert_eq!(
        got[3].0,
        br#"{"symbol":"A"}"#.to_vec(),
        "of the withdrawn key"
    );
    assert!(values[..3].iter().all(Option::is_some));
}
