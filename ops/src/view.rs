//! What the commands show, converted from the wire types at the gRPC edge.
//!
//! These structs *are* the `--output json` contract that runbook scripts parse: field
//! names and nesting here are stable API. Changing one breaks scripts in the field, so add
//! fields rather than rename them. The proto types never reach the renderers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use killswitch_proto::prost_types::Timestamp;
use killswitch_proto::v1;
use serde::{Serialize, Serializer};

use crate::exit::Error;
use crate::input::{Grace, LostContact};

/// Whether a program may collect, as the strings scripts see: `RUNNING`, `PAUSED`,
/// `UNSPECIFIED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Collectors may collect.
    Running,
    /// Collectors must not collect.
    Paused,
    /// Not set, or a value this build does not know; collectors treat it as paused.
    Unspecified,
}

impl RunState {
    /// Converts the wire enum; unknown values become [`RunState::Unspecified`].
    #[must_use]
    pub fn from_wire(value: i32) -> Self {
        match v1::RunState::try_from(value) {
            Ok(v1::RunState::Running) => RunState::Running,
            Ok(v1::RunState::Paused) => RunState::Paused,
            Ok(v1::RunState::Unspecified) | Err(_) => RunState::Unspecified,
        }
    }

    /// The name shown in tables and JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "RUNNING",
            RunState::Paused => "PAUSED",
            RunState::Unspecified => "UNSPECIFIED",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point in time that can be shown as RFC 3339 UTC to the second
/// (`2026-11-29T09:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(SystemTime);

impl Time {
    /// Last second `humantime` can format (9999-12-31T23:59:59Z); it panics past it, and
    /// before the Unix epoch.
    const MAX_SECONDS: u64 = 253_402_300_799;

    /// Converts a wire timestamp; `None` when it is outside 1970..=9999, which only a
    /// broken control plane sends. Showing the rest of the state matters more than
    /// failing over one timestamp.
    #[must_use]
    pub fn from_wire(ts: &Timestamp) -> Option<Self> {
        let mut ts = *ts;
        ts.normalize();
        let seconds = u64::try_from(ts.seconds).ok()?;
        let nanos = u32::try_from(ts.nanos).ok()?;
        if seconds > Self::MAX_SECONDS {
            return None;
        }
        UNIX_EPOCH
            .checked_add(Duration::new(seconds, nanos))
            .map(Time)
    }

    /// The point in time.
    #[must_use]
    pub fn system_time(self) -> SystemTime {
        self.0
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&humantime::format_rfc3339_seconds(self.0), f)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A duration the control plane measured in microseconds; JSON shows it as fractional
/// milliseconds (`1.2`), the unit people read latencies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Micros(pub u64);

impl Micros {
    /// The duration in milliseconds.
    #[must_use]
    pub fn as_millis_f64(self) -> f64 {
        // Exact up to 2^53 us (285 years).
        self.0 as f64 / 1000.0
    }
}

impl Serialize for Micros {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_millis_f64())
    }
}

/// A program's failure policy (the JSON "policy" object), with the control plane's
/// defaults filled in: what its collectors do when they lose contact with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PolicyView {
    /// Pause after the grace period (fail closed), or keep the last state (fail open).
    pub on_lost_contact: LostContact,
    /// How long collectors may go without hearing from the control plane before they pause
    /// (only meaningful with `pause`).
    pub grace_ms: u64,
}

impl PolicyView {
    /// The grace when the owner chose none, in milliseconds (`FailurePolicy.grace_ms` 0).
    pub const DEFAULT_GRACE_MS: u64 = 30_000;

    /// Converts a wire policy. Unset, `UNSPECIFIED` and values this build does not know
    /// read as `pause`, as collectors treat them (pause always wins); grace 0 reads as the
    /// default.
    #[must_use]
    pub fn from_wire(policy: Option<v1::FailurePolicy>) -> Self {
        let Some(policy) = policy else {
            return Self::default();
        };
        let on_lost_contact = match v1::LostContact::try_from(policy.on_lost_contact) {
            Ok(v1::LostContact::Keep) => LostContact::Keep,
            Ok(v1::LostContact::Pause | v1::LostContact::Unspecified) | Err(_) => {
                LostContact::Pause
            }
        };
        let grace_ms = match policy.grace_ms {
            0 => Self::DEFAULT_GRACE_MS,
            ms => ms,
        };
        Self {
            on_lost_contact,
            grace_ms,
        }
    }

    /// This policy with the parts given replaced, the others kept: `program set` merges its
    /// flags into the current policy, `program create` into the default.
    #[must_use]
    pub fn merge(self, on_lost_contact: Option<LostContact>, grace: Option<Grace>) -> Self {
        Self {
            on_lost_contact: on_lost_contact.unwrap_or(self.on_lost_contact),
            grace_ms: grace.map_or(self.grace_ms, Grace::as_millis),
        }
    }
}

/// What a program without a chosen policy gets: fail closed after 30 s.
impl Default for PolicyView {
    fn default() -> Self {
        Self {
            on_lost_contact: LostContact::Pause,
            grace_ms: Self::DEFAULT_GRACE_MS,
        }
    }
}

impl From<PolicyView> for v1::FailurePolicy {
    fn from(policy: PolicyView) -> Self {
        let on_lost_contact = match policy.on_lost_contact {
            LostContact::Pause => v1::LostContact::Pause,
            LostContact::Keep => v1::LostContact::Keep,
        };
        Self {
            on_lost_contact: on_lost_contact.into(),
            grace_ms: policy.grace_ms,
        }
    }
}

/// The authoritative state of one program (the JSON "state object").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateView {
    /// Program name.
    pub program: String,
    /// Whether it may collect.
    pub state: RunState,
    /// Only ever grows; collectors acknowledge by generation.
    pub generation: u64,
    /// Why the state last changed.
    pub reason: String,
    /// Incident given with the change, empty when none.
    pub incident_id: String,
    /// Who made the change.
    pub actor: String,
    /// When the change was committed; `null` when unknown.
    pub changed_at: Option<Time>,
    /// The pause asked collectors to delete buffered, not yet uploaded data.
    pub purge: bool,
    /// The failure policy collectors received with this state.
    pub policy: PolicyView,
    /// The collectors the last change was aimed at, as a canonical label selector; `null`
    /// for every collector. Status counts only these (for a staged resume: the current
    /// stage's collectors).
    pub scope: Option<String>,
    /// Scoped pauses and resumes on top of `state`, oldest first: a collector's state is
    /// that of the last rule whose selector matches its labels, else `state`.
    pub rules: Vec<RuleView>,
    /// A staged resume in progress (`state` is then `PAUSED`); `null` when none.
    pub rollout: Option<RolloutView>,
    /// The emergency stop-all, while active: every collector of every program is paused
    /// whatever the fields above say; `null` when not active.
    pub stop_all: Option<StopAllView>,
}

