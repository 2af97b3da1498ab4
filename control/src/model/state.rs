//! A program's state and definition: the run state, the failure policy, the signed resume
//! it carries, and the conversions to and from the wire and storage messages.

use std::fmt;
use std::time::{Duration, SystemTime};

use killswitch_proto::v1;

use super::names::{InvalidInput, ProgramName};
use super::targeting::{StopAllFlag, Targeting};

/// Whether a program may collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Collectors may collect.
    Running,
    /// Collectors must not collect.
    Paused,
}

impl RunState {
    /// Reads a stored or received state; anything but RUNNING is PAUSED (pause always wins).
    #[must_use]
    pub fn from_wire(value: i32) -> Self {
        if value == v1::RunState::Running as i32 {
            Self::Running
        } else {
            Self::Paused
        }
    }

    /// The wire value.
    #[must_use]
    pub fn to_wire(self) -> v1::RunState {
        match self {
            Self::Running => v1::RunState::Running,
            Self::Paused => v1::RunState::Paused,
        }
    }

    /// The audit action that moves a program into this state.
    #[must_use]
    pub fn action(self) -> &'static str {
        match self {
            Self::Running => "resume",
            Self::Paused => "pause",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
        })
    }
}

/// Shortest grace accepted.
pub const MIN_GRACE: Duration = killswitch_proto::contract::MIN_GRACE;
/// Longest grace accepted.
pub const MAX_GRACE: Duration = killswitch_proto::contract::MAX_GRACE;
/// Grace when the owner chose none.
pub const DEFAULT_GRACE: Duration = killswitch_proto::contract::DEFAULT_GRACE;

/// What a collector does when it loses contact with the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostContact {
    /// Fail closed: pause after the grace period.
    Pause,
    /// Fail open: keep the last authoritative state.
    Keep,
}

/// A program's failure policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// What collectors do offline.
    pub on_lost_contact: LostContact,
    /// How long they wait for a heartbeat before pausing (fail-closed programs).
    pub grace: Duration,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            on_lost_contact: LostContact::Pause,
            grace: DEFAULT_GRACE,
        }
    }
}

impl FailurePolicy {
    /// Whether moving from `self` to `new` lets collectors collect in more situations:
    /// fail open instead of closed, or a longer grace while failing closed.
    #[must_use]
    pub fn weakened_by(self, new: Self) -> bool {
        match (self.on_lost_contact, new.on_lost_contact) {
            (LostContact::Pause, LostContact::Keep) => true,
            (LostContact::Pause, LostContact::Pause) => new.grace > self.grace,
            (LostContact::Keep, _) => false,
        }
    }

    /// Validates a policy from an operator; unset fields take the defaults.
    pub fn parse(wire: Option<&v1::FailurePolicy>) -> Result<Self, InvalidInput> {
        let Some(wire) = wire else {
            return Ok(Self::default());
        };
        let on_lost_contact = match v1::LostContact::try_from(wire.on_lost_contact) {
            Ok(v1::LostContact::Unspecified | v1::LostContact::Pause) => LostContact::Pause,
            Ok(v1::LostContact::Keep) => LostContact::Keep,
            Err(_) => {
                return Err(InvalidInput::UnknownValue {
                    field: "on-lost-contact",
                    value: wire.on_lost_contact,
                    hint: "use pause or keep",
                });
            }
        };
        let grace = match wire.grace_ms {
            0 => DEFAULT_GRACE,
            ms => Duration::from_millis(ms),
        };
        if !(MIN_GRACE..=MAX_GRACE).contains(&grace) {
            return Err(InvalidInput::Grace(grace));
        }
        Ok(Self {
            on_lost_contact,
            grace,
        })
    }

    /// Reads a stored policy; anything unreadable is the fail-closed default.
    #[must_use]
    pub fn from_store(wire: Option<&v1::FailurePolicy>) -> Self {
        Self::parse(wire).unwrap_or_default()
    }

