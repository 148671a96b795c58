//! Checkpoints kept in a compacted Kafka topic (group mode's state topic): one partition per
//! repartition partition, holding the files of that partition's checkpoint directory.
//!
//! A job instance works on a local checkpoint directory as always. After each checkpoint is
//! durable locally, [`StateTopic::publish`] sends what changed in the directory to partition
//! `r` of the state topic and then a commit record listing every file of the checkpoint; only
//! then does the sink publish the epoch. A new owner of partition `r` calls
//! [`StateTopic::restore`], which rebuilds the directory from the last valid commit record.
//!
//! Records (key → value):
//! - `c/<owner>/<n>` → bytes of a file (a whole file or an appended range, at most
//!   [`STATE_CHUNK_BYTES`]). Keys are never reused, so compaction never drops a chunk a commit
//!   refers to; chunks no commit refers to any more get tombstones.
//! - `claim/<owner>` → an owner taking the partition (written before it reads the partition).
//! - `commit/<owner>` → the listing of one complete checkpoint (JSON, [`Listing`]).
//!
//! **Fencing by log order.** The valid state is the last commit record whose owner wrote the
//! last claim before it. An owner that finds another owner's claim between its own records
//! and its new commit record is fenced: its commit is invalid, [`StateTopic::publish`] returns
//! [`ConnectorError::Fenced`], and its sink never publishes that epoch. A new owner
//! re-commits the listing it restored under its own name right away, so compaction (which
//! keeps only the last record of each key) cannot leave it without a valid commit.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::error::{ConnectorError, Result};

/// Largest value of a chunk record (below the brokers' default `message.max.bytes`).
pub const STATE_CHUNK_BYTES: usize = 256 * 1024;
/// Largest commit record (a listing); a checkpoint with more chunks is refused.
pub const COMMIT_RECORD_BYTES_MAX: usize = 900 * 1024;
/// A file uploaded in more pieces than this is uploaded again whole (keeps listings short).
pub const FILE_CHUNKS_MAX: usize = 64;
/// Most bytes a restore holds in memory while reading the partition.
pub const RESTORE_BYTES_MAX: u64 = 4 << 30;
/// Records waiting for their acknowledgement at once (the producer's queue).
const IN_FLIGHT_RECORDS_MAX: usize = 10_000;

/// One piece of a file: its record's key, length and CRC32C.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub key: String,
    pub len: u64,
    pub crc: u32,
}

/// A file of a checkpoint directory: its path relative to the directory and its pieces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub path: String,
    pub len: u64,
    pub chunks: Vec<ChunkRef>,
}

impl FileRef {
    fn empty(path: &str) -> Self {
        FileRef {
            path: path.to_string(),
            len: 0,
            chunks: Vec::new(),
        }
    }
}

/// The value of a commit record: every file of one complete checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub owner: String,
    pub epoch: u64,
    pub files: Vec<FileRef>,
}

/// Where the state topic is and how to reach it.
#[derive(Clone)]
pub struct StateTopicConfig {
    /// Servers and properties; no consumer-only settings (a producer is made from it too).
    pub client: ClientConfig,
    pub topic: String,
    pub partition: i32,
    /// Wait for acknowledgements and for reading the partition.
    pub timeout: Duration,
}

/// What a restore found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Epoch of the restored checkpoint (None: the partition had none; the directory is empty).
    pub epoch: Option<u64>,
    pub files: usize,
    pub bytes: u64,
    /// Records read from the partition.
    pub records: u64,
    /// Keys of other owners and unreferenced chunks given tombstones.
    pub tombstones: usize,
}

/// What one publish sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    pub chunks: usize,
    pub bytes: u64,
    pub tombstones: usize,
}

/// A local file as last uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LocalFile {
    ino: u64,
    len: u64,
    /// Status change time (nanoseconds): a file rewritten in place, or a new file that got a
    /// freed inode number, differs here.
    ctime_ns: i128,
}

/// Whether a file only ever grows at its end: the state store's segments (`seg-*.log`, never
/// recreated under the same name). Every other file is uploaded whole when it changes.
fn append_only(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.starts_with("seg-") && name.ends_with(".log")
}