impl StateView {
    /// The rule the last change added, when it was a scoped one: the last rule, if its
    /// selector is the scope.
    #[must_use]
    pub fn scoped_rule(&self) -> Option<&RuleView> {
        let scope = self.scope.as_deref()?;
        self.rules.last().filter(|rule| rule.selector == scope)
    }
}

impl From<v1::ProgramState> for StateView {
    fn from(state: v1::ProgramState) -> Self {
        Self {
            state: RunState::from_wire(state.state),
            changed_at: state.changed_at.as_ref().and_then(Time::from_wire),
            program: state.program,
            generation: state.generation,
            reason: state.reason,
            incident_id: state.incident_id,
            actor: state.actor,
            purge: state.purge,
            policy: PolicyView::from_wire(state.policy),
            scope: Some(state.scope).filter(|scope| !scope.trim().is_empty()),
            rules: state.rules.into_iter().map(RuleView::from).collect(),
            rollout: state.rollout.map(RolloutView::from),
            stop_all: state.stop_all.and_then(StopAllView::from_wire),
        }
    }
}

/// A scoped pause or resume (one of a state's `rules`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleView {
    /// Which collectors, as a canonical label selector.
    pub selector: String,
    /// Their state.
    pub state: RunState,
    /// Who added it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When; `null` when unknown.
    pub at: Option<Time>,
    /// Added by `killswitch drill`, removed when the drill ends.
    pub drill: bool,
}

impl From<v1::Rule> for RuleView {
    fn from(rule: v1::Rule) -> Self {
        Self {
            state: RunState::from_wire(rule.state),
            at: rule.at.as_ref().and_then(Time::from_wire),
            selector: rule.selector,
            actor: rule.actor,
            reason: rule.reason,
            drill: rule.drill,
        }
    }
}

/// A staged resume in progress: the collectors whose stable bucket falls below the
/// current stage's percentage are RUNNING, the others PAUSED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutView {
    /// The current stage, counted from 1.
    pub stage: u32,
    /// Every stage's percentage of the collectors, ascending, the last 100.
    pub stages_percent: Vec<u32>,
    /// The current stage's percentage.
    pub percent: u32,
    /// The least time a stage runs before the next one starts.
    pub interval_ms: u64,
    /// When the current stage started; `null` when unknown.
    pub stage_started_at: Option<Time>,
}

impl RolloutView {
    /// How many stages there are.
    #[must_use]
    pub fn stage_count(&self) -> usize {
        self.stages_percent.len()
    }
}

impl From<v1::Rollout> for RolloutView {
    fn from(rollout: v1::Rollout) -> Self {
        // A stage index past the list only comes from a broken control plane: shown as
        // the last stage's percentage rather than failing over it.
        let percent = usize::try_from(rollout.stage)
            .ok()
            .and_then(|i| rollout.stages_percent.get(i))
            .or(rollout.stages_percent.last())
            .copied()
            .unwrap_or(100);
        Self {
            stage: rollout.stage.saturating_add(1),
            percent,
            stages_percent: rollout.stages_percent,
            interval_ms: rollout.interval_ms,
            stage_started_at: rollout.stage_started_at.as_ref().and_then(Time::from_wire),
        }
    }
}

/// The emergency stop-all flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopAllView {
    /// Every program is paused for every collector while it is set.
    pub active: bool,
    /// Why.
    pub reason: String,
    /// Incident given with it, empty when none.
    pub incident_id: String,
    /// Who set it.
    pub actor: String,
    /// When; `null` when unknown.
    pub at: Option<Time>,
    /// The generation that last changed the flag; 0 when the control plane did not say.
    pub generation: u64,
    /// A request to clear it that waits for a second admin; `null` when none.
    pub clear_request: Option<ClearRequestView>,
}

/// A request to clear the stop-all, waiting for a second admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClearRequestView {
    /// What the second admin passes to `stop-all --clear --approve`.
    pub id: String,
    /// Who asked.
    pub requested_by: String,
    /// When the request expires; `null` when unknown.
    pub expires_at: Option<Time>,
}

impl StopAllView {
    /// The flag as the control plane sent it, active or not.
    #[must_use]
    pub fn from_flag(flag: v1::StopAll) -> Self {
        let clear_request = (!flag.clear_request_id.is_empty()).then(|| ClearRequestView {
            expires_at: flag
                .clear_request_expires_at
                .as_ref()
                .and_then(Time::from_wire),
            id: flag.clear_request_id,
            requested_by: flag.clear_requested_by,
        });
        Self {
            active: flag.active,
            at: flag.at.as_ref().and_then(Time::from_wire),
            reason: flag.reason,
            incident_id: flag.incident_id,
            actor: flag.actor,
            generation: flag.generation,
            clear_request,
        }
    }

    /// The flag carried in a program's state or status: `None` unless active.
    #[must_use]
    pub fn from_wire(flag: v1::StopAll) -> Option<Self> {
        flag.active.then(|| Self::from_flag(flag))
    }
}

/// The answer to `stop-all`, `stop-all --clear` and `stop-all --show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopAllResultView {
    /// The flag after the call.
    pub stop_all: StopAllView,
    /// False when the flag already was as asked, or the clear waits for approval.
    pub changed: bool,
    /// Set when clearing waits for a second admin: the id they approve.
    pub approval_request_id: Option<String>,
    /// With `--wait`: each program's acknowledgements of the stop-all; empty otherwise.
    pub programs: Vec<WaitedProgramView>,
}

impl TryFrom<v1::StopAllResponse> for StopAllResultView {
    type Error = Error;

    fn try_from(response: v1::StopAllResponse) -> Result<Self, Error> {
        let flag = response
            .stop_all
            .ok_or_else(|| Error::bad_response("missing stop-all flag"))?;
        Ok(Self {
            stop_all: StopAllView::from_flag(flag),
            changed: response.changed,
            approval_request_id: Some(response.approval_request_id).filter(|id| !id.is_empty()),
            programs: Vec::new(),
        })
    }
}

/// One program's acknowledgements of a change that covers several (`stop-all --wait`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitedProgramView {
    /// Program name.
    pub program: String,
    /// The generation waited for.
    pub generation: u64,
    /// Every connected collector acknowledged it without error.
    pub complete: bool,
    /// The last status received; `null` when none arrived.
    pub status: Option<StatusView>,
}

