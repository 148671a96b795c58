//! The core-to-core links of one shard: a bounded single-producer single-consumer ring
//! (`rtrb`) per ordered pair of shards, polled by the shard itself.
//!
//! No wake-ups cross cores: the shard drains its incoming rings every loop iteration (after
//! each batch, or every `poll_idle_us` when idle), and a sender that finds a ring full drains
//! its own incoming rings while it waits, so two shards sending to each other can never
//! block each other.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use rtrb::{Consumer, Producer, PushError, RingBuffer};

use crate::emitter::Emitter;
use crate::error::{EngineError, Result};
use crate::exchange::{ExchangeMsg, PartialWindow};

/// Creates the rings of `shards` shards: `(senders[from][to], receivers[to])`.
#[allow(clippy::type_complexity)]
pub fn make_links(
    shards: usize,
    capacity: usize,
) -> (
    Vec<Vec<Option<Producer<ExchangeMsg>>>>,
    Vec<Vec<(usize, Consumer<ExchangeMsg>)>>,
) {
    let mut senders: Vec<Vec<Option<Producer<ExchangeMsg>>>> = (0..shards)
        .map(|_| (0..shards).map(|_| None).collect())
        .collect();
    let mut receivers: Vec<Vec<(usize, Consumer<ExchangeMsg>)>> =
        (0..shards).map(|_| Vec::new()).collect();
    for (from, row) in senders.iter_mut().enumerate() {
        for (to, slot) in row.iter_mut().enumerate() {
            if from != to {
                let (tx, rx) = RingBuffer::new(capacity);
                *slot = Some(tx);
                receivers[to].push((from, rx));
            }
        }
    }
    (senders, receivers)
}

/// The links of one shard.
pub struct Links {
    senders: Vec<Option<Producer<ExchangeMsg>>>,
    receivers: Vec<(usize, Consumer<ExchangeMsg>)>,
    /// Per receiver: the peer said `Done`, or went away.
    done: Vec<bool>,
    wait: Duration,
    /// Per receiver: the epoch of the last checkpoint barrier it delivered.
    barrier_epoch: Vec<u64>,
    /// The last checkpoint epoch this shard took its snapshot of.
    epoch: u64,
    /// Partials that arrived after this shard's snapshot of `epoch` and before the sender's
    /// barrier of it: in flight at the checkpoint, so part of it.
    recorded: Vec<PartialWindow>,
    /// The join of two streams this shard runs, which takes `JoinRows` and watermarks.
    stream_join: Option<Rc<RefCell<crate::stream_join::operator::StreamJoinOperator>>>,
}

impl Links {
    pub fn new(
        senders: Vec<Option<Producer<ExchangeMsg>>>,
        receivers: Vec<(usize, Consumer<ExchangeMsg>)>,
        wait: Duration,
    ) -> Self {
        let done = vec![false; receivers.len()];
        let barrier_epoch = vec![0; receivers.len()];
        Links {
            senders,
            receivers,
            done,
            wait,
            barrier_epoch,
            epoch: 0,
            recorded: Vec::new(),
            stream_join: None,
        }
    }

    /// Hands `JoinRows` and watermarks from peers to `operator` (a join of two streams).
    pub fn set_stream_join(
        &mut self,
        operator: Rc<RefCell<crate::stream_join::operator::StreamJoinOperator>>,
    ) {
        self.stream_join = Some(operator);
    }

    /// Starts checkpoint `epoch` after this shard's snapshot: peers whose barrier already came
    /// are read again; partials from the others are recorded until their barrier comes.
    pub fn start_epoch(&mut self, epoch: u64) {
        assert!(epoch > self.epoch, "checkpoint epochs go forward");
        assert!(
            self.recording_complete(),
            "checkpoint {epoch} started before every barrier of {} came",
            self.epoch
        );
        self.epoch = epoch;
    }

    /// The job is failing: checkpoints stop, and paused rings are read again so that every
    /// peer's `Done` can arrive.
    pub fn stop_checkpoints(&mut self) {
        self.epoch = u64::MAX;
    }

    /// The last epoch started.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether a peer's barrier is ahead of this shard's snapshot: its ring is paused until
    /// this shard takes its snapshot of that epoch (the peer may be at most one epoch ahead).
    pub fn wants_snapshot(&self) -> bool {
        self.barrier_epoch
            .iter()
            .zip(&self.done)
            .any(|(&b, &d)| !d && b > self.epoch)
    }

