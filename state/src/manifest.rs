//! Byte format of the manifest: the list of retained complete checkpoints of a shard and, for
//! each, the segments (and the byte offset in each) that replaying it reads.
//!
//! The manifest is replaced atomically (write `MANIFEST.tmp`, fsync, rename over `MANIFEST`,
//! fsync the directory): it is the commit point of a checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{StateError, StateResult};
use crate::record_codec::{decode_record, encode_record, DecodeOutcome};

/// File name of the manifest in a shard directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// File name of a manifest being written.
pub const MANIFEST_TMP_FILE: &str = "MANIFEST.tmp";
/// First bytes of the manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"SPWYMAN\0";
/// Manifest format version.
pub const MANIFEST_VERSION: u16 = 1;
/// Bytes before the manifest's framed body (magic, version, reserved).
pub const MANIFEST_PREFIX_BYTES: usize = 12;

/// A segment and the offset up to which a checkpoint uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRef {
    /// Segment sequence number.
    pub seq: u64,
    /// Byte offset just after the checkpoint's last record (its commit record) in the segment.
    pub end: u64,
}

/// One complete checkpoint: replay the records of `segments` in order, each up to its `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointEntry {
    /// Checkpoint id (grows with every checkpoint).
    pub id: u64,
    /// Segments in replay order.
    pub segments: Vec<SegmentRef>,
}

/// The decoded manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Shard the manifest belongs to.
    pub shard: u32,
    /// Grows by one with every manifest written.
    pub generation: u64,
    /// Sequence number the next new segment gets.
    pub segment_seq_next: u64,
    /// Retained complete checkpoints, oldest first.
    pub checkpoints: Vec<CheckpointEntry>,
}

impl Manifest {
    /// The manifest of a shard without checkpoints.
    pub fn empty(shard: u32) -> Self {
        Manifest {
            shard,
            generation: 0,
            segment_seq_next: 0,
            checkpoints: Vec::new(),
        }
    }

    /// The newest complete checkpoint.
    pub fn latest(&self) -> Option<&CheckpointEntry> {
        self.checkpoints.last()
    }

