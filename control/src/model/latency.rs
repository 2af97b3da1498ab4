//! A sparse log-bucketed histogram of durations, small enough to store per replica and
//! mergeable across replicas. Bucket `i` covers `[1.1^i, 1.1^(i+1))` microseconds, so a
//! quantile read from it is within about 5% of the true value.

use std::collections::BTreeMap;
use std::time::Duration;

use killswitch_proto::v1::store;

const GROWTH: f64 = 1.1;

/// Durations, counted per bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: BTreeMap<u32, u64>,
    max: Duration,
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, duration: Duration) {
        let micros = duration.as_secs_f64() * 1e6;
        let bucket = if micros < 1.0 {
            0
        } else {
            (micros.ln() / GROWTH.ln()).floor() as u32
        };
        let count = self.buckets.entry(bucket).or_default();
        *count = count.saturating_add(1);
        self.max = self.max.max(duration);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Self) {
        for (bucket, count) in &other.buckets {
            let total = self.buckets.entry(*bucket).or_default();
            *total = total.saturating_add(*count);
        }
        self.max = self.max.max(other.max);
    }

    /// How many durations were counted.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.buckets
            .values()
            .fold(0, |total, n| total.saturating_add(*n))
    }

    /// The largest duration counted, exactly.
    #[must_use]
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The `q` quantile (0..=1), as the geometric middle of its bucket, never above the max.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Duration {
        let count = self.count();
        if count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen: u64 = 0;
        for (bucket, n) in &self.buckets {
            seen = seen.saturating_add(*n);
            if seen >= rank {
                let micros = GROWTH.powf(f64::from(*bucket) + 0.5);
                // A bucket index read from another replica can be absurd: never panic on it.
                let middle = Duration::try_from_secs_f64(micros / 1e6).unwrap_or(Duration::MAX);
                return middle.min(self.max);
            }
        }
        self.max
    }

    /// The stored form.
    #[must_use]
    pub fn to_store(&self) -> store::LatencyHistogram {
        store::LatencyHistogram {
            buckets: self.buckets.keys().copied().collect(),
            counts: self.buckets.values().copied().collect(),
            max_us: u64::try_from(self.max.as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// Reads the stored form; mismatched lists are cut to the shorter one.
    #[must_use]
    pub fn from_store(stored: &store::LatencyHistogram) -> Self {
        Self {
            buckets: stored
                .buckets
                .iter()
                .copied()
                .zip(stored.counts.iter().copied())
                .collect(),
            max: Duration::from_micros(stored.max_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_five_percent() {
        let mut histogram = Histogram::default();
        for ms in 1..=1000 {
            histogram.record(Duration::from_millis(ms));
        }
        let p50 = histogram.quantile(0.5).as_secs_f64() * 1000.0;
        assert!((p50 - 500.0).abs() / 500.0 < 0.05, "p50 {p50}");
        assert_eq!(histogram.max(), Duration::from_millis(1000));
        assert_eq!(histogram.count(), 1000);
    }

    #[test]
    fn absurd_stored_histograms_do_not_panic() {
        let huge_bucket = store::LatencyHistogram {
            buckets: vec![u32::MAX],
            counts: vec![3],
            max_us: 5,
        };
        assert_eq!(
            Histogram::from_store(&huge_bucket).quantile(0.5),
            Duration::from_micros(5)
        );
        let huge_counts = store::LatencyHistogram {
            buckets: vec![7, 9],
            counts: vec![u64::MAX, u64::MAX],
            max_us: 5,
        };
        let histogram = Histogram::from_store(&huge_counts);
        assert_eq!(histogram.count(), u64::MAX);
        let mut merged = histogram.clone();
        merged.merge(&histogram);
        assert_eq!(merged.count(), u64::MAX);
        assert!(merged.quantile(1.0) <= Duration::from_micros(5));
    }

    #[test]
    fn merges_and_round_trips() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(Duration::from_millis(2));
        b.record(Duration::from_millis(40));
        b.record(Duration::ZERO);
        a.merge(&b);
        assert_eq!((a.count(), a.max()), (3, Duration::from_millis(40)));
        assert_eq!(Histogram::from_store(&a.to_store()), a);
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }
}
