//! `spillway serve --config FILE`: runs every query file of the configuration as its own job
//! (its own thread; shards of different jobs may share cores), serves `/metrics` and
//! `/health`, and reacts to signals:
//! - SIGTERM / SIGINT: every job stops reading, finishes its in-flight work (open windows
//!   stay unfired until the checkpoint work lands), and the process exits 0 within
//!   `shutdown_timeout` (1 if a job had failed or did not stop in time); a second signal
//!   ends the process at once.
//! - SIGHUP: re-reads the configuration. A new `[log] level` is applied; any other change
//!   (queries or their contents, profile, address, log format) is logged as needing a
//!   restart: re-planning a running job is not safe, its window state and source positions
//!   belong to the plan it started with.
//!
//! A job that fails is not restarted: `/health` answers 503 naming it and its
//! `spillway_job_running` is 0 while the other jobs go on; when no job runs any more the
//! process exits (1 if one failed), so a service manager restarts it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::checkpoint::CheckpointConfig;
use crate::error::EngineError;
use crate::job::{prepare, run_prepared, JobOptions, JobReport, PreparedJob};
use crate::metrics::JobMetrics;
use crate::profile::Profile;
use crate::serve_config::{LogFormat, ServeConfig};
use crate::serve_http::{Handler, HttpServer, Response};
use crate::serve_prometheus::{self, JobSample};

/// How often the main thread checks signals and jobs.
const SUPERVISE_INTERVAL_MS: u64 = 50;
/// Log targets silenced unless the level names them (librdkafka repeats every failed
/// connection attempt; spillway reports what matters itself). `rdkafka::consumer::base_consumer`
/// logs an error when a consumer that spillway already closed (to leave its group in time)
/// is dropped and closed again.
pub const QUIET_TARGETS: &str =
    "librdkafka=off,rdkafka::client=off,rdkafka::consumer::base_consumer=off";

/// A failure of `spillway serve`.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Before the jobs ran: configuration, SQL, connectors, address; with what it was doing.
    #[error("{context}: {source}")]
    Start {
        context: String,
        #[source]
        source: EngineError,
    },
    /// Jobs failed while running, or did not stop in time.
    #[error("{0}")]
    Jobs(String),
}

fn ctx(context: impl Into<String>) -> impl FnOnce(EngineError) -> ServeError {
    let context = context.into();
    move |source| ServeError::Start { context, source }
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    /// Its sources were bounded and are done.
    Finished,
    /// Stopped on request (a signal).
    Stopped,
    Failed(String),
}

/// One job of the server, shared with the HTTP threads.
struct JobEntry {
    name: String,
    metrics: Arc<JobMetrics>,
    state: Mutex<JobState>,
    stop: Arc<AtomicBool>,
}

