//! Checkpoint write throughput of the state store against a plain sequential write + fsync of
//! the same bytes, and recovery time, for 100k and 1M keys (median of 3 runs each).
//!
//! `cargo run --release -p spillway-state --example checkpoint_throughput [-- --smoke]`
//! (`--smoke`: 1000 keys, one run; checks results only.)

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use spillway_state::{BackendChoice, StateError, StateStore, StoreOptions};

/// Bytes of each value.
const VALUE_BYTES: usize = 64;
/// Chunk of the plain sequential write.
const BASELINE_CHUNK_BYTES: usize = 1 << 20;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(b"group-k:");
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64) -> [u8; VALUE_BYTES] {
    let mut v = [0u8; VALUE_BYTES];
    for (j, b) in v.iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(j as u8);
    }
    v
}

struct Run {
    backend: &'static str,
    checkpoint: Duration,
    bytes: u64,
    baseline: Duration,
    recovery: Duration,
}

fn one_run(dir: &Path, keys: u64, backend: BackendChoice) -> Result<Run, StateError> {
    let options = StoreOptions {
        backend,
        ..StoreOptions::default()
    };
    let (mut store, _) = StateStore::open(dir, 0, options.clone())?;
    let backend = store.backend_name();
    let started = Instant::now();
    let mut writer = store.begin_checkpoint(1)?;
    for i in 0..keys {
        writer.put(&key(i), &value(i))?;
    }
    writer.put_meta("offsets", &keys.to_le_bytes())?;
    let stats = writer.commit()?;
    let checkpoint = started.elapsed();
    assert_eq!(stats.records, keys + 1, "every put was written");
    drop(store);

    let started = Instant::now();
    let (store, recovered) = StateStore::open(dir, 0, options)?;
    let recovery = started.elapsed();
    let recovered = recovered.ok_or_else(|| StateError::Usage("no checkpoint recovered".into()))?;
    assert_eq!(recovered.len() as u64, keys, "every key recovered");
    assert_eq!(recovered.get(&key(keys / 2)), Some(&value(keys / 2)[..]));
    assert_eq!(recovered.meta("offsets"), Some(&keys.to_le_bytes()[..]));
    drop(store);

    // The same number of bytes, written sequentially and fsynced once.
    let path = dir.join("baseline.bin");
    let chunk = vec![0xa5u8; BASELINE_CHUNK_BYTES];
    let started = Instant::now();
    let mut file = File::create(&path).map_err(|e| StateError::io("create", &path, e))?;
    let mut left = stats.bytes as usize;
    while left > 0 {
        let n = left.min(chunk.len());
        file.write_all(&chunk[..n])
            .map_err(|e| StateError::io("write", &path, e))?;
        left -= n;
    }
    file.sync_data()
        .map_err(|e| StateError::io("fsync", &path, e))?;
    let baseline = started.elapsed();
    assert_eq!(
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        stats.bytes
    );
    Ok(Run {
        backend,
        checkpoint,
        bytes: stats.bytes,
        baseline,
        recovery,
    })
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() -> Result<(), StateError> {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (sizes, runs): (&[u64], usize) = if smoke {
        (&[1000], 1)
    } else {
        (&[100_000, 1_000_000], 3)
    };
    println!(
        "{:>9} {:>9} {:>10} | {:>12} {:>9} | {:>12} {:>9} | {:>12} | {:>12}",
        "keys",
        "backend",
        "MB",
        "checkpoint",
        "MB/s",
        "write+fsync",
        "MB/s",
        "recovery",
        "keys/s rec."
    );
    for &keys in sizes {
        for backend in [BackendChoice::Auto, BackendChoice::Blocking] {
            let mut results = Vec::new();
            for _ in 0..runs {
                let tmp = tempfile::tempdir_in(std::env::temp_dir())
                    .map_err(|e| StateError::io("create", std::env::temp_dir(), e))?;
                results.push(one_run(tmp.path(), keys, backend)?);
            }
            let bytes = results[0].bytes;
            let checkpoint = median(results.iter().map(|r| r.checkpoint).collect());
            let baseline = median(results.iter().map(|r| r.baseline).collect());
            let recovery = median(results.iter().map(|r| r.recovery).collect());
            let name = results[0].backend;
            println!(
                "{keys:>9} {name:>9} {:>10.1} | {:>10.1}ms {:>9.0} | {:>10.1}ms {:>9.0} | {:>10.1}ms | {:>12.0}",
                bytes as f64 / 1e6,
                checkpoint.as_secs_f64() * 1e3,
                mb_per_s(bytes, checkpoint),
                baseline.as_secs_f64() * 1e3,
                mb_per_s(bytes, baseline),
                recovery.as_secs_f64() * 1e3,
                keys as f64 / recovery.as_secs_f64(),
            );
        }
    }
    Ok(())
}
