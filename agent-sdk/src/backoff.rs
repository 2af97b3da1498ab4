//! [`Backoff`]: how long the session task waits before reconnecting.

use std::time::Duration;

/// Reconnection delays: exponential backoff with full jitter, capped.
///
/// Before reconnection attempt `n` (counting from 0) the session task sleeps a uniformly
/// random time in `[0, min(max, initial * 2^n)]`, so a fleet that lost its replica spreads
/// its reconnections instead of arriving all at once. The attempt count goes back to 0
/// when a session ends after staying up (in sync with its replica) for at least
/// `stable_after`: a collector that was connected for a while retries quickly after a
/// disconnect, while one whose replica accepts sessions only to drop them keeps backing
/// off.
///
/// When a replica drains (graceful shutdown), the task waits the delay the replica asked
/// for, capped at `max`, plus a random `[0, initial]`, then moves to the next endpoint.
///
/// Defaults: `initial` 100 ms, `max` 10 s, `stable_after` 10 s.
///
/// ```
/// use std::time::Duration;
/// use killswitch_sdk::Backoff;
///
/// let backoff = Backoff::default()
///     .initial(Duration::from_millis(50))
///     .max(Duration::from_secs(30))
///     .stable_after(Duration::from_secs(60));
/// # let _ = backoff;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            stable_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Sets the ceiling of the first delay (default 100 ms). Must be non-zero and at most
    /// [`max`](Backoff::max), or [`ClientBuilder::start`](crate::ClientBuilder::start) fails.
    #[must_use]
    pub fn initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// Sets the longest delay between two attempts (default 10 s).
    #[must_use]
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Sets how long a session must stay up for the next reconnection to start again
    /// from the shortest delays (default 10 s). A session is up from the moment its
    /// replica sent the first Snapshot.
    #[must_use]
    pub fn stable_after(mut self, stable_after: Duration) -> Self {
        self.stable_after = stable_after;
        self
    }

    /// Whether the delays make sense: a zero `initial` would reconnect in a tight loop.
    pub(crate) fn is_valid(&self) -> bool {
        !self.initial.is_zero() && self.initial <= self.max
    }

    /// The longest delay before attempt `attempt`: `min(max, initial * 2^attempt)`.
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The attempt to count from after a session that ended: 0 if it was up for at least
    /// `stable_after` (`up_for` is `None` when it never came up), `attempt` otherwise.
    pub(crate) fn attempt_after(&self, attempt: u32, up_for: Option<Duration>) -> u32 {
        if up_for.is_some_and(|up_for| up_for >= self.stable_after) {
            0
        } else {
            attempt
        }
    }

    /// The delay before attempt `attempt`: uniform in `[0, ceiling(attempt)]` (full jitter).
    pub(crate) fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.u64(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn defaults() {
        let backoff = Backoff::default();
        assert_eq!(backoff.initial, 100 * MS);
        assert_eq!(backoff.max, 10_000 * MS);
        assert_eq!(backoff.stable_after, 10_000 * MS);
        assert!(backoff.is_valid());
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let backoff = Backoff::default();
        let ceilings: Vec<u128> = (0..9).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        // Huge attempt counts saturate instead of overflowing.
        assert_eq!(backoff.ceiling(64), 10_000 * MS);
        assert_eq!(backoff.ceiling(u32::MAX), 10_000 * MS);
        let huge = Backoff::default().max(Duration::MAX);
        assert_eq!(huge.ceiling(u32::MAX), (100 * MS).saturating_mul(u32::MAX));
    }

    #[test]
    fn delay_stays_within_bounds() {
        let backoff = Backoff::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 0..40 {
            for _ in 0..100 {
                let delay = backoff.delay(attempt, &mut rng);
                assert!(delay <= backoff.ceiling(attempt), "{delay:?} at {attempt}");
            }
        }
        let huge = Backoff::default().max(Duration::MAX);
        assert!(huge.delay(u32::MAX, &mut rng) <= Duration::MAX);
    }

    #[test]
    fn delay_uses_full_jitter() {
        // Full jitter spreads delays over the whole [0, ceiling] range, not just its top.
        let backoff = Backoff::default();
        let mut rng = fastrand::Rng::with_seed(42);
        let delays: Vec<Duration> = (0..1000).map(|_| backoff.delay(20, &mut rng)).collect();
        let (min, max) = (delays.iter().min(), delays.iter().max());
        assert!(min < Some(&Duration::from_secs(1)), "{min:?}");
        assert!(max > Some(&Duration::from_secs(9)), "{max:?}");
    }

    #[test]
    fn stable_sessions_reset_the_attempt_count() {
        let backoff = Backoff::default().stable_after(10_000 * MS);
        let check = |attempt: u32, up_for: Option<Duration>, expected: u32| {
            assert_eq!(
                backoff.attempt_after(attempt, up_for),
                expected,
                "attempt {attempt}, up for {up_for:?}"
            );
        };
        check(5, None, 5);
        check(5, Some(Duration::ZERO), 5);
        check(5, Some(9_999 * MS), 5);
        check(5, Some(10_000 * MS), 0);
        check(5, Some(Duration::MAX), 0);
        check(0, None, 0);
        check(u32::MAX, Some(MS), u32::MAX);
        // With no stable period, any session that came up resets the count.
        let eager = Backoff::default().stable_after(Duration::ZERO);
        assert_eq!(eager.attempt_after(5, Some(Duration::ZERO)), 0);
        assert_eq!(eager.attempt_after(5, None), 5);
    }

    #[test]
    fn flapping_sessions_keep_backing_off() {
        // A replica that drops every session after 1 s: delays keep growing to the cap.
        let backoff = Backoff::default();
        let mut attempt = 0;
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            attempt = backoff.attempt_after(attempt, Some(1_000 * MS));
            ceilings.push(backoff.ceiling(attempt).as_millis());
            attempt += 1;
        }
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        // One that stayed up 10 s resets them.
        attempt = backoff.attempt_after(attempt, Some(10_000 * MS));
        assert_eq!(backoff.ceiling(attempt), 100 * MS);
    }

    #[test]
    fn validity() {
        let check = |initial: Duration, max: Duration, valid: bool| {
            let backoff = Backoff::default().initial(initial).max(max);
            assert_eq!(backoff.is_valid(), valid, "{backoff:?}");
        };
        check(MS, MS, true);
        check(MS, Duration::MAX, true);
        check(Duration::ZERO, MS, false);
        check(2 * MS, MS, false);
    }
}
