//! Which collectors a program's state applies to: scoped rules, staged resumes and the
//! emergency stop-all (DESIGN.md section 3).
//!
//! A program has a base state (RUNNING or PAUSED). On top of it:
//! - a staged resume ([`Rollout`]) makes the base RUNNING only for collectors whose
//!   stable [`bucket`] is below the current stage's percentage;
//! - rules, oldest first, each a label selector with a state: the last rule whose selector
//!   matches a collector decides its state;
//! - while a stop-all is active, every collector is PAUSED whatever the rest says.
//!
//! The evaluation is pure: sessions call [`Targeting::effective`] with their collector's
//! id and labels, and acknowledgement counting calls [`Targeting::in_scope`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use killswitch_proto::v1;

use crate::model::selector::Selector;
use crate::model::{Authorization, Generation, InvalidInput, RunState};

/// Most rules a program may carry; a whole-program pause or resume clears them.
pub const MAX_RULES: usize = 32;

pub use killswitch_proto::contract::{BUCKETS, bucket};

/// A scoped pause or resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Which collectors it applies to; `None` when the stored selector could not be read,
    /// which matches every collector for a pause and none for a resume (pause wins).
    pub selector: Option<Selector>,
    /// The state of the collectors it matches.
    pub state: RunState,
    /// Who added it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Option<SystemTime>,
    /// Added by a drill, removed when the drill ends.
    pub drill: bool,
    /// A signed scoped resume's statement: the collectors this rule decides receive it.
    pub authorization: Option<Authorization>,
}

impl Rule {
    /// Whether this is the rule of a drill of `selector`.
    #[must_use]
    pub fn is_drill_of(&self, selector: &Selector) -> bool {
        self.drill && self.selector.as_ref() == Some(selector)
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match &self.selector {
            Some(selector) => selector.matches(labels),
            None => self.state == RunState::Paused,
        }
    }

    fn from_wire(wire: &v1::Rule) -> Self {
        let selector = Selector::parse(&wire.selector)
            .inspect_err(|error| {
                tracing::error!(selector = wire.selector, %error, "unreadable rule selector");
            })
            .ok();
        Self {
            selector,
            state: RunState::from_wire(wire.state),
            actor: wire.actor.clone(),
            reason: wire.reason.clone(),
            at: wire.at.and_then(|t| SystemTime::try_from(t).ok()),
            drill: wire.drill,
            authorization: wire.authorization.as_ref().map(Authorization::from_wire),
        }
    }

    fn to_wire(&self) -> v1::Rule {
        v1::Rule {
            selector: self
                .selector
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            state: self.state.to_wire() as i32,
            actor: self.actor.clone(),
            reason: self.reason.clone(),
            at: self.at.map(killswitch_proto::timestamp),
            drill: self.drill,
            authorization: self.authorization.as_ref().map(Authorization::to_wire),
        }
    }
}

/// A staged resume in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Ascending percentages, the last 100.
    pub stages: Vec<u32>,
    /// Index of the current stage.
    pub stage: usize,
    /// The least time each stage runs before the next starts.
    pub interval: Duration,
    /// When the current stage started.
    pub stage_started_at: Option<SystemTime>,
}

impl Rollout {
    /// The current stage's percentage.
    #[must_use]
    pub fn percent(&self) -> u32 {
        self.stages.get(self.stage).copied().unwrap_or(100)
    }

    /// Whether the current stage is the last.
    #[must_use]
    pub fn is_last_stage(&self) -> bool {
        self.stage + 1 >= self.stages.len()
    }

    fn covers(&self, id: &str) -> bool {
        bucket(id) < self.percent().saturating_mul(BUCKETS / 100)
    }

    fn from_wire(wire: &v1::Rollout) -> Self {
        Self {
            stages: wire.stages_percent.clone(),
            stage: usize::try_from(wire.stage).unwrap_or(usize::MAX),
            interval: Duration::from_millis(wire.interval_ms),
            stage_started_at: wire
                .stage_started_at
                .and_then(|t| SystemTime::try_from(t).ok()),
        }
    }

