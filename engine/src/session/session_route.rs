//! The shard's side of SESSION windows: a batch's mini-sessions go to their owners at once
//! (this shard's own ones straight into its owner stage), before the shard's next watermark.

use std::cell::RefCell;
use std::rc::Rc;

use arrow::array::RecordBatch;

use crate::emitter::Emitter;
use crate::error::{EngineError, Result};
use crate::exchange::{ExchangeMsg, PartialWindow};
use crate::exchange_link::Links;
use crate::session::MiniSessions;

/// Pre-aggregates `batch` into mini-sessions and hands each to the shard owning its key;
/// too-late rows go to the late-data sink, if there is one. `parts` is a reused buffer.
pub async fn route_batch(
    shard: usize,
    op: &mut MiniSessions,
    batch: &RecordBatch,
    late_watermark: i64,
    links: &mut Links,
    emitter: &Rc<RefCell<Emitter>>,
    parts: &mut Vec<(usize, PartialWindow)>,
) -> Result<()> {
    parts.clear();
    op.process(batch, late_watermark, links.shards(), parts)?;
    if !op.late_rows.is_empty() {
        emitter.borrow_mut().write_late(batch, &op.late_rows)?;
    }
    for (owner, part) in parts.drain(..) {
        if owner == shard {
            let mut em = emitter.borrow_mut();
            let stage = em.sessions_mut().ok_or_else(|| {
                EngineError::Internal("a SESSION query without its owner stage".into())
            })?;
            stage.try_merge(&part)?;
        } else {
            links
                .send(owner, ExchangeMsg::Partial(part), emitter)
                .await?;
        }
    }
    Ok(())
}
