//! Planning ranked joins of two streams (a column-valued time bound, ROW_NUMBER per left
//! row).

use crate::error::Result;
use crate::plan::{JoinTopN, Pipeline, StreamJoinKind};
use crate::sql::stream_join::tests::{plan_err_with, plan_with};

const TABLES: &str = "
    CREATE TABLE auction (id BIGINT, name STRING, ts TIMESTAMP(3), expires TIMESTAMP(3),
      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'filesystem', 'path' = 'a');
    CREATE TABLE bid (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
      WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH ('connector' = 'filesystem', 'path' = 'b');
";

const RANKED: &str = "
    SELECT A.*, B.price, B.ts AS bid_ts,
      ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.ts) AS rn
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.ts BETWEEN A.ts AND A.expires";

fn plan(query: &str) -> Result<Pipeline> {
    plan_with(TABLES, query)
}

fn plan_err(query: &str) -> String {
    plan_err_with(TABLES, query)
}

#[test]
fn winning_bids_plan_as_a_ranked_join() {
    let query = format!("SELECT id, name, price, bid_ts, rn FROM ({RANKED}) WHERE rn <= 2");
    let p = plan(&query).unwrap_or_else(|e| panic!("{e}"));
    let j = p.stream_join.expect("a stream join");
    // left outputs: id, name, ts, expires; right: price, bid_ts, then the key appended
    assert_eq!(
        j.kind,
        StreamJoinKind::IntervalUntil {
            from_ms: 0,
            until_column: 3
        }
    );
    assert_eq!(
        j.right.output_names,
        vec!["price", "bid_ts", "$right.auction"]
    );
    assert_eq!(
        j.top,
        Some(JoinTopN {
            rank_max: 2,
            order: vec![(0, true), (1, false)]
        })
    );
    assert_eq!((j.left.time_column, j.right.time_column), (2, 1));
    // The outer SELECT reads the subquery's names and the row number (the 8th column).
    let names: Vec<_> = p.projection.iter().map(|e| format!("{e:?}")).collect();
    assert!(names[4].contains("index: 7"), "{names:?}");
    // The same with JOIN ... ON.
    let on = query.replace(
        "FROM auction A, bid B\n    WHERE",
        "FROM auction A JOIN bid B ON",
    );
    assert_ne!(on, query);
    let p2 = plan(&on).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p2.stream_join, Some(j));
}

#[test]
fn unsupported_ranked_joins_are_refused_clearly() {
    let e = plan_err(
        "SELECT A.id FROM auction A JOIN bid B ON A.id = B.auction \
         AND B.ts BETWEEN A.ts AND A.expires",
    );
    assert!(
        e.contains("not supported yet: a time bound that is a column"),
        "{e}"
    );
    let e = plan_err(&format!("SELECT id FROM ({RANKED})"));
    assert!(e.contains("without WHERE rn <= N"), "{e}");
    let e = plan_err(&format!(
        "SELECT id FROM ({}) WHERE rn <= 1",
        RANKED.replace("PARTITION BY A.id", "PARTITION BY A.name")
    ));
    assert!(e.contains("PARTITION BY the left side's join key"), "{e}");
    let e = plan_err(&format!(
        "SELECT id FROM ({}) WHERE rn <= 1",
        RANKED.replace("A.*, B.price", "B.price, A.*")
    ));
    assert!(e.contains("left table's columns first"), "{e}");
    let e = plan_err(&format!(
        "SELECT id FROM ({} AND B.price > A.id) WHERE rn <= 1",
        RANKED
    ));
    assert!(e.contains("in a join ranked by ROW_NUMBER()"), "{e}");
    let e = plan_err(&format!("SELECT id FROM ({RANKED}) WHERE rn <= 0"));
    assert!(e.contains("between 1 and"), "{e}");
    // Grouping a ranked subquery is a different query: refused with both forms named.
    let e = plan_err(&format!(
        "SELECT id FROM ({RANKED} GROUP BY A.id) WHERE rn <= 1"
    ));
    assert!(e.contains("LATERAL, GROUP BY, HAVING or DISTINCT"), "{e}");
}
