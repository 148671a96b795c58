//! The files of the exactly-once (epoch-committed) filesystem sink, and their protocol.
//!
//! In epoch mode the sink's `path` is a directory. Each shard writes its rows to a hidden
//! in-progress file of its own; ending an epoch renames that file to a hidden pending file;
//! committing epochs renames pending files to visible part files. Readers globbing
//! `part-*.jsonl` never see in-progress or pending output.
//!
//! | file name                                | what it holds                                  |
//! |------------------------------------------|------------------------------------------------|
//! | `.part-<shard:04>.inprogress`            | the shard's rows of its current epoch          |
//! | `.part-<epoch:012>-<shard:04>.pending`   | a prepared epoch of a shard: durable, hidden   |
//! | `part-<epoch:012>-<shard:04>.jsonl`      | a committed epoch of a shard: visible          |
//!
//! Names with wider numbers (an epoch of 10^12 or more) are written and read the same way;
//! [`read_committed_lines`] orders files by their numbers, which is name order for the usual
//! widths.
//!
//! **Invariant:** every rename is followed by an fsync of the directory before the operation
//! returns, so whatever a caller was told is prepared or committed survives a crash.
//! **Invariant:** a shard's in-progress file is written only by that shard's writer thread and
//! renamed only by that shard's sink, after a flush, under the part's lock.
//! **Boundary:** after a failed prepare a shard's part refuses every further write and
//! prepare (the rows of that epoch are never dropped silently); the job must restart from its
//! last checkpoint, whose recovery deletes the leftovers.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{ConnectorError, Result};
use crate::io_retry::retry_interrupted;
use crate::writer_thread::WRITER_FILE_BUFFER_BYTES;

/// The name of a file the epoch-mode sink owns in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartName {
    /// `.part-<shard:04>.inprogress`: rows of the shard's current, unprepared epoch.
    InProgress {
        /// The shard that writes it.
        shard: usize,
    },
    /// `.part-<epoch:012>-<shard:04>.pending`: a prepared, not yet committed epoch.
    Pending {
        /// The epoch the rows belong to.
        epoch: u64,
        /// The shard that wrote them.
        shard: usize,
    },
    /// `part-<epoch:012>-<shard:04>.jsonl`: a committed epoch, visible to readers.
    Committed {
        /// The epoch the rows belong to.
        epoch: u64,
        /// The shard that wrote them.
        shard: usize,
    },
}

impl PartName {
    /// Recognises a file name of the sink; any other name (a user's file) is `None`.
    pub fn parse(name: &str) -> Option<PartName> {
        if let Some(hidden) = name.strip_prefix(".part-") {
            if let Some(shard) = hidden.strip_suffix(".inprogress") {
                return Some(PartName::InProgress {
                    shard: parse_digits(shard)?,
                });
            }
            let (epoch, shard) = parse_epoch_shard(hidden.strip_suffix(".pending")?)?;
            return Some(PartName::Pending { epoch, shard });
        }
        let rest = name.strip_prefix("part-")?.strip_suffix(".jsonl")?;
        let (epoch, shard) = parse_epoch_shard(rest)?;
        Some(PartName::Committed { epoch, shard })
    }

    /// The file name (without directory).
    pub fn file_name(&self) -> String {
        match *self {
            PartName::InProgress { shard } => format!(".part-{shard:04}.inprogress"),
            PartName::Pending { epoch, shard } => format!(".part-{epoch:012}-{shard:04}.pending"),
            PartName::Committed { epoch, shard } => format!("part-{epoch:012}-{shard:04}.jsonl"),
        }
    }

    /// The file's path in `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(self.file_name())
    }
}

/// Digits only (no sign, no blanks), parsed; `None` on anything else or on overflow.
fn parse_digits<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `<epoch>-<shard>`.
fn parse_epoch_shard(text: &str) -> Option<(u64, usize)> {
    let (epoch, shard) = text.split_once('-')?;
    Some((parse_digits(epoch)?, parse_digits(shard)?))
}

/// Creates the sink's directory (and its parents) if missing.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        ConnectorError::io(
            format!("creating the output directory '{}'", dir.display()),
            e,
        )
    })
}

/// Fsyncs the directory `dir`, making the renames and deletions in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| retry_interrupted(|| d.sync_all()))
        .map_err(|e| ConnectorError::io(format!("fsyncing the directory '{}'", dir.display()), e))
}

