//! A deterministic generator of trade events, for demos, benchmarks and tests.
//!
//! Event `i` has the nominal time `start_ts_ms + i * 1000 / events_per_second` and is
//! delivered with `ts = nominal - uniform(0..=disorder_ms)`, so every event is at most
//! `disorder_ms` older than any event delivered before it (a watermark bound of
//! `disorder_ms` makes nothing late). With `late_every = Some(n)`, every n-th event instead
//! gets `ts = nominal - LATE_EVENT_LAG_MS`, far enough in the past to be late.
//!
//! The same config always gives the same sequence (rand's `SmallRng` seeded from `seed`, on
//! one platform and rand version).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// How far in the past a late event (`late_every`) is put: one hour before its nominal time.
pub const LATE_EVENT_LAG_MS: i64 = 3_600_000;
/// Lowest price of a symbol, in cents (the random walk never goes below).
pub const PRICE_CENTS_MIN: i64 = 100;
/// Largest accepted number of symbols (their names and prices are kept in memory).
pub const SYMBOLS_MAX: usize = 1_000_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeGenConfig {
    /// Seed of the random sequence.
    pub seed: u64,
    /// Number of symbols, named `SYM000`, `SYM001`, ... (at least 1, at most [`SYMBOLS_MAX`]).
    pub symbols: usize,
    /// Nominal event time of the first event (epoch ms).
    pub start_ts_ms: i64,
    /// Event-time spacing: nominal events per second of event time (at least 1).
    pub events_per_second: u64,
    /// Events are delivered up to this many ms out of order.
    pub disorder_ms: u64,
    /// Every n-th event (n >= 1) is late: its time is [`LATE_EVENT_LAG_MS`] in the past.
    pub late_every: Option<u64>,
}

impl Default for TradeGenConfig {
    fn default() -> Self {
        TradeGenConfig {
            seed: 42,
            symbols: 64,
            start_ts_ms: 1_700_000_000_000,
            events_per_second: 10_000,
            disorder_ms: 0,
            late_every: None,
        }
    }
}

/// One trade.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trade {
    /// Index of the symbol (`SYM{symbol:03}`).
    pub symbol: u32,
    /// Price with cents precision, positive.
    pub price: f64,
    /// Number of shares, 1..=1000.
    pub volume: i64,
    /// Event time (epoch ms).
    pub ts_ms: i64,
}

/// Generates trades; see the module documentation.
pub struct TradeGenerator {
    cfg: TradeGenConfig,
    rng: SmallRng,
    /// Current price of each symbol, in cents.
    prices_cents: Vec<i64>,
    /// `"SYM007"` etc. with the JSON quotes, per symbol.
    symbol_json: Vec<Vec<u8>>,
    /// Index of the next event.
    index: u64,
}

impl TradeGenerator {
    /// A generator for `cfg`. Out-of-range values are clamped: `symbols` to
    /// `1..=SYMBOLS_MAX`, `events_per_second` to at least 1, `late_every` to at least 1.
    pub fn new(mut cfg: TradeGenConfig) -> Self {
        cfg.symbols = cfg.symbols.clamp(1, SYMBOLS_MAX);
        cfg.events_per_second = cfg.events_per_second.max(1);
        cfg.late_every = cfg.late_every.map(|n| n.max(1));
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let prices_cents = (0..cfg.symbols)
            .map(|_| rng.random_range(1_000..=50_000))
            .collect();
        let symbol_json = (0..cfg.symbols)
            .map(|s| format!("\"{}\"", symbol_name(s as u32)).into_bytes())
            .collect();
        TradeGenerator {
            cfg,
            rng,
            prices_cents,
            symbol_json,
            index: 0,
        }
    }

    /// The config in use (after clamping).
    pub fn config(&self) -> &TradeGenConfig {
        &self.cfg
    }

    /// How many events were generated so far (the index of the next one).
    pub fn generated(&self) -> u64 {
        self.index
    }

    /// Nominal event time of event `index`.
    pub fn nominal_ts_ms(&self, index: u64) -> i64 {
        let offset_ms = (index as i128 * 1000) / self.cfg.events_per_second as i128;
        (self.cfg.start_ts_ms as i128 + offset_ms).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// The next trade.
    // `%` rather than `is_multiple_of`, which needs Rust 1.87 (the workspace says 1.85).
    #[allow(clippy::should_implement_trait, clippy::manual_is_multiple_of)]
    pub fn next(&mut self) -> Trade {
        let index = self.index;
        self.index += 1;
        let nominal = self.nominal_ts_ms(index);
        let symbol = self.rng.random_range(0..self.cfg.symbols);
        let price = &mut self.prices_cents[symbol];
        // A random walk of at most 0.2% per trade, at least one cent.
        let step_max = (*price / 500).max(1);
        *price = (*price + self.rng.random_range(-step_max..=step_max)).max(PRICE_CENTS_MIN);
        let price_cents = *price;
        let volume = self.rng.random_range(1..=1000);
        let jitter = self.rng.random_range(0..=self.cfg.disorder_ms);
        let late = self.cfg.late_every.is_some_and(|n| (index + 1) % n == 0);
        let ts_ms = if late {
            nominal.saturating_sub(LATE_EVENT_LAG_MS)
        } else {
            nominal.saturating_sub(jitter.min(i64::MAX as u64) as i64)
        };
        Trade {
            symbol: symbol as u32,
            price: price_cents as f64 / 100.0,
            volume,
            ts_ms,
        }
    }

    /// Appends `trade` as one JSON object without a newline:
    /// `{"symbol":"SYM007","price":187.25,"volume":300,"ts":1700000000123}`.
    pub fn write_json(&self, trade: &Trade, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"symbol\":");
        match self.symbol_json.get(trade.symbol as usize) {
            Some(name) => out.extend_from_slice(name),
            None => {
                out.push(b'"');
                out.extend_from_slice(symbol_name(trade.symbol).as_bytes());
                out.push(b'"');
            }
        }
        write_trade_fields(trade, out);
    }
}