impl JobEntry {
    fn state(&self) -> JobState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set_state(&self, s: JobState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

/// What the HTTP threads read.
struct Shared {
    jobs: Vec<JobEntry>,
    stopping: AtomicBool,
}

impl Shared {
    fn handle(&self, path: &str) -> Response {
        match path {
            "/metrics" => {
                let samples: Vec<JobSample<'_>> = self
                    .jobs
                    .iter()
                    .map(|j| JobSample {
                        metrics: &j.metrics,
                        running: j.state() == JobState::Running,
                    })
                    .collect();
                Response {
                    status: 200,
                    content_type: serve_prometheus::CONTENT_TYPE,
                    body: serve_prometheus::render(&samples),
                }
            }
            "/health" => self.health(),
            "/" => Response::text(200, "spillway: GET /metrics, GET /health\n"),
            _ => Response::text(404, format!("no {path} here: GET /metrics or /health\n")),
        }
    }

    /// 200 "ok" while no job failed and the server is not stopping, 503 saying why otherwise.
    fn health(&self) -> Response {
        let mut problems = String::new();
        for j in &self.jobs {
            if let JobState::Failed(e) = j.state() {
                problems.push_str(&format!("job '{}' failed: {e}\n", j.name));
            }
        }
        if self.stopping.load(Ordering::Acquire) {
            problems.push_str("stopping\n");
        }
        if problems.is_empty() {
            Response::text(200, "ok\n")
        } else {
            Response::text(503, problems)
        }
    }
}

/// The installed log filter, changeable on SIGHUP.
type FilterHandle = reload::Handle<EnvFilter, Registry>;

fn log_filter(level: &str) -> Result<EnvFilter, String> {
    let directives = if level.contains("rdkafka") {
        level.to_string()
    } else {
        format!("{level},{QUIET_TARGETS}")
    };
    EnvFilter::try_new(&directives).map_err(|e| e.to_string())
}

/// Installs the process's log subscriber (stderr, text or JSON lines).
fn init_logging(config: &ServeConfig) -> Result<FilterHandle, ServeError> {
    let filter = log_filter(&config.log_level)
        .map_err(|e| EngineError::Config(format!("log.level: {e}")))
        .map_err(ctx(format!("configuration {}", config.origin.display())))?;
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let installed = match config.log_format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    installed
        .map_err(|e| EngineError::Internal(e.to_string()))
        .map_err(ctx("cannot install the logger"))?;
    Ok(handle)
}

/// The texts of the query files and the profile, to tell on SIGHUP whether they changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileTexts(Vec<(PathBuf, Option<String>)>);

impl FileTexts {
    fn read(config: &ServeConfig) -> Self {
        let paths = config.queries.iter().map(|q| q.path.clone());
        let paths = paths.chain(config.profile.clone());
        FileTexts(
            paths
                .map(|p| {
                    let text = std::fs::read_to_string(&p).ok();
                    (p, text)
                })
                .collect(),
        )
    }

    /// The files whose text differs from `running`'s (same list of files assumed).
    fn changed(&self, running: &FileTexts) -> Vec<String> {
        self.0
            .iter()
            .zip(&running.0)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| format!("contents of {}", a.0.display()))
            .collect()
    }
}

/// Reads, plans and checks every job of `config` (connectors included) without starting it.
fn plan_jobs(config: &ServeConfig) -> Result<Vec<(String, PreparedJob, JobOptions)>, ServeError> {
    let base = match &config.profile {
        Some(p) => Profile::load(p)
            .map_err(ctx(format!(
                "configuration {}: profile",
                config.origin.display()
            )))?
            .job_options(),
        None => JobOptions::default(),
    };
    let mut jobs = Vec::with_capacity(config.queries.len());
    for q in &config.queries {
        let what = format!("job '{}' ({})", q.job, q.path.display());
        let text = std::fs::read_to_string(&q.path)
            .map_err(|e| EngineError::io("cannot read the query file", e))
            .map_err(ctx(what.clone()))?;
        let program = crate::sql::parse_program(&text).map_err(ctx(what.clone()))?;
        let mut opts = JobOptions {
            stop: Arc::new(AtomicBool::new(false)),
            metrics: Some(Arc::new(JobMetrics::new(q.job.clone()))),
            ..base.clone()
        };
        if let Some(dir) = &config.state_dir {
            let interval = opts
                .checkpoint_tuning
                .interval
                .unwrap_or(Duration::from_millis(
                    crate::checkpoint::config::INTERVAL_MS_DEFAULT,
                ));
            let mut cfg =
                CheckpointConfig::new(dir.join(&q.job), interval).map_err(ctx(what.clone()))?;
            cfg.store = opts.checkpoint_tuning.store.clone();
            opts.checkpoint = Some(cfg);
        }
        let prepared = prepare(&program, &opts).map_err(ctx(what))?;
        jobs.push((q.job.clone(), prepared, opts));
    }
    Ok(jobs)
}

fn describe_report(r: &JobReport) -> String {
    let checkpoint = match &r.checkpoints {
        Some(c) if c.final_committed => format!(", final checkpoint {}", c.committed),
        Some(c) => format!(", last checkpoint {} (no final one)", c.committed),
        None => String::new(),
    };
    format!(
        "{} records in, {} rows out, {} windows, {} late events, {} skipped, {:.1} s{checkpoint}",
        r.records_in(),
        r.rows_out(),
        r.windows_out(),
        r.late_events(),
        r.skipped_total(),
        r.elapsed.as_secs_f64()
    )
}

/// Runs the server until its jobs are done or a signal stops it. Errors before any job
/// starts (configuration, SQL, connectors, address) are returned; failures of running
/// jobs are logged and end in `Err` once every job stopped.
pub fn run_serve(config_path: &Path) -> Result<(), ServeError> {
    let mut config = ServeConfig::load(config_path).map_err(ctx("spillway serve"))?;
    let signals = Signals::register()?;
    let filter = init_logging(&config)?;
    let texts = FileTexts::read(&config);
    let planned = plan_jobs(&config)?;

    let mut prepared = Vec::with_capacity(planned.len());
    let mut entries = Vec::with_capacity(planned.len());
    for (name, job, opts) in planned {
        entries.push(JobEntry {
            name: name.clone(),
            metrics: opts
                .metrics
                .clone()
                .unwrap_or_else(|| Arc::new(JobMetrics::new(&name))),
            state: Mutex::new(JobState::Running),
            stop: opts.stop.clone(),
        });
        prepared.push((job, opts));
    }
    let shared = Arc::new(Shared {
        jobs: entries,
        stopping: AtomicBool::new(false),
    });
    let handler_state = shared.clone();
    let handler: Handler = Arc::new(move |path| handler_state.handle(path));
    let http = HttpServer::start(config.http_address, handler).map_err(ctx("spillway serve"))?;
    tracing::info!(
        "spillway serve: {} jobs from {}; metrics at http://{}/metrics",
        shared.jobs.len(),
        config.origin.display(),
        http.local_addr()
    );

    let mut threads: Vec<Option<JoinHandle<Result<JobReport, EngineError>>>> = Vec::new();
    for (entry, (job, opts)) in shared.jobs.iter().zip(prepared) {
        tracing::info!(
            "job '{}': {} shards over {} partitions",
            entry.name,
            job.shards,
            job.partitions.len()
        );
        let t = std::thread::Builder::new()
            .name(format!("spillway-job-{}", entry.name))
            .spawn(move || run_prepared(job, &opts))
            .map_err(|e| EngineError::io("cannot start a job thread", e))
            .map_err(ctx(format!("job '{}'", entry.name)))?;
        threads.push(Some(t));
    }

    let mut stop_deadline: Option<Instant> = None;
    loop {
        collect_finished(&shared, &mut threads);
        if threads.iter().all(Option::is_none) {
            break;
        }
        if stop_deadline.is_none() && signals.stop.load(Ordering::Acquire) {
            tracing::info!(
                "stopping: every job stops reading and finishes its in-flight work (at most {:?})",
                config.shutdown_timeout
            );
            shared.stopping.store(true, Ordering::Release);
            for j in &shared.jobs {
                j.stop.store(true, Ordering::Release);
            }
            stop_deadline = Some(Instant::now() + config.shutdown_timeout);
        }
        if let Some(deadline) = stop_deadline {
            if Instant::now() >= deadline {
                let running: Vec<&str> = shared
                    .jobs
                    .iter()
                    .zip(&threads)
                    .filter(|(_, t)| t.is_some())
                    .map(|(j, _)| j.name.as_str())
                    .collect();
                return Err(ServeError::Jobs(format!(
                    "jobs {running:?} did not stop within shutdown_timeout = {:?}",
                    config.shutdown_timeout
                )));
            }
        }
        if signals.reload.swap(false, Ordering::AcqRel) {
            reload(config_path, &mut config, &texts, &filter);
        }
        std::thread::sleep(Duration::from_millis(SUPERVISE_INTERVAL_MS));
    }
    drop(http);

    let failed: Vec<String> = shared
        .jobs
        .iter()
        .filter_map(|j| match j.state() {
            JobState::Failed(e) => Some(format!("job '{}': {e}", j.name)),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        tracing::info!("spillway serve: every job stopped");
        Ok(())
    } else {
        Err(ServeError::Jobs(format!(
            "{} of {} jobs failed: {}",
            failed.len(),
            shared.jobs.len(),
            failed.join("; ")
        )))
    }
}

/// Joins the job threads that ended and records how they ended.
fn collect_finished(
    shared: &Shared,
    threads: &mut [Option<JoinHandle<Result<JobReport, EngineError>>>],
) {
    for (entry, slot) in shared.jobs.iter().zip(threads.iter_mut()) {
        if !slot.as_ref().is_some_and(JoinHandle::is_finished) {
            continue;
        }
        let Some(t) = slot.take() else { continue };
        let state = match t.join() {
            Ok(Ok(report)) => {
                let done = report.shards.iter().all(|s| s.finished);
                let state = if done && !entry.stop.load(Ordering::Acquire) {
                    JobState::Finished
                } else {
                    JobState::Stopped
                };
                tracing::info!(
                    "job '{}' {}: {}",
                    entry.name,
                    if state == JobState::Finished {
                        "finished"
                    } else {
                        "stopped"
                    },
                    describe_report(&report)
                );
                state
            }
            Ok(Err(e)) => {
                tracing::error!("job '{}' failed: {e}", entry.name);
                JobState::Failed(e.to_string())
            }
            Err(_) => {
                tracing::error!("job '{}' panicked (a bug in spillway)", entry.name);
                JobState::Failed("the job thread panicked (a bug in spillway)".into())
            }
        };
        entry.set_state(state);
    }
}

/// SIGHUP: applies the log level (and the shutdown timeout); reports anything else changed.
/// `running` keeps describing the running jobs: only what was applied changes in it, so a
/// later SIGHUP reports a pending restart again.
fn reload(path: &Path, running: &mut ServeConfig, texts: &FileTexts, filter: &FilterHandle) {
    let new = match ServeConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("SIGHUP: {e}; keeping the running configuration");
            return;
        }
    };
    if new.log_level != running.log_level {
        match log_filter(&new.log_level).map(|f| filter.reload(f)) {
            Ok(Ok(())) => {
                tracing::info!(
                    "SIGHUP: log level is now '{}' (was '{}')",
                    new.log_level,
                    running.log_level
                );
                running.log_level = new.log_level.clone();
            }
            Ok(Err(e)) => tracing::error!("SIGHUP: cannot change the log level: {e}"),
            Err(e) => tracing::error!("SIGHUP: log.level: {e}"),
        }
    }
    if new.shutdown_timeout != running.shutdown_timeout {
        tracing::info!("SIGHUP: shutdown_timeout is now {:?}", new.shutdown_timeout);
        running.shutdown_timeout = new.shutdown_timeout;
    }
    let mut restart: Vec<String> = new
        .needs_restart(running)
        .into_iter()
        .map(str::to_string)
        .collect();
    if new.queries == running.queries && new.profile == running.profile {
        restart.extend(FileTexts::read(&new).changed(texts));
    }
    if restart.is_empty() {
        tracing::info!("SIGHUP: configuration {} re-read", path.display());
    } else {
        tracing::warn!(
            "SIGHUP: {} changed and needs a restart (systemctl restart spillway); not \
             applied, the running jobs keep what they started with: re-planning a running \
             job is not safe, its window state and source positions belong to its plan",
            restart.join(", ")
        );
    }
}

