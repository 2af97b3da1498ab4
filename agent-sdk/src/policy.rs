//! A program's failure policy and the watchdog's rule, as pure decisions: no IO, no hooks.
//!
//! The control plane sends each program's `FailurePolicy` with its state. The session
//! task keeps the policy of the state it applied last and, while it waits for anything,
//! asks [`Policy::deadline`] when the program would lose contact and
//! [`Policy::lost_contact`] whether it has.

use std::time::Duration;

use killswitch_proto::v1::{FailurePolicy, LostContact};
use tokio::time::Instant;

/// The grace period used when the control plane sends 0 (or no policy at all).
pub(crate) const DEFAULT_GRACE: Duration = killswitch_proto::contract::DEFAULT_GRACE;

/// What a collector does when it has not heard from the control plane for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnLostContact {
    /// Fail closed: close the gate after the grace period.
    Pause,
    /// Fail open: keep the last authoritative state. Only for programs whose owner chose it.
    Keep,
}

/// A program's failure policy, converted at the gRPC edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// What to do without contact.
    pub(crate) on_lost_contact: OnLostContact,
    /// How long a fail-closed program may go without a heartbeat or update.
    pub(crate) grace: Duration,
}

impl Default for Policy {
    /// Fail closed after [`DEFAULT_GRACE`]: what a missing or unknown policy means.
    fn default() -> Self {
        Self::new(OnLostContact::Pause, 0)
    }
}

impl Policy {
    /// A policy with a grace of `grace_ms` milliseconds, 0 meaning [`DEFAULT_GRACE`].
    pub(crate) fn new(on_lost_contact: OnLostContact, grace_ms: u64) -> Self {
        let grace = match grace_ms {
            0 => DEFAULT_GRACE,
            ms => Duration::from_millis(ms),
        };
        Self {
            on_lost_contact,
            grace,
        }
    }

    /// Reads the wire value. KEEP is the only value that keeps collecting without contact:
    /// UNSPECIFIED, values this SDK does not know and a missing policy mean PAUSE (pause
    /// always wins).
    pub(crate) fn from_wire(policy: Option<FailurePolicy>) -> Self {
        let Some(FailurePolicy {
            on_lost_contact,
            grace_ms,
        }) = policy
        else {
            return Self::default();
        };
        let on_lost_contact = match LostContact::try_from(on_lost_contact) {
            Ok(LostContact::Keep) => OnLostContact::Keep,
            Ok(LostContact::Pause | LostContact::Unspecified) | Err(_) => OnLostContact::Pause,
        };
        Self::new(on_lost_contact, grace_ms)
    }

    /// The grace in whole milliseconds, as the state file stores it.
    pub(crate) fn grace_ms(&self) -> u64 {
        u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX)
    }

    /// The watchdog's rule: whether a program under this policy, last heard from at
    /// `last_contact`, has lost contact at `now`. A fail-closed program has once its
    /// grace elapsed without contact; a fail-open one never has.
    pub(crate) fn lost_contact(&self, last_contact: Instant, now: Instant) -> bool {
        match self.on_lost_contact {
            OnLostContact::Keep => false,
            OnLostContact::Pause => now.saturating_duration_since(last_contact) >= self.grace,
        }
    }

    /// When the program loses contact if nothing arrives after `last_contact`: the first
    /// instant at which [`lost_contact`](Policy::lost_contact) holds. `None` for a
    /// fail-open program, or a grace so long that the instant cannot be represented.
    pub(crate) fn deadline(&self, last_contact: Instant) -> Option<Instant> {
        match self.on_lost_contact {
            OnLostContact::Keep => None,
            OnLostContact::Pause => last_contact.checked_add(self.grace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DEFAULT_GRACE, OnLostContact, Policy};
    use killswitch_proto::v1::{FailurePolicy, LostContact};
    use std::time::Duration;
    use tokio::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    /// Applies the watchdog's rule to a program under `policy` that was last heard from
    /// `silent` ago, and checks it against `lost` and against [`Policy::deadline`].
    fn check(policy: Policy, silent: Duration, lost: bool) {
        let last_contact = Instant::now();
        let now = last_contact + silent;
        assert_eq!(
            policy.lost_contact(last_contact, now),
            lost,
            "{policy:?}, silent for {silent:?}"
        );
        let by_deadline = policy.deadline(last_contact).is_some_and(|at| now >= at);
        assert_eq!(by_deadline, lost, "deadline of {policy:?}");
    }

    #[test]
    fn watchdog_rule() {
        let pause = |ms| Policy::new(OnLostContact::Pause, ms);
        let keep = |ms| Policy::new(OnLostContact::Keep, ms);
        check(pause(5_000), Duration::ZERO, false);
        check(pause(5_000), 4_999 * MS, false);
        check(pause(5_000), 5_000 * MS, true);
        check(pause(5_000), 5_001 * MS, true);
        check(pause(5_000), Duration::from_secs(3600), true);
        check(pause(1), Duration::ZERO, false);
        check(pause(1), MS, true);
        // 0 means the default grace, not "immediately".
        check(pause(0), Duration::ZERO, false);
        check(pause(0), DEFAULT_GRACE - MS, false);
        check(pause(0), DEFAULT_GRACE, true);
        check(Policy::default(), DEFAULT_GRACE, true);
        // Fail-open programs never lose contact.
        check(keep(5_000), Duration::ZERO, false);
        check(keep(5_000), Duration::from_secs(3600), false);
        check(keep(0), Duration::from_secs(86_400 * 365), false);
    }

    #[test]
    fn huge_grace_never_fires_nor_overflows() {
        let policy = Policy::new(OnLostContact::Pause, u64::MAX);
        let now = Instant::now();
        let year = Duration::from_secs(86_400 * 365);
        assert!(policy.deadline(now).is_none_or(|at| at > now + year));
        assert!(!policy.lost_contact(now, now + year));
        assert_eq!(policy.grace_ms(), u64::MAX);
    }

    #[test]
    fn converts_wire_policy() {
        let check = |policy: Option<FailurePolicy>, on_lost_contact, grace: Duration| {
            let expected = Policy {
                on_lost_contact,
                grace,
            };
            assert_eq!(Policy::from_wire(policy), expected, "{policy:?}");
        };
        let wire = |on_lost_contact: i32, grace_ms| {
            Some(FailurePolicy {
                on_lost_contact,
                grace_ms,
            })
        };
        let (pause, keep) = (OnLostContact::Pause, OnLostContact::Keep);
        check(None, pause, DEFAULT_GRACE);
        check(
            wire(LostContact::Unspecified.into(), 0),
            pause,
            DEFAULT_GRACE,
        );
        check(wire(LostContact::Pause.into(), 1_500), pause, 1_500 * MS);
        check(wire(LostContact::Keep.into(), 0), keep, DEFAULT_GRACE);
        check(wire(LostContact::Keep.into(), 10), keep, 10 * MS);
        check(wire(3, 10), pause, 10 * MS);
        check(wire(-1, 10), pause, 10 * MS);
    }
}