#[derive(Default)]
struct Acks {
    /// Acknowledged offsets by record number; failures as messages.
    offsets: BTreeMap<usize, i64>,
    failures: Vec<String>,
}

/// Collects delivery reports of the state topic's producer.
#[derive(Clone, Default)]
struct AckContext(Arc<Mutex<Acks>>);

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, n: usize) {
        let mut acks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(m) => {
                acks.offsets.insert(n, m.offset());
            }
            Err((e, _)) => acks.failures.push(e.to_string()),
        }
    }
}

/// A record kind, from its key.
enum Kind<'a> {
    Chunk,
    Claim(&'a str),
    Commit(&'a str),
    Foreign,
}

fn kind(key: &str) -> Kind<'_> {
    if let Some(owner) = key.strip_prefix("claim/") {
        Kind::Claim(owner)
    } else if let Some(owner) = key.strip_prefix("commit/") {
        Kind::Commit(owner)
    } else if key.starts_with("c/") {
        Kind::Chunk
    } else {
        Kind::Foreign
    }
}

/// A unique name for this owner of a partition (host, process, time, counter).
fn new_owner(partition: i32) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{host}-{}-{nanos:x}-{}-p{partition}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One owner's handle on its partition of the state topic.
pub struct StateTopic {
    config: StateTopicConfig,
    owner: String,
    producer: BaseProducer<AckContext>,
    acks: AckContext,
    /// Reads the partition after this owner's claim (fencing).
    tail: BaseConsumer,
    /// The next offset `tail` returns.
    tail_next: i64,
    /// The last valid listing (what the next commit builds on).
    listing: BTreeMap<String, FileRef>,
    /// The local files as the listing describes them.
    local: BTreeMap<String, LocalFile>,
    /// Keys to tombstone once a later commit is valid.
    garbage: Vec<String>,
    next_chunk: u64,
    next_record: usize,
    /// Set while restoring: the instance was stopped (its partition revoked) meanwhile.
    abort: Option<Arc<AtomicBool>>,
}

impl StateTopic {
    /// Connects as a new owner of `config.partition`; nothing is written before `restore`.
    pub fn connect(config: StateTopicConfig) -> Result<Self> {
        let acks = AckContext::default();
        let mut producer_config = config.client.clone();
        producer_config
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set(
                "queue.buffering.max.messages",
                IN_FLIGHT_RECORDS_MAX.to_string(),
            )
            .set(
                "message.max.bytes",
                (COMMIT_RECORD_BYTES_MAX + 4096).to_string(),
            );
        let producer: BaseProducer<AckContext> = producer_config
            .create_with_context(acks.clone())
            .map_err(|e| {
                ConnectorError::Kafka(format!(
                    "cannot create the producer of state topic '{}': {e}",
                    config.topic
                ))
            })?;
        let mut consumer_config = config.client.clone();
        consumer_config
            .set("group.id", format!("spillway-state-{}", config.topic))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Reads wait for records just written (fencing): a short long-poll. (Pausing the
            // partition between reads would save idle fetches, but a resumed partition's
            // first fetch comes about a second later.)
            .set("fetch.wait.max.ms", "10")
            .set("fetch.queue.backoff.ms", "0")
            .set("fetch.error.backoff.ms", "10")
            .set(
                "fetch.message.max.bytes",
                (COMMIT_RECORD_BYTES_MAX + 4096).to_string(),
            );
        let tail: BaseConsumer = consumer_config.create().map_err(|e| {
            ConnectorError::Kafka(format!(
                "cannot create the reader of state topic '{}': {e}",
                config.topic
            ))
        })?;
        Ok(StateTopic {
            owner: new_owner(config.partition),
            config,
            producer,
            acks,
            tail,
            tail_next: 0,
            listing: BTreeMap::new(),
            local: BTreeMap::new(),
            garbage: Vec::new(),
            next_chunk: 0,
            next_record: 0,
            abort: None,
        })
    }

    /// This owner's name (in its records' keys).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn what(&self) -> String {
        format!(
            "state topic '{}' partition {}",
            self.config.topic, self.config.partition
        )
    }

