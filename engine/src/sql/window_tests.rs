//! HOP, CUMULATE and SESSION in both window forms: plans, and errors with their positions.

use crate::plan::{WindowKind, WindowSpec};
use crate::sql::tests::{aggregation, assert_error};

fn window(query: &str) -> WindowSpec {
    match aggregation(query).window {
        Some(w) => w,
        None => panic!("no window in {query}"),
    }
}

#[test]
fn hop_table_function_and_group_window_give_the_same_plan() {
    let tvf = window(
        "SELECT symbol, window_start, window_end, COUNT(*) \
         FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY symbol, window_start, window_end",
    );
    assert_eq!(
        tvf,
        WindowSpec {
            kind: WindowKind::Hop {
                size_ms: 10_000,
                slide_ms: 2_000
            },
            time_column: 3,
            offset_ms: 0,
        }
    );
    let group = aggregation(
        "SELECT symbol, HOP_START(ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND), \
                HOP_END(ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND), COUNT(*) \
         FROM trades GROUP BY symbol, HOP(ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)",
    );
    assert_eq!(group.window, Some(tvf));
    let schema = group.output_schema();
    assert_eq!(schema.field(1).name(), "window_start");
    assert_eq!(schema.field(2).name(), "window_end");
}

#[test]
fn offsets_are_normalised_to_the_grid() {
    // HOP: the grid of window starts repeats every slide.
    let hop = window(
        "SELECT COUNT(*) FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '2' SECOND, \
         INTERVAL '10' SECOND, INTERVAL '5' SECOND)) GROUP BY window_start, window_end",
    );
    assert_eq!(hop.offset_ms, 1_000);
    // CUMULATE: cycles repeat every max size.
    let cumulate = window(
        "SELECT COUNT(*) FROM TABLE(CUMULATE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND, \
         INTERVAL '1' MINUTE, INTERVAL '-10' SECOND)) GROUP BY window_start, window_end",
    );
    assert_eq!(
        cumulate.kind,
        WindowKind::Cumulate {
            step_ms: 1_000,
            max_size_ms: 60_000
        }
    );
    assert_eq!(cumulate.offset_ms, 50_000);
}

#[test]
fn hop_errors_name_the_argument() {
    assert_error(
        "SELECT COUNT(*) FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '3' SECOND, INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
        "the size of a HOP window (INTERVAL '10' SECOND) must be a multiple of its slide (INTERVAL '3' SECOND)",
        "'10' SECOND)",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '0' SECOND, INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
        "the slide of a HOP window must be positive",
        "'0' SECOND",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '-10' SECOND)) GROUP BY window_start, window_end",
        "the size of a HOP window must be positive",
        "'-10' SECOND",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '2' SECOND)) GROUP BY window_start, window_end",
        "must be a multiple of its slide",
        "'2' SECOND)",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' MILLISECOND, INTERVAL '1' MINUTE)) GROUP BY window_start, window_end",
        "spans 60000 panes, over window_panes_max = 10000",
        "'1' MINUTE",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end",
        "wrong number of arguments for HOP: expected HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset])",
        "HOP",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), '1', INTERVAL '2' SECOND)) GROUP BY window_start, window_end",
        "the window slide must be an INTERVAL",
        "'1'",
    );
    assert_error(
        "SELECT COUNT(*) FROM trades GROUP BY HOP(ts, INTERVAL '1' SECOND)",
        "expected HOP(ts, slide, size)",
        "HOP",
    );
    assert_error(
        "SELECT COUNT(*) FROM trades GROUP BY HOP(ts, INTERVAL '1' SECOND, INTERVAL '4' SECOND, INTERVAL '1' SECOND)",
        "wrong number of arguments for HOP",
        "HOP",
    );
    assert_error(
        "SELECT HOP_END(ts, INTERVAL '2' SECOND, INTERVAL '4' SECOND), COUNT(*) FROM trades GROUP BY HOP(ts, INTERVAL '1' SECOND, INTERVAL '4' SECOND)",
        "must match the GROUP BY window",
        "HOP_END",
    );
}

#[test]
fn cumulate_errors_name_the_argument() {
    assert_error(
        "SELECT COUNT(*) FROM TABLE(CUMULATE(TABLE trades, DESCRIPTOR(ts), INTERVAL '7' SECOND, INTERVAL '1' MINUTE)) GROUP BY window_start, window_end",
        "the max size of a CUMULATE window (INTERVAL '1' MINUTE) must be a multiple of its step (INTERVAL '7' SECOND)",
        "'1' MINUTE",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(CUMULATE(TABLE trades, DESCRIPTOR(ts), INTERVAL '-1' SECOND, INTERVAL '1' MINUTE)) GROUP BY window_start, window_end",
        "the step of a CUMULATE window must be positive",
        "'-1' SECOND",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(CUMULATE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' MILLISECOND, INTERVAL '1' HOUR)) GROUP BY window_start, window_end",
        "window_panes_max",
        "'1' HOUR",
    );
    assert_error(
        "SELECT COUNT(*) FROM trades GROUP BY CUMULATE(ts, INTERVAL '1' SECOND, INTERVAL '1' MINUTE)",
        "CUMULATE has no group-window form",
        "CUMULATE",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(SLIDE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end",
        "table function SLIDE is not supported (supported: TUMBLE, HOP, CUMULATE, SESSION)",
        "SLIDE",
    );
}

#[test]
fn session_table_function_and_group_window_give_the_same_plan() {
    let tvf = aggregation(
        "SELECT symbol, window_start, window_end, COUNT(*) \
         FROM TABLE(SESSION(TABLE trades, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
         GROUP BY symbol, window_start, window_end",
    );
    let spec = WindowSpec {
        kind: WindowKind::Session { gap_ms: 10_000 },
        time_column: 3,
        offset_ms: 0,
    };
    assert_eq!(tvf.window, Some(spec));
    let group = aggregation(
        "SELECT symbol, COUNT(*), SESSION_START(ts, INTERVAL '10' SECOND), \
                SESSION_END(ts, INTERVAL '10' SECOND) \
         FROM trades GROUP BY symbol, SESSION(ts, INTERVAL '10' SECOND)",
    );
    assert_eq!(group.window, Some(spec));
    assert_eq!(group.group_keys, tvf.group_keys);
    let schema = group.output_schema();
    assert_eq!(schema.field(1).name(), "window_start");
    assert_eq!(schema.field(2).name(), "window_end");
    // Keyless sessions: one key.
    let keyless = window("SELECT COUNT(*) FROM trades GROUP BY SESSION(ts, INTERVAL '1' MINUTE)");
    assert_eq!(keyless.kind, WindowKind::Session { gap_ms: 60_000 });
}

#[test]
fn session_errors_name_the_argument() {
    assert_error(
        "SELECT COUNT(*) FROM TABLE(SESSION(TABLE trades, DESCRIPTOR(ts), INTERVAL '0' SECOND)) GROUP BY window_start, window_end",
        "the gap of a SESSION window must be positive",
        "'0' SECOND",
    );
    assert_error(
        "SELECT COUNT(*) FROM TABLE(SESSION(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '1' SECOND)) GROUP BY window_start, window_end",
        "wrong number of arguments for SESSION: expected SESSION(TABLE t, DESCRIPTOR(ts), gap)",
        "SESSION",
    );
    assert_error(
        "SELECT symbol, SESSION_END(ts, INTERVAL '5' SECOND), COUNT(*) FROM trades GROUP BY symbol, SESSION(ts, INTERVAL '10' SECOND)",
        "SESSION_END",
        "SESSION_END",
    );
}
