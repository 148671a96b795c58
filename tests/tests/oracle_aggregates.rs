//! Oracle tests of COUNT(DISTINCT), FIRST_VALUE / LAST_VALUE, STDDEV / VAR,
//! APPROX_COUNT_DISTINCT and FILTER over the standard trades (200k, 64 symbols, up to 200 ms
//! out of order, cut into 4 file splits so every symbol's partials come from several shards),
//! on 1 and 2 shards, in both window forms, with HAVING and inside expressions. The engine's
//! rows must equal the oracle's (floats within the comparison's tolerance); the HyperLogLog
//! estimates must be unbiased and within 3 % of the exact count on average (each within 5 %,
//! three standard errors).

use serde_json::{json, Value};
use spillway_tests::compare::assert_rows_match;
use spillway_tests::data::{standard_events, standard_trades, write_lines, STANDARD_BOUND_MS};
use spillway_tests::job::{file_sink_table, file_source_table, options, run_to_rows, Scratch};
use spillway_tests::oracle::{args, Agg, Event, Key, OracleOutput, OracleQuery, Scalar};

/// Runs `query` over the standard trades on each of `shards` and returns the rows per run.
fn run(query: &str, sink_columns: &str, shards: &[usize]) -> Vec<Vec<Value>> {
    let scratch = Scratch::new();
    let input = scratch.path("trades.jsonl");
    write_lines(&input, standard_trades()).expect("input written");
    shards
        .iter()
        .map(|&n| {
            let output = scratch.path(&format!("out-{n}.jsonl"));
            let sql = format!(
                "{}{}{query}",
                file_source_table("trades", &input, STANDARD_BOUND_MS, ""),
                file_sink_table("out", sink_columns, &output)
            );
            let outcome = run_to_rows(&sql, &options(n), &output)
                .unwrap_or_else(|e| panic!("{n} shards: {e}"));
            let r = &outcome.report;
            assert_eq!(r.shards.len(), n, "shards run");
            assert_eq!(
                r.records_in(),
                standard_trades().len() as u64,
                "{n} shards: records in"
            );
            assert_eq!(r.late_events(), 0, "{n} shards: nothing is late");
            outcome.rows
        })
        .collect()
}

fn check(query: &str, sink_columns: &str, expected: &OracleOutput, keys: &[&str]) {
    for rows in run(query, sink_columns, &[1, 2]) {
        assert_rows_match(&rows, &expected.rows, keys);
    }
}

fn symbol(e: &Event) -> Vec<Key> {
    vec![args::str_key(e, "symbol")]
}

fn price(e: &Event) -> Option<Scalar> {
    e.f64("price").map(Scalar::Float)
}

fn volume(e: &Event) -> Option<Scalar> {
    e.i64("volume").map(Scalar::Int)
}

#[test]
fn distinct_first_last_and_moments_per_symbol() {
    let expected = OracleQuery::tumble(1_000)
        .keys(symbol)
        .agg(Agg::count_distinct(volume))
        .agg(Agg::first_value(price))
        .agg(Agg::last_value(price))
        .agg(Agg::first_value(volume))
        .agg(Agg::stddev_pop(|e| e.f64("price")))
        .agg(Agg::stddev_samp(|e| e.f64("price")))
        .agg(Agg::var_pop(|e| e.i64("volume").map(|v| v as f64)))
        .agg(Agg::var_samp(|e| e.i64("volume").map(|v| v as f64)))
        .output(|g| {
            Some(json!({
                "symbol": g.key(0), "window_start": g.start(), "window_end": g.end(),
                "volumes": g.aggs[0], "open": g.aggs[1], "close": g.aggs[2],
                "first_volume": g.aggs[3], "sd_pop": g.aggs[4], "sd_samp": g.aggs[5],
                "var_pop": g.aggs[6], "var_samp": g.aggs[7],
            }))
        })
        .run(standard_events());
    assert!(
        expected.rows.len() > 5_000,
        "100 windows of about 64 symbols"
    );
    assert!(
        expected.rows.iter().any(|r| r["sd_samp"].is_null()),
        "some windows have one trade of a symbol: STDDEV_SAMP is NULL there"
    );
    check(
        "INSERT INTO out
         SELECT symbol, window_start, window_end, COUNT(DISTINCT volume), FIRST_VALUE(price),
                LAST_VALUE(price), FIRST_VALUE(volume), STDDEV_POP(price), STDDEV_SAMP(price),
                VAR_POP(volume), VAR_SAMP(volume)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         GROUP BY symbol, window_start, window_end;",
        "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), volumes BIGINT, \
         open DOUBLE, close DOUBLE, first_volume BIGINT, sd_pop DOUBLE, sd_samp DOUBLE, \
         var_pop DOUBLE, var_samp DOUBLE",
        &expected,
        &["window_start", "symbol"],
    );
}

