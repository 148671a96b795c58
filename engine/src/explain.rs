//! `spillway explain`: the plan of a job, per shard.

use std::fmt::Write;

use crate::dimension::DimensionSetup;
use crate::job::{assign_partitions, PreparedJob};
use crate::plan::{AggFunc, JoinKind, JoinPlan, WindowKind, WindowSpec};
use crate::sql::explain_expr;

/// Renders the plan: operators per shard, partitions per core, what crosses cores.
pub fn explain(job: &PreparedJob, pin_cores: bool) -> String {
    let p = &job.pipeline;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "INSERT INTO {} (from {})",
        job.sink_table.name, job.source_table.name
    );
    let _ = writeln!(s, "source: {}", job.source.describe());
    let _ = writeln!(s, "sink:   {}", job.sink.describe());
    if let Some(g) = &job.group {
        let storage = match &g.storage {
            crate::group::plan::StateStorage::KafkaTopic(t) => {
                format!("checkpoints published to state topic '{t}'")
            }
            crate::group::plan::StateStorage::SharedDirectory => {
                "checkpoints on the shared directory".to_string()
            }
        };
        let _ = writeln!(
            s,
            "group mode: this process reads the source partitions group '{}' gives it and \
             sends rows by GROUP BY key to '{}'; it runs one job instance (one shard, state in \
             {}/partition-<r>, {storage}) per partition group '{}' gives it; the plan below is \
             an instance's",
            g.source.group_id,
            g.repartition_topic,
            g.checkpoint.dir.display(),
            g.aggregate_group_id()
        );
    }
    let _ = writeln!(
        s,
        "shards: {} (one glommio executor each{})",
        job.shards,
        if pin_cores {
            ", pinned"
        } else {
            ", not pinned"
        }
    );
    for shard in 0..job.shards {
        let parts = assign_partitions(&job.partitions, shard, job.shards);
        let core = job.cores[shard % job.cores.len()];
        let list: Vec<String> = parts
            .iter()
            .map(|p| format!("{}[{}]", p.topic, p.partition))
            .collect();
        let _ = writeln!(
            s,
            "  shard {shard} on core {core}: {}",
            if list.is_empty() {
                "no partitions".to_string()
            } else {
                list.join(", ")
            }
        );
    }
    let _ = writeln!(s, "operators on every shard:");
    let mut step = 1;
    let mut line = |s: &mut String, text: String| {
        let _ = writeln!(s, "  {step}. {text}");
        step += 1;
    };
    let cols: Vec<String> = job
        .source_table
        .columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.ty.sql_name()))
        .collect();
    line(
        &mut s,
        format!("decode JSON (simd-json) -> Arrow [{}]", cols.join(", ")),
    );
    let proctime = job
        .source_table
        .proctime_column()
        .filter(|_| crate::proctime::windows_on_proctime(p, &job.source_table));
    if let Some(c) = proctime {
        line(
            &mut s,
            format!(
                "watermark: processing time: the wall clock in {} ms steps, also when idle; \
                 windows over {} fire when every shard's clock passes their end",
                crate::proctime::PROCTIME_WATERMARK_STEP_MS,
                job.source_table.columns[c].name
            ),
        );
    } else if let Some(w) = job.source_table.watermark {
        line(
            &mut s,
            format!(
                "watermark per partition: max({}) - {} ms; shard = min over non-idle partitions (idle after {} ms)",
                job.source_table.columns[w.column].name,
                w.bound_ms,
                job.idle_timeout.as_millis()
            ),
        );
    }
    if let (Some(j), Some(d)) = (&p.join, &job.dimension) {
        line(&mut s, explain_join(j, d));
    }
    if let Some(f) = &p.filter {
        line(&mut s, format!("filter: {}", explain_expr(f)));
    }
    if let Some(a) = &p.aggregation {
        let keys: Vec<String> = a.group_keys.iter().map(explain_expr).collect();
        let aggs: Vec<String> = a
            .aggregates
            .iter()
            .map(|c| {
                let f = c.func.sql_name();
                let distinct = if c.func == AggFunc::CountDistinct {
                    "DISTINCT "
                } else {
                    ""
                };
                match &c.arg {
                    Some(e) => format!("{f}({distinct}{})", explain_expr(e)),
                    None => format!("{f}(*)"),
                }
            })
            .collect();
        let window = match &a.window {
            Some(w) => explain_window(w),
            None => "no window".into(),
        };
        if a.window.is_none() {
            line(
                &mut s,
                format!(
                    "updating aggregate (no window) by [{}]: {} (keyed totals on the key's owner shard; each merged batch emits a changed key again: -U old row, +U new row)",
                    keys.join(", "),
                    aggs.join(", ")
                ),
            );
        } else if crate::session::is_session(p) {
            for text in crate::session::explain_lines(&window, &keys, &aggs, job.shards) {
                line(&mut s, text);
            }
        } else {
            line(
                &mut s,
                format!(
                    "partial window aggregate ({window}) by [{}]: {} (each event updates one pane; state in a bumpalo arena per pane)",
                    keys.join(", "),
                    aggs.join(", ")
                ),
            );
            if job.shards > 1 {
                line(
                    &mut s,
                    format!(
                        "exchange: when the shard watermark passes a pane's end, its partial \
                         aggregates go to the shard owning each key (hash of the key mod {}), \
                         followed by the watermark, over bounded core-to-core queues",
                        job.shards
                    ),
                );
            }
            line(
                &mut s,
                "final aggregate: merge partial panes; once every shard's watermark has passed a window's end, the window is assembled from its panes and fires; a pane is freed after its last window"
                    .into(),
            );
        }
        if let Some(h) = &a.having {
            line(&mut s, format!("having: {}", explain_expr(h)));
        }
    }
    let proj: Vec<String> = p
        .projection
        .iter()
        .zip(p.output_schema.fields())
        .map(|(e, f)| format!("{} AS {}", explain_expr(e), f.name()))
        .collect();
    line(&mut s, format!("project: {}", proj.join(", ")));
    line(&mut s, format!("sink: {}", job.sink_table.name));
    s
}

