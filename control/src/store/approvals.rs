//! Approval requests: a resume of a program that needs two operators, or a policy change
//! that weakens one, waits under `approvals/{program}/{id}` (bound to its own lease) until
//! another operator approves it.

use std::time::{Duration, SystemTime};

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use killswitch_proto::prost::Message;
use killswitch_proto::v1::{self, store};

use super::state::{Edit, whole};
use super::targeting::{rollout_edit, scoped_edit};
use super::*;
use crate::model::selector::Selector;

/// Two-person resumes: a resume of a program that needs two operators stores an approval
/// request, bound to its own lease, which another operator approves.
impl Store {
    /// Resumes a program (only the collectors `selector` matches, when given), or, when it
    /// needs two operators, stores an approval request that lives for `ttl` (written with
    /// its audit entry in one transaction). A program RUNNING for everyone is returned
    /// unchanged by a whole-program resume either way.
    pub async fn resume(
        &self,
        name: &ProgramName,
        ttl: Duration,
        change: &Change,
        signed: Option<&SignedResume>,
        scope: ResumeScope<'_>,
    ) -> Result<ResumeOutcome, StoreError> {
        let (_, stored_program) = self
            .read::<store::Program>(&self.keys.program(name))
            .await?
            .ok_or_else(|| StoreError::NotFound(name.clone()))?;
        if stored_program.resume_approvals <= 1 {
            let outcome = match scope {
                ResumeScope::Whole => {
                    self.change_state(name, RunState::Running, false, change, signed)
                        .await?
                }
                ResumeScope::Staged(staged) => {
                    self.start_rollout(name, &staged.stages, staged.interval, change, signed)
                        .await?
                }
                ResumeScope::Selector(selector) => {
                    self.set_scoped(name, RunState::Running, selector, change, signed)
                        .await?
                }
            };
            return Ok(ResumeOutcome::Changed(outcome));
        }
        let (staged, selector) = match scope {
            ResumeScope::Whole => (None, None),
            ResumeScope::Staged(staged) => (Some(staged), None),
            ResumeScope::Selector(selector) => (None, Some(selector)),
        };
        for attempt in 0..MAX_ATTEMPTS {
            let _turn = self.attempt(attempt).await;
            let current = self
                .get_state(name)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.clone()))?;
            if current.state == RunState::Running && selector.is_none() {
                return Ok(ResumeOutcome::Changed(ChangeOutcome {
                    state: current,
                    changed: false,
                }));
            }
            if signed.is_some_and(|s| s.replaces != current.generation) {
                return Err(StoreError::StaleStatement);
            }
            let request = store::ApprovalRequest {
                authorization: signed.map(|s| s.authorization.clone()),
                stages_percent: staged.map(|s| s.stages.clone()).unwrap_or_default(),
                stage_interval_ms: staged.map_or(0, |s| {
                    u64::try_from(s.interval.as_millis()).unwrap_or(u64::MAX)
                }),
                selector: selector.map(ToString::to_string).unwrap_or_default(),
                ..Default::default()
            };
            let detail = selector.map_or_else(String::new, |s| format!("selector: {s}"));
            if let Some((id, expires_at)) = self
                .file_request(&current, request, "resume-request", detail, ttl, change)
                .await?
            {
                return Ok(ResumeOutcome::Requested {
                    state: current,
                    id,
                    expires_at,
                });
            }
            tracing::debug!(program = %name, "lost a race with a concurrent change; retrying");
        }
        Err(StoreError::Contention)
    }

    /// Stores `request` (its requester, reason, generation and times filled in here) as
    /// an approval request of `current`'s program living `ttl`, with an audit entry
    /// `action`, if the state is still at `current`'s generation: its id and expiry, or
    /// `None` when a concurrent change came first (the caller reads again and retries).
    pub(super) async fn file_request(
        &self,
        current: &ProgramState,
        mut request: store::ApprovalRequest,
        action: &'static str,
        detail: String,
        ttl: Duration,
        change: &Change,
    ) -> Result<Option<(String, SystemTime)>, StoreError> {
        let name = &current.program;
        let head = self.audit_head().await?;
        let now = SystemTime::now();
        let expires_at = now + ttl;
        let id = format!("{:08x}", fastrand::u32(..));
        request.requester.clone_from(&change.actor);
        request.reason.clone_from(&change.reason);
        request.incident_id.clone_from(&change.incident_id);
        request.replaces_generation = current.generation;
        request.created_at = Some(killswitch_proto::timestamp(now));
        request.expires_at = Some(killswitch_proto::timestamp(expires_at));
        let mut detail_text = format!(
            "request {id}, expires in {}",
            humantime::format_duration(ttl)
        );
        if !detail.is_empty() {
            detail_text = format!("{detail}; {detail_text}");
        }
        let what = Audited {
            action,
            program: name.as_str(),
            from: current.state,
            to: current.state,
            detail: detail_text,
        };
        let entry = audit_entry(&head, now, change, what);
        let lease = self.grant_lease(ttl).await?;
        let key = self.keys.approval(name, &id);
        let state_key = self.keys.state(name);
        let txn = Txn::new()
            .when([
                Compare::mod_revision(
                    state_key.as_str(),
                    CompareOp::Equal,
                    i64::try_from(current.revision).unwrap_or(i64::MAX),
                ),
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                Compare::mod_revision(self.keys.audit_head(), CompareOp::Equal, head.revision),
            ])
            .and_then(self.audited_puts(
                &entry,
                vec![TxnOp::put(
                    key.as_str(),
                    request.encode_to_vec(),
                    Some(etcd_client::PutOptions::new().with_lease(lease)),
                )],
            ));
        match self.commit(txn, &entry, head.revision).await {
            Ok(Some(_)) => Ok(Some((id, expires_at))),
            Ok(None) => {
                self.forget_lease(lease).await;
                Ok(None)
            }
            Err(error) => {
                self.forget_lease(lease).await;
                Err(error)
            }
        }
    }

    /// The program and stored value of approval request `id`, with the key's mod_revision
    /// and lease.
    async fn find_approval(
        &self,
        id: &str,
    ) -> Result<(ProgramName, store::ApprovalRequest, i64, i64), StoreError> {
        let prefix = self.keys.approvals();
        let response = self
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some((program, key_id)) = key
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if key_id != id {
                continue;
            }
            let Ok(program) = ProgramName::parse(program) else {
                tracing::warn!(
                    key,
                    "ignoring an approval key whose program name is not valid"
                );
                continue;
            };
            let request = decode(&key, kv.value())?;
            return Ok((program, request, kv.mod_revision(), kv.lease()));
        }
        Err(StoreError::NoApprovalRequest(id.to_owned()))
    }

    /// Approval request `id` and the program it is for.
    pub async fn get_approval(&self, id: &str) -> Result<PendingApproval, StoreError> {
        let (program, request, _, _) = self.find_approval(id).await?;
        Ok(PendingApproval { program, request })
    }

    /// Approves request `id` as `change.actor`, who must not be its requester: the
    /// program resumes (or, for a policy change, its policy is set), the request is
    /// deleted, and the audit entry names both, in one transaction. Fails when the program changed since the request.
    /// `signature`, checked by the caller over the request's statement, joins the
    /// requester's in the state's authorization.
    pub async fn approve(
        &self,
        id: &str,
        change: &Change,
        signature: Option<&v1::Signature>,
    ) -> Result<ChangeOutcome, StoreError> {
        let (name, request, request_revision, lease) = self.find_approval(id).await?;
        if request.requester == change.actor {
            return Err(StoreError::SelfApproval);
        }
        let request_key = self.keys.approval(&name, id);
        if let Some(policy) = &request.policy_change {
            let new = FailurePolicy::from_store(policy.policy.as_ref());
            let guard = (
                request_key.as_str(),
                request_revision,
                request.replaces_generation,
                request.requester.as_str(),
            );
            let (_, state) = self
                .apply_policy(
                    &name,
                    new,
                    policy.resume_approvals.clamp(1, 2),
                    change,
                    Some(guard),
                )
                .await?;
            self.forget_lease(lease).await;
            return Ok(ChangeOutcome {
                state,
                changed: true,
            });
        }
        let mut authorization = request.authorization.clone();
        if let (Some(authorization), Some(signature)) = (authorization.as_mut(), signature) {
            authorization.signatures.push(signature.clone());
        }
        let detail = format!(
            "approved by {}, requested by {}",
            change.actor, request.requester
        );
        let outcome = self
            .edit_state(&name, change, |current, stored| {
                if current.generation != request.replaces_generation {
                    return Err(StoreError::StaleApproval);
                }
                let signed = authorization.clone().map(|authorization| SignedResume {
                    authorization,
                    replaces: current.generation,
                });
                let mut edit = if !request.selector.is_empty() {
                    let selector = Selector::parse(&request.selector).map_err(|error| {
                        StoreError::Invalid(InvalidInput::Conflict(format!(
                            "the request's selector cannot be read ({error}): file it again"
                        )))
                    })?;
                    scoped_edit(
                        current,
                        stored,
                        RunState::Running,
                        &selector,
                        change,
                        signed.as_ref(),
                    )?
                    .ok_or(StoreError::StaleApproval)?
                } else if request.stages_percent.is_empty() {
                    let new = store::ProgramState {
                        authorization: signed.map(|s| s.authorization),
                        ..whole(stored, RunState::Running)
                    };
                    Edit::new(new, RunState::Running.action(), String::new())
                } else {
                    let interval = Duration::from_millis(request.stage_interval_ms);
                    let stages = &request.stages_percent;
                    rollout_edit(current, stored, stages, interval, signed.as_ref())?
                        .ok_or_else(|| StoreError::StaleApproval)?
                };
                edit.detail = if edit.detail.is_empty() {
                    detail.clone()
                } else {
                    format!("{}; {detail}", edit.detail)
                };
                edit.compares.push(Compare::mod_revision(
                    request_key.as_str(),
                    CompareOp::Equal,
                    request_revision,
                ));
                edit.ops.push(TxnOp::delete(request_key.as_str(), None));
                Ok(Some(edit))
            })
            .await?;
        self.forget_lease(lease).await;
        Ok(outcome)
    }

    /// Revokes a lease nothing needs any more; on failure it simply expires.
    async fn forget_lease(&self, lease: i64) {
        if lease == 0 {
            return;
        }
        if let Err(error) = self.client.clone().lease_revoke(lease).await {
            tracing::debug!(%error, lease, "could not revoke a lease; it will expire");
        }
    }
}
