//! Joins of two streams against independent batch computations: Nexmark q8 (a window
//! join of persons and auctions) and an interval join of generated orders and shipments.
//!
//! The expected rows are computed in plain Rust over the generated events (serde_json
//! values, nested loops and sets); nothing here uses the engine's code.

use std::collections::BTreeSet;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use spillway_engine::plan::Program;
use spillway_engine::sql::parse_program;

use crate::oracle::{format_time, tumble_window, Event};

/// The SQL of `examples/nexmark/q8.sql`.
pub const Q8_SQL: &str = include_str!("../../examples/nexmark/q8.sql");
/// The SQL of `examples/nexmark/q3.sql`.
pub const Q3_SQL: &str = include_str!("../../examples/nexmark/q3.sql");
/// q3's category and states.
pub const Q3_CATEGORY: i64 = 10;
pub const Q3_STATES: [&str; 3] = ["or", "id", "ca"];
/// q8's window, ms.
pub const Q8_WINDOW_MS: i64 = 10_000;

/// `parse_program(sql)` with `options` set (added or replaced) on each of the `sources`
/// tables, and the pipeline's sink pointed at a JSON-lines file `output`.
pub fn program_with_sources(
    sql: &str,
    sources: &[&str],
    options: &[(&str, String)],
    output: &Path,
) -> Result<Program, String> {
    let mut program = parse_program(sql).map_err(|e| format!("the SQL does not parse: {e}"))?;
    let sink = match program.pipelines.as_slice() {
        [p] => p.sink.clone(),
        other => return Err(format!("{} pipelines, expected one", other.len())),
    };
    for source in sources {
        if program.table(source).is_none() {
            return Err(format!("the SQL declares no table '{source}'"));
        }
    }
    for table in program.tables.values_mut() {
        if sources.iter().any(|s| table.name.eq_ignore_ascii_case(s)) {
            for (k, v) in options {
                table.options.insert((*k).to_string(), v.clone());
            }
        } else if table.name.eq_ignore_ascii_case(&sink) {
            table.options.clear();
            table
                .options
                .insert("connector".into(), "filesystem".into());
            table.options.insert("format".into(), "json".into());
            table
                .options
                .insert("path".into(), output.display().to_string());
        }
    }
    Ok(program)
}

fn int(e: &Event, name: &str) -> i64 {
    match e.i64(name) {
        Some(v) => v,
        None => panic!("oracle: event without integer '{name}': {:?}", e.fields),
    }
}

/// Nexmark q8 over `persons` and `auctions`: one row per (person, name, window) such that
/// the person registered in the window and sold at least one auction in it.
pub fn q8_expected(persons: &[Event], auctions: &[Event]) -> Vec<Value> {
    window_join_rows(persons, auctions, |ts| {
        vec![tumble_window(ts, Q8_WINDOW_MS, 0).0]
    })
}

/// q8 over HOP windows of `size_ms` sliding by `slide_ms` (size a multiple of slide).
pub fn q8_hop_expected(
    persons: &[Event],
    auctions: &[Event],
    size_ms: i64,
    slide_ms: i64,
) -> Vec<Value> {
    window_join_rows(persons, auctions, |ts| {
        let last = ts.div_euclid(slide_ms) * slide_ms;
        (0..size_ms / slide_ms)
            .map(|k| last - k * slide_ms)
            .collect()
    })
}

/// The (id, name, starttime) rows of persons and auction sellers meeting in a window;
/// `windows` gives the starts of the windows holding an event time.
fn window_join_rows(
    persons: &[Event],
    auctions: &[Event],
    windows: impl Fn(i64) -> Vec<i64>,
) -> Vec<Value> {
    let mut sellers: BTreeSet<(i64, i64)> = BTreeSet::new();
    for a in auctions {
        for start in windows(a.ts_ms) {
            sellers.insert((start, int(a, "seller")));
        }
    }
    let mut people: BTreeSet<(i64, i64, String)> = BTreeSet::new();
    for p in persons {
        let name = p.str("name").unwrap_or_default().to_string();
        for start in windows(p.ts_ms) {
            people.insert((start, int(p, "id"), name.clone()));
        }
    }
    people
        .into_iter()
        .filter(|(start, id, _)| sellers.contains(&(*start, *id)))
        .map(|(start, id, name)| json!({"id": id, "name": name, "starttime": format_time(start)}))
        .collect()
}

