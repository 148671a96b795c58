//! The `filesystem` source: a bounded read of a JSON-lines file, cut into splits.
//!
//! `discover` cuts the file into `min(splits_max, ceil(size / 4 MiB))` (at least 1) byte
//! ranges whose boundaries are moved forward to line starts, so every line belongs to exactly
//! one split (the one it starts in). A source reads its splits one after the other through one
//! reused buffer, positional reads (`pread`) and `memchr` for the line ends.
//!
//! A record's offset is the byte offset of its line in the file; a split's position is the
//! byte offset of the first line not yet delivered, which is what `resume` takes back.
//! Empty lines (also `\r\n` ones) are skipped; a trailing `\r` is removed; a line longer than
//! `source.record-bytes-max` is skipped and counted without being buffered whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use crate::error::{ConnectorError, Result};
use crate::{PartitionInfo, RawBatch, Source, SourceFactory, SourceStatus};

/// Options the filesystem source accepts.
pub const FILE_SOURCE_OPTIONS: &[&str] =
    &["connector", "path", "format", "source.record-bytes-max"];
/// Default of `source.record-bytes-max`.
pub const RECORD_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Largest accepted `source.record-bytes-max` (the read buffer holds one whole record).
pub const RECORD_BYTES_MAX_LIMIT: usize = 1 << 30;

/// Option `source.record-bytes-max` of a file table (default [`RECORD_BYTES_MAX_DEFAULT`],
/// at most [`RECORD_BYTES_MAX_LIMIT`]).
pub fn record_bytes_max_option(
    table: &str,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<usize> {
    let Some(v) = options.get("source.record-bytes-max") else {
        return Ok(RECORD_BYTES_MAX_DEFAULT);
    };
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=RECORD_BYTES_MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ConnectorError::config(
            table,
            format!(
                "option 'source.record-bytes-max' = '{v}' must be a number of bytes from 1 to \
                 {RECORD_BYTES_MAX_LIMIT}"
            ),
        )),
    }
}
/// A file gets one split per this many bytes (up to `splits_max`).
pub const SPLIT_BYTES_NOMINAL: u64 = 4 << 20;
/// Size of a source's read buffer (larger when `source.record-bytes-max` needs it).
pub const READ_BUFFER_BYTES: usize = 1 << 20;
/// Size of the reads that look for the line start of a split boundary.
const BOUNDARY_SCAN_BYTES: usize = 64 << 10;

/// Byte ranges `[start, end)` of a file's splits, in split order.
type SplitRanges = Arc<Vec<(u64, u64)>>;

/// Builds the sources of one `filesystem` table.
pub struct FileSourceFactory {
    table: String,
    /// The `path` option as written (the partitions' topic).
    path: String,
    record_bytes_max: usize,
    splits_max: usize,
    /// Size of each source's read buffer (at least `record_bytes_max + 2`).
    read_buffer_bytes: usize,
    /// Byte ranges of the splits, computed once (by `discover` or the first `open`).
    splits: Mutex<Option<SplitRanges>>,
}

impl FileSourceFactory {
    /// Reads the options of table `table`; `splits_max` (usually the shard count) bounds the
    /// number of splits. The file itself is first looked at by `discover`.
    pub fn from_options(
        table: &str,
        options: &BTreeMap<String, String>,
        splits_max: usize,
    ) -> Result<Self> {
        crate::table_options::check_options(
            table,
            options,
            "filesystem",
            "source",
            FILE_SOURCE_OPTIONS,
        )?;
        let path = match options.get("path").map(|p| p.trim()) {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => {
                return Err(ConnectorError::config(
                    table,
                    "option 'path' (the JSON-lines file to read) is required by connector \
                     'filesystem'",
                ))
            }
        };
        let record_bytes_max = record_bytes_max_option(table, options)?;
        Ok(FileSourceFactory {
            table: table.to_string(),
            path,
            record_bytes_max,
            splits_max: splits_max.max(1),
            read_buffer_bytes: READ_BUFFER_BYTES,
            splits: Mutex::new(None),
        })
    }

