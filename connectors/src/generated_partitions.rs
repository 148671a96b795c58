//! The partitions of a generated table (trades generator, Nexmark): numbered 0..n under the
//! table's name, each resumable at an offset.

use std::time::Instant;

use crate::error::{ConnectorError, Result};
use crate::{PartitionInfo, RawBatch};

/// Round-robin turns over a generated source's partitions, each paced to a rate.
pub struct Turns {
    /// Records per wall-clock second of each partition (None: as fast as possible).
    rate_per_partition: Option<f64>,
    opened: Instant,
    turn: usize,
}

impl Turns {
    pub fn new(rate_per_partition: Option<f64>) -> Self {
        Turns {
            rate_per_partition,
            opened: Instant::now(),
            turn: 0,
        }
    }

    /// How many records each partition may have produced since the source opened.
    pub fn allowed(&self) -> Option<u64> {
        self.rate_per_partition
            .map(|rate| (self.opened.elapsed().as_secs_f64() * rate) as u64)
    }

    /// The partition (of `count`) whose turn it is.
    pub fn next(&mut self, count: usize) -> usize {
        let index = self.turn % count;
        self.turn = self.turn.wrapping_add(1);
        index
    }
}

/// Where one poll started in its output batch, to stop at the poll's limits.
#[derive(Clone, Copy)]
pub struct PollBudget {
    records_start: usize,
    bytes_start: usize,
    records_max: usize,
    bytes_max: usize,
}

impl PollBudget {
    pub fn new(out: &RawBatch, records_max: usize, bytes_max: usize) -> Self {
        PollBudget {
            records_start: out.len(),
            bytes_start: out.bytes(),
            records_max,
            bytes_max,
        }
    }

    /// Whether `out` has room for more records in this poll.
    #[inline]
    pub fn has_room(&self, out: &RawBatch) -> bool {
        out.len() - self.records_start < self.records_max
            && out.bytes() - self.bytes_start < self.bytes_max
    }

    /// Records added by this poll.
    pub fn records(&self, out: &RawBatch) -> usize {
        out.len() - self.records_start
    }
}

/// Partitions `0..count` of generated table `table`.
pub fn discover(table: &str, count: u32) -> Vec<PartitionInfo> {
    (0..count)
        .map(|p| PartitionInfo {
            topic: table.to_string(),
            partition: p as i32,
        })
        .collect()
}

/// For each of `partitions` (given to a shard): its number and the offset to resume at
/// (0 when not resuming). A partition that is not one of the table's, or resume offsets that
/// do not match the partitions, are internal errors; `kind` names the generator in them.
pub fn resolve(
    table: &str,
    kind: &str,
    count: u32,
    partitions: &[PartitionInfo],
    resume: Option<&[i64]>,
) -> Result<Vec<(u32, i64)>> {
    if resume.is_some_and(|r| r.len() != partitions.len()) {
        return Err(ConnectorError::Internal(format!(
            "table '{table}': resume offsets do not match the {} partitions",
            partitions.len()
        )));
    }
    partitions
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let p = u32::try_from(info.partition)
                .ok()
                .filter(|&p| p < count && info.topic == table)
                .ok_or_else(|| {
                    ConnectorError::Internal(format!(
                        "table '{table}' has no {kind} partition {} of '{}'",
                        info.partition, info.topic
                    ))
                })?;
            Ok((p, resume.map_or(0, |r| r[i])))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_resolve_with_their_offsets_and_strangers_are_refused() {
        let parts = discover("t", 3);
        let got = resolve("t", "x", 3, &parts[1..], Some(&[5, 7])).expect("ok");
        assert_eq!(got, vec![(1, 5), (2, 7)]);
        assert_eq!(
            resolve("t", "x", 3, &parts[..1], None).expect("ok"),
            vec![(0, 0)]
        );
        assert!(resolve("t", "x", 3, &parts, Some(&[1])).is_err());
        let stranger = discover("u", 1);
        let e = resolve("t", "x", 3, &stranger, None).expect_err("other table");
        assert!(e.to_string().contains("no x partition 0 of 'u'"), "{e}");
    }
}