/// Nexmark q3 over `persons` and `auctions`: one row per auction of category 10 whose
/// seller lives in one of the states.
pub fn q3_expected(persons: &[Event], auctions: &[Event]) -> Vec<Value> {
    let mut out = Vec::new();
    for a in auctions
        .iter()
        .filter(|a| int(a, "category") == Q3_CATEGORY)
    {
        for p in persons {
            let state = p.str("state").unwrap_or_default();
            if int(p, "id") == int(a, "seller") && Q3_STATES.contains(&state) {
                out.push(json!({
                    "name": p.fields.get("name"), "city": p.fields.get("city"),
                    "state": state, "id": int(a, "id"),
                }));
            }
        }
    }
    out
}

/// An order or a shipment of the interval-join test.
#[derive(Debug, Clone)]
pub struct Shipping {
    /// order_id or shipment_id.
    pub id: i64,
    pub order: i64,
    pub ts_ms: i64,
}

/// Generated orders and shipments: `orders` orders one every `step_ms`, each shipped 0, 1
/// or 2 times between `-1 s` and `+8 s` of the order (some outside the join's bounds);
/// returned in time order (the caller adds disorder).
pub fn orders_and_shipments(
    seed: u64,
    orders: usize,
    step_ms: i64,
) -> (Vec<Shipping>, Vec<Shipping>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let base = 1_700_000_000_000i64;
    let mut o = Vec::with_capacity(orders);
    let mut s = Vec::new();
    for i in 0..orders as i64 {
        let ts = base + i * step_ms + rng.random_range(0..step_ms.max(1));
        // Order ids repeat now and then, so a key meets several partners.
        let order = if i % 10 == 9 { i - 5 } else { i };
        o.push(Shipping {
            id: i,
            order,
            ts_ms: ts,
        });
        for _ in 0..rng.random_range(0..3) {
            let id = s.len() as i64;
            s.push(Shipping {
                id,
                order,
                ts_ms: ts + rng.random_range(-1_000..8_000),
            });
        }
    }
    o.sort_by_key(|r| (r.ts_ms, r.id));
    s.sort_by_key(|r| (r.ts_ms, r.id));
    (o, s)
}

/// The interval join `o.order_id = s.order_id AND s.ts BETWEEN o.ts AND o.ts + upper_ms`:
/// one row per matching pair.
pub fn interval_expected(orders: &[Shipping], shipments: &[Shipping], upper_ms: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for o in orders {
        for s in shipments {
            if o.order == s.order && s.ts_ms >= o.ts_ms && s.ts_ms <= o.ts_ms + upper_ms {
                out.push(json!({
                    "order_id": o.id, "shipment_id": s.id, "order_key": o.order,
                    "order_ts": format_time(o.ts_ms), "ship_ts": format_time(s.ts_ms),
                }));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn event(fields: Value, ts_ms: i64) -> Event {
        let Value::Object(fields) = fields else {
            panic!("an object")
        };
        Event {
            fields: fields as Map<String, Value>,
            ts_ms,
        }
    }

    #[test]
    fn q8_oracle_keeps_persons_selling_in_their_window_once() {
        let persons = [
            event(json!({"id": 1, "name": "ann"}), 1_000),
            event(json!({"id": 2, "name": "bob"}), 2_000),
        ];
        let auctions = [
            event(json!({"seller": 1}), 3_000),
            event(json!({"seller": 1}), 4_000),
            event(json!({"seller": 2}), 12_000),
        ];
        let rows = q8_expected(&persons, &auctions);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["id"], json!(1));
    }

    #[test]
    fn interval_oracle_respects_both_bounds() {
        let o = [Shipping {
            id: 0,
            order: 5,
            ts_ms: 1_000,
        }];
        let s = [
            Shipping {
                id: 0,
                order: 5,
                ts_ms: 999,
            },
            Shipping {
                id: 1,
                order: 5,
                ts_ms: 1_000,
            },
            Shipping {
                id: 2,
                order: 5,
                ts_ms: 6_000,
            },
            Shipping {
                id: 3,
                order: 5,
                ts_ms: 6_001,
            },
            Shipping {
                id: 4,
                order: 6,
                ts_ms: 2_000,
            },
        ];
        let rows = interval_expected(&o, &s, 5_000);
        let ids: Vec<i64> = rows
            .iter()
            .filter_map(|r| r["shipment_id"].as_i64())
            .collect();
        assert_eq!(ids, vec![1, 2]);
        let (orders, shipments) = orders_and_shipments(7, 100, 50);
        assert_eq!(orders.len(), 100);
        assert!(shipments.len() > 50);
        assert!(!interval_expected(&orders, &shipments, 5_000).is_empty());
    }
}
