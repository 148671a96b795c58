//! `spillway serve` end to end: a trades-generator job into a blackhole sink, live
//! `/metrics` and `/health`, SIGHUP, SIGTERM with exit 0 within the shutdown timeout, and
//! bad configurations refused with exit 1.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spillway_engine::serve_http::get;

const SHUTDOWN_TIMEOUT_S: u64 = 10;

/// Kills the server if a test fails before it stopped.
struct Server {
    child: Child,
    stderr_path: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    fn start(config: &Path, stderr_path: &Path) -> Server {
        let stderr = std::fs::File::create(stderr_path).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spillway serve does not start: {e}"));
        Server {
            child,
            stderr_path: stderr_path.to_path_buf(),
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit; its exit code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
                return status.code();
            }
            assert!(
                started.elapsed() < limit,
                "spillway serve did not exit within {limit:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn free_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().unwrap_or_else(|e| panic!("{e}"))
}

const TRADES_SQL: &str = "
CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '200' MILLISECOND)
WITH ('connector' = 'trades-generator', 'rows-per-second' = '5000', 'partitions' = '2');
CREATE TABLE stats (symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
  trades BIGINT)
WITH ('connector' = 'blackhole');
INSERT INTO stats
SELECT symbol, window_start, window_end, COUNT(*)
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY symbol, window_start, window_end;
";

fn config_text(address: SocketAddr, level: &str) -> String {
    format!(
        "queries = [\"trades.sql\"]\nshutdown_timeout = \"{SHUTDOWN_TIMEOUT_S} s\"\n\
         [http]\naddress = \"{address}\"\n[log]\nformat = \"text\"\nlevel = \"{level}\"\n"
    )
}

/// The sum over shards of the `spillway_records_in_total` series of job `trades`.
fn records_in(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("spillway_records_in_total{job=\"trades\",shard="))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn scrape(address: SocketAddr, server: &Server) -> String {
    let (status, body) = get(address, "/metrics")
        .unwrap_or_else(|e| panic!("GET /metrics: {e}; stderr:\n{}", server.stderr()));
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn serve_exposes_live_metrics_and_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let address = free_address();
    std::fs::write(dir.path().join("trades.sql"), TRADES_SQL).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("spillway.toml");
    std::fs::write(&config, config_text(address, "info")).unwrap_or_else(|e| panic!("{e}"));
    let mut server = Server::start(&config, &dir.path().join("stderr.log"));

    // Wait for the server, then for records_in to grow between two scrapes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first = None;
    let metrics = loop {
        assert!(
            Instant::now() < deadline,
            "records_in did not grow; stderr:\n{}",
            server.stderr()
        );
        assert_eq!(
            server.child.try_wait().ok().flatten(),
            None,
            "{}",
            server.stderr()
        );
        if let Ok((200, body)) = get(address, "/metrics") {
            let n = records_in(&body);
            match first {
                None if n > 0 => first = Some(n),
                Some(f) if n > f => break body,
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains("spillway_job_running{job=\"trades\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("spillway_skipped_records_total{job=\"trades\",shard=\"0\",reason=\"malformed_json\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "spillway_source_position{job=\"trades\",shard=\"0\",topic=\"trades\",partition=\"0\"}"
        ),
        "{metrics}"
    );
    let health = get(address, "/health").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health, (200, "ok\n".to_string()));
    let missing = get(address, "/nothing").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(missing.0, 404);

    // SIGHUP: the log level is applied, a new address is reported as needing a restart
    // (and not applied: the server still answers on the old one).
    let other = free_address();
    std::fs::write(&config, config_text(other, "debug")).unwrap_or_else(|e| panic!("{e}"));
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("needs a restart") {
        assert!(
            Instant::now() < deadline,
            "no reload log; stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.stderr();
    assert!(log.contains("log level is now 'debug'"), "{log}");
    assert!(log.contains("http.address changed"), "{log}");
    let before = records_in(&scrape(address, &server));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        records_in(&scrape(address, &server)) > before,
        "the job still runs"
    );

    // SIGTERM: exit 0 within the shutdown timeout, having logged how the job stopped.
    server.signal("TERM");
    let code = server.wait_exit(Duration::from_secs(SHUTDOWN_TIMEOUT_S));
    let log = server.stderr();
    assert_eq!(code, Some(0), "stderr:\n{log}");
    assert!(log.contains("job 'trades' stopped:"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

/// Runs `spillway serve` on a configuration that must be refused; its stderr.
fn refused(config_text: &str) -> String {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("spillway.toml");
    std::fs::write(&config, config_text).unwrap_or_else(|e| panic!("{e}"));
    let mut server = Server::start(&config, &dir.path().join("stderr.log"));
    let code = server.wait_exit(Duration::from_secs(30));
    let err = server.stderr();
    assert_eq!(code, Some(1), "stderr:\n{err}");
    assert!(err.contains("error:"), "{err}");
    assert!(
        err.contains("spillway.toml") || err.contains("missing.sql"),
        "{err}"
    );
    err
}

#[test]
fn bad_configurations_exit_1_naming_what_is_wrong() {
    let address = free_address();
    let err = refused(&format!(
        "queries = [\"trades.sql\"]\n[http]\naddres = \"{address}\"\n"
    ));
    assert!(err.contains("line 3") && err.contains("addres"), "{err}");

    let err = refused("queries = [\"trades.sql\"]\nshutdown_timeout = \"later\"\n");
    assert!(
        err.contains("shutdown_timeout") && err.contains("'later'"),
        "{err}"
    );

    let err = refused("queries = [\"missing.sql\"]\n");
    assert!(err.contains("cannot read the query file"), "{err}");
    assert!(err.contains("missing.sql"), "{err}");
}

/// A trades-generator job (fixed start time, so a resumed run continues the same stream)
/// into an exactly-once filesystem sink.
const CHECKPOINTED_SQL: &str = "
CREATE TABLE trades (symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '200' MILLISECOND)
WITH ('connector' = 'trades-generator', 'rows-per-second' = '20000', 'partitions' = '2',
      'start-ts' = '1700000000000');
CREATE TABLE stats (symbol STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
  trades BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
INSERT INTO stats
SELECT symbol, window_start, window_end, COUNT(*)
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '100' MILLISECOND))
GROUP BY symbol, window_start, window_end;
";

/// The sum over partitions of `spillway_source_position` of job `trades`.
fn positions(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("spillway_source_position{job=\"trades\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Scrapes until `positions` reaches `at_least`.
fn wait_positions(address: SocketAddr, server: &Server, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "positions stayed below {at_least}; stderr:\n{}",
            server.stderr()
        );
        if let Ok((200, body)) = get(address, "/metrics") {
            let p = positions(&body);
            if p >= at_least && body.contains("spillway_checkpoints_total{job=\"trades\"}") {
                return p;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_takes_a_final_checkpoint_and_a_restart_resumes_from_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let address = free_address();
    // The sink path is relative to the server's working directory: make it absolute.
    let sql = CHECKPOINTED_SQL.replace("'out'", &format!("'{}'", dir.path().join("out").display()));
    std::fs::write(dir.path().join("trades.sql"), sql).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("spillway.toml");
    std::fs::write(
        &config,
        format!(
            "queries = [\"trades.sql\"]\nstate_dir = \"state\"\nshutdown_timeout = \"{SHUTDOWN_TIMEOUT_S} s\"\n\
             [http]\naddress = \"{address}\"\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let mut server = Server::start(&config, &dir.path().join("first.log"));
    let before_stop = wait_positions(address, &server, 20_000);
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(SHUTDOWN_TIMEOUT_S)),
        Some(0),
        "{}",
        server.stderr()
    );
    let log = server.stderr();
    assert!(log.contains("final checkpoint"), "{log}");
    assert!(
        dir.path().join("state/trades/job").exists(),
        "checkpoints under state_dir/JOB"
    );
    let first_rows = spillway_connectors::file_sink::read_committed_lines(&dir.path().join("out"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !first_rows.is_empty(),
        "the final checkpoint published results"
    );

    // The restart resumes: its positions start where the first run stopped, not at 0.
    let mut server = Server::start(&config, &dir.path().join("second.log"));
    let resumed = wait_positions(address, &server, 1);
    assert!(
        resumed >= before_stop,
        "resumed at {resumed}, the first run had read {before_stop}; stderr:\n{}",
        server.stderr()
    );
    wait_positions(address, &server, resumed + 10_000);
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(SHUTDOWN_TIMEOUT_S)),
        Some(0),
        "{}",
        server.stderr()
    );

    // Every window's result was published once over both runs.
    let rows = spillway_connectors::file_sink::read_committed_lines(&dir.path().join("out"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(rows.len() > first_rows.len());
    let mut keys = std::collections::HashSet::new();
    for line in &rows {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            keys.insert((v["symbol"].clone(), v["window_start"].clone())),
            "published twice: {line}"
        );
    }
}
