//! Tests of `kafka_options.rs`: table options to librdkafka configurations.

use super::*;

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const ACCEPTED: &[&str] = &["connector", "topic", "format", "scan.connect.timeout"];

#[test]
fn common_options_are_parsed_and_checked() {
    let base = [
        ("topic", "trades"),
        ("properties.bootstrap.servers", "h:9092"),
    ];
    let o = opts(&[
        base[0],
        base[1],
        ("connector", "kafka"),
        ("properties.client.id", "me"),
    ]);
    let c = parse_common("t", &o, ACCEPTED).expect("valid");
    assert_eq!(
        (c.topic.as_str(), c.bootstrap_servers.as_str()),
        ("trades", "h:9092")
    );
    assert_eq!(c.properties.len(), 2);
    assert_eq!(c.properties["client.id"], "me");
    let bad: [(&[(&str, &str)], &str); 5] = [
        (
            &[("scan.startup.mod", "x")],
            "unknown option 'scan.startup.mod' for connector \
          'kafka' (accepted: connector, topic, format, scan.connect.timeout, properties.*)",
        ),
        (
            &[("properties.no.such.property", "1")],
            "'properties.no.such.property' = '1'",
        ),
        (&[("format", "csv")], "'format' = 'csv' is not supported"),
        (&[("connector", "filesystem")], "'connector' = 'filesystem'"),
        (&[("topic", " ")], "option 'topic' is empty"),
    ];
    for (extra, want) in bad {
        let mut o = opts(&base);
        o.extend(opts(extra));
        let e = parse_common("t", &o, ACCEPTED).expect_err(want).to_string();
        assert!(e.starts_with("table 't': ") && e.contains(want), "{e}");
    }
    let e = parse_common("t", &opts(&base[..1]), ACCEPTED).expect_err("no servers");
    assert!(
        e.to_string()
            .contains("'properties.bootstrap.servers' is required"),
        "{e}"
    );
}

#[test]
fn durations_choices_and_bytes() {
    let o = opts(&[("a", "500 ms"), ("b", "2 min"), ("c", "soon"), ("d", "0 s")]);
    assert_eq!(duration_ms("t", &o, "a", 7).expect("a"), 500);
    assert_eq!(duration_ms("t", &o, "b", 7).expect("b"), 120_000);
    assert_eq!(duration_ms("t", &o, "absent", 7).expect("default"), 7);
    let e = duration_ms("t", &o, "c", 7).expect_err("c").to_string();
    assert!(e.contains("'c' = 'soon'"), "{e}");
    assert!(duration_ms("t", &o, "d", 7).is_err());

    let o = opts(&[
        ("m", "Latest-Offset"),
        ("n", "sideways"),
        ("s", "1024"),
        ("z", "0"),
    ]);
    let modes = ["earliest-offset", "latest-offset"];
    assert_eq!(
        choice("t", &o, "m", &modes, "x").expect("m"),
        "latest-offset"
    );
    let e = choice("t", &o, "n", &modes, "x")
        .expect_err("n")
        .to_string();
    assert!(
        e.contains("'sideways'") && e.contains("earliest-offset"),
        "{e}"
    );
    assert_eq!(bytes("t", &o, "s", 1, 4096).expect("s"), 1024);
    assert!(bytes("t", &o, "z", 1, 4096).is_err());
    assert!(bytes("t", &o, "s", 1, 1000).is_err());
}

#[test]
fn durations_are_formatted_with_units() {
    assert_eq!(format_duration_ms(10_000), "10 s");
    assert_eq!(format_duration_ms(500), "500 ms");
    assert_eq!(format_duration_ms(120_000), "2 min");
    assert_eq!(format_duration_ms(1_500), "1500 ms");
}

#[test]
fn user_properties_override_defaults() {
    let props = opts(&[("fetch.wait.max.ms", "50")]);
    let c = client_config(
        &[("fetch.wait.max.ms", "5"), ("fetch.min.bytes", "1")],
        &props,
    );
    assert_eq!(c.get("fetch.wait.max.ms"), Some("50"));
    assert_eq!(c.get("fetch.min.bytes"), Some("1"));
}

