//! Byte format of segment files (see docs/state-format.md): a fixed header, then records framed
//! by [`crate::record_codec`] whose payload starts with a kind byte.
//!
//! A segment holds one or more checkpoints; each ends with a `Commit` record. The manifest says
//! up to which byte offset a segment belongs to a complete checkpoint; bytes after that are a
//! torn tail.

use std::path::Path;

use crate::error::{StateError, StateResult};
use crate::record_codec::{decode_record, DecodeOutcome, RECORD_BYTES_MAX, RECORD_HEADER_BYTES};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SPWYSEG\0";
/// Format version written in the header.
pub const SEGMENT_VERSION: u16 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 36;
/// Header flag: the segment starts with a full snapshot written by compaction.
pub const SEGMENT_FLAG_SNAPSHOT: u16 = 1;

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_META: u8 = 3;
const KIND_COMMIT: u8 = 4;

/// Bytes a put record of this key and value takes on disk, framing included.
pub fn put_record_bytes(key_bytes: usize, value_bytes: usize) -> u64 {
    (RECORD_HEADER_BYTES + 1 + 4 + key_bytes + value_bytes) as u64
}

/// Bytes a meta record takes on disk, framing included.
pub fn meta_record_bytes(name_bytes: usize, value_bytes: usize) -> u64 {
    (RECORD_HEADER_BYTES + 1 + 2 + name_bytes + value_bytes) as u64
}

/// File name of segment `seq`.
pub fn segment_file_name(seq: u64) -> String {
    format!("seg-{seq:016x}.log")
}

/// The sequence number in a segment file name, if `name` is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The header at the start of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// `SEGMENT_FLAG_*` bits.
    pub flags: u16,
    /// Shard the segment belongs to.
    pub shard: u32,
    /// Sequence number, equal to the one in the file name.
    pub seq: u64,
    /// First checkpoint written into the segment.
    pub checkpoint_id: u64,
}

