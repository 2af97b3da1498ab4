//! What applying a program state means, as pure decisions: no IO, no clock, no hooks.
//!
//! The session task converts each received `ProgramState` into an [`Incoming`], asks
//! [`decide`] what to do given what it applied last (the order of generations, [`step`],
//! then the signed-resume rule), runs the hook the answer names, then asks
//! [`Change::settle`] where the gate ends up and what to acknowledge. Keeping these
//! rules here lets the tests below cover every case without a server.

use std::time::SystemTime;

use killswitch_proto::prost::Message;
use killswitch_proto::prost_types::Timestamp;
use killswitch_proto::v1::{ProgramState, ResumeAuthorization, ResumeStatement, RunState};

use crate::event::{Cause, StateEvent};
use crate::policy::Policy;
use crate::signing::{self, Trust};

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
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    /// What the control plane wants.
    pub(crate) desired: Desired,
    /// What to do without contact.
    pub(crate) policy: Policy,
    /// The change, as the hooks will see it (with [`Cause::Update`] until [`decide`] says
    /// otherwise).
    pub(crate) event: StateEvent,
    /// The signed resume carried with a RUNNING state, if any.
    pub(crate) authorization: Option<ResumeAuthorization>,
    /// The selector of the rule that decided the state, empty for a whole-program change:
    /// copied into the receipt.
    pub(crate) scope: String,
    /// When the state was committed: copied into the receipt.
    pub(crate) committed_at: Option<Timestamp>,
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
            changed_at,
            purge,
            policy,
            authorization,
            // The control plane sends each collector its own effective state: rules,
            // staged resumes and the stop-all are already applied to `state`.
            rules: _,
            rollout: _,
            scope,
            stop_all: _,
        } = state;
        let mut event = StateEvent::new(program, generation, Cause::Update);
        event.reason = reason;
        event.incident_id = incident_id;
        event.actor = actor;
        event.purge = purge;
        Self {
            desired: Desired::from_wire(state),
            policy: Policy::from_wire(policy),
            event,
            authorization,
            scope,
            committed_at: changed_at,
        }
    }
}

/// What was applied last for a program, as far as deciding the next step goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Last {
    /// The generation applied.
    pub(crate) generation: u64,
    /// The control plane said RUNNING at that generation.
    pub(crate) running: bool,
    /// The program is paused for lost contact (by the watchdog, or by a restart): its
    /// gate reopens only on a fresh authoritative RUNNING.
    pub(crate) lost_contact: bool,
}

/// What to do with an incoming state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Older than what was applied: ignore it and send nothing (never go back in time).
    Stale,
    /// Already applied: run no hook, but acknowledge again with the current effective
    /// state, so a replica the collector just reconnected to can count it. A program
    /// paused for lost contact whose state is PAUSED is simply no longer lost.
    Reack,
    /// Change the gate, running the hook for this cause.
    Change(Change, Cause),
}

/// A state change to carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Close the gate first, then run the pause hook.
    Pause,
    /// Run the resume hook, then open the gate if the hook succeeded.
    Resume,
}

/// Decides what to do with a state of `generation`, given what was applied last for the
/// program (`None` before anything).
///
/// A newer state is always applied. The same generation is re-acknowledged, except that a
/// program paused for lost contact resumes when that generation is RUNNING: contact is
/// back and the control plane still says RUNNING.
///
/// An older state is ignored (never go back in time), except a PAUSED over a RUNNING:
/// pause always wins, whatever its generation. Only a RUNNING must move forward, so a
/// RUNNING at an absurd generation (from an impostor) cannot make later pauses stale.
pub(crate) fn step(last: Option<Last>, generation: u64, desired: Desired) -> Step {
    let lost_contact = last.is_some_and(|last| last.lost_contact);
    let resume_cause = if lost_contact {
        Cause::ContactRestored
    } else {
        Cause::Update
    };
    match (last, desired) {
        (Some(last), Desired::Paused) if generation < last.generation && last.running => {
            Step::Change(Change::Pause, Cause::Update)
        }
        (Some(last), _) if generation < last.generation => Step::Stale,
        (Some(last), Desired::Running) if generation == last.generation && lost_contact => {
            Step::Change(Change::Resume, resume_cause)
        }
        (Some(last), _) if generation == last.generation => Step::Reack,
        (_, Desired::Running) => Step::Change(Change::Resume, resume_cause),
        (_, Desired::Paused) => Step::Change(Change::Pause, Cause::Update),
    }
}