#[test]
fn filter_having_and_expressions_in_the_group_window_form() {
    let expected = OracleQuery::tumble(2_000)
        .keys(symbol)
        .agg(Agg::count_star().filter(|e| e.f64("price").is_some_and(|p| p > 100.0)))
        .agg(
            Agg::sum_int(|e| e.i64("volume")).filter(|e| e.i64("volume").is_some_and(|v| v >= 500)),
        )
        .agg(
            Agg::count_distinct(|e| e.str("symbol").map(|s| Scalar::Str(s.to_string())))
                .filter(|e| e.i64("volume").is_some_and(|v| v % 2 == 0)),
        )
        .agg(Agg::last_value(volume).filter(|e| e.f64("price").is_some_and(|p| p < 100.0)))
        .agg(Agg::stddev_pop(|e| e.f64("price")))
        .agg(Agg::count_star())
        .output(|g| {
            (g.agg_i64(5) > 40).then(|| {
                let spread = g.aggs[4].as_f64().map(|s| s * 2.0);
                json!({
                    "symbol": g.key(0), "window_start": g.start(), "window_end": g.end(),
                    "rich": g.aggs[0], "big_volume": g.aggs[1], "even": g.aggs[2],
                    "last_cheap": g.aggs[3], "spread": spread,
                })
            })
        })
        .run(standard_events());
    assert!(expected.rows.len() > 1_000, "rows: {}", expected.rows.len());
    assert!(
        expected.rows.iter().any(|r| r["last_cheap"].is_null())
            || expected.rows.iter().any(|r| r["big_volume"].is_null()),
        "a FILTER that refuses every row of a group gives NULL"
    );
    check(
        "INSERT INTO out
         SELECT symbol, TUMBLE_START(ts, INTERVAL '2' SECOND), TUMBLE_END(ts, INTERVAL '2' SECOND),
                COUNT(*) FILTER (WHERE price > 100),
                SUM(volume) FILTER (WHERE volume >= 500),
                COUNT(DISTINCT symbol) FILTER (WHERE volume % 2 = 0),
                LAST_VALUE(volume) FILTER (WHERE price < 100),
                STDDEV_POP(price) * 2
         FROM trades
         GROUP BY symbol, TUMBLE(ts, INTERVAL '2' SECOND)
         HAVING COUNT(*) > 40;",
        "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), rich BIGINT, \
         big_volume BIGINT, even BIGINT, last_cheap BIGINT, spread DOUBLE",
        &expected,
        &["window_start", "symbol"],
    );
}

#[test]
fn approx_count_distinct_is_within_three_percent() {
    // No group keys: every shard holds a partial sketch of each 10 s window.
    let exact = OracleQuery::tumble(10_000)
        .agg(Agg::count_distinct(price))
        .agg(Agg::count_distinct(|e| {
            Some(Scalar::Float(
                e.f64("price")? * 1000.0 + e.i64("volume")? as f64,
            ))
        }))
        .output(|g| {
            Some(json!({"window_start": g.start(), "prices": g.aggs[0], "pairs": g.aggs[1]}))
        })
        .run(standard_events());
    assert!(
        exact.rows.len() >= 10,
        "100 s of event time: {}",
        exact.rows.len()
    );
    let query = "INSERT INTO out
         SELECT window_start, COUNT(DISTINCT price), APPROX_COUNT_DISTINCT(price),
                APPROX_COUNT_DISTINCT(price * 1000 + volume),
                APPROX_COUNT_DISTINCT(CAST(price AS STRING)), COUNT(DISTINCT CAST(price AS STRING))
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end;";
    let columns =
        "window_start TIMESTAMP(3), prices BIGINT, approx_prices BIGINT, approx_pairs BIGINT, \
        approx_texts BIGINT, texts BIGINT";
    let runs = run(query, columns, &[1, 2]);
    let sorted = |rows: &[Value]| {
        let mut r = rows.to_vec();
        r.sort_by_key(|v| v["window_start"].to_string());
        r
    };
    assert_eq!(
        sorted(&runs[0]),
        sorted(&runs[1]),
        "merged sketches are the sketch of the union: 1 and 2 shards estimate the same"
    );
    for rows in runs {
        assert_eq!(rows.len(), exact.rows.len());
        let mut measured = 0;
        let mut errors = Vec::new();
        for want in &exact.rows {
            let got = rows
                .iter()
                .find(|r| r["window_start"] == want["window_start"])
                .unwrap_or_else(|| panic!("no row for {want}"));
            assert_eq!(got["prices"], want["prices"], "COUNT(DISTINCT) is exact");
            assert_eq!(got["texts"], want["prices"], "one string per price");
            if want["pairs"].as_i64().unwrap_or(0) < 1_000 {
                continue; // a window cut by the data's first or last second
            }
            measured += 1;
            for (approx, exact_field) in [
                ("approx_prices", "prices"),
                ("approx_pairs", "pairs"),
                ("approx_texts", "prices"),
            ] {
                let (a, e) = (
                    got[approx].as_f64().expect("an estimate"),
                    want[exact_field].as_f64().expect("a count"),
                );
                assert!(e > 1_000.0, "enough distinct values to measure: {e}");
                let err = (a - e) / e;
                errors.push(err);
                // 3 standard errors: 30 estimates at 1.6 % would cross 3 % now and then.
                assert!(
                    err.abs() < 0.05,
                    "{approx}: estimate {a}, exact {e}, error {err:.4}"
                );
            }
        }
        assert!(measured >= 9, "full windows measured: {measured}");
        // About 1.6 % standard error per estimate: no bias, and within 3 % on average.
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let mean_abs = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len() as f64;
        assert!(
            mean.abs() < 0.01,
            "biased estimates: mean error {mean:.4} over {errors:?}"
        );
        assert!(
            mean_abs < 0.03,
            "mean absolute error {mean_abs:.4} over {errors:?}"
        );
    }
}