/// The sink's files in `dir` with their paths (other files are left out).
fn list_parts(dir: &Path) -> io::Result<Vec<(PartName, PathBuf)>> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(part) = name.to_str().and_then(PartName::parse) {
            parts.push((part, entry.path()));
        }
    }
    Ok(parts)
}

fn list_parts_of(dir: &Path) -> Result<Vec<(PartName, PathBuf)>> {
    list_parts(dir).map_err(|e| {
        ConnectorError::io(
            format!("listing the output directory '{}'", dir.display()),
            e,
        )
    })
}

/// Renames `from` to `to`; a missing `from` is fine (a concurrent or earlier call did it).
fn rename_idempotent(from: &Path, to: &Path) -> Result<bool> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ConnectorError::io(
            format!("renaming '{}' to '{}'", from.display(), to.display()),
            e,
        )),
    }
}

/// Deletes `path`; a missing file is fine.
fn remove_idempotent(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ConnectorError::io(
            format!("deleting '{}'", path.display()),
            e,
        )),
    }
}

/// Makes every pending epoch <= `epoch` of every shard visible: renames
/// `.part-<e>-<s>.pending` to `part-<e>-<s>.jsonl`, then fsyncs the directory once (also when
/// nothing was left to rename, so a rename of an interrupted earlier call becomes durable).
/// Idempotent. Returns how many files it renamed. The caller serialises calls on one
/// directory; shards may prepare concurrently (their new pending files are of later epochs).
pub fn commit_epochs(dir: &Path, epoch: u64) -> Result<usize> {
    let mut renamed = 0;
    for (part, path) in list_parts_of(dir)? {
        if let PartName::Pending { epoch: e, shard } = part {
            if e <= epoch {
                let target = PartName::Committed { epoch: e, shard }.path_in(dir);
                if rename_idempotent(&path, &target)? {
                    renamed += 1;
                }
            }
        }
    }
    sync_dir(dir)?;
    Ok(renamed)
}

/// What [`recover_epochs`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Pending files made visible (epoch <= the committed epoch).
    pub files_committed: usize,
    /// Files deleted: pending and committed parts of later epochs, in-progress files.
    pub files_deleted: usize,
}

/// Brings `dir` (created if missing) to the state of the last committed epoch `committed`:
/// pending epochs <= it become visible; pending epochs > it, every in-progress file, and
/// committed parts of epochs > it are deleted (their rows will be produced again from the
/// checkpoint). With `committed = None` (a new job) every part file of the sink is deleted,
/// committed ones too: the job starts afresh, as the single-file sink truncates its file.
/// Files whose names are not the sink's are left alone. Ends with an fsync of the directory.
pub fn recover_epochs(dir: &Path, committed: Option<u64>) -> Result<Recovery> {
    create_dir(dir)?;
    let mut recovery = Recovery::default();
    let keeps = |epoch: u64| committed.is_some_and(|c| epoch <= c);
    for (part, path) in list_parts_of(dir)? {
        match part {
            PartName::Pending { epoch, shard } if keeps(epoch) => {
                let target = PartName::Committed { epoch, shard }.path_in(dir);
                if rename_idempotent(&path, &target)? {
                    recovery.files_committed += 1;
                }
            }
            PartName::Committed { epoch, .. } if keeps(epoch) => {}
            PartName::InProgress { .. } | PartName::Pending { .. } | PartName::Committed { .. } => {
                if remove_idempotent(&path)? {
                    recovery.files_deleted += 1;
                }
            }
        }
    }
    sync_dir(dir)?;
    Ok(recovery)
}

/// Every line of the committed part files in `dir`, file by file in name order (by epoch,
/// then shard). For tests and for readers of the output.
pub fn read_committed_lines(dir: &Path) -> io::Result<Vec<String>> {
    let mut committed: Vec<(u64, usize, PathBuf)> = list_parts(dir)?
        .into_iter()
        .filter_map(|(part, path)| match part {
            PartName::Committed { epoch, shard } => Some((epoch, shard, path)),
            _ => None,
        })
        .collect();
    committed.sort();
    let mut lines = Vec::new();
    for (_, _, path) in committed {
        let text = std::fs::read_to_string(&path)?;
        lines.extend(text.lines().map(str::to_string));
    }
    Ok(lines)
}

