//! Oracle tests over a file source: several window sizes (250 ms, 1 s, 1 min), aggregate
//! mixes, WHERE, HAVING, arithmetic and CAST in the select list, several group keys and none,
//! both window syntaxes, on 1, 2 and 4 shards. The data (200k trades, 64 symbols, up to 200 ms
//! out of order, mixed time formats) is cut into 4 file splits, so every symbol's partial
//! aggregates come from several shards. The engine's rows must equal the oracle's.

use serde_json::{json, Value};
use spillway_tests::compare::assert_rows_match;
use spillway_tests::data::{standard_events, standard_trades, write_lines, STANDARD_BOUND_MS};
use spillway_tests::job::{file_sink_table, file_source_table, options, run_to_rows, Scratch};
use spillway_tests::oracle::{args, Agg, Key, Num, OracleOutput, OracleQuery};
use spillway_tests::trades_stats::trades_stats;

/// Writes the standard trades to a file and runs `query` (an INSERT INTO `out` ... FROM
/// `trades`) with a sink of `sink_columns` on `shards` shards; checks the report's counters
/// and compares the rows with `expected`.
fn check(
    query: &str,
    sink_columns: &str,
    shards: &[usize],
    expected: &OracleOutput,
    keys: &[&str],
) {
    let scratch = Scratch::new();
    let input = scratch.path("trades.jsonl");
    write_lines(&input, standard_trades()).expect("input written");
    for &n in shards {
        let output = scratch.path(&format!("out-{n}.jsonl"));
        let sql = format!(
            "{}{}{query}",
            file_source_table("trades", &input, STANDARD_BOUND_MS, ""),
            file_sink_table("out", sink_columns, &output)
        );
        let outcome = match run_to_rows(&sql, &options(n), &output) {
            Ok(o) => o,
            Err(e) => panic!("{n} shards: {e}"),
        };
        let r = &outcome.report;
        assert_eq!(r.shards.len(), n, "shards run");
        assert_eq!(
            r.records_in(),
            standard_trades().len() as u64,
            "{n} shards: records in"
        );
        assert_eq!(
            r.skipped_total(),
            0,
            "{n} shards: skipped {:?}",
            r.skipped()
        );
        assert_eq!(
            r.late_events(),
            0,
            "{n} shards: disorder within the bound is never late"
        );
        assert_eq!(
            r.rows_out(),
            outcome.rows.len() as u64,
            "{n} shards: rows_out counts the sink's rows"
        );
        assert_rows_match(&outcome.rows, &expected.rows, keys);
    }
}

fn symbol(e: &spillway_tests::oracle::Event) -> Vec<Key> {
    vec![args::str_key(e, "symbol")]
}

const STATS_COLUMNS: &str = "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), \
    trades BIGINT, volume BIGINT, avg_price DOUBLE, low DOUBLE, high DOUBLE";

#[test]
fn per_symbol_one_second_table_function_on_1_2_and_4_shards() {
    let expected = trades_stats(OracleQuery::tumble(1_000)).run(standard_events());
    assert!(
        expected.rows.len() > 5_000,
        "100 windows of about 64 symbols"
    );
    check(
        "INSERT INTO out
         SELECT symbol, window_start, window_end,
                COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         GROUP BY symbol, window_start, window_end;",
        STATS_COLUMNS,
        &[1, 2, 4],
        &expected,
        &["window_start", "symbol"],
    );
}

