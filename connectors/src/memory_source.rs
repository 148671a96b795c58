//! A bounded source over in-memory buffers of JSON lines (for the in-memory benchmark).
//!
//! Each buffer is one partition; a record is a non-empty line (a trailing `\r` removed) and
//! its offset is its index among the partition's records. Reading copies each record once,
//! into the `RawBatch`. A source takes runs of [`MEMORY_RUN_RECORDS_MAX`] records from its
//! partitions in turn, so no partition runs far ahead of the others in event time.

use std::sync::Arc;

use crate::error::{ConnectorError, Result};
use crate::{PartitionInfo, RawBatch, Source, SourceFactory, SourceStatus};

/// Records taken from one partition before the next partition's turn.
pub const MEMORY_RUN_RECORDS_MAX: usize = 1024;

/// Builds sources over in-memory buffers.
pub struct MemorySourceFactory {
    name: String,
    partitions: Vec<Arc<Vec<u8>>>,
}

impl MemorySourceFactory {
    /// A source named `name` (the partitions' topic) with one partition per buffer; each
    /// buffer holds newline-separated JSON records.
    pub fn new(name: impl Into<String>, partitions: Vec<Arc<Vec<u8>>>) -> Self {
        MemorySourceFactory {
            name: name.into(),
            partitions,
        }
    }
}