#[test]
fn source_options_name_bad_values() {
    let base = [("topic", "x"), ("properties.bootstrap.servers", "h:1")];
    let bad = [
        (
            ("scan.startup.mode", "yesterday"),
            "'scan.startup.mode' = 'yesterday'",
        ),
        (
            ("scan.bounded.mode", "soon"),
            "'scan.bounded.mode' = 'soon'",
        ),
        (
            ("scan.connect.timeout", "ten"),
            "'scan.connect.timeout' = 'ten'",
        ),
        (
            ("properties.auto.offset.reset", "x"),
            "'properties.auto.offset.reset' = 'x'",
        ),
        (
            ("source.record-bytes-max", "-1"),
            "'source.record-bytes-max' = '-1'",
        ),
        (
            ("scan.startup.timestamp-millis", "1"),
            "unknown option 'scan.startup.timestamp",
        ),
    ];
    for (pair, want) in bad {
        let o = opts(&[base[0], base[1], pair]);
        let e = KafkaSourceOptions::parse("t", &o)
            .expect_err(pair.0)
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    let o = KafkaSourceOptions::parse("t", &opts(&base)).expect("defaults");
    assert_eq!(o.group_id, "spillway-t");
    assert_eq!(o.startup, StartupMode::GroupOffsets);
    assert_eq!(o.reset_to_earliest, Some(true));
    assert!(!o.bounded);
    assert_eq!(
        (o.connect_timeout_ms, o.record_bytes_max),
        (10_000, 1 << 20)
    );
    let o = opts(&[
        base[0],
        base[1],
        ("scan.startup.mode", "earliest-offset"),
        ("scan.bounded.mode", "latest-offset"),
        ("properties.group.id", "g"),
        ("properties.auto.offset.reset", "latest"),
    ]);
    let o = KafkaSourceOptions::parse("t", &o).expect("set");
    assert_eq!((o.startup, o.bounded), (StartupMode::EarliestOffset, true));
    assert_eq!(
        (o.group_id.as_str(), o.reset_to_earliest),
        ("g", Some(false))
    );
}

#[test]
fn warn_limiter_lets_one_through_per_interval() {
    let mut limiter = WarnLimiter::default();
    assert_eq!(limiter.allow(), Some(0));
    assert_eq!(limiter.allow(), None);
    assert_eq!(limiter.allow(), None);
    limiter.last = Some(std::time::Instant::now() - Duration::from_millis(WARN_INTERVAL_MS));
    assert_eq!(limiter.allow(), Some(2));
}

#[test]
fn sink_options_are_checked() {
    let base = [("topic", "x"), ("properties.bootstrap.servers", "h:1")];
    let o = KafkaSinkOptions::parse("t", &opts(&base)).expect("defaults");
    assert!(o.key_fields.is_empty());
    assert_eq!(o.guarantee, DeliveryGuarantee::AtLeastOnce);
    assert_eq!((o.flush_timeout_ms, o.connect_timeout_ms), (30_000, 10_000));
    assert_eq!(o.producer_config("t", "s0").get("acks"), Some("all"));
    let o = opts(&[
        base[0],
        base[1],
        ("key.fields", "a; b"),
        ("sink.delivery-guarantee", "none"),
    ]);
    let o = KafkaSinkOptions::parse("t", &o).expect("set");
    assert_eq!(o.key_fields, ["a", "b"]);
    assert_eq!(o.producer_config("t", "s0").get("acks"), Some("1"));
    let o = opts(&[
        base[0],
        base[1],
        ("sink.delivery-guarantee", "exactly-once"),
        ("sink.transaction.timeout", "20 s"),
        ("sink.transactional-id-prefix", "job7"),
    ]);
    let o = KafkaSinkOptions::parse("t", &o).expect("exactly-once");
    assert_eq!(o.guarantee, DeliveryGuarantee::ExactlyOnce);
    assert_eq!(o.transaction.id_prefix.as_deref(), Some("job7"));
    assert_eq!(o.transaction.buffer_bytes, TRANSACTION_BUFFER_BYTES_DEFAULT);
    let c = o.transactional_config("t", "s0", "job7-x");
    assert_eq!(c.get("transactional.id"), Some("job7-x"));
    assert_eq!(c.get("transaction.timeout.ms"), Some("20000"));
    assert_eq!(c.get("enable.idempotence"), Some("true"));
    let bad = [
        (
            ("sink.transaction.timeout", "5 s"),
            "'sink.transaction.timeout' applies only to",
        ),
        (
            ("properties.transactional.id", "mine"),
            "use option 'sink.transactional-id-prefix'",
        ),
        (
            ("sink.delivery-guarantee", "maybe"),
            "'sink.delivery-guarantee' = 'maybe'",
        ),
        (("key.fields", "a;;b"), "'key.fields' = 'a;;b'"),
        (("key.fields", "a;a"), "'key.fields' = 'a;a'"),
        (
            ("sink.flush.timeout", "-1 s"),
            "'sink.flush.timeout' = '-1 s'",
        ),
        (
            ("scan.startup.mode", "earliest-offset"),
            "unknown option 'scan.startup.mode'",
        ),
    ];
    for (pair, want) in bad {
        let e = KafkaSinkOptions::parse("t", &opts(&[base[0], base[1], pair]))
            .expect_err(pair.1)
            .to_string();
        assert!(e.contains(want), "{e}");
    }
}