#[test]
fn group_window_form_250_ms_with_where_and_having() {
    let expected = OracleQuery::tumble(250)
        .filter(|e| e.i64("volume").is_some_and(|v| v >= 200) && e.str("symbol") != Some("SYM005"))
        .keys(symbol)
        .agg(Agg::count_star())
        .agg(Agg::sum_int(|e| e.i64("volume")))
        .agg(Agg::max(args::float("price")))
        .output(|g| {
            (g.agg_i64(0) >= 6 && g.agg_i64(1) > 3_000).then(|| {
                json!({
                    "symbol": g.key(0), "window_start": g.start(), "window_end": g.end(),
                    "trades": g.aggs[0], "volume": g.aggs[1], "high": g.aggs[2],
                })
            })
        })
        .run(standard_events());
    // HAVING must keep some groups and drop others, or it proves nothing.
    let all_groups = OracleQuery::tumble(250)
        .filter(|e| e.i64("volume").is_some_and(|v| v >= 200) && e.str("symbol") != Some("SYM005"))
        .keys(symbol)
        .run(standard_events());
    assert!(
        expected.rows.len() > 1_000 && expected.rows.len() * 10 < all_groups.rows.len() * 9,
        "HAVING keeps {} of {} groups",
        expected.rows.len(),
        all_groups.rows.len()
    );
    assert!(expected.rows.iter().all(|r| r["symbol"] != "SYM005"));
    check(
        "INSERT INTO out
         SELECT symbol,
                TUMBLE_START(ts, INTERVAL '250' MILLISECOND),
                TUMBLE_END(ts, INTERVAL '250' MILLISECOND),
                COUNT(*), SUM(volume), MAX(price)
         FROM trades
         WHERE volume >= 200 AND symbol <> 'SYM005'
         GROUP BY symbol, TUMBLE(ts, INTERVAL '250' MILLISECOND)
         HAVING COUNT(*) >= 6 AND SUM(volume) > 3000;",
        "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), \
         trades BIGINT, volume BIGINT, high DOUBLE",
        &[2],
        &expected,
        &["window_start", "symbol"],
    );
}

#[test]
fn both_window_forms_give_the_same_rows() {
    let expected = OracleQuery::tumble(1_000)
        .keys(symbol)
        .agg(Agg::count_star())
        .agg(Agg::sum_float(|e| e.f64("price")))
        .output(|g| {
            Some(json!({
                "symbol": g.key(0), "window_start": g.start(), "window_end": g.end(),
                "trades": g.aggs[0], "price_sum": g.aggs[1],
            }))
        })
        .run(standard_events());
    let columns = "symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), \
                   trades BIGINT, price_sum DOUBLE";
    let keys = ["window_start", "symbol"];
    check(
        "INSERT INTO out
         SELECT symbol, window_start, window_end, COUNT(*), SUM(price)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         GROUP BY symbol, window_start, window_end;",
        columns,
        &[2],
        &expected,
        &keys,
    );
    check(
        "INSERT INTO out
         SELECT symbol, TUMBLE_START(ts, INTERVAL '1' SECOND), TUMBLE_END(ts, INTERVAL '1' SECOND),
                COUNT(*), SUM(price)
         FROM trades
         GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), symbol;",
        columns,
        &[2],
        &expected,
        &keys,
    );
}

#[test]
fn one_minute_windows_without_a_group_key_on_4_shards() {
    let expected = OracleQuery::tumble(60_000)
        .agg(Agg::count_star())
        .agg(Agg::sum_int(|e| e.i64("volume")))
        .agg(Agg::sum_float(|e| Some(e.f64("price")? * e.f64("volume")?)))
        .agg(Agg::min(args::int("volume")))
        .agg(Agg::max(args::int("volume")))
        .output(|g| {
            Some(json!({
                "window_start": g.start(), "window_end": g.end(), "trades": g.aggs[0],
                "volume": g.aggs[1], "notional": g.aggs[2], "min_volume": g.aggs[3],
                "max_volume": g.aggs[4],
            }))
        })
        .run(standard_events());
    assert!(
        (2..=3).contains(&expected.rows.len()),
        "100 s of events: {:?}",
        expected.rows
    );
    check(
        "INSERT INTO out
         SELECT window_start, window_end, COUNT(*), SUM(volume), SUM(price * volume),
                MIN(volume), MAX(volume)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
         GROUP BY window_start, window_end;",
        "window_start TIMESTAMP(3), window_end TIMESTAMP(3), trades BIGINT, volume BIGINT, \
         notional DOUBLE, min_volume BIGINT, max_volume BIGINT",
        &[4],
        &expected,
        &["window_start"],
    );
}

