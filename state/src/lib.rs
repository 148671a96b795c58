//! spillway's per-shard state store.
//!
//! Today this crate holds the framing of state records: length-prefixed, CRC32C-checksummed
//! records, the unit the log-structured segment files are made of. Segments, manifests and
//! io_uring writes build on it.

pub mod record_codec;

pub use record_codec::{
    decode_record, encode_record, DecodeOutcome, RECORD_BYTES_MAX, RECORD_HEADER_BYTES,
};
