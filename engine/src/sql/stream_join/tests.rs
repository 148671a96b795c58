//! Planning joins of two streams.

use super::*;
use crate::plan::{Expr, Pipeline, WindowKind};

const TABLES: &str = "
    CREATE TABLE a (k BIGINT, v STRING, ts TIMESTAMP(3),
      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'filesystem', 'path' = 'a');
    CREATE TABLE b (id INT, w DOUBLE, ts TIMESTAMP(3),
      WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH ('connector' = 'filesystem', 'path' = 'b');
    CREATE TABLE d (id BIGINT, name STRING, PRIMARY KEY (id) NOT ENFORCED)
      WITH ('connector' = 'filesystem', 'path' = 'd');
";

fn plan(query: &str) -> Result<Pipeline> {
    plan_with(TABLES, query)
}

/// The first pipeline of `query` after the CREATE TABLEs `tables`.
pub(super) fn plan_with(tables: &str, query: &str) -> Result<Pipeline> {
    let program = crate::sql::parse_program(&format!("{tables}{query}"))?;
    Ok(program.pipelines[0].clone())
}

/// The planning error of `query` after `tables` (panics if it plans).
pub(super) fn plan_err_with(tables: &str, query: &str) -> String {
    match plan_with(tables, query) {
        Ok(p) => panic!("{query} planned: {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn plan_ok(query: &str) -> Pipeline {
    match plan(query) {
        Ok(p) => p,
        Err(e) => panic!("{query}: {e}"),
    }
}

fn plan_err(query: &str) -> String {
    plan_err_with(TABLES, query)
}

#[test]
fn interval_join_between() {
    let p = plan_ok(
        "SELECT a.k, b.w FROM a JOIN b ON a.k = b.id \
         AND a.ts BETWEEN b.ts - INTERVAL '5' SECOND AND b.ts + INTERVAL '1' SECOND",
    );
    let j = p.stream_join.expect("a stream join");
    assert_eq!(
        j.kind,
        StreamJoinKind::Interval {
            lower_ms: -5_000,
            upper_ms: 1_000
        }
    );
    assert_eq!(p.source, "a");
    assert_eq!(j.right.table, "b");
    assert_eq!(j.left.time_column, 2);
    assert_eq!(j.right.time_column, 2);
    // keys cast to the common type BIGINT
    assert_eq!(
        j.left.keys[0].data_type(),
        arrow::datatypes::DataType::Int64
    );
    assert_eq!(
        j.right.keys[0].data_type(),
        arrow::datatypes::DataType::Int64
    );
    // projection over the joined schema: b.w is column 3 + 1
    assert!(matches!(&p.projection[1], Expr::Column { index: 4, .. }));
}

#[test]
fn interval_join_bounds_in_where_and_reversed() {
    let p = plan_ok(
        "SELECT a.k FROM a JOIN b ON b.id = a.k \
         WHERE b.ts > a.ts - INTERVAL '3' SECOND AND b.ts <= a.ts",
    );
    // b.ts > a.ts - 3s  <=>  a.ts - b.ts < 3s; b.ts <= a.ts <=> a.ts - b.ts >= 0
    assert_eq!(
        p.stream_join.expect("join").kind,
        StreamJoinKind::Interval {
            lower_ms: 0,
            upper_ms: 2_999
        }
    );
    assert!(p.filter.is_some(), "WHERE stays a filter");
}

#[test]
fn window_join_with_distinct_sides() {
    let p = plan_ok(
        "SELECT L.k, L.v, L.starttime FROM (
           SELECT k, v, window_start AS starttime, window_end AS endtime
           FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '10' SECOND))
           GROUP BY k, v, window_start, window_end) L
         JOIN (
           SELECT id, window_start AS starttime, window_end AS endtime
           FROM TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), INTERVAL '10' SECOND))
           GROUP BY id, window_start, window_end) R
         ON L.k = R.id AND L.starttime = R.starttime AND L.endtime = R.endtime",
    );
    let j = p.stream_join.expect("join");
    assert_eq!(j.kind, StreamJoinKind::Window);
    assert!(j.left.distinct && j.right.distinct);
    assert_eq!(j.left.output_names, ["k", "v", "starttime", "endtime"]);
    assert_eq!(j.left.time_column, 3);
    assert_eq!(j.right.time_column, 2);
    assert!(matches!(
        j.left.window.map(|w| w.kind),
        Some(WindowKind::Tumble { size_ms: 10_000 })
    ));
}

#[test]
fn window_join_of_plain_window_tables() {
    let p = plan_ok(
        "SELECT L.k, R.w, L.window_start FROM
           (SELECT * FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '1' SECOND))) L
         JOIN (SELECT * FROM TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), INTERVAL '1' SECOND))) R
         ON L.k = R.id AND L.window_start = R.window_start AND L.window_end = R.window_end",
    );
    let j = p.stream_join.expect("join");
    assert!(!j.left.distinct);
    assert_eq!(j.left.output_names.len(), 5);
    assert_eq!(j.left.time_column, 4);
}

#[test]
fn joins_without_both_bounds_keep_the_unbounded_side() {
    let p = plan_ok("SELECT a.k FROM a JOIN b ON a.k = b.id WHERE a.v = 'x' AND b.w > 1.5");
    let j = p.stream_join.expect("join");
    assert_eq!(
        j.kind,
        StreamJoinKind::Interval {
            lower_ms: i64::MIN,
            upper_ms: i64::MAX
        }
    );
    // WHERE conjuncts over one side also filter that side before the join state.
    assert!(j.left.filter.is_some() && j.right.filter.is_some());
    assert!(matches!(
        j.right.filter,
        Some(Expr::Binary { ref left, .. }) if matches!(**left, Expr::Column { index: 1, .. })
    ));
    let p = plan_ok("SELECT a.k FROM a JOIN b ON a.k = b.id AND a.ts >= b.ts");
    assert_eq!(
        p.stream_join.expect("join").kind,
        StreamJoinKind::Interval {
            lower_ms: 0,
            upper_ms: i64::MAX
        }
    );
}

#[test]
fn refusals_are_clear() {
    let e = plan_err("SELECT a.k FROM a LEFT JOIN b ON a.k = b.id AND a.ts BETWEEN b.ts AND b.ts");
    assert!(e.contains("not supported yet"), "{e}");
    let e = plan_err("SELECT a.k FROM a JOIN b ON a.v = 'x' AND a.ts BETWEEN b.ts AND b.ts");
    assert!(e.contains("does not compare the two sides"), "{e}");
    let e = plan_err(
        "SELECT a.k FROM a JOIN b ON a.k = b.id AND a.ts BETWEEN b.ts AND b.ts - INTERVAL '1' SECOND",
    );
    assert!(e.contains("bounds are empty"), "{e}");
    let e = plan_err("SELECT COUNT(*) FROM a JOIN b ON a.k = b.id AND a.ts BETWEEN b.ts AND b.ts");
    assert!(e.contains("not supported yet"), "{e}");
    let e = plan_err(
        "SELECT L.k FROM
           (SELECT * FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '1' SECOND))) L
         JOIN (SELECT * FROM TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), INTERVAL '2' SECOND))) R
         ON L.k = R.id AND L.window_start = R.window_start AND L.window_end = R.window_end",
    );
    assert!(e.contains("same window"), "{e}");
}

#[test]
fn dimension_joins_are_left_to_the_dimension_planner() {
    let p = plan_ok("SELECT a.k FROM a JOIN d ON d.id = a.k");
    assert!(p.stream_join.is_none());
    assert!(p.join.is_some());
}
