//! The `filesystem` changelog of a dimension table: a JSON-lines file read whole by every
//! shard, then followed for appended lines while the job runs.
//!
//! Options: `connector` = 'filesystem', `path`, `format` = 'json', `source.record-bytes-max`
//! (default 1 MiB; longer lines are skipped and counted). Each line is a row; a later line
//! with the same key replaces an earlier one, and a line with `"__deleted": true` deletes its
//! key (the engine's rule, see `crate::dimension_changelog`). Lines are delivered once their
//! `\n` is written (append whole lines); only the last line of the content present at start
//! may lack it. The start-up catch-up is done once the reader passed the file's size at open.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crate::dimension_changelog::{
    ChangelogBatch, ChangelogSource, ChangelogSourceFactory, TIME_NONE,
};
use crate::error::{ConnectorError, Result};
use crate::file_source::record_bytes_max_option;

/// Options a `filesystem` dimension table accepts.
pub const FILE_CHANGELOG_OPTIONS: &[&str] =
    &["connector", "path", "format", "source.record-bytes-max"];
/// Size of a reader's reads (larger when `source.record-bytes-max` needs it).
const READ_CHUNK_BYTES: usize = 256 << 10;
/// After the catch-up, how often a reader looks for appended lines.
const GROWTH_CHECK_INTERVAL_MS: u64 = 100;

/// Builds the changelog readers of one `filesystem` dimension table.
#[derive(Debug, Clone)]
pub struct FileChangelogFactory {
    table: String,
    path: String,
    record_bytes_max: usize,
}

impl FileChangelogFactory {
    /// Checks the options (the file is checked by [`ChangelogSourceFactory::check`]).
    pub fn from_options(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        crate::table_options::check_options(
            table,
            options,
            "filesystem",
            "dimension table",
            FILE_CHANGELOG_OPTIONS,
        )?;
        let path = match options.get("path").map(|p| p.trim()) {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => {
                return Err(ConnectorError::config(
                    table,
                    "option 'path' (the JSON-lines file of the dimension table) is required",
                ))
            }
        };
        let record_bytes_max = record_bytes_max_option(table, options)?;
        Ok(FileChangelogFactory {
            table: table.to_string(),
            path,
            record_bytes_max,
        })
    }

    fn open_file(&self) -> Result<File> {
        File::open(&self.path).map_err(|e| {
            ConnectorError::io(
                format!(
                    "dimension table '{}': cannot open '{}'",
                    self.table, self.path
                ),
                e,
            )
        })
    }
}

impl ChangelogSourceFactory for FileChangelogFactory {
    fn check(&self) -> Result<()> {
        self.open_file().map(|_| ())
    }

    fn open(&self, _shard: usize) -> Result<Box<dyn ChangelogSource>> {
        let file = self.open_file()?;
        let context = format!("dimension table '{}' (file '{}')", self.table, self.path);
        let end_at_open = file
            .metadata()
            .map_err(|e| ConnectorError::io(context.clone(), e))?
            .len();
        Ok(Box::new(FileChangelog {
            context,
            file,
            position: 0,
            end_at_open,
            skipping: false,
            buffer: vec![0; READ_CHUNK_BYTES.max(self.record_bytes_max + 1)],
            record_bytes_max: self.record_bytes_max,
            caught_up: end_at_open == 0,
            checked_at: Instant::now(),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "filesystem file '{}' (JSON lines; later lines upsert, \"__deleted\": true deletes), read whole on every shard, then followed",
            self.path
        )
    }
}

/// One shard's reader of a JSON-lines changelog file.
struct FileChangelog {
    context: String,
    file: File,
    /// Byte offset of the first line not yet delivered.
    position: u64,
    end_at_open: u64,
    /// Inside a line longer than `record_bytes_max`: skip to its end.
    skipping: bool,
    buffer: Vec<u8>,
    record_bytes_max: usize,
    caught_up: bool,
    checked_at: Instant,
}

impl FileChangelog {
    /// Delivers one line (without its `\n`) that starts at byte `offset`.
    fn deliver(&mut self, offset: u64, line: &[u8], out: &mut ChangelogBatch) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            out.records.empty += 1;
        } else if line.len() > self.record_bytes_max {
            out.records.oversized += 1;
        } else {
            out.push_value(0, offset as i64, TIME_NONE, line);
        }
    }
}