/// An I/O error with the operation and the path in its text (the kind is kept).
fn with_path(what: &str, path: &Path, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("{what} '{}': {error}", path.display()),
    )
}

/// What the writer thread and the sink of one shard share.
struct PartState {
    /// The open in-progress file; `None` until the first write of an epoch.
    file: Option<BufWriter<File>>,
    /// Set by a failed prepare: the kind and text of its error.
    failed: Option<(io::ErrorKind, String)>,
}

/// The in-progress file of one shard: written by the shard's writer thread through
/// [`ShardPartWriter`], turned into a pending file by the shard's sink with
/// [`ShardPart::prepare`].
pub(crate) struct ShardPart {
    dir: PathBuf,
    shard: usize,
    path: PathBuf,
    state: Mutex<PartState>,
}

fn lock(state: &Mutex<PartState>) -> MutexGuard<'_, PartState> {
    // A poisoned lock only means a thread panicked holding it; a failed I/O step leaves
    // `failed` set before anything else is touched.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ShardPart {
    /// The part of `shard` in `dir`; touches no file (the in-progress file is created by the
    /// first write of each epoch, so an epoch without rows leaves nothing behind).
    pub(crate) fn new(dir: &Path, shard: usize) -> Arc<ShardPart> {
        Arc::new(ShardPart {
            dir: dir.to_path_buf(),
            shard,
            path: PartName::InProgress { shard }.path_in(dir),
            state: Mutex::new(PartState {
                file: None,
                failed: None,
            }),
        })
    }

    /// The output name for messages of the writer thread.
    pub(crate) fn name(&self) -> String {
        format!(
            "shard {} of the file sink directory '{}'",
            self.shard,
            self.dir.display()
        )
    }

    /// The `Write` end for the shard's writer thread.
    pub(crate) fn writer(self: &Arc<Self>) -> ShardPartWriter {
        ShardPartWriter {
            part: Arc::clone(self),
        }
    }

    /// Ends epoch `epoch` of the shard: the in-progress file, if the epoch wrote one, is
    /// flushed, fsynced, renamed to `.part-<epoch>-<shard>.pending` and the directory is
    /// fsynced. The caller has flushed the writer thread first, so every row the shard wrote
    /// is in the file. Returns whether a pending file was made.
    pub(crate) fn prepare(&self, epoch: u64) -> Result<bool> {
        let mut state = lock(&self.state);
        if let Some((kind, message)) = &state.failed {
            return Err(ConnectorError::io(
                format!(
                    "preparing epoch {epoch} of {} (an earlier prepare failed)",
                    self.name()
                ),
                io::Error::new(*kind, message.clone()),
            ));
        }
        let Some(file) = state.file.take() else {
            return Ok(false);
        };
        let result = self.publish_pending(file, epoch);
        if let Err(ConnectorError::Io { context, source }) = &result {
            state.failed = Some((source.kind(), format!("{context}: {source}")));
        } else if let Err(other) = &result {
            state.failed = Some((io::ErrorKind::Other, other.to_string()));
        }
        result.map(|()| true)
    }

    fn publish_pending(&self, file: BufWriter<File>, epoch: u64) -> Result<()> {
        let file = file.into_inner().map_err(|e| {
            ConnectorError::io(
                format!("flushing '{}'", self.path.display()),
                e.into_error(),
            )
        })?;
        retry_interrupted(|| file.sync_all())
            .map_err(|e| ConnectorError::io(format!("fsyncing '{}'", self.path.display()), e))?;
        drop(file);
        let pending = PartName::Pending {
            epoch,
            shard: self.shard,
        }
        .path_in(&self.dir);
        std::fs::rename(&self.path, &pending).map_err(|e| {
            ConnectorError::io(
                format!(
                    "renaming '{}' to '{}'",
                    self.path.display(),
                    pending.display()
                ),
                e,
            )
        })?;
        sync_dir(&self.dir)
    }
}

/// The writer thread's output for one shard: writes go to the shard's in-progress file
/// (created on the first write of each epoch); `flush` also fsyncs it. Errors name the file.
pub(crate) struct ShardPartWriter {
    part: Arc<ShardPart>,
}

