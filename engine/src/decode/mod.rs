//! Decoding raw JSON records into Arrow columns of a table's declared schema.
//!
//! [`JsonDecoder`] parses each record of a [`RawBatch`](spillway_connectors::RawBatch) in
//! place with simd-json and appends the top-level fields named like the columns to typed
//! Arrow builders. Bad records are skipped and counted in [`DecodeStats`], never raised.
//!
//! Boundary: the decoder sees only bytes and the declared schema; which partition and offset
//! a kept row came from is handed back as record indexes (`kept`) for the caller to select.

mod column_builder;
mod json_decoder;
#[cfg(test)]
mod tests;

pub use json_decoder::JsonDecoder;

/// At most this many problem descriptions are kept by a decoder (the first ones).
pub const SAMPLES_MAX: usize = 8;

/// Counts of records skipped by a decoder since it was built; each skipped record is
/// counted once, under the first problem found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Not JSON, truncated, or not a JSON object.
    pub malformed: u64,
    /// A declared column's field is absent.
    pub missing_field: u64,
    /// A field's value does not fit its column: wrong JSON type, a number out of the
    /// column's range, a string that is not a timestamp, or null in a NOT NULL column.
    pub wrong_type: u64,
    /// The event-time column is null.
    pub null_time: u64,
}

impl DecodeStats {
    /// All skipped records.
    pub fn skipped(&self) -> u64 {
        self.malformed + self.missing_field + self.wrong_type + self.null_time
    }
}