    /// The stored and wire form.
    #[must_use]
    pub fn to_wire(&self) -> v1::Rollout {
        v1::Rollout {
            stages_percent: self.stages.clone(),
            stage: u32::try_from(self.stage).unwrap_or(u32::MAX),
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            stage_started_at: self.stage_started_at.map(killswitch_proto::timestamp),
        }
    }
}

/// Validates the stages of a staged resume: 1 to 10 ascending percentages from 1 to 100,
/// the last one 100.
pub fn stages(percentages: &[u32]) -> Result<Vec<u32>, InvalidInput> {
    let invalid = |why: &str| InvalidInput::Stages(why.to_owned());
    if percentages.is_empty() || percentages.len() > 10 {
        return Err(invalid("give 1 to 10 stages, e.g. 1%,10%,50%,100%"));
    }
    if percentages.iter().any(|&p| p == 0 || p > 100) {
        return Err(invalid("each stage is a percentage from 1 to 100"));
    }
    if percentages.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid("stages must grow, e.g. 1%,10%,50%,100%"));
    }
    if percentages.last() != Some(&100) {
        return Err(invalid("the last stage must be 100%"));
    }
    Ok(percentages.to_vec())
}

/// The emergency stop-all while it is active: who set it, why and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopAll {
    /// Why.
    pub reason: String,
    /// Incident id, empty when none.
    pub incident_id: String,
    /// Who.
    pub actor: String,
    /// When.
    pub at: Option<SystemTime>,
}

impl StopAll {
    /// From the stored form; `None` unless active.
    #[must_use]
    pub fn from_wire(wire: &v1::StopAll) -> Option<Self> {
        wire.active.then(|| Self {
            reason: wire.reason.clone(),
            incident_id: wire.incident_id.clone(),
            actor: wire.actor.clone(),
            at: wire.at.and_then(|t| SystemTime::try_from(t).ok()),
        })
    }

    /// The stored and wire form.
    #[must_use]
    pub fn to_wire(&self) -> v1::StopAll {
        v1::StopAll {
            active: true,
            reason: self.reason.clone(),
            incident_id: self.incident_id.clone(),
            actor: self.actor.clone(),
            at: self.at.map(killswitch_proto::timestamp),
            ..v1::StopAll::default()
        }
    }
}

/// The stop-all flag as stored (`{prefix}/global`): whether it is active (and who set it,
/// why), the generation that last changed it, and a pending request to clear it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopAllFlag {
    /// The active stop-all; `None` when inactive.
    pub mark: Option<StopAll>,
    /// The generation that set or cleared it (0 when never set): the mod_revision of the
    /// flag's key, or, once a clear request rewrote the key, the generation the request
    /// recorded (the one that set the flag), so a request changes no program's
    /// generation.
    pub generation: Generation,
    /// A request to clear it, waiting for a second admin.
    pub clear_request: Option<ClearRequest>,
}

/// A request to clear the stop-all, waiting for a second admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearRequest {
    /// Its id, for `killswitch stop-all --clear --approve ID`.
    pub id: String,
    /// The admin who asked.
    pub requested_by: String,
    /// When it expires.
    pub expires_at: Option<SystemTime>,
}

impl StopAllFlag {
    /// From the stored value and its key's mod_revision.
    #[must_use]
    pub fn from_stored(stored: &v1::StopAll, mod_revision: Generation) -> Self {
        let recorded = stored.generation;
        Self {
            mark: StopAll::from_wire(stored),
            generation: if stored.active && recorded != 0 && recorded <= mod_revision {
                recorded
            } else {
                mod_revision
            },
            clear_request: (!stored.clear_request_id.is_empty()).then(|| ClearRequest {
                id: stored.clear_request_id.clone(),
                requested_by: stored.clear_requested_by.clone(),
                expires_at: stored
                    .clear_request_expires_at
                    .and_then(|t| SystemTime::try_from(t).ok()),
            }),
        }
    }