/// The signal flags of the server.
struct Signals {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> Result<Signals, ServeError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let failed = |e: std::io::Error| ServeError::Start {
            context: "spillway serve".into(),
            source: EngineError::io("cannot install the signal handlers", e),
        };
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // A second signal while stopping ends the process at once.
            signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
                .map_err(failed)?;
            signal_hook::flag::register(sig, stop.clone()).map_err(failed)?;
        }
        let reload = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGHUP, reload.clone()).map_err(failed)?;
        Ok(Signals { stop, reload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, state: JobState) -> JobEntry {
        JobEntry {
            name: name.into(),
            metrics: Arc::new(JobMetrics::new(name)),
            state: Mutex::new(state),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn health_is_ok_until_a_job_fails_or_the_server_stops() {
        let shared = Shared {
            jobs: vec![
                entry("a", JobState::Running),
                entry("b", JobState::Finished),
            ],
            stopping: AtomicBool::new(false),
        };
        assert_eq!(shared.handle("/health"), Response::text(200, "ok\n"));
        shared.jobs[0].set_state(JobState::Failed("Kafka is gone".into()));
        let r = shared.handle("/health");
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "job 'a' failed: Kafka is gone\n");
        shared.jobs[0].set_state(JobState::Running);
        shared.stopping.store(true, Ordering::Release);
        assert_eq!(shared.handle("/health"), Response::text(503, "stopping\n"));
    }

    #[test]
    fn metrics_and_unknown_paths_are_routed() {
        let shared = Shared {
            jobs: vec![
                entry("trades", JobState::Running),
                entry("b", JobState::Stopped),
            ],
            stopping: AtomicBool::new(false),
        };
        let r = shared.handle("/metrics");
        assert_eq!(r.status, 200);
        assert!(
            r.body.contains("spillway_job_running{job=\"trades\"} 1\n"),
            "{}",
            r.body
        );
        assert!(
            r.body.contains("spillway_job_running{job=\"b\"} 0\n"),
            "{}",
            r.body
        );
        assert_eq!(shared.handle("/nope").status, 404);
    }

    #[test]
    fn log_filter_quiets_librdkafka_unless_asked_for() {
        let f = log_filter("debug").unwrap_or_else(|e| panic!("{e}"));
        assert!(f.to_string().contains("librdkafka=off"), "{f}");
        let f = log_filter("info,librdkafka=warn").unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.to_string().contains("librdkafka=off"), "{f}");
        assert!(log_filter("info,[[").is_err());
    }

    #[test]
    fn changed_file_texts_are_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let q = dir.path().join("q.sql");
        std::fs::write(&q, "SELECT 1").unwrap_or_else(|e| panic!("{e}"));
        let config_path = dir.path().join("spillway.toml");
        let config = ServeConfig::from_toml_str("queries = [\"q.sql\"]", &config_path)
            .unwrap_or_else(|e| panic!("{e}"));
        let before = FileTexts::read(&config);
        assert!(FileTexts::read(&config).changed(&before).is_empty());
        std::fs::write(&q, "SELECT 2").unwrap_or_else(|e| panic!("{e}"));
        let changed = FileTexts::read(&config).changed(&before);
        assert_eq!(changed, vec![format!("contents of {}", q.display())]);
    }
}