impl SourceFactory for MemorySourceFactory {
    fn discover(&self) -> Result<Vec<PartitionInfo>> {
        Ok((0..self.partitions.len())
            .map(|i| PartitionInfo {
                topic: self.name.clone(),
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
        if resume.as_ref().is_some_and(|r| r.len() != partitions.len()) {
            return Err(ConnectorError::Internal(format!(
                "memory source '{}': resume offsets do not match the {} partitions",
                self.name,
                partitions.len()
            )));
        }
        let mut readers = Vec::with_capacity(partitions.len());
        for (i, p) in partitions.iter().enumerate() {
            let buffer = usize::try_from(p.partition)
                .ok()
                .filter(|_| p.topic == self.name)
                .and_then(|n| self.partitions.get(n))
                .ok_or_else(|| {
                    ConnectorError::Internal(format!(
                        "memory source '{}' has no partition {} of '{}'",
                        self.name, p.partition, p.topic
                    ))
                })?;
            let mut reader = Reader {
                buffer: Arc::clone(buffer),
                pos: 0,
                next_offset: 0,
                ended: false,
            };
            if let Some(resume) = &resume {
                let target = resume[i];
                while reader.next_offset < target && reader.next_record().is_some() {}
                if reader.next_offset != target {
                    return Err(ConnectorError::Internal(format!(
                        "memory source '{}': cannot resume partition {} at record {target}: \
                         it has {} records",
                        self.name, p.partition, reader.next_offset
                    )));
                }
            }
            readers.push(reader);
        }
        Ok(Box::new(MemorySource {
            partitions,
            readers,
            turn: 0,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "memory source '{}' ({} partitions, bounded)",
            self.name,
            self.partitions.len()
        )
    }
}

/// The read position in one partition's buffer.
struct Reader {
    buffer: Arc<Vec<u8>>,
    /// Byte position of the next line.
    pos: usize,
    /// Index of the next record.
    next_offset: i64,
    /// The end was reported.
    ended: bool,
}

impl Reader {
    /// The span of the next record (skipping empty lines), advancing past it.
    fn next_record(&mut self) -> Option<(usize, usize)> {
        let data = &self.buffer[..];
        while self.pos < data.len() {
            let start = self.pos;
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            self.pos = end + 1;
            let end = if end > start && data[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            if end > start {
                self.next_offset += 1;
                return Some((start, end));
            }
        }
        None
    }
}

struct MemorySource {
    partitions: Vec<PartitionInfo>,
    readers: Vec<Reader>,
    /// The partition whose turn it is.
    turn: usize,
}

impl Source for MemorySource {
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
        let mut open = self.readers.iter().filter(|r| !r.ended).count();
        while open > 0 && out.len() - records_start < records_max {
            let index = self.turn % self.readers.len();
            self.turn = self.turn.wrapping_add(1);
            let reader = &mut self.readers[index];
            if reader.ended {
                continue;
            }
            let mut run = 0;
            while run < MEMORY_RUN_RECORDS_MAX
                && out.len() - records_start < records_max
                && out.bytes() - bytes_start < bytes_max
            {
                let offset = reader.next_offset;
                match reader.next_record() {
                    Some((start, end)) => {
                        out.push(index as u32, offset, &reader.buffer[start..end]);
                        run += 1;
                    }
                    None => {
                        reader.ended = true;
                        out.ended.push(index as u32);
                        open -= 1;
                        break;
                    }
                }
            }
            if out.bytes() - bytes_start >= bytes_max {
                break;
            }
        }
        Ok(if out.len() > records_start {
            SourceStatus::Data
        } else if open == 0 {
            SourceStatus::Finished
        } else {
            SourceStatus::Idle
        })
    }

    fn position(&self, index: u32) -> i64 {
        self.readers
            .get(index as usize)
            .map_or(0, |r| r.next_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factory() -> MemorySourceFactory {
        let p0: Vec<u8> = (0..3000)
            .flat_map(|i| format!("{{\"p\":0,\"i\":{i}}}\n").into_bytes())
            .collect();
        let p1 = b"{\"p\":1,\"i\":0}\n\n{\"p\":1,\"i\":1}\r\n{\"p\":1,\"i\":2}".to_vec();
        MemorySourceFactory::new(
            "mem",
            vec![Arc::new(p0), Arc::new(p1), Arc::new(Vec::new())],
        )
    }

    /// Polls to the end; returns (partition, offset, record) and the ended partitions.
    fn drain(source: &mut dyn Source, records_max: usize) -> (Vec<(u32, i64, String)>, Vec<u32>) {
        let mut batch = RawBatch::default();
        let mut records = Vec::new();
        let mut ended = Vec::new();
        for _ in 0..100_000 {
            batch.clear();
            let status = source.poll(&mut batch, records_max, 1 << 20).expect("poll");
            ended.extend_from_slice(&batch.ended);
            for i in 0..batch.len() {
                let (a, b) = batch.span(i);
                let text = String::from_utf8(batch.data[a..b].to_vec()).expect("utf8");
                records.push((batch.partition[i], batch.offset[i], text));
            }
            if status == SourceStatus::Finished {
                return (records, ended);
            }
        }
        panic!("the memory source never finished");
    }

    #[test]
    fn offsets_are_record_indexes_per_partition() {
        let f = factory();
        let parts = f.discover().expect("discover");
        assert_eq!(parts.len(), 3);
        let mut source = f.open(0, parts, None).expect("open");
        let (records, mut ended) = drain(source.as_mut(), 700);
        ended.sort();
        assert_eq!(ended, vec![0, 1, 2]);
        assert_eq!(records.len(), 3003);
        for (p, offset, text) in &records {
            assert_eq!(text, &format!("{{\"p\":{p},\"i\":{offset}}}"));
        }
        // Partition 1 is not held back until partition 0 is done.
        let first_p1 = records.iter().position(|r| r.0 == 1).expect("p1 read");
        assert!(
            first_p1 <= MEMORY_RUN_RECORDS_MAX,
            "p1 first read at {first_p1}"
        );
        assert_eq!(source.position(0), 3000);
        assert_eq!(source.position(1), 3);
    }

    #[test]
    fn resume_skips_the_records_already_read() {
        let f = factory();
        let parts: Vec<PartitionInfo> = f
            .discover()
            .expect("discover")
            .into_iter()
            .take(2)
            .collect();
        let mut source = f.open(1, parts.clone(), Some(vec![2990, 2])).expect("open");
        let (records, _) = drain(source.as_mut(), 5);
        let got: Vec<(u32, i64)> = records.iter().map(|r| (r.0, r.1)).collect();
        let mut want: Vec<(u32, i64)> = (2990..3000).map(|i| (0, i)).collect();
        want.push((1, 2));
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want);
        assert!(f.open(1, parts, Some(vec![0, 4])).is_err(), "past the end");
    }
}
