//! An interval join of two Kafka topics (librdkafka's mock cluster) against a nested-loop
//! oracle: orders and their shipments within 5 s, keys spread over 4 partitions of each
//! topic, events out of order within the watermark bound, on 1 and 2 shards, with the time
//! condition in ON (BETWEEN) and in WHERE (as Flink allows).

use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_tests::compare::assert_rows_match;
use spillway_tests::job::{file_sink_table, options, run_to_rows, Scratch};
use spillway_tests::kafka::{produce, Batching};
use spillway_tests::nexmark_oracle_joins::{interval_expected, orders_and_shipments, Shipping};

const PARTITIONS: i32 = 4;
/// The watermark bound of both tables.
const BOUND_MS: i64 = 2_000;
/// Shipments count when they come within this long after their order.
const UPPER_MS: i64 = 5_000;

/// The events as delivered: sorted by time moved back by up to `BOUND_MS - 1` (seeded), so
/// no event comes after the watermark passed it; each to a partition by its id.
/// How many events come after a later one (out of order).
fn backwards(events: &[Shipping], salt: i64) -> usize {
    let mut order: Vec<(i64, i64, i64)> = events
        .iter()
        .map(|e| (e.ts_ms - jitter(e, salt), e.id, e.ts_ms))
        .collect();
    order.sort_unstable();
    order.windows(2).filter(|w| w[1].2 < w[0].2).count()
}

fn jitter(e: &Shipping, salt: i64) -> i64 {
    e.id.wrapping_mul(2_654_435_761)
        .wrapping_add(salt)
        .rem_euclid(BOUND_MS)
}

fn delivered(events: &[Shipping], salt: i64, id_field: &str) -> Vec<(i32, Vec<u8>)> {
    let mut order: Vec<(i64, i64, &Shipping)> = events
        .iter()
        .map(|e| (e.ts_ms - jitter(e, salt), e.id, e))
        .collect();
    order.sort_by_key(|(at, id, _)| (*at, *id));
    order
        .into_iter()
        .map(|(_, _, e)| {
            let partition =
                (e.id.wrapping_mul(31).wrapping_add(e.order)).rem_euclid(PARTITIONS as i64) as i32;
            let json = format!(
                r#"{{"{id_field}": {}, "order_key": {}, "ts": {}}}"#,
                e.id, e.order, e.ts_ms
            );
            (partition, json.into_bytes())
        })
        .collect()
}

fn table(name: &str, id: &str, topic: &str, bootstrap: &str) -> String {
    format!(
        "CREATE TABLE {name} ({id} BIGINT, order_key BIGINT, ts TIMESTAMP(3),\n\
           WATERMARK FOR ts AS ts - INTERVAL '{BOUND_MS}' MILLISECOND\n\
         ) WITH ('connector' = 'kafka', 'topic' = '{topic}',\n\
           'properties.bootstrap.servers' = '{bootstrap}', 'properties.group.id' = 'join-{topic}',\n\
           'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',\n\
           'format' = 'json');\n"
    )
}

#[test]
fn orders_meet_their_shipments_within_five_seconds() {
    let (orders, shipments) = orders_and_shipments(42, 3_000, 20);
    let expected = interval_expected(&orders, &shipments, UPPER_MS);
    assert!(expected.len() > 1_000, "{} matches", expected.len());
    assert!(
        expected.len() < shipments.len(),
        "some shipments fall outside the bounds"
    );

    let kafka = EmbeddedKafka::start(1).expect("embedded kafka");
    let bootstrap = kafka.bootstrap_servers();
    let topics = [
        ("orders", &orders, 1, "order_id"),
        ("shipments", &shipments, 2, "shipment_id"),
    ];
    for (topic, events, salt, id_field) in topics {
        kafka.create_topic(topic, PARTITIONS).expect("topic");
        assert!(
            backwards(events, salt) > events.len() / 4,
            "{topic} out of order"
        );
        let records = delivered(events, salt, id_field);
        let n = produce(
            &bootstrap,
            topic,
            records.iter().map(|(p, v)| (*p, v.as_slice())),
            Batching::Default,
        )
        .expect("produced");
        assert_eq!(n as usize, events.len());
    }
    let conditions = [
        (
            "ON o.order_key = s.order_key AND s.ts BETWEEN o.ts AND o.ts + INTERVAL '5' SECOND",
            2,
        ),
        (
            "ON s.order_key = o.order_key WHERE s.ts >= o.ts AND o.ts + INTERVAL '5' SECOND >= s.ts",
            1,
        ),
    ];
    for (n, (condition, shards)) in conditions.into_iter().enumerate() {
        let scratch = Scratch::new();
        let output = scratch.path("out.jsonl");
        let sql = format!(
            "{}{}{}\
             INSERT INTO matched SELECT o.order_id, s.shipment_id, o.order_key, o.ts AS order_ts, s.ts AS ship_ts\n\
             FROM orders o JOIN shipments s {condition};\n",
            // group ids differ per run: each run reads the topics from the start
            table("orders", "order_id", "orders", &bootstrap).replace("join-orders", &format!("join-orders-{n}")),
            table("shipments", "shipment_id", "shipments", &bootstrap)
                .replace("join-shipments", &format!("join-shipments-{n}")),
            file_sink_table(
                "matched",
                "order_id BIGINT, shipment_id BIGINT, order_key BIGINT, order_ts TIMESTAMP(3), ship_ts TIMESTAMP(3)",
                &output
            ),
        );
        let outcome =
            run_to_rows(&sql, &options(shards), &output).unwrap_or_else(|e| panic!("{e}"));
        let report = &outcome.report;
        assert_eq!(report.records_in(), (orders.len() + shipments.len()) as u64);
        assert_eq!(
            report.skipped_total(),
            0,
            "{:?} {:?}",
            report.skipped(),
            report.samples()
        );
        assert_eq!(
            report.late_events(),
            0,
            "disorder within the bound is never late"
        );
        assert_rows_match(&outcome.rows, &expected, &["order_id", "shipment_id"]);
    }
}
