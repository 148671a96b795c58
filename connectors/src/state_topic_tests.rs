use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use super::*;
use crate::embedded_kafka::EmbeddedKafka;

const TOPIC: &str = "job-state";

fn never() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))
}

fn config(kafka: &EmbeddedKafka, partition: i32) -> StateTopicConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", kafka.bootstrap_servers());
    StateTopicConfig {
        client,
        topic: TOPIC.into(),
        partition,
        timeout: Duration::from_secs(20),
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    list_files(dir)
        .unwrap()
        .into_iter()
        .map(|(rel, path)| (rel, fs::read(path).unwrap()))
        .collect()
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// Replaces a file the way the store replaces its manifest (write a temporary, rename).
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_new_owner_restores_the_last_checkpoint_with_appends_replacements_and_deletions() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_topic(TOPIC, 2).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");

    let mut a = StateTopic::connect(config(&kafka, 1)).unwrap();
    let fresh = a.restore(&a_dir, &never()).unwrap();
    assert_eq!(fresh.epoch, None);
    assert!(snapshot(&a_dir).is_empty());

    // Epoch 1: a segment, a manifest, a file bigger than one chunk.
    let seg = a_dir.join("gen-000001/shard-0000/seg-0000000000000000.log");
    let manifest = a_dir.join("gen-000001/shard-0000/MANIFEST");
    let old_seg = a_dir.join("gen-000001/shard-0000/seg-0000000000000001.log");
    append(&seg, b"first checkpoint;");
    replace(&manifest, b"manifest 1");
    let big: Vec<u8> = (0..STATE_CHUNK_BYTES * 2 + 77)
        .map(|i| (i % 251) as u8)
        .collect();
    append(&old_seg, &big);
    fs::write(a_dir.join("partition.lock"), b"not state").unwrap();
    let s1 = a.publish(&a_dir, 1).unwrap();
    assert_eq!(s1.chunks, 5, "{s1:?}");

    // Epoch 2: the segment grows (only the new bytes go out), the manifest is replaced,
    // a segment is deleted.
    append(&seg, b"second checkpoint;");
    replace(&manifest, b"manifest 2, longer");
    fs::remove_file(&old_seg).unwrap();
    let s2 = a.publish(&a_dir, 2).unwrap();
    assert_eq!(s2.chunks, 2, "{s2:?}");
    assert_eq!(s2.bytes, 18 + 18, "{s2:?}");
    assert_eq!(
        s2.tombstones, 4,
        "old manifest + 3 chunks of the deleted file: {s2:?}"
    );

    // Nothing changed: nothing but the commit record goes out.
    let s3 = a.publish(&a_dir, 3).unwrap();
    assert_eq!((s3.chunks, s3.tombstones), (0, 0), "{s3:?}");

    // Another owner's directory has stale files: they disappear.
    append(&b_dir.join("stale"), b"x");
    let mut b = StateTopic::connect(config(&kafka, 1)).unwrap();
    let r = b.restore(&b_dir, &never()).unwrap();
    assert_eq!(r.epoch, Some(3));
    let mut expected = snapshot(&a_dir);
    expected.remove("partition.lock");
    assert_eq!(snapshot(&b_dir), expected);
    assert_eq!(
        expected[&"gen-000001/shard-0000/seg-0000000000000000.log".to_string()],
        b"first checkpoint;second checkpoint;"
    );

    // The other partition is untouched.
    let mut c = StateTopic::connect(config(&kafka, 0)).unwrap();
    assert_eq!(
        c.restore(&tmp.path().join("c"), &never()).unwrap().epoch,
        None
    );
}

/// A one-partition state topic whose owner A committed checkpoint 1 (one segment file).
fn owner_with_epoch_1() -> (
    EmbeddedKafka,
    tempfile::TempDir,
    std::path::PathBuf,
    StateTopic,
) {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_topic(TOPIC, 1).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let mut a = StateTopic::connect(config(&kafka, 0)).unwrap();
    a.restore(&a_dir, &never()).unwrap();
    append(&a_dir.join("seg-0000000000000000.log"), b"epoch 1;");
    a.publish(&a_dir, 1).unwrap();
    (kafka, tmp, a_dir, a)
}

