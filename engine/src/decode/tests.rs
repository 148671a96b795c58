//! Tests of the JSON decoder: every type, every bad input, and serde_json as an oracle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, AsArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;
use serde_json::{json, Value};
use spillway_connectors::RawBatch;

use super::{DecodeStats, JsonDecoder, SAMPLES_MAX};

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn trades_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("volume", DataType::Int64, true),
        Field::new("ts", ts_type(), true),
    ]))
}

/// A schema with every supported type; `ts` (index 6) is the event time.
fn all_types_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("s", DataType::Utf8, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("i", DataType::Int32, true),
        Field::new("l", DataType::Int64, true),
        Field::new("f", DataType::Float32, true),
        Field::new("d", DataType::Float64, true),
        Field::new("ts", ts_type(), true),
    ]))
}

fn raw_of(records: &[&str]) -> RawBatch {
    let mut raw = RawBatch::default();
    for (i, r) in records.iter().enumerate() {
        raw.push((i % 3) as u32, 100 + i as i64, r.as_bytes());
    }
    raw
}

fn decode(decoder: &mut JsonDecoder, records: &[&str]) -> (RecordBatch, Vec<u32>) {
    let mut raw = raw_of(records);
    let mut kept = vec![99];
    let batch = decoder
        .decode(&mut raw, &mut kept)
        .expect("decode never fails on bad data");
    assert_eq!(batch.num_rows(), kept.len());
    assert_eq!(
        &batch.schema(),
        decoder.schema(),
        "columns are exactly the declared schema"
    );
    (batch, kept)
}