#[test]
fn two_group_keys_arithmetic_and_cast_on_1_and_4_shards() {
    let expected = OracleQuery::tumble(1_000)
        .filter(|e| e.str("symbol") != Some("SYM003"))
        .keys(|e| {
            let bucket = e.i64("volume").map_or(Key::Null, |v| Key::Int(v % 3));
            vec![args::str_key(e, "symbol"), bucket]
        })
        .agg(Agg::count_star())
        .agg(Agg::sum_int(|e| e.i64("volume")))
        .agg(Agg::min(args::float("price")))
        .agg(Agg::max(args::float("price")))
        .agg(Agg::sum_float(|e| {
            Some(e.f64("price")? * e.i64("volume")? as f64)
        }))
        .output(|g| {
            let (count, volume) = (g.agg_i64(0), g.agg_i64(1));
            let (low, high, notional) = (g.agg_f64(2), g.agg_f64(3), g.agg_f64(4));
            Some(json!({
                "symbol": g.key(0), "bucket": g.key(1),
                "window_start": g.start(), "window_end": g.end(),
                "mean_volume": volume as f64 / count as f64,
                "spread": high - low,
                "high_int": high as i64,
                "vwap": notional / volume as f64,
                "odd": count * 2 + 1,
            }))
        })
        .run(standard_events());
    assert!(
        expected.rows.iter().any(|r| r["bucket"] == 0)
            && expected.rows.iter().any(|r| r["bucket"] == 2),
        "every volume % 3 bucket appears"
    );
    check(
        "INSERT INTO out
         SELECT symbol, volume % 3, window_start, window_end,
                CAST(SUM(volume) AS DOUBLE) / COUNT(*),
                MAX(price) - MIN(price),
                CAST(MAX(price) AS BIGINT),
                SUM(price * volume) / SUM(volume),
                COUNT(*) * 2 + 1
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         WHERE symbol <> 'SYM003'
         GROUP BY symbol, volume % 3, window_start, window_end;",
        "symbol STRING, bucket BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), \
         mean_volume DOUBLE, spread DOUBLE, high_int BIGINT, vwap DOUBLE, odd BIGINT",
        &[1, 4],
        &expected,
        &["window_start", "symbol", "bucket"],
    );
}

#[test]
fn pinned_shards_give_the_same_rows() {
    // More shards than this machine has cores, pinned round robin: still exact.
    let expected = OracleQuery::tumble(1_000)
        .keys(symbol)
        .agg(Agg::count(|e| e.f64("price").map(Num::Float)))
        .output(|g| {
            Some(json!({"symbol": g.key(0), "window_start": g.start(), "trades": g.aggs[0]}))
        })
        .run(standard_events());
    let scratch = Scratch::new();
    let input = scratch.path("trades.jsonl");
    write_lines(&input, standard_trades()).expect("input written");
    let output = scratch.path("out.jsonl");
    let sql = format!(
        "{}{}INSERT INTO out SELECT symbol, window_start, COUNT(price)
         FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         GROUP BY symbol, window_start, window_end;",
        file_source_table("trades", &input, STANDARD_BOUND_MS, ""),
        file_sink_table(
            "out",
            "symbol STRING, window_start TIMESTAMP(3), trades BIGINT",
            &output
        )
    );
    let shards = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
    let opts = spillway_engine::job::JobOptions {
        pin_cores: true,
        ..options(shards)
    };
    let outcome = run_to_rows(&sql, &opts, &output).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.report.shards.len(), shards);
    let rows: Vec<Value> = outcome.rows;
    assert_rows_match(&rows, &expected.rows, &["window_start", "symbol"]);
}
