//! Running the `spillway` binary as a separate process (crash tests kill it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The release `spillway` binary of this workspace (built by `cargo test --release
/// --workspace`, which builds every member's binaries before running tests).
pub fn spillway_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("release/spillway");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p spillway-engine` (or the workspace tests)",
        bin.display()
    );
    bin
}

/// Starts `spillway run SQL --shards N --no-pin` with its output in `log`.
pub fn start_run(sql: &Path, shards: usize, log: &Path) -> Result<Child, String> {
    start_run_with(sql, shards, log, None)
}

/// Like [`start_run`], with a crash point armed (`NAME:N`, see the engine's `crash_points`).
pub fn start_run_with(
    sql: &Path,
    shards: usize,
    log: &Path,
    crash_point: Option<&str>,
) -> Result<Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut command = Command::new(spillway_binary());
    if let Some(point) = crash_point {
        command.env("SPILLWAY_CRASH_POINT", point);
    }
    command
        .arg("run")
        .arg(sql)
        .args(["--shards", &shards.to_string(), "--no-pin"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot start spillway: {e}"))
}

/// Sends SIGTERM (a graceful stop) to a child.
pub fn terminate(child: &Child) -> Result<(), String> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .map_err(|e| format!("kill -TERM: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -TERM {} failed", child.id()))
    }
}

/// The rows of the committed part files of an exactly-once filesystem sink directory.
pub fn committed_rows(dir: &Path) -> Result<Vec<serde_json::Value>, String> {
    let lines = spillway_connectors::file_sink::read_committed_lines(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    lines
        .iter()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("bad output line {l}: {e}")))
        .collect()
}