    /// Sends a record (None: a tombstone) and returns its number for [`Self::wait`].
    fn send(&mut self, key: &str, value: Option<&[u8]>) -> Result<usize> {
        let n = self.next_record;
        self.next_record += 1;
        let deadline = Instant::now() + self.config.timeout;
        loop {
            let mut record = BaseRecord::<str, [u8], usize>::with_opaque_to(&self.config.topic, n)
                .key(key)
                .partition(self.config.partition);
            if let Some(v) = value {
                record = record.payload(v);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(n),
                Err((e, _)) if Instant::now() < deadline => {
                    // A full queue: let deliveries drain.
                    tracing::trace!("{}: send waits: {e}", self.what());
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    return Err(ConnectorError::Kafka(format!(
                        "{}: cannot send '{key}': {e}",
                        self.what()
                    )))
                }
            }
        }
    }

    /// An error when a restore was stopped.
    fn check_abort(&self) -> Result<()> {
        match &self.abort {
            Some(stop) if stop.load(Ordering::Acquire) => Err(ConnectorError::Stopped(format!(
                "{}: stopped while restoring",
                self.what()
            ))),
            _ => Ok(()),
        }
    }

    /// Waits until records `from..to` are acknowledged; returns the offset of record `to - 1`.
    fn wait(&mut self, from: usize, to: usize) -> Result<Option<i64>> {
        let deadline = Instant::now() + self.config.timeout;
        loop {
            self.check_abort()?;
            {
                let mut acks = self.acks.0.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(f) = acks.failures.first() {
                    let f = f.clone();
                    acks.failures.clear();
                    return Err(ConnectorError::Kafka(format!(
                        "{}: a record was not stored: {f}",
                        self.what()
                    )));
                }
                if (from..to).all(|n| acks.offsets.contains_key(&n)) {
                    let last = to
                        .checked_sub(1)
                        .and_then(|n| acks.offsets.get(&n).copied());
                    acks.offsets.retain(|n, _| *n >= to);
                    return Ok(last);
                }
            }
            if Instant::now() >= deadline {
                return Err(ConnectorError::Kafka(format!(
                    "{}: records not acknowledged within {:?}",
                    self.what(),
                    self.config.timeout
                )));
            }
            self.producer.poll(Duration::from_millis(1));
        }
    }

    /// Reads the partition with `tail` from `tail_next` up to and including `until`, handing
    /// each record to `f`.
    fn read_until(
        &mut self,
        until: i64,
        mut f: impl FnMut(i64, &str, Option<&[u8]>) -> Result<()>,
    ) -> Result<u64> {
        let deadline = Instant::now() + self.config.timeout;
        let mut records = 0;
        self.read_records(until, deadline, &mut records, &mut f)?;
        Ok(records)
    }

