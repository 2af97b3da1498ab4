//! Programs: creating, reading and listing them, and setting their failure policy and
//! resume approvals (a change that weakens a two-person program files an approval
//! request instead, see [`super::approvals`]).

use std::time::{Duration, SystemTime};

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use killswitch_proto::prost::Message;
use killswitch_proto::v1::{self, store};

use super::*;

impl Store {
    /// Creates a program, PAUSED (default deny), with its audit entry, in one transaction.
    pub async fn create_program(
        &self,
        program: &Program,
        change: &Change,
    ) -> Result<(Program, ProgramState), StoreError> {
        let name = &program.name;
        let now = SystemTime::now();
        let stored_program = store::Program {
            owner: program.owner.clone(),
            description: program.description.clone(),
            created_at: Some(killswitch_proto::timestamp(now)),
            created_by: change.actor.clone(),
            policy: Some(program.policy.to_wire()),
            resume_approvals: program.resume_approvals,
        };
        let stored_state = store::ProgramState {
            state: v1::RunState::Paused as i32,
            reason: change.reason.clone(),
            incident_id: change.incident_id.clone(),
            actor: change.actor.clone(),
            changed_at: Some(killswitch_proto::timestamp(now)),
            policy: Some(program.policy.to_wire()),
            ..store::ProgramState::default()
        };
        for attempt in 0..MAX_ATTEMPTS {
            let _turn = self.attempt(attempt).await;
            // Compared, so the state returned is under the flag that held at the commit.
            let global = self.global().await?;
            let head = self.audit_head().await?;
            let what = Audited {
                action: "create",
                program: name.as_str(),
                from: RunState::Paused,
                to: RunState::Paused,
                detail: if program.resume_approvals > 1 {
                    format!(
                        "owner: {}; on lost contact: {}; resume approvals: {}",
                        program.owner, program.policy, program.resume_approvals
                    )
                } else {
                    format!(
                        "owner: {}; on lost contact: {}",
                        program.owner, program.policy
                    )
                },
            };
            let entry = audit_entry(&head, now, change, what);
            let txn = Txn::new()
                .when([
                    Compare::create_revision(self.keys.program(name), CompareOp::Equal, 0),
                    Compare::mod_revision(self.keys.global(), CompareOp::Equal, global.revision),
                    Compare::create_revision(self.keys.state(name), CompareOp::Equal, 0),
                    Compare::mod_revision(self.keys.audit_head(), CompareOp::Equal, head.revision),
                ])
                .and_then(self.audited_puts(
                    &entry,
                    vec![
                        TxnOp::put(
                            self.keys.program(name),
                            stored_program.encode_to_vec(),
                            None,
                        ),
                        TxnOp::put(self.keys.state(name), stored_state.encode_to_vec(), None),
                    ],
                ));
            if let Some(generation) = self.commit(txn, &entry, head.revision).await? {
                let program = Program::from_store(name.clone(), &stored_program);
                let state = ProgramState::from_store(
                    name.clone(),
                    generation,
                    &stored_state,
                    &global.flag(),
                );
                return Ok((program, state));
            }
            if self.get_program(name).await?.is_some() {
                return Err(StoreError::AlreadyExists(name.clone()));
            }
        }
        Err(StoreError::Contention)
    }

    /// Reads one program and its state; `None` when it does not exist.
    pub async fn get_program(
        &self,
        name: &ProgramName,
    ) -> Result<Option<(Program, ProgramState)>, StoreError> {
        let Some((_, stored)) = self
            .read::<store::Program>(&self.keys.program(name))
            .await?
        else {
            return Ok(None);
        };
        let program = Program::from_store(name.clone(), &stored);
        Ok(self.get_state(name).await?.map(|state| (program, state)))
    }

