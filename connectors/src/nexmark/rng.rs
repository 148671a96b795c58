//! The random numbers of one Nexmark event: SplitMix64 started at a hash of the stream's
//! seed and the event number.
//!
//! Like the reference generator, which seeds a fresh `Random` with each event's id, every
//! event has its own random sequence, so any event of the stream can be generated without
//! the ones before it (a partition starts or resumes anywhere at no cost) and the stream
//! is the same on every platform and with every `rand` version.

/// SplitMix64's increment (the golden ratio in 64 bits).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
/// Letters an alphabet draw maps a random byte onto.
const LETTERS: u32 = 26;
/// Decades a price spans.
const PRICE_DECADES: f64 = 6.0;

/// SplitMix64's output function: a bijective scramble of 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random sequence of one event.
#[derive(Debug, Clone)]
pub struct EventRng {
    state: u64,
}

impl EventRng {
    /// The sequence of event `n` of the stream seeded `seed`; `salt` separates independent
    /// sequences of the same event (its fields, its time jitter).
    pub fn new(seed: u64, salt: u64, n: u64) -> Self {
        EventRng {
            state: mix64(seed ^ mix64(salt)) ^ mix64(n.wrapping_add(GOLDEN_GAMMA)),
        }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A number in `0..bound` (0 when `bound` is 0), by multiplying and keeping the high
    /// bits (bias below 2^-40 for the bounds used here).
    #[inline]
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A float in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A price in cents as the reference draws it: `10^(6u) * 100` (as `e^(6u ln 10)`),
    /// rounded, so from 1.00
    /// to 1 000 000.00 with a log-uniform spread.
    #[inline]
    pub fn price_cents(&mut self) -> u64 {
        ((self.unit() * PRICE_DECADES * std::f64::consts::LN_10).exp() * 100.0).round() as u64
    }

    /// Appends `count` random lowercase letters to `out`, eight per random draw: each byte
    /// `b` of the draw becomes letter `(26 b) >> 8`, computed for four bytes at once in
    /// 16-bit lanes (no lane overflows: 26 * 255 < 2^16, and no letter byte carries).
    #[inline]
    pub fn letters(&mut self, count: usize, out: &mut Vec<u8>) {
        const LANES: u64 = 0x00FF_00FF_00FF_00FF;
        const A: u64 = 0x6161_6161_6161_6161;
        out.reserve(count);
        let mut left = count;
        while left > 0 {
            let r = self.next_u64();
            let even = (((r & LANES) * u64::from(LETTERS)) >> 8) & LANES;
            let odd = ((((r >> 8) & LANES) * u64::from(LETTERS)) >> 8) & LANES;
            let word = (even | (odd << 8)) + A;
            let take = left.min(8);
            out.extend_from_slice(&word.to_le_bytes()[..take]);
            left -= take;
        }
    }

    /// Appends `count` random decimal digits to `out`.
    #[inline]
    pub fn digits(&mut self, count: usize, out: &mut Vec<u8>) {
        for _ in 0..count {
            out.push(b'0' + self.below(10) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_inputs_same_sequence_others_differ() {
        let seq = |seed, salt, n| {
            let mut r = EventRng::new(seed, salt, n);
            (0..4).map(|_| r.next_u64()).collect::<Vec<u64>>()
        };
        assert_eq!(seq(1, 0, 5), seq(1, 0, 5));
        assert_ne!(seq(1, 0, 5), seq(2, 0, 5));
        assert_ne!(seq(1, 0, 5), seq(1, 1, 5));
        assert_ne!(seq(1, 0, 5), seq(1, 0, 6));
        // Neighbouring events do not share shifted sequences.
        assert_ne!(seq(1, 0, 5)[1], seq(1, 0, 6)[0]);
    }

    #[test]
    fn letters_cover_the_alphabet_evenly() {
        let mut r = EventRng::new(7, 0, 0);
        let mut out = Vec::new();
        r.letters(26_000, &mut out);
        assert_eq!(out.len(), 26_000);
        let mut counts = [0u32; 26];
        for b in &out {
            assert!(b.is_ascii_lowercase(), "{b}");
            counts[(b - b'a') as usize] += 1;
        }
        // Each letter about 1000 times (the byte mapping is off by at most 1/256).
        assert!(counts.iter().all(|c| (850..1150).contains(c)), "{counts:?}");
    }

    #[test]
    fn prices_span_six_decades() {
        let mut r = EventRng::new(3, 0, 0);
        let prices: Vec<u64> = (0..100_000).map(|_| r.price_cents()).collect();
        assert!(prices.iter().all(|p| (100..=100_000_000).contains(p)));
        for decade in 2..8u32 {
            let low = 10u64.pow(decade);
            let n = prices
                .iter()
                .filter(|p| (low..low * 10).contains(*p))
                .count();
            assert!((15_000..18_500).contains(&n), "decade {low}: {n}");
        }
    }

    proptest! {
        #[test]
        fn below_stays_below(seed in any::<u64>(), n in any::<u64>(), bound in 0u64..1_000_000) {
            let mut r = EventRng::new(seed, 0, n);
            for _ in 0..16 {
                let v = r.below(bound);
                prop_assert!(v < bound.max(1));
                let u = r.unit();
                prop_assert!((0.0..1.0).contains(&u));
            }
            let mut digits = Vec::new();
            r.digits(9, &mut digits);
            prop_assert!(digits.iter().all(u8::is_ascii_digit) && digits.len() == 9);
        }
    }
}
