//! The files of the exactly-once Kafka sink, in its directory inside the job's checkpoint
//! directory (see [`crate::kafka_txn`] for the protocol).
//!
//! | file name                               | what it holds                                   |
//! |-----------------------------------------|-------------------------------------------------|
//! | `.txn-<epoch:012>-<shard:04>.pending`   | a prepared epoch's records of one shard (redo)  |
//! | `transactional-ids.json`                | the transactional ids of the runs to fence      |
//! | `transactions.jsonl` (`.1` the older)   | one line per transaction committed or aborted   |
//!
//! A pending (redo) file is `SPWTXN01`, a little-endian u32 length and a JSON header
//! ([`RedoHeader`]), the records as frames (u32 key length or `u32::MAX` for no key, the key,
//! u32 value length, the value, i64 timestamp in ms or `i64::MIN` for none), then a trailer:
//! u64 record count and the CRC-32C of the frames.
//!
//! **Invariant:** a pending file is written to a temporary name, fsynced, renamed, and its
//! directory fsynced before its epoch counts as prepared.
//! **Boundary:** the transaction log is bounded: past [`TXN_LOG_BYTES_MAX`] it is rotated,
//! one older file kept.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::epoch_files::sync_dir;
use crate::error::{ConnectorError, Result};
use crate::io_retry::retry_interrupted;

const REDO_MAGIC: &[u8; 8] = b"SPWTXN01";
/// Size of the transaction log at which it is rotated.
pub const TXN_LOG_BYTES_MAX: u64 = 16 << 20;
/// Largest redo header accepted when reading (it names a few hundred partitions at most).
const REDO_HEADER_BYTES_MAX: usize = 1 << 20;
/// The transaction log's file name.
pub const TXN_LOG_FILE: &str = "transactions.jsonl";
const TXN_LOG_OLD_FILE: &str = "transactions.1.jsonl";
const IDS_FILE: &str = "transactional-ids.json";

/// Appends one record to `frames`.
pub fn push_frame(frames: &mut Vec<u8>, key: Option<&[u8]>, value: &[u8], ts: Option<i64>) {
    match key {
        Some(k) => {
            frames.extend_from_slice(&(k.len() as u32).to_le_bytes());
            frames.extend_from_slice(k);
        }
        None => frames.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
    frames.extend_from_slice(&(value.len() as u32).to_le_bytes());
    frames.extend_from_slice(value);
    frames.extend_from_slice(&ts.unwrap_or(i64::MIN).to_le_bytes());
}

/// One record read back from frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub timestamp_ms: Option<i64>,
}

/// Reads the frame at `*pos` of `frames` and advances `pos`; `None` at the end, an error on a
/// truncated frame.
pub fn next_frame<'a>(frames: &'a [u8], pos: &mut usize) -> Result<Option<Frame<'a>>> {
    if *pos >= frames.len() {
        return Ok(None);
    }
    let start = *pos;
    let mut take = |n: usize| -> Result<&'a [u8]> {
        let bytes = frames.get(*pos..*pos + n).ok_or_else(|| {
            ConnectorError::Internal(format!("a record frame at byte {start} is cut"))
        })?;
        *pos += n;
        Ok(bytes)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let key_len = u32_at(take(4)?);
    let key = if key_len == u32::MAX {
        None
    } else {
        Some(take(key_len as usize)?)
    };
    let value_len = u32_at(take(4)?) as usize;
    let value = take(value_len)?;
    let ts = take(8)?;
    let ts = i64::from_le_bytes([ts[0], ts[1], ts[2], ts[3], ts[4], ts[5], ts[6], ts[7]]);
    Ok(Some(Frame {
        key,
        value,
        timestamp_ms: (ts != i64::MIN).then_some(ts),
    }))
}

/// What a redo file says about its transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedoHeader {
    /// The checkpoint epoch of the records.
    pub epoch: u64,
    /// The shard that wrote them.
    pub shard: usize,
    /// The run (checkpoint generation) that wrote them.
    pub attempt: u64,
    /// The transactional id of the shard's producer.
    pub transactional_id: String,
    /// The source partitions of the shard: `(topic, partition)`.
    pub partitions: Vec<(String, i32)>,
}

/// A redo file read back.
#[derive(Debug)]
pub struct Redo {
    pub header: RedoHeader,
    pub records: u64,
    pub frames: Vec<u8>,
}

/// The pending (redo) file name of `epoch` of `shard`.
pub fn pending_name(epoch: u64, shard: usize) -> String {
    format!(".txn-{epoch:012}-{shard:04}.pending")
}

/// `(epoch, shard)` of a pending file name; `None` for other names.
pub fn parse_pending_name(name: &str) -> Option<(u64, usize)> {
    let rest = name.strip_prefix(".txn-")?.strip_suffix(".pending")?;
    let (epoch, shard) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(epoch) || !digits(shard) {
        return None;
    }
    Some((epoch.parse().ok()?, shard.parse().ok()?))
}