    /// The byte ranges of the splits (computed on first use).
    fn split_ranges(&self) -> Result<SplitRanges> {
        let mut cached = self.splits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ranges) = cached.as_ref() {
            return Ok(Arc::clone(ranges));
        }
        let file = open_file(&self.table, &self.path)?;
        let size = file
            .metadata()
            .map_err(|e| io_error(&self.table, &self.path, "cannot read the size of", e))?
            .len();
        let ranges = Arc::new(
            compute_splits(&file, size, self.splits_max)
                .map_err(|e| io_error(&self.table, &self.path, "cannot read", e))?,
        );
        *cached = Some(Arc::clone(&ranges));
        Ok(ranges)
    }
}

fn io_error(table: &str, path: &str, what: &str, e: std::io::Error) -> ConnectorError {
    ConnectorError::io(format!("table '{table}': {what} the file '{path}'"), e)
}

fn open_file(table: &str, path: &str) -> Result<File> {
    let file = File::open(path).map_err(|e| io_error(table, path, "cannot open", e))?;
    let metadata = file
        .metadata()
        .map_err(|e| io_error(table, path, "cannot read the metadata of", e))?;
    if metadata.is_dir() {
        return Err(ConnectorError::config(
            table,
            format!("'path' = '{path}' is a directory; the filesystem source reads one file"),
        ));
    }
    Ok(file)
}

/// Cuts `[0, size)` into `min(splits_max, ceil(size / SPLIT_BYTES_NOMINAL))` (at least one)
/// ranges whose starts are line starts. Ranges may be empty when lines are long.
pub fn compute_splits(
    file: &File,
    size: u64,
    splits_max: usize,
) -> std::io::Result<Vec<(u64, u64)>> {
    compute_splits_with(
        file,
        size,
        splits_max,
        SPLIT_BYTES_NOMINAL,
        BOUNDARY_SCAN_BYTES,
    )
}

/// [`compute_splits`] with the nominal split size and the scan read size given (for tests).
fn compute_splits_with(
    file: &File,
    size: u64,
    splits_max: usize,
    split_bytes: u64,
    scan_bytes: usize,
) -> std::io::Result<Vec<(u64, u64)>> {
    let wanted = size
        .div_ceil(split_bytes.max(1))
        .clamp(1, splits_max.max(1) as u64);
    let mut starts = vec![0u64];
    let mut scan = vec![0u8; scan_bytes.max(1)];
    for i in 1..wanted {
        let nominal = (size as u128 * i as u128 / wanted as u128) as u64;
        let previous = *starts.last().unwrap_or(&0);
        let start = if nominal <= previous {
            previous
        } else {
            next_line_start(file, nominal, size, &mut scan)?
        };
        starts.push(start.max(previous));
    }
    let mut ranges = Vec::with_capacity(starts.len());
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(size);
        ranges.push((start, end));
    }
    Ok(ranges)
}

/// The first line start at or after `pos` (0 < pos <= size): just after the first `\n` at
/// or after `pos - 1`, or `size`.
fn next_line_start(file: &File, pos: u64, size: u64, scan: &mut [u8]) -> std::io::Result<u64> {
    let mut at = pos - 1;
    while at < size {
        let want = scan.len().min((size - at) as usize);
        let n = file.read_at(&mut scan[..want], at)?;
        if n == 0 {
            break;
        }
        if let Some(i) = memchr::memchr(b'\n', &scan[..n]) {
            return Ok(at + i as u64 + 1);
        }
        at += n as u64;
    }
    Ok(size)
}

impl SourceFactory for FileSourceFactory {
    fn discover(&self) -> Result<Vec<PartitionInfo>> {
        let ranges = self.split_ranges()?;
        Ok((0..ranges.len())
            .map(|i| PartitionInfo {
                topic: self.path.clone(),
                partition: i as i32,
            })
            .collect())
    }

