//! The links' side of checkpoints: which partials are recorded as in flight, and when a ring
//! pauses at a peer's barrier.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtrb::Producer;

use crate::accumulator::Slot;
use crate::checkpoint::test_layout;
use crate::emitter::Emitter;
use crate::exchange::{ExchangeMsg, PartialWindow};
use crate::exchange_link::{make_links, Links};
use crate::output_stage::OutputStage;
use crate::window_operator::AggregateLayout;

struct NullSink;

impl spillway_connectors::Sink for NullSink {
    fn write(&mut self, _: &arrow::array::RecordBatch) -> spillway_connectors::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> spillway_connectors::Result<()> {
        Ok(())
    }
    fn rows_written(&self) -> u64 {
        0
    }
}

fn partial(layout: &AggregateLayout, start: i64, key: &str) -> PartialWindow {
    PartialWindow {
        start,
        end: start + 1000,
        key_bytes: key.as_bytes().to_vec(),
        key_ends: vec![key.len() as u32],
        hashes: vec![layout.hash_key(key.as_bytes())],
        slots: vec![Slot { a: 1, b: 0 }, Slot { a: 5, b: 1 }, Slot::EMPTY],
        strings: Vec::new(),
        session_bounds: Vec::new(),
        session_fired: Vec::new(),
    }
}

/// Shard 0's links and emitter, and shard 1's sender to shard 0.
fn two_shards() -> (
    Links,
    Rc<RefCell<Emitter>>,
    Producer<ExchangeMsg>,
    Arc<AggregateLayout>,
) {
    let pipeline = test_layout::pipeline();
    let layout = Arc::new(test_layout::layout());
    let (mut senders, mut receivers) = make_links(2, 64);
    let to_zero = senders[1][0].take().expect("ring 1 -> 0");
    let links = Links::new(
        std::mem::take(&mut senders[0]),
        std::mem::take(&mut receivers[0]),
        Duration::from_micros(10),
    );
    let output = OutputStage::new(
        None,
        pipeline.projection.clone(),
        pipeline.output_schema.clone(),
    );
    let emitter = Rc::new(RefCell::new(Emitter::new(
        2,
        Some(layout.clone()),
        output,
        Box::new(NullSink),
    )));
    (links, emitter, to_zero, layout)
}

fn push(tx: &mut Producer<ExchangeMsg>, msg: ExchangeMsg) {
    assert!(tx.push(msg).is_ok(), "ring has room");
}

#[test]
fn partials_between_our_snapshot_and_the_peers_barrier_are_recorded() {
    let (mut links, emitter, mut tx, layout) = two_shards();
    push(&mut tx, ExchangeMsg::Partial(partial(&layout, 0, "before")));
    links.drain(&emitter).expect("drain");
    // Our snapshot of epoch 1; the peer has not taken its own yet.
    links.start_epoch(1);
    assert!(!links.recording_complete());
    push(
        &mut tx,
        ExchangeMsg::Partial(partial(&layout, 0, "inflight-a")),
    );
    push(
        &mut tx,
        ExchangeMsg::Partial(partial(&layout, 1000, "inflight-b")),
    );
    push(&mut tx, ExchangeMsg::Barrier { from: 1, epoch: 1 });
    push(&mut tx, ExchangeMsg::Partial(partial(&layout, 0, "after")));
    links.drain(&emitter).expect("drain");
    assert!(links.recording_complete());
    let recorded: Vec<Vec<u8>> = links
        .take_recorded()
        .iter()
        .map(|p| p.key(0).to_vec())
        .collect();
    assert_eq!(
        recorded,
        vec![b"inflight-a".to_vec(), b"inflight-b".to_vec()]
    );
    // Every partial was applied to the live state all the same.
    let mut em = emitter.borrow_mut();
    let (_, fin) = em.final_stage_mut().expect("final stage");
    let groups: usize = fin.windows_mut().map(|w| w.groups.len()).sum();
    assert_eq!(groups, 4);
}

#[test]
fn a_peer_ahead_pauses_its_ring_until_our_snapshot() {
    let (mut links, emitter, mut tx, layout) = two_shards();
    push(&mut tx, ExchangeMsg::Barrier { from: 1, epoch: 1 });
    push(
        &mut tx,
        ExchangeMsg::Partial(partial(&layout, 0, "after-peer-snapshot")),
    );
    links.drain(&emitter).expect("drain");
    assert!(links.wants_snapshot(), "the peer is a checkpoint ahead");
    {
        let mut em = emitter.borrow_mut();
        let (_, fin) = em.final_stage_mut().expect("final stage");
        assert_eq!(
            fin.windows_mut().count(),
            0,
            "post-barrier data waits for our snapshot"
        );
    }
    links.start_epoch(1);
    assert!(links.recording_complete(), "its barrier is already in");
    links.drain(&emitter).expect("drain");
    assert!(links.take_recorded().is_empty(), "nothing was in flight");
    let mut em = emitter.borrow_mut();
    let (_, fin) = em.final_stage_mut().expect("final stage");
    assert_eq!(fin.windows_mut().count(), 1, "applied after the snapshot");
}

#[test]
fn a_failing_job_reads_paused_rings_to_their_done() {
    let (mut links, emitter, mut tx, _) = two_shards();
    push(&mut tx, ExchangeMsg::Barrier { from: 1, epoch: 1 });
    push(
        &mut tx,
        ExchangeMsg::Watermark {
            from: 1,
            watermark: 5,
            idle: false,
            at: Instant::now(),
        },
    );
    push(&mut tx, ExchangeMsg::Barrier { from: 1, epoch: 2 });
    push(&mut tx, ExchangeMsg::Done { from: 1 });
    links.drain(&emitter).expect("drain");
    assert!(!links.all_done());
    links.stop_checkpoints();
    links.drain(&emitter).expect("drain");
    assert!(links.all_done());
}
