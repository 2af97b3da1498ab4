//! Changes to which collectors a state applies to: scoped pauses and resumes, drills and
//! staged resumes, each made through [`Store::edit_state`], and the emergency stop-all
//! (see [`crate::model::targeting`]), which writes only its flag.

use std::time::{Duration, SystemTime};

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use killswitch_proto::prost::Message;
use killswitch_proto::v1::{self, store};

use super::state::{Edit, Global, whole};
use super::{
    Audited, Change, ChangeOutcome, MAX_ATTEMPTS, SignedResume, Store, StoreError, audit_entry,
};
use crate::model::selector::Selector;
use crate::model::targeting::{MAX_RULES, Rollout, Rule, StopAll, StopAllFlag};
use crate::model::{Authorization, InvalidInput, ProgramName, ProgramState, RunState};

/// How long a request to clear the stop-all waits for a second admin.
const CLEAR_REQUEST_TTL: Duration = Duration::from_secs(15 * 60);

impl Store {
    /// Starts a staged resume of a PAUSED program (see [`crate::model::targeting::Rollout`]):
    /// the first stage's collectors resume now, the next stages as the rollout driver
    /// advances it. A program already RUNNING for everyone is returned unchanged.
    pub async fn start_rollout(
        &self,
        name: &ProgramName,
        stages: &[u32],
        interval: Duration,
        change: &Change,
        signed: Option<&SignedResume>,
    ) -> Result<ChangeOutcome, StoreError> {
        self.edit_state(name, change, |current, stored| {
            rollout_edit(current, stored, stages, interval, signed)
        })
        .await
    }

    /// Pauses or resumes only the collectors `selector` matches: a rule appended to the
    /// program's state. The same rule as the last one changes nothing, unless that one is
    /// a drill's.
    pub async fn set_scoped(
        &self,
        name: &ProgramName,
        target: RunState,
        selector: &Selector,
        change: &Change,
        signed: Option<&SignedResume>,
    ) -> Result<ChangeOutcome, StoreError> {
        self.edit_state(name, change, |current, stored| {
            scoped_edit(current, stored, target, selector, change, signed)
        })
        .await
    }

    /// Starts a drill: pauses the collectors `selector` matches with a drill rule.
    pub async fn start_drill(
        &self,
        name: &ProgramName,
        selector: &Selector,
        change: &Change,
    ) -> Result<ChangeOutcome, StoreError> {
        self.edit_state(name, change, |current, stored| {
            if current
                .targeting
                .rules
                .iter()
                .any(|r| r.is_drill_of(selector))
            {
                return Err(StoreError::Invalid(InvalidInput::Conflict(format!(
                    "a drill of {selector} is already running on {name}: end it with \
                     `killswitch drill {name} --selector '{selector}' --end --reason TEXT`"
                ))));
            }
            add_rule(
                current,
                stored,
                RunState::Paused,
                selector,
                true,
                change,
                None,
            )
            .map(|new| {
                Some(Edit::new(
                    new,
                    "drill-start",
                    format!("selector: {selector}"),
                ))
            })
        })
        .await
    }

    /// Ends a drill: removes its rule, so its collectors return to their state before it.
    pub async fn end_drill(
        &self,
        name: &ProgramName,
        selector: &Selector,
        change: &Change,
    ) -> Result<ChangeOutcome, StoreError> {
        self.edit_state(name, change, |current, stored| {
            let mut targeting = current.targeting.clone();
            targeting.rules.retain(|rule| !rule.is_drill_of(selector));
            if targeting.rules.len() == current.targeting.rules.len() {
                return Err(StoreError::Invalid(InvalidInput::Conflict(format!(
                    "no drill of {selector} is running on {name}"
                ))));
            }
            targeting.scope = Some(selector.clone());
            let mut new = stored.clone();
            targeting.store_into(&mut new);
            Ok(Some(Edit::new(
                new,
                "drill-end",
                format!("selector: {selector}"),
            )))
        })
        .await
    }

    /// Returns a staged resume to PAUSED for every collector.
    pub async fn abort_rollout(
        &self,
        name: &ProgramName,
        change: &Change,
        why: &str,
    ) -> Result<ChangeOutcome, StoreError> {
        self.edit_state(name, change, |current, stored| {
            let Some(rollout) = &current.targeting.rollout else {
                return Err(StoreError::Invalid(InvalidInput::Conflict(format!(
                    "{name} has no staged resume in progress"
                ))));
            };
            Ok(Some(Edit::new(
                whole(stored, RunState::Paused),
                "rollout-abort",
                format!(
                    "at stage {} ({}%): {why}",
                    rollout.stage + 1,
                    rollout.percent()
                ),
            )))
        })
        .await
    }