    fn open(
        &self,
        _shard: usize,
        partitions: Vec<PartitionInfo>,
        resume: Option<Vec<i64>>,
    ) -> Result<Box<dyn Source>> {
        let ranges = self.split_ranges()?;
        if let Some(offsets) = &resume {
            if offsets.len() != partitions.len() {
                return Err(ConnectorError::Internal(format!(
                    "table '{}': {} resume offsets for {} splits",
                    self.table,
                    offsets.len(),
                    partitions.len()
                )));
            }
        }
        let mut splits = Vec::with_capacity(partitions.len());
        for (i, p) in partitions.iter().enumerate() {
            let range = usize::try_from(p.partition)
                .ok()
                .filter(|_| p.topic == self.path)
                .and_then(|s| ranges.get(s));
            let Some(&(start, end)) = range else {
                return Err(ConnectorError::Internal(format!(
                    "table '{}': split {} of '{}' is not one of the {} splits of '{}'",
                    self.table,
                    p.partition,
                    p.topic,
                    ranges.len(),
                    self.path
                )));
            };
            let next = match resume.as_ref().map(|r| r[i]) {
                None => start,
                Some(offset) if offset >= start as i64 && offset <= end as i64 => offset as u64,
                Some(offset) => {
                    return Err(ConnectorError::config(
                        &self.table,
                        format!(
                            "cannot resume split {} of '{}' at byte {offset}: the split now \
                             covers bytes {start}..{end} (did the file or the number of \
                             splits change since the checkpoint?)",
                            p.partition, self.path
                        ),
                    ))
                }
            };
            splits.push(Split { end, next });
        }
        let file = open_file(&self.table, &self.path)?;
        let buffer_bytes = self.read_buffer_bytes.max(self.record_bytes_max + 2);
        let read_pos = splits.first().map_or(0, |s| s.next);
        Ok(Box::new(FileSource {
            table: self.table.clone(),
            path: self.path.clone(),
            file,
            partitions,
            splits,
            current: 0,
            buffer: vec![0u8; buffer_bytes],
            buffer_pos: 0,
            buffer_len: 0,
            read_pos,
            skipped_bytes: 0,
            record_bytes_max: self.record_bytes_max,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "filesystem file '{}' (JSON lines, up to {} splits), bounded",
            self.path, self.splits_max
        )
    }
}

/// One split being read.
#[derive(Debug, Clone, Copy)]
struct Split {
    /// End (exclusive) of the split in the file.
    end: u64,
    /// Byte offset of the first line not yet delivered or skipped.
    next: u64,
}

/// Reads a set of splits of one file, one after the other.
struct FileSource {
    table: String,
    path: String,
    file: File,
    partitions: Vec<PartitionInfo>,
    splits: Vec<Split>,
    /// Index of the split being read; `splits.len()` when all are done.
    current: usize,
    /// The read buffer; its length is its fixed size.
    buffer: Vec<u8>,
    /// Unconsumed bytes are `buffer[buffer_pos..buffer_len]`.
    buffer_pos: usize,
    buffer_len: usize,
    /// File offset of `buffer[buffer_len]`: the next byte to read.
    read_pos: u64,
    /// When > 0, an oversized line is being skipped and this many of its bytes were dropped.
    /// Invariant: `buffer[buffer_pos]` is at file offset `next + skipped_bytes` of the split.
    skipped_bytes: u64,
    record_bytes_max: usize,
}

impl FileSource {
    /// Delivers (or skips) one complete line `buffer[buffer_pos..buffer_pos + len]` that
    /// starts at the current split's `next`, and consumes it plus `terminator` bytes.
    fn take_line(&mut self, out: &mut RawBatch, len: usize, terminator: usize) {
        let split = &mut self.splits[self.current];
        if self.skipped_bytes > 0 {
            // The end of an oversized line (already counted).
            split.next += self.skipped_bytes;
            self.skipped_bytes = 0;
        } else {
            let mut line = &self.buffer[self.buffer_pos..self.buffer_pos + len];
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            if line.len() > self.record_bytes_max {
                out.oversized += 1;
            } else if !line.is_empty() {
                out.push(self.current as u32, split.next as i64, line);
            }
        }
        split.next += (len + terminator) as u64;
        self.buffer_pos += len + terminator;
    }

    /// Ends the current split and moves to the next one.
    fn end_split(&mut self, out: &mut RawBatch) {
        out.ended.push(self.current as u32);
        self.current += 1;
        self.buffer_pos = 0;
        self.buffer_len = 0;
        self.skipped_bytes = 0;
        if let Some(split) = self.splits.get(self.current) {
            self.read_pos = split.next;
        }
    }

    /// Makes room in the buffer and reads more of the current split. The partial line at
    /// `buffer_pos` is kept, or dropped (and counted once) when it is already too long.
    fn refill(&mut self, out: &mut RawBatch) -> Result<()> {
        let split_end = self.splits[self.current].end;
        let pending = self.buffer_len - self.buffer_pos;
        if self.skipped_bytes > 0 || pending > self.record_bytes_max + 1 {
            if self.skipped_bytes == 0 {
                out.oversized += 1;
            }
            self.skipped_bytes += pending as u64;
            self.buffer_len = 0;
        } else {
            self.buffer.copy_within(self.buffer_pos..self.buffer_len, 0);
            self.buffer_len = pending;
        }
        self.buffer_pos = 0;
        let room = self.buffer.len() - self.buffer_len;
        let want = room.min((split_end - self.read_pos) as usize);
        debug_assert!(want > 0, "refill with a full buffer or at the split end");
        let n = self
            .file
            .read_at(
                &mut self.buffer[self.buffer_len..self.buffer_len + want],
                self.read_pos,
            )
            .map_err(|e| io_error(&self.table, &self.path, "cannot read", e))?;
        if n == 0 {
            return Err(ConnectorError::io(
                format!(
                    "table '{}': the file '{}' ended at byte {} although it had {} bytes at \
                     the start (was it truncated while being read?)",
                    self.table, self.path, self.read_pos, split_end
                ),
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        self.buffer_len += n;
        self.read_pos += n as u64;
        Ok(())
    }
}

impl Source for FileSource {
    fn partitions(&self) -> &[PartitionInfo] {
        &self.partitions
    }

    fn poll(
        &mut self,
        out: &mut RawBatch,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<SourceStatus> {
        let records_start = out.len();
        let bytes_start = out.bytes();
        while self.current < self.splits.len()
            && out.len() - records_start < records_max
            && out.bytes() - bytes_start < bytes_max
        {
            let unread = &self.buffer[self.buffer_pos..self.buffer_len];
            if let Some(len) = memchr::memchr(b'\n', unread) {
                self.take_line(out, len, 1);
            } else if self.read_pos >= self.splits[self.current].end {
                // The split's last line has no newline (the end of the file).
                let len = unread.len();
                if len > 0 {
                    self.take_line(out, len, 0);
                }
                self.end_split(out);
            } else {
                self.refill(out)?;
            }
        }
        Ok(if out.len() > records_start {
            SourceStatus::Data
        } else if self.current >= self.splits.len() {
            SourceStatus::Finished
        } else {
            SourceStatus::Idle
        })
    }

    fn position(&self, index: u32) -> i64 {
        self.splits.get(index as usize).map_or(0, |s| s.next as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn options(path: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut o: BTreeMap<String, String> = [("connector", "filesystem"), ("path", path)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in extra {
            o.insert(k.to_string(), v.to_string());
        }
        o
    }

    fn write_file(content: &[u8]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(content))
            .expect("write");
        let path = path.to_str().expect("utf8 path").to_string();
        (dir, path)
    }

    /// Reads every split with several sources; returns (offset, record) and the oversized
    /// count, checking `ended` and `Finished`.
    fn read_all(
        factory: &FileSourceFactory,
        sources: usize,
        records_max: usize,
    ) -> (Vec<(i64, Vec<u8>)>, u64) {
        let parts = factory.discover().expect("discover");
        let mut records = Vec::new();
        let mut oversized = 0;
        for s in 0..sources {
            let mine: Vec<PartitionInfo> = parts.iter().skip(s).step_by(sources).cloned().collect();
            let count = mine.len();
            let mut source = factory.open(s, mine, None).expect("open");
            let mut batch = RawBatch::default();
            let mut ended = Vec::new();
            let mut polls = 0;
            loop {
                batch.clear();
                let status = source.poll(&mut batch, records_max, 1 << 20).expect("poll");
                ended.extend_from_slice(&batch.ended);
                oversized += batch.oversized;
                for i in 0..batch.len() {
                    let (a, b) = batch.span(i);
                    assert_eq!(
                        source.partitions()[batch.partition[i] as usize].topic,
                        factory.path
                    );
                    records.push((batch.offset[i], batch.data[a..b].to_vec()));
                }
                if status == SourceStatus::Finished {
                    assert!(batch.is_empty());
                    break;
                }
                polls += 1;
                assert!(polls < 1_000_000, "source never finishes");
            }
            let expected_ended: Vec<u32> = (0..count as u32).collect();
            assert_eq!(ended, expected_ended, "each split ends once, in order");
        }
        records.sort();
        (records, oversized)
    }

    /// The expected records of `content`: non-empty lines (trailing '\r' removed) and offsets.
    fn expected(content: &[u8], record_bytes_max: usize) -> (Vec<(i64, Vec<u8>)>, u64) {
        let mut records = Vec::new();
        let mut oversized = 0;
        let mut offset = 0usize;
        for raw in content.split(|&b| b == b'\n') {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line.len() > record_bytes_max {
                oversized += 1;
            } else if !line.is_empty() {
                records.push((offset as i64, line.to_vec()));
            }
            offset += raw.len() + 1;
        }
        (records, oversized)
    }

    #[test]
    fn reads_lines_with_byte_offsets() {
        let (_dir, path) = write_file(b"{\"a\":1}\n\n{\"a\":2}\r\n{\"a\":3}");
        let factory = FileSourceFactory::from_options("t", &options(&path, &[]), 4).expect("opts");
        let (records, oversized) = read_all(&factory, 1, 100);
        assert_eq!(oversized, 0);
        let expected: Vec<(i64, Vec<u8>)> = vec![
            (0, b"{\"a\":1}".to_vec()),
            (9, b"{\"a\":2}".to_vec()),
            (18, b"{\"a\":3}".to_vec()),
        ];
        assert_eq!(records, expected);
    }

    #[test]
    fn oversized_lines_are_skipped_and_counted() {
        let mut content = Vec::new();
        content.extend_from_slice(b"short\n");
        content.extend(std::iter::repeat_n(b'x', 3 * READ_BUFFER_BYTES));
        content.extend_from_slice(b"\nok\n");
        content.extend(std::iter::repeat_n(b'y', 40));
        content.extend_from_slice(b"\nlast-");
        content.extend(std::iter::repeat_n(b'z', 3 * READ_BUFFER_BYTES));
        let (_dir, path) = write_file(&content);
        let opts = options(&path, &[("source.record-bytes-max", "32")]);
        let factory = FileSourceFactory::from_options("t", &opts, 1).expect("opts");
        let (records, oversized) = read_all(&factory, 1, 7);
        assert_eq!(oversized, 3);
        let ok_offset = 6 + 3 * READ_BUFFER_BYTES as i64 + 1;
        assert_eq!(
            records,
            vec![(0, b"short".to_vec()), (ok_offset, b"ok".to_vec())]
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let factory =
            FileSourceFactory::from_options("t", &options("/nonexistent/spillway.jsonl", &[]), 2)
                .expect("options are fine");
        let err = factory.discover().expect_err("missing file");
        assert!(
            err.to_string().contains("/nonexistent/spillway.jsonl"),
            "{err}"
        );
    }

    #[test]
    fn options_are_checked() {
        let err = FileSourceFactory::from_options("t", &options("x", &[("pth", "y")]), 1)
            .err()
            .expect("unknown key");
        let text = err.to_string();
        assert!(
            text.contains("'pth'") && text.contains("source.record-bytes-max"),
            "{text}"
        );
        let mut no_path = options("x", &[]);
        no_path.remove("path");
        assert!(FileSourceFactory::from_options("t", &no_path, 1).is_err());
        let csv = options("x", &[("format", "csv")]);
        assert!(FileSourceFactory::from_options("t", &csv, 1).is_err());
        let bad = options("x", &[("source.record-bytes-max", "lots")]);
        assert!(FileSourceFactory::from_options("t", &bad, 1).is_err());
    }

    #[test]
    fn resume_continues_from_the_position() {
        let mut content = Vec::new();
        for i in 0..10_000 {
            content.extend_from_slice(format!("{{\"i\":{i}}}\n").as_bytes());
        }
        let (_dir, path) = write_file(&content);
        let factory = FileSourceFactory::from_options("t", &options(&path, &[]), 1).expect("opts");
        let parts = factory.discover().expect("discover");
        let mut source = factory.open(0, parts.clone(), None).expect("open");
        let mut batch = RawBatch::default();
        assert_eq!(
            source.poll(&mut batch, 100, 1 << 20).expect("poll"),
            SourceStatus::Data
        );
        assert_eq!(batch.len(), 100);
        let position = source.position(0);
        let (a, b) = batch.span(99);
        assert_eq!(position, batch.offset[99] + (b - a) as i64 + 1);
        let mut resumed = factory
            .open(0, parts, Some(vec![position]))
            .expect("resume");
        batch.clear();
        resumed.poll(&mut batch, 1, 1 << 20).expect("poll");
        assert_eq!(batch.offset, vec![position]);
        assert_eq!(&batch.data[..], b"{\"i\":100}");
    }

    #[test]
    fn large_file_gets_several_splits_bounded_by_splits_max() {
        let line = b"{\"symbol\":\"SYM001\",\"price\":1.25,\"volume\":3,\"ts\":1}\n";
        let content: Vec<u8> = line.repeat((9 << 20) / line.len());
        let (_dir, path) = write_file(&content);
        let many = FileSourceFactory::from_options("t", &options(&path, &[]), 16).expect("opts");
        assert_eq!(many.discover().expect("discover").len(), 3);
        let two = FileSourceFactory::from_options("t", &options(&path, &[]), 2).expect("opts");
        assert_eq!(two.discover().expect("discover").len(), 2);
        let (records, _) = read_all(&many, 2, 10_000);
        assert_eq!(records, expected(&content, RECORD_BYTES_MAX_DEFAULT).0);
    }

    fn content_strategy() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            3 => 0usize..40,
            1 => 0usize..3,
            1 => 60usize..200,
        ];
        (
            proptest::collection::vec((line, any::<bool>()), 0..200),
            any::<bool>(),
        )
            .prop_map(|(lines, final_newline)| {
                let mut out = Vec::new();
                for (i, (len, crlf)) in lines.iter().enumerate() {
                    out.extend((0..*len).map(|j| b'a' + ((i + j) % 26) as u8));
                    if *crlf {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                }
                if !final_newline && out.last() == Some(&b'\n') {
                    out.pop();
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn splits_cover_every_line_exactly_once(
            content in content_strategy(),
            splits_max in 1usize..9,
            sources in 1usize..4,
            records_max in 1usize..50,
            record_bytes_max in prop_oneof![Just(1usize << 20), 20usize..100],
            read_buffer_bytes in prop_oneof![Just(READ_BUFFER_BYTES), 1usize..300],
        ) {
            let (_dir, path) = write_file(&content);
            let file = File::open(&path).expect("open");
            let size = content.len() as u64;
            // The real cut is one split for a small file; cut it into tiny splits (and scan
            // for line starts in tiny reads) to exercise the boundaries.
            let ranges = compute_splits(&file, size, splits_max).expect("splits");
            prop_assert_eq!(ranges, vec![(0, size)]);
            let tiny = compute_splits_with(&file, size, splits_max, 64, 5).expect("splits");
            prop_assert_eq!(tiny.len() as u64, size.div_ceil(64).clamp(1, splits_max as u64));
            for (i, &(start, end)) in tiny.iter().enumerate() {
                prop_assert!(start <= end);
                prop_assert!(start == 0 || start == size || content[start as usize - 1] == b'\n');
                prop_assert_eq!(end, tiny.get(i + 1).map_or(size, |r| r.0));
            }
            let limit = record_bytes_max.to_string();
            let opts = options(&path, &[("source.record-bytes-max", &limit)]);
            let factory = FileSourceFactory::from_options("t", &opts, splits_max).expect("opts");
            *factory.splits.lock().expect("lock") = Some(Arc::new(tiny));
            let mut factory = factory;
            factory.read_buffer_bytes = read_buffer_bytes;
            let (records, oversized) = read_all(&factory, sources, records_max);
            let (want, want_oversized) = expected(&content, record_bytes_max);
            prop_assert_eq!(records, want);
            prop_assert_eq!(oversized, want_oversized);
        }
    }
}