fn strings(batch: &RecordBatch, c: usize) -> Vec<Option<String>> {
    let a = batch.column(c).as_string::<i32>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

fn int64s(batch: &RecordBatch, c: usize) -> Vec<Option<i64>> {
    let a = batch
        .column(c)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("Int64");
    a.iter().collect()
}

fn timestamps(batch: &RecordBatch, c: usize) -> Vec<Option<i64>> {
    let a = batch
        .column(c)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("Timestamp(ms)");
    a.iter().collect()
}

fn float64s(batch: &RecordBatch, c: usize) -> Vec<Option<f64>> {
    let a = batch
        .column(c)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("Float64");
    a.iter().collect()
}

const TRADE: &str = r#"{"symbol":"AAPL","price":187.25,"volume":300,"ts":1700000000123}"#;

#[test]
fn decodes_the_trades_record() {
    let mut decoder = JsonDecoder::new(trades_schema(), Some(3));
    let (batch, kept) = decode(
        &mut decoder,
        &[
            TRADE,
            r#"{"ts":"2024-01-02 03:04:05.5","volume":-1,"price":3,"symbol":"M\u00fcnchen \"x\""}"#,
        ],
    );
    assert_eq!(kept, vec![0, 1]);
    assert_eq!(
        strings(&batch, 0),
        vec![Some("AAPL".into()), Some("München \"x\"".into())]
    );
    assert_eq!(float64s(&batch, 1), vec![Some(187.25), Some(3.0)]);
    assert_eq!(int64s(&batch, 2), vec![Some(300), Some(-1)]);
    assert_eq!(
        timestamps(&batch, 3),
        vec![Some(1_700_000_000_123), Some(1_704_164_645_500)]
    );
    assert_eq!(*decoder.stats(), DecodeStats::default());
    assert!(decoder.samples().is_empty());
}

#[test]
fn decodes_every_type_and_nulls() {
    let mut decoder = JsonDecoder::new(all_types_schema(), Some(6));
    let (batch, kept) = decode(
        &mut decoder,
        &[
            r#"{"s":"a\n\t\u0001😀","b":true,"i":-2147483648,"l":-9223372036854775808,"f":1.5,"d":-2.5e-3,"ts":0}"#,
            r#"{"s":null,"b":null,"i":null,"l":null,"f":null,"d":null,"ts":"2024-01-02T03:04:05+01:00"}"#,
            r#" {"ts":-1,"d":9007199254740993,"f":7,"l":9223372036854775807,"i":2147483647,"b":false,"s":""} "#,
        ],
    );
    assert_eq!(kept, vec![0, 1, 2]);
    assert_eq!(
        strings(&batch, 0),
        vec![Some("a\n\t\u{1}😀".into()), None, Some(String::new())]
    );
    let b = batch
        .column(1)
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("Boolean");
    assert_eq!(
        b.iter().collect::<Vec<_>>(),
        vec![Some(true), None, Some(false)]
    );
    let i = batch
        .column(2)
        .as_any()
        .downcast_ref::<Int32Array>()
        .expect("Int32");
    assert_eq!(
        i.iter().collect::<Vec<_>>(),
        vec![Some(i32::MIN), None, Some(i32::MAX)]
    );
    assert_eq!(
        int64s(&batch, 3),
        vec![Some(i64::MIN), None, Some(i64::MAX)]
    );
    let f = batch
        .column(4)
        .as_any()
        .downcast_ref::<Float32Array>()
        .expect("Float32");
    assert_eq!(
        f.iter().collect::<Vec<_>>(),
        vec![Some(1.5), None, Some(7.0)]
    );
    assert_eq!(
        float64s(&batch, 5),
        vec![Some(-2.5e-3), None, Some(9007199254740992.0)]
    );
    assert_eq!(
        timestamps(&batch, 6),
        vec![Some(0), Some(1_704_161_045_000), Some(-1)]
    );
}

#[test]
fn extra_fields_order_changes_and_duplicates() {
    let mut decoder = JsonDecoder::new(trades_schema(), Some(3));
    let (batch, kept) = decode(
        &mut decoder,
        &[
            TRADE,
            r#"{"extra":{"symbol":"NOPE","a":[1,{"b":2}]},"symbol":"B","list":[[],{}],"price":1,"volume":2,"ts":3,"z":null}"#,
            r#"{"Symbol":"lower","symbol":"C","price":1,"volume":2,"ts":3}"#,
            r#"{"symbol":"D","symbol":"E","price":1,"volume":2,"ts":3}"#,
            TRADE,
        ],
    );
    assert_eq!(kept, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        strings(&batch, 0),
        ["AAPL", "B", "C", "E", "AAPL"]
            .map(|s| Some(s.to_string()))
            .to_vec(),
        "names match exactly, nested fields are not columns, the last duplicate wins"
    );
}

#[test]
fn bad_records_are_skipped_counted_and_described() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("price", DataType::Float64, true),
        Field::new("qty", DataType::Int32, true),
        Field::new("ts", ts_type(), true),
    ]));
    let good = r#"{"symbol":"OK","price":1.5,"qty":7,"ts":5}"#;
    let records = [
        good,                                                              // 0
        r#"{"symbol":"A","price":1.5,"qty":7,"ts":5"#,                     // 1 truncated
        r#"{"symbol":"A","price":"1.5","qty":7,"ts":5}"#,                  // 2 wrong type
        good,                                                              // 3
        r#"[1,2,3]"#,                                                      // 4 not an object
        r#"{"symbol":"A","qty":7,"ts":5}"#,                                // 5 missing field
        r#"{"symbol":"A","price":1.5,"qty":2147483648,"ts":5}"#,           // 6 INT overflow
        r#"{"symbol":"A","price":1.5,"qty":7,"ts":null}"#,                 // 7 null time
        r#"{"symbol":"A","price":1.5,"qty":7,"ts":"last tuesday"}"#,       // 8 bad timestamp
        r#"{"symbol":null,"price":1.5,"qty":7,"ts":5}"#,                   // 9 null in NOT NULL
        r#"{"symbol":"A","price":1.5,"qty":7}"#,                           // 10 missing time
        r#"not json"#,                                                     // 11 malformed
        r#"{"symbol":"A","price":1.5,"qty":7,"ts":5} trailing"#,           // 12 trailing garbage
        r#""just a string""#,                                              // 13 not an object
        r#"{"symbol":"A","price":1.5,"qty":7.0,"ts":5}"#,                  // 14 float for INT
        r#"{"symbol":"A","price":1.5,"qty":7,"ts":99999999999999999999}"#, // 15 beyond u64
        r#"{"symbol":"A","price":1.5,"qty":7,"ts":9223372036854775808}"#,  // 16 beyond i64
        r#"{"symbol":"A","price":true,"qty":7,"ts":5}"#,                   // 17 wrong type
        "",                                                                // 18 empty
        r#"{"symbol":"AX","price":1.5,"qty":7,"ts":5}"#,                   // 19 bad UTF-8 (below)
        good,                                                              // 20
    ];
    // A Rust str cannot hold invalid UTF-8: replace the X of record 19 by a 0xff byte.
    let mut raw = raw_of(&records);
    let (start, _) = raw.span(19);
    assert_eq!(raw.data[start + 12], b'X');
    raw.data[start + 12] = 0xff;
    let data_before = raw.data.clone();
    let mut decoder = JsonDecoder::new(schema, Some(3));
    let mut kept = Vec::new();
    let batch = decoder
        .decode(&mut raw, &mut kept)
        .expect("bad data is never an error");
    assert_eq!(kept, vec![0, 3, 20]);
    assert_eq!(
        strings(&batch, 0),
        vec![Some("OK".to_string()); 3],
        "good rows intact"
    );
    assert_eq!(timestamps(&batch, 3), vec![Some(5); 3]);
    assert_eq!(
        *decoder.stats(),
        DecodeStats {
            malformed: 8,     // 1, 4, 11, 12, 13, 15, 18, 19
            missing_field: 2, // 5, 10
            wrong_type: 7,    // 2, 6, 8, 9, 14, 16, 17
            null_time: 1,     // 7
        }
    );
    assert_eq!(decoder.stats().skipped(), 18);
    assert_eq!(raw.data.len(), data_before.len(), "padding removed again");
    let samples = decoder.samples();
    assert_eq!(samples.len(), SAMPLES_MAX);
    // The rest of the first message is simd-json's own wording.
    assert!(
        samples[0].starts_with("partition 1 offset 101: malformed JSON: "),
        "{}",
        samples[0]
    );
    assert_eq!(
        &samples[1..],
        &[
            "partition 2 offset 102: field 'price': expected DOUBLE, found string",
            "partition 1 offset 104: not a JSON object (found array)",
            "partition 2 offset 105: field 'price' missing",
            "partition 0 offset 106: field 'qty': 2147483648 is out of INT range",
            "partition 1 offset 107: field 'ts': event time is null",
            "partition 2 offset 108: field 'ts': bad timestamp string \"last tuesday\"",
            "partition 0 offset 109: field 'symbol': null in a NOT NULL STRING column",
        ]
    );
}

