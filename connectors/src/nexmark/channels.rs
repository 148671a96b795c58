//! The channels a bid comes through, with their URLs: four hot channels (`Google`,
//! `Facebook`, `Baidu`, `Apple`) and [`CHANNELS`] others named `channel-<i>`, as in the
//! reference generator. The table does not depend on the stream's seed; it is built once
//! per process.

use std::sync::OnceLock;

use super::rng::EventRng;

/// Channels besides the hot ones.
pub const CHANNELS: usize = 10_000;
/// The hot channels.
pub const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
/// Salt of the random sequences of the channel table (fixed: the table is the same for
/// every stream).
const CHANNEL_SALT: u64 = 0x6368_616e_6e65_6c73;
/// Shortest and longest (exclusive) URL path segment.
const SEGMENT_LETTERS_MIN: u64 = 3;
const SEGMENT_LETTERS_END: u64 = 5;
/// One in this many characters of a URL path segment is an underscore.
const SEGMENT_UNDERSCORE_ONE_IN: u64 = 13;
/// Nine in ten channels carry their number in the URL.
const CHANNEL_ID_IN_URL_ONE_IN: u64 = 10;

/// One channel and its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The channel's place in the table: the hot ones first, then `channel-0`, ....
    pub number: u32,
    pub name: String,
    pub url: String,
    /// `,"channel":"<name>","url":"<url>"`: both fields as the bid's JSON has them, so a
    /// bid copies them at once.
    pub json_fields: Vec<u8>,
}

impl Channel {
    /// Channel `number` named `name` with `url` (neither may hold a character JSON
    /// escapes).
    pub fn new(number: u32, name: String, url: String) -> Self {
        let json_fields = format!(",\"channel\":\"{name}\",\"url\":\"{url}\"").into_bytes();
        Channel {
            number,
            name,
            url,
            json_fields,
        }
    }
}

/// The hot channels and the others.
#[derive(Debug)]
pub struct ChannelTable {
    pub hot: Vec<Channel>,
    pub other: Vec<Channel>,
}

/// The process-wide channel table.
pub fn channel_table() -> &'static ChannelTable {
    static TABLE: OnceLock<ChannelTable> = OnceLock::new();
    TABLE.get_or_init(build_table)
}

/// `https://www.nexmark.com/<a>/<b>/<c>/item.htm?query=1` with three short random path
/// segments drawn from `rng`.
fn base_url(rng: &mut EventRng) -> String {
    let mut url = String::from("https://www.nexmark.com");
    for _ in 0..3 {
        url.push('/');
        let len = SEGMENT_LETTERS_MIN + rng.below(SEGMENT_LETTERS_END - SEGMENT_LETTERS_MIN);
        for _ in 0..len {
            if rng.below(SEGMENT_UNDERSCORE_ONE_IN) == 0 {
                url.push('_');
            } else {
                url.push((b'a' + rng.below(26) as u8) as char);
            }
        }
    }
    url.push_str("/item.htm?query=1");
    url
}

fn build_table() -> ChannelTable {
    let hot = HOT_CHANNELS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let url = base_url(&mut EventRng::new(0, CHANNEL_SALT, i as u64));
            Channel::new(i as u32, (*name).to_string(), url)
        })
        .collect();
    let other = (0..CHANNELS)
        .map(|i| {
            let mut rng = EventRng::new(1, CHANNEL_SALT, i as u64);
            let mut url = base_url(&mut rng);
            if rng.below(CHANNEL_ID_IN_URL_ONE_IN) > 0 {
                // The reference's channel id: the bits of i reversed, as a positive number.
                let id = i64::from((i as i32).reverse_bits()).abs();
                url.push_str("&channel_id=");
                url.push_str(&id.to_string());
            }
            Channel::new((HOT_CHANNELS.len() + i) as u32, format!("channel-{i}"), url)
        })
        .collect();
    ChannelTable { hot, other }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_fixed_and_json_safe() {
        let t = channel_table();
        assert_eq!(t.hot.len(), HOT_CHANNELS.len());
        assert_eq!(t.other.len(), CHANNELS);
        assert_eq!(t.other[17].name, "channel-17");
        let numbers: Vec<u32> = t.hot.iter().chain(&t.other).map(|c| c.number).collect();
        assert_eq!(
            numbers,
            (0..(CHANNELS + HOT_CHANNELS.len()) as u32).collect::<Vec<_>>()
        );
        assert_eq!(build_table().other, t.other, "the same table every time");
        let with_id = t
            .other
            .iter()
            .filter(|c| c.url.contains("&channel_id="))
            .count();
        assert!((8_700..9_300).contains(&with_id), "{with_id} of 10000");
        for c in t.hot.iter().chain(&t.other) {
            assert!(c.url.starts_with("https://www.nexmark.com/"), "{}", c.url);
            // No character that JSON would need to escape.
            assert!(
                c.url
                    .bytes()
                    .chain(c.name.bytes())
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'),
                "{c:?}"
            );
        }
    }
}
