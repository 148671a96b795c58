//! Planning aggregating joins of two streams (Nexmark q4: MAX per auction over a join
//! whose time bound is the auction's own column, then an updating aggregate outside).

use crate::error::Result;
use crate::plan::{AggFunc, Pipeline, StreamJoinKind};
use crate::sql::stream_join::tests::{plan_err_with, plan_with};

const TABLES: &str = "
    CREATE TABLE auction (id BIGINT, name STRING, category BIGINT, ts TIMESTAMP(3),
      expires TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
      WITH ('connector' = 'filesystem', 'path' = 'a');
    CREATE TABLE bid (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
      WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH ('connector' = 'filesystem', 'path' = 'b');
    CREATE TABLE out (category BIGINT, avg_final DOUBLE, row_kind STRING)
      WITH ('connector' = 'filesystem', 'path' = 'o');
    CREATE TABLE plain (category BIGINT, avg_final DOUBLE)
      WITH ('connector' = 'filesystem', 'path' = 'p');
";

/// Nexmark q4's inner query.
const CLOSING: &str = "SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.ts BETWEEN A.ts AND A.expires
    GROUP BY A.id, A.category";

fn plan(query: &str) -> Result<Pipeline> {
    plan_with(TABLES, query)
}

fn plan_err(query: &str) -> String {
    plan_err_with(TABLES, query)
}

#[test]
fn q4_plans_as_an_aggregating_join_and_an_updating_aggregate() {
    let query = format!(
        "INSERT INTO out SELECT Q.category, AVG(Q.final) AS avg_final FROM ({CLOSING}) Q \
         GROUP BY Q.category;"
    );
    let p = plan(&query).unwrap_or_else(|e| panic!("{e}"));
    let j = p.stream_join.as_ref().expect("a stream join");
    assert!(j.top.is_none() && j.append_only_final());
    // left outputs: the grouped id and category, then what the join needs: ts, expires
    assert_eq!(
        j.left.output_names,
        ["id", "category", "$left.ts", "$left.expires"]
    );
    assert_eq!(
        j.right.output_names,
        ["price", "$right.ts", "$right.auction"]
    );
    assert_eq!(
        j.kind,
        StreamJoinKind::IntervalUntil {
            from_ms: 0,
            until_column: 3
        }
    );
    let a = j.aggregate.as_ref().expect("aggregates per auction");
    // GROUP BY A.id, A.category: both left columns (id is the join key).
    assert_eq!(a.group_columns, [0, 1]);
    assert_eq!(a.aggregates.len(), 1);
    assert_eq!(a.aggregates[0].func, AggFunc::Max);
    assert!(format!("{:?}", a.aggregates[0].arg).contains("index: 0"));
    assert_eq!(a.output_names, ["final", "category"]);
    // The outer GROUP BY is an updating aggregate: no window, AVG per category.
    let agg = p.aggregation.as_ref().expect("the outer aggregate");
    assert!(agg.window.is_none());
    assert_eq!(agg.group_key_names, ["category"]);
    assert_eq!(agg.aggregates[0].func, AggFunc::Avg);
    assert_eq!(p.late.row_kind_column, Some(2));
    assert!(p.late.update_before);
    // JOIN ... ON plans the same join.
    let on = query.replace(
        "FROM auction A, bid B\n    WHERE",
        "FROM auction A JOIN bid B ON",
    );
    assert_ne!(on, query);
    assert_eq!(plan(&on).expect("plans").stream_join, p.stream_join);
}

#[test]
fn several_aggregates_per_left_row_and_a_bare_select_with_row_kinds() {
    let p = plan(
        "SELECT category, COUNT(*) AS auctions, SUM(lo) AS lows, MAX(hi) AS highest FROM (
           SELECT A.category, MIN(B.price) AS lo, MAX(B.price) AS hi, COUNT(*) AS bids,
             SUM(B.price * 2) AS doubled, AVG(B.price) AS mean
           FROM auction A JOIN bid B ON A.id = B.auction AND B.ts BETWEEN A.ts AND A.expires
           GROUP BY A.id, A.category) GROUP BY category;",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = p
        .stream_join
        .as_ref()
        .and_then(|j| j.aggregate.as_ref())
        .expect("aggregates");
    let funcs: Vec<AggFunc> = a.aggregates.iter().map(|c| c.func).collect();
    assert_eq!(
        funcs,
        [
            AggFunc::Min,
            AggFunc::Max,
            AggFunc::Count,
            AggFunc::Sum,
            AggFunc::Avg
        ]
    );
    assert_eq!(
        a.output_names,
        ["category", "lo", "hi", "bids", "doubled", "mean"]
    );
    // The implicit print sink gets the row kind as its last column.
    let names: Vec<String> = p
        .output_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["category", "auctions", "lows", "highest", "row_kind"]
    );
    assert_eq!(p.late.row_kind_column, Some(4));
}

#[test]
fn unsupported_aggregating_joins_are_refused_clearly() {
    let outer = |inner: &str| {
        format!(
            "INSERT INTO out SELECT Q.category, AVG(Q.final) FROM ({inner}) Q GROUP BY Q.category;"
        )
    };
    let e = plan_err(&outer(
        &CLOSING.replace("GROUP BY A.id, A.category", "GROUP BY A.category"),
    ));
    assert!(e.contains("must GROUP BY the left table's join key"), "{e}");
    let e = plan_err(&outer(&CLOSING.replace(
        "GROUP BY A.id, A.category",
        "GROUP BY A.id, A.category, B.price",
    )));
    assert!(e.contains("GROUP BY price"), "{e}");
    let e = plan_err(&outer(&CLOSING.replace("MAX(B.price)", "MAX(A.ts)")));
    assert!(e.contains("over a column of the left table"), "{e}");
    let e = plan_err(&outer(
        &CLOSING.replace("MAX(B.price)", "COUNT(DISTINCT B.price)"),
    ));
    assert!(
        e.contains("not supported yet: COUNT(...) over a join's matches"),
        "{e}"
    );
    let e = plan_err(&outer(&format!("{CLOSING} HAVING MAX(B.price) > 1")));
    assert!(
        e.contains("HAVING or DISTINCT in a subquery aggregating"),
        "{e}"
    );
    // The outer updating aggregate: HAVING, side-state aggregates, a sink without kinds.
    let e = plan_err(&format!(
        "INSERT INTO out SELECT Q.category, AVG(Q.final) FROM ({CLOSING}) Q GROUP BY Q.category HAVING COUNT(*) > 1;"
    ));
    assert!(e.contains("HAVING in a GROUP BY without a window"), "{e}");
    let e = plan_err(&format!(
        "INSERT INTO out SELECT Q.category, CAST(COUNT(DISTINCT Q.final) AS DOUBLE) FROM ({CLOSING}) Q GROUP BY Q.category;"
    ));
    assert!(
        e.contains("an updating aggregate supports COUNT, SUM, AVG"),
        "{e}"
    );
    let e = plan_err(&format!(
        "INSERT INTO plain SELECT Q.category, AVG(Q.final) FROM ({CLOSING}) Q GROUP BY Q.category;"
    ));
    assert!(
        e.contains("declare a `row_kind STRING` column in sink 'plain'"),
        "{e}"
    );
    // Without a final, append-only input a GROUP BY still needs a window.
    let e = plan_err("SELECT auction, COUNT(*) FROM bid GROUP BY auction;");
    assert!(e.contains("GROUP BY needs a window"), "{e}");
    let e = plan_err(
        "SELECT A.id, COUNT(*) FROM auction A JOIN bid B ON A.id = B.auction \
         AND A.ts BETWEEN B.ts - INTERVAL '1' SECOND AND B.ts GROUP BY A.id;",
    );
    assert!(
        e.contains("aggregating the result of a join of two streams"),
        "{e}"
    );
}
