//! The record format of a group-mode job's repartition topic: names, constants and the header
//! codec shared by the forwarder (stage A, which writes it) and the repartition source
//! (stage B, which reads it).
//!
//! Each record of the repartition topic is one of:
//! - a **row**: the source record's original bytes as the payload, with the headers
//!   [`HEADER_SOURCE_PARTITION`] (i32 big-endian) and [`HEADER_SOURCE_OFFSET`] (i64 BE);
//! - a **time mark**: no payload, with the headers [`HEADER_SOURCE_PARTITION`] and
//!   [`HEADER_TIME_MARK`] (i64 BE, the largest event time in ms the forwarder has seen in
//!   that source partition, sent after the rows it covers).
//!
//! Boundary: a record without these headers, or with malformed ones, is not spillway's
//! (someone else writes the topic): [`decode_record`] says what is wrong and the reader
//! fails with that; it never guesses.

use std::ffi::CStr;

use rdkafka::bindings::{rd_kafka_header_get_last, rd_kafka_headers_t};
use rdkafka::message::{BorrowedHeaders, Header, OwnedHeaders};
use rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;

/// Header of every repartition record: the source partition (i32 big-endian, 4 bytes).
pub const HEADER_SOURCE_PARTITION: &str = "spillway.sp";
/// Header of a row: the record's offset in its source partition (i64 big-endian, 8 bytes).
pub const HEADER_SOURCE_OFFSET: &str = "spillway.so";
/// Header of a time mark: the source partition's largest event time seen, in ms (i64
/// big-endian, 8 bytes). A mark has no payload.
pub const HEADER_TIME_MARK: &str = "spillway.ts";
/// Longest interval between two time marks of one source partition from one forwarder.
pub const REPARTITION_MARK_INTERVAL_MS: u64 = 5;

/// The same names, NUL-terminated for librdkafka's header lookup (checked equal in tests).
const SOURCE_PARTITION_KEY: &CStr = c"spillway.sp";
const SOURCE_OFFSET_KEY: &CStr = c"spillway.so";
const TIME_MARK_KEY: &CStr = c"spillway.ts";

/// The repartition topic of consumer group `group_id` when the table does not name one
/// (`'scan.repartition.topic'`).
pub fn default_repartition_topic(group_id: &str) -> String {
    format!("{group_id}-repartition")
}

/// One decoded record of a repartition topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepartitionRecord<'a> {
    /// A forwarded source record (its payload is the original bytes; empty for a null one).
    Row {
        source_partition: i32,
        source_offset: i64,
        payload: &'a [u8],
    },
    /// Source partition `source_partition` has seen events up to `ts_max_ms`.
    Mark {
        source_partition: i32,
        ts_max_ms: i64,
    },
}

/// The headers of a row of source partition `source_partition` at `source_offset`.
pub fn row_headers(source_partition: i32, source_offset: i64) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: HEADER_SOURCE_PARTITION,
            value: Some(&source_partition.to_be_bytes()),
        })
        .insert(Header {
            key: HEADER_SOURCE_OFFSET,
            value: Some(&source_offset.to_be_bytes()),
        })
}

/// The headers of a time mark: source partition `source_partition` has seen events up to
/// `ts_max_ms`.
pub fn mark_headers(source_partition: i32, ts_max_ms: i64) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: HEADER_SOURCE_PARTITION,
            value: Some(&source_partition.to_be_bytes()),
        })
        .insert(Header {
            key: HEADER_TIME_MARK,
            value: Some(&ts_max_ms.to_be_bytes()),
        })
}

/// Decodes a record of a repartition topic from its headers and payload.
///
/// The error says what is wrong with the record (e.g. "it has no 'spillway.sp' header");
/// the caller adds where it was found. Headers other than spillway's are ignored; when a
/// spillway header appears twice, the last one counts (as in librdkafka's lookup).
pub fn decode_record<'a>(
    headers: Option<&BorrowedHeaders>,
    payload: Option<&'a [u8]>,
) -> Result<RepartitionRecord<'a>, String> {
    let native = headers.map_or(std::ptr::null(), |h| {
        (h as *const BorrowedHeaders).cast::<rd_kafka_headers_t>()
    });
    // SAFETY: a `BorrowedHeaders` reference is rdkafka's view of a live `rd_kafka_headers_t`
    // at the same address (its `as_borrowed`/`as_native_ptr` cast the same way), alive for
    // this call; null stands for no headers.
    unsafe { decode_native(native, payload) }
}

