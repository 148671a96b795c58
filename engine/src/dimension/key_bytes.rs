//! An owned key of a dimension table's index: up to [`INLINE_BYTES_MAX`] bytes held inside
//! the hash table's entry (no pointer to follow on a lookup, one cache miss less), longer
//! keys on the heap. Hashes and compares as its bytes, so the index is probed with `&[u8]`.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Longest key held inline.
pub const INLINE_BYTES_MAX: usize = 22;

/// An owned key (see the module docs).
#[derive(Clone)]
pub enum KeyBytes {
    Inline {
        len: u8,
        bytes: [u8; INLINE_BYTES_MAX],
    },
    Heap(Box<[u8]>),
}

impl KeyBytes {
    /// The key's bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            KeyBytes::Inline { len, bytes } => &bytes[..*len as usize],
            KeyBytes::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for KeyBytes {
    fn from(key: &[u8]) -> Self {
        if key.len() <= INLINE_BYTES_MAX {
            let mut bytes = [0u8; INLINE_BYTES_MAX];
            bytes[..key.len()].copy_from_slice(key);
            KeyBytes::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            KeyBytes::Heap(key.into())
        }
    }
}

impl Borrow<[u8]> for KeyBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Hash for KeyBytes {
    /// As `[u8]` hashes (required by `Borrow<[u8]>`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for KeyBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for KeyBytes {}

#[cfg(test)]
mod tests {
    use super::*;
    use hashbrown::HashMap;
    use proptest::prelude::*;

    proptest! {
        /// Short and long keys are found by their bytes, whichever way they are stored.
        #[test]
        fn lookups_by_bytes_find_inline_and_heap_keys(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..30)
        ) {
            let mut map: HashMap<KeyBytes, usize> = HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                map.insert(KeyBytes::from(k.as_slice()), i);
            }
            for k in &keys {
                let last = keys.iter().rposition(|x| x == k);
                prop_assert_eq!(map.get(k.as_slice()).copied(), last);
                let owned = KeyBytes::from(k.as_slice());
                prop_assert_eq!(owned.as_slice(), k.as_slice());
            }
            prop_assert!(map.get(&[0xff_u8; 41][..]).is_none());
        }
    }
}
