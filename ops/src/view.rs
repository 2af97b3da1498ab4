//! What the commands show, converted from the wire types at the gRPC edge.
//!
//! These structs *are* the `--output json` contract that runbook scripts parse: field
//! names and nesting here are stable API. Changing one breaks scripts in the field, so add
//! fields rather than rename them. The proto types never reach the renderers.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use killswitch_proto::prost_types::Timestamp;
use killswitch_proto::v1;
use serde::{Serialize, Serializer};

use crate::exit::Error;

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
        }
    }
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
    /// Its current state.
    pub state: StateView,
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
            state: state.into(),
        })
    }
}

impl TryFrom<v1::GetProgramResponse> for ProgramView {
    type Error = Error;

    fn try_from(response: v1::GetProgramResponse) -> Result<Self, Error> {
        Self::from_parts(response.program, response.state)
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
        })
    }
}

/// Acknowledgement counts for the current generation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CollectorsView {
    /// Sessions open for the program.
    pub connected: u64,
    /// Collectors that acknowledged the current generation successfully.
    pub acked: u64,
    /// Ids of connected collectors that have not acknowledged yet.
    pub pending: Vec<String>,
    /// Ids of collectors whose hooks failed (details in [`StatusView::errors`]).
    pub errored: Vec<String>,
}

/// One collector whose hooks failed for the current generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectorErrorView {
    /// Collector id.
    pub collector_id: String,
    /// What it reported.
    pub error: String,
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
}

impl TryFrom<v1::StatusResponse> for StatusView {
    type Error = Error;

    fn try_from(response: v1::StatusResponse) -> Result<Self, Error> {
        let state = response
            .state
            .ok_or_else(|| Error::bad_response("missing program state"))?;
        // No counts means no collector has reported: zeros are the truthful reading.
        let counts = response.collectors.unwrap_or_default();
        let errors: Vec<CollectorErrorView> = counts
            .errored
            .into_iter()
            .map(|e| CollectorErrorView {
                collector_id: e.collector_id,
                error: e.error,
            })
            .collect();
        Ok(Self {
            state: state.into(),
            collectors: CollectorsView {
                connected: counts.connected,
                acked: counts.acked,
                pending: counts.pending,
                errored: errors.iter().map(|e| e.collector_id.clone()).collect(),
            },
            errors,
            replicas: response.replicas,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::exit::Exit;

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
        })
        .unwrap();
        assert_eq!(view.collectors, CollectorsView::default());
        assert!(view.errors.is_empty());
    }
}