    /// Whether the stop-all is active.
    #[must_use]
    pub fn active(&self) -> bool {
        self.mark.is_some()
    }
}

/// Everything besides the base state that decides a collector's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targeting {
    /// Scoped pauses and resumes, oldest first.
    pub rules: Vec<Rule>,
    /// A staged resume in progress.
    pub rollout: Option<Rollout>,
    /// The collectors the last change was aimed at; `None` for all.
    pub scope: Option<Selector>,
    /// The emergency stop-all, while active: the flag's mark, set when the state is read
    /// ([`crate::model::ProgramState::with_stop_all`]), never stored in the state.
    pub stop_all: Option<StopAll>,
}

impl Targeting {
    /// The state a collector with `id` and `labels` must be in, given the base state.
    #[must_use]
    pub fn effective(
        &self,
        base: RunState,
        id: &str,
        labels: &BTreeMap<String, String>,
    ) -> RunState {
        if self.stop_all.is_some() {
            return RunState::Paused;
        }
        if let Some(rule) = self.deciding_rule(labels) {
            return rule.state;
        }
        match &self.rollout {
            Some(rollout) if rollout.covers(id) => RunState::Running,
            Some(_) => RunState::Paused,
            None => base,
        }
    }

    /// The rule that decides the state of a collector with `labels`: the last one that
    /// matches; `None` when none does (or a stop-all decides).
    #[must_use]
    pub fn deciding_rule(&self, labels: &BTreeMap<String, String>) -> Option<&Rule> {
        if self.stop_all.is_some() {
            return None;
        }
        self.rules.iter().rev().find(|rule| rule.matches(labels))
    }

    /// Whether the last change was aimed at this collector: status counts only these. A
    /// staged resume's stage covers the collectors its percentage picks.
    #[must_use]
    pub fn in_scope(&self, id: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.stop_all.is_some() {
            return true;
        }
        let scoped = self.scope.as_ref().is_none_or(|s| s.matches(labels));
        match &self.rollout {
            Some(rollout) if self.scope.is_none() => rollout.covers(id),
            _ => scoped,
        }
    }

    /// Whether anything narrows or overrides the base state.
    #[must_use]
    pub fn is_plain(&self) -> bool {
        self.rules.is_empty() && self.rollout.is_none() && self.stop_all.is_none()
    }

    /// From the stored state.
    #[must_use]
    pub fn from_store(stored: &v1::store::ProgramState) -> Self {
        Self {
            rules: stored.rules.iter().map(Rule::from_wire).collect(),
            rollout: stored.rollout.as_ref().map(Rollout::from_wire),
            scope: (!stored.scope.is_empty())
                .then(|| Selector::parse(&stored.scope).ok())
                .flatten(),
            stop_all: None,
        }
    }

    /// Writes itself into a stored state; the stop-all mark stays with the flag (a mark
    /// an older version stored is dropped).
    pub fn store_into(&self, stored: &mut v1::store::ProgramState) {
        stored.rules = self.rules.iter().map(Rule::to_wire).collect();
        stored.rollout = self.rollout.as_ref().map(Rollout::to_wire);
        stored.scope = self
            .scope
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        stored.stop_all = None;
    }