/// The join with a dimension table: kind, key, version time, where each shard's copy comes
/// from and its limits.
pub fn explain_join(j: &JoinPlan, d: &DimensionSetup) -> String {
    let kind = match j.kind {
        JoinKind::Left => "LEFT JOIN",
        JoinKind::Inner => "JOIN",
    };
    let key: Vec<String> = d
        .table
        .primary_key
        .iter()
        .zip(&j.probe_keys)
        .map(|(&c, e)| {
            format!(
                "{}.{} = {}",
                j.qualifier,
                d.table.columns[c].name,
                explain_expr(e)
            )
        })
        .collect();
    let version = match j.version_time_column {
        Some(c) => format!(
            "temporal (FOR SYSTEM_TIME AS OF column {c}: the version valid at the event time; versions behind the shard watermark dropped)"
        ),
        None => "lookup of the latest version".to_string(),
    };
    format!(
        "{kind} dimension table '{}' AS {} ON {}: {version}; appends {} columns; every shard holds its own copy (hash index, no lock), caught up at start within {} ms, then updated every turn; limits {} rows, {} bytes; changelog: {}",
        d.table.name,
        j.qualifier,
        key.join(" AND "),
        d.table.columns.len(),
        d.options.startup_timeout_ms,
        d.options.limits.rows_max,
        d.options.limits.bytes_max,
        d.describe()
    )
}

/// The window of an aggregation: kind, lengths, offset and panes (`TUMBLE 1000 ms`,
/// `HOP size 10000 ms, slide 2000 ms; panes of 2000 ms, 5 per window`).
pub fn explain_window(w: &WindowSpec) -> String {
    let mut text = match w.kind {
        WindowKind::Tumble { size_ms } => format!("TUMBLE {size_ms} ms; one pane per window"),
        WindowKind::Hop { size_ms, slide_ms } => format!(
            "HOP size {size_ms} ms, slide {slide_ms} ms; panes of {slide_ms} ms, {} per window",
            size_ms / slide_ms
        ),
        WindowKind::Cumulate {
            step_ms,
            max_size_ms,
        } => format!(
            "CUMULATE max size {max_size_ms} ms, step {step_ms} ms; panes of {step_ms} ms, 1 to {} per window",
            max_size_ms / step_ms
        ),
        WindowKind::Session { gap_ms } => format!("SESSION gap {gap_ms} ms"),
    };
    if w.offset_ms != 0 {
        text.push_str(&format!("; offset {} ms", w.offset_ms));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_is_shown_with_its_key_kind_and_changelog() {
        let dir = tempfile::tempdir().expect("dir");
        let trades = dir.path().join("trades.jsonl");
        let securities = dir.path().join("securities.jsonl");
        std::fs::write(&trades, "").expect("trades");
        std::fs::write(&securities, "").expect("securities");
        let sql = format!(
            "CREATE TABLE trades (symbol STRING, price DOUBLE, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}');
             CREATE TABLE securities (instrument_id STRING, name STRING,
               PRIMARY KEY (instrument_id) NOT ENFORCED)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'dimension.rows-max' = '5000');
             SELECT t.symbol, s.name FROM trades t LEFT JOIN securities s ON t.symbol = s.instrument_id;",
            trades.display(),
            securities.display()
        );
        let program = crate::sql::parse_program(&sql).expect("plans");
        let opts = crate::job::JobOptions {
            shards: Some(1),
            pin_cores: false,
            ..Default::default()
        };
        let job = crate::job::prepare(&program, &opts).expect("prepares");
        let text = explain(&job, false);
        let line = text
            .lines()
            .find(|l| l.contains("LEFT JOIN dimension table 'securities' AS s"))
            .unwrap_or_else(|| panic!("no join line in:\n{text}"));
        assert!(line.contains("ON s.instrument_id = symbol"), "{line}");
        assert!(line.contains("lookup of the latest version"), "{line}");
        assert!(line.contains("limits 5000 rows"), "{line}");
        assert!(line.contains("securities.jsonl"), "{line}");
        let join_at = text.find("LEFT JOIN").unwrap_or(0);
        let decode_at = text.find("decode JSON").unwrap_or(usize::MAX);
        assert!(decode_at < join_at, "the join runs after decode:\n{text}");
    }

    fn spec(kind: WindowKind, offset_ms: i64) -> WindowSpec {
        WindowSpec {
            kind,
            time_column: 3,
            offset_ms,
        }
    }

    #[test]
    fn windows_name_kind_lengths_and_panes() {
        let tumble = explain_window(&spec(WindowKind::Tumble { size_ms: 1_000 }, 0));
        assert_eq!(tumble, "TUMBLE 1000 ms; one pane per window");
        let hop = WindowKind::Hop {
            size_ms: 10_000,
            slide_ms: 2_000,
        };
        assert_eq!(
            explain_window(&spec(hop, 500)),
            "HOP size 10000 ms, slide 2000 ms; panes of 2000 ms, 5 per window; offset 500 ms"
        );
        let cumulate = WindowKind::Cumulate {
            step_ms: 1_000,
            max_size_ms: 60_000,
        };
        assert_eq!(
            explain_window(&spec(cumulate, 0)),
            "CUMULATE max size 60000 ms, step 1000 ms; panes of 1000 ms, 1 to 60 per window"
        );
    }
}
