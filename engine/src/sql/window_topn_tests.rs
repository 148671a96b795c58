//! Planning of subqueries in FROM and per-window top-N queries.

use super::super::parse_program;
use crate::plan::{Aggregation, Expr, Pipeline, TopNInput};

const BID: &str = "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, \
    channel VARCHAR, url VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR, \
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND) \
    WITH ('connector' = 'nexmark', 'nexmark.table' = 'bid');\n";

fn pipeline(query: &str) -> Pipeline {
    match parse_program(&format!("{BID}{query}")) {
        Ok(mut p) => p.pipelines.remove(0),
        Err(e) => panic!("{e}\nin: {query}"),
    }
}

fn top_n(query: &str) -> Aggregation {
    let a = pipeline(query).aggregation.expect("an aggregation");
    assert!(a.top_n.is_some(), "a top-N: {a:?}");
    a
}

fn error(query: &str) -> String {
    match parse_program(&format!("{BID}{query}")) {
        Ok(_) => panic!("planned, but should be refused: {query}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn nexmark_q7_is_a_top_1_with_ties_over_raw_rows() {
    let sql = include_str!("../../../examples/nexmark/q7.sql");
    let program = parse_program(sql).expect("q7 plans");
    let p = &program.pipelines[0];
    let a = p.aggregation.as_ref().expect("aggregation");
    let t = a.top_n.as_ref().expect("top-N");
    assert!(t.with_ties);
    assert_eq!(t.rows_max, 1);
    assert_eq!(t.order, vec![(0, true)], "price descending");
    let TopNInput::Rows(kept) = &t.input else {
        panic!("raw rows")
    };
    assert_eq!(kept.len(), 7, "price, then every other bid column");
    assert!(
        matches!(&p.filter, Some(Expr::IsNull { negated: true, .. })),
        "NULL prices never equal the max: {:?}",
        p.filter
    );
    // Output: auction, price, bidder, dateTime, extra of the kept row.
    let names: Vec<String> = p
        .projection
        .iter()
        .map(|e| match e {
            Expr::Column { index, .. } => a.output_schema().field(*index).name().clone(),
            other => panic!("a column: {other:?}"),
        })
        .collect();
    assert_eq!(names, ["kept$1", "kept$0", "kept$2", "kept$5", "kept$6"]);
    assert!(a.having.is_none());
}

#[test]
fn nexmark_q5_is_a_top_1_with_ties_over_inner_groups() {
    let sql = include_str!("../../../examples/nexmark/q5.sql");
    let program = parse_program(sql).expect("q5 plans");
    let a = program.pipelines[0]
        .aggregation
        .as_ref()
        .expect("aggregation");
    let t = a.top_n.as_ref().expect("top-N");
    let TopNInput::Groups(inner) = &t.input else {
        panic!("inner groups")
    };
    assert_eq!(inner.group_keys.len(), 1, "auction");
    assert_eq!(inner.aggregates.len(), 1, "count(*)");
    assert!(inner.having.is_some(), "count IS NOT NULL");
    assert_eq!(t.order, vec![(1, true)], "num descending");
    assert!(t.with_ties && t.rows_max == 1);
    let schema = a.output_schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["window_start", "window_end", "auction", "num"]);
}

#[test]
fn row_number_over_a_window_tvf_keeps_n_rows() {
    let a = top_n(
        "SELECT window_start, rn, auction, price FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC, bidder) AS rn
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
           WHERE price > 10
         ) t WHERE rn <= 3 AND auction > 5;",
    );
    let t = a.top_n.as_ref().expect("top-N");
    assert_eq!((t.rows_max, t.with_ties), (3, false));
    assert_eq!(t.order, vec![(0, true), (1, false)]);
    assert_eq!(t.row_number_name.as_deref(), Some("rn"));
    assert!(a.having.is_some(), "auction > 5 filters the ranked rows");
    let p = pipeline(
        "SELECT * FROM (SELECT auction, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price) AS rn
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))) WHERE rn < 2;",
    );
    assert_eq!(
        p.aggregation.and_then(|a| a.top_n).map(|t| t.rows_max),
        Some(1)
    );
}

