//! A real Kafka-protocol broker for the tests: `tansu` (an Apache Kafka compatible broker in
//! Rust), run as a separate process with in-memory storage on a free local port.
//!
//! [`tansu_binary`] finds `tansu` on PATH or in cargo's bin directory; when it is missing it
//! installs it once per machine with `cargo install` (guarded by a lock directory under the
//! target directory, so parallel tests install it once). [`TansuBroker::start`] starts a
//! broker and waits until it answers a metadata request; dropping it kills the process.
//! Nothing is skipped silently: when tansu cannot be installed or started, the error says why
//! and the test fails.

use std::fs::{self, File};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::kafka;

/// The tansu release the tests use, and the features it is built with.
pub const TANSU_VERSION: &str = "0.6.0";
pub const TANSU_FEATURES: &str = "dynostore,libsql";
/// How long a started broker may take to answer its first metadata request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to start a broker (a free port found by binding port 0 may be taken meanwhile).
const START_ATTEMPTS_MAX: usize = 3;
/// A lock directory older than this is left over from a killed install and is removed.
const INSTALL_LOCK_STALE_AFTER: Duration = Duration::from_secs(3 * 3600);
/// Bytes of the broker's log quoted in an error.
const LOG_TAIL_BYTES_MAX: usize = 4_000;

/// Finds `tansu` on PATH or in cargo's bin directory.
pub fn find_tansu() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo").join("bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
}

/// The `tansu` executable, installed with `cargo install` if it is missing.
pub fn tansu_binary() -> Result<PathBuf, String> {
    if let Some(p) = find_tansu() {
        return Ok(p);
    }
    let lock = InstallLock::acquire(&install_lock_path()?)?;
    // Another test may have installed it while this one waited for the lock.
    if let Some(p) = find_tansu() {
        drop(lock);
        return Ok(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let args = [
        "install",
        "tansu",
        "--version",
        TANSU_VERSION,
        "--features",
        TANSU_FEATURES,
    ];
    eprintln!(
        "tansu is not installed: running `{cargo} {}` (once per machine; it takes several minutes)",
        args.join(" ")
    );
    let status = Command::new(&cargo)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run `{cargo} install tansu`: {e}"))?;
    drop(lock);
    if !status.success() {
        return Err(format!(
            "`{cargo} {}` failed ({status}); the tansu tests need the tansu broker",
            args.join(" ")
        ));
    }
    find_tansu().ok_or_else(|| {
        "`cargo install tansu` succeeded but no `tansu` is on PATH or in ~/.cargo/bin".to_string()
    })
}

/// `<target>/<profile>/tansu-install.lock`, beside the test executables' `deps` directory.
fn install_lock_path() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the test executable: {e}"))?;
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    if dir.file_name().is_some_and(|n| n == "deps") {
        if let Some(up) = dir.parent() {
            dir = up.to_path_buf();
        }
    }
    Ok(dir.join("tansu-install.lock"))
}

/// A lock directory (creating a directory is atomic) holding the owner's pid. A lock whose
/// owner no longer runs, or that is very old, is stale and taken over.
struct InstallLock {
    dir: PathBuf,
}

impl InstallLock {
    fn acquire(dir: &Path) -> Result<Self, String> {
        let mut announced = false;
        loop {
            match fs::create_dir(dir) {
                Ok(()) => {
                    let pid = std::process::id().to_string();
                    fs::write(dir.join("pid"), pid)
                        .map_err(|e| format!("cannot write {}: {e}", dir.join("pid").display()))?;
                    return Ok(InstallLock {
                        dir: dir.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Self::is_stale(dir) {
                        let _ = fs::remove_dir_all(dir);
                        continue;
                    }
                    if !announced {
                        eprintln!(
                            "waiting for another test installing tansu ({})",
                            dir.display()
                        );
                        announced = true;
                    }
                    if find_tansu().is_some() {
                        // The other install finished; the caller finds the binary.
                        return Ok(InstallLock {
                            dir: PathBuf::new(),
                        });
                    }
                    thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(format!("cannot create the lock {}: {e}", dir.display())),
            }
        }
    }

    fn is_stale(dir: &Path) -> bool {
        let old = fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > INSTALL_LOCK_STALE_AFTER);
        let owner_gone = match fs::read_to_string(dir.join("pid")) {
            Ok(pid) => !Path::new("/proc").join(pid.trim()).exists(),
            // The owner has not written its pid yet (or just removed the lock).
            Err(_) => false,
        };
        old || owner_gone
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind a local port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot read the bound port: {e}"))
}

/// A running tansu broker with in-memory storage; killed when dropped.
pub struct TansuBroker {
    child: Child,
    port: u16,
    /// Holds the broker's log file.
    log_dir: tempfile::TempDir,
}

impl TansuBroker {
    /// Starts a broker on a free local port and waits until it answers metadata.
    pub fn start() -> Result<Self, String> {
        let binary = tansu_binary()?;
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS_MAX {
            match Self::start_once(&binary) {
                Ok(b) => return Ok(b),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn start_once(binary: &Path) -> Result<Self, String> {
        let port = free_port()?;
        let log_dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
        let log_path = log_dir.path().join("tansu.log");
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot clone the log file handle: {e}"))?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env_remove("CLUSTER_ID")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut broker = TansuBroker {
            child,
            port,
            log_dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(format!(
                    "tansu exited ({status}) before answering on port {port}; its log:\n{}",
                    broker.log_tail()
                ));
            }
            if kafka::answers_metadata(&broker.bootstrap_servers(), Duration::from_secs(1)) {
                return Ok(broker);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "tansu did not answer a metadata request on port {port} within {:?}; its log:\n{}",
                    STARTUP_TIMEOUT,
                    broker.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:PORT`.
    /// Freezes the broker (SIGSTOP) for `pause`, then lets it go on (SIGCONT): its clients'
    /// requests time out and connections are re-established, as when the network drops.
    pub fn freeze_for(&self, pause: std::time::Duration) -> Result<(), String> {
        let signal = |sig: &str| -> Result<(), String> {
            let status = Command::new("kill")
                .args([sig, &self.child.id().to_string()])
                .status()
                .map_err(|e| format!("kill {sig}: {e}"))?;
            status
                .success()
                .then_some(())
                .ok_or_else(|| format!("kill {sig} {} failed", self.child.id()))
        };
        signal("-STOP")?;
        std::thread::sleep(pause);
        signal("-CONT")
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic through the Admin API.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), String> {
        kafka::create_topic(&self.bootstrap_servers(), topic, partitions)
    }

    /// The end of the broker's log, for error messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.log_dir.path().join("tansu.log")) {
            let _ = f.read_to_string(&mut text);
        }
        let cut = text.len().saturating_sub(LOG_TAIL_BYTES_MAX);
        let cut = (cut..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[cut..].to_string()
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port().expect("port");
        assert!(port > 0);
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn stale_install_lock_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock_dir = dir.path().join("lock");
        fs::create_dir(&lock_dir).expect("lock dir");
        // No process has pid 0 under /proc: the owner is gone.
        fs::write(lock_dir.join("pid"), "0").expect("pid");
        let lock = InstallLock::acquire(&lock_dir).expect("taken over");
        let pid = fs::read_to_string(lock_dir.join("pid")).expect("own pid");
        assert_eq!(pid, std::process::id().to_string());
        drop(lock);
        assert!(!lock_dir.exists(), "the lock is removed when dropped");
    }
}
