//! The inner groups of one group of a per-window top-N over an aggregate
//! (`TopNInput::Groups`): inner key (arrow's row format) -> the inner aggregates' slots.
//! Only aggregates whose state is the slot itself (COUNT, SUM, AVG, MIN/MAX over numbers)
//! are allowed inside, so merging is slot by slot and commutes.

use hashbrown::HashTable;

use super::Slot;

/// Inner groups one group (a window, with its outer keys) may hold. Past it the group is
/// marked overflowed and its window fails when emitted, naming the limit.
pub const INNER_GROUPS_MAX: usize = 1_000_000;

/// Approximate bytes an inner group takes besides its key and slots (index entry, offsets,
/// hash).
pub const INNER_GROUP_OVERHEAD_BYTES: usize = 24;

/// The hash of inner keys: fixed seeds, so states compare and merge the same everywhere.
const HASHER: ahash::RandomState = ahash::RandomState::with_seeds(
    0x746f_705f_6e5f_6b65,
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
);

/// Inner groups in order of arrival: keys back to back in one buffer, no allocation per
/// group.
#[derive(Clone, Default)]
pub struct InnerGroups {
    index: HashTable<u32>,
    key_bytes: Vec<u8>,
    /// Inner group `g`'s key ends at `key_ends[g]`.
    key_ends: Vec<u32>,
    hashes: Vec<u64>,
    /// `stride` slots per inner group.
    pub slots: Vec<Slot>,
    pub stride: usize,
    /// More than [`INNER_GROUPS_MAX`] inner groups arrived: the result would be wrong.
    pub overflowed: bool,
}

impl std::fmt::Debug for InnerGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InnerGroups")
            .field("groups", &self.len())
            .field("stride", &self.stride)
            .field("overflowed", &self.overflowed)
            .finish()
    }
}

impl PartialEq for InnerGroups {
    fn eq(&self, other: &Self) -> bool {
        self.key_bytes == other.key_bytes
            && self.key_ends == other.key_ends
            && self.slots == other.slots
            && self.stride == other.stride
            && self.overflowed == other.overflowed
    }
}

impl InnerGroups {
    pub fn new(stride: usize) -> Self {
        InnerGroups {
            stride,
            ..InnerGroups::default()
        }
    }

    pub fn len(&self) -> usize {
        self.key_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.key_ends.is_empty()
    }

    /// The key of inner group `g`.
    #[inline]
    pub fn key(&self, g: usize) -> &[u8] {
        let start = if g == 0 {
            0
        } else {
            self.key_ends[g - 1] as usize
        };
        &self.key_bytes[start..self.key_ends[g] as usize]
    }

    /// The inner group of `key`, created if new (None past [`INNER_GROUPS_MAX`]); and the
    /// bytes the state grew by.
    #[inline]
    pub fn find_or_insert(&mut self, key: &[u8]) -> (Option<u32>, usize) {
        let hash = HASHER.hash_one(key);
        let found = self.index.find(hash, |&g| {
            self.hashes[g as usize] == hash && self.key(g as usize) == key
        });
        if let Some(&g) = found {
            return (Some(g), 0);
        }
        if self.key_ends.len() >= INNER_GROUPS_MAX {
            self.overflowed = true;
            return (None, 0);
        }
        let g = self.key_ends.len() as u32;
        self.key_bytes.extend_from_slice(key);
        self.key_ends.push(self.key_bytes.len() as u32);
        self.hashes.push(hash);
        let hashes = &self.hashes;
        self.index.insert_unique(hash, g, |&x| hashes[x as usize]);
        self.slots
            .extend(std::iter::repeat_n(Slot::EMPTY, self.stride));
        (
            Some(g),
            key.len() + self.stride * 16 + INNER_GROUP_OVERHEAD_BYTES,
        )
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        self.key_bytes.len() + self.len() * (self.stride * 16 + INNER_GROUP_OVERHEAD_BYTES)
    }

    /// Appends the state (a checkpoint): flags, stride, count, then per inner group the key
    /// length (u32 LE), the key, and `stride` slots of two u64 LE.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.overflowed));
        out.extend_from_slice(&(self.stride as u32).to_le_bytes());
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for g in 0..self.len() {
            let key = self.key(g);
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            for s in &self.slots[g * self.stride..(g + 1) * self.stride] {
                out.extend_from_slice(&s.a.to_le_bytes());
                out.extend_from_slice(&s.b.to_le_bytes());
            }
        }
    }

    /// Reads what [`Self::encode`] wrote for `stride` aggregates; None when the bytes are
    /// not such a state.
    pub fn decode(bytes: &[u8], stride: usize) -> Option<InnerGroups> {
        let (&flag, mut rest) = bytes.split_first()?;
        fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            *rest = tail;
            Some(head)
        }
        let u32_of = |rest: &mut &[u8]| -> Option<usize> {
            Some(u32::from_le_bytes(take(rest, 4)?.try_into().ok()?) as usize)
        };
        let u64_of = |rest: &mut &[u8]| -> Option<u64> {
            Some(u64::from_le_bytes(take(rest, 8)?.try_into().ok()?))
        };
        if flag > 1 || u32_of(&mut rest)? != stride {
            return None;
        }
        let n = u32_of(&mut rest)?;
        if n > INNER_GROUPS_MAX || n > rest.len() / (4 + 16 * stride).max(4) {
            return None;
        }
        let mut groups = InnerGroups::new(stride);
        groups.overflowed = flag == 1;
        for _ in 0..n {
            let len = u32_of(&mut rest)?;
            let key = take(&mut rest, len)?;
            let (Some(g), _) = groups.find_or_insert(key) else {
                return None;
            };
            if g as usize != groups.len() - 1 {
                return None; // a key twice
            }
            let base = g as usize * stride;
            for i in 0..stride {
                groups.slots[base + i] = Slot {
                    a: u64_of(&mut rest)?,
                    b: u64_of(&mut rest)?,
                };
            }
        }
        rest.is_empty().then_some(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_round_trips_and_damage_is_refused(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5), 0..40),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut g = InnerGroups::new(2);
            for (i, k) in keys.iter().enumerate() {
                let (Some(id), _) = g.find_or_insert(k) else { panic!("below the limit") };
                g.slots[id as usize * 2].a += 1;
                g.slots[id as usize * 2 + 1] = Slot { a: i as u64, b: 1 };
            }
            let mut bytes = Vec::new();
            g.encode(&mut bytes);
            prop_assert_eq!(InnerGroups::decode(&bytes, 2), Some(g.clone()));
            prop_assert!(InnerGroups::decode(&bytes, 3).is_none(), "another stride");
            let short = cut.index(bytes.len());
            prop_assert!(InnerGroups::decode(&bytes[..short], 2).is_none());
        }
    }
}