/// Writes the redo file of `header.epoch` of `header.shard` into `dir`: temporary file, fsync,
/// rename, fsync of the directory. Returns its path.
pub fn write_redo(dir: &Path, header: &RedoHeader, records: u64, frames: &[u8]) -> Result<PathBuf> {
    let name = pending_name(header.epoch, header.shard);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io_err =
        |what: &str, e: io::Error| ConnectorError::io(format!("{what} '{}'", tmp.display()), e);
    let header_json = serde_json::to_vec(header)
        .map_err(|e| ConnectorError::Internal(format!("redo header: {e}")))?;
    let mut file = File::create(&tmp).map_err(|e| io_err("creating", e))?;
    let mut head = Vec::with_capacity(12 + header_json.len());
    head.extend_from_slice(REDO_MAGIC);
    head.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
    head.extend_from_slice(&header_json);
    let mut tail = Vec::with_capacity(12);
    tail.extend_from_slice(&records.to_le_bytes());
    tail.extend_from_slice(&crc32c::crc32c(frames).to_le_bytes());
    for part in [&head[..], frames, &tail[..]] {
        retry_interrupted(|| file.write_all(part)).map_err(|e| io_err("writing", e))?;
    }
    retry_interrupted(|| file.sync_all()).map_err(|e| io_err("fsyncing", e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| io_err("renaming", e))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Reads and checks a redo file.
pub fn read_redo(path: &Path) -> Result<Redo> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConnectorError::io(format!("reading '{}'", path.display()), e))?;
    let bad = |what: &str| {
        ConnectorError::Internal(format!(
            "the transaction redo file '{}' is damaged: {what}",
            path.display()
        ))
    };
    if bytes.len() < 24 || &bytes[..8] != REDO_MAGIC {
        return Err(bad("no SPWTXN01 header"));
    }
    let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if header_len > REDO_HEADER_BYTES_MAX || 12 + header_len + 12 > bytes.len() {
        return Err(bad("header length out of range"));
    }
    let header: RedoHeader = serde_json::from_slice(&bytes[12..12 + header_len])
        .map_err(|e| bad(&format!("header: {e}")))?;
    let frames_end = bytes.len() - 12;
    let frames = &bytes[12 + header_len..frames_end];
    let tail = &bytes[frames_end..];
    let records = u64::from_le_bytes(tail[..8].try_into().map_err(|_| bad("trailer"))?);
    let crc = u32::from_le_bytes(tail[8..12].try_into().map_err(|_| bad("trailer"))?);
    if crc32c::crc32c(frames) != crc {
        return Err(bad("checksum mismatch"));
    }
    Ok(Redo {
        header,
        records,
        frames: frames.to_vec(),
    })
}

/// The pending files in `dir`: `(epoch, shard, path)`, sorted.
pub fn list_pending(dir: &Path) -> Result<Vec<(u64, usize, PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConnectorError::io(format!("listing '{}'", dir.display()), e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| ConnectorError::io(format!("listing '{}'", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((epoch, shard)) = parse_pending_name(name) {
            found.push((epoch, shard, entry.path()));
        } else if name.starts_with(".txn-") && name.ends_with(".tmp") {
            // A redo file whose writing was cut: its epoch was never prepared.
            let _ = std::fs::remove_file(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// One transactional id in use by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnId {
    pub shard: usize,
    pub attempt: u64,
    pub transactional_id: String,
}

/// The ids recorded by earlier runs (none when the file is missing).
pub fn read_ids(dir: &Path) -> Result<Vec<TxnId>> {
    let path = dir.join(IDS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ConnectorError::Internal(format!("'{}' is damaged: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ConnectorError::io(
            format!("reading '{}'", path.display()),
            e,
        )),
    }
}

/// Replaces the ids file (temporary file, fsync, rename, directory fsync).
pub fn write_ids(dir: &Path, ids: &[TxnId]) -> Result<()> {
    let path = dir.join(IDS_FILE);
    let tmp = dir.join(format!("{IDS_FILE}.tmp"));
    let io_err = |e: io::Error| ConnectorError::io(format!("writing '{}'", tmp.display()), e);
    let json = serde_json::to_vec_pretty(ids)
        .map_err(|e| ConnectorError::Internal(format!("transactional ids: {e}")))?;
    let mut file = File::create(&tmp).map_err(io_err)?;
    retry_interrupted(|| file.write_all(&json)).map_err(io_err)?;
    retry_interrupted(|| file.sync_all()).map_err(io_err)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io_err)?;
    sync_dir(dir)
}

/// What happened to one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Committed,
    Aborted,
}

/// One line of the transaction log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub epoch: u64,
    pub shard: usize,
    pub attempt: u64,
    pub outcome: Outcome,
    /// Records in the transaction, when known.
    pub records: Option<u64>,
    /// How the outcome was reached (e.g. `committed`, `fenced at recovery`, `resent`).
    pub how: String,
}

/// Appends `record` to the log in `dir`, rotating it past [`TXN_LOG_BYTES_MAX`].
pub fn append_log(dir: &Path, record: &TxnRecord) -> Result<()> {
    let path = dir.join(TXN_LOG_FILE);
    let io_err = |e: io::Error| ConnectorError::io(format!("appending to '{}'", path.display()), e);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() >= TXN_LOG_BYTES_MAX) {
        std::fs::rename(&path, dir.join(TXN_LOG_OLD_FILE)).map_err(io_err)?;
    }
    let mut line = serde_json::to_vec(record)
        .map_err(|e| ConnectorError::Internal(format!("transaction log: {e}")))?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err)?;
    retry_interrupted(|| file.write_all(&line)).map_err(io_err)?;
    retry_interrupted(|| file.sync_data()).map_err(io_err)
}

