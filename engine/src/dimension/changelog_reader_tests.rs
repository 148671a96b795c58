//! Tests of the changelog reader with an in-memory changelog.

use std::collections::{BTreeMap, VecDeque};

use arrow::array::{Array, AsArray};
use proptest::prelude::*;
use spillway_connectors::dimension_changelog::{ChangelogBatch, ChangelogSource, TIME_NONE};

use super::*;
use crate::catalog::{Column, ColumnType, WatermarkSpec};
use crate::dimension::dimension_table::{DimensionLimits, DimensionTable};
use crate::dimension::row_store::RowStore;
use crate::error::Pos;

/// One record: (value or key JSON, tombstone, Kafka time).
type Record = (String, bool, i64);

/// A changelog that hands out its records `per_poll` at a time.
struct VecChangelog {
    records: VecDeque<Record>,
    per_poll: usize,
}

impl ChangelogSource for VecChangelog {
    fn poll(
        &mut self,
        out: &mut ChangelogBatch,
        records_max: usize,
        _bytes_max: usize,
    ) -> spillway_connectors::Result<()> {
        for _ in 0..self.per_poll.min(records_max) {
            let Some((payload, tombstone, time)) = self.records.pop_front() else {
                break;
            };
            if tombstone {
                out.push_tombstone(0, 0, time, payload.as_bytes());
            } else {
                out.push_value(0, 0, time, payload.as_bytes());
            }
        }
        Ok(())
    }

    fn caught_up(&self) -> bool {
        self.records.is_empty()
    }

    fn progress(&self) -> String {
        format!("{} records left", self.records.len())
    }
}

fn table_def(versioned: bool) -> TableDef {
    let column = |name: &str, ty| Column {
        name: name.into(),
        ty,
        nullable: true,
    };
    TableDef {
        name: "securities".into(),
        columns: vec![
            column("id", ColumnType::String),
            column("name", ColumnType::String),
            column("ts", ColumnType::Timestamp),
        ],
        watermark: versioned.then_some(WatermarkSpec {
            column: 2,
            bound_ms: 0,
        }),
        primary_key: vec![0],
        options: BTreeMap::new(),
        pos: Pos::default(),
    }
}

fn setup(
    versioned: bool,
    records: Vec<Record>,
    per_poll: usize,
) -> (ChangelogReader, DimensionTable) {
    let def = table_def(versioned);
    let source = Box::new(VecChangelog {
        records: records.into(),
        per_poll,
    });
    let reader = ChangelogReader::new(&def, versioned, source).expect("reader");
    let store = RowStore::new(def.schema()).expect("store");
    let limits = DimensionLimits {
        rows_max: 1000,
        bytes_max: 1 << 30,
    };
    (
        reader,
        DimensionTable::new("securities", store, limits, versioned),
    )
}

fn drain(reader: &mut ChangelogReader, table: &mut DimensionTable) {
    while !reader.caught_up() {
        reader.poll(table, 1000, 1 << 20).expect("poll");
    }
}

fn name_of(table: &DimensionTable, id: &str, at_ms: i64) -> Option<String> {
    let codec = KeyCodec::new(&[arrow::datatypes::DataType::Utf8]).expect("codec");
    let keys = codec
        .encode(&[std::sync::Arc::new(arrow::array::StringArray::from(vec![
            id,
        ]))])
        .expect("encode");
    let row = table.lookup(keys.key(0)?, at_ms)?;
    let columns = table.store.gather_rows(&[row]).expect("gather");
    let names = columns[1].as_string::<i32>();
    names.is_valid(0).then(|| names.value(0).to_string())
}