#[test]
fn distinct_sets_count_against_state_bytes_max() {
    let scratch = Scratch::new();
    let input = scratch.path("trades.jsonl");
    write_lines(&input, standard_trades()).expect("input written");
    let limits = spillway_engine::limits::Limits {
        state_bytes_max: 1 << 20,
        ..Default::default()
    };
    let opts = spillway_engine::job::JobOptions {
        limits,
        ..options(1)
    };
    let sql = |agg: &str, out: &std::path::Path| {
        format!(
            "{}{}INSERT INTO out SELECT window_start, {agg}
             FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '100' SECOND))
             GROUP BY window_start, window_end;",
            file_source_table("trades", &input, STANDARD_BOUND_MS, ""),
            file_sink_table("out", "window_start TIMESTAMP(3), n BIGINT", out)
        )
    };
    // Two windows of a count fit in 1 MiB (the smallest limit); a set of about 100k
    // (price, volume) pairs (16 bytes each) does not.
    let out = scratch.path("count.jsonl");
    let rows = run_to_rows(&sql("COUNT(*)", &out), &opts, &out).expect("COUNT(*) fits");
    assert!(!rows.rows.is_empty());
    let out = scratch.path("distinct.jsonl");
    match run_to_rows(
        &sql("COUNT(DISTINCT price * 1000 + volume)", &out),
        &opts,
        &out,
    ) {
        Ok(o) => panic!("the distinct set fit in 1 MiB: {:?}", o.rows),
        Err(e) => assert!(e.contains("state_bytes_max"), "{e}"),
    }
}

#[test]
fn side_state_merges_across_hop_panes() {
    // HOP windows are assembled from panes with the accumulators' merge: every new
    // aggregate's state must merge exactly (moments within the float tolerance).
    let expected = OracleQuery::hop(2_000, 500)
        .keys(symbol)
        .agg(Agg::count_distinct(volume))
        .agg(Agg::first_value(price))
        .agg(Agg::last_value(|e| {
            e.str("symbol").map(|s| Scalar::Str(s.to_string()))
        }))
        .agg(Agg::var_samp(|e| e.f64("price")))
        .agg(Agg::count_star().filter(|e| e.i64("volume").is_some_and(|v| v > 500)))
        .output(|g| {
            Some(json!({
                "symbol": g.key(0), "window_start": g.start(), "window_end": g.end(),
                "volumes": g.aggs[0], "open": g.aggs[1], "last_sym": g.aggs[2],
                "var_samp": g.aggs[3], "big": g.aggs[4],
            }))
        })
        .run(standard_events());
    assert!(
        expected.rows.len() > 10_000,
        "about 200 windows of 64 symbols: {}",
        expected.rows.len()
    );
    check(
        "INSERT INTO out
         SELECT symbol, window_start, window_end, COUNT(DISTINCT volume), FIRST_VALUE(price),
                LAST_VALUE(symbol), VAR_SAMP(price), COUNT(*) FILTER (WHERE volume > 500)
         FROM TABLE(HOP(TABLE trades, DESCRIPTOR(ts), INTERVAL '500' MILLISECOND,
                        INTERVAL '2' SECOND))
         GROUP BY symbol, window_start, window_end;",
        "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), volumes BIGINT, \
         open DOUBLE, last_sym STRING, var_samp DOUBLE, big BIGINT",
        &expected,
        &["window_start", "symbol"],
    );
}
