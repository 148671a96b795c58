//! The forwarder: its clocks and batch bookkeeping, and whole runs against the in-process
//! Kafka cluster (one forwarder; two in one group; bad topics).

use std::collections::{BTreeMap, BTreeSet};
use std::thread::JoinHandle;

use proptest::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use spillway_connectors::embedded_kafka::EmbeddedKafka;
use spillway_connectors::kafka_options::KafkaSourceOptions;
use spillway_connectors::repartition::{
    decode_record, RepartitionRecord, REPARTITION_MARK_INTERVAL_MS,
};

use super::context::PartitionClock;
use super::*;

const WAIT_MAX: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------------------------------
// Without Kafka

proptest! {
    /// Whatever events and clock steps come, a mark is due exactly when the event time
    /// advanced past the last mark and the interval passed (or the mark is forced), and it
    /// carries the largest event time seen.
    #[test]
    fn marks_are_due_when_time_advanced_and_the_interval_passed(
        steps in proptest::collection::vec((proptest::option::of(0i64..1000), 0u64..8, any::<bool>()), 1..60),
    ) {
        let interval = Duration::from_millis(REPARTITION_MARK_INTERVAL_MS);
        let start = Instant::now();
        let mut now = start;
        let mut clock = PartitionClock::default();
        let (mut ts_max, mut last_mark): (Option<i64>, Option<(i64, Instant)>) = (None, None);
        for (event, step_ms, force) in steps {
            if let Some(ts) = event {
                clock.observe(ts);
                ts_max = Some(ts_max.map_or(ts, |m: i64| m.max(ts)));
            }
            now += Duration::from_millis(step_ms);
            let want = match (ts_max, last_mark) {
                (None, _) => None,
                (Some(t), Some((m, _))) if m >= t => None,
                (Some(_), Some((_, at))) if !force && now - at < interval => None,
                (Some(t), _) => Some(t),
            };
            let got = clock.mark_due(now, interval, force);
            prop_assert_eq!(got, want);
            if let Some(ts) = got {
                clock.ts_marked = Some(ts);
                clock.marked_at = Some(now);
                last_mark = Some((ts, now));
            }
        }
    }

    /// Dropping revoked partitions keeps exactly the other records, in order, with their
    /// bytes, and forgets the revoked partitions' next offsets.
    #[test]
    fn dropping_revoked_partitions_keeps_the_others_in_order(
        records in proptest::collection::vec((0u32..5, proptest::collection::vec(any::<u8>(), 0..6)), 0..40),
        revoked in proptest::collection::btree_set(0i32..5, 0..5),
    ) {
        let mut raw = RawBatch::default();
        let mut next = BTreeMap::new();
        for (offset, (p, payload)) in records.iter().enumerate() {
            raw.push(*p, offset as i64, payload);
            next.insert(*p as i32, offset as i64 + 1);
        }
        let revoked: Vec<i32> = revoked.into_iter().collect();
        drop_partitions(&mut raw, &mut next, &revoked);
        let want: Vec<(u32, i64, Vec<u8>)> = records
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| !revoked.contains(&(*p as i32)))
            .map(|(o, (p, b))| (*p, o as i64, b.clone()))
            .collect();
        let got: Vec<(u32, i64, Vec<u8>)> = (0..raw.len())
            .map(|i| {
                let (s, e) = raw.span(i);
                (raw.partition[i], raw.offset[i], raw.data[s..e].to_vec())
            })
            .collect();
        prop_assert_eq!(got, want);
        prop_assert!(next.keys().all(|p| !revoked.contains(p)));
    }

    /// Every hash lands on a partition in range, and the route only depends on the hash.
    #[test]
    fn repartition_of_stays_in_range(hash in any::<u64>(), partitions in 1usize..4096) {
        let r = repartition_of(hash, partitions);
        prop_assert!(r >= 0 && (r as usize) < partitions);
        prop_assert_eq!(r as u64, (hash >> 32) % partitions as u64);
    }
}

#[test]
fn skipped_bad_sums_the_decode_problems_and_oversized_records() {
    let stats = ForwarderStats::default();
    publish_decode_stats(
        &stats,
        &crate::decode::DecodeStats {
            malformed: 1,
            missing_field: 2,
            wrong_type: 4,
            null_time: 8,
        },
    );
    stats.skipped_oversized.store(16, Ordering::Relaxed);
    stats.skipped_empty.store(32, Ordering::Relaxed);
    assert_eq!(stats.skipped_bad(), 31);
}

// ---------------------------------------------------------------------------------------
// Against the in-process cluster

