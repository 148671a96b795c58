//! The Nexmark data model: the three event kinds, their fields, and the id arithmetic of
//! the reference generator (Java `NexmarkGenerator`, and the `nexmark` crate 0.2 that
//! follows it).
//!
//! Event `n` of the stream is a person when `n mod 50 == 0`, an auction when
//! `n mod 50` is 1, 2 or 3, and a bid otherwise (the 1 : 3 : 46 proportions). Person and
//! auction ids are therefore functions of `n`: the `k`-th person has id `1000 + k`, the
//! `k`-th auction `1000 + k`. Bids and auctions refer to recent people and auctions, a
//! large share of them "hot" (see the ratios below), like the reference.

use super::channels::Channel;

/// Persons per [`PROPORTION_DENOMINATOR`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auctions per [`PROPORTION_DENOMINATOR`] events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bids per [`PROPORTION_DENOMINATOR`] events.
pub const BID_PROPORTION: u64 = 46;
/// Events in one cycle of the proportions.
pub const PROPORTION_DENOMINATOR: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;

/// Id of the first person (ids start high so small streams still find matches).
pub const FIRST_PERSON_ID: u64 = 1000;
/// Id of the first auction.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// Id of the first category.
pub const FIRST_CATEGORY_ID: u64 = 10;
/// Number of auction categories.
pub const CATEGORIES: u64 = 5;
/// People considered active for placing auctions and bids.
pub const ACTIVE_PEOPLE: u64 = 1000;
/// Auctions in flight at any time (on average).
pub const IN_FLIGHT_AUCTIONS: u64 = 100;
/// How far past the last person id a random person id may reach.
pub const PERSON_ID_LEAD: u64 = 10;
/// How far past the last auction id a random auction id may reach.
pub const AUCTION_ID_LEAD: u64 = 10;
/// One in this many sellers, bidders and auctions of a batch is the batch's "hot" one.
pub const HOT_BATCH: u64 = 100;
/// An auction is for a hot seller with probability `1 - 1/HOT_SELLER_RATIO`.
pub const HOT_SELLER_RATIO: u64 = 4;
/// A bid is for a hot auction with probability `1 - 1/HOT_AUCTION_RATIO`.
pub const HOT_AUCTION_RATIO: u64 = 2;
/// A bid is by a hot bidder with probability `1 - 1/HOT_BIDDER_RATIO`.
pub const HOT_BIDDER_RATIO: u64 = 4;
/// A bid comes through a hot channel with probability `1 - 1/HOT_CHANNEL_RATIO`.
pub const HOT_CHANNEL_RATIO: u64 = 2;
/// Average size of a person, an auction and a bid in the reference's byte accounting; the
/// `extra` field pads each event towards it.
pub const PERSON_BYTES_AVG: u64 = 200;
/// See [`PERSON_BYTES_AVG`].
pub const AUCTION_BYTES_AVG: u64 = 500;
/// See [`PERSON_BYTES_AVG`].
pub const BID_BYTES_AVG: u64 = 100;
/// Letters of an auction's `itemName`.
pub const ITEM_NAME_LETTERS: usize = 20;
/// Letters of an auction's `description`.
pub const DESCRIPTION_LETTERS: usize = 100;

/// US states a person lives in.
pub const US_STATES: &[&str] = &["az", "ca", "id", "or", "wa", "wy"];
/// US cities a person lives in.
pub const US_CITIES: &[&str] = &[
    "phoenix",
    "los angeles",
    "san francisco",
    "boise",
    "portland",
    "bend",
    "redmond",
    "seattle",
    "kent",
    "cheyenne",
];
/// First names of persons.
pub const FIRST_NAMES: &[&str] = &[
    "peter", "paul", "luke", "john", "saul", "vicky", "kate", "julie", "sarah", "deiter", "walter",
];
/// Last names of persons.
pub const LAST_NAMES: &[&str] = &[
    "shultz", "abrams", "spencer", "white", "bartels", "walton", "smith", "jones", "noris",
];

/// The kind of a Nexmark event, and so the table that delivers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Person,
    Auction,
    Bid,
}

impl EventKind {
    /// All kinds, in stream order within a cycle.
    pub const ALL: [EventKind; 3] = [EventKind::Person, EventKind::Auction, EventKind::Bid];

    /// The kind of event `n` of the stream.
    pub fn of(n: u64) -> EventKind {
        let rem = n % PROPORTION_DENOMINATOR;
        if rem < PERSON_PROPORTION {
            EventKind::Person
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            EventKind::Auction
        } else {
            EventKind::Bid
        }
    }