/// [`decode_record`] over librdkafka's headers of a message (null: the message has none).
///
/// # Safety
/// `headers` is null or points to a live `rd_kafka_headers_t` for the duration of the call.
pub(crate) unsafe fn decode_native<'a>(
    headers: *const rd_kafka_headers_t,
    payload: Option<&'a [u8]>,
) -> Result<RepartitionRecord<'a>, String> {
    let values = if headers.is_null() {
        HeaderValues::default()
    } else {
        // SAFETY: the caller guarantees `headers` is live for this call; the values are
        // parsed before it returns.
        unsafe {
            HeaderValues {
                source_partition: header_value(headers, SOURCE_PARTITION_KEY),
                source_offset: header_value(headers, SOURCE_OFFSET_KEY),
                time_mark: header_value(headers, TIME_MARK_KEY),
            }
        }
    };
    decode_values(values, payload)
}

/// The spillway headers found on one record (None: absent; a null value reads as empty).
#[derive(Debug, Default, Clone, Copy)]
struct HeaderValues<'h> {
    source_partition: Option<&'h [u8]>,
    source_offset: Option<&'h [u8]>,
    time_mark: Option<&'h [u8]>,
}

/// The value of the last header named `key` (bytes owned by `headers`).
///
/// # Safety
/// `headers` points to a live `rd_kafka_headers_t`; the returned slice must not outlive it.
unsafe fn header_value<'h>(headers: *const rd_kafka_headers_t, key: &CStr) -> Option<&'h [u8]> {
    let mut value: *const std::ffi::c_void = std::ptr::null();
    let mut size = 0usize;
    // SAFETY: `headers` is live (caller) and `key` is NUL-terminated; librdkafka only writes
    // the two out-parameters, pointing into `headers`.
    let err = unsafe { rd_kafka_header_get_last(headers, key.as_ptr(), &mut value, &mut size) };
    if err != RD_KAFKA_RESP_ERR_NO_ERROR {
        return None; // not found
    }
    if value.is_null() {
        return Some(&[]);
    }
    // SAFETY: librdkafka guarantees `value` points to `size` bytes owned by `headers`.
    Some(unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) })
}

fn decode_values<'a>(
    values: HeaderValues<'_>,
    payload: Option<&'a [u8]>,
) -> Result<RepartitionRecord<'a>, String> {
    let Some(sp) = values.source_partition else {
        return Err(format!(
            "it has no '{HEADER_SOURCE_PARTITION}' header (not written by spillway's forwarder)"
        ));
    };
    let source_partition = i32::from_be_bytes(fixed(HEADER_SOURCE_PARTITION, sp, "i32")?);
    if source_partition < 0 {
        return Err(format!(
            "its header '{HEADER_SOURCE_PARTITION}' is {source_partition}, expected a \
             partition number >= 0"
        ));
    }
    match (values.source_offset, values.time_mark) {
        (Some(_), Some(_)) => Err(format!(
            "it has both '{HEADER_SOURCE_OFFSET}' (a row) and '{HEADER_TIME_MARK}' (a time \
             mark)"
        )),
        (None, None) => Err(format!(
            "it has '{HEADER_SOURCE_PARTITION}' but neither '{HEADER_SOURCE_OFFSET}' (a row) \
             nor '{HEADER_TIME_MARK}' (a time mark)"
        )),
        (Some(so), None) => {
            let source_offset = i64::from_be_bytes(fixed(HEADER_SOURCE_OFFSET, so, "i64")?);
            if source_offset < 0 {
                return Err(format!(
                    "its header '{HEADER_SOURCE_OFFSET}' is {source_offset}, expected an \
                     offset >= 0"
                ));
            }
            Ok(RepartitionRecord::Row {
                source_partition,
                source_offset,
                payload: payload.unwrap_or(&[]),
            })
        }
        (None, Some(ts)) => {
            let ts_max_ms = i64::from_be_bytes(fixed(HEADER_TIME_MARK, ts, "i64")?);
            match payload {
                None | Some([]) => Ok(RepartitionRecord::Mark {
                    source_partition,
                    ts_max_ms,
                }),
                Some(p) => Err(format!(
                    "it is a time mark ('{HEADER_TIME_MARK}') with a {}-byte payload, \
                     expected none",
                    p.len()
                )),
            }
        }
    }
}