    /// Every segment some retained checkpoint reads, with the largest end offset it is read to.
    pub fn segments_referenced(&self) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for c in &self.checkpoints {
            for s in &c.segments {
                let end = out.entry(s.seq).or_insert(0);
                *end = s.end.max(*end);
            }
        }
        out
    }

    /// The manifest's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.shard.to_le_bytes());
        body.extend_from_slice(&self.generation.to_le_bytes());
        body.extend_from_slice(&self.segment_seq_next.to_le_bytes());
        body.extend_from_slice(&(self.checkpoints.len() as u32).to_le_bytes());
        for c in &self.checkpoints {
            body.extend_from_slice(&c.id.to_le_bytes());
            body.extend_from_slice(&(c.segments.len() as u32).to_le_bytes());
            for s in &c.segments {
                body.extend_from_slice(&s.seq.to_le_bytes());
                body.extend_from_slice(&s.end.to_le_bytes());
            }
        }
        let mut out = Vec::with_capacity(MANIFEST_PREFIX_BYTES + 8 + body.len());
        out.extend_from_slice(&MANIFEST_MAGIC);
        out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        encode_record(&body, &mut out);
        out
    }

    /// Reads and verifies the manifest `bytes` of file `path`.
    pub fn decode(bytes: &[u8], path: &Path) -> StateResult<Self> {
        if bytes.len() < MANIFEST_PREFIX_BYTES || bytes[..8] != MANIFEST_MAGIC {
            return Err(StateError::corrupt(
                path,
                0,
                "not a spillway manifest (bad magic)",
            ));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != MANIFEST_VERSION {
            return Err(StateError::corrupt(
                path,
                8,
                format!("manifest version {version} is not the supported {MANIFEST_VERSION}"),
            ));
        }
        if bytes[10..12] != [0, 0] {
            return Err(StateError::corrupt(
                path,
                10,
                "manifest reserved bytes are not zero",
            ));
        }
        let at = MANIFEST_PREFIX_BYTES;
        let body = match decode_record(&bytes[at..]) {
            DecodeOutcome::Record { payload, consumed } if at + consumed == bytes.len() => payload,
            DecodeOutcome::Record { .. } => {
                return Err(StateError::corrupt(
                    path,
                    at as u64,
                    "bytes after the manifest body",
                ))
            }
            DecodeOutcome::Corrupt { reason } => {
                return Err(StateError::corrupt(path, at as u64, reason))
            }
            DecodeOutcome::TornTail | DecodeOutcome::End => {
                return Err(StateError::corrupt(
                    path,
                    at as u64,
                    "manifest body is incomplete",
                ))
            }
        };
        let mut r = Reader { bytes: body, at: 0 };
        let bad = |reason: &str| StateError::corrupt(path, at as u64, reason.to_string());
        let shard = r.u32().ok_or_else(|| bad("manifest body too short"))?;
        let generation = r.u64().ok_or_else(|| bad("manifest body too short"))?;
        let segment_seq_next = r.u64().ok_or_else(|| bad("manifest body too short"))?;
        let count = r.u32().ok_or_else(|| bad("manifest body too short"))?;
        let mut checkpoints = Vec::new();
        for _ in 0..count {
            let id = r.u64().ok_or_else(|| bad("checkpoint list is cut short"))?;
            let segment_count = r.u32().ok_or_else(|| bad("checkpoint list is cut short"))?;
            let mut segments = Vec::new();
            for _ in 0..segment_count {
                let seq = r.u64().ok_or_else(|| bad("segment list is cut short"))?;
                let end = r.u64().ok_or_else(|| bad("segment list is cut short"))?;
                segments.push(SegmentRef { seq, end });
            }
            if segments.is_empty() {
                return Err(bad("a checkpoint names no segment"));
            }
            checkpoints.push(CheckpointEntry { id, segments });
        }
        if r.at != body.len() {
            return Err(bad("bytes after the checkpoint list"));
        }
        if checkpoints.windows(2).any(|w| w[0].id >= w[1].id) {
            return Err(bad("checkpoint ids do not grow"));
        }
        Ok(Manifest {
            shard,
            generation,
            segment_seq_next,
            checkpoints,
        })
    }
}

/// Little-endian reader over a verified body.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let slice = self.bytes.get(self.at..self.at + N)?;
        self.at += N;
        let mut a = [0u8; N];
        a.copy_from_slice(slice);
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Manifest {
        Manifest {
            shard: 5,
            generation: 12,
            segment_seq_next: 4,
            checkpoints: vec![
                CheckpointEntry {
                    id: 7,
                    segments: vec![
                        SegmentRef { seq: 1, end: 900 },
                        SegmentRef { seq: 2, end: 40 },
                    ],
                },
                CheckpointEntry {
                    id: 9,
                    segments: vec![SegmentRef { seq: 3, end: 120 }],
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_referenced_segments() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode(), Path::new("m")).unwrap(), m);
        let refs: Vec<_> = m.segments_referenced().into_iter().collect();
        assert_eq!(refs, vec![(1, 900), (2, 40), (3, 120)]);
    }

    proptest! {
        #[test]
        fn any_flipped_bit_is_corrupt(bit in 0usize..10_000) {
            let mut bytes = sample().encode();
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let err = Manifest::decode(&bytes, Path::new("m"));
            prop_assert!(matches!(err, Err(StateError::Corrupt { .. })), "{:?}", err);
        }

        #[test]
        fn any_cut_is_corrupt(cut in 1usize..1000) {
            let bytes = sample().encode();
            let keep = cut % bytes.len();
            prop_assert!(keep < bytes.len());
            let corrupt = matches!(Manifest::decode(&bytes[..keep], Path::new("m")), Err(StateError::Corrupt { .. }));
            prop_assert!(corrupt);
        }
    }
}
