//! The best rows of one group of a per-window top-N over raw rows (`TopNInput::Rows`): each
//! row as its sort key and its kept columns in arrow's row format, back to back, so that
//! comparing the bytes compares (sort keys, then every kept column ascending): a total order
//! that does not depend on arrival order, panes or shards. Merging keeps the best of both
//! sides, so merges commute.

/// Rows one group may keep (its N, plus rows tied with the N-th when ties are kept). Past it
/// the group is marked overflowed and its window fails when emitted, naming the limit.
pub const TOP_ROWS_MAX: usize = 10_000;

/// Approximate bytes a kept row takes besides its own bytes (box, length, vector slot).
pub const TOP_ROW_OVERHEAD_BYTES: usize = 32;

/// The kept rows of one group, best first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopRows {
    /// Sort-key bytes then row bytes, and the sort key's length.
    pub rows: Vec<(Box<[u8]>, u32)>,
    /// More than [`TOP_ROWS_MAX`] rows had to be kept: the result would be wrong.
    pub overflowed: bool,
}

/// How many rows a group keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// N.
    pub rows_max: usize,
    /// Also keep every row whose sort key equals the N-th row's.
    pub with_ties: bool,
}

impl TopRows {
    /// The sort key of kept row `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        let (bytes, key_len) = &self.rows[i];
        &bytes[..*key_len as usize]
    }

    /// The kept columns of kept row `i` (arrow row format).
    pub fn row(&self, i: usize) -> &[u8] {
        let (bytes, key_len) = &self.rows[i];
        &bytes[*key_len as usize..]
    }

    /// The sort key a new row must not exceed to be kept (None: any row is).
    pub fn threshold(&self, keep: Keep) -> Option<&[u8]> {
        (self.rows.len() >= keep.rows_max).then(|| self.key(keep.rows_max - 1))
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.rows
            .iter()
            .map(|(b, _)| b.len() + TOP_ROW_OVERHEAD_BYTES)
            .sum()
    }

    /// Offers a row (`key` then `row` bytes); returns the bytes the state grew by (may be
    /// negative in effect: rows pushed out are not subtracted, the state limit is an upper
    /// bound).
    pub fn offer(&mut self, keep: Keep, key: &[u8], row: &[u8]) -> usize {
        if let Some(t) = self.threshold(keep) {
            if key > t || (key == t && !keep.with_ties && self.worse_than_last(keep, key, row)) {
                return 0;
            }
        }
        let mut bytes = Vec::with_capacity(key.len() + row.len());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(row);
        let at = self
            .rows
            .partition_point(|(b, _)| b.as_ref() <= bytes.as_slice());
        let grown = bytes.len() + TOP_ROW_OVERHEAD_BYTES;
        self.rows.insert(at, (bytes.into(), key.len() as u32));
        self.trim(keep);
        grown
    }

    /// Whether (key, row) sorts after the N-th kept row (so it would not be kept).
    fn worse_than_last(&self, keep: Keep, key: &[u8], row: &[u8]) -> bool {
        let last = &self.rows[keep.rows_max - 1].0;
        let (last_key, last_row) = last.split_at(key.len().min(last.len()));
        (key, row) >= (last_key, last_row)
    }

    /// Adds every row of `other`; returns the bytes grown.
    pub fn merge(&mut self, keep: Keep, other: &TopRows) -> usize {
        let mut grown = 0;
        for i in 0..other.rows.len() {
            grown += self.offer(keep, other.key(i), other.row(i));
        }
        self.overflowed |= other.overflowed;
        grown
    }

    /// Drops rows past N (keeping ties when asked) and past [`TOP_ROWS_MAX`].
    fn trim(&mut self, keep: Keep) {
        let n = keep.rows_max;
        if self.rows.len() > n {
            let mut end = n;
            if keep.with_ties {
                while end < self.rows.len() && self.key(end) == self.key(n - 1) {
                    end += 1;
                }
            }
            self.rows.truncate(end);
        }
        if self.rows.len() > TOP_ROWS_MAX {
            self.rows.truncate(TOP_ROWS_MAX);
            self.overflowed = true;
        }
    }

    /// Appends the state to `out` (a checkpoint): flags, count, then per row the key length,
    /// the byte length and the bytes (u32 LE each).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.overflowed));
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        for (bytes, key_len) in &self.rows {
            out.extend_from_slice(&key_len.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }

    /// Reads what [`Self::encode`] wrote; None when the bytes are not such a state.
    pub fn decode(bytes: &[u8]) -> Option<TopRows> {
        let (&flag, mut rest) = bytes.split_first()?;
        let u32_of = |rest: &mut &[u8]| -> Option<u32> {
            let (head, tail) = rest.split_at_checked(4)?;
            *rest = tail;
            Some(u32::from_le_bytes(head.try_into().ok()?))
        };
        let n = u32_of(&mut rest)? as usize;
        if flag > 1 || n > TOP_ROWS_MAX || n > rest.len() / 8 {
            return None;
        }
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let key_len = u32_of(&mut rest)?;
            let len = u32_of(&mut rest)? as usize;
            let (row, tail) = rest.split_at_checked(len)?;
            if key_len as usize > len {
                return None;
            }
            rows.push((Box::<[u8]>::from(row), key_len));
            rest = tail;
        }
        if !rest.is_empty() || rows.windows(2).any(|w| w[0].0 > w[1].0) {
            return None;
        }
        Some(TopRows {
            rows,
            overflowed: flag == 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offer_all(keep: Keep, rows: &[(u8, u8)]) -> TopRows {
        let mut t = TopRows::default();
        for (k, r) in rows {
            t.offer(keep, &[*k], &[*r]);
        }
        t
    }

    /// What the state must hold: sort all rows, keep N (and ties).
    fn expected(keep: Keep, rows: &[(u8, u8)]) -> Vec<(u8, u8)> {
        let mut all = rows.to_vec();
        all.sort();
        let mut end = keep.rows_max.min(all.len());
        if keep.with_ties && end > 0 {
            while end < all.len() && all[end].0 == all[end - 1].0 {
                end += 1;
            }
        }
        all.truncate(end);
        all
    }

    fn kept(t: &TopRows) -> Vec<(u8, u8)> {
        (0..t.rows.len())
            .map(|i| (t.key(i)[0], t.row(i)[0]))
            .collect()
    }

    proptest! {
        /// Any split into parts, offered in any order and merged in any order, keeps the
        /// same rows as one sorted pass.
        #[test]
        fn offers_and_merges_do_not_depend_on_order(
            rows in proptest::collection::vec((0u8..6, 0u8..4), 0..60),
            split in 0usize..60,
            n in 1usize..5,
            with_ties in any::<bool>(),
        ) {
            let keep = Keep { rows_max: n, with_ties };
            let want = expected(keep, &rows);
            let split = split.min(rows.len());
            let (a, b) = rows.split_at(split);
            let mut left = offer_all(keep, a);
            let right = offer_all(keep, b);
            left.merge(keep, &right);
            prop_assert_eq!(kept(&left), want.clone());
            let mut reversed: Vec<_> = rows.clone();
            reversed.reverse();
            prop_assert_eq!(kept(&offer_all(keep, &reversed)), want);
            let mut bytes = Vec::new();
            left.encode(&mut bytes);
            prop_assert_eq!(TopRows::decode(&bytes), Some(left.clone()));
            if !bytes.is_empty() {
                prop_assert!(TopRows::decode(&bytes[..bytes.len() - 1]).is_none());
            }
        }
    }

    #[test]
    fn too_many_ties_overflow() {
        let keep = Keep {
            rows_max: 1,
            with_ties: true,
        };
        let mut t = TopRows::default();
        for i in 0..TOP_ROWS_MAX + 1 {
            t.offer(keep, &[7], &(i as u32).to_be_bytes());
        }
        assert!(t.overflowed);
        assert_eq!(t.rows.len(), TOP_ROWS_MAX);
        // A better row drops every tie of the old best: no longer overflowing rows, but the
        // flag stays (rows were lost on the way).
        t.offer(keep, &[1], &[0]);
        assert_eq!(t.rows.len(), 1);
        assert!(t.overflowed);
    }
}
