//! Row kinds of emitted results (Flink's changelog kinds, as far as spillway emits them).
//!
//! A sink table may declare a column `row_kind STRING`; the output stage fills it with
//! [`RowKind::as_str`] (the SELECT does not produce it). `upsert-kafka` turns
//! [`RowKind::Delete`] into a tombstone and [`RowKind::UpdateAfter`] into an overwrite of the
//! key; an updating aggregate into `upsert-kafka` emits no [`RowKind::UpdateBefore`] (see
//! `plan::LatePlan::update_before`).

/// The kind of one emitted result row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RowKind {
    /// A first result (of a window: its first emission).
    #[default]
    Insert,
    /// The previous row of a result about to be updated (an updating aggregate's key that
    /// changed): withdrawn, and followed by its [`RowKind::UpdateAfter`].
    UpdateBefore,
    /// A result emitted again with an update (same key, same `window_start`/`window_end`),
    /// e.g. after a late event within the allowed lateness.
    UpdateAfter,
    /// An earlier emitted result withdrawn (e.g. two emitted sessions merged by a late event).
    Delete,
}

/// The name of the sink column the output stage fills with the row kind.
pub const ROW_KIND_COLUMN: &str = "row_kind";

impl RowKind {
    /// Flink's short name: "+I", "-U", "+U", "-D".
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// Parses [`RowKind::as_str`]'s output; None for anything else.
    pub fn parse(text: &str) -> Option<RowKind> {
        match text {
            "+I" => Some(RowKind::Insert),
            "-U" => Some(RowKind::UpdateBefore),
            "+U" => Some(RowKind::UpdateAfter),
            "-D" => Some(RowKind::Delete),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_differ() {
        let kinds = [
            RowKind::Insert,
            RowKind::UpdateBefore,
            RowKind::UpdateAfter,
            RowKind::Delete,
        ];
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["+I", "-U", "+U", "-D"]);
        for kind in kinds {
            assert_eq!(RowKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(RowKind::parse("+X"), None);
        assert_eq!(RowKind::default(), RowKind::Insert);
    }
}