/// A program definition with its current state (`program show|create|list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramView {
    /// Program name.
    pub name: String,
    /// Owning team.
    pub owner: String,
    /// Free text, may be empty.
    pub description: String,
    /// When it was created; `null` when unknown.
    pub created_at: Option<Time>,
    /// Who created it.
    pub created_by: String,
    /// What its collectors do when they lose contact with the control plane.
    pub policy: PolicyView,
    /// How many different operators a resume needs: 1 or 2.
    pub resume_approvals: u32,
    /// Its current state.
    pub state: StateView,
    /// `program set` only: the change weakens a program that needs two operators and
    /// waits for another operator's approval (the program above is unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalView>,
}

impl ProgramView {
    fn from_parts(
        program: Option<v1::Program>,
        state: Option<v1::ProgramState>,
    ) -> Result<Self, Error> {
        let program = program.ok_or_else(|| Error::bad_response("missing program"))?;
        let state = state.ok_or_else(|| Error::bad_response("missing program state"))?;
        Ok(Self {
            created_at: program.created_at.as_ref().and_then(Time::from_wire),
            name: program.name,
            owner: program.owner,
            description: program.description,
            created_by: program.created_by,
            policy: PolicyView::from_wire(program.policy),
            // 0 from a control plane that predates the field: one operator.
            resume_approvals: program.resume_approvals.max(1),
            state: state.into(),
            approval: None,
        })
    }
}

impl TryFrom<v1::GetProgramResponse> for ProgramView {
    type Error = Error;

    fn try_from(response: v1::GetProgramResponse) -> Result<Self, Error> {
        let mut view = Self::from_parts(response.program, response.state)?;
        view.approval = response.approval_request.map(|a| ApprovalView {
            expires_at: a.expires_at.as_ref().and_then(Time::from_wire),
            id: a.id,
        });
        Ok(view)
    }
}

impl TryFrom<v1::CreateProgramResponse> for ProgramView {
    type Error = Error;

    fn try_from(response: v1::CreateProgramResponse) -> Result<Self, Error> {
        Self::from_parts(response.program, response.state)
    }
}

/// The result of `pause` or `resume`: the state fields, flattened, plus `changed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeView {
    /// The state after the call.
    #[serde(flatten)]
    pub state: StateView,
    /// False when the program already was in the requested state.
    pub changed: bool,
    /// Set when the resume waits for another operator's approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalView>,
    /// For a scoped change (`--selector`): how many connected collectors its scope
    /// matched, `null` when not known yet; absent for a change of every collector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<Matched>,
}

/// How many connected collectors a scoped change matched: the JSON `matched` field, a
/// number, or `null` when not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// Counted by every replica at the change's generation.
    Known(u64),
    /// No status of the change's generation that every replica had reported on arrived.
    Unknown,
}

impl Matched {
    /// The count `status` gives for a change at `generation`: its connected collectors
    /// (status counts only the collectors the change was aimed at) if it is a status of
    /// that generation that no replica is behind on, else [`Matched::Unknown`].
    #[must_use]
    pub fn from_status(generation: u64, status: Option<&StatusView>) -> Self {
        match status {
            Some(s) if s.state.generation == generation && s.replicas_behind.is_empty() => {
                Matched::Known(s.collectors.connected)
            }
            _ => Matched::Unknown,
        }
    }

    /// The count, when known.
    #[must_use]
    pub fn known(self) -> Option<u64> {
        match self {
            Matched::Known(n) => Some(n),
            Matched::Unknown => None,
        }
    }
}

impl Serialize for Matched {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.known().serialize(serializer)
    }
}

/// A resume request waiting for another operator (`"approval": {"id", "expires_at"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalView {
    /// What `killswitch approve` takes.
    pub id: String,
    /// When the request expires; `null` when unknown.
    pub expires_at: Option<Time>,
}

impl TryFrom<v1::ChangeResponse> for ChangeView {
    type Error = Error;

    fn try_from(response: v1::ChangeResponse) -> Result<Self, Error> {
        let state = response
            .state
            .ok_or_else(|| Error::bad_response("missing program state"))?;
        Ok(Self {
            state: state.into(),
            changed: response.changed,
            approval: response.approval_request.map(|a| ApprovalView {
                expires_at: a.expires_at.as_ref().and_then(Time::from_wire),
                id: a.id,
            }),
            matched: None,
        })
    }
}

/// Acknowledgement counts for the current generation, over every replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CollectorsView {
    /// Collectors connected for the program.
    pub connected: u64,
    /// Collectors that acknowledged the current generation successfully, with their gate
    /// in the state intended for them.
    pub acked: u64,
    /// Ids of connected collectors that have not acknowledged yet: at most 100, see
    /// `pending_count`.
    pub pending: Vec<String>,
    /// Ids of collectors whose hooks failed (details in [`StatusView::errors`]): at most
    /// 100, see `errored_count`.
    pub errored: Vec<String>,
    /// How many connected collectors have not acknowledged.
    pub pending_count: u64,
    /// How many connected collectors' hooks failed.
    pub errored_count: u64,
    /// How many collectors disconnected recently.
    pub disconnected_count: u64,
    /// Recently disconnected collectors, at most 100.
    pub disconnected: Vec<DisconnectedView>,
    /// Of the acknowledged, how many confirmed deleting their buffered data (a pause with
    /// `purge`).
    pub purged: u64,
    /// How many connected collectors acknowledged without error but whose gate is not in
    /// the state intended for them (e.g. PAUSED for lost contact while RUNNING is
    /// intended): neither acknowledged nor pending, and no confirmation.
    pub diverged_count: u64,
    /// Those collectors, at most 100: see `diverged_count`.
    pub diverged: Vec<DivergedView>,
}

/// A connected collector whose gate is not in the state intended for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DivergedView {
    /// Collector id.
    pub collector_id: String,
    /// The replica it is connected to.
    pub replica: String,
    /// What it acknowledged its gate is.
    pub effective: RunState,
    /// What the control plane intends for it.
    pub intended: RunState,
}

/// One collector whose hooks failed for the current generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectorErrorView {
    /// Collector id.
    pub collector_id: String,
    /// What it reported.
    pub error: String,
    /// The replica it is connected to.
    pub replica: String,
}

/// A collector that disconnected recently and has not reconnected to the same replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisconnectedView {
    /// Collector id.
    pub collector_id: String,
    /// When it disconnected; `null` when unknown.
    pub at: Option<Time>,
    /// The replica it was connected to.
    pub replica: String,
}