    /// `person`, `auction` or `bid`: the `'nexmark.table'` value and the default topic.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Person => "person",
            EventKind::Auction => "auction",
            EventKind::Bid => "bid",
        }
    }

    /// The kind named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Events of this kind among the first `events` events of the stream.
    pub fn count_in(self, events: u64) -> u64 {
        let (cycles, rest) = (
            events / PROPORTION_DENOMINATOR,
            events % PROPORTION_DENOMINATOR,
        );
        let (first, per_cycle) = match self {
            EventKind::Person => (0, PERSON_PROPORTION),
            EventKind::Auction => (PERSON_PROPORTION, AUCTION_PROPORTION),
            EventKind::Bid => (PERSON_PROPORTION + AUCTION_PROPORTION, BID_PROPORTION),
        };
        cycles * per_cycle + rest.saturating_sub(first).min(per_cycle)
    }
}

/// A person: someone who sells items and bids on them. Text fields are ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Person<'a> {
    pub id: u64,
    pub name: &'a [u8],
    pub email_address: &'a [u8],
    /// Four groups of four digits separated by spaces.
    pub credit_card: &'a [u8],
    pub city: &'static str,
    pub state: &'static str,
    /// Event time, epoch ms.
    pub date_time_ms: i64,
    pub extra: &'a [u8],
}

/// An item under auction. Text fields are ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auction<'a> {
    pub id: u64,
    pub item_name: &'a [u8],
    pub description: &'a [u8],
    /// Cents.
    pub initial_bid: u64,
    /// Cents; at least `initial_bid`.
    pub reserve: u64,
    /// Event time, epoch ms.
    pub date_time_ms: i64,
    /// When the auction ends, epoch ms (after `date_time_ms`).
    pub expires_ms: i64,
    /// Person id of the seller.
    pub seller: u64,
    pub category: u64,
    pub extra: &'a [u8],
}

/// A bid on an auction. Text fields are ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bid<'a> {
    /// Auction id.
    pub auction: u64,
    /// Person id of the bidder.
    pub bidder: u64,
    /// Cents.
    pub price: u64,
    /// The channel the bid came through, with its URL.
    pub channel: &'a Channel,
    /// Event time, epoch ms.
    pub date_time_ms: i64,
    pub extra: &'a [u8],
}

/// One generated event; borrows the generator's scratch text until the next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    Person(Person<'a>),
    Auction(Auction<'a>),
    Bid(Bid<'a>),
}

impl Event<'_> {
    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Person(_) => EventKind::Person,
            Event::Auction(_) => EventKind::Auction,
            Event::Bid(_) => EventKind::Bid,
        }
    }

    /// The event time, epoch ms.
    pub fn date_time_ms(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time_ms,
            Event::Auction(a) => a.date_time_ms,
            Event::Bid(b) => b.date_time_ms,
        }
    }
}

/// The id (less [`FIRST_PERSON_ID`]) of the last person generated at or before event `n`.
pub fn last_person_id(n: u64) -> u64 {
    // One person per cycle, at its start: the cycle number is the last person.
    const _: () = assert!(PERSON_PROPORTION == 1);
    n / PROPORTION_DENOMINATOR
}

/// The id (less [`FIRST_AUCTION_ID`]) of the last auction generated at or before event `n`
/// (0 before the first auction).
pub fn last_auction_id(n: u64) -> u64 {
    let cycle = n / PROPORTION_DENOMINATOR;
    let offset = n % PROPORTION_DENOMINATOR;
    if offset < PERSON_PROPORTION {
        // The person opening a cycle: the last auction is the previous cycle's last one.
        (cycle * AUCTION_PROPORTION).saturating_sub(1)
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        cycle * AUCTION_PROPORTION + AUCTION_PROPORTION - 1
    } else {
        cycle * AUCTION_PROPORTION + offset - PERSON_PROPORTION
    }
}

/// A person id (less [`FIRST_PERSON_ID`]) among the active people at event `n`, given a
/// uniform `draw(bound)` in `0..bound`: up to [`PERSON_ID_LEAD`] past the last one.
pub fn next_person_id(n: u64, draw: impl FnOnce(u64) -> u64) -> u64 {
    let people = last_person_id(n) + 1;
    let active = people.min(ACTIVE_PEOPLE);
    people - active + draw(active + PERSON_ID_LEAD)
}

