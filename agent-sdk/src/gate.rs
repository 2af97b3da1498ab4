//! [`Gate`]: the per-program switch a collector checks before capturing each event.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// The gate may not be passed: the collector must not capture.
const CLOSED: u8 = 0;
/// The gate may be passed: the collector may capture.
const OPEN: u8 = 1;

/// Whether a collector may capture data for one program right now.
///
/// Get one with [`Client::gate`](crate::Client::gate) and check [`is_active`](Gate::is_active)
/// before capturing each event. Clones share the same switch, so a gate can be handed to
/// every capture thread.
///
/// # Invariant
///
/// A gate is open only while the latest authoritative state the control plane sent for its
/// program is RUNNING *and* the resume hook for that state succeeded. In particular:
///
/// - it starts closed (default deny) and stays closed until such a RUNNING arrives (or,
///   for a fail-open program, the [state file](crate::ClientBuilder::state_file) says
///   RUNNING and the resume hook succeeded);
/// - it closes *before* the pause hook runs, so capture stops even if the hook is slow;
/// - it stays closed when a resume hook fails, panics or times out;
/// - for a fail-closed program, it closes when nothing came from the control plane
///   within the program's grace period, and reopens only when the control plane, heard
///   again, says RUNNING;
/// - it closes for good when its [`Client`](crate::Client) shuts down or is dropped.
///
/// [`is_active`](Gate::is_active) is one atomic load and nothing else: it never locks,
/// allocates, reads a clock, makes a syscall or awaits, so checking it per event is free.
#[derive(Clone)]
pub struct Gate(Arc<AtomicU8>);

impl Gate {
    /// A new gate, closed.
    pub(crate) fn closed() -> Self {
        Self(Arc::new(AtomicU8::new(CLOSED)))
    }

    /// Whether the collector may capture now: one atomic load.
    ///
    /// The load is `Acquire` and the session task opens the gate with a `Release` store
    /// after the resume hook returned, so a capture thread that sees `true` also sees
    /// everything the resume hook did (reopened files, reset buffers).
    ///
    /// ```
    /// # fn capture(gate: &killswitch_sdk::Gate) {
    /// if gate.is_active() {
    ///     // capture and buffer one event
    /// }
    /// # }
    /// ```
    #[inline]
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.0.load(Ordering::Acquire) == OPEN
    }

    /// Lets the collector capture. Only the session task calls this, after a RUNNING state
    /// was applied and its resume hook succeeded.
    pub(crate) fn open(&self) {
        self.0.store(OPEN, Ordering::Release);
    }

    /// Stops the collector from capturing.
    pub(crate) fn close(&self) {
        self.0.store(CLOSED, Ordering::Release);
    }
}

/// Helpers for the benchmarks in `benches/`, which must flip a gate without a control
/// plane. Only with the `bench` feature, which no collector should enable.
#[cfg(feature = "bench")]
impl Gate {
    /// A new gate, closed, not tied to any client.
    #[doc(hidden)]
    #[must_use]
    pub fn new_closed() -> Self {
        Self::closed()
    }

    /// Opens or closes the gate as the session task would.
    #[doc(hidden)]
    pub fn set_for_bench(&self, open: bool) {
        if open {
            self.open();
        } else {
            self.close();
        }
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("active", &self.is_active())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Gate;

    #[test]
    fn starts_closed() {
        assert!(!Gate::closed().is_active());
    }

    #[test]
    fn clones_share_one_switch() {
        let gate = Gate::closed();
        let clone = gate.clone();
        gate.open();
        assert!(clone.is_active());
        clone.close();
        assert!(!gate.is_active());
    }

    #[test]
    fn debug_shows_state() {
        let gate = Gate::closed();
        assert_eq!(format!("{gate:?}"), "Gate { active: false }");
        gate.open();
        assert_eq!(format!("{gate:?}"), "Gate { active: true }");
    }
}