#[test]
fn records_back_to_back_and_bare_scalars() {
    // No separators between records: each record's end must be honoured exactly, and the
    // in-place unescaping of one record must not disturb its neighbours.
    let mut decoder = JsonDecoder::new(trades_schema(), Some(3));
    let a = r#"{"symbol":"\u0041\n","price":1,"volume":2,"ts":3}"#;
    let (batch, kept) = decode(&mut decoder, &[a, "1", "2", a, "{}", a, "nul", "null"]);
    assert_eq!(kept, vec![0, 3, 5]);
    assert_eq!(strings(&batch, 0), vec![Some("A\n".to_string()); 3]);
    assert_eq!(
        decoder.stats().malformed,
        4,
        "1, 2, nul, null are not objects"
    );
    assert_eq!(decoder.stats().missing_field, 1, "{{}} misses every field");
}

#[test]
fn empty_batch_and_reuse_across_batches() {
    let mut decoder = JsonDecoder::new(trades_schema(), Some(3));
    let (batch, kept) = decode(&mut decoder, &[]);
    assert_eq!((batch.num_rows(), kept.len()), (0, 0));
    let (batch, kept) = decode(&mut decoder, &["{", TRADE]);
    assert_eq!(kept, vec![1]);
    assert_eq!(int64s(&batch, 2), vec![Some(300)]);
    let (batch, kept) = decode(&mut decoder, &[TRADE, TRADE]);
    assert_eq!((batch.num_rows(), kept), (2, vec![0, 1]));
    assert_eq!(
        decoder.stats().malformed,
        1,
        "stats accumulate across batches"
    );
}