    /// Moves a staged resume on from the stage it was at in `generation`: to the next
    /// stage, or, after the last, to RUNNING for everyone. Changes nothing if the state
    /// moved on since (another replica advanced it, or an operator changed it).
    pub async fn advance_rollout(
        &self,
        name: &ProgramName,
        generation: u64,
        change: &Change,
    ) -> Result<ChangeOutcome, StoreError> {
        self.edit_state(name, change, |current, stored| {
            let Some(rollout) = &current.targeting.rollout else {
                return Ok(None);
            };
            if current.generation != generation {
                return Ok(None);
            }
            if rollout.is_last_stage() {
                let new = store::ProgramState {
                    authorization: stored.authorization.clone(),
                    ..whole(stored, RunState::Running)
                };
                return Ok(Some(Edit::new(
                    new,
                    "rollout-complete",
                    "every stage acknowledged".to_owned(),
                )));
            }
            let next = Rollout {
                stage: rollout.stage + 1,
                stage_started_at: Some(SystemTime::now()),
                ..rollout.clone()
            };
            let detail = format!(
                "stage {} of {}: {}%",
                next.stage + 1,
                next.stages.len(),
                next.percent()
            );
            let new = store::ProgramState {
                rollout: Some(next.to_wire()),
                ..stored.clone()
            };
            Ok(Some(Edit::new(new, "rollout-advance", detail)))
        })
        .await
    }

    /// Sets the emergency stop-all: the flag alone, with its audit entry, in one small
    /// transaction however many programs there are. Every program's state is read under
    /// the flag, so every collector of every program pauses, at a new generation (the
    /// flag's).
    pub async fn stop_all(&self, change: &Change) -> Result<(StopAllFlag, bool), StoreError> {
        let flag = StopAll {
            reason: change.reason.clone(),
            incident_id: change.incident_id.clone(),
            actor: change.actor.clone(),
            at: Some(SystemTime::now()),
        };
        self.set_global(change, Some(flag), "stop-all").await
    }

    /// Clears the stop-all: every program returns to its own state. When `needs_two`, the
    /// first admin's call stores a request (its id is returned) and a second admin's call
    /// with `approve` set to that id clears it.
    pub async fn clear_stop_all(
        &self,
        change: &Change,
        needs_two: bool,
        approve: Option<&str>,
    ) -> Result<(StopAllFlag, bool), StoreError> {
        if !needs_two {
            return self.set_global(change, None, "stop-all-clear").await;
        }
        let global = self.global().await?;
        if !global.value.active {
            return Ok((global.flag(), false));
        }
        match approve {
            None => self.request_clear(change, global).await,
            Some(id) => {
                if global.value.clear_request_id != id {
                    return Err(StoreError::NoApprovalRequest(id.to_owned()));
                }
                let expired = global
                    .value
                    .clear_request_expires_at
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .is_none_or(|t| t < SystemTime::now());
                if expired {
                    return Err(StoreError::NoApprovalRequest(id.to_owned()));
                }
                if global.value.clear_requested_by == change.actor {
                    return Err(StoreError::SelfApproval);
                }
                self.set_global(change, None, "stop-all-clear").await
            }
        }
    }

    async fn request_clear(
        &self,
        change: &Change,
        global: Global,
    ) -> Result<(StopAllFlag, bool), StoreError> {
        let head = self.audit_head().await?;
        let now = SystemTime::now();
        let id = format!("{:08x}", fastrand::u32(..));
        // The request rewrites the flag's key, so it records the generation that set the
        // flag: every program keeps its generation (see `StopAllFlag::generation`).
        let value = v1::StopAll {
            generation: global.flag().generation,
            clear_request_id: id.clone(),
            clear_requested_by: change.actor.clone(),
            clear_request_expires_at: Some(killswitch_proto::timestamp(now + CLEAR_REQUEST_TTL)),
            ..global.value
        };
        let entry = audit_entry(
            &head,
            now,
            change,
            Audited {
                action: "stop-all-clear-request",
                program: "*",
                from: RunState::Paused,
                to: RunState::Paused,
                detail: format!("request {id}, needs a second admin"),
            },
        );
        let txn = self.global_txn(global.revision, head.revision, &entry, &value);
        match self.commit(txn, &entry, head.revision).await? {
            Some(revision) => Ok((StopAllFlag::from_stored(&value, revision), false)),
            None => Err(StoreError::Contention),
        }
    }