/// Commit-to-acknowledgement times of the current generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AckTimesView {
    /// How many acknowledgements the figures cover (never 0).
    pub count: u64,
    /// Median (within about 5%).
    pub p50_ms: Micros,
    /// Slowest.
    pub max_ms: Micros,
    /// From the commit to the last acknowledgement so far.
    pub propagation_ms: Micros,
}

impl AckTimesView {
    /// `None` when no acknowledgement was timed: zeros would read as "instant".
    fn from_wire(times: v1::AckTimes) -> Option<Self> {
        (times.count > 0).then_some(Self {
            count: times.count,
            p50_ms: Micros(times.p50_us),
            max_ms: Micros(times.max_us),
            propagation_ms: Micros(times.propagation_us),
        })
    }
}

/// `status`: the state fields, flattened, plus who has confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    /// The program's state.
    #[serde(flatten)]
    pub state: StateView,
    /// Acknowledgement counts.
    pub collectors: CollectorsView,
    /// Failed collectors and their errors.
    pub errors: Vec<CollectorErrorView>,
    /// Replicas whose collectors are counted.
    pub replicas: Vec<String>,
    /// Registered replicas that have not reported on this generation yet: their
    /// collectors may be missing from the counts.
    pub replicas_behind: Vec<String>,
    /// Acknowledgement times; `null` when none was timed.
    pub ack_times: Option<AckTimesView>,
    /// Label keys whose values come from collectors' certificates (the control plane's
    /// `pinned_labels`); empty when none.
    pub pinned_labels: Vec<String>,
}

impl TryFrom<v1::StatusResponse> for StatusView {
    type Error = Error;

    fn try_from(response: v1::StatusResponse) -> Result<Self, Error> {
        let mut state: StateView = response
            .state
            .ok_or_else(|| Error::bad_response("missing program state"))?
            .into();
        // The status carries the flag too; either one set means it is active.
        if let Some(flag) = response.stop_all.and_then(StopAllView::from_wire) {
            state.stop_all = Some(flag);
        }
        // No counts means no collector has reported: zeros are the truthful reading.
        let counts = response.collectors.unwrap_or_default();
        let errors: Vec<CollectorErrorView> = counts
            .errored
            .into_iter()
            .map(|e| CollectorErrorView {
                collector_id: e.collector_id,
                error: e.error,
                replica: e.replica,
            })
            .collect();
        let disconnected: Vec<DisconnectedView> = counts
            .disconnected
            .into_iter()
            .map(|d| DisconnectedView {
                at: d.at.as_ref().and_then(Time::from_wire),
                collector_id: d.collector_id,
                replica: d.replica,
            })
            .collect();
        let diverged: Vec<DivergedView> = counts
            .diverged
            .into_iter()
            .map(|d| DivergedView {
                effective: RunState::from_wire(d.effective),
                intended: RunState::from_wire(d.intended),
                collector_id: d.collector_id,
                replica: d.replica,
            })
            .collect();
        Ok(Self {
            state,
            collectors: CollectorsView {
                connected: counts.connected,
                acked: counts.acked,
                // A count is never below the ids listed: a control plane that predates
                // the counts sends 0, and must not make `--wait` succeed early.
                pending_count: counts.pending_count.max(len(&counts.pending)),
                errored_count: counts.errored_count.max(len(&errors)),
                disconnected_count: counts.disconnected_count.max(len(&disconnected)),
                pending: counts.pending,
                errored: errors.iter().map(|e| e.collector_id.clone()).collect(),
                disconnected,
                purged: counts.purged,
                diverged_count: counts.diverged_count.max(len(&diverged)),
                diverged,
            },
            errors,
            replicas: response.replicas,
            replicas_behind: response.replicas_behind,
            ack_times: response.ack_times.and_then(AckTimesView::from_wire),
            pinned_labels: response.pinned_labels,
        })
    }
}

/// A list's length as a count.
fn len<T>(items: &[T]) -> u64 {
    u64::try_from(items.len()).unwrap_or(u64::MAX)
}

/// The result of `pause --wait` or `resume --wait`: the change's fields, then whether
/// every connected collector acknowledged it, and the last status seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitedChangeView {
    /// The change, as without `--wait`.
    #[serde(flatten)]
    pub change: ChangeView,
    /// Every connected collector acknowledged the change's generation without error.
    pub complete: bool,
    /// The last status received; `null` when none arrived.
    pub status: Option<StatusView>,
}

/// One stage of a staged resume, as `resume --stages --wait` saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageView {
    /// Counted from 1.
    pub stage: u32,
    /// Its percentage of the collectors.
    pub percent: u32,
    /// The generation that started it.
    pub generation: u64,
    /// Its collectors (connected, in scope) in the last status seen of it.
    pub collectors: u64,
    /// Of those, how many acknowledged it without error.
    pub acked: u64,
    /// When every one of them had acknowledged, measured by the CLI from when it started
    /// waiting; `null` when it never saw that.
    pub acknowledged_after_ms: Option<Micros>,
}

/// The result of `resume --stages --wait`: the change's fields, how the staged resume
/// ended, its stages and the last status seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitedRolloutView {
    /// The resume, as without `--wait` (its state is the first stage's).
    #[serde(flatten)]
    pub change: ChangeView,
    /// RUNNING for every collector, and every connected collector acknowledged it.
    pub complete: bool,
    /// `complete`, `aborted`, `failed` (resume hooks failed at the end), `superseded`,
    /// `timed_out` or `broken` (the status stream failed).
    pub outcome: &'static str,
    /// The stages seen, in order.
    pub stages: Vec<StageView>,
    /// The last status received; `null` when none arrived.
    pub status: Option<StatusView>,
}

/// The result of `drill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillView {
    /// Program name.
    pub program: String,
    /// The selector, as given.
    pub selector: String,
    /// The generation that started the drill.
    pub drill_generation: u64,
    /// The generation that ended it; `null` when it could not be ended.
    pub restore_generation: Option<u64>,
    /// Collectors the drill reached (connected and selected, at the drill's generation).
    pub collectors: u64,
    /// How many connected collectors the selector matched, counted by every replica at the
    /// drill's generation; `null` when no such count arrived.
    pub matched: Option<u64>,
    /// Of those, how many acknowledged the drill without error.
    pub acked: u64,
    /// Every selected collector acknowledged the drill without error.
    pub safe: bool,
    /// From the drill's commit to the last selected collector's acknowledgement, by the
    /// control plane's ack times (collectors' clocks); `null` when none was timed.
    pub time_to_safe_ms: Option<Micros>,
    /// From sending the drill to seeing every acknowledgement, by the CLI's clock; `null`
    /// when it did not see them all.
    pub observed_ms: Option<Micros>,
    /// Every selected collector acknowledged the end of the drill.
    pub restored: bool,
    /// The last status seen of the drill's generation.
    pub drill_status: Option<StatusView>,
    /// The last status seen of the restore's generation.
    pub restore_status: Option<StatusView>,
}