impl Write for ShardPartWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let part = &self.part;
        let mut state = lock(&part.state);
        if let Some((kind, message)) = &state.failed {
            return Err(io::Error::new(*kind, message.clone()));
        }
        let file = match &mut state.file {
            Some(file) => file,
            slot => {
                let created =
                    File::create(&part.path).map_err(|e| with_path("creating", &part.path, e))?;
                slot.insert(BufWriter::with_capacity(WRITER_FILE_BUFFER_BYTES, created))
            }
        };
        file.write(buf)
            .map_err(|e| with_path("writing", &part.path, e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let part = &self.part;
        let mut state = lock(&part.state);
        if let Some((kind, message)) = &state.failed {
            return Err(io::Error::new(*kind, message.clone()));
        }
        if let Some(file) = &mut state.file {
            file.flush()
                .map_err(|e| with_path("writing", &part.path, e))?;
            retry_interrupted(|| file.get_ref().sync_data())
                .map_err(|e| with_path("fsyncing", &part.path, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn names_follow_the_documented_pattern() {
        assert_eq!(
            PartName::InProgress { shard: 3 }.file_name(),
            ".part-0003.inprogress"
        );
        assert_eq!(
            PartName::Pending {
                epoch: 7,
                shard: 12
            }
            .file_name(),
            ".part-000000000007-0012.pending"
        );
        assert_eq!(
            PartName::Committed { epoch: 7, shard: 0 }.file_name(),
            "part-000000000007-0000.jsonl"
        );
        for other in [
            "part-000000000007-0000.json",
            "part-7.jsonl",
            "part--1-2.jsonl",
            "part-+1-2.jsonl",
            ".part-.inprogress",
            ".part-1-x.pending",
            "part-99999999999999999999999-1.jsonl",
            "README",
            ".part-0001.pending",
        ] {
            assert_eq!(PartName::parse(other), None, "{other}");
        }
    }

    proptest! {
        #[test]
        fn names_round_trip(epoch in any::<u64>(), shard in 0usize..100_000, kind in 0u8..3) {
            let part = match kind {
                0 => PartName::InProgress { shard },
                1 => PartName::Pending { epoch, shard },
                _ => PartName::Committed { epoch, shard },
            };
            prop_assert_eq!(PartName::parse(&part.file_name()), Some(part));
        }
    }

    #[test]
    fn prepare_renames_only_an_epoch_with_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let part = ShardPart::new(dir.path(), 2);
        assert!(!part.prepare(1).expect("empty epoch"), "nothing written");
        assert!(
            names_in(dir.path()).is_empty(),
            "an empty epoch creates nothing"
        );
        let mut writer = part.writer();
        writer.write_all(b"{\"a\":1}\n").expect("write");
        writer.flush().expect("flush");
        assert_eq!(names_in(dir.path()), vec![".part-0002.inprogress"]);
        assert!(part.prepare(2).expect("prepare"));
        assert_eq!(
            names_in(dir.path()),
            vec![".part-000000000002-0002.pending"]
        );
        assert_eq!(
            read_committed_lines(dir.path()).expect("read"),
            Vec::<String>::new()
        );
        writer.write_all(b"{\"a\":2}\n").expect("write");
        assert!(
            part.prepare(3).expect("prepare"),
            "prepare flushes the buffer"
        );
        assert_eq!(commit_epochs(dir.path(), 2).expect("commit"), 1);
        assert_eq!(
            read_committed_lines(dir.path()).expect("read"),
            vec!["{\"a\":1}"]
        );
        assert_eq!(
            commit_epochs(dir.path(), 2).expect("again"),
            0,
            "idempotent"
        );
        assert_eq!(commit_epochs(dir.path(), 3).expect("commit"), 1);
        assert_eq!(
            read_committed_lines(dir.path()).expect("read"),
            vec!["{\"a\":1}", "{\"a\":2}"]
        );
    }

    #[test]
    fn committed_lines_come_in_epoch_then_shard_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (epoch, shard) in [(2u64, 0usize), (1, 1), (1, 0), (10, 0)] {
            let path = PartName::Committed { epoch, shard }.path_in(dir.path());
            std::fs::write(path, format!("e{epoch}s{shard}a\ne{epoch}s{shard}b\n")).expect("write");
        }
        std::fs::write(dir.path().join("notes.txt"), "not a part\n").expect("write");
        std::fs::write(
            PartName::Pending { epoch: 3, shard: 0 }.path_in(dir.path()),
            "hidden\n",
        )
        .expect("write");
        let lines = read_committed_lines(dir.path()).expect("read");
        assert_eq!(
            lines,
            vec!["e1s0a", "e1s0b", "e1s1a", "e1s1b", "e2s0a", "e2s0b", "e10s0a", "e10s0b"]
        );
    }

    #[test]
    fn recover_keeps_what_was_committed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = [
            PartName::Committed { epoch: 1, shard: 0 },
            PartName::Committed { epoch: 4, shard: 1 },
            PartName::Pending { epoch: 2, shard: 0 },
            PartName::Pending { epoch: 3, shard: 1 },
            PartName::Pending { epoch: 4, shard: 0 },
            PartName::InProgress { shard: 0 },
            PartName::InProgress { shard: 7 },
        ];
        for part in files {
            std::fs::write(part.path_in(dir.path()), part.file_name() + "\n").expect("write");
        }
        std::fs::write(dir.path().join("README"), "mine\n").expect("write");
        let recovery = recover_epochs(dir.path(), Some(3)).expect("recover");
        assert_eq!(
            recovery,
            Recovery {
                files_committed: 2,
                files_deleted: 4
            }
        );
        assert_eq!(
            names_in(dir.path()),
            vec![
                "README",
                "part-000000000001-0000.jsonl",
                "part-000000000002-0000.jsonl",
                "part-000000000003-0001.jsonl",
            ]
        );
        // Again: nothing changes.
        assert_eq!(
            recover_epochs(dir.path(), Some(3)).expect("again"),
            Recovery::default()
        );
        // A new job deletes every part, committed ones too, and keeps the user's file.
        recover_epochs(dir.path(), None).expect("fresh");
        assert_eq!(names_in(dir.path()), vec!["README"]);
    }

    #[test]
    fn recover_creates_a_missing_directory_and_commit_needs_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("a/b");
        recover_epochs(&out, None).expect("recover");
        assert!(out.is_dir());
        let missing = dir.path().join("gone");
        let err = commit_epochs(&missing, 1).expect_err("no directory");
        assert!(err.to_string().contains("gone"), "{err}");
    }

    #[test]
    fn failed_prepare_is_sticky_and_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        create_dir(&out).expect("mkdir");
        let part = ShardPart::new(&out, 1);
        let mut writer = part.writer();
        writer.write_all(b"row\n").expect("write");
        writer.flush().expect("flush");
        // The directory vanishes under the open file (works as root too): the rename fails.
        std::fs::remove_dir_all(&out).expect("rm");
        let err = part.prepare(5).expect_err("rename fails");
        let text = err.to_string();
        assert!(
            text.contains(".part-0001.inprogress") && text.contains("out"),
            "{text}"
        );
        create_dir(&out).expect("mkdir again");
        let again = part.prepare(6).expect_err("sticky");
        assert!(
            again.to_string().contains("earlier prepare failed"),
            "{again}"
        );
        assert!(writer.write_all(b"more\n").is_err(), "writes are refused");
        assert!(
            names_in(&out).is_empty(),
            "nothing written after the failure"
        );
    }

    // ---- the whole protocol through the file sink, against a model ----

    use crate::file_sink::FileSinkFactory;
    use crate::{Sink, SinkFactory};
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use std::collections::BTreeMap;

    fn epoch_factory(dir: &Path) -> FileSinkFactory {
        let options: BTreeMap<String, String> = [
            ("connector", "filesystem"),
            ("path", dir.to_str().expect("utf8")),
            ("format", "json"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        FileSinkFactory::from_options("out", &options)
            .expect("opts")
            .with_epochs()
    }

    /// One `id` column; row `i` is written as `{"id":<ids[i]>}`.
    fn id_batch(ids: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids.to_vec()))]).expect("batch")
    }

    fn id_lines(ids: impl IntoIterator<Item = i64>) -> Vec<String> {
        let mut lines: Vec<String> = ids.into_iter().map(|i| format!("{{\"id\":{i}}}")).collect();
        lines.sort();
        lines
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut lines = read_committed_lines(dir).expect("read committed");
        lines.sort();
        lines
    }

    /// One step of the model test.
    #[derive(Debug, Clone)]
    enum Step {
        /// A shard writes `rows` rows.
        Write { shard: usize, rows: usize },
        /// A shard ends its current epoch.
        Prepare { shard: usize },
        /// The engine's checkpoint of the epoch every shard has prepared becomes durable.
        Checkpoint,
        /// The committer commits up to `back` epochs before the durable one.
        Commit { back: u64 },
        /// Everything is dropped; a new factory recovers with the durable epoch.
        Crash,
    }

    const MODEL_SHARDS: usize = 3;

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..MODEL_SHARDS, 0usize..4).prop_map(|(shard, rows)| Step::Write { shard, rows }),
            3 => (0..MODEL_SHARDS).prop_map(|shard| Step::Prepare { shard }),
            2 => Just(Step::Checkpoint),
            2 => (0u64..3).prop_map(|back| Step::Commit { back }),
            1 => Just(Step::Crash),
        ]
    }

    /// The expected state: rows per prepared epoch, rows of each shard's open epoch.
    struct Model {
        id_next: i64,
        epoch_next: [u64; MODEL_SHARDS],
        open_rows: [Vec<i64>; MODEL_SHARDS],
        prepared_rows: BTreeMap<u64, Vec<i64>>,
        durable: u64,
        visible: u64,
    }

    impl Model {
        fn expected_lines(&self) -> Vec<String> {
            id_lines(
                self.prepared_rows
                    .range(..=self.visible)
                    .flat_map(|(_, ids)| ids.iter().copied()),
            )
        }
    }

    fn start(dir: &std::path::Path, committed: u64) -> (FileSinkFactory, Vec<Box<dyn Sink>>) {
        let factory = epoch_factory(dir);
        factory
            .recover_epochs((committed > 0).then_some(committed))
            .expect("recover");
        let sinks = (0..MODEL_SHARDS)
            .map(|s| factory.open(s).expect("open"))
            .collect();
        (factory, sinks)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn visible_lines_are_exactly_the_committed_epochs(steps in proptest::collection::vec(step(), 1..40)) {
            let tmp = tempfile::tempdir().expect("tempdir");
            let dir = tmp.path();
            let (mut factory, mut sinks) = start(dir, 0);
            let mut model = Model {
                id_next: 0,
                epoch_next: [1; MODEL_SHARDS],
                open_rows: Default::default(),
                prepared_rows: BTreeMap::new(),
                durable: 0,
                visible: 0,
            };
            for step in steps {
                match step {
                    Step::Write { shard, rows } => {
                        let ids: Vec<i64> = (model.id_next..model.id_next + rows as i64).collect();
                        model.id_next += rows as i64;
                        sinks[shard].write(&id_batch(&ids)).expect("write");
                        model.open_rows[shard].extend(ids);
                    }
                    Step::Prepare { shard } => {
                        let epoch = model.epoch_next[shard];
                        sinks[shard].prepare_epoch(epoch).and_then(|p| p.wait()).expect("prepare");
                        let rows = std::mem::take(&mut model.open_rows[shard]);
                        model.prepared_rows.entry(epoch).or_default().extend(rows);
                        model.epoch_next[shard] += 1;
                    }
                    Step::Checkpoint => {
                        let all_prepared = model.epoch_next.iter().min().copied().unwrap_or(1) - 1;
                        model.durable = model.durable.max(all_prepared);
                    }
                    Step::Commit { back } => {
                        let epoch = model.durable.saturating_sub(back);
                        factory.commit_epochs(epoch, &Default::default()).expect("commit");
                        model.visible = model.visible.max(epoch);
                    }
                    Step::Crash => {
                        drop(sinks);
                        drop(factory);
                        (factory, sinks) = start(dir, model.durable);
                        model.visible = model.durable;
                        let durable = model.durable;
                        model.prepared_rows.retain(|epoch, _| *epoch <= durable);
                        model.open_rows = Default::default();
                        model.epoch_next = [durable + 1; MODEL_SHARDS];
                        let leftovers: Vec<String> = names_in(dir)
                            .into_iter()
                            .filter(|n| !n.starts_with("part-"))
                            .collect();
                        prop_assert!(leftovers.is_empty(), "after recovery: {:?}", leftovers);
                    }
                }
                prop_assert_eq!(visible(dir), model.expected_lines());
            }
            drop(sinks);
            factory.close().expect("close");
        }
    }
}
