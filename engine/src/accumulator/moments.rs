//! Count, mean and sum of squared deviations (M2) of a group's values, for STDDEV_* and VAR_*:
//! Welford's update per value and Chan's parallel merge of partials, both numerically stable
//! (no `sum(x^2) - sum(x)^2` cancellation).

/// The moments of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Moments {
    pub count: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

/// Which statistic an aggregate reads from its [`Moments`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MomentStat {
    StddevPop,
    StddevSamp,
    VarPop,
    VarSamp,
}

impl Moments {
    /// Adds one value (Welford).
    #[inline]
    pub fn add(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Adds the values summarised by `other` (Chan et al.).
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
    }

    /// The statistic, or None when undefined (no values; one value for the sample forms).
    pub fn stat(&self, stat: MomentStat) -> Option<f64> {
        let n = self.count as f64;
        // M2 is a sum of squares: rounding may leave it a hair below zero.
        let m2 = self.m2.max(0.0);
        match stat {
            MomentStat::VarPop if self.count >= 1 => Some(m2 / n),
            MomentStat::VarSamp if self.count >= 2 => Some(m2 / (n - 1.0)),
            MomentStat::StddevPop if self.count >= 1 => Some((m2 / n).sqrt()),
            MomentStat::StddevSamp if self.count >= 2 => Some((m2 / (n - 1.0)).sqrt()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_var(xs: &[f64], sample: bool) -> f64 {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
        ss / if sample { n - 1.0 } else { n }
    }

    #[test]
    fn known_values_and_undefined_cases() {
        let mut m = Moments::default();
        assert_eq!(m.stat(MomentStat::VarPop), None);
        m.add(4.0);
        assert_eq!(m.stat(MomentStat::VarPop), Some(0.0));
        assert_eq!(m.stat(MomentStat::VarSamp), None);
        assert_eq!(m.stat(MomentStat::StddevSamp), None);
        for x in [2.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            m.add(x);
        }
        // 4,2,4,4,5,5,7,9: mean 5, squared deviations 1+9+1+1+0+0+4+16 = 32
        assert!((m.stat(MomentStat::VarPop).unwrap_or(f64::NAN) - 4.0).abs() < 1e-12);
        assert!((m.stat(MomentStat::StddevPop).unwrap_or(f64::NAN) - 2.0).abs() < 1e-12);
        assert!((m.stat(MomentStat::VarSamp).unwrap_or(f64::NAN) - 32.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn large_offset_stays_accurate() {
        // The naive sum-of-squares formula loses every digit here.
        let mut m = Moments::default();
        for x in [1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0] {
            m.add(x);
        }
        assert!((m.stat(MomentStat::VarSamp).unwrap_or(f64::NAN) - 30.0).abs() < 1e-6);
    }

    proptest! {
        #[test]
        fn merge_of_any_split_equals_the_whole(
            xs in proptest::collection::vec(-1e6f64..1e6, 1..200),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mut whole = Moments::default();
            xs.iter().for_each(|&x| whole.add(x));
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(xs.len() + 1)).collect();
            bounds.push(0);
            bounds.push(xs.len());
            bounds.sort_unstable();
            let mut merged = Moments::default();
            for w in bounds.windows(2) {
                let mut part = Moments::default();
                xs[w[0]..w[1]].iter().for_each(|&x| part.add(x));
                merged.merge(&part);
            }
            prop_assert_eq!(merged.count, whole.count);
            let scale = 1.0 + whole.m2.abs();
            prop_assert!((merged.m2 - whole.m2).abs() / scale < 1e-9, "{} vs {}", merged.m2, whole.m2);
            prop_assert!((merged.mean - whole.mean).abs() < 1e-6);
            let expect = naive_var(&xs, false);
            let got = merged.stat(MomentStat::VarPop).unwrap_or(f64::NAN);
            prop_assert!((got - expect).abs() / (1.0 + expect) < 1e-9, "{} vs {}", got, expect);
        }
    }
}