impl SegmentHeader {
    /// Appends the header bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&SEGMENT_MAGIC);
        out.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.shard.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.checkpoint_id.to_le_bytes());
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len() - start, SEGMENT_HEADER_BYTES);
    }

    /// Reads and verifies the header of the segment file `path`.
    pub fn decode(bytes: &[u8], path: &Path) -> StateResult<Self> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(StateError::corrupt(path, 0, "segment header is incomplete"));
        }
        if bytes[..8] != SEGMENT_MAGIC {
            return Err(StateError::corrupt(
                path,
                0,
                "not a spillway segment (bad magic)",
            ));
        }
        let crc_stored = u32_at(bytes, 32);
        let crc_actual = crc32c::crc32c(&bytes[..32]);
        if crc_stored != crc_actual {
            return Err(StateError::corrupt(
                path,
                0,
                "segment header checksum does not match",
            ));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != SEGMENT_VERSION {
            return Err(StateError::corrupt(
                path,
                8,
                format!("segment format version {version} is not the supported {SEGMENT_VERSION}"),
            ));
        }
        Ok(SegmentHeader {
            flags: u16::from_le_bytes([bytes[10], bytes[11]]),
            shard: u32_at(bytes, 12),
            seq: u64_at(bytes, 16),
            checkpoint_id: u64_at(bytes, 24),
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// One decoded record of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// `key` now has `value`.
    Put { key: &'a [u8], value: &'a [u8] },
    /// `key` has no value any more.
    Delete { key: &'a [u8] },
    /// Meta blob `name` (offsets, watermark, timers) now has `value`.
    Meta { name: &'a str, value: &'a [u8] },
    /// End of checkpoint `checkpoint_id`, which wrote `records` records before this one in
    /// this segment.
    Commit { checkpoint_id: u64, records: u64 },
}

/// Appends one framed record whose payload is the concatenation of `parts`.
fn frame(parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    assert!(
        len <= RECORD_BYTES_MAX,
        "state record of {len} bytes is over RECORD_BYTES_MAX"
    );
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let mut crc = 0;
    for p in parts {
        out.extend_from_slice(p);
        crc = crc32c::crc32c_append(crc, p);
    }
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Checks that a record of `payload_bytes` fits `RECORD_BYTES_MAX`.
pub fn check_record_size(payload_bytes: usize, what: &str) -> StateResult<()> {
    if payload_bytes > RECORD_BYTES_MAX {
        return Err(StateError::Limit {
            limit: "RECORD_BYTES_MAX",
            max: RECORD_BYTES_MAX as u64,
            detail: format!("{what} needs a record of {payload_bytes} bytes"),
        });
    }
    Ok(())
}

/// Appends a put record. The caller checked the size with [`check_record_size`].
pub fn encode_put(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let key_len = (key.len() as u32).to_le_bytes();
    frame(&[&[KIND_PUT], &key_len, key, value], out);
}

/// Appends a delete record.
pub fn encode_delete(key: &[u8], out: &mut Vec<u8>) {
    frame(&[&[KIND_DELETE], key], out);
}

/// Appends a meta record; `name` is at most `u16::MAX` bytes (the caller checked).
pub fn encode_meta(name: &str, value: &[u8], out: &mut Vec<u8>) {
    assert!(
        name.len() <= usize::from(u16::MAX),
        "meta name over 65535 bytes"
    );
    let name_len = (name.len() as u16).to_le_bytes();
    frame(&[&[KIND_META], &name_len, name.as_bytes(), value], out);
}

/// Appends a commit record.
pub fn encode_commit(checkpoint_id: u64, records: u64, out: &mut Vec<u8>) {
    frame(
        &[
            &[KIND_COMMIT],
            &checkpoint_id.to_le_bytes(),
            &records.to_le_bytes(),
        ],
        out,
    );
}

/// Decodes a verified payload into a record.
pub fn decode_payload(payload: &[u8]) -> Result<Record<'_>, String> {
    let (&kind, body) = payload.split_first().ok_or("empty record payload")?;
    match kind {
        KIND_PUT => {
            if body.len() < 4 {
                return Err("put record shorter than its key length".into());
            }
            let key_len = u32_at(body, 0) as usize;
            let rest = &body[4..];
            if key_len > rest.len() {
                return Err(format!("put key length {key_len} is over the record"));
            }
            let (key, value) = rest.split_at(key_len);
            Ok(Record::Put { key, value })
        }
        KIND_DELETE => Ok(Record::Delete { key: body }),
        KIND_META => {
            if body.len() < 2 {
                return Err("meta record shorter than its name length".into());
            }
            let name_len = usize::from(u16::from_le_bytes([body[0], body[1]]));
            let rest = &body[2..];
            if name_len > rest.len() {
                return Err(format!("meta name length {name_len} is over the record"));
            }
            let (name, value) = rest.split_at(name_len);
            let name = std::str::from_utf8(name).map_err(|_| "meta name is not UTF-8")?;
            Ok(Record::Meta { name, value })
        }
        KIND_COMMIT => {
            if body.len() != 16 {
                return Err(format!(
                    "commit record has {} bytes instead of 16",
                    body.len()
                ));
            }
            Ok(Record::Commit {
                checkpoint_id: u64_at(body, 0),
                records: u64_at(body, 8),
            })
        }
        other => Err(format!("unknown record kind {other}")),
    }
}

/// What scanning the committed part of a segment found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentScan {
    /// Id of the last commit record (the checkpoint the range ends with).
    pub checkpoint_id_last: u64,
    /// Records read, commit records included.
    pub records: u64,
}

/// Verifies the segment `bytes` (file `path`) up to byte `end` and hands every record to
/// `visit` in order. Everything in `[0, end)` must be a valid header and complete, verified
/// records ending with a commit record; anything else is `StateError::Corrupt`.
pub fn scan_segment(
    path: &Path,
    bytes: &[u8],
    end: u64,
    expect: (u32, u64),
    mut visit: impl FnMut(Record<'_>),
) -> StateResult<SegmentScan> {
    let (shard, seq) = expect;
    let end = usize::try_from(end)
        .map_err(|_| StateError::corrupt(path, 0, "end offset does not fit in memory"))?;
    if bytes.len() < end {
        return Err(StateError::corrupt(
            path,
            bytes.len() as u64,
            format!("segment ends before the manifest's end offset {end}"),
        ));
    }
    let header = SegmentHeader::decode(bytes, path)?;
    if header.shard != shard || header.seq != seq {
        return Err(StateError::corrupt(
            path,
            0,
            format!(
                "header names shard {} segment {} instead of shard {shard} segment {seq}",
                header.shard, header.seq
            ),
        ));
    }
    let mut at = SEGMENT_HEADER_BYTES;
    let mut records = 0u64;
    let mut since_commit = 0u64;
    let mut commit_last: Option<u64> = None;
    while at < end {
        let bad = |reason: String| StateError::corrupt(path, at as u64, reason);
        let (payload, consumed) = match decode_record(&bytes[at..end]) {
            DecodeOutcome::Record { payload, consumed } => (payload, consumed),
            DecodeOutcome::TornTail => {
                return Err(bad(
                    "record crosses the end of the committed checkpoint".into()
                ))
            }
            DecodeOutcome::Corrupt { reason } => return Err(bad(reason)),
            DecodeOutcome::End => break,
        };
        let record = decode_payload(payload).map_err(bad)?;
        if let Record::Commit {
            checkpoint_id,
            records: written,
        } = record
        {
            if written != since_commit {
                return Err(bad(format!(
                    "commit of checkpoint {checkpoint_id} counts {written} records, found {since_commit}"
                )));
            }
            if commit_last.is_some_and(|last| checkpoint_id <= last) {
                return Err(bad(format!("checkpoint id {checkpoint_id} does not grow")));
            }
            commit_last = Some(checkpoint_id);
            since_commit = 0;
        } else {
            since_commit += 1;
        }
        visit(record);
        records += 1;
        at += consumed;
    }
    match commit_last {
        Some(id) if since_commit == 0 => Ok(SegmentScan {
            checkpoint_id_last: id,
            records,
        }),
        _ => Err(StateError::corrupt(
            path,
            end as u64,
            "the committed range does not end with a commit record",
        )),
    }
}

/// What lies after the committed end of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TailScan {
    /// Bytes after the committed end.
    pub bytes: u64,
    /// Complete, verified records among them (an unfinished checkpoint).
    pub records_complete: u64,
    /// Whether the tail ends with a torn or corrupt record rather than a record boundary.
    pub torn: bool,
}

/// Scans the bytes of a segment after its committed end `from`.
pub fn scan_tail(bytes: &[u8], from: usize) -> TailScan {
    let mut scan = TailScan {
        bytes: bytes.len().saturating_sub(from) as u64,
        ..TailScan::default()
    };
    let mut at = from.min(bytes.len());
    loop {
        match decode_record(&bytes[at..]) {
            DecodeOutcome::Record { consumed, .. } => {
                scan.records_complete += 1;
                at += consumed;
            }
            DecodeOutcome::End => return scan,
            DecodeOutcome::TornTail | DecodeOutcome::Corrupt { .. } => {
                scan.torn = true;
                return scan;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment(records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<u8> {
        let mut out = Vec::new();
        SegmentHeader {
            flags: 0,
            shard: 3,
            seq: 9,
            checkpoint_id: 1,
        }
        .encode(&mut out);
        for (k, v) in records {
            match v {
                Some(v) => encode_put(k, v, &mut out),
                None => encode_delete(k, &mut out),
            }
        }
        encode_meta("watermark", b"42", &mut out);
        encode_commit(1, records.len() as u64 + 1, &mut out);
        out
    }

    #[test]
    fn file_names_round_trip_and_reject_others() {
        assert_eq!(segment_file_name(0x2a), "seg-000000000000002a.log");
        assert_eq!(parse_segment_file_name(&segment_file_name(77)), Some(77));
        assert_eq!(parse_segment_file_name("seg-2a.log"), None);
        assert_eq!(parse_segment_file_name("MANIFEST"), None);
    }

    #[test]
    fn a_segment_from_another_shard_is_corrupt() {
        let bytes = segment(&[]);
        let err = scan_segment(Path::new("s"), &bytes, bytes.len() as u64, (4, 9), |_| {});
        assert!(
            matches!(err, Err(StateError::Corrupt { offset: 0, .. })),
            "{err:?}"
        );
    }

    #[test]
    fn a_range_without_a_final_commit_is_corrupt() {
        let bytes = segment(&[(b"k".to_vec(), Some(b"v".to_vec()))]);
        let commit_bytes = RECORD_HEADER_BYTES + 17;
        let end = (bytes.len() - commit_bytes) as u64;
        let err = scan_segment(Path::new("s"), &bytes, end, (3, 9), |_| {}).unwrap_err();
        assert!(
            err.to_string().contains("does not end with a commit"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn records_round_trip_in_order(
            records in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..20),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..50))), 0..30)
        ) {
            let bytes = segment(&records);
            let mut seen = Vec::new();
            let scan = scan_segment(Path::new("s"), &bytes, bytes.len() as u64, (3, 9), |r| {
                seen.push(match r {
                    Record::Put { key, value } => (key.to_vec(), Some(value.to_vec())),
                    Record::Delete { key } => (key.to_vec(), None),
                    Record::Meta { name, value } => (name.as_bytes().to_vec(), Some(value.to_vec())),
                    Record::Commit { checkpoint_id, .. } => (checkpoint_id.to_le_bytes().to_vec(), None),
                })
            }).unwrap();
            prop_assert_eq!(scan.records, records.len() as u64 + 2);
            prop_assert_eq!(&seen[..records.len()], &records[..]);
            prop_assert_eq!(scan.checkpoint_id_last, 1);
            for (k, v) in &records {
                let expect = match v { Some(v) => put_record_bytes(k.len(), v.len()), None => 0 };
                if let Some(v) = v {
                    let mut one = Vec::new();
                    encode_put(k, v, &mut one);
                    prop_assert_eq!(one.len() as u64, expect);
                }
            }
        }

        #[test]
        fn a_cut_tail_is_reported_as_torn_with_its_complete_records(cut in 1usize..200) {
            let bytes = segment(&[(b"a".to_vec(), Some(vec![7; 40])), (b"b".to_vec(), None)]);
            let mut boundaries = vec![SEGMENT_HEADER_BYTES];
            while let DecodeOutcome::Record { consumed, .. } =
                decode_record(&bytes[boundaries[boundaries.len() - 1]..])
            {
                boundaries.push(boundaries[boundaries.len() - 1] + consumed);
            }
            prop_assert_eq!(boundaries.len(), 5);
            let keep = bytes.len() - cut % (bytes.len() - SEGMENT_HEADER_BYTES);
            let tail = scan_tail(&bytes[..keep], SEGMENT_HEADER_BYTES);
            prop_assert_eq!(tail.bytes, (keep - SEGMENT_HEADER_BYTES) as u64);
            prop_assert_eq!(tail.torn, !boundaries.contains(&keep));
            let complete = boundaries.iter().filter(|&&b| b <= keep).count() as u64 - 1;
            prop_assert_eq!(tail.records_complete, complete);
        }
    }
}