/// An auction id (less [`FIRST_AUCTION_ID`]) among the auctions in flight at event `n`,
/// given a uniform `draw(bound)` in `0..bound`: up to [`AUCTION_ID_LEAD`] past the last one.
pub fn next_auction_id(n: u64, draw: impl FnOnce(u64) -> u64) -> u64 {
    let max = last_auction_id(n);
    let min = max.saturating_sub(IN_FLIGHT_AUCTIONS);
    min + draw(max - min + 1 + AUCTION_ID_LEAD)
}

/// The hot seller of event `n` (the first person of the latest batch), less the first id.
pub fn hot_seller_id(n: u64) -> u64 {
    last_person_id(n) / HOT_BATCH * HOT_BATCH
}

/// The hot bidder of event `n` (the second person of the latest batch, so hot bidders and
/// hot sellers differ), less the first id.
pub fn hot_bidder_id(n: u64) -> u64 {
    hot_seller_id(n) + 1
}

/// The hot auction of event `n` (the first auction of the latest batch), less the first id.
pub fn hot_auction_id(n: u64) -> u64 {
    last_auction_id(n) / HOT_BATCH * HOT_BATCH
}

/// Letters of the `extra` field that pad an event of `size` bytes (in the reference's
/// accounting) towards `size_avg`, given a uniform `draw(bound)` in `0..bound`: within
/// ±20% of the missing bytes, none when the event is already larger.
pub fn extra_letters(size: u64, size_avg: u64, draw: impl FnOnce(u64) -> u64) -> usize {
    if size > size_avg {
        return 0;
    }
    let missing = size_avg - size;
    let delta = (missing + 2) / 5;
    let extra = missing - delta + if delta == 0 { 0 } else { draw(2 * delta) };
    extra as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kinds_follow_the_proportions() {
        let kinds: Vec<EventKind> = (0..50).map(EventKind::of).collect();
        assert_eq!(kinds[0], EventKind::Person);
        assert_eq!(&kinds[1..4], &[EventKind::Auction; 3]);
        assert!(kinds[4..].iter().all(|k| *k == EventKind::Bid));
        assert_eq!(EventKind::of(50), EventKind::Person);
        assert_eq!(EventKind::from_name(" BID "), Some(EventKind::Bid));
        assert_eq!(EventKind::from_name("bids"), None);
    }

    #[test]
    fn ids_count_the_people_and_auctions_so_far() {
        assert_eq!(last_person_id(0), 0);
        assert_eq!(last_person_id(49), 0);
        assert_eq!(last_person_id(50), 1);
        assert_eq!(last_auction_id(1), 0);
        assert_eq!(last_auction_id(3), 2);
        assert_eq!(last_auction_id(4), 2);
        assert_eq!(
            last_auction_id(50),
            2,
            "a person: the previous cycle's last auction"
        );
        assert_eq!(last_auction_id(51), 3);
        assert_eq!(last_auction_id(0), 0, "before any auction");
        assert_eq!(hot_seller_id(250 * 50), 200);
        assert_eq!(hot_bidder_id(250 * 50), 201);
        assert_eq!(hot_auction_id(100 * 50 + 10), 300);
    }

    #[test]
    fn extra_pads_to_within_twenty_percent() {
        assert_eq!(extra_letters(600, 500, |_| 0), 0);
        // A bid: 32 bytes of 100, 68 missing, delta 14: 54 ..= 81 letters.
        assert_eq!(extra_letters(32, 100, |_| 0), 54);
        assert_eq!(extra_letters(32, 100, |b| b - 1), 81);
        assert_eq!(extra_letters(100, 100, |_| 7), 0, "delta 0 draws nothing");
    }

    proptest! {
        #[test]
        fn counts_match_a_scan(events in 0u64..400) {
            for kind in EventKind::ALL {
                let scanned = (0..events).filter(|n| EventKind::of(*n) == kind).count() as u64;
                prop_assert_eq!(kind.count_in(events), scanned);
            }
        }

        #[test]
        fn random_ids_refer_to_recent_existing_or_lead_ids(n in 0u64..10_000_000, r in any::<u64>()) {
            let person = next_person_id(n, |b| r % b);
            prop_assert!(person <= last_person_id(n) + PERSON_ID_LEAD);
            prop_assert!(person + ACTIVE_PEOPLE > last_person_id(n));
            let auction = next_auction_id(n, |b| r % b);
            prop_assert!(auction <= last_auction_id(n) + AUCTION_ID_LEAD);
            prop_assert!(auction + IN_FLIGHT_AUCTIONS >= last_auction_id(n));
            if EventKind::of(n) == EventKind::Auction {
                // An auction event's own id is the last auction id.
                let k = n / 50 * 3 + n % 50 - 1;
                prop_assert_eq!(last_auction_id(n), k);
            }
        }
    }
}