/// What the signed-resume rule remembers about a program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Signed {
    /// The last PAUSED generation applied: an older signed resume is a replay.
    pub(crate) last_paused: Option<u64>,
    /// The statement of the last resume accepted: later generations carrying it (policy
    /// changes while RUNNING, contact restored) are not refused for its expiry.
    pub(crate) accepted: Option<Vec<u8>>,
}

/// What to do with an incoming state, every rule considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Older than what was applied: ignore it and send nothing ([`Step::Stale`]).
    Stale,
    /// Already applied: run no hook, acknowledge again ([`Step::Reack`]).
    Reack,
    /// Close the gate first, then run the pause hook.
    Pause {
        /// Why the hook runs.
        cause: Cause,
        /// Why a RUNNING state was refused: its resume is not signed as required, so it
        /// is applied as a pause (with [`Cause::Update`]) and the Ack carries this. `None`
        /// for a PAUSED state, which is remembered in [`Signed::last_paused`] unless it
        /// awaits a stage.
        refused: Option<String>,
        /// The PAUSED state carries a staged resume, signed as `trust` requires, whose
        /// stage for this collector has not opened yet: not a new pause, so it does not
        /// move [`Signed::last_paused`] (which would make the statement look replayed
        /// when the collector's stage opens).
        awaits_stage: bool,
    },
    /// Run the resume hook, then open the gate if the hook succeeded.
    Resume {
        /// Why the hook runs.
        cause: Cause,
        /// The signed statement that allowed it, to remember in [`Signed::accepted`];
        /// `None` when signatures are not required.
        accepted: Option<Vec<u8>>,
    },
}

/// Decides what to do with `incoming`, given what was applied last for the program
/// (`None` before anything), the collector's `trust` settings, what it remembers of the
/// program's signed states, whether the program's gate is open now, and the time `now`.
///
/// First the order of generations ([`step`]): an older state is ignored, the same one
/// acknowledged again, and a PAUSED always wins over a RUNNING. Then a RUNNING that would
/// resume needs a resume signed as `trust` requires ([`signing::check_resume`]), or it
/// is a pause: the control plane and etcd can stop collection, never start it. A
/// statement accepted before keeps an open gate open after it expired (a later generation
/// carrying it, e.g. a policy change), but an expired statement never opens a closed gate.
pub(crate) fn decide(
    last: Option<Last>,
    incoming: &Incoming,
    collector: signing::Collector<'_>,
    trust: &Trust,
    signed: &Signed,
    gate_open: bool,
    now: SystemTime,
) -> Decision {
    let check = Check {
        incoming,
        collector,
        trust,
        signed,
        now,
    };
    match step(last, incoming.event.generation, incoming.desired) {
        Step::Stale => Decision::Stale,
        Step::Reack => Decision::Reack,
        Step::Change(Change::Pause, cause) => Decision::Pause {
            cause,
            refused: None,
            awaits_stage: check.awaits_stage(),
        },
        Step::Change(Change::Resume, cause) => match check.signed(gate_open) {
            Ok(accepted) => Decision::Resume { cause, accepted },
            Err(refused) => Decision::Pause {
                cause: Cause::Update,
                refused: Some(refused),
                awaits_stage: false,
            },
        },
    }
}

/// What the signed-resume rule looks at for one incoming state.
struct Check<'a> {
    incoming: &'a Incoming,
    collector: signing::Collector<'a>,
    trust: &'a Trust,
    signed: &'a Signed,
    now: SystemTime,
}