    /// The wire form.
    #[must_use]
    pub fn to_wire(self) -> v1::FailurePolicy {
        v1::FailurePolicy {
            on_lost_contact: match self.on_lost_contact {
                LostContact::Pause => v1::LostContact::Pause,
                LostContact::Keep => v1::LostContact::Keep,
            } as i32,
            grace_ms: u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.on_lost_contact {
            LostContact::Pause => {
                write!(f, "pause after {}", humantime::format_duration(self.grace))
            }
            LostContact::Keep => f.write_str("keep"),
        }
    }
}

/// A program's generation, as collectors and operators see it: the newer of its state
/// key's and the stop-all flag's etcd mod_revision (see [`ProgramState::with_stop_all`]),
/// so it grows with every change of either.
pub type Generation = u64;

/// The authoritative state of one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramState {
    /// The program.
    pub program: ProgramName,
    /// Running or paused.
    pub state: RunState,
    /// The effective generation: the newer of `revision` and the stop-all flag's
    /// generation (see [`ProgramState::with_stop_all`]). What collectors acknowledge,
    /// status counts and signed resumes replace.
    pub generation: Generation,
    /// The state key's own mod_revision, for compare-and-swap on that key.
    pub revision: Generation,
    /// Why it was last changed.
    pub reason: String,
    /// Incident given with the change, empty when none.
    pub incident_id: String,
    /// Who changed it.
    pub actor: String,
    /// When the change was committed (the replica's clock at commit time).
    pub changed_at: Option<SystemTime>,
    /// The pause asks collectors to delete buffered, not yet uploaded data.
    pub purge: bool,
    /// What collectors do offline.
    pub policy: FailurePolicy,
    /// The signed resume that made it RUNNING, carried to collectors unchanged.
    pub authorization: Option<Authorization>,
    /// Scoped rules, a staged resume and the stop-all: which collectors the state is for.
    /// Its `stop_all` is the flag's, never a stored copy.
    pub targeting: Targeting,
}

/// A signed resume as stored: the encoded statement and its signatures, opaque to the
/// control plane once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The encoded `ResumeStatement`, exactly as signed.
    pub statement: Vec<u8>,
    /// (public key, signature) pairs.
    pub signatures: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Authorization {
    /// From the wire (or stored) form.
    #[must_use]
    pub fn from_wire(wire: &v1::ResumeAuthorization) -> Self {
        Self {
            statement: wire.statement.clone(),
            signatures: wire
                .signatures
                .iter()
                .map(|s| (s.public_key.clone(), s.signature.clone()))
                .collect(),
        }
    }

    /// The wire form.
    #[must_use]
    pub fn to_wire(&self) -> v1::ResumeAuthorization {
        v1::ResumeAuthorization {
            statement: self.statement.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|(public_key, signature)| v1::Signature {
                    public_key: public_key.clone(),
                    signature: signature.clone(),
                })
                .collect(),
        }
    }
}

impl ProgramState {
    /// Builds the domain state from its stored value, the key's mod_revision and the
    /// stop-all flag (see [`with_stop_all`](Self::with_stop_all)).
    #[must_use]
    pub fn from_store(
        program: ProgramName,
        revision: Generation,
        stored: &v1::store::ProgramState,
        stop_all: &StopAllFlag,
    ) -> Self {
        Self {
            program,
            state: RunState::from_wire(stored.state),
            generation: revision,
            revision,
            reason: stored.reason.clone(),
            incident_id: stored.incident_id.clone(),
            actor: stored.actor.clone(),
            changed_at: stored.changed_at.and_then(|t| SystemTime::try_from(t).ok()),
            purge: stored.purge,
            policy: FailurePolicy::from_store(stored.policy.as_ref()),
            authorization: stored.authorization.as_ref().map(Authorization::from_wire),
            targeting: Targeting::from_store(stored),
        }
        .with_stop_all(stop_all)
    }

    /// The state under the stop-all flag: the one place the flag meets a program's state.
    /// While the flag is active every collector is PAUSED (`targeting.stop_all` is the
    /// flag's mark; any mark older versions stored in the state is ignored), and the
    /// generation is the newer of the state key's mod_revision and the flag's generation,
    /// so setting or clearing the flag gives every program a new generation at once,
    /// without writing any program's state. Applying it again, with the same or a newer
    /// flag, only depends on `revision` and the flag.
    #[must_use]
    pub fn with_stop_all(mut self, stop_all: &StopAllFlag) -> Self {
        self.generation = self.revision.max(stop_all.generation);
        self.targeting.stop_all.clone_from(&stop_all.mark);
        self
    }

    /// The wire form operators see: the base state with its targeting.
    #[must_use]
    pub fn to_wire(&self) -> v1::ProgramState {
        let mut wire = self.to_collector_base();
        self.targeting.wire_into(&mut wire);
        wire
    }