/// `value` as an array of exactly `N` bytes, or an error naming the header.
fn fixed<const N: usize>(key: &str, value: &[u8], kind: &str) -> Result<[u8; N], String> {
    value.try_into().map_err(|_| {
        format!(
            "its header '{key}' has {} bytes, expected {N} (a big-endian {kind})",
            value.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(entries: &[(&str, Option<&[u8]>)]) -> OwnedHeaders {
        entries.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header { key, value: *value })
        })
    }

    fn decode<'a>(
        h: &OwnedHeaders,
        payload: Option<&'a [u8]>,
    ) -> Result<RepartitionRecord<'a>, String> {
        decode_record(Some(h.as_borrowed()), payload)
    }

    #[test]
    fn names_and_keys_agree() {
        assert_eq!(SOURCE_PARTITION_KEY.to_str(), Ok(HEADER_SOURCE_PARTITION));
        assert_eq!(SOURCE_OFFSET_KEY.to_str(), Ok(HEADER_SOURCE_OFFSET));
        assert_eq!(TIME_MARK_KEY.to_str(), Ok(HEADER_TIME_MARK));
        assert_eq!(default_repartition_topic("G"), "G-repartition");
    }

    #[test]
    fn headers_have_the_documented_layout() {
        use rdkafka::message::Headers;
        let h = row_headers(3, 0x0102_0304_0506_0708);
        let got: Vec<(String, Vec<u8>)> = h
            .iter()
            .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("spillway.sp".to_string(), vec![0, 0, 0, 3]),
                ("spillway.so".to_string(), vec![1, 2, 3, 4, 5, 6, 7, 8]),
            ]
        );
        let m = mark_headers(1, -2);
        assert_eq!(m.count(), 2);
        assert_eq!(m.get(1).key, "spillway.ts");
        assert_eq!(
            m.get(1).value,
            Some(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe][..])
        );
    }

    #[test]
    fn records_without_spillway_headers_are_errors() {
        let e = decode_record(None, Some(b"{}")).expect_err("no headers");
        assert!(e.contains("no 'spillway.sp' header"), "{e}");
        let other = headers(&[("trace-id", Some(b"abc"))]);
        let e = decode(&other, Some(b"{}")).expect_err("foreign headers");
        assert!(e.contains("no 'spillway.sp' header"), "{e}");
        let only_sp = headers(&[("spillway.sp", Some(&[0, 0, 0, 1]))]);
        let e = decode(&only_sp, Some(b"{}")).expect_err("neither row nor mark");
        assert!(e.contains("neither 'spillway.so'"), "{e}");
    }

    #[test]
    fn malformed_values_are_errors_naming_the_header() {
        let short = headers(&[
            ("spillway.sp", Some(&[0, 1])),
            ("spillway.so", Some(&[0; 8])),
        ]);
        let e = decode(&short, Some(b"x")).expect_err("short sp");
        assert!(e.contains("'spillway.sp' has 2 bytes, expected 4"), "{e}");
        let null = headers(&[("spillway.sp", Some(&[0; 4])), ("spillway.so", None)]);
        let e = decode(&null, Some(b"x")).expect_err("null so");
        assert!(e.contains("'spillway.so' has 0 bytes, expected 8"), "{e}");
        let negative = headers(&[
            ("spillway.sp", Some(&[0xff; 4])),
            ("spillway.ts", Some(&[0; 8])),
        ]);
        let e = decode(&negative, None).expect_err("negative sp");
        assert!(e.contains("'spillway.sp' is -1"), "{e}");
        let both = headers(&[
            ("spillway.sp", Some(&[0; 4])),
            ("spillway.so", Some(&[0; 8])),
            ("spillway.ts", Some(&[0; 8])),
        ]);
        let e = decode(&both, None).expect_err("both");
        assert!(e.contains("both"), "{e}");
        let e = decode(&mark_headers(0, 5), Some(b"{}")).expect_err("mark with payload");
        assert!(e.contains("2-byte payload"), "{e}");
        let e = decode(&row_headers(0, -3), Some(b"{}")).expect_err("negative offset");
        assert!(e.contains("'spillway.so' is -3"), "{e}");
    }

    #[test]
    fn a_null_row_payload_reads_as_empty_and_other_headers_are_ignored() {
        let h = row_headers(2, 9).insert(Header {
            key: "other",
            value: Some(&b"v"[..]),
        });
        assert_eq!(
            decode(&h, None),
            Ok(RepartitionRecord::Row {
                source_partition: 2,
                source_offset: 9,
                payload: &[],
            })
        );
    }

    /// What `decode_values` must answer for the given header values: Ok(record) or Err.
    fn model<'a>(
        sp: &Option<Vec<u8>>,
        so: &Option<Vec<u8>>,
        ts: &Option<Vec<u8>>,
        payload: Option<&'a [u8]>,
    ) -> Option<RepartitionRecord<'a>> {
        let sp = i32::from_be_bytes(sp.as_deref()?.try_into().ok()?);
        if sp < 0 {
            return None;
        }
        match (so, ts) {
            (Some(so), None) => {
                let so = i64::from_be_bytes(so.as_slice().try_into().ok()?);
                (so >= 0).then_some(RepartitionRecord::Row {
                    source_partition: sp,
                    source_offset: so,
                    payload: payload.unwrap_or(&[]),
                })
            }
            (None, Some(ts)) => {
                let ts = i64::from_be_bytes(ts.as_slice().try_into().ok()?);
                payload
                    .is_none_or(|p| p.is_empty())
                    .then_some(RepartitionRecord::Mark {
                        source_partition: sp,
                        ts_max_ms: ts,
                    })
            }
            _ => None,
        }
    }

    /// A header value: mostly of a valid length (4 or 8 bytes), sometimes not.
    fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            Just(None),
            proptest::collection::vec(any::<u8>(), 4..=4).prop_map(Some),
            proptest::collection::vec(any::<u8>(), 8..=8).prop_map(Some),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Some),
        ]
    }

    proptest! {
        #[test]
        fn rows_round_trip(
            sp in 0i32..=i32::MAX,
            so in 0i64..=i64::MAX,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let h = row_headers(sp, so);
            prop_assert_eq!(
                decode(&h, Some(&payload)),
                Ok(RepartitionRecord::Row { source_partition: sp, source_offset: so, payload: &payload })
            );
        }

        #[test]
        fn marks_round_trip(sp in 0i32..=i32::MAX, ts in any::<i64>(), empty in any::<bool>()) {
            let h = mark_headers(sp, ts);
            let payload: Option<&[u8]> = if empty { Some(&[]) } else { None };
            prop_assert_eq!(
                decode(&h, payload),
                Ok(RepartitionRecord::Mark { source_partition: sp, ts_max_ms: ts })
            );
        }

        /// Arbitrary header sets decode exactly as the model says, and every rejection is
        /// an error that names a spillway header or the payload (never a panic).
        #[test]
        fn arbitrary_headers_decode_as_the_model_says(
            sp in value(),
            so in value(),
            ts in value(),
            payload in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4)),
        ) {
            let mut entries: Vec<(&str, Option<&[u8]>)> = vec![("x-other", Some(b"1"))];
            for (key, v) in [(HEADER_SOURCE_PARTITION, &sp), (HEADER_SOURCE_OFFSET, &so), (HEADER_TIME_MARK, &ts)] {
                if let Some(v) = v {
                    entries.push((key, Some(v.as_slice())));
                }
            }
            let h = headers(&entries);
            let got = decode(&h, payload.as_deref());
            match model(&sp, &so, &ts, payload.as_deref()) {
                Some(want) => prop_assert_eq!(got, Ok(want)),
                None => {
                    let e = got.expect_err("model rejects");
                    prop_assert!(e.contains("spillway.") || e.contains("payload"), "{}", e);
                }
            }
        }
    }
}
