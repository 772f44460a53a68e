//! A log-linear latency histogram in the HdrHistogram layout: exact below 256 ns,
//! then 128 linear sub-buckets per power of two (under 0.8% relative error), up to
//! `u64::MAX` nanoseconds in 7,424 counters (58 KiB). Recording is an index
//! computation and an increment. It does not read clocks; callers pass durations.

use serde::Serialize;

/// log2 of the number of sub-buckets per power of two above the exact range.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this are counted exactly, one counter each.
const EXACT: u64 = 2 * SUB;
const BUCKETS: usize = (EXACT + (63 - SUB_BITS as u64) * SUB) as usize;

/// Counts of nanosecond values.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    min: u64,
    max: u64,
}

/// The summary every report prints, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

fn index_of(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    // `value` lies in [2^k, 2^(k+1)) with k >= SUB_BITS + 1; keep its top SUB_BITS + 1 bits.
    let k = 63 - value.leading_zeros();
    let shift = k - SUB_BITS;
    let sub = (value >> shift) - SUB;
    (EXACT + u64::from(k - SUB_BITS - 1) * SUB + sub) as usize
}

/// The highest value that lands in bucket `index`.
fn highest_in(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT {
        return index;
    }
    let k = (index - EXACT) / SUB + u64::from(SUB_BITS) + 1;
    let sub = (index - EXACT) % SUB;
    let shift = k - u64::from(SUB_BITS);
    let lowest = (SUB + sub) << shift;
    lowest + ((1u64 << shift) - 1)
}

impl Histogram {
    pub fn record(&mut self, nanos: u64) {
        self.counts[index_of(nanos)] += 1;
        self.total += 1;
        self.min = self.min.min(nanos);
        self.max = self.max.max(nanos);
    }

    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.total
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    #[cfg(test)]
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0.0..=1.0): the smallest recorded value that at least
    /// `ceil(q * samples)` samples (and at least one) are at or below, reported as its
    /// bucket's highest value and clamped to the recorded range. `None` when empty.
    pub fn value_at(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(highest_in(index).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn percentiles(&self) -> Option<Percentiles> {
        let us = |q: f64| self.value_at(q).unwrap_or(0) as f64 / 1000.0;
        (self.total > 0).then(|| Percentiles {
            samples: self.total,
            p50_us: us(0.50),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: self.max as f64 / 1000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_range_contains_it() {
        let mut probes: Vec<u64> = (0..2000).collect();
        for shift in 0..64 {
            let p = 1u64 << shift;
            probes.extend([p - 1, p, p + 1, p.saturating_mul(3) / 2]);
        }
        probes.push(u64::MAX);
        for v in probes {
            let i = index_of(v);
            assert!(i < BUCKETS, "{v} -> {i}");
            assert!(
                highest_in(i) >= v,
                "{v} above its bucket's top {}",
                highest_in(i)
            );
            if i > 0 {
                assert!(highest_in(i - 1) < v, "{v} belongs in an earlier bucket");
            }
        }
        assert_eq!(index_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn relative_error_is_under_one_percent() {
        let mut v = 1u64;
        while v < u64::MAX / 3 {
            let top = highest_in(index_of(v));
            assert!(
                (top - v) as f64 <= v as f64 / 128.0,
                "{v} reported as {top}"
            );
            v = v * 3 / 2 + 1;
        }
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_are_exact_in_the_linear_range() {
        let mut h = Histogram::default();
        for v in (1..=100).rev() {
            h.record(v);
        }
        assert_eq!(h.value_at(0.5), Some(50));
        assert_eq!(h.value_at(0.99), Some(99));
        assert_eq!(h.value_at(0.999), Some(100));
        assert_eq!(h.value_at(1.0), Some(100));
        assert_eq!(h.value_at(0.0), Some(1));
        assert_eq!(h.value_at(0.011), Some(2));
    }

    #[test]
    fn one_slow_sample_in_a_thousand_shows_at_p999_not_p99() {
        let mut h = Histogram::default();
        for _ in 0..999 {
            h.record(20_000);
        }
        h.record(5_000_000);
        let p = h.percentiles().unwrap();
        assert!((p.p50_us - 20.0).abs() / 20.0 < 0.01, "{p:?}");
        assert!((p.p99_us - 20.0).abs() / 20.0 < 0.01, "{p:?}");
        assert!((p.p999_us - 20.0).abs() / 20.0 < 0.01, "{p:?}");
        assert_eq!(p.max_us, 5000.0);
        h.record(5_000_000);
        assert!(h.percentiles().unwrap().p999_us > 4900.0);
    }

    #[test]
    fn reported_values_never_leave_the_recorded_range() {
        let mut h = Histogram::default();
        h.record(1_000_001);
        assert_eq!(h.value_at(0.5), Some(1_000_001));
        assert_eq!(h.value_at(1.0), Some(1_000_001));
    }

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        (0..50).for_each(|v| a.record(v));
        (50..100).for_each(|v| b.record(v));
        a.merge(&b);
        assert_eq!(a.len(), 100);
        assert_eq!(a.value_at(0.5), Some(49));
        assert_eq!(a.max(), Some(99));
        assert_eq!(a.value_at(0.0), Some(0));
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let h = Histogram::default();
        assert!(h.is_empty());
        assert_eq!(h.value_at(0.5), None);
        assert_eq!(h.percentiles(), None);
        let mut merged = Histogram::default();
        merged.merge(&h);
        assert_eq!(merged.max(), None);
    }
}
