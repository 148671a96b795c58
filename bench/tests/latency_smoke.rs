//! Smoke mode of `spillway-bench latency`: 2-second runs at a low rate through the embedded
//! Kafka. Each run checks every result against the events sent before it reports; these
//! tests assert it did, and that the JSON report and the SVG plot hold what they should.

use std::time::Duration;

use spillway_bench::latency::{run_latency, LatencyOptions, LatencyQuery};
use spillway_bench::plot_svg::latency_svg;

const RATE: u64 = 2_000;

fn options(query: LatencyQuery) -> LatencyOptions {
    let mut o = LatencyOptions::new(RATE, Duration::from_secs(2), 1);
    o.query = query;
    o.warmup = Duration::ZERO;
    o
}

#[test]
fn trades_query_run_is_checked_and_reported() {
    let report = run_latency(&options(LatencyQuery::Trades)).expect("checked latency run");
    assert_eq!(report.events_sent, RATE * 2);
    assert!(report.windows_checked >= 1, "2 s of events close a window");
    assert!(report.rows_checked >= report.windows_checked);
    let json = report.json();
    for key in [
        "query",
        "rate_per_partition",
        "events_sent",
        "latency",
        "timeline",
        "stages",
        "check",
    ] {
        assert!(json.get(key).is_some(), "JSON report lacks '{key}': {json}");
    }
    let head = &json["latency"]["watermark_to_result"];
    for key in [
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p99_9_ms",
        "p99_99_ms",
        "max_ms",
    ] {
        assert!(head[key].as_f64().is_some(), "no {key}: {head}");
    }
    assert!(head["p50_ms"].as_f64() <= head["max_ms"].as_f64());
    assert_eq!(head["count"], report.rows_checked);
    assert!(json["latency"]["last_event_to_result"]["p50_ms"].as_f64() > Some(500.0));
    assert_eq!(json["check"]["passed"], true);

    let dir = tempfile::tempdir().expect("temp dir");
    let svg_path = dir.path().join("latency.svg");
    std::fs::write(&svg_path, latency_svg(&report)).expect("write svg");
    let svg = std::fs::read_to_string(&svg_path).expect("read svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("<polyline"), "the plot draws lines");
    assert!(svg.contains("watermark_to_result"));
}

#[test]
fn filter_query_run_checks_every_row() {
    let report = run_latency(&options(LatencyQuery::Filter)).expect("checked latency run");
    assert_eq!(report.events_sent, RATE * 2);
    let head = &report.series[0];
    assert_eq!(head.name, "produce_to_output");
    // About half the events have a volume above 500; every one of them was checked.
    assert_eq!(head.stats.count, report.rows_checked);
    assert!(report.rows_checked > RATE / 2 && report.rows_checked < RATE * 3 / 2);
    assert!(head.stats.p50_ms > 0.0 && head.stats.p50_ms <= head.stats.max_ms);
    assert!(!report.timeline.is_empty());
}
