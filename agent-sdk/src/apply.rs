//! What applying a program state means, as pure decisions: no IO, no clock, no hooks.
//!
//! The session task converts each received `ProgramState` into an [`Incoming`], asks
//! [`step`] what to do given the generation it applied last, runs the hook the answer
//! names, then asks [`Change::settle`] where the gate ends up and what to acknowledge.
//! Keeping these rules here lets the tests below cover every case without a server.

use killswitch_proto::v1::{ProgramState, RunState};

use crate::event::StateEvent;

/// The state the control plane wants for a program, folded to the two that matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Desired {
    /// The program may collect.
    Running,
    /// The program must not collect.
    Paused,
}

impl Desired {
    /// Reads the wire value. RUNNING is the only value that allows collecting: UNSPECIFIED
    /// and values this SDK does not know mean paused (pause always wins).
    pub(crate) fn from_wire(state: i32) -> Self {
        match RunState::try_from(state) {
            Ok(RunState::Running) => Self::Running,
            Ok(RunState::Paused | RunState::Unspecified) | Err(_) => Self::Paused,
        }
    }
}

/// A program state received from the control plane, converted at the gRPC edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Incoming {
    /// What the control plane wants.
    pub(crate) desired: Desired,
    /// The change, as the hooks will see it.
    pub(crate) event: StateEvent,
}

impl From<ProgramState> for Incoming {
    fn from(state: ProgramState) -> Self {
        let ProgramState {
            program,
            state,
            generation,
            reason,
            incident_id,
            actor,
            changed_at: _,
            purge,
        } = state;
        Self {
            desired: Desired::from_wire(state),
            event: StateEvent {
                program,
                generation,
                reason,
                incident_id,
                actor,
                purge,
            },
        }
    }
}

/// What to do with an incoming state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Older than what was applied: ignore it and send nothing (never go back in time).
    Stale,
    /// Already applied: run no hook, but acknowledge again with the current effective
    /// state, so a replica the collector just reconnected to can count it.
    Reack,
    /// A newer state: change the gate.
    Change(Change),
}

/// A state change to carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Close the gate first, then run the pause hook.
    Pause,
    /// Run the resume hook, then open the gate if the hook succeeded.
    Resume,
}

/// Decides what to do with a state of `generation`, when `applied` is the generation
/// applied last for the program (`None` before any).
pub(crate) fn step(applied: Option<u64>, generation: u64, desired: Desired) -> Step {
    match applied {
        Some(applied) if generation < applied => Step::Stale,
        Some(applied) if generation == applied => Step::Reack,
        _ => Step::Change(match desired {
            Desired::Running => Change::Resume,
            Desired::Paused => Change::Pause,
        }),
    }
}

/// Where a change leaves the gate, once its hook returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Whether the gate is open; this is also the effective state to acknowledge.
    pub(crate) open: bool,
    /// The hook's error, empty when it succeeded.
    pub(crate) error: String,
}

impl Change {
    /// Which hook the change runs, for logs and error messages.
    pub(crate) fn hook_name(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }

    /// Where the gate ends up given the hook's outcome: a pause always leaves it closed;
    /// a resume opens it only if the hook succeeded (a failed hook must not let the
    /// collector capture).
    pub(crate) fn settle(self, hook: Result<(), String>) -> Settled {
        let open = self == Self::Resume && hook.is_ok();
        Settled {
            open,
            error: hook.err().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Change, Desired, Incoming, Step, step};
    use killswitch_proto::v1::{ProgramState, RunState};

    const RUNNING: i32 = RunState::Running as i32;
    const PAUSED: i32 = RunState::Paused as i32;
    const UNSPECIFIED: i32 = RunState::Unspecified as i32;

    /// Applies a state of `generation` and wire `state` over `applied`, with the hook
    /// returning `hook`, and compares a one-line summary of the result with `expected`.
    fn check(
        applied: Option<u64>,
        generation: u64,
        state: i32,
        hook: Result<(), &str>,
        expected: &str,
    ) {
        let actual = match step(applied, generation, Desired::from_wire(state)) {
            Step::Stale => "ignore".to_owned(),
            Step::Reack => "re-ack".to_owned(),
            Step::Change(change) => {
                let settled = change.settle(hook.map_err(str::to_owned));
                let gate = if settled.open { "open" } else { "closed" };
                let mut summary = format!("{change:?}: gate {gate}");
                if !settled.error.is_empty() {
                    summary.push_str(&format!(", error {:?}", settled.error));
                }
                summary
            }
        };
        assert_eq!(
            actual, expected,
            "applied {applied:?}, incoming generation {generation} state {state}, hook {hook:?}"
        );
    }

    #[test]
    fn first_state_is_always_applied() {
        check(None, 1, RUNNING, Ok(()), "Resume: gate open");
        check(None, 1, PAUSED, Ok(()), "Pause: gate closed");
        check(None, 0, RUNNING, Ok(()), "Resume: gate open");
        check(None, 0, PAUSED, Ok(()), "Pause: gate closed");
    }

    #[test]
    fn pause_always_wins() {
        check(None, 3, UNSPECIFIED, Ok(()), "Pause: gate closed");
        check(Some(2), 3, UNSPECIFIED, Ok(()), "Pause: gate closed");
        check(None, 3, 3, Ok(()), "Pause: gate closed");
        check(None, 3, -1, Ok(()), "Pause: gate closed");
        check(None, 3, i32::MAX, Ok(()), "Pause: gate closed");
    }

    #[test]
    fn never_goes_back_in_time() {
        check(Some(5), 4, RUNNING, Ok(()), "ignore");
        check(Some(5), 4, PAUSED, Ok(()), "ignore");
        check(Some(5), 0, PAUSED, Ok(()), "ignore");
        check(Some(u64::MAX), u64::MAX - 1, RUNNING, Ok(()), "ignore");
    }

    #[test]
    fn same_generation_is_acknowledged_again() {
        check(Some(5), 5, RUNNING, Ok(()), "re-ack");
        check(Some(5), 5, PAUSED, Ok(()), "re-ack");
        check(Some(0), 0, RUNNING, Ok(()), "re-ack");
        check(Some(u64::MAX), u64::MAX, PAUSED, Ok(()), "re-ack");
    }

    #[test]
    fn newer_generation_changes_the_gate() {
        check(Some(5), 6, RUNNING, Ok(()), "Resume: gate open");
        check(Some(5), 6, PAUSED, Ok(()), "Pause: gate closed");
        check(Some(5), u64::MAX, PAUSED, Ok(()), "Pause: gate closed");
    }

    #[test]
    fn failed_hooks_keep_the_gate_closed() {
        check(
            Some(5),
            6,
            RUNNING,
            Err("camera busy"),
            r#"Resume: gate closed, error "camera busy""#,
        );
        check(
            Some(5),
            6,
            PAUSED,
            Err("pause hook panicked"),
            r#"Pause: gate closed, error "pause hook panicked""#,
        );
        check(
            None,
            1,
            PAUSED,
            Err("disk full"),
            r#"Pause: gate closed, error "disk full""#,
        );
    }

    #[test]
    fn hook_names() {
        assert_eq!(Change::Pause.hook_name(), "pause");
        assert_eq!(Change::Resume.hook_name(), "resume");
    }

    #[test]
    fn converts_wire_state() {
        let incoming = Incoming::from(ProgramState {
            program: "keys".into(),
            state: RUNNING,
            generation: 12,
            reason: "fixed".into(),
            incident_id: "INC-7".into(),
            actor: "alice".into(),
            changed_at: None,
            purge: true,
        });
        assert_eq!(incoming.desired, Desired::Running);
        let event = incoming.event;
        assert_eq!(
            (event.program.as_str(), event.generation, event.purge),
            ("keys", 12, true)
        );
        assert_eq!(
            (
                event.reason.as_str(),
                event.incident_id.as_str(),
                event.actor.as_str()
            ),
            ("fixed", "INC-7", "alice")
        );
    }
}