#[test]
fn samples_are_capped() {
    let mut decoder = JsonDecoder::new(trades_schema(), Some(3));
    let bad = vec!["x"; 20];
    let (_, kept) = decode(&mut decoder, &bad);
    assert!(kept.is_empty());
    assert_eq!(decoder.stats().malformed, 20);
    assert_eq!(decoder.samples().len(), SAMPLES_MAX);
}

#[test]
fn unusable_schema_or_raw_batch_is_an_error() {
    let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
    let mut decoder = JsonDecoder::new(schema, None);
    let err = decoder
        .decode(&mut raw_of(&["{}"]), &mut Vec::new())
        .expect_err("Date32 is not a spillway type");
    assert!(err.to_string().contains("'d'"), "{err}");

    let mut decoder = JsonDecoder::new(trades_schema(), Some(4));
    assert!(decoder
        .decode(&mut raw_of(&[TRADE]), &mut Vec::new())
        .is_err());

    let mut decoder = JsonDecoder::new(trades_schema(), Some(3));
    let mut raw = raw_of(&[TRADE]);
    raw.ends[0] += 1;
    assert!(
        decoder.decode(&mut raw, &mut Vec::new()).is_err(),
        "end past the data"
    );
}

/// Not a benchmark: a smoke check of the decode rate, which it prints.
#[test]
fn decode_rate_of_trades() {
    const RECORDS: usize = 100_000;
    let mut raw = RawBatch::default();
    let mut text = String::new();
    for i in 0..RECORDS {
        text.clear();
        text.push_str(&format!(
            r#"{{"symbol":"{}","price":{}.25,"volume":{},"ts":{}}}"#,
            ["AAPL", "MSFT", "GOOG", "AMZN"][i % 4],
            100 + i % 50,
            i % 1000,
            1_700_000_000_000 + i as i64
        ));
        raw.push(0, i as i64, text.as_bytes());
    }
    let mut decoder = JsonDecoder::new(trades_schema(), Some(3));
    let mut kept = Vec::new();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut copy = RawBatch::default();
        copy.data.extend_from_slice(&raw.data);
        copy.ends.extend_from_slice(&raw.ends);
        copy.partition.extend_from_slice(&raw.partition);
        copy.offset.extend_from_slice(&raw.offset);
        let started = Instant::now();
        let batch = decoder.decode(&mut copy, &mut kept).expect("decodes");
        best = best.min(started.elapsed().as_secs_f64());
        assert_eq!(batch.num_rows(), RECORDS);
        assert_eq!(int64s(&batch, 2)[999], Some(999));
        assert_eq!(
            timestamps(&batch, 3)[RECORDS - 1],
            Some(1_700_000_000_000 + RECORDS as i64 - 1)
        );
        assert_eq!(strings(&batch, 0)[5], Some("MSFT".to_string()));
    }
    println!(
        "decode rate: {:.2} million trades records/s ({} bytes each on average)",
        RECORDS as f64 / best / 1e6,
        raw.data.len() / RECORDS
    );
}

/// What a column must hold for one generated field value, by the type rules applied to
/// serde_json's reading of the record (the oracle); `None` = the record is skipped.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Null,
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
}

fn expect_field(
    column: usize,
    value: Option<&Value>,
    original: Option<&Value>,
) -> Option<Expected> {
    let value = value?;
    if value.is_null() {
        return (column != 6).then_some(Expected::Null);
    }
    match column {
        0 => value.as_str().map(|s| Expected::Str(s.to_string())),
        1 => value.as_bool().map(Expected::Bool),
        2 => value
            .as_i64()
            .filter(|v| i32::try_from(*v).is_ok())
            .map(Expected::Int),
        3 | 6 => value.as_i64().map(Expected::Int),
        5 => {
            // Floats written by serde_json read back exactly; compare with the generated
            // value, since serde_json's own float parsing is not always correctly rounded.
            if value.is_f64() {
                original.and_then(Value::as_f64).map(Expected::Float)
            } else {
                value.as_f64().map(Expected::Float)
            }
        }
        _ => unreachable!("column {column} is not generated"),
    }
}