    fn read_records(
        &mut self,
        until: i64,
        deadline: Instant,
        records: &mut u64,
        f: &mut impl FnMut(i64, &str, Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        while self.tail_next <= until {
            self.check_abort()?;
            match self.tail.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    if m.offset() < self.tail_next {
                        continue;
                    }
                    self.tail_next = m.offset() + 1;
                    *records += 1;
                    let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                    f(m.offset(), &key, m.payload())?;
                }
                Some(Err(e)) => tracing::debug!("{}: read: {e}", self.what()),
                None => {}
            }
            if self.tail_next <= until && Instant::now() >= deadline {
                return Err(ConnectorError::Kafka(format!(
                    "{}: could not read up to offset {until} within {:?} (at {})",
                    self.what(),
                    self.config.timeout,
                    self.tail_next
                )));
            }
        }
        Ok(())
    }

    /// Takes the partition and rebuilds `dir` (removed first) from its last valid checkpoint.
    /// Setting `stop` meanwhile ends it with [`ConnectorError::Stopped`] (no commit written).
    pub fn restore(&mut self, dir: &Path, stop: &Arc<AtomicBool>) -> Result<RestoreReport> {
        self.abort = Some(stop.clone());
        let restored = self.restore_inner(dir);
        self.abort = None;
        restored
    }

    fn restore_inner(&mut self, dir: &Path) -> Result<RestoreReport> {
        let what = self.what();
        let started = Instant::now();
        // The partition's leader must be known before it is assigned, or the first fetch
        // waits for a metadata refresh (about a second).
        self.tail
            .fetch_metadata(Some(&self.config.topic), self.config.timeout)
            .map_err(|e| ConnectorError::Kafka(format!("{what}: metadata: {e}")))?;
        let claim_key = format!("claim/{}", self.owner);
        let owner = self.owner.clone();
        let n = self.send(&claim_key, Some(owner.as_bytes()))?;
        let claim_offset = self.wait(n, n + 1)?.unwrap_or(0);
        tracing::debug!(
            "{what}: claim at offset {claim_offset} acknowledged {:?} into the restore",
            started.elapsed()
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.config.topic, self.config.partition, Offset::Beginning)
            .map_err(|e| ConnectorError::Kafka(format!("{what}: {e}")))?;
        self.tail
            .assign(&tpl)
            .map_err(|e| ConnectorError::Kafka(format!("{what}: cannot read: {e}")))?;
        self.tail_next = 0;

        let mut chunks: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut held = 0u64;
        let mut owners_keys: BTreeSet<String> = BTreeSet::new();
        let mut claimant: Option<String> = None;
        let mut valid: Option<Listing> = None;
        let own = self.owner.clone();
        let records = self.read_until(claim_offset, |offset, key, value| {
            match (kind(key), value) {
                (Kind::Chunk, Some(v)) => {
                    held += v.len() as u64;
                    if held > RESTORE_BYTES_MAX {
                        return Err(ConnectorError::Limit(format!(
                            "{what}: restoring needs more than {RESTORE_BYTES_MAX} bytes \
                             (RESTORE_BYTES_MAX)"
                        )));
                    }
                    chunks.insert(key.to_string(), v.to_vec());
                }
                (Kind::Chunk, None) => {
                    if let Some(v) = chunks.remove(key) {
                        held -= v.len() as u64;
                    }
                }
                (Kind::Claim(owner), Some(_)) => {
                    if owner != own {
                        owners_keys.insert(key.to_string());
                    }
                    claimant = Some(owner.to_string());
                }
                (Kind::Commit(owner), Some(v)) => {
                    if owner != own {
                        owners_keys.insert(key.to_string());
                    }
                    // Valid only when its owner made the last claim (or no claim is left).
                    if claimant.as_deref().is_none_or(|c| c == owner) {
                        let listing: Listing = serde_json::from_slice(v).map_err(|e| {
                            ConnectorError::Kafka(format!(
                                "{what}: the commit record at offset {offset} is not a \
                                 listing: {e}"
                            ))
                        })?;
                        valid = Some(listing);
                    }
                }
                (Kind::Claim(_) | Kind::Commit(_), None) => {
                    owners_keys.remove(key);
                }
                (Kind::Foreign, _) => tracing::warn!(
                    "{what}: ignoring record '{key}' at offset {offset} (not spillway state)"
                ),
            }
            Ok(())
        })?;

        tracing::debug!(
            "{what}: {records} records read {:?} into the restore",
            started.elapsed()
        );
        match fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ConnectorError::io(
                    format!("removing '{}' before a restore", dir.display()),
                    e,
                ))
            }
        }
        fs::create_dir_all(dir)
            .map_err(|e| ConnectorError::io(format!("creating '{}'", dir.display()), e))?;
        let mut report = RestoreReport {
            records,
            ..RestoreReport::default()
        };
        let mut referenced = BTreeSet::new();
        if let Some(listing) = valid {
            for file in &listing.files {
                let path = safe_join(dir, &file.path)?;
                write_file(&path, file, &chunks, &what, listing.epoch)?;
                report.bytes += file.len;
                report.files += 1;
                referenced.extend(file.chunks.iter().map(|c| c.key.clone()));
                self.local.insert(file.path.clone(), local_file(&path)?);
                self.listing.insert(file.path.clone(), file.clone());
            }
            report.epoch = Some(listing.epoch);
            tracing::debug!(
                "{what}: {} files written {:?} into the restore",
                listing.files.len(),
                started.elapsed()
            );
            // Re-commit under this owner's name: the listing stays valid whatever compaction
            // keeps of the previous owner's records.
            self.commit(listing.epoch)?;
            tracing::debug!(
                "{what}: re-committed {:?} into the restore",
                started.elapsed()
            );
        }
        self.garbage.extend(owners_keys);
        self.garbage.extend(
            chunks
                .into_keys()
                .filter(|k| !referenced.contains(k) && !k.starts_with(&format!("c/{own}/"))),
        );
        report.tombstones = self.collect_garbage()?;
        Ok(report)
    }

    /// Sends the commit record of the current listing and checks that it is valid.
    fn commit(&mut self, epoch: u64) -> Result<()> {
        let listing = Listing {
            owner: self.owner.clone(),
            epoch,
            files: self.listing.values().cloned().collect(),
        };
        let value = serde_json::to_vec(&listing)
            .map_err(|e| ConnectorError::Internal(format!("encoding a listing: {e}")))?;
        if value.len() > COMMIT_RECORD_BYTES_MAX {
            return Err(ConnectorError::Limit(format!(
                "{}: the listing of checkpoint {epoch} takes {} bytes, more than \
                 COMMIT_RECORD_BYTES_MAX ({COMMIT_RECORD_BYTES_MAX}); raise the store's \
                 segment size so that fewer files make a checkpoint",
                self.what(),
                value.len()
            )));
        }
        let key = format!("commit/{}", self.owner);
        let n = self.send(&key, Some(&value))?;
        let offset = self
            .wait(n, n + 1)?
            .ok_or_else(|| ConnectorError::Internal("a commit without an offset".into()))?;
        let own = self.owner.clone();
        let what = self.what();
        self.read_until(offset, |at, key, value| {
            if let (Kind::Claim(owner), Some(_)) = (kind(key), value) {
                if owner != own {
                    return Err(ConnectorError::Fenced(format!(
                        "{what}: owner '{owner}' claimed the partition (offset {at}) before \
                         checkpoint {epoch} was committed; this process no longer owns it"
                    )));
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Sends tombstones for the collected garbage (not waited for: a lost tombstone leaves a
    /// key the next owner removes).
    fn collect_garbage(&mut self) -> Result<usize> {
        let keys = std::mem::take(&mut self.garbage);
        for key in &keys {
            self.send(key, None)?;
        }
        self.producer.poll(Duration::ZERO);
        Ok(keys.len())
    }

    /// Sends what changed in `dir` since the last publish (or restore) and commits checkpoint
    /// `epoch`. [`ConnectorError::Fenced`] when another owner took the partition.
    pub fn publish(&mut self, dir: &Path, epoch: u64) -> Result<PublishStats> {
        let mut stats = PublishStats::default();
        let files = list_files(dir)?;
        let first = self.next_record;
        let mut next: BTreeMap<String, FileRef> = BTreeMap::new();
        let mut next_local = BTreeMap::new();
        for (rel, path) in &files {
            let now = local_file(path)?;
            let old = self.listing.get(rel).zip(self.local.get(rel));
            let (mut entry, from) = match old {
                Some((entry, was)) if *was == now => (entry.clone(), now.len),
                Some((entry, was))
                    if append_only(rel)
                        && was.ino == now.ino
                        && was.len <= now.len
                        && entry.chunks.len() < FILE_CHUNKS_MAX =>
                {
                    (entry.clone(), was.len)
                }
                Some((entry, _)) => {
                    self.garbage
                        .extend(entry.chunks.iter().map(|c| c.key.clone()));
                    (FileRef::empty(rel), 0)
                }
                None => (FileRef::empty(rel), 0),
            };
            if now.len > from {
                let file = File::open(path)
                    .map_err(|e| ConnectorError::io(format!("opening '{}'", path.display()), e))?;
                let mut at = from;
                while at < now.len {
                    let len = ((now.len - at) as usize).min(STATE_CHUNK_BYTES);
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, at).map_err(|e| {
                        ConnectorError::io(format!("reading '{}'", path.display()), e)
                    })?;
                    let key = format!("c/{}/{}", self.owner, self.next_chunk);
                    self.next_chunk += 1;
                    self.send(&key, Some(&buf))?;
                    entry.chunks.push(ChunkRef {
                        key,
                        len: len as u64,
                        crc: crc32c::crc32c(&buf),
                    });
                    stats.chunks += 1;
                    stats.bytes += len as u64;
                    at += len as u64;
                }
            }
            entry.len = now.len;
            next.insert(rel.clone(), entry);
            next_local.insert(rel.clone(), now);
        }
        for (rel, entry) in &self.listing {
            if !next.contains_key(rel) {
                self.garbage
                    .extend(entry.chunks.iter().map(|c| c.key.clone()));
            }
        }
        let sent = self.next_record;
        self.wait(first, sent)?;
        self.listing = next;
        self.local = next_local;
        self.commit(epoch)?;
        stats.tombstones = self.collect_garbage()?;
        Ok(stats)
    }
}

impl Drop for StateTopic {
    fn drop(&mut self) {
        // Let the last tombstones go out (best effort).
        let _ = self.producer.flush(Duration::from_secs(1));
    }
}

/// `dir/rel`, refusing paths that leave `dir`.
fn safe_join(dir: &Path, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(ConnectorError::Kafka(format!(
            "the state topic names a file outside the checkpoint directory: '{rel}'"
        )));
    }
    Ok(dir.join(p))
}

fn local_file(path: &Path) -> Result<LocalFile> {
    let m = fs::metadata(path)
        .map_err(|e| ConnectorError::io(format!("reading '{}'", path.display()), e))?;
    Ok(LocalFile {
        ino: m.ino(),
        len: m.len(),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
    })
}

/// Writes one file of a listing from its chunks, checking each chunk's length and CRC.
fn write_file(
    path: &Path,
    file: &FileRef,
    chunks: &BTreeMap<String, Vec<u8>>,
    what: &str,
    epoch: u64,
) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| ConnectorError::io(format!("creating '{}'", parent.display()), e))?;
    }
    let mut out = File::create(path)
        .map_err(|e| ConnectorError::io(format!("creating '{}'", path.display()), e))?;
    let mut len = 0u64;
    for c in &file.chunks {
        let bytes = chunks.get(&c.key).ok_or_else(|| {
            ConnectorError::Kafka(format!(
                "{what}: chunk '{}' of '{}' (checkpoint {epoch}) is missing from the topic: \
                 the topic must be compacted (cleanup.policy=compact), never delete records by \
                 age or size (librdkafka's mock cluster keeps only about 5 MiB per partition)",
                c.key, file.path
            ))
        })?;
        if bytes.len() as u64 != c.len || crc32c::crc32c(bytes) != c.crc {
            return Err(ConnectorError::Kafka(format!(
                "{what}: chunk '{}' of '{}' (checkpoint {epoch}) is corrupt (length or CRC32C \
                 differs from the listing)",
                c.key, file.path
            )));
        }
        out.write_all(bytes)
            .map_err(|e| ConnectorError::io(format!("writing '{}'", path.display()), e))?;
        len += c.len;
    }
    if len != file.len {
        return Err(ConnectorError::Kafka(format!(
            "{what}: '{}' (checkpoint {epoch}) has {len} bytes in its chunks, the listing says {}",
            file.path, file.len
        )));
    }
    out.sync_all()
        .map_err(|e| ConnectorError::io(format!("fsyncing '{}'", path.display()), e))
}

/// Every regular file under `dir` by its relative path ('/'-separated), sorted; lock files
/// and temporary files are not state.
fn list_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d)
            .map_err(|e| ConnectorError::io(format!("listing '{}'", d.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| ConnectorError::io(format!("listing '{}'", d.display()), e))?;
            let path = entry.path();
            let ty = entry
                .file_type()
                .map_err(|e| ConnectorError::io(format!("reading '{}'", path.display()), e))?;
            if ty.is_dir() {
                stack.push(path);
            } else if ty.is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") || name.ends_with(".lock") {
                    continue;
                }
                let rel = path
                    .strip_prefix(dir)
                    .map_err(|_| ConnectorError::Internal("a file outside its directory".into()))?
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, path);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "state_topic_tests.rs"]
mod tests;
