//! FIRST_VALUE / LAST_VALUE state: the event time and value of the winning row of a group.
//!
//! Rule: FIRST_VALUE keeps the row with the smallest `(event time, value)`, LAST_VALUE the
//! row with the largest, values compared as integers, by `f64::total_cmp`, or bytewise for
//! strings. Ties on event time are therefore broken by value, not by arrival order: arrival
//! order is not kept across the partitions one shard reads, across the exchange between
//! shards, nor across a restore on another number of cores, while a total order gives the
//! same result however the input is split (and makes update and merge one operation).

use std::cmp::Ordering;

/// How the values of a FIRST/LAST aggregate compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// i64 bits (integers, timestamps, booleans).
    Int,
    /// f64 bits.
    Float,
    /// UTF-8 bytes.
    Text,
}

/// The winning row of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    pub time: i64,
    /// The value's bits (Int, Float); unused (0) for Text.
    pub word: u64,
    /// The value's bytes (Text); empty otherwise.
    pub text: Box<[u8]>,
}

/// A candidate value, borrowed from the input.
#[derive(Debug, Clone, Copy)]
pub enum Candidate<'a> {
    Word(u64),
    Text(&'a [u8]),
}

impl Timed {
    pub fn new(time: i64, value: Candidate) -> Timed {
        match value {
            Candidate::Word(word) => Timed {
                time,
                word,
                text: Box::default(),
            },
            Candidate::Text(t) => Timed {
                time,
                word: 0,
                text: t.into(),
            },
        }
    }

    fn candidate(&self, kind: ValueKind) -> Candidate<'_> {
        match kind {
            ValueKind::Text => Candidate::Text(&self.text),
            _ => Candidate::Word(self.word),
        }
    }

    /// Replaces the kept row with `(time, value)` when that wins (`last`: LAST_VALUE).
    /// Returns the bytes the state grew by.
    #[inline]
    pub fn offer(&mut self, kind: ValueKind, last: bool, time: i64, value: Candidate) -> usize {
        let order = time
            .cmp(&self.time)
            .then_with(|| compare(kind, value, self.candidate(kind)));
        let wins = if last {
            order == Ordering::Greater
        } else {
            order == Ordering::Less
        };
        if !wins {
            return 0;
        }
        self.time = time;
        match value {
            Candidate::Word(w) => {
                self.word = w;
                0
            }
            Candidate::Text(t) => {
                let grown = t.len().saturating_sub(self.text.len());
                self.text = t.into();
                grown
            }
        }
    }

    /// Merges another group's winner into this one.
    pub fn merge(&mut self, kind: ValueKind, last: bool, other: &Timed) -> usize {
        self.offer(kind, last, other.time, other.candidate(kind))
    }
}

fn compare(kind: ValueKind, a: Candidate, b: Candidate) -> Ordering {
    match (a, b) {
        (Candidate::Word(a), Candidate::Word(b)) => match kind {
            ValueKind::Float => f64::from_bits(a).total_cmp(&f64::from_bits(b)),
            _ => (a as i64).cmp(&(b as i64)),
        },
        (Candidate::Text(a), Candidate::Text(b)) => a.cmp(b),
        // Mixed candidates cannot happen within one aggregate; order them to stay total.
        (Candidate::Word(_), Candidate::Text(_)) => Ordering::Less,
        (Candidate::Text(_), Candidate::Word(_)) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fold(kind: ValueKind, last: bool, rows: &[(i64, i64)]) -> Option<Timed> {
        let mut acc: Option<Timed> = None;
        for &(t, v) in rows {
            let c = Candidate::Word(v as u64);
            match &mut acc {
                None => acc = Some(Timed::new(t, c)),
                Some(s) => {
                    s.offer(kind, last, t, c);
                }
            }
        }
        acc
    }

    #[test]
    fn ties_on_time_go_to_the_smallest_or_largest_value() {
        let rows = [(5, 9), (3, 7), (3, -2), (8, 1), (8, 4)];
        let first = fold(ValueKind::Int, false, &rows).expect("rows");
        assert_eq!((first.time, first.word as i64), (3, -2));
        let last = fold(ValueKind::Int, true, &rows).expect("rows");
        assert_eq!((last.time, last.word as i64), (8, 4));
        let mut s = Timed::new(1, Candidate::Text(b"b"));
        assert_eq!(
            s.offer(ValueKind::Text, false, 1, Candidate::Text(b"abc")),
            2
        );
        assert_eq!(&s.text[..], b"abc");
        assert_eq!(s.offer(ValueKind::Text, false, 2, Candidate::Text(b"a")), 0);
        assert_eq!(&s.text[..], b"abc");
    }

    proptest! {
        #[test]
        fn merge_of_any_split_equals_the_whole(
            rows in proptest::collection::vec((0i64..5, -3i64..3), 1..60),
            cut in any::<prop::sample::Index>(),
            last in any::<bool>(),
        ) {
            let c = cut.index(rows.len() + 1);
            let whole = fold(ValueKind::Int, last, &rows);
            let merged = match (fold(ValueKind::Int, last, &rows[..c]), fold(ValueKind::Int, last, &rows[c..])) {
                (Some(mut a), Some(b)) => { a.merge(ValueKind::Int, last, &b); Some(a) }
                (a, b) => a.or(b),
            };
            prop_assert_eq!(merged, whole);
        }
    }
}