    /// What the collector `id` with `labels` receives: its effective state, without the
    /// rules (a collector needs only its own outcome), and the signed resume that decides
    /// it: the deciding rule's when a rule decides, else the state's. Its `scope` is the
    /// canonical selector of the rule that decides its state (which it copies into its
    /// receipts), empty when no rule does (a whole-program state or a stop-all).
    #[must_use]
    pub fn to_collector_wire(
        &self,
        id: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> v1::ProgramState {
        let mut wire = self.to_collector_base();
        if !self.targeting.is_plain() {
            wire.state = self.targeting.effective(self.state, id, labels).to_wire() as i32;
            if let Some(rule) = self.targeting.deciding_rule(labels) {
                wire.authorization = rule.authorization.as_ref().map(Authorization::to_wire);
                // Collectors copy it into their receipts: the scope the state came under.
                wire.scope = rule
                    .selector
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
            }
            if let Some(stop_all) = &self.targeting.stop_all {
                wire.reason = format!("stop-all: {}", stop_all.reason);
                wire.stop_all = Some(stop_all.to_wire());
                // A stop-all is a new pause for every collector: no statement with it, so
                // collectors waiting for a stage of a staged resume count it as one.
                wire.authorization = None;
            }
        }
        wire
    }

    fn to_collector_base(&self) -> v1::ProgramState {
        v1::ProgramState {
            program: self.program.to_string(),
            state: self.state.to_wire() as i32,
            generation: self.generation,
            reason: self.reason.clone(),
            incident_id: self.incident_id.clone(),
            actor: self.actor.clone(),
            changed_at: self.changed_at.map(killswitch_proto::timestamp),
            purge: self.purge,
            policy: Some(self.policy.to_wire()),
            authorization: self.authorization.as_ref().map(Authorization::to_wire),
            ..v1::ProgramState::default()
        }
    }
}

/// A program definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Its name.
    pub name: ProgramName,
    /// The owning team.
    pub owner: String,
    /// What it collects and why.
    pub description: String,
    /// When it was created.
    pub created_at: Option<SystemTime>,
    /// Who created it.
    pub created_by: String,
    /// What its collectors do offline.
    pub policy: FailurePolicy,
    /// How many different operators a resume needs: 1 or 2.
    pub resume_approvals: u32,
}

impl Program {
    /// Builds the domain program from its stored value.
    #[must_use]
    pub fn from_store(name: ProgramName, stored: &v1::store::Program) -> Self {
        Self {
            name,
            owner: stored.owner.clone(),
            description: stored.description.clone(),
            created_at: stored.created_at.and_then(|t| SystemTime::try_from(t).ok()),
            created_by: stored.created_by.clone(),
            policy: FailurePolicy::from_store(stored.policy.as_ref()),
            resume_approvals: stored.resume_approvals.clamp(1, 2),
        }
    }

