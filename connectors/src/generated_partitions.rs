//! The partitions of a generated table (trades generator, Nexmark): numbered 0..n under the
//! table's name, each resumable at an offset.

use crate::error::{ConnectorError, Result};
use crate::PartitionInfo;

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