/// The name of symbol `symbol`: `SYM000`, `SYM001`, ..., `SYM999`, `SYM1000`, ...
pub fn symbol_name(symbol: u32) -> String {
    format!("SYM{symbol:03}")
}

/// Appends `trade` as one JSON object without a newline (as [`TradeGenerator::write_json`]).
pub fn write_json(trade: &Trade, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"symbol\":\"");
    out.extend_from_slice(symbol_name(trade.symbol).as_bytes());
    out.push(b'"');
    write_trade_fields(trade, out);
}

/// `,"price":..,"volume":..,"ts":..}`
fn write_trade_fields(trade: &Trade, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"price\":");
    let cents = (trade.price * 100.0).round() as i64;
    if cents < 0 {
        out.push(b'-');
    }
    let cents = cents.unsigned_abs();
    write_u64(cents / 100, out);
    out.push(b'.');
    out.push(b'0' + (cents % 100 / 10) as u8);
    out.push(b'0' + (cents % 10) as u8);
    out.extend_from_slice(b",\"volume\":");
    write_i64(trade.volume, out);
    out.extend_from_slice(b",\"ts\":");
    write_i64(trade.ts_ms, out);
    out.push(b'}');
}

fn write_i64(value: i64, out: &mut Vec<u8>) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(value.unsigned_abs(), out);
}

fn write_u64(mut value: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(seed: u64, disorder_ms: u64) -> TradeGenConfig {
        TradeGenConfig {
            seed,
            disorder_ms,
            ..TradeGenConfig::default()
        }
    }

    #[test]
    fn same_seed_same_trades_other_seed_other_trades() {
        let mut a = TradeGenerator::new(cfg(7, 100));
        let mut b = TradeGenerator::new(cfg(7, 100));
        let mut c = TradeGenerator::new(cfg(8, 100));
        let ta: Vec<Trade> = (0..1000).map(|_| a.next()).collect();
        let tb: Vec<Trade> = (0..1000).map(|_| b.next()).collect();
        let tc: Vec<Trade> = (0..1000).map(|_| c.next()).collect();
        assert_eq!(ta, tb);
        assert_ne!(ta, tc);
    }

    #[test]
    fn json_has_the_documented_form() {
        let gen = TradeGenerator::new(TradeGenConfig::default());
        let trade = Trade {
            symbol: 7,
            price: 187.25,
            volume: 300,
            ts_ms: 1_700_000_000_123,
        };
        let mut out = Vec::new();
        gen.write_json(&trade, &mut out);
        let expected = r#"{"symbol":"SYM007","price":187.25,"volume":300,"ts":1700000000123}"#;
        assert_eq!(String::from_utf8(out).expect("utf8"), expected);
        let mut free = Vec::new();
        write_json(
            &Trade {
                price: 3.5,
                ..trade
            },
            &mut free,
        );
        assert_eq!(
            String::from_utf8(free).expect("utf8"),
            r#"{"symbol":"SYM007","price":3.50,"volume":300,"ts":1700000000123}"#
        );
    }

    #[test]
    fn values_stay_in_range_and_symbols_all_appear() {
        let mut gen = TradeGenerator::new(cfg(1, 0));
        let mut seen = [false; 64];
        for _ in 0..20_000 {
            let t = gen.next();
            assert!(t.price >= PRICE_CENTS_MIN as f64 / 100.0, "{t:?}");
            assert_eq!((t.price * 100.0).round() / 100.0, t.price, "cents: {t:?}");
            assert!((1..=1000).contains(&t.volume), "{t:?}");
            seen[t.symbol as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn late_every_puts_every_nth_event_far_back() {
        let mut gen = TradeGenerator::new(TradeGenConfig {
            late_every: Some(10),
            ..cfg(3, 50)
        });
        for i in 0..100u64 {
            let nominal = gen.nominal_ts_ms(i);
            let t = gen.next();
            if (i + 1) % 10 == 0 {
                assert_eq!(t.ts_ms, nominal - LATE_EVENT_LAG_MS);
            } else {
                assert!(t.ts_ms >= nominal - 50 && t.ts_ms <= nominal);
            }
        }
    }

    proptest! {
        #[test]
        fn disorder_is_bounded(seed in any::<u64>(), disorder_ms in 0u64..5_000,
                               events_per_second in 1u64..100_000) {
            let mut gen = TradeGenerator::new(TradeGenConfig {
                events_per_second,
                ..cfg(seed, disorder_ms)
            });
            let mut ts_max = i64::MIN;
            for i in 0..2_000u64 {
                let nominal = gen.nominal_ts_ms(i);
                let t = gen.next();
                prop_assert!(t.ts_ms <= nominal && t.ts_ms >= nominal - disorder_ms as i64);
                // Never more than disorder_ms older than anything delivered before.
                prop_assert!(t.ts_ms >= ts_max.saturating_sub(disorder_ms as i64));
                ts_max = ts_max.max(t.ts_ms);
            }
        }
    }
}