#[test]
fn row_number_partitioned_by_more_keys_groups_by_them() {
    let a = top_n(
        "SELECT * FROM (
           SELECT channel, price, window_start, window_end,
             ROW_NUMBER() OVER (PARTITION BY window_start, channel, window_end ORDER BY price DESC) AS rn
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
         ) WHERE rn = 1;",
    );
    assert_eq!(a.group_keys.len(), 1, "channel");
}

#[test]
fn row_number_over_an_aggregate_subquery_ranks_its_groups() {
    let a = top_n(
        "SELECT auction, num, rn FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS rn
           FROM (SELECT auction, COUNT(*) AS num, window_start, window_end
                 FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                 GROUP BY auction, window_start, window_end)
         ) WHERE rn <= 5;",
    );
    let t = a.top_n.as_ref().expect("top-N");
    assert!(matches!(t.input, TopNInput::Groups(_)));
    assert_eq!((t.rows_max, t.order.clone()), (5, vec![(1, true)]));
}

#[test]
fn a_filter_over_an_aggregate_subquery_is_a_post_filter() {
    let p = pipeline(
        "SELECT auction, n FROM (
           SELECT auction, COUNT(*) AS n, window_start, window_end
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
           GROUP BY auction, window_start, window_end) AS s
         WHERE s.n > 3;",
    );
    let a = p.aggregation.expect("aggregation");
    assert!(a.top_n.is_none());
    assert!(a.having.is_some(), "n > 3 over the aggregation's output");
    let p = pipeline("SELECT a, p FROM (SELECT auction AS a, price * 2 AS p FROM bid WHERE price > 1) WHERE a > 7;");
    assert!(p.aggregation.is_none());
    assert!(
        matches!(p.filter, Some(Expr::Binary { .. })),
        "both conditions on the rows"
    );
}

#[test]
fn unsupported_forms_are_named() {
    let q7_between = "SELECT B.auction FROM bid B JOIN (
        SELECT MAX(price) AS maxprice, window_end AS dateTime
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
        GROUP BY window_start, window_end) B1 ON B.price = B1.maxprice
      WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime;";
    assert!(error(q7_between).contains("BETWEEN includes the window's end"));
    let no_time = "SELECT B.auction FROM bid B JOIN (
        SELECT MAX(price) AS maxprice, window_end AS dateTime
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
        GROUP BY window_start, window_end) B1 ON B.price = B1.maxprice;";
    assert!(
        error(no_time).contains("needs the conditions"),
        "{}",
        error(no_time)
    );
    let no_bound = "SELECT * FROM (SELECT price, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price) AS rn
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)));";
    assert!(error(no_bound).contains("WHERE rn <= N"));
    let rank = "SELECT * FROM (SELECT price, RANK() OVER (PARTITION BY window_start, window_end ORDER BY price) AS rn
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))) WHERE rn <= 2;";
    assert!(error(rank).contains("only ROW_NUMBER()"));
    let no_window =
        "SELECT * FROM (SELECT price, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price) AS rn
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))) WHERE rn <= 2;";
    assert!(error(no_window).contains("PARTITION BY window_start, window_end"));
    let too_many = "SELECT * FROM (SELECT price, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price) AS rn
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))) WHERE rn <= 20000;";
    assert!(
        error(too_many).contains("from 1 to 10000"),
        "{}",
        error(too_many)
    );
    let aggregated = "SELECT COUNT(*) FROM (SELECT auction FROM bid) GROUP BY auction;";
    assert!(error(aggregated).contains("aggregating the result of a subquery"));
    let other_join =
        "SELECT a.auction FROM (SELECT auction FROM bid) a JOIN bid b ON a.auction = b.auction;";
    assert!(error(other_join).contains("per-window MAX"));
}
