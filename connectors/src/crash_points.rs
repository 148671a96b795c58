//! Named crash points for recovery tests: with `SPILLWAY_CRASH_POINT=NAME:N` in the
//! environment, the process aborts (no destructors, no flushes, like a power cut) the N-th time
//! it reaches point NAME. A SIGKILL at a random moment rarely lands in the few milliseconds
//! between two steps of a commit; these points land there every time.
//!
//! Points: `snapshot-taken` (a shard took its snapshot, before its barriers), `state-durable`
//! (a shard's checkpoint and sink epoch are durable, before the committer hears of it),
//! `marker-committed` (the job record names the new checkpoint, before the sink publishes
//! its epoch).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable naming the crash point.
pub const CRASH_POINT_ENV: &str = "SPILLWAY_CRASH_POINT";

struct Armed {
    name: String,
    remaining: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let text = std::env::var(CRASH_POINT_ENV).ok()?;
            let (name, n) = text.split_once(':').unwrap_or((text.as_str(), "1"));
            let n: u64 = n.parse().ok().filter(|&n| n > 0)?;
            Some(Armed {
                name: name.to_string(),
                remaining: AtomicU64::new(n),
            })
        })
        .as_ref()
}

/// Marks that point `name` was reached; aborts the process if it is the armed one's turn.
pub fn reached(name: &str) {
    let Some(a) = armed() else { return };
    if a.name == name && a.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        eprintln!("spillway: crash point '{name}' reached: aborting");
        std::process::abort();
    }
}