impl Check<'_> {
    /// The context of [`signing::check_resume`] for the incoming state.
    fn context(&self, check_expiry: bool, check_stage: bool) -> signing::Context<'_> {
        signing::Context {
            program: &self.incoming.event.program,
            generation: self.incoming.event.generation,
            last_paused: self.signed.last_paused,
            now_unix: unix_seconds(self.now),
            check_expiry,
            collector: self.collector,
            check_stage,
        }
    }

    /// Whether a RUNNING state's signed resume lets the gate open (see [`signing`]):
    /// `Ok` with the statement to remember as accepted, `Err` with why not.
    fn signed(&self, gate_open: bool) -> Result<Option<Vec<u8>>, String> {
        if self.trust.required == 0 {
            return Ok(None);
        }
        let authorization = self.incoming.authorization.as_ref();
        let statement = authorization.map(|a| a.statement.as_slice());
        // An accepted statement keeps an open gate open; it opens a closed one (after
        // lost contact, a restart) only until it expires.
        let check_expiry =
            statement.is_none() || self.signed.accepted.as_deref() != statement || !gate_open;
        signing::check_resume(self.trust, authorization, self.context(check_expiry, true))?;
        Ok(statement.map(<[u8]>::to_vec))
    }

    /// Whether a PAUSED state carries a staged resume that will open this collector's
    /// stage later (valid in every respect but the time of its stage).
    fn awaits_stage(&self) -> bool {
        let Some(authorization) = &self.incoming.authorization else {
            return false;
        };
        self.trust.required > 0
            && ResumeStatement::decode(authorization.statement.as_slice())
                .is_ok_and(|statement| !statement.stages_percent.is_empty())
            && signing::check_resume(self.trust, Some(authorization), self.context(true, false))
                .is_ok()
    }
}

/// `time` in whole seconds since the Unix epoch (0 before it).
fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether a state's (or a heartbeat's) generation can be real: no larger than the
/// largest etcd revision, and, once the collector has heard anything (`horizon`: the
/// highest revision or generation it accepted so far), at most
/// [`MAX_GENERATION_LEAP`](killswitch_proto::MAX_GENERATION_LEAP) beyond it. Anything
/// else is ignored as forged.
pub(crate) fn plausible(generation: u64, horizon: u64) -> bool {
    generation <= killswitch_proto::MAX_GENERATION
        && (horizon == 0
            || generation <= horizon.saturating_add(killswitch_proto::MAX_GENERATION_LEAP))
}

/// What a hook did, as the session task observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HookOutcome {
    /// `Ok` if the hook returned `Ok` in time, otherwise what went wrong.
    pub(crate) result: Result<(), String>,
    /// The hook called [`StateEvent::confirm_purge`].
    pub(crate) purge_confirmed: bool,
}

/// Where a change leaves the gate, once its hook returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Whether the gate is open; this is also the effective state to acknowledge.
    pub(crate) open: bool,
    /// The hook's error, empty when it succeeded.
    pub(crate) error: String,
    /// Whether to tell the control plane that buffered data was deleted.
    pub(crate) purged: bool,
}

impl Change {
    /// Which hook the change runs, for logs and error messages.
    pub(crate) fn hook_name(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }

    /// Where the gate ends up given the hook's outcome, for a state that asked for a
    /// purge when `purge_asked`.
    ///
    /// A pause always leaves the gate closed; a resume opens it only if the hook
    /// succeeded (a failed hook must not let the collector capture). Data counts as
    /// purged only if the state asked for it, the hook confirmed it and then succeeded.
    pub(crate) fn settle(self, purge_asked: bool, outcome: HookOutcome) -> Settled {
        let HookOutcome {
            result,
            purge_confirmed,
        } = outcome;
        let succeeded = result.is_ok();
        Settled {
            open: self == Self::Resume && succeeded,
            purged: purge_asked && purge_confirmed && succeeded,
            error: result.err().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        Change, Decision, Desired, HookOutcome, Incoming, Last, Signed, Step, decide, plausible,
        step, unix_seconds,
    };
    use crate::event::Cause;
    use crate::policy::{OnLostContact, Policy};
    use crate::signing::fixtures::{NOW, key_pair, public, scoped_statement, sign, statement};
    use crate::signing::{self, Trust};
    use killswitch_proto::v1::{
        FailurePolicy, LostContact, ProgramState, ResumeAuthorization, RunState,
    };
    use ring::signature::Ed25519KeyPair;
    use std::time::{Duration, SystemTime};

    const RUNNING: i32 = RunState::Running as i32;
    const PAUSED: i32 = RunState::Paused as i32;
    const UNSPECIFIED: i32 = RunState::Unspecified as i32;

    /// A RUNNING of generation `generation` was applied and contact is fine.
    fn applied(generation: u64) -> Option<Last> {
        Some(Last {
            generation,
            running: true,
            lost_contact: false,
        })
    }

    /// A PAUSED of generation `generation` was applied.
    fn paused(generation: u64) -> Option<Last> {
        Some(Last {
            generation,
            running: false,
            lost_contact: false,
        })
    }

    /// A RUNNING of generation `generation` was applied, then the program was paused for
    /// lost contact.
    fn lost(generation: u64) -> Option<Last> {
        Some(Last {
            generation,
            running: true,
            lost_contact: true,
        })
    }

    /// Applies a state of `generation` and wire `state` over `last`, with the hook
    /// returning `hook`, and compares a one-line summary of the result with `expected`.
    fn check(
        last: Option<Last>,
        generation: u64,
        state: i32,
        hook: Result<(), &str>,
        expected: &str,
    ) {
        let actual = match step(last, generation, Desired::from_wire(state)) {
            Step::Stale => "ignore".to_owned(),
            Step::Reack => "re-ack".to_owned(),
            Step::Change(change, cause) => {
                let outcome = HookOutcome {
                    result: hook.map_err(str::to_owned),
                    purge_confirmed: false,
                };
                let settled = change.settle(false, outcome);
                let gate = if settled.open { "open" } else { "closed" };
                let mut summary = format!("{change:?} ({cause}): gate {gate}");
                if !settled.error.is_empty() {
                    summary.push_str(&format!(", error {:?}", settled.error));
                }
                summary
            }
        };
        assert_eq!(
            actual, expected,
            "last {last:?}, incoming generation {generation} state {state}, hook {hook:?}"
        );
    }

    #[test]
    fn first_state_is_always_applied() {
        check(None, 1, RUNNING, Ok(()), "Resume (update): gate open");
        check(None, 1, PAUSED, Ok(()), "Pause (update): gate closed");
        check(None, 0, RUNNING, Ok(()), "Resume (update): gate open");
        check(None, 0, PAUSED, Ok(()), "Pause (update): gate closed");
    }

    #[test]
    fn pause_always_wins() {
        check(None, 3, UNSPECIFIED, Ok(()), "Pause (update): gate closed");
        check(
            applied(2),
            3,
            UNSPECIFIED,
            Ok(()),
            "Pause (update): gate closed",
        );
        check(
            lost(2),
            3,
            UNSPECIFIED,
            Ok(()),
            "Pause (update): gate closed",
        );
        check(None, 3, 3, Ok(()), "Pause (update): gate closed");
        check(None, 3, -1, Ok(()), "Pause (update): gate closed");
        check(None, 3, i32::MAX, Ok(()), "Pause (update): gate closed");
    }

    #[test]
    fn never_goes_back_in_time() {
        check(applied(5), 4, RUNNING, Ok(()), "ignore");
        check(paused(5), 4, PAUSED, Ok(()), "ignore");
        check(paused(5), 0, PAUSED, Ok(()), "ignore");
        check(paused(5), 4, RUNNING, Ok(()), "ignore");
        check(applied(u64::MAX), u64::MAX - 1, RUNNING, Ok(()), "ignore");
        // Not even to restore contact.
        check(lost(5), 4, RUNNING, Ok(()), "ignore");
        check(lost(5), 0, RUNNING, Ok(()), "ignore");
    }

    /// A RUNNING at a generation far ahead (an impostor's) does not make the real pauses
    /// that follow stale: an older PAUSED over a RUNNING is applied.
    #[test]
    fn an_older_pause_still_wins_over_a_running() {
        check(applied(5), 4, PAUSED, Ok(()), "Pause (update): gate closed");
        check(
            applied(u64::MAX),
            17,
            PAUSED,
            Ok(()),
            "Pause (update): gate closed",
        );
        check(
            lost(u64::MAX),
            17,
            PAUSED,
            Ok(()),
            "Pause (update): gate closed",
        );
        check(
            applied(u64::MAX),
            17,
            UNSPECIFIED,
            Ok(()),
            "Pause (update): gate closed",
        );
    }

    #[test]
    fn absurd_generations_are_implausible() {
        use killswitch_proto::{MAX_GENERATION, MAX_GENERATION_LEAP};
        assert!(plausible(17, 0));
        assert!(
            plausible(MAX_GENERATION, 0),
            "first contact: any real revision"
        );
        assert!(!plausible(MAX_GENERATION + 1, 0));
        assert!(!plausible(u64::MAX, 0));
        assert!(!plausible(u64::MAX, 20));
        assert!(plausible(20 + MAX_GENERATION_LEAP, 20));
        assert!(!plausible(21 + MAX_GENERATION_LEAP, 20));
        assert!(
            plausible(3, 20),
            "older is plausible (and then judged by step)"
        );
    }

    #[test]
    fn same_generation_is_acknowledged_again() {
        check(applied(5), 5, RUNNING, Ok(()), "re-ack");
        check(applied(5), 5, PAUSED, Ok(()), "re-ack");
        check(applied(0), 0, RUNNING, Ok(()), "re-ack");
        check(applied(u64::MAX), u64::MAX, PAUSED, Ok(()), "re-ack");
    }

    #[test]
    fn newer_generation_changes_the_gate() {
        check(applied(5), 6, RUNNING, Ok(()), "Resume (update): gate open");
        check(applied(5), 6, PAUSED, Ok(()), "Pause (update): gate closed");
        check(
            applied(5),
            u64::MAX,
            PAUSED,
            Ok(()),
            "Pause (update): gate closed",
        );
    }

    #[test]
    fn lost_contact_reopens_only_on_a_fresh_running() {
        // Contact is back and the control plane still says RUNNING: resume.
        check(
            lost(5),
            5,
            RUNNING,
            Ok(()),
            "Resume (contact restored): gate open",
        );
        check(
            lost(5),
            9,
            RUNNING,
            Ok(()),
            "Resume (contact restored): gate open",
        );
        check(
            lost(0),
            0,
            RUNNING,
            Ok(()),
            "Resume (contact restored): gate open",
        );
        // It says PAUSED: the same generation only clears the flag, a newer one pauses
        // again (its hook may have a purge to do).
        check(lost(5), 5, PAUSED, Ok(()), "re-ack");
        check(lost(5), 5, UNSPECIFIED, Ok(()), "re-ack");
        check(lost(5), 6, PAUSED, Ok(()), "Pause (update): gate closed");
        // A failing resume hook keeps it closed, as always.
        check(
            lost(5),
            5,
            RUNNING,
            Err("camera busy"),
            r#"Resume (contact restored): gate closed, error "camera busy""#,
        );
    }

    #[test]
    fn failed_hooks_keep_the_gate_closed() {
        check(
            applied(5),
            6,
            RUNNING,
            Err("camera busy"),
            r#"Resume (update): gate closed, error "camera busy""#,
        );
        check(
            applied(5),
            6,
            PAUSED,
            Err("pause hook panicked"),
            r#"Pause (update): gate closed, error "pause hook panicked""#,
        );
        check(
            None,
            1,
            PAUSED,
            Err("disk full"),
            r#"Pause (update): gate closed, error "disk full""#,
        );
    }

    #[test]
    fn purged_only_when_asked_confirmed_and_successful() {
        let check = |change: Change,
                     asked: bool,
                     confirmed: bool,
                     result: Result<(), &str>,
                     expected: bool| {
            let outcome = HookOutcome {
                result: result.map_err(str::to_owned),
                purge_confirmed: confirmed,
            };
            let settled = change.settle(asked, outcome);
            assert_eq!(
                settled.purged, expected,
                "{change:?}, asked {asked}, confirmed {confirmed}, hook {result:?}"
            );
        };
        check(Change::Pause, true, true, Ok(()), true);
        check(Change::Pause, true, false, Ok(()), false);
        check(Change::Pause, false, true, Ok(()), false);
        check(Change::Pause, false, false, Ok(()), false);
        check(Change::Pause, true, true, Err("disk full"), false);
        check(
            Change::Pause,
            true,
            true,
            Err("pause hook timed out after 10s"),
            false,
        );
        check(Change::Resume, false, true, Ok(()), false);
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
            policy: Some(FailurePolicy {
                on_lost_contact: LostContact::Keep.into(),
                grace_ms: 2_000,
            }),
            ..ProgramState::default()
        });
        assert_eq!(incoming.desired, Desired::Running);
        assert_eq!(incoming.policy, Policy::new(OnLostContact::Keep, 2_000));
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
        assert_eq!(event.cause, Cause::Update);
    }

    /// alice's key pair, and a collector's trust in it: one signature required.
    fn alice() -> (Ed25519KeyPair, Trust) {
        let alice = key_pair();
        let trust = Trust {
            keys: [public(&alice)].into(),
            required: 1,
            ..Trust::default()
        };
        (alice, trust)
    }

    /// `statement` signed by `pair`.
    fn signed_by(pair: &Ed25519KeyPair, statement: &[u8]) -> Option<ResumeAuthorization> {
        Some(ResumeAuthorization {
            statement: statement.to_vec(),
            signatures: vec![sign(pair, statement)],
        })
    }

    /// A state for `demo` at `generation`, RUNNING with `authorization`.
    fn running(generation: u64, authorization: Option<ResumeAuthorization>) -> Incoming {
        Incoming::from(ProgramState {
            program: "demo".to_owned(),
            state: RUNNING,
            generation,
            authorization,
            ..ProgramState::default()
        })
    }

    /// A state for `demo` at `generation`, PAUSED.
    fn pausing(generation: u64) -> Incoming {
        Incoming::from(ProgramState {
            program: "demo".to_owned(),
            state: PAUSED,
            generation,
            ..ProgramState::default()
        })
    }

    /// What the collector remembers: the last pause it applied and the statement it
    /// accepted last.
    fn memory(last_paused: Option<u64>, accepted: Option<&[u8]>) -> Signed {
        Signed {
            last_paused,
            accepted: accepted.map(<[u8]>::to_vec),
        }
    }

    /// Decides `incoming` over `last` at [`NOW`], with `trust`, the memory `signed` and
    /// the gate open or not, and compares a one-line summary with `expected`.
    fn check_decide(
        last: Option<Last>,
        incoming: &Incoming,
        trust: &Trust,
        signed: &Signed,
        gate_open: bool,
        expected: &str,
    ) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.unsigned_abs());
        let carried = incoming.authorization.as_ref().map(|a| a.statement.clone());
        let labels = [("region".to_owned(), "emea".to_owned())].into();
        let collector = signing::Collector {
            id: "c1",
            labels: &labels,
        };
        let actual = match decide(last, incoming, collector, trust, signed, gate_open, now) {
            Decision::Stale => "ignore".to_owned(),
            Decision::Reack => "re-ack".to_owned(),
            Decision::Pause {
                cause,
                refused: None,
                awaits_stage: false,
            } => format!("Pause ({cause})"),
            Decision::Pause {
                cause,
                refused: None,
                awaits_stage: true,
            } => format!("Pause ({cause}), awaiting its stage"),
            Decision::Pause {
                cause,
                refused: Some(refused),
                awaits_stage,
            } => {
                assert!(!awaits_stage, "a refused resume awaits nothing");
                format!("Pause ({cause}), refused: {refused}")
            }
            Decision::Resume {
                cause,
                accepted: None,
            } => format!("Resume ({cause})"),
            Decision::Resume {
                cause,
                accepted: Some(accepted),
            } => {
                assert_eq!(Some(accepted), carried, "accepts the statement it carries");
                format!("Resume ({cause}), accepting its statement")
            }
        };
        assert_eq!(
            actual, expected,
            "last {last:?}, incoming {incoming:?}, {signed:?}, gate open {gate_open}"
        );
    }

    #[test]
    fn a_collector_waiting_for_its_stage_does_not_count_the_wait_as_a_pause() {
        let (alice, trust) = alice();
        // c1 is in the second stage, which opens 600 s after signing.
        let staged = scoped_statement("demo", 9, NOW + 900, "", &[10, 50, 100], 600_000);
        let paused_at_9 = memory(Some(9), None);
        let waiting = Incoming {
            authorization: signed_by(&alice, &staged),
            ..pausing(11)
        };
        check_decide(
            paused(9),
            &waiting,
            &trust,
            &paused_at_9,
            false,
            "Pause (update), awaiting its stage",
        );
        // A pause without the statement, or with one not signed as required, is a pause.
        for incoming in [
            pausing(11),
            Incoming {
                authorization: signed_by(&key_pair(), &staged),
                ..pausing(11)
            },
        ] {
            check_decide(
                paused(9),
                &incoming,
                &trust,
                &paused_at_9,
                false,
                "Pause (update)",
            );
        }
        // Its RUNNING before the stage's time keeps the gate closed.
        check_decide(
            paused(11),
            &running(12, signed_by(&alice, &staged)),
            &trust,
            &paused_at_9,
            false,
            "Pause (update), refused: resume statement opens this collector's stage (2 of 3) \
             in 600 s by this collector's clock: too early",
        );
        // A statement for other labels neither opens the gate nor is waited for.
        let us = scoped_statement("demo", 9, NOW + 900, "region=us", &[10, 50, 100], 0);
        check_decide(
            paused(9),
            &Incoming {
                authorization: signed_by(&alice, &us),
                ..pausing(11)
            },
            &trust,
            &paused_at_9,
            false,
            "Pause (update)",
        );
    }

    #[test]
    fn resumes_are_not_checked_without_required_signatures() {
        let (alice, _) = alice();
        let trust = Trust::default();
        let nothing = Signed::default();
        check_decide(
            None,
            &running(10, None),
            &trust,
            &nothing,
            false,
            "Resume (update)",
        );
        check_decide(
            lost(10),
            &running(10, None),
            &trust,
            &nothing,
            false,
            "Resume (contact restored)",
        );
        // Even an expired statement: nothing is checked, nothing remembered.
        let expired = statement("demo", 9, NOW - 1);
        check_decide(
            None,
            &running(10, signed_by(&alice, &expired)),
            &trust,
            &nothing,
            false,
            "Resume (update)",
        );
    }

    #[test]
    fn an_unsigned_running_is_a_pause_when_signatures_are_required() {
        let (_, trust) = alice();
        let nothing = Signed::default();
        let refused =
            "Pause (update), refused: resume not signed by enough trusted operators (0 of 1)";
        check_decide(None, &running(10, None), &trust, &nothing, false, refused);
        check_decide(
            applied(9),
            &running(10, None),
            &trust,
            &nothing,
            true,
            refused,
        );
        // Contact restored is no exception: the hook is a pause, for an update.
        check_decide(
            lost(10),
            &running(10, None),
            &trust,
            &nothing,
            false,
            refused,
        );
    }

    #[test]
    fn a_signed_running_resumes_and_its_statement_is_remembered() {
        let (alice, trust) = alice();
        let good = statement("demo", 9, NOW + 600);
        check_decide(
            paused(9),
            &running(10, signed_by(&alice, &good)),
            &trust,
            &memory(Some(9), None),
            false,
            "Resume (update), accepting its statement",
        );
        check_decide(
            lost(10),
            &running(10, signed_by(&alice, &good)),
            &trust,
            &memory(Some(9), Some(&good)),
            false,
            "Resume (contact restored), accepting its statement",
        );
        // Signed by a key the collector does not trust.
        check_decide(
            paused(9),
            &running(10, signed_by(&key_pair(), &good)),
            &trust,
            &memory(Some(9), None),
            false,
            "Pause (update), refused: resume not signed by enough trusted operators (0 of 1)",
        );
    }

    #[test]
    fn an_expired_statement_never_opens_a_closed_gate() {
        let (alice, trust) = alice();
        let expired = statement("demo", 9, NOW - 1);
        let refused =
            "Pause (update), refused: resume statement expired 1 s ago by this collector's clock";
        // First seen after it expired.
        check_decide(
            paused(9),
            &running(10, signed_by(&alice, &expired)),
            &trust,
            &memory(Some(9), None),
            false,
            refused,
        );
        // Accepted before, but the gate closed since: lost contact, a restart.
        let accepted = memory(Some(9), Some(&expired));
        check_decide(
            lost(10),
            &running(10, signed_by(&alice, &expired)),
            &trust,
            &accepted,
            false,
            refused,
        );
        check_decide(
            applied(10),
            &running(11, signed_by(&alice, &expired)),
            &trust,
            &accepted,
            false,
            refused,
        );
        // An open gate does not excuse another expired statement.
        let other = statement("demo", 10, NOW - 1);
        check_decide(
            applied(10),
            &running(11, signed_by(&alice, &other)),
            &trust,
            &accepted,
            true,
            refused,
        );
    }

    /// A later generation carrying the resume already accepted (a policy change while
    /// RUNNING) keeps the gate open after the statement expired; its signatures still
    /// count.
    #[test]
    fn the_accepted_statement_keeps_an_open_gate_open() {
        let (alice, trust) = alice();
        let expired = statement("demo", 9, NOW - 1);
        let accepted = memory(Some(9), Some(&expired));
        check_decide(
            applied(10),
            &running(11, signed_by(&alice, &expired)),
            &trust,
            &accepted,
            true,
            "Resume (update), accepting its statement",
        );
        check_decide(
            applied(10),
            &running(11, signed_by(&key_pair(), &expired)),
            &trust,
            &accepted,
            true,
            "Pause (update), refused: resume not signed by enough trusted operators (0 of 1)",
        );
    }

    #[test]
    fn a_resume_replayed_after_a_newer_pause_is_refused() {
        let (alice, trust) = alice();
        // alice's genuine resume replaced generation 9; a pause at 12 was applied since.
        let replayed = statement("demo", 9, NOW + 600);
        check_decide(
            paused(12),
            &running(14, signed_by(&alice, &replayed)),
            &trust,
            &memory(Some(12), Some(&replayed)),
            false,
            "Pause (update), refused: resume statement replaces generation 9, older than the \
             pause at generation 12 this collector applied: a replayed resume",
        );
    }

    /// A PAUSED needs no signature and wins over a RUNNING at any generation; an older
    /// RUNNING is ignored and the same one acknowledged again, signed or not.
    #[test]
    fn pause_always_wins_whatever_the_signatures() {
        let (alice, trust) = alice();
        let nothing = Signed::default();
        check_decide(
            None,
            &pausing(17),
            &trust,
            &nothing,
            false,
            "Pause (update)",
        );
        check_decide(
            applied(100),
            &pausing(17),
            &trust,
            &nothing,
            true,
            "Pause (update)",
        );
        check_decide(
            lost(u64::MAX),
            &pausing(17),
            &trust,
            &nothing,
            false,
            "Pause (update)",
        );
        let good = statement("demo", 8, NOW + 600);
        check_decide(
            applied(10),
            &running(9, signed_by(&alice, &good)),
            &trust,
            &nothing,
            true,
            "ignore",
        );
        check_decide(
            applied(10),
            &running(10, None),
            &trust,
            &nothing,
            true,
            "re-ack",
        );
        check_decide(
            paused(10),
            &running(10, None),
            &trust,
            &nothing,
            false,
            "re-ack",
        );
    }

    #[test]
    fn clock_readings_before_the_epoch_are_zero() {
        let epoch = SystemTime::UNIX_EPOCH;
        assert_eq!(unix_seconds(epoch + Duration::from_secs(17)), 17);
        assert_eq!(unix_seconds(epoch), 0);
        assert_eq!(unix_seconds(epoch - Duration::from_secs(17)), 0);
    }
}