    /// Writes itself into the wire state operators see.
    pub fn wire_into(&self, wire: &mut v1::ProgramState) {
        wire.rules = self.rules.iter().map(Rule::to_wire).collect();
        wire.rollout = self.rollout.as_ref().map(Rollout::to_wire);
        wire.scope = self
            .scope
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        wire.stop_all = self.stop_all.as_ref().map(StopAll::to_wire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn rule(selector: &str, state: RunState) -> Rule {
        Rule {
            selector: Some(Selector::parse(selector).expect("valid selector")),
            state,
            actor: "t".into(),
            reason: "t".into(),
            at: None,
            drill: false,
            authorization: None,
        }
    }

    #[test]
    fn the_last_matching_rule_wins_over_the_base_state() {
        let targeting = Targeting {
            rules: vec![
                rule("region=emea", RunState::Paused),
                rule("region=emea,team=a", RunState::Running),
            ],
            ..Targeting::default()
        };
        let cases = [
            (labels(&[("region", "us")]), RunState::Running),
            (labels(&[("region", "emea")]), RunState::Paused),
            (
                labels(&[("region", "emea"), ("team", "a")]),
                RunState::Running,
            ),
        ];
        for (labels, expected) in cases {
            assert_eq!(
                targeting.effective(RunState::Running, "c1", &labels),
                expected,
                "{labels:?}"
            );
        }
    }

    #[test]
    fn stop_all_pauses_everyone_whatever_the_rules() {
        let targeting = Targeting {
            rules: vec![rule("region=emea", RunState::Running)],
            stop_all: Some(StopAll {
                reason: "x".into(),
                incident_id: String::new(),
                actor: "a".into(),
                at: None,
            }),
            ..Targeting::default()
        };
        let emea = labels(&[("region", "emea")]);
        assert_eq!(
            targeting.effective(RunState::Running, "c1", &emea),
            RunState::Paused
        );
    }

    #[test]
    fn a_clear_request_keeps_the_generation_that_set_the_flag() {
        let set = v1::StopAll {
            active: true,
            ..v1::StopAll::default()
        };
        assert_eq!(StopAllFlag::from_stored(&set, 40).generation, 40);
        let requested = v1::StopAll {
            generation: 40,
            clear_request_id: "0badcafe".into(),
            ..set.clone()
        };
        let flag = StopAllFlag::from_stored(&requested, 44);
        assert_eq!(flag.generation, 40);
        assert!(flag.active() && flag.clear_request.is_some());
        let impossible = v1::StopAll {
            generation: 99,
            ..set
        };
        assert_eq!(
            StopAllFlag::from_stored(&impossible, 44).generation,
            44,
            "never beyond the key's own revision"
        );
        let cleared = v1::StopAll {
            generation: 40,
            ..v1::StopAll::default()
        };
        assert_eq!(StopAllFlag::from_stored(&cleared, 50).generation, 50);
    }

    #[test]
    fn a_rollout_stage_covers_its_share_of_buckets_and_grows() {
        let ids: Vec<String> = (0..2000).map(|i| format!("collector-{i}")).collect();
        let mut rollout = Rollout {
            stages: vec![10, 50, 100],
            stage: 0,
            interval: Duration::ZERO,
            stage_started_at: None,
        };
        let mut previous: Vec<&String> = Vec::new();
        for expected in [0.10, 0.50, 1.0] {
            let covered: Vec<&String> = ids.iter().filter(|id| rollout.covers(id)).collect();
            let share = covered.len() as f64 / ids.len() as f64;
            assert!((share - expected).abs() < 0.04, "{share} vs {expected}");
            assert!(
                previous.iter().all(|id| covered.contains(id)),
                "stages only grow"
            );
            previous = covered;
            rollout.stage += 1;
        }
    }

    #[test]
    fn stages_are_validated() {
        assert_eq!(stages(&[1, 10, 50, 100]), Ok(vec![1, 10, 50, 100]));
        for bad in [
            &[][..],
            &[50],
            &[0, 100],
            &[10, 10, 100],
            &[50, 10, 100],
            &[10, 101],
        ] {
            assert!(stages(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scope_counts_only_the_matched_collectors_or_the_current_stage() {
        let scoped = Targeting {
            scope: Some(Selector::parse("region=emea").expect("valid")),
            ..Targeting::default()
        };
        assert!(scoped.in_scope("c1", &labels(&[("region", "emea")])));
        assert!(!scoped.in_scope("c1", &labels(&[("region", "us")])));
        let staged = Targeting {
            rollout: Some(Rollout {
                stages: vec![100],
                stage: 0,
                interval: Duration::ZERO,
                stage_started_at: None,
            }),
            ..Targeting::default()
        };
        assert!(staged.in_scope("anyone", &labels(&[])));
    }
}