/// Every record of the log in `dir` (the rotated file first). A last line cut by a crash is
/// skipped.
pub fn read_log(dir: &Path) -> Result<Vec<TxnRecord>> {
    let mut records = Vec::new();
    for name in [TXN_LOG_OLD_FILE, TXN_LOG_FILE] {
        let path = dir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ConnectorError::io(
                    format!("reading '{}'", path.display()),
                    e,
                ))
            }
        };
        records.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<TxnRecord>(l).ok()),
        );
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> RedoHeader {
        RedoHeader {
            epoch: 7,
            shard: 1,
            attempt: 3,
            transactional_id: "job-trades-p1.3".into(),
            partitions: vec![("trades".into(), 1), ("trades".into(), 3)],
        }
    }

    proptest! {
        #[test]
        fn frames_round_trip(records in proptest::collection::vec(
            (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
             proptest::collection::vec(any::<u8>(), 0..40),
             proptest::option::of(any::<i64>().prop_filter("not the marker", |t| *t != i64::MIN))),
            0..20)) {
            let mut frames = Vec::new();
            for (k, v, t) in &records {
                push_frame(&mut frames, k.as_deref(), v, *t);
            }
            let (mut pos, mut back) = (0, Vec::new());
            while let Some(f) = next_frame(&frames, &mut pos).expect("frame") {
                back.push((f.key.map(<[u8]>::to_vec), f.value.to_vec(), f.timestamp_ms));
            }
            prop_assert_eq!(back, records);
        }
    }

    #[test]
    fn redo_files_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().expect("dir");
        let mut frames = Vec::new();
        push_frame(&mut frames, Some(b"{\"k\":1}"), b"{\"v\":2}", Some(5));
        push_frame(&mut frames, None, b"{}", None);
        let path = write_redo(dir.path(), &header(), 2, &frames).expect("write");
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some(".txn-000000000007-0001.pending")
        );
        let redo = read_redo(&path).expect("read");
        assert_eq!(
            (redo.header, redo.records, redo.frames),
            (header(), 2, frames.clone())
        );
        assert_eq!(
            list_pending(dir.path()).expect("list"),
            vec![(7, 1, path.clone())]
        );
        let mut bytes = std::fs::read(&path).expect("bytes");
        let n = bytes.len();
        bytes[n - 14] ^= 1; // a flipped bit in the frames
        std::fs::write(&path, &bytes).expect("damage");
        let e = read_redo(&path).expect_err("damaged").to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        let mut pos = 0;
        let cut = &frames[..frames.len() - 3];
        next_frame(cut, &mut pos).expect("first whole");
        assert!(next_frame(cut, &mut pos)
            .expect_err("cut")
            .to_string()
            .contains("is cut"));
        assert_eq!(parse_pending_name(".txn-12-3.pending"), Some((12, 3)));
        assert_eq!(parse_pending_name(".txn--3.pending"), None);
    }

    #[test]
    fn ids_and_log_round_trip() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(read_ids(dir.path()).expect("none").is_empty());
        let ids = vec![TxnId {
            shard: 0,
            attempt: 2,
            transactional_id: "x".into(),
        }];
        write_ids(dir.path(), &ids).expect("write");
        assert_eq!(read_ids(dir.path()).expect("read"), ids);
        let rec = TxnRecord {
            epoch: 4,
            shard: 0,
            attempt: 2,
            outcome: Outcome::Aborted,
            records: None,
            how: "fenced at recovery".into(),
        };
        append_log(dir.path(), &rec).expect("append");
        std::fs::write(
            dir.path().join(TXN_LOG_FILE),
            format!(
                "{}\n{{\"epoch\":",
                serde_json::to_string(&rec).expect("json")
            ),
        )
        .expect("cut line");
        assert_eq!(read_log(dir.path()).expect("log"), vec![rec]);
    }
}
