//! The configuration file of `spillway serve` (TOML):
//!
//! ```toml
//! queries = ["trades.sql", "/etc/spillway/alerts.sql"]  # each file runs as its own job
//! profile = "profile.toml"          # optional tuning profile (spillway tune writes one)
//! shutdown_timeout = "30 s"         # optional; how long SIGTERM waits for jobs to stop
//! state_dir = "/var/lib/spillway"   # optional; job X checkpoints into STATE_DIR/X and
//!                                   # resumes from it on restart (a query's own
//!                                   # SET 'checkpoint.dir' wins)
//! [http]
//! address = "127.0.0.1:9464"        # optional; /metrics and /health
//! [log]
//! format = "text"                   # or "json"
//! level = "info"                    # a tracing filter, e.g. "info,spillway_engine=debug"
//! ```
//! Relative paths are relative to the configuration file's folder. Unknown keys are errors
//! naming the file, the line and the key. A job is named after its query file (`trades.sql`
//! is job `trades`), so two query files may not share a name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{EngineError, Result};

/// Largest configuration file read.
pub const CONFIG_BYTES_MAX: u64 = 1 << 20;
/// Most query files one server runs.
pub const QUERIES_MAX: usize = 64;
/// Longest shutdown timeout accepted.
pub const SHUTDOWN_TIMEOUT_MS_MAX: i64 = 3_600_000;
/// Default `[http] address`.
pub const HTTP_ADDRESS_DEFAULT: &str = "127.0.0.1:9464";
/// Default `[log] level`.
pub const LOG_LEVEL_DEFAULT: &str = "info";
/// Default `shutdown_timeout`, milliseconds.
pub const SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// How log lines are written (to stderr, which systemd's journal collects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// One query file, and the job that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryFile {
    /// The job's name: the file name without its extension.
    pub job: String,
    pub path: PathBuf,
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// The file it was read from.
    pub origin: PathBuf,
    pub queries: Vec<QueryFile>,
    pub profile: Option<PathBuf>,
    pub http_address: SocketAddr,
    pub log_format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive string.
    pub log_level: String,
    pub shutdown_timeout: Duration,
    /// Checkpoints of job X go to `state_dir/X`.
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    queries: Vec<PathBuf>,
    profile: Option<PathBuf>,
    shutdown_timeout: Option<String>,
    state_dir: Option<PathBuf>,
    http: Option<HttpSection>,
    log: Option<LogSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    format: Option<LogFormat>,
    level: Option<String>,
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl ServeConfig {
    /// Reads and checks the configuration at `path` (not the query files themselves).
    pub fn load(path: &Path) -> Result<ServeConfig> {
        let origin = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| EngineError::io(format!("cannot read the configuration {origin}"), e))?;
        if meta.len() > CONFIG_BYTES_MAX {
            return Err(EngineError::Config(format!(
                "configuration {origin} has {} bytes, more than the {CONFIG_BYTES_MAX} allowed",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::io(format!("cannot read the configuration {origin}"), e))?;
        ServeConfig::from_toml_str(&text, path)
    }

    /// Parses and checks a configuration; `origin` names the file in errors and anchors
    /// relative paths.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<ServeConfig> {
        let name = origin.display();
        let bad = |key: &str, what: String| {
            EngineError::Config(format!("configuration {name}: {key}: {what}"))
        };
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(", line {}", line_of(text, s.start)))
                .unwrap_or_default();
            EngineError::Config(format!(
                "configuration {name}{at}: {}",
                e.message().trim_end()
            ))
        })?;
        let base = origin.parent().unwrap_or(Path::new(""));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        if file.queries.is_empty() || file.queries.len() > QUERIES_MAX {
            return Err(bad(
                "queries",
                format!(
                    "lists {} query files; list 1 to {QUERIES_MAX}",
                    file.queries.len()
                ),
            ));
        }
        let mut queries: Vec<QueryFile> = Vec::with_capacity(file.queries.len());
        for path in file.queries {
            let job = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    bad(
                        "queries",
                        format!("'{}' is not a file name", path.display()),
                    )
                })?
                .to_string();
            if let Some(other) = queries.iter().find(|q| q.job == job) {
                return Err(bad(
                    "queries",
                    format!(
                        "'{}' and '{}' would both be job '{job}' (jobs are named after their \
                         file); rename one",
                        other.path.display(),
                        path.display()
                    ),
                ));
            }
            queries.push(QueryFile {
                job,
                path: resolve(path),
            });
        }

        let shutdown_timeout = match file.shutdown_timeout {
            None => Duration::from_millis(SHUTDOWN_TIMEOUT_MS_DEFAULT),
            Some(t) => match spillway_connectors::duration::parse_duration_ms(&t) {
                Some(ms) if ms > 0 && ms <= SHUTDOWN_TIMEOUT_MS_MAX => {
                    Duration::from_millis(ms as u64)
                }
                _ => {
                    return Err(bad(
                        "shutdown_timeout",
                        format!(
                            "'{t}' is not a duration from 1 ms to 1 h (examples: '30 s', \
                             '500 ms', '2 min')"
                        ),
                    ))
                }
            },
        };

        let address = file
            .http
            .and_then(|h| h.address)
            .unwrap_or_else(|| HTTP_ADDRESS_DEFAULT.to_string());
        let http_address: SocketAddr = address.parse().map_err(|_| {
            bad(
                "http.address",
                format!(
                    "'{address}' is not an IP address and port such as '{HTTP_ADDRESS_DEFAULT}'"
                ),
            )
        })?;

        let (log_format, log_level) = match file.log {
            Some(l) => (l.format, l.level),
            None => (None, None),
        };
        let log_level = log_level.unwrap_or_else(|| LOG_LEVEL_DEFAULT.to_string());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(bad(
                "log.level",
                format!("'{log_level}' is not a log filter such as 'info' or 'warn,spillway_engine=debug': {e}"),
            ));
        }

        Ok(ServeConfig {
            origin: origin.to_path_buf(),
            queries,
            profile: file.profile.map(resolve),
            http_address,
            log_format: log_format.unwrap_or(LogFormat::Text),
            log_level,
            shutdown_timeout,
            state_dir: file.state_dir.map(resolve),
        })
    }

    /// The settings that differ from `running` and that a reload cannot apply (changed
    /// contents of the query and profile files are checked by the server).
    pub fn needs_restart(&self, running: &ServeConfig) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.queries != running.queries {
            changed.push("queries");
        }
        if self.profile != running.profile {
            changed.push("profile");
        }
        if self.http_address != running.http_address {
            changed.push("http.address");
        }
        if self.log_format != running.log_format {
            changed.push("log.format");
        }
        if self.state_dir != running.state_dir {
            changed.push("state_dir");
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeConfig> {
        ServeConfig::from_toml_str(text, Path::new("/etc/spillway/spillway.toml"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn full_config_parses_and_resolves_relative_paths() {
        let c = parse(
            r#"
            queries = ["trades.sql", "/srv/q/alerts.sql"]
            profile = "profile.toml"
            shutdown_timeout = "5 s"
            [http]
            address = "0.0.0.0:9000"
            [log]
            format = "json"
            level = "debug"
            "#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.queries[0].job, "trades");
        assert_eq!(c.queries[0].path, Path::new("/etc/spillway/trades.sql"));
        assert_eq!(c.queries[1].path, Path::new("/srv/q/alerts.sql"));
        assert_eq!(c.queries[1].job, "alerts");
        assert_eq!(
            c.profile.as_deref(),
            Some(Path::new("/etc/spillway/profile.toml"))
        );
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.http_address.port(), 9000);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn defaults_apply_when_sections_are_missing() {
        let c = parse(r#"queries = ["a.sql"]"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.http_address.to_string(), HTTP_ADDRESS_DEFAULT);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.log_level, LOG_LEVEL_DEFAULT);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.profile, None);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = err("queries = [\"a.sql\"]\n[http]\nadres = \"x\"\n");
        assert!(e.contains("/etc/spillway/spillway.toml"), "{e}");
        assert!(e.contains("line 3") && e.contains("adres"), "{e}");
        let e = err("queries = [\"a.sql\"]\nshutdown_timeout = \"soon\"\n");
        assert!(
            e.contains("shutdown_timeout") && e.contains("'soon'"),
            "{e}"
        );
        let e = err("queries = [\"a.sql\"]\n[http]\naddress = \"localhost\"\n");
        assert!(
            e.contains("http.address") && e.contains("'localhost'"),
            "{e}"
        );
        let e = err("queries = [\"a.sql\"]\n[log]\nformat = \"xml\"\n");
        assert!(e.contains("line 3") && e.contains("xml"), "{e}");
        let e = err("queries = [\"a.sql\"]\n[log]\nlevel = \"info,[[\"\n");
        assert!(e.contains("log.level"), "{e}");
        let e = err("profile = \"p.toml\"\n");
        assert!(e.contains("queries"), "{e}");
        let e = err("queries = []\n");
        assert!(e.contains("queries") && e.contains("0 query files"), "{e}");
    }

    #[test]
    fn two_queries_with_one_job_name_are_refused() {
        let e = err(r#"queries = ["a/trades.sql", "b/trades.sql"]"#);
        assert!(e.contains("job 'trades'"), "{e}");
    }

    #[test]
    fn needs_restart_lists_what_a_reload_cannot_apply() {
        let a = parse(r#"queries = ["a.sql"]"#).unwrap_or_else(|e| panic!("{e}"));
        let b =
            parse("queries = [\"a.sql\"]\nshutdown_timeout = \"1 s\"\n[log]\nlevel = \"debug\"\n")
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(b.needs_restart(&a).is_empty());
        let c = parse("queries = [\"b.sql\"]\n[http]\naddress = \"127.0.0.1:1\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.needs_restart(&a), vec!["queries", "http.address"]);
    }
}