impl ChangelogSource for FileChangelog {
    fn poll(
        &mut self,
        out: &mut ChangelogBatch,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<()> {
        if self.caught_up
            && self.checked_at.elapsed() < Duration::from_millis(GROWTH_CHECK_INTERVAL_MS)
        {
            return Ok(());
        }
        self.checked_at = Instant::now();
        let (records_start, bytes_start) = (out.len(), out.records.bytes());
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = loop {
            if out.len() - records_start >= records_max
                || out.records.bytes() - bytes_start >= bytes_max
            {
                break Ok(());
            }
            let n = match self.file.read_at(&mut buffer, self.position) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(ConnectorError::io(self.context.clone(), e)),
            };
            if n == 0 {
                break Ok(());
            }
            let chunk = &buffer[..n];
            let mut start = 0;
            while let Some(end) = memchr::memchr(b'\n', &chunk[start..]).map(|e| start + e) {
                if self.skipping {
                    self.skipping = false;
                } else {
                    self.deliver(self.position + start as u64, &chunk[start..end], out);
                }
                start = end + 1;
                if out.len() - records_start >= records_max {
                    break;
                }
            }
            self.position += start as u64;
            if start > 0 {
                continue;
            }
            // No line end in the chunk.
            if n == buffer.len() {
                // Longer than any record may be: skip to its end.
                if !self.skipping {
                    out.records.oversized += 1;
                }
                self.skipping = true;
                self.position += n as u64;
            } else if self.position + n as u64 == self.end_at_open && !self.caught_up {
                // The unterminated last line of the content present at start.
                if !self.skipping {
                    self.deliver(self.position, chunk, out);
                }
                self.skipping = false;
                self.position += n as u64;
            }
            break Ok(());
        };
        self.buffer = buffer;
        if self.position >= self.end_at_open {
            self.caught_up = true;
        }
        result
    }

    fn caught_up(&self) -> bool {
        self.caught_up
    }

    fn progress(&self) -> String {
        format!(
            "{}: at byte {} of {}",
            self.context, self.position, self.end_at_open
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn factory(path: &std::path::Path, extra: &[(&str, &str)]) -> FileChangelogFactory {
        let mut options = BTreeMap::from([
            ("connector".to_string(), "filesystem".to_string()),
            ("path".to_string(), path.display().to_string()),
        ]);
        for (k, v) in extra {
            options.insert(k.to_string(), v.to_string());
        }
        FileChangelogFactory::from_options("d", &options).expect("options")
    }

    fn lines(batch: &ChangelogBatch) -> Vec<String> {
        (0..batch.len())
            .map(|i| {
                let (s, e) = batch.records.span(i);
                String::from_utf8_lossy(&batch.records.data[s..e]).into_owned()
            })
            .collect()
    }

    #[test]
    fn reads_whole_file_then_appended_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("d.jsonl");
        std::fs::write(&path, "{\"k\":1}\n\n{\"k\":2}\r\n{\"k\":3}").expect("write");
        let mut source = factory(&path, &[]).open(0).expect("open");
        assert!(!source.caught_up());
        let mut batch = ChangelogBatch::default();
        source.poll(&mut batch, 100, 1 << 20).expect("poll");
        assert_eq!(lines(&batch), vec!["{\"k\":1}", "{\"k\":2}", "{\"k\":3}"]);
        assert_eq!(batch.records.empty, 1);
        assert_eq!(batch.records.offset, vec![0, 9, 18]);
        assert!(source.caught_up());
        // Appended whole lines are delivered on a later poll.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("append");
        f.write_all(b"\n{\"k\":4}\n{\"k\":5").expect("append");
        std::thread::sleep(Duration::from_millis(GROWTH_CHECK_INTERVAL_MS + 20));
        batch.clear();
        source.poll(&mut batch, 100, 1 << 20).expect("poll");
        assert_eq!(
            lines(&batch),
            vec!["{\"k\":4}"],
            "an unterminated appended line waits"
        );
    }

    #[test]
    fn budget_and_oversized_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("d.jsonl");
        let long = format!("{{\"k\":\"{}\"}}", "x".repeat(100));
        std::fs::write(
            &path,
            format!("{{\"k\":1}}\n{long}\n{{\"k\":2}}\n{{\"k\":3}}\n"),
        )
        .expect("write");
        let mut source = factory(&path, &[("source.record-bytes-max", "50")])
            .open(0)
            .expect("open");
        let mut batch = ChangelogBatch::default();
        source.poll(&mut batch, 2, 1 << 20).expect("poll");
        assert_eq!(lines(&batch), vec!["{\"k\":1}", "{\"k\":2}"]);
        assert_eq!(batch.records.oversized, 1);
        assert!(!source.caught_up());
        source.poll(&mut batch, 2, 1 << 20).expect("poll");
        assert_eq!(lines(&batch).len(), 3);
        assert!(source.caught_up());
    }

    #[test]
    fn missing_file_and_bad_options_are_errors() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = factory(&dir.path().join("nope.jsonl"), &[]);
        let e = missing.check().unwrap_err();
        assert!(e.to_string().contains("nope.jsonl"), "{e}");
        let options = BTreeMap::from([
            ("connector".to_string(), "filesystem".to_string()),
            ("path".to_string(), "x".to_string()),
            ("scan.bounded.mode".to_string(), "latest-offset".to_string()),
        ]);
        let e = FileChangelogFactory::from_options("d", &options).unwrap_err();
        assert!(
            e.to_string().contains("unknown option 'scan.bounded.mode'"),
            "{e}"
        );
    }
}