const SQL: &str = "CREATE TABLE src (k STRING, v BIGINT, ts TIMESTAMP(3), \
     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
     WITH ('connector' = 'kafka', 'topic' = 'src', \
     'properties.bootstrap.servers' = '127.0.0.1:9', 'format' = 'json');\n\
     SELECT k, window_start, window_end, COUNT(*) \
     FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '1' SECOND)) \
     WHERE v >= 0 GROUP BY k, window_start, window_end;";

/// The source table and the pipeline of [`SQL`].
fn planned() -> (Arc<TableDef>, Arc<Pipeline>) {
    let program = match crate::sql::parse_program(SQL) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n{SQL}"),
    };
    let table = program.table("src").expect("table src").clone();
    (Arc::new(table), Arc::new(program.pipelines[0].clone()))
}

/// Source record number `i`: key `k{i % 7}`, `v` negative for every tenth record (filtered
/// out), event time `1_000_000 + 10 i`.
fn record(i: usize) -> Vec<u8> {
    let v = if i % 10 == 3 { -1 } else { i as i64 };
    format!(
        "{{\"k\":\"k{}\",\"v\":{v},\"ts\":{},\"i\":{i}}}",
        i % 7,
        1_000_000 + 10 * i
    )
    .into_bytes()
}

/// Sends `(partition, payload)` records and waits until all are delivered.
fn produce(servers: &str, topic: &str, records: &[(i32, Option<Vec<u8>>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    for (partition, payload) in records {
        let mut r = BaseRecord::<(), [u8]>::to(topic).partition(*partition);
        if let Some(p) = payload {
            r = r.payload(p.as_slice());
        }
        producer.send(r).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// What the repartition topic holds, per repartition partition, in order.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Row { sp: i32, so: i64, payload: Vec<u8> },
    Mark { sp: i32, ts: i64 },
}

/// Reads every partition of the repartition topic from the start.
struct RepartitionReader {
    consumer: BaseConsumer,
    got: BTreeMap<i32, Vec<Got>>,
}

impl RepartitionReader {
    fn new(servers: &str, topic: &str, partitions: i32) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", servers)
            .set("group.id", "reader") // assign() needs one; the reader never commits
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for r in 0..partitions {
            tpl.add_partition_offset(topic, r, Offset::Beginning)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        RepartitionReader {
            consumer,
            got: BTreeMap::new(),
        }
    }

    /// Reads until `done` holds; panics after [`WAIT_MAX`].
    fn read_until(&mut self, what: &str, done: impl Fn(&BTreeMap<i32, Vec<Got>>) -> bool) {
        let deadline = Instant::now() + WAIT_MAX;
        while !done(&self.got) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            let Some(m) = self.consumer.poll(Duration::from_millis(20)) else {
                continue;
            };
            let m = m.expect("read the repartition topic");
            let got = match decode_record(m.headers(), m.payload()) {
                Ok(RepartitionRecord::Row {
                    source_partition,
                    source_offset,
                    payload,
                }) => Got::Row {
                    sp: source_partition,
                    so: source_offset,
                    payload: payload.to_vec(),
                },
                Ok(RepartitionRecord::Mark {
                    source_partition,
                    ts_max_ms,
                }) => Got::Mark {
                    sp: source_partition,
                    ts: ts_max_ms,
                },
                Err(e) => panic!("record {} of partition {}: {e}", m.offset(), m.partition()),
            };
            self.got.entry(m.partition()).or_default().push(got);
        }
    }
}

/// All rows read, as (source partition, source offset, payload), sorted.
fn rows(got: &BTreeMap<i32, Vec<Got>>) -> Vec<(i32, i64, Vec<u8>)> {
    let mut all: Vec<_> = got
        .values()
        .flatten()
        .filter_map(|g| match g {
            Got::Row { sp, so, payload } => Some((*sp, *so, payload.clone())),
            Got::Mark { .. } => None,
        })
        .collect();
    all.sort();
    all
}

/// The last mark of source partition `sp` in each repartition partition.
fn last_marks(got: &BTreeMap<i32, Vec<Got>>, sp: i32) -> Vec<Option<i64>> {
    got.values()
        .map(|records| {
            records.iter().rev().find_map(|g| match g {
                Got::Mark { sp: p, ts } if *p == sp => Some(*ts),
                _ => None,
            })
        })
        .collect()
}

fn setup(
    servers: &str,
    group: &str,
    repartition_topic: &str,
    repartition_partitions: i32,
) -> ForwarderSetup {
    let (table, pipeline) = planned();
    let options: BTreeMap<String, String> = [
        ("connector", "kafka"),
        ("topic", "src"),
        ("format", "json"),
        ("properties.bootstrap.servers", servers),
        ("properties.group.id", group),
        ("properties.session.timeout.ms", "6000"),
        ("properties.heartbeat.interval.ms", "200"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let source = KafkaSourceOptions::parse("src", &options).expect("options");
    let mut producer_config = ClientConfig::new();
    producer_config.set("bootstrap.servers", servers);
    ForwarderSetup {
        table,
        pipeline,
        consumer_config: source.consumer_config("src", "forwarder"),
        producer_config,
        source_topic: "src".into(),
        repartition_topic: repartition_topic.into(),
        repartition_partitions,
        batch_rows_max: 64,
        batch_bytes_max: 1 << 20,
        record_bytes_max: 200,
        stop: Arc::new(AtomicBool::new(false)),
        stats: Arc::new(ForwarderStats::default()),
    }
}

/// A forwarder on its own thread.
struct Running {
    stop: Arc<AtomicBool>,
    stats: Arc<ForwarderStats>,
    thread: JoinHandle<Result<()>>,
}

impl Running {
    fn start(setup: ForwarderSetup) -> Self {
        let (stop, stats) = (setup.stop.clone(), setup.stats.clone());
        let thread = std::thread::spawn(move || run_forwarder(setup));
        Running {
            stop,
            stats,
            thread,
        }
    }

    fn owned(&self) -> u64 {
        self.stats.partitions_owned.load(Ordering::Relaxed)
    }

    /// Stops the forwarder and returns how long it took to end.
    fn stop(self) -> Duration {
        let asked = Instant::now();
        self.stop.store(true, Ordering::Release);
        match self.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("forwarder failed: {e}"),
            Err(_) => panic!("forwarder panicked"),
        }
        asked.elapsed()
    }
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The offsets group `group` committed for partitions 0..partitions of `src`.
fn committed(servers: &str, group: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition("src", p);
    }
    let tpl = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match tpl.find_partition("src", p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            other => panic!("partition {p}: no committed offset ({other:?})"),
        })
        .collect()
}

/// Records to produce: (partition, payload).
type Records = Vec<(i32, Option<Vec<u8>>)>;
/// Where source record `i` went: (partition, offset, i).
type Placed = Vec<(i32, i64, usize)>;

/// Records `from..to`, record `i` on partition `i % partitions`; returns them with the
/// offsets they get when `offsets` holds each partition's next offset.
fn batch(from: usize, to: usize, partitions: i32, offsets: &mut [i64]) -> (Records, Placed) {
    let mut records = Vec::new();
    let mut placed = Vec::new();
    for i in from..to {
        let p = (i % partitions as usize) as i32;
        records.push((p, Some(record(i))));
        placed.push((p, offsets[p as usize], i));
        offsets[p as usize] += 1;
    }
    (records, placed)
}

/// The rows stage B must get from `placed`: those the filter keeps, sorted.
fn expected_rows(placed: &[(i32, i64, usize)]) -> Vec<(i32, i64, Vec<u8>)> {
    let mut want: Vec<_> = placed
        .iter()
        .filter(|(_, _, i)| i % 10 != 3)
        .map(|&(p, o, i)| (p, o, record(i)))
        .collect();
    want.sort();
    want
}

#[test]
fn forwards_rows_by_key_with_marks_and_commits_the_ends() {
    let kafka = EmbeddedKafka::start(1).expect("kafka");
    let servers = kafka.bootstrap_servers();
    kafka.create_topic("src", 4).expect("src");
    kafka.create_topic("rep", 3).expect("rep");
    let mut offsets = vec![0i64; 4];
    let (mut records, placed) = batch(0, 200, 4, &mut offsets);
    // A malformed record and an oversized one (valid JSON, over record_bytes_max = 200),
    // both on partition 2: counted, not forwarded, and committed past.
    records.push((2, Some(b"{\"k\":\"k1\",\"v\":".to_vec())));
    let padding = "x".repeat(300);
    records.push((
        2,
        Some(format!("{{\"k\":\"k1\",\"v\":1,\"ts\":1,\"pad\":\"{padding}\"}}").into_bytes()),
    ));
    offsets[2] += 2;
    produce(&servers, "src", &records);

    let running = Running::start(setup(&servers, "g1", "rep", 3));
    let want = expected_rows(&placed);
    // Per source partition: the largest event time of its decoded records (filtered-out
    // rows included).
    let mut ts_max = [0i64; 4];
    for &(p, _, i) in &placed {
        ts_max[p as usize] = ts_max[p as usize].max(1_000_000 + 10 * i as i64);
    }
    let mut reader = RepartitionReader::new(&servers, "rep", 3);
    reader.read_until("every row and the final marks", |got| {
        rows(got).len() >= want.len()
            && got.len() == 3
            && (0..4).all(|p| {
                last_marks(got, p)
                    .iter()
                    .all(|&m| m == Some(ts_max[p as usize]))
            })
    });
    let stats = running.stats.clone();
    let stopping = running.stop();
    assert!(
        stopping < Duration::from_secs(1),
        "stopping took {stopping:?}"
    );

    let got = reader.got.clone();
    // Every kept row exactly once, with its source partition, offset and original bytes.
    assert_eq!(rows(&got), want);
    // Same key, same repartition partition; the keys spread over more than one.
    let mut partition_of_key: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for (r, records) in &got {
        for g in records {
            if let Got::Row { payload, .. } = g {
                let text = String::from_utf8(payload.clone()).expect("utf8");
                let key = text[6..8].to_string();
                partition_of_key.entry(key).or_default().insert(*r);
            }
        }
    }
    assert_eq!(partition_of_key.len(), 7);
    assert!(
        partition_of_key.values().all(|rs| rs.len() == 1),
        "{partition_of_key:?}"
    );
    let used: BTreeSet<i32> = partition_of_key.values().flatten().copied().collect();
    assert!(
        used.len() > 1,
        "all keys in one partition: {partition_of_key:?}"
    );
    // In each repartition partition, a row of partition p is followed by a mark of p that
    // covers its event time, and p's marks never go back.
    for (r, records) in &got {
        for (j, g) in records.iter().enumerate() {
            match g {
                Got::Row { sp, payload, .. } => {
                    let text = String::from_utf8(payload.clone()).expect("utf8");
                    let i: usize = text[text.rfind(':').expect(":") + 1..text.len() - 1]
                        .parse()
                        .expect("i");
                    let ts = 1_000_000 + 10 * i as i64;
                    let covered = records[j..]
                        .iter()
                        .any(|m| matches!(m, Got::Mark { sp: p, ts: t } if p == sp && *t >= ts));
                    assert!(
                        covered,
                        "partition {r}: row {i} of source {sp} has no mark after it"
                    );
                }
                Got::Mark { sp, ts } => {
                    let earlier = records[..j].iter().rev().find_map(|m| match m {
                        Got::Mark { sp: p, ts: t } if p == sp => Some(*t),
                        _ => None,
                    });
                    assert!(
                        earlier.is_none_or(|t| t < *ts),
                        "partition {r}: marks of {sp} not increasing"
                    );
                }
            }
        }
    }
    let marks_read: usize = got
        .values()
        .flatten()
        .filter(|g| matches!(g, Got::Mark { .. }))
        .count();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!(load(&stats.records_in), 202);
    assert_eq!(load(&stats.rows_forwarded), want.len() as u64);
    assert_eq!(load(&stats.rows_filtered_out), 20);
    assert_eq!(load(&stats.skipped_malformed), 1);
    assert_eq!(load(&stats.skipped_oversized), 1);
    assert_eq!(stats.skipped_bad(), 2);
    assert_eq!(load(&stats.marks_sent), marks_read as u64);
    assert_eq!(
        marks_read % 3,
        0,
        "a mark goes to every repartition partition"
    );
    assert_eq!(load(&stats.partitions_owned), 0);
    assert!(
        load(&stats.rebalances) >= 2,
        "an assignment and the final revoke"
    );
    // The group's committed offsets are the ends (the next offset to read).
    assert_eq!(committed(&servers, "g1", 4), offsets);
}

#[test]
fn two_forwarders_split_the_partitions_and_one_takes_over_when_the_other_stops() {
    let kafka = EmbeddedKafka::start(1).expect("kafka");
    let servers = kafka.bootstrap_servers();
    kafka.create_topic("src", 4).expect("src");
    kafka.create_topic("rep", 2).expect("rep");
    let mut offsets = vec![0i64; 4];
    let mut placed = Vec::new();
    let mut reader = RepartitionReader::new(&servers, "rep", 2);
    let mut produce_and_wait = |from: usize, to: usize, reader: &mut RepartitionReader| {
        let (records, p) = batch(from, to, 4, &mut offsets);
        produce(&servers, "src", &records);
        placed.extend(p);
        let want: BTreeSet<_> = expected_rows(&placed).into_iter().collect();
        reader.read_until("every row at least once", |got| {
            let seen: BTreeSet<_> = rows(got).into_iter().collect();
            want.is_subset(&seen)
        });
        let seen: BTreeSet<_> = rows(&reader.got).into_iter().collect();
        assert_eq!(seen, want, "rows that were never produced");
    };

    let a = Running::start(setup(&servers, "g2", "rep", 2));
    wait_for("a to own every partition", || a.owned() == 4);
    produce_and_wait(0, 100, &mut reader);

    let b = Running::start(setup(&servers, "g2", "rep", 2));
    wait_for("a and b to split the partitions", || {
        a.owned() > 0 && b.owned() > 0 && a.owned() + b.owned() == 4
    });
    let (a_before, b_before) = (
        a.stats.rows_forwarded.load(Ordering::Relaxed),
        b.stats.rows_forwarded.load(Ordering::Relaxed),
    );
    assert_eq!(b_before, 0, "b forwarded rows before it owned partitions");
    produce_and_wait(100, 200, &mut reader);
    let a_split = a.stats.rows_forwarded.load(Ordering::Relaxed) - a_before;
    let b_split = b.stats.rows_forwarded.load(Ordering::Relaxed);
    assert!(
        a_split > 0 && b_split > 0,
        "a {a_split} and b {b_split} rows"
    );

    let stopping = b.stop();
    assert!(
        stopping < Duration::from_secs(1),
        "stopping took {stopping:?}"
    );
    wait_for("a to take every partition back", || a.owned() == 4);
    let a_before = a.stats.rows_forwarded.load(Ordering::Relaxed);
    produce_and_wait(200, 300, &mut reader);
    let new_rows = expected_rows(&placed[200..]).len() as u64;
    assert!(
        a.stats.rows_forwarded.load(Ordering::Relaxed) - a_before >= new_rows,
        "a alone forwards every new row"
    );
    a.stop();
    assert_eq!(committed(&servers, "g2", 4), offsets);
}

#[test]
fn a_missing_or_small_repartition_topic_is_an_error_at_start() {
    let kafka = EmbeddedKafka::start(1).expect("kafka");
    let servers = kafka.bootstrap_servers();
    kafka.create_topic("src", 2).expect("src");
    kafka.create_topic("small", 2).expect("small");

    let e = run_forwarder(setup(&servers, "g3", "nope", 2)).expect_err("missing topic");
    let text = e.to_string();
    assert!(
        text.contains("repartition topic 'nope' does not exist at"),
        "{text}"
    );

    let e = run_forwarder(setup(&servers, "g3", "small", 3)).expect_err("too few partitions");
    let text = e.to_string();
    assert!(
        text.contains("repartition topic 'small'")
            && text.contains("has 2 partitions, the job needs 3"),
        "{text}"
    );
}

#[test]
fn a_stop_flag_set_before_start_ends_at_once_and_commits_nothing() {
    let kafka = EmbeddedKafka::start(1).expect("kafka");
    let servers = kafka.bootstrap_servers();
    kafka.create_topic("src", 2).expect("src");
    kafka.create_topic("rep", 2).expect("rep");
    produce(&servers, "src", &[(0, Some(record(0)))]);
    let s = setup(&servers, "g4", "rep", 2);
    s.stop.store(true, Ordering::Release);
    let stats = s.stats.clone();
    let started = Instant::now();
    run_forwarder(s).expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.records_in.load(Ordering::Relaxed), 0);
    assert_eq!(stats.rows_forwarded.load(Ordering::Relaxed), 0);
}

#[test]
fn a_failed_delivery_is_an_error_naming_the_topic_and_nothing_is_committed() {
    let kafka = EmbeddedKafka::start(1).expect("kafka");
    let servers = kafka.bootstrap_servers();
    kafka.create_topic("src", 2).expect("src");
    kafka.create_topic("rep", 2).expect("rep");
    let (records, _) = batch(0, 20, 2, &mut [0, 0]);
    produce(&servers, "src", &records);
    // Every produce request from now on is refused (not retriable).
    kafka.fail_next_produce_requests(1000);
    let started = Instant::now();
    let e = run_forwarder(setup(&servers, "g5", "rep", 2)).expect_err("delivery fails");
    let text = e.to_string();
    assert!(
        text.contains("not delivered to repartition topic 'rep'"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The group has no committed offset: the rows will be forwarded again.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("group.id", "g5")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("src", 0);
    tpl.add_partition("src", 1);
    let tpl = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    for e in tpl.elements() {
        assert!(
            !matches!(e.offset(), Offset::Offset(_)),
            "partition {} committed {:?}",
            e.partition(),
            e.offset()
        );
    }
}