fn row(id: &str, name: &str, ts: i64) -> Record {
    (
        format!(r#"{{"id":"{id}","name":"{name}","ts":{ts}}}"#),
        false,
        TIME_NONE,
    )
}

#[test]
fn upserts_tombstones_and_markers_apply_in_order() {
    let records = vec![
        row("a", "A1", 0),
        row("b", "B1", 0),
        (r#"{"id":"a"}"#.into(), true, 5), // tombstone of a
        row("a", "A2", 0),                 // a comes back in the same batch
        (r#"{"id":"b","__deleted":true}"#.into(), false, TIME_NONE),
        row("c", "C1", 0),
        ("not json".into(), false, TIME_NONE),
        (r#"{"id":null,"name":"x","ts":0}"#.into(), false, TIME_NONE),
    ];
    let (mut reader, mut table) = setup(false, records, 3);
    drain(&mut reader, &mut table);
    assert_eq!(name_of(&table, "a", 0).as_deref(), Some("A2"));
    assert_eq!(name_of(&table, "b", 0), None);
    assert_eq!(name_of(&table, "c", 0).as_deref(), Some("C1"));
    let stats = reader.stats();
    assert_eq!((stats.upserts, stats.deletes, stats.skipped), (4, 2, 2));
    assert!(!reader.samples().is_empty());
    assert_eq!(table.rows(), 2);
}

#[test]
fn temporal_versions_come_from_the_time_column_and_deletes_from_their_time() {
    let records = vec![
        row("a", "A1", 100),
        row("a", "A2", 200),
        (r#"{"id":"a"}"#.into(), true, 300), // tombstone at the Kafka time 300
        row("a", "A4", 400),
        (
            r#"{"id":"a","__deleted":true,"ts":500}"#.into(),
            false,
            TIME_NONE,
        ),
        (r#"{"id":"a","__deleted":true}"#.into(), false, TIME_NONE), // no time: skipped
    ];
    let (mut reader, mut table) = setup(true, records, 10);
    drain(&mut reader, &mut table);
    assert_eq!(name_of(&table, "a", 50), None);
    assert_eq!(name_of(&table, "a", 150).as_deref(), Some("A1"));
    assert_eq!(name_of(&table, "a", 299).as_deref(), Some("A2"));
    assert_eq!(name_of(&table, "a", 350), None);
    assert_eq!(name_of(&table, "a", 450).as_deref(), Some("A4"));
    assert_eq!(name_of(&table, "a", 600), None);
    assert_eq!(reader.stats().skipped, 1);
}

#[test]
fn limits_fail_the_poll_with_the_table_name() {
    let records: Vec<Record> = (0..20).map(|i| row(&format!("k{i}"), "n", 0)).collect();
    let def = table_def(false);
    let source = Box::new(VecChangelog {
        records: records.into(),
        per_poll: 5,
    });
    let mut reader = ChangelogReader::new(&def, false, source).expect("reader");
    let store = RowStore::new(def.schema()).expect("store");
    let limits = DimensionLimits {
        rows_max: 12,
        bytes_max: 1 << 30,
    };
    let mut table = DimensionTable::new("securities", store, limits, false);
    reader.poll(&mut table, 100, 1 << 20).expect("5 rows");
    reader.poll(&mut table, 100, 1 << 20).expect("10 rows");
    let e = reader
        .poll(&mut table, 100, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'securities'") && e.contains("dimension.rows-max"),
        "{e}"
    );
}

proptest! {
    /// However the changelog is cut into polls, the table equals the last value per key.
    #[test]
    fn any_poll_size_gives_the_last_value_per_key(
        changes in proptest::collection::vec((0u8..5, proptest::option::of(0u8..9)), 1..60),
        per_poll in 1usize..9,
    ) {
        let mut model: BTreeMap<String, String> = BTreeMap::new();
        let records: Vec<Record> = changes
            .iter()
            .map(|(k, v)| {
                let id = format!("k{k}");
                match v {
                    Some(v) => {
                        model.insert(id.clone(), format!("v{v}"));
                        row(&id, &format!("v{v}"), 0)
                    }
                    None => {
                        model.remove(&id);
                        (format!(r#"{{"id":"{id}"}}"#), true, 1)
                    }
                }
            })
            .collect();
        let (mut reader, mut table) = setup(false, records, per_poll);
        drain(&mut reader, &mut table);
        for k in 0u8..5 {
            let id = format!("k{k}");
            prop_assert_eq!(name_of(&table, &id, 0), model.get(&id).cloned());
        }
    }
}
