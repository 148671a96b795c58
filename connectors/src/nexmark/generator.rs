//! The Nexmark event generator: event `n` of a seeded stream, computed from `n` alone.
//!
//! Field distributions follow the reference generator (see [`super::model`]): names from
//! fixed lists, random lowercase strings, log-uniform prices, ids of recent or "hot"
//! people and auctions, and an `extra` field padding each event to the reference's average
//! size. Event `n` has the nominal time `base_time_ms + n * 1000 / event_rate`; with a
//! disorder `d` it is delivered `uniform(0..=d)` ms earlier, drawn from a sequence of its
//! own so that the other fields do not depend on the disorder. Every event is thus at most
//! `d` older than any event before it in the stream (or in any subsequence of it), and a
//! watermark bound of `d` makes nothing late.

use super::channels::{channel_table, ChannelTable};
use super::model::{
    extra_letters, hot_auction_id, hot_bidder_id, hot_seller_id, last_auction_id, last_person_id,
    next_auction_id, next_person_id, Auction, Bid, Event, EventKind, Person, AUCTION_BYTES_AVG,
    AUCTION_PROPORTION, BID_BYTES_AVG, CATEGORIES, DESCRIPTION_LETTERS, FIRST_AUCTION_ID,
    FIRST_CATEGORY_ID, FIRST_NAMES, FIRST_PERSON_ID, HOT_AUCTION_RATIO, HOT_BIDDER_RATIO,
    HOT_CHANNEL_RATIO, HOT_SELLER_RATIO, IN_FLIGHT_AUCTIONS, ITEM_NAME_LETTERS, LAST_NAMES,
    PERSON_BYTES_AVG, PROPORTION_DENOMINATOR, US_CITIES, US_STATES,
};
use super::rng::EventRng;

/// Default event-time rate: the reference's default of 10 000 events per second.
pub const EVENT_RATE_DEFAULT: u64 = 10_000;
/// Default time of event 0: 2023-11-14 22:13:20 UTC (fixed, so a seed fixes the stream).
pub const BASE_TIME_MS_DEFAULT: i64 = 1_700_000_000_000;
/// Salt of an event's field sequence.
const FIELDS_SALT: u64 = 1;
/// Salt of an event's time jitter sequence.
const JITTER_SALT: u64 = 2;
/// Letters of the two parts of an e-mail address.
const EMAIL_USER_LETTERS: usize = 7;
const EMAIL_DOMAIN_LETTERS: usize = 5;
/// Bytes the reference counts for an auction's numbers besides its id (bids, times, ids).
const AUCTION_NUMBERS_BYTES: u64 = 8 * 5;
/// Bytes the reference counts for a bid's numbers.
const BID_NUMBERS_BYTES: u64 = 8 + 8 + 8 + 8;
/// Bytes the reference counts for a person's or an auction's id.
const ID_BYTES: u64 = 8;
/// Scratch bytes reserved up front: the largest event's text (an auction's padded extra).
const SCRATCH_BYTES: usize = 1024;

/// What stream to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Seed of every event's random sequence.
    pub seed: u64,
    /// Nominal time of event 0, epoch ms.
    pub base_time_ms: i64,
    /// Events per second of event time, over the whole stream (at least 1).
    pub event_rate: u64,
    /// Events are delivered up to this many ms earlier than their nominal time.
    pub disorder_ms: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            seed: 0,
            base_time_ms: BASE_TIME_MS_DEFAULT,
            event_rate: EVENT_RATE_DEFAULT,
            disorder_ms: 0,
        }
    }
}

impl StreamConfig {
    /// The nominal time of event `n`, epoch ms (saturating at the ends of `i64`).
    pub fn nominal_time_ms(&self, n: u64) -> i64 {
        let offset = i128::from(n) * 1000 / i128::from(self.event_rate.max(1));
        (i128::from(self.base_time_ms) + offset).clamp(i128::from(i64::MIN), i128::from(i64::MAX))
            as i64
    }