    /// Every program with its state, sorted by name.
    pub async fn list_programs(&self) -> Result<Vec<(Program, ProgramState)>, StoreError> {
        let response = self
            .get(self.keys.programs(), Some(GetOptions::new().with_prefix()))
            .await?;
        let listing = self
            .list_states_at(response.header().map_or(0, |h| h.revision()))
            .await?;
        let mut programs = Vec::new();
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some(name) = key
                .strip_prefix(&self.keys.programs())
                .and_then(|n| ProgramName::parse(n).ok())
            else {
                tracing::warn!(key, "ignoring a program key whose name is not valid");
                continue;
            };
            let program = Program::from_store(name.clone(), &decode(&key, kv.value())?);
            if let Some(state) = listing.states.iter().find(|s| s.program == name) {
                programs.push((program, state.clone()));
            }
        }
        programs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(programs)
    }

    /// Sets the failure policy and/or the resume approvals of a program (`None` keeps
    /// each), copying the policy into the state so collectors receive it, with an audit
    /// entry. On a program that needs two operators to resume, a change that weakens it
    /// (fewer approvals, fail open, a longer grace) is not made: an approval request
    /// living `ttl` is stored instead, which another operator approves with `approve`.
    pub async fn set_policy(
        &self,
        name: &ProgramName,
        policy: Option<FailurePolicy>,
        resume_approvals: Option<u32>,
        ttl: Duration,
        change: &Change,
    ) -> Result<PolicyOutcome, StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            let turn = self.attempt(attempt).await;
            let (program, state) = self
                .get_program(name)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.clone()))?;
            let new = policy.unwrap_or(program.policy);
            let approvals = resume_approvals.unwrap_or(program.resume_approvals);
            let weakens = program.resume_approvals >= 2
                && (approvals < program.resume_approvals || program.policy.weakened_by(new));
            if !weakens {
                // apply_policy takes turns of its own.
                drop(turn);
                return self
                    .apply_policy(name, new, approvals, change, None)
                    .await
                    .map(|(program, state)| PolicyOutcome::Changed(program, state));
            }
            let request = store::ApprovalRequest {
                policy_change: Some(v1::PolicyChange {
                    policy: Some(new.to_wire()),
                    resume_approvals: approvals,
                }),
                ..Default::default()
            };
            let detail = format!(
                "{}; waits for a second operator",
                policy_detail(program.policy, program.resume_approvals, new, approvals).join("; ")
            );
            if let Some((id, expires_at)) = self
                .file_request(&state, request, "policy-request", detail, ttl, change)
                .await?
            {
                return Ok(PolicyOutcome::Requested {
                    program,
                    state,
                    id,
                    expires_at,
                });
            }
            tracing::debug!(program = %name, "lost a race with a concurrent change; retrying");
        }
        Err(StoreError::Contention)
    }

    /// Writes a program's policy and approvals, and the policy into its state, with an
    /// audit entry. With `request` (an approved policy change: its key, that key's
    /// mod_revision, the state generation it was filed at, who filed it), the state must
    /// still be at that (effective) generation and the request is deleted in the same
    /// transaction.
    pub(super) async fn apply_policy(
        &self,
        name: &ProgramName,
        new: FailurePolicy,
        new_approvals: u32,
        change: &Change,
        request: Option<(&str, i64, Generation, &str)>,
    ) -> Result<(Program, ProgramState), StoreError> {
        let (program_key, state_key) = (self.keys.program(name), self.keys.state(name));
        for attempt in 0..MAX_ATTEMPTS {
            let _turn = self.attempt(attempt).await;
            let not_found = || StoreError::NotFound(name.clone());
            let (program_revision, mut stored_program) = self
                .read::<store::Program>(&program_key)
                .await?
                .ok_or_else(not_found)?;
            let (state_revision, mut stored_state) = self
                .read::<store::ProgramState>(&state_key)
                .await?
                .ok_or_else(not_found)?;
            let global = self.global().await?;
            let flag = global.flag();
            let state = ProgramState::from_store(
                name.clone(),
                revision(state_revision),
                &stored_state,
                &flag,
            );
            if request.is_some_and(|(_, _, at, _)| at != state.generation) {
                return Err(StoreError::StaleApproval);
            }
            let old = FailurePolicy::from_store(stored_program.policy.as_ref());
            let old_approvals = stored_program.resume_approvals.clamp(1, 2);
            if old == new && old_approvals == new_approvals && request.is_none() {
                return Ok((Program::from_store(name.clone(), &stored_program), state));
            }
            let mut details = policy_detail(old, old_approvals, new, new_approvals);
            if let Some((_, _, _, requester)) = request {
                details.push(format!(
                    "approved by {}, requested by {requester}",
                    change.actor
                ));
            }
            stored_program.policy = Some(new.to_wire());
            stored_program.resume_approvals = new_approvals;
            stored_state.policy = Some(new.to_wire());
            // A stop-all mark an older version stored: the flag alone says it now.
            stored_state.stop_all = None;
            let head = self.audit_head().await?;
            let current = RunState::from_wire(stored_state.state);
            let what = Audited {
                action: "policy",
                program: name.as_str(),
                from: current,
                to: current,
                detail: details.join("; "),
            };
            let entry = audit_entry(&head, SystemTime::now(), change, what);
            let mut compares = vec![
                Compare::mod_revision(program_key.as_str(), CompareOp::Equal, program_revision),
                Compare::mod_revision(state_key.as_str(), CompareOp::Equal, state_revision),
                Compare::mod_revision(self.keys.global(), CompareOp::Equal, global.revision),
                Compare::mod_revision(self.keys.audit_head(), CompareOp::Equal, head.revision),
            ];
            let mut ops = vec![
                TxnOp::put(program_key.as_str(), stored_program.encode_to_vec(), None),
                TxnOp::put(state_key.as_str(), stored_state.encode_to_vec(), None),
            ];
            if let Some((key, key_revision, _, _)) = request {
                compares.push(Compare::mod_revision(key, CompareOp::Equal, key_revision));
                ops.push(TxnOp::delete(key, None));
            }
            let txn = Txn::new()
                .when(compares)
                .and_then(self.audited_puts(&entry, ops));
            if let Some(generation) = self.commit(txn, &entry, head.revision).await? {
                let state =
                    ProgramState::from_store(name.clone(), generation, &stored_state, &flag);
                return Ok((Program::from_store(name.clone(), &stored_program), state));
            }
            tracing::debug!(program = %name, "lost a race with a concurrent change; retrying");
        }
        Err(StoreError::Contention)
    }
}

/// What an audit entry says a policy change does, e.g. `on lost contact: pause after 30s
/// -> keep`, `resume approvals: 2 -> 1`.
fn policy_detail(
    old: FailurePolicy,
    old_approvals: u32,
    new: FailurePolicy,
    new_approvals: u32,
) -> Vec<String> {
    let mut details = Vec::new();
    if old != new {
        details.push(format!("on lost contact: {old} -> {new}"));
    }
    if old_approvals != new_approvals {
        details.push(format!(
            "resume approvals: {old_approvals} -> {new_approvals}"
        ));
    }
    details
}