    /// Whether every peer's barrier of the current epoch has come (or the peer is done).
    pub fn recording_complete(&self) -> bool {
        self.barrier_epoch
            .iter()
            .zip(&self.done)
            .all(|(&b, &d)| d || b >= self.epoch)
    }

    /// The partials recorded for the current epoch.
    pub fn take_recorded(&mut self) -> Vec<PartialWindow> {
        std::mem::take(&mut self.recorded)
    }

    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// Applies every message waiting on the incoming rings; returns how many there were.
    pub fn drain(&mut self, emitter: &Rc<RefCell<Emitter>>) -> Result<usize> {
        let mut n = 0;
        for (i, (_, rx)) in self.receivers.iter_mut().enumerate() {
            if self.done[i] || self.barrier_epoch[i] > self.epoch {
                // Paused: this peer's messages after its barrier wait for our snapshot.
                continue;
            }
            while let Ok(msg) = rx.pop() {
                n += 1;
                let mut em = emitter.borrow_mut();
                match msg {
                    ExchangeMsg::Partial(p) => {
                        if self.barrier_epoch[i] < self.epoch {
                            self.recorded.push(p.clone());
                        }
                        em.on_partial(p)?
                    }
                    ExchangeMsg::Barrier { epoch, .. } => {
                        assert!(
                            epoch > self.barrier_epoch[i],
                            "barrier epochs of a peer go forward"
                        );
                        self.barrier_epoch[i] = epoch;
                        if self.epoch == u64::MAX {
                            continue;
                        }
                        if epoch > self.epoch {
                            break;
                        }
                    }
                    ExchangeMsg::Watermark {
                        from,
                        watermark,
                        idle,
                        at,
                    } => {
                        em.on_watermark(from, watermark, idle, at)?;
                        if let Some(join) = &self.stream_join {
                            join.borrow_mut()
                                .on_watermark(from, watermark, idle, &mut em)?;
                        }
                    }
                    ExchangeMsg::JoinRows(rows) => match &self.stream_join {
                        Some(join) => join.borrow_mut().on_rows(rows, &mut em)?,
                        None => {
                            return Err(EngineError::Internal(
                                "join rows reached a shard without a stream join".into(),
                            ))
                        }
                    },
                    ExchangeMsg::Done { .. } => {
                        self.done[i] = true;
                        break;
                    }
                }
            }
            // A peer that stopped without `Done` failed; it reports its own error.
            if !self.done[i] && rx.is_abandoned() && rx.is_empty() {
                self.done[i] = true;
            }
        }
        Ok(n)
    }

    /// Whether every peer has said `Done` (or gone away).
    pub fn all_done(&self) -> bool {
        self.done.iter().all(|d| *d)
    }

    /// Sends to shard `to`, waiting while its ring is full (back-pressure), and applying
    /// incoming messages meanwhile.
    pub async fn send(
        &mut self,
        to: usize,
        mut msg: ExchangeMsg,
        emitter: &Rc<RefCell<Emitter>>,
    ) -> Result<()> {
        loop {
            let Some(tx) = self.senders[to].as_mut() else {
                return Err(EngineError::Internal(format!("no link to shard {to}")));
            };
            if tx.is_abandoned() {
                return Err(EngineError::Internal(format!(
                    "shard {to} stopped receiving"
                )));
            }
            match tx.push(msg) {
                Ok(()) => return Ok(()),
                Err(PushError::Full(m)) => msg = m,
            }
            self.drain(emitter)?;
            glommio::timer::sleep(self.wait).await;
        }
    }

    /// Says `Done` to every peer that still listens.
    pub async fn say_done(&mut self, shard: usize, emitter: &Rc<RefCell<Emitter>>) {
        for to in 0..self.senders.len() {
            if to != shard {
                // A peer that already stopped (after an error) no longer listens: that is
                // reported by the peer itself.
                let _ = self
                    .send(to, ExchangeMsg::Done { from: shard }, emitter)
                    .await;
            }
        }
    }

    /// Applies incoming messages until every peer said `Done`.
    pub async fn drain_until_done(&mut self, emitter: &Rc<RefCell<Emitter>>) -> Result<()> {
        loop {
            self.drain(emitter)?;
            if self.all_done() {
                return Ok(());
            }
            glommio::timer::sleep(self.wait).await;
        }
    }
}
