//! Per-group state that does not fit a [`Slot`](super::Slot)'s two words, kept in a
//! per-window side table (`GroupTable::strings`, `PartialWindow::strings`): a slot of such an
//! aggregate holds `b = 1` and `a` = the index of its [`SideValue`] once the group has a
//! value, and `b = 0` before.

use super::distinct_set::DistinctSet;
use super::first_last::Timed;
use super::hyperloglog::{HyperLogLog, HLL_REGISTERS};
use super::moments::Moments;
use super::top_n::TopNState;

/// One group's side state of one aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum SideValue {
    /// MIN / MAX over strings: the current value.
    Text(Box<[u8]>),
    /// FIRST_VALUE / LAST_VALUE.
    Timed(Timed),
    /// COUNT(DISTINCT x).
    Distinct(DistinctSet),
    /// APPROX_COUNT_DISTINCT.
    Sketch(HyperLogLog),
    /// STDDEV_* / VAR_*.
    Moments(Moments),
    /// A per-window top-N: best rows or inner groups.
    TopN(Box<TopNState>),
}

/// Side state of one window's groups (strings of MIN/MAX and every [`SideValue`]), indexed
/// by the slots that refer to it.
pub type StringStore = Vec<SideValue>;

/// Bytes a side value takes besides its heap data (the enum in the store).
pub const SIDE_VALUE_BYTES: usize = std::mem::size_of::<SideValue>();

impl SideValue {
    /// Approximate bytes held, for the state limit.
    pub fn bytes(&self) -> usize {
        SIDE_VALUE_BYTES
            + match self {
                SideValue::Text(t) => t.len(),
                SideValue::Timed(t) => t.text.len(),
                SideValue::Distinct(d) => d.bytes(),
                SideValue::Sketch(_) => HLL_REGISTERS,
                SideValue::Moments(_) => 0,
                SideValue::TopN(t) => t.bytes(),
            }
    }

    /// The string of MIN/MAX over strings.
    pub fn as_text(&self) -> Option<&[u8]> {
        match self {
            SideValue::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl From<&[u8]> for SideValue {
    fn from(v: &[u8]) -> Self {
        SideValue::Text(v.into())
    }
}

impl From<Box<[u8]>> for SideValue {
    fn from(v: Box<[u8]>) -> Self {
        SideValue::Text(v)
    }
}
