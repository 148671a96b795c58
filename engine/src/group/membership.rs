//! The process's member of the aggregate group: its assignments start and stop job instances.
//!
//! One librdkafka consumer per process joins `<group id>-aggregate` on the repartition topic
//! with the cooperative-sticky assignor. It never reads rows (its partitions are paused at
//! once; each job instance reads its partition with its own consumer): it only carries the
//! group protocol. librdkafka calls the rebalance callbacks from `poll`, on the runner's
//! thread:
//! - **revoke** (before the partition is released to another process): the instance is
//!   stopped and joined, which takes its final checkpoint; only then does the callback
//!   return, so the next owner restores from that checkpoint and never runs beside it;
//! - **assign**: the instance starts (it restores the partition's last checkpoint).
//!
//! A process killed without a revoke leaves its partitions to the others once the group's
//! session timeout passes; they restore from its last complete checkpoint and read the
//! repartition topic again from there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use spillway_connectors::ConnectorError;

use crate::error::{EngineError, Result};
use crate::job::JobReport;

/// Starts the job instance of one repartition partition on a thread.
pub trait InstanceSpawner: Send + Sync {
    /// Starts partition `partition`'s instance; `slot` numbers the instances this process
    /// started (it picks the core). Returns the instance's stop flag and thread.
    fn spawn(
        &self,
        partition: i32,
        slot: usize,
    ) -> Result<(Arc<AtomicBool>, JoinHandle<Result<JobReport>>)>;
}

struct Instance {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<JobReport>>,
}

/// The job instances running in this process, by repartition partition.
pub struct Instances {
    spawner: Box<dyn InstanceSpawner>,
    running: BTreeMap<i32, Instance>,
    slots_used: usize,
    /// Reports of instances that stopped (revoked, or at the end).
    pub reports: Vec<JobReport>,
    /// The first error of an instance, which ends the process's run.
    pub error: Option<EngineError>,
    /// Assignments and revocations seen.
    pub rebalances: u64,
}

impl Instances {
    pub fn new(spawner: Box<dyn InstanceSpawner>) -> Self {
        Instances {
            spawner,
            running: BTreeMap::new(),
            slots_used: 0,
            reports: Vec::new(),
            error: None,
            rebalances: 0,
        }
    }

    /// The partitions whose instances run here.
    pub fn partitions(&self) -> Vec<i32> {
        self.running.keys().copied().collect()
    }

    /// Starts the instance of `partition` (nothing if it runs already).
    pub fn start(&mut self, partition: i32) {
        if self.running.contains_key(&partition) || self.error.is_some() {
            return;
        }
        match self.spawner.spawn(partition, self.slots_used) {
            Ok((stop, thread)) => {
                self.slots_used += 1;
                tracing::info!("partition {partition}: job instance started");
                self.running.insert(partition, Instance { stop, thread });
            }
            Err(e) => self.fail(partition, e),
        }
    }

    /// Stops the instance of `partition` and waits for it (its final checkpoint).
    pub fn stop(&mut self, partition: i32) {
        if let Some(i) = self.running.remove(&partition) {
            i.stop.store(true, Ordering::Release);
            self.join(partition, i.thread);
            tracing::info!("partition {partition}: job instance stopped");
        }
    }

    /// Stops every instance (all stop flags first, so their final checkpoints overlap).
    pub fn stop_all(&mut self) {
        for i in self.running.values() {
            i.stop.store(true, Ordering::Release);
        }
        let running = std::mem::take(&mut self.running);
        for (partition, i) in running {
            self.join(partition, i.thread);
            tracing::info!("partition {partition}: job instance stopped");
        }
    }

