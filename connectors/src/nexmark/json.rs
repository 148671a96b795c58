//! Nexmark events as JSON objects with Flink's Nexmark column names, written directly
//! (no serde): numbers with `itoa`, times as epoch milliseconds, text as is (the generator
//! only makes ASCII letters, digits, spaces and URL characters, none of which JSON
//! escapes).
//!
//! ```text
//! bid:     {"auction":..,"bidder":..,"price":..,"channel":"..","url":"..","dateTime":..,"extra":".."}
//! auction: {"id":..,"itemName":"..","description":"..","initialBid":..,"reserve":..,
//!           "dateTime":..,"expires":..,"seller":..,"category":..,"extra":".."}
//! person:  {"id":..,"name":"..","emailAddress":"..","creditCard":"..","city":"..",
//!           "state":"..","dateTime":..,"extra":".."}
//! ```

use super::model::{Auction, Bid, Event, Person};

/// The columns of the bid table, as a CREATE TABLE lists them.
pub const BID_COLUMNS_SQL: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, \
     url STRING, dateTime TIMESTAMP(3), extra STRING";
/// The columns of the auction table.
pub const AUCTION_COLUMNS_SQL: &str = "id BIGINT, itemName STRING, description STRING, \
     initialBid BIGINT, reserve BIGINT, dateTime TIMESTAMP(3), expires TIMESTAMP(3), \
     seller BIGINT, category BIGINT, extra STRING";
/// The columns of the person table.
pub const PERSON_COLUMNS_SQL: &str = "id BIGINT, name STRING, emailAddress STRING, \
     creditCard STRING, city STRING, state STRING, dateTime TIMESTAMP(3), extra STRING";

/// Appends `event` as one JSON object, without a newline.
pub fn write_event_json(event: &Event<'_>, out: &mut Vec<u8>) {
    match event {
        Event::Person(p) => write_person_json(p, out),
        Event::Auction(a) => write_auction_json(a, out),
        Event::Bid(b) => write_bid_json(b, out),
    }
}

#[inline]
fn number(out: &mut Vec<u8>, key: &[u8], value: u64) {
    out.extend_from_slice(key);
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

#[inline]
fn signed(out: &mut Vec<u8>, key: &[u8], value: i64) {
    out.extend_from_slice(key);
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

#[inline]
fn text(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out.push(b'"');
}

/// Appends a bid.
pub fn write_bid_json(b: &Bid<'_>, out: &mut Vec<u8>) {
    number(out, b"{\"auction\":", b.auction);
    number(out, b",\"bidder\":", b.bidder);
    number(out, b",\"price\":", b.price);
    out.extend_from_slice(&b.channel.json_fields);
    signed(out, b",\"dateTime\":", b.date_time_ms);
    text(out, b",\"extra\":\"", b.extra);
    out.push(b'}');
}

/// Appends an auction.
pub fn write_auction_json(a: &Auction<'_>, out: &mut Vec<u8>) {
    number(out, b"{\"id\":", a.id);
    text(out, b",\"itemName\":\"", a.item_name);
    text(out, b",\"description\":\"", a.description);
    number(out, b",\"initialBid\":", a.initial_bid);
    number(out, b",\"reserve\":", a.reserve);
    signed(out, b",\"dateTime\":", a.date_time_ms);
    signed(out, b",\"expires\":", a.expires_ms);
    number(out, b",\"seller\":", a.seller);
    number(out, b",\"category\":", a.category);
    text(out, b",\"extra\":\"", a.extra);
    out.push(b'}');
}

/// Appends a person.
pub fn write_person_json(p: &Person<'_>, out: &mut Vec<u8>) {
    number(out, b"{\"id\":", p.id);
    text(out, b",\"name\":\"", p.name);
    text(out, b",\"emailAddress\":\"", p.email_address);
    text(out, b",\"creditCard\":\"", p.credit_card);
    text(out, b",\"city\":\"", p.city.as_bytes());
    text(out, b",\"state\":\"", p.state.as_bytes());
    signed(out, b",\"dateTime\":", p.date_time_ms);
    text(out, b",\"extra\":\"", p.extra);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexmark::channels::Channel;
    use crate::nexmark::generator::{NexmarkGenerator, StreamConfig};
    use serde_json::Value;

    fn column_names(columns_sql: &str) -> Vec<String> {
        columns_sql
            .split(", ")
            .map(|c| c.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn a_bid_has_the_documented_form() {
        let channel = Channel::new(
            0,
            "Google".into(),
            "https://www.nexmark.com/a/b/c/item.htm?query=1".into(),
        );
        let bid = Bid {
            auction: 1007,
            bidder: 1001,
            price: 12_345,
            channel: &channel,
            date_time_ms: 1_700_000_000_123,
            extra: b"xyz",
        };
        let mut out = Vec::new();
        write_event_json(&Event::Bid(bid), &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"auction":1007,"bidder":1001,"price":12345,"channel":"Google","url":"https://www.nexmark.com/a/b/c/item.htm?query=1","dateTime":1700000000123,"extra":"xyz"}"#
        );
    }

    #[test]
    fn every_event_is_valid_json_with_the_table_columns() {
        let mut g = NexmarkGenerator::new(StreamConfig {
            seed: 11,
            disorder_ms: 500,
            ..StreamConfig::default()
        });
        let mut line = Vec::new();
        for n in 0..2_000u64 {
            let event = g.event(n);
            let (kind, ts) = (event.kind(), event.date_time_ms());
            line.clear();
            write_event_json(&event, &mut line);
            let value: Value = serde_json::from_slice(&line).expect("valid JSON");
            let object = value.as_object().expect("an object");
            let columns = match kind.name() {
                "bid" => BID_COLUMNS_SQL,
                "auction" => AUCTION_COLUMNS_SQL,
                _ => PERSON_COLUMNS_SQL,
            };
            let names = column_names(columns);
            assert_eq!(
                object.keys().cloned().collect::<Vec<_>>().len(),
                names.len(),
                "{value}"
            );
            for name in &names {
                assert!(object.contains_key(name), "{name} missing in {value}");
            }
            assert_eq!(object["dateTime"].as_i64(), Some(ts));
        }
    }
}