/// One connected collector (`collectors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectorView {
    /// Collector id.
    pub collector_id: String,
    /// Its labels, sorted by key.
    pub labels: BTreeMap<String, String>,
    /// The replica it is connected to.
    pub replica: String,
    /// Generation last acknowledged, 0 when none yet.
    pub generation: u64,
    /// Its gate after that acknowledgement.
    pub effective: RunState,
    /// What the control plane intends its gate to be at that generation; differs from
    /// `effective` when it paused for lost contact. `UNSPECIFIED` from a control plane that
    /// does not say.
    pub intended: RunState,
    /// When its hooks finished, by its clock; `null` when unknown.
    pub acked_at: Option<Time>,
    /// Empty when its hooks succeeded.
    pub error: String,
    /// When it connected; `null` when unknown.
    pub connected_at: Option<Time>,
}

impl From<v1::CollectorInfo> for CollectorView {
    fn from(info: v1::CollectorInfo) -> Self {
        Self {
            effective: RunState::from_wire(info.effective),
            intended: RunState::from_wire(info.intended),
            acked_at: info.acked_at.as_ref().and_then(Time::from_wire),
            connected_at: info.connected_at.as_ref().and_then(Time::from_wire),
            labels: info.labels.into_iter().collect(),
            collector_id: info.collector_id,
            replica: info.replica,
            generation: info.generation,
            error: info.error,
        }
    }
}

/// `collectors`: a program's connected collectors, gathered from every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectorListView {
    /// Program name.
    pub program: String,
    /// The generation pending and errored are judged against.
    pub generation: u64,
    /// Sorted by id, then replica.
    pub collectors: Vec<CollectorView>,
    /// Replicas that did not answer: their collectors are missing from `collectors`.
    pub unreachable_replicas: Vec<String>,
    /// Label keys whose values come from collectors' certificates (the control plane's
    /// `pinned_labels`); empty when none.
    pub pinned_labels: Vec<String>,
}

impl CollectorListView {
    /// Converts the answer to `ListCollectors` for `program`.
    #[must_use]
    pub fn from_wire(program: &str, response: v1::ListCollectorsResponse) -> Self {
        let mut collectors: Vec<CollectorView> = response
            .collectors
            .into_iter()
            .map(CollectorView::from)
            .collect();
        collectors
            .sort_by(|a, b| (&a.collector_id, &a.replica).cmp(&(&b.collector_id, &b.replica)));
        Self {
            program: program.to_owned(),
            generation: response.generation,
            collectors,
            unreachable_replicas: response.unreachable_replicas,
            pinned_labels: response.pinned_labels,
        }
    }
}

/// Bytes shown as lowercase hex, e.g. a SHA-256 hash; JSON shows the same string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One audit entry (`audit`): a change, who made it and why, and its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntryView {
    /// 1, 2, 3, ... in the order the changes were committed.
    pub seq: u64,
    /// When it was committed; `null` when unknown.
    pub at: Option<Time>,
    /// Who made the change.
    pub actor: String,
    /// `create`, `pause`, `resume` or `policy`.
    pub action: String,
    /// Program name.
    pub program: String,
    /// The generation the change produced (the state's, or for a stop-all the flag's);
    /// for a request waiting for approval, the revision it was filed at.
    pub generation: u64,
    /// The state before.
    pub from: RunState,
    /// The state after.
    pub to: RunState,
    /// Why.
    pub reason: String,
    /// Incident given with the change, empty when none.
    pub incident_id: String,
    /// What else changed (e.g. `purge`), empty when nothing.
    pub detail: String,
    /// SHA-256 of the entry, hex.
    pub hash: Hex,
    /// The previous entry's hash, hex (zeros for entry 1).
    pub prev_hash: Hex,
}

impl From<v1::AuditEntry> for AuditEntryView {
    fn from(entry: v1::AuditEntry) -> Self {
        Self {
            at: entry.at.as_ref().and_then(Time::from_wire),
            from: RunState::from_wire(entry.from),
            to: RunState::from_wire(entry.to),
            seq: entry.seq,
            actor: entry.actor,
            action: entry.action,
            program: entry.program,
            generation: entry.generation,
            reason: entry.reason,
            incident_id: entry.incident_id,
            detail: entry.detail,
            hash: Hex(entry.hash),
            prev_hash: Hex(entry.prev_hash),
        }
    }
}

/// `audit`: entries oldest first. JSON shows only `entries`, as an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditListView {
    /// Sorted by seq.
    pub entries: Vec<AuditEntryView>,
    /// Older matching entries the control plane left out (the limit, or its size bound).
    pub omitted: u64,
}

impl From<v1::ListAuditResponse> for AuditListView {
    fn from(response: v1::ListAuditResponse) -> Self {
        let mut entries: Vec<AuditEntryView> = response
            .entries
            .into_iter()
            .map(AuditEntryView::from)
            .collect();
        entries.sort_by_key(|e| e.seq);
        Self {
            entries,
            omitted: response.omitted,
        }
    }
}

/// `reload`: what the replica put in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadView {
    /// The replica that reloaded.
    pub replica_id: String,
    /// Operators in its auth file.
    pub operators: u32,
    /// `[[collector]]` entries in its auth file.
    pub collector_rules: u32,
    /// Collector ids its `[revoked]` table lists.
    pub revoked_collectors: u32,
    /// Certificate serials its `[revoked]` table lists.
    pub revoked_serials: u32,
    /// The serial of the certificate the replica presents (lowercase hex).
    pub certificate_serial: String,
    /// When that certificate expires.
    pub certificate_not_after: Option<Time>,
}

impl From<v1::ReloadResponse> for ReloadView {
    fn from(response: v1::ReloadResponse) -> Self {
        Self {
            replica_id: response.replica_id,
            operators: response.operators,
            collector_rules: response.collector_rules,
            revoked_collectors: response.revoked_collectors,
            revoked_serials: response.revoked_serials,
            certificate_serial: response.certificate_serial,
            certificate_not_after: response
                .certificate_not_after
                .as_ref()
                .and_then(Time::from_wire),
        }
    }
}

