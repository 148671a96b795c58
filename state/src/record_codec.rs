//! Framing of one state record: `len: u32 LE | crc32c(payload): u32 LE | payload`.
//!
//! Reading distinguishes a torn tail (the file ends inside a record: the normal result of a
//! crash mid-write) from corruption (a complete record whose checksum does not match).

/// Bytes of the header before each payload.
pub const RECORD_HEADER_BYTES: usize = 8;
/// Largest payload a record may carry.
pub const RECORD_BYTES_MAX: usize = 64 << 20;

/// Appends one framed record to `out`.
///
/// # Panics
/// If `payload` is over `RECORD_BYTES_MAX`: callers split state into records below the limit.
pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        payload.len() <= RECORD_BYTES_MAX,
        "state record of {} bytes is over RECORD_BYTES_MAX",
        payload.len()
    );
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What reading a record at the start of a buffer found.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeOutcome<'a> {
    /// A complete, verified record and the bytes it took.
    Record { payload: &'a [u8], consumed: usize },
    /// The buffer is empty.
    End,
    /// The buffer ends inside a record (a torn write).
    TornTail,
    /// A complete record whose checksum or length is wrong.
    Corrupt { reason: String },
}

/// Reads the record at the start of `buf`.
pub fn decode_record(buf: &[u8]) -> DecodeOutcome<'_> {
    if buf.is_empty() {
        return DecodeOutcome::End;
    }
    if buf.len() < RECORD_HEADER_BYTES {
        return DecodeOutcome::TornTail;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len > RECORD_BYTES_MAX {
        return DecodeOutcome::Corrupt {
            reason: format!("record length {len} is over RECORD_BYTES_MAX"),
        };
    }
    let end = RECORD_HEADER_BYTES + len;
    if buf.len() < end {
        return DecodeOutcome::TornTail;
    }
    let payload = &buf[RECORD_HEADER_BYTES..end];
    let actual = crc32c::crc32c(payload);
    if actual != crc {
        return DecodeOutcome::Corrupt {
            reason: format!("checksum {actual:#010x} does not match the stored {crc:#010x}"),
        };
    }
    DecodeOutcome::Record {
        payload,
        consumed: end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_all(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            encode_record(r, &mut out);
        }
        out
    }

    proptest! {
        #[test]
        fn round_trip(records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let buf = encode_all(&records);
            let mut at = 0;
            for r in &records {
                match decode_record(&buf[at..]) {
                    DecodeOutcome::Record { payload, consumed } => {
                        prop_assert_eq!(payload, &r[..]);
                        at += consumed;
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            prop_assert_eq!(decode_record(&buf[at..]), DecodeOutcome::End);
        }

        #[test]
        fn any_cut_inside_the_last_record_is_a_torn_tail(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 1..5),
            cut in 1usize..100,
        ) {
            let buf = encode_all(&records);
            let last = RECORD_HEADER_BYTES + records[records.len() - 1].len();
            let keep = buf.len() - (cut % last).max(1);
            let mut at = 0;
            loop {
                match decode_record(&buf[at..keep]) {
                    DecodeOutcome::Record { consumed, .. } => at += consumed,
                    DecodeOutcome::TornTail => break,
                    other => { prop_assert!(false, "unexpected {:?}", other); break }
                }
            }
        }

        #[test]
        fn a_flipped_payload_bit_is_corruption(payload in proptest::collection::vec(any::<u8>(), 1..200), bit in 0usize..1600) {
            let mut buf = Vec::new();
            encode_record(&payload, &mut buf);
            let bit = bit % (payload.len() * 8);
            buf[RECORD_HEADER_BYTES + bit / 8] ^= 1 << (bit % 8);
            let corrupt = matches!(decode_record(&buf), DecodeOutcome::Corrupt { .. });
            prop_assert!(corrupt);
        }
    }
}