    /// The wire form sent to operators.
    #[must_use]
    pub fn to_wire(&self) -> v1::Program {
        v1::Program {
            name: self.name.to_string(),
            owner: self.owner.clone(),
            description: self.description.clone(),
            created_at: self.created_at.map(killswitch_proto::timestamp),
            created_by: self.created_by.clone(),
            policy: Some(self.policy.to_wire()),
            resume_approvals: self.resume_approvals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_policies() {
        let wire = |on_lost_contact: i32, grace_ms: u64| v1::FailurePolicy {
            on_lost_contact,
            grace_ms,
        };
        assert_eq!(FailurePolicy::parse(None), Ok(FailurePolicy::default()));
        let keep = FailurePolicy::parse(Some(&wire(2, 5000))).expect("valid");
        assert_eq!(
            (keep.on_lost_contact, keep.grace),
            (LostContact::Keep, Duration::from_secs(5))
        );
        assert_eq!(
            FailurePolicy::parse(Some(&wire(0, 0))),
            Ok(FailurePolicy::default())
        );
        assert!(matches!(
            FailurePolicy::parse(Some(&wire(1, 999))),
            Err(InvalidInput::Grace(_))
        ));
        assert!(matches!(
            FailurePolicy::parse(Some(&wire(1, 86_400_001))),
            Err(InvalidInput::Grace(_))
        ));
        assert!(matches!(
            FailurePolicy::parse(Some(&wire(7, 0))),
            Err(InvalidInput::UnknownValue { .. })
        ));
        assert_eq!(
            FailurePolicy::from_store(Some(&wire(7, 0))),
            FailurePolicy::default(),
            "unreadable: fail closed"
        );
        assert_eq!(FailurePolicy::parse(Some(&keep.to_wire())), Ok(keep));
    }

    #[test]
    fn the_stop_all_flag_is_merged_into_every_state_with_its_generation() {
        use crate::model::targeting::StopAll;
        let stored = v1::store::ProgramState {
            state: v1::RunState::Running as i32,
            // A mark an older version stored: only the flag counts.
            stop_all: Some(v1::StopAll {
                active: true,
                ..v1::StopAll::default()
            }),
            ..v1::store::ProgramState::default()
        };
        let name = ProgramName::parse("demo").expect("valid");
        let never = StopAllFlag::default();
        let plain = ProgramState::from_store(name.clone(), 7, &stored, &never);
        assert_eq!((plain.generation, plain.revision), (7, 7));
        assert!(
            plain.targeting.stop_all.is_none(),
            "a stored mark is ignored"
        );

        let set = StopAllFlag {
            mark: Some(StopAll {
                reason: "leak".into(),
                incident_id: String::new(),
                actor: "alice".into(),
                at: None,
            }),
            generation: 9,
            clear_request: None,
        };
        let stopped = plain.clone().with_stop_all(&set);
        assert_eq!((stopped.generation, stopped.revision), (9, 7));
        let labels = std::collections::BTreeMap::new();
        let wire = stopped.to_collector_wire("c1", &labels);
        assert_eq!(
            (wire.state, wire.generation),
            (v1::RunState::Paused as i32, 9)
        );

        // A change during the stop-all is newer than the flag: its own generation, still
        // PAUSED for collectors.
        let changed = ProgramState::from_store(name, 11, &stored, &set);
        assert_eq!(changed.generation, 11);
        let wire = changed.to_collector_wire("c1", &labels);
        assert_eq!(wire.state, v1::RunState::Paused as i32);

        let cleared = StopAllFlag {
            generation: 12,
            ..StopAllFlag::default()
        };
        let resumed = stopped.with_stop_all(&cleared);
        assert_eq!(resumed.generation, 12, "the clear is a new generation too");
        let wire = resumed.to_collector_wire("c1", &labels);
        assert_eq!(wire.state, v1::RunState::Running as i32);
        assert_eq!(resumed.with_stop_all(&cleared).generation, 12, "idempotent");
    }

    #[test]
    fn a_collector_receives_the_scope_of_the_rule_that_decides_its_state() {
        use crate::model::selector::Selector;
        use crate::model::targeting::{Rule, StopAll};

        let rule = |selector: &str, state| Rule {
            selector: Some(Selector::parse(selector).expect("valid selector")),
            state,
            actor: "alice".into(),
            reason: "t".into(),
            at: None,
            drill: false,
            authorization: None,
        };
        let name = ProgramName::parse("demo").expect("valid");
        let mut state = ProgramState::from_store(
            name,
            7,
            &v1::store::ProgramState::default(),
            &StopAllFlag::default(),
        );
        state.targeting.rules = vec![
            rule("region in (emea, apac)", RunState::Paused),
            rule("team=a,region=emea", RunState::Running),
        ];
        let labels = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let wire = state.to_collector_wire("c1", &labels(&[("region", "apac")]));
        assert_eq!(wire.state, v1::RunState::Paused as i32);
        assert_eq!(wire.scope, "region in (apac,emea)", "canonical form");
        let wire = state.to_collector_wire("c1", &labels(&[("region", "emea"), ("team", "a")]));
        assert_eq!(wire.state, v1::RunState::Running as i32);
        assert_eq!(
            wire.scope, "region=emea,team=a",
            "the last matching rule decides"
        );
        let wire = state.to_collector_wire("c1", &labels(&[("region", "us")]));
        assert_eq!(wire.scope, "", "no rule decides: the whole program's state");

        let stopped = state.with_stop_all(&StopAllFlag {
            mark: Some(StopAll {
                reason: "leak".into(),
                incident_id: String::new(),
                actor: "alice".into(),
                at: None,
            }),
            generation: 9,
            clear_request: None,
        });
        let wire = stopped.to_collector_wire("c1", &labels(&[("region", "apac")]));
        assert_eq!(wire.scope, "", "a stop-all decides, not a rule");
    }

    #[test]
    fn unknown_wire_state_is_paused() {
        assert_eq!(RunState::from_wire(0), RunState::Paused);
        assert_eq!(RunState::from_wire(99), RunState::Paused);
        assert_eq!(
            RunState::from_wire(v1::RunState::Running as i32),
            RunState::Running
        );
    }
}