    /// Collects instances that ended by themselves (an instance only ends on its own with an
    /// error, which then ends the process's run).
    pub fn reap(&mut self) {
        let ended: Vec<i32> = self
            .running
            .iter()
            .filter(|(_, i)| i.thread.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for partition in ended {
            if let Some(i) = self.running.remove(&partition) {
                let fenced = self.join(partition, i.thread);
                if !fenced && self.error.is_none() {
                    self.error = Some(EngineError::Internal(format!(
                        "the job instance of repartition partition {partition} ended without \
                         being stopped"
                    )));
                }
            }
        }
    }

    /// Joins an instance's thread; true when another process had taken its partition over
    /// (the instance stopped without publishing anything more, which is not an error).
    fn join(&mut self, partition: i32, thread: JoinHandle<Result<JobReport>>) -> bool {
        match thread.join() {
            Ok(Ok(report)) => self.reports.push(report),
            Ok(Err(EngineError::Connector(ConnectorError::Fenced(why)))) => {
                tracing::warn!(
                    "partition {partition}: job instance stopped, another process owns the \
                     partition now: {why}"
                );
                return true;
            }
            Ok(Err(e)) => self.fail(partition, e),
            Err(_) => self.fail(
                partition,
                EngineError::Internal("the job instance's thread panicked".into()),
            ),
        }
        false
    }

    fn fail(&mut self, partition: i32, e: EngineError) {
        tracing::error!("partition {partition}: job instance failed: {e}");
        if self.error.is_none() {
            // The error keeps its kind (limit, data, state, connector...); the log line above
            // names the partition.
            self.error = Some(e);
        }
    }
}

/// Locks the instances (a control-plane lock: the rebalance callbacks and the runner's loop,
/// never a shard). A panic while holding it cannot leave it half-changed in a way that
/// matters more than the panic itself, so a poisoned lock is taken over.
pub fn lock(instances: &Mutex<Instances>) -> MutexGuard<'_, Instances> {
    instances.lock().unwrap_or_else(|e| e.into_inner())
}

/// The consumer context of the membership consumer.
pub struct MembershipContext {
    pub topic: String,
    pub instances: Arc<Mutex<Instances>>,
}

impl ClientContext for MembershipContext {}

impl ConsumerContext for MembershipContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let mut instances = lock(&self.instances);
                instances.rebalances += 1;
                for e in tpl.elements_for_topic(&self.topic) {
                    instances.stop(e.partition());
                }
            }
            Rebalance::Error(e) => tracing::warn!("aggregate group rebalance error: {e}"),
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // The member only carries the protocol: its partitions are read by the instances.
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!("cannot pause the membership consumer's partitions: {e}");
            }
            let mut instances = lock(&self.instances);
            instances.rebalances += 1;
            for e in tpl.elements_for_topic(&self.topic) {
                instances.start(e.partition());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    /// Instances that run until stopped and report how many times they ran.
    struct Fake {
        started: Arc<AtomicUsize>,
        fail_partition: Option<i32>,
    }

    impl InstanceSpawner for Fake {
        fn spawn(
            &self,
            partition: i32,
            _slot: usize,
        ) -> Result<(Arc<AtomicBool>, JoinHandle<Result<JobReport>>)> {
            self.started.fetch_add(1, Ordering::AcqRel);
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let fail = self.fail_partition == Some(partition);
            let thread = std::thread::spawn(move || {
                if fail {
                    return Err(EngineError::Config("state limit".into()));
                }
                while !s.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(JobReport {
                    shards: Vec::new(),
                    elapsed: Duration::ZERO,
                    checkpoints: None,
                })
            });
            Ok((stop, thread))
        }
    }

    #[test]
    fn instances_start_once_stop_with_a_report_and_failures_surface() {
        let started = Arc::new(AtomicUsize::new(0));
        let mut i = Instances::new(Box::new(Fake {
            started: started.clone(),
            fail_partition: Some(7),
        }));
        i.start(1);
        i.start(1);
        i.start(2);
        assert_eq!(started.load(Ordering::Acquire), 2);
        assert_eq!(i.partitions(), vec![1, 2]);
        i.stop(1);
        assert_eq!(i.partitions(), vec![2]);
        assert_eq!(i.reports.len(), 1);
        i.start(7);
        let deadline = Instant::now() + Duration::from_secs(5);
        while i.error.is_none() && Instant::now() < deadline {
            i.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let e = i.error.as_ref().expect("the failed instance ends the run");
        assert!(e.to_string().contains("state limit"), "{e}");
        i.stop_all();
        assert!(i.partitions().is_empty());
        assert_eq!(i.reports.len(), 2);
    }
}