    /// Writes the flag (`Some`: active) with its audit entry, in one small transaction
    /// whatever the number of programs: no program's state is written, every read of a
    /// state merges the flag ([`ProgramState::with_stop_all`]). The same flag again
    /// changes nothing.
    async fn set_global(
        &self,
        change: &Change,
        flag: Option<StopAll>,
        action: &'static str,
    ) -> Result<(StopAllFlag, bool), StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            let _turn = self.attempt(attempt).await;
            let global = self.global().await?;
            if global.value.active == flag.is_some() {
                return Ok((global.flag(), false));
            }
            let programs = self
                .get(
                    self.keys.states(),
                    Some(GetOptions::new().with_prefix().with_count_only()),
                )
                .await?
                .count();
            let value = flag
                .as_ref()
                .map_or_else(v1::StopAll::default, StopAll::to_wire);
            let head = self.audit_head().await?;
            let (from, to) = if flag.is_some() {
                (RunState::Running, RunState::Paused)
            } else {
                (RunState::Paused, RunState::Running)
            };
            let entry = audit_entry(
                &head,
                SystemTime::now(),
                change,
                Audited {
                    action,
                    program: "*",
                    from,
                    to,
                    detail: format!("{programs} programs"),
                },
            );
            let txn = self.global_txn(global.revision, head.revision, &entry, &value);
            if let Some(generation) = self.commit(txn, &entry, head.revision).await? {
                return Ok((StopAllFlag::from_stored(&value, generation), true));
            }
            tracing::debug!("stop-all lost a race with a concurrent change; retrying");
        }
        Err(StoreError::Contention)
    }

    /// The transaction that writes the stop-all flag as `value` with its audit `entry`, if
    /// neither the flag (at `global_revision`) nor the audit head (at `head_revision`)
    /// moved.
    fn global_txn(
        &self,
        global_revision: i64,
        head_revision: i64,
        entry: &store::AuditEntry,
        value: &v1::StopAll,
    ) -> Txn {
        Txn::new()
            .when([
                Compare::mod_revision(self.keys.global(), CompareOp::Equal, global_revision),
                Compare::mod_revision(self.keys.audit_head(), CompareOp::Equal, head_revision),
            ])
            .and_then(self.audited_puts(
                entry,
                vec![TxnOp::put(self.keys.global(), value.encode_to_vec(), None)],
            ))
    }
}

/// The state with one more rule (bounded by [`MAX_RULES`]) and `selector` as its scope.
/// The edit that pauses or resumes the collectors `selector` matches (signed by
/// `signed`, whose statement must replace `current`'s generation); `None` when the last
/// rule already does it.
pub(super) fn scoped_edit(
    current: &ProgramState,
    stored: &store::ProgramState,
    target: RunState,
    selector: &Selector,
    change: &Change,
    signed: Option<&SignedResume>,
) -> Result<Option<Edit>, StoreError> {
    if signed.is_some_and(|s| s.replaces != current.generation) {
        return Err(StoreError::StaleStatement);
    }
    // A drill's rule never makes a real change a no-op: the drill's end removes it, and a
    // real pause must outlive that.
    let last = current.targeting.rules.last();
    if last.is_some_and(|r| !r.drill && r.state == target && r.selector.as_ref() == Some(selector))
        && current.targeting.scope.as_ref() == Some(selector)
    {
        return Ok(None);
    }
    let authorization = signed.map(|s| Authorization::from_wire(&s.authorization));
    let new = add_rule(
        current,
        stored,
        target,
        selector,
        false,
        change,
        authorization,
    )?;
    Ok(Some(Edit::new(
        new,
        target.action(),
        format!("selector: {selector}"),
    )))
}

fn add_rule(
    current: &ProgramState,
    stored: &store::ProgramState,
    target: RunState,
    selector: &Selector,
    drill: bool,
    change: &Change,
    authorization: Option<Authorization>,
) -> Result<store::ProgramState, StoreError> {
    if current.targeting.rules.len() >= MAX_RULES {
        return Err(StoreError::Invalid(InvalidInput::Conflict(format!(
            "{} already has {MAX_RULES} scoped rules: pause or resume the whole program to \
             start again from one state",
            current.program
        ))));
    }
    let rule = Rule {
        selector: Some(selector.clone()),
        state: target,
        actor: change.actor.clone(),
        reason: change.reason.clone(),
        at: Some(SystemTime::now()),
        drill,
        authorization,
    };
    let mut new = stored.clone();
    let mut targeting = current.targeting.clone();
    targeting.rules.push(rule);
    targeting.scope = Some(selector.clone());
    targeting.store_into(&mut new);
    new.purge = false;
    Ok(new)
}

/// The edit that starts a staged resume of a PAUSED program; `None` when it is already
/// RUNNING for everyone.
pub(super) fn rollout_edit(
    current: &ProgramState,
    stored: &store::ProgramState,
    stages: &[u32],
    interval: Duration,
    signed: Option<&SignedResume>,
) -> Result<Option<Edit>, StoreError> {
    let stages = crate::model::targeting::stages(stages)?;
    if current.state == RunState::Running && current.targeting.rules.is_empty() {
        return Ok(None);
    }
    if signed.is_some_and(|s| s.replaces != current.generation) {
        return Err(StoreError::StaleStatement);
    }
    let rollout = crate::model::targeting::Rollout {
        stages,
        stage: 0,
        interval,
        stage_started_at: Some(SystemTime::now()),
    };
    let detail = format!(
        "staged: {} every {}",
        rollout
            .stages
            .iter()
            .map(|p| format!("{p}%"))
            .collect::<Vec<_>>()
            .join(","),
        humantime::format_duration(interval)
    );
    let new = store::ProgramState {
        rollout: Some(rollout.to_wire()),
        authorization: signed.map(|s| s.authorization.clone()),
        ..whole(stored, RunState::Paused)
    };
    Ok(Some(Edit::new(new, "resume", detail)))
}
