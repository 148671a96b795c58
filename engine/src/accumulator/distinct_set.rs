//! The exact set of distinct values of one group for COUNT(DISTINCT x). Integers, timestamps
//! and booleans are kept as their i64 bits, floats as canonical f64 bits (0.0 and -0.0 are
//! one value, every NaN is one value), strings as their bytes.

use hashbrown::HashSet;

/// Approximate heap bytes one fixed-width value takes in the set (value, control byte, load).
pub const DISTINCT_WORD_BYTES: usize = 16;
/// Approximate heap bytes one string takes besides its own bytes (box, control byte, load).
pub const DISTINCT_TEXT_OVERHEAD_BYTES: usize = 32;

/// Distinct values of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistinctSet {
    Words(HashSet<u64>),
    Texts(HashSet<Box<[u8]>>),
}

/// The canonical bits of a float for DISTINCT: -0.0 equals 0.0, all NaNs are equal.
#[inline]
pub fn canonical_float_bits(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

impl DistinctSet {
    pub fn len(&self) -> usize {
        match self {
            DistinctSet::Words(s) => s.len(),
            DistinctSet::Texts(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a fixed-width value; returns the bytes the set grew by (0 if already present).
    #[inline]
    pub fn insert_word(&mut self, v: u64) -> usize {
        match self {
            DistinctSet::Words(s) => {
                if s.insert(v) {
                    DISTINCT_WORD_BYTES
                } else {
                    0
                }
            }
            DistinctSet::Texts(_) => 0,
        }
    }

    /// Adds a string; returns the bytes the set grew by (0 if already present).
    #[inline]
    pub fn insert_text(&mut self, v: &[u8]) -> usize {
        match self {
            DistinctSet::Texts(s) => {
                if s.contains(v) {
                    return 0;
                }
                s.insert(v.into());
                v.len() + DISTINCT_TEXT_OVERHEAD_BYTES
            }
            DistinctSet::Words(_) => 0,
        }
    }

    /// Adds every value of `other` (of the same variant); returns the bytes grown.
    pub fn merge(&mut self, other: &DistinctSet) -> usize {
        let mut grown = 0;
        match other {
            DistinctSet::Words(o) => o.iter().for_each(|&v| grown += self.insert_word(v)),
            DistinctSet::Texts(o) => o.iter().for_each(|v| grown += self.insert_text(v)),
        }
        grown
    }

    /// Approximate heap bytes (as counted by the inserts).
    pub fn bytes(&self) -> usize {
        match self {
            DistinctSet::Words(s) => s.len() * DISTINCT_WORD_BYTES,
            DistinctSet::Texts(s) => s
                .iter()
                .map(|v| v.len() + DISTINCT_TEXT_OVERHEAD_BYTES)
                .sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn floats_are_canonical_and_growth_is_counted() {
        let mut s = DistinctSet::Words(HashSet::new());
        assert_eq!(
            s.insert_word(canonical_float_bits(0.0)),
            DISTINCT_WORD_BYTES
        );
        assert_eq!(s.insert_word(canonical_float_bits(-0.0)), 0);
        assert_eq!(
            s.insert_word(canonical_float_bits(f64::NAN)),
            DISTINCT_WORD_BYTES
        );
        assert_eq!(s.insert_word(canonical_float_bits(-f64::NAN)), 0);
        assert_eq!(s.len(), 2);
        let mut t = DistinctSet::Texts(HashSet::new());
        assert_eq!(t.insert_text(b"abc"), 3 + DISTINCT_TEXT_OVERHEAD_BYTES);
        assert_eq!(t.insert_text(b"abc"), 0);
        assert_eq!(t.bytes(), 3 + DISTINCT_TEXT_OVERHEAD_BYTES);
        // a word never enters a text set
        assert_eq!(t.insert_word(1), 0);
        assert_eq!(t.len(), 1);
    }

    proptest! {
        #[test]
        fn merge_of_any_split_equals_the_whole(
            xs in proptest::collection::vec("[a-c]{0,3}", 0..100),
            cut in any::<prop::sample::Index>(),
        ) {
            let c = cut.index(xs.len() + 1);
            let build = |part: &[String]| {
                let mut s = DistinctSet::Texts(HashSet::new());
                part.iter().for_each(|v| { s.insert_text(v.as_bytes()); });
                s
            };
            let whole = build(&xs);
            let mut a = build(&xs[..c]);
            let before = a.bytes();
            let grown = a.merge(&build(&xs[c..]));
            prop_assert_eq!(a.bytes(), before + grown);
            prop_assert_eq!(&a, &whole);
            let exact: std::collections::HashSet<&String> = xs.iter().collect();
            prop_assert_eq!(a.len(), exact.len());
        }
    }
}
