//! Percentiles and medians of latencies, in milliseconds.

use std::time::Duration;

use killswitch_control::model::latency::Histogram;
use serde::{Deserialize, Serialize};

/// The 50th, 90th and 99th percentile and the maximum of some latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The largest: when the last one arrived.
    pub max_ms: f64,
}

impl Quantiles {
    /// Nearest-rank percentiles of `samples` (milliseconds); `None` when there are none.
    #[must_use]
    pub fn of(mut samples: Vec<f64>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Some(Self {
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }

    /// The percentiles of a control replica's commit-to-ack histogram (each within about
    /// 5%, the maximum exact); `None` when it is empty.
    #[must_use]
    pub fn of_histogram(histogram: &Histogram) -> Option<Self> {
        if histogram.count() == 0 {
            return None;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Some(Self {
            p50_ms: ms(histogram.quantile(0.5)),
            p90_ms: ms(histogram.quantile(0.9)),
            p99_ms: ms(histogram.quantile(0.99)),
            max_ms: ms(histogram.max()),
        })
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` when
/// there are none.
#[must_use]
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// Milliseconds from `from_ns` to `to_ns` (Unix nanoseconds); negative when `to_ns` is
/// earlier.
#[must_use]
pub fn ms_between(from_ns: u64, to_ns: u64) -> f64 {
    (to_ns as f64 - from_ns as f64) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let q = Quantiles::of(samples).expect("samples");
        assert_eq!(
            (q.p50_ms, q.p90_ms, q.p99_ms, q.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        let one = Quantiles::of(vec![3.0]).expect("one sample");
        assert_eq!((one.p50_ms, one.max_ms), (3.0, 3.0));
        assert_eq!(Quantiles::of(Vec::new()), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median([]), None);
        assert_eq!(ms_between(1_000_000, 3_500_000), 2.5);
    }

    #[test]
    fn histogram_percentiles() {
        let mut histogram = Histogram::default();
        assert_eq!(Quantiles::of_histogram(&histogram), None);
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        let q = Quantiles::of_histogram(&histogram).expect("counts");
        assert!((q.p50_ms - 50.0).abs() < 3.0, "{q:?}");
        assert_eq!(q.max_ms, 100.0);
    }
}