/// `audit verify`: whether the audit chain is intact, and if not, where it first breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerdictView {
    /// Every entry is intact and chained, with no gap, up to the head.
    pub ok: bool,
    /// Entries verified intact before the first problem (all of them when `ok`).
    pub entries_checked: u64,
    /// The first entry that cannot be trusted; 0 when `ok`.
    pub first_bad_seq: u64,
    /// What is wrong there, in words; empty when `ok`.
    pub problem: String,
}

impl From<v1::VerifyAuditResponse> for AuditVerdictView {
    fn from(response: v1::VerifyAuditResponse) -> Self {
        Self {
            ok: response.ok,
            entries_checked: response.entries_checked,
            first_bad_seq: response.first_bad_seq,
            problem: response.problem,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::exit::Exit;

    #[test]
    fn audit_entries_are_converted_and_sorted() {
        let entry = |seq: u64| v1::AuditEntry {
            seq,
            from: v1::RunState::Running as i32,
            to: v1::RunState::Paused as i32,
            hash: vec![0x00, 0xab, 0x0f],
            prev_hash: vec![],
            at: Some(Timestamp {
                seconds: -1,
                nanos: 0,
            }),
            ..v1::AuditEntry::default()
        };
        let view = AuditListView::from(v1::ListAuditResponse {
            entries: vec![entry(3), entry(1), entry(2)],
            omitted: 4,
        });
        let seqs: Vec<u64> = view.entries.iter().map(|e| e.seq).collect();
        assert_eq!((seqs.as_slice(), view.omitted), (&[1, 2, 3][..], 4));
        let first = &view.entries[0];
        assert_eq!(
            (first.from, first.to),
            (RunState::Running, RunState::Paused)
        );
        assert_eq!(first.at, None, "a time before 1970 is unknown");
        assert_eq!(
            (first.hash.to_string(), first.prev_hash.to_string()),
            ("00ab0f".to_owned(), String::new())
        );
    }

    #[test]
    fn run_states() {
        let cases = [
            (0, RunState::Unspecified),
            (1, RunState::Running),
            (2, RunState::Paused),
            (3, RunState::Unspecified),
            (-1, RunState::Unspecified),
        ];
        for (wire, state) in cases {
            assert_eq!(RunState::from_wire(wire), state, "{wire}");
        }
    }

    #[test]
    fn policies() {
        use LostContact::{Keep, Pause};
        let wire = |on_lost_contact: i32, grace_ms: u64| {
            Some(v1::FailurePolicy {
                on_lost_contact,
                grace_ms,
            })
        };
        let cases = [
            (None, Pause, 30_000),
            (wire(0, 0), Pause, 30_000),
            (wire(1, 5_000), Pause, 5_000),
            (wire(2, 0), Keep, 30_000),
            (wire(2, 60_000), Keep, 60_000),
            (wire(3, 1_000), Pause, 1_000),
            (wire(-1, u64::MAX), Pause, u64::MAX),
        ];
        for (policy, on_lost_contact, grace_ms) in cases {
            let expected = PolicyView {
                on_lost_contact,
                grace_ms,
            };
            assert_eq!(PolicyView::from_wire(policy), expected, "{policy:?}");
        }
    }

    #[test]
    fn policy_merge() {
        use LostContact::{Keep, Pause};
        #[track_caller]
        fn check(
            current: (LostContact, u64),
            flags: (Option<LostContact>, Option<&str>),
            expected: (LostContact, u64),
        ) {
            let current = PolicyView {
                on_lost_contact: current.0,
                grace_ms: current.1,
            };
            let grace = flags.1.map(|g| Grace::parse(g).unwrap());
            let merged = current.merge(flags.0, grace);
            assert_eq!((merged.on_lost_contact, merged.grace_ms), expected);
        }
        check((Pause, 30_000), (None, None), (Pause, 30_000));
        check((Pause, 30_000), (Some(Keep), None), (Keep, 30_000));
        check((Pause, 30_000), (None, Some("10s")), (Pause, 10_000));
        check((Keep, 5_000), (Some(Pause), None), (Pause, 5_000));
        check((Keep, 5_000), (None, Some("1m")), (Keep, 60_000));
        check((Keep, 5_000), (Some(Pause), Some("2h")), (Pause, 7_200_000));
        check((Pause, 5_000), (Some(Pause), Some("5s")), (Pause, 5_000));
    }

    #[test]
    fn policies_on_the_wire() {
        let cases = [
            (LostContact::Pause, 30_000, v1::LostContact::Pause),
            (LostContact::Keep, 1_000, v1::LostContact::Keep),
        ];
        for (on_lost_contact, grace_ms, wire) in cases {
            let view = PolicyView {
                on_lost_contact,
                grace_ms,
            };
            let sent = v1::FailurePolicy::from(view);
            assert_eq!(sent.on_lost_contact(), wire);
            assert_eq!(sent.grace_ms, grace_ms);
            assert_eq!(PolicyView::from_wire(Some(sent)), view, "round trip");
        }
    }

    #[test]
    fn programs_carry_their_policy() {
        let view = ProgramView::try_from(v1::GetProgramResponse {
            program: Some(v1::Program {
                policy: Some(v1::FailurePolicy {
                    on_lost_contact: v1::LostContact::Keep.into(),
                    grace_ms: 0,
                }),
                ..v1::Program::default()
            }),
            state: Some(v1::ProgramState {
                policy: Some(v1::FailurePolicy {
                    on_lost_contact: v1::LostContact::Pause.into(),
                    grace_ms: 10_000,
                }),
                ..v1::ProgramState::default()
            }),
            approval_request: None,
        })
        .unwrap();
        assert_eq!(
            view.policy,
            PolicyView {
                on_lost_contact: LostContact::Keep,
                grace_ms: 30_000
            }
        );
        assert_eq!(
            view.state.policy,
            PolicyView {
                on_lost_contact: LostContact::Pause,
                grace_ms: 10_000
            }
        );
    }

    #[test]
    fn times() {
        fn check(seconds: i64, nanos: i32, expected: Option<&str>) {
            let ts = Timestamp { seconds, nanos };
            let got = Time::from_wire(&ts).map(|t| t.to_string());
            assert_eq!(got.as_deref(), expected, "{seconds}s {nanos}ns");
        }
        check(0, 0, Some("1970-01-01T00:00:00Z"));
        check(1_795_942_800, 0, Some("2026-11-29T09:00:00Z"));
        check(1_795_942_800, 999_999_999, Some("2026-11-29T09:00:00Z"));
        check(1_795_942_799, 1_000_000_000, Some("2026-11-29T09:00:00Z"));
        check(253_402_300_799, 0, Some("9999-12-31T23:59:59Z"));
        check(253_402_300_800, 0, None);
        check(-1, 0, None);
        check(0, -1, None);
        check(i64::MAX, i32::MAX, None);
        check(i64::MIN, i32::MIN, None);
    }

    #[test]
    fn missing_state_is_a_bad_response() {
        let err = ChangeView::try_from(v1::ChangeResponse {
            state: None,
            changed: true,
            approval_request: None,
        })
        .unwrap_err();
        assert_eq!(err.exit(), Exit::Error);
        assert_eq!(
            err.message(),
            "the control plane sent an invalid response: missing program state"
        );
        let err = ProgramView::try_from(v1::GetProgramResponse {
            program: None,
            state: Some(v1::ProgramState::default()),
            approval_request: None,
        })
        .unwrap_err();
        assert_eq!(
            err.message(),
            "the control plane sent an invalid response: missing program"
        );
    }

    #[test]
    fn status_without_counts_is_all_zero() {
        let view = StatusView::try_from(v1::StatusResponse {
            state: Some(v1::ProgramState::default()),
            collectors: None,
            replicas: vec![],
            replicas_behind: vec![],
            ack_times: None,
            stop_all: None,
            pinned_labels: vec![],
        })
        .unwrap();
        assert_eq!(view.collectors, CollectorsView::default());
        assert!(view.errors.is_empty());
        assert_eq!(view.ack_times, None);
    }

    #[test]
    fn status_conversion() {
        let view = StatusView::try_from(v1::StatusResponse {
            state: Some(v1::ProgramState::default()),
            collectors: Some(v1::CollectorCounts {
                connected: 300,
                acked: 100,
                pending: vec!["c1".to_owned()],
                errored: vec![v1::CollectorError {
                    collector_id: "c2".to_owned(),
                    error: "disk full".to_owned(),
                    replica: "r1".to_owned(),
                }],
                pending_count: 150,
                errored_count: 50,
                disconnected: vec![v1::Disconnected {
                    collector_id: "c3".to_owned(),
                    at: Some(Timestamp {
                        seconds: 1_795_942_800,
                        nanos: 0,
                    }),
                    replica: "r2".to_owned(),
                }],
                disconnected_count: 4,
                purged: 90,
                diverged: vec![v1::CollectorDiverged {
                    collector_id: "c7".to_owned(),
                    replica: "r1".to_owned(),
                    effective: v1::RunState::Paused.into(),
                    intended: v1::RunState::Running.into(),
                }],
                diverged_count: 2,
            }),
            replicas: vec!["r1".to_owned(), "r2".to_owned()],
            replicas_behind: vec![],
            stop_all: None,
            ack_times: Some(v1::AckTimes {
                count: 3,
                p50_us: 1200,
                max_us: 3400,
                propagation_us: 5600,
            }),
            pinned_labels: vec!["region".to_owned()],
        })
        .unwrap();
        assert_eq!(view.pinned_labels, ["region"]);
        let c = &view.collectors;
        assert_eq!(
            (
                c.pending_count,
                c.errored_count,
                c.disconnected_count,
                c.purged
            ),
            (150, 50, 4, 90)
        );
        assert_eq!(c.errored, ["c2"]);
        assert_eq!(view.errors[0].replica, "r1");
        assert_eq!(
            c.disconnected,
            [DisconnectedView {
                collector_id: "c3".to_owned(),
                at: Time::from_wire(&Timestamp {
                    seconds: 1_795_942_800,
                    nanos: 0
                }),
                replica: "r2".to_owned(),
            }]
        );
        assert_eq!(
            (c.diverged_count, c.diverged.as_slice()),
            (
                2,
                &[DivergedView {
                    collector_id: "c7".to_owned(),
                    replica: "r1".to_owned(),
                    effective: RunState::Paused,
                    intended: RunState::Running,
                }][..]
            )
        );
        assert_eq!(
            view.ack_times,
            Some(AckTimesView {
                count: 3,
                p50_ms: Micros(1200),
                max_ms: Micros(3400),
                propagation_ms: Micros(5600),
            })
        );
    }

    #[test]
    fn counts_never_below_the_listed_ids() {
        // A control plane that predates the counts: pending must still hold back --wait.
        let view = StatusView::try_from(v1::StatusResponse {
            state: Some(v1::ProgramState::default()),
            collectors: Some(v1::CollectorCounts {
                connected: 3,
                pending: vec!["c1".to_owned(), "c2".to_owned()],
                errored: vec![v1::CollectorError::default()],
                disconnected: vec![v1::Disconnected::default()],
                diverged: vec![v1::CollectorDiverged::default(); 2],
                ..v1::CollectorCounts::default()
            }),
            replicas: vec![],
            replicas_behind: vec![],
            ack_times: None,
            stop_all: None,
            pinned_labels: vec![],
        })
        .unwrap();
        let c = &view.collectors;
        assert_eq!(
            (
                c.pending_count,
                c.errored_count,
                c.disconnected_count,
                c.diverged_count
            ),
            (2, 1, 1, 2)
        );
        assert_eq!(c.diverged[0].effective, RunState::Unspecified);
    }

    #[test]
    fn ack_times_without_acks_are_absent() {
        let times = v1::AckTimes {
            count: 0,
            p50_us: 0,
            max_us: 7,
            propagation_us: 0,
        };
        assert_eq!(AckTimesView::from_wire(times), None);
    }

    #[test]
    fn collector_list_is_sorted_and_converted() {
        let info = |id: &str, replica: &str| v1::CollectorInfo {
            collector_id: id.to_owned(),
            labels: [("zone", "b"), ("region", "eu")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            replica: replica.to_owned(),
            generation: 7,
            effective: v1::RunState::Paused as i32,
            acked_at: None,
            error: String::new(),
            connected_at: Some(Timestamp {
                seconds: -5,
                nanos: 0,
            }),
            intended: v1::RunState::Running as i32,
        };
        let view = CollectorListView::from_wire(
            "demo",
            v1::ListCollectorsResponse {
                generation: 7,
                collectors: vec![info("c2", "r1"), info("c1", "r2"), info("c1", "r1")],
                unreachable_replicas: vec!["r3".to_owned()],
                pinned_labels: vec!["region".to_owned(), "team".to_owned()],
            },
        );
        let order: Vec<(&str, &str)> = view
            .collectors
            .iter()
            .map(|c| (c.collector_id.as_str(), c.replica.as_str()))
            .collect();
        assert_eq!(order, [("c1", "r1"), ("c1", "r2"), ("c2", "r1")]);
        let first = &view.collectors[0];
        assert_eq!(
            (first.effective, first.intended),
            (RunState::Paused, RunState::Running)
        );
        assert_eq!(first.connected_at, None, "a time before 1970 is unknown");
        assert_eq!(first.labels.keys().collect::<Vec<_>>(), ["region", "zone"]);
        assert_eq!(view.program, "demo");
        assert_eq!(view.unreachable_replicas, ["r3"]);
        assert_eq!(view.pinned_labels, ["region", "team"]);
    }

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn targeting_is_converted() {
        let state = StateView::from(v1::ProgramState {
            program: "demo".to_owned(),
            state: v1::RunState::Running.into(),
            scope: "region=emea".to_owned(),
            rules: vec![
                v1::Rule {
                    selector: "region=emea".to_owned(),
                    state: v1::RunState::Paused.into(),
                    actor: "alice".to_owned(),
                    reason: "leak".to_owned(),
                    at: ts(1_795_942_800),
                    drill: true,
                    authorization: None,
                },
                v1::Rule {
                    selector: "version=2".to_owned(),
                    state: v1::RunState::Running.into(),
                    ..v1::Rule::default()
                },
            ],
            ..v1::ProgramState::default()
        });
        assert_eq!(state.scope.as_deref(), Some("region=emea"));
        assert_eq!(state.rules.len(), 2);
        assert_eq!(state.rules[0].state, RunState::Paused);
        assert!(state.rules[0].drill);
        assert_eq!(
            state.rules[0].at.map(|t| t.to_string()).as_deref(),
            Some("2026-11-29T09:00:00Z")
        );
        // The scope is not the last rule's selector: the last change was not that rule.
        assert_eq!(state.scoped_rule(), None);
        let plain = StateView::from(v1::ProgramState {
            scope: "  ".to_owned(),
            ..v1::ProgramState::default()
        });
        assert_eq!(
            (
                plain.scope,
                plain.rules.len(),
                plain.rollout,
                plain.stop_all
            ),
            (None, 0, None, None)
        );
    }

    #[test]
    fn rollout_stages_count_from_one() {
        let rollout = |stage: u32| {
            RolloutView::from(v1::Rollout {
                stages_percent: vec![10, 50, 100],
                stage,
                interval_ms: 30_000,
                stage_started_at: ts(-1),
            })
        };
        let cases = [
            (0, 1, 10),
            (1, 2, 50),
            (2, 3, 100),
            (7, 8, 100),
            (u32::MAX, u32::MAX, 100),
        ];
        for (wire, stage, percent) in cases {
            let view = rollout(wire);
            assert_eq!((view.stage, view.percent), (stage, percent), "{wire}");
            assert_eq!(view.stage_count(), 3);
            assert_eq!(view.stage_started_at, None);
        }
        let empty = RolloutView::from(v1::Rollout::default());
        assert_eq!((empty.stage, empty.percent), (1, 100));
    }

    #[test]
    fn stop_all_flags() {
        let flag = v1::StopAll {
            active: true,
            reason: "leak".to_owned(),
            actor: "alice".to_owned(),
            generation: 42,
            clear_request_id: "0badcafe".to_owned(),
            clear_requested_by: "bob".to_owned(),
            clear_request_expires_at: ts(1_795_942_800),
            ..v1::StopAll::default()
        };
        let view = StopAllView::from_wire(flag.clone()).unwrap();
        assert_eq!((view.active, view.generation), (true, 42));
        let request = view.clear_request.unwrap();
        assert_eq!(
            (request.id.as_str(), request.requested_by.as_str()),
            ("0badcafe", "bob")
        );
        let inactive = v1::StopAll {
            active: false,
            ..flag
        };
        assert_eq!(StopAllView::from_wire(inactive.clone()), None);
        assert!(!StopAllView::from_flag(inactive).active);

        // The status's flag wins over a state that does not carry it.
        let status = StatusView::try_from(v1::StatusResponse {
            state: Some(v1::ProgramState::default()),
            stop_all: Some(v1::StopAll {
                active: true,
                ..v1::StopAll::default()
            }),
            ..v1::StatusResponse::default()
        })
        .unwrap();
        assert!(status.state.stop_all.is_some_and(|f| f.active));

        let err = StopAllResultView::try_from(v1::StopAllResponse::default()).unwrap_err();
        assert_eq!(err.exit(), Exit::Error);
        let result = StopAllResultView::try_from(v1::StopAllResponse {
            stop_all: Some(v1::StopAll::default()),
            changed: true,
            approval_request_id: String::new(),
        })
        .unwrap();
        assert_eq!(result.approval_request_id, None);
    }

    #[test]
    fn matched_counts_come_from_a_status_every_replica_reported_on() {
        let status = |generation: u64, connected: u64, behind: &[&str]| {
            StatusView::try_from(v1::StatusResponse {
                state: Some(v1::ProgramState {
                    generation,
                    ..v1::ProgramState::default()
                }),
                collectors: Some(v1::CollectorCounts {
                    connected,
                    ..v1::CollectorCounts::default()
                }),
                replicas_behind: behind.iter().map(|r| (*r).to_owned()).collect(),
                ..v1::StatusResponse::default()
            })
            .unwrap()
        };
        let cases = [
            (Some(status(9, 0, &[])), Matched::Known(0)),
            (Some(status(9, 3, &[])), Matched::Known(3)),
            (Some(status(9, 0, &["r2"])), Matched::Unknown),
            (Some(status(8, 3, &[])), Matched::Unknown),
            (Some(status(10, 3, &[])), Matched::Unknown),
            (None, Matched::Unknown),
        ];
        for (status, expected) in cases {
            assert_eq!(
                Matched::from_status(9, status.as_ref()),
                expected,
                "{status:?}"
            );
        }
        assert_eq!(serde_json::to_value(Matched::Known(0)).unwrap(), 0);
        assert_eq!(
            serde_json::to_value(Matched::Unknown).unwrap(),
            serde_json::Value::Null
        );
    }
}

/// `WhoAmI`: who the control plane takes the operator for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityView {
    /// The name the audit records.
    pub name: String,
    /// `viewer`, `responder`, `owner` or `admin`.
    pub role: String,
    /// The programs the role covers, sorted; empty: every program.
    pub programs: Vec<String>,
    /// Whether resumes and approvals must be signed with the operator's key.
    pub signing_required: bool,
    /// The control plane authenticates nobody (`--insecure-dev`).
    pub insecure_dev: bool,
}

impl From<v1::WhoAmIResponse> for IdentityView {
    fn from(response: v1::WhoAmIResponse) -> Self {
        Self {
            name: response.name,
            role: response.role,
            programs: response.programs,
            signing_required: response.signing_required,
            insecure_dev: response.insecure_dev,
        }
    }
}