fn arb_field(column: usize) -> BoxedStrategy<Option<Value>> {
    let right: BoxedStrategy<Value> = match column {
        0 => any::<String>().prop_map(Value::from).boxed(),
        1 => any::<bool>().prop_map(Value::from).boxed(),
        2 => prop_oneof![
            8 => -1000..1000i64,
            8 => any::<i32>().prop_map(i64::from),
            1 => any::<i64>(),
        ]
        .prop_map(Value::from)
        .boxed(),
        3 | 6 => prop_oneof![
            8 => (-1000..1000i64).prop_map(Value::from),
            8 => any::<i64>().prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
        ]
        .boxed(),
        5 => prop_oneof![
            any::<f64>()
                .prop_filter("finite", |d| d.is_finite())
                .prop_map(Value::from),
            (-1000.0..1000.0f64).prop_map(Value::from),
            (-1000..1000i64).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
        ]
        .boxed(),
        _ => unreachable!(),
    };
    let wrong = prop_oneof![
        Just(json!(null)),
        Just(json!([1, "a"])),
        Just(json!({"k": {"n": null}})),
        "[a-z]{0,5}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |d| d.is_finite())
            .prop_map(Value::from),
    ];
    // Mostly right, so that about half the records are kept.
    prop_oneof![
        24 => right.prop_map(Some),
        2 => wrong.prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

/// Generated columns: s, b, i, l, d, ts (indexes into `all_types_schema` minus `f`).
const GENERATED: [usize; 6] = [0, 1, 2, 3, 5, 6];

fn arb_record() -> impl Strategy<Value = (Vec<Option<Value>>, Vec<(String, Value)>, u64)> {
    (
        GENERATED.map(arb_field).to_vec(),
        proptest::collection::vec(("x_[a-z]{1,6}", any::<i64>().prop_map(Value::from)), 0..3),
        any::<u64>(),
    )
}

static KEPT_ROWS: AtomicUsize = AtomicUsize::new(0);
static SEEN_ROWS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn decodes_like_serde_json_keeps_and_skips() {
    decodes_like_serde_json();
    let (kept, seen) = (
        KEPT_ROWS.load(Ordering::Relaxed),
        SEEN_ROWS.load(Ordering::Relaxed),
    );
    assert!(
        kept * 5 > seen && kept * 5 < seen * 4,
        "kept {kept} of {seen}: both paths tested"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    fn decodes_like_serde_json(records in proptest::collection::vec(arb_record(), 1..12)) {
        let schema = Arc::new(Schema::new(
            GENERATED.iter().map(|&c| all_types_schema().field(c).clone()).collect::<Vec<_>>(),
        ));
        let mut texts = Vec::new();
        let mut expected_rows = Vec::new();
        for (fields, extras, order_seed) in &records {
            // Build the object's members in a shuffled order, extras included.
            let mut members: Vec<(String, Value)> = Vec::new();
            for (g, value) in fields.iter().enumerate() {
                if let Some(value) = value {
                    members.push((schema.field(g).name().clone(), value.clone()));
                }
            }
            members.extend(extras.iter().cloned());
            let rotate = (*order_seed as usize) % members.len().max(1);
            members.rotate_left(rotate);
            if order_seed & 1 == 1 {
                members.reverse();
            }
            let mut text = String::from("{");
            for (k, (name, value)) in members.iter().enumerate() {
                if k > 0 {
                    text.push(',');
                }
                text.push_str(&serde_json::to_string(name).expect("key"));
                text.push(':');
                text.push_str(&serde_json::to_string(value).expect("value"));
            }
            text.push('}');
            let oracle: Value = serde_json::from_str(&text).expect("serde_json reads it");
            let row: Option<Vec<Expected>> = GENERATED
                .iter()
                .enumerate()
                .map(|(g, &c)| {
                    expect_field(c, oracle.get(schema.field(g).name()), fields[g].as_ref())
                })
                .collect();
            expected_rows.push(row);
            texts.push(text);
        }
        let mut decoder = JsonDecoder::new(schema.clone(), Some(5));
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (batch, kept) = decode(&mut decoder, &refs);
        let expected_kept: Vec<u32> = expected_rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|_| i as u32))
            .collect();
        prop_assert_eq!(&kept, &expected_kept, "records: {:?}", texts);
        prop_assert_eq!(decoder.stats().skipped() as usize, records.len() - kept.len());
        KEPT_ROWS.fetch_add(kept.len(), Ordering::Relaxed);
        SEEN_ROWS.fetch_add(records.len(), Ordering::Relaxed);
        for (row, &record) in kept.iter().enumerate() {
            let expected = expected_rows[record as usize].as_ref().expect("kept");
            let actual = vec![
                cell_str(batch.column(0).as_any().downcast_ref::<StringArray>(), row),
                cell_bool(batch.column(1).as_any().downcast_ref::<BooleanArray>(), row),
                cell_i32(batch.column(2).as_any().downcast_ref::<Int32Array>(), row),
                cell_i64(batch.column(3).as_any().downcast_ref::<Int64Array>(), row),
                cell_f64(batch.column(4).as_any().downcast_ref::<Float64Array>(), row),
                cell_ts(batch.column(5).as_any().downcast_ref::<TimestampMillisecondArray>(), row),
            ];
            prop_assert_eq!(&actual, expected, "record {}", texts[record as usize].as_str());
        }
    }
}

fn cell_str(a: Option<&StringArray>, row: usize) -> Expected {
    let a = a.expect("Utf8");
    if a.is_null(row) {
        Expected::Null
    } else {
        Expected::Str(a.value(row).to_string())
    }
}

fn cell_bool(a: Option<&BooleanArray>, row: usize) -> Expected {
    let a = a.expect("Boolean");
    if a.is_null(row) {
        Expected::Null
    } else {
        Expected::Bool(a.value(row))
    }
}

fn cell_i32(a: Option<&Int32Array>, row: usize) -> Expected {
    let a = a.expect("Int32");
    if a.is_null(row) {
        Expected::Null
    } else {
        Expected::Int(i64::from(a.value(row)))
    }
}

fn cell_i64(a: Option<&Int64Array>, row: usize) -> Expected {
    let a = a.expect("Int64");
    if a.is_null(row) {
        Expected::Null
    } else {
        Expected::Int(a.value(row))
    }
}

fn cell_f64(a: Option<&Float64Array>, row: usize) -> Expected {
    let a = a.expect("Float64");
    if a.is_null(row) {
        Expected::Null
    } else {
        Expected::Float(a.value(row))
    }
}

fn cell_ts(a: Option<&TimestampMillisecondArray>, row: usize) -> Expected {
    let a = a.expect("Timestamp(ms)");
    if a.is_null(row) {
        Expected::Null
    } else {
        Expected::Int(a.value(row))
    }
}

/// A processing-time column (`p AS PROCTIME()`) is never read from the record: a field of
/// that name is ignored, its absence is no problem, and every row of a batch gets one
/// wall-clock reading taken while the batch is decoded.
#[test]
fn proctime_column_is_filled_with_the_wall_clock() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("bidder", DataType::Int64, true),
        crate::proctime::mark_proctime_field(Field::new("p_time", ts_type(), false)),
        Field::new("ts", ts_type(), true),
    ]));
    let mut decoder = JsonDecoder::new(schema, Some(2));
    let before = crate::proctime::now_ms();
    let (batch, kept) = decode(
        &mut decoder,
        &[
            r#"{"bidder":1,"ts":5}"#,
            r#"{"bidder":2,"p_time":42,"ts":6}"#,
            r#"{"bidder":3,"p_time":"not a time","ts":7}"#,
            r#"{"bidder":4,"ts":null}"#,
        ],
    );
    let after = crate::proctime::now_ms();
    assert_eq!(
        kept,
        vec![0, 1, 2],
        "the null event time still skips a record"
    );
    assert_eq!(int64s(&batch, 0), vec![Some(1), Some(2), Some(3)]);
    let stamps = timestamps(&batch, 1);
    let first = stamps[0].expect("a processing time is never null");
    assert!(stamps.iter().all(|s| *s == Some(first)), "{stamps:?}");
    assert!(
        before <= first && first <= after,
        "{before} <= {first} <= {after}"
    );
    assert_eq!(decoder.stats().skipped(), 1);
    assert_eq!(decoder.stats().null_time, 1);

    // An empty batch has an empty processing-time column.
    let (empty, _) = decode(&mut decoder, &[]);
    assert_eq!(empty.num_rows(), 0);
}
