//! A small windowed query for the checkpoint tests: COUNT(*), SUM over integers, MAX over
//! strings per key and one-second tumbling window.

use std::sync::Arc;

use crate::plan::Pipeline;
use crate::window_operator::AggregateLayout;

pub const SQL: &str = "CREATE TABLE t (k STRING, v BIGINT, s STRING, ts TIMESTAMP(3), \
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
    WITH ('connector' = 'filesystem', 'path' = 'unused.jsonl', 'format' = 'json');\n\
    SELECT k, COUNT(*), SUM(v), MAX(s) FROM t GROUP BY k, TUMBLE(ts, INTERVAL '1' SECOND);";

pub fn pipeline() -> Arc<Pipeline> {
    let program = crate::sql::parse_program(SQL).expect("test query plans");
    Arc::new(program.pipelines[0].clone())
}

pub fn layout() -> AggregateLayout {
    let p = pipeline();
    AggregateLayout::new(p.aggregation.as_ref().expect("aggregation")).expect("layout")
}