    /// The delivered time of event `n`: its nominal time less its jitter.
    pub fn date_time_ms(&self, n: u64) -> i64 {
        let nominal = self.nominal_time_ms(n);
        if self.disorder_ms == 0 {
            return nominal;
        }
        let jitter = EventRng::new(self.seed, JITTER_SALT, n).below(self.disorder_ms + 1);
        nominal.saturating_sub(jitter.min(i64::MAX as u64) as i64)
    }
}

/// Where the text fields of the current event are in the scratch buffer.
type Span = (usize, usize);

/// Generates events of one stream; see the module documentation.
pub struct NexmarkGenerator {
    config: StreamConfig,
    channels: &'static ChannelTable,
    /// The text of the current event (names, strings, extra), reused.
    text: Vec<u8>,
}

impl NexmarkGenerator {
    /// A generator of the stream `config` (an `event_rate` of 0 counts as 1).
    pub fn new(mut config: StreamConfig) -> Self {
        config.event_rate = config.event_rate.max(1);
        NexmarkGenerator {
            config,
            channels: channel_table(),
            text: Vec::with_capacity(SCRATCH_BYTES),
        }
    }

    /// The stream generated.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Event `n` of the stream. Its text borrows the generator until the next call.
    pub fn event(&mut self, n: u64) -> Event<'_> {
        match EventKind::of(n) {
            EventKind::Person => Event::Person(self.person(n)),
            EventKind::Auction => Event::Auction(self.auction(n)),
            EventKind::Bid => Event::Bid(self.bid(n)),
        }
    }

    fn span(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Span {
        let start = self.text.len();
        write(&mut self.text);
        (start, self.text.len())
    }

    /// Event `n` as a person (whatever its kind in the stream).
    pub fn person(&mut self, n: u64) -> Person<'_> {
        let mut rng = EventRng::new(self.config.seed, FIELDS_SALT, n);
        self.text.clear();
        let first = FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize];
        let last = LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize];
        let name = self.span(|t| {
            t.extend_from_slice(first.as_bytes());
            t.push(b' ');
            t.extend_from_slice(last.as_bytes());
        });
        let email = self.span(|t| {
            rng.letters(EMAIL_USER_LETTERS, t);
            t.push(b'@');
            rng.letters(EMAIL_DOMAIN_LETTERS, t);
            t.extend_from_slice(b".com");
        });
        let card = self.span(|t| {
            for group in 0..4 {
                if group > 0 {
                    t.push(b' ');
                }
                rng.digits(4, t);
            }
        });
        let city = US_CITIES[rng.below(US_CITIES.len() as u64) as usize];
        let state = US_STATES[rng.below(US_STATES.len() as u64) as usize];
        let size = ID_BYTES
            + [name, email, card]
                .iter()
                .map(|(a, b)| (b - a) as u64)
                .sum::<u64>()
            + (city.len() + state.len()) as u64;
        let extra_len = extra_letters(size, PERSON_BYTES_AVG, |b| rng.below(b));
        let extra = self.span(|t| rng.letters(extra_len, t));
        let t = &self.text;
        Person {
            id: FIRST_PERSON_ID + last_person_id(n),
            name: &t[name.0..name.1],
            email_address: &t[email.0..email.1],
            credit_card: &t[card.0..card.1],
            city,
            state,
            date_time_ms: self.config.date_time_ms(n),
            extra: &t[extra.0..extra.1],
        }
    }

    /// Event `n` as an auction (whatever its kind in the stream).
    pub fn auction(&mut self, n: u64) -> Auction<'_> {
        let mut rng = EventRng::new(self.config.seed, FIELDS_SALT, n);
        self.text.clear();
        let item = self.span(|t| rng.letters(ITEM_NAME_LETTERS, t));
        let description = self.span(|t| rng.letters(DESCRIPTION_LETTERS, t));
        let initial_bid = rng.price_cents();
        let reserve = initial_bid + rng.price_cents();
        let date_time_ms = self.config.date_time_ms(n);
        // Auctions last about as long as it takes to open IN_FLIGHT_AUCTIONS more.
        let events_for_auctions = IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR / AUCTION_PROPORTION;
        let horizon_ms = self
            .config
            .nominal_time_ms(n.saturating_add(events_for_auctions))
            .saturating_sub(self.config.nominal_time_ms(n))
            .max(0) as u64;
        let length_ms = 1 + rng.below((horizon_ms.saturating_mul(2)).max(1));
        let seller = if rng.below(HOT_SELLER_RATIO) > 0 {
            hot_seller_id(n)
        } else {
            next_person_id(n, |b| rng.below(b))
        };
        let category = FIRST_CATEGORY_ID + rng.below(CATEGORIES);
        let size =
            ID_BYTES + (ITEM_NAME_LETTERS + DESCRIPTION_LETTERS) as u64 + AUCTION_NUMBERS_BYTES;
        let extra_len = extra_letters(size, AUCTION_BYTES_AVG, |b| rng.below(b));
        let extra = self.span(|t| rng.letters(extra_len, t));
        let t = &self.text;
        Auction {
            id: FIRST_AUCTION_ID + last_auction_id(n),
            item_name: &t[item.0..item.1],
            description: &t[description.0..description.1],
            initial_bid,
            reserve,
            date_time_ms,
            expires_ms: date_time_ms.saturating_add(length_ms.min(i64::MAX as u64) as i64),
            seller: FIRST_PERSON_ID + seller,
            category,
            extra: &t[extra.0..extra.1],
        }
    }

    /// Event `n` as a bid (whatever its kind in the stream).
    pub fn bid(&mut self, n: u64) -> Bid<'_> {
        let mut rng = EventRng::new(self.config.seed, FIELDS_SALT, n);
        self.text.clear();
        let auction = if rng.below(HOT_AUCTION_RATIO) > 0 {
            hot_auction_id(n)
        } else {
            next_auction_id(n, |b| rng.below(b))
        };
        let bidder = if rng.below(HOT_BIDDER_RATIO) > 0 {
            hot_bidder_id(n)
        } else {
            next_person_id(n, |b| rng.below(b))
        };
        let price = rng.price_cents();
        let channel = if rng.below(HOT_CHANNEL_RATIO) > 0 {
            &self.channels.hot[rng.below(self.channels.hot.len() as u64) as usize]
        } else {
            &self.channels.other[rng.below(self.channels.other.len() as u64) as usize]
        };
        let extra_len = extra_letters(BID_NUMBERS_BYTES, BID_BYTES_AVG, |b| rng.below(b));
        rng.letters(extra_len, &mut self.text);
        Bid {
            auction: FIRST_AUCTION_ID + auction,
            bidder: FIRST_PERSON_ID + bidder,
            price,
            channel,
            date_time_ms: self.config.date_time_ms(n),
            extra: &self.text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn generator(seed: u64, disorder_ms: u64) -> NexmarkGenerator {
        NexmarkGenerator::new(StreamConfig {
            seed,
            disorder_ms,
            ..StreamConfig::default()
        })
    }

    /// An owned copy of an event, to compare events of two generators.
    fn owned(e: Event<'_>) -> String {
        format!("{e:?}")
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let (mut a, mut b, mut c) = (generator(5, 0), generator(5, 0), generator(6, 0));
        let ea: Vec<String> = (0..500).map(|n| owned(a.event(n))).collect();
        let eb: Vec<String> = (0..500).map(|n| owned(b.event(n))).collect();
        let ec: Vec<String> = (0..500).map(|n| owned(c.event(n))).collect();
        assert_eq!(ea, eb);
        assert_ne!(ea, ec);
        // Random access: event 321 alone is the 322nd event of the stream.
        assert_eq!(owned(generator(5, 0).event(321)), ea[321]);
    }

    #[test]
    fn fields_have_the_reference_shapes() {
        let mut g = generator(1, 0);
        let Event::Person(p) = g.event(50) else {
            panic!("event 50 is a person")
        };
        assert_eq!(p.id, 1001);
        let email = std::str::from_utf8(p.email_address).expect("ascii");
        assert!(
            email.ends_with(".com") && email.len() == 7 + 1 + 5 + 4,
            "{email}"
        );
        let card = std::str::from_utf8(p.credit_card).expect("ascii");
        assert_eq!(card.len(), 19, "{card}");
        assert!(card
            .split(' ')
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit())));
        assert!(US_CITIES.contains(&p.city) && US_STATES.contains(&p.state));
        assert_eq!(
            p.date_time_ms,
            BASE_TIME_MS_DEFAULT + 5,
            "event 50 at 10 000/s"
        );

        let Event::Auction(a) = g.event(52) else {
            panic!("event 52 is an auction")
        };
        assert_eq!(a.id, 1004, "the second auction of the second cycle");
        assert_eq!(a.item_name.len(), ITEM_NAME_LETTERS);
        assert_eq!(a.description.len(), DESCRIPTION_LETTERS);
        assert!(a.reserve >= a.initial_bid && a.initial_bid >= 100);
        assert!(a.expires_ms > a.date_time_ms);
        assert!((10..15).contains(&a.category));
        assert!((266..=397).contains(&a.extra.len()), "{}", a.extra.len());

        let Event::Bid(b) = g.event(60) else {
            panic!("event 60 is a bid")
        };
        assert!(b.auction >= 1000 && b.bidder >= 1000);
        assert!((54..=81).contains(&b.extra.len()), "{}", b.extra.len());
        assert!(b.channel.url.starts_with("https://www.nexmark.com/"));
    }

    #[test]
    fn bids_favour_hot_auctions_bidders_and_channels() {
        let mut g = generator(2, 0);
        let mut hot_auction = 0;
        let mut hot_bidder = 0;
        let mut channels: HashMap<String, u32> = HashMap::new();
        let mut bids = 0;
        for n in 0..100_000u64 {
            if let Event::Bid(b) = g.event(n) {
                bids += 1;
                hot_auction += u32::from(b.auction - 1000 == hot_auction_id(n));
                hot_bidder += u32::from(b.bidder - 1000 == hot_bidder_id(n));
                *channels.entry(b.channel.name.clone()).or_default() += 1;
                assert!(b.auction - 1000 <= last_auction_id(n) + 10);
            }
        }
        assert_eq!(bids, 92_000);
        // Half the bids go to the hot auction (plus the random ones that hit it).
        assert!((46_000..52_000).contains(&hot_auction), "{hot_auction}");
        assert!((68_000..72_000).contains(&hot_bidder), "{hot_bidder}");
        let google = channels.get("Google").copied().unwrap_or(0);
        assert!((10_500..12_500).contains(&google), "{google}");
        assert!(channels.len() > 4_000, "{} channels", channels.len());
    }

    proptest! {
        #[test]
        fn disorder_only_moves_times_back_within_the_bound(
            seed in any::<u64>(), disorder_ms in 0u64..5_000, start in 0u64..1_000_000_000,
        ) {
            let mut straight = generator(seed, 0);
            let mut jittered = generator(seed, disorder_ms);
            let mut ts_max = i64::MIN;
            for n in start..start + 200 {
                let nominal = straight.config().nominal_time_ms(n);
                let s = owned(straight.event(n));
                let e = jittered.event(n);
                let ts = e.date_time_ms();
                prop_assert!(ts <= nominal && ts >= nominal - disorder_ms as i64);
                prop_assert!(ts >= ts_max.saturating_sub(disorder_ms as i64));
                ts_max = ts_max.max(ts);
                // Everything but the times is the same as without disorder.
                if let (Event::Bid(b), true) = (e, disorder_ms > 0) {
                    let again = owned(Event::Bid(Bid { date_time_ms: nominal, ..b }));
                    prop_assert_eq!(again, s);
                }
            }
        }
    }
}