#[test]
fn an_owner_whose_partition_was_claimed_is_fenced_and_its_late_commit_ignored() {
    let (kafka, tmp, a_dir, mut a) = owner_with_epoch_1();

    // B takes the partition while A still runs.
    let b_dir = tmp.path().join("b");
    let mut b = StateTopic::connect(config(&kafka, 0)).unwrap();
    assert_eq!(b.restore(&b_dir, &never()).unwrap().epoch, Some(1));

    // A's next checkpoint is refused: its sink must not publish epoch 2.
    append(
        &a_dir.join("seg-0000000000000000.log"),
        b"epoch 2 of a zombie;",
    );
    let e = a.publish(&a_dir, 2).unwrap_err();
    assert!(matches!(e, ConnectorError::Fenced(_)), "{e}");
    assert!(e.to_string().contains(b.owner()), "{e}");

    // A third owner gets B's state (epoch 1), not the zombie's epoch 2.
    let c_dir = tmp.path().join("c");
    let mut c = StateTopic::connect(config(&kafka, 0)).unwrap();
    assert_eq!(c.restore(&c_dir, &never()).unwrap().epoch, Some(1));
    assert_eq!(
        fs::read(c_dir.join("seg-0000000000000000.log")).unwrap(),
        b"epoch 1;"
    );
    // And B, claimed over by C, is fenced in turn.
    append(&b_dir.join("seg-0000000000000000.log"), b"epoch 2 of b;");
    assert!(matches!(
        b.publish(&b_dir, 2).unwrap_err(),
        ConnectorError::Fenced(_)
    ));
}

#[test]
fn a_torn_upload_is_ignored_and_its_chunks_removed_and_a_corrupt_chunk_is_an_error() {
    let (kafka, tmp, _, a) = owner_with_epoch_1();

    // A crash between the chunks and the commit record leaves chunks no commit names.
    let producer: BaseProducer = config(&kafka, 0).client.create().unwrap();
    let torn = format!("c/{}/999", a.owner());
    producer
        .send(
            BaseRecord::to(TOPIC)
                .partition(0)
                .key(&torn)
                .payload(&b"never committed"[..]),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    drop(a);

    let mut b = StateTopic::connect(config(&kafka, 0)).unwrap();
    let r = b.restore(&tmp.path().join("b"), &never()).unwrap();
    assert_eq!(r.epoch, Some(1));
    // A's claim and commit and the torn chunk.
    assert_eq!(r.tombstones, 3, "{r:?}");

    // A commit naming a chunk whose bytes do not match is refused with the file's name. (A
    // key of its own: B's tombstone for the torn chunk may still be on its way.)
    let forged = "c/forger/0".to_string();
    let listing = Listing {
        owner: "forger".into(),
        epoch: 9,
        files: vec![FileRef {
            path: "seg-0000000000000000.log".into(),
            len: 15,
            chunks: vec![ChunkRef {
                key: forged.clone(),
                len: 15,
                crc: 1,
            }],
        }],
    };
    let value = serde_json::to_vec(&listing).unwrap();
    producer
        .send(
            BaseRecord::to(TOPIC)
                .partition(0)
                .key(&forged)
                .payload(&b"never committed"[..]),
        )
        .unwrap();
    producer
        .send(
            BaseRecord::to(TOPIC)
                .partition(0)
                .key("claim/forger")
                .payload(&b"forger"[..]),
        )
        .unwrap();
    producer
        .send(
            BaseRecord::to(TOPIC)
                .partition(0)
                .key("commit/forger")
                .payload(&value),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    let mut c = StateTopic::connect(config(&kafka, 0)).unwrap();
    let e = c.restore(&tmp.path().join("c"), &never()).unwrap_err();
    assert!(
        e.to_string().contains("corrupt") && e.to_string().contains("seg-0000000000000000.log"),
        "{e}"
    );
}

#[test]
fn a_stopped_restore_ends_without_committing() {
    let (kafka, tmp, _, _a) = owner_with_epoch_1();
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut b = StateTopic::connect(config(&kafka, 0)).unwrap();
    let e = b.restore(&tmp.path().join("b"), &stopped).unwrap_err();
    assert!(matches!(e, ConnectorError::Stopped(_)), "{e}");
    // A's commit stays the valid one.
    let mut c = StateTopic::connect(config(&kafka, 0)).unwrap();
    assert_eq!(
        c.restore(&tmp.path().join("c"), &never()).unwrap().epoch,
        Some(1)
    );
}

#[test]
fn paths_outside_the_directory_are_refused() {
    let dir = Path::new("/x");
    assert!(safe_join(dir, "../etc/passwd").is_err());
    assert!(safe_join(dir, "/etc/passwd").is_err());
    assert_eq!(
        safe_join(dir, "gen-1/MANIFEST").unwrap(),
        dir.join("gen-1/MANIFEST")
    );
}
